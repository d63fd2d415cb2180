//! The little the hook binaries, `pypi-mirror` and `xtask` share: the mirror's place in DIB's cache, byte escaping, the installed element's layout.
//!
//! Kept apart from `dib-pypi-core` so that `pypi-mirror` does not pull in
//! the mount and in-image code it never uses.

pub mod cache;
pub mod element;
pub mod escape;
