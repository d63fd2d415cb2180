//! File operations confined to an image root, immune to symlinks that point out of it.
//!
//! Every path is an absolute path *inside the image* (`/root/.pip/pip.conf`).
//! Parent directories are resolved with `openat2(RESOLVE_IN_ROOT)`, so a
//! symlink in the image (absolute or `..`-relative) resolves as it would in
//! the chroot and can never reach the host. The last component is then
//! handled with a `*at` call that does not follow symlinks, so a symlink at
//! the final path is itself renamed or removed, never its target.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{renameat, renameat2, OFlag, OpenHow, RenameFlags, ResolveFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{fsync, unlinkat, UnlinkatFlags};

use crate::error::{Error, Result};

/// What sits at a path, seen without following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// FIFO, socket or device: never a config file.
    Special,
}

/// Type and permissions of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Outcome of removing a directory we created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rmdir {
    Removed,
    Absent,
    /// Someone else put files in it after us; it stays.
    NotEmpty,
}

/// An image root opened once; all operations are relative to its fd.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// Crash injection for tests; see [`crate::fault`].
    #[cfg(any(test, feature = "fault-injection"))]
    faults: Option<std::sync::Arc<crate::fault::FaultPlan>>,
}

/// How often to retry an `openat2` that the kernel answered with EAGAIN.
const OPENAT2_RETRIES: usize = 128;

/// `openat2`, retried on EAGAIN. With RESOLVE_IN_ROOT the kernel returns
/// EAGAIN whenever a rename or mount anywhere on the system raced with the
/// lookup and it cannot prove a `..` stayed inside the root; openat2(2)
/// says to retry. Busy build hosts (and parallel tests) hit this.
fn openat2<P: ?Sized + nix::NixPath, Fd: AsFd>(
    dirfd: Fd,
    path: &P,
    how: OpenHow,
) -> nix::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(dirfd.as_fd(), path, how) {
            Err(Errno::EAGAIN) if tries < OPENAT2_RETRIES => tries += 1,
            other => return other,
        }
    }
}

fn resolve_in_root() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

