//! `pypi-mirror serve`: a pull-through caching index whose cache is the
//! mirror tree itself. Pages come from upstream (merged with the tree's),
//! files from the tree or, streamed and verified, from upstream, and then
//! published into the tree with `add`, so the next build can go offline.
//!
//! Modules: `route` (paths and `Accept`, validated), `crate::index` (the
//! page model, parse and render, shared with `build`), `upstream` (client,
//! credentials), `policy` (what an upstream may make us fetch), `tree` (the
//! tree's state log, followed), `pages` (page cache), `download`
//! (single-flight transfers), `publish` (into the tree),
//! `http` (the handler).

mod download;
mod http;
/// The index model, shared with `build` and `add` (see [`crate::index`]).
pub use crate::index;
mod pages;
mod policy;
mod publish;
pub mod route;
mod tree;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use publish::serve_add_options;
pub use upstream::DEFAULT_UPSTREAM;

/// The environment variable giving upstream URLs (separated by white
/// space) when no `--upstream` does. A process's command line is readable
/// by every user of the host (`ps`), its environment only by its own user
/// and root: the place for an upstream's password.
pub const UPSTREAM_ENV: &str = "PYPI_MIRROR_UPSTREAM";

/// Where `serve` listens unless told otherwise: loopback, devpi's port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3141";

/// Options of `pypi-mirror serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The mirror tree (created if missing).
    pub out: PathBuf,
    /// Upstream simple-index URLs from `--upstream`, first wins.
    pub upstreams: Vec<String>,
    /// The value of [`UPSTREAM_ENV`], used when `upstreams` is empty;
    /// with neither, PyPI.
    pub upstream_env: Option<String>,
    /// Address to listen on (`127.0.0.1:0`: any free port).
    pub listen: String,
    /// Serve the tree only, never asking upstream.
    pub offline: bool,
    /// How long an upstream page is used before it is fetched again.
    pub ttl: Duration,
    /// Write the bound port here once listening (removed on exit).
    pub port_file: Option<PathBuf>,
    /// Concurrent upstream requests at most.
    pub max_upstream: usize,
    /// Worker threads; 0 = number of CPUs.
    pub threads: usize,
    /// Bytes of project pages kept in memory at most; 0 = a default from
    /// the machine's memory (see [`default_page_cache`]).
    pub page_cache: u64,
}

/// The page cache's default size: 1/32 of the machine's memory, between
/// 64 MiB and 1 GiB (PyPI's largest pages take some tens of MiB).
pub fn default_page_cache() -> u64 {
    let total = nix::sys::sysinfo::sysinfo()
        .map(|i| i.ram_total())
        .unwrap_or(2 << 30);
    (total / 32).clamp(64 << 20, 1 << 30)
}

impl ServeOptions {
    /// Defaults for a tree at `out`.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            upstreams: Vec::new(),
            upstream_env: None,
            listen: DEFAULT_LISTEN.to_owned(),
            offline: false,
            ttl: Duration::from_secs(300),
            port_file: None,
            max_upstream: 16,
            threads: 0,
            page_cache: 0,
        }
    }
}

/// Most client connections served at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 1024;

/// Largest request head (request line plus headers) accepted.
const MAX_HEAD: usize = 16 * 1024;

/// How long an in-flight request may still finish after SIGINT/SIGTERM.
const GRACE: Duration = Duration::from_secs(3);

/// The upstreams: `--upstream`s, else those of [`UPSTREAM_ENV`], else
/// PyPI. A password on the command line works, with a warning saying
/// where to put it instead.
fn upstreams(opts: &ServeOptions) -> Result<Vec<upstream::Upstream>, String> {
    let env = opts.upstream_env.as_deref().unwrap_or("");
    let (origin, urls): (&str, Vec<&str>) = if !opts.upstreams.is_empty() {
        (
            "--upstream",
            opts.upstreams.iter().map(String::as_str).collect(),
        )
    } else if !env.trim().is_empty() {
        (UPSTREAM_ENV, env.split_whitespace().collect())
    } else {
        ("--upstream", vec![DEFAULT_UPSTREAM])
    };
    let parsed = urls
        .into_iter()
        .map(|u| upstream::Upstream::parse(origin, u))
        .collect::<Result<Vec<_>, _>>()?;
    if !opts.upstreams.is_empty() {
        for up in parsed.iter().filter(|u| u.has_password()) {
            log::warn!(
                "--upstream {up}: a password on the command line can be read by every user of this host (ps); give the URL in {UPSTREAM_ENV} instead"
            );
        }
    }
    Ok(parsed)
}

/// Run the server until SIGINT or SIGTERM. Errors are one line naming the
/// option or path at fault; nothing is created before the arguments have
/// been checked and the address bound.
pub fn run(opts: &ServeOptions) -> Result<(), String> {
    let upstreams = upstreams(opts)?;
    let addr: SocketAddr = opts.listen.parse().map_err(|_| {
        format!(
            "--listen {:?}: not an address and port (e.g. {DEFAULT_LISTEN})",
            opts.listen
        )
    })?;
    if opts.max_upstream == 0 {
        return Err("--max-upstream: must be at least 1".to_owned());
    }
    if let Ok(md) = std::fs::metadata(&opts.out) {
        if !md.is_dir() {
            return Err(format!("{}: not a directory", opts.out.display()));
        }
    }
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = rt.block_on(serve(opts, upstreams, addr));
    // Publishing waited for above; anything left is a stuck client.
    rt.shutdown_timeout(GRACE);
    result
}

