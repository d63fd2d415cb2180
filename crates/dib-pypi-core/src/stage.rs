//! The private staging point beside the image root, where the mirror is bound and made read-only before the image ever sees it.
//!
//! A bind mount is writable until it is remounted read-only, so binding
//! straight onto `/tmp/pypi` would show the image the host's mirror
//! writable for a moment. Instead the mirror is bound at
//! `<image root>.dib-pypi-stage/mirror` on the host, remounted read-only
//! and checked, and only then moved (`MS_MOVE`) into the image. The
//! staging directory holds a small private tmpfs of its own, because the
//! kernel refuses to move a mount whose parent mount is shared, as `/`
//! and DIB's build directory usually are.
//!
//! The staging directory is the image root's sibling, so it lives in DIB's
//! build directory (which DIB's exit trap unmounts and removes even when a
//! hook is killed), and its name follows from the image root alone: the
//! next root.d, and cleanup.d, find and clear whatever a killed hook left
//! there, with nothing to record in the image (whose files a hook in the
//! chroot could change). Only calls that Linux 4.18 has are used.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::layout::{STAGE_MOUNT, STAGE_SUFFIX};
use crate::mounter::{is_mounted, magic_path, Mounter};
use crate::rootfs::Root;

/// Mode of the staging directory and the directory inside it.
const STAGE_MODE: u32 = 0o700;

/// The staging directory of one image root (host paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    parent: PathBuf,
    name: OsString,
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

fn open_below(dir: &OwnedFd, name: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

impl Stage {
    /// The staging directory of `root`: beside the image root's real
    /// (symlink-free) path.
    pub fn beside(root: &Root) -> Result<Stage> {
        let real =
            std::fs::canonicalize(root.path()).map_err(|e| Error::io("resolve", root.path(), e))?;
        let (Some(parent), Some(name)) = (real.parent(), real.file_name()) else {
            return Err(Error::path(
                root.path(),
                "is the host's /; the image root must be a directory below it",
            ));
        };
        let mut name = name.to_os_string();
        name.push(STAGE_SUFFIX);
        Ok(Stage {
            parent: parent.to_path_buf(),
            name,
        })
    }

    /// Host path of the staging directory.
    pub fn dir(&self) -> PathBuf {
        self.parent.join(&self.name)
    }

    /// Host path of the bind mount inside it.
    pub fn mount(&self) -> PathBuf {
        self.dir().join(STAGE_MOUNT)
    }

    /// Bind `source` read-only at [`Stage::mount`]: make the staging
    /// directory, a private tmpfs on it, the bind, and the read-only
    /// remount (verified). Each step is a crash point of `root`.
    pub fn prepare(&self, root: &Root, mounter: &dyn Mounter, source: &Path) -> Result<()> {
        let dir = self.dir();
        let mount = self.mount();
        let parent = open_dir(&self.parent).map_err(|e| Error::io("open", &self.parent, e))?;
        root.step("create staging directory", &dir)?;
        nix::sys::stat::mkdirat(
            parent.as_fd(),
            self.name.as_os_str(),
            Mode::from_bits_truncate(STAGE_MODE),
        )
        .map_err(|e| Error::io("create staging directory", &dir, e.into()))?;
        let under =
            open_below(&parent, Path::new(&self.name)).map_err(|e| Error::io("open", &dir, e))?;
        root.step("mount tmpfs", &dir)?;
        mounter
            .mount_tmpfs(&magic_path(&under))
            .map_err(|e| Error::io("mount a private tmpfs on", &dir, e))?;
        // Reopen: the new fd is the root of the tmpfs, not the directory
        // underneath it.
        let top =
            open_below(&parent, Path::new(&self.name)).map_err(|e| Error::io("open", &dir, e))?;
        root.step("make private", &dir)?;
        mounter
            .make_private(&magic_path(&top))
            .map_err(|e| Error::io("make private", &dir, e))?;
        root.step("create directory", &mount)?;
        nix::sys::stat::mkdirat(
            top.as_fd(),
            STAGE_MOUNT,
            Mode::from_bits_truncate(STAGE_MODE),
        )
        .map_err(|e| Error::io("create directory", &mount, e.into()))?;
        let under =
            open_below(&top, Path::new(STAGE_MOUNT)).map_err(|e| Error::io("open", &mount, e))?;
        root.step("bind", &mount)?;
        mounter
            .bind(source, &magic_path(&under))
            .map_err(|e| Error::io("bind-mount mirror on", &mount, e))?;
        let bound =
            open_below(&top, Path::new(STAGE_MOUNT)).map_err(|e| Error::io("open", &mount, e))?;
        root.step("remount read-only", &mount)?;
        mounter
            .remount_read_only(&magic_path(&bound))
            .map_err(|e| Error::io("make read-only", &mount, e))
    }

    /// Move the prepared read-only mount onto directory `inner` of the
    /// image (opened without following a symlink at it).
    pub fn move_into(&self, root: &Root, mounter: &dyn Mounter, inner: &Path) -> Result<()> {
        let mount = self.mount();
        let from = open_dir(&mount).map_err(|e| Error::io("open", &mount, e))?;
        let to = root.open_dir_nofollow(inner)?;
        root.step("move mount", &root.host_path(inner))?;
        mounter
            .mount_move(&magic_path(&from), &magic_path(&to))
            .map_err(|e| Error::io("move the read-only mirror to", root.host_path(inner), e))
    }

    /// Remove whatever the staging directory holds: the bind, the tmpfs,
    /// the directories. Harmless when there is none; a directory whose
    /// unmount failed is never removed.
    pub fn clear(&self, root: &Root, mounter: &dyn Mounter) -> Result<()> {
        let dir = self.dir();
        let mount = self.mount();
        match std::fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("stat", &dir, e)),
            Ok(m) if !m.is_dir() => return Err(Error::path(
                &dir,
                "is in the way of the pypi element's staging directory and is not one; remove it",
            )),
            Ok(_) => {}
        }
        for point in [&mount, &dir] {
            if is_mounted(mounter, point)? {
                root.step("unmount", point)?;
                mounter
                    .unmount(point)
                    .map_err(|e| Error::io("unmount", point, e))?;
            }
        }
        let stage = open_dir(&dir).map_err(|e| Error::io("open", &dir, e))?;
        root.step("remove directory", &mount)?;
        remove_dir_at(&stage, Path::new(STAGE_MOUNT), &mount)?;
        let parent = open_dir(&self.parent).map_err(|e| Error::io("open", &self.parent, e))?;
        root.step("remove directory", &dir)?;
        remove_dir_at(&parent, Path::new(&self.name), &dir)?;
        Ok(())
    }
}

/// rmdir `name` in `dir`; fine when it is gone already. `shown` is its
/// host path, for the message.
fn remove_dir_at(dir: &OwnedFd, name: &Path, shown: &Path) -> Result<()> {
    match nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io("remove directory", shown, e.into())),
    }
}
