//! Pull-through downloads: one upstream transfer per file however many
//! clients ask, written to a temporary file and hashed on the way; every
//! client reads that file as it grows. The last byte is held back until
//! the hash matches the page, so a client never completes a body that is
//! not the file upstream promised; only then is the file published.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::publish::Publisher;
use super::upstream::{describe, Client};

/// Bytes of a download withheld from clients until it is verified.
const HOLD_BACK: u64 = 1;

/// Largest file accepted from upstream (the biggest wheels on PyPI are a
/// few GiB); bounds the disk one answer can fill.
const MAX_FILE: u64 = 16 << 30;

/// Read size when streaming to a client.
const CHUNK: usize = 64 * 1024;

/// How a transfer stands, as every client sees it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Upstream answered 200: `total` is its length, if it gave one.
    pub started: bool,
    /// Content-Length from upstream.
    pub total: Option<u64>,
    /// Bytes in the temporary file.
    pub written: u64,
    /// Set once: `Ok` when complete (and verified if a hash was known).
    pub end: Option<Result<(), Arc<str>>>,
}

/// One transfer in progress.
#[derive(Debug)]
pub struct Download {
    path: PathBuf,
    progress: watch::Receiver<Progress>,
}

/// What the server knows about the file to fetch.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// The upstream whose page listed it: its client, policy and
    /// credentials fetch it.
    pub upstream: usize,
    /// Normalized project.
    pub project: String,
    /// Distribution file name.
    pub filename: String,
    /// Upstream URL.
    pub url: Url,
    /// sha256 from the page; without one the file is served, not kept.
    pub sha256: Option<String>,
    /// What the page said of the file, recorded with it.
    pub listed: crate::Listed,
}

/// Every transfer in progress, by `project/filename`.
#[derive(Debug)]
pub struct Downloads {
    tmp: PathBuf,
    client: Client,
    limit: Arc<Semaphore>,
    publisher: Publisher,
    stop: CancellationToken,
    tracker: TaskTracker,
    map: Mutex<HashMap<String, Arc<Download>>>,
    seq: AtomicU64,
}

impl Downloads {
    /// `tmp` must be on the tree's file system (publishing hard-links).
    pub fn new(
        tmp: PathBuf,
        client: Client,
        limit: Arc<Semaphore>,
        publisher: Publisher,
        stop: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        Self {
            tmp,
            client,
            limit,
            publisher,
            stop,
            tracker,
            map: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
        }
    }

