//! Unit tests of configure's plan: aliases, refusals, and tools pointed elsewhere when their config directory leads nowhere.

use super::*;
use crate::restore::restore;
use crate::testing::{tree, NoMounts};
use std::os::unix::fs::symlink;

fn offline() -> Settings {
    Settings::from_vars([("DIB_OFFLINE", "1")]).unwrap()
}

fn home() -> &'static Path {
    Path::new("/root")
}

fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

fn ours(dir: &Path, inner: &str) -> bool {
    std::fs::read(dir.join(inner.trim_start_matches('/'))).is_ok_and(|c| crate::render::is_ours(&c))
}

/// An image laid out by `layout`, configured (then `check`ed, with the
/// image's host path), then restored: the tree must be as before.
fn configured(layout: impl FnOnce(&Path), check: impl FnOnce(&Path, &Configured)) {
    let dir = tempfile::tempdir().unwrap();
    layout(dir.path());
    let before = tree(dir.path());
    let root = Root::open(dir.path()).unwrap();
    let done = configure(&root, &offline(), home(), &NoMounts).unwrap();
    check(dir.path(), &done);
    restore(&root, &NoMounts, home()).unwrap();
    assert_eq!(tree(dir.path()), before);
}

/// An image laid out by `layout` that configure must refuse, changing
/// nothing; the one-line error.
fn refused(layout: impl FnOnce(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    layout(dir.path());
    let before = tree(dir.path());
    let root = Root::open(dir.path()).unwrap();
    let e = configure(&root, &offline(), home(), &NoMounts)
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n'), "{e}");
    assert_eq!(tree(dir.path()), before);
    e
}

fn mkdir(dir: &Path, inner: &str) {
    std::fs::create_dir_all(dir.join(inner)).unwrap();
}

#[test]
fn a_symlinked_pip_dir_is_written_once_and_its_original_survives() {
    // Regression: ~/.pip -> .config/pip made the second replacement
    // move our first file aside, and the rollback deleted the original.
    configured(
        |d| {
            mkdir(d, "root/.config/pip");
            symlink(".config/pip", d.join("root/.pip")).unwrap();
            std::fs::write(d.join("root/.config/pip/pip.conf"), "orig").unwrap();
        },
        |d, done| {
            assert_eq!(
                done.written,
                paths(&["/root/.pip/pip.conf", "/root/.config/uv/uv.toml"])
            );
            assert!(done.warnings.is_empty(), "{:?}", done.warnings);
            let conf = std::fs::read_to_string(d.join("root/.config/pip/pip.conf")).unwrap();
            assert!(conf.contains("index-url = file:///tmp/pypi"), "{conf}");
        },
    );
}

#[test]
fn a_refused_configure_leaves_no_state_directory() {
    let e = refused(|d| mkdir(d, "root/.config/uv/uv.toml"));
    assert!(
        e.ends_with("uv.toml: is a directory, not a config file; refusing to replace it"),
        "{e}"
    );
}

#[test]
fn a_second_configure_restores_the_first_and_keeps_its_backups() {
    let dir = tempfile::tempdir().unwrap();
    mkdir(dir.path(), "root/.pip");
    std::fs::write(dir.path().join("root/.pip/pip.conf"), "orig").unwrap();
    let before = tree(dir.path());
    let root = Root::open(dir.path()).unwrap();
    configure(&root, &offline(), home(), &NoMounts).unwrap();
    configure(&root, &offline(), home(), &NoMounts).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("root/.pip/pip.conf.dib-pypi-orig")).unwrap(),
        b"orig"
    );
    restore(&root, &NoMounts, home()).unwrap();
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn a_dangling_config_dir_points_pip_and_uv_at_files_they_still_read() {
    configured(
        |d| {
            mkdir(d, "root");
            symlink("/nonexistent", d.join("root/.config")).unwrap();
        },
        |d, done| {
            // pip reads ~/.pip/pip.conf (its XDG file does not exist for
            // it either); uv, without a user file, reads /etc/uv/uv.toml.
            assert_eq!(
                done.written,
                paths(&["/root/.pip/pip.conf", "/etc/uv/uv.toml"])
            );
            let link = "/root/.config: a symlink to /nonexistent, \
                        but /nonexistent does not exist in the image";
            assert_eq!(
                done.warnings,
                [
                    format!("{link}; pip reads /root/.pip/pip.conf instead"),
                    format!("{link}; uv reads /etc/uv/uv.toml instead"),
                ]
            );
            assert!(ours(d, "/etc/uv/uv.toml"));
        },
    );
}

