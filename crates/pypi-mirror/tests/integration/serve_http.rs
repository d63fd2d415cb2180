//! `pypi-mirror serve` as an HTTP server: bounded connections (slow
//! readers are dropped after the send timeout and never starve page
//! requests, the quietest connection makes room at the cap, steady slow
//! readers are kept, idle connections closed) and HTTP caching (HEAD
//! without a download, ETag and Last-Modified, 304, Cache-Control, ranges).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::serve_common::*;

/// A file of the tree big enough to fill any socket buffer.
const BIG: &str = "synth_alpha-9.0-py3-none-any.whl";
const BIG_LEN: usize = 6 << 20;

/// Incompressible bytes, the same for the same seed.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The built tree with [`BIG`] dropped in beside synth-alpha's files (a
/// file of the tree is served by name).
fn tree_with_big_file() -> (Trees, Vec<u8>) {
    let t = trees();
    let data = noise(BIG_LEN, 0x9e37_79b9_7f4a_7c15);
    fs::write(t.up.join("synth-alpha").join(BIG), &data).unwrap();
    (t, data)
}

/// serve --offline over `tree` with the hidden limits of `env`.
fn serve_tree(tree: &Path, env: &[(&str, &str)]) -> Serve {
    let mut cmd = bin();
    for (k, v) in env {
        cmd.env(k, v);
    }
    Serve::start_with(tree, &["--offline"], cmd)
}

fn big_path() -> String {
    format!("/simple/synth-alpha/{BIG}")
}

/// Raise this process's open-file limit to at least `want`, or fail
/// saying why the test cannot run here.
fn allow_open_files(want: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= want,
        "this test needs {want} open files; the hard limit is {hard}"
    );
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).unwrap();
    }
}

/// A client that asks for `path` and reads nothing; its receive buffer is
/// small so that the kernel holds little for it.
fn slow_reader(port: u16, path: &str) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    // A full accept backlog drops SYNs; the kernel retries them.
    sock.connect_timeout(&addr.into(), Duration::from_secs(30))
        .unwrap();
    let mut s: TcpStream = sock.into();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .unwrap();
    s
}

/// Wait until the server has answered every reader (bytes or an end are
/// waiting in each), i.e. accepted it and started sending.
fn wait_all_answered(readers: &[TcpStream], secs: u64) {
    for r in readers {
        r.set_nonblocking(true).unwrap();
    }
    wait_for(secs, "the server to answer every slow reader", || {
        readers.iter().all(|r| {
            let mut b = [0u8; 1];
            !matches!(r.peek(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock)
        })
    });
    for r in readers {
        r.set_nonblocking(false).unwrap();
    }
}

/// Whether the server has dropped this reader: read what is buffered and
/// see an end (EOF or reset) rather than a wait. Returns (ended, bytes).
fn drain(r: &mut TcpStream) -> (bool, usize) {
    r.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (true, total),
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return (false, total),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (true, total),
        }
    }
}

/// A page request from a fresh connection must be answered in under a
/// second while the slow readers hold their connections.
fn pages_answer_quickly(port: u16) {
    for _ in 0..5 {
        let start = Instant::now();
        let page = get(port, "/simple/synth-alpha/", &[]);
        let took = start.elapsed();
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(page.text().contains(ALPHA_WHEEL));
        assert!(took < Duration::from_secs(1), "a page took {took:?}");
    }
}

