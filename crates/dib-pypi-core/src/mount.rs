//! root.d: the host's mirror, read-only at `/tmp/pypi` in the image, with no moment when the image sees it writable.

use std::io;
use std::path::{Path, PathBuf};

use crate::certs::MirrorTls;
use crate::error::{Error, Result};
use crate::hook::Report;
use crate::journal::{Journal, Op};
use crate::layout::{dir_mode, DEFAULT_HOME, MOUNTPOINT, MOUNT_JOURNAL};
use crate::mounter::{magic_path, mount_state, Mounter};
use crate::rootfs::{Kind, Root};
use crate::stage::Stage;
use crate::txn::Txn;

/// What [`mount_mirror`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOutcome {
    /// There is no mirror directory on the host; nothing to do.
    NoMirror,
    /// Our mount from an earlier run is still there.
    AlreadyMounted,
    /// Mounted, read-only.
    Mounted,
}

/// The root.d hook: the mirror directory (`mirror_dir`, else the one in
/// DIB's image cache), the TLS files from the environment, checked before
/// anything changes, then [`root_d`] on the image at `target_root`.
pub fn root_d_hook(
    target_root: &Path,
    mirror_dir: Option<PathBuf>,
    mounter: &dyn Mounter,
) -> Result<Report> {
    let source = mirror_dir
        .or_else(dib_pypi_common::cache::mirror_dir_from_env)
        .ok_or_else(|| {
            Error::env(
                "DIB_IMAGE_CACHE",
                "unset, and so is HOME; cannot locate the mirror",
            )
        })?;
    let tls = MirrorTls::from_env()?;
    let mut report = Report::default();
    for w in &tls.warnings {
        report.warn(w.as_str());
    }
    match root_d(&Root::open(target_root)?, &source, &tls, mounter)? {
        MountOutcome::NoMirror => report.debug(format!(
            "no mirror at {}; nothing to mount",
            source.display()
        )),
        MountOutcome::AlreadyMounted => {
            report.info(format!("mirror already mounted at {MOUNTPOINT}"))
        }
        MountOutcome::Mounted => report.info(format!(
            "mounted {} read-only at {MOUNTPOINT}",
            source.display()
        )),
    }
    Ok(report)
}

/// root.d: put the mirrors' TLS files into the image (see [`crate::tls`]),
/// then mount the mirror ([`mount_mirror`]). When the mount fails, the
/// TLS files are taken out again: a failed hook leaves nothing.
pub fn root_d(
    root: &Root,
    source: &Path,
    tls: &MirrorTls,
    mounter: &dyn Mounter,
) -> Result<MountOutcome> {
    crate::tls::install(root, tls, mounter)?;
    mount_mirror(root, source, mounter).map_err(|e| {
        let removed = crate::tls::install(root, &MirrorTls::default(), mounter);
        e.and_also("taking the TLS files out again", removed)
    })
}

/// root.d: bind-mount host directory `source` read-only at `/tmp/pypi` in
/// the image, staged beside the image so it is read-only before it
/// appears there (see [`crate::stage`]). Everything is checked before the
/// first change; a failure after it is rolled back.
pub fn mount_mirror(root: &Root, source: &Path, mounter: &dyn Mounter) -> Result<MountOutcome> {
    match std::fs::metadata(source) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(MountOutcome::NoMirror),
        Err(e) => return Err(Error::io("stat mirror", source, e)),
        Ok(m) if !m.is_dir() => {
            return Err(Error::path(source, "mirror exists but is not a directory"))
        }
        Ok(_) => {}
    }
    let mountpoint = Path::new(MOUNTPOINT);

    // Check everything before changing anything.
    let journal_has_mount = Journal::new(root, Path::new(MOUNT_JOURNAL))
        .read()?
        .is_some_and(|ops| ops.contains(&Op::Mount(mountpoint.into())));
    match root.lstat(mountpoint)? {
        None => {}
        Some(e) if e.kind == Kind::Dir => {}
        Some(e) => {
            return Err(Error::path(
                root.host_path(mountpoint),
                format!("is {}; refusing to mount over it", e.kind),
            ))
        }
    }
    // Whatever a killed root.d left beside the image goes first.
    let stage = Stage::beside(root)?;
    stage.clear(root, mounter)?;
    if let Some((_, true)) = mount_state(root, mounter, mountpoint)? {
        if journal_has_mount {
            // Ours from an earlier root.d: it was read-only before it was
            // moved here; make sure it still is.
            let top = root.open_dir_nofollow(mountpoint)?;
            mounter
                .remount_read_only(&magic_path(&top))
                .map_err(|e| Error::io("make read-only", root.host_path(mountpoint), e))?;
            return Ok(MountOutcome::AlreadyMounted);
        }
        return Err(Error::path(
            root.host_path(mountpoint),
            "something else is already mounted here",
        ));
    }
    let missing = root.missing_dirs(mountpoint)?;

    Txn::run(root, Path::new(MOUNT_JOURNAL), mounter, |txn| {
        let moved = stage.prepare(root, mounter, source).and_then(|()| {
            txn.create_dirs(&missing, |d| dir_mode(d, Path::new(DEFAULT_HOME)))?;
            txn.record_mount(mountpoint)?;
            stage.move_into(root, mounter, mountpoint)
        });
        // The stage is cleared on every path.
        match (moved, stage.clear(root, mounter)) {
            (Ok(()), Ok(())) => Ok(MountOutcome::Mounted),
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
            (Err(e), Err(also)) => Err(e.and_also("clearing the staging directory", Err(also))),
        }
    })
}