#[test]
fn with_no_user_file_in_reach_pip_gets_its_global_file() {
    configured(
        |d| {
            mkdir(d, "etc");
            std::fs::write(d.join("etc/pip.conf"), "[global]\ntimeout = 9\n").unwrap();
            // The whole home is a link to a file: nothing under it can be read.
            symlink("/etc/pip.conf", d.join("root")).unwrap();
        },
        |d, done| {
            assert_eq!(done.written, paths(&["/etc/pip.conf", "/etc/uv/uv.toml"]));
            assert!(
                done.warnings[0].starts_with(
                    "/root: a symlink to /etc/pip.conf, but /etc/pip.conf is not a directory; \
                     pip reads /etc/pip.conf instead"
                ),
                "{:?}",
                done.warnings
            );
            assert!(ours(d, "/etc/pip.conf"));
        },
    );
}

#[test]
fn when_no_file_in_reach_remains_the_refusal_says_what_is_wrong() {
    let e = refused(|d| {
        mkdir(d, "root");
        symlink("/nonexistent", d.join("root/.config")).unwrap();
        mkdir(d, "etc");
        symlink("uv", d.join("etc/uv")).unwrap();
    });
    assert!(
        e.ends_with(
            "root/.config: a symlink to /nonexistent, but /nonexistent does not exist in the image, \
             and /etc/uv: a symlink to uv, but that leads round in a loop: \
             uv cannot be pointed at the mirrors"
        ),
        "{e}"
    );
}

#[test]
fn an_image_system_uv_file_is_replaced_for_the_build_too() {
    for system in ["etc/uv/uv.toml", "etc/xdg/uv/uv.toml"] {
        configured(
            |d| {
                mkdir(d, "root");
                let p = d.join(system);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(
                    &p,
                    "[[index]]\nurl = \"https://elsewhere.example/simple\"\n",
                )
                .unwrap();
            },
            |d, done| {
                let system = format!("/{system}");
                assert!(done.written.contains(&PathBuf::from(&system)), "{done:?}");
                assert!(ours(d, &system), "{system}");
                assert!(ours(d, "/root/.config/uv/uv.toml"));
            },
        );
    }
}

#[test]
fn a_regular_file_in_the_way_is_still_refused() {
    let e = refused(|d| {
        mkdir(d, "root");
        std::fs::write(d.join("root/.config"), "not a directory").unwrap();
    });
    assert!(
        e.ends_with("root/.config: exists but is not a directory (a regular file)"),
        "{e}"
    );
}

#[test]
fn a_tls_variable_without_its_file_in_the_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    mkdir(dir.path(), "root");
    let before = tree(dir.path());
    let root = Root::open(dir.path()).unwrap();
    let settings =
        Settings::from_vars([("DIB_OFFLINE", "1"), ("DIB_PYPI_MIRROR_CA", "/etc/ca.pem")]).unwrap();
    let e = configure(&root, &settings, home(), &NoMounts)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "DIB_PYPI_MIRROR_CA: is set, but /dib-pypi/mirror-ca.pem is not in the image: \
         the pypi element's root.d hook puts it there; did root.d run?"
    );
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn pre_install_reports_what_beats_the_files_and_how_each_tool_chooses() {
    let dir = tempfile::tempdir().unwrap();
    mkdir(dir.path(), "root");
    mkdir(dir.path(), "usr");
    std::fs::write(dir.path().join("usr/pip.conf"), "[global]\n").unwrap();
    let before = tree(dir.path());
    let env = [
        ("DIB_PYPI_MIRROR_URL", "file:///tmp/pypi"),
        ("DIB_PYPI_MIRROR_URL_1", "http://u:s3cret@m.example/"),
        ("DIB_PYPI_UV_INDEX_STRATEGY", "first-index"),
        ("PIP_INDEX_URL", "http://u:s3cret@elsewhere/"),
        ("DIB_OFFLINE", "1"),
    ];
    let report = pre_install(dir.path(), &env, home(), &NoMounts, TOOLS).unwrap();
    assert_eq!(
        report.at(log::Level::Warn),
        [
            "PIP_INDEX_URL set in the environment (DIB carries the host's into the chroot) \
             override the mirror config for pip",
            "/usr/pip.conf exists in the image; pip reads it after the mirror config, so its \
             settings win",
            "/tmp/pypi does not exist in the image (no mirror mounted)",
        ]
    );
    assert_eq!(
        report.at(log::Level::Info),
        [
            "pip and uv use file:///tmp/pypi (2 indexes in all)",
            "of the indexes, pip takes the best version across them; uv takes only the first \
             that has the project (index-strategy first-index)",
        ]
    );
    assert!(!format!("{report:?}").contains("s3cret"));
    restore(&Root::open(dir.path()).unwrap(), &NoMounts, home()).unwrap();
    assert_eq!(tree(dir.path()), before);
    // Bad settings: one error naming the variable, nothing changed.
    let e = pre_install(
        dir.path(),
        &[("DIB_PYPI_UV_INDEX_STRATEGY", "best")],
        home(),
        &NoMounts,
        TOOLS,
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("DIB_PYPI_UV_INDEX_STRATEGY: "),
        "{e}"
    );
    assert_eq!(tree(dir.path()), before);
}
