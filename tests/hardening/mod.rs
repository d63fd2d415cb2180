//! Hardening: symlinks out of the image, a kill at every step, re-runs, hostile input and random states, each with openat2 and with it refused.
//!
//! Each test drives the core library (the hook binaries are thin wrappers
//! around it) on a throw-away image tree, checks its cases, and records how
//! many it tried and what came of them in its own table of
//! docs/RELIABILITY.md (see `dib_pypi_tests::record_figures`): the figures
//! there are always the ones these tests produced. One module per table.
//!
//! Crashes are injected with the core's `testing` feature: a
//! `FaultPlan` is asked before every mutating system call on the image (and,
//! through `FakeMounter`, before every mount call), and at step N the hook
//! dies. In-process, "dies" means every later change fails, which is the
//! state a SIGKILL leaves; one test also really SIGKILLs a child process.
//!
//! [`under_seccomp`] runs this whole test binary again, twice, in child
//! processes whose tests run under a seccomp filter that refuses `openat2`
//! (ENOSYS, then EPERM): the same tables are then produced by the
//! user-space resolver, against the real refusal.

use std::collections::BTreeMap;
use std::os::unix::fs::{chown, symlink};
use std::path::{Path, PathBuf};

use dib_pypi_core::layout::with_suffix;
use dib_pypi_core::settings::Settings;
use dib_pypi_core::tools::{ToolSpec, TOOLS};
use dib_pypi_tests::{MiniImage, Section, Snap};

mod crash;
mod host_mirror;
mod hostile;
mod mount_calls;
mod random;
mod symlinks;
mod test_tool;
mod under_seccomp;

/// A snapshot of a tree, by in-image path.
type Tree = BTreeMap<PathBuf, Snap>;

const SECTIONS: &[Section] = &[
    Section {
        id: "symlinks",
        title: "Symlinks that point out of the image",
        intro: "A path component the hooks use is replaced by a symlink to a host directory \
                (absolute, or `../../..`-relative), either before the build or after \
                configure (before cleanup). The host directory holds a copy of every name \
                the hooks touch; it must stay byte for byte the same and never be mounted \
                over. root.d runs with the real mount(2).",
    },
    Section {
        id: "crash-configure",
        title: "pre-install.d killed at every step",
        intro: "configure is killed after each of its mutating system calls in turn (a \
                write killed half way writes half), then cleanup runs, or first a second \
                configure and then cleanup. The image must come back exactly (bytes, mode, \
                owner of every entry), and the second configure must keep the first \
                backups.",
    },
    Section {
        id: "crash-mount",
        title: "root.d killed at every step",
        intro: "The mount hook with a recording fake mounter whose mount calls are steps \
                too; after each kill, no writable mount may be in the image (the mirror is \
                made read-only beside the image and only then moved in), and cleanup (or \
                root.d again, then cleanup) must leave no mount, no staging directory and \
                the original tree.",
    },
    Section {
        id: "crash-restore",
        title: "cleanup.d killed at every step",
        intro: "After root.d and pre-install.d, cleanup is killed at each step, then run \
                again: the second run must finish the job exactly (it must not replay a \
                step whose effect a later step already changed).",
    },
    Section {
        id: "crash-sigkill",
        title: "A real process killed with SIGKILL",
        intro: "The same crash points, in a child process that sends itself SIGKILL at step \
                N (no destructor, no rollback runs); the parent then runs cleanup.",
    },
    Section {
        id: "mount-calls",
        title: "Exact mount calls",
        intro: "root.d and cleanup.d against a fake mounter that records each call, with \
                failures injected.",
    },
    Section {
        id: "host-mirror",
        title: "The host's mirror under a wipe of the image",
        intro: "With the mirror bind-mounted read-only, destructive operations are tried on \
                it from the host side (as root) and from inside the chroot. The host's \
                mirror must be unchanged.",
    },
    Section {
        id: "hostile-input",
        title: "Hostile input",
        intro: "Each value is given to the configure step. An error must be one line naming \
                the variable or path, without the password, and leave the image unchanged; \
                an accepted value must give config files that Python's `configparser` \
                (as pip reads them) and `tomllib` (uv) read back as exactly the intended \
                indexes, and cleanup must restore the image exactly.",
    },
    Section {
        id: "random-states",
        title: "Random initial states (property tests)",
        intro: "proptest, fixed seed: random states of the three config files and their \
                directories (absent; a file with random bytes, mode and owner; a symlink \
                inside the image; a directory; a FIFO; `~/.pip` a symlink to \
                `~/.config/pip`, or leading nowhere). configure then cleanup must give \
                back the same tree; in the second property configure is also killed at a \
                random step.",
    },
];

