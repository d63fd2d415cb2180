//! `pypi-mirror serve` and what its upstreams may make it do: an earlier
//! upstream that fails is never stood in for by a later one (dependency
//! confusion), and a page or redirect cannot send it to loopback, private
//! or link-local addresses its upstream is not on.
//!
//! Every server here is on 127.0.0.1; `PYPI_MIRROR_TEST_UPSTREAMS_ARE_PUBLIC`
//! (test-only) makes serve treat its upstreams as public indexes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use crate::serve_common::*;

const PUBLIC: &str = "PYPI_MIRROR_TEST_UPSTREAMS_ARE_PUBLIC";

fn text_reply(status: u16) -> CannedReply {
    (status, Vec::new(), format!("{status}\n").into_bytes())
}

/// The warning lines serve printed.
fn warnings(err: &str) -> Vec<&str> {
    err.lines().filter(|l| l.contains(": warn: ")).collect()
}

/// Whether any distribution file is in the tree.
fn tree_has_files(t: &Trees) -> bool {
    listing(&t.out)
        .iter()
        .any(|p| p.ends_with(".whl") || p.ends_with(".tar.gz"))
}

#[test]
fn an_upstream_that_fails_is_never_stood_in_for_by_the_next() {
    // (first upstream, what its failure is called in serve's answer,
    // whether it answers 404 for projects other than synth-beta).
    let cases: Vec<(Option<Canned>, String, &str, bool)> = vec![
        (None, refusing_url(), "cannot connect", false),
        (
            Some(Canned::start(|p| {
                text_reply(if p.contains("synth-beta") { 500 } else { 404 })
            })),
            String::new(),
            "HTTP 500",
            true,
        ),
        (
            Some(Canned::start(|p| {
                text_reply(if p.contains("synth-beta") { 401 } else { 404 })
            })),
            String::new(),
            "HTTP 401",
            true,
        ),
    ];
    for (canned, refusing, failure, answers_404) in cases {
        let first = canned.as_ref().map_or(refusing, Canned::url);
        let t = trees();
        let second = FakeUpstream::start(&t.up);
        let serve = Serve::start(&t.out, &["--upstream", &first, "--upstream", &second.url()]);
        if answers_404 {
            // A 404 from the first passes to the second: page and file.
            let alpha = serve.get("/simple/synth-alpha/");
            assert_eq!(alpha.status, 200, "{first}: {}", alpha.text());
            assert!(alpha.text().contains(ALPHA_WHEEL), "{}", alpha.text());
            let r = serve.get(&format!("/simple/synth-alpha/{ALPHA_WHEEL}"));
            assert_eq!((r.status, r.incomplete), (200, false), "{first}");
            wait_for(20, "alpha published", || {
                t.out.join("synth-alpha").join(ALPHA_WHEEL).exists()
            });
        }
        let shown = first.trim_end_matches('/');
        for accept in ["text/html", "application/vnd.pypi.simple.v1+json"] {
            let r = get(serve.port, "/simple/synth-beta/", &[("Accept", accept)]);
            assert_eq!(r.status, 502, "{first} {accept}: {}", r.text());
            let line = r.text();
            assert_eq!(line.lines().count(), 1, "{line}");
            assert!(
                line.contains(shown)
                    && line.contains(failure)
                    && line.contains("not asking the next upstream"),
                "{first}: {line}"
            );
            assert!(!line.contains(&second.port.to_string()), "{line}");
        }
        for path in [
            format!("/simple/synth-beta/{BETA_WHEEL}"),
            format!("/simple/synth-beta/{BETA_WHEEL}.metadata"),
        ] {
            assert_eq!(serve.get(&path).status, 502, "{first} {path}");
        }
        assert_eq!(second.hits("/synth-beta/"), 0, "{first}");
        assert_eq!(second.hits(BETA_WHEEL), 0, "{first}");
        assert_eq!(second.hits(&format!("{BETA_WHEEL}.metadata")), 0);
        assert!(!t.out.join("synth-beta").exists(), "{first}");
        if let Some(c) = &canned {
            // Marked down now (for 10 s, far longer than this takes): it is
            // not asked, and the next upstream is not asked in its place.
            let r = serve.get("/simple/synth-gamma/");
            assert_eq!(r.status, 502, "{}", r.text());
            assert!(r.text().contains("is down"), "{}", r.text());
            assert_eq!(
                (c.hits("/synth-gamma/"), second.hits("/synth-gamma/")),
                (0, 0)
            );
        }
        let (status, err) = serve.stop();
        assert!(status.success(), "{err}");
        let warned = warnings(&err);
        assert_eq!(warned.len(), 1, "{err}");
        assert!(warned[0].contains(shown), "{err}");
    }
}

