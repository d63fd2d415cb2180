//! `pypi-mirror serve`: a pull-through caching index whose cache is the
//! mirror tree itself. Pages come from upstream (merged with the tree's),
//! files from the tree or, streamed and verified, from upstream, and then
//! published into the tree with `add`, so the next build can go offline.
//!
//! Modules: `route` (paths and `Accept`, validated), `crate::index` (the
//! page model, parse and render, shared with `build`), `upstream` (client,
//! credentials), `policy` (what an upstream may make us fetch), `tree` (the
//! tree's state log, followed), `pages` (page cache), `download`
//! (single-flight transfers), `publish` (into the tree), `http` (the
//! handler), `caching` (validators, conditional and range requests), `conn`
//! (connection cap, send timeout, eviction).

mod caching;
mod conn;
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
    /// A client that takes no byte of a response for this long is dropped.
    pub send_timeout: Duration,
    /// A connection idle between requests (or slow to send its request
    /// head) for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; `None`: derived from the open-file
    /// limit.
    pub max_connections: Option<usize>,
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
            send_timeout: SEND_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_connections: None,
        }
    }

    /// Apply the hidden settings of the environment variables
    /// [`SEND_TIMEOUT_ENV`], [`IDLE_TIMEOUT_ENV`] (seconds, fractions
    /// allowed) and [`MAX_CONNECTIONS_ENV`] given by `var` (tests make the
    /// bounds small with them).
    pub fn with_env_limits(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let secs = |name: &str| -> Result<Option<Duration>, String> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| format!("{name} {v:?}: not a number of seconds above 0"))
                })
                .transpose()
        };
        if let Some(d) = secs(SEND_TIMEOUT_ENV)? {
            self.send_timeout = d;
        }
        if let Some(d) = secs(IDLE_TIMEOUT_ENV)? {
            self.idle_timeout = d;
        }
        if let Some(v) = var(MAX_CONNECTIONS_ENV) {
            let n = v.trim().parse::<usize>().ok().filter(|n| *n > 0);
            self.max_connections = Some(n.ok_or_else(|| {
                format!("{MAX_CONNECTIONS_ENV} {v:?}: not a number of connections above 0")
            })?);
        }
        Ok(self)
    }
}

/// How long a client may take no byte of a response before it is dropped:
/// long enough for any stall of a live network, short enough that stuck
/// clients do not pile up.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection may sit between requests, or take to send a
/// request head, before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Overrides [`SEND_TIMEOUT`] (seconds).
pub const SEND_TIMEOUT_ENV: &str = "PYPI_MIRROR_SEND_TIMEOUT";

/// Overrides [`IDLE_TIMEOUT`] (seconds).
pub const IDLE_TIMEOUT_ENV: &str = "PYPI_MIRROR_IDLE_TIMEOUT";

/// Overrides the connection cap derived from the open-file limit.
pub const MAX_CONNECTIONS_ENV: &str = "PYPI_MIRROR_MAX_CONNECTIONS";

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
    let opts = &opts.clone().with_env_limits(|k| std::env::var(k).ok())?;
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
        ttl: opts.ttl,
        validators: caching::PageValidators::default(),
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
    let signalled = signals(stop.clone())?;
    let conns = accept_loop(opts, &listener, &app, &stop).await;
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

/// Accept and serve connections until `stop`; returns the connections
/// still being served. At most the cap is served at once: beyond it the
/// quietest connection (stalled on sending, or idle) makes room; when
/// every one is busy answering, the new one waits for a slot.
async fn accept_loop(
    opts: &ServeOptions,
    listener: &tokio::net::TcpListener,
    app: &Arc<http::App>,
    stop: &CancellationToken,
) -> TaskTracker {
    let (derived, files) = conn::connection_cap();
    let cap = opts.max_connections.unwrap_or(derived);
    log::debug!(
        "at most {cap} connections (open files: {files}); send timeout {} s, idle timeout {} s",
        opts.send_timeout.as_secs_f32(),
        opts.idle_timeout.as_secs_f32()
    );
    let registry = conn::Registry::new(opts.send_timeout);
    let sweeper = {
        let registry = registry.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(registry.sweep_every());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => { registry.sweep(); }
                    () = stop.cancelled() => break,
                }
            }
        })
    };
    let conns = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(cap));
    'accept: loop {
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
        let permit = loop {
            if let Ok(p) = slots.clone().try_acquire_owned() {
                break p;
            }
            registry.evict_quietest();
            // An evicted connection frees its slot as soon as its task
            // sees the cancellation; with none evictable, look again soon
            // (a busy one may have stalled since).
            tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => break p,
                    Err(_) => break 'accept,
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = stop.cancelled() => break 'accept,
            }
        };
        let _ = stream.set_nodelay(true);
        let stream = registry.track(stream);
        let live = stream.live().clone();
        let app = app.clone();
        let stop = stop.clone();
        let idle_timeout = opts.idle_timeout;
        conns.spawn(async move {
            let _permit = permit;
            let answering = live.clone();
            let service = hyper::service::service_fn(move |req| {
                let busy = answering.busy();
                let app = app.clone();
                async move {
                    let resp = http::handle(app, req).await?;
                    Ok::<_, std::convert::Infallible>(resp.map(|b| conn::Guarded::new(b, busy)))
                }
            });
            // hyper's header read timeout runs from the moment it waits
            // for a request head: the idle keep-alive timeout too.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(idle_timeout)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { log::debug!("connection: {e}") },
                () = live.cancel.cancelled() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = tokio::time::timeout(GRACE, conn) => {}
                        () = live.cancel.cancelled() => {}
                    }
                }
            }
        });
    }
    sweeper.abort();
    conns
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
    fn the_hidden_limits_come_from_the_environment_and_bad_ones_are_named() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let opts = ServeOptions::new("/nonexistent");
        let same = opts.clone().with_env_limits(env(&[])).unwrap();
        assert_eq!(same.send_timeout, SEND_TIMEOUT);
        assert_eq!(same.idle_timeout, IDLE_TIMEOUT);
        assert_eq!(same.max_connections, None);
        let set = opts
            .clone()
            .with_env_limits(env(&[
                (SEND_TIMEOUT_ENV, "2.5"),
                (IDLE_TIMEOUT_ENV, " 1 "),
                (MAX_CONNECTIONS_ENV, "7"),
            ]))
            .unwrap();
        assert_eq!(set.send_timeout, Duration::from_millis(2500));
        assert_eq!(set.idle_timeout, Duration::from_secs(1));
        assert_eq!(set.max_connections, Some(7));
        for (k, v) in [
            (SEND_TIMEOUT_ENV, "0"),
            (SEND_TIMEOUT_ENV, "soon"),
            (IDLE_TIMEOUT_ENV, "-1"),
            (MAX_CONNECTIONS_ENV, "0"),
        ] {
            let e = opts
                .clone()
                .with_env_limits(|name| (name == k).then(|| v.to_owned()))
                .unwrap_err();
            assert!(e.starts_with(&format!("{k} {v:?}: ")), "{e}");
        }
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
