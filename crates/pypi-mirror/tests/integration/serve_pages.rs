//! `pypi-mirror serve` pages and upstreams: what a page keeps (hashes,
//! requires-python, yanked, core metadata) in HTML and JSON, PEP 691
//! upstreams, several upstreams, the TTL, credentials, proxies, https.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pypi_mirror_testkit::synth;
use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::serve_common::*;
use serde_json::Value;

const JSON: &str = "application/vnd.pypi.simple.v1+json";

fn alpha_page_with_a_yank(t: &Trees) {
    let page = t.up.join("synth-alpha/index.html");
    let html = fs::read_to_string(&page).unwrap();
    let html = html.replace(
        "data-requires-python=\"&gt;=4\"",
        "data-requires-python=\"&gt;=4\" data-yanked=\"bad &amp; broken\"",
    );
    assert!(html.contains("data-yanked"));
    fs::write(&page, html).unwrap();
}

#[test]
fn pages_keep_hashes_requires_python_yanked_and_metadata_in_html_and_json() {
    let t = trees();
    alpha_page_with_a_yank(&t);
    let up = FakeUpstream::start(&t.up);
    let serve = Serve::start(&t.out, &["--upstream", &up.url()]);
    let sha = sha256_file(&t.up.join("synth-alpha").join(ALPHA_WHEEL));
    let md_sha = sha256_file(
        &t.up
            .join("synth-alpha")
            .join(format!("{ALPHA_WHEEL}.metadata")),
    );

    let html = serve.get("/simple/synth-alpha/");
    assert_eq!(html.status, 200);
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(html.header("vary"), Some("Accept"));
    let text = html.text();
    let line = text
        .lines()
        .find(|l| l.contains(&format!(">{ALPHA_WHEEL}<")))
        .unwrap();
    for want in [
        format!("<a href=\"{ALPHA_WHEEL}#sha256={sha}\""),
        format!(
            " data-core-metadata=\"sha256={md_sha}\" data-dist-info-metadata=\"sha256={md_sha}\""
        ),
        " data-requires-python=\"&gt;=3.8\"".to_owned(),
    ] {
        assert!(line.contains(&want), "{want} not in {line}");
    }
    assert!(
        text.contains("data-requires-python=\"&gt;=4\"")
            && text.contains("data-yanked=\"bad &amp; broken\""),
        "{text}"
    );

    let json = get(serve.port, "/simple/synth-alpha/", &[("Accept", JSON)]);
    assert_eq!(json.header("content-type"), Some(JSON));
    let v: Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v["name"], "synth-alpha");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let one = files.iter().find(|f| f["filename"] == ALPHA_WHEEL).unwrap();
    assert_eq!(one["url"], ALPHA_WHEEL);
    assert_eq!(one["hashes"]["sha256"], sha.as_str());
    assert_eq!(one["core-metadata"]["sha256"], md_sha.as_str());
    assert_eq!(one["yanked"], false);
    let two = files.iter().find(|f| f["filename"] != ALPHA_WHEEL).unwrap();
    assert_eq!(two["requires-python"], ">=4");
    assert_eq!(two["yanked"], "bad & broken");

    // .metadata before the file is in the tree comes from upstream, checked.
    let md = serve.get(&format!("/simple/synth-alpha/{ALPHA_WHEEL}.metadata"));
    assert_eq!(md.status, 200);
    assert_eq!(pypi_mirror::indexer::sha256_hex(&md.body), md_sha);
    // Nothing acceptable: 406. A non-normalized name: a redirect.
    assert_eq!(
        get(
            serve.port,
            "/simple/synth-alpha/",
            &[("Accept", "image/png")]
        )
        .status,
        406
    );
    let r = serve.get("/simple/Synth.Alpha/");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/simple/synth-alpha/"))
    );
    assert_eq!(serve.get("/simple/no-such-project/").status, 404);
}

#[test]
fn a_pep_691_upstream_with_files_elsewhere() {
    let t = trees();
    let files = t.up.join("files");
    fs::create_dir_all(&files).unwrap();
    let src = t.up.join("synth-beta").join(BETA_WHEEL);
    fs::copy(&src, files.join(BETA_WHEEL)).unwrap();
    let up = FakeUpstream::start(&t.up);
    let page = serde_json::json!({
        "meta": {"api-version": "1.1"}, "name": "synth-beta",
        "files": [{"filename": BETA_WHEEL, "url": format!("{}files/{BETA_WHEEL}", up.url()),
                   "hashes": {"sha256": sha256_file(&src)}, "size": 1}]
    });
    fs::write(t.up.join("synth-beta/index.json"), page.to_string()).unwrap();
    let serve = Serve::start(&t.out, &["--upstream", &up.url()]);
    let html = serve.get("/simple/synth-beta/").text();
    assert!(
        html.contains(&format!("href=\"{BETA_WHEEL}#sha256=")),
        "{html}"
    );
    let r = serve.get(&format!("/simple/synth-beta/{BETA_WHEEL}"));
    assert_eq!(r.body, fs::read(&src).unwrap());
    assert_eq!(up.hits(&format!("/files/{BETA_WHEEL}")), 1);
    assert_eq!(up.hits(&format!("/synth-beta/{BETA_WHEEL}")), 0);
}

