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
    /// The path as the user spelled it, when that differs from `path`.
    pub given: Option<PathBuf>,
    pub filename: String,
    pub kind: ArchiveKind,
    pub stamp: Stamp,
}

impl Candidate {
    /// The path for messages: the user's spelling of it.
    pub(crate) fn shown(&self) -> &Path {
        self.given.as_deref().unwrap_or(&self.path)
    }
}

/// A path the user gave, and its absolute form (which is what the state
/// records).
#[derive(Debug, Clone)]
pub(crate) struct GivenPath {
    pub absolute: PathBuf,
    pub given: PathBuf,
}

impl GivenPath {
    /// How to show `path`, which lies under `self.absolute`, in the user's
    /// spelling; `None` when that is `path` itself.
    fn shown(&self, path: &Path) -> Option<PathBuf> {
        if self.given == self.absolute {
            return None;
        }
        path.strip_prefix(&self.absolute)
            .ok()
            .map(|rest| self.given.join(rest))
    }
}

/// Walk `root` recursively for archives. A mirror nested inside a source
/// directory is skipped so it is not indexed into itself, unless the root is
/// the mirror (re-indexing in place).
pub(crate) fn scan_dir(
    root: &GivenPath,
    out_id: Option<(u64, u64)>,
    found: &mut Vec<Candidate>,
    problems: &mut Vec<Problem>,
) {
    let id = |m: &fs::Metadata| Some((m.dev(), m.ino()));
    let is_out = fs::metadata(&root.absolute).is_ok_and(|m| id(&m) == out_id);
    let mut stack = vec![root.absolute.clone()];
    while let Some(dir) = stack.pop() {
        let Some(names) = list_dir(&dir, root, problems) else {
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
                            &root.shown(&path).unwrap_or(path),
                            ProblemKind::Unreadable,
                            format!("{e}; skipped"),
                        ));
                    }
                    continue;
                }
            };
            if md.is_dir() {
                if !is_out && id(&md) == out_id {
                    log::debug!("{}: is the mirror itself, not scanning it", path.display());
                    continue;
                }
                subdirs.push(path);
            } else if md.is_file() {
                if let Some(kind) = ArchiveKind::from_filename(&name) {
                    found.push(Candidate {
                        given: root.shown(&path),
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
fn list_dir(
    dir: &Path,
    root: &GivenPath,
    problems: &mut Vec<Problem>,
) -> Option<Vec<(String, PathBuf)>> {
    let unreadable = |e: std::io::Error| {
        Problem::new(
            root.shown(dir).as_deref().unwrap_or(dir),
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

/// Turn the paths given to `add` into candidates; anything that is not an
/// existing archive file becomes a problem instead.
pub(crate) fn given_files(
    paths: &[GivenPath],
    found: &mut Vec<Candidate>,
    problems: &mut Vec<Problem>,
) {
    for p in paths {
        let problem = |kind, message: String| Problem::new(&p.given, kind, message);
        let Some(filename) = p.absolute.file_name().and_then(|n| n.to_str()) else {
            problems.push(problem(ProblemKind::BadFilename, "not a file name".into()));
            continue;
        };
        let Some(kind) = ArchiveKind::from_filename(filename) else {
            problems.push(problem(
                ProblemKind::NotAnArchive,
                "not a wheel or sdist (.whl, .tar.gz, .zip); skipped".into(),
            ));
            continue;
        };
        match fs::metadata(&p.absolute) {
            Ok(md) if md.is_file() => found.push(Candidate {
                path: p.absolute.clone(),
                given: (p.given != p.absolute).then(|| p.given.clone()),
                filename: filename.to_owned(),
                kind,
                stamp: Stamp::of(&md),
            }),
            Ok(_) => problems.push(problem(
                ProblemKind::Unreadable,
                "not a regular file; skipped".into(),
            )),
            Err(e) => problems.push(problem(ProblemKind::Unreadable, format!("{e}; skipped"))),
        }
    }
}
