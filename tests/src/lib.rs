//! Helpers for the integration tests: a real chroot image, the assembled element, a real mirror.
//!
//! Everything here needs root (bind mounts, chroot, mknod). Tests call
//! [`require_root`] first, which fails loudly rather than skipping, and
//! which also puts the test under the run's seccomp profile, if any
//! ([`seccomp`]).
// Test support code: a failed setup step should abort the test with a
// message, which is what expect/panic do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pypi_mirror_testkit::BuildFrom;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod figures;
pub mod image;
pub mod seccomp;
pub mod snapshot;
pub mod tls;

pub use dib_pypi_core::testing::{FakeMounter, MountCall};
pub use figures::{record_figures, Row, Section, UPDATE_RELIABILITY};
pub use image::{
    is_mount_point, mounts_under, stage_of, unmount_under, Image, MiniImage, HARNESS_MOUNTS,
};
pub use snapshot::{assert_same_tree, assert_tree_eq, snapshot, Snap};

/// Fail (never skip) when not root: these tests are the proof that the real
/// mounts and chroot work, and CI runs as root. When the run names a
/// seccomp profile ([`seccomp::PROFILE_VAR`]), install it on the calling
/// thread, so the test and everything it starts see the kernel refuse
/// those calls, and check that the hook code then resolves paths in user
/// space.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the element integration tests need root (real bind mounts, chroot, mknod); \
         run them as root, as CI does"
    );
    if let Some(profile) = seccomp::profile_from_env() {
        profile
            .apply_to_this_thread()
            .unwrap_or_else(|e| panic!("installing the seccomp profile {profile}: {e}"));
        assert_eq!(
            dib_pypi_core::rootfs::Resolver::get(),
            dib_pypi_core::rootfs::Resolver::UserSpace,
            "under {profile}, the hooks must resolve paths in user space"
        );
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    xtask::element::workspace_root()
}

/// Variable naming an assembled element (the directory holding `pypi/`)
/// to use instead of assembling one: the child processes of the seccomp
/// runs share their parent's.
pub const ELEMENT_VAR: &str = "DIB_PYPI_TEST_ELEMENT";

/// The element, assembled once per test run by the same code as
/// `cargo xtask element`.
pub fn element() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os(ELEMENT_VAR) {
            return PathBuf::from(dir).join("pypi");
        }
        xtask::element::assemble(&workspace().join("target/test-element"))
            .unwrap_or_else(|e| panic!("assembling the element: {e}"))
    })
}

/// A command with the host's pip/uv settings removed (this host sets
/// PIP_FIND_LINKS and friends, which would change what we test).
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("PIP_") || k.starts_with("UV_") || k.starts_with("DIB_") {
            cmd.env_remove(&*k);
        }
    }
    cmd
}

/// The uv release the tests install, pinned so that a new upstream
/// release cannot change a result (the same as pypi-mirror's tests). pip
/// in the chroot is the one Debian's python3 puts in its venvs, pinned by
/// the distribution release.
pub use pypi_mirror_testkit::UV_VERSION;

/// Directory holding the uv wheel ([`UV_VERSION`]) for this platform,
/// downloaded from PyPI once and cached under target/.
pub fn uv_wheel_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = workspace().join(format!("target/test-cache/uv-{UV_VERSION}"));
        let prefix = format!("uv-{UV_VERSION}-");
        let has_wheel = fs::read_dir(&dir)
            .map(|mut d| {
                d.any(|e| {
                    e.is_ok_and(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.starts_with(&prefix) && name.ends_with(".whl")
                    })
                })
            })
            .unwrap_or(false);
        if !has_wheel {
            let out = clean_command("python3")
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "-d",
                ])
                .arg(&dir)
                .arg(format!("uv=={UV_VERSION}"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pip download uv=={UV_VERSION} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

/// A PEP 503 mirror built by `pypi-mirror` from synthetic wheels, each
/// project at version 1.0 (plus, optionally, the uv wheel).
pub fn build_mirror(out: &Path, projects: &[&str], with_uv: bool) {
    let releases: Vec<(&str, &str)> = projects.iter().map(|p| (*p, "1.0")).collect();
    build_mirror_of(out, &releases, with_uv);
}

/// [`build_mirror`] with the given `(project, version)` releases.
pub fn build_mirror_of(out: &Path, releases: &[(&str, &str)], with_uv: bool) {
    let wheels = out.with_extension("wheels");
    fs::create_dir_all(&wheels).unwrap();
    for (project, version) in releases {
        pypi_mirror_testkit::synth::write_wheel(&wheels, project, version).unwrap();
    }
    let mut opts = pypi_mirror::BuildOptions::new(out).with_source(&wheels);
    if with_uv {
        opts = opts.with_source(uv_wheel_dir());
    }
    let report = pypi_mirror::build(&opts).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// A loopback http server over a directory (the mirror crate's test kit),
/// with the host's python3.
pub fn serve(dir: &Path) -> pypi_mirror_testkit::HttpServer {
    pypi_mirror_testkit::HttpServer::start(dir, Path::new("python3")).unwrap()
}

/// `127.0.0.1:PORT` of a server, as pip's trusted-host lists it.
pub fn host_port(server: &pypi_mirror_testkit::HttpServer) -> String {
    server
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// stdout+stderr of a finished command, as text.
pub fn text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// Assert success, showing all output otherwise.
pub fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        text(out)
    );
}

/// Read a file fully (helper for assertions).
pub fn read(path: &Path) -> String {
    let mut s = String::new();
    fs::File::open(path)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// `cmd`'s output, retrying (a bounded number of times) while exec says
/// ETXTBSY: a freshly written binary is "busy" while any process forked
/// by another test thread during the copy still holds the write fd,
/// until that child execs.
pub fn output_of_fresh_binary(cmd: &mut Command) -> Output {
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
    panic!("{cmd:?}: still busy (ETXTBSY) after 100 tries");
}

/// The hook binary `name` of the assembled element, as an executable copy
/// (the element ships them without the executable bit).
pub fn hook_binary(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        // One directory per process: the seccomp runs' child processes
        // copy while the parent's tests may be running these copies.
        let dir = workspace().join(format!("target/test-hook-bin/{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for bin in xtask::element::BINARIES {
            let to = dir.join(bin);
            fs::copy(element().join(xtask::element::LIBEXEC).join(bin), &to).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    });
    dir.join(name)
}
