//! Project pages as served: upstream's page (fetched once per TTL, one
//! fetch per project however many ask) merged with the tree's, rendered
//! once per change and then answered from memory.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Semaphore;
use url::Url;

use super::index::{self, FileEntry};
use super::upstream::{Client, PageAnswer};

/// How long an upstream that failed is left alone before it is asked again:
/// a dead host must not cost every request a connect timeout.
const RETRY_DOWN: Duration = Duration::from_secs(10);

/// Pages kept in memory at most (a build asks for hundreds).
const MAX_PAGES: usize = 20_000;

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
    /// files; every upstream before it answered 404 or 410.
    Found {
        /// Which upstream: the one whose URLs and policy apply to the files.
        upstream: usize,
        /// Its files.
        files: Vec<FileEntry>,
    },
    /// Every upstream answered that it does not have it.
    Missing,
    /// An upstream could not be asked, or answered neither the page nor
    /// 404/410; the upstreams after it were not asked, so a
    /// later index can never stand in for an earlier one.
    Failed {
        /// One line naming it (redacted) and what failed.
        error: String,
    },
    /// `--offline`: nobody was asked.
    Offline,
}

/// Identity of the tree's page of a project: re-render when it changes
/// (a `serve` download or a `pypi-mirror add` published into the tree).
type TreeStamp = Option<(u64, u64, i64, i64)>;

/// A project page ready to send.
#[derive(Debug)]
pub struct Page {
    up: Arc<Upstreamed>,
    tree: TreeStamp,
    /// Merged files by name.
    pub files: HashMap<String, FileEntry>,
    /// PEP 503 HTML.
    pub html: Bytes,
    /// PEP 691 JSON.
    pub json: Bytes,
    /// Whether anything knows the project (else: 404, or 502 when an
    /// upstream failed).
    pub exists: bool,
}

impl Page {
    /// What the upstreams said: which one the upstream files came from,
    /// or why none could be asked.
    pub fn answer(&self) -> &Answer {
        &self.up.answer
    }
}

#[derive(Debug, Default)]
struct Health {
    down_until: Option<Instant>,
    /// What made it go down.
    error: String,
}

type Pending = Shared<BoxFuture<'static, Arc<Upstreamed>>>;

/// The page cache and its upstream fetches.
pub struct Pages {
    out: PathBuf,
    client: Option<Client>,
    ttl: Duration,
    limit: Arc<Semaphore>,
    cache: RwLock<HashMap<String, Arc<Page>>>,
    inflight: Mutex<HashMap<String, Pending>>,
    health: Mutex<Vec<Health>>,
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
    /// upstream requests (shared with file downloads).
    pub fn new(out: PathBuf, client: Option<Client>, ttl: Duration, limit: Arc<Semaphore>) -> Self {
        let n = client.as_ref().map_or(0, |c| c.upstreams.len());
        Self {
            out,
            client,
            ttl,
            limit,
            cache: RwLock::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            health: Mutex::new((0..n).map(|_| Health::default()).collect()),
        }
    }

    fn tree_stamp(&self, project: &str) -> TreeStamp {
        fs::metadata(self.out.join(project).join("index.html"))
            .ok()
            .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
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
        let tree = self.tree_stamp(project);
        let cached = self.cache.read().ok().and_then(|c| c.get(project).cloned());
        if let Some(page) = &cached {
            if page.tree == tree && self.fresh(&page.up) {
                return page.clone();
            }
        }
        let up = match cached {
            Some(page) if self.fresh(&page.up) => page.up.clone(),
            _ => self.upstream(project).await,
        };
        let page = Arc::new(self.render(project, up, tree));
        if let Ok(mut c) = self.cache.write() {
            if c.len() >= MAX_PAGES {
                // Requests for made-up names must not grow memory without
                // bound: forget what nobody has, then, if need be, all.
                c.retain(|_, p| p.exists);
                if c.len() >= MAX_PAGES {
                    c.clear();
                }
            }
            c.insert(project.to_owned(), page.clone());
        }
        page
    }

    fn render(&self, project: &str, up: Arc<Upstreamed>, tree: TreeStamp) -> Page {
        let tree_files = self.tree_files(project);
        let (upstream_files, known): (&[FileEntry], bool) = match &up.answer {
            Answer::Found { files, .. } => (files, true),
            _ => (&[], false),
        };
        let merged = index::merge(upstream_files, &tree_files);
        let exists = known || !merged.is_empty();
        Page {
            html: Bytes::from(index::render_html(project, &merged)),
            json: Bytes::from(index::render_json(project, &merged)),
            files: merged
                .into_iter()
                .map(|f| (f.filename.clone(), f))
                .collect(),
            exists,
            up,
            tree,
        }
    }

    /// The files the tree's own page lists.
    fn tree_files(&self, project: &str) -> Vec<FileEntry> {
        let Ok(body) = fs::read(self.out.join(project).join("index.html")) else {
            return Vec::new();
        };
        // The tree's links are relative to its page; any base will do.
        let Ok(base) = Url::parse(&format!("http://tree.invalid/{project}/")) else {
            return Vec::new();
        };
        let mut files = index::parse_html(&body, &base);
        for f in &mut files {
            f.url = None;
        }
        files
    }

    /// The projects of the tree's root page plus those known upstream.
    pub fn root_projects(&self) -> Vec<String> {
        let mut names = fs::read(self.out.join("index.html"))
            .map(|b| index::parse_root(&b))
            .unwrap_or_default();
        if let Ok(c) = self.cache.read() {
            names.extend(c.iter().filter(|(_, p)| p.exists).map(|(k, _)| k.clone()));
        }
        names.sort();
        names.dedup();
        names
    }

    /// One upstream fetch per project at a time: later askers wait for it.
    async fn upstream(self: &Arc<Self>, project: &str) -> Arc<Upstreamed> {
        let fut = {
            let Ok(mut inflight) = self.inflight.lock() else {
                return Arc::new(Upstreamed {
                    at: Instant::now(),
                    answer: Answer::Failed {
                        error: "internal error: the table of fetches is poisoned".to_owned(),
                    },
                });
            };
            inflight
                .entry(project.to_owned())
                .or_insert_with(|| {
                    let me = self.clone();
                    let project = project.to_owned();
                    async move { Arc::new(me.ask_upstreams(&project).await) }
                        .boxed()
                        .shared()
                })
                .clone()
        };
        let up = fut.clone().await;
        if let Ok(mut inflight) = self.inflight.lock() {
            if inflight.get(project).is_some_and(|f| f.ptr_eq(&fut)) {
                inflight.remove(project);
            }
        }
        up
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
                    return Answer::Found { upstream: i, files };
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
