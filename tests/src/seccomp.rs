//! Seccomp profiles that refuse new system calls, as old kernels and container runtimes do.
//!
//! A kernel older than 5.6 answers `openat2` with ENOSYS; a container
//! whose seccomp profile predates it answers EPERM. The tests do not trust
//! a flag in the product to take the fallback path: they install one of
//! these filters on the thread (and so every process it starts) that runs
//! the hooks, and the kernel itself refuses the call.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// `openat2`'s number, the same on every architecture (5.6 added it with
/// the unified numbering).
const SYS_OPENAT2: i64 = 437;
/// The first syscall number that Linux 4.18 does not have: everything
/// from 5.1 on is numbered from 424 on every architecture, and x86_64's
/// numbers between 4.18's last (334, rseq) and 424 were never allocated.
const FIRST_AFTER_4_18: i64 = 424;
/// Past the last number any kernel of today allocates.
const LAST_NUMBER: i64 = 511;

/// What a profile refuses, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `openat2` fails with ENOSYS, as on a kernel before 5.6.
    Openat2Enosys,
    /// `openat2` fails with EPERM, as under an older container profile.
    Openat2Eperm,
    /// Every system call newer than Linux 4.18 (RHEL 8's kernel) fails
    /// with ENOSYS.
    Linux418,
}

impl Profile {
    /// Every profile, with its name.
    pub const ALL: [Profile; 3] = [
        Profile::Openat2Enosys,
        Profile::Openat2Eperm,
        Profile::Linux418,
    ];

    /// The name used on command lines and in environment variables.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Openat2Enosys => "openat2-enosys",
            Profile::Openat2Eperm => "openat2-eperm",
            Profile::Linux418 => "linux-4.18",
        }
    }

    /// The profile called `name`.
    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }

    /// What it does, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Profile::Openat2Enosys => "`openat2` refused with ENOSYS by seccomp",
            Profile::Openat2Eperm => "`openat2` refused with EPERM by seccomp",
            Profile::Linux418 => {
                "every syscall newer than Linux 4.18 refused with ENOSYS by seccomp"
            }
        }
    }

    fn errno(self) -> i32 {
        match self {
            Profile::Openat2Eperm => nix::libc::EPERM,
            Profile::Openat2Enosys | Profile::Linux418 => nix::libc::ENOSYS,
        }
    }

    fn syscalls(self) -> Vec<i64> {
        match self {
            Profile::Openat2Enosys | Profile::Openat2Eperm => vec![SYS_OPENAT2],
            Profile::Linux418 => (FIRST_AFTER_4_18..=LAST_NUMBER).collect(),
        }
    }

    /// The BPF program for this machine's architecture.
    pub fn program(self) -> io::Result<BpfProgram> {
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(io::Error::other)?;
        let rules = self
            .syscalls()
            .into_iter()
            .map(|nr| (nr, Vec::new()))
            .collect::<BTreeMap<_, _>>();
        let errno = u32::try_from(self.errno()).map_err(io::Error::other)?;
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
            arch,
        )
        .map_err(io::Error::other)?;
        BpfProgram::try_from(filter).map_err(io::Error::other)
    }

    /// Install the filter on the calling thread; it stays for the thread's
    /// life and is inherited by every process the thread starts. Sets
    /// no_new_privs on the thread, as seccomp requires without
    /// CAP_SYS_ADMIN (so setuid programs it starts gain nothing: run them
    /// as root).
    pub fn apply_to_this_thread(self) -> io::Result<()> {
        seccompiler::apply_filter(&self.program()?).map_err(io::Error::other)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Environment variable naming the profile the hardening tests run their
/// hooks under (unset: none, openat2 as the kernel has it).
pub const PROFILE_VAR: &str = "DIB_PYPI_TEST_SECCOMP";

/// The profile [`PROFILE_VAR`] names, if any.
pub fn profile_from_env() -> Option<Profile> {
    let name = std::env::var(PROFILE_VAR).ok()?;
    match Profile::from_name(&name) {
        Some(p) => Some(p),
        None => panic!("{PROFILE_VAR}={name:?} names no seccomp profile"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A trivial openat2, as the product's probe makes it.
    fn openat2_errno() -> Option<i32> {
        let how = nix::fcntl::OpenHow::new().flags(nix::fcntl::OFlag::O_PATH);
        match nix::fcntl::openat2(nix::fcntl::AT_FDCWD, ".", how) {
            Ok(fd) => {
                assert!(fd.as_raw_fd() >= 0);
                None
            }
            Err(e) => Some(e as i32),
        }
    }

    #[test]
    fn each_profile_really_refuses_openat2_on_its_thread_only() {
        assert_eq!(openat2_errno(), None, "this kernel has openat2");
        for p in Profile::ALL {
            let seen = std::thread::spawn(move || {
                p.apply_to_this_thread().unwrap();
                openat2_errno()
            })
            .join()
            .unwrap();
            assert_eq!(seen, Some(p.errno()), "{p}");
        }
        assert_eq!(openat2_errno(), None, "the filters stayed on their threads");
    }

    #[test]
    fn linux_4_18_leaves_its_own_syscalls_alone() {
        let ok = std::thread::spawn(|| {
            Profile::Linux418.apply_to_this_thread().unwrap();
            // statx (4.11) and getrandom (3.17) stay; clone3 (5.3) goes.
            let statx_ok = std::fs::metadata("/").is_ok();
            let child = std::process::Command::new("true")
                .status()
                .map(|s| s.success());
            (statx_ok, child.unwrap_or(false))
        })
        .join()
        .unwrap();
        assert_eq!(ok, (true, true));
    }
}
