//! Project automation shared by the `cargo xtask` binary and the integration tests.

pub mod cmd;
pub mod dist;
pub mod element;
pub mod glibc;
pub mod installed;
pub mod old_debian;
pub mod served;
pub mod test;
pub mod wheel;
