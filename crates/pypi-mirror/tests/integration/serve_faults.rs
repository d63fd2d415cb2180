//! `pypi-mirror serve` when things go wrong: an upstream that dies mid-file
//! or sends the wrong bytes, a client that hangs up, twenty clients at once,
//! hostile paths, an unreachable upstream, bad options, signals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pypi_mirror_testkit::synth;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::serve_common::*;

fn up_args(up: &FakeUpstream) -> Vec<String> {
    vec!["--upstream".into(), up.url()]
}

fn start(t: &Trees, up: &FakeUpstream) -> Serve {
    let args = up_args(up);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Serve::start(&t.out, &args)
}

/// `n` wheels of project "many" (versions 1.0, 1.1, …) in the upstream
/// tree; their source copies, in order.
fn many_upstream(t: &Trees, n: usize) -> Vec<PathBuf> {
    let src = t.tmp.path().join("many");
    fs::create_dir_all(&src).unwrap();
    let files: Vec<_> = (0..n)
        .map(|i| synth::write_wheel(&src, "many", &format!("1.{i}")).unwrap())
        .collect();
    pypi_mirror::add(&t.up, &files).unwrap();
    files
}

/// What `serve` keeps in flight must be gone once a transfer ended.
fn tmp_is_empty(t: &Trees) -> bool {
    listing(&t.out.join(".pypi-mirror/serve-tmp")).is_empty()
}

const BETA: &str = "/simple/synth-beta/synth_beta-1.0-py3-none-any.whl";

/// Wait until serve has published the beta wheel: its page lists it and
/// the transfer's temporary files are gone.
fn wait_published(t: &Trees) {
    wait_for(20, "the wheel published", || {
        fs::read_to_string(t.out.join("synth-beta/index.html"))
            .is_ok_and(|p| p.contains(BETA_WHEEL))
            && tmp_is_empty(t)
    });
}

#[test]
fn upstream_dying_mid_file_publishes_nothing_and_the_next_request_fetches_again() {
    let t = trees();
    let up = FakeUpstream::start(&t.up);
    up.fault(BETA_WHEEL, Some(Fault::Truncate));
    let serve = start(&t, &up);
    let r = serve.get(BETA);
    assert!(r.incomplete || r.status >= 500, "{r:?}");
    let published = t.out.join("synth-beta").join(BETA_WHEEL);
    wait_for(10, "temp files removed", || tmp_is_empty(&t));
    assert!(!published.exists());
    assert!(!t.out.join("synth-beta/index.html").exists());

    up.fault(BETA_WHEEL, None);
    let r = serve.get(BETA);
    assert_eq!(r.status, 200);
    assert!(!r.incomplete);
    assert_eq!(
        r.body,
        fs::read(t.up.join("synth-beta").join(BETA_WHEEL)).unwrap()
    );
    assert_eq!(up.hits(BETA_WHEEL), 2);
    wait_published(&t);
    assert_eq!(
        sha256_file(&published),
        sha256_file(&t.up.join("synth-beta").join(BETA_WHEEL))
    );
    assert!(fs::read_to_string(t.out.join("synth-beta/index.html"))
        .unwrap()
        .contains(BETA_WHEEL));
    // Now from the tree: upstream is not asked again.
    assert_eq!(serve.get(BETA).status, 200);
    assert_eq!(up.hits(BETA_WHEEL), 2);
}

#[test]
fn bytes_that_do_not_match_the_page_are_never_published_nor_completed() {
    let t = trees();
    let up = FakeUpstream::start(&t.up);
    up.fault(BETA_WHEEL, Some(Fault::Corrupt));
    let serve = start(&t, &up);
    let r = serve.get(BETA);
    // The body stops one byte short (or, if the check failed before the
    // answer began, a 502): no client takes it for the file.
    assert!(r.incomplete || r.status == 502, "{r:?}");
    wait_for(10, "temp files removed", || tmp_is_empty(&t));
    assert!(!t.out.join("synth-beta").exists());
    assert!(
        serve.stderr().contains("sha256 mismatch"),
        "{}",
        serve.stderr()
    );
    // Nothing cached: the next request asks upstream again.
    let r = serve.get(BETA);
    assert!(r.incomplete || r.status == 502, "{r:?}");
    assert_eq!(up.hits(BETA_WHEEL), 2);
}

