//! File operations confined to an image root, immune to symlinks that point out of it.
//!
//! Every path is an absolute path *inside the image* (`/root/.pip/pip.conf`).
//! Parent directories are resolved inside the root ([`resolve`]: the
//! kernel's `openat2(RESOLVE_IN_ROOT)`, or the same rules in user space on
//! kernels without it), so a symlink in the image (absolute or
//! `..`-relative) resolves as it would in the chroot and can never reach
//! the host. The last component is then handled with a `*at` call that
//! does not follow symlinks, so a symlink at the final path is itself
//! renamed or removed, never its target. This is the only module that
//! touches image paths.

pub mod resolve;

use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{renameat, renameat2, OFlag, RenameFlags};
use nix::sys::stat::{fchmod, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{fsync, unlinkat, UnlinkatFlags};

use crate::error::{Error, Result};
pub use resolve::Resolver;

/// What sits at a path, seen without following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// FIFO, socket or device: never a config file.
    Special,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symlink",
            Kind::Special => "a FIFO, socket or device",
        })
    }
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

/// Why a symlink on the way to a directory leads nowhere a program in the
/// chroot could use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkProblem {
    Dangling,
    NotADirectory,
    Loop,
}

/// A symlink (in-image path and target) that stands where a directory is
/// needed and does not lead to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub link: PathBuf,
    pub target: PathBuf,
    pub problem: LinkProblem,
}

impl BrokenLink {
    /// What is wrong, without the link's own path: "a symlink to
    /// /nonexistent, but /nonexistent does not exist in the image". (The
    /// hook binaries ship in the element, where dib-lint flags any line
    /// with the word "which" followed by a space, even in a binary.)
    pub fn reason(&self) -> String {
        let t = self.target.display();
        match self.problem {
            LinkProblem::Dangling => {
                format!("a symlink to {t}, but {t} does not exist in the image")
            }
            LinkProblem::NotADirectory => format!("a symlink to {t}, but {t} is not a directory"),
            LinkProblem::Loop => format!("a symlink to {t}, but that leads round in a loop"),
        }
    }
}

impl fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.link.display(), self.reason())
    }
}

/// What stands between the image and a directory it should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirState {
    /// The directories still to create, outermost first (none: it exists).
    Missing(Vec<PathBuf>),
    /// A symlink on the way does not lead to a directory: neither we nor
    /// any program in the chroot can use the path.
    Unreachable(BrokenLink),
}

/// An image root opened once; all operations are relative to its fd.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    resolver: Resolver,
    /// Crash injection for tests; see [`crate::fault`].
    #[cfg(any(test, feature = "testing"))]
    faults: Option<std::sync::Arc<crate::fault::FaultPlan>>,
}

