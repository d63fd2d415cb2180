//! pre-install.d: back up root's pip and uv configs and write ones that use the mirrors.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::journal::{Journal, CONFIG_JOURNAL};
use crate::mount::Mounter;
use crate::render::{pip_conf, uv_toml};
use crate::rootfs::{with_suffix, Kind, Root};
use crate::settings::Settings;
use crate::txn::{kind_name, missing_dirs, Txn, BACKUP_SUFFIX, DIR_MODE, TEMP_SUFFIX};

/// Which tool a config file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Pip,
    Uv,
}

/// The user config files we replace, for home directory `home`. pip reads
/// both of its user files (the XDG one last, so it wins); writing both means
/// neither an existing file nor `XDG_CONFIG_HOME` pointing elsewhere leaves
/// pip without the mirrors.
pub fn config_files(home: &Path) -> Vec<(PathBuf, Tool)> {
    vec![
        (home.join(".pip/pip.conf"), Tool::Pip),
        (home.join(".config/pip/pip.conf"), Tool::Pip),
        (home.join(".config/uv/uv.toml"), Tool::Uv),
    ]
}

/// The home directory pip and uv will use: `$HOME` when it is a clean
/// absolute path, else `/root` (we run as root; no NSS lookup, the binary is
/// static and the image's libc is unknown).
pub fn home_dir(home_var: Option<&std::ffi::OsStr>) -> PathBuf {
    home_var
        .map(PathBuf::from)
        .filter(|p| crate::rootfs::is_clean_absolute(p))
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// One planned file replacement, checked before anything changes.
struct Planned {
    path: PathBuf,
    tool: Tool,
    original: bool,
    missing: Vec<PathBuf>,
    /// Identity of the parent directory and the file name, when the
    /// parent exists.
    id: Option<((u64, u64), Option<OsString>)>,
}

fn plan(root: &Root, files: &[(PathBuf, Tool)]) -> Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for (path, tool) in files {
        let parent = path.parent().unwrap_or(Path::new("/"));
        // With `~/.pip` a symlink to `~/.config/pip`, two of our paths are
        // one file. Replacing it twice would move our own first file aside
        // as if it were the original, and undoing that would lose the real
        // original: write such a file once.
        let id = if root.is_dir(parent)? {
            Some((
                root.dir_id(parent)?,
                path.file_name().map(OsStr::to_os_string),
            ))
        } else {
            None
        };
        if let Some(first) = planned
            .iter()
            .find(|p: &&Planned| id.is_some() && p.id == id)
        {
            log::info!(
                "{} is the same file as {} (a symlinked directory); writing it once",
                path.display(),
                first.path.display()
            );
            continue;
        }
        let original = match root.lstat(path)? {
            None => false,
            Some(e) if matches!(e.kind, Kind::File | Kind::Symlink) => true,
            Some(e) => {
                return Err(Error::path(
                    root.host_path(path),
                    format!(
                        "is {}, not a config file; refusing to replace it",
                        kind_name(e.kind)
                    ),
                ))
            }
        };
        for leftover in [
            with_suffix(path, BACKUP_SUFFIX),
            with_suffix(path, TEMP_SUFFIX),
        ] {
            if root.lstat(&leftover)?.is_some() {
                return Err(Error::path(
                    root.host_path(&leftover),
                    "already exists (left by an interrupted build?); remove it and retry",
                ));
            }
        }
        let mut missing = missing_dirs(root, parent)?;
        // A directory shared by two files is created by the first one.
        missing.retain(|d| !planned.iter().any(|p: &Planned| p.missing.contains(d)));
        planned.push(Planned {
            path: path.clone(),
            tool: *tool,
            original,
            missing,
            id,
        });
    }
    Ok(planned)
}

