//! The indexer: scan sources, hash and read metadata of new or changed files,
//! place them in the tree, and rewrite only the pages that changed.
//!
//! A run goes through these modules in order:
//!
//! - `scan` finds the candidates: it walks the `--from` directories, or
//!   checks the files given to `add`;
//! - `read` hashes the new or changed ones and reads their metadata;
//! - `plan` decides, without any I/O, what to place, drop and rewrite;
//! - `apply` places files, publishes pages (each after the files it links
//!   to), deletes what no page links to any more, and logs the state;
//! - `run` ties them together under the mirror's lock, and `progress`
//!   shows how far it got.

use std::path::{Path, PathBuf};

mod apply;
mod options;
mod parallel;
mod plan;
mod progress;
mod read;
mod report;
mod run;
mod scan;

pub use options::{AddOptions, BuildOptions};
pub use progress::suspend_progress;
pub use read::sha256_hex;
pub use report::{Error, Problem, ProblemKind, Report};

use plan::Mode;
use report::io_err;
use run::Run;

/// Directory inside the mirror that holds the state log and lock file.
pub const STATE_DIR: &str = ".pypi-mirror";

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
        scan::scan_dir(root, &run.out_id, &mut candidates, &mut problems);
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
    let files: Vec<PathBuf> = opts
        .files
        .iter()
        .map(|p| absolute(p))
        .collect::<Result<_, _>>()?;
    let mut candidates = Vec::new();
    scan::given_files(&files, &mut candidates, &mut problems);
    run.execute(candidates, Mode::Add, problems)
}

fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(p).map_err(io_err(p))
}
