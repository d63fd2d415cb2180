//! The one error type of the element: every variant names the variable or path at fault.

use std::io;
use std::path::PathBuf;

/// Everything that can stop a hook. `Display` is always one line, so it fits
/// DIB's log, and never contains a mirror URL's credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An environment variable holds a value we refuse.
    #[error("{var}: {reason}")]
    Env { var: String, reason: String },

    /// A system call on a path failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A path inside the image is not what we can safely work with.
    #[error("{}: {reason}", path.display())]
    Path { path: PathBuf, reason: String },

    /// The journal left by an earlier hook cannot be read back.
    #[error("{}:{line}: {reason}", path.display())]
    Journal {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    /// Cleaning up after a failure failed too: returned beside the first
    /// error (see [`Error::and_also`]).
    #[error("{what} after the failure also failed: {error}")]
    Also {
        what: &'static str,
        error: Box<Error>,
    },

    /// Several independent steps failed (restore keeps going past errors).
    #[error("{} steps failed; first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Many(Vec<Error>),
}

impl Error {
    /// Shorthand for [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::Path`].
    pub fn path(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Path {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The system error number behind an [`Error::Io`].
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        match self {
            Error::Io { source, .. } => source.raw_os_error().map(nix::errno::Errno::from_raw),
            _ => None,
        }
    }

    /// Every single error inside this one ([`Error::Many`] flattened), to
    /// print one line each.
    pub fn leaves(&self) -> Vec<&Error> {
        match self {
            Error::Many(all) => all.iter().flat_map(Error::leaves).collect(),
            one => vec![one],
        }
    }

    /// One error from several: none, the one, or [`Error::Many`].
    pub fn collect(mut errors: Vec<Error>) -> Result<()> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Many(errors)),
        }
    }

    /// This error, followed by the failure of `what` (cleaning up after
    /// it), if that failed: both are returned, as [`Error::Many`], so
    /// that the binary prints each on its line.
    pub fn and_also(self, what: &'static str, cleanup: Result<()>) -> Error {
        let Err(also) = cleanup else {
            return self;
        };
        let mut all = vec![self];
        all.extend(also.into_leaves().into_iter().map(|e| Error::Also {
            what,
            error: Box::new(e),
        }));
        Error::Many(all)
    }

    /// [`Error::leaves`], owned.
    fn into_leaves(self) -> Vec<Error> {
        match self {
            Error::Many(all) => all.into_iter().flat_map(Error::into_leaves).collect(),
            one => vec![one],
        }
    }

    /// Shorthand for [`Error::Env`].
    pub fn env(var: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Env {
            var: var.into(),
            reason: reason.into(),
        }
    }
}

/// Result with the element's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_cleanup_is_returned_beside_the_error_one_line_each() {
        let first = || Error::path("/a", "broken");
        assert_eq!(first().and_also("undo", Ok(())).to_string(), "/a: broken");
        let both = first().and_also(
            "undo",
            Err(Error::Many(vec![
                Error::path("/b", "busy"),
                Error::path("/c", "gone"),
            ])),
        );
        let lines: Vec<String> = both.leaves().iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "/a: broken",
                "undo after the failure also failed: /b: busy",
                "undo after the failure also failed: /c: gone",
            ]
        );
    }
}
