//! Unit tests of the pure plan: state, candidates and read results are built
//! in memory and the decisions checked one rule at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::*;
use crate::name::ArchiveKind;
use crate::state::Stamp;

fn stamp(ino: u64) -> Stamp {
    Stamp {
        dev: 1,
        ino,
        size: 100,
        mtime: 1_700_000_000,
        mtime_nsec: 0,
    }
}

fn candidate(path: &str, ino: u64) -> Candidate {
    let path = PathBuf::from(path);
    let filename = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    Candidate {
        given: None,
        kind: ArchiveKind::from_filename(&filename).unwrap_or(ArchiveKind::Wheel),
        path,
        filename,
        stamp: stamp(ino),
    }
}

fn processed(project: &str, sha: &str) -> Processed {
    Processed {
        sha256: sha.to_owned(),
        project: project.to_owned(),
        requires_python: None,
        core_metadata: Some(b"Name: x\n".to_vec()),
        metadata_sha256: Some(format!("md-{sha}")),
    }
}

fn entry(source: &str, ino: u64, project: &str, sha: &str) -> Entry {
    let c = candidate(source, ino);
    Entry {
        filename: c.filename,
        project: project.to_owned(),
        sha256: sha.to_owned(),
        stamp: c.stamp,
        metadata_sha256: Some(format!("md-{sha}")),
        requires_python: None,
        source: c.path,
        recorded: false,
        listing: crate::state::Listing::default(),
    }
}

fn state(list: &[Entry]) -> BTreeMap<String, Entry> {
    list.iter()
        .map(|e| (e.filename.clone(), e.clone()))
        .collect()
}

/// Everything a test sets up, and the planning steps run over it with no
/// placement failing.
struct Case {
    entries: BTreeMap<String, Entry>,
    candidates: Vec<Candidate>,
    /// (candidate path, result of reading it) for the candidates read.
    read: Vec<(PathBuf, Processed)>,
    facts: TreeFacts,
    mode: Mode,
    /// The run skipped a file before settling.
    skipped: bool,
}

impl Case {
    fn new(entries: &[Entry], candidates: Vec<Candidate>, mode: Mode) -> Self {
        Self {
            entries: state(entries),
            candidates,
            read: Vec::new(),
            facts: TreeFacts::default(),
            mode,
            skipped: false,
        }
    }

    fn reads(mut self, path: &str, p: Processed) -> Self {
        self.read.push((PathBuf::from(path), p));
        self
    }

    fn damaged(mut self, filename: &str) -> Self {
        self.facts.damaged.insert(filename.to_owned());
        self
    }

    fn paths_to_read(&self) -> Vec<String> {
        let groups = group(&self.candidates);
        to_read(&groups, &self.entries, &self.facts)
            .iter()
            .map(|c| c.path.display().to_string())
            .collect()
    }

    fn decide(&self) -> Decided {
        let read: ReadResults<'_> = self
            .read
            .iter()
            .map(|(p, r)| (p.as_path(), r.clone()))
            .collect();
        let groups = group(&self.candidates);
        let plan = decide(&groups, &self.entries, &read, &self.facts, self.mode);
        Decided {
            placements: plan
                .placements
                .iter()
                .map(|p| {
                    (
                        p.entry.filename.clone(),
                        p.action,
                        p.source.path.display().to_string(),
                    )
                })
                .collect(),
            problems: plan
                .problems
                .iter()
                .map(|p| (p.path.display().to_string(), p.kind))
                .collect(),
            unchanged: plan.unchanged,
        }
    }

    fn settle_failing(&self, failed: &[&str]) -> Outcome {
        let read: ReadResults<'_> = self
            .read
            .iter()
            .map(|(p, r)| (p.as_path(), r.clone()))
            .collect();
        let groups = group(&self.candidates);
        let plan = decide(&groups, &self.entries, &read, &self.facts, self.mode);
        let failed: BTreeSet<String> = failed.iter().map(|f| (*f).to_owned()).collect();
        settle(
            self.entries.clone(),
            plan,
            &failed,
            &self.facts,
            self.mode,
            self.skipped,
        )
    }

    fn settle(&self) -> Outcome {
        self.settle_failing(&[])
    }
}

