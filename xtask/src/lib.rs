//! Project automation shared by the `cargo xtask` binary and the integration tests.

pub mod dist;
pub mod element;
pub mod installed;
pub mod test;
pub mod wheel;
