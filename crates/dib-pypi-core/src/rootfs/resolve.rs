//! Path resolution inside the image root: `openat2(RESOLVE_IN_ROOT)` where the kernel offers it, the same rules walked in user space where it does not.
//!
//! Linux before 5.6 (RHEL 8's 4.18, Ubuntu 20.04's 5.4) answers `openat2`
//! with ENOSYS, and container seccomp profiles older than the call answer
//! EPERM. One trivial `openat2` decides, once per process, which
//! [`Resolver`] every [`super::Root`] uses.
//!
//! The user-space walk follows the kernel's rules for `RESOLVE_IN_ROOT`:
//! absolute symlinks and `..` never leave the root, at most 40 symlinks
//! are followed (the kernel's MAXSYMLINKS), `fs.protected_symlinks` and
//! `nosymfollow` mounts are honoured, and a final symlink is followed only
//! when asked. It never asks the kernel to resolve `..` at all: it keeps
//! the directories it walked down through on a stack and pops it, so no
//! rename racing the walk can make a `..` climb out of the root (the
//! kernel needs its rename sequence counters, and `openat2`'s EAGAIN, for
//! that). Symlinks on procfs are refused (ELOOP), which is stricter than
//! `RESOLVE_NO_MAGICLINKS` (that lets `/proc/self` through); no path the
//! element uses goes through `/proc`.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, FileStat, SFlag};

/// How paths inside the image are resolved in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (Linux 5.6+).
    Kernel,
    /// [`walk`]: `openat(O_PATH | O_NOFOLLOW)` one component at a time.
    UserSpace,
}

impl Resolver {
    /// The resolver of this process: decided by the first call, from a
    /// trivial `openat2` (logged at debug level), and kept.
    pub fn get() -> Resolver {
        static CHOSEN: OnceLock<Resolver> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let how = OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                .resolve(kernel_flags());
            match nix::fcntl::openat2(nix::fcntl::AT_FDCWD, "/", how) {
                Ok(_) => {
                    log::debug!("resolving paths in the image with openat2(RESOLVE_IN_ROOT)");
                    Resolver::Kernel
                }
                // ENOSYS: a kernel before 5.6; EPERM: a seccomp profile
                // that predates the call. Anything else makes it as
                // unusable.
                Err(e) => {
                    log::debug!(
                        "openat2 is not available ({}); resolving paths in the image in user space",
                        e.desc()
                    );
                    Resolver::UserSpace
                }
            }
        })
    }

    /// Open `rel` (relative to `root`, empty for the root itself) with
    /// `flags`, every symlink on the way resolved inside the root; a
    /// final symlink is followed only when `follow_last`, else opened
    /// `O_NOFOLLOW` (so `O_PATH` gives the link itself, anything else
    /// ELOOP).
    pub fn open(
        self,
        root: BorrowedFd<'_>,
        rel: &Path,
        flags: OFlag,
        follow_last: bool,
    ) -> nix::Result<OwnedFd> {
        let nofollow = if follow_last {
            OFlag::empty()
        } else {
            OFlag::O_NOFOLLOW
        };
        match self {
            Resolver::Kernel => {
                let path = if rel.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    rel
                };
                let how = OpenHow::new()
                    .flags(flags | nofollow | OFlag::O_CLOEXEC)
                    .resolve(kernel_flags());
                openat2_retrying(root, path, how)
            }
            Resolver::UserSpace => {
                let (dir, name) = walk(root, rel, follow_last)?;
                // The walk saw the final component as it was; if it has
                // since become a symlink, O_NOFOLLOW keeps us from taking it.
                let name: &OsStr = name.as_deref().unwrap_or(OsStr::new("."));
                nix::fcntl::openat(
                    dir.as_fd(),
                    name,
                    flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
            }
        }
    }
}

fn kernel_flags() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// How often to retry an `openat2` that the kernel answered with EAGAIN.
const OPENAT2_RETRIES: usize = 128;

