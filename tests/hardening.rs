//! Hardening: symlinks out of the image, a kill at every step, re-runs, hostile input and random states.
//!
//! Each test drives the core library (the hook binaries are thin wrappers
//! around it) on a throw-away image tree, checks its cases, and records how
//! many it tried and what came of them in its own table of
//! docs/RELIABILITY.md (see `dib_pypi_tests::record_figures`): the figures
//! there are always the ones these tests produced.
//!
//! Crashes are injected with the core's `fault-injection` feature: a
//! `FaultPlan` is asked before every mutating system call on the image (and,
//! through `FakeMounter`, before every mount call), and at step N the hook
//! dies. In-process, "dies" means every later change fails, which is the
//! state a SIGKILL leaves; one test also really SIGKILLs a child process.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use dib_pypi_core::configure::configure;
use dib_pypi_core::fault::{Death, FaultPlan};
use dib_pypi_core::mount::{mount_mirror, MountOutcome, Mounter, SystemMounter};
use dib_pypi_core::render::PIP_SECTIONS;
use dib_pypi_core::rootfs::{with_suffix, Root};
use dib_pypi_core::settings::Settings;
use dib_pypi_core::undo::restore;
use dib_pypi_tests::{
    assert_tree_eq, hook_binary, mounts_under, record_figures, require_root, snapshot, FakeMounter,
    Image, MiniImage, MountCall, Row, Section, Snap,
};

/// A snapshot of a tree, by in-image path.
type Tree = BTreeMap<PathBuf, Snap>;
/// What a scenario does after a kill, given the context, the image, its
/// original tree and the mounter.
type Recover<'a> = &'a dyn Fn(&str, &MiniImage, &Tree, &FakeMounter);
/// Environment variables of a case.
type Vars = Vec<(OsString, OsString)>;

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
        intro: "The mount hook with a recording fake mounter whose bind and remount are \
                steps too; after the kill, cleanup (or root.d again, then cleanup) must \
                leave no mount and the original tree.",
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
                `~/.config/pip`). configure then cleanup must give back the same tree; \
                in the second property configure is also killed at a random step.",
    },
];

const HEADER: &str = "# Written by the diskimage-builder pypi element";
const CONFIGS: [&str; 3] = [
    "/root/.pip/pip.conf",
    "/root/.config/pip/pip.conf",
    "/root/.config/uv/uv.toml",
];

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

/// After a configure: our files are in place and every original sits,
/// unchanged, at its backup name (the first backup was never overwritten).
fn assert_ours_with_first_backups(ctx: &str, img: &MiniImage, original: &Tree) {
    let now = img.snapshot();
    for conf in CONFIGS {
        let text = std::fs::read_to_string(img.path(conf)).unwrap();
        assert!(
            text.starts_with(HEADER),
            "{ctx}: {conf} is not ours:\n{text}"
        );
        if let Some(orig) = original.get(Path::new(conf)) {
            let backup = with_suffix(Path::new(conf), ".dib-pypi-orig");
            assert_eq!(now.get(&backup), Some(orig), "{ctx}: backup of {conf}");
        }
    }
}

// ---------------------------------------------------------------------------
// Symlinks

/// Names the hooks touch, laid out in the host directory a symlink points
/// to, so that any write, rename or delete that escaped would change it.
fn host_canary() -> tempfile::TempDir {
    // At the host's top level: seen from inside the image, its path then
    // never runs through one of the replaced components (as it would under
    // /tmp), so the outcomes do not depend on $TMPDIR or the checkout.
    let host = tempfile::Builder::new()
        .prefix("dib-pypi-canary.")
        .tempdir_in("/")
        .unwrap();
    let files = [
        "canary",
        "pip.conf",
        "pip.conf.dib-pypi-orig",
        "pip.conf.dib-pypi-tmp",
        "uv.toml",
        "uv.toml.dib-pypi-orig",
        "config.journal",
        "mount.journal",
        "state.journal",
        ".pip/pip.conf",
        ".config/pip/pip.conf",
        ".config/uv/uv.toml",
        "pypi/index.html",
        "lib/dib-pypi/config.journal",
        "dib-pypi/config.journal",
    ];
    for f in files {
        let p = host.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("host file {f}\n")).unwrap();
    }
    host
}

/// In-image paths (directories and files) a symlink may replace, and the
/// name in the host directory it then points at.
const LINKED: &[(&str, &str)] = &[
    ("/tmp", ""),
    ("/tmp/pypi", "pypi"),
    ("/var", ""),
    ("/var/lib", "lib"),
    ("/var/lib/dib-pypi", "dib-pypi"),
    ("/var/lib/dib-pypi/config.journal", "config.journal"),
    ("/var/lib/dib-pypi/mount.journal", "mount.journal"),
    ("/root", ""),
    ("/root/.pip", ".pip"),
    ("/root/.config", ".config"),
    ("/root/.config/pip", ".config/pip"),
    ("/root/.config/uv", ".config/uv"),
    ("/root/.pip/pip.conf", "pip.conf"),
    ("/root/.config/pip/pip.conf", ".config/pip/pip.conf"),
    ("/root/.config/uv/uv.toml", "uv.toml"),
    (
        "/root/.pip/pip.conf.dib-pypi-orig",
        "pip.conf.dib-pypi-orig",
    ),
];

/// Replace in-image `inner` (whatever it is) by a symlink to `target`.
fn replace_with_link(img: &MiniImage, inner: &str, target: &Path) {
    let p = img.path(inner);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
        Ok(_) => std::fs::remove_file(&p).unwrap(),
        Err(_) => {}
    }
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, &p).unwrap();
}

