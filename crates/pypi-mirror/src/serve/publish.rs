//! Publishing verified downloads into the tree through the library's own
//! `add` (file first, then its project's page, then the state log), in
//! batches: one `add` run for every file that finished within half a
//! second, so a cold `pip install` of thirty packages does not rewrite the
//! root page and the state thirty times while it runs. Also where the
//! tree learns what upstream now says of files it holds (`relist`), and
//! lists files found in it unlisted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::index::Relisting;
use crate::{AddOptions, Listed};

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

/// Work for the publishing task.
enum Job {
    /// A verified download, and what upstream's page said of it (`None`
    /// for a file found in the tree unlisted); `done` hears the outcome.
    File {
        file: PathBuf,
        listed: Option<Listed>,
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    /// What upstream now says of files of a project the tree holds.
    Relist {
        project: String,
        changes: Vec<Relisting>,
    },
}

/// Handle to the publishing task.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { file, .. } => file.fmt(f),
            Self::Relist { project, .. } => write!(f, "relist {project}"),
        }
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
    /// distribution's file name) with what `listed` says of it; returns
    /// once the tree has it.
    pub async fn publish(&self, file: PathBuf, listed: Listed) -> Result<(), String> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job::File {
                file,
                listed: Some(listed),
                done: Some(done),
            })
            .map_err(|_| "shutting down".to_owned())?;
        rx.await.map_err(|_| "shutting down".to_owned())?
    }

    /// Index `file`, found in the tree but on no page, where it lies.
    pub fn publish_unlisted(&self, file: PathBuf) {
        let _ = self.tx.send(Job::File {
            file,
            listed: None,
            done: None,
        });
    }

    /// Record `changes` for files of `project` the tree holds.
    pub fn relist(&self, project: String, changes: Vec<Relisting>) {
        let _ = self.tx.send(Job::Relist { project, changes });
    }
}

async fn publish(out: &Path, batch: Vec<Job>) {
    let mut files = Vec::new();
    let mut waiting = Vec::new();
    let mut unlisted = Vec::new();
    let mut relists = Vec::new();
    let mut opts = serve_add_options(out, Vec::<PathBuf>::new());
    for job in batch {
        match job {
            Job::File { file, listed, done } => {
                if let Some(l) = listed {
                    opts.listed.insert(file.clone(), l);
                }
                files.push(file.clone());
                match done {
                    Some(d) => waiting.push((file, d)),
                    None => unlisted.push(file),
                }
            }
            Job::Relist { project, changes } => relists.push((project, changes)),
        }
    }
    opts.files = files;
    let out = out.to_owned();
    // `add` is blocking file-system work and may wait for the mirror lock.
    let result = tokio::task::spawn_blocking(move || {
        for (project, changes) in relists {
            if let Err(e) = crate::relist(&out, &project, &changes) {
                log::warn!("{project}: cannot record what upstream says of its files: {e}");
            }
        }
        if opts.files.is_empty() {
            return Ok(crate::Report::default());
        }
        crate::add_with(&opts)
    })
    .await;
    // A file found unlisted may only have been between its placing and its
    // state record (another run's `add`): say so only if it really was
    // added now.
    if let Ok(Ok(report)) = &result {
        for file in &unlisted {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| report.added.contains(&n)) {
                log::warn!(
                    "{}: was in the mirror tree but on no page; listed now",
                    file.display()
                );
            }
        }
    }
    for (file, done) in waiting {
        let outcome = match &result {
            Err(e) => Err(format!("publishing failed: {e}")),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(report)) => match report.problems.iter().find(|p| p.path == file) {
                Some(p) => Err(p.message.clone()),
                None => Ok(()),
            },
        };
        let _ = done.send(outcome);
    }
}
