//! Shared core of the dib `pypi` element hooks.
//!
//! The phase binaries (`dib-pypi-mount`, `dib-pypi-configure`,
//! `dib-pypi-restore`) are thin: they parse arguments and call into this
//! crate, which holds every decision so it can be unit tested without root.
//! The modules form layers, each using only the ones below it: the list
//! is `LAYERS` in `xtask/tests/tidy.rs`, which checks the code against it
//! and this list and `docs/ARCHITECTURE.md` against it.
//!
//! 1. `error`, `fault`, `logging`, `layout`
//! 2. `hook`, `rootfs`, `mirror`, `certs`
//! 3. `mounter`, `settings`
//! 4. `journal`, `state`, `render`
//! 5. `tools`, `undo`
//! 6. `overrides`, `txn`, `stage`
//! 7. `tls`
//! 8. `mount`, `configure`, `restore`
//! 9. `testing`

pub mod certs;
pub mod configure;
pub mod error;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fault;
pub mod hook;
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
pub mod tools;
pub mod txn;
pub mod undo;

pub use dib_pypi_common::{cache, escape};
pub use error::{Error, Result};
