//! Undoing journals: put back every original and remove everything we created.
//!
//! Each step is undone in reverse order and each undo is idempotent, so
//! running restore twice, or after a hook that was killed half way, ends in
//! the same place. Failures do not stop the other steps; the journal is kept
//! until every step succeeded, so a later run can finish the job.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::journal::{Journal, Op, CONFIG_JOURNAL, MOUNT_JOURNAL, STATE_DIR};
use crate::mount::{mount_state, Mounter};
use crate::rootfs::{Kind, Rmdir, Root};
use crate::txn::kind_name;

/// Whether `path` is the state directory or one of its ancestors: those go
/// last, once no journal needs them.
fn holds_state(path: &Path) -> bool {
    Path::new(STATE_DIR).starts_with(path)
}

/// Undo every step of `journal` and delete it. Directories that hold the
/// state directory are pushed to `deferred` instead of being removed.
pub fn undo_journal(
    root: &Root,
    journal: &Journal<'_>,
    mounter: &dyn Mounter,
    deferred: &mut Vec<PathBuf>,
) -> Result<()> {
    let Some(ops) = journal.read()? else {
        return Ok(());
    };
    let mut errors = Vec::new();
    // Mount points whose unmount failed: never delete those.
    let mut busy: Vec<&Path> = Vec::new();
    for op in ops.iter().rev() {
        let step = match op {
            Op::Mount(path) => match mount_state(root, mounter, path) {
                Ok(Some((host, true))) => mounter
                    .unmount(&host)
                    .map(|()| log::info!("unmounted the mirror from {}", host.display()))
                    .map_err(|e| Error::io("unmount", host, e)),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
            .inspect_err(|_| busy.push(path)),
            Op::Create(path) => undo_create(root, path),
            Op::Backup { path, backup } => undo_backup(root, path, backup),
            Op::Mkdir(path) if holds_state(path) => {
                deferred.push(path.clone());
                Ok(())
            }
            Op::Mkdir(path) if busy.contains(&path.as_path()) => Err(Error::path(
                root.host_path(path),
                "not removed: the mirror could not be unmounted from it",
            )),
            Op::Mkdir(path) => undo_mkdir(root, path),
        };
        if let Err(e) = step {
            log::error!("{e}");
            errors.push(e);
        }
    }
    if errors.is_empty() {
        journal.remove()
    } else if errors.len() == 1 {
        Err(errors.remove(0))
    } else {
        Err(Error::Many(errors))
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
                kind_name(e.kind)
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

fn undo_mkdir(root: &Root, path: &Path) -> Result<()> {
    match root.lstat(path)? {
        Some(e) if e.kind == Kind::Dir => {}
        // Gone, or replaced by something that is not ours to remove.
        _ => return Ok(()),
    }
    match root.rmdir(path)? {
        Rmdir::Removed => log::debug!("removed directory {}", path.display()),
        Rmdir::Absent => {}
        Rmdir::NotEmpty => log::info!(
            "kept {}: it now holds files other build steps put there",
            path.display()
        ),
    }
    Ok(())
}

/// Remove the state directory (if empty) and the `deferred` ancestors we
/// created for it, innermost first.
pub fn remove_state_dir(root: &Root, deferred: &[PathBuf]) -> Result<()> {
    let mut dirs: Vec<&Path> = deferred.iter().map(PathBuf::as_path).collect();
    dirs.push(Path::new(STATE_DIR));
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs.dedup();
    for dir in dirs {
        undo_mkdir(root, dir)?;
    }
    Ok(())
}

/// cleanup.d: undo the configure journal, then the mount journal, then
/// remove the state directory. Harmless when nothing was done.
pub fn restore(root: &Root, mounter: &dyn Mounter) -> Result<()> {
    let mut deferred = Vec::new();
    let mut errors = Vec::new();
    for path in [CONFIG_JOURNAL, MOUNT_JOURNAL] {
        let journal = Journal::new(root, Path::new(path));
        if let Err(e) = undo_journal(root, &journal, mounter, &mut deferred) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        remove_state_dir(root, &deferred)
    } else if errors.len() == 1 {
        Err(errors.remove(0))
    } else {
        Err(Error::Many(errors))
    }
}
