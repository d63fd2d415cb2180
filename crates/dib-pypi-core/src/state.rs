//! The state directory that holds the journals: created and removed so that a crash at any point is recoverable.
//!
//! The journals live in `/var/lib/dib-pypi`, which may have to be created
//! together with `/var/lib` and `/var`. Creating a directory cannot be
//! journaled in the directory itself, so the whole missing chain is built
//! under a staging name beside the outermost missing directory
//! (`/var.dib-pypi-tmp/lib/dib-pypi`), the state journal recording which
//! directories are ours is written inside it, and one rename puts it all in
//! place. A crash before the rename leaves only the staging tree, which
//! [`recover`] removes; after it, the state journal says what to remove.
//!
//! Removal is the mirror image: a marker file at the staging name says
//! "tearing down from here", then the journal and directories go, then the
//! marker. A crash in between leaves the marker, and [`recover`] finishes.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::journal::{Journal, Op, CONFIG_JOURNAL, MOUNT_JOURNAL, STATE_DIR, STATE_JOURNAL};
use crate::rootfs::{with_suffix, Kind, Rmdir, Root};
use crate::txn::{missing_dirs, DIR_MODE, TEMP_SUFFIX};

/// Content of the teardown marker, so a file we did not write is never
/// taken for one.
const MARKER: &[u8] = b"dib-pypi state teardown\n";

/// Mode of the state directory itself: the journals name root's files.
const STATE_DIR_MODE: u32 = 0o700;

/// The state directory and its parents below `/`, outermost first.
fn chain() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Path::new(STATE_DIR)
        .ancestors()
        .filter(|a| *a != Path::new("/"))
        .map(Path::to_path_buf)
        .collect();
    dirs.reverse();
    dirs
}

