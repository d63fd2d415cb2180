//! Project pages as served: upstream's page (fetched once per TTL, one
//! fetch per project however many ask) merged with the tree's, rendered on
//! first use in each format and answered from memory, in a cache bounded in
//! bytes. The tree's side comes from its state log, so a page served
//! offline is the online page restricted to the files the tree holds.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Semaphore;

use super::publish::Publisher;
use super::tree::{ProjectFiles, TreeView};
use super::upstream::{Client, PageAnswer};
use crate::index::{self, FileEntry};

/// How long an upstream that failed is left alone before it is asked again:
/// a dead host must not cost every request a connect timeout.
const RETRY_DOWN: Duration = Duration::from_secs(10);

/// What the upstreams said about a project, and when.
#[derive(Debug)]
pub struct Upstreamed {
    at: Instant,
    answer: Answer,
}

/// What the upstreams said about a project: the first upstream that does
/// not answer 404 or 410 decides (as uv's `first-index` strategy).
#[derive(Debug)]
pub enum Answer {
    /// Upstream number `upstream` (in `--upstream` order) listed these
    /// files (sorted by name, only the project's own); every upstream
    /// before it answered 404 or 410.
    Found {
        /// Which upstream: the one whose URLs and policy apply to the files.
        upstream: usize,
        /// Its files.
        files: Arc<[FileEntry]>,
    },
    /// Every upstream answered that it does not have it.
    Missing,
    /// An upstream could not be asked, or answered neither the page nor
    /// 404/410; the upstreams after it were not asked, so a later index
    /// can never stand in for an earlier one.
    Failed {
        /// One line naming it (redacted) and what failed.
        error: String,
    },
    /// `--offline`: nobody was asked.
    Offline,
}

/// When the project's directory last changed: a file that landed in it
/// without reaching the state log is noticed on the next request.
type DirStamp = Option<(u64, i64, i64)>;

/// A project page ready to send.
#[derive(Debug)]
pub struct Page {
    up: Arc<Upstreamed>,
    tree: u64,
    dir: DirStamp,
    project: String,
    /// Merged files, sorted by name.
    files: Arc<[FileEntry]>,
    /// Each format rendered on first use, with its entity tag.
    html: OnceLock<(Bytes, String)>,
    json: OnceLock<(Bytes, String)>,
    /// Whether anything knows the project (else: 404, or 502 when an
    /// upstream failed).
    pub exists: bool,
    /// The upstream (URL without credentials) the files not in the tree
    /// come from: recorded with them when they are published.
    pub origin: Option<String>,
    /// Bytes this page may hold once both formats are rendered.
    cost: u64,
}

impl Page {
    /// What the upstreams said: which one the upstream files came from,
    /// or why none could be asked.
    pub fn answer(&self) -> &Answer {
        &self.up.answer
    }

    /// The entry of `filename`, if the page lists it.
    pub fn file(&self, filename: &str) -> Option<&FileEntry> {
        self.files
            .binary_search_by(|f| f.filename.as_str().cmp(filename))
            .ok()
            .and_then(|i| self.files.get(i))
    }

    /// The page as PEP 691 JSON (`json`) or PEP 503 HTML, rendered once,
    /// and its entity tag.
    pub fn body(&self, json: bool) -> (&Bytes, &str) {
        let (cell, render): (_, Render) = if json {
            (&self.json, index::render_json)
        } else {
            (&self.html, |p, f| index::render_html(p, f).into_bytes())
        };
        let (body, etag) = cell.get_or_init(|| {
            let body = Bytes::from(render(&self.project, &self.files));
            let etag = super::caching::etag_of(&body);
            (body, etag)
        });
        (body, etag)
    }
}

/// A page renderer: project and files to bytes.
type Render = fn(&str, &[FileEntry]) -> Vec<u8>;

/// Estimated bytes of a page: its entries, and both renderings (each about
/// the size of the entries' text).
fn cost(files: &[FileEntry]) -> u64 {
    let entries: usize = files
        .iter()
        .map(|f| {
            std::mem::size_of::<FileEntry>()
                + 2 * f.filename.len()
                + f.url.as_ref().map_or(0, |u| u.as_str().len())
                + f.sha256.as_ref().map_or(0, String::len)
                + f.requires_python.as_ref().map_or(0, String::len)
                + f.yanked.as_ref().map_or(0, String::len)
                + f.upload_time.as_ref().map_or(0, String::len)
                + 160
        })
        .sum();
    3 * entries as u64 + 1024
}

