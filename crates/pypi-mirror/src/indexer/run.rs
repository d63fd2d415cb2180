//! One run on one mirror: take the lock, load the state, then go through
//! the phases (check the tree, read, plan, place, publish, log the state).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};

use super::apply::{self, Placed, Tree};
use super::options::Listed;
use super::parallel::par_map;
use super::plan::{self, Mode, Outcome, ReadResults};
use super::progress::{PhaseTimer, Progress};
use super::read::{self, Processed};
use super::report::{io_err, Error, Problem, Report};
use super::scan::Candidate;
use super::STATE_DIR;
use crate::fsutil;
use crate::state::State;

/// How a run may treat the mirror.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Access {
    pub jobs: usize,
    pub progress: bool,
    /// Change nothing, not even create the mirror directory or its lock.
    pub read_only: bool,
}

/// An open mirror: locked against other runs, its state loaded.
pub(crate) struct Run {
    /// As the caller gave it, so messages name the path the user typed.
    out: PathBuf,
    /// (device, inode) of the mirror directory, to recognise it in a scan;
    /// `None` when it does not exist yet (read-only runs).
    pub out_id: Option<(u64, u64)>,
    state_path: PathBuf,
    state: State,
    jobs: usize,
    progress: bool,
    read_only: bool,
    // Held for the whole run; released on drop.
    _lock: Option<Flock<fs::File>>,
}

impl Run {
    pub(crate) fn open(out: &Path, access: Access) -> Result<Self, Error> {
        let state_dir = out.join(STATE_DIR);
        let lock = if access.read_only {
            open_read_only(out, &state_dir)?
        } else {
            Some(open_writable(out, &state_dir)?)
        };
        let out_id = match fs::metadata(out) {
            Ok(md) => Some((md.dev(), md.ino())),
            Err(e) if access.read_only && e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(out)(e)),
        };
        let state_path = state_dir.join("state");
        let t = Instant::now();
        let state = State::load(&state_path).map_err(io_err(&state_path))?;
        log::debug!(
            "phase load state ({} entries): {:.1?}",
            state.entries.len(),
            t.elapsed()
        );
        let jobs = match access.jobs {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(Self {
            out: out.to_owned(),
            out_id,
            state_path,
            state,
            jobs,
            progress: access.progress,
            read_only: access.read_only,
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
        listed: &HashMap<PathBuf, Listed>,
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
        apply_listed(&mut plan, listed, &mut problems);
        for e in &plan.gone {
            log::warn!(
                "{}: missing or changed in the mirror tree, and no source has it: dropped from the index",
                self.out.join(&e.project).join(&e.filename).display()
            );
        }
        phase.done("decide");

        let placed = if self.read_only {
            Placed::default()
        } else {
            tree.place_all(&plan.placements, self.jobs, &progress)?
        };
        note_all(&mut problems, placed.problems);
        phase.done("place");

        let skipped_any = !problems.is_empty();
        let outcome = plan::settle(entries, plan, &placed.failed, &facts, mode, skipped_any);
        phase.done("prune+group");
        if !self.read_only {
            self.publish(&tree, &outcome, placed.many, &mut phase)?;
        }
        progress.finish();
        Ok(report(outcome, to_read.len(), problems, self.read_only))
    }

    /// Record `changes` to the listing of files of `project` (see
    /// [`super::relist`]); returns how many records changed.
    pub(crate) fn relist(
        mut self,
        project: &str,
        changes: &[crate::index::Relisting],
    ) -> Result<usize, Error> {
        let mut outcome = Outcome {
            entries: std::mem::take(&mut self.state.entries),
            ..Outcome::default()
        };
        for c in changes {
            let Some(e) = outcome.entries.get_mut(&c.filename) else {
                continue;
            };
            if e.project != project {
                continue;
            }
            let before = (e.listing.clone(), e.requires_python.clone());
            e.listing.yanked.clone_from(&c.yanked);
            e.listing.upload_time.clone_from(&c.upload_time);
            e.requires_python.clone_from(&c.requires_python);
            if before != (e.listing.clone(), e.requires_python.clone()) {
                outcome.put.push(e.clone());
            }
        }
        if outcome.put.is_empty() {
            return Ok(0);
        }
        outcome.pages = vec![project.to_owned()];
        outcome.projects = plan::by_project(&outcome.entries).len();
        let tree = Tree { out: &self.out };
        self.publish(&tree, &outcome, false, &mut PhaseTimer::new())?;
        Ok(outcome.put.len())
    }

    /// Make the placed files durable, publish the pages, delete, and log the
    /// state last: if we crash before that, the next run redoes the work.
    fn publish(
        &self,
        tree: &Tree<'_>,
        outcome: &Outcome,
        many: bool,
        phase: &mut PhaseTimer,
    ) -> Result<(), Error> {
        tree.sync_placed(many)?;
        phase.done("sync");
        let many = tree.publish(outcome, many, self.jobs)?;
        phase.done("pages");
        apply::save_state(&self.state_path, self.state.records, outcome, many)?;
        if many {
            fsutil::sync_fs(&self.out).map_err(io_err(&self.out))?;
        }
        phase.done("state+sync");
        Ok(())
    }
}

fn report(outcome: Outcome, hashed: usize, problems: Vec<Problem>, dry_run: bool) -> Report {
    Report {
        files: outcome.entries.len(),
        projects: outcome.projects,
        pages_written: outcome.pages,
        root_written: outcome.write_root,
        hashed,
        added: outcome.added,
        updated: outcome.updated,
        removed: outcome.deleted,
        prune_withheld: outcome.prune_withheld,
        kept_recorded: outcome.kept_recorded,
        unchanged: outcome.unchanged,
        problems,
        dry_run,
    }
}

/// Create the mirror directory and its state directory if need be, and
/// take the lock. Errors name the mirror directory as given.
fn open_writable(out: &Path, state_dir: &Path) -> Result<Flock<fs::File>, Error> {
    if fs::metadata(out).is_ok_and(|md| !md.is_dir()) {
        return Err(Error::NotADirectory(out.to_owned()));
    }
    fs::create_dir_all(out).map_err(|source| Error::CannotCreate {
        path: out.to_owned(),
        source,
    })?;
    let unwritable = |source| Error::Unwritable {
        path: out.to_owned(),
        source,
    };
    fs::create_dir_all(state_dir).map_err(unwritable)?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join("lock"))
        .map_err(unwritable)?;
    lock(
        out,
        file,
        FlockArg::LockExclusiveNonblock,
        FlockArg::LockExclusive,
    )
}

/// Share the lock of an existing mirror, so a writer is not seen half-way;
/// nothing to lock (and nothing created) when there is no mirror yet.
fn open_read_only(out: &Path, state_dir: &Path) -> Result<Option<Flock<fs::File>>, Error> {
    match fs::metadata(out) {
        Ok(md) if !md.is_dir() => return Err(Error::NotADirectory(out.to_owned())),
        _ => {}
    }
    match fs::File::open(state_dir.join("lock")) {
        Ok(file) => lock(
            out,
            file,
            FlockArg::LockSharedNonblock,
            FlockArg::LockShared,
        )
        .map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(out)(e)),
    }
}

