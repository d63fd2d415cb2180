//! Log setup that fits DIB's build log: terse by default, verbose under `DIB_DEBUG_TRACE`.

use std::ffi::OsStr;
use std::io::Write;

/// Whether `DIB_DEBUG_TRACE` asks for verbose output (an integer > 0, as
/// DIB's own scripts test it).
pub fn debug_requested(value: Option<&OsStr>) -> bool {
    value
        .and_then(OsStr::to_str)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .is_some_and(|n| n > 0)
}

/// Initialise logging for binary `name`: `name: message` lines on stderr,
/// warnings and errors tagged, debug lines only when DIB_DEBUG_TRACE > 0.
pub fn init(name: &'static str) {
    let level = if debug_requested(std::env::var_os("DIB_DEBUG_TRACE").as_deref()) {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .format(move |buf, record| {
            let tag = match record.level() {
                log::Level::Error => "error: ",
                log::Level::Warn => "warning: ",
                log::Level::Debug | log::Level::Trace => "debug: ",
                log::Level::Info => "",
            };
            writeln!(buf, "{name}: {tag}{}", record.args())
        })
        .target(env_logger::Target::Stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_trace_values() {
        assert!(!debug_requested(None));
        assert!(!debug_requested(Some(OsStr::new("0"))));
        assert!(!debug_requested(Some(OsStr::new(""))));
        assert!(!debug_requested(Some(OsStr::new("yes"))));
        assert!(debug_requested(Some(OsStr::new("1"))));
        assert!(debug_requested(Some(OsStr::new("2"))));
    }
}
