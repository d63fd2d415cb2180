//! Real pip and uv resolve and install from a tree built by pypi-mirror, via
//! `file://` and over HTTP, with the host's installer configuration scrubbed.
//!
//! Needs python3 (with venv) and the package registry once, to create the
//! cached tool venv under target/ (see `pypi_mirror_testkit`).

// Helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::installers::*;
use pypi_mirror_testkit::{self as testkit, BuildFrom};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use pypi_mirror::BuildOptions;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    out: PathBuf,
}

/// synth-alpha 1.0 (and 2.0, which needs Python >= 4 and must be skipped),
/// synth-beta 1.0 depending on synth.alpha, and synth-gamma 1.0 as an sdist.
fn fixture() -> Fixture {
    let tmp = tempfile::Builder::new()
        .prefix("pypi-mirror-install-")
        .tempdir_in(testkit::target_dir())
        .unwrap();
    let root = tmp.path().to_owned();
    let src = root.join("src");
    fs::create_dir_all(&src).unwrap();
    write_synth_set(&src);
    let out = root.join("mirror");
    let report = pypi_mirror::build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.files, 4);
    Fixture {
        _tmp: tmp,
        root,
        out,
    }
}

const BETA_WHEEL: &str = "synth_beta-1.0-py3-none-any.whl";

#[test]
fn pip_installs_from_file_url_using_core_metadata() {
    let tools = testkit::tools_venv().unwrap();
    let fx = fixture();
    let index = testkit::file_url(&fx.out);
    let target = fx.root.join("pip-file");
    let log = pip_install(&tools, &index, &target);
    assert_installed(&tools, &target);
    // pip -v announces PEP 658 use, naming the .metadata URL it fetched.
    let want = format!("{index}synth-beta/{BETA_WHEEL}.metadata");
    assert!(
        log.lines()
            .any(|l| l.contains("Obtaining dependency information") && l.contains(&want)),
        "pip did not use {want}:\n{log}"
    );
    // The Requires-Python >= 4 release was skipped thanks to the attribute.
    assert!(!target.join("synth_alpha-2.0.dist-info").exists());
    assert!(target.join("synth_alpha-1.0.dist-info").exists());
}

#[test]
fn pip_installs_over_http_using_core_metadata() {
    let tools = testkit::tools_venv().unwrap();
    let fx = fixture();
    let server = testkit::HttpServer::start(&fx.out, &tools.python).unwrap();
    let target = fx.root.join("pip-http");
    pip_install(&tools, &server.url(), &target);
    assert_installed(&tools, &target);
    let requests = server.requests();
    assert!(
        requests.contains(&format!(
            "\"GET /synth-beta/{BETA_WHEEL}.metadata HTTP/1.1\" 200"
        )),
        "no .metadata request in:\n{requests}"
    );
}

#[test]
fn pip_resolves_from_metadata_files_alone() {
    // With the wheels removed from the tree, a dry-run resolution can only
    // succeed through the .metadata files.
    let tools = testkit::tools_venv().unwrap();
    let fx = fixture();
    for (project, file) in [
        ("synth-beta", BETA_WHEEL),
        ("synth-alpha", "synth_alpha-1.0-py3-none-any.whl"),
    ] {
        fs::remove_file(fx.out.join(project).join(file)).unwrap();
    }
    let server = testkit::HttpServer::start(&fx.out, &tools.python).unwrap();
    let out = tools
        .pip()
        .args([
            "install",
            "--dry-run",
            "--no-cache-dir",
            "--quiet",
            "--report",
            "-",
            "--index-url",
        ])
        .arg(server.url())
        .arg("synth-beta")
        .output()
        .unwrap();
    let report = check(out, "pip install --dry-run");
    for want in [
        "\"name\": \"synth-beta\"",
        "\"name\": \"Synth.Alpha\"",
        "\"version\": \"1.0\"",
    ] {
        assert!(report.contains(want), "{want} not in report:\n{report}");
    }
    let requests = server.requests();
    assert!(
        !requests.contains(&format!("GET /synth-beta/{BETA_WHEEL} ")),
        "{requests}"
    );
}

#[test]
fn uv_installs_from_file_url() {
    let tools = testkit::tools_venv().unwrap();
    let fx = fixture();
    let target = fx.root.join("uv-file");
    uv_install(&tools, &testkit::file_url(&fx.out), &target);
    assert_installed(&tools, &target);
    assert!(target.join("synth_alpha-1.0.dist-info").exists());
}

#[test]
fn uv_installs_over_http_using_core_metadata() {
    let tools = testkit::tools_venv().unwrap();
    let fx = fixture();
    let server = testkit::HttpServer::start(&fx.out, &tools.python).unwrap();
    let target = fx.root.join("uv-http");
    uv_install(&tools, &server.url(), &target);
    assert_installed(&tools, &target);
    let requests = server.requests();
    assert!(
        requests.contains(&format!(
            "\"GET /synth-beta/{BETA_WHEEL}.metadata HTTP/1.1\" 200"
        )),
        "uv fetched no .metadata:\n{requests}"
    );
}

#[test]
fn pip_download_then_build_round_trip() {
    // The documented requirements-file workflow: pip download into a
    // directory, then build a mirror from it.
    let tools = testkit::tools_venv().unwrap();
    let fx = fixture();
    let req = fx.root.join("requirements.txt");
    fs::write(&req, "synth-beta\nsynth-gamma==1.0\n").unwrap();
    let dl = fx.root.join("downloads");
    let out = tools
        .pip()
        .args([
            "download",
            "--no-cache-dir",
            "--no-build-isolation",
            "--index-url",
        ])
        .arg(testkit::file_url(&fx.out))
        .arg("-d")
        .arg(&dl)
        .arg("-r")
        .arg(&req)
        .output()
        .unwrap();
    check(out, "pip download");
    let mirror2 = fx.root.join("mirror2");
    let out = Command::new(env!("CARGO_BIN_EXE_pypi-mirror"))
        .args(["build", "--from"])
        .arg(&dl)
        .arg("--out")
        .arg(&mirror2)
        .output()
        .unwrap();
    let log = check(out, "pypi-mirror build");
    assert!(log.contains("3 files in 3 projects (3 added"), "{log}");
    let target = fx.root.join("round-trip");
    pip_install(&tools, &testkit::file_url(&mirror2), &target);
    assert_installed(&tools, &target);
}
