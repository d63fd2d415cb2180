//! The element end to end on a real chroot: real mounts, real pip and uv, exact restore.
//!
//! Needs root. Each test builds its own image root (host /usr bound
//! read-only, the rest a small real tree), runs the element's hook scripts
//! exactly as DIB does (outside with TARGET_ROOT, inside via chroot with the
//! element bound read-only at /tmp/in_target.d), and compares the whole tree
//! before and after.
// Test code: a failed setup step should abort the test with a message,
// which is what unwrap/expect/panic do (clippy's allow-*-in-tests does not
// reach helper functions of an integration test crate).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::{chown, symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use dib_pypi_tests::{
    assert_ok, assert_same_tree, build_mirror, host_port, is_mount_point, read, serve, text, Image,
    MiniImage,
};
use pypi_mirror_testkit::synth::{expected_output, module_name};

const ROOT_D: &str = "root.d/50-pypi-mirror-mount";
const PRE_INSTALL: &str = "pre-install.d/04-pypi-configure";
const CLEANUP: &str = "cleanup.d/99-pypi-restore";

/// Files a user config may hold before the build, to be restored exactly:
/// an XDG pip.conf owned by another user with mode 0640, and a legacy
/// ~/.pip/pip.conf that is a symlink inside the image.
fn seed_user_configs(image: &Image) {
    let xdg = image.path("/root/.config/pip/pip.conf");
    fs::create_dir_all(xdg.parent().unwrap()).unwrap();
    fs::write(&xdg, "[global]\ntimeout = 7\n").unwrap();
    fs::set_permissions(&xdg, fs::Permissions::from_mode(0o640)).unwrap();
    chown(&xdg, Some(1), Some(1)).unwrap();
    fs::create_dir(image.path("/root/.pip")).unwrap();
    symlink("../.config/pip/pip.conf", image.path("/root/.pip/pip.conf")).unwrap();
}

fn python_says(image: &Image, venv: &str, project: &str) -> String {
    let code = format!("import {m}; print({m}.hello())", m = module_name(project));
    let out = image.chroot(&[&format!("{venv}/bin/python"), "-c", &code], &[]);
    assert_ok("importing the installed package", &out);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Assert that `project` imports in `venv` and reports its synthetic output.
fn assert_installed(image: &Image, venv: &str, project: &str) {
    assert_installed_version(image, venv, project, "1.0");
}

/// Assert that `project` at `version` imports in `venv`.
fn assert_installed_version(image: &Image, venv: &str, project: &str, version: &str) {
    assert_eq!(
        python_says(image, venv, project),
        expected_output(project, version),
        "{project} in {venv}"
    );
}

/// In a fresh venv /opt/venvs/pip, the command by which its pip installs
/// `project` and uv (with no index options: from what the element set).
fn pip_install_argv<'a>(image: &Image, project: &'a str) -> [&'a str; 5] {
    make_venv(image, "/opt/venvs/pip", true);
    [
        "/opt/venvs/pip/bin/pip",
        "install",
        "--no-cache-dir",
        project,
        "uv",
    ]
}

/// In a fresh pip-less venv /opt/venvs/uv, the command by which the uv
/// that pip installed earlier installs `project`: uv reads only its own
/// uv.toml.
fn uv_install_argv<'a>(image: &Image, project: &'a str) -> [&'a str; 7] {
    make_venv(image, "/opt/venvs/uv", false);
    [
        "/opt/venvs/pip/bin/uv",
        "pip",
        "install",
        "--no-cache",
        "--python",
        "/opt/venvs/uv/bin/python",
        project,
    ]
}

/// `uv pip install project` as [`uv_install_argv`] says.
fn uv_install(image: &Image, project: &str) -> std::process::Output {
    image.chroot(&uv_install_argv(image, project), &[])
}

/// Real pip in the chroot installs dibtest-alpha (and uv) from the file
/// mirror; then that uv, reading only its own configuration, installs
/// dibtest-beta into another venv.
fn install_alpha_with_pip_and_beta_with_uv(image: &Image) {
    let out = image.chroot(&pip_install_argv(image, "dibtest-alpha"), &[]);
    assert_ok("pip install from the mirror", &out);
    assert!(
        text(&out).contains("Looking in indexes: file:///tmp/pypi"),
        "{}",
        text(&out)
    );
    assert_installed(image, "/opt/venvs/pip", "dibtest-alpha");
    let out = uv_install(image, "dibtest-beta");
    assert_ok("uv pip install from the mirror", &out);
    assert_installed(image, "/opt/venvs/uv", "dibtest-beta");
}

