//! The pure plan of a run: given what the mirror holds, what the sources
//! offer and what reading them found, decide what to place, what to drop and
//! which pages to rewrite. Nothing here touches the file system, so unit
//! tests drive every rule directly.
//!
//! A run plans in three steps: [`to_read`] picks the candidates whose
//! content must be read, [`decide`] chooses one file per name once they are
//! read, and [`settle`] turns that, minus the placements that failed, into
//! the new state, the pages to write and the files to delete.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use super::read::Processed;
use super::report::{Problem, ProblemKind};
use super::scan::Candidate;
use crate::state::Entry;

/// A build sees every source, so a known file it did not see is gone from
/// the sources; an `add` sees only its own files and judges nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Build {
        prune: Prune,
    },
    /// `recorded`: the added files are marked as recorded.
    Add {
        recorded: bool,
    },
}

/// What a build does with known files that no source has any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prune {
    /// Keep them.
    Off,
    /// Remove them, except recorded ones.
    Unrecorded,
    /// Remove them all (`--prune-recorded`).
    All,
}

/// Candidates by file name, each list in source order.
pub(crate) type Groups<'a> = BTreeMap<&'a str, Vec<&'a Candidate>>;

/// What reading found, by candidate path.
pub(crate) type ReadResults<'a> = HashMap<&'a Path, Processed>;

/// Group candidates by file name, keeping source order because the first
/// source wins when two carry the same name. A path given twice counts once.
pub(crate) fn group(candidates: &[Candidate]) -> Groups<'_> {
    let mut groups: Groups<'_> = BTreeMap::new();
    let mut paths: HashSet<&Path> = HashSet::with_capacity(candidates.len());
    for c in candidates {
        if paths.insert(&c.path) {
            groups.entry(c.filename.as_str()).or_default().push(c);
        }
    }
    groups
}

/// What the tree looked like before planning (see `apply::Tree::facts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TreeFacts {
    /// Known files whose tree copy is missing, has the wrong size or lacks
    /// its `.metadata`. Entries the run did not look at count as intact.
    pub damaged: HashSet<String>,
    /// Known projects whose `index.html` is missing (builds only).
    pub missing_pages: BTreeSet<String>,
    /// The root `index.html` is missing.
    pub root_missing: bool,
}

impl TreeFacts {
    pub(crate) fn intact(&self, e: &Entry) -> bool {
        !self.damaged.contains(&e.filename)
    }
}

/// The entries whose tree copy a run must check: all of them for a build,
/// which also judges the files it did not see; for an `add` only those
/// sharing a name with a candidate, so it stays cheap on a big mirror.
pub(crate) fn entries_to_check<'e>(
    groups: &Groups<'_>,
    entries: &'e BTreeMap<String, Entry>,
    mode: Mode,
) -> Vec<&'e Entry> {
    match mode {
        Mode::Build { .. } => entries.values().collect(),
        Mode::Add { .. } => groups
            .keys()
            .filter_map(|name| entries.get(*name))
            .collect(),
    }
}

/// The candidates that must be read: anything whose stat identity is not
/// the one recorded, plus known files whose tree copy is damaged.
pub(crate) fn to_read<'a>(
    groups: &Groups<'a>,
    entries: &BTreeMap<String, Entry>,
    facts: &TreeFacts,
) -> Vec<&'a Candidate> {
    let mut out = Vec::new();
    for (filename, group) in groups {
        let existing = entries.get(*filename);
        for c in group {
            let known = existing.is_some_and(|e| e.stamp == c.stamp && facts.intact(e));
            if !known {
                out.push(*c);
            }
        }
    }
    out
}

/// What to do with the file chosen for a file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Content already in place; only the state record is refreshed (the
    /// source was read again, e.g. after a touch, and found the same; or
    /// the file is now recorded).
    Refresh,
    /// New file name.
    Add,
    /// Same name, new content (or the tree copy went missing).
    Replace,
}