#[test]
fn the_first_upstream_that_has_the_project_wins() {
    let t1 = trees();
    let t2 = trees();
    // The first upstream has synth-alpha only, with a version of its own.
    fs::remove_dir_all(t1.up.join("synth-beta")).unwrap();
    fs::remove_dir_all(t1.up.join("synth-gamma")).unwrap();
    let extra = synth::write_wheel(t1.tmp.path(), "synth-alpha", "1.5").unwrap();
    pypi_mirror::add(&t1.up, &[extra]).unwrap();
    let first = FakeUpstream::start(&t1.up);
    let second = FakeUpstream::start(&t2.up);
    let serve = Serve::start(
        &t1.out,
        &["--upstream", &first.url(), "--upstream", &second.url()],
    );
    let alpha = serve.get("/simple/synth-alpha/").text();
    assert!(
        alpha.contains("synth_alpha-1.5-py3-none-any.whl"),
        "{alpha}"
    );
    assert_eq!(second.hits("/synth-alpha/"), 0);
    let beta = serve.get("/simple/synth-beta/");
    assert_eq!(beta.status, 200);
    assert_eq!(
        (first.hits("/synth-beta/"), second.hits("/synth-beta/")),
        (1, 1)
    );
}

#[test]
fn pages_are_kept_for_the_ttl_then_fetched_again() {
    let t = trees();
    let up = FakeUpstream::start(&t.up);
    let serve = Serve::start(&t.out, &["--upstream", &up.url(), "--ttl", "2"]);
    assert!(!serve.get("/simple/synth-beta/").text().contains("2.0"));
    let dir = t.tmp.path().join("new");
    fs::create_dir_all(&dir).unwrap();
    let whl = synth::write_wheel(&dir, "synth-beta", "2.0").unwrap();
    pypi_mirror::add(&t.up, &[whl]).unwrap();
    assert!(!serve
        .get("/simple/synth-beta/")
        .text()
        .contains("synth_beta-2.0"));
    assert_eq!(up.hits("/synth-beta/"), 1);
    std::thread::sleep(Duration::from_millis(2100));
    assert!(serve
        .get("/simple/synth-beta/")
        .text()
        .contains("synth_beta-2.0"));
    assert_eq!(up.hits("/synth-beta/"), 2);
}

#[test]
fn credentials_in_the_upstream_url_are_used_and_never_printed() {
    let t = trees();
    // "bob:s3cr3t-pw" in base64.
    let up = FakeUpstream::start_auth(&t.up, Some("Basic Ym9iOnMzY3IzdC1wdw==".into()));
    let url = format!("http://bob:s3cr3t-pw@127.0.0.1:{}/", up.port);
    let serve = Serve::start(&t.out, &["-vv", "--upstream", &url]);
    assert_eq!(serve.get("/simple/synth-beta/").status, 200);
    let r = serve.get(&format!("/simple/synth-beta/{BETA_WHEEL}"));
    assert_eq!((r.status, r.incomplete), (200, false));
    // A wrong password: upstream says 401, the warning names the URL masked.
    let bad = format!("http://bob:wrong-pw@127.0.0.1:{}/", up.port);
    let serve2 = Serve::start(&t.tmp.path().join("out2"), &["-vv", "--upstream", &bad]);
    assert_eq!(serve2.get("/simple/synth-alpha/").status, 502);
    let (_, err) = serve.stop();
    let (_, err2) = serve2.stop();
    assert!(err.contains("http://bob:***@127.0.0.1"), "{err}");
    assert!(err2.contains("401"), "{err2}");
    for e in [&err, &err2] {
        assert!(!e.contains("s3cr3t") && !e.contains("wrong-pw"), "{e}");
        assert!(!e.contains("Ym9i"), "{e}");
    }
}

