//! The indexer: scan sources, hash and read metadata of new or changed files,
//! place them in the tree, and rewrite only the pages that changed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Cursor, Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::fsutil;
use crate::html;
use crate::metadata;
use crate::name::{self, ArchiveKind};
use crate::state::{self, Entry, Record, Stamp, State};

/// Directory inside the mirror that holds the state log and lock file.
pub const STATE_DIR: &str = ".pypi-mirror";

/// Above this many written files one `syncfs` replaces per-file fsyncs.
const SYNCFS_THRESHOLD: usize = 64;

/// Files up to this size are read into memory in one go (one read syscall,
/// and the zip reader then seeks in memory); larger ones are streamed.
const SLURP_LIMIT: u64 = 8 * 1024 * 1024;

/// Options of a full (re)build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Directories to index (recursively; hidden entries are skipped). Empty
    /// means the mirror directory itself, i.e. re-index what is already there
    /// plus any archive dropped into it.
    pub from: Vec<PathBuf>,
    /// The mirror directory (created if missing).
    pub out: PathBuf,
    /// Remove files from the mirror that none of the sources has any more.
    pub prune: bool,
    /// Allow a progress bar on stderr (it still appears only if the run takes
    /// longer than half a second). The CLI sets this when stderr is a
    /// terminal.
    pub progress: bool,
    /// Worker threads; 0 = number of CPUs.
    pub jobs: usize,
}

impl BuildOptions {
    /// Build into `out` with no source directories yet, no pruning, no
    /// progress bar.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            from: Vec::new(),
            out: out.into(),
            prune: false,
            progress: false,
            jobs: 0,
        }
    }

    /// Add a source directory.
    pub fn from_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.from.push(dir.into());
        self
    }
}

/// Options of an incremental `add`.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// The mirror directory (created if missing).
    pub out: PathBuf,
    /// Archives to add.
    pub files: Vec<PathBuf>,
    /// See [`BuildOptions::progress`].
    pub progress: bool,
    /// See [`BuildOptions::jobs`].
    pub jobs: usize,
}

impl AddOptions {
    /// Add `files` to the mirror at `out`.
    pub fn new(
        out: impl Into<PathBuf>,
        files: impl IntoIterator<Item = impl Into<PathBuf>>,
    ) -> Self {
        Self {
            out: out.into(),
            files: files.into_iter().map(Into::into).collect(),
            progress: false,
            jobs: 0,
        }
    }
}

/// Why a file was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file or a source directory could not be read.
    Unreadable,
    /// Not a `.whl`, `.tar.gz` or `.zip` (only reported for `add`).
    NotAnArchive,
    /// The file name does not have the wheel / sdist shape.
    BadFilename,
    /// The archive is corrupt or lacks its metadata.
    BrokenArchive,
    /// The project name is not a valid PEP 508 name.
    InvalidName,
    /// Two sources have a file of this name with different content.
    Duplicate,
    /// The mirror already has a different file of this name.
    Conflict,
    /// The file could not be placed into the mirror.
    PlaceFailed,
}

/// A skipped file and why, printable as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The offending file (or directory).
    pub path: PathBuf,
    /// Category, for programs and tests.
    pub kind: ProblemKind,
    /// Human-readable reason.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl Problem {
    fn new(path: &Path, kind: ProblemKind, message: impl Into<String>) -> Self {
        let p = Self {
            path: path.to_owned(),
            kind,
            message: message.into(),
        };
        log::error!("{p}");
        p
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Files in the mirror after the run.
    pub files: usize,
    /// Projects in the mirror after the run.
    pub projects: usize,
    /// File names newly indexed.
    pub added: Vec<String>,
    /// File names whose content was replaced (rebuilt at the same source path)
    /// or that were re-placed because they had gone missing from the tree.
    pub updated: Vec<String>,
    /// File names removed (`--prune`, or gone from the tree).
    pub removed: Vec<String>,
    /// Files found unchanged.
    pub unchanged: usize,
    /// Files read and hashed in this run; 0 for a re-run over unchanged
    /// sources.
    pub hashed: usize,
    /// Projects whose `index.html` was written.
    pub pages_written: Vec<String>,
    /// Whether the root `index.html` was written.
    pub root_written: bool,
    /// Skipped files; non-empty means the run should exit non-zero.
    pub problems: Vec<Problem>,
}

