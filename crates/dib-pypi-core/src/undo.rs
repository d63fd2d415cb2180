//! Undoing journals: put back every original and remove everything we created.
//!
//! Each step is undone in reverse order and each undo is idempotent, so
//! running restore twice, or after a hook that was killed half way, ends in
//! the same place. Every finished undo is itself journaled (`undone N`), so
//! a rerun never replays an earlier step on a state a later one changed
//! (which would take a put-back original for our file and delete it).
//! Failures do not stop the other steps, except those on the same path; the
//! journal is kept until every step succeeded, so a later run can finish.

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
            let e = Error::path(
                root.host_path(path),
                "left as it is: undoing a later change to it failed",
            );
            log::error!("{e}");
            errors.push(e);
            continue;
        }
        // Whether a rerun must skip this step. Removing a directory we made
        // is safe to replay, and must be retried when it was not empty yet.
        let mut mark = true;
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
                // Not undone here, so not marked: a rerun defers it again.
                deferred.push(path.clone());
                mark = false;
                Ok(())
            }
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
                log::error!("{e}");
                errors.push(e);
                failed.extend(op.paths());
            }
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

/// Remove the state directory and the parents we created for it (those
/// the state journal records, plus `deferred` ones from journals of earlier
/// versions), once no hook journal needs it. See [`crate::state`].
pub fn remove_state_dir(root: &Root, deferred: &[PathBuf]) -> Result<()> {
    crate::state::teardown(root, deferred)
}

/// cleanup.d: finish any interrupted change to the state directory, undo
/// the configure journal, then the mount journal, then remove the state
/// directory. Harmless when nothing was done.
pub fn restore(root: &Root, mounter: &dyn Mounter) -> Result<()> {
    let mut deferred = Vec::new();
    let mut errors = Vec::new();
    if let Err(e) = crate::state::recover(root) {
        errors.push(e);
    }
    for path in [CONFIG_JOURNAL, MOUNT_JOURNAL] {
        let journal = Journal::new(root, Path::new(path));
        if let Err(e) = undo_journal(root, &journal, mounter, &mut deferred) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        remove_state_dir(root, &deferred)?;
        check_no_leftovers(root)
    } else if errors.len() == 1 {
        Err(errors.remove(0))
    } else {
        Err(Error::Many(errors))
    }
}

/// The post-condition of a restore: none of root's config files is ours.
/// Fails when the journals vanished (another element removed or replaced
/// the state directory): the originals cannot be put back automatically,
/// and reporting success would ship the mirror config in the image.
fn check_no_leftovers(root: &Root) -> Result<()> {
    for (path, _) in crate::configure::config_files(Path::new("/root")) {
        // Only the marker at the top matters; read no more than that.
        let head = root.read(&path, 256).ok().flatten().unwrap_or_default();
        if crate::render::is_ours(&head) {
            return Err(Error::path(
                root.host_path(&path),
                format!(
                    "still holds the pypi element's mirror config, but no journal in {STATE_DIR} \
                     names it (was that directory removed or replaced?); \
                     remove the file and put back the original by hand"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configure::configure;
    use crate::settings::Settings;
    use crate::test_support::{tree, NoMounts};

    fn image_with_original() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root/.pip")).unwrap();
        std::fs::write(
            dir.path().join("root/.pip/pip.conf"),
            "[global]\ntimeout = 7\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn restore_killed_at_any_step_then_run_again_keeps_the_original() {
        // Regression: a rerun replayed "remove the file we created" on the
        // original that the killed run had already put back, deleting it.
        use crate::fault::{Death, FaultPlan};
        use std::sync::Arc;
        let settings = Settings::from_vars([("DIB_OFFLINE", "1")]).unwrap();
        let mut n = 1;
        loop {
            let dir = image_with_original();
            let before = tree(dir.path());
            let root = Root::open(dir.path()).unwrap();
            configure(&root, &settings, Path::new("/root"), &NoMounts).unwrap();
            let plan = Arc::new(FaultPlan::crash_at(n, Death::Fail));
            let killed = Root::open(dir.path()).unwrap().with_faults(plan.clone());
            let result = restore(&killed, &NoMounts);
            restore(&root, &NoMounts).unwrap();
            assert_eq!(tree(dir.path()), before, "killed at step {n}");
            if !plan.crashed() {
                result.unwrap();
                break;
            }
            n += 1;
        }
        assert!(n > 10, "{n}");
    }

    #[test]
    fn a_lost_journal_with_our_config_left_behind_is_an_error() {
        let dir = image_with_original();
        let root = Root::open(dir.path()).unwrap();
        let settings = Settings::from_vars([("DIB_OFFLINE", "1")]).unwrap();
        configure(&root, &settings, Path::new("/root"), &NoMounts).unwrap();
        // Another element wipes /var/lib: the journals are gone.
        std::fs::remove_dir_all(dir.path().join("var")).unwrap();
        let e = restore(&root, &NoMounts).unwrap_err().to_string();
        assert!(
            e.contains("root/.pip/pip.conf: still holds the pypi element"),
            "{e}"
        );
        // Without the leftovers the same restore succeeds.
        for f in [
            ".pip/pip.conf",
            ".config/pip/pip.conf",
            ".config/uv/uv.toml",
        ] {
            std::fs::remove_file(dir.path().join("root").join(f)).unwrap();
        }
        restore(&root, &NoMounts).unwrap();
    }

    #[test]
    fn a_failed_step_stops_earlier_steps_on_the_same_path() {
        let dir = image_with_original();
        let root = Root::open(dir.path()).unwrap();
        let settings = Settings::from_vars([("DIB_OFFLINE", "1")]).unwrap();
        configure(&root, &settings, Path::new("/root"), &NoMounts).unwrap();
        // Our file became a directory: it cannot be removed, so the
        // original must stay at its backup name, not be renamed over it.
        let conf = dir.path().join("root/.pip/pip.conf");
        std::fs::remove_file(&conf).unwrap();
        std::fs::create_dir(&conf).unwrap();
        let e = restore(&root, &NoMounts).unwrap_err().to_string();
        assert!(
            e.contains("was created by us as a file but is now a directory"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("root/.pip/pip.conf.dib-pypi-orig")).unwrap(),
            "[global]\ntimeout = 7\n"
        );
        // Once the directory is gone, a rerun finishes the job.
        std::fs::remove_dir(&conf).unwrap();
        restore(&root, &NoMounts).unwrap();
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            "[global]\ntimeout = 7\n"
        );
        assert!(!dir.path().join("var").exists());
    }
}