#[test]
fn a_client_hanging_up_mid_download_leaves_nothing_partial() {
    let t = trees();
    let up = FakeUpstream::start(&t.up);
    up.fault(BETA_WHEEL, Some(Fault::Slow { chunk: 64, ms: 40 }));
    let serve = start(&t, &up);
    let mut s = TcpStream::connect(("127.0.0.1", serve.port)).unwrap();
    write!(s, "GET {BETA} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 256];
    let n = s.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(s);
    // While the transfer goes on, the tree never holds a partial file: it
    // is either absent or whole and verified.
    let want = sha256_file(&t.up.join("synth-beta").join(BETA_WHEEL));
    let published = t.out.join("synth-beta").join(BETA_WHEEL);
    wait_for(30, "the transfer to end", || {
        if published.exists() {
            assert_eq!(sha256_file(&published), want);
        }
        published.exists()
    });
    wait_published(&t);
    assert_eq!(up.hits(BETA_WHEEL), 1);
}

#[test]
fn sigterm_mid_download_publishes_nothing_and_exits_cleanly() {
    let t = trees();
    let up = FakeUpstream::start(&t.up);
    up.fault(BETA_WHEEL, Some(Fault::Slow { chunk: 64, ms: 50 }));
    let serve = start(&t, &up);
    let port = serve.port;
    let client = std::thread::spawn(move || get(port, BETA, &[]));
    wait_for(10, "the transfer to start", || up.hits(BETA_WHEEL) == 1);
    std::thread::sleep(Duration::from_millis(200));
    let port_file = serve.port_file.clone();
    let (status, err) = serve.stop();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("SIGTERM: stopping"), "{err}");
    assert!(client.join().unwrap().incomplete);
    assert!(!t.out.join("synth-beta").exists());
    assert!(!t.out.join(".pypi-mirror/serve-tmp").exists());
    assert!(!port_file.exists());
}

#[test]
fn twenty_concurrent_requests_for_one_file_fetch_it_once() {
    let t = trees();
    let up = FakeUpstream::start(&t.up);
    up.fault(BETA_WHEEL, Some(Fault::Slow { chunk: 128, ms: 30 }));
    let serve = start(&t, &up);
    let port = serve.port;
    let want = fs::read(t.up.join("synth-beta").join(BETA_WHEEL)).unwrap();
    let clients: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || get(port, BETA, &[])))
        .collect();
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert!(!r.incomplete);
        assert_eq!(r.body, want);
    }
    assert_eq!(up.hits(BETA_WHEEL), 1);
    assert_eq!(up.hits("/synth-beta/"), 1, "the page too is fetched once");
}

