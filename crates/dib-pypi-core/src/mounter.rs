//! The mount system calls behind a small trait, and what the mount table says about a path.
//!
//! [`Mounter`] is the only door to mount(2)/umount(2), so unit tests can
//! record the exact calls without root (see `testing::FakeMounter`), and
//! the real implementation is exercised by the root-only integration
//! tests. Only calls that Linux 4.18 has are used: no `open_tree`,
//! `move_mount` or `mount_setattr`.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::sys::statvfs::{statvfs, FsFlags};
use sys_mount::{Mount, MountFlags};

use crate::error::{Error, Result};
use crate::rootfs::{Kind, Root};

/// The mount system calls the element needs. Targets are host paths,
/// usually `/proc/self/fd/N` of a directory opened safely.
pub trait Mounter {
    /// Mount a small private-to-root tmpfs on `target`.
    fn mount_tmpfs(&self, target: &Path) -> io::Result<()>;
    /// Make the mount at `target` private: nothing mounted below it
    /// propagates to its peers, and it may then be the parent of a moved
    /// mount.
    fn make_private(&self, target: &Path) -> io::Result<()>;
    /// Bind `source` on `target`.
    fn bind(&self, source: &Path, target: &Path) -> io::Result<()>;
    /// Make the bind mount at `target` read-only, and verify it is.
    fn remount_read_only(&self, target: &Path) -> io::Result<()>;
    /// Move the mount at `from` to `to` (mount(2) with MS_MOVE).
    fn mount_move(&self, from: &Path, to: &Path) -> io::Result<()>;
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

fn mount_call(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> io::Result<()> {
    let mut b = Mount::builder().fstype(fstype).flags(flags);
    if !data.is_empty() {
        b = b.data(data);
    }
    b.mount(source, target).map(drop)
}

impl Mounter for SystemMounter {
    fn mount_tmpfs(&self, target: &Path) -> io::Result<()> {
        let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        mount_call("tmpfs", target, "tmpfs", flags, "mode=0700,size=64k")
    }

    fn make_private(&self, target: &Path) -> io::Result<()> {
        // sys-mount sets propagation only on mounts it made itself.
        nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(io::Error::from)
    }

    fn bind(&self, source: &Path, target: &Path) -> io::Result<()> {
        Mount::builder()
            .fstype("none")
            .flags(MountFlags::BIND)
            .mount(source, target)
            .map(drop)
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        mount_call(
            "",
            target,
            "none",
            MountFlags::BIND | MountFlags::REMOUNT | MountFlags::RDONLY,
            "",
        )?;
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

    fn mount_move(&self, from: &Path, to: &Path) -> io::Result<()> {
        Mount::builder()
            .fstype("none")
            .flags(MountFlags::MOVE)
            .mount(from, to)
            .map(drop)
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
        .map(unescape_octal)
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> PathBuf {
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
}

/// The host path the kernel gives for an open fd: what mountinfo lists.
pub fn fd_path(fd: &impl AsRawFd) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `/proc/self/fd/N` of an fd: a path that names exactly the directory
/// the fd was opened on, whatever happens to the names on the way to it.
pub fn magic_path(fd: &impl AsRawFd) -> PathBuf {
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
    Ok(Some((host.clone(), is_mounted(mounter, &host)?)))
}

/// Whether host path `path` is a mount point.
pub fn is_mounted(mounter: &dyn Mounter, path: &Path) -> Result<bool> {
    let points = mounter
        .mount_points()
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    Ok(points.iter().any(|p| p == path))
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