fn make_venv(image: &Image, venv: &str, with_pip: bool) {
    let mut argv = vec!["python3", "-m", "venv"];
    if !with_pip {
        argv.push("--without-pip");
    }
    argv.push(venv);
    assert_ok("python3 -m venv", &image.chroot(&argv, &[]));
}

#[test]
fn pip_and_uv_install_from_the_cache_mirror_then_cleanup_restores_exactly() {
    let mut image = Image::new();
    seed_user_configs(&image);
    let cache = tempfile::tempdir().unwrap();
    let mirror = cache.path().join("pypi/mirror");
    build_mirror(&mirror, &["dibtest-alpha", "dibtest-beta"], true);
    let before = image.snapshot();

    let cache_var = cache.path().to_str().unwrap();
    let out = image.run_outside(ROOT_D, &[("DIB_IMAGE_CACHE", cache_var)]);
    assert_ok("root.d", &out);
    assert!(is_mount_point(&image.path("/tmp/pypi")));
    // Read-only: nothing in the image can write into the host's cache.
    let err = fs::write(image.path("/tmp/pypi/intruder"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS));

    let out = image.run_inside(PRE_INSTALL, &[("DIB_OFFLINE", "1")]);
    assert_ok("pre-install.d", &out);
    assert!(
        text(&out).contains("DIB_PYPI_MIRROR_URL is not set"),
        "{}",
        text(&out)
    );
    for conf in ["/root/.pip/pip.conf", "/root/.config/pip/pip.conf"] {
        let written = read(&image.path(conf));
        assert!(
            written.contains("\n[install]\nindex-url = file:///tmp/pypi\n"),
            "{conf}: {written}"
        );
        assert!(
            !written.contains("pypi.org"),
            "offline build lists upstream: {written}"
        );
    }
    let uv_toml = read(&image.path("/root/.config/uv/uv.toml"));
    assert!(
        uv_toml.contains("url = \"file:///tmp/pypi\"\ndefault = true"),
        "{uv_toml}"
    );

    install_alpha_with_pip_and_beta_with_uv(&image);

    // cleanup.d with the mirror still mounted: it unmounts, then restores.
    let out = image.run_outside(CLEANUP, &[]);
    assert_ok("cleanup.d", &out);
    assert!(!is_mount_point(&image.path("/tmp/pypi")));
    assert_same_tree(&before, &image.snapshot());
    // The host's mirror is untouched.
    assert!(mirror.join("dibtest-alpha/index.html").is_file());
}

#[test]
fn http_mirrors_with_credentials_fall_back_in_order() {
    let mut image = Image::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    build_mirror(&a.path().join("m"), &["dibtest-first"], true);
    build_mirror(&b.path().join("m"), &["dibtest-second"], false);
    let server_a = serve(&a.path().join("m"));
    let server_b = serve(&b.path().join("m"));
    let before = image.snapshot();

    let secret = "s3cr3t-Pa55";
    let first = format!("http://dib:{secret}@{}/", host_port(&server_a));
    let wrong = format!("{}no-such-index/", server_a.url());
    let second = server_b.url();
    let env = [
        ("DIB_PYPI_MIRROR_URL", first.as_str()),
        ("DIB_PYPI_MIRROR_URL_1", wrong.as_str()),
        ("DIB_PYPI_MIRROR_URL_2", second.as_str()),
        ("DIB_NO_PYPI_PIP", "1"),
        ("DIB_PIP_RETRIES", "0"),
        ("DIB_DEBUG_TRACE", "1"),
    ];
    let out = image.run_inside(PRE_INSTALL, &env);
    assert_ok("pre-install.d", &out);
    let log = text(&out);
    assert!(
        !log.contains(secret),
        "password leaked into the log:\n{log}"
    );
    assert!(log.contains("dib:***@127.0.0.1"), "{log}");
    let conf = image.path("/root/.config/pip/pip.conf");
    assert_eq!(fs::metadata(&conf).unwrap().mode() & 0o7777, 0o600);
    let written = read(&conf);
    let trusted = format!(
        "trusted-host =\n    {}\n    {}\n",
        host_port(&server_a),
        host_port(&server_b)
    );
    assert!(written.contains(&trusted), "{written}");
    assert!(written.contains("retries = 0\n"), "{written}");

    make_venv(&image, "/opt/venvs/pip", true);
    let out = image.chroot(
        &[
            "/opt/venvs/pip/bin/pip",
            "install",
            "--no-cache-dir",
            "dibtest-first",
            "dibtest-second",
            "uv",
        ],
        &[],
    );
    assert_ok("pip install over http", &out);
    assert!(!text(&out).contains(secret), "pip printed the password");
    assert_installed(&image, "/opt/venvs/pip", "dibtest-second");

    let out = uv_install(&image, "dibtest-second");
    assert_ok(
        "uv pip install over http (falls back past the wrong index)",
        &out,
    );
    assert_installed(&image, "/opt/venvs/uv", "dibtest-second");

    let out = image.run_outside(CLEANUP, &[]);
    assert_ok("cleanup.d", &out);
    // /var and /var/lib did not exist: the state dir's parents are gone too.
    assert!(!image.path("/var").exists());
    assert_same_tree(&before, &image.snapshot());
}