#[derive(Debug, Clone, Copy)]
struct PageWeight;

impl quick_cache::Weighter<String, Arc<Page>> for PageWeight {
    fn weight(&self, key: &String, page: &Arc<Page>) -> u64 {
        page.cost + key.len() as u64
    }
}

#[derive(Debug, Default)]
struct Health {
    down_until: Option<Instant>,
    /// What made it go down.
    error: String,
}

type Pending = Shared<BoxFuture<'static, Arc<Page>>>;

/// The page cache and its upstream fetches.
pub struct Pages {
    out: PathBuf,
    client: Option<Client>,
    ttl: Duration,
    limit: Arc<Semaphore>,
    tree: TreeView,
    publisher: Option<Publisher>,
    cache: quick_cache::sync::Cache<String, Arc<Page>, PageWeight>,
    inflight: Mutex<std::collections::HashMap<String, Pending>>,
    health: Mutex<Vec<Health>>,
    /// (project, file) found in the tree but not in its log, handed to
    /// `add` once.
    repaired: Mutex<HashSet<(String, String)>>,
    /// Projects whose answer from a foreign upstream was refused, warned
    /// about once.
    refused: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("out", &self.out)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Pages {
    /// `client` is `None` with `--offline`. `limit` caps concurrent
    /// upstream requests (shared with file downloads); `cache_bytes`
    /// bounds the memory pages take; `publisher` records what the tree
    /// must learn (new listings, files found unlisted).
    pub fn new(
        out: PathBuf,
        client: Option<Client>,
        ttl: Duration,
        limit: Arc<Semaphore>,
        cache_bytes: u64,
        publisher: Option<Publisher>,
    ) -> Self {
        let n = client.as_ref().map_or(0, |c| c.upstreams.len());
        let cache = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(4096)
            .weight_capacity(cache_bytes)
            // One shard: a shard holds at most its share of the bytes, and
            // one large page must fit.
            .shards(1)
            .build()
            .map(|o| {
                quick_cache::sync::Cache::with_options(
                    o,
                    PageWeight,
                    quick_cache::DefaultHashBuilder::default(),
                    quick_cache::sync::DefaultLifecycle::default(),
                )
            })
            .unwrap_or_else(|_| {
                quick_cache::sync::Cache::with_weighter(4096, cache_bytes, PageWeight)
            });
        Self {
            tree: TreeView::new(out.join(crate::STATE_DIR).join("state")),
            out,
            client,
            ttl,
            limit,
            publisher,
            cache,
            inflight: Mutex::new(std::collections::HashMap::new()),
            health: Mutex::new((0..n).map(|_| Health::default()).collect()),
            repaired: Mutex::new(HashSet::new()),
            refused: Mutex::new(HashSet::new()),
        }
    }

    fn dir_stamp(&self, project: &str) -> DirStamp {
        fs::metadata(self.out.join(project))
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
    }

    fn fresh(&self, up: &Upstreamed) -> bool {
        match (&self.client, &up.answer) {
            (None, _) => true,
            (Some(_), Answer::Failed { .. }) => up.at.elapsed() < RETRY_DOWN.min(self.ttl),
            (Some(_), _) => up.at.elapsed() < self.ttl,
        }
    }

    /// The page of `project` (normalized), fetching and rendering only
    /// what is stale.
    pub async fn get(self: &Arc<Self>, project: &str) -> Arc<Page> {
        let tree = self.tree.project(project);
        let dir = self.dir_stamp(project);
        let cached = self.cache.get(project);
        if let Some(page) = &cached {
            if page.tree == tree.generation && page.dir == dir && self.fresh(&page.up) {
                return page.clone();
            }
            if self.fresh(&page.up) {
                // Only the tree changed: no need to ask upstream.
                return self.render_and_keep(project, page.up.clone(), &tree, dir);
            }
        }
        self.fetch(project).await
    }

    fn render_and_keep(
        &self,
        project: &str,
        up: Arc<Upstreamed>,
        tree: &ProjectFiles,
        dir: DirStamp,
    ) -> Arc<Page> {
        let page = Arc::new(self.render(project, up, tree, dir));
        self.cache.insert(project.to_owned(), page.clone());
        page
    }

    /// One upstream fetch per project at a time: later askers wait for it.
    /// The fetch puts its page into the cache before it leaves the
    /// in-flight table, and a new fetch starts only after looking at the
    /// cache again under the table's lock, so a client that comes late
    /// finds one or the other, never neither.
    async fn fetch(self: &Arc<Self>, project: &str) -> Arc<Page> {
        let fut = {
            let Ok(mut inflight) = self.inflight.lock() else {
                let up = Arc::new(Upstreamed {
                    at: Instant::now(),
                    answer: Answer::Failed {
                        error: "internal error: the table of fetches is poisoned".to_owned(),
                    },
                });
                let tree = self.tree.project(project);
                return Arc::new(self.render(project, up, &tree, self.dir_stamp(project)));
            };
            if let Some(f) = inflight.get(project) {
                f.clone()
            } else {
                // Another fetch may have finished since `get` looked.
                if let Some(page) = self.cache.get(project).filter(|p| self.fresh(&p.up)) {
                    let tree = self.tree.project(project);
                    let dir = self.dir_stamp(project);
                    if page.tree == tree.generation && page.dir == dir {
                        return page;
                    }
                    return self.render_and_keep(project, page.up.clone(), &tree, dir);
                }
                let me = self.clone();
                let name = project.to_owned();
                let f = async move {
                    let up = Arc::new(me.ask_upstreams(&name).await);
                    let tree = me.tree.project(&name);
                    let page = me.render_and_keep(&name, up, &tree, me.dir_stamp(&name));
                    if let Ok(mut inflight) = me.inflight.lock() {
                        inflight.remove(&name);
                    }
                    page
                }
                .boxed()
                .shared();
                inflight.insert(project.to_owned(), f.clone());
                f
            }
        };
        fut.await
    }

    fn render(
        &self,
        project: &str,
        up: Arc<Upstreamed>,
        tree: &ProjectFiles,
        dir: DirStamp,
    ) -> Page {
        let tree_files = tree.listed();
        let mut known = false;
        let mut origin = None;
        let mut upstream_files: Option<&Arc<[FileEntry]>> = None;
        if let Answer::Found { upstream, files } = &up.answer {
            let url = self.upstream_url(*upstream);
            match tree.origin() {
                Some(from) if Some(from) != url.as_deref() => {
                    self.refuse(project, from, url.as_deref())
                }
                _ => {
                    known = true;
                    origin = url;
                    upstream_files = Some(files);
                }
            }
        }
        let files: Arc<[FileEntry]> = match upstream_files {
            Some(up_files) if tree_files.is_empty() => up_files.clone(),
            Some(up_files) => {
                self.relist(project, index::relistings(up_files, &tree_files));
                Arc::from(index::merge(up_files, &tree_files))
            }
            None => Arc::from(tree_files),
        };
        self.repair(project, tree);
        Page {
            exists: known || !files.is_empty(),
            cost: cost(&files),
            project: project.to_owned(),
            files,
            html: OnceLock::new(),
            json: OnceLock::new(),
            origin,
            up,
            tree: tree.generation,
            dir,
        }
    }

    fn upstream_url(&self, i: usize) -> Option<String> {
        let up = self.client.as_ref()?.upstreams.get(i)?;
        Some(up.url.to_string())
    }

    /// A project the tree took from one upstream is never taken from
    /// another: that is how a public package would replace a private one.
    fn refuse(&self, project: &str, from: &str, now: Option<&str>) {
        let first = self
            .refused
            .lock()
            .map(|mut r| r.insert(project.to_owned()))
            .unwrap_or(false);
        if first {
            log::warn!(
                "{project}: the mirror holds it from {from}; refusing the page of {} (another upstream), serving the mirror's files only",
                now.unwrap_or("another upstream")
            );
        }
    }

    /// Have the tree record what upstream now says of its files (a yank,
    /// an un-yank), so the next offline build sees what this one saw.
    fn relist(&self, project: &str, changes: Vec<index::Relisting>) {
        if changes.is_empty() {
            return;
        }
        if let Some(p) = &self.publisher {
            log::info!(
                "{project}: upstream's page changed what it says of {} file(s) the mirror holds; recording it",
                changes.len()
            );
            p.relist(project.to_owned(), changes);
        }
    }

    /// Files in the project's directory that the state log does not have
    /// (a publication cut short, a file copied in by hand) go through
    /// `add`, once each, so they are listed rather than served unlisted.
    fn repair(&self, project: &str, tree: &ProjectFiles) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        let Ok(dir) = fs::read_dir(self.out.join(project)) else {
            return;
        };
        for e in dir.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if !index::acceptable_filename(&name)
                || !crate::name::belongs_to(&name, project)
                || tree.entries.iter().any(|t| t.filename == name)
            {
                continue;
            }
            let first = self
                .repaired
                .lock()
                .map(|mut r| r.insert((project.to_owned(), name.clone())))
                .unwrap_or(false);
            if first {
                publisher.publish_unlisted(e.path());
            }
        }
    }

    /// The projects of the tree plus those known upstream.
    pub fn root_projects(&self) -> Vec<String> {
        let mut names = self.tree.project_names();
        names.extend(self.cache.iter().filter(|(_, p)| p.exists).map(|(k, _)| k));
        names.sort();
        names.dedup();
        names
    }

    async fn ask_upstreams(&self, project: &str) -> Upstreamed {
        let answer = match &self.client {
            None => Answer::Offline,
            Some(client) => self.ask(client, project).await,
        };
        Upstreamed {
            at: Instant::now(),
            answer,
        }
    }

    /// Ask the upstreams in order; only a 404 or 410 passes to the next.
    /// Any other failure of an earlier upstream (including being marked
    /// down) is that project's answer: falling through to a later index
    /// would let it serve a package of the same name in place of the
    /// earlier one's (dependency confusion).
    async fn ask(&self, client: &Client, project: &str) -> Answer {
        let n = client.upstreams.len();
        let not_next = |i: usize| {
            if i + 1 < n {
                "; not asking the next upstream"
            } else {
                ""
            }
        };
        for (i, up) in client.upstreams.iter().enumerate() {
            if let Some(last) = self.down_since(i) {
                return Answer::Failed {
                    error: format!("upstream {up} is down ({last}){}", not_next(i)),
                };
            }
            let answer = {
                let _permit = self.limit.acquire().await;
                client.page(i, project).await
            };
            match answer {
                PageAnswer::Found(files) => {
                    self.mark(i, None, up);
                    return Answer::Found {
                        upstream: i,
                        files: own_files(project, files, up),
                    };
                }
                PageAnswer::Missing => self.mark(i, None, up),
                PageAnswer::Failed(e) => {
                    self.mark(i, Some(&e), up);
                    return Answer::Failed {
                        error: format!("upstream {up}: {e}{}", not_next(i)),
                    };
                }
            }
        }
        Answer::Missing
    }

    /// The error that marked upstream `i` down, while it is left alone.
    fn down_since(&self, i: usize) -> Option<String> {
        let health = self.health.lock().ok()?;
        let h = health.get(i)?;
        h.down_until
            .is_some_and(|t| Instant::now() < t)
            .then(|| h.error.clone())
    }

    /// Record an upstream's health; one line when it goes down or comes
    /// back, not one per request.
    fn mark(&self, i: usize, error: Option<&str>, up: &super::upstream::Upstream) {
        let Ok(mut health) = self.health.lock() else {
            return;
        };
        let Some(h) = health.get_mut(i) else { return };
        match error {
            Some(e) => {
                if h.down_until.is_none() {
                    log::warn!("upstream {up}: {e}; serving what the mirror tree has");
                }
                h.down_until = Some(Instant::now() + RETRY_DOWN);
                e.clone_into(&mut h.error);
            }
            None => {
                if h.down_until.take().is_some() {
                    log::info!("upstream {up}: reachable again");
                }
            }
        }
    }
}

/// The files of an upstream page that belong to `project`, sorted by name:
/// a page of one project listing another's file must not put it on this
/// project's page (nor, through publishing, on the other's).
fn own_files(
    project: &str,
    mut files: Vec<FileEntry>,
    up: &super::upstream::Upstream,
) -> Arc<[FileEntry]> {
    let before = files.len();
    files.retain(|f| crate::name::belongs_to(&f.filename, project));
    if files.len() < before {
        log::warn!(
            "upstream {up}: the page of {project} lists {} file(s) of other projects; ignored",
            before - files.len()
        );
    }
    files.sort_by(|a, b| a.filename.cmp(&b.filename));
    files.dedup_by(|a, b| a.filename == b.filename);
    Arc::from(files)
}
