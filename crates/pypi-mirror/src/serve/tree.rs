//! What the mirror tree holds, as `serve` sees it: the state log followed
//! as it grows (one `stat` per request, the new records read when it
//! changed), grouped by project with a generation per project, so a page is
//! rendered again only when its own project's files changed.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::index::FileEntry;
use crate::state::{self, Entry, State};

/// The tree's files of one project, in file-name order, and when they last
/// changed.
#[derive(Debug, Clone, Default)]
pub struct ProjectFiles {
    /// Bumped whenever the project's records change.
    pub generation: u64,
    /// Its state records.
    pub entries: Vec<Entry>,
}

impl ProjectFiles {
    /// The entries as page entries.
    pub fn listed(&self) -> Vec<FileEntry> {
        self.entries.iter().map(FileEntry::from_state).collect()
    }

    /// Where the project's files came from, if `serve` recorded any.
    pub fn origin(&self) -> Option<&str> {
        self.entries
            .iter()
            .find_map(|e| e.listing.origin.as_deref())
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// (dev, ino, size) of the log when last read.
    seen: Option<(u64, u64, u64)>,
    /// Bytes of the log consumed (header included).
    offset: u64,
    state: State,
    projects: HashMap<String, Arc<ProjectFiles>>,
    tick: u64,
}

/// The state log of a tree, followed.
#[derive(Debug)]
pub struct TreeView {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl TreeView {
    /// The view of the tree whose state log is `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The files of `project`, after catching up with the log (shared, not
    /// copied: this is on every request's path). A log that cannot be read
    /// leaves the last view in place (with a debug line): serving what was
    /// known beats serving nothing.
    pub fn project(&self, project: &str) -> Arc<ProjectFiles> {
        let Ok(mut inner) = self.inner.lock() else {
            return Arc::default();
        };
        if let Err(e) = self.catch_up(&mut inner) {
            log::debug!("{}: {e}", self.path.display());
        }
        inner.projects.get(project).cloned().unwrap_or_default()
    }

    /// Every project with files in the tree.
    pub fn project_names(&self) -> Vec<String> {
        let Ok(mut inner) = self.inner.lock() else {
            return Vec::new();
        };
        if let Err(e) = self.catch_up(&mut inner) {
            log::debug!("{}: {e}", self.path.display());
        }
        inner.projects.keys().cloned().collect()
    }

    fn catch_up(&self, inner: &mut Inner) -> io::Result<()> {
        let md = match fs::metadata(&self.path) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if inner.seen.is_some() {
                    *inner = Inner {
                        tick: inner.tick,
                        ..Inner::default()
                    };
                    regroup(inner, BTreeMap::new());
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let now = (md.dev(), md.ino(), md.size());
        if inner.seen == Some(now) {
            return Ok(());
        }
        let same_file = inner
            .seen
            .is_some_and(|(dev, ino, _)| (dev, ino) == (now.0, now.1) && now.2 >= inner.offset);
        let mut f = fs::File::open(&self.path)?;
        let mut data = Vec::new();
        if same_file {
            // Appended to: read the new records only.
            f.seek(SeekFrom::Start(inner.offset))?;
            f.read_to_end(&mut data)?;
            let used = inner.state.replay(&data);
            inner.offset += used as u64;
        } else {
            // New, or rewritten (compacted): read it all.
            f.read_to_end(&mut data)?;
            let mut fresh = State::default();
            let header = data.len() - state::body_of(&data).map_or(data.len(), <[u8]>::len);
            let used = state::body_of(&data).map_or(0, |b| fresh.replay(b));
            inner.state = fresh;
            inner.offset = (header + used) as u64;
        }
        inner.seen = Some((now.0, now.1, inner.offset));
        let entries = inner.state.entries.clone();
        regroup(inner, entries);
        Ok(())
    }
}

/// Group `entries` by project, bumping the generation of each project
/// whose records changed.
fn regroup(inner: &mut Inner, entries: BTreeMap<String, Entry>) {
    let mut grouped: HashMap<String, Vec<Entry>> = HashMap::new();
    for e in entries.into_values() {
        grouped.entry(e.project.clone()).or_default().push(e);
    }
    inner.tick += 1;
    let tick = inner.tick;
    inner
        .projects
        .retain(|p, _| grouped.contains_key(p.as_str()));
    for (project, list) in grouped {
        let slot = inner.projects.entry(project).or_default();
        if slot.entries != list || slot.generation == 0 {
            *slot = Arc::new(ProjectFiles {
                generation: tick,
                entries: list,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Listing, Record, Stamp};

    fn entry(project: &str, version: &str) -> Entry {
        Entry {
            filename: format!("{project}-{version}-py3-none-any.whl"),
            project: project.to_owned(),
            sha256: "00".repeat(32),
            stamp: Stamp {
                dev: 1,
                ino: 2,
                size: 3,
                mtime: 4,
                mtime_nsec: 5,
            },
            metadata_sha256: None,
            requires_python: None,
            source: PathBuf::from("/src"),
            recorded: true,
            listing: Listing::default(),
        }
    }

    #[test]
    fn follows_appends_and_rewrites_and_bumps_only_changed_projects() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("state");
        let view = TreeView::new(log.clone());
        assert!(view.project("a").entries.is_empty());
        let (a1, b1) = (entry("a", "1.0"), entry("b", "1.0"));
        state::append(&log, &[Record::Put(&a1), Record::Put(&b1)]).unwrap();
        let (pa, pb) = (view.project("a"), view.project("b"));
        assert_eq!(pa.entries, std::slice::from_ref(&a1));
        // A torn last line is not read, then read once complete.
        let a2 = entry("a", "2.0");
        let mut line = state::render([&a2]);
        line.drain(..line.iter().position(|&b| b == b'\n').unwrap() + 1);
        let (head, tail) = line.split_at(10);
        let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
        io::Write::write_all(&mut f, head).unwrap();
        assert_eq!(view.project("a").entries.len(), 1);
        io::Write::write_all(&mut f, tail).unwrap();
        let (pa2, pb2) = (view.project("a"), view.project("b"));
        assert_eq!(pa2.entries, [a1.clone(), a2.clone()]);
        assert!(pa2.generation > pa.generation);
        assert_eq!(pb2.generation, pb.generation);
        // A compacted log is a new file: same records, same view.
        let tmp = log.with_extension("tmp");
        fs::write(&tmp, state::render([&a1, &a2, &b1])).unwrap();
        fs::rename(&tmp, &log).unwrap();
        assert_eq!(view.project("a").entries, pa2.entries);
        assert_eq!(view.project("a").generation, pa2.generation);
        state::append(&log, &[Record::Delete(&b1.filename)]).unwrap();
        assert!(view.project("b").entries.is_empty());
        assert_eq!(view.project_names(), ["a"]);
    }
}
