//! The state directory that holds the journals: one directory at the top of the image, made and removed in single steps.
//!
//! Its parent, the image's `/`, always exists, so creating it is one
//! `mkdir` (then its mode and a flush), and nothing has to be recorded
//! before the first journal record. A hook killed between the `mkdir`
//! and its first record leaves an empty directory that the next hook
//! uses and that [`teardown`] removes; removal is one `rmdir` once both
//! journals are gone.

use std::path::Path;

use crate::error::{Error, Result};
use crate::layout::{JOURNALS, STATE_DIR, STATE_DIR_MODE};
use crate::rootfs::{Kind, Rmdir, Root};

/// Create the state directory if it is not there. Anything else at its
/// name is refused: it is not ours.
pub fn ensure(root: &Root) -> Result<()> {
    let dir = Path::new(STATE_DIR);
    match root.lstat(dir)? {
        None => root.mkdir(dir, STATE_DIR_MODE),
        Some(e) if e.kind == Kind::Dir => Ok(()),
        Some(e) => Err(Error::path(
            root.host_path(dir),
            format!(
                "is {}, where the pypi element keeps its state; remove it",
                e.kind
            ),
        )),
    }
}

/// Remove the state directory once no journal needs it. One that holds
/// anything else stays, and says so: the element did not put it there.
pub fn teardown(root: &Root) -> Result<()> {
    for journal in JOURNALS {
        if root.lstat(Path::new(journal))?.is_some() {
            return Ok(());
        }
    }
    let dir = Path::new(STATE_DIR);
    match root.lstat(dir)? {
        Some(e) if e.kind == Kind::Dir => {}
        _ => return Ok(()),
    }
    match root.rmdir(dir)? {
        Rmdir::Removed => root.sync_dir(Path::new("/")),
        Rmdir::Absent => Ok(()),
        Rmdir::NotEmpty => Err(Error::path(
            root.host_path(dir),
            "holds files the pypi element did not put there; left in place",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tree;

    #[test]
    fn made_once_and_removed_when_no_journal_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let before = tree(dir.path());
        let root = Root::open(dir.path()).unwrap();
        ensure(&root).unwrap();
        ensure(&root).unwrap();
        let meta = std::fs::metadata(dir.path().join("dib-pypi")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
            0o755
        );
        std::fs::write(dir.path().join("dib-pypi/config.journal"), "x").unwrap();
        teardown(&root).unwrap();
        assert!(
            dir.path().join("dib-pypi").is_dir(),
            "a journal still needs it"
        );
        std::fs::remove_file(dir.path().join("dib-pypi/config.journal")).unwrap();
        teardown(&root).unwrap();
        assert_eq!(tree(dir.path()), before);
    }

    #[test]
    fn strangers_are_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dib-pypi"), "mine").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let e = ensure(&root).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "dib-pypi: is a regular file, where the pypi element keeps its state; remove it"
            ),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("dib-pypi")).unwrap();
        ensure(&root).unwrap();
        std::fs::write(dir.path().join("dib-pypi/notes"), "mine").unwrap();
        let e = teardown(&root).unwrap_err().to_string();
        assert!(
            e.ends_with("holds files the pypi element did not put there; left in place"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("dib-pypi/notes")).unwrap(),
            b"mine"
        );
    }

    #[test]
    fn a_crash_at_any_step_leaves_nothing_a_rerun_cannot_finish() {
        let n = crate::fault::at_every_crash_point(|plan| {
            let dir = tempfile::tempdir().unwrap();
            let before = tree(dir.path());
            let result = ensure(&Root::open(dir.path()).unwrap().with_faults(plan.clone()));
            if plan.crashed() {
                assert!(result.is_err());
                // The next hook takes over what is there, and cleanup removes it.
                let clean = Root::open(dir.path()).unwrap();
                ensure(&clean).unwrap();
                teardown(&clean).unwrap();
                assert_eq!(tree(dir.path()), before, "crash at step {}", plan.steps());
            }
            result.map(drop)
        });
        assert_eq!(n, 4, "mkdir, chmod, fsync: then done");
    }
}
