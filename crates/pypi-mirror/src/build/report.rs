//! What a run tells its caller: the report, the skipped files and why, and
//! the errors that stop a run.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

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
    /// A problem with `path`. Not logged here: the run logs problems as it
    /// collects them, so the planning code that finds some stays free of
    /// side effects.
    pub(crate) fn new(path: &Path, kind: ProblemKind, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            kind,
            message: message.into(),
        }
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

/// `map_err` adapter naming the path an I/O error happened on.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}