/// A plan in comparable form.
struct Decided {
    /// (file name, action, source path)
    placements: Vec<(String, Action, String)>,
    /// (path, kind)
    problems: Vec<(String, ProblemKind)>,
    unchanged: usize,
}

const A1: &str = "alpha-1.0-py3-none-any.whl";
const BUILD: Mode = Mode::Build { prune: Prune::Off };
const PRUNE: Mode = Mode::Build {
    prune: Prune::Unrecorded,
};
const ADD: Mode = Mode::Add { recorded: false };
const RECORD: Mode = Mode::Add { recorded: true };

fn removal(entry: &Entry, delete: Delete) -> Removal {
    Removal {
        entry: entry.clone(),
        delete,
    }
}

#[test]
fn a_new_file_is_read_added_and_gets_a_page_and_the_root() {
    let case = Case::new(
        &[],
        vec![candidate("/src/alpha-1.0-py3-none-any.whl", 10)],
        BUILD,
    )
    .reads("/src/alpha-1.0-py3-none-any.whl", processed("alpha", "aa"));
    assert_eq!(case.paths_to_read(), ["/src/alpha-1.0-py3-none-any.whl"]);
    let o = case.settle();
    assert_eq!(o.added, [A1]);
    assert_eq!(o.pages, ["alpha"]);
    assert!(o.write_root);
    assert_eq!(o.put.len(), 1);
    let e = &o.entries[A1];
    assert_eq!(
        (e.project.as_str(), e.sha256.as_str(), e.stamp),
        ("alpha", "aa", stamp(10))
    );
    assert_eq!(e.metadata_sha256.as_deref(), Some("md-aa"));
    assert_eq!(e.source, PathBuf::from("/src/alpha-1.0-py3-none-any.whl"));
}

#[test]
fn an_unchanged_known_file_is_not_read_and_changes_nothing() {
    let known = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let case = Case::new(
        &[known],
        vec![candidate("/src/alpha-1.0-py3-none-any.whl", 10)],
        BUILD,
    );
    assert!(case.paths_to_read().is_empty());
    let Decided {
        placements,
        problems,
        unchanged,
    } = case.decide();
    assert!(placements.is_empty() && problems.is_empty());
    assert_eq!(unchanged, 1);
    let o = case.settle();
    assert!(o.put.is_empty() && o.pages.is_empty() && o.deleted.is_empty());
    assert!(!o.write_root);
    assert_eq!(o.unchanged, 1);
}

#[test]
fn a_new_stamp_or_a_damaged_tree_copy_means_reading_again() {
    let known = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let touched = Case::new(
        std::slice::from_ref(&known),
        vec![candidate("/src/alpha-1.0-py3-none-any.whl", 11)],
        BUILD,
    );
    assert_eq!(touched.paths_to_read().len(), 1);
    let damaged = Case::new(
        &[known],
        vec![candidate("/src/alpha-1.0-py3-none-any.whl", 10)],
        BUILD,
    )
    .damaged(A1);
    assert_eq!(damaged.paths_to_read().len(), 1);
}

#[test]
fn same_content_read_again_only_refreshes_the_record() {
    let known = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let case = Case::new(
        &[known],
        vec![candidate("/src/alpha-1.0-py3-none-any.whl", 11)],
        BUILD,
    )
    .reads("/src/alpha-1.0-py3-none-any.whl", processed("alpha", "aa"));
    let placements = case.decide().placements;
    assert_eq!(placements[0].1, Action::Refresh);
    let o = case.settle();
    assert_eq!(o.unchanged, 1);
    assert!(o.pages.is_empty() && o.updated.is_empty() && !o.write_root);
    // The new stamp is what gets logged, so the next run reads nothing.
    assert_eq!(o.put.len(), 1);
    assert_eq!(o.entries[A1].stamp, stamp(11));
}

#[test]
fn a_rebuild_at_the_recorded_source_path_replaces() {
    let known = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let case = Case::new(
        &[known],
        vec![candidate("/src/alpha-1.0-py3-none-any.whl", 12)],
        BUILD,
    )
    .reads("/src/alpha-1.0-py3-none-any.whl", processed("alpha", "bb"));
    let o = case.settle();
    assert_eq!(o.updated, [A1]);
    assert_eq!(o.pages, ["alpha"]);
    assert_eq!(o.entries[A1].sha256, "bb");
    assert!(o.removals.is_empty(), "same project: nothing to delete");
}

