//! Project automation shared by the `cargo xtask` binary and the integration tests.

pub mod element;
pub mod test;
pub mod wheel;