/// The two ways to point out: `/host/dir`, and `../../..(x16)/host/dir`,
/// which climbs to the host's `/` from anywhere in the image.
fn link_targets(host: &Path, name: &str) -> [(&'static str, PathBuf); 2] {
    let abs = if name.is_empty() {
        host.to_path_buf()
    } else {
        host.join(name)
    };
    let rel = PathBuf::from("../".repeat(16)).join(abs.strip_prefix("/").unwrap());
    [("absolute", abs), ("..-relative", rel)]
}

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

/// The base image of the symlink cases: state dir absent, originals present.
fn symlink_base() -> MiniImage {
    let img = MiniImage::new(true);
    seed_originals(&img);
    img
}

#[test]
fn symlinks_out_of_the_image_never_reach_the_host() {
    require_root();
    let host = host_canary();
    let host_before = snapshot(host.path(), &[]);
    let mirror = mirror_source();
    let mirror_before = snapshot(mirror.path(), &[]);

    let (mut before_cases, mut refused, mut inside) = (0, 0, 0);
    for (inner, name) in LINKED {
        for (style, target) in link_targets(host.path(), name) {
            let ctx = format!("{inner} -> {style} link, before the build");
            let img = symlink_base();
            if inner.starts_with("/var/lib/dib-pypi/") {
                std::fs::create_dir_all(img.path("/var/lib/dib-pypi")).unwrap();
            }
            replace_with_link(&img, inner, &target);
            let before = img.snapshot();

            let root = img.open();
            let mounted = mount_mirror(&root, mirror.path(), &SystemMounter);
            // Other tests mount in parallel elsewhere; what matters is
            // where the links point, and that ours stays in the image.
            assert!(
                mounts_under(host.path()).is_empty(),
                "{ctx}: host mounted over"
            );
            let ours = mounts_under(img.root());
            assert!(
                ours.is_empty() || ours == [img.path("/tmp/pypi")],
                "{ctx}: mounted at {ours:?}"
            );
            let configured = configure(&root, &secret_settings(), home(), &SystemMounter);
            let refused_here = mounted.is_err() || configured.is_err();
            assert_tree_eq(&ctx, &host_before, &snapshot(host.path(), &[]));
            restore(&root, &SystemMounter).unwrap_or_else(|e| panic!("{ctx}: restore: {e}"));
            assert!(mounts_under(img.root()).is_empty(), "{ctx}: mount left");
            assert_tree_eq(&ctx, &before, &img.snapshot());
            assert_tree_eq(&ctx, &host_before, &snapshot(host.path(), &[]));
            for e in [mounted.err(), configured.err()].into_iter().flatten() {
                let msg = e.to_string();
                assert!(
                    !msg.contains('\n') && !msg.contains("s3cret"),
                    "{ctx}: {msg}"
                );
            }
            before_cases += 1;
            if refused_here {
                refused += 1;
            } else {
                inside += 1;
            }
        }
    }

    let (mut swap_cases, mut swap_restored) = (0, 0);
    for (inner, name) in LINKED {
        if *inner == "/tmp/pypi" {
            // A mount point cannot be renamed (EBUSY); its parent is tried.
            continue;
        }
        for (style, target) in link_targets(host.path(), name) {
            let ctx = format!("{inner} -> {style} link, swapped in before cleanup");
            let img = symlink_base();
            let root = img.open();
            assert_eq!(
                mount_mirror(&root, mirror.path(), &SystemMounter).unwrap(),
                MountOutcome::Mounted
            );
            configure(&root, &secret_settings(), home(), &SystemMounter).unwrap();
            let p = img.path(inner);
            if std::fs::symlink_metadata(&p).is_ok() {
                std::fs::rename(&p, with_suffix(&p, ".moved")).unwrap();
            }
            symlink(&target, &p).unwrap();
            let restored = restore(&root, &SystemMounter);
            assert!(
                mounts_under(host.path()).is_empty(),
                "{ctx}: the host directory was mounted over"
            );
            assert_tree_eq(&ctx, &host_before, &snapshot(host.path(), &[]));
            swap_cases += 1;
            swap_restored += usize::from(restored.is_ok());
        }
    }
    assert_tree_eq("the mirror", &mirror_before, &snapshot(mirror.path(), &[]));

    record_figures(
        SECTIONS,
        "symlinks",
        &[
            Row::new(
                format!(
                    "symlink at one of {} paths before the build, 2 styles: root.d, pre-install.d, cleanup.d",
                    LINKED.len()
                ),
                before_cases,
                format!(
                    "host directory unchanged and never mounted over in {before_cases}/{before_cases}; \
                     image restored exactly in {before_cases}/{before_cases} \
                     ({refused} refused with a one-line error, {inside} resolved inside the image)"
                ),
            ),
            Row::new(
                format!(
                    "symlink swapped in after pre-install.d, at one of {} paths, 2 styles: cleanup.d",
                    LINKED.len() - 1
                ),
                swap_cases,
                format!(
                    "host directory unchanged and never mounted over in {swap_cases}/{swap_cases} \
                     (cleanup reported success in {swap_restored}, an error in {})",
                    swap_cases - swap_restored
                ),
            ),
        ],
    );
}

// ---------------------------------------------------------------------------
// Crashes

/// A starting point for a killed hook: how to make the image, and the
/// hooks that ran before.
struct Scenario {
    name: &'static str,
    image: fn() -> MiniImage,
    earlier: fn(&Root, &FakeMounter),
}

fn fake_mount(root: &Root, fake: &FakeMounter) {
    let source = std::env::temp_dir();
    assert_eq!(
        mount_mirror(root, &source, fake).unwrap(),
        MountOutcome::Mounted
    );
}

fn nothing(_: &Root, _: &FakeMounter) {}

fn seeded(var_lib: bool) -> MiniImage {
    let img = MiniImage::new(var_lib);
    seed_originals(&img);
    img
}

const CONFIGURE_SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "empty image without /var/lib",
        image: || MiniImage::new(false),
        earlier: nothing,
    },
    Scenario {
        name: "originals present (0640 file of uid 1, symlink, 0600 file)",
        image: || seeded(true),
        earlier: nothing,
    },
    Scenario {
        name: "second configure over a finished first one",
        image: || seeded(false),
        earlier: |root, fake| {
            let first = settings(&[("DIB_PYPI_MIRROR_URL", "http://first.example/")]);
            configure(root, &first, home(), fake).unwrap();
        },
    },
    Scenario {
        name: "after root.d mounted the mirror",
        image: || seeded(false),
        earlier: fake_mount,
    },
];

/// Steps `hook` takes on a fresh image of `sc`, counted without a crash.
fn count_steps(sc: &Scenario, hook: &dyn Fn(&Root, &FakeMounter) -> bool) -> u64 {
    let img = (sc.image)();
    let fake = FakeMounter::default();
    (sc.earlier)(&img.open(), &fake);
    let plan = Arc::new(FaultPlan::counting());
    fake.set_faults(Some(plan.clone()));
    assert!(
        hook(&img.open_with(&plan), &fake),
        "{}: hook failed",
        sc.name
    );
    plan.steps()
}

/// Kill `hook` at every step of scenario `sc`; after each kill run
/// `recover` (which may run hooks again) and expect the original tree and
/// no mount. Returns the number of steps.
fn kill_at_every_step(
    sc: &Scenario,
    hook: &dyn Fn(&Root, &FakeMounter) -> bool,
    recover: Recover<'_>,
) -> u64 {
    let steps = count_steps(sc, hook);
    assert!(steps > 5, "{}: only {steps} steps", sc.name);
    for n in 1..=steps + 1 {
        let ctx = format!("{}: killed at step {n}/{steps}", sc.name);
        let img = (sc.image)();
        let original = img.snapshot();
        let fake = FakeMounter::default();
        (sc.earlier)(&img.open(), &fake);
        let plan = Arc::new(FaultPlan::crash_at(n, Death::Fail));
        fake.set_faults(Some(plan.clone()));
        let ok = hook(&img.open_with(&plan), &fake);
        fake.set_faults(None);
        // Step steps+1 does not exist: the hook must then finish.
        assert_eq!(plan.crashed(), n <= steps, "{ctx}: {:?}", plan.log());
        assert_eq!(ok, n > steps, "{ctx}");
        recover(&ctx, &img, &original, &fake);
        assert_tree_eq(&ctx, &original, &img.snapshot());
        assert!(fake.mounted().is_empty(), "{ctx}: still mounted");
    }
    steps
}

fn run_configure(root: &Root, fake: &FakeMounter) -> bool {
    configure(root, &secret_settings(), home(), fake).is_ok()
}

fn cleanup(ctx: &str, img: &MiniImage, _: &Tree, fake: &FakeMounter) {
    restore(&img.open(), fake).unwrap_or_else(|e| panic!("{ctx}: restore: {e}"));
}

#[test]
fn configure_killed_at_every_step_is_restored_exactly() {
    require_root();
    let mut rows = Vec::new();
    for sc in CONFIGURE_SCENARIOS {
        let steps = kill_at_every_step(sc, &run_configure, &cleanup);
        rows.push(Row::new(
            format!(
                "configure killed after each step, {}; then cleanup",
                sc.name
            ),
            steps as usize,
            format!("{steps}/{steps} restored exactly"),
        ));
        let again = kill_at_every_step(sc, &run_configure, &|ctx, img, original, fake| {
            configure(&img.open(), &secret_settings(), home(), fake)
                .unwrap_or_else(|e| panic!("{ctx}: configure again: {e}"));
            assert_ours_with_first_backups(ctx, img, original);
            cleanup(ctx, img, original, fake);
        });
        rows.push(Row::new(
            format!(
                "configure killed after each step, {}; then configure again, then cleanup",
                sc.name
            ),
            again as usize,
            format!(
                "{again}/{again} configured with the first backups kept, then restored exactly"
            ),
        ));
    }
    record_figures(SECTIONS, "crash-configure", &rows);
}

const MOUNT_SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "image with /tmp and /var/lib",
        image: || MiniImage::new(true),
        earlier: nothing,
    },
    Scenario {
        name: "bare image (creates /tmp, /var, /var/lib)",
        image: MiniImage::bare,
        earlier: nothing,
    },
];

fn run_mount(root: &Root, fake: &FakeMounter) -> bool {
    mount_mirror(root, &std::env::temp_dir(), fake).is_ok()
}