const HEADER: &str = "# Written by the diskimage-builder pypi element";
/// The user config files of the element's tools, from their specs.
fn configs() -> Vec<String> {
    configs_of(TOOLS)
}

/// The user config files of `tools`, as root's.
fn configs_of(tools: &[&ToolSpec]) -> Vec<String> {
    tools
        .iter()
        .flat_map(|t| t.user_paths(home()))
        .map(|p| p.display().to_string())
        .collect()
}

fn settings(vars: &[(&str, &str)]) -> Settings {
    Settings::from_vars(vars.iter().copied()).unwrap()
}

/// A mirror with credentials, so the files are written 0600.
fn secret_settings() -> Settings {
    settings(&[
        (
            "DIB_PYPI_MIRROR_URL",
            "https://dib:s3cret@m.example/simple/",
        ),
        ("DIB_PYPI_MIRROR_URL_1", "file:///tmp/pypi"),
        ("DIB_OFFLINE", "1"),
    ])
}

fn home() -> &'static Path {
    Path::new("/root")
}

/// Originals to put back exactly: a 0640 file owned by uid 1, a symlink
/// inside the image, a 0600 file.
fn seed_originals(img: &MiniImage) {
    img.write(
        "/root/.config/pip/pip.conf",
        b"[global]\ntimeout = 7\n",
        0o640,
    );
    chown(img.path("/root/.config/pip/pip.conf"), Some(1), Some(1)).unwrap();
    std::fs::create_dir_all(img.path("/root/.pip")).unwrap();
    symlink("../.config/pip/pip.conf", img.path("/root/.pip/pip.conf")).unwrap();
    img.write("/root/.config/uv/uv.toml", b"native-tls = true\n", 0o600);
}

/// An image with [`seed_originals`].
fn seeded() -> MiniImage {
    let img = MiniImage::new();
    seed_originals(&img);
    img
}

/// After a configure: our files are in place and every original sits,
/// unchanged, at its backup name (the first backup was never overwritten).
fn assert_ours_with_first_backups(
    ctx: &str,
    img: &MiniImage,
    original: &Tree,
    tools: &[&ToolSpec],
) {
    let now = img.snapshot();
    for conf in configs_of(tools) {
        let text = std::fs::read_to_string(img.path(&conf)).unwrap();
        assert!(
            text.starts_with(HEADER),
            "{ctx}: {conf} is not ours:\n{text}"
        );
        if let Some(orig) = original.get(Path::new(&conf)) {
            let backup = with_suffix(Path::new(&conf), ".dib-pypi-orig");
            assert_eq!(now.get(&backup), Some(orig), "{ctx}: backup of {conf}");
        }
    }
}

/// A small mirror tree on the host: an index, a project page, a file.
fn mirror_source() -> tempfile::TempDir {
    let m = tempfile::Builder::new()
        .prefix("dib-pypi-mirror.")
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(m.path().join("dibtest-a")).unwrap();
    std::fs::write(
        m.path().join("index.html"),
        "<a href=\"dibtest-a/\">a</a>\n",
    )
    .unwrap();
    std::fs::write(m.path().join("dibtest-a/index.html"), "wheel link\n").unwrap();
    std::fs::write(
        m.path().join("dibtest-a/dibtest_a-1.0-py3-none-any.whl"),
        b"PK\x03\x04 not really a wheel",
    )
    .unwrap();
    m
}
