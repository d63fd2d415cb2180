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

#[test]
fn a_symlinked_pip_dir_is_written_once_and_its_original_survives() {
    // Regression: ~/.pip -> .config/pip made the second replacement
    // move our first file aside, and the rollback deleted the original.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("root/.config/pip")).unwrap();
    symlink(".config/pip", dir.path().join("root/.pip")).unwrap();
    std::fs::write(dir.path().join("root/.config/pip/pip.conf"), "orig").unwrap();
    let before = tree(dir.path());
    let root = Root::open(dir.path()).unwrap();
    let done = configure(&root, &offline(), home(), &NoMounts).unwrap();
    assert_eq!(
        done.written,
        paths(&["/root/.pip/pip.conf", "/root/.config/uv/uv.toml"])
    );
    assert!(done.warnings.is_empty(), "{:?}", done.warnings);
    let conf = std::fs::read_to_string(dir.path().join("root/.config/pip/pip.conf")).unwrap();
    assert!(conf.contains("index-url = file:///tmp/pypi"), "{conf}");
    restore(&root, &NoMounts, home()).unwrap();
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn a_refused_configure_leaves_no_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("root/.config/uv/uv.toml")).unwrap();
    let before = tree(dir.path());
    let root = Root::open(dir.path()).unwrap();
    let e = configure(&root, &offline(), home(), &NoMounts)
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("uv.toml: is a directory, not a config file; refusing to replace it"),
        "{e}"
    );
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn a_second_configure_restores_the_first_and_keeps_its_backups() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("root/.pip")).unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    symlink("/nonexistent", dir.path().join("root/.config")).unwrap();
    let before = tree(dir.path());
    let root = Root::open(dir.path()).unwrap();
    let done = configure(&root, &offline(), home(), &NoMounts).unwrap();
    // pip reads ~/.pip/pip.conf (its XDG file does not exist for it
    // either); uv, without a user file, reads /etc/uv/uv.toml.
    assert_eq!(
        done.written,
        paths(&["/root/.pip/pip.conf", "/etc/uv/uv.toml"])
    );
    assert_eq!(
        done.warnings,
        [
            "/root/.config: a symlink to /nonexistent, but /nonexistent does not exist in the image; \
             pip reads /root/.pip/pip.conf instead",
            "/root/.config: a symlink to /nonexistent, but /nonexistent does not exist in the image; \
             uv reads /etc/uv/uv.toml instead",
        ]
    );
    assert!(ours(dir.path(), "/etc/uv/uv.toml"));
    restore(&root, &NoMounts, home()).unwrap();
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn with_no_user_file_in_reach_pip_gets_its_global_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/pip.conf"), "[global]\ntimeout = 9\n").unwrap();
    // The whole home is a link to a file: nothing under it can be read.
    symlink("/etc/pip.conf", dir.path().join("root")).unwrap();
    let before = tree(dir.path());
    let root = Root::open(dir.path()).unwrap();
    let done = configure(&root, &offline(), home(), &NoMounts).unwrap();
    assert_eq!(done.written, paths(&["/etc/pip.conf", "/etc/uv/uv.toml"]));
    assert!(
        done.warnings[0].starts_with(
            "/root: a symlink to /etc/pip.conf, but /etc/pip.conf is not a directory; pip reads /etc/pip.conf instead"
        ),
        "{:?}",
        done.warnings
    );
    assert!(ours(dir.path(), "/etc/pip.conf"));
    restore(&root, &NoMounts, home()).unwrap();
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn when_no_file_in_reach_remains_the_refusal_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("root")).unwrap();
    symlink("/nonexistent", dir.path().join("root/.config")).unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    symlink("uv", dir.path().join("etc/uv")).unwrap();
    let before = tree(dir.path());
    let root = Root::open(dir.path()).unwrap();
    let e = configure(&root, &offline(), home(), &NoMounts)
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with(
            "root/.config: a symlink to /nonexistent, but /nonexistent does not exist in the image, \
             and /etc/uv: a symlink to uv, but that leads round in a loop: uv cannot be pointed at the mirrors"
        ),
        "{e}"
    );
    assert!(!e.contains('\n'));
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn an_image_system_uv_file_is_replaced_for_the_build_too() {
    for system in ["etc/uv/uv.toml", "etc/xdg/uv/uv.toml"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        let p = dir.path().join(system);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            "[[index]]\nurl = \"https://elsewhere.example/simple\"\n",
        )
        .unwrap();
        let before = tree(dir.path());
        let root = Root::open(dir.path()).unwrap();
        let done = configure(&root, &offline(), home(), &NoMounts).unwrap();
        let system = format!("/{system}");
        assert!(done.written.contains(&PathBuf::from(&system)), "{done:?}");
        assert!(ours(dir.path(), &system), "{system}");
        assert!(ours(dir.path(), "/root/.config/uv/uv.toml"));
        restore(&root, &NoMounts, home()).unwrap();
        assert_eq!(tree(dir.path()), before, "{system}");
    }
}

#[test]
fn a_regular_file_in_the_way_is_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("root")).unwrap();
    std::fs::write(dir.path().join("root/.config"), "not a directory").unwrap();
    let before = tree(dir.path());
    let root = Root::open(dir.path()).unwrap();
    let e = configure(&root, &offline(), home(), &NoMounts)
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("root/.config: exists but is not a directory (a regular file)"),
        "{e}"
    );
    assert_eq!(tree(dir.path()), before);
}