/// One file name's chosen source and what to do with it.
#[derive(Debug, Clone)]
pub(crate) struct Placement<'a> {
    /// The state record after the run.
    pub entry: Entry,
    pub source: &'a Candidate,
    /// What reading the source found (for the `.metadata` bytes); `None`
    /// only for a refresh of a file that was not read.
    pub read: Option<&'a Processed>,
    pub action: Action,
    /// The served copy, when the metadata now names another project: it
    /// must leave the old project's page and directory.
    pub moved_from: Option<Entry>,
}

impl Placement<'_> {
    /// Whether the tree must be written (as opposed to a state refresh).
    pub(crate) fn writes(&self) -> bool {
        self.action != Action::Refresh
    }
}

/// The decisions of a run, before anything is written.
#[derive(Debug, Default)]
pub(crate) struct Plan<'a> {
    pub placements: Vec<Placement<'a>>,
    /// Files found unchanged that need nothing at all.
    pub unchanged: usize,
    /// Known files that no candidate carries and whose tree copy is missing
    /// or damaged: they leave the index (builds only).
    pub gone: Vec<Entry>,
    /// Known files that no candidate carries, intact in the tree: what
    /// `--prune` may remove (builds only).
    pub unseen: Vec<Entry>,
    /// Conflicts and duplicates, in file-name order.
    pub problems: Vec<Problem>,
}

/// One readable source of a file name: its candidate, its sha256, and what
/// reading it found (`None`: not read because its stamp is the recorded one).
#[derive(Debug, Clone, Copy)]
struct Version<'a, 's> {
    source: &'a Candidate,
    sha256: &'s str,
    read: Option<&'a Processed>,
}

/// Choose, for every file name, the source the mirror serves, and in a
/// build, sort the known files no candidate carries into gone and unseen.
pub(crate) fn decide<'a>(
    groups: &Groups<'a>,
    entries: &BTreeMap<String, Entry>,
    read: &'a ReadResults<'_>,
    facts: &TreeFacts,
    mode: Mode,
) -> Plan<'a> {
    let mut plan = Plan::default();
    let recorded = matches!(mode, Mode::Add { recorded: true });
    for (filename, group) in groups {
        let known = Known {
            entry: entries.get(*filename),
            facts,
        };
        decide_name(filename, group, known, read, recorded, &mut plan);
    }
    if let Mode::Build { .. } = mode {
        let unseen = entries
            .values()
            .filter(|e| !groups.contains_key(e.filename.as_str()));
        for e in unseen {
            let list = if facts.intact(e) {
                &mut plan.unseen
            } else {
                &mut plan.gone
            };
            list.push(e.clone());
        }
    }
    plan
}

/// What the mirror knows of one file name.
#[derive(Debug, Clone, Copy)]
struct Known<'e> {
    entry: Option<&'e Entry>,
    facts: &'e TreeFacts,
}

fn decide_name<'a>(
    filename: &str,
    group: &[&'a Candidate],
    known: Known<'_>,
    read: &'a ReadResults<'_>,
    recorded: bool,
    plan: &mut Plan<'a>,
) {
    let existing = known.entry;
    let versions: Vec<Version<'a, '_>> = group
        .iter()
        .filter_map(|c| match read.get(c.path.as_path()) {
            Some(p) => Some(Version {
                source: c,
                sha256: p.sha256.as_str(),
                read: Some(p),
            }),
            None => existing.filter(|e| e.stamp == c.stamp).map(|e| Version {
                source: c,
                sha256: e.sha256.as_str(),
                read: None,
            }),
        })
        .collect();
    if versions.is_empty() {
        return;
    }
    let Some(winner) = pick_winner(&versions, existing, known.facts) else {
        // Every source differs from what the mirror already serves.
        if let Some(e) = existing {
            for v in &versions {
                plan.problems.push(Problem::new(
                    v.source.shown(),
                    ProblemKind::Conflict,
                    format!(
                        "differs from the {filename} already in the mirror (indexed from {}); skipped",
                        e.source.display()
                    ),
                ));
            }
        }
        return;
    };
    for v in &versions {
        if v.sha256 != winner.sha256 {
            plan.problems.push(Problem::new(
                v.source.shown(),
                ProblemKind::Duplicate,
                format!(
                    "same file name as {} but different content; skipped",
                    winner.source.shown().display()
                ),
            ));
        }
    }
    // Once recorded, a file name stays recorded while the mirror serves it.
    let recorded = recorded || existing.is_some_and(|e| e.recorded);
    if let Some(p) = placement(winner, known, recorded) {
        plan.placements.push(p);
    } else {
        plan.unchanged += 1;
    }
}

