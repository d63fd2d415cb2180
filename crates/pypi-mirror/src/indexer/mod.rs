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

use std::collections::HashMap;
use std::fs;
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

pub use options::{AddOptions, BuildOptions, Listed};
pub use progress::suspend_progress;
pub use read::sha256_hex;
pub use report::{Error, Problem, ProblemKind, Report};

use plan::{Mode, Prune};
use report::io_err;
use run::{Access, Run};
use scan::GivenPath;

/// Directory inside the mirror that holds the state log and lock file.
pub const STATE_DIR: &str = ".pypi-mirror";

/// Index every wheel and sdist under `opts.from` into the PEP 503 tree at
/// `opts.out`, touching only what changed since the last run.
///
/// Paths that cannot work (an empty path, a source directory that cannot
/// be read, a mirror directory that cannot be created) are errors found
/// before anything is changed.
pub fn build(opts: &BuildOptions) -> Result<Report, Error> {
    let out = given(&opts.out, "mirror directory")?;
    let roots: Vec<GivenPath> = opts
        .from
        .iter()
        .map(|p| source_dir(p))
        .collect::<Result<_, _>>()?;
    let run = Run::open(&opts.out, access(opts.jobs, opts.progress, opts.dry_run))?;
    let mut candidates = Vec::new();
    let mut problems = Vec::new();
    if roots.is_empty() {
        // Re-index the mirror itself, if there is one yet (a dry run does
        // not create it).
        if run.out_id.is_some() {
            scan::scan_dir(&out, run.out_id, &mut candidates, &mut problems);
        }
    }
    for root in &roots {
        scan::scan_dir(root, run.out_id, &mut candidates, &mut problems);
    }
    let prune = match (opts.prune, opts.prune_recorded) {
        (false, _) => Prune::Off,
        (true, false) => Prune::Unrecorded,
        (true, true) => Prune::All,
    };
    let mut report = run.execute(candidates, Mode::Build { prune }, problems, &HashMap::new())?;
    report.dry_run = opts.dry_run;
    Ok(report)
}

/// Add `files` to the mirror at `out` (see [`add_with`]).
pub fn add(out: &Path, files: &[PathBuf]) -> Result<Report, Error> {
    add_with(&AddOptions::new(out, files.iter().cloned()))
}

/// Add individual archives, rewriting only the pages of their projects (and
/// the root page if a project is new). A given path that is not an archive
/// file is a problem, not an error; when no path is usable, nothing is
/// changed (the mirror is not even created).
pub fn add_with(opts: &AddOptions) -> Result<Report, Error> {
    given(&opts.out, "mirror directory")?;
    let files: Vec<GivenPath> = opts
        .files
        .iter()
        .map(|p| {
            // An empty path becomes a "not a file name" problem.
            let absolute = if p.as_os_str().is_empty() {
                PathBuf::new()
            } else {
                std::path::absolute(p).map_err(io_err(p))?
            };
            Ok(GivenPath {
                absolute,
                given: p.clone(),
            })
        })
        .collect::<Result<_, Error>>()?;
    let listed: HashMap<PathBuf, Listed> = files
        .iter()
        .filter_map(|g| Some((g.absolute.clone(), opts.listed.get(&g.given)?.clone())))
        .collect();
    let mut candidates = Vec::new();
    let mut problems = Vec::new();
    scan::given_files(&files, &mut candidates, &mut problems);
    let read_only = opts.dry_run || candidates.is_empty();
    let run = Run::open(&opts.out, access(opts.jobs, opts.progress, read_only))?;
    let mode = Mode::Add {
        recorded: opts.recorded,
    };
    let mut report = run.execute(candidates, mode, problems, &listed)?;
    report.dry_run = opts.dry_run;
    if read_only && !opts.dry_run {
        // Nothing to add: the read-only plan's would-be pages (a missing
        // root page) were not written.
        report.pages_written.clear();
        report.root_written = false;
    }
    Ok(report)
}

/// Record what an index now says of files the mirror holds (their yanked
/// mark, `Requires-Python`, upload time), rewriting the pages of their
/// projects: `serve` keeps the tree's pages saying what upstream says, so
/// the next offline build sees a yank. Files the mirror does not hold, or
/// holds under another project, are left alone. Returns how many records
/// changed.
pub fn relist(
    out: &Path,
    project: &str,
    changes: &[crate::index::Relisting],
) -> Result<usize, Error> {
    given(out, "mirror directory")?;
    let run = Run::open(out, access(1, false, false))?;
    run.relist(project, changes)
}

fn access(jobs: usize, progress: bool, read_only: bool) -> Access {
    Access {
        jobs,
        progress,
        read_only,
    }
}

/// `path` and its absolute form: the state records absolute source paths,
/// so they mean the same thing whichever directory the next run starts
/// from, while messages use the caller's spelling.
fn given(path: &Path, what: &'static str) -> Result<GivenPath, Error> {
    if path.as_os_str().is_empty() {
        return Err(Error::EmptyPath(what));
    }
    Ok(GivenPath {
        absolute: std::path::absolute(path).map_err(io_err(path))?,
        given: path.to_owned(),
    })
}

/// A `--from` directory, checked readable up front: a mistyped one must
/// stop the run before it changes anything, not look like an empty source.
fn source_dir(path: &Path) -> Result<GivenPath, Error> {
    let dir = given(path, "source directory")?;
    fs::read_dir(&dir.absolute).map_err(|source| Error::Source {
        path: path.to_owned(),
        source,
    })?;
    Ok(dir)
}
