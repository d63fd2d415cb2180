//! Carrying out a plan on the tree: place files, then publish pages
//! atomically, then delete what no page links to any more, then log the
//! state. Also the look at the tree that planning starts from.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::parallel::par_map;
use super::plan::{self, Action, Delete, Outcome, Placement, Removal, TreeFacts};
use super::progress::Progress;
use super::report::{io_err, Error, Problem, ProblemKind};
use crate::fsutil;
use crate::html;
use crate::index;
use crate::state::{self, Entry, Record};

/// Above this many written files one `syncfs` replaces per-file fsyncs.
const SYNCFS_THRESHOLD: usize = 64;

/// The mirror tree at `out`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tree<'a> {
    pub out: &'a Path,
}

/// What placing files did.
#[derive(Debug, Default)]
pub(crate) struct Placed {
    /// File names that could not be placed (the plan leaves them out).
    pub failed: BTreeSet<String>,
    pub problems: Vec<Problem>,
    /// So many files were written that one `syncfs` replaces the fsyncs.
    pub many: bool,
}

impl Tree<'_> {
    fn dest(&self, project: &str, filename: &str) -> PathBuf {
        self.out.join(project).join(filename)
    }

    /// Whether the tree still has `e` (and its `.metadata`), so a file whose
    /// copy was deleted by hand is put back instead of being trusted.
    fn intact(&self, e: &Entry) -> bool {
        let dest = self.dest(&e.project, &e.filename);
        let ok = fs::metadata(&dest).is_ok_and(|m| m.len() == e.stamp.size);
        ok && (e.metadata_sha256.is_none() || metadata_path(&dest).exists())
    }

    /// Look at the tree copies of `check`, and in a build at the pages of
    /// every known project, for the plan to judge.
    pub(crate) fn facts(
        &self,
        check: &[&Entry],
        entries: &BTreeMap<String, Entry>,
        build: bool,
    ) -> TreeFacts {
        let damaged = check
            .iter()
            .filter(|e| !self.intact(e))
            .map(|e| e.filename.clone())
            .collect();
        let missing_pages = if build {
            plan::by_project(entries)
                .into_keys()
                .filter(|p| !self.out.join(p).join("index.html").exists())
                .map(str::to_owned)
                .collect()
        } else {
            BTreeSet::new()
        };
        TreeFacts {
            damaged,
            missing_pages,
            root_missing: !self.out.join("index.html").exists(),
        }
    }

    /// Put the files of every placement that writes into the tree, on up to
    /// `jobs` threads. Failures are problems, not errors: the plan then
    /// leaves those files out.
    pub(crate) fn place_all(
        &self,
        placements: &[Placement<'_>],
        jobs: usize,
        progress: &Progress,
    ) -> Result<Placed, Error> {
        let writes: Vec<&Placement<'_>> = placements.iter().filter(|p| p.writes()).collect();
        // Project directories are created once, up front, so workers only
        // link and write.
        let dirs: BTreeSet<&str> = writes.iter().map(|p| p.entry.project.as_str()).collect();
        for project in &dirs {
            let dir = self.out.join(project);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let many = writes.len() > SYNCFS_THRESHOLD;
        progress.start("placing", writes.len());
        let results = par_map(&writes, jobs, |p| {
            let r = self.place(p, !many);
            progress.inc();
            r
        });
        let mut placed = Placed {
            many,
            ..Placed::default()
        };
        for (p, r) in writes.iter().zip(results) {
            if let Err(e) = r {
                placed.problems.push(Problem::new(
                    p.source.shown(),
                    ProblemKind::PlaceFailed,
                    format!(
                        "cannot place into {}: {e}; skipped",
                        self.out.join(&p.entry.project).display()
                    ),
                ));
                placed.failed.insert(p.entry.filename.clone());
            }
        }
        Ok(placed)
    }

    fn place(&self, p: &Placement<'_>, sync: bool) -> io::Result<()> {
        let dest = self.dest(&p.entry.project, &p.entry.filename);
        if let Some(md) = p.read.and_then(|r| r.core_metadata.as_deref()) {
            let path = metadata_path(&dest);
            // A new file's .metadata is reachable only through the page,
            // which is published later; a replaced one may be read right now.
            if p.action == Action::Add {
                fsutil::write_new(&path, md, sync)?;
            } else {
                fsutil::write_atomic(&path, md, sync)?;
            }
        }
        let placed = fsutil::link_or_copy(&p.source.path, &dest, sync)?;
        log::trace!(
            "{}: {placed:?} as {}",
            p.source.path.display(),
            dest.display()
        );
        Ok(())
    }

    /// After many placements, one `syncfs`: the data of every placed file
    /// must be durable before any page points at it. (Fewer were fsynced
    /// one by one.)
    pub(crate) fn sync_placed(&self, many: bool) -> Result<(), Error> {
        if many {
            fsutil::sync_fs(self.out).map_err(io_err(self.out))?;
        }
        Ok(())
    }

    /// Write the changed pages and the root page, then delete what they no
    /// longer link to. Returns whether the run counted as large (one
    /// `syncfs` instead of many fsyncs).
    pub(crate) fn publish(&self, o: &Outcome, many: bool, jobs: usize) -> Result<bool, Error> {
        let by_project = plan::by_project(&o.entries);
        // Pages alone can be many too (e.g. after a manual clean-up).
        let many = many || o.pages.len() + o.emptied.len() > SYNCFS_THRESHOLD;
        let results = par_map(&o.pages, jobs, |project| {
            match by_project.get(project.as_str()) {
                Some(files) => self.write_page(project, files, !many),
                None => Ok(()),
            }
        });
        let mut first_error = None;
        for (project, r) in o.pages.iter().zip(results) {
            if let Err(e) = r {
                // Its page is still the old one: the new files it would
                // have listed leave the tree, so none stays there unlisted
                // (and served, but never offered to an offline client).
                self.withdraw_added(project, o);
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if o.write_root {
            let root = self.out.join("index.html");
            let page = html::root_page(by_project.keys().copied());
            fsutil::write_atomic(&root, page.as_bytes(), !many).map_err(io_err(&root))?;
        }
        if !many {
            for project in &o.pages {
                let dir = self.out.join(project);
                fsutil::sync_dir(&dir).map_err(io_err(&dir))?;
            }
            fsutil::sync_dir(self.out).map_err(io_err(self.out))?;
        }
        for r in &o.removals {
            self.remove_files(r);
        }
        // Emptied projects lose their page only after the root page stops
        // listing them.
        for project in &o.emptied {
            self.remove_page(project)?;
        }
        Ok(many)
    }

    /// Remove the files of `project` that this run added, and their
    /// `.metadata`, after its page could not be written. A file indexed
    /// from where it lies in the tree is the only copy: it stays, and the
    /// next run lists it.
    fn withdraw_added(&self, project: &str, o: &Outcome) {
        for e in o.added.iter().filter_map(|f| o.entries.get(f)) {
            if e.project == project && e.source != self.dest(&e.project, &e.filename) {
                self.remove_files(&Removal {
                    entry: e.clone(),
                    delete: Delete::File,
                });
            }
        }
    }

    fn write_page(&self, project: &str, files: &[&Entry], sync: bool) -> Result<(), Error> {
        let page = self.out.join(project).join("index.html");
        let listed: Vec<index::FileEntry> = files
            .iter()
            .map(|e| index::FileEntry::from_state(e))
            .collect();
        let html = index::render_html(project, &listed);
        fsutil::write_atomic(&page, html.as_bytes(), sync).map_err(io_err(&page))
    }

    /// Drop the page of a project whose last file went away, and its
    /// directory if now empty (a user's own files in it are left alone).
    fn remove_page(&self, project: &str) -> Result<(), Error> {
        let dir = self.out.join(project);
        let page = dir.join("index.html");
        match fs::remove_file(&page) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&page)(e)),
        }
        let _ = fs::remove_dir(&dir);
        Ok(())
    }

    fn remove_files(&self, r: &Removal) {
        let dest = self.dest(&r.entry.project, &r.entry.filename);
        let metadata = metadata_path(&dest);
        let paths = match r.delete {
            Delete::File => vec![metadata, dest],
            Delete::MetadataOnly => vec![metadata],
        };
        for p in paths {
            if let Err(err) = fs::remove_file(&p) {
                if err.kind() != io::ErrorKind::NotFound {
                    log::warn!("{}: cannot remove: {err}", p.display());
                }
            }
        }
    }
}

/// Log the run's changes to the state at `path`, last, so that after a
/// crash the next run just redoes the unfinished work. A large run (or a
/// log grown well past its live entries) rewrites the log compacted.
pub(crate) fn save_state(
    path: &Path,
    records_before: usize,
    o: &Outcome,
    many: bool,
) -> Result<(), Error> {
    let mut log: Vec<Record<'_>> = o.put.iter().map(Record::Put).collect();
    log.extend(o.deleted.iter().map(|f| Record::Delete(f)));
    if log.is_empty() {
        return Ok(());
    }
    if many || state::wants_compaction(records_before + log.len(), o.entries.len()) {
        let data = state::render(o.entries.values());
        fsutil::write_atomic(path, &data, !many).map_err(io_err(path))
    } else {
        state::append(path, &log).map_err(io_err(path))
    }
}

fn metadata_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".metadata");
    PathBuf::from(s)
}
