//! pre-install.d: back up root's pip and uv configs and write ones that use the mirrors.

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
}

fn plan(root: &Root, files: &[(PathBuf, Tool)]) -> Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for (path, tool) in files {
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
        let parent = path.parent().unwrap_or(Path::new("/"));
        let mut missing = missing_dirs(root, parent)?;
        // A directory shared by two files is created by the first one.
        missing.retain(|d| !planned.iter().any(|p: &Planned| p.missing.contains(d)));
        planned.push(Planned {
            path: path.clone(),
            tool: *tool,
            original,
            missing,
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

    let planned = plan(root, &config_files(home))?;
    let pip = pip_conf(settings);
    let uv = uv_toml(settings);
    let mode = if settings.has_credentials() {
        0o600
    } else {
        0o644
    };

    let txn = Txn::begin(root, Path::new(CONFIG_JOURNAL))?;
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
            Err(e)
        }
    }
}
