//! Client connections held to bounded resources: a cap derived from the
//! open-file limit, a send timeout, and eviction of the quietest connection
//! when the cap is reached, so clients that stop reading cannot hold every
//! slot (a slow-reader attack, or many stuck pip processes).
//!
//! Every connection's socket is wrapped in [`Tracked`], which records when
//! a write started to wait (the client takes nothing) and when bytes last
//! moved; a [`Registry`] of live connections is swept for senders stalled
//! longer than the send timeout, and is where the accept loop finds whom to
//! evict. Cancelling a connection drops it with a reset, so the kernel
//! frees what it buffered for a client that will never read it.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Open files kept for everything but client connections: the listener,
/// upstream connections, transfers' temporary files, publishing, logs.
const RESERVED_FILES: u64 = 256;

/// Open files per client connection: its socket and the file it is sent.
const FILES_PER_CONNECTION: u64 = 2;

/// Most bytes a connection's socket holds that the kernel has not sent
/// yet (TCP_NOTSENT_LOWAT). Without it the kernel takes megabytes before a
/// write waits, and a client must then drain a third of them before the
/// next write goes through: a steady reader of a few KiB/s would look
/// stalled for longer than the send timeout. With it, a write waits
/// exactly while the client takes nothing, and a client that takes
/// anything lets the next write through soon. Bytes in flight are not
/// limited, so neither is throughput.
const UNSENT_MAX: u32 = 64 * 1024;

/// How long a connection must have been of no use before it is dropped
/// for a new one: a transfer whose write waits for a moment is not.
const EVICTABLE_AFTER_MS: u64 = 200;

/// Fewest and most connections served at once, whatever the open-file
/// limit says: enough for a build's parallel installers, few enough that
/// their buffers stay a modest amount of memory.
const CONNECTIONS: (usize, usize) = (16, 4096);

/// Raise the soft RLIMIT_NOFILE towards the hard one (a server holding
/// many sockets is what the hard limit is for) and derive the connection
/// cap from what was granted. Returns (cap, open-file limit).
pub fn connection_cap() -> (usize, u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (CONNECTIONS.0, 0);
    };
    // The kernel refuses more than fs.nr_open even with an infinite hard
    // limit: try the hard limit, then a value every kernel accepts.
    let mut granted = soft;
    for want in [hard, hard.min(1 << 20)] {
        if want > granted && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
            granted = want;
            break;
        }
    }
    let by_files = granted.saturating_sub(RESERVED_FILES) / FILES_PER_CONNECTION;
    let cap = usize::try_from(by_files)
        .unwrap_or(usize::MAX)
        .clamp(CONNECTIONS.0, CONNECTIONS.1);
    (cap, granted)
}

/// What the registry knows of one connection. Times are milliseconds since
/// the registry's epoch, plus one, so that 0 can mean "never".
#[derive(Debug)]
pub struct Live {
    epoch: Instant,
    /// Dropping the connection (send timeout, eviction).
    pub cancel: CancellationToken,
    /// Since when a write has been waiting for the client; 0: none is.
    stalled_since: AtomicU64,
    /// When bytes last moved either way, or a request ended.
    last_progress: AtomicU64,
    /// Requests being answered, their bodies included.
    busy: AtomicUsize,
}

impl Live {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    fn progressed(&self) {
        self.last_progress.store(self.now(), Ordering::Relaxed);
    }

    /// How long this connection has been of no use to anyone at `now`:
    /// how long its pending write has waited, or, between requests, how
    /// long it has been idle. `None` while a request is being answered and
    /// its bytes flow (or wait on upstream).
    fn quiet_for(&self, now: u64) -> Option<u64> {
        let stalled = self.stalled_since.load(Ordering::Relaxed);
        if stalled != 0 {
            return Some(now.saturating_sub(stalled));
        }
        (self.busy.load(Ordering::Relaxed) == 0)
            .then(|| now.saturating_sub(self.last_progress.load(Ordering::Relaxed)))
    }

