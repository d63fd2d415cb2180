//! A hook killed at every one of its steps, in process and by a real SIGKILL, then cleaned up (or run again first).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use dib_pypi_core::configure::configure;
use dib_pypi_core::fault::{Death, FaultPlan};
use dib_pypi_core::mount::{mount_mirror, MountOutcome};
use dib_pypi_core::restore::restore;
use dib_pypi_core::rootfs::Root;
use dib_pypi_core::tools::TOOLS;
use dib_pypi_tests::{assert_tree_eq, record_figures, require_root, FakeMounter, MiniImage, Row};

use super::{
    assert_ours_with_first_backups, home, secret_settings, seeded, settings, Tree, SECTIONS,
};

/// What a scenario does after a kill, given the context, the image, its
/// original tree and the mounter.
pub(super) type Recover<'a> = &'a dyn Fn(&str, &MiniImage, &Tree, &FakeMounter);

/// A starting point for a killed hook: how to make the image, and the
/// hooks that ran before.
pub(super) struct Scenario {
    pub(super) name: &'static str,
    pub(super) image: fn() -> MiniImage,
    pub(super) earlier: fn(&Root, &FakeMounter),
}

fn fake_mount(root: &Root, fake: &FakeMounter) {
    let source = std::env::temp_dir();
    assert_eq!(
        mount_mirror(root, &source, fake).unwrap(),
        MountOutcome::Mounted
    );
}

pub(super) fn nothing(_: &Root, _: &FakeMounter) {}

const CONFIGURE_SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "image without config files",
        image: MiniImage::new,
        earlier: nothing,
    },
    Scenario {
        name: "originals present (0640 file of uid 1, symlink, 0600 file)",
        image: seeded,
        earlier: nothing,
    },
    Scenario {
        name: "second configure over a finished first one",
        image: seeded,
        earlier: |root, fake| {
            let first = settings(&[("DIB_PYPI_MIRROR_URL", "http://first.example/")]);
            configure(root, &first, home(), fake).unwrap();
        },
    },
    Scenario {
        name: "after root.d mounted the mirror",
        image: seeded,
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

/// Kill `hook` at every step of scenario `sc`. After each kill, no mount
/// in the image may be writable; then `recover` runs (it may run hooks
/// again), and the original tree, no mount and no staging directory must
/// be left. Returns the number of steps.
pub(super) fn kill_at_every_step(
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
        assert_eq!(
            fake.writable_under(img.root()),
            Vec::<std::path::PathBuf>::new(),
            "{ctx}: the image sees a writable mount"
        );
        recover(&ctx, &img, &original, &fake);
        assert_tree_eq(&ctx, &original, &img.snapshot());
        assert!(
            fake.mounted().is_empty(),
            "{ctx}: still mounted: {:?}",
            fake.mounted()
        );
        assert!(!img.stage().exists(), "{ctx}: staging directory left");
    }
    steps
}

fn run_configure(root: &Root, fake: &FakeMounter) -> bool {
    configure(root, &secret_settings(), home(), fake).is_ok()
}

fn cleanup(ctx: &str, img: &MiniImage, _: &Tree, fake: &FakeMounter) {
    restore(&img.open(), fake, home()).unwrap_or_else(|e| panic!("{ctx}: restore: {e}"));
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
            assert_ours_with_first_backups(ctx, img, original, TOOLS);
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
        name: "image with /tmp",
        image: MiniImage::new,
        earlier: nothing,
    },
    Scenario {
        name: "bare image (creates /tmp)",
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
            format!(
                "no writable mount in the image after any of the {steps} kills; \
                 {steps}/{steps} unmounted and restored exactly"
            ),
        ));
        let again = kill_at_every_step(sc, &run_mount, &|ctx, img, original, fake| {
            let mp = img.path("/tmp/pypi");
            mount_mirror(&img.open(), &std::env::temp_dir(), fake)
                .unwrap_or_else(|e| panic!("{ctx}: root.d again: {e}"));
            // Mounted once, read-only, and nothing left beside the image.
            assert_eq!(fake.mounted(), std::slice::from_ref(&mp), "{ctx}");
            assert!(
                fake.writable_under(img.root()).is_empty(),
                "{ctx}: writable"
            );
            assert!(!img.stage().exists(), "{ctx}: staging directory left");
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
        name: "after root.d and pre-install.d",
        image: seeded,
        earlier: |root, fake| {
            fake_mount(root, fake);
            configure(root, &secret_settings(), home(), fake).unwrap();
        },
    };
    let run_restore = |root: &Root, fake: &FakeMounter| restore(root, fake, home()).is_ok();
    let steps = kill_at_every_step(&sc, &run_restore, &cleanup);
    // Killed twice: at step n, then the rerun at its own step n.
    let twice = kill_at_every_step(&sc, &run_restore, &|ctx, img, original, fake| {
        let plan = Arc::new(FaultPlan::crash_at(3, Death::Fail));
        fake.set_faults(Some(plan.clone()));
        let _ = restore(&img.open_with(&plan), fake, home());
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
        let img = seeded();
        let original = img.snapshot();
        let status = Command::new(&exe)
            .args([
                "--exact",
                "hardening::crash::sigkill_child",
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
        restore(&img.open(), &FakeMounter::default(), home())
            .unwrap_or_else(|e| panic!("step {n}: restore: {e}"));
        assert_tree_eq(&format!("SIGKILL at step {n}"), &original, &img.snapshot());
    }
    assert!(killed > 5, "only {killed} steps");
    record_figures(
        SECTIONS,
        "crash-sigkill",
        &[Row::new(
            "configure SIGKILLed after each step, originals present; then cleanup",
            killed,
            format!("{killed}/{killed} died of SIGKILL and were restored exactly"),
        )],
    );
}
