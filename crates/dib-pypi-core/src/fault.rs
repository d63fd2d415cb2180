//! Test-only crash injection: count the mutating system calls on an image and die at the N-th.
//!
//! A [`FaultPlan`] attached to a [`crate::rootfs::Root`] (and consulted by
//! test [`crate::mount::Mounter`]s) is asked before every call that changes
//! the image. At the chosen step the hook "dies": either the process really
//! gets SIGKILL ([`Death::Kill`]), or every further change fails
//! ([`Death::Fail`]), which leaves exactly the state a kill would leave
//! (reads still work, so the hook's own rollback runs and fails, as it could
//! not have run after a kill). A write that is the crash step writes half
//! its bytes first, like a process killed mid-write.
//!
//! Compiled only for tests and with the `testing` feature.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// How the process dies at the crash step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// Every mutating call from the crash step on fails; the process lives.
    Fail,
    /// The process sends itself SIGKILL.
    Kill,
}

/// Counts steps and decides where the crash happens.
#[derive(Debug)]
pub struct FaultPlan {
    crash_at: Option<u64>,
    death: Death,
    steps: AtomicU64,
    dead: AtomicBool,
    log: Mutex<Vec<String>>,
}

impl FaultPlan {
    /// Count and log the steps, never crash.
    pub fn counting() -> FaultPlan {
        FaultPlan::new(None, Death::Fail)
    }

    /// Die at step `step` (1-based): that step is not carried out (a write
    /// is carried out half way).
    pub fn crash_at(step: u64, death: Death) -> FaultPlan {
        FaultPlan::new(Some(step), death)
    }

    fn new(crash_at: Option<u64>, death: Death) -> FaultPlan {
        FaultPlan {
            crash_at,
            death,
            steps: AtomicU64::new(0),
            dead: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
        }
    }

    /// Called before a mutating call named `what`. `Ok(false)`: go on.
    /// `Ok(true)`: this is the crash step; the caller may do the torn part
    /// of a write and must then return [`FaultPlan::die`]. `Err`: the
    /// process is already dead.
    pub fn step(&self, what: &str) -> io::Result<bool> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(dead());
        }
        let n = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(mut log) = self.log.lock() {
            log.push(what.to_string());
        }
        Ok(self.crash_at == Some(n))
    }

    /// Die now: SIGKILL, or the error every later step gets.
    pub fn die(&self) -> io::Error {
        self.dead.store(true, Ordering::SeqCst);
        if self.death == Death::Kill {
            // SIGKILL cannot be caught: nothing after this line runs.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
        dead()
    }

    /// Steps taken so far (the crash step included).
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }

    /// Whether the crash step was reached.
    pub fn crashed(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// What each step was, in order.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Run an operation once per crash point: `run` gets a plan that fails
/// step 1, then 2, and so on, does its checks and returns the operation's
/// result; the first run that ends before its crash point must succeed
/// and ends the loop. Returns that run's crash point: the operation's
/// number of steps plus one.
pub fn at_every_crash_point<E: std::fmt::Debug>(
    mut run: impl FnMut(std::sync::Arc<FaultPlan>) -> Result<(), E>,
) -> u64 {
    let mut n = 1;
    loop {
        let plan = std::sync::Arc::new(FaultPlan::crash_at(n, Death::Fail));
        let result = run(plan.clone());
        if !plan.crashed() {
            assert!(
                result.is_ok(),
                "the run past the last step failed: {:?}",
                result.err()
            );
            return n;
        }
        n += 1;
    }
}

fn dead() -> io::Error {
    io::Error::other("simulated crash (fault injection)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dies_at_the_chosen_step_and_stays_dead() {
        let plan = FaultPlan::crash_at(2, Death::Fail);
        assert!(!plan.step("a").unwrap());
        assert!(plan.step("b").unwrap());
        let _ = plan.die();
        assert!(plan.crashed());
        assert!(plan.step("c").is_err());
        assert_eq!(plan.steps(), 2);
        assert_eq!(plan.log(), ["a", "b"]);
    }

    fn three_steps(plan: &FaultPlan) -> io::Result<()> {
        for what in ["a", "b", "c"] {
            if plan.step(what)? {
                return Err(plan.die());
            }
        }
        Ok(())
    }

    #[test]
    fn every_crash_point_is_tried_then_the_whole_run() {
        let mut seen = Vec::new();
        let n = at_every_crash_point(|plan| {
            let result = three_steps(&plan);
            seen.push((plan.steps(), plan.crashed()));
            result
        });
        assert_eq!(n, 4);
        assert_eq!(seen, [(1, true), (2, true), (3, true), (3, false)]);
    }

    #[test]
    #[should_panic(expected = "the run past the last step failed")]
    fn a_run_that_fails_without_a_crash_fails_the_test() {
        at_every_crash_point(|plan| {
            three_steps(&plan)?;
            Err(io::Error::other("refused"))
        });
    }
}