/// A PEP 691 page of `project` listing one file at `url`.
fn json_page(project: &str, filename: &str, url: &str, sha: &str) -> CannedReply {
    let page = serde_json::json!({
        "meta": {"api-version": "1.1"}, "name": project,
        "files": [{"filename": filename, "url": url, "hashes": {"sha256": sha},
                   "core-metadata": true}]
    });
    (
        200,
        vec![(
            "content-type".into(),
            "application/vnd.pypi.simple.v1+json".into(),
        )],
        page.to_string().into_bytes(),
    )
}

/// A PEP 503 page listing one file at `url`.
fn html_page(url: &str, sha: &str) -> CannedReply {
    let body = format!(
        "<!DOCTYPE html><html><body><a href=\"{url}#sha256={sha}\" data-core-metadata=\"true\">x</a></body></html>"
    );
    (
        200,
        vec![("content-type".into(), "text/html".into())],
        body.into_bytes(),
    )
}

/// Start serve on `t` with `up` as its only upstream, public or not.
fn serve_public(t: &Trees, out: &str, up: &Canned, public: bool) -> Serve {
    let mut cmd = bin();
    if public {
        cmd.env(PUBLIC, "1");
    }
    Serve::start_with(&t.tmp.path().join(out), &["--upstream", &up.url()], cmd)
}

#[test]
fn a_public_upstream_cannot_send_serve_to_loopback_or_link_local() {
    let t = trees();
    // The host the pages point at: stands for a service on the server's
    // own network (or its cloud metadata service).
    let target = FakeUpstream::start(&t.up);
    let tp = target.port;
    let sha = |p: &str, f: &str| sha256_file(&t.up.join(p).join(f));
    let (beta_sha, alpha_sha) = (
        sha("synth-beta", BETA_WHEEL),
        sha("synth-alpha", ALPHA_WHEEL),
    );
    const GAMMA: &str = "synth_gamma-1.0.tar.gz";
    let gamma_sha = sha("synth-gamma", GAMMA);
    const DELTA: &str = "synth_delta-1.0-py3-none-any.whl";
    // beta: JSON url on a loopback address; alpha: an HTML href on a name
    // that resolves to loopback; gamma: IPv4-mapped IPv6 loopback; delta:
    // the cloud metadata address.
    let up = Canned::start(move |p| match p {
        "/synth-beta/" => json_page(
            "synth-beta",
            BETA_WHEEL,
            &format!("http://127.0.0.1:{tp}/synth-beta/{BETA_WHEEL}"),
            &beta_sha,
        ),
        "/synth-alpha/" => html_page(
            &format!("http://localhost:{tp}/synth-alpha/{ALPHA_WHEEL}"),
            &alpha_sha,
        ),
        "/synth-gamma/" => json_page(
            "synth-gamma",
            GAMMA,
            &format!("http://[::ffff:127.0.0.1]:{tp}/synth-gamma/{GAMMA}"),
            &gamma_sha,
        ),
        "/synth-delta/" => json_page(
            "synth-delta",
            DELTA,
            "http://169.254.169.254/latest/meta-data/synth_delta-1.0-py3-none-any.whl",
            &"0".repeat(64),
        ),
        _ => text_reply(404),
    });
    let files = [
        ("synth-beta", BETA_WHEEL, format!("127.0.0.1:{tp}")),
        ("synth-alpha", ALPHA_WHEEL, "localhost".to_owned()),
        ("synth-gamma", GAMMA, "::ffff:127.0.0.1".to_owned()),
        ("synth-delta", DELTA, "169.254.169.254".to_owned()),
    ];
    let serve = serve_public(&t, "out", &up, true);
    for (project, file, host) in &files {
        let page = serve.get(&format!("/simple/{project}/"));
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(page.text().contains(file), "{}", page.text());
        let start = Instant::now();
        let r = serve.get(&format!("/simple/{project}/{file}"));
        // Nothing was even tried: no connect timeout (10 s) was waited.
        assert!(start.elapsed() < Duration::from_secs(5), "{host}");
        assert_eq!(r.status, 502, "{host}: {}", r.text());
        assert!(
            r.text().contains("refused") && r.text().contains(host.as_str()),
            "{}",
            r.text()
        );
        if file.ends_with(".whl") {
            let md = serve.get(&format!("/simple/{project}/{file}.metadata"));
            assert_eq!(md.status, 502, "{host}: {}", md.text());
        }
    }
    assert!(target.all_paths().is_empty(), "{:?}", target.all_paths());
    let (status, err) = serve.stop();
    assert!(status.success(), "{err}");
    assert!(!tree_has_files(&t), "{:?}", listing(&t.out));
    // One line per refused transfer, each naming where and why.
    let warned = warnings(&err);
    assert_eq!(warned.len(), 7, "{err}");
    for (_, file, host) in &files {
        let line = warned
            .iter()
            .find(|l| l.contains(&format!("{file}: ")))
            .unwrap_or_else(|| panic!("{file}: {err}"));
        assert!(
            line.contains("refused") && line.contains(host.as_str()),
            "{line}"
        );
    }
    assert!(err.contains("loopback address and upstream"), "{err}");
    assert!(err.contains("link-local"), "{err}");

    // The same upstream counted as local (it is on 127.0.0.1) may link to
    // loopback: the files come. Link-local still not.
    let serve = serve_public(&t, "out2", &up, false);
    for (project, file, _) in &files[..2] {
        assert_eq!(serve.get(&format!("/simple/{project}/")).status, 200);
        let r = serve.get(&format!("/simple/{project}/{file}"));
        assert_eq!((r.status, r.incomplete), (200, false), "{file}");
    }
    assert_eq!(target.hits(BETA_WHEEL), 1);
    assert_eq!(target.hits(ALPHA_WHEEL), 1);
    assert_eq!(serve.get("/simple/synth-delta/").status, 200);
    assert_eq!(
        serve.get(&format!("/simple/synth-delta/{DELTA}")).status,
        502
    );
}

