//! One hook's journaled change to the image: every step is recorded before it is made, and all of it is undone if the hook fails.
//!
//! Each step is made so that a crash anywhere in it leaves a state the
//! journal explains: a file is written under a temporary name, flushed,
//! renamed into place (never over anything) and its directory flushed, so
//! the real name holds either nothing or the whole file.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::journal::{Journal, Op};
use crate::layout::{with_suffix, BACKUP_SUFFIX, TEMP_SUFFIX};
use crate::mounter::Mounter;
use crate::rootfs::Root;

/// A sequence of journaled changes to one image.
#[derive(Debug)]
pub struct Txn<'r> {
    root: &'r Root,
    journal: Journal<'r>,
}

impl<'r> Txn<'r> {
    /// Run `body` as one change recorded in the journal at `journal_path`
    /// (the state directory is made first if needed). If `body` fails,
    /// everything it recorded is undone before its error is returned; a
    /// failure of that undo is returned beside it, and the journal it
    /// leaves lets the restore hook finish the job.
    pub fn run<T>(
        root: &'r Root,
        journal_path: &Path,
        mounter: &dyn Mounter,
        body: impl FnOnce(&Txn<'r>) -> Result<T>,
    ) -> Result<T> {
        let txn = Txn {
            root,
            journal: Journal::new(root, journal_path),
        };
        crate::state::ensure(root)
            .and_then(|()| body(&txn))
            .map_err(|e| {
                let undone = crate::undo::undo_journal(root, &txn.journal, mounter)
                    .and_then(|()| crate::state::teardown(root));
                e.and_also("rolling back", undone)
            })
    }

    /// Create `dirs` (outermost first, as [`Root::missing_dirs`] lists
    /// them) in order.
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