impl Root {
    /// Open the image root at host path `path` (`/` inside the chroot).
    pub fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open image root", path, e.into()))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            resolver: Resolver::get(),
            #[cfg(any(test, feature = "testing"))]
            faults: None,
        })
    }

    /// Ask `plan` before every change this root makes (tests only).
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub fn with_faults(mut self, plan: std::sync::Arc<crate::fault::FaultPlan>) -> Root {
        self.faults = Some(plan);
        self
    }

    /// A crash point before a mutating call. `Ok(true)` means "crash
    /// here": the caller may write half its data, then returns
    /// [`Root::die`]. Without fault injection this is always `Ok(false)`.
    fn crash_point(&self, what: &'static str, host: &Path) -> Result<bool> {
        #[cfg(any(test, feature = "testing"))]
        if let Some(plan) = &self.faults {
            return plan.step(what).map_err(|e| Error::io(what, host, e));
        }
        let _ = (what, host);
        Ok(false)
    }

    /// The error (or SIGKILL) of the crash step.
    fn die(&self, what: &'static str, host: &Path) -> Error {
        #[cfg(any(test, feature = "testing"))]
        if let Some(plan) = &self.faults {
            return Error::io(what, host, plan.die());
        }
        Error::path(host, format!("{what}: unexpected crash point"))
    }

    /// A crash point where a crash leaves nothing half done, before a
    /// change at host path `host`. The mount code outside the image uses
    /// it too, so a test can stop a hook at any of its steps.
    pub(crate) fn step(&self, what: &'static str, host: &Path) -> Result<()> {
        if self.crash_point(what, host)? {
            return Err(self.die(what, host));
        }
        Ok(())
    }

    fn point(&self, what: &'static str, inner: &Path) -> Result<()> {
        self.step(what, &self.host_path(inner))
    }

    /// The host path of the root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which resolver this root uses.
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// Host path of an in-image path, for messages.
    pub fn host_path(&self, inner: &Path) -> PathBuf {
        self.path.join(relative(inner))
    }

    fn err(&self, op: &'static str, inner: &Path, e: Errno) -> Error {
        Error::io(op, self.host_path(inner), e.into())
    }

    /// Open `inner` with `flags`, resolved inside the root.
    fn open_in(&self, inner: &Path, flags: OFlag, follow_last: bool) -> nix::Result<OwnedFd> {
        self.resolver
            .open(self.fd.as_fd(), relative(inner), flags, follow_last)
    }

    /// Open a directory in the image, following symlinks only inside it.
    pub fn open_dir(&self, inner: &Path) -> Result<OwnedFd> {
        self.open_in(inner, OFlag::O_PATH | OFlag::O_DIRECTORY, true)
            .map_err(|e| self.err("open directory", inner, e))
    }

    /// Identity (device, inode) of directory `inner`, following symlinks
    /// inside the image: two paths with the same identity and final name
    /// are the same file.
    pub fn dir_id(&self, inner: &Path) -> Result<(u64, u64)> {
        let fd = self.open_dir(inner)?;
        let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| self.err("stat", inner, e))?;
        Ok((st.st_dev, st.st_ino))
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

    /// [`Root::parent`], or `None` when the parent does not exist or is
    /// not a directory: then nothing can be at `inner`.
    fn parent_if_any(&self, inner: &Path) -> Result<Option<(OwnedFd, PathBuf)>> {
        match self.parent(inner) {
            Ok(p) => Ok(Some(p)),
            Err(e)
                if e.errno()
                    .is_some_and(|n| n == Errno::ENOENT || n == Errno::ENOTDIR) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Type and mode of `inner` without following a final symlink;
    /// `None` when it (or a parent) does not exist.
    pub fn lstat(&self, inner: &Path) -> Result<Option<Entry>> {
        let Some((dir, name)) = self.parent_if_any(inner)? else {
            return Ok(None);
        };
        match fstatat(dir.as_fd(), &name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(entry_of(&st))),
            Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
            Err(e) => Err(self.err("stat", inner, e)),
        }
    }

    /// The target of symlink `inner`, as written in the link.
    pub fn readlink(&self, inner: &Path) -> Result<PathBuf> {
        let (dir, name) = self.parent(inner)?;
        nix::fcntl::readlinkat(dir.as_fd(), &name)
            .map(PathBuf::from)
            .map_err(|e| self.err("read symlink", inner, e))
    }

    /// Whether `inner` is a directory, following symlinks inside the image
    /// (as any program in the chroot would).
    pub fn is_dir(&self, inner: &Path) -> Result<bool> {
        match self.open_dir(inner) {
            Ok(_) => Ok(true),
            Err(e)
                if e.errno()
                    .is_some_and(|n| n == Errno::ENOENT || n == Errno::ENOTDIR) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// What `inner` is once every symlink, the final one too, is followed
    /// inside the image; `None` when that leads nowhere (a missing path, a
    /// dangling link or a loop), as it would for a program in the chroot.
    pub fn kind_following(&self, inner: &Path) -> Result<Option<Kind>> {
        let fd = match self.open_in(inner, OFlag::O_PATH, true) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(None),
            Err(e) => return Err(self.err("open", inner, e)),
        };
        let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| self.err("stat", inner, e))?;
        Ok(Some(entry_of(&st).kind))
    }

    /// What it takes to have directory `dir`: the directories to create,
    /// or the symlink that makes it unreachable. A regular file or device
    /// on the way is an error (symlinks to directories inside the image are
    /// fine: the chroot follows them the same way).
    pub fn dir_state(&self, dir: &Path) -> Result<DirState> {
        let mut missing: Vec<PathBuf> = Vec::new();
        for at in dir.ancestors().collect::<Vec<_>>().into_iter().rev() {
            if at == Path::new("/") {
                continue;
            }
            if !missing.is_empty() {
                missing.push(at.to_path_buf());
                continue;
            }
            match self.lstat(at)? {
                None => missing.push(at.to_path_buf()),
                Some(e) if e.kind == Kind::Dir => {}
                Some(e) if e.kind == Kind::Symlink => {
                    let problem = match self.open_dir(at) {
                        Ok(_) => continue,
                        Err(e) => match e.errno() {
                            Some(Errno::ENOENT) => LinkProblem::Dangling,
                            Some(Errno::ENOTDIR) => LinkProblem::NotADirectory,
                            Some(Errno::ELOOP) => LinkProblem::Loop,
                            _ => return Err(e),
                        },
                    };
                    return Ok(DirState::Unreachable(BrokenLink {
                        link: at.to_path_buf(),
                        target: self.readlink(at)?,
                        problem,
                    }));
                }
                Some(e) => {
                    return Err(Error::path(
                        self.host_path(at),
                        format!("exists but is not a directory ({})", e.kind),
                    ))
                }
            }
        }
        Ok(DirState::Missing(missing))
    }

    /// [`Root::dir_state`] for a directory that must be reachable: an
    /// unreachable one is an error that says which symlink is at fault.
    pub fn missing_dirs(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        match self.dir_state(dir)? {
            DirState::Missing(missing) => Ok(missing),
            DirState::Unreachable(link) => {
                Err(Error::path(self.host_path(&link.link), link.reason()))
            }
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
        let Some((dir, name)) = self.parent_if_any(inner)? else {
            return Ok(Rmdir::Absent);
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
        let Some((dir, name)) = self.parent_if_any(inner)? else {
            return Ok(false);
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

    /// Open the final component `name` of `dir` (never following it).
    fn open_at(&self, dir: &OwnedFd, name: &Path, flags: OFlag, mode: u32) -> nix::Result<OwnedFd> {
        nix::fcntl::openat(
            dir.as_fd(),
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
    }

    /// Create the new file `inner` (it must not exist) with `contents` and
    /// `mode`, flushed to disk.
    pub fn write_new(&self, inner: &Path, contents: &[u8], mode: u32) -> Result<()> {
        let (dir, name) = self.parent(inner)?;
        self.point("create", inner)?;
        let fd = self
            .open_at(
                &dir,
                &name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                mode,
            )
            .map_err(|e| self.err("create", inner, e))?;
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
        let host = self.host_path(inner);
        if self.crash_point("write", &host)? {
            let half = contents.get(..contents.len() / 2).unwrap_or_default();
            let _ = file.write_all(half);
            return Err(self.die("write", &host));
        }
        file.write_all(contents)
            .map_err(|e| Error::io("write", host, e))
    }

    /// Cut file `inner` (not following a final symlink) to `len` bytes and
    /// flush it.
    pub fn truncate(&self, inner: &Path, len: u64) -> Result<()> {
        let (dir, name) = self.parent(inner)?;
        let fd = self
            .open_at(&dir, &name, OFlag::O_WRONLY, 0)
            .map_err(|e| self.err("open", inner, e))?;
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
        self.point("open for append", inner)?;
        let fd = self
            .open_at(
                &dir,
                &name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND,
                0o600,
            )
            .map_err(|e| self.err("open", inner, e))?;
        let mut file = std::fs::File::from(fd);
        self.write_data(&mut file, inner, line)?;
        self.point("fsync", inner)?;
        file.sync_data()
            .map_err(|e| Error::io("fsync", self.host_path(inner), e))
    }

    /// Read a regular file of at most `limit` bytes; `None` if absent.
    /// Symlinks are followed inside the image.
    pub fn read(&self, inner: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
        let fd = match self.open_in(inner, OFlag::O_RDONLY | OFlag::O_NONBLOCK, true) {
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
        self.open_at(&dir, &name, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)
            .map_err(|e| self.err("open directory", inner, e))
    }

    /// A real (not O_PATH) fd on directory `inner`: fchmod and fsync need
    /// one. Reached through [`Root::open_dir`], so still resolved in the root.
    fn open_dir_readable(&self, inner: &Path) -> Result<OwnedFd> {
        let fd = self.open_dir(inner)?;
        nix::fcntl::openat(
            fd.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
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

#[cfg(test)]
mod tests;
