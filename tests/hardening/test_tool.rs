//! A tool whose spec is defined here, in a test: given to the hooks beside pip and uv, it is configured, journaled, restored, and covered by the symlink and crash matrices, with no other file changed.

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use dib_pypi_core::configure::{configure_tools, pre_install};
use dib_pypi_core::hook::Level;
use dib_pypi_core::render::MARKER;
use dib_pypi_core::restore::{restore, restore_tools};
use dib_pypi_core::rootfs::Root;
use dib_pypi_core::settings::Settings;
use dib_pypi_core::tools::{SystemFile, ToolSpec, PIP, TOOLS, UV};
use dib_pypi_tests::{assert_tree_eq, require_root, FakeMounter, MiniImage};

use super::crash::{kill_at_every_step, nothing, Scenario};
use super::symlinks::{linked, symlink_matrix};
use super::{assert_ours_with_first_backups, home, secret_settings, seed_originals, HEADER};

/// An INI file with one key per index, in order.
fn render_dibtool(settings: &Settings) -> String {
    let mut out = format!("{MARKER}, for the build only.\n[mirrors]\n");
    for (n, index) in settings.indexes.iter().enumerate() {
        out.push_str(&format!("index{n} = {}\n", index.as_str()));
    }
    out
}

/// The test's tool: one user file in its own directory, a system file
/// that is replaced when present (as uv's), its own variables.
static DIBTOOL: ToolSpec = ToolSpec {
    name: "dibtool",
    user_files: &[".dibtool/dibtool.ini"],
    system_files: &["/etc/dibtool/dibtool.ini"],
    system_file: SystemFile::AlsoWhenPresent,
    render: render_dibtool,
    overriding_vars: &["DIBTOOL_INDEX"],
    overriding_files: &["/usr/dibtool.ini"],
    index_choice: |_| "the last index that has the project".to_string(),
    ca_vars: &["DIBTOOL_CA_BUNDLE"],
    client_cert_vars: &[],
};

/// The element's tools and the test's.
static WITH_DIBTOOL: [&ToolSpec; 3] = [&PIP, &UV, &DIBTOOL];

const USER_FILE: &str = "/root/.dibtool/dibtool.ini";
const SYSTEM_FILE: &str = "/etc/dibtool/dibtool.ini";

/// [`seed_originals`], and originals of the test tool's user and system
/// files.
fn seeded_with_dibtool() -> MiniImage {
    let img = MiniImage::new();
    seed_originals(&img);
    img.write(USER_FILE, b"[mirrors]\nindex0 = mine\n", 0o640);
    img.write(SYSTEM_FILE, b"[mirrors]\nindex0 = the image's\n", 0o644);
    img
}

fn read(img: &MiniImage, inner: &str) -> String {
    std::fs::read_to_string(img.path(inner)).unwrap()
}

#[test]
fn a_tool_defined_in_a_test_is_configured_journaled_and_restored() {
    require_root();
    let img = seeded_with_dibtool();
    img.write("/usr/dibtool.ini", b"[mirrors]\n", 0o644);
    let before = img.snapshot();
    let env = [
        ("DIB_PYPI_MIRROR_URL", "https://m.example/simple/"),
        ("DIB_OFFLINE", "1"),
        ("DIBTOOL_INDEX", "https://elsewhere.example/"),
        ("DIBTOOL_CA_BUNDLE", "/etc/corp/ca.pem"),
    ];
    let fake = FakeMounter::default();
    let report = pre_install(img.root(), &env, home(), &fake, &WITH_DIBTOOL).unwrap();
    for inner in [USER_FILE, SYSTEM_FILE] {
        let text = read(&img, inner);
        assert!(text.starts_with(HEADER), "{inner}: {text}");
        assert!(
            text.ends_with("\nindex0 = https://m.example/simple/\n"),
            "{text}"
        );
    }
    assert_eq!(
        read(&img, "/root/.dibtool/dibtool.ini.dib-pypi-orig"),
        "[mirrors]\nindex0 = mine\n"
    );
    let journal = read(&img, "/dib-pypi/config.journal");
    for inner in [USER_FILE, SYSTEM_FILE] {
        assert!(journal.contains(inner), "{journal}");
    }
    let warnings = report.at(Level::Warn);
    for expected in [
        "DIBTOOL_INDEX set in the environment (DIB carries the host's into the chroot) \
         override the mirror config for dibtool",
        "/usr/dibtool.ini exists in the image; dibtool reads it after the mirror config, so \
         its settings win",
        "DIBTOOL_CA_BUNDLE=/etc/corp/ca.pem (from the host) names a file that is not in the \
         image, so dibtool will fail on https; unset DIBTOOL_CA_BUNDLE and set \
         DIB_PYPI_MIRROR_CA=/etc/corp/ca.pem instead (root.d then puts it into the image for \
         the build)",
    ] {
        assert!(warnings.contains(&expected), "{warnings:#?}");
    }
    assert_eq!(
        report.at(Level::Info),
        ["pip, uv and dibtool use https://m.example/simple/ (1 index in all)"]
    );
    restore_tools(&img.open(), &fake, home(), &WITH_DIBTOOL).unwrap();
    assert_tree_eq("restored", &before, &img.snapshot());
}