#[test]
fn mount_killed_at_every_step_is_restored_exactly() {
    require_root();
    let mut rows = Vec::new();
    for sc in MOUNT_SCENARIOS {
        let steps = kill_at_every_step(sc, &run_mount, &cleanup);
        rows.push(Row::new(
            format!("root.d killed after each step, {}; then cleanup", sc.name),
            steps as usize,
            format!("{steps}/{steps} unmounted and restored exactly"),
        ));
        let again = kill_at_every_step(sc, &run_mount, &|ctx, img, original, fake| {
            let mp = img.path("/tmp/pypi");
            mount_mirror(&img.open(), &std::env::temp_dir(), fake)
                .unwrap_or_else(|e| panic!("{ctx}: root.d again: {e}"));
            // Mounted once, and read-only even if the kill came between
            // the bind and the remount.
            assert_eq!(fake.mounted(), std::slice::from_ref(&mp), "{ctx}");
            assert_eq!(
                fake.calls().last(),
                Some(&MountCall::RemountReadOnly(mp)),
                "{ctx}"
            );
            cleanup(ctx, img, original, fake);
        });
        rows.push(Row::new(
            format!(
                "root.d killed after each step, {}; then root.d again, then cleanup",
                sc.name
            ),
            again as usize,
            format!(
                "{again}/{again} mounted once and read-only, then unmounted and restored exactly"
            ),
        ));
    }
    record_figures(SECTIONS, "crash-mount", &rows);
}

#[test]
fn restore_killed_at_every_step_finishes_when_run_again() {
    require_root();
    let sc = Scenario {
        name: "after root.d and pre-install.d on an image without /var/lib",
        image: || seeded(false),
        earlier: |root, fake| {
            fake_mount(root, fake);
            configure(root, &secret_settings(), home(), fake).unwrap();
        },
    };
    let run_restore = |root: &Root, fake: &FakeMounter| restore(root, fake).is_ok();
    let steps = kill_at_every_step(&sc, &run_restore, &cleanup);
    // Killed twice: at step n, then the rerun at its own step n.
    let twice = kill_at_every_step(&sc, &run_restore, &|ctx, img, original, fake| {
        let plan = Arc::new(FaultPlan::crash_at(3, Death::Fail));
        fake.set_faults(Some(plan.clone()));
        let _ = restore(&img.open_with(&plan), fake);
        fake.set_faults(None);
        cleanup(ctx, img, original, fake);
    });
    record_figures(
        SECTIONS,
        "crash-restore",
        &[
            Row::new(
                format!(
                    "cleanup killed after each step, {}; then cleanup again",
                    sc.name
                ),
                steps as usize,
                format!("{steps}/{steps} unmounted and restored exactly"),
            ),
            Row::new(
                "the same, and the second cleanup killed too (at its 3rd step); then a third",
                twice as usize,
                format!("{twice}/{twice} unmounted and restored exactly"),
            ),
        ],
    );
}

const CHILD_ROOT: &str = "DIB_PYPI_HARDENING_CHILD_ROOT";
const CHILD_STEP: &str = "DIB_PYPI_HARDENING_CHILD_STEP";

/// Not a test by itself: the child process of
/// `configure_sigkilled_in_a_real_process_is_restored_exactly`, which runs
/// configure and SIGKILLs itself at the given step. Without its variables
/// it does nothing.
#[test]
fn sigkill_child() {
    let (Some(root), Ok(step)) = (std::env::var_os(CHILD_ROOT), std::env::var(CHILD_STEP)) else {
        return;
    };
    let plan = Arc::new(FaultPlan::crash_at(step.parse().unwrap(), Death::Kill));
    let root = Root::open(Path::new(&root)).unwrap().with_faults(plan);
    configure(&root, &secret_settings(), home(), &FakeMounter::default()).unwrap();
}

