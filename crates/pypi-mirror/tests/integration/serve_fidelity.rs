//! `pypi-mirror serve` answers offline what it answered online: an
//! upstream page with yanked files, `requires-python`, sizes, upload times
//! and versions is served the same, field by field, with upstream gone and
//! with `--offline`, and real pip offline refuses the yanked version as it
//! does online. No upstream can reach past its own project, and none can
//! take over a project the tree has from another.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pypi_mirror_testkit::{self as testkit, synth, BuildFrom};
use std::fs;
use std::path::{Path, PathBuf};

use crate::installers::check;
use crate::serve_common::*;
use pypi_mirror::BuildOptions;
use serde_json::{json, Value};

const JSON: &str = "application/vnd.pypi.simple.v1+json";

/// Upstream `up/` with synth-alpha 1.0, 1.1 (to be yanked) and 2.0 (needs
/// Python >= 4), built by pypi-mirror; `out/` empty.
fn alpha_trees() -> Trees {
    let tmp = tempfile::Builder::new()
        .prefix("pypi-mirror-fidelity-")
        .tempdir_in(testkit::target_dir())
        .unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    synth::write_wheel(&src, "synth-alpha", "1.0").unwrap();
    synth::write_wheel(&src, "synth-alpha", "1.1").unwrap();
    synth::write_wheel_spec(
        &src,
        &synth::Spec::new("synth-alpha", "2.0").requires_python(Some(">=4")),
    )
    .unwrap();
    let up = tmp.path().join("up");
    let report = pypi_mirror::build(&BuildOptions::new(&up).with_source(&src)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let out = tmp.path().join("out");
    Trees { tmp, up, out }
}

fn wheel(v: &str) -> String {
    synth::wheel_filename("synth-alpha", v)
}

/// What upstream says of one file besides its bytes.
struct Said<'a> {
    version: &'a str,
    yanked: Value,
    requires_python: Option<&'a str>,
    upload_time: &'a str,
}