impl Report {
    /// True when nothing was skipped.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A failure that stops the whole run (as opposed to a skipped file).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on the mirror itself.
    #[error("{}: {source}", path.display())]
    Io {
        /// File or directory concerned.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The mirror path exists but is not a directory.
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Index every wheel and sdist under `opts.from` into the PEP 503 tree at
/// `opts.out`, touching only what changed since the last run.
pub fn build(opts: &BuildOptions) -> Result<Report, Error> {
    let mut problems = Vec::new();
    // Absolute paths, so the source recorded in the state means the same
    // thing whichever directory the next run starts from.
    let out = absolute(&opts.out)?;
    let roots: Vec<PathBuf> = if opts.from.is_empty() {
        vec![out.clone()]
    } else {
        opts.from
            .iter()
            .map(|p| absolute(p))
            .collect::<Result<_, _>>()?
    };
    let run = Run::open(&out, opts.jobs, opts.progress)?;
    let mut candidates = Vec::new();
    for root in &roots {
        scan_dir(root, &run.out_id, &mut candidates, &mut problems);
    }
    run.execute(candidates, Mode::Build { prune: opts.prune }, problems)
}

/// Add `files` to the mirror at `out` (see [`add_with`]).
pub fn add(out: &Path, files: &[PathBuf]) -> Result<Report, Error> {
    add_with(&AddOptions::new(out, files.iter().cloned()))
}

/// Add individual archives, rewriting only the pages of their projects (and
/// the root page if a project is new).
pub fn add_with(opts: &AddOptions) -> Result<Report, Error> {
    let mut problems = Vec::new();
    let run = Run::open(&absolute(&opts.out)?, opts.jobs, opts.progress)?;
    let mut candidates = Vec::new();
    for path in &opts.files {
        let path = &absolute(path)?;
        let Some(filename) = path.file_name().and_then(|n| n.to_str()) else {
            problems.push(Problem::new(
                path,
                ProblemKind::BadFilename,
                "not a file name",
            ));
            continue;
        };
        let Some(kind) = ArchiveKind::from_filename(filename) else {
            problems.push(Problem::new(
                path,
                ProblemKind::NotAnArchive,
                "not a wheel or sdist (.whl, .tar.gz, .zip); skipped",
            ));
            continue;
        };
        match fs::metadata(path) {
            Ok(md) if md.is_file() => candidates.push(Candidate {
                path: path.clone(),
                filename: filename.to_owned(),
                kind,
                stamp: Stamp::of(&md),
            }),
            Ok(_) => problems.push(Problem::new(
                path,
                ProblemKind::Unreadable,
                "not a regular file; skipped",
            )),
            Err(e) => problems.push(Problem::new(
                path,
                ProblemKind::Unreadable,
                format!("{e}; skipped"),
            )),
        }
    }
    run.execute(candidates, Mode::Add, problems)
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Build { prune: bool },
    Add,
}

/// A source file found by a scan or given to `add`.
#[derive(Debug, Clone)]
struct Candidate {
    path: PathBuf,
    filename: String,
    kind: ArchiveKind,
    stamp: Stamp,
}

/// Result of reading one candidate.
#[derive(Debug)]
struct Processed {
    sha256: String,
    project: String,
    requires_python: Option<String>,
    /// The wheel's METADATA bytes, to be served as `<file>.metadata`.
    core_metadata: Option<Vec<u8>>,
}

/// What to do with the file chosen for a file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Content already in place; only the state record may need refreshing.
    Keep { refresh: bool },
    /// New file name.
    Add,
    /// Same name, new content (or the tree copy went missing).
    Replace,
}

struct Run {
    out: PathBuf,
    out_id: (u64, u64),
    state_path: PathBuf,
    state: State,
    jobs: usize,
    progress: bool,
    // Held for the whole run; released on drop.
    _lock: nix::fcntl::Flock<fs::File>,
}

impl Run {
    fn open(out: &Path, jobs: usize, progress: bool) -> Result<Self, Error> {
        match fs::metadata(out) {
            Ok(md) if !md.is_dir() => return Err(Error::NotADirectory(out.to_owned())),
            _ => {}
        }
        let state_dir = out.join(STATE_DIR);
        fs::create_dir_all(&state_dir).map_err(io_err(&state_dir))?;
        let lock_path = state_dir.join("lock");
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        use nix::fcntl::{Flock, FlockArg};
        // Two concurrent runs would interleave renames and state appends;
        // serialise them, telling the user why we wait.
        let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                log::info!(
                    "{}: waiting for another pypi-mirror run to finish",
                    out.display()
                );
                Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::Io {
                    path: lock_path.clone(),
                    source: e.into(),
                })?
            }
            Err((_, e)) => {
                return Err(Error::Io {
                    path: lock_path,
                    source: e.into(),
                })
            }
        };
        let md = fs::metadata(out).map_err(io_err(out))?;
        let state_path = state_dir.join("state");
        let t = Instant::now();
        let state = State::load(&state_path).map_err(io_err(&state_path))?;
        log::debug!(
            "phase load state ({} entries): {:.1?}",
            state.entries.len(),
            t.elapsed()
        );
        let jobs = if jobs == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            jobs
        };
        Ok(Self {
            out: out.to_owned(),
            out_id: (md.dev(), md.ino()),
            state_path,
            state,
            jobs,
            progress,
            _lock: lock,
        })
    }

    fn dest(&self, project: &str, filename: &str) -> PathBuf {
        self.out.join(project).join(filename)
    }

    fn execute(
        mut self,
        candidates: Vec<Candidate>,
        mode: Mode,
        mut problems: Vec<Problem>,
    ) -> Result<Report, Error> {
        let mut report = Report::default();
        let progress = Progress::new(self.progress);
        let mut phase = PhaseTimer::new();

        // Group by file name, keeping source order: the first source wins
        // when two carry the same name. A path given twice counts once.
        let mut groups: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
        let mut paths: HashSet<&Path> = HashSet::with_capacity(candidates.len());
        for c in &candidates {
            if paths.insert(&c.path) {
                groups.entry(c.filename.as_str()).or_default().push(c);
            }
        }

        // Taken, not cloned: `add` must stay cheap on a big mirror. Nothing
        // below mutates it until every decision is made.
        let mut entries = std::mem::take(&mut self.state.entries);
        let old_projects: Vec<String> = entries
            .values()
            .map(|e| e.project.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect();

        // Which candidates must be read: anything whose stat identity is not
        // the one recorded, plus known files whose tree copy is missing.
        let mut to_read: Vec<&Candidate> = Vec::new();
        for (filename, group) in &groups {
            let existing = entries.get(*filename);
            for c in group {
                let known = existing.is_some_and(|e| e.stamp == c.stamp && self.tree_intact(e));
                if !known {
                    to_read.push(c);
                }
            }
        }
        phase.done("classify");
        progress.start("indexing", to_read.len());
        let results = par_map(&to_read, self.jobs, |c| {
            let r = process(c);
            progress.inc();
            r
        });
        report.hashed = to_read.len();
        let mut processed: HashMap<&Path, Processed> = HashMap::new();
        for (c, r) in to_read.iter().zip(results) {
            match r {
                Ok(p) => {
                    processed.insert(c.path.as_path(), p);
                }
                Err(p) => problems.push(p),
            }
        }

        phase.done("read");
        // Decide per file name.
        let mut changed_projects: BTreeSet<String> = BTreeSet::new();
        let mut placements: Vec<(Entry, &Candidate, Option<&Processed>, Action)> = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        // Files to delete from the tree, deferred until the pages no longer
        // link to them so a concurrent reader never follows a dead link.
        let mut removals: Vec<Entry> = Vec::new();
        for (filename, group) in &groups {
            seen.insert(filename);
            let existing = entries.get(*filename);
            // (candidate, sha256, processed) for every readable candidate.
            let versions: Vec<(&Candidate, &str, Option<&Processed>)> = group
                .iter()
                .filter_map(|c| match processed.get(c.path.as_path()) {
                    Some(p) => Some((*c, p.sha256.as_str(), Some(p))),
                    None => existing
                        .filter(|e| e.stamp == c.stamp)
                        .map(|e| (*c, e.sha256.as_str(), None)),
                })
                .collect();
            if versions.is_empty() {
                continue;
            }
            let winner = match existing {
                // Same content as served, else a rebuild at the recorded
                // source path, else (only if the served copy has vanished
                // from the tree, so nothing is being overridden) the first.
                Some(e) => versions
                    .iter()
                    .find(|v| v.1 == e.sha256)
                    .or_else(|| versions.iter().find(|v| v.0.path == e.source))
                    .or_else(|| {
                        if self.tree_intact(e) {
                            None
                        } else {
                            versions.first()
                        }
                    }),
                None => versions.first(),
            };
            let Some(&(wc, wsha, wproc)) = winner else {
                // Every source differs from what the mirror already serves.
                if let Some(e) = existing {
                    for (c, _, _) in &versions {
                        problems.push(Problem::new(
                            &c.path,
                            ProblemKind::Conflict,
                            format!(
                                "differs from the {} already in the mirror (indexed from {}); skipped",
                                filename,
                                e.source.display()
                            ),
                        ));
                    }
                }
                continue;
            };
            for (c, sha, _) in &versions {
                if *sha != wsha {
                    problems.push(Problem::new(
                        &c.path,
                        ProblemKind::Duplicate,
                        format!(
                            "same file name as {} but different content; skipped",
                            wc.path.display()
                        ),
                    ));
                }
            }
            let (entry, action) = match (existing, wproc) {
                (Some(e), None) => {
                    report.unchanged += 1;
                    (e.clone(), Action::Keep { refresh: false })
                }
                (Some(e), Some(p)) => {
                    let entry = new_entry(wc, p);
                    let intact = self.tree_intact(e);
                    if e.sha256 == p.sha256 && e.project == p.project && intact {
                        report.unchanged += 1;
                        (entry, Action::Keep { refresh: true })
                    } else {
                        if e.project != entry.project {
                            // The name in the metadata changed: the old copy
                            // must leave the old project's page.
                            removals.push(e.clone());
                            changed_projects.insert(e.project.clone());
                        }
                        report.updated.push(filename.to_string());
                        (entry, Action::Replace)
                    }
                }
                (None, Some(p)) => {
                    report.added.push(filename.to_string());
                    (new_entry(wc, p), Action::Add)
                }
                // Unreachable by construction (a candidate without processing
                // result is only a version when an entry exists); skip quietly
                // rather than panic.
                (None, None) => continue,
            };
            placements.push((entry, wc, wproc, action));
        }

        phase.done("decide");
        // Create project directories once, up front, so workers only link and
        // write.
        let new_dirs: BTreeSet<&str> = placements
            .iter()
            .filter(|p| !matches!(p.3, Action::Keep { .. }))
            .map(|p| p.0.project.as_str())
            .collect();
        for project in &new_dirs {
            let dir = self.out.join(project);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let writes: Vec<&(Entry, &Candidate, Option<&Processed>, Action)> = placements
            .iter()
            .filter(|p| !matches!(p.3, Action::Keep { .. }))
            .collect();
        let many = writes.len() > SYNCFS_THRESHOLD;
        progress.start("placing", writes.len());
        let placed = par_map(&writes, self.jobs, |(entry, c, p, action)| {
            let r = self.place(entry, c, *p, *action, !many);
            progress.inc();
            r
        });
        let mut failed: BTreeSet<String> = BTreeSet::new();
        for ((entry, c, _, _), r) in writes.iter().zip(placed) {
            if let Err(e) = r {
                problems.push(Problem::new(
                    &c.path,
                    ProblemKind::PlaceFailed,
                    format!(
                        "cannot place into {}: {e}; skipped",
                        self.out.join(&entry.project).display()
                    ),
                ));
                failed.insert(entry.filename.clone());
            }
        }
        phase.done("place");
        let mut records: Vec<Entry> = Vec::new();
        for (entry, _, _, action) in placements {
            if failed.contains(&entry.filename) {
                report.added.retain(|f| f != &entry.filename);
                report.updated.retain(|f| f != &entry.filename);
                continue;
            }
            match action {
                Action::Keep { refresh: false } => {}
                Action::Keep { refresh: true } => records.push(entry.clone()),
                Action::Add | Action::Replace => {
                    changed_projects.insert(entry.project.clone());
                    records.push(entry.clone());
                }
            }
            entries.insert(entry.filename.clone(), entry);
        }

        // Files the mirror knows but this run did not see.
        let mut deletes: Vec<String> = Vec::new();
        if let Mode::Build { prune } = mode {
            let unseen: Vec<String> = entries
                .keys()
                .filter(|f| !seen.contains(f.as_str()))
                .cloned()
                .collect();
            for filename in &unseen {
                let Some(e) = entries.get(filename) else {
                    continue;
                };
                let gone = !self.tree_intact(e);
                if prune || gone {
                    if gone {
                        log::warn!(
                            "{}: gone from the mirror tree, dropping it from the index",
                            self.dest(&e.project, filename).display()
                        );
                    }
                    changed_projects.insert(e.project.clone());
                    removals.push(e.clone());
                    entries.remove(filename);
                    deletes.push(filename.clone());
                    report.removed.push(filename.clone());
                }
            }
        }

        // Pages.
        let mut by_project: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for e in entries.values() {
            by_project.entry(e.project.as_str()).or_default().push(e);
        }
        if let Mode::Build { .. } = mode {
            // Self-healing: a page deleted by hand comes back on the next build.
            for project in by_project.keys() {
                if !self.out.join(project).join("index.html").exists() {
                    changed_projects.insert((*project).to_owned());
                }
            }
        }
        phase.done("prune+group");
        if many {
            // Data of every placed file must be durable before any page
            // points at it.
            fsutil::sync_fs(&self.out).map_err(io_err(&self.out))?;
        }
        phase.done("sync");
        let pages: Vec<&String> = changed_projects.iter().collect();
        // Pages alone can be many too (e.g. after a manual clean-up).
        let many = many || pages.len() > SYNCFS_THRESHOLD;
        let sync_each = !many;
        let page_results = par_map(&pages, self.jobs, |project| {
            match by_project.get(project.as_str()) {
                Some(files) => self.write_page(project, files, sync_each),
                // Emptied projects lose their page only after the root
                // page stops listing them.
                None => Ok(()),
            }
        });
        for r in page_results {
            r?;
        }
        report.pages_written = changed_projects
            .iter()
            .filter(|p| by_project.contains_key(p.as_str()))
            .cloned()
            .collect();

        let root = self.out.join("index.html");
        let projects_changed = old_projects
            .iter()
            .map(String::as_str)
            .ne(by_project.keys().copied());
        if projects_changed || !root.exists() {
            let page = html::root_page(by_project.keys().copied());
            fsutil::write_atomic(&root, page.as_bytes(), !many).map_err(io_err(&root))?;
            report.root_written = true;
        }
        if !many {
            for project in changed_projects
                .iter()
                .filter(|p| by_project.contains_key(p.as_str()))
            {
                let dir = self.out.join(project);
                fsutil::sync_dir(&dir).map_err(io_err(&dir))?;
            }
            fsutil::sync_dir(&self.out).map_err(io_err(&self.out))?;
        }
        for e in &removals {
            remove_from_tree(&self.out, e);
        }
        for project in changed_projects
            .iter()
            .filter(|p| !by_project.contains_key(p.as_str()))
        {
            self.remove_page(project)?;
        }

        phase.done("pages");
        // State last: if we crash before this, the next run redoes the work.
        let mut log_records: Vec<Record<'_>> = records.iter().map(Record::Put).collect();
        log_records.extend(deletes.iter().map(|f| Record::Delete(f)));
        if !log_records.is_empty() {
            if many
                || state::wants_compaction(self.state.records + log_records.len(), entries.len())
            {
                let data = state::render(entries.values());
                fsutil::write_atomic(&self.state_path, &data, !many)
                    .map_err(io_err(&self.state_path))?;
            } else {
                state::append(&self.state_path, &log_records).map_err(io_err(&self.state_path))?;
            }
        }
        if many {
            fsutil::sync_fs(&self.out).map_err(io_err(&self.out))?;
        }
        phase.done("state+sync");
        progress.finish();

        report.files = entries.len();
        report.projects = by_project.len();
        report.problems = problems;
        Ok(report)
    }

    /// Whether the tree still has `e` (and its `.metadata`), so a file whose
    /// copy was deleted by hand is put back instead of being trusted.
    fn tree_intact(&self, e: &Entry) -> bool {
        let dest = self.dest(&e.project, &e.filename);
        let ok = fs::metadata(&dest).is_ok_and(|m| m.len() == e.stamp.size);
        ok && (e.metadata_sha256.is_none() || metadata_path(&dest).exists())
    }

    fn place(
        &self,
        entry: &Entry,
        c: &Candidate,
        p: Option<&Processed>,
        action: Action,
        sync: bool,
    ) -> io::Result<()> {
        let dest = self.dest(&entry.project, &entry.filename);
        if let Some(md) = p.and_then(|p| p.core_metadata.as_deref()) {
            let path = metadata_path(&dest);
            // A new file's .metadata is reachable only through the page,
            // which is published later; a replaced one may be read right now.
            if action == Action::Add {
                fsutil::write_new(&path, md, sync)?;
            } else {
                fsutil::write_atomic(&path, md, sync)?;
            }
        }
        let placed = fsutil::link_or_copy(&c.path, &dest, sync)?;
        log::trace!("{}: {placed:?} as {}", c.path.display(), dest.display());
        Ok(())
    }

    fn write_page(&self, project: &str, files: &[&Entry], sync: bool) -> Result<(), Error> {
        let page = self.out.join(project).join("index.html");
        let links: Vec<html::Link<'_>> = files
            .iter()
            .map(|e| html::Link {
                filename: &e.filename,
                sha256: &e.sha256,
                requires_python: e.requires_python.as_deref(),
                metadata_sha256: e.metadata_sha256.as_deref(),
            })
            .collect();
        let html = html::project_page(project, &links);
        fsutil::write_atomic(&page, html.as_bytes(), sync).map_err(io_err(&page))
    }

    /// Drop the page of a project whose last file went away, and its
    /// directory if now empty (a user's own files in it are left alone).
    fn remove_page(&self, project: &str) -> Result<(), Error> {
        let dir = self.out.join(project);
        let page = dir.join("index.html");
        match fs::remove_file(&page) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&page)(e)),
        }
        let _ = fs::remove_dir(&dir);
        Ok(())
    }
}

fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(p).map_err(io_err(p))
}

fn metadata_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".metadata");
    PathBuf::from(s)
}

fn remove_from_tree(out: &Path, e: &Entry) {
    let dest = out.join(&e.project).join(&e.filename);
    for p in [metadata_path(&dest), dest] {
        if let Err(err) = fs::remove_file(&p) {
            if err.kind() != io::ErrorKind::NotFound {
                log::warn!("{}: cannot remove: {err}", p.display());
            }
        }
    }
}

fn new_entry(c: &Candidate, p: &Processed) -> Entry {
    Entry {
        filename: c.filename.clone(),
        project: p.project.clone(),
        sha256: p.sha256.clone(),
        stamp: c.stamp,
        metadata_sha256: p.core_metadata.as_deref().map(sha256_hex),
        requires_python: p.requires_python.clone(),
        source: c.path.clone(),
    }
}

/// Walk `root` recursively for archives. A mirror nested inside a source
/// directory is skipped so it is not indexed into itself, unless the root is
/// the mirror (re-indexing in place).
fn scan_dir(
    root: &Path,
    out_id: &(u64, u64),
    found: &mut Vec<Candidate>,
    problems: &mut Vec<Problem>,
) {
    let is_out = fs::metadata(root).is_ok_and(|m| (m.dev(), m.ino()) == *out_id);
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                problems.push(Problem::new(
                    &dir,
                    ProblemKind::Unreadable,
                    format!("cannot read directory: {e}"),
                ));
                continue;
            }
        };
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for entry in rd {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    problems.push(Problem::new(
                        &dir,
                        ProblemKind::Unreadable,
                        format!("cannot read directory: {e}"),
                    ));
                    break;
                }
            };
            let Ok(name) = entry.file_name().into_string() else {
                log::debug!("{}: skipping non-UTF-8 name", entry.path().display());
                continue;
            };
            // Hidden entries: our own state dir and temp files, VCS dirs.
            if name.starts_with('.') {
                continue;
            }
            names.push((name, entry.path()));
        }
        // Sorted so "first source wins" is deterministic.
        names.sort();
        let mut subdirs = Vec::new();
        for (name, path) in names {
            let md = match fs::metadata(&path) {
                Ok(md) => md,
                Err(e) => {
                    // Dangling symlinks and races with deleters end up here.
                    if ArchiveKind::from_filename(&name).is_some() {
                        problems.push(Problem::new(
                            &path,
                            ProblemKind::Unreadable,
                            format!("{e}; skipped"),
                        ));
                    }
                    continue;
                }
            };
            if md.is_dir() {
                if !is_out && (md.dev(), md.ino()) == *out_id {
                    log::debug!("{}: is the mirror itself, not scanning it", path.display());
                    continue;
                }
                subdirs.push(path);
            } else if md.is_file() {
                if let Some(kind) = ArchiveKind::from_filename(&name) {
                    found.push(Candidate {
                        path,
                        filename: name,
                        kind,
                        stamp: Stamp::of(&md),
                    });
                }
            }
        }
        // Reverse so the stack pops them in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
}