/// What to do with the winning version; `None` when nothing at all.
fn placement<'a>(
    winner: &Version<'a, '_>,
    known: Known<'_>,
    recorded: bool,
) -> Option<Placement<'a>> {
    let Some(p) = winner.read else {
        // Not read: its stamp is the recorded one, so it is unchanged, and
        // only a new recorded mark needs logging. (A version without a read
        // result only exists when an entry does.)
        let e = known.entry.filter(|e| recorded && !e.recorded)?;
        return Some(Placement {
            entry: Entry {
                recorded,
                ..e.clone()
            },
            source: winner.source,
            read: None,
            action: Action::Refresh,
            moved_from: None,
        });
    };
    let mut entry = new_entry(winner.source, p, recorded);
    // What an index said of these bytes stays with them when they are
    // indexed again (a `build` over the tree itself, a touched source).
    if let Some(e) = known.entry.filter(|e| e.sha256 == p.sha256) {
        entry.listing.clone_from(&e.listing);
        entry.requires_python.clone_from(&e.requires_python);
    }
    let (action, moved_from) = match known.entry {
        None => (Action::Add, None),
        Some(e) if e.sha256 == p.sha256 && e.project == p.project && known.facts.intact(e) => {
            (Action::Refresh, None)
        }
        Some(e) => (
            Action::Replace,
            (e.project != entry.project).then(|| e.clone()),
        ),
    };
    Some(Placement {
        entry,
        source: winner.source,
        read: Some(p),
        action,
        moved_from,
    })
}

/// Same content as served, else a rebuild at the recorded source path, else
/// (only if the served copy has vanished from the tree, so nothing is being
/// overridden) the first source.
fn pick_winner<'v, 'a, 's>(
    versions: &'v [Version<'a, 's>],
    existing: Option<&Entry>,
    facts: &TreeFacts,
) -> Option<&'v Version<'a, 's>> {
    let Some(e) = existing else {
        return versions.first();
    };
    versions
        .iter()
        .find(|v| v.sha256 == e.sha256)
        .or_else(|| versions.iter().find(|v| v.source.path == e.source))
        .or_else(|| {
            if facts.intact(e) {
                None
            } else {
                versions.first()
            }
        })
}

fn new_entry(c: &Candidate, p: &Processed, recorded: bool) -> Entry {
    Entry {
        filename: c.filename.clone(),
        project: p.project.clone(),
        sha256: p.sha256.clone(),
        stamp: c.stamp,
        metadata_sha256: p.metadata_sha256.clone(),
        requires_python: p.requires_python.clone(),
        source: c.path.clone(),
        recorded,
        listing: crate::state::Listing::default(),
    }
}

/// What to delete from the tree for a file leaving the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delete {
    /// The file and its `.metadata`.
    File,
    /// Only the `.metadata`, which is ours to make again. The file itself
    /// is missing, or is no longer what the index said: then it is not ours
    /// to delete.
    MetadataOnly,
}

/// A tree file to delete once no page links to it any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Removal {
    pub entry: Entry,
    pub delete: Delete,
}

/// The mirror after a run: state, pages and deletions.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Every indexed file after the run.
    pub entries: BTreeMap<String, Entry>,
    /// State records to log: new, replaced and refreshed files.
    pub put: Vec<Entry>,
    /// File names leaving the index, sorted.
    pub deleted: Vec<String>,
    /// Projects with files whose page must be (re)written.
    pub pages: Vec<String>,
    /// Projects left without files, whose page must go.
    pub emptied: Vec<String>,
    /// The project list changed, or the root page is missing.
    pub write_root: bool,
    /// Projects with files after the run.
    pub projects: usize,
    /// Tree files to delete once no page links to them any more.
    pub removals: Vec<Removal>,
    /// What `--prune` would have removed, had the run skipped nothing.
    pub prune_withheld: Vec<String>,
    /// Recorded files no source has, which `--prune` keeps.
    pub kept_recorded: Vec<String>,
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
}