/// Write upstream's PEP 691 page of synth-alpha (served to clients that
/// ask for JSON), with real hashes and sizes.
fn write_json_page(up: &Path, said: &[Said<'_>]) {
    let dir = up.join("synth-alpha");
    let files: Vec<Value> = said
        .iter()
        .map(|s| {
            let name = wheel(s.version);
            let path = dir.join(&name);
            let mut f = json!({
                "filename": name,
                "url": name,
                "hashes": { "sha256": sha256_file(&path) },
                "core-metadata": { "sha256": sha256_file(&path_with(&path, ".metadata")) },
                "yanked": s.yanked,
                "size": fs::metadata(&path).unwrap().len(),
                "upload-time": s.upload_time,
            });
            if let Some(rp) = s.requires_python {
                f["requires-python"] = json!(rp);
            }
            f
        })
        .collect();
    let page = json!({
        "meta": { "api-version": "1.1" },
        "name": "synth-alpha",
        "versions": ["1.0", "1.1", "2.0"],
        "files": files,
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&page).unwrap()).unwrap();
}

fn path_with(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn said_now() -> Vec<Said<'static>> {
    vec![
        Said {
            version: "1.0",
            yanked: json!(false),
            requires_python: Some(">=3.7"),
            upload_time: "2024-01-02T03:04:05.000006Z",
        },
        Said {
            version: "1.1",
            yanked: json!("broken: use 1.0"),
            requires_python: None,
            upload_time: "2024-02-03T04:05:06.000007Z",
        },
        Said {
            version: "2.0",
            yanked: json!(false),
            requires_python: Some(">=4"),
            upload_time: "2024-03-04T05:06:07.000008Z",
        },
    ]
}

fn json_page(port: u16) -> Value {
    let r = get(port, "/simple/synth-alpha/", &[("Accept", JSON)]);
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn html_links(port: u16) -> Vec<String> {
    let r = get(port, "/simple/synth-alpha/", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .filter(|l| l.trim_start().starts_with("<a "))
        .map(|l| l.trim().to_owned())
        .collect()
}

fn fetch_all(serve: &Serve, t: &Trees, versions: &[&str]) {
    for v in versions {
        let r = serve.get(&format!("/simple/synth-alpha/{}", wheel(v)));
        assert_eq!(r.status, 200, "{v}: {}", r.text());
    }
    wait_for(20, "the wheels published", || {
        let page = fs::read_to_string(t.out.join("synth-alpha/index.html")).unwrap_or_default();
        versions.iter().all(|v| page.contains(&wheel(v)))
            && listing(&t.out.join(".pypi-mirror/serve-tmp")).is_empty()
    });
}

fn file_of(page: &Value, name: &str) -> Value {
    page["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not on {page}"))
}

#[test]
fn offline_pages_equal_online_pages_field_by_field() {
    let t = alpha_trees();
    write_json_page(&t.up, &said_now());
    let mut up = FakeUpstream::start(&t.up);
    let serve = Serve::start(&t.out, &["--upstream", &up.url()]);
    fetch_all(&serve, &t, &["1.0", "1.1", "2.0"]);
    let online = json_page(serve.port);
    let online_html = html_links(serve.port);
    assert_eq!(online["meta"]["api-version"], "1.1");
    assert_eq!(online["versions"], json!(["1.0", "1.1", "2.0"]));
    let yanked = file_of(&online, &wheel("1.1"));
    assert_eq!(yanked["yanked"], "broken: use 1.0");
    assert_eq!(yanked["upload-time"], "2024-02-03T04:05:06.000007Z");
    assert_eq!(file_of(&online, &wheel("1.0"))["requires-python"], ">=3.7");
    assert_eq!(
        file_of(&online, &wheel("2.0"))["size"],
        fs::metadata(t.up.join("synth-alpha").join(wheel("2.0")))
            .unwrap()
            .len()
    );

    // Upstream gone: the tree's answer, the same page.
    up.stop();
    let gone = json_page(serve.port);
    let (_, log) = serve.stop();
    assert_eq!(gone, online, "{log}");
    // --offline: the same again, in JSON and in HTML.
    let offline = Serve::start(&t.out, &["--offline"]);
    assert_eq!(json_page(offline.port), online);
    assert_eq!(html_links(offline.port), online_html);
    assert!(
        online_html
            .iter()
            .any(|l| l.contains(&wheel("1.1")) && l.contains("data-yanked=\"broken: use 1.0\"")),
        "{online_html:?}"
    );
    // The tree's own page, which pip reads through file://, says so too.
    let tree_page = fs::read_to_string(t.out.join("synth-alpha/index.html")).unwrap();
    let tree_links: Vec<String> = tree_page
        .lines()
        .filter(|l| l.trim_start().starts_with("<a "))
        .map(|l| l.trim().to_owned())
        .collect();
    assert_eq!(tree_links, online_html);
}

#[test]
fn a_yank_upstream_reaches_the_tree_on_the_next_refresh_and_an_unyank_too() {
    let t = alpha_trees();
    let mut said = said_now();
    said[1].yanked = json!(false);
    write_json_page(&t.up, &said);
    let up = FakeUpstream::start(&t.up);
    let serve = Serve::start(&t.out, &["--upstream", &up.url(), "--ttl", "0"]);
    fetch_all(&serve, &t, &["1.0", "1.1"]);
    assert_eq!(
        file_of(&json_page(serve.port), &wheel("1.1"))["yanked"],
        false
    );

    said[1].yanked = json!("broken: use 1.0");
    write_json_page(&t.up, &said);
    assert_eq!(
        file_of(&json_page(serve.port), &wheel("1.1"))["yanked"],
        "broken: use 1.0"
    );
    let tree_page = || fs::read_to_string(t.out.join("synth-alpha/index.html")).unwrap();
    wait_for(20, "the yank recorded in the tree", || {
        tree_page().contains("data-yanked=\"broken: use 1.0\"")
    });
    let (_, log) = serve.stop();
    assert!(log.contains("recording it"), "{log}");
    let offline = Serve::start(&t.out, &["--offline"]);
    assert_eq!(
        file_of(&json_page(offline.port), &wheel("1.1"))["yanked"],
        "broken: use 1.0"
    );
    drop(offline);

    said[1].yanked = json!(false);
    write_json_page(&t.up, &said);
    let serve = Serve::start(&t.out, &["--upstream", &up.url(), "--ttl", "0"]);
    assert_eq!(
        file_of(&json_page(serve.port), &wheel("1.1"))["yanked"],
        false
    );
    wait_for(20, "the un-yank recorded in the tree", || {
        !tree_page().contains("data-yanked")
    });
}

#[test]
fn real_pip_offline_refuses_the_yanked_version_as_it_does_online() {
    let tools = testkit::tools_venv().unwrap();
    let t = alpha_trees();
    write_json_page(&t.up, &said_now());
    let up = FakeUpstream::start(&t.up);
    let serve = Serve::start(&t.out, &["--upstream", &up.url()]);
    fetch_all(&serve, &t, &["1.0", "1.1"]);
    let install = |index: &str, target: &Path| {
        let out = tools
            .pip()
            .args([
                "install",
                "--no-cache-dir",
                "--index-url",
                index,
                "--target",
            ])
            .arg(target)
            .arg("synth-alpha>=1.0,<2")
            .output()
            .unwrap();
        check(out, &format!("pip install from {index}"));
        fs::read_dir(target)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.ends_with(".dist-info"))
            .unwrap()
    };
    let online = install(&serve.url(), &t.tmp.path().join("online"));
    assert_eq!(online, "synth_alpha-1.0.dist-info");
    drop(serve);
    drop(up);
    let offline = Serve::start(&t.out, &["--offline"]);
    let served = install(&offline.url(), &t.tmp.path().join("offline"));
    assert_eq!(served, online);
    let from_file = install(&testkit::file_url(&t.out), &t.tmp.path().join("file"));
    assert_eq!(from_file, online);
}

#[test]
fn a_page_cannot_put_another_projects_file_on_its_page_or_into_the_tree() {
    let t = trees();
    // "evil" lists synth-beta's wheel (correct hash) as if it were its own.
    let evil = t.up.join("evil");
    fs::create_dir_all(&evil).unwrap();
    let beta = t.up.join("synth-beta").join(BETA_WHEEL);
    fs::copy(&beta, evil.join("synth_beta-9.9-py3-none-any.whl")).unwrap();
    fs::write(
        evil.join("index.html"),
        format!(
            "<a href=\"synth_beta-9.9-py3-none-any.whl#sha256={}\">x</a>\n<a href=\"../synth-beta/{BETA_WHEEL}#sha256={}\">y</a>\n",
            sha256_file(&beta),
            sha256_file(&beta)
        ),
    )
    .unwrap();
    let up = FakeUpstream::start(&t.up);
    let serve = Serve::start(&t.out, &["--upstream", &up.url()]);
    let page = serve.get("/simple/evil/");
    assert_eq!(page.status, 200);
    assert!(!page.text().contains("synth_beta"), "{}", page.text());
    for f in ["synth_beta-9.9-py3-none-any.whl", BETA_WHEEL] {
        let r = serve.get(&format!("/simple/evil/{f}"));
        assert_eq!(r.status, 404, "{f}: {}", r.text());
        assert_eq!(up.hits(&format!("evil/{f}")), 0);
    }
    let (_, log) = serve.stop();
    assert!(log.contains("of other projects; ignored"), "{log}");
    assert!(!t.out.join("synth-beta").exists());
    assert!(!t.out.join("evil").exists());
}

#[test]
fn add_refuses_a_file_listed_under_a_project_it_does_not_belong_to() {
    let t = trees();
    let beta = t.up.join("synth-beta").join(BETA_WHEEL);
    let mut opts = pypi_mirror::AddOptions::new(&t.out, [beta.clone()]);
    opts.listed.insert(
        beta,
        pypi_mirror::Listed {
            project: "evil".into(),
            ..Default::default()
        },
    );
    let report = pypi_mirror::add_with(&opts).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(
        report.problems[0].kind,
        pypi_mirror::ProblemKind::WrongProject
    );
    assert!(!t.out.join("synth-beta").join(BETA_WHEEL).exists());
    assert!(!t.out.join("evil").exists());
}

#[test]
fn a_project_taken_from_one_upstream_is_never_taken_from_another() {
    let t = trees();
    let first = FakeUpstream::start(&t.up);
    let serve = Serve::start(&t.out, &["--upstream", &first.url()]);
    let r = serve.get(&format!("/simple/synth-beta/{BETA_WHEEL}"));
    assert_eq!(r.status, 200);
    wait_for(20, "beta published", || {
        fs::read_to_string(t.out.join("synth-beta/index.html"))
            .is_ok_and(|p| p.contains(BETA_WHEEL))
    });
    // SIGTERM: serve finishes publishing (the state log last) first.
    serve.stop();

    // Another index has synth-beta too, with a release the first lacks.
    let other = t.tmp.path().join("other");
    let src = t.tmp.path().join("other-src");
    fs::create_dir_all(&src).unwrap();
    synth::write_wheel(&src, "synth-beta", "6.6.6").unwrap();
    pypi_mirror::build(&BuildOptions::new(&other).with_source(&src)).unwrap();
    let second = FakeUpstream::start(&other);
    let serve = Serve::start(&t.out, &["--upstream", &second.url()]);
    let page = serve.get("/simple/synth-beta/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains(BETA_WHEEL), "{}", page.text());
    assert!(!page.text().contains("6.6.6"), "{}", page.text());
    let newer = synth::wheel_filename("synth-beta", "6.6.6");
    let r = serve.get(&format!("/simple/synth-beta/{newer}"));
    assert_eq!(r.status, 404);
    assert_eq!(second.hits(&newer), 0);
    let (_, log) = serve.stop();
    assert!(log.contains("the mirror holds it from"), "{log}");
}

#[test]
fn a_file_in_the_tree_but_on_no_page_is_listed_on_the_next_request() {
    let t = trees();
    // The tree has synth-beta (published by add), then a second file lands
    // in its directory without reaching the page or the state, as when
    // the page write of a publication failed.
    pypi_mirror::add(&t.out, &[t.up.join("synth-beta").join(BETA_WHEEL)]).unwrap();
    let src = t.tmp.path().join("late");
    fs::create_dir_all(&src).unwrap();
    let late = synth::write_wheel(&src, "synth-beta", "1.5").unwrap();
    let name = late.file_name().unwrap().to_owned();
    fs::copy(&late, t.out.join("synth-beta").join(&name)).unwrap();
    let serve = Serve::start(&t.out, &["--offline"]);
    let name = name.to_string_lossy().into_owned();
    wait_for(20, "the unlisted file listed", || {
        serve.get("/simple/synth-beta/").text().contains(&name)
    });
    let tree_page = fs::read_to_string(t.out.join("synth-beta/index.html")).unwrap();
    assert!(tree_page.contains(&name), "{tree_page}");
    let (_, log) = serve.stop();
    assert_eq!(log.matches("on no page; listed now").count(), 1, "{log}");
    assert!(log.contains(&name), "{log}");
}

/// Upstream's JSON page of "huge": `n` made-up wheels, about 500 bytes of
/// JSON each, as PyPI's largest pages have.
fn write_huge_page(up: &Path, n: usize) -> usize {
    let dir = up.join("huge");
    fs::create_dir_all(&dir).unwrap();
    let files: Vec<Value> = (0..n)
        .map(|i| {
            let name = format!("huge-1.0.{i}-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl");
            json!({
                "filename": name,
                "url": format!("https://files.example/packages/{:02x}/{:02x}/{:056x}/{name}", i % 256, i / 256 % 256, i),
                "hashes": { "sha256": format!("{i:064x}") },
                "requires-python": ">=3.8",
                "core-metadata": { "sha256": format!("{:064x}", i + 1) },
                "yanked": false,
                "size": 1_000_000 + i,
                "upload-time": "2024-01-02T03:04:05.000006Z",
            })
        })
        .collect();
    let body = serde_json::to_vec(&json!({
        "meta": { "api-version": "1.1" },
        "name": "huge",
        "files": files,
    }))
    .unwrap();
    fs::write(dir.join("index.json"), &body).unwrap();
    fs::write(dir.join("index.html"), "").unwrap();
    body.len()
}

/// Most bytes `serve` may hold, at its peak, for a 20 MB upstream page: the
/// page as received, its entries, one rendering in each format, and the
/// runtime. (Parsed into a tree of JSON values and kept in every form, the
/// same page took about 490 MB.)
const HUGE_PAGE_PEAK: u64 = 200 << 20;

#[test]
fn a_twenty_megabyte_upstream_page_stays_within_a_stated_memory_bound() {
    let t = trees();
    let size = write_huge_page(&t.up, 40_000);
    assert!(size > 20_000_000, "{size}");
    let up = FakeUpstream::start(&t.up);
    let serve = Serve::start(&t.out, &["--upstream", &up.url()]);
    let json_page = get(serve.port, "/simple/huge/", &[("Accept", JSON)]);
    assert_eq!(json_page.status, 200);
    let page: Value = serde_json::from_slice(&json_page.body).unwrap();
    assert_eq!(page["files"].as_array().unwrap().len(), 40_000);
    let html = get(serve.port, "/simple/huge/", &[]);
    assert_eq!(html.status, 200);
    let peak = proc_status_bytes(serve.pid(), "VmHWM");
    let now = proc_status_bytes(serve.pid(), "VmRSS");
    eprintln!(
        "20 MB page: peak RSS {} MiB, now {} MiB",
        peak >> 20,
        now >> 20
    );
    assert!(peak < HUGE_PAGE_PEAK, "peak RSS {} MiB", peak >> 20);
    // A page cache smaller than the page: served, not kept.
    drop(serve);
    let small = Serve::start(&t.out, &["--upstream", &up.url(), "--page-cache", "1"]);
    for _ in 0..2 {
        let r = get(small.port, "/simple/huge/", &[("Accept", JSON)]);
        assert_eq!(r.status, 200);
    }
    assert_eq!(up.hits("/huge/"), 3, "not kept: fetched for each request");
}
