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
    /// The file name names another project than the metadata does, so pip
    /// would not take the file for a release of either.
    NameMismatch,
    /// The file was listed under another project than the one it belongs
    /// to (`add` of a file an index page listed).
    WrongProject,
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
    /// The offending file (or directory), as the caller spelled it.
    pub path: PathBuf,
    /// Category, for programs and tests.
    pub kind: ProblemKind,
    /// Human-readable reason.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", Shown(&self.path), self.message)
    }
}

/// A path as the user gave it; an empty one shows as `""` rather than as
/// nothing at all.
struct Shown<'a>(&'a Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.as_os_str().is_empty() {
            f.write_str("\"\"")
        } else {
            self.0.display().fmt(f)
        }
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
    /// File names removed (`--prune`), or dropped from the index because
    /// their tree copy went missing.
    pub removed: Vec<String>,
    /// File names `--prune` would have removed but kept, because the run
    /// skipped a file or could not read a source: an unreadable source must
    /// not look like one whose files were deleted.
    pub prune_withheld: Vec<String>,
    /// Recorded file names that no source has, kept by `--prune` (see
    /// [`BuildOptions::prune_recorded`](super::BuildOptions::prune_recorded)).
    pub kept_recorded: Vec<String>,
    /// Nothing was changed: the report tells what the run would have done.
    pub dry_run: bool,
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
    /// The mirror directory cannot be created.
    #[error("{}: cannot create the mirror directory: {source}", path.display())]
    CannotCreate {
        /// The mirror directory, as given.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The mirror directory cannot be written (its state or lock file).
    #[error("{}: cannot write to the mirror directory: {source}", path.display())]
    Unwritable {
        /// The mirror directory, as given.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A source directory cannot be read (missing, not a directory, ...).
    #[error("{}: cannot read the source directory: {source}", path.display())]
    Source {
        /// The source directory, as given.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// An empty path was given for the mirror or a source directory.
    #[error("empty path given for the {0}")]
    EmptyPath(&'static str),
}

/// `map_err` adapter naming the path an I/O error happened on.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}
