//! Shared core of the dib `pypi` element hooks.
//!
//! The phase binaries (`dib-pypi-mount`, `dib-pypi-configure`,
//! `dib-pypi-restore`) are thin: they parse arguments and call into this
//! crate, which holds every decision so it can be unit tested without root.
//! See `docs/ARCHITECTURE.md` for the map.

pub mod configure;
pub mod error;
#[cfg(any(test, feature = "fault-injection"))]
#[doc(hidden)]
pub mod fault;
pub mod journal;
pub mod logging;
pub mod mirror;
pub mod mount;
pub mod overrides;
pub mod render;
pub mod rootfs;
pub mod settings;
pub mod state;
pub mod txn;
pub mod undo;

#[cfg(test)]
mod test_support;

pub use dib_pypi_common::{cache, escape};
pub use error::{Error, Result};
