//! pip and uv in one image pick the same versions from several indexes, unless the user asks uv for `first-index`.

use dib_pypi_tests::{assert_ok, assert_same_tree, build_mirror_of, serve, text, Image};

use super::{assert_installed_version, pip_install_argv, uv_install_argv, CLEANUP, PRE_INSTALL};

const PROJECT: &str = "dibtest-versions";

/// uv installs [`PROJECT`] into a fresh venv `venv` (uv itself comes from
/// the pip venv of [`pip_install_argv`]).
fn uv_install_into(image: &Image, venv: &str) -> std::process::Output {
    assert_ok(
        "python3 -m venv",
        &image.chroot(&["python3", "-m", "venv", "--without-pip", venv], &[]),
    );
    let python = format!("{venv}/bin/python");
    image.chroot(
        &[
            "/opt/venvs/pip/bin/uv",
            "pip",
            "install",
            "--no-cache",
            "--python",
            &python,
            PROJECT,
        ],
        &[],
    )
}

/// The first mirror has only 1.0, the second 2.0: pip takes the best
/// version across its indexes, and so does uv by default; with
/// `DIB_PYPI_UV_INDEX_STRATEGY=first-index` uv keeps to the first index
/// that has the project.
#[test]
fn pip_and_uv_pick_the_same_version_unless_uv_is_told_first_index() {
    let mut image = Image::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    build_mirror_of(&a.path().join("m"), &[(PROJECT, "1.0")], true);
    build_mirror_of(&b.path().join("m"), &[(PROJECT, "2.0")], false);
    let (server_a, server_b) = (serve(&a.path().join("m")), serve(&b.path().join("m")));
    let before = image.snapshot();
    let (url_a, url_b) = (server_a.url(), server_b.url());
    let env = [
        ("DIB_PYPI_MIRROR_URL", url_a.as_str()),
        ("DIB_PYPI_MIRROR_URL_1", url_b.as_str()),
        ("DIB_OFFLINE", "1"),
    ];

    assert_ok("pre-install.d", &image.run_inside(PRE_INSTALL, &env));
    let out = image.chroot(&pip_install_argv(&image, PROJECT), &[]);
    assert_ok("pip install", &out);
    assert_installed_version(&image, "/opt/venvs/pip", PROJECT, "2.0");
    let out = image.chroot(&uv_install_argv(&image, PROJECT), &[]);
    assert_ok("uv pip install (default strategy)", &out);
    assert_installed_version(&image, "/opt/venvs/uv", PROJECT, "2.0");

    let first_index: Vec<(&str, &str)> = env
        .iter()
        .copied()
        .chain([("DIB_PYPI_UV_INDEX_STRATEGY", "first-index")])
        .collect();
    let out = image.run_inside(PRE_INSTALL, &first_index);
    assert_ok("pre-install.d with first-index", &out);
    let out = uv_install_into(&image, "/opt/venvs/uv-first");
    assert_ok("uv pip install (first-index)", &out);
    assert_installed_version(&image, "/opt/venvs/uv-first", PROJECT, "1.0");
    // pip has no such choice: it still takes the best version.
    let out = image.chroot(
        &[
            "/opt/venvs/pip/bin/pip",
            "install",
            "--no-cache-dir",
            "--force-reinstall",
            "--no-deps",
            PROJECT,
        ],
        &[],
    );
    assert_ok("pip install again", &out);
    assert!(text(&out).contains("2.0"), "{}", text(&out));

    assert_ok("cleanup.d", &image.run_outside(CLEANUP, &[]));
    assert_same_tree(&before, &image.snapshot());
}