async fn serve(
    opts: &ServeOptions,
    upstreams: Vec<upstream::Upstream>,
    addr: SocketAddr,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--listen {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("--listen {addr}: {e}"))?;
    let out = std::path::absolute(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let state_dir = out.join(crate::STATE_DIR);
    std::fs::create_dir_all(&state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let _lock = lock(&state_dir.join("serve.lock"), &out)?;
    let tmp = state_dir.join("serve-tmp");
    download::reset_tmp(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;

    let stop = CancellationToken::new();
    let work = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(opts.max_upstream));
    let client = if opts.offline {
        None
    } else {
        Some(upstream::Client::new(
            upstreams.clone(),
            Duration::from_secs(10),
        )?)
    };
    let publisher = publish::Publisher::start(out.clone(), stop.clone(), &work);
    let cache_bytes = match opts.page_cache {
        0 => default_page_cache(),
        n => n,
    };
    let pages = Arc::new(pages::Pages::new(
        out.clone(),
        client.clone(),
        opts.ttl,
        limit.clone(),
        cache_bytes,
        Some(publisher.clone()),
    ));
    let online = client.map(|c| {
        let downloads = download::Downloads::new(
            tmp.clone(),
            c.clone(),
            limit.clone(),
            publisher,
            stop.clone(),
            work.clone(),
        );
        (c, Arc::new(downloads))
    });
    let app = Arc::new(http::App {
        out: out.clone(),
        pages,
        online,
        limit,
    });
    if let Some(pf) = &opts.port_file {
        crate::fsutil::write_atomic(pf, format!("{}\n", bound.port()).as_bytes(), false)
            .map_err(|e| format!("--port-file {}: {e}", pf.display()))?;
    }
    let source = if opts.offline {
        "offline: the tree only".to_owned()
    } else {
        let ups: Vec<String> = upstreams.iter().map(ToString::to_string).collect();
        format!(
            "upstream {}, pages kept {} s",
            ups.join(", "),
            opts.ttl.as_secs()
        )
    };
    log::info!(
        "serving http://{bound}/simple/ from {} ({source})",
        out.display()
    );

    let conns = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let signalled = signals(stop.clone())?;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = stop.cancelled() => break,
        };
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: say so, breathe, go on.
                    log::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| http::handle(app.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { log::debug!("connection: {e}") },
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(GRACE, conn).await;
                }
            }
        });
    }
    drop(listener);
    log::info!(
        "{}: stopping; finishing what is being published",
        signalled.await.unwrap_or("stopped")
    );
    work.close();
    work.wait().await;
    conns.close();
    let _ = tokio::time::timeout(GRACE, conns.wait()).await;
    if let Some(pf) = &opts.port_file {
        let _ = std::fs::remove_file(pf);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Cancel `stop` on SIGINT or SIGTERM; the returned task says which.
fn signals(stop: CancellationToken) -> Result<tokio::task::JoinHandle<&'static str>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("signals: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("signals: {e}"))?;
    Ok(tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            () = stop.cancelled() => "stopped",
        };
        stop.cancel();
        name
    }))
}

/// One `serve` per tree: two would share the temporary directory.
fn lock(path: &Path, out: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        if e == nix::errno::Errno::EWOULDBLOCK {
            format!(
                "{}: another pypi-mirror serve uses this mirror",
                out.display()
            )
        } else {
            format!("{}: {e}", path.display())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(opts: &ServeOptions) -> Vec<String> {
        upstreams(opts)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn upstreams_come_from_the_options_else_the_environment_else_pypi() {
        let mut opts = ServeOptions::new("/nonexistent");
        assert_eq!(shown(&opts), [DEFAULT_UPSTREAM]);
        opts.upstream_env = Some(" \n\t".into());
        assert_eq!(shown(&opts), [DEFAULT_UPSTREAM]);
        opts.upstream_env = Some("\n http://a.example/simple/\thttp://u:p@b.example/x \n".into());
        assert_eq!(
            shown(&opts),
            ["http://a.example/simple/", "http://u:***@b.example/x/"]
        );
        opts.upstreams = vec!["http://c.example/".into()];
        assert_eq!(shown(&opts), ["http://c.example/"]);
    }

    #[test]
    fn a_bad_url_is_named_by_where_it_came_from() {
        let mut opts = ServeOptions::new("/nonexistent");
        opts.upstream_env = Some("http://a.example/ file:///x".into());
        let e = upstreams(&opts).unwrap_err();
        assert!(e.starts_with("PYPI_MIRROR_UPSTREAM \"file:///x\""), "{e}");
        opts.upstreams = vec!["nope".into()];
        let e = upstreams(&opts).unwrap_err();
        assert!(e.starts_with("--upstream \"nope\""), "{e}");
    }
}
