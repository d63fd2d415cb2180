//! Shared core of the dib `pypi` element hooks.
//!
//! The phase binaries (`dib-pypi-mount`, `dib-pypi-configure`,
//! `dib-pypi-restore`) are thin: they parse arguments and call into this
//! crate, which holds every decision so it can be unit tested without root.
//! The modules form layers, each using only the ones below it (see
//! `docs/ARCHITECTURE.md`, and `xtask/tests/tidy.rs`, which holds it):
//!
//! 1. `error`, `fault`, `logging`, `layout`: no dependencies on the rest;
//! 2. `rootfs`: every operation on a path in the image;
//! 3. `mounter`: the mount system calls and the mount table;
//! 4. `journal`, then `state`, then `undo`, then `txn`: recording,
//!    undoing and grouping changes;
//! 5. `stage`: the private staging point beside the image; `tls`: the
//!    mirrors' CA and client certificate in the image;
//! 6. `mount`, `configure`, `restore`: one per hook binary.
//!
//! Apart: `mirror`, `settings`, `render`, `overrides` (the environment
//! and the config files written from it), `certs` (the TLS files on the
//! host).

pub mod certs;
pub mod configure;
pub mod error;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fault;
pub mod journal;
pub mod layout;
pub mod logging;
pub mod mirror;
pub mod mount;
pub mod mounter;
pub mod overrides;
pub mod render;
pub mod restore;
pub mod rootfs;
pub mod settings;
pub mod stage;
pub mod state;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
pub mod tls;
pub mod txn;
pub mod undo;

pub use dib_pypi_common::{cache, escape};
pub use error::{Error, Result};