#[test]
fn hostile_paths_read_and_write_nothing_outside_the_tree() {
    let t = trees();
    let up = FakeUpstream::start(&t.up);
    let secret = t.tmp.path().join("secret-1.0.tar.gz");
    fs::write(&secret, "TOP-SECRET").unwrap();
    let serve = start(&t, &up);
    // Fill the tree a little, so there is something to escape from.
    assert_eq!(serve.get(BETA).status, 200);
    wait_published(&t);
    let before = listing(t.tmp.path());
    let hits_before = up.all_paths().len();
    let long = format!("/simple/synth-beta/{}-1.0.tar.gz", "a".repeat(400));
    let very_long = format!("/simple/{}/", "b".repeat(5000));
    let paths = [
        "/simple/../secret-1.0.tar.gz",
        "/simple/../../etc/passwd",
        "/simple/%2e%2e/secret-1.0.tar.gz",
        "/simple/synth-beta/..%2f..%2fsecret-1.0.tar.gz",
        "/simple/synth-beta/%2e%2e%2f%2e%2e%2fsecret-1.0.tar.gz",
        "/simple/%2e%2e%2f%2e%2e/secret-1.0.tar.gz",
        "/simple/synth-beta%2f..%2f..%2f/secret-1.0.tar.gz",
        "/simple/synth-beta/%2Fetc%2Fpasswd",
        "/simple/synth-beta/secret-1.0.tar.gz%00.whl",
        "/simple/synth-beta/..%5c..%5csecret-1.0.tar.gz",
        "/simple/.pypi-mirror/state",
        "/simple/%2epypi-mirror/serve.lock",
        "/simple/synth-beta/.synth_beta-1.0-py3-none-any.whl.1.tmp",
        "/simple/synth-beta/index.html",
        "/../secret-1.0.tar.gz",
        "/etc/passwd",
        "//etc/passwd",
        "/simple//etc/passwd",
        "/simple/synth-beta/../../secret-1.0.tar.gz",
        long.as_str(),
        very_long.as_str(),
    ];
    for p in paths {
        let r = get(serve.port, p, &[]);
        assert!(
            [400, 404, 414, 431].contains(&r.status),
            "{p}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("TOP-SECRET"), "{p}");
    }
    // An absolute-form request line names the same paths.
    let r = get(
        serve.port,
        "http://127.0.0.1/simple/../secret-1.0.tar.gz",
        &[],
    );
    assert!(!r.text().contains("TOP-SECRET"));
    // Oversized headers are refused before any handler runs.
    let big = "x".repeat(64 * 1024);
    let r = get(serve.port, "/simple/", &[("X-Big", &big)]);
    // 431, or the connection closed before the answer could be read.
    assert!(r.status == 431 || r.status == 0, "{}", r.status);
    assert_eq!(listing(t.tmp.path()), before);
    assert_eq!(up.all_paths().len(), hits_before, "{:?}", up.all_paths());
}

#[test]
fn an_unreachable_upstream_serves_the_tree_with_one_warning() {
    let t = trees();
    let mut up = FakeUpstream::start(&t.up);
    let serve = start(&t, &up);
    assert_eq!(serve.get(BETA).status, 200);
    wait_published(&t);
    up.stop();
    // Past the page's TTL the upstream is asked again, and is gone.
    drop(serve);
    let port = up.port;
    let serve = Serve::start(&t.out, &["--upstream", &up.url(), "--ttl", "0"]);
    for _ in 0..5 {
        let r = serve.get("/simple/synth-beta/");
        assert_eq!(r.status, 200);
        assert!(r.text().contains(BETA_WHEEL), "{}", r.text());
        assert_eq!(serve.get(BETA).status, 200);
        // Upstream failed and the tree lacks it: nobody can say (502).
        assert_eq!(serve.get("/simple/synth-alpha/").status, 502);
    }
    let err = serve.stderr();
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains(": warn: ")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn offline_never_asks_upstream() {
    let t = trees();
    let up = FakeUpstream::start(&t.up);
    let serve = start(&t, &up);
    assert_eq!(serve.get(BETA).status, 200);
    wait_published(&t);
    drop(serve);
    let before = up.all_paths().len();
    let hits = up.hits("/synth-beta/");
    let serve = Serve::start(&t.out, &["--upstream", &up.url(), "--offline"]);
    assert_eq!(serve.get("/simple/synth-beta/").status, 200);
    assert_eq!(serve.get(BETA).status, 200);
    assert_eq!(serve.get("/simple/synth-alpha/").status, 404);
    assert_eq!(
        serve
            .get("/simple/synth-alpha/synth_alpha-1.0-py3-none-any.whl")
            .status,
        404
    );
    let root = serve.get("/simple/");
    assert!(root.text().contains("synth-beta/"), "{}", root.text());
    assert_eq!(up.all_paths().len(), before);
    assert_eq!(up.hits("/synth-beta/"), hits);
    let (status, err) = serve.stop();
    assert!(status.success());
    assert!(!err.contains(": warn"), "{err}");
}

#[test]
fn bad_options_say_which_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let file = tmp.path().join("file");
    fs::write(&file, "x").unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--upstream", "ftp://bob:hunter2@x/simple/"],
            "--upstream",
        ),
        (vec!["--upstream", "bob:hunter2@x"], "--upstream"),
        (vec!["--listen", "everywhere"], "--listen"),
        (vec!["--listen", &busy], "--listen"),
        (vec!["--max-upstream", "0"], "--max-upstream"),
    ];
    for (args, option) in cases {
        let o = bin()
            .arg("serve")
            .arg("--out")
            .arg(&out)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("pypi-mirror: error: {option}")),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!out.exists(), "{args:?} created the tree");
    }
    let o = bin().arg("serve").arg("--out").arg(&file).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{}: not a directory", file.display())),
        "{err}"
    );
}

