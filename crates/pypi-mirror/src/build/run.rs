//! One run on one mirror: take the lock, load the state, then go through
//! the phases (check the tree, read, plan, place, publish, log the state).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};

use super::apply::{self, Tree};
use super::parallel::par_map;
use super::plan::{self, Mode, ReadResults, Why};
use super::progress::{PhaseTimer, Progress};
use super::read::{self, Processed};
use super::report::{io_err, Error, Problem, Report};
use super::scan::Candidate;
use super::STATE_DIR;
use crate::fsutil;
use crate::state::State;

/// An open mirror: locked against other runs, its state loaded.
pub(crate) struct Run {
    pub out: PathBuf,
    /// (device, inode) of the mirror directory, to recognise it in a scan.
    pub out_id: (u64, u64),
    state_path: PathBuf,
    state: State,
    jobs: usize,
    progress: bool,
    // Held for the whole run; released on drop.
    _lock: Flock<fs::File>,
}

impl Run {
    pub(crate) fn open(out: &Path, jobs: usize, progress: bool) -> Result<Self, Error> {
        match fs::metadata(out) {
            Ok(md) if !md.is_dir() => return Err(Error::NotADirectory(out.to_owned())),
            _ => {}
        }
        let state_dir = out.join(STATE_DIR);
        fs::create_dir_all(&state_dir).map_err(io_err(&state_dir))?;
        let lock = lock(out, &state_dir.join("lock"))?;
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

    /// Index `candidates` into the mirror; `problems` are those found while
    /// collecting them.
    pub(crate) fn execute(
        mut self,
        candidates: Vec<Candidate>,
        mode: Mode,
        mut problems: Vec<Problem>,
    ) -> Result<Report, Error> {
        for p in &problems {
            log::error!("{p}");
        }
        let progress = Progress::new(self.progress);
        let mut phase = PhaseTimer::new();
        let tree = Tree { out: &self.out };
        // Taken, not cloned: `add` must stay cheap on a big mirror.
        let entries = std::mem::take(&mut self.state.entries);
        let groups = plan::group(&candidates);
        let check = plan::entries_to_check(&groups, &entries, mode);
        let facts = tree.facts(&check, &entries, matches!(mode, Mode::Build { .. }));
        let to_read = plan::to_read(&groups, &entries, &facts);
        phase.done("classify");

        progress.start("indexing", to_read.len());
        let read = read_all(&to_read, self.jobs, &progress, &mut problems);
        phase.done("read");

        let mut plan = plan::decide(&groups, &entries, &read, &facts, mode);
        note_all(&mut problems, std::mem::take(&mut plan.problems));
        for d in plan.dropped.iter().filter(|d| d.why == Why::Gone) {
            log::warn!(
                "{}: gone from the mirror tree, dropping it from the index",
                self.out
                    .join(&d.entry.project)
                    .join(&d.entry.filename)
                    .display()
            );
        }
        phase.done("decide");

        let placed = tree.place_all(&plan.placements, self.jobs, &progress)?;
        note_all(&mut problems, placed.problems);
        phase.done("place");

        let outcome = plan::settle(entries, plan, &placed.failed, &facts, mode);
        phase.done("prune+group");
        tree.sync_placed(placed.many)?;
        phase.done("sync");
        let many = tree.publish(&outcome, placed.many, self.jobs)?;
        phase.done("pages");

        apply::save_state(&self.state_path, self.state.records, &outcome, many)?;
        if many {
            fsutil::sync_fs(&self.out).map_err(io_err(&self.out))?;
        }
        phase.done("state+sync");
        progress.finish();

        Ok(Report {
            files: outcome.entries.len(),
            projects: outcome.projects,
            pages_written: outcome.pages.clone(),
            root_written: outcome.write_root,
            hashed: to_read.len(),
            added: outcome.added,
            updated: outcome.updated,
            removed: outcome.deleted,
            unchanged: outcome.unchanged,
            problems,
        })
    }
}

/// Serialise runs on one mirror: two at once would interleave renames and
/// state appends. The second one says why it waits.
fn lock(out: &Path, path: &Path) -> Result<Flock<fs::File>, Error> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    let to_error = |e: nix::errno::Errno| Error::Io {
        path: path.to_owned(),
        source: e.into(),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(l),
        Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
            log::info!(
                "{}: waiting for another pypi-mirror run to finish",
                out.display()
            );
            Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| to_error(e))
        }
        Err((_, e)) => Err(to_error(e)),
    }
}

/// Read `to_read` on `jobs` threads; what fails to read becomes a problem.
fn read_all<'a>(
    to_read: &[&'a Candidate],
    jobs: usize,
    progress: &Progress,
    problems: &mut Vec<Problem>,
) -> ReadResults<'a> {
    let results = par_map(to_read, jobs, |c| {
        let r = read::process(c);
        progress.inc();
        r
    });
    let mut read: HashMap<&Path, Processed> = HashMap::with_capacity(to_read.len());
    for (c, r) in to_read.iter().zip(results) {
        match r {
            Ok(p) => {
                read.insert(c.path.as_path(), p);
            }
            Err(p) => note(problems, p),
        }
    }
    read
}

/// Record a problem, printing it as it is found.
fn note(problems: &mut Vec<Problem>, p: Problem) {
    log::error!("{p}");
    problems.push(p);
}

fn note_all(problems: &mut Vec<Problem>, ps: impl IntoIterator<Item = Problem>) {
    for p in ps {
        note(problems, p);
    }
}