#[test]
fn configure_sigkilled_in_a_real_process_is_restored_exactly() {
    require_root();
    let exe = std::env::current_exe().unwrap();
    let mut killed = 0;
    for n in 1..=1000 {
        let img = seeded(false);
        let original = img.snapshot();
        let status = Command::new(&exe)
            .args([
                "--exact",
                "hardening::sigkill_child",
                "--test-threads=1",
                "-q",
            ])
            .env(CHILD_ROOT, img.root())
            .env(CHILD_STEP, n.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if status.success() {
            break;
        }
        assert_eq!(status.signal(), Some(9), "step {n}: {status}");
        killed += 1;
        restore(&img.open(), &FakeMounter::default())
            .unwrap_or_else(|e| panic!("step {n}: restore: {e}"));
        assert_tree_eq(&format!("SIGKILL at step {n}"), &original, &img.snapshot());
    }
    assert!(killed > 5, "only {killed} steps");
    record_figures(
        SECTIONS,
        "crash-sigkill",
        &[Row::new(
            "configure SIGKILLed after each step, originals present, no /var/lib; then cleanup",
            killed,
            format!("{killed}/{killed} died of SIGKILL and were restored exactly"),
        )],
    );
}

// ---------------------------------------------------------------------------
// Mount calls

#[test]
fn mount_calls_are_exact_and_failures_are_rolled_back() {
    require_root();
    let source = std::env::temp_dir();
    let mut rows = Vec::new();
    let mut row = |case: &str, result: &str| rows.push(Row::new(case, 1, result));

    // The normal sequence, a second root.d, cleanup.
    let img = MiniImage::new(true);
    let before = img.snapshot();
    let mp = img.path("/tmp/pypi");
    let fake = FakeMounter::default();
    let root = img.open();
    assert_eq!(
        mount_mirror(&root, &source, &fake).unwrap(),
        MountOutcome::Mounted
    );
    let bind = MountCall::Bind {
        source: source.clone(),
        target: mp.clone(),
    };
    let ro = MountCall::RemountReadOnly(mp.clone());
    assert_eq!(fake.calls(), [bind.clone(), ro.clone()]);
    assert_eq!(
        mount_mirror(&root, &source, &fake).unwrap(),
        MountOutcome::AlreadyMounted
    );
    assert_eq!(fake.calls(), [bind.clone(), ro.clone(), ro.clone()]);
    restore(&root, &fake).unwrap();
    assert_eq!(
        fake.calls(),
        [
            bind.clone(),
            ro.clone(),
            ro.clone(),
            MountCall::Unmount(mp.clone())
        ]
    );
    assert_tree_eq("normal", &before, &img.snapshot());
    row(
        "root.d, root.d again, cleanup.d",
        "calls exactly: bind, remount read-only; remount read-only (no second bind); unmount. Tree restored",
    );

    // bind fails.
    let fake = FakeMounter::default();
    fake.fail_bind.store(true, Ordering::SeqCst);
    let e = mount_mirror(&root, &source, &fake).unwrap_err().to_string();
    assert!(e.starts_with("bind-mount mirror on "), "{e}");
    assert_eq!(fake.calls(), std::slice::from_ref(&bind));
    assert_tree_eq("bind fails", &before, &img.snapshot());
    row(
        "bind fails",
        "one-line error; calls exactly: bind; mount point and state directory removed",
    );

    // remount read-only fails: the writable mount must not stay.
    let fake = FakeMounter::default();
    fake.fail_remount.store(true, Ordering::SeqCst);
    let e = mount_mirror(&root, &source, &fake).unwrap_err().to_string();
    assert!(e.starts_with("make read-only "), "{e}");
    assert_eq!(
        fake.calls(),
        [bind.clone(), ro.clone(), MountCall::Unmount(mp.clone())]
    );
    assert!(fake.mounted().is_empty());
    assert_tree_eq("remount fails", &before, &img.snapshot());
    row(
        "remount read-only fails",
        "one-line error; calls exactly: bind, remount, unmount; mount point and state directory removed",
    );

    // remount and unmount fail: the mount point is kept (never deleted
    // under a mount), the journal too, and cleanup finishes later.
    let fake = FakeMounter::default();
    fake.fail_remount.store(true, Ordering::SeqCst);
    fake.fail_unmount.store(true, Ordering::SeqCst);
    assert!(mount_mirror(&root, &source, &fake).is_err());
    assert!(mp.is_dir());
    assert_eq!(fake.mounted(), std::slice::from_ref(&mp));
    fake.fail_unmount.store(false, Ordering::SeqCst);
    restore(&root, &fake).unwrap();
    assert!(fake.mounted().is_empty());
    assert_tree_eq("remount and unmount fail", &before, &img.snapshot());
    row(
        "remount and the rollback's unmount fail",
        "mount point and journal kept; a later cleanup unmounts and restores exactly",
    );

    // Someone else's mount at /tmp/pypi.
    std::fs::create_dir(&mp).unwrap();
    let before_other = img.snapshot();
    let fake = FakeMounter::default();
    fake.pretend_mounted(&mp);
    let e = mount_mirror(&root, &source, &fake).unwrap_err().to_string();
    assert!(
        e.ends_with("tmp/pypi: something else is already mounted here"),
        "{e}"
    );
    assert!(fake.calls().is_empty());
    assert_tree_eq("foreign mount", &before_other, &img.snapshot());
    restore(&root, &fake).unwrap();
    assert_eq!(
        fake.mounted(),
        std::slice::from_ref(&mp),
        "not ours to unmount"
    );
    std::fs::remove_dir(&mp).unwrap();
    row(
        "something else already mounted at /tmp/pypi",
        "refused, no mount call; cleanup leaves that mount alone",
    );

    // /tmp/pypi is a file, a symlink inside the image, a FIFO.
    for (what, make) in [
        (
            "a file",
            &(|p: &Path| std::fs::write(p, "x").unwrap()) as &dyn Fn(&Path),
        ),
        ("a symlink inside the image", &|p: &Path| {
            symlink("/root", p).unwrap()
        }),
        ("a FIFO", &|p: &Path| {
            nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
        }),
    ] {
        make(&mp);
        let before_kind = img.snapshot();
        let fake = FakeMounter::default();
        let e = mount_mirror(&root, &source, &fake).unwrap_err().to_string();
        assert!(e.contains("; refusing to mount over it"), "{e}");
        assert!(fake.calls().is_empty());
        assert_tree_eq(what, &before_kind, &img.snapshot());
        std::fs::remove_file(&mp).unwrap();
        row(
            &format!("/tmp/pypi is {what}"),
            "refused with a one-line error, no mount call, nothing changed",
        );
    }

    // No mirror on the host.
    let fake = FakeMounter::default();
    let none = mount_mirror(&root, &source.join("no-such-mirror-dir"), &fake).unwrap();
    assert_eq!(none, MountOutcome::NoMirror);
    assert!(fake.calls().is_empty());
    assert_tree_eq("no mirror", &before, &img.snapshot());
    row(
        "no mirror directory on the host",
        "nothing done, no mount call",
    );

    // DIB unmounted everything before cleanup: the mount point still goes.
    let fake = FakeMounter::default();
    mount_mirror(&root, &source, &fake).unwrap();
    fake.unmount(&mp).unwrap();
    restore(&root, &fake).unwrap();
    assert_eq!(fake.calls().len(), 3, "{:?}", fake.calls());
    assert_tree_eq("dib unmounted", &before, &img.snapshot());
    row(
        "mirror unmounted by DIB before cleanup.d",
        "cleanup makes no mount call, removes the mount point and state directory",
    );

    record_figures(SECTIONS, "mount-calls", &rows);
}

// ---------------------------------------------------------------------------
// The host's mirror

#[test]
fn the_host_mirror_survives_wipes_of_the_image() {
    require_root();
    let mirror = mirror_source();
    let mirror_before = snapshot(mirror.path(), &[]);
    let img = MiniImage::new(true);
    let before = img.snapshot();
    let root = img.open();
    assert_eq!(
        mount_mirror(&root, mirror.path(), &SystemMounter).unwrap(),
        MountOutcome::Mounted
    );
    let m = img.path("/tmp/pypi");
    let files: Vec<PathBuf> = mirror_before
        .iter()
        .filter(|(_, s)| s.mode & 0o170000 == 0o100000)
        .map(|(p, _)| m.join(p.strip_prefix("/").unwrap()))
        .collect();
    let dirs: Vec<PathBuf> = mirror_before
        .iter()
        .filter(|(p, s)| s.mode & 0o170000 == 0o040000 && *p != Path::new("/"))
        .map(|(p, _)| m.join(p.strip_prefix("/").unwrap()))
        .collect();

    type Attempt = Box<dyn Fn() -> std::io::Result<()>>;
    let mut attempts: Vec<(String, Attempt)> = Vec::new();
    let add = |attempts: &mut Vec<(String, Attempt)>, name: String, f: Attempt| {
        attempts.push((name, f));
    };
    for f in &files {
        let f1 = f.clone();
        add(
            &mut attempts,
            format!("unlink {}", f.display()),
            Box::new(move || std::fs::remove_file(&f1)),
        );
        let f2 = f.clone();
        add(
            &mut attempts,
            format!("truncate {}", f.display()),
            Box::new(move || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&f2)
                    .map(drop)
            }),
        );
        let f3 = f.clone();
        add(
            &mut attempts,
            format!("append to {}", f.display()),
            Box::new(move || std::fs::OpenOptions::new().append(true).open(&f3).map(drop)),
        );
        let f4 = f.clone();
        add(
            &mut attempts,
            format!("chmod {}", f.display()),
            Box::new(move || std::fs::set_permissions(&f4, std::fs::Permissions::from_mode(0o777))),
        );
        let f5 = f.clone();
        add(
            &mut attempts,
            format!("chown {}", f.display()),
            Box::new(move || chown(&f5, Some(1), Some(1))),
        );
        let f6 = f.clone();
        add(
            &mut attempts,
            format!("rename {}", f.display()),
            Box::new(move || std::fs::rename(&f6, with_suffix(&f6, ".x"))),
        );
        let f7 = f.clone();
        add(
            &mut attempts,
            format!("hard link {}", f.display()),
            Box::new(move || std::fs::hard_link(&f7, with_suffix(&f7, ".link"))),
        );
    }
    for d in dirs.iter().chain([&m]) {
        let d1 = d.clone();
        add(
            &mut attempts,
            format!("create a file in {}", d.display()),
            Box::new(move || std::fs::write(d1.join("intruder"), "x")),
        );
        let d2 = d.clone();
        add(
            &mut attempts,
            format!("mkdir in {}", d.display()),
            Box::new(move || std::fs::create_dir(d2.join("newdir"))),
        );
        let d3 = d.clone();
        add(
            &mut attempts,
            format!("symlink in {}", d.display()),
            Box::new(move || symlink("/etc", d3.join("l"))),
        );
        let d4 = d.clone();
        add(
            &mut attempts,
            format!("rmdir {}", d.display()),
            Box::new(move || std::fs::remove_dir(&d4)),
        );
        let d5 = d.clone();
        add(
            &mut attempts,
            format!("rename {}", d.display()),
            Box::new(move || std::fs::rename(&d5, with_suffix(&d5, ".x"))),
        );
        let d6 = d.clone();
        add(
            &mut attempts,
            format!("remove_dir_all {}", d.display()),
            Box::new(move || std::fs::remove_dir_all(&d6)),
        );
    }
    let tmp = img.path("/tmp");
    let t1 = tmp.clone();
    add(
        &mut attempts,
        "remove_dir_all of the image's /tmp".into(),
        Box::new(move || std::fs::remove_dir_all(&t1)),
    );
    for argv in [vec!["rm", "-rf"], vec!["find"]] {
        let t = tmp.clone();
        let name = format!("{} on the image's /tmp", argv.join(" "));
        add(
            &mut attempts,
            name,
            Box::new(move || {
                let mut cmd = Command::new(argv[0]);
                cmd.args(&argv[1..]).arg(&t);
                if argv[0] == "find" {
                    cmd.arg("-delete");
                }
                let out = cmd.output()?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(std::io::Error::other(
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    ))
                }
            }),
        );
    }

    let host_side = attempts.len();
    let succeeded: Vec<&str> = attempts
        .iter()
        .filter(|(_, f)| f().is_ok())
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(succeeded.is_empty(), "succeeded: {succeeded:?}");
    assert_tree_eq(
        "the mirror after host-side wipes",
        &mirror_before,
        &snapshot(mirror.path(), &[]),
    );
    restore(&root, &SystemMounter).unwrap();
    assert!(mounts_under(img.root()).is_empty());
    assert_tree_eq("the image", &before, &img.snapshot());

    // Inside a real chroot, through the real root.d hook.
    let mut image = Image::new(true);
    let cache = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cache.path().join("pypi")).unwrap();
    let cached = cache.path().join("pypi/mirror");
    std::fs::rename(mirror.path(), &cached).unwrap();
    let out = image.run_outside(
        "root.d/50-pypi-mirror-mount",
        &[("DIB_IMAGE_CACHE", cache.path().to_str().unwrap())],
    );
    dib_pypi_tests::assert_ok("root.d", &out);
    let inside: &[&[&str]] = &[
        &["rm", "-rf", "/tmp/pypi"],
        &["rm", "-rf", "/tmp"],
        &["find", "/tmp/pypi", "-delete"],
        &["sh", "-c", "echo x > /tmp/pypi/index.html"],
        &["sh", "-c", "mv /tmp/pypi/dibtest-a /tmp/stolen"],
        &["python3", "-c", "import shutil; shutil.rmtree('/tmp/pypi')"],
    ];
    for argv in inside {
        let out = image.chroot(argv, &[]);
        assert!(!out.status.success(), "{argv:?} succeeded");
    }
    assert_tree_eq(
        "the mirror after wipes in the chroot",
        &mirror_before,
        &snapshot(&cached, &[]),
    );
    image.unmount("/tmp/pypi");
    dib_pypi_tests::assert_ok(
        "cleanup.d",
        &image.run_outside("cleanup.d/99-pypi-restore", &[]),
    );

    record_figures(
        SECTIONS,
        "host-mirror",
        &[
            Row::new(
                format!(
                    "destructive operations on the mounted mirror ({} files, {} directories) from the host side, as root",
                    files.len(),
                    dirs.len() + 1
                ),
                host_side,
                format!("0/{host_side} succeeded; mirror unchanged"),
            ),
            Row::new(
                "wipes from inside the chroot (rm -rf, find -delete, shutil.rmtree, overwrite, mv)",
                inside.len(),
                format!("0/{} succeeded; mirror unchanged", inside.len()),
            ),
        ],
    );
}