/// `path` (inside `top`) moved under `base` instead.
fn rebase(path: &Path, top: &Path, base: &Path) -> PathBuf {
    match path.strip_prefix(top) {
        Ok(rest) if rest.as_os_str().is_empty() => base.to_path_buf(),
        Ok(rest) => base.join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// Create the state directory, and any missing parent, if needed. Finishes
/// an interrupted creation or removal first.
pub fn ensure(root: &Root) -> Result<()> {
    recover(root)?;
    let missing = missing_dirs(root, Path::new(STATE_DIR))?;
    let Some(top) = missing.first().cloned() else {
        return Ok(());
    };
    let staging = with_suffix(&top, TEMP_SUFFIX);
    let result = (|| {
        for dir in &missing {
            let mode = if dir == Path::new(STATE_DIR) {
                STATE_DIR_MODE
            } else {
                DIR_MODE
            };
            root.mkdir(&rebase(dir, &top, &staging), mode)?;
        }
        let journal = Journal::new(root, &rebase(Path::new(STATE_JOURNAL), &top, &staging));
        for dir in &missing {
            journal.record(&Op::Mkdir(dir.clone()))?;
        }
        root.rename_noreplace(&staging, &top)?;
        root.sync_dir(top.parent().unwrap_or(Path::new("/")))
    })();
    if result.is_err() {
        // The staging tree is ours alone; if this fails too, the next
        // recover() removes it.
        if let Err(e) = remove_tree(root, &staging, &top) {
            log::error!("removing the unfinished state directory also failed: {e}");
        }
    }
    result
}

/// Remove the state journal and then the chain from `STATE_DIR` up to
/// `top` as it sits under `base` (`base` = `top` for the real one, the
/// staging name for an unfinished creation). Directories that hold
/// anything else stay.
fn remove_tree(root: &Root, base: &Path, top: &Path) -> Result<()> {
    match root.lstat(base)? {
        Some(e) if e.kind == Kind::Dir => {}
        _ => return Ok(()),
    }
    let journal = rebase(Path::new(STATE_JOURNAL), top, base);
    match root.lstat(&journal)? {
        Some(e) if e.kind == Kind::File => {
            root.unlink(&journal)?;
        }
        _ => {}
    }
    let mut dirs: Vec<PathBuf> = chain()
        .into_iter()
        .filter(|d| d.starts_with(top))
        .map(|d| rebase(&d, top, base))
        .collect();
    dirs.reverse();
    for dir in dirs {
        match root.lstat(&dir)? {
            Some(e) if e.kind == Kind::Dir => {}
            _ => continue,
        }
        match root.rmdir(&dir)? {
            Rmdir::Removed | Rmdir::Absent => log::debug!("removed directory {}", dir.display()),
            Rmdir::NotEmpty => log::info!(
                "kept {}: it now holds files other build steps put there",
                dir.display()
            ),
        }
    }
    Ok(())
}

/// Finish whatever a killed hook left half done to the state directory:
/// remove an unfinished creation, complete an unfinished removal.
pub fn recover(root: &Root) -> Result<()> {
    for top in chain() {
        let staging = with_suffix(&top, TEMP_SUFFIX);
        match root.lstat(&staging)? {
            Some(e) if e.kind == Kind::Dir => {
                log::info!("removing an unfinished state directory left by a killed hook");
                remove_tree(root, &staging, &top)?;
            }
            Some(e) if e.kind == Kind::File => {
                // A marker cut short by a kill mid-write is ours too.
                let content = root.read(&staging, MARKER.len() as u64 + 1)?;
                if !content.is_some_and(|c| MARKER.starts_with(&c)) {
                    return Err(Error::path(
                        root.host_path(&staging),
                        "is in the way of the state directory and is not ours; remove it",
                    ));
                }
                log::info!("finishing the removal of the state directory");
                remove_tree(root, &top, &top)?;
                root.unlink(&staging)?;
                root.sync_dir(top.parent().unwrap_or(Path::new("/")))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Remove the state directory and the parents we created for it, once no
/// journal needs it. `legacy` lists state directories recorded in the
/// hook journals by earlier versions, which had no state journal.
pub fn teardown(root: &Root, legacy: &[PathBuf]) -> Result<()> {
    for journal in [CONFIG_JOURNAL, MOUNT_JOURNAL] {
        if root.lstat(Path::new(journal))?.is_some() {
            return Ok(());
        }
    }
    let mut ours: Vec<PathBuf> = legacy.to_vec();
    if let Some(ops) = Journal::new(root, Path::new(STATE_JOURNAL)).read()? {
        ours.extend(ops.into_iter().filter_map(|op| match op {
            Op::Mkdir(dir) => Some(dir),
            _ => None,
        }));
    }
    // Only the chain counts, and only from its outermost recorded member.
    let Some(top) = chain().into_iter().find(|d| ours.contains(d)) else {
        return Ok(());
    };
    let marker = with_suffix(&top, TEMP_SUFFIX);
    let parent = top.parent().unwrap_or(Path::new("/"));
    root.write_new(&marker, MARKER, 0o600)?;
    root.sync_dir(parent)?;
    remove_tree(root, &top, &top)?;
    root.unlink(&marker)?;
    root.sync_dir(parent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{Death, FaultPlan};
    use std::sync::Arc;

    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in walk(dir) {
            out.push(e.strip_prefix(dir).unwrap().display().to_string());
        }
        out.sort();
        out
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.clone());
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            }
        }
        out
    }

    #[test]
    fn creates_the_chain_with_its_record_and_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        ensure(&root).unwrap();
        assert_eq!(
            listing(dir.path()),
            [
                "var",
                "var/lib",
                "var/lib/dib-pypi",
                "var/lib/dib-pypi/state.journal"
            ]
        );
        ensure(&root).unwrap();
        std::fs::write(dir.path().join("var/lib/dib-pypi/config.journal"), "x").unwrap();
        teardown(&root, &[]).unwrap();
        assert_eq!(listing(dir.path()).len(), 5, "a journal still needs it");
        std::fs::remove_file(dir.path().join("var/lib/dib-pypi/config.journal")).unwrap();
        teardown(&root, &[]).unwrap();
        assert!(listing(dir.path()).is_empty());
    }

    #[test]
    fn keeps_parents_that_existed_and_parents_others_filled() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        ensure(&root).unwrap();
        std::fs::write(dir.path().join("var/lib/apt-state"), "").unwrap();
        teardown(&root, &[]).unwrap();
        assert_eq!(listing(dir.path()), ["var", "var/lib", "var/lib/apt-state"]);
    }

    #[test]
    fn a_crash_at_any_step_of_creation_or_removal_is_recovered() {
        for with_var_lib in [false, true] {
            for phase in ["create", "remove"] {
                let mut n = 1;
                loop {
                    let dir = tempfile::tempdir().unwrap();
                    if with_var_lib {
                        std::fs::create_dir_all(dir.path().join("var/lib")).unwrap();
                    }
                    let before = listing(dir.path());
                    if phase == "remove" {
                        ensure(&Root::open(dir.path()).unwrap()).unwrap();
                    }
                    let plan = Arc::new(FaultPlan::crash_at(n, Death::Fail));
                    let root = Root::open(dir.path()).unwrap().with_faults(plan.clone());
                    let result = if phase == "create" {
                        ensure(&root)
                    } else {
                        teardown(&root, &[])
                    };
                    let clean = Root::open(dir.path()).unwrap();
                    if !plan.crashed() {
                        result.unwrap();
                        teardown(&clean, &[]).unwrap();
                        assert_eq!(listing(dir.path()), before);
                        break;
                    }
                    assert!(result.is_err());
                    // The next hook (restore, or configure again) recovers.
                    recover(&clean).unwrap();
                    teardown(&clean, &[]).unwrap();
                    assert_eq!(listing(dir.path()), before, "{phase} crash at step {n}");
                    if phase == "create" {
                        ensure(&clean).unwrap();
                        teardown(&clean, &[]).unwrap();
                        assert_eq!(listing(dir.path()), before);
                    }
                    n += 1;
                }
                assert!(n > 3, "{phase}: only {n} steps");
            }
        }
    }

    #[test]
    fn a_stranger_at_the_marker_name_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("var.dib-pypi-tmp"), "mine").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let e = recover(&root).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "var.dib-pypi-tmp: is in the way of the state directory and is not ours; remove it"
            ),
            "{e}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("var.dib-pypi-tmp")).unwrap(),
            b"mine"
        );
    }
}