#[test]
fn different_content_from_elsewhere_conflicts_with_an_intact_served_file() {
    let known = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let case = Case::new(
        std::slice::from_ref(&known),
        vec![candidate("/other/alpha-1.0-py3-none-any.whl", 20)],
        ADD,
    )
    .reads(
        "/other/alpha-1.0-py3-none-any.whl",
        processed("alpha", "cc"),
    );
    let Decided {
        placements,
        problems,
        ..
    } = case.decide();
    assert!(placements.is_empty());
    assert_eq!(
        problems,
        [(
            "/other/alpha-1.0-py3-none-any.whl".to_owned(),
            ProblemKind::Conflict
        )]
    );
    assert_eq!(case.settle().entries[A1], known);

    // If the served copy has vanished, nothing is overridden: it is taken.
    let case = case.damaged(A1);
    let Decided {
        placements,
        problems,
        ..
    } = case.decide();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        placements,
        [(
            A1.to_owned(),
            Action::Replace,
            "/other/alpha-1.0-py3-none-any.whl".to_owned()
        )]
    );
}

#[test]
fn the_first_source_wins_a_name_clash_and_identical_copies_are_fine() {
    let case = Case::new(
        &[],
        vec![
            candidate("/a/alpha-1.0-py3-none-any.whl", 1),
            candidate("/b/alpha-1.0-py3-none-any.whl", 2),
            candidate("/c/alpha-1.0-py3-none-any.whl", 3),
        ],
        BUILD,
    )
    .reads("/a/alpha-1.0-py3-none-any.whl", processed("alpha", "aa"))
    .reads("/b/alpha-1.0-py3-none-any.whl", processed("alpha", "bb"))
    .reads("/c/alpha-1.0-py3-none-any.whl", processed("alpha", "aa"));
    let Decided {
        placements,
        problems,
        ..
    } = case.decide();
    assert_eq!(placements.len(), 1);
    assert_eq!(placements[0].2, "/a/alpha-1.0-py3-none-any.whl");
    assert_eq!(
        problems,
        [(
            "/b/alpha-1.0-py3-none-any.whl".to_owned(),
            ProblemKind::Duplicate
        )]
    );
}

#[test]
fn a_path_given_twice_counts_once() {
    let case = Case::new(
        &[],
        vec![
            candidate("/a/alpha-1.0-py3-none-any.whl", 1),
            candidate("/a/alpha-1.0-py3-none-any.whl", 1),
        ],
        ADD,
    );
    assert_eq!(case.paths_to_read().len(), 1);
}

#[test]
fn a_file_moving_to_another_project_leaves_the_old_page() {
    let known = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let case = Case::new(
        std::slice::from_ref(&known),
        vec![candidate("/src/alpha-1.0-py3-none-any.whl", 11)],
        BUILD,
    )
    .reads("/src/alpha-1.0-py3-none-any.whl", processed("beta", "bb"));
    let o = case.settle();
    assert_eq!(o.updated, [A1]);
    assert_eq!(o.pages, ["beta"]);
    assert_eq!(o.emptied, ["alpha"]);
    assert!(o.write_root);
    assert_eq!(
        o.removals,
        [removal(&known, Delete::File)],
        "the old copy goes after the pages"
    );
    assert_eq!(o.entries[A1].project, "beta");
}

#[test]
fn unseen_files_stay_without_prune_and_go_with_it() {
    let kept = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let seen = entry("/src/beta-1.0-py3-none-any.whl", 11, "beta", "bb");
    let cands = || vec![candidate("/src/beta-1.0-py3-none-any.whl", 11)];
    let entries = [kept.clone(), seen];

    let o = Case::new(&entries, cands(), BUILD).settle();
    assert!(o.deleted.is_empty() && o.removals.is_empty());
    assert_eq!(o.entries.len(), 2);

    let o = Case::new(&entries, cands(), PRUNE).settle();
    assert_eq!(o.deleted, [A1]);
    assert_eq!(o.removals, [removal(&kept, Delete::File)]);
    assert_eq!(o.emptied, ["alpha"]);
    assert!(o.pages.is_empty());
    assert!(o.write_root);
    assert_eq!(
        o.entries.keys().collect::<Vec<_>>(),
        ["beta-1.0-py3-none-any.whl"]
    );

    // An add judges only its own files, prune or not.
    let o = Case::new(&entries, cands(), ADD).settle();
    assert!(o.deleted.is_empty());
}

