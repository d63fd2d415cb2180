//! Build the PEP 503 "simple" tree that the dib `pypi` element bind-mounts
//! into the image chroot and hands to pip and uv as `file:///tmp/pypi`.
//!
//! The tree looks like:
//!
//! ```text
//! OUT/index.html                         root page, one link per project
//! OUT/foo-bar/index.html                 project page with #sha256= links
//! OUT/foo-bar/foo_bar-1.0-py3-none-any.whl            (hard link or copy)
//! OUT/foo-bar/foo_bar-1.0-py3-none-any.whl.metadata   (PEP 658 / 714)
//! OUT/.pypi-mirror/{state,lock}          incremental state, run lock
//! ```
//!
//! [`build()`] indexes directories, [`add`] single files; both rewrite only the
//! pages of projects that changed, each page atomically.

pub mod elements;
mod fsutil;
pub mod html;
pub mod index;
pub mod indexer;
pub mod metadata;
pub mod name;
pub mod serve;
pub mod state;

pub use indexer::{
    add, add_with, build, relist, suspend_progress, AddOptions, BuildOptions, Error, Listed,
    Problem, ProblemKind, Report, STATE_DIR,
};

/// The mirror directory the dib element uses by default
/// (`$DIB_IMAGE_CACHE/pypi/mirror`, else `~/.cache/image-create/pypi/mirror`).
pub fn default_out() -> Option<std::path::PathBuf> {
    dib_pypi_common::cache::mirror_dir_from_env()
}
