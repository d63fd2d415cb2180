//! Journaled changes to the image: every step is recorded before it is made.
//!
//! Each step is made so that a crash anywhere in it leaves a state the
//! journal explains: a file is written under a temporary name, flushed,
//! renamed into place (never over anything) and its directory flushed, so
//! the real name holds either nothing or the whole file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::journal::{Journal, Op};
use crate::rootfs::{with_suffix, Kind, Root};

/// Suffix of the backup of an original file, kept beside it (same
/// directory, so the move is an atomic rename that keeps owner, mode,
/// times and inode).
pub const BACKUP_SUFFIX: &str = ".dib-pypi-orig";
/// Suffix of the temporary file an atomic write goes through.
pub const TEMP_SUFFIX: &str = ".dib-pypi-tmp";

/// Mode of directories we create unless said otherwise.
pub const DIR_MODE: u32 = 0o755;

/// The directories of `dir` (itself included) that do not exist yet,
/// outermost first. Errors if a component exists but is not a directory
/// (symlinks to directories inside the image are fine: the chroot follows
/// them the same way).
pub fn missing_dirs(root: &Root, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    for ancestor in dir.ancestors().collect::<Vec<_>>().into_iter().rev() {
        if !missing.is_empty() || !root.is_dir(ancestor)? {
            match root.lstat(ancestor)? {
                None => missing.push(ancestor.to_path_buf()),
                Some(_) if !missing.is_empty() => missing.push(ancestor.to_path_buf()),
                Some(e) => {
                    return Err(Error::path(
                        root.host_path(ancestor),
                        format!("exists but is not a directory ({})", kind_name(e.kind)),
                    ))
                }
            }
        }
    }
    Ok(missing)
}

/// Human name of a [`Kind`], for messages.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "a regular file",
        Kind::Dir => "a directory",
        Kind::Symlink => "a symlink",
        Kind::Special => "a FIFO, socket or device",
    }
}

/// A sequence of journaled changes to one image.
#[derive(Debug)]
pub struct Txn<'r> {
    root: &'r Root,
    journal: Journal<'r>,
}

impl<'r> Txn<'r> {
    /// Start (or continue) the journal at `journal_path`, creating the state
    /// directory first if needed (see [`crate::state`]).
    pub fn begin(root: &'r Root, journal_path: &Path) -> Result<Txn<'r>> {
        crate::state::ensure(root)?;
        Ok(Txn {
            root,
            journal: Journal::new(root, journal_path),
        })
    }

    /// The journal this transaction writes.
    pub fn journal(&self) -> &Journal<'r> {
        &self.journal
    }

    /// Create `dirs` (as returned by [`missing_dirs`]) in order.
    pub fn create_dirs(&self, dirs: &[PathBuf], mode_of: impl Fn(&Path) -> u32) -> Result<()> {
        for dir in dirs {
            self.journal.record(&Op::Mkdir(dir.clone()))?;
            self.root.mkdir(dir, mode_of(dir))?;
        }
        Ok(())
    }

    /// Move the original at `path` aside to its backup name.
    pub fn move_aside(&self, path: &Path) -> Result<()> {
        let backup = with_suffix(path, BACKUP_SUFFIX);
        self.journal.record(&Op::Backup {
            path: path.to_path_buf(),
            backup: backup.clone(),
        })?;
        self.root.rename_noreplace(path, &backup)
    }

    /// Atomically create file `path` (which must not exist) with `contents`
    /// and `mode`: temp file, fsync, rename, fsync of the directory.
    pub fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
        let temp = with_suffix(path, TEMP_SUFFIX);
        self.journal.record(&Op::Create(path.to_path_buf()))?;
        self.journal.record(&Op::Create(temp.clone()))?;
        self.root.write_new(&temp, contents, mode)?;
        self.root.rename_noreplace(&temp, path)?;
        self.root.sync_dir(path.parent().unwrap_or(Path::new("/")))
    }

    /// Record that a mount is about to be made on `path`.
    pub fn record_mount(&self, path: &Path) -> Result<()> {
        self.journal.record(&Op::Mount(path.to_path_buf()))
    }
}
