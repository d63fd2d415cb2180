//! Test and benchmark support for `pypi-mirror` and the element's tests: a
//! cached Python tool venv (pip, uv, pip2pi), child commands isolated from
//! the host's pip/uv configuration, a bounded local HTTP server, and
//! [`synth`]etic distributions.
//!
//! A crate of its own, a dev-dependency only, so none of it ships in the
//! `pypi-mirror` library or binary; every test suite of the workspace
//! drives real installers the same way through it.

pub mod synth;

use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Environment variable overriding where [`tools_venv`] puts its venv.
pub const VENV_ENV: &str = "PYPI_MIRROR_TOOLS_VENV";

/// The pip release the tests install, pinned so that a new upstream
/// release cannot change a result.
pub const PIP_VERSION: &str = "26.3";
/// The uv release the tests install (the element's tests use the same).
pub const UV_VERSION: &str = "0.13.9";

/// The Cargo target directory of the running test or bench binary
/// (`target/<profile>/deps/<binary>` → `target`), falling back to the system
/// temp directory.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_owned))
        .unwrap_or_else(std::env::temp_dir)
}

/// A venv holding the installers the tests drive.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The venv directory.
    pub dir: PathBuf,
    /// Its `python`.
    pub python: PathBuf,
    /// Its `uv`.
    pub uv: PathBuf,
}

impl Tools {
    /// `python -m pip ...` of the tool venv, isolated (see [`isolated`]).
    pub fn pip(&self) -> Command {
        let mut cmd = isolated(&self.python);
        cmd.args(["-m", "pip"]);
        cmd
    }

    /// `uv ...`, isolated (see [`isolated`]).
    pub fn uv(&self) -> Command {
        isolated(&self.uv)
    }

    /// Install pip2pi into the venv if needed and return the `dir2pi` path.
    /// Separate from [`tools_venv`] because only the benchmark needs it.
    pub fn dir2pi(&self) -> io::Result<PathBuf> {
        let dir2pi = self.dir.join("bin/dir2pi");
        if !dir2pi.exists() {
            let _lock = lock(&lock_path(&self.dir))?;
            if !dir2pi.exists() {
                // pip2pi 0.8.2 (2021) is the last release; pinned so the
                // comparison cannot change silently. It imports
                // pkg_resources, which newer setuptools releases drop (and
                // venvs of Python >= 3.12 have no setuptools at all), so an
                // older setuptools is pinned alongside.
                run(Command::new(&self.python).args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "pip2pi==0.8.2",
                    "setuptools<81",
                ]))?;
            }
        }
        Ok(dir2pi)
    }
}

/// Create (once; later calls and later runs reuse it) a venv under the target
/// directory with pip [`PIP_VERSION`] and uv [`UV_VERSION`], using the
/// host's normal pip configuration to reach the package registry. The
/// versions are in the directory's name, so a change of pin makes a new one.
pub fn tools_venv() -> io::Result<Tools> {
    let dir = std::env::var_os(VENV_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            target_dir().join(format!(
                "pypi-mirror-tools-venv-pip{PIP_VERSION}-uv{UV_VERSION}"
            ))
        });
    let tools = Tools {
        python: dir.join("bin/python"),
        uv: dir.join("bin/uv"),
        dir: dir.clone(),
    };
    let ready = dir.join(".ready");
    if ready.exists() {
        return Ok(tools);
    }
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    // Test binaries run concurrently; one creates, the others wait.
    let _lock = lock(&lock_path(&dir))?;
    if ready.exists() {
        return Ok(tools);
    }
    let _ = fs::remove_dir_all(&dir);
    run(Command::new("python3").arg("-m").arg("venv").arg(&dir))?;
    run(Command::new(&tools.python).args([
        "-m",
        "pip",
        "install",
        "-q",
        &format!("pip=={PIP_VERSION}"),
        &format!("uv=={UV_VERSION}"),
    ]))?;
    fs::write(&ready, b"")?;
    Ok(tools)
}

/// `DIR.lock` beside the venv (not `with_extension`: the venv's name
/// holds version numbers with dots).
fn lock_path(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

fn lock(path: &Path) -> io::Result<nix::fcntl::Flock<fs::File>> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::from(e))
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A command for `program` that ignores the host's installer configuration:
/// every `PIP_*`, `UV_*` and `PYTHON*` variable and `VIRTUAL_ENV` are
/// removed, pip is pointed at no config file and uv at none either, so only
/// the flags a test passes decide where packages come from.
pub fn isolated(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("PIP_")
            || k.starts_with("UV_")
            || k.starts_with("PYTHON")
            || k == "VIRTUAL_ENV"
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1")
        .env("UV_NO_CONFIG", "1")
        .stdin(Stdio::null());
    cmd
}

/// `python3 -m http.server` on 127.0.0.1 with a kernel-chosen port, serving
/// one directory; killed when dropped. Its request log (one line per
/// request, e.g. `"GET /foo/x.whl.metadata HTTP/1.1" 200`) is kept for
/// assertions.
#[derive(Debug)]
pub struct HttpServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl HttpServer {
    /// Start serving `dir`; waits (at most 20 s) until the port is known.
    pub fn start(dir: &Path, python: &Path) -> io::Result<Self> {
        // Unique per server, beside (not inside) the served directory.
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.with_extension(format!("http-{}-{n}.log", std::process::id()));
        let log_file = fs::File::create(&log)?;
        let mut child = isolated(python)
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(stdout);
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the server never blocks on a full pipe.
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .and_then(|line| {
                let rest = line.split(" port ").nth(1)?;
                rest.split_whitespace().next()?.parse::<u16>().ok()
            });
        match port {
            Some(port) => Ok(Self { child, port, log }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other("http.server did not report its port"))
            }
        }
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The request log so far.
    pub fn requests(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}

/// `file://` URL of an absolute directory, with a trailing slash.
pub fn file_url(dir: &Path) -> String {
    let mut s = String::from("file://");
    // Path separators stay, everything a URL path would misread is escaped.
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    s.extend(percent_encoding::utf8_percent_encode(
        &dir.to_string_lossy(),
        SEGMENT,
    ));
    if !s.ends_with('/') {
        s.push('/');
    }
    s
}

/// `BuildOptions::from_dir` for tests: a build of one source directory.
pub trait BuildFrom {
    /// Add a source directory.
    fn with_source(self, dir: impl Into<PathBuf>) -> Self;
}

impl BuildFrom for pypi_mirror::BuildOptions {
    fn with_source(mut self, dir: impl Into<PathBuf>) -> Self {
        self.from.push(dir.into());
        self
    }
}