impl Root {
    /// Open the image root at host path `path` (`/` inside the chroot).
    pub fn open(path: &Path) -> Result<Root> {
        let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC);
        let fd = openat2(nix::fcntl::AT_FDCWD, path, how)
            .map_err(|e| Error::io("open image root", path, e.into()))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            #[cfg(any(test, feature = "fault-injection"))]
            faults: None,
        })
    }

    /// Ask `plan` before every change this root makes (tests only).
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn with_faults(mut self, plan: std::sync::Arc<crate::fault::FaultPlan>) -> Root {
        self.faults = Some(plan);
        self
    }

    /// A crash point before a mutating call. `Ok(true)` means "crash
    /// here": the caller may write half its data, then returns
    /// [`Root::die`]. Without fault injection this is always `Ok(false)`.
    fn crash_point(&self, what: &'static str, inner: &Path) -> Result<bool> {
        #[cfg(any(test, feature = "fault-injection"))]
        if let Some(plan) = &self.faults {
            return plan
                .step(what)
                .map_err(|e| Error::io(what, self.host_path(inner), e));
        }
        let _ = (what, inner);
        Ok(false)
    }

    /// The error (or SIGKILL) of the crash step.
    fn die(&self, what: &'static str, inner: &Path) -> Error {
        #[cfg(any(test, feature = "fault-injection"))]
        if let Some(plan) = &self.faults {
            return Error::io(what, self.host_path(inner), plan.die());
        }
        Error::path(
            self.host_path(inner),
            format!("{what}: unexpected crash point"),
        )
    }

    /// A crash point where a crash leaves nothing half done.
    fn point(&self, what: &'static str, inner: &Path) -> Result<()> {
        if self.crash_point(what, inner)? {
            return Err(self.die(what, inner));
        }
        Ok(())
    }

    /// Identity (device, inode) of directory `inner`, following symlinks
    /// inside the image: two paths with the same identity and final name
    /// are the same file.
    pub fn dir_id(&self, inner: &Path) -> Result<(u64, u64)> {
        let fd = self.open_dir(inner)?;
        let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| self.err("stat", inner, e))?;
        Ok((st.st_dev, st.st_ino))
    }

    /// The host path of the root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Host path of an in-image path, for messages.
    pub fn host_path(&self, inner: &Path) -> PathBuf {
        self.path.join(relative(inner))
    }

    fn err(&self, op: &'static str, inner: &Path, e: Errno) -> Error {
        Error::io(op, self.host_path(inner), e.into())
    }

    /// Open a directory in the image, following symlinks only inside it.
    pub fn open_dir(&self, inner: &Path) -> Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(resolve_in_root());
        let rel = relative(inner);
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        openat2(self.fd.as_fd(), rel, how).map_err(|e| self.err("open directory", inner, e))
    }

    /// Split `inner` into its resolved parent directory and final name.
    fn parent(&self, inner: &Path) -> Result<(OwnedFd, PathBuf)> {
        let name = match inner.components().next_back() {
            Some(Component::Normal(name)) => PathBuf::from(name),
            _ => return Err(Error::path(self.host_path(inner), "not a file path")),
        };
        let parent = inner.parent().unwrap_or(Path::new("/"));
        Ok((self.open_dir(parent)?, name))
    }

    /// Type and mode of `inner` without following a final symlink;
    /// `None` when it (or a parent) does not exist.
    pub fn lstat(&self, inner: &Path) -> Result<Option<Entry>> {
        let (dir, name) = match self.parent(inner) {
            Ok(p) => p,
            // A parent that is missing, or is not a directory: nothing can
            // be at `inner`.
            Err(Error::Io { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(e) if e == Errno::ENOENT as i32 || e == Errno::ENOTDIR as i32
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        match fstatat(dir.as_fd(), &name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(entry_of(&st))),
            Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
            Err(e) => Err(self.err("stat", inner, e)),
        }
    }

    /// Whether `inner` is a directory, following symlinks inside the image
    /// (as any program in the chroot would).
    pub fn is_dir(&self, inner: &Path) -> Result<bool> {
        match self.open_dir(inner) {
            Ok(_) => Ok(true),
            Err(Error::Io { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(e) if e == Errno::ENOENT as i32 || e == Errno::ENOTDIR as i32
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Create directory `inner` (its parent must exist).
    pub fn mkdir(&self, inner: &Path, mode: u32) -> Result<()> {
        let (dir, name) = self.parent(inner)?;
        self.point("create directory", inner)?;
        mkdirat(dir.as_fd(), &name, Mode::from_bits_truncate(mode))
            .map_err(|e| self.err("create directory", inner, e))?;
        // mkdir applies the umask; set the mode we mean.
        let real = self.open_dir_readable(inner)?;
        self.point("chmod", inner)?;
        fchmod(real.as_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| self.err("chmod", inner, e))?;
        self.sync_dir(inner.parent().unwrap_or(Path::new("/")))
    }

    /// Remove directory `inner` if it is empty.
    pub fn rmdir(&self, inner: &Path) -> Result<Rmdir> {
        let (dir, name) = match self.parent(inner) {
            Ok(p) => p,
            Err(Error::Io { source, .. })
                if source.raw_os_error() == Some(Errno::ENOENT as i32) =>
            {
                return Ok(Rmdir::Absent)
            }
            Err(e) => return Err(e),
        };
        self.point("remove directory", inner)?;
        match unlinkat(dir.as_fd(), &name, UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(Rmdir::Removed),
            Err(Errno::ENOENT) => Ok(Rmdir::Absent),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => Ok(Rmdir::NotEmpty),
            Err(e) => Err(self.err("remove directory", inner, e)),
        }
    }

    /// Remove the non-directory at `inner`; `false` if it was not there.
    pub fn unlink(&self, inner: &Path) -> Result<bool> {
        let (dir, name) = match self.parent(inner) {
            Ok(p) => p,
            Err(Error::Io { source, .. })
                if source.raw_os_error() == Some(Errno::ENOENT as i32) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        self.point("remove", inner)?;
        match unlinkat(dir.as_fd(), &name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.err("remove", inner, e)),
        }
    }

    /// Rename `from` to `to`, refusing to replace an existing `to`.
    pub fn rename_noreplace(&self, from: &Path, to: &Path) -> Result<()> {
        let (fdir, fname) = self.parent(from)?;
        let (tdir, tname) = self.parent(to)?;
        self.point("rename", from)?;
        renameat2(
            fdir.as_fd(),
            &fname,
            tdir.as_fd(),
            &tname,
            RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| self.err("rename", from, e))
    }

    /// Rename `from` over `to`, atomically replacing it.
    pub fn rename_replace(&self, from: &Path, to: &Path) -> Result<()> {
        let (fdir, fname) = self.parent(from)?;
        let (tdir, tname) = self.parent(to)?;
        self.point("rename", from)?;
        renameat(fdir.as_fd(), &fname, tdir.as_fd(), &tname)
            .map_err(|e| self.err("rename", from, e))
    }

    /// Create the new file `inner` (it must not exist) with `contents` and
    /// `mode`, flushed to disk.
    pub fn write_new(&self, inner: &Path, contents: &[u8], mode: u32) -> Result<()> {
        let (dir, name) = self.parent(inner)?;
        let how = OpenHow::new()
            .flags(
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
            )
            .mode(Mode::from_bits_truncate(mode));
        self.point("create", inner)?;
        let fd = openat2(dir.as_fd(), &name, how).map_err(|e| self.err("create", inner, e))?;
        // O_CREAT's mode is filtered by the umask; set the one we mean
        // before any byte is written, so a secret is never world-readable.
        self.point("chmod", inner)?;
        fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| self.err("chmod", inner, e))?;
        let mut file = std::fs::File::from(fd);
        self.write_data(&mut file, inner, contents)?;
        self.point("fsync", inner)?;
        file.sync_all()
            .map_err(|e| Error::io("fsync", self.host_path(inner), e))
    }

    /// Write `contents` to `file` (a crash point: a crash there writes
    /// only the first half, as a process killed mid-write would).
    fn write_data(&self, file: &mut std::fs::File, inner: &Path, contents: &[u8]) -> Result<()> {
        if self.crash_point("write", inner)? {
            let half = contents.get(..contents.len() / 2).unwrap_or_default();
            let _ = file.write_all(half);
            return Err(self.die("write", inner));
        }
        file.write_all(contents)
            .map_err(|e| Error::io("write", self.host_path(inner), e))
    }

    /// Cut file `inner` (not following a final symlink) to `len` bytes and
    /// flush it.
    pub fn truncate(&self, inner: &Path, len: u64) -> Result<()> {
        let (dir, name) = self.parent(inner)?;
        let how = OpenHow::new().flags(OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC);
        let fd = openat2(dir.as_fd(), &name, how).map_err(|e| self.err("open", inner, e))?;
        let file = std::fs::File::from(fd);
        self.point("truncate", inner)?;
        file.set_len(len)
            .map_err(|e| Error::io("truncate", self.host_path(inner), e))?;
        self.point("fsync", inner)?;
        file.sync_all()
            .map_err(|e| Error::io("fsync", self.host_path(inner), e))
    }

    /// Append `line` to file `inner` (created if missing) and flush it.
    pub fn append(&self, inner: &Path, line: &[u8]) -> Result<()> {
        let (dir, name) = self.parent(inner)?;
        let how = OpenHow::new()
            .flags(
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_APPEND
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
            )
            .mode(Mode::from_bits_truncate(0o600));
        self.point("open for append", inner)?;
        let fd = openat2(dir.as_fd(), &name, how).map_err(|e| self.err("open", inner, e))?;
        let mut file = std::fs::File::from(fd);
        self.write_data(&mut file, inner, line)?;
        self.point("fsync", inner)?;
        file.sync_data()
            .map_err(|e| Error::io("fsync", self.host_path(inner), e))
    }

    /// Read a regular file of at most `limit` bytes; `None` if absent.
    /// Symlinks are followed inside the image.
    pub fn read(&self, inner: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .resolve(resolve_in_root());
        let fd = match openat2(self.fd.as_fd(), relative(inner), how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.err("open", inner, e)),
        };
        let file = std::fs::File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| Error::io("stat", self.host_path(inner), e))?;
        if !meta.is_file() {
            return Err(Error::path(self.host_path(inner), "is not a regular file"));
        }
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(file, limit), &mut buf)
            .map_err(|e| Error::io("read", self.host_path(inner), e))?;
        Ok(Some(buf))
    }

    /// Open directory `inner` without following it if it is a symlink.
    pub fn open_dir_nofollow(&self, inner: &Path) -> Result<OwnedFd> {
        let (dir, name) = self.parent(inner)?;
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC);
        openat2(dir.as_fd(), &name, how).map_err(|e| self.err("open directory", inner, e))
    }

    /// A real (not O_PATH) fd on directory `inner`: fchmod and fsync need
    /// one. Reached through [`Root::open_dir`], so still resolved in the root.
    fn open_dir_readable(&self, inner: &Path) -> Result<OwnedFd> {
        let fd = self.open_dir(inner)?;
        openat2(
            fd.as_fd(),
            ".",
            OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC),
        )
        .map_err(|e| self.err("open directory", inner, e))
    }

    /// fsync directory `inner`, so renames and creations in it are durable.
    pub fn sync_dir(&self, inner: &Path) -> Result<()> {
        let real = self.open_dir_readable(inner)?;
        self.point("fsync directory", inner)?;
        fsync(real.as_fd()).map_err(|e| self.err("fsync", inner, e))
    }
}

