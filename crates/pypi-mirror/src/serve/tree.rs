//! What the mirror tree holds, as `serve` sees it: the state log followed
//! as it grows (one `stat` per request, the new records read when it
//! changed), grouped by project with a generation per project, so a page is
//! rendered again only when its own project's files changed.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

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
    projects: HashMap<String, ProjectFiles>,
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

    /// The files of `project`, after catching up with the log. A log that
    /// cannot be read leaves the last view in place (with a debug line):
    /// serving what was known beats serving nothing.
    pub fn project(&self, project: &str) -> ProjectFiles {
        let Ok(mut inner) = self.inner.lock() else {
            return ProjectFiles::default();
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
            slot.entries = list;
            slot.generation = tick;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn add(out: &Path, src: &Path, name: &str, version: &str) {
        let f = crate::synth::write_wheel(src, name, version).unwrap();
        crate::add(out, &[f]).unwrap();
    }

    #[test]
    fn follows_appends_and_rewrites_and_bumps_only_changed_projects() {
        let dir = tempfile::tempdir().unwrap();
        let (out, src) = (dir.path().join("out"), dir.path().join("src"));
        fs::create_dir_all(&src).unwrap();
        let view = TreeView::new(out.join(crate::STATE_DIR).join("state"));
        assert!(view.project("a").entries.is_empty());
        add(&out, &src, "a", "1.0");
        add(&out, &src, "b", "1.0");
        let (a1, b1) = (view.project("a"), view.project("b"));
        assert_eq!(a1.entries.len(), 1);
        add(&out, &src, "a", "2.0");
        let (a2, b2) = (view.project("a"), view.project("b"));
        assert_eq!(a2.entries.len(), 2);
        assert!(a2.generation > a1.generation);
        assert_eq!(b2.generation, b1.generation);
        // A compacted log is a new file: same records, same view.
        let log = out.join(crate::STATE_DIR).join("state");
        let state = State::load(&log).unwrap();
        assert_eq!(state.entries.len(), 3);
        let tmp = log.with_extension("tmp");
        fs::write(&tmp, state::render(state.entries.values())).unwrap();
        fs::rename(&tmp, &log).unwrap();
        assert_eq!(view.project("a").entries, a2.entries);
        assert_eq!(view.project("a").generation, a2.generation);
        let mut names = view.project_names();
        names.sort();
        assert_eq!(names, ["a", "b"]);
    }
}
