//! Shared parts of the `serve` tests: the `pypi-mirror serve` process, a
//! loopback upstream that can misbehave on purpose, and a plain HTTP/1.1
//! client on raw sockets (so hostile paths reach the server unnormalized).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::installers::*;
use pypi_mirror_testkit::BuildFrom;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use pypi_mirror::BuildOptions;

/// A temp dir under target/ with `up/` (a PEP 503 tree built by
/// pypi-mirror from synthetic wheels: synth-alpha 1.0 and 2.0 (needs
/// Python >= 4), synth-beta 1.0 depending on synth.alpha, synth-gamma 1.0
/// as an sdist) and an empty `out/` for serve.
pub struct Trees {
    pub tmp: tempfile::TempDir,
    pub up: PathBuf,
    pub out: PathBuf,
}

pub fn trees() -> Trees {
    let tmp = tempfile::Builder::new()
        .prefix("pypi-mirror-serve-")
        .tempdir_in(pypi_mirror_testkit::target_dir())
        .unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    write_synth_set(&src);
    let up = tmp.path().join("up");
    let report = pypi_mirror::build(&BuildOptions::new(&up).with_source(&src)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let out = tmp.path().join("out");
    Trees { tmp, up, out }
}

pub const ALPHA_WHEEL: &str = "synth_alpha-1.0-py3-none-any.whl";
pub const BETA_WHEEL: &str = "synth_beta-1.0-py3-none-any.whl";

/// sha256 hex of a file.
pub fn sha256_file(path: &Path) -> String {
    pypi_mirror::indexer::sha256_hex(&fs::read(path).unwrap())
}

/// A running `pypi-mirror serve`, stopped with SIGTERM by [`Serve::stop`]
/// (killed if dropped).
pub struct Serve {
    child: Option<Child>,
    pub port: u16,
    pub port_file: PathBuf,
    log: PathBuf,
}

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pypi-mirror"));
    cmd.env_remove("PYPI_MIRROR_LOG")
        .env_remove("RUST_LOG")
        .env_remove("PYPI_MIRROR_UPSTREAM");
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
        cmd.env_remove(k).env_remove(k.to_lowercase());
    }
    cmd
}

impl Serve {
    /// Start serve on `out` with extra `args`; waits for its port file.
    pub fn start(out: &Path, args: &[&str]) -> Self {
        Self::start_with(out, args, bin())
    }