    /// Join the transfer of `want`, starting it if none runs; returns the
    /// transfer and the temporary file opened for reading.
    pub fn join(self: &Arc<Self>, want: &Wanted) -> io::Result<(Arc<Download>, std::fs::File)> {
        let key = format!("{}/{}", want.project, want.filename);
        let mut map = self
            .map
            .lock()
            .map_err(|_| io::Error::other("download table poisoned"))?;
        // The task removes its entry before deleting the file, so a file
        // found through the table can still be opened.
        if let Some(d) = map.get(&key) {
            let f = std::fs::File::open(&d.path)?;
            return Ok((d.clone(), f));
        }
        let dir = self
            .tmp
            .join(self.seq.fetch_add(1, Ordering::Relaxed).to_string());
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(&want.filename);
        let writer = match std::fs::File::create_new(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let reader = std::fs::File::open(&path)?;
        let (tx, rx) = watch::channel(Progress::default());
        let d = Arc::new(Download {
            path: path.clone(),
            progress: rx,
        });
        map.insert(key.clone(), d.clone());
        drop(map);
        let me = self.clone();
        let want = want.clone();
        self.tracker.spawn(async move {
            me.run(key, want, tokio::fs::File::from_std(writer), tx, path, dir)
                .await;
        });
        Ok((d, reader))
    }

    async fn run(
        self: Arc<Self>,
        key: String,
        want: Wanted,
        file: tokio::fs::File,
        tx: watch::Sender<Progress>,
        path: PathBuf,
        dir: PathBuf,
    ) {
        let result = self.transfer(&want, file, &tx).await;
        match result {
            Ok(verified) => {
                tx.send_modify(|p| p.end = Some(Ok(())));
                if verified {
                    match self.publisher.publish(path, want.listed.clone()).await {
                        Ok(()) => log::info!("{key}: published into the mirror"),
                        Err(e) => log::warn!("{key}: not published: {e}"),
                    }
                }
            }
            Err(e) => {
                log::warn!("{key}: {e}; nothing published");
                tx.send_modify(|p| p.end = Some(Err(e.into())));
            }
        }
        if let Ok(mut map) = self.map.lock() {
            map.remove(&key);
        }
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }

    /// Fetch into `file`; `Ok(true)` when the hash matched, `Ok(false)`
    /// when the page gave none to check.
    async fn transfer(
        &self,
        want: &Wanted,
        mut file: tokio::fs::File,
        tx: &watch::Sender<Progress>,
    ) -> Result<bool, String> {
        let _permit = tokio::select! {
            p = self.limit.acquire() => p.map_err(|_| "shutting down".to_owned())?,
            () = self.stop.cancelled() => return Err("shutting down".to_owned()),
        };
        let req = self.client.get(want.upstream, &want.url)?;
        let resp = tokio::select! {
            r = req.send() => r.map_err(|e| describe(&e))?,
            () = self.stop.cancelled() => return Err("shutting down".to_owned()),
        };
        if !resp.status().is_success() {
            return Err(format!("upstream answered HTTP {}", resp.status()));
        }
        let total = resp.content_length();
        if total.is_some_and(|n| n > MAX_FILE) {
            return Err(format!("larger than {MAX_FILE} bytes"));
        }
        tx.send_modify(|p| {
            p.started = true;
            p.total = total;
        });
        let mut resp = resp;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        loop {
            let chunk = tokio::select! {
                c = resp.chunk() => c.map_err(|e| describe(&e))?,
                () = self.stop.cancelled() => return Err("shutting down".to_owned()),
            };
            let Some(chunk) = chunk else { break };
            written += chunk.len() as u64;
            if written > total.unwrap_or(MAX_FILE) {
                return Err("upstream sent more than it announced".to_owned());
            }
            hasher.update(&chunk);
            // tokio's File hands writes to a blocking thread and returns
            // before they happen: flush, so the bytes are in the file
            // before any reader is told they are.
            async {
                file.write_all(&chunk).await?;
                file.flush().await
            }
            .await
            .map_err(|e| format!("cannot write the temporary file: {e}"))?;
            tx.send_modify(|p| p.written = written);
        }
        file.flush()
            .await
            .map_err(|e| format!("cannot write the temporary file: {e}"))?;
        if let Some(n) = total.filter(|n| *n != written) {
            return Err(format!("transfer ended after {written} of {n} bytes"));
        }
        let got_hex = hex(&hasher.finalize());
        match &want.sha256 {
            Some(expected) if *expected == got_hex => Ok(true),
            Some(expected) => Err(format!(
                "sha256 mismatch: the page says {expected}, upstream sent {got_hex}"
            )),
            None => {
                log::warn!(
                    "{}/{}: upstream's page gives no sha256; served, not kept",
                    want.project,
                    want.filename
                );
                Ok(false)
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Download {
    /// Wait until upstream answered; the length it announced, if any.
    pub async fn started(&self) -> Result<Option<u64>, Arc<str>> {
        let mut rx = self.progress.clone();
        loop {
            {
                let p = rx.borrow_and_update();
                if let Some(Err(e)) = &p.end {
                    return Err(e.clone());
                }
                if p.started {
                    return Ok(p.total);
                }
            }
            if rx.changed().await.is_err() {
                return Err("transfer abandoned".into());
            }
        }
    }

    /// The body for one client: the temporary file as it grows; an error
    /// (which makes the server cut the connection) if the transfer fails.
    pub fn body(&self, file: std::fs::File) -> impl Stream<Item = io::Result<Bytes>> + Send {
        let state = (tokio::fs::File::from_std(file), self.progress.clone(), 0u64);
        futures_util::stream::unfold(Some(state), |state| async move {
            let (mut file, mut rx, sent) = state?;
            loop {
                let (limit, end) = {
                    let p = rx.borrow_and_update();
                    let end = p.end.clone();
                    let limit = match &end {
                        Some(Ok(())) => p.written,
                        _ => p.written.saturating_sub(HOLD_BACK),
                    };
                    (limit, end)
                };
                if let Some(Err(e)) = &end {
                    return Some((Err(io::Error::other(e.to_string())), None));
                }
                if sent < limit {
                    let want = usize::try_from(limit - sent).unwrap_or(CHUNK).min(CHUNK);
                    let mut buf = vec![0u8; want];
                    // Sequential reads: the file position is always `sent`.
                    return match file.read_exact(&mut buf).await {
                        Ok(_) => Some((Ok(Bytes::from(buf)), Some((file, rx, sent + want as u64)))),
                        Err(e) => {
                            log::warn!("reading a transfer in progress: {e}");
                            Some((Err(e), None))
                        }
                    };
                }
                if end.is_some() {
                    return None;
                }
                if rx.changed().await.is_err() {
                    return Some((Err(io::Error::other("transfer abandoned")), None));
                }
            }
        })
    }
}

/// Remove what a killed earlier run left in `tmp`, then make it afresh.
pub fn reset_tmp(tmp: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(tmp)
}