/// Apply `plan` to `entries`, leaving out the placements whose file names
/// are in `failed` (their files could not be put into the tree).
/// `skipped_any`: the run skipped a file or could not read a source, so
/// "no source has it" cannot be trusted and `--prune` removes nothing.
pub(crate) fn settle(
    mut entries: BTreeMap<String, Entry>,
    plan: Plan<'_>,
    failed: &BTreeSet<String>,
    facts: &TreeFacts,
    mode: Mode,
    skipped_any: bool,
) -> Outcome {
    let old_projects: Vec<String> = project_names(&entries);
    let mut out = Outcome {
        unchanged: plan.unchanged,
        ..Outcome::default()
    };
    let mut changed: BTreeSet<String> = BTreeSet::new();
    for p in plan.placements {
        if failed.contains(&p.entry.filename) {
            // The served copy stays, in the state and in the tree.
            continue;
        }
        match p.action {
            Action::Refresh => out.unchanged += 1,
            Action::Add => out.added.push(p.entry.filename.clone()),
            Action::Replace => out.updated.push(p.entry.filename.clone()),
        }
        if p.writes() {
            changed.insert(p.entry.project.clone());
        }
        if let Some(old) = p.moved_from {
            changed.insert(old.project.clone());
            out.removals.push(Removal {
                entry: old,
                delete: Delete::File,
            });
        }
        out.put.push(p.entry.clone());
        entries.insert(p.entry.filename.clone(), p.entry);
    }
    let pruned = prune(plan.unseen, mode, skipped_any, &mut out);
    let gone = plan.gone.into_iter().map(|e| (e, Delete::MetadataOnly));
    for (e, delete) in gone.chain(pruned) {
        changed.insert(e.project.clone());
        entries.remove(&e.filename);
        out.deleted.push(e.filename.clone());
        out.removals.push(Removal { entry: e, delete });
    }
    out.deleted.sort();
    let new_projects = project_names(&entries);
    if let Mode::Build { .. } = mode {
        // Self-healing: a page deleted by hand comes back on the next build.
        changed.extend(
            new_projects
                .iter()
                .filter(|p| facts.missing_pages.contains(*p))
                .cloned(),
        );
    }
    let (pages, emptied): (Vec<String>, Vec<String>) = changed
        .into_iter()
        .partition(|p| new_projects.binary_search(p).is_ok());
    out.pages = pages;
    out.emptied = emptied;
    out.write_root = old_projects != new_projects || facts.root_missing;
    out.projects = new_projects.len();
    out.entries = entries;
    out
}

/// Which of the `unseen` files `--prune` removes: none unless asked, none
/// when the run skipped anything (listed as withheld instead), and recorded
/// ones only with `--prune-recorded`.
fn prune(
    unseen: Vec<Entry>,
    mode: Mode,
    skipped_any: bool,
    out: &mut Outcome,
) -> Vec<(Entry, Delete)> {
    let prune = match mode {
        Mode::Build { prune } if prune != Prune::Off => prune,
        _ => return Vec::new(),
    };
    let mut removed = Vec::new();
    for e in unseen {
        if e.recorded && prune != Prune::All {
            out.kept_recorded.push(e.filename);
        } else if skipped_any {
            out.prune_withheld.push(e.filename);
        } else {
            removed.push((e, Delete::File));
        }
    }
    removed
}

/// The sorted, distinct projects of `entries`.
fn project_names(entries: &BTreeMap<String, Entry>) -> Vec<String> {
    let set: BTreeSet<&str> = entries.values().map(|e| e.project.as_str()).collect();
    set.into_iter().map(str::to_owned).collect()
}

/// Entries by project, each list in file-name order: the content of the
/// project pages.
pub(crate) fn by_project(entries: &BTreeMap<String, Entry>) -> BTreeMap<&str, Vec<&Entry>> {
    let mut map: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in entries.values() {
        map.entry(e.project.as_str()).or_default().push(e);
    }
    map
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
