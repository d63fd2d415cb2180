//! The little the hook binaries and `pypi-mirror` share: the mirror's place in DIB's cache, and byte escaping.
//!
//! Kept apart from `dib-pypi-core` so that `pypi-mirror` does not pull in
//! the mount and in-image code it never uses.

pub mod cache;
pub mod escape;
