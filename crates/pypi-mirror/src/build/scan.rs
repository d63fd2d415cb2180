//! Finding the candidates of a run: walking the source directories of a
//! build, or checking the files given to `add`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::report::{Problem, ProblemKind};
use crate::name::ArchiveKind;
use crate::state::Stamp;

/// A source file found by a scan or given to `add`.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Absolute, so the source recorded in the state means the same thing
    /// whichever directory the next run starts from.
    pub path: PathBuf,
    pub filename: String,
    pub kind: ArchiveKind,
    pub stamp: Stamp,
}

/// Walk `root` recursively for archives. A mirror nested inside a source
/// directory is skipped so it is not indexed into itself, unless the root is
/// the mirror (re-indexing in place).
pub(crate) fn scan_dir(
    root: &Path,
    out_id: &(u64, u64),
    found: &mut Vec<Candidate>,
    problems: &mut Vec<Problem>,
) {
    let is_out = fs::metadata(root).is_ok_and(|m| (m.dev(), m.ino()) == *out_id);
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Some(names) = list_dir(&dir, problems) else {
            continue;
        };
        let mut subdirs = Vec::new();
        for (name, path) in names {
            let md = match fs::metadata(&path) {
                Ok(md) => md,
                Err(e) => {
                    // Dangling symlinks and races with deleters end up here.
                    if ArchiveKind::from_filename(&name).is_some() {
                        problems.push(Problem::new(
                            &path,
                            ProblemKind::Unreadable,
                            format!("{e}; skipped"),
                        ));
                    }
                    continue;
                }
            };
            if md.is_dir() {
                if !is_out && (md.dev(), md.ino()) == *out_id {
                    log::debug!("{}: is the mirror itself, not scanning it", path.display());
                    continue;
                }
                subdirs.push(path);
            } else if md.is_file() {
                if let Some(kind) = ArchiveKind::from_filename(&name) {
                    found.push(Candidate {
                        path,
                        filename: name,
                        kind,
                        stamp: Stamp::of(&md),
                    });
                }
            }
        }
        // Reverse so the stack pops them in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
}

/// The visible entries of `dir`, sorted by name so "first source wins" is
/// deterministic; `None` (and a problem) if it cannot be read.
fn list_dir(dir: &Path, problems: &mut Vec<Problem>) -> Option<Vec<(String, PathBuf)>> {
    let unreadable = |e: std::io::Error| {
        Problem::new(
            dir,
            ProblemKind::Unreadable,
            format!("cannot read directory: {e}"),
        )
    };
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            problems.push(unreadable(e));
            return None;
        }
    };
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in rd {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // What was listed so far is still scanned, as before.
                problems.push(unreadable(e));
                break;
            }
        };
        let Ok(name) = entry.file_name().into_string() else {
            log::debug!("{}: skipping non-UTF-8 name", entry.path().display());
            continue;
        };
        // Hidden entries: our own state dir and temp files, VCS dirs.
        if name.starts_with('.') {
            continue;
        }
        names.push((name, entry.path()));
    }
    names.sort();
    Some(names)
}

/// Turn the (absolute) paths given to `add` into candidates; anything that
/// is not an existing archive file becomes a problem instead.
pub(crate) fn given_files(
    paths: &[PathBuf],
    found: &mut Vec<Candidate>,
    problems: &mut Vec<Problem>,
) {
    for path in paths {
        let Some(filename) = path.file_name().and_then(|n| n.to_str()) else {
            problems.push(Problem::new(
                path,
                ProblemKind::BadFilename,
                "not a file name",
            ));
            continue;
        };
        let Some(kind) = ArchiveKind::from_filename(filename) else {
            problems.push(Problem::new(
                path,
                ProblemKind::NotAnArchive,
                "not a wheel or sdist (.whl, .tar.gz, .zip); skipped",
            ));
            continue;
        };
        match fs::metadata(path) {
            Ok(md) if md.is_file() => found.push(Candidate {
                path: path.clone(),
                filename: filename.to_owned(),
                kind,
                stamp: Stamp::of(&md),
            }),
            Ok(_) => problems.push(Problem::new(
                path,
                ProblemKind::Unreadable,
                "not a regular file; skipped",
            )),
            Err(e) => problems.push(Problem::new(
                path,
                ProblemKind::Unreadable,
                format!("{e}; skipped"),
            )),
        }
    }
}
