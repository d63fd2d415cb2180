//! The `pypi-mirror` binary: exit codes, message format, default output.

// Helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pypi_mirror_testkit::synth;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pypi-mirror"));
    cmd.env_remove("PYPI_MIRROR_LOG").env_remove("RUST_LOG");
    cmd
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temp dir with `src/` holding one synthetic wheel (alpha 1.0).
fn src_with_wheel() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let whl = synth::write_wheel(&src, "alpha", "1.0").unwrap();
    (tmp, src, whl)
}

#[test]
fn build_then_add_exit_zero_and_summarise() {
    let (tmp, src, _) = src_with_wheel();
    let out = tmp.path().join("out");
    let o = bin()
        .args(["build", "--from"])
        .arg(&src)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1 files in 1 projects (1 added"),
        "{}",
        text(&o)
    );
    // Not a terminal: no progress bar escape sequences.
    assert!(!text(&o).contains('\x1b'), "{:?}", text(&o));

    let extra = synth::write_sdist(tmp.path(), "beta", "2.0").unwrap();
    let o = bin()
        .arg("add")
        .arg(&extra)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("beta/index.html").exists());
}

#[test]
fn skipped_files_give_one_line_errors_and_exit_1() {
    let (tmp, src, _) = src_with_wheel();
    let broken = src.join("broken-1.0-py3-none-any.whl");
    fs::write(&broken, b"not a zip").unwrap();
    let out = tmp.path().join("out");
    let o = bin()
        .args(["build", "--from"])
        .arg(&src)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = text(&o);
    let line = err
        .lines()
        .find(|l| l.contains("broken-1.0-py3-none-any.whl"))
        .unwrap_or_else(|| panic!("no message naming the file in {err}"));
    assert!(line.starts_with("pypi-mirror: error: "), "{line}");
    assert!(
        line.contains(&*broken.to_string_lossy()) && line.contains("broken zip archive"),
        "{line}"
    );
    // The good file was still indexed.
    assert!(out.join("alpha/alpha-1.0-py3-none-any.whl").exists());

    let o = bin()
        .arg("add")
        .arg(tmp.path().join("README"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not a wheel or sdist"), "{}", text(&o));
}

#[test]
fn default_out_follows_dib_image_cache() {
    let (tmp, src, _) = src_with_wheel();
    let cache = tmp.path().join("cache");
    let o = bin()
        .env("DIB_IMAGE_CACHE", &cache)
        .args(["build", "-v", "--from"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(cache.join("pypi/mirror/alpha/index.html").exists());
    assert!(
        text(&o).contains("pypi-mirror: debug: "),
        "-v gives debug output: {}",
        text(&o)
    );

    let o = bin()
        .env_remove("DIB_IMAGE_CACHE")
        .env_remove("HOME")
        .args(["build", "--from"])
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no mirror directory"), "{}", text(&o));
}

#[test]
fn out_that_is_a_file_is_a_fatal_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, "").unwrap();
    let o = bin().args(["build", "--out"]).arg(&file).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(text(&o).lines().count(), 1, "{}", text(&o));
    assert!(text(&o).contains("not a directory"), "{}", text(&o));
}

#[test]
fn relative_and_absolute_spellings_are_the_same_source() {
    let (tmp, src, whl) = src_with_wheel();
    let rel = format!("src/{}", whl.file_name().unwrap().to_string_lossy());
    let o = bin()
        .current_dir(tmp.path())
        .args(["add", &rel, "--out", "out"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // Rebuilt in place, then indexed through the absolute directory: an
    // update of the same source, not a conflict.
    fs::remove_file(&whl).unwrap();
    synth::write_wheel_spec(&src, &synth::Spec::new("alpha", "1.0").requires("x")).unwrap();
    let o = bin()
        .args(["build", "--from"])
        .arg(&src)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 updated"), "{}", text(&o));
}

/// `<root>/<prefix>/bin/pypi-mirror` (this very program, hard-linked or
/// copied) with `element` files of this version in
/// `<root>/<prefix>/share/dib-pypi/elements/pypi` when `element` is true.
fn installed(root: &std::path::Path, prefix: &str, element: bool) -> PathBuf {
    use dib_pypi_common::element::{FILES, SHARE_DIR, VERSION_FIELD};
    let prefix = root.join(prefix);
    if element {
        let pypi = prefix.join(SHARE_DIR).join("pypi");
        for file in FILES {
            let path = pypi.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "").unwrap();
        }
        let version = env!("CARGO_PKG_VERSION");
        fs::write(
            pypi.join("README.rst"),
            format!("{VERSION_FIELD}{version}\n"),
        )
        .unwrap();
    }
    fs::create_dir_all(prefix.join("bin")).unwrap();
    let exe = prefix.join("bin/pypi-mirror");
    let me = env!("CARGO_BIN_EXE_pypi-mirror");
    if fs::hard_link(me, &exe).is_err() {
        fs::copy(me, &exe).unwrap();
    }
    exe
}

#[test]
fn elements_path_prints_the_element_directory_beside_the_real_program() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = installed(tmp.path(), "venv", true);
    let want = fs::canonicalize(tmp.path().join("venv/share/dib-pypi/elements")).unwrap();
    let o = Command::new(&exe).arg("elements-path").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}\n", want.display())
    );
    assert!(want.join("pypi/README.rst").is_file());
    // Through a symlink elsewhere (pipx's ~/.local/bin), even one whose own
    // prefix has an element: the program's real place decides.
    installed(tmp.path(), "local", true);
    let link = tmp.path().join("local/bin/pypi-mirror");
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&exe, &link).unwrap();
    let o = Command::new(&link).arg("elements-path").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}\n", want.display())
    );
}

#[test]
fn elements_path_without_an_element_is_one_line_naming_where_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = installed(tmp.path(), "bare", false);
    let o = Command::new(&exe).arg("elements-path").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(o.stdout.is_empty());
    assert_eq!(text(&o).lines().count(), 1, "{}", text(&o));
    let element = fs::canonicalize(tmp.path().join("bare"))
        .unwrap()
        .join("share/dib-pypi/elements/pypi");
    assert!(
        text(&o).starts_with(&format!(
            "pypi-mirror: error: no pypi element installed beside {}: {} does not exist",
            fs::canonicalize(&exe).unwrap().display(),
            element.display()
        )),
        "{}",
        text(&o)
    );
}