/// Replace root's pip and uv user configs in the image at `root` with ones
/// that use `settings`. Bad state is refused before anything changes; a
/// failure half way is rolled back.
pub fn configure(
    root: &Root,
    settings: &Settings,
    home: &Path,
    mounter: &dyn Mounter,
) -> Result<Vec<PathBuf>> {
    // A second configure (a re-run, or a second element) must not back up
    // our own files: put the originals back first.
    let previous = Journal::new(root, Path::new(CONFIG_JOURNAL));
    if previous.read()?.is_some() {
        log::info!(
            "found the configuration of an earlier run; restoring it before configuring again"
        );
        crate::undo::undo_journal(root, &previous, mounter, &mut Vec::new())?;
    }

    let planned = plan(root, &config_files(home)).inspect_err(|_| drop_state(root))?;
    let pip = pip_conf(settings);
    let uv = uv_toml(settings);
    let mode = if settings.has_credentials() {
        0o600
    } else {
        0o644
    };

    let txn = Txn::begin(root, Path::new(CONFIG_JOURNAL)).inspect_err(|_| drop_state(root))?;
    let result = (|| {
        for p in &planned {
            txn.create_dirs(&p.missing, |d| if d == home { 0o700 } else { DIR_MODE })?;
            if p.original {
                txn.move_aside(&p.path)?;
            }
            let contents = match p.tool {
                Tool::Pip => &pip,
                Tool::Uv => &uv,
            };
            txn.write_file(&p.path, contents.as_bytes(), mode)?;
            log::debug!(
                "wrote {}{}",
                p.path.display(),
                if p.original {
                    " (original kept aside)"
                } else {
                    ""
                }
            );
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(planned.into_iter().map(|p| p.path).collect()),
        Err(e) => {
            if let Err(undo) =
                crate::undo::undo_journal(root, txn.journal(), mounter, &mut Vec::new())
            {
                log::error!("rolling back after the failure also failed: {undo}");
            }
            drop_state(root);
            Err(e)
        }
    }
}

/// After a failure: remove the state directory if we made it and no
/// journal needs it any more, so a refused configure leaves no trace.
fn drop_state(root: &Root) {
    if let Err(e) = crate::state::teardown(root, &[]) {
        log::error!("removing the state directory after the failure also failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{tree, NoMounts};
    use std::os::unix::fs::symlink;

    #[test]
    fn a_symlinked_pip_dir_is_written_once_and_its_original_survives() {
        // Regression: ~/.pip -> .config/pip made the second replacement
        // move our first file aside, and the rollback deleted the original.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root/.config/pip")).unwrap();
        symlink(".config/pip", dir.path().join("root/.pip")).unwrap();
        std::fs::write(dir.path().join("root/.config/pip/pip.conf"), "orig").unwrap();
        let before = tree(dir.path());
        let root = Root::open(dir.path()).unwrap();
        let settings = Settings::from_vars([("DIB_OFFLINE", "1")]).unwrap();
        let written = configure(&root, &settings, Path::new("/root"), &NoMounts).unwrap();
        assert_eq!(
            written,
            [
                PathBuf::from("/root/.pip/pip.conf"),
                PathBuf::from("/root/.config/uv/uv.toml")
            ]
        );
        let conf = std::fs::read_to_string(dir.path().join("root/.config/pip/pip.conf")).unwrap();
        assert!(conf.contains("index-url = file:///tmp/pypi"), "{conf}");
        crate::undo::restore(&root, &NoMounts).unwrap();
        assert_eq!(tree(dir.path()), before);
    }

    #[test]
    fn a_refused_configure_leaves_no_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root/.config/uv/uv.toml")).unwrap();
        let before = tree(dir.path());
        let root = Root::open(dir.path()).unwrap();
        let settings = Settings::from_vars([("DIB_OFFLINE", "1")]).unwrap();
        let e = configure(&root, &settings, Path::new("/root"), &NoMounts)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("uv.toml: is a directory, not a config file; refusing to replace it"),
            "{e}"
        );
        assert_eq!(tree(dir.path()), before);
    }

    #[test]
    fn a_second_configure_keeps_the_state_parents_on_record() {
        // Regression: the rerun undid the first journal (with the records of
        // /var and /var/lib) and then found the state dir already there, so
        // restore left /var/lib and /var behind.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let before = tree(dir.path());
        let root = Root::open(dir.path()).unwrap();
        let settings = Settings::from_vars([("DIB_OFFLINE", "1")]).unwrap();
        configure(&root, &settings, Path::new("/root"), &NoMounts).unwrap();
        configure(&root, &settings, Path::new("/root"), &NoMounts).unwrap();
        crate::undo::restore(&root, &NoMounts).unwrap();
        assert_eq!(tree(dir.path()), before);
    }
}
