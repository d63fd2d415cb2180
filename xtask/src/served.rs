//! The installed `pypi-mirror serve` fetching through an https upstream named by host name.
//!
//! The wheel's `pypi-mirror` is linked by zig against old glibc symbols,
//! not as `cargo build` links it, so what a static-looking check cannot
//! see is run here: name resolution (`localhost`, through the C library),
//! TLS with a CA given by `SSL_CERT_FILE`, and the whole pull-through path.
//! The upstream is python3's `http.server` behind `ssl`, serving a tree
//! the installed `pypi-mirror build` made of the wheel itself; pip
//! downloads the wheel through `serve`, whose own tree starts empty, so
//! the bytes can only have come over https; on SIGTERM `serve` publishes
//! the file into its tree.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::cmd::run;
use crate::element::VERSION;
use crate::wheel::DIST;

/// How long a server may take to write its port file, or to exit.
const PATIENCE: Duration = Duration::from_secs(60);

/// The https upstream: serve the current directory over TLS on 127.0.0.1,
/// any free port, written to argv[3] once listening.
const UPSTREAM_PY: &str = r#"
import http.server, os, ssl, sys
cert, key, port_file = sys.argv[1:4]
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(httpd.server_address[1]))
os.rename(port_file + ".tmp", port_file)
httpd.serve_forever()
"#;

/// A child process that is killed (SIGKILL) and reaped if still running
/// when dropped, so an early error leaves no server behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Check that `program` (the installed `pypi-mirror`) serves `wheel`
/// fetched from an https upstream at `https://localhost:PORT/`, with
/// `python` (the venv's) running the upstream and pip; scratch in `work`.
pub fn check_serves_https(
    program: &Path,
    python: &Path,
    wheel: &Path,
    work: &Path,
) -> Result<(), String> {
    let dir = work.join("https");
    let (from, up_tree, tree, download) = (
        dir.join("from"),
        dir.join("upstream"),
        dir.join("mirror"),
        dir.join("download"),
    );
    for d in [&from, &download] {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let wheel_bytes = fs::read(wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let wheel_name = wheel
        .file_name()
        .ok_or_else(|| format!("{}: no file name", wheel.display()))?;
    fs::copy(wheel, from.join(wheel_name))
        .map_err(|e| format!("copying {}: {e}", wheel.display()))?;
    run(
        "pypi-mirror build (the upstream's tree)",
        Command::new(program)
            .args(["build", "-q", "--from"])
            .arg(&from)
            .arg("--out")
            .arg(&up_tree),
    )?;
    let (ca, cert, key) = test_ca(&dir)?;

    let up_port_file = dir.join("upstream.port");
    let mut upstream = Reaped(
        Command::new(python)
            .current_dir(&up_tree)
            .args(["-c", UPSTREAM_PY])
            .args([&cert, &key, &up_port_file])
            .stdout(Stdio::null())
            .stderr(log(&dir.join("upstream.log"))?)
            .spawn()
            .map_err(|e| format!("{}: {e}", python.display()))?,
    );
    let up_port = port_of(&mut upstream, &up_port_file, "the https upstream")?;

    let serve_port_file = dir.join("serve.port");
    let url = format!("https://localhost:{up_port}/");
    let serve_log = dir.join("serve.log");
    let mut serve = Command::new(program);
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--port-file"])
        .arg(&serve_port_file)
        .arg("--out")
        .arg(&tree)
        .args(["--upstream", &url])
        .env("SSL_CERT_FILE", &ca)
        .stderr(log(&serve_log)?);
    without_proxies(&mut serve).env_remove("SSL_CERT_DIR");
    let mut serve = Reaped(
        serve
            .spawn()
            .map_err(|e| format!("{}: {e}", program.display()))?,
    );
    let serve_port = port_of(&mut serve, &serve_port_file, "pypi-mirror serve")?;

    let index = format!("http://127.0.0.1:{serve_port}/simple/");
    let mut pip = Command::new(python);
    pip.args(["-m", "pip", "--disable-pip-version-check", "--quiet"])
        .args([
            "download",
            "--no-deps",
            "--no-cache-dir",
            "--only-binary=:all:",
        ])
        .args(["--index-url", &index, "--dest"])
        .arg(&download)
        .arg(format!("{DIST}=={VERSION}"));
    without_proxies(&mut pip)
        .env_remove("PIP_FIND_LINKS")
        .env_remove("PIP_EXTRA_INDEX_URL");
    run(&format!("pip download {DIST} from {index}"), &mut pip)
        .map_err(|e| format!("{e}; see {}", serve_log.display()))?;
    let got = download.join(wheel_name);
    if fs::read(&got).ok().as_ref() != Some(&wheel_bytes) {
        return Err(format!(
            "{}: missing or not the wheel served upstream",
            got.display()
        ));
    }

    // SIGTERM: serve publishes what it verified, then exits 0.
    run(
        "kill -TERM pypi-mirror serve",
        Command::new("kill").args(["-TERM", &serve.0.id().to_string()]),
    )?;
    let status = exited(&mut serve, "pypi-mirror serve")?;
    if !status.success() {
        return Err(format!(
            "pypi-mirror serve exited {status} on SIGTERM; see {}",
            serve_log.display()
        ));
    }
    let published = tree.join("dib-pypi").join(wheel_name);
    if fs::read(&published).ok().as_ref() != Some(&wheel_bytes) {
        return Err(format!(
            "{}: not published by pypi-mirror serve",
            published.display()
        ));
    }
    drop(upstream);
    Ok(())
}

/// A test CA, and a server certificate it signed for `localhost` and
/// 127.0.0.1, made with openssl(1) in `dir`: (ca, cert, key).
fn test_ca(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let sh = "set -e; \
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=dib-pypi-test-ca 2>/dev/null; \
        openssl req -newkey rsa:2048 -nodes -keyout key.pem -out cert.csr -subj /CN=localhost 2>/dev/null; \
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext; \
        openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile ext 2>/dev/null";
    run(
        "openssl: a test CA",
        Command::new("sh").current_dir(dir).args(["-c", sh]),
    )?;
    Ok((
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ))
}

/// `cmd` without the proxy variables, which would send loopback requests
/// elsewhere.
fn without_proxies(cmd: &mut Command) -> &mut Command {
    for var in ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"] {
        cmd.env_remove(var).env_remove(var.to_lowercase());
    }
    cmd
}

/// A file for a child's standard error.
fn log(path: &Path) -> Result<fs::File, String> {
    fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The port `child` writes to `file` once listening; an error if it exits
/// first or takes longer than [`PATIENCE`].
fn port_of(child: &mut Reaped, file: &Path, what: &str) -> Result<u16, String> {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if let Ok(text) = fs::read_to_string(file) {
            return text
                .trim()
                .parse()
                .map_err(|_| format!("{}: not a port: {text:?}", file.display()));
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!("{what} exited ({status}) before listening"));
        }
        sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{what}: no {} after {} s",
        file.display(),
        PATIENCE.as_secs()
    ))
}

/// Wait for `child` to exit, at most [`PATIENCE`].
fn exited(child: &mut Reaped, what: &str) -> Result<std::process::ExitStatus, String> {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if let Some(status) = child.0.try_wait().map_err(|e| format!("{what}: {e}"))? {
            return Ok(status);
        }
        sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{what}: still running {} s after SIGTERM",
        PATIENCE.as_secs()
    ))
}
