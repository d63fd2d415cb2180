//! What the caller asks for: the options of a full build and of an `add`.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::state::Listing;

/// Options of a full (re)build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Directories to index (recursively; hidden entries are skipped). Empty
    /// means the mirror directory itself, i.e. re-index what is already there
    /// plus any archive dropped into it.
    pub from: Vec<PathBuf>,
    /// The mirror directory (created if missing).
    pub out: PathBuf,
    /// Remove files from the mirror that none of the sources has any more,
    /// except recorded ones (see [`AddOptions::recorded`]). Nothing is
    /// removed when the run skipped a file or could not read a source: the
    /// report lists what would have gone in
    /// [`prune_withheld`](crate::Report::prune_withheld).
    pub prune: bool,
    /// With `prune`, remove recorded files too.
    pub prune_recorded: bool,
    /// Change nothing: read the sources and report what the run would add,
    /// update and remove.
    pub dry_run: bool,
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
            prune_recorded: false,
            dry_run: false,
            progress: false,
            jobs: 0,
        }
    }
}

/// Options of an incremental `add`.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// The mirror directory (created if missing).
    pub out: PathBuf,
    /// Archives to add.
    pub files: Vec<PathBuf>,
    /// Mark the files as recorded: kept into the mirror by a tool such as a
    /// caching proxy, maybe fetchable nowhere else. A later `build --prune`
    /// keeps them unless [`BuildOptions::prune_recorded`] is set. The mark
    /// stays with the file name for as long as the mirror serves it.
    pub recorded: bool,
    /// See [`BuildOptions::dry_run`].
    pub dry_run: bool,
    /// See [`BuildOptions::progress`].
    pub progress: bool,
    /// See [`BuildOptions::jobs`].
    pub jobs: usize,
    /// What an index page said of some of the files, by the path given in
    /// `files`: recorded with them, and the project they were listed under
    /// checked.
    pub listed: HashMap<PathBuf, Listed>,
}

/// What an index page said of a file given to `add`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    /// The normalized project whose page listed the file: a file that
    /// belongs to another project is refused, never filed under its own.
    pub project: String,
    /// The page's `Requires-Python`, which then beats the metadata's (what
    /// clients saw is what the tree's page says).
    pub requires_python: Option<String>,
    /// Yanked mark, upload time, origin.
    pub listing: Listing,
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
            recorded: false,
            dry_run: false,
            progress: false,
            jobs: 0,
            listed: HashMap::new(),
        }
    }
}