// ---------------------------------------------------------------------------
// Hostile input

/// What a case must give.
enum Expect {
    /// An error whose message starts with this.
    Error(String),
    /// Config files listing exactly these indexes, and these trusted hosts.
    Indexes(Vec<String>, Vec<String>),
}

struct Case {
    name: String,
    vars: Vars,
    expect: Expect,
}

fn case(name: &str, vars: &[(&str, &str)], expect: Expect) -> Case {
    Case {
        name: name.into(),
        vars: vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        expect,
    }
}

fn err(prefix: &str) -> Expect {
    Expect::Error(prefix.into())
}

fn idx(urls: &[&str], trusted: &[&str]) -> Expect {
    Expect::Indexes(
        urls.iter().map(|u| u.to_string()).collect(),
        trusted.iter().map(|t| t.to_string()).collect(),
    )
}

const OFF: (&str, &str) = ("DIB_OFFLINE", "1");
const SECRET: &str = "hunter2";

fn hostile_cases() -> Vec<Case> {
    let mib = "a".repeat(1 << 20);
    let huge_url = format!("http://m.example/{mib}");
    let max_url = format!("http://m.example/{}", "b".repeat(8192 - 17));
    let mut cases = vec![
        case(
            "newline and [section] injection",
            &[("DIB_PYPI_MIRROR_URL", "http://m/\n[global]\nindex-url = http://evil/"), OFF],
            err("DIB_PYPI_MIRROR_URL: mirror URL contains the character '\\n'"),
        ),
        case(
            "carriage return injection",
            &[("DIB_PYPI_MIRROR_URL_1", "http://m/\r[install]"), OFF],
            err("DIB_PYPI_MIRROR_URL_1: mirror URL contains the character '\\r'"),
        ),
        case(
            "continuation-line injection (leading space)",
            &[("DIB_PYPI_MIRROR_URL", " http://evil/"), OFF],
            err("DIB_PYPI_MIRROR_URL: mirror URL contains the character ' '"),
        ),
        case(
            "tab in URL",
            &[("DIB_PYPI_MIRROR_URL", "http://m/\tx"), OFF],
            err("DIB_PYPI_MIRROR_URL: mirror URL contains the character '\\t'"),
        ),
        case(
            "Unicode line separator (U+2028)",
            &[("DIB_PYPI_MIRROR_URL", "http://m/\u{2028}[global]"), OFF],
            err("DIB_PYPI_MIRROR_URL: mirror URL contains the character '\\u{2028}'"),
        ),
        case(
            "NEL (U+0085)",
            &[("DIB_PYPI_MIRROR_URL", "http://m/\u{85}x"), OFF],
            err("DIB_PYPI_MIRROR_URL: mirror URL contains the character '\\u{85}'"),
        ),
        case(
            "[section] text inside a URL, no newline",
            &[("DIB_PYPI_MIRROR_URL", "http://m.example/[global]/"), OFF],
            idx(&["http://m.example/[global]/"], &["m.example"]),
        ),
        case(
            "TOML quote and key injection",
            &[("DIB_PYPI_MIRROR_URL", "https://m.example/\"default=true\"\\x"), OFF],
            idx(&["https://m.example/%22default=true%22/x"], &[]),
        ),
        case(
            "1 MiB URL",
            &[("DIB_PYPI_MIRROR_URL", &huge_url), OFF],
            err("DIB_PYPI_MIRROR_URL: value is 1048593 bytes long; a mirror URL may have at most 8192"),
        ),
        case(
            "URL of exactly the 8192-byte limit",
            &[("DIB_PYPI_MIRROR_URL", &max_url), OFF],
            idx(&[&max_url], &["m.example"]),
        ),
        case(
            "1 MiB DIB_PIP_RETRIES",
            &[("DIB_PIP_RETRIES", &mib)],
            err(&format!(
                "DIB_PIP_RETRIES: \"{}... (1048576 bytes)\" is not a non-negative integer",
                "a".repeat(40)
            )),
        ),
        case(
            "1 MiB DIB_OFFLINE (any non-empty value)",
            &[("DIB_PYPI_MIRROR_URL", "https://m.example/"), ("DIB_OFFLINE", &mib)],
            idx(&["https://m.example/"], &[]),
        ),
        case(
            "duplicate mirrors (same URL, and same after normalisation)",
            &[
                ("DIB_PYPI_MIRROR_URL", "http://m.example/s/"),
                ("DIB_PYPI_MIRROR_URL_1", "http://m.example/s/"),
                ("DIB_PYPI_MIRROR_URL_2", "HTTP://M.EXAMPLE:80/s/"),
                ("DIB_PYPI_MIRROR_URL_3", "https://n.example/"),
                OFF,
            ],
            idx(&["http://m.example/s/", "https://n.example/"], &["m.example"]),
        ),
        case(
            "same mirror number twice (_1 and _01)",
            &[
                ("DIB_PYPI_MIRROR_URL_1", "http://a/"),
                ("DIB_PYPI_MIRROR_URL_01", "http://b/"),
            ],
            err("DIB_PYPI_MIRROR_URL_01: same mirror number as DIB_PYPI_MIRROR_URL_1"),
        ),
        case(
            "IPv6 hosts with ports",
            &[
                ("DIB_PYPI_MIRROR_URL", "http://[::1]:3141/root/pypi/+simple/"),
                ("DIB_PYPI_MIRROR_URL_1", "https://[2001:db8::7]:8443/simple/"),
                ("DIB_PYPI_MIRROR_URL_2", "http://[2001:DB8:0:0::8]/s/"),
            ],
            idx(
                &[
                    "http://[::1]:3141/root/pypi/+simple/",
                    "https://[2001:db8::7]:8443/simple/",
                    "http://[2001:db8::8]/s/",
                    "https://pypi.org/simple",
                ],
                &["[::1]:3141", "[2001:db8::8]"],
            ),
        ),
        case(
            "IPv6 zone identifier",
            &[("DIB_PYPI_MIRROR_URL", "http://[fe80::1%25eth0]:3141/"), OFF],
            err("DIB_PYPI_MIRROR_URL: not a valid URL"),
        ),
        case(
            "userinfo with percent-encoded @ : / # and a raw @",
            &[
                ("DIB_PYPI_MIRROR_URL", "https://us%40er:p%3Aa%2Fs%23hunter2@m.example/simple/"),
                ("DIB_PYPI_MIRROR_URL_1", "https://tok:hunter2@ss@n.example/"),
                OFF,
            ],
            idx(
                &[
                    "https://us%40er:p%3Aa%2Fs%23hunter2@m.example/simple/",
                    "https://tok:hunter2%40ss@n.example/",
                ],
                &[],
            ),
        ),
        case(
            "userinfo with a raw # (cuts the URL short)",
            &[("DIB_PYPI_MIRROR_URL", "https://user:hunter2#x@m.example/"), OFF],
            err("DIB_PYPI_MIRROR_URL: not a valid URL"),
        ),
        case(
            "unsupported schemes",
            &[("DIB_PYPI_MIRROR_URL", "ftp://u:hunter2@m/")],
            err("DIB_PYPI_MIRROR_URL: scheme \"ftp\" is not supported"),
        ),
        case(
            "file URL naming a host",
            &[("DIB_PYPI_MIRROR_URL", "file://server/share")],
            err("DIB_PYPI_MIRROR_URL: file:// mirror URL must not name a host"),
        ),
    ];

    let many: Vec<(String, String)> = (1..=1000)
        .rev()
        .map(|n| {
            (
                format!("DIB_PYPI_MIRROR_URL_{n}"),
                format!("http://m{n}.example:{}/simple/", 10_000 + n),
            )
        })
        .collect();
    let mut vars: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.push(OFF);
    let urls: Vec<String> = (1..=1000)
        .map(|n| format!("http://m{n}.example:{}/simple/", 10_000 + n))
        .collect();
    let trusted: Vec<String> = (1..=1000)
        .map(|n| format!("m{n}.example:{}", 10_000 + n))
        .collect();
    cases.push(Case {
        name: "1000 numbered mirrors, given in reverse order".into(),
        vars: vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        expect: Expect::Indexes(urls, trusted),
    });

    let sparse: Vec<(String, String)> = (0..1000)
        .map(|i| {
            (
                format!("DIB_PYPI_MIRROR_URL_{}", 1 + i * 7919 % 100_000),
                format!("https://h{i}.example/"),
            )
        })
        .collect();
    let mut ordered = sparse.clone();
    ordered.sort_by_key(|(k, _)| k.rsplit('_').next().unwrap().parse::<u64>().unwrap());
    cases.push(Case {
        name: "1000 mirrors with sparse, shuffled numbers".into(),
        vars: sparse
            .iter()
            .map(|(k, v)| (k.into(), v.into()))
            .chain([(OFF.0.into(), OFF.1.into())])
            .collect(),
        expect: Expect::Indexes(ordered.into_iter().map(|(_, v)| v).collect(), vec![]),
    });

    for (var, value, expected) in [
        (
            "DIB_PYPI_MIRROR_URL",
            b"http://m/\xff\xfe".to_vec(),
            "DIB_PYPI_MIRROR_URL: value is not valid UTF-8",
        ),
        (
            "PYPI_MIRROR_URL_2",
            b"http://m/\xc3\x28".to_vec(),
            "PYPI_MIRROR_URL_2: value is not valid UTF-8",
        ),
        (
            "DIB_PIP_RETRIES",
            b"3\xff".to_vec(),
            "DIB_PIP_RETRIES: \"3\u{fffd}\" is not a non-negative integer",
        ),
    ] {
        cases.push(Case {
            name: format!("non-UTF-8 value of {var}"),
            vars: vec![(var.into(), OsString::from_vec(value))],
            expect: err(expected),
        });
    }
    cases.push(Case {
        name: "non-UTF-8 mirror variable name".into(),
        vars: vec![(
            OsString::from_vec(b"DIB_PYPI_MIRROR_URL_\xff".to_vec()),
            "http://m/".into(),
        )],
        expect: err("DIB_PYPI_MIRROR_URL_\u{fffd}: not a mirror variable"),
    });
    cases
}