#[test]
fn bad_input_is_one_line_naming_the_variable_and_changes_nothing() {
    let mut image = Image::new();
    seed_user_configs(&image);
    let before = image.snapshot();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("DIB_PIP_RETRIES", "three")], "DIB_PIP_RETRIES: "),
        (
            &[("DIB_PYPI_MIRROR_URL", "ftp://u:hunter2@m/")],
            "DIB_PYPI_MIRROR_URL: scheme",
        ),
        (
            &[("DIB_PYPI_MIRROR_URL_2", "http://u:hunter2@m/\n[global]")],
            "DIB_PYPI_MIRROR_URL_2: ",
        ),
        (
            &[("DIB_PYPI_MIRROR_URL_X", "http://m/")],
            "DIB_PYPI_MIRROR_URL_X: ",
        ),
        (
            &[("DIB_PYPI_UV_INDEX_STRATEGY", "first")],
            "DIB_PYPI_UV_INDEX_STRATEGY: \"first\" is not one of",
        ),
    ];
    for (env, expected) in cases {
        let out = image.run_inside(PRE_INSTALL, env);
        assert!(!out.status.success(), "{env:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{env:?}: {err}");
        assert!(
            lines[0].starts_with(&format!("dib-pypi-configure: error: {expected}")),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        assert_same_tree(&before, &image.snapshot());
    }
}