/// `openat2`, retried on EAGAIN: with RESOLVE_IN_ROOT the kernel returns
/// EAGAIN whenever a rename or mount anywhere on the system raced with the
/// lookup and it cannot prove a `..` stayed inside the root; openat2(2)
/// says to retry. Busy build hosts (and parallel tests) hit this.
fn openat2_retrying(root: BorrowedFd<'_>, path: &Path, how: OpenHow) -> nix::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(root, path, how) {
            Err(Errno::EAGAIN) if tries < OPENAT2_RETRIES => tries += 1,
            other => return other,
        }
    }
}

/// Most symlinks one resolution follows, as the kernel's MAXSYMLINKS.
pub const MAX_SYMLINKS: usize = 40;

/// `statfs(2)`'s flag for a mount with `nosymfollow` (Linux 5.10).
const ST_NOSYMFOLLOW: u64 = 0x2000;
/// procfs's `f_type`.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// A directory where only a link's owner may follow it: sticky (S_ISVTX)
/// and writable by others.
const STICKY_WORLD_WRITABLE: u32 = 0o1002;

/// Walk `rel` below `root` one component at a time. Returns the directory
/// that holds the final component and that component's name (after
/// following symlinks, the final one too when `follow_last`), or the
/// directory itself and `None` when the path ends in a directory, `..`,
/// or is empty.
pub fn walk(
    root: BorrowedFd<'_>,
    rel: &Path,
    follow_last: bool,
) -> nix::Result<(OwnedFd, Option<OsString>)> {
    let mut todo = components(rel.as_os_str().as_bytes());
    // The directories walked down through, below the root: `..` pops.
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        match name.as_bytes() {
            // Only ever seen when the current directory is a directory.
            b"." => continue,
            b".." => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let cur = stack.last().map_or(root, |d| d.as_fd());
        let last = todo.is_empty();
        if last && !follow_last {
            return Ok((dup(cur)?, Some(name)));
        }
        let fd = nix::fcntl::openat(
            cur,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        let st = fstat(fd.as_fd())?;
        match file_type(&st) {
            SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                may_follow(cur, fd.as_fd(), &st)?;
                let target = nix::fcntl::readlinkat(fd.as_fd(), "")?.into_vec();
                if target.is_empty() {
                    return Err(Errno::ENOENT);
                }
                if target.starts_with(b"/") {
                    stack.clear();
                }
                for part in components(&target).into_iter().rev() {
                    todo.push_front(part);
                }
            }
            SFlag::S_IFDIR => stack.push(fd),
            _ if last => return Ok((dup(cur)?, Some(name))),
            _ => return Err(Errno::ENOTDIR),
        }
    }
    let dir = match stack.pop() {
        Some(dir) => dir,
        None => dup(root)?,
    };
    Ok((dir, None))
}

/// A new fd on what `fd` refers to.
fn dup(fd: BorrowedFd<'_>) -> nix::Result<OwnedFd> {
    fd.try_clone_to_owned()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)))
}

/// The names in `path`, empty ones dropped; a trailing `/` becomes a
/// final `.`, which (like the kernel's trailing slash) makes the name
/// before it have to be a directory.
fn components(path: &[u8]) -> VecDeque<OsString> {
    let mut out: VecDeque<OsString> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| OsString::from_vec(c.to_vec()))
        .collect();
    if path.len() > 1 && path.ends_with(b"/") && !out.is_empty() {
        out.push_back(OsString::from("."));
    }
    out
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// The kernel's checks before it follows a symlink, which it cannot make
/// when we read the link ourselves: `nosymfollow` mounts, and
/// `fs.protected_symlinks` (a link in a sticky world-writable directory
/// is followed only by its owner, or when the directory's owner owns it).
fn may_follow(dir: BorrowedFd<'_>, link: BorrowedFd<'_>, link_st: &FileStat) -> nix::Result<()> {
    let fs = rustix::fs::fstatfs(link).map_err(|e| Errno::from_raw(e.raw_os_error()))?;
    // The field types differ between ABIs; only the values matter.
    #[allow(clippy::unnecessary_cast)]
    let (f_type, f_flags) = (fs.f_type as i64, fs.f_flags as u64);
    if f_type == PROC_SUPER_MAGIC || f_flags & ST_NOSYMFOLLOW != 0 {
        return Err(Errno::ELOOP);
    }
    if !protected_symlinks() {
        return Ok(());
    }
    let dir_st = fstat(dir)?;
    let follower = nix::unistd::geteuid().as_raw();
    if link_st.st_uid == follower
        || dir_st.st_mode & STICKY_WORLD_WRITABLE != STICKY_WORLD_WRITABLE
        || dir_st.st_uid == link_st.st_uid
    {
        Ok(())
    } else {
        Err(Errno::EACCES)
    }
}