/// The indexes and trusted hosts pip and uv read from the files written
/// in `img`, parsed by Python's configparser (as pip does) and tomllib.
fn read_back(img: &MiniImage) -> Vec<String> {
    const SCRIPT: &str = r#"
import sys, configparser, tomllib
uv, *pips = sys.argv[1:]
for p in pips:
    c = configparser.RawConfigParser()
    with open(p) as f:
        c.read_file(f)
    print("pip", p, "sections", *c.sections())
    for s in c.sections():
        idx = [c.get(s, "index-url")] + c.get(s, "extra-index-url", fallback="").split()
        print("pip", p, s, "index", *idx)
        print("pip", p, s, "trusted", *c.get(s, "trusted-host", fallback="").split())
        print("pip", p, s, "keys", *sorted(c.options(s)))
with open(uv, "rb") as f:
    t = tomllib.load(f)
print("uv keys", *sorted(t))
print("uv urls", *[i["url"] for i in t["index"]])
print("uv default", *[i["url"] for i in t["index"] if i.get("default")])
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(img.path(CONFIGS[2]))
        .arg(img.path(CONFIGS[0]))
        .arg(img.path(CONFIGS[1]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn check_read_back(ctx: &str, img: &MiniImage, urls: &[String], trusted: &[String]) {
    let lines = read_back(img);
    let mut expected = Vec::new();
    for conf in &CONFIGS[..2] {
        let p = img.path(conf);
        let p = p.display();
        expected.push(format!("pip {p} sections {}", PIP_SECTIONS.join(" ")));
        for s in PIP_SECTIONS {
            expected.push(
                format!("pip {p} {s} index {}", urls.join(" "))
                    .trim_end()
                    .to_string(),
            );
            expected.push(
                format!("pip {p} {s} trusted {}", trusted.join(" "))
                    .trim_end()
                    .to_string(),
            );
            let keys = if trusted.is_empty() {
                "keys extra-index-url index-url no-index"
            } else {
                "keys extra-index-url index-url no-index trusted-host"
            };
            let keys = if urls.len() == 1 {
                keys.replace("extra-index-url ", "")
            } else {
                keys.to_string()
            };
            expected.push(format!("pip {p} {s} {keys}"));
        }
    }
    expected.push("uv keys index".into());
    expected.push(format!("uv urls {}", urls.join(" ")));
    expected.push(format!("uv default {}", urls.last().unwrap()));
    if lines != expected {
        let diff: Vec<String> = lines
            .iter()
            .zip(&expected)
            .filter(|(a, b)| a != b)
            .take(3)
            .map(|(a, b)| format!("read {}\nwant {}", clip(a), clip(b)))
            .collect();
        panic!(
            "{ctx}: config read back differs ({} vs {} lines):\n{}",
            lines.len(),
            expected.len(),
            diff.join("\n")
        );
    }
}

fn clip(s: &str) -> &str {
    s.get(..300).unwrap_or(s)
}

/// What an image's config path can be, other than a file or symlink.
const BAD_KINDS: &[&str] = &[
    "a directory",
    "a FIFO",
    "a socket",
    "a character device",
    "under a regular file",
    "beside a leftover backup",
    "beside a leftover temp file",
];

fn make_bad(img: &MiniImage, conf: &str, kind: &str) -> String {
    let p = img.path(conf);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
    match kind {
        "a directory" => {
            std::fs::create_dir(&p).unwrap();
            format!("{}: is a directory, not a config file", p.display())
        }
        "a FIFO" => {
            nix::unistd::mkfifo(&p, mode).unwrap();
            format!("{}: is a FIFO, socket or device", p.display())
        }
        "a socket" => {
            drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
            format!("{}: is a FIFO, socket or device", p.display())
        }
        "a character device" => {
            nix::sys::stat::mknod(
                &p,
                nix::sys::stat::SFlag::S_IFCHR,
                mode,
                nix::sys::stat::makedev(1, 3),
            )
            .unwrap();
            format!("{}: is a FIFO, socket or device", p.display())
        }
        "under a regular file" => {
            let parent = p.parent().unwrap();
            std::fs::remove_dir_all(parent).unwrap();
            std::fs::write(parent, "not a dir").unwrap();
            format!(
                "{}: exists but is not a directory (a regular file)",
                parent.display()
            )
        }
        "beside a leftover backup" => {
            let b = with_suffix(&p, ".dib-pypi-orig");
            std::fs::write(&b, "old").unwrap();
            format!("{}: already exists", b.display())
        }
        "beside a leftover temp file" => {
            let t = with_suffix(&p, ".dib-pypi-tmp");
            std::fs::write(&t, "old").unwrap();
            format!("{}: already exists", t.display())
        }
        _ => unreachable!(),
    }
}

#[test]
fn hostile_input_gets_a_clear_error_or_exact_output_and_changes_nothing() {
    require_root();
    let cases = hostile_cases();
    let (mut errors, mut accepted) = (0, 0);
    for c in &cases {
        let img = seeded(true);
        let before = img.snapshot();
        let root = img.open();
        let fake = FakeMounter::default();
        let result = Settings::from_vars(c.vars.iter().map(|(k, v)| (k, v)))
            .and_then(|s| configure(&root, &s, home(), &fake).map(|_| s));
        match (&c.expect, result) {
            (Expect::Error(prefix), Err(e)) => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with(prefix.as_str()),
                    "{}: {}",
                    c.name,
                    clip(&msg)
                );
                assert!(
                    !msg.contains('\n') && !msg.contains(SECRET),
                    "{}: {msg}",
                    c.name
                );
                assert!(msg.len() < 300, "{}: {} byte message", c.name, msg.len());
                assert_tree_eq(&c.name, &before, &img.snapshot());
                errors += 1;
            }
            (Expect::Indexes(urls, trusted), Ok(s)) => {
                for w in &s.warnings {
                    assert!(!w.contains(SECRET), "{}: {w}", c.name);
                }
                for m in &s.indexes {
                    assert!(!m.to_string().contains(SECRET), "{}: {m}", c.name);
                }
                check_read_back(&c.name, &img, urls, trusted);
                let mode = std::fs::metadata(img.path(CONFIGS[0]))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(
                    mode & 0o777,
                    if s.has_credentials() { 0o600 } else { 0o644 },
                    "{}",
                    c.name
                );
                restore(&root, &fake).unwrap();
                assert_tree_eq(&c.name, &before, &img.snapshot());
                accepted += 1;
            }
            (Expect::Error(_), Ok(_)) => panic!("{}: accepted", c.name),
            (Expect::Indexes(..), Err(e)) => {
                panic!("{}: refused: {}", c.name, clip(&e.to_string()))
            }
        }
    }

    // Config paths that are not files.
    let mut bad = 0;
    for conf in CONFIGS {
        for kind in BAD_KINDS {
            let ctx = format!("{conf} {kind}");
            let img = MiniImage::new(true);
            let expected = make_bad(&img, conf, kind);
            let before = img.snapshot();
            let root = img.open();
            let e = configure(&root, &secret_settings(), home(), &FakeMounter::default())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&expected), "{ctx}: {e}");
            assert_tree_eq(&ctx, &before, &img.snapshot());
            bad += 1;
        }
    }

    // The same through the real binary (its environment, its one line).
    let bin = hook_binary("dib-pypi-configure");
    let near_limit = format!("http://m/{}", "c".repeat(120 << 10));
    let binary_cases: Vec<(Vars, Option<&str>)> = vec![
        (
            vec![(
                "DIB_PYPI_MIRROR_URL_2".into(),
                "http://u:hunter2@m/\n[global]".into(),
            )],
            Some("DIB_PYPI_MIRROR_URL_2: mirror URL contains the character '\\n'"),
        ),
        (
            vec![(
                "DIB_PYPI_MIRROR_URL".into(),
                OsString::from_vec(b"http://m/\xff".to_vec()),
            )],
            Some("DIB_PYPI_MIRROR_URL: value is not valid UTF-8"),
        ),
        (
            vec![("DIB_PYPI_MIRROR_URL".into(), near_limit.clone().into())],
            Some("DIB_PYPI_MIRROR_URL: value is 122889 bytes long"),
        ),
        (
            vec![(
                "DIB_PYPI_MIRROR_URL".into(),
                "https://u%3A:hunter2@[::1]:3141/s/".into(),
            )],
            None,
        ),
    ];
    let mut through_binary = 0;
    for (vars, expected) in &binary_cases {
        let img = seeded(true);
        let before = img.snapshot();
        let out = Command::new(&bin)
            .env_clear()
            .env("HOME", "/root")
            .env("DIB_DEBUG_TRACE", "1")
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .arg("--root")
            .arg(img.root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains(SECRET), "{stderr}");
        match expected {
            Some(prefix) => {
                assert!(!out.status.success());
                let lines: Vec<&str> = stderr.lines().collect();
                assert_eq!(lines.len(), 1, "{}", clip(&stderr));
                assert!(
                    lines[0].starts_with(&format!("dib-pypi-configure: error: {prefix}")),
                    "{}",
                    clip(&stderr)
                );
                assert_tree_eq("binary", &before, &img.snapshot());
            }
            None => {
                assert!(out.status.success(), "{stderr}");
                assert!(stderr.contains("u%3A:***@[::1]:3141"), "{stderr}");
                restore(&img.open(), &FakeMounter::default()).unwrap();
                assert_tree_eq("binary", &before, &img.snapshot());
            }
        }
        through_binary += 1;
    }

    record_figures(
        SECTIONS,
        "hostile-input",
        &[
            Row::new(
                "hostile environment values: newline/CR/tab/U+2028/NEL and [section] injection, \
                 TOML quotes, 1 MiB values, 8 KiB limit, 1000 mirrors (reverse, sparse), duplicates, \
                 `_1` vs `_01`, IPv6 with ports and zone, userinfo with special characters, \
                 bad schemes, non-UTF-8 names and values",
                cases.len(),
                format!(
                    "{errors} refused with a one-line error naming the variable, image unchanged; \
                     {accepted} accepted, read back exactly by configparser and tomllib, restored exactly"
                ),
            ),
            Row::new(
                format!(
                    "each of the 3 config paths as: {}",
                    BAD_KINDS.join(", ")
                ),
                bad,
                format!("{bad}/{bad} refused with a one-line error naming the path, image unchanged"),
            ),
            Row::new(
                "through the real configure binary: newline injection, non-UTF-8, 120 KiB value, IPv6 with userinfo",
                through_binary,
                format!("{through_binary}/{through_binary} as expected (one stderr line for errors); password never printed"),
            ),
        ],
    );
}