#[test]
fn an_unseen_file_gone_from_the_tree_leaves_the_index_even_without_prune() {
    let gone = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let case = Case::new(std::slice::from_ref(&gone), Vec::new(), BUILD).damaged(A1);
    let read = ReadResults::new();
    let groups = group(&case.candidates);
    let plan = decide(&groups, &case.entries, &read, &case.facts, case.mode);
    assert_eq!(plan.gone, std::slice::from_ref(&gone));
    assert!(plan.unseen.is_empty());
    let o = case.settle();
    assert_eq!(o.deleted, [A1]);
    // What may still be in the tree is not ours to delete: only the
    // .metadata, which we made, goes.
    assert_eq!(o.removals, [removal(&gone, Delete::MetadataOnly)]);
}

#[test]
fn a_failed_placement_is_left_out_of_state_report_and_pages() {
    let case = Case::new(
        &[],
        vec![
            candidate("/src/alpha-1.0-py3-none-any.whl", 1),
            candidate("/src/beta-1.0-py3-none-any.whl", 2),
        ],
        BUILD,
    )
    .reads("/src/alpha-1.0-py3-none-any.whl", processed("alpha", "aa"))
    .reads("/src/beta-1.0-py3-none-any.whl", processed("beta", "bb"));
    let o = case.settle_failing(&[A1]);
    assert_eq!(o.added, ["beta-1.0-py3-none-any.whl"]);
    assert_eq!(o.pages, ["beta"]);
    assert_eq!(o.put.len(), 1);
    assert!(!o.entries.contains_key(A1));
}

#[test]
fn a_build_rewrites_missing_pages_an_add_does_not_look() {
    let known = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let cands = || vec![candidate("/src/alpha-1.0-py3-none-any.whl", 10)];
    let mut case = Case::new(std::slice::from_ref(&known), cands(), BUILD);
    case.facts.missing_pages.insert("alpha".to_owned());
    case.facts.root_missing = true;
    let o = case.settle();
    assert_eq!(o.pages, ["alpha"]);
    assert!(o.write_root);
    assert!(o.put.is_empty(), "pages only, the state is right");

    let mut case = Case::new(&[known], cands(), ADD);
    case.facts.missing_pages.insert("alpha".to_owned());
    assert!(case.settle().pages.is_empty());
}

#[test]
fn only_entries_sharing_a_candidate_name_are_checked_by_an_add() {
    let a = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let b = entry("/src/beta-1.0-py3-none-any.whl", 11, "beta", "bb");
    let entries = state(&[a, b]);
    let cands = vec![candidate("/new/beta-1.0-py3-none-any.whl", 12)];
    let groups = group(&cands);
    let names = |v: Vec<&Entry>| -> Vec<String> { v.iter().map(|e| e.filename.clone()).collect() };
    assert_eq!(
        names(entries_to_check(&groups, &entries, ADD)),
        ["beta-1.0-py3-none-any.whl"]
    );
    assert_eq!(entries_to_check(&groups, &entries, BUILD).len(), 2);
}

#[test]
fn an_identical_copy_elsewhere_keeps_serving_the_same_content() {
    // Served from /src, which this run does not see; /other has different
    // content, /third the served content: /third wins, /other is refused.
    let known = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let case = Case::new(
        &[known],
        vec![
            candidate("/other/alpha-1.0-py3-none-any.whl", 20),
            candidate("/third/alpha-1.0-py3-none-any.whl", 30),
        ],
        BUILD,
    )
    .reads(
        "/other/alpha-1.0-py3-none-any.whl",
        processed("alpha", "cc"),
    )
    .reads(
        "/third/alpha-1.0-py3-none-any.whl",
        processed("alpha", "aa"),
    );
    let Decided {
        placements,
        problems,
        ..
    } = case.decide();
    assert_eq!(
        placements,
        [(
            A1.to_owned(),
            Action::Refresh,
            "/third/alpha-1.0-py3-none-any.whl".to_owned()
        )]
    );
    assert_eq!(
        problems,
        [(
            "/other/alpha-1.0-py3-none-any.whl".to_owned(),
            ProblemKind::Duplicate
        )]
    );
}