/// `fs.protected_symlinks`, read once; on when it cannot be read (the
/// default of every distribution, and the safe side).
fn protected_symlinks() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/fs/protected_symlinks")
            .map(|v| v.trim() != "0")
            .unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::symlink;

    /// (device, inode) of what `rel` resolves to, or the errno.
    fn outcome(r: Resolver, root: &OwnedFd, rel: &str, follow: bool) -> Result<(u64, u64), Errno> {
        let fd = r.open(root.as_fd(), Path::new(rel), OFlag::O_PATH, follow)?;
        let st = fstat(fd.as_fd())?;
        Ok((st.st_dev, st.st_ino))
    }

    fn open_root(p: &Path) -> OwnedFd {
        nix::fcntl::open(
            p,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap()
    }

    fn agree(root: &Path, rel: &str) {
        let fd = open_root(root);
        for follow in [true, false] {
            let k = outcome(Resolver::Kernel, &fd, rel, follow);
            let u = outcome(Resolver::UserSpace, &fd, rel, follow);
            assert_eq!(k, u, "{rel:?} (follow last: {follow})");
        }
    }

    #[test]
    fn components_keep_a_trailing_slash_as_dot() {
        let c = |p: &str| -> Vec<String> {
            components(p.as_bytes())
                .into_iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(c("/a//b/"), ["a", "b", "."]);
        assert_eq!(c("a/../b"), ["a", "..", "b"]);
        assert_eq!(c("/"), Vec::<String>::new());
        assert_eq!(c(""), Vec::<String>::new());
    }

    #[test]
    fn the_walk_agrees_with_the_kernel_on_hostile_links() {
        let image = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let r = image.path();
        std::fs::create_dir_all(r.join("etc/sub")).unwrap();
        std::fs::write(r.join("etc/file"), "x").unwrap();
        std::fs::write(host.path().join("secret"), "host").unwrap();
        let up = "../".repeat(r.components().count() + 2);
        let links: &[(&str, String)] = &[
            ("abs", "/etc".into()),
            ("abs-host", host.path().display().to_string()),
            ("dotdot-host", format!("{up}{}", host.path().display())),
            ("rel", "etc/sub".into()),
            ("to-file", "/etc/file".into()),
            ("to-file-slash", "/etc/file/".into()),
            ("dangling", "/nonexistent".into()),
            ("loop-a", "loop-b".into()),
            ("loop-b", "loop-a".into()),
            ("self", "self".into()),
            ("dotdot", "..".into()),
            ("etc/sub/up", "../../..".into()),
            ("etc/sub/root", "/".into()),
        ];
        for (at, to) in links {
            symlink(to, r.join(at)).unwrap();
        }
        for rel in [
            "",
            "etc",
            "etc/",
            "etc/sub",
            "etc/file",
            "etc/file/",
            "etc/file/x",
            "etc/none",
            "abs",
            "abs/sub",
            "abs-host",
            "abs-host/secret",
            "dotdot-host",
            "dotdot-host/secret",
            "rel",
            "rel/..",
            "rel/../..",
            "to-file",
            "to-file-slash",
            "dangling",
            "dangling/x",
            "loop-a",
            "loop-a/x",
            "self",
            "dotdot",
            "dotdot/etc",
            "../../etc",
            "etc/sub/up",
            "etc/sub/up/etc",
            "etc/sub/root/etc/sub",
            "etc/../../../etc/file",
            "abs/../abs/./sub",
        ] {
            agree(r, rel);
        }
        // The host directory was never reached.
        let fd = open_root(r);
        let e = outcome(Resolver::UserSpace, &fd, "abs-host/secret", true);
        assert_eq!(e, Err(Errno::ENOENT));
    }

    #[test]
    fn forty_symlinks_resolve_and_forty_one_do_not() {
        let image = tempfile::tempdir().unwrap();
        let r = image.path();
        std::fs::create_dir(r.join("end")).unwrap();
        symlink("end", r.join("l0")).unwrap();
        for i in 1..=41 {
            symlink(format!("l{}", i - 1), r.join(format!("l{i}"))).unwrap();
        }
        let fd = open_root(r);
        // l39 takes 40 links to reach `end`; l40 takes 41.
        assert!(outcome(Resolver::UserSpace, &fd, "l39", true).is_ok());
        assert_eq!(
            outcome(Resolver::UserSpace, &fd, "l40", true),
            Err(Errno::ELOOP)
        );
        agree(r, "l39");
        agree(r, "l40");
        agree(r, "l41/x");
    }

    /// Random trees of directories, files and symlinks (absolute,
    /// relative, `..`, loops, dangling): every path resolves to the same
    /// inode, or fails with the same errno, both ways.
    #[test]
    fn random_trees_resolve_the_same_both_ways() {
        const NAMES: &[&str] = &["a", "b", "c", "..", "."];
        let entry = prop_oneof![
            2 => Just(None),
            1 => Just(Some(String::new())),
            3 => proptest::collection::vec(proptest::sample::select(NAMES), 0..5)
                .prop_flat_map(|parts| (Just(parts), any::<bool>(), any::<bool>()))
                .prop_map(|(parts, abs, slash)| {
                    let mut t = parts.join("/");
                    if abs { t.insert(0, '/'); }
                    if slash && !t.is_empty() { t.push('/'); }
                    Some(t)
                }),
        ];
        // Layout: a, b, a/c, b/c are directories or links; paths of up to
        // five names are then resolved.
        let tree = proptest::collection::vec(entry, 6);
        let paths = proptest::collection::vec(
            proptest::collection::vec(proptest::sample::select(NAMES), 0..6),
            1..12,
        );
        let mut runner = proptest::test_runner::TestRunner::new_with_rng(
            proptest::test_runner::Config {
                cases: 200,
                failure_persistence: None,
                ..Default::default()
            },
            proptest::test_runner::TestRng::from_seed(
                proptest::test_runner::RngAlgorithm::ChaCha,
                &[7; 32],
            ),
        );
        runner
            .run(&(tree, paths), |(tree, paths)| {
                let image = tempfile::tempdir().unwrap();
                let r = image.path();
                let spots = ["a", "b", "a/c", "b/c", "a/c/a", "c"];
                for (spot, what) in spots.iter().zip(&tree) {
                    let p = r.join(spot);
                    if !p.parent().is_some_and(|d| d.is_dir()) || p.symlink_metadata().is_ok() {
                        continue;
                    }
                    match what {
                        None => std::fs::create_dir(&p).unwrap(),
                        Some(t) if t.is_empty() => std::fs::write(&p, "f").unwrap(),
                        Some(t) => symlink(t, &p).unwrap(),
                    }
                }
                let fd = open_root(r);
                for parts in paths {
                    let rel = parts.join("/");
                    for follow in [true, false] {
                        let k = outcome(Resolver::Kernel, &fd, &rel, follow);
                        let u = outcome(Resolver::UserSpace, &fd, &rel, follow);
                        prop_assert_eq!(k, u, "{:?} follow {} in {:?}", rel, follow, tree);
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}