#[test]
fn an_upstream_password_given_in_the_environment_is_not_on_the_command_line() {
    let t = trees();
    // "bob:s3cr3t-pw" in base64.
    let up = FakeUpstream::start_auth(&t.up, Some("Basic Ym9iOnMzY3IzdC1wdw==".into()));
    let url = format!("http://bob:s3cr3t-pw@127.0.0.1:{}/", up.port);
    // On the command line: it works, every user can read it, a warning says
    // where to put it instead (without it).
    let serve = Serve::start(&t.out, &["--upstream", &url]);
    assert_eq!(serve.get("/simple/synth-beta/").status, 200);
    assert!(serve.cmdline().contains("s3cr3t-pw"), "{}", serve.cmdline());
    let (_, err) = serve.stop();
    assert!(
        err.contains("pypi-mirror: warn: --upstream http://bob:***@127.0.0.1")
            && err.contains("give the URL in PYPI_MIRROR_UPSTREAM instead"),
        "{err}"
    );
    // In the environment (white space around and between URLs is how
    // several are given): used, not on the command line, no warning.
    let mut cmd = bin();
    cmd.env("PYPI_MIRROR_UPSTREAM", format!("\n  {url}\n"));
    let out2 = t.tmp.path().join("out2");
    let serve = Serve::start_with(&out2, &[], cmd);
    assert_eq!(serve.get("/simple/synth-beta/").status, 200);
    let r = serve.get(&format!("/simple/synth-beta/{BETA_WHEEL}"));
    assert_eq!((r.status, r.incomplete), (200, false));
    assert!(!serve.cmdline().contains("s3cr3t"), "{}", serve.cmdline());
    let (_, err) = serve.stop();
    assert!(!err.contains("warn") && !err.contains("s3cr3t"), "{err}");
    // A bad URL there is named by the variable, its password hidden.
    let o = bin()
        .env("PYPI_MIRROR_UPSTREAM", "ftp://bob:hunter2@x/simple/")
        .args(["serve", "--out"])
        .arg(t.tmp.path().join("out3"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("pypi-mirror: error: PYPI_MIRROR_UPSTREAM \"ftp://***@x/simple/\"")
            || err.starts_with(
                "pypi-mirror: error: PYPI_MIRROR_UPSTREAM \"ftp://bob:***@x/simple/\""
            ),
        "{err}"
    );
    assert!(
        !err.contains("hunter2") && !t.tmp.path().join("out3").exists(),
        "{err}"
    );
}

#[test]
fn http_proxy_and_no_proxy_are_honoured() {
    let t = trees();
    // The fake upstream doubles as a forward proxy: it serves the path of
    // the absolute URI it is asked for.
    let proxy = FakeUpstream::start(&t.up);
    let with_proxy = |no_proxy: Option<&str>| {
        let mut cmd = bin();
        cmd.env("HTTP_PROXY", proxy.url());
        if let Some(n) = no_proxy {
            cmd.env("NO_PROXY", n);
        }
        cmd
    };
    let serve = Serve::start_with(
        &t.out,
        &["--upstream", "http://pypi.invalid/"],
        with_proxy(None),
    );
    assert_eq!(serve.get("/simple/synth-beta/").status, 200);
    assert_eq!(proxy.proxied(), ["http://pypi.invalid/synth-beta/"]);
    drop(serve);
    let serve = Serve::start_with(
        &t.out,
        &["--upstream", "http://pypi.invalid/"],
        with_proxy(Some("pypi.invalid")),
    );
    assert_eq!(serve.get("/simple/synth-beta/").status, 502);
    assert_eq!(proxy.proxied().len(), 1);
}

#[test]
fn an_https_upstream_is_verified_against_the_system_roots() {
    let t = trees();
    let dir = t.tmp.path();
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    let sh = format!(
        "set -e; cd {d}; \
         openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null; \
         openssl req -newkey rsa:2048 -nodes -keyout key.pem -out cert.csr -subj /CN=localhost 2>/dev/null; \
         printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext; \
         openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile ext 2>/dev/null",
        d = dir.display()
    );
    assert!(Command::new("sh")
        .args(["-c", &sh])
        .status()
        .unwrap()
        .success());
    let up = FakeUpstream::start_tls(&t.up, &cert, &key);
    let url = format!("https://localhost:{}/", up.port);
    // Trusted through SSL_CERT_FILE, which the platform's store honours.
    let mut cmd = bin();
    cmd.env("SSL_CERT_FILE", &ca);
    let serve = Serve::start_with(&t.out, &["--upstream", &url], cmd);
    assert_eq!(serve.get("/simple/synth-beta/").status, 200);
    let r = serve.get(&format!("/simple/synth-beta/{BETA_WHEEL}"));
    assert_eq!((r.status, r.incomplete), (200, false));
    drop(serve);
    // Not trusted otherwise: nothing is fetched.
    let serve = Serve::start(&t.tmp.path().join("out2"), &["--upstream", &url]);
    assert_eq!(serve.get("/simple/synth-alpha/").status, 502);
    let (_, err) = serve.stop();
    assert!(
        err.contains("certificate") || err.contains("Certificate"),
        "{err}"
    );
}