#[test]
fn a_test_tools_leftover_is_found_and_its_fallback_is_its_system_file() {
    require_root();
    let img = MiniImage::new();
    symlink("/nonexistent", img.path("/root/.dibtool")).unwrap();
    let before = img.snapshot();
    let root = img.open();
    let fake = FakeMounter::default();
    let done = configure_tools(&root, &secret_settings(), home(), &fake, &[&DIBTOOL]).unwrap();
    assert_eq!(done.written, [PathBuf::from(SYSTEM_FILE)]);
    assert_eq!(
        done.warnings,
        [
            "/root/.dibtool: a symlink to /nonexistent, but /nonexistent does not exist in the \
          image; dibtool reads /etc/dibtool/dibtool.ini instead"
        ]
    );
    // The journals lost: the element's own tools see no leftover, the
    // test's does.
    std::fs::remove_dir_all(img.path("/dib-pypi")).unwrap();
    restore(&root, &fake, home()).unwrap();
    let e = restore_tools(&root, &fake, home(), &[&DIBTOOL]).unwrap_err();
    assert!(
        e.to_string()
            .contains("etc/dibtool/dibtool.ini: still holds the pypi element's mirror config"),
        "{e}"
    );
    // The image had no /etc: configure made it, with /etc/dibtool.
    std::fs::remove_dir_all(img.path("/etc")).unwrap();
    restore_tools(&root, &fake, home(), &[&DIBTOOL]).unwrap();
    assert_tree_eq("restored by hand", &before, &img.snapshot());
}

fn configure_with_dibtool(root: &Root, fake: &FakeMounter) -> bool {
    configure_tools(root, &secret_settings(), home(), fake, &WITH_DIBTOOL).is_ok()
}

fn cleanup_with_dibtool(ctx: &str, img: &MiniImage, fake: &FakeMounter) {
    restore_tools(&img.open(), fake, home(), &WITH_DIBTOOL)
        .unwrap_or_else(|e| panic!("{ctx}: restore: {e}"));
}

#[test]
fn a_tool_defined_in_a_test_is_covered_by_the_crash_matrix() {
    require_root();
    let sc = Scenario {
        name: "originals of pip, uv and the test's tool present",
        image: seeded_with_dibtool,
        earlier: nothing,
    };
    let steps = kill_at_every_step(&sc, &configure_with_dibtool, &|ctx, img, _, fake| {
        cleanup_with_dibtool(ctx, img, fake)
    });
    let again = kill_at_every_step(&sc, &configure_with_dibtool, &|ctx, img, original, fake| {
        assert!(configure_with_dibtool(&img.open(), fake), "{ctx}");
        assert_ours_with_first_backups(ctx, img, original, &WITH_DIBTOOL);
        for inner in [USER_FILE, SYSTEM_FILE] {
            assert!(read(img, inner).starts_with(HEADER), "{ctx}: {inner}");
        }
        cleanup_with_dibtool(ctx, img, fake);
    });
    assert_eq!(steps, again);
    // Its files are steps of their own: more than pip's and uv's alone.
    let without = kill_at_every_step(
        &sc,
        &|root, fake| configure_tools(root, &secret_settings(), home(), fake, TOOLS).is_ok(),
        &|ctx, img, _, fake| {
            // The test tool's files were not touched: its restore is a no-op on them.
            assert!(read(img, USER_FILE).starts_with("[mirrors]"), "{ctx}");
            cleanup_with_dibtool(ctx, img, fake);
        },
    );
    assert!(
        steps > without,
        "{steps} steps with the test's tool, {without} without"
    );
}

#[test]
fn a_tool_defined_in_a_test_is_covered_by_the_symlink_matrix() {
    require_root();
    let paths: Vec<PathBuf> = linked(&WITH_DIBTOOL).into_iter().map(|(p, _)| p).collect();
    for inner in [
        "/root/.dibtool",
        USER_FILE,
        "/root/.dibtool/dibtool.ini.dib-pypi-orig",
        "/etc/dibtool",
        SYSTEM_FILE,
    ] {
        assert!(paths.contains(&PathBuf::from(inner)), "{inner}: {paths:?}");
    }
    assert_eq!(paths.len(), linked(TOOLS).len() + 5);
    let counts = symlink_matrix(&WITH_DIBTOOL);
    assert_eq!(counts.paths, paths.len());
}
