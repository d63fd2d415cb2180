//! Write-ahead journal of every change a hook makes to the image, so any change can be undone.
//!
//! Each step is appended (and fsynced) *before* it is carried out. A hook
//! killed at any point therefore leaves a journal that names everything it
//! may have done; undoing a step that never happened is a no-op. A torn last
//! line (killed mid-append) belongs to a step that was never started and is
//! ignored (and cut off before the next step is appended).
//!
//! Undoing is journaled too: once a step is undone, an `undone <n>` line
//! says so, and a later undo skips it. Without that, an undo killed after
//! putting an original back would, when run again, take the original for
//! the file we created in its place and delete it.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout::is_clean_absolute;
use crate::rootfs::Root;

/// First line of every journal. A journal lives for one build, so there
/// is one format; a different header is not ours.
pub const MAGIC: &str = "dib-pypi journal";

/// A journal bigger than this is not ours (it lists a handful of steps).
const LIMIT: u64 = 16 << 20;

/// One recorded step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// We created this directory.
    Mkdir(PathBuf),
    /// We created this file (it did not exist before).
    Create(PathBuf),
    /// We moved the original `path` to `backup`.
    Backup { path: PathBuf, backup: PathBuf },
    /// We bind-mounted the mirror on this directory.
    Mount(PathBuf),
}

impl Op {
    fn encode(&self) -> String {
        match self {
            Op::Mkdir(p) => format!("mkdir {}", encode_path(p)),
            Op::Create(p) => format!("create {}", encode_path(p)),
            Op::Backup { path, backup } => {
                format!("backup {} {}", encode_path(path), encode_path(backup))
            }
            Op::Mount(p) => format!("mount {}", encode_path(p)),
        }
    }

    fn decode(line: &str) -> Option<Op> {
        let mut words = line.split(' ');
        let op = match (words.next()?, words.next(), words.next()) {
            ("mkdir", Some(p), None) => Op::Mkdir(decode_path(p)?),
            ("create", Some(p), None) => Op::Create(decode_path(p)?),
            ("mount", Some(p), None) => Op::Mount(decode_path(p)?),
            ("backup", Some(p), Some(b)) => Op::Backup {
                path: decode_path(p)?,
                backup: decode_path(b)?,
            },
            _ => return None,
        };
        words.next().is_none().then_some(op)
    }

    /// Every path the step names.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            Op::Mkdir(p) | Op::Create(p) | Op::Mount(p) => vec![p],
            Op::Backup { path, backup } => vec![path, backup],
        }
    }
}

/// Paths are written with every byte outside printable ASCII (and `%` and
/// space) percent-encoded, so any file name survives a line-based format.
fn encode_path(path: &Path) -> String {
    let mut out = Vec::new();
    dib_pypi_common::escape::escape_into(
        path.as_os_str().as_bytes(),
        |b| b.is_ascii_graphic(),
        &mut out,
    );
    // Every byte left unescaped is printable ASCII.
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_path(text: &str) -> Option<PathBuf> {
    let bytes = dib_pypi_common::escape::unescape(text.as_bytes())?.into_owned();
    let path = PathBuf::from(OsString::from_vec(bytes));
    is_clean_absolute(&path).then_some(path)
}

/// An append-only journal file inside the image.
#[derive(Debug)]
pub struct Journal<'r> {
    root: &'r Root,
    path: PathBuf,
}

impl<'r> Journal<'r> {
    /// A journal at in-image path `path`; nothing is written until
    /// [`Journal::record`].
    pub fn new(root: &'r Root, path: &Path) -> Self {
        Journal {
            root,
            path: path.to_path_buf(),
        }
    }

    /// In-image path of the journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Durably append `op` (creating the journal with its header first).
    pub fn record(&self, op: &Op) -> Result<()> {
        self.append_line(&op.encode())
    }

    /// Durably record that step `index` (0-based, as in [`Journal::pending`])
    /// has been undone.
    pub fn mark_undone(&self, index: usize) -> Result<()> {
        self.append_line(&format!("undone {index}"))
    }

    fn append_line(&self, text: &str) -> Result<()> {
        let mut line = String::new();
        match self.root.read(&self.path, LIMIT)? {
            None => line.push_str(MAGIC),
            Some(bytes) => {
                if bytes.len() as u64 >= LIMIT {
                    return Err(self.bad(0, "too large to be a journal"));
                }
                // A last line without its newline is a step that was never
                // started (the append was killed): cut it off, or the new
                // line would be glued to it.
                let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                if complete < bytes.len() {
                    self.root.truncate(&self.path, complete as u64)?;
                }
                if complete == 0 {
                    line.push_str(MAGIC);
                }
            }
        }
        let new_file = !line.is_empty();
        if new_file {
            line.push('\n');
        }
        line.push_str(text);
        line.push('\n');
        self.root.append(&self.path, line.as_bytes())?;
        if new_file {
            // The journal's own directory entry must survive a crash too.
            self.root
                .sync_dir(self.path.parent().unwrap_or(Path::new("/")))?;
        }
        Ok(())
    }

    fn bad(&self, line: usize, reason: impl Into<String>) -> Error {
        Error::Journal {
            path: self.root.host_path(&self.path),
            line,
            reason: reason.into(),
        }
    }

