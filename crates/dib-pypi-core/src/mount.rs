//! The read-only bind mount of the host's mirror into the image, behind a small trait.
//!
//! [`Mounter`] is the only door to mount(2)/umount(2), so unit tests can
//! record the exact calls without root, and the real implementation can be
//! exercised separately by the root-only integration tests.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::sys::statvfs::{statvfs, FsFlags};
use sys_mount::{Mount, MountFlags};

use crate::error::{Error, Result};
use crate::journal::MOUNT_JOURNAL;
use crate::rootfs::{Kind, Root};
use crate::txn::{missing_dirs, Txn, DIR_MODE};

/// Where the mirror appears inside the image (`file:///tmp/pypi`).
pub const MOUNTPOINT: &str = "/tmp/pypi";

/// The mount system calls the element needs.
pub trait Mounter {
    /// Bind `source` on `target` (both host paths).
    fn bind(&self, source: &Path, target: &Path) -> io::Result<()>;
    /// Make the bind mount at `target` read-only.
    fn remount_read_only(&self, target: &Path) -> io::Result<()>;
    /// Unmount `target` (not following a symlink at it).
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// The mount points currently in this process's mount namespace.
    fn mount_points(&self) -> io::Result<Vec<PathBuf>>;
}

/// How often [`SystemMounter::unmount`] retries EBUSY, 50 ms apart.
const UNMOUNT_BUSY_RETRIES: usize = 40;

/// The real thing: mount(2) through sys-mount, /proc/self/mountinfo.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemMounter;

impl Mounter for SystemMounter {
    fn bind(&self, source: &Path, target: &Path) -> io::Result<()> {
        Mount::builder()
            .fstype("none")
            .flags(MountFlags::BIND)
            .mount(source, target)
            .map(drop)
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        Mount::builder()
            .fstype("none")
            .flags(MountFlags::BIND | MountFlags::REMOUNT | MountFlags::RDONLY)
            .mount("", target)?;
        // Refuse to go on with a writable mirror: an element that wipes the
        // image must not be able to wipe the host's cache through it.
        if statvfs(target)?.flags().contains(FsFlags::ST_RDONLY) {
            Ok(())
        } else {
            Err(io::Error::other(
                "the mount is still writable after remounting read-only",
            ))
        }
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        // A process forked elsewhere holds every fd of its parent until its
        // exec closes them, so a mount can be busy for an instant. Retry
        // EBUSY briefly; a mount that stays busy is reported, never forced.
        let mut tries = 0;
        loop {
            // Not sys_mount::unmount: its UnmountFlags::NOFOLLOW carries
            // O_NOFOLLOW instead of UMOUNT_NOFOLLOW, which the kernel rejects.
            match nix::mount::umount2(target, nix::mount::MntFlags::UMOUNT_NOFOLLOW) {
                Err(nix::errno::Errno::EBUSY) if tries < UNMOUNT_BUSY_RETRIES => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other.map_err(io::Error::from),
            }
        }
    }

    fn mount_points(&self) -> io::Result<Vec<PathBuf>> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok(parse_mountinfo(&text))
    }
}

/// Mount points (field 5) of a mountinfo table, octal escapes undone.
pub fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| {
            use std::os::unix::ffi::OsStringExt;
            let bytes = field.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                let octal = bytes
                    .get(i + 1..i + 4)
                    .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
                    .map(|d| {
                        d.iter()
                            .fold(0u8, |acc, c| acc.wrapping_mul(8) + (c - b'0'))
                    });
                match octal {
                    Some(b) => {
                        out.push(b);
                        i += 4;
                    }
                    None => {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
            }
            PathBuf::from(std::ffi::OsString::from_vec(out))
        })
        .collect()
}

/// The host path the kernel gives for an open fd: what mountinfo lists.
fn fd_path(fd: &impl AsRawFd) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn magic_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Whether the directory `inner` of the image is a mount point, and its host
/// path. `None` when it does not exist or is not a directory.
pub fn mount_state(
    root: &Root,
    mounter: &dyn Mounter,
    inner: &Path,
) -> Result<Option<(PathBuf, bool)>> {
    match root.lstat(inner)? {
        Some(e) if e.kind == Kind::Dir => {}
        _ => return Ok(None),
    }
    let fd = root.open_dir_nofollow(inner)?;
    let host = fd_path(&fd).map_err(|e| Error::io("resolve", root.host_path(inner), e))?;
    let points = mounter
        .mount_points()
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    let mounted = points.iter().any(|p| p == &host);
    Ok(Some((host, mounted)))
}

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

/// root.d: bind-mount host directory `source` read-only at `/tmp/pypi` in
/// the image. Any failure after the first change is rolled back.
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
    let journal_has_mount = crate::journal::Journal::new(root, Path::new(MOUNT_JOURNAL))
        .read()?
        .is_some_and(|ops| ops.contains(&crate::journal::Op::Mount(mountpoint.into())));
    match root.lstat(mountpoint)? {
        None
        | Some(crate::rootfs::Entry {
            kind: Kind::Dir, ..
        }) => {}
        Some(e) => {
            return Err(Error::path(
                root.host_path(mountpoint),
                format!(
                    "is {}; refusing to mount over it",
                    crate::txn::kind_name(e.kind)
                ),
            ))
        }
    }
    if let Some((_, true)) = mount_state(root, mounter, mountpoint)? {
        if journal_has_mount {
            // An earlier root.d killed between the bind and the remount
            // left a writable mount: make sure it is read-only now.
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
    let missing = missing_dirs(root, mountpoint)?;

    let txn = Txn::begin(root, Path::new(MOUNT_JOURNAL))?;
    let result = (|| {
        txn.create_dirs(&missing, |d| {
            if d == Path::new("/tmp") {
                0o1777
            } else {
                DIR_MODE
            }
        })?;
        txn.record_mount(mountpoint)?;
        let under = root.open_dir_nofollow(mountpoint)?;
        mounter
            .bind(source, &magic_path(&under))
            .map_err(|e| Error::io("bind-mount mirror on", root.host_path(mountpoint), e))?;
        // Reopen: the new fd is the root of the bind mount, not the
        // directory underneath it.
        let top = root.open_dir_nofollow(mountpoint)?;
        mounter
            .remount_read_only(&magic_path(&top))
            .map_err(|e| Error::io("make read-only", root.host_path(mountpoint), e))
    })();
    match result {
        Ok(()) => Ok(MountOutcome::Mounted),
        Err(e) => {
            let journal = txn.journal();
            if let Err(undo) = crate::undo::undo_journal(root, journal, mounter, &mut Vec::new())
                .and_then(|()| crate::undo::remove_state_dir(root, &[]))
            {
                log::error!("rolling back after the failure also failed: {undo}");
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_and_escapes() {
        let text = "22 1 0:21 / / rw,relatime - ext4 /dev/vda rw\n\
                    36 22 0:30 /m /a\\040b/tmp/pypi ro,relatime - ext4 /dev/vda rw\n";
        assert_eq!(
            parse_mountinfo(text),
            vec![PathBuf::from("/"), PathBuf::from("/a b/tmp/pypi")]
        );
    }
}
