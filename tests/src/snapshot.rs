//! Exact before/after snapshots of a directory tree: bytes, mode, owner of every entry.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What one entry of a tree looks like, for exact before/after comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// File content, symlink target, or empty for directories.
    pub data: Vec<u8>,
}

/// Every entry under `root` except the subtrees in `skip` (in-image paths).
pub fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<PathBuf, Snap> {
    fn walk(root: &Path, rel: &Path, skip: &[&str], out: &mut BTreeMap<PathBuf, Snap>) {
        let path = root.join(rel);
        let meta = fs::symlink_metadata(&path).unwrap();
        let inner = Path::new("/").join(rel);
        let data = if meta.file_type().is_symlink() {
            fs::read_link(&path)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if meta.is_file() {
            fs::read(&path).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            inner.clone(),
            Snap {
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                data,
            },
        );
        if meta.is_dir() && !skip.iter().any(|s| Path::new(s) == inner) {
            let mut names: Vec<_> = fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(root, &rel.join(n), skip, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), skip, &mut out);
    out
}

/// Assert two snapshots are equal; the message names `ctx` and lists only
/// the differences.
pub fn assert_tree_eq(
    ctx: &str,
    before: &BTreeMap<PathBuf, Snap>,
    after: &BTreeMap<PathBuf, Snap>,
) {
    let mut diffs = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => diffs.push(format!("missing after: {}", p.display())),
            Some(a) if a != b => diffs.push(format!("changed: {} ({b:?} -> {a:?})", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("extra after: {}", p.display()));
    }
    assert!(
        diffs.is_empty(),
        "{ctx}: tree differs:\n{}",
        diffs.join("\n")
    );
}

/// [`assert_tree_eq`] for the one image of a test.
pub fn assert_same_tree(before: &BTreeMap<PathBuf, Snap>, after: &BTreeMap<PathBuf, Snap>) {
    assert_tree_eq("image", before, after);
}