// ---------------------------------------------------------------------------
// Random initial states

mod random {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    use std::os::unix::fs::FileTypeExt;

    /// One config file's initial state.
    #[derive(Debug, Clone)]
    pub enum FileState {
        Absent,
        File {
            data: Vec<u8>,
            mode: u32,
            owner: u32,
        },
        Link(&'static str),
        Dir,
        Fifo,
    }

    /// `~/.pip`'s initial state.
    #[derive(Debug, Clone, Copy)]
    pub enum PipDir {
        Absent,
        Dir,
        /// `~/.pip -> .config/pip`: two of our paths are then one file.
        LinkToXdg,
        Dangling,
    }

    #[derive(Debug, Clone)]
    pub struct State {
        var_lib: bool,
        pip_dir: PipDir,
        config: bool,
        xdg_pip: bool,
        xdg_uv: bool,
        files: [FileState; 3],
    }

    fn file_state() -> impl Strategy<Value = FileState> {
        prop_oneof![
            3 => Just(FileState::Absent),
            4 => (
                proptest::collection::vec(any::<u8>(), 0..300),
                0u32..0o10000,
                prop_oneof![Just(0u32), Just(1), Just(1000)],
            )
                .prop_map(|(data, mode, owner)| FileState::File { data, mode, owner }),
            2 => prop_oneof![
                Just("../.config/pip/pip.conf"),
                Just("/etc/pip.conf"),
                Just("sibling"),
                Just("/root/.config/uv/uv.toml"),
                Just("../../../../../../../../etc/passwd"),
            ]
            .prop_map(FileState::Link),
            1 => Just(FileState::Dir),
            1 => Just(FileState::Fifo),
        ]
    }

