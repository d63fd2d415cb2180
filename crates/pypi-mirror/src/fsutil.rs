//! Small file-system helpers: atomic replacement, link-or-copy, fsync.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Name of the hidden temporary sibling used while replacing `path`.
///
/// Hidden (leading dot) so directory walks and HTTP listings pass over it,
/// and tagged with the pid so two processes (which the lock forbids anyway)
/// could never share one.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Replace `path` with `data` so that readers see either the old or the new
/// content, never a mix: write a temporary sibling, optionally fsync it, and
/// rename it over `path`.
pub fn write_atomic(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // Best effort: the original error is what matters to the caller.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Write a file that nothing links to yet: created in place when the name is
/// free (saving the rename, which is not free on a busy ext4), else replaced
/// via [`write_atomic`] because an existing file may already be in use.
pub fn write_new(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let mut f = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return write_atomic(path, data, sync);
        }
        Err(e) => return Err(e),
    };
    let result = f
        .write_all(data)
        .and_then(|()| if sync { f.sync_all() } else { Ok(()) });
    if result.is_err() {
        // Do not leave a truncated file that a later run would trust.
        let _ = fs::remove_file(path);
    }
    result
}

/// How a file got into the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Already there (same inode).
    Present,
    /// Hard-linked.
    Linked,
    /// Copied (cross-device or links not permitted).
    Copied,
}

/// Put `src` at `dest`, hard-linking when possible and copying otherwise;
/// an existing `dest` is replaced atomically.
pub fn link_or_copy(src: &Path, dest: &Path, sync: bool) -> io::Result<Placed> {
    use std::os::unix::fs::MetadataExt;
    // link(2) does not follow symlinks: linking a symlink would put a link
    // into the tree that may dangle inside the image chroot. Link its target.
    let resolved;
    let src = if fs::symlink_metadata(src)?.file_type().is_symlink() {
        resolved = fs::canonicalize(src)?;
        resolved.as_path()
    } else {
        src
    };
    match fs::hard_link(src, dest) {
        Ok(()) => return finish(dest, Placed::Linked, sync),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let (s, d) = (fs::metadata(src)?, fs::metadata(dest)?);
            if s.dev() == d.dev() && s.ino() == d.ino() {
                return finish(dest, Placed::Present, sync);
            }
        }
        Err(e) => log::debug!("{}: cannot hard-link ({e}), copying", src.display()),
    }
    // Replace through a temporary sibling so a reader of `dest` never sees a
    // partial file.
    let tmp = temp_sibling(dest);
    let _ = fs::remove_file(&tmp);
    let placed = match fs::hard_link(src, &tmp) {
        Ok(()) => Placed::Linked,
        Err(_) => {
            fs::copy(src, &tmp)?;
            Placed::Copied
        }
    };
    if let Err(e) = fs::rename(&tmp, dest) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    finish(dest, placed, sync)
}

fn finish(dest: &Path, placed: Placed, sync: bool) -> io::Result<Placed> {
    if sync {
        // A freshly downloaded source may not be on disk yet either; the
        // index must not point at data that a crash could lose.
        fs::File::open(dest)?.sync_all()?;
    }
    Ok(placed)
}

/// fsync a directory so renames and links inside it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Flush the whole file system holding `path` in one call: far cheaper than
/// thousands of fsyncs when a full build has written thousands of files.
pub fn sync_fs(path: &Path) -> io::Result<()> {
    let f = fs::File::open(path)?;
    nix::unistd::syncfs(&f).map_err(io::Error::from)
}