    /// Marks a request as being answered until dropped; move it into the
    /// response body ([`Guarded`]) so that streaming counts too.
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::Relaxed);
        BusyGuard(self.clone())
    }
}

/// See [`Live::busy`].
#[derive(Debug)]
pub struct BusyGuard(Arc<Live>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.progressed();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The live connections.
#[derive(Debug)]
pub struct Registry {
    epoch: Instant,
    send_timeout: Duration,
    next: AtomicU64,
    live: Mutex<HashMap<u64, Arc<Live>>>,
}

impl Registry {
    /// Connections stalled on sending longer than `send_timeout` are
    /// dropped by [`Registry::sweep`].
    pub fn new(send_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            send_timeout,
            next: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        })
    }

    /// Register an accepted connection; it leaves the registry when the
    /// returned stream is dropped.
    pub fn track(self: &Arc<Self>, stream: TcpStream) -> Tracked {
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(UNSENT_MAX) {
            log::debug!("TCP_NOTSENT_LOWAT: {e}");
        }
        let live = Arc::new(Live {
            epoch: self.epoch,
            cancel: CancellationToken::new(),
            stalled_since: AtomicU64::new(0),
            last_progress: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        });
        live.progressed();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.live.lock() {
            map.insert(id, live.clone());
        }
        Tracked {
            stream,
            live,
            registry: self.clone(),
            id,
        }
    }

    /// How often [`Registry::sweep`] should run: often enough that a
    /// stalled sender is dropped close to its timeout.
    pub fn sweep_every(&self) -> Duration {
        (self.send_timeout / 8).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// Drop the connections whose pending write has waited longer than the
    /// send timeout. Returns how many.
    pub fn sweep(&self) -> usize {
        let limit = u64::try_from(self.send_timeout.as_millis()).unwrap_or(u64::MAX);
        let Ok(map) = self.live.lock() else { return 0 };
        let mut dropped = 0;
        for live in map.values() {
            let stalled = live.stalled_since.load(Ordering::Relaxed);
            if stalled != 0 && live.now().saturating_sub(stalled) >= limit {
                if !live.cancel.is_cancelled() {
                    dropped += 1;
                }
                live.cancel.cancel();
            }
        }
        if dropped > 0 {
            log::debug!(
                "dropped {dropped} connection(s) that took nothing for {} s",
                self.send_timeout.as_secs_f32()
            );
        }
        dropped
    }

    /// Drop the connection that has been of no use the longest (stalled on
    /// sending, or idle between requests), to make room for a new one.
    /// `false` when none has been of no use for [`EVICTABLE_AFTER_MS`].
    pub fn evict_quietest(&self) -> bool {
        let Ok(map) = self.live.lock() else {
            return false;
        };
        let now = map.values().next().map_or(0, |l| l.now());
        let victim = map
            .values()
            .filter(|l| !l.cancel.is_cancelled())
            .filter_map(|l| l.quiet_for(now).map(|q| (q, l)))
            .filter(|(q, _)| *q >= EVICTABLE_AFTER_MS)
            .max_by_key(|(q, _)| *q);
        match victim {
            Some((quiet, live)) => {
                log::debug!("connection cap reached: dropping one quiet for {quiet} ms");
                live.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Live connections.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.live.lock().map_or(0, |m| m.len())
    }
}

/// A client socket that reports its progress to the [`Registry`].
#[derive(Debug)]
pub struct Tracked {
    stream: TcpStream,
    live: Arc<Live>,
    registry: Arc<Registry>,
    id: u64,
}

impl Tracked {
    /// This connection's entry.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Pending => {
                let now = self.live.now();
                let _ = self.live.stalled_since.compare_exchange(
                    0,
                    now,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            Poll::Ready(Ok(_)) => {
                self.live.stalled_since.store(0, Ordering::Relaxed);
                self.live.progressed();
            }
            Poll::Ready(Err(_)) => {}
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.live.cancel.is_cancelled() {
            // A reset rather than a FIN: what the kernel still holds for a
            // client that stopped reading is freed now, not kept in an
            // orphaned socket.
            let _ = self.stream.set_zero_linger();
        }
        if let Ok(mut map) = self.registry.live.lock() {
            map.remove(&self.id);
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.live.progressed();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that keeps its request counted as busy until hyper has
/// sent (or dropped) it.
pub struct Guarded<B> {
    inner: B,
    _busy: BusyGuard,
}

impl<B> Guarded<B> {
    /// `inner`, counted busy by `busy` until dropped.
    pub fn new(inner: B, busy: BusyGuard) -> Self {
        Self { inner, _busy: busy }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Guarded<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A tracked server side and its client, over loopback.
    async fn pair(registry: &Arc<Registry>) -> (Tracked, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (registry.track(server), client)
    }

    /// Write to a client that reads nothing until the kernel's buffers are
    /// full and the write waits.
    async fn stall(conn: &mut Tracked) {
        let big = vec![0u8; 64 << 20];
        let r = tokio::time::timeout(Duration::from_millis(300), conn.write_all(&big)).await;
        assert!(r.is_err(), "64 MiB fitted in the socket buffers");
    }

    #[tokio::test]
    async fn a_stalled_sender_is_swept_and_a_busy_one_is_never_evicted() {
        let registry = Registry::new(Duration::ZERO);
        let (mut stalled, _c1) = pair(&registry).await;
        let (busy, _c2) = pair(&registry).await;
        let _answering = busy.live().busy();
        assert_eq!(registry.len(), 2);
        assert_eq!(registry.sweep(), 0, "nothing waits yet");
        stall(&mut stalled).await;
        assert_eq!(registry.sweep(), 1);
        assert!(stalled.live().cancel.is_cancelled());
        assert!(!busy.live().cancel.is_cancelled());
        // The cancelled one is gone as a candidate; the busy one never was.
        assert!(!registry.evict_quietest());
        drop(stalled);
        assert_eq!(registry.len(), 1);
    }

    #[tokio::test]
    async fn a_reader_that_catches_up_is_no_longer_stalled() {
        use tokio::io::AsyncReadExt;
        let registry = Registry::new(Duration::from_secs(3600));
        let (mut conn, mut client) = pair(&registry).await;
        stall(&mut conn).await;
        let now = conn.live().now();
        assert!(conn.live().quiet_for(now).is_some());
        assert!(conn.live().stalled_since.load(Ordering::Relaxed) != 0);
        // The client reads everything from now on.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 20];
            while client.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        // A write that goes through clears the stall.
        let _busy = conn.live().busy();
        tokio::time::timeout(Duration::from_secs(30), conn.write_all(b"x"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conn.live().stalled_since.load(Ordering::Relaxed), 0);
        assert_eq!(conn.live().quiet_for(conn.live().now()), None);
        drop(conn);
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn the_quietest_connection_is_evicted_first() {
        let registry = Registry::new(Duration::from_secs(3600));
        let (mut old, _c1) = pair(&registry).await;
        stall(&mut old).await;
        let (idle, _c2) = pair(&registry).await;
        tokio::time::sleep(Duration::from_millis(EVICTABLE_AFTER_MS + 50)).await;
        assert!(registry.evict_quietest());
        assert!(old.live().cancel.is_cancelled());
        assert!(!idle.live().cancel.is_cancelled());
        assert!(registry.evict_quietest());
        assert!(idle.live().cancel.is_cancelled());
        assert!(!registry.evict_quietest());
    }

    #[test]
    fn the_cap_follows_the_open_file_limit() {
        let (cap, files) = connection_cap();
        assert!((CONNECTIONS.0..=CONNECTIONS.1).contains(&cap));
        if files > RESERVED_FILES + FILES_PER_CONNECTION * CONNECTIONS.0 as u64 {
            let by_files = (files - RESERVED_FILES) / FILES_PER_CONNECTION;
            assert_eq!(cap as u64, by_files.min(CONNECTIONS.1 as u64));
        }
    }
}