    fn state() -> impl Strategy<Value = State> {
        (
            any::<bool>(),
            prop_oneof![
                3 => Just(PipDir::Absent),
                4 => Just(PipDir::Dir),
                2 => Just(PipDir::LinkToXdg),
                1 => Just(PipDir::Dangling),
            ],
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            [file_state(), file_state(), file_state()],
        )
            .prop_map(|(var_lib, pip_dir, config, xdg_pip, xdg_uv, files)| State {
                var_lib,
                pip_dir,
                config,
                xdg_pip: config && xdg_pip,
                xdg_uv: config && xdg_uv,
                files,
            })
    }

    /// Lay out `state` in a new image; also some unrelated files.
    pub fn build(state: &State) -> MiniImage {
        let img = MiniImage::new(state.var_lib);
        std::fs::create_dir_all(img.path("/etc")).unwrap();
        std::fs::write(img.path("/etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        if state.config {
            std::fs::create_dir(img.path("/root/.config")).unwrap();
        }
        if state.xdg_pip {
            std::fs::create_dir(img.path("/root/.config/pip")).unwrap();
        }
        if state.xdg_uv {
            std::fs::create_dir(img.path("/root/.config/uv")).unwrap();
        }
        match state.pip_dir {
            PipDir::Absent => {}
            PipDir::Dir => std::fs::create_dir(img.path("/root/.pip")).unwrap(),
            PipDir::LinkToXdg => symlink(".config/pip", img.path("/root/.pip")).unwrap(),
            PipDir::Dangling => symlink("/nowhere", img.path("/root/.pip")).unwrap(),
        }
        for (conf, file) in CONFIGS.iter().zip(&state.files) {
            let p = img.path(conf);
            // Only where the parent exists, as the image would have it;
            // an aliased path already written stays as it is.
            if !p.parent().unwrap().is_dir() || std::fs::symlink_metadata(&p).is_ok() {
                continue;
            }
            match file {
                FileState::Absent => {}
                FileState::File { data, mode, owner } => {
                    std::fs::write(&p, data).unwrap();
                    chown(&p, Some(*owner), Some(*owner)).unwrap();
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
                }
                FileState::Link(target) => symlink(target, &p).unwrap(),
                FileState::Dir => std::fs::create_dir(&p).unwrap(),
                FileState::Fifo => {
                    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
                        .unwrap()
                }
            }
        }
        img
    }

    /// Whether configure must refuse: a config path that is a directory or
    /// FIFO (seen through the image), or a `~/.pip` that leads nowhere.
    fn must_refuse(img: &MiniImage, state: &State) -> bool {
        let blocked = CONFIGS.iter().any(|c| {
            std::fs::symlink_metadata(img.path(c))
                .is_ok_and(|m| m.is_dir() || m.file_type().is_fifo())
        });
        let pip_nowhere = match state.pip_dir {
            PipDir::Dangling => true,
            PipDir::LinkToXdg => !state.xdg_pip,
            _ => false,
        };
        blocked || pip_nowhere
    }

    fn runner(cases: u32, seed: u8) -> TestRunner {
        let config = Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        };
        TestRunner::new_with_rng(
            config,
            TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
        )
    }

    pub const CASES: u32 = 256;

    #[derive(Debug, Default)]
    pub struct Tally {
        pub configured: usize,
        pub refused: usize,
        pub crashed: usize,
        pub aliased: usize,
    }

    /// Property 1: configure then restore is the identity.
    pub fn configure_then_restore(tally: &Mutex<Tally>) {
        runner(CASES, 1)
            .run(&state(), |state| {
                let img = build(&state);
                let before = img.snapshot();
                let root = img.open();
                let fake = FakeMounter::default();
                let refuse = must_refuse(&img, &state);
                let result = configure(&root, &secret_settings(), home(), &fake);
                let mut t = tally.lock().unwrap();
                match result {
                    Ok(written) => {
                        prop_assert!(!refuse, "configured a state it must refuse");
                        for conf in CONFIGS {
                            let text = std::fs::read_to_string(img.path(conf)).unwrap();
                            prop_assert!(text.starts_with(HEADER), "{conf} not ours");
                        }
                        if written.len() < 3 {
                            t.aliased += 1;
                        }
                        restore(&root, &fake).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        t.configured += 1;
                    }
                    Err(e) => {
                        prop_assert!(refuse, "refused: {e}");
                        prop_assert!(!e.to_string().contains('\n'));
                        t.refused += 1;
                    }
                }
                let after = img.snapshot();
                prop_assert!(before == after, "tree differs: {:?}", diff(&before, &after));
                Ok(())
            })
            .unwrap();
    }

    /// Property 2: configure killed at a random step, then restore, is the
    /// identity too.
    pub fn killed_configure_then_restore(tally: &Mutex<Tally>) {
        runner(CASES, 2)
            .run(&(state(), 1u64..90), |(state, n)| {
                let img = build(&state);
                let before = img.snapshot();
                let fake = FakeMounter::default();
                let plan = Arc::new(FaultPlan::crash_at(n, Death::Fail));
                let result = configure(&img.open_with(&plan), &secret_settings(), home(), &fake);
                {
                    let mut t = tally.lock().unwrap();
                    match (plan.crashed(), result.is_ok()) {
                        (true, _) => t.crashed += 1,
                        (false, true) => t.configured += 1,
                        (false, false) => t.refused += 1,
                    }
                }
                restore(&img.open(), &fake).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let after = img.snapshot();
                prop_assert!(
                    before == after,
                    "step {n}: tree differs: {:?}",
                    diff(&before, &after)
                );
                Ok(())
            })
            .unwrap();
    }

    fn diff(a: &Tree, b: &Tree) -> Vec<String> {
        a.keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| format!("{}: {:?} -> {:?}", k.display(), a.get(k), b.get(k)))
            .collect()
    }
}

#[test]
fn random_initial_states_come_back_exactly() {
    require_root();
    let first = Mutex::new(random::Tally::default());
    random::configure_then_restore(&first);
    let second = Mutex::new(random::Tally::default());
    random::killed_configure_then_restore(&second);
    let (first, second) = (first.into_inner().unwrap(), second.into_inner().unwrap());
    let n = random::CASES as usize;
    assert_eq!(first.configured + first.refused, n);
    assert_eq!(second.configured + second.refused + second.crashed, n);
    record_figures(
        SECTIONS,
        "random-states",
        &[
            Row::new(
                "random initial state; configure, then cleanup",
                n,
                format!(
                    "{n}/{n} same tree afterwards ({} configured, {} of them with ~/.pip aliasing \
                     ~/.config/pip; {} refused as expected)",
                    first.configured, first.aliased, first.refused
                ),
            ),
            Row::new(
                "random initial state; configure killed at a random step 1-89, then cleanup",
                n,
                format!(
                    "{n}/{n} same tree afterwards ({} killed, {} finished first, {} refused)",
                    second.crashed, second.configured, second.refused
                ),
            ),
        ],
    );
}
