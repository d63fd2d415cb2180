//! cleanup.d: put back every original and remove everything the element created, as its journals record.

use std::path::Path;

use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::layout::{JOURNALS, STATE_DIR};
use crate::mounter::Mounter;
use crate::rootfs::Root;
use crate::stage::Stage;
use crate::tools::{every_path, ToolSpec, TOOLS};

/// [`restore_tools`] for the element's [`TOOLS`].
pub fn restore(root: &Root, mounter: &dyn Mounter, home: &Path) -> Result<()> {
    restore_tools(root, mounter, home, TOOLS)
}

/// Clear what a killed root.d left beside the image, undo the configure
/// journal, then the mount journal, then remove the state directory, and
/// check that none of the config files `tools` read as root (home `home`)
/// is still ours. Harmless when nothing was done; every failure is
/// returned (several as [`Error::Many`]), none is printed here.
pub fn restore_tools(
    root: &Root,
    mounter: &dyn Mounter,
    home: &Path,
    tools: &[&ToolSpec],
) -> Result<()> {
    let mut errors = Vec::new();
    if let Err(e) = Stage::beside(root).and_then(|stage| stage.clear(root, mounter)) {
        errors.push(e);
    }
    for path in JOURNALS {
        let journal = Journal::new(root, Path::new(path));
        if let Err(e) = crate::undo::undo_journal(root, &journal, mounter) {
            errors.push(e);
        }
    }
    Error::collect(errors)?;
    crate::state::teardown(root)?;
    check_no_leftovers(root, home, tools)
}

/// The post-condition of a restore: none of the config files the element
/// may write is ours. Fails when the journals vanished (another element
/// removed the state directory): the originals cannot be put back
/// automatically, and reporting success would ship the mirror config in
/// the image. A path no program in the image can read (a missing parent, a
/// dangling link, something not a file) holds nothing of ours; any other
/// failure to read is an error.
fn check_no_leftovers(root: &Root, home: &Path, tools: &[&ToolSpec]) -> Result<()> {
    for path in every_path(tools, home) {
        // Only the marker at the top matters; read no more than that.
        let head = match root.read(&path, 256) {
            Ok(Some(head)) => head,
            Ok(None) | Err(Error::Path { .. }) => continue,
            Err(e)
                if e.errno().is_some_and(|n| {
                    use nix::errno::Errno;
                    matches!(n, Errno::ENOTDIR | Errno::ELOOP | Errno::ENXIO)
                }) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
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
    use crate::testing::{tree, NoMounts};

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

    fn offline() -> Settings {
        Settings::from_vars([("DIB_OFFLINE", "1")]).unwrap()
    }

    fn home() -> &'static Path {
        Path::new("/root")
    }

    #[test]
    fn restore_killed_at_any_step_then_run_again_keeps_the_original() {
        // Regression: a rerun replayed "remove the file we created" on the
        // original that the killed run had already put back, deleting it.
        let n = crate::fault::at_every_crash_point(|plan| {
            let dir = image_with_original();
            let before = tree(dir.path());
            let root = Root::open(dir.path()).unwrap();
            configure(&root, &offline(), home(), &NoMounts).unwrap();
            let killed = Root::open(dir.path()).unwrap().with_faults(plan.clone());
            let result = restore(&killed, &NoMounts, home());
            restore(&root, &NoMounts, home()).unwrap();
            assert_eq!(tree(dir.path()), before, "killed at step {}", plan.steps());
            result
        });
        assert!(n > 10, "{n}");
    }

    #[test]
    fn a_lost_journal_with_our_config_left_behind_is_an_error() {
        let dir = image_with_original();
        let root = Root::open(dir.path()).unwrap();
        configure(&root, &offline(), home(), &NoMounts).unwrap();
        // Another element wipes the state directory: the journals are gone.
        std::fs::remove_dir_all(dir.path().join("dib-pypi")).unwrap();
        let e = restore(&root, &NoMounts, home()).unwrap_err().to_string();
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
        restore(&root, &NoMounts, home()).unwrap();
    }

    #[test]
    fn leftovers_are_found_in_the_home_configure_used_and_in_etc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        // ~/.config leads nowhere, so uv is pointed at /etc/uv/uv.toml.
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("home/.config")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let done = configure(&root, &offline(), Path::new("/home"), &NoMounts).unwrap();
        assert!(done.written.contains(&"/etc/uv/uv.toml".into()), "{done:?}");
        std::fs::remove_dir_all(dir.path().join("dib-pypi")).unwrap();
        let e = restore(&root, &NoMounts, Path::new("/home"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("home/.pip/pip.conf: still holds"), "{e}");
        std::fs::remove_file(dir.path().join("home/.pip/pip.conf")).unwrap();
        let e = restore(&root, &NoMounts, Path::new("/home"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("etc/uv/uv.toml: still holds"), "{e}");
    }

    #[test]
    fn a_config_path_that_is_no_file_holds_nothing_of_ours() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root/.pip")).unwrap();
        std::fs::create_dir_all(dir.path().join("root/.config/pip/pip.conf")).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("root/.pip/pip.conf"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        // A symlink loop, as unreadable for pip and uv as for us.
        std::os::unix::fs::symlink("uv", dir.path().join("root/.config/uv")).unwrap();
        let before = tree(dir.path());
        restore(&Root::open(dir.path()).unwrap(), &NoMounts, home()).unwrap();
        assert_eq!(tree(dir.path()), before);
    }

    #[test]
    fn a_failed_step_stops_earlier_steps_on_the_same_path() {
        let dir = image_with_original();
        let root = Root::open(dir.path()).unwrap();
        configure(&root, &offline(), home(), &NoMounts).unwrap();
        // Our file became a directory: it cannot be removed, so the
        // original must stay at its backup name, not be renamed over it.
        let conf = dir.path().join("root/.pip/pip.conf");
        std::fs::remove_file(&conf).unwrap();
        std::fs::create_dir(&conf).unwrap();
        let e = restore(&root, &NoMounts, home()).unwrap_err();
        assert!(
            e.leaves().iter().any(|e| e
                .to_string()
                .contains("was created by us as a file but is now a directory")),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("root/.pip/pip.conf.dib-pypi-orig")).unwrap(),
            "[global]\ntimeout = 7\n"
        );
        // Once the directory is gone, a rerun finishes the job.
        std::fs::remove_dir(&conf).unwrap();
        restore(&root, &NoMounts, home()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            "[global]\ntimeout = 7\n"
        );
        assert!(!dir.path().join("dib-pypi").exists());
    }
}