fn entry_of(st: &nix::sys::stat::FileStat) -> Entry {
    let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let kind = if fmt == SFlag::S_IFREG {
        Kind::File
    } else if fmt == SFlag::S_IFDIR {
        Kind::Dir
    } else if fmt == SFlag::S_IFLNK {
        Kind::Symlink
    } else {
        Kind::Special
    };
    Entry {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
    }
}

/// `inner` without its leading `/`, for `*at` calls relative to the root.
pub fn relative(inner: &Path) -> &Path {
    inner.strip_prefix("/").unwrap_or(inner)
}

/// `path` with `suffix` appended to its file name (`pip.conf` ->
/// `pip.conf.dib-pypi-orig`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or(OsStr::new("")).to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Whether `path` is absolute and made only of normal components.
pub fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !path.as_os_str().as_bytes().contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tree() -> (tempfile::TempDir, tempfile::TempDir, Root) {
        let image = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let root = Root::open(image.path()).unwrap();
        (image, host, root)
    }

    #[test]
    fn absolute_symlink_parent_resolves_inside_the_root() {
        let (image, host, root) = tree();
        std::fs::create_dir(image.path().join("real")).unwrap();
        // In the image, /root -> <host dir>; must land on <image>/<host dir>.
        symlink(host.path(), image.path().join("root")).unwrap();
        let escaped = Path::new("/root/pip.conf");
        let err = root.write_new(escaped, b"x", 0o644).unwrap_err();
        assert!(err.to_string().contains("No such file"), "{err}");
        assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
    }

    #[test]
    fn dotdot_symlink_parent_stays_inside_the_root() {
        let (image, host, root) = tree();
        let canary = host.path().join("canary");
        std::fs::write(&canary, "keep").unwrap();
        let depth = image.path().components().count() + 3;
        let up = "../".repeat(depth);
        symlink(
            format!("{up}{}", host.path().display()),
            image.path().join("etc"),
        )
        .unwrap();
        assert_eq!(root.lstat(Path::new("/etc/canary")).unwrap(), None);
        assert!(!root.unlink(Path::new("/etc/canary")).unwrap());
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep");
    }

    #[test]
    fn final_symlink_is_renamed_not_followed() {
        let (image, host, root) = tree();
        let canary = host.path().join("canary");
        std::fs::write(&canary, "keep").unwrap();
        symlink(&canary, image.path().join("link")).unwrap();
        let e = root.lstat(Path::new("/link")).unwrap().unwrap();
        assert_eq!(e.kind, Kind::Symlink);
        root.rename_noreplace(Path::new("/link"), Path::new("/link.bak"))
            .unwrap();
        assert!(root.unlink(Path::new("/link.bak")).unwrap());
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep");
        // Writing through a final symlink is refused.
        symlink(&canary, image.path().join("link2")).unwrap();
        assert!(root.write_new(Path::new("/link2"), b"evil", 0o644).is_err());
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep");
    }

    #[test]
    fn write_new_sets_exact_mode_and_refuses_to_replace() {
        let (image, _host, root) = tree();
        root.write_new(Path::new("/f"), b"secret", 0o600).unwrap();
        let meta = std::fs::metadata(image.path().join("f")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert!(root.write_new(Path::new("/f"), b"again", 0o600).is_err());
        assert_eq!(std::fs::read(image.path().join("f")).unwrap(), b"secret");
    }

    #[test]
    fn mkdir_rmdir_and_kinds() {
        let (image, _host, root) = tree();
        root.mkdir(Path::new("/d"), 0o700).unwrap();
        let e = root.lstat(Path::new("/d")).unwrap().unwrap();
        assert_eq!((e.kind, e.mode), (Kind::Dir, 0o700));
        std::fs::write(image.path().join("d/x"), "").unwrap();
        assert_eq!(root.rmdir(Path::new("/d")).unwrap(), Rmdir::NotEmpty);
        std::fs::remove_file(image.path().join("d/x")).unwrap();
        assert_eq!(root.rmdir(Path::new("/d")).unwrap(), Rmdir::Removed);
        assert_eq!(root.rmdir(Path::new("/d")).unwrap(), Rmdir::Absent);
        assert_eq!(root.lstat(Path::new("/nope/deeper")).unwrap(), None);
        nix::unistd::mkfifo(&image.path().join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        assert_eq!(
            root.lstat(Path::new("/fifo")).unwrap().unwrap().kind,
            Kind::Special
        );
    }

    #[test]
    fn read_refuses_fifos_and_limits_size() {
        let (image, _host, root) = tree();
        nix::unistd::mkfifo(&image.path().join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        assert!(root.read(Path::new("/fifo"), 10).is_err());
        std::fs::write(image.path().join("big"), "0123456789").unwrap();
        assert_eq!(root.read(Path::new("/big"), 4).unwrap().unwrap(), b"0123");
        assert_eq!(root.read(Path::new("/none"), 4).unwrap(), None);
    }

    #[test]
    fn suffix_and_clean_paths() {
        assert_eq!(
            with_suffix(Path::new("/root/.pip/pip.conf"), ".orig"),
            PathBuf::from("/root/.pip/pip.conf.orig")
        );
        assert!(is_clean_absolute(Path::new("/root/.pip")));
        assert!(!is_clean_absolute(Path::new("/root/../etc")));
        assert!(!is_clean_absolute(Path::new("root")));
    }
}
