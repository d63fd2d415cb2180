//! Real pip and uv through `pypi-mirror serve`: first online (a static
//! PEP 503 tree behind Python's http.server as upstream), then with the
//! upstream gone, then from `file://` of the tree serve left behind.
//!
//! Needs python3 (with venv) and the package registry once, to create the
//! cached tool venv under target/ (see `pypi_mirror_testkit`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::installers::*;
use pypi_mirror_testkit::{self as testkit, BuildFrom};

use crate::serve_common::*;

#[test]
fn pip_and_uv_through_serve_then_without_upstream_then_from_the_tree() {
    let tools = testkit::tools_venv().unwrap();
    let t = trees();
    let root = t.tmp.path().to_owned();
    let upstream = testkit::HttpServer::start(&t.up, &tools.python).unwrap();
    // TTL 0: every page request asks upstream, so step 2 meets its absence.
    let serve = Serve::start(&t.out, &["--upstream", &upstream.url(), "--ttl", "0"]);

    // 1. Online: pip fetches pages, .metadata and files through serve.
    let log = pip_install(&tools, &serve.url(), &root.join("pip-online"));
    assert_installed(&tools, &root.join("pip-online"));
    let md = format!("{}synth-beta/{BETA_WHEEL}.metadata", serve.url());
    assert!(
        log.lines()
            .any(|l| l.contains("Obtaining dependency information") && l.contains(&md)),
        "pip did not resolve from serve's .metadata:\n{log}"
    );
    // What pip fetched is now in the tree, published page after file.
    for (project, file) in [
        ("synth-alpha", ALPHA_WHEEL),
        ("synth-beta", BETA_WHEEL),
        ("synth-gamma", "synth_gamma-1.0.tar.gz"),
    ] {
        let published = t.out.join(project).join(file);
        wait_for(20, &format!("{file} published"), || {
            std::fs::read_to_string(t.out.join(project).join("index.html"))
                .is_ok_and(|p| p.contains(file))
        });
        assert_eq!(
            sha256_file(&published),
            sha256_file(&t.up.join(project).join(file))
        );
    }
    // Not fetched, not kept: alpha 2.0 (requires Python >= 4).
    assert!(!t
        .out
        .join("synth-alpha/synth_alpha-2.0-py3-none-any.whl")
        .exists());
    let requests = upstream.requests();
    assert!(
        requests.contains(&format!("GET /synth-beta/{BETA_WHEEL} ")),
        "{requests}"
    );

    // uv through serve: the pages say JSON, the files come from the tree.
    uv_install(&tools, &serve.url(), &root.join("uv-online"));
    assert_installed(&tools, &root.join("uv-online"));
    let files_fetched =
        |log: &str| log.matches(".whl HTTP").count() + log.matches(".tar.gz HTTP").count();
    assert_eq!(
        files_fetched(&upstream.requests()),
        3,
        "{}",
        upstream.requests()
    );

    // 2. Upstream gone: the same serve answers from the tree alone.
    drop(upstream);
    pip_install(&tools, &serve.url(), &root.join("pip-no-upstream"));
    assert_installed(&tools, &root.join("pip-no-upstream"));
    uv_install(&tools, &serve.url(), &root.join("uv-no-upstream"));
    assert_installed(&tools, &root.join("uv-no-upstream"));
    let (status, err) = serve.stop();
    assert!(status.success(), "{err}");
    assert_eq!(err.matches(": warn: ").count(), 1, "{err}");

    // 3. No server at all: the tree is a mirror for file:// as the element
    // uses it.
    let index = testkit::file_url(&t.out);
    pip_install(&tools, &index, &root.join("pip-file"));
    assert_installed(&tools, &root.join("pip-file"));
    uv_install(&tools, &index, &root.join("uv-file"));
    assert_installed(&tools, &root.join("uv-file"));

    // And `build` finds the tree consistent: nothing to re-hash or rewrite.
    let report = pypi_mirror::build(&pypi_mirror::BuildOptions::new(&t.out)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!((report.files, report.hashed), (3, 0), "{report:?}");
    assert!(report.pages_written.is_empty() && !report.root_written);

    // What serve published is recorded: `build --prune` over sources that
    // lack it keeps it (the files may be fetchable nowhere else later).
    let empty = root.join("no-sources");
    std::fs::create_dir_all(&empty).unwrap();
    let mut prune = pypi_mirror::BuildOptions::new(&t.out).with_source(&empty);
    prune.prune = true;
    let report = pypi_mirror::build(&prune).unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    assert_eq!(
        (report.files, report.kept_recorded.len()),
        (3, 3),
        "{report:?}"
    );
    assert!(t.out.join("synth-beta").join(BETA_WHEEL).exists());
}

#[test]
fn uv_on_a_cold_mirror_downloads_each_file_once() {
    let tools = testkit::tools_venv().unwrap();
    let t = trees();
    let upstream = testkit::HttpServer::start(&t.up, &tools.python).unwrap();
    let serve = Serve::start(&t.out, &["--upstream", &upstream.url()]);
    // uv asks with HEAD before it downloads: a HEAD must not be a second
    // transfer.
    uv_install(&tools, &serve.url(), &t.tmp.path().join("uv-cold"));
    assert_installed(&tools, &t.tmp.path().join("uv-cold"));
    let log = upstream.requests();
    for file in [
        "synth_alpha-1.0-py3-none-any.whl",
        BETA_WHEEL,
        "synth_gamma-1.0.tar.gz",
    ] {
        assert_eq!(
            log.matches(&format!("GET /{}/{file} HTTP", file_project(file)))
                .count(),
            1,
            "{file}: {log}"
        );
    }
}

fn file_project(file: &str) -> &'static str {
    if file.starts_with("synth_alpha") {
        "synth-alpha"
    } else if file.starts_with("synth_beta") {
        "synth-beta"
    } else {
        "synth-gamma"
    }
}

/// A venv with pip 23.0.1, Debian bookworm's: the pip inside the images
/// that DIB builds. Made once under target/.
fn old_pip() -> std::path::PathBuf {
    let dir = testkit::target_dir().join("pypi-mirror-pip-23.0.1-venv");
    let python = dir.join("bin/python");
    if !dir.join(".ready").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let ok = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success());
        let out = std::process::Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "pip==23.0.1",
            ])
            .output()
            .unwrap();
        check(out, "pip install pip==23.0.1");
        std::fs::write(dir.join(".ready"), b"").unwrap();
    }
    python
}

#[test]
fn debian_bookworms_pip_installs_through_serve() {
    // pip 22.3 to 23.1 fails on any "dist-info-metadata" key in a PEP 691
    // JSON page (PEP 714); serve answers it JSON, as it asks.
    let tools = testkit::tools_venv().unwrap();
    let python = old_pip();
    let t = trees();
    let up = FakeUpstream::start(&t.up);
    let serve = Serve::start(&t.out, &["--upstream", &up.url()]);
    let target = t.tmp.path().join("old-pip");
    let out = testkit::isolated(&python)
        .args(["-m", "pip", "install", "--no-cache-dir", "--index-url"])
        .arg(serve.url())
        .arg("--target")
        .arg(&target)
        .args(["synth-beta", "synth-gamma"])
        .output()
        .unwrap();
    check(out, "pip 23.0.1 install through serve");
    assert_installed(&tools, &target);
}
