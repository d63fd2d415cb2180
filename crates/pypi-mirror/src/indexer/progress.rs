//! Feedback while a run works: a progress bar that shows up only for long
//! runs, and debug-level phase timings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Debug-level timing of the phases of a run (`-v`), for performance work.
pub(crate) struct PhaseTimer(Instant);

impl PhaseTimer {
    pub(crate) fn new() -> Self {
        Self(Instant::now())
    }

    pub(crate) fn done(&mut self, what: &str) {
        log::debug!("phase {what}: {:.1?}", self.0.elapsed());
        self.0 = Instant::now();
    }
}

/// The bar of the run in progress, if any, for [`suspend_progress`].
static ACTIVE_BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Run `f` (typically: print a log line) with the progress bar of a running
/// build hidden, so the line does not get mixed into the bar. The CLI's
/// logger routes every record through this.
pub fn suspend_progress<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE_BAR.lock().ok().and_then(|g| g.clone());
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// A progress bar that stays hidden unless the run turns out to be long:
/// short runs (the common incremental case) print nothing.
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    shown: AtomicBool,
}

impl Progress {
    const DELAY: Duration = Duration::from_millis(500);

    pub(crate) fn new(enabled: bool) -> Self {
        let bar = enabled.then(|| {
            let bar = indicatif::ProgressBar::hidden();
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{msg:>9} [{bar:30}] {pos}/{len} ({eta})")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            if let Ok(mut active) = ACTIVE_BAR.lock() {
                *active = Some(bar.clone());
            }
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            shown: AtomicBool::new(false),
        }
    }

    pub(crate) fn start(&self, what: &'static str, len: usize) {
        if let Some(bar) = &self.bar {
            // Restart position and ETA estimation for the new phase.
            bar.reset();
            bar.set_length(len as u64);
            bar.set_message(what);
        }
    }

    pub(crate) fn inc(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if !self.shown.load(Ordering::Relaxed) && self.started.elapsed() > Self::DELAY {
                self.shown.store(true, Ordering::Relaxed);
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            if let Ok(mut active) = ACTIVE_BAR.lock() {
                *active = None;
            }
        }
    }
}