#[test]
fn sigint_stops_an_idle_server_and_a_second_one_is_refused() {
    let t = trees();
    let up = FakeUpstream::start(&t.up);
    let mut serve = start(&t, &up);
    let o = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--out"])
        .arg(&t.out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("another pypi-mirror serve uses this mirror")
    );
    let (status, err) = serve.signal("INT");
    assert!(status.success(), "{err}");
    assert!(err.contains("SIGINT: stopping"), "{err}");
}

#[test]
fn twenty_clients_read_a_big_file_while_it_arrives_at_full_speed() {
    let t = trees();
    // 8 MiB of noise under a wheel's name: every client must get it whole
    // while it is being written (add refuses it afterwards: not a zip).
    let dir = t.up.join("big");
    fs::create_dir_all(&dir).unwrap();
    let name = "big-1.0-py3-none-any.whl";
    let data: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    fs::write(dir.join(name), &data).unwrap();
    let sha = pypi_mirror::indexer::sha256_hex(&data);
    fs::write(
        dir.join("index.html"),
        format!("<a href=\"{name}#sha256={sha}\">{name}</a>"),
    )
    .unwrap();
    let up = FakeUpstream::start(&t.up);
    let serve = start(&t, &up);
    let port = serve.port;
    let path = format!("/simple/big/{name}");
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || get(port, &path, &[]))
        })
        .collect();
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!((r.status, r.incomplete), (200, false));
        assert!(r.body == data, "a client got other bytes");
    }
    assert_eq!(up.hits(name), 1);
}

#[test]
fn fifty_small_files_in_a_row_arrive_whole() {
    // A small file arrives in one chunk: the client is woken as soon as it
    // is announced, so this catches a transfer that announces bytes before
    // they are in the temporary file.
    let t = trees();
    let files = many_upstream(&t, 50);
    let up = FakeUpstream::start(&t.up);
    let serve = start(&t, &up);
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let r = serve.get(&format!("/simple/many/{name}"));
        assert_eq!((r.status, r.incomplete), (200, false), "{name}");
        assert!(r.body == fs::read(f).unwrap(), "{name}");
    }
}

#[test]
fn upstream_requests_are_capped() {
    let t = trees();
    let files = many_upstream(&t, 6);
    let up = FakeUpstream::start(&t.up);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    for n in &names {
        up.fault(n, Some(Fault::Slow { chunk: 256, ms: 40 }));
    }
    let serve = Serve::start(&t.out, &["--upstream", &up.url(), "--max-upstream", "2"]);
    // The page first, so only the six file transfers compete.
    assert_eq!(serve.get("/simple/many/").status, 200);
    let port = serve.port;
    let clients: Vec<_> = names
        .iter()
        .map(|n| {
            let path = format!("/simple/many/{n}");
            std::thread::spawn(move || get(port, &path, &[]))
        })
        .collect();
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!((r.status, r.incomplete), (200, false));
    }
    assert_eq!(up.max_busy(), 2, "transfers at once");
}