    pub fn start_with(out: &Path, args: &[&str], mut cmd: Command) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = out.with_extension(format!("serve-{n}"));
        let port_file = base.with_extension(format!("serve-{n}.port"));
        let log = base.with_extension(format!("serve-{n}.log"));
        let child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--out"])
            .arg(out)
            .arg("--port-file")
            .arg(&port_file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut serve = Self {
            child: Some(child),
            port: 0,
            port_file,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = fs::read_to_string(&serve.port_file) {
                if let Ok(p) = s.trim().parse() {
                    serve.port = p;
                    return serve;
                }
            }
            if let Some(status) = serve.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("serve exited ({status}): {}", serve.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "no port file: {}",
                serve.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The command line the running process shows every user (`ps`).
    pub fn cmdline(&self) -> String {
        let pid = self.child.as_ref().unwrap().id();
        let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        String::from_utf8_lossy(&raw).replace('\0', " ")
    }

    /// `http://127.0.0.1:PORT/simple/`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/simple/", self.port)
    }

    pub fn get(&self, path: &str) -> Reply {
        get(self.port, path, &[])
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, wait (at most 20 s), return the exit status and stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal("TERM")
    }

    pub fn signal(&mut self, sig: &str) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, self.stderr());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve did not stop on SIG{sig}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP answer as read off the socket.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body ended before its Content-Length (or the read failed).
    pub incomplete: bool,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` with `Connection: close`, raw: the path is sent as given.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    // The server may close early on a request it refuses: read its answer.
    let _ = s.write_all(req.as_bytes());
    read_reply(&mut s)
}

pub fn read_reply(s: &mut impl Read) -> Reply {
    let mut raw = Vec::new();
    let failed = s.read_to_end(&mut raw).is_err();
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Reply {
            status: 0,
            headers: Vec::new(),
            body: raw,
            incomplete: true,
        };
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body,
        incomplete: failed,
    };
    if let Some(n) = reply
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        reply.incomplete |= reply.body.len() != n;
    }
    reply
}

/// Wait until `f` holds (at most `secs` seconds).
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How the fake upstream misbehaves for one file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Announce the full length, send half, close.
    Truncate,
    /// Full length, last byte changed: the page's hash no longer matches.
    Corrupt,
    /// Send `chunk` bytes every `ms` milliseconds.
    Slow { chunk: usize, ms: u64 },
}

#[derive(Default)]
struct UpState {
    hits: Mutex<HashMap<String, usize>>,
    faults: Mutex<HashMap<String, Fault>>,
    /// Expected `Authorization` header value, if any.
    auth: Option<String>,
    /// Requests that came in absolute form (through a proxy).
    proxied: Mutex<Vec<String>>,
    /// Requests being answered now, and the most there ever were.
    busy: Mutex<(usize, usize)>,
    /// HEAD requests per path (also counted in `hits`).
    heads: Mutex<HashMap<String, usize>>,
}

/// Counts a request as busy until dropped (with its body, for streams).
struct Busy(Arc<UpState>);

impl Busy {
    fn new(st: &Arc<UpState>) -> Self {
        let mut b = st.busy.lock().unwrap();
        b.0 += 1;
        b.1 = b.1.max(b.0);
        Self(st.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.lock().unwrap().0 -= 1;
    }
}

/// A loopback HTTP upstream serving a directory (`dir/` → `dir/index.html`)
/// on its own runtime, counting requests per path.
pub struct FakeUpstream {
    pub port: u16,
    state: Arc<UpState>,
    rt: Option<tokio::runtime::Runtime>,
}

type TestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

impl FakeUpstream {
    pub fn start(root: &Path) -> Self {
        Self::start_auth(root, None)
    }

    /// With `auth`, every request must carry `Authorization: <auth>`.
    pub fn start_auth(root: &Path, auth: Option<String>) -> Self {
        Self::start_full(root, auth, None)
    }

    /// Over TLS with the PEM certificate chain and key given.
    pub fn start_tls(root: &Path, cert: &Path, key: &Path) -> Self {
        use rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls;
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Self::start_full(
            root,
            None,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
    }

    fn start_full(
        root: &Path,
        auth: Option<String>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(UpState {
            auth,
            ..UpState::default()
        });
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let root = root.to_owned();
        let st = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let root = root.clone();
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let root = root.clone();
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(answer(&root, &st, req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => {
                            http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                .await
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                .await
                        }
                    };
                });
            }
        });
        Self {
            port,
            state,
            rt: Some(rt),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn fault(&self, filename: &str, fault: Option<Fault>) {
        let mut f = self.state.faults.lock().unwrap();
        match fault {
            Some(x) => f.insert(filename.to_owned(), x),
            None => f.remove(filename),
        };
    }

    /// Requests for paths ending in `suffix`.
    pub fn hits(&self, suffix: &str) -> usize {
        let hits = self.state.hits.lock().unwrap();
        hits.iter()
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn all_paths(&self) -> Vec<String> {
        self.state.hits.lock().unwrap().keys().cloned().collect()
    }

    /// The most requests it was ever answering at once.
    pub fn max_busy(&self) -> usize {
        self.state.busy.lock().unwrap().1
    }

    pub fn proxied(&self) -> Vec<String> {
        self.state.proxied.lock().unwrap().clone()
    }

    /// Stop listening and drop every connection.
    pub fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(
    root: &Path,
    st: &Arc<UpState>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<TestBody> {
    let busy = Busy::new(st);
    let path = req.uri().path().to_owned();
    if req.uri().scheme().is_some() {
        st.proxied.lock().unwrap().push(req.uri().to_string());
    }
    *st.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    if req.method() == hyper::Method::HEAD {
        *st.heads.lock().unwrap().entry(path.clone()).or_default() += 1;
    }
    let respond = |status: u16, ctype: &str, body: TestBody| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", ctype)
            .body(body)
            .unwrap()
    };
    let full = |b: Vec<u8>| -> TestBody {
        http_body_util::Full::new(Bytes::from(b))
            .map_err(|e| match e {})
            .boxed_unsync()
    };
    if let Some(want) = &st.auth {
        let got = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if got != Some(want.as_str()) {
            return respond(401, "text/plain", full(b"auth".to_vec()));
        }
    }
    let decoded = percent_encoding::percent_decode_str(&path)
        .decode_utf8_lossy()
        .into_owned();
    let mut file = root.join(decoded.trim_start_matches('/'));
    let mut ctype_json = false;
    if decoded.ends_with('/') {
        // A PEP 691 upstream: index.json for clients that ask for JSON.
        let wants_json = req
            .headers()
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("json"));
        if wants_json && file.join("index.json").exists() {
            file = file.join("index.json");
            ctype_json = true;
        } else {
            file = file.join("index.html");
        }
    }
    let Ok(data) = tokio::fs::read(&file).await else {
        return respond(404, "text/plain", full(b"not found".to_vec()));
    };
    let ctype = if ctype_json {
        "application/vnd.pypi.simple.v1+json"
    } else if file.extension().is_some_and(|e| e == "html") {
        "text/html"
    } else {
        "application/octet-stream"
    };
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let fault = st.faults.lock().unwrap().get(&name).copied();
    let len = data.len();
    let body: TestBody = match fault {
        None => full(data),
        Some(Fault::Corrupt) => {
            let mut d = data;
            if let Some(b) = d.last_mut() {
                *b ^= 0xff;
            }
            full(d)
        }
        Some(Fault::Truncate) => {
            let half = Bytes::from(data[..len / 2].to_vec());
            let s = futures_util::stream::iter(vec![
                Ok(Frame::data(half)),
                Err(std::io::Error::other("upstream dies")),
            ]);
            StreamBody::new(s).boxed_unsync()
        }
        Some(Fault::Slow { chunk, ms }) => {
            let chunks: Vec<Bytes> = data.chunks(chunk).map(Bytes::copy_from_slice).collect();
            // Busy until the last chunk is sent.
            let s = futures_util::stream::unfold(
                (chunks.into_iter(), busy),
                move |(mut it, busy)| async move {
                    let c = it.next()?;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Some((Ok::<_, std::io::Error>(Frame::data(c)), (it, busy)))
                },
            );
            StreamBody::new(s).boxed_unsync()
        }
    };
    let mut r = respond(200, ctype, body);
    r.headers_mut().insert("content-length", len.into());
    r
}

/// Every path under `dir` (relative), for before/after comparisons.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

impl Serve {
    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
}

/// A `kB` figure of `/proc/PID/status` (`VmRSS`, `VmHWM`, …), in bytes.
pub fn proc_status_bytes(pid: u32, key: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        * 1024
}

/// Status, headers and body of a [`Canned`] answer.
pub type CannedReply = (u16, Vec<(String, String)>, Vec<u8>);

/// A loopback HTTP server whose every answer a test writes: `reply(path)`
/// gives status, headers and body (an index that fails, a page whose links
/// the test controls, a file that redirects). Counts requests per path.
pub struct Canned {
    pub port: u16,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Canned {
    pub fn start(reply: impl Fn(&str) -> CannedReply + Send + Sync + 'static) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let reply = Arc::new(reply);
        let counted = hits.clone();
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (reply, counted) = (reply.clone(), counted.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                        let path = req.uri().path().to_owned();
                        *counted.lock().unwrap().entry(path.clone()).or_default() += 1;
                        let (status, headers, body) = reply(&path);
                        let mut r = hyper::Response::builder().status(status);
                        for (k, v) in headers {
                            r = r.header(k, v);
                        }
                        let body = http_body_util::Full::new(Bytes::from(body));
                        async move { Ok::<_, Infallible>(r.body(body).unwrap()) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            port,
            hits,
            rt: Some(rt),
        }
    }

    /// Every request answered with `status` and a short text body.
    pub fn status(status: u16) -> Self {
        Self::start(move |_| (status, Vec::new(), b"canned".to_vec()))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Requests for paths ending in `suffix`.
    pub fn hits(&self, suffix: &str) -> usize {
        let hits = self.hits.lock().unwrap();
        hits.iter()
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for Canned {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A loopback URL where nothing listens (a port just freed).
pub fn refusing_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/")
}

impl FakeUpstream {
    /// HEAD requests for paths ending in `suffix` (`hits` counts them too).
    pub fn heads(&self, suffix: &str) -> usize {
        let heads = self.state.heads.lock().unwrap();
        heads
            .iter()
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(_, n)| n)
            .sum()
    }

    /// GET requests for paths ending in `suffix`.
    pub fn gets(&self, suffix: &str) -> usize {
        self.hits(suffix) - self.heads(suffix)
    }
}

/// `METHOD path` with `Connection: close`, raw, like [`get`].
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let _ = s.write_all(req.as_bytes());
    read_reply(&mut s)
}
