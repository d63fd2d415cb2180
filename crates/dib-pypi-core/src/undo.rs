//! Undoing a journal: put back every original and remove everything the hook created.
//!
//! Each step is undone in reverse order and each undo is idempotent, so
//! running it twice, or after a hook that was killed half way, ends in the
//! same place. Every finished undo is itself journaled (`undone N`), so a
//! rerun never replays an earlier step on a state a later one changed
//! (which would take a put-back original for our file and delete it).
//! Failures do not stop the other steps, except those on the same path; the
//! journal is kept until every step succeeded, so a later run can finish.
//! Errors are returned, not logged: the caller prints each once.

use std::path::Path;

use crate::error::{Error, Result};
use crate::journal::{Journal, Op};
use crate::mounter::{mount_state, Mounter};
use crate::rootfs::{Kind, Rmdir, Root};

/// Undo every step of `journal` not undone yet, then delete it.
pub fn undo_journal(root: &Root, journal: &Journal<'_>, mounter: &dyn Mounter) -> Result<()> {
    let Some(steps) = journal.pending()? else {
        return Ok(());
    };
    let mut errors = Vec::new();
    // Mount points whose unmount failed: never delete those.
    let mut busy: Vec<&Path> = Vec::new();
    // Paths whose undo failed: an earlier step on them (in journal order)
    // would act on a state it does not expect.
    let mut failed: Vec<&Path> = Vec::new();
    for (index, op) in steps.iter().rev() {
        if let Some(path) = op
            .paths()
            .into_iter()
            .find(|p| failed.contains(p) && !busy.contains(p))
        {
            errors.push(Error::path(
                root.host_path(path),
                "left as it is: undoing a later change to it failed",
            ));
            continue;
        }
        // Whether a rerun must skip this step. Removing a directory we made
        // is safe to replay, and must be retried when it was not empty yet.
        let mut mark = true;
        let step = match op {
            Op::Mount(path) => undo_mount(root, mounter, path).inspect_err(|_| busy.push(path)),
            Op::Create(path) => undo_create(root, path),
            Op::Backup { path, backup } => undo_backup(root, path, backup),
            Op::Mkdir(path) if busy.contains(&path.as_path()) => Err(Error::path(
                root.host_path(path),
                "not removed: the mirror could not be unmounted from it",
            )),
            Op::Mkdir(path) => undo_mkdir(root, path).map(|gone| mark = gone),
        };
        match step {
            // Without the mark a rerun could replay this step out of order:
            // stop rather than go on unrecorded.
            Ok(()) if mark => journal.mark_undone(*index)?,
            Ok(()) => {}
            Err(e) => {
                errors.push(e);
                failed.extend(op.paths());
            }
        }
    }
    Error::collect(errors)?;
    journal.remove()
}

fn undo_mount(root: &Root, mounter: &dyn Mounter, path: &Path) -> Result<()> {
    match mount_state(root, mounter, path)? {
        Some((host, true)) => {
            mounter
                .unmount(&host)
                .map_err(|e| Error::io("unmount", &host, e))?;
            log::info!("unmounted the mirror from {}", host.display());
            Ok(())
        }
        _ => Ok(()),
    }
}

fn undo_create(root: &Root, path: &Path) -> Result<()> {
    match root.lstat(path)? {
        None => Ok(()),
        Some(e) if matches!(e.kind, Kind::File | Kind::Symlink) => {
            root.unlink(path)?;
            log::debug!("removed {}", path.display());
            Ok(())
        }
        Some(e) => Err(Error::path(
            root.host_path(path),
            format!(
                "was created by us as a file but is now {}; left in place",
                e.kind
            ),
        )),
    }
}

fn undo_backup(root: &Root, path: &Path, backup: &Path) -> Result<()> {
    if root.lstat(backup)?.is_none() {
        // Either the original was never moved, or it is already back.
        return Ok(());
    }
    if let Some(e) = root.lstat(path)? {
        if e.kind == Kind::Dir {
            return Err(Error::path(
                root.host_path(path),
                "is now a directory; the original is kept at its backup name",
            ));
        }
    }
    root.rename_replace(backup, path)?;
    root.sync_dir(path.parent().unwrap_or(Path::new("/")))?;
    log::debug!("restored {}", path.display());
    Ok(())
}

/// Remove directory `path` if it is empty; whether it is gone (or was
/// replaced by something that is not ours to remove).
fn undo_mkdir(root: &Root, path: &Path) -> Result<bool> {
    match root.lstat(path)? {
        Some(e) if e.kind == Kind::Dir => {}
        _ => return Ok(true),
    }
    match root.rmdir(path)? {
        Rmdir::Removed => log::debug!("removed directory {}", path.display()),
        Rmdir::Absent => {}
        Rmdir::NotEmpty => {
            log::info!(
                "kept {}: it now holds files other build steps put there",
                path.display()
            );
            return Ok(false);
        }
    }
    Ok(true)
}