/// Read one candidate: hash it, extract metadata, derive the project name.
fn process(c: &Candidate) -> Result<Processed, Problem> {
    let unreadable =
        |e: io::Error| Problem::new(&c.path, ProblemKind::Unreadable, format!("{e}; skipped"));
    let Some((_, file_name, _)) = name::split_filename(&c.filename) else {
        return Err(Problem::new(
            &c.path,
            ProblemKind::BadFilename,
            match c.kind {
                ArchiveKind::Wheel => "not a valid wheel file name ({name}-{version}-{python}-{abi}-{platform}.whl); skipped",
                _ => "not a valid sdist file name ({name}-{version}.tar.gz|.zip); skipped",
            },
        ));
    };
    let mut file = fs::File::open(&c.path).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len();
    let (sha256, meta) = if size <= SLURP_LIMIT {
        let mut buf = Vec::with_capacity(size as usize);
        file.read_to_end(&mut buf).map_err(unreadable)?;
        let sha = sha256_hex(&buf);
        (
            sha,
            metadata::archive_metadata(c.kind, Cursor::new(buf), &c.filename),
        )
    } else {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(unreadable)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let sha = hex(&hasher.finalize());
        file.rewind().map_err(unreadable)?;
        (
            sha,
            metadata::archive_metadata(c.kind, io::BufReader::new(file), &c.filename),
        )
    };
    let meta = meta.map_err(|e| match e {
        metadata::MetadataError::Io(e) => unreadable(e),
        e => Problem::new(&c.path, ProblemKind::BrokenArchive, format!("{e}; skipped")),
    })?;
    let core = meta.as_deref().map(metadata::parse).unwrap_or_default();
    if meta.is_none() {
        log::debug!(
            "{}: no PKG-INFO, taking the project name from the file name",
            c.path.display()
        );
    }
    let raw = core.name.as_deref().unwrap_or(file_name);
    let project = name::normalize_checked(raw)
        .map_err(|e| Problem::new(&c.path, ProblemKind::InvalidName, format!("{e}; skipped")))?;
    if name::normalize(file_name) != project {
        log::warn!(
            "{}: metadata names the project {raw:?} but the file name says {file_name:?}; indexed under {project}, where installers may ignore it",
            c.path.display()
        );
    }
    Ok(Processed {
        sha256,
        project,
        requires_python: core.requires_python,
        core_metadata: if c.kind.is_wheel() { meta } else { None },
    })
}

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Map `f` over `items` on up to `jobs` threads, keeping order. Small inputs
/// run inline: thread start-up would cost more than the work.
fn par_map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let jobs = jobs.min(items.len() / 16).max(1);
    if jobs == 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut parts: Vec<Vec<(usize, R)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, f(item)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut all: Vec<(usize, R)> = parts.drain(..).flatten().collect();
    all.sort_unstable_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// Debug-level timing of the phases of a run (`-v`), for performance work.