#[test]
fn a_thousand_slow_readers_starve_no_one_and_are_dropped_after_the_send_timeout() {
    const READERS: usize = 1030;
    allow_open_files(READERS as u64 + 512);
    let (t, _) = tree_with_big_file();
    let send_timeout = 6;
    let serve = serve_tree(
        &t.up,
        &[("PYPI_MIRROR_SEND_TIMEOUT", &send_timeout.to_string())],
    );
    let mut readers: Vec<TcpStream> = (0..READERS)
        .map(|_| slow_reader(serve.port, &big_path()))
        .collect();
    let opened = Instant::now();
    wait_all_answered(&readers, 60);
    pages_answer_quickly(serve.port);

    // Now every one of them stalls the server's writes: each is dropped
    // once it has taken nothing for the send timeout, short of the whole
    // body. Reading earlier would be taking something: wait first.
    std::thread::sleep(Duration::from_secs(send_timeout + 2));
    let deadline = opened + Duration::from_secs(3 * send_timeout + 60);
    let mut pending: Vec<&mut TcpStream> = readers.iter_mut().collect();
    let mut ended = 0;
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} slow readers still connected",
            pending.len()
        );
        pending.retain_mut(|r| {
            let (done, bytes) = drain(r);
            assert!(bytes < BIG_LEN, "a slow reader got the whole file");
            ended += usize::from(done);
            !done
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ended, READERS);
    // Still serving.
    assert_eq!(serve.get("/simple/synth-alpha/").status, 200);
    let (status, log) = serve.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn at_the_connection_cap_the_quietest_connection_makes_room() {
    const CAP: usize = 32;
    const READERS: usize = 150;
    allow_open_files(READERS as u64 + 512);
    let (t, _) = tree_with_big_file();
    // A send timeout far away: only eviction can free a slot.
    let serve = serve_tree(
        &t.up,
        &[
            ("PYPI_MIRROR_MAX_CONNECTIONS", &CAP.to_string()),
            ("PYPI_MIRROR_SEND_TIMEOUT", "600"),
        ],
    );
    let mut readers: Vec<TcpStream> = (0..READERS)
        .map(|_| slow_reader(serve.port, &big_path()))
        .collect();
    wait_all_answered(&readers, 60);
    pages_answer_quickly(serve.port);
    // Give the last evictions' resets time to arrive, then count.
    std::thread::sleep(Duration::from_millis(500));
    let alive = readers
        .iter_mut()
        .map(drain)
        .filter(|(ended, _)| !ended)
        .count();
    assert!(alive <= CAP, "{alive} connections kept with a cap of {CAP}");
    assert!(
        alive > 0,
        "every slow reader was dropped, not only the excess"
    );
}

#[test]
fn a_slow_but_steady_reader_is_not_dropped() {
    let (t, data) = tree_with_big_file();
    let serve = serve_tree(&t.up, &[("PYPI_MIRROR_SEND_TIMEOUT", "2")]);
    let mut s = slow_reader(serve.port, &big_path());
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // 64 KiB every 200 ms for three send timeouts, then the rest at once.
    let mut raw = Vec::new();
    let mut sip = vec![0u8; 64 * 1024];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        let n = s.read(&mut sip).unwrap();
        assert!(n > 0, "dropped after {} bytes", raw.len());
        raw.extend_from_slice(&sip[..n]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let reply = loop {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        if raw.len() >= split + BIG_LEN {
            break raw.split_off(split);
        }
        let n = s.read(&mut sip).unwrap();
        assert!(n > 0, "dropped after {} bytes", raw.len());
        raw.extend_from_slice(&sip[..n]);
    };
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    assert_eq!(reply.len(), data.len());
    assert!(reply == data, "the body differs from the file");
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let t = trees();
    let serve = serve_tree(&t.up, &[("PYPI_MIRROR_IDLE_TIMEOUT", "1")]);
    let mut s = TcpStream::connect(("127.0.0.1", serve.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /simple/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The answer, then (with no second request) the end of the connection.
    let start = Instant::now();
    loop {
        let n = s
            .read(&mut buf)
            .expect("the idle connection was not closed");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(start.elapsed() < Duration::from_secs(20));
}

fn header_of(r: &Reply, name: &str) -> String {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers))
        .to_owned()
}

#[test]
fn head_of_a_file_not_in_the_tree_downloads_nothing_and_get_downloads_it_once() {
    let t = trees();
    let up = FakeUpstream::start(&t.up);
    let serve = Serve::start(&t.out, &["--upstream", &up.url()]);
    let path = format!("/simple/synth-alpha/{ALPHA_WHEEL}");
    let size = fs::metadata(t.up.join("synth-alpha").join(ALPHA_WHEEL))
        .unwrap()
        .len();

    let head = request(serve.port, "HEAD", &path, &[]);
    assert_eq!(head.status, 200, "{}", serve.stderr());
    assert_eq!(header_of(&head, "content-length"), size.to_string());
    assert!(head.body.is_empty());
    assert_eq!(up.heads(ALPHA_WHEEL), 1);
    assert_eq!(up.gets(ALPHA_WHEEL), 0, "HEAD started a download");

    let body = serve.get(&path);
    assert_eq!(body.status, 200);
    assert!(!body.incomplete);
    assert_eq!(
        pypi_mirror::indexer::sha256_hex(&body.body),
        sha256_file(&t.up.join("synth-alpha").join(ALPHA_WHEEL))
    );
    assert_eq!(up.gets(ALPHA_WHEEL), 1);

    // Once published, HEAD answers from the tree: upstream is not asked.
    let published = t.out.join("synth-alpha").join(ALPHA_WHEEL);
    wait_for(20, "the file to be published", || published.exists());
    let head = request(serve.port, "HEAD", &path, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(header_of(&head, "content-length"), size.to_string());
    assert_eq!(header_of(&head, "accept-ranges"), "bytes");
    assert!(head.header("etag").is_some());
    assert_eq!(up.heads(ALPHA_WHEEL), 1);
    assert_eq!(up.gets(ALPHA_WHEEL), 1);

    // HEAD of something upstream does not have is a 404, still no GET.
    let missing = request(
        serve.port,
        "HEAD",
        "/simple/synth-alpha/synth_alpha-7.0-py3-none-any.whl",
        &[],
    );
    assert_eq!(missing.status, 404);
    assert_eq!(up.gets("synth_alpha-7.0-py3-none-any.whl"), 0);
}

#[test]
fn pages_carry_validators_and_cache_control_and_answer_304() {
    let t = trees();
    let up = FakeUpstream::start(&t.up);
    let serve = Serve::start(&t.out, &["--upstream", &up.url(), "--ttl", "0"]);
    let page = "/simple/synth-alpha/";
    let first = serve.get(page);
    assert_eq!(first.status, 200);
    assert_eq!(header_of(&first, "cache-control"), "max-age=0");
    let etag = header_of(&first, "etag");
    let modified = header_of(&first, "last-modified");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let json = get(
        serve.port,
        page,
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
    );
    assert_ne!(header_of(&json, "etag"), etag, "HTML and JSON share a tag");

    let weak = format!("W/{etag}");
    let listed = format!("\"nope\", {etag}");
    for inm in [etag.as_str(), weak.as_str(), listed.as_str(), "*"] {
        let r = get(serve.port, page, &[("If-None-Match", inm)]);
        assert_eq!(r.status, 304, "If-None-Match: {inm}");
        assert!(r.body.is_empty());
        assert_eq!(header_of(&r, "etag"), etag);
        assert_eq!(header_of(&r, "vary"), "Accept");
        assert_eq!(header_of(&r, "cache-control"), "max-age=0");
    }
    let r = get(serve.port, page, &[("If-None-Match", "\"nope\"")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, first.body);
    let r = get(serve.port, page, &[("If-Modified-Since", &modified)]);
    assert_eq!(r.status, 304);
    let r = get(
        serve.port,
        page,
        &[("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")],
    );
    assert_eq!(r.status, 200);
    let head = request(serve.port, "HEAD", page, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(header_of(&head, "etag"), etag);
    assert_eq!(
        header_of(&head, "content-length"),
        first.body.len().to_string()
    );

    // The page changes upstream (--ttl 0: fetched again): a new tag, a
    // later date, and the old tag no longer matches.
    for index in ["index.html", "index.json"] {
        let up_page = t.up.join("synth-alpha").join(index);
        if let Ok(text) = fs::read_to_string(&up_page) {
            let changed = text.replace("synth_alpha-2.0-", "synth_alpha-2.1-");
            assert_ne!(changed, text);
            fs::write(&up_page, changed).unwrap();
        }
    }
    let second = get(serve.port, page, &[("If-None-Match", &etag)]);
    assert_eq!(second.status, 200, "a changed page answered 304");
    assert_ne!(header_of(&second, "etag"), etag);
    let later = httpdate::parse_http_date(&header_of(&second, "last-modified")).unwrap();
    assert!(later > httpdate::parse_http_date(&modified).unwrap());
    let r = get(serve.port, page, &[("If-Modified-Since", &modified)]);
    assert_eq!(r.status, 200);
}

fn tree_file(t: &Trees, name: &str) -> (String, PathBuf) {
    (
        format!("/simple/synth-alpha/{name}"),
        t.up.join("synth-alpha").join(name),
    )
}

#[test]
fn tree_files_carry_validators_and_answer_304() {
    let t = trees();
    let serve = serve_tree(&t.up, &[]);
    let (path, file) = tree_file(&t, ALPHA_WHEEL);
    let r = serve.get(&path);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, fs::read(&file).unwrap());
    assert_eq!(
        header_of(&r, "cache-control"),
        "max-age=31536000, immutable"
    );
    assert_eq!(header_of(&r, "accept-ranges"), "bytes");
    let etag = header_of(&r, "etag");
    let modified = header_of(&r, "last-modified");
    let mtime = fs::metadata(&file).unwrap().modified().unwrap();
    assert_eq!(modified, httpdate::fmt_http_date(mtime));

    let r = get(serve.port, &path, &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(header_of(&r, "etag"), etag);
    let r = get(serve.port, &path, &[("If-Modified-Since", &modified)]);
    assert_eq!(r.status, 304);
    let before = httpdate::fmt_http_date(mtime - Duration::from_secs(3600));
    let r = get(serve.port, &path, &[("If-Modified-Since", &before)]);
    assert_eq!(r.status, 200);
    // If-None-Match decides alone when both are sent.
    let r = get(
        serve.port,
        &path,
        &[
            ("If-None-Match", "\"other\""),
            ("If-Modified-Since", &modified),
        ],
    );
    assert_eq!(r.status, 200);
    // The .metadata beside it is a file of the tree too.
    let md = serve.get(&format!("{path}.metadata"));
    assert_eq!(md.status, 200);
    let r = get(
        serve.port,
        &format!("{path}.metadata"),
        &[("If-None-Match", &header_of(&md, "etag"))],
    );
    assert_eq!(r.status, 304);
}

#[test]
fn single_ranges_of_tree_files_are_answered_206() {
    let (t, data) = tree_with_big_file();
    let serve = serve_tree(&t.up, &[]);
    let (small_path, small_file) = tree_file(&t, ALPHA_WHEEL);
    let small = fs::read(small_file).unwrap();
    let len = small.len();
    let range = |path: &str, r: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("Range", r)];
        h.extend_from_slice(extra);
        get(serve.port, path, &h)
    };

    let r = range(&small_path, "bytes=10-19", &[]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &small[10..20]);
    assert_eq!(header_of(&r, "content-range"), format!("bytes 10-19/{len}"));
    let r = range(&small_path, "bytes=-7", &[]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &small[len - 7..]);
    let r = range(&small_path, &format!("bytes={}-", len - 3), &[]);
    assert_eq!(r.body, &small[len - 3..]);
    let r = range(&small_path, &format!("bytes={len}-"), &[]);
    assert_eq!(r.status, 416);
    assert_eq!(header_of(&r, "content-range"), format!("bytes */{len}"));
    // Several ranges: the whole file.
    let r = range(&small_path, "bytes=0-1,5-6", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, small);

    // If-Range: the range only for the version the client has.
    let etag = header_of(&serve.get(&small_path), "etag");
    let r = range(&small_path, "bytes=0-3", &[("If-Range", &etag)]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &small[..4]);
    let r = range(&small_path, "bytes=0-3", &[("If-Range", "\"older\"")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, small);

    // A range bigger than what is read in one go is streamed.
    let big = big_path();
    let (a, b) = (1000, 1000 + (3 << 20));
    let r = range(&big, &format!("bytes={a}-{b}"), &[]);
    assert_eq!(r.status, 206);
    assert!(!r.incomplete);
    assert!(r.body == data[a..=b], "streamed range differs");
    assert_eq!(
        header_of(&r, "content-range"),
        format!("bytes {a}-{b}/{BIG_LEN}")
    );
    let r = range(&big, "bytes=-100", &[]);
    assert_eq!(r.body, &data[BIG_LEN - 100..]);
}
