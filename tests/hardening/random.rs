//! Random initial states of the config files and their directories (proptest, fixed seed): configure then cleanup is the identity, killed or not.

use std::os::unix::fs::{chown, symlink, FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dib_pypi_core::configure::{configure, Configured};
use dib_pypi_core::fault::{Death, FaultPlan};
use dib_pypi_core::restore::restore;
use dib_pypi_core::rootfs::Root;
use dib_pypi_tests::{record_figures, require_root, FakeMounter, MiniImage, Row};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use dib_pypi_core::tools::TOOLS;

use super::{configs, home, secret_settings, Tree, HEADER, SECTIONS};

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
        .prop_map(|(pip_dir, config, xdg_pip, xdg_uv, files)| State {
            pip_dir,
            config,
            xdg_pip: config && xdg_pip,
            xdg_uv: config && xdg_uv,
            files,
        })
}

/// Lay out `state` in a new image; also some unrelated files.
pub fn build(state: &State) -> MiniImage {
    let img = MiniImage::new();
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
    for (conf, file) in configs().iter().zip(&state.files) {
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
                nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
            }
        }
    }
    img
}

/// Whether configure must refuse: a config path that is a directory or
/// FIFO (seen through the image). A `~/.pip` that leads nowhere is no
/// reason: pip reads `~/.config/pip/pip.conf` then.
fn must_refuse(img: &MiniImage) -> bool {
    configs().iter().any(|c| {
        std::fs::symlink_metadata(img.path(c)).is_ok_and(|m| m.is_dir() || m.file_type().is_fifo())
    })
}

/// After a successful configure: every file written is ours, each tool
/// got one, and no config path the image can read still holds anything
/// else (seen through the image, where `~/.pip` may lead nowhere).
fn check_configured(root: &Root, done: &Configured) -> Result<(), TestCaseError> {
    for tool in TOOLS {
        let files = tool.every_path(home());
        prop_assert!(
            done.written.iter().any(|p| files.contains(p)),
            "nothing written for {}: {:?}",
            tool.name,
            done.written
        );
    }
    let configs: Vec<PathBuf> = configs().iter().map(PathBuf::from).collect();
    for path in done.written.iter().chain(&configs).map(PathBuf::as_path) {
        if let Some(text) = root
            .read(path, 1 << 20)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
        {
            prop_assert!(
                text.starts_with(HEADER.as_bytes()),
                "{} is not ours",
                path.display()
            );
        }
    }
    Ok(())
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
    pub warned: usize,
}

/// Property 1: configure then restore is the identity.
pub fn configure_then_restore(tally: &Mutex<Tally>) {
    runner(CASES, 1)
        .run(&state(), |state| {
            let img = build(&state);
            let before = img.snapshot();
            let root = img.open();
            let fake = FakeMounter::default();
            let refuse = must_refuse(&img);
            let result = configure(&root, &secret_settings(), home(), &fake);
            let mut t = tally.lock().unwrap();
            match result {
                Ok(done) => {
                    prop_assert!(!refuse, "configured a state it must refuse");
                    check_configured(&root, &done)?;
                    if matches!(state.pip_dir, PipDir::LinkToXdg) && state.xdg_pip {
                        t.aliased += 1;
                    }
                    if !done.warnings.is_empty() {
                        t.warned += 1;
                    }
                    restore(&root, &fake, home())
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
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
            restore(&img.open(), &fake, home()).map_err(|e| TestCaseError::fail(e.to_string()))?;
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

#[test]
fn random_initial_states_come_back_exactly() {
    require_root();
    let first = Mutex::new(Tally::default());
    configure_then_restore(&first);
    let second = Mutex::new(Tally::default());
    killed_configure_then_restore(&second);
    let (first, second) = (first.into_inner().unwrap(), second.into_inner().unwrap());
    let n = CASES as usize;
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
                     ~/.config/pip, {} with a warning about a ~/.pip leading nowhere; \
                     {} refused as expected)",
                    first.configured, first.aliased, first.warned, first.refused
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