/// Serialise runs on one mirror: two at once would interleave renames and
/// state appends. The second one says why it waits.
fn lock(
    out: &Path,
    file: fs::File,
    try_first: FlockArg,
    then_wait: FlockArg,
) -> Result<Flock<fs::File>, Error> {
    let to_error = |e: nix::errno::Errno| Error::Unwritable {
        path: out.to_owned(),
        source: e.into(),
    };
    match Flock::lock(file, try_first) {
        Ok(l) => Ok(l),
        Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
            log::info!(
                "{}: waiting for another pypi-mirror run to finish",
                out.display()
            );
            Flock::lock(f, then_wait).map_err(|(_, e)| to_error(e))
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

/// Check the files an index page listed against the project it listed
/// them under, and record what it said of them. A file that belongs to
/// another project is refused: a page of one project must not put files on
/// another's.
fn apply_listed(
    plan: &mut plan::Plan<'_>,
    listed: &HashMap<PathBuf, Listed>,
    problems: &mut Vec<Problem>,
) {
    if listed.is_empty() {
        return;
    }
    plan.placements.retain_mut(|p| {
        let Some(l) = listed.get(&p.source.path) else {
            return true;
        };
        if p.entry.project != l.project {
            note(
                problems,
                Problem::new(
                    p.source.shown(),
                    super::report::ProblemKind::WrongProject,
                    format!(
                        "listed under project {:?} but it is a file of {:?}; skipped",
                        l.project, p.entry.project
                    ),
                ),
            );
            return false;
        }
        p.entry.listing.clone_from(&l.listing);
        if l.requires_python.is_some() {
            p.entry.requires_python.clone_from(&l.requires_python);
        }
        true
    });
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