    /// Every recorded step with whether it was undone since, or `None`
    /// when there is no journal.
    fn entries(&self) -> Result<Option<Vec<(Op, bool)>>> {
        let Some(bytes) = self.root.read(&self.path, LIMIT)? else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes).map_err(|_| self.bad(0, "not UTF-8"))?;
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        let mut lines = complete.split('\n').enumerate();
        match lines.next() {
            Some((_, MAGIC)) => {}
            // Killed while writing the header: no step was started.
            Some((_, "")) if complete.is_empty() => return Ok(Some(Vec::new())),
            _ => return Err(self.bad(1, format!("not a journal (expected {MAGIC:?})"))),
        }
        let mut entries: Vec<(Op, bool)> = Vec::new();
        for (n, line) in lines {
            if let Some(index) = line.strip_prefix("undone ") {
                let entry = index
                    .parse::<usize>()
                    .ok()
                    .filter(|i| index == i.to_string())
                    .and_then(|i| entries.get_mut(i));
                match entry {
                    Some(entry) => entry.1 = true,
                    None => return Err(self.bad(n + 1, "undone mark of no step")),
                }
            } else {
                let op = Op::decode(line).ok_or_else(|| self.bad(n + 1, "unreadable step"))?;
                entries.push((op, false));
            }
        }
        Ok(Some(entries))
    }

    /// The recorded steps in order (undone or not), or `None` when there is
    /// no journal.
    pub fn read(&self) -> Result<Option<Vec<Op>>> {
        Ok(self
            .entries()?
            .map(|e| e.into_iter().map(|(op, _)| op).collect()))
    }

    /// The steps not undone yet, with their index, in order; `None` when
    /// there is no journal.
    pub fn pending(&self) -> Result<Option<Vec<(usize, Op)>>> {
        Ok(self.entries()?.map(|e| {
            e.into_iter()
                .enumerate()
                .filter(|(_, (_, undone))| !undone)
                .map(|(i, (op, _))| (i, op))
                .collect()
        }))
    }

    /// Delete the journal file (after everything in it was undone).
    pub fn remove(&self) -> Result<()> {
        self.root.unlink(&self.path).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_including_odd_bytes() {
        let odd = PathBuf::from(OsString::from_vec(b"/root/a b%\n\xff".to_vec()));
        for op in [
            Op::Mkdir("/root/.pip".into()),
            Op::Create(odd.clone()),
            Op::Backup {
                path: odd.clone(),
                backup: "/x.orig".into(),
            },
            Op::Mount("/tmp/pypi".into()),
        ] {
            let line = op.encode();
            assert!(!line.contains('\n'));
            assert_eq!(Op::decode(&line), Some(op));
        }
    }

    #[test]
    fn decode_rejects_relative_and_dotdot_paths() {
        assert_eq!(Op::decode("mkdir root"), None);
        assert_eq!(Op::decode("mkdir /root/../etc"), None);
        assert_eq!(Op::decode("create /a /b"), None);
        assert_eq!(Op::decode("rm /a"), None);
    }

    #[test]
    fn torn_last_line_is_ignored_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let j = Journal::new(&root, Path::new("/s/j"));
        assert_eq!(j.read().unwrap(), None);
        j.record(&Op::Mkdir("/a".into())).unwrap();
        j.record(&Op::Create("/a/f".into())).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("s/j"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"create /a/g"))
            .unwrap();
        assert_eq!(
            j.read().unwrap().unwrap(),
            vec![Op::Mkdir("/a".into()), Op::Create("/a/f".into())]
        );
        std::fs::write(dir.path().join("s/j"), "hello\n").unwrap();
        let e = j.read().unwrap_err().to_string();
        assert!(
            e.ends_with("s/j:1: not a journal (expected \"dib-pypi journal\")"),
            "{e}"
        );
        std::fs::write(dir.path().join("s/j"), "dib-").unwrap();
        assert_eq!(j.read().unwrap(), Some(vec![]));
    }

    #[test]
    fn a_torn_line_is_cut_off_before_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let j = Journal::new(&root, Path::new("/s/j"));
        // Killed mid-header, then the hook runs again.
        std::fs::write(dir.path().join("s/j"), "dib-pypi jou").unwrap();
        j.record(&Op::Mkdir("/a".into())).unwrap();
        // Killed mid-step, then the hook runs again.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("s/j"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"create /a/"))
            .unwrap();
        j.record(&Op::Create("/a/f".into())).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("s/j")).unwrap(),
            format!("{MAGIC}\nmkdir /a\ncreate /a/f\n")
        );
    }

    #[test]
    fn undone_marks_hide_steps_from_pending() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let j = Journal::new(&root, Path::new("/j"));
        assert_eq!(j.pending().unwrap(), None);
        j.record(&Op::Mkdir("/a".into())).unwrap();
        j.record(&Op::Create("/a/f".into())).unwrap();
        j.mark_undone(1).unwrap();
        assert_eq!(
            j.pending().unwrap().unwrap(),
            vec![(0, Op::Mkdir("/a".into()))]
        );
        assert_eq!(j.read().unwrap().unwrap().len(), 2);
        // A mark of a step that does not exist (or not yet) is corruption.
        std::fs::write(
            dir.path().join("j"),
            format!("{MAGIC}\nundone 0\nmkdir /a\n"),
        )
        .unwrap();
        assert!(j
            .pending()
            .unwrap_err()
            .to_string()
            .ends_with("j:2: undone mark of no step"));
    }
}