struct PhaseTimer(Instant);

impl PhaseTimer {
    fn new() -> Self {
        Self(Instant::now())
    }

    fn done(&mut self, what: &str) {
        log::debug!("phase {what}: {:.1?}", self.0.elapsed());
        self.0 = Instant::now();
    }
}

/// The bar of the run in progress, if any, for [`suspend_progress`].
static ACTIVE_BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Run `f` (typically: print a log line) with the progress bar of a running
/// build hidden, so the line does not get mixed into the bar. The CLI's
/// logger routes every record through this.
pub fn suspend_progress<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE_BAR.lock().ok().and_then(|g| g.clone());
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// A progress bar that stays hidden unless the run turns out to be long:
/// short runs (the common incremental case) print nothing.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    shown: std::sync::atomic::AtomicBool,
}

impl Progress {
    const DELAY: Duration = Duration::from_millis(500);

    fn new(enabled: bool) -> Self {
        let bar = enabled.then(|| {
            let bar = indicatif::ProgressBar::hidden();
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{msg:>9} [{bar:30}] {pos}/{len} ({eta})")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            if let Ok(mut active) = ACTIVE_BAR.lock() {
                *active = Some(bar.clone());
            }
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            shown: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn start(&self, what: &'static str, len: usize) {
        if let Some(bar) = &self.bar {
            // Restart position and ETA estimation for the new phase.
            bar.reset();
            bar.set_length(len as u64);
            bar.set_message(what);
        }
    }

    fn inc(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if !self.shown.load(Ordering::Relaxed) && self.started.elapsed() > Self::DELAY {
                self.shown.store(true, Ordering::Relaxed);
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            if let Ok(mut active) = ACTIVE_BAR.lock() {
                *active = None;
            }
        }
    }
}
