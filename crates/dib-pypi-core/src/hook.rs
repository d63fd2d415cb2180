//! Around every hook binary's work: logging set up, the report printed, each error on one line, the exit code.
//!
//! Library code returns what it has to say ([`Report`]) and its errors;
//! this is the one place that prints them, so each is printed once.

use std::process::ExitCode;

use crate::error::Result;

/// The level of a report line (the `log` crate's).
pub use log::Level;

/// What a hook that succeeded has to say, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Each line with its level.
    pub lines: Vec<(log::Level, String)>,
}

impl Report {
    /// Add a warning.
    pub fn warn(&mut self, line: impl Into<String>) {
        self.lines.push((log::Level::Warn, line.into()));
    }

    /// Add an informational line.
    pub fn info(&mut self, line: impl Into<String>) {
        self.lines.push((log::Level::Info, line.into()));
    }

    /// Add a line shown only under `DIB_DEBUG_TRACE`.
    pub fn debug(&mut self, line: impl Into<String>) {
        self.lines.push((log::Level::Debug, line.into()));
    }

    /// The lines of one level.
    pub fn at(&self, level: log::Level) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, s)| s.as_str())
            .collect()
    }
}

/// Run hook binary `name`'s `body`: its report is logged line by line and
/// the hook succeeds; or each of its errors is logged on one line and the
/// hook fails.
pub fn run_hook(name: &'static str, body: impl FnOnce() -> Result<Report>) -> ExitCode {
    crate::logging::init(name);
    match body() {
        Ok(report) => {
            for (level, line) in report.lines {
                log::log!(level, "{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            for e in e.leaves() {
                log::error!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}