#[test]
fn same_content_over_a_damaged_tree_copy_is_placed_again() {
    let known = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let case = Case::new(
        &[known],
        vec![candidate("/src/alpha-1.0-py3-none-any.whl", 10)],
        BUILD,
    )
    .damaged(A1)
    .reads("/src/alpha-1.0-py3-none-any.whl", processed("alpha", "aa"));
    assert_eq!(case.decide().placements[0].1, Action::Replace);
    let o = case.settle();
    assert_eq!(o.updated, [A1]);
    assert_eq!(o.pages, ["alpha"]);
}

#[test]
fn prune_removes_nothing_when_the_run_skipped_anything() {
    let old = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let mut case = Case::new(&[old], Vec::new(), PRUNE);
    case.skipped = true;
    let o = case.settle();
    assert!(o.deleted.is_empty() && o.removals.is_empty() && o.emptied.is_empty());
    assert_eq!(o.prune_withheld, [A1]);
    assert!(!o.write_root);
    assert_eq!(o.entries.len(), 1);

    // Without --prune there is nothing to withhold either.
    case.mode = BUILD;
    assert!(case.settle().prune_withheld.is_empty());
}

#[test]
fn prune_keeps_recorded_files_unless_told_in_so_many_words() {
    let mut recorded = entry("/cache/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    recorded.recorded = true;
    let plain = entry("/src/beta-1.0-py3-none-any.whl", 11, "beta", "bb");
    let entries = [recorded.clone(), plain];

    let o = Case::new(&entries, Vec::new(), PRUNE).settle();
    assert_eq!(o.deleted, ["beta-1.0-py3-none-any.whl"]);
    assert_eq!(o.kept_recorded, [A1]);
    assert_eq!(o.entries[A1], recorded);

    let all = Mode::Build { prune: Prune::All };
    let o = Case::new(&entries, Vec::new(), all).settle();
    assert_eq!(o.deleted, [A1, "beta-1.0-py3-none-any.whl"]);
    assert!(o.kept_recorded.is_empty() && o.entries.is_empty());
}

#[test]
fn an_add_can_mark_files_recorded_and_the_mark_sticks() {
    let case = Case::new(
        &[],
        vec![candidate("/cache/alpha-1.0-py3-none-any.whl", 1)],
        RECORD,
    )
    .reads(
        "/cache/alpha-1.0-py3-none-any.whl",
        processed("alpha", "aa"),
    );
    let o = case.settle();
    assert!(o.entries[A1].recorded);
    assert!(o.put[0].recorded, "the mark is logged");

    // Already served, unchanged, not read: recording it only logs the mark.
    let known = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let case = Case::new(
        std::slice::from_ref(&known),
        vec![candidate("/src/alpha-1.0-py3-none-any.whl", 10)],
        RECORD,
    );
    assert!(case.paths_to_read().is_empty());
    let o = case.settle();
    assert_eq!(
        o.put,
        [Entry {
            recorded: true,
            ..known.clone()
        }]
    );
    assert!(o.pages.is_empty() && o.added.is_empty());
    assert_eq!(o.unchanged, 1);

    // A later plain rebuild of a recorded file keeps the mark.
    let mut was_recorded = known;
    was_recorded.recorded = true;
    let case = Case::new(
        &[was_recorded],
        vec![candidate("/src/alpha-1.0-py3-none-any.whl", 12)],
        BUILD,
    )
    .reads("/src/alpha-1.0-py3-none-any.whl", processed("alpha", "bb"));
    let o = case.settle();
    assert_eq!(o.updated, [A1]);
    assert!(o.entries[A1].recorded);
}

#[test]
fn a_failed_move_keeps_the_served_copy_where_it_is() {
    let known = entry("/src/alpha-1.0-py3-none-any.whl", 10, "alpha", "aa");
    let case = Case::new(
        std::slice::from_ref(&known),
        vec![candidate("/src/alpha-1.0-py3-none-any.whl", 11)],
        BUILD,
    )
    .reads("/src/alpha-1.0-py3-none-any.whl", processed("beta", "bb"));
    let o = case.settle_failing(&[A1]);
    assert!(o.removals.is_empty(), "{:?}", o.removals);
    assert!(o.pages.is_empty() && o.emptied.is_empty() && o.updated.is_empty());
    assert_eq!(o.entries[A1], known);
}
