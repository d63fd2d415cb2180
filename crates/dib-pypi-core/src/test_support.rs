//! Shared helpers for the unit tests: a mounter that never mounts, and tree listings.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::mount::Mounter;

/// A [`Mounter`] for hooks that must not mount anything.
pub struct NoMounts;

impl Mounter for NoMounts {
    fn bind(&self, _: &Path, _: &Path) -> io::Result<()> {
        Err(io::Error::other("no mounts in this test"))
    }
    fn remount_read_only(&self, _: &Path) -> io::Result<()> {
        Err(io::Error::other("no mounts in this test"))
    }
    fn unmount(&self, _: &Path) -> io::Result<()> {
        Err(io::Error::other("no mounts in this test"))
    }
    fn mount_points(&self) -> io::Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
}

/// Every entry under `dir`: (mode, content or link target).
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let data = if meta.is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                todo.push(p.clone());
                Vec::new()
            };
            out.insert(
                p.strip_prefix(dir).unwrap().to_path_buf(),
                (meta.mode(), data),
            );
        }
    }
    out
}
