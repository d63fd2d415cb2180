//! Publishing verified downloads into the tree through the library's own
//! `add` (file first, then its project's page, then the state log), in
//! batches: one `add` run for every file that finished within half a
//! second, so a cold `pip install` of thirty packages does not rewrite the
//! root page and the state thirty times while it runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::AddOptions;

/// The options of every `add` that `serve` makes, the one place they are
/// set: served files are *recorded*, so `build --prune` keeps what builds
/// fetched (upstream may have removed it since; only `--prune-recorded`
/// drops it).
pub fn serve_add_options(out: &Path, files: Vec<PathBuf>) -> AddOptions {
    let mut opts = AddOptions::new(out, files);
    opts.recorded = true;
    opts
}

/// How long the first verified download waits for others to publish with.
const BATCH_DELAY: Duration = Duration::from_millis(500);

struct Job {
    file: PathBuf,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle to the publishing task.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.file.fmt(f)
    }
}

impl Publisher {
    /// Start the task. On `stop` it publishes what is already queued and
    /// ends; `tracker` lets shutdown wait for that.
    pub fn start(out: PathBuf, stop: CancellationToken, tracker: &TaskTracker) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        tracker.spawn(async move {
            loop {
                let first = tokio::select! {
                    j = rx.recv() => j,
                    () = stop.cancelled() => rx.try_recv().ok(),
                };
                let Some(first) = first else { break };
                // Let the rest of an install's burst join: publishing costs
                // fsyncs and a state update per run, and competes with the
                // install for the disk. Until then the file is served from
                // its temporary copy.
                let _ = tokio::time::timeout(BATCH_DELAY, stop.cancelled()).await;
                let mut batch = vec![first];
                while let Ok(j) = rx.try_recv() {
                    batch.push(j);
                }
                publish(&out, batch).await;
            }
        });
        Self { tx }
    }

    /// Publish `file` (a complete, verified download whose name is the
    /// distribution's file name); returns once the tree has it.
    pub async fn publish(&self, file: PathBuf) -> Result<(), String> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job { file, done })
            .map_err(|_| "shutting down".to_owned())?;
        rx.await.map_err(|_| "shutting down".to_owned())?
    }
}

async fn publish(out: &Path, batch: Vec<Job>) {
    let files: Vec<PathBuf> = batch.iter().map(|j| j.file.clone()).collect();
    let opts = serve_add_options(out, files);
    // `add` is blocking file-system work and may wait for the mirror lock.
    let result = tokio::task::spawn_blocking(move || crate::add_with(&opts)).await;
    for job in batch {
        let outcome = match &result {
            Err(e) => Err(format!("publishing failed: {e}")),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(report)) => match report.problems.iter().find(|p| p.path == job.file) {
                Some(p) => Err(p.message.clone()),
                None => Ok(()),
            },
        };
        let _ = job.done.send(outcome);
    }
}