#[test]
fn a_config_path_that_is_a_directory_or_fifo_is_refused_without_changes() {
    let mut image = Image::new();
    fs::create_dir_all(image.path("/root/.config/uv/uv.toml")).unwrap();
    let before = image.snapshot();
    let out = image.run_inside(PRE_INSTALL, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("uv.toml: is a directory, not a config file"),
        "{}",
        text(&out)
    );
    assert_same_tree(&before, &image.snapshot());

    fs::remove_dir(image.path("/root/.config/uv/uv.toml")).unwrap();
    nix::unistd::mkfifo(
        &image.path("/root/.config/uv/uv.toml"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let before = image.snapshot();
    let out = image.run_inside(PRE_INSTALL, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is a FIFO, socket or device"),
        "{}",
        text(&out)
    );
    assert_same_tree(&before, &image.snapshot());
}

#[test]
fn cleanup_is_harmless_without_configure_and_when_run_twice() {
    let mut image = Image::new();
    seed_user_configs(&image);
    let before = image.snapshot();
    assert_ok("cleanup.d alone", &image.run_outside(CLEANUP, &[]));
    assert_same_tree(&before, &image.snapshot());

    assert_ok("pre-install.d", &image.run_inside(PRE_INSTALL, &[]));
    // A second configure must not back up our own files.
    assert_ok(
        "pre-install.d again",
        &image.run_inside(PRE_INSTALL, &[("DIB_OFFLINE", "1")]),
    );
    assert_ok("cleanup.d", &image.run_outside(CLEANUP, &[]));
    assert_ok("cleanup.d again", &image.run_outside(CLEANUP, &[]));
    assert_same_tree(&before, &image.snapshot());
}

#[test]
fn no_mirror_directory_means_no_mount_and_no_trace() {
    let image = Image::new();
    let cache = tempfile::tempdir().unwrap();
    let before = image.snapshot();
    let out = image.run_outside(
        ROOT_D,
        &[
            ("DIB_IMAGE_CACHE", cache.path().to_str().unwrap()),
            ("DIB_DEBUG_TRACE", "1"),
        ],
    );
    assert_ok("root.d", &out);
    assert!(text(&out).contains("no mirror at"), "{}", text(&out));
    assert_same_tree(&before, &image.snapshot());
}

#[test]
fn cleanup_after_dib_unmounted_everything_removes_the_mountpoint() {
    let mut image = Image::new();
    let cache = tempfile::tempdir().unwrap();
    build_mirror(&cache.path().join("pypi/mirror"), &["dibtest-gamma"], false);
    let before = image.snapshot();
    let out = image.run_outside(
        ROOT_D,
        &[("DIB_IMAGE_CACHE", cache.path().to_str().unwrap())],
    );
    assert_ok("root.d", &out);
    // Running root.d twice is fine: the mount is recognised as ours.
    let out = image.run_outside(
        ROOT_D,
        &[("DIB_IMAGE_CACHE", cache.path().to_str().unwrap())],
    );
    assert_ok("root.d again", &out);
    // A wipe of the image's /tmp cannot reach the host's mirror.
    let wipe = image.chroot(&["rm", "-rf", "/tmp/pypi/dibtest-gamma"], &[]);
    assert!(!wipe.status.success());
    assert!(cache
        .path()
        .join("pypi/mirror/dibtest-gamma/index.html")
        .is_file());
    image.unmount("/tmp/pypi");
    assert_ok("cleanup.d", &image.run_outside(CLEANUP, &[]));
    assert_same_tree(&before, &image.snapshot());
}

/// Before cleanup.d, DIB unmounts everything under the build root and
/// moves the image into its final filesystem with `cp -ra built/* mnt`,
/// a glob that leaves top-level dot names behind: what the element keeps
/// for cleanup.d must come through that copy, and cleanup.d must then
/// restore the copy exactly.
#[test]
fn cleanup_works_on_the_copy_dib_makes_of_the_image() {
    let built = MiniImage::new();
    fs::create_dir_all(built.path("/root/.pip")).unwrap();
    fs::write(built.path("/root/.pip/pip.conf"), "[global]\ntimeout = 3\n").unwrap();
    let before = built.snapshot();
    let cache = tempfile::tempdir().unwrap();
    build_mirror(&cache.path().join("pypi/mirror"), &["dibtest-gamma"], false);
    let cache_var = cache.path().to_str().unwrap();
    let run = |script: &str, root: &Path| {
        let mut cmd = dib_pypi_tests::clean_command("bash");
        cmd.arg(dib_pypi_tests::element().join(script))
            .env("TARGET_ROOT", root)
            .env("DIB_IMAGE_CACHE", cache_var)
            .env("HOME", "/root");
        cmd.output().unwrap()
    };
    assert_ok("root.d", &run(ROOT_D, built.root()));
    // pre-install.d, through the library (no chroot needed here).
    let settings = dib_pypi_core::settings::Settings::from_vars([("DIB_OFFLINE", "1")]).unwrap();
    dib_pypi_core::configure::configure(
        &built.open(),
        &settings,
        Path::new("/root"),
        &dib_pypi_core::mounter::SystemMounter,
    )
    .unwrap();
    dib_pypi_tests::unmount_under(&built.path("/tmp/pypi"));
    let mnt = MiniImage::bare();
    let copy = std::process::Command::new("sh")
        .args(["-c", "cp -ra \"$1\"/* \"$2\"", "sh"])
        .arg(built.root())
        .arg(mnt.root())
        .output()
        .unwrap();
    assert_ok("cp -ra built/* mnt", &copy);
    assert_ok("cleanup.d on the copy", &run(CLEANUP, mnt.root()));
    assert_same_tree(&before, &mnt.snapshot());
}

#[test]
fn a_mountpoint_symlinked_out_of_the_image_is_never_mounted_over() {
    let image = Image::new();
    let cache = tempfile::tempdir().unwrap();
    build_mirror(&cache.path().join("pypi/mirror"), &["dibtest-delta"], false);
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("canary"), "keep").unwrap();
    symlink(host.path(), image.path("/tmp/pypi")).unwrap();
    let before = image.snapshot();
    let out = image.run_outside(
        ROOT_D,
        &[("DIB_IMAGE_CACHE", cache.path().to_str().unwrap())],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is a symlink; refusing to mount over it"),
        "{}",
        text(&out)
    );
    assert!(!is_mount_point(host.path()));
    assert_eq!(
        fs::read_to_string(host.path().join("canary")).unwrap(),
        "keep"
    );
    assert_same_tree(&before, &image.snapshot());
    assert!(Path::new(host.path()).join("canary").is_file());
}

/// `~/.config` a symlink leading nowhere in the image: pip reads
/// `~/.pip/pip.conf` and uv `/etc/uv/uv.toml` instead, and both really
/// install from the mirror; the warning names the link and its target.
#[test]
fn a_config_dir_leading_nowhere_still_points_pip_and_uv_at_the_mirror() {
    let mut image = Image::new();
    symlink("/nonexistent", image.path("/root/.config")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    build_mirror(
        &cache.path().join("pypi/mirror"),
        &["dibtest-alpha", "dibtest-beta"],
        true,
    );
    let before = image.snapshot();
    let cache_var = cache.path().to_str().unwrap();
    assert_ok(
        "root.d",
        &image.run_outside(ROOT_D, &[("DIB_IMAGE_CACHE", cache_var)]),
    );

    let out = image.run_inside(PRE_INSTALL, &[("DIB_OFFLINE", "1")]);
    assert_ok("pre-install.d", &out);
    for warning in [
        "/root/.config: a symlink to /nonexistent, but /nonexistent does not exist in the image; \
         pip reads /root/.pip/pip.conf instead",
        "/root/.config: a symlink to /nonexistent, but /nonexistent does not exist in the image; \
         uv reads /etc/uv/uv.toml instead",
    ] {
        assert!(
            text(&out).contains(&format!("warning: {warning}")),
            "{}",
            text(&out)
        );
    }
    install_alpha_with_pip_and_beta_with_uv(&image);

    image.unmount("/tmp/pypi");
    assert_ok("cleanup.d", &image.run_outside(CLEANUP, &[]));
    assert_same_tree(&before, &image.snapshot());
}

/// uv merges the image's own `/etc/uv/uv.toml` under the user file: an
/// index there would be asked too (here one that refuses connections,
/// which uv treats as a hard error), unless the element replaces that
/// file for the build as well.
#[test]
fn an_image_system_uv_config_does_not_leak_its_indexes_into_the_build() {
    let mut image = Image::new();
    fs::create_dir_all(image.path("/etc/uv")).unwrap();
    fs::write(
        image.path("/etc/uv/uv.toml"),
        "[[index]]\nurl = \"http://127.0.0.1:9/simple/\"\n",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    build_mirror(&cache.path().join("pypi/mirror"), &["dibtest-beta"], true);
    let before = image.snapshot();
    let cache_var = cache.path().to_str().unwrap();
    assert_ok(
        "root.d",
        &image.run_outside(ROOT_D, &[("DIB_IMAGE_CACHE", cache_var)]),
    );
    assert_ok(
        "pre-install.d",
        &image.run_inside(PRE_INSTALL, &[("DIB_OFFLINE", "1")]),
    );
    make_venv(&image, "/opt/venvs/pip", true);
    let out = image.chroot(
        &["/opt/venvs/pip/bin/pip", "install", "--no-cache-dir", "uv"],
        &[],
    );
    assert_ok("pip install uv from the mirror", &out);
    let out = uv_install(&image, "dibtest-beta");
    assert_ok(
        "uv pip install, with the image's own uv.toml set aside",
        &out,
    );
    assert_installed(&image, "/opt/venvs/uv", "dibtest-beta");
    image.unmount("/tmp/pypi");
    assert_ok("cleanup.d", &image.run_outside(CLEANUP, &[]));
    assert_same_tree(&before, &image.snapshot());
}

// The hardening tests live in their own directory (one module per table of
// docs/RELIABILITY.md) but in this test binary, so the chroot harness and
// the assembled element are shared.
#[path = "hardening/mod.rs"]
mod hardening;
mod hook_wrapper;
mod index_choice;
mod tls_mirror;