#[test]
fn redirects_from_a_listed_file_are_checked_like_links() {
    let t = trees();
    let target = FakeUpstream::start(&t.up);
    let tp = target.port;
    let beta_sha = sha256_file(&t.up.join("synth-beta").join(BETA_WHEEL));
    let alpha_sha = sha256_file(&t.up.join("synth-alpha").join(ALPHA_WHEEL));
    // The listed files are on the upstream's own origin; they redirect.
    let up = Canned::start(move |p| {
        let redirect = |to: String| (302, vec![("location".into(), to)], Vec::new());
        match p {
            "/synth-beta/" => html_page(&format!("/files/{BETA_WHEEL}"), &beta_sha),
            "/synth-alpha/" => html_page(&format!("/files/{ALPHA_WHEEL}"), &alpha_sha),
            _ if p.ends_with(&format!("/files/{BETA_WHEEL}")) => {
                redirect(format!("http://127.0.0.1:{tp}/synth-beta/{BETA_WHEEL}"))
            }
            _ if p.ends_with(&format!("/files/{ALPHA_WHEEL}")) => {
                redirect("http://169.254.169.254/latest/meta-data/iam/".to_owned())
            }
            _ => text_reply(404),
        }
    });
    let serve = serve_public(&t, "out", &up, true);
    for (project, file, host) in [
        ("synth-beta", BETA_WHEEL, format!("127.0.0.1:{tp}")),
        ("synth-alpha", ALPHA_WHEEL, "169.254.169.254".to_owned()),
    ] {
        assert_eq!(serve.get(&format!("/simple/{project}/")).status, 200);
        let start = Instant::now();
        let r = serve.get(&format!("/simple/{project}/{file}"));
        assert!(start.elapsed() < Duration::from_secs(5), "{host}");
        assert_eq!(r.status, 502, "{host}: {}", r.text());
        assert!(r.text().contains(&host), "{}", r.text());
        assert!(r.text().contains("redirect"), "{}", r.text());
        // The listed URL was asked; where it pointed was not.
        assert_eq!(up.hits(&format!("/files/{file}")), 1);
    }
    assert!(target.all_paths().is_empty(), "{:?}", target.all_paths());
    let (_, err) = serve.stop();
    assert_eq!(warnings(&err).len(), 2, "{err}");
    assert!(!tree_has_files(&t));

    // Counted as local: the loopback redirect is followed, link-local not.
    let serve = serve_public(&t, "out2", &up, false);
    assert_eq!(serve.get("/simple/synth-beta/").status, 200);
    let r = serve.get(&format!("/simple/synth-beta/{BETA_WHEEL}"));
    assert_eq!((r.status, r.incomplete), (200, false));
    assert_eq!(target.hits(BETA_WHEEL), 1);
    assert_eq!(serve.get("/simple/synth-alpha/").status, 200);
    let r = serve.get(&format!("/simple/synth-alpha/{ALPHA_WHEEL}"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("link-local"), "{}", r.text());
}
