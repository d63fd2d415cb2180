//! Reading one candidate: its sha256, its core metadata and the project name
//! it belongs to. The only phase that opens archives.

use std::fs;
use std::io::{self, Cursor, Read, Seek};

use sha2::{Digest, Sha256};

use super::report::{Problem, ProblemKind};
use super::scan::Candidate;
use crate::metadata;
use crate::name::{self, ArchiveKind};

/// Files up to this size are read into memory in one go (one read syscall,
/// and the zip reader then seeks in memory); larger ones are streamed.
const SLURP_LIMIT: u64 = 8 * 1024 * 1024;

/// Result of reading one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Processed {
    pub sha256: String,
    /// Normalized (PEP 503) project name.
    pub project: String,
    pub requires_python: Option<String>,
    /// The wheel's METADATA bytes, to be served as `<file>.metadata`.
    pub core_metadata: Option<Vec<u8>>,
    /// Their sha256, for the page's `data-core-metadata`.
    pub metadata_sha256: Option<String>,
}

/// Read one candidate: hash it, extract metadata, derive the project name.
/// A file pip would not use from this index (bad file name, or a name that
/// disagrees with the metadata) is refused rather than indexed where pip
/// cannot find it.
pub(crate) fn process(c: &Candidate) -> Result<Processed, Problem> {
    let problem = |kind, msg: String| Problem::new(c.shown(), kind, format!("{msg}; skipped"));
    let (_, file_name, _) = name::check_filename(&c.filename).map_err(|why| {
        let what = match c.kind {
            ArchiveKind::Wheel => "wheel",
            _ => "sdist",
        };
        problem(
            ProblemKind::BadFilename,
            format!("not a valid {what} file name: {why}"),
        )
    })?;
    let (sha256, meta) = hash_and_metadata(c)?;
    let core = meta.as_deref().map(metadata::parse).unwrap_or_default();
    if meta.is_none() {
        log::debug!(
            "{}: no PKG-INFO, taking the project name from the file name",
            c.shown().display()
        );
    }
    let raw = core.name.as_deref().unwrap_or(file_name);
    let project = name::normalize_checked(raw)
        .map_err(|e| problem(ProblemKind::InvalidName, e.to_string()))?;
    check_name_and_version(c, file_name, raw, &project)
        .map_err(|(kind, msg)| problem(kind, msg))?;
    let core_metadata = if c.kind.is_wheel() { meta } else { None };
    Ok(Processed {
        sha256,
        project,
        requires_python: core.requires_python,
        metadata_sha256: core_metadata.as_deref().map(sha256_hex),
        core_metadata,
    })
}

/// pip takes a file for a release of `project` only if its file name says
/// so: a wheel's name part must normalize to it, and an sdist's file name
/// must start with it (pip splits the version off after the first `-` whose
/// prefix does), followed by a valid version.
fn check_name_and_version(
    c: &Candidate,
    file_name: &str,
    raw: &str,
    project: &str,
) -> Result<(), (ProblemKind, String)> {
    let mismatch = || {
        (
            ProblemKind::NameMismatch,
            format!(
                "the file name is for project {file_name:?} but the metadata says {raw:?}, so pip would not find it"
            ),
        )
    };
    if c.kind.is_wheel() {
        // The version was checked with the file name.
        return if name::normalize(file_name) == project {
            Ok(())
        } else {
            Err(mismatch())
        };
    }
    let stem = c
        .filename
        .get(..c.filename.len() - c.kind.extension().len())
        .unwrap_or_default();
    let version = name::sdist_version(stem, project).ok_or_else(mismatch)?;
    name::check_version(version).map_err(|why| {
        (
            ProblemKind::BadFilename,
            format!("not a valid sdist file name: {why}"),
        )
    })
}

/// The file's sha256 and its core metadata bytes (`None`: an sdist without
/// PKG-INFO), from a single pass over small files.
fn hash_and_metadata(c: &Candidate) -> Result<(String, Option<Vec<u8>>), Problem> {
    let unreadable =
        |e: io::Error| Problem::new(c.shown(), ProblemKind::Unreadable, format!("{e}; skipped"));
    let mut file = fs::File::open(&c.path).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len();
    let (sha256, meta) = if size <= SLURP_LIMIT {
        let mut buf = Vec::with_capacity(size as usize);
        file.read_to_end(&mut buf).map_err(unreadable)?;
        let sha = sha256_hex(&buf);
        (
            sha,
            metadata::archive_metadata(c.kind, Cursor::new(buf), &c.filename),
        )
    } else {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(unreadable)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let sha = hex(&hasher.finalize());
        file.rewind().map_err(unreadable)?;
        (
            sha,
            metadata::archive_metadata(c.kind, io::BufReader::new(file), &c.filename),
        )
    };
    let meta = meta.map_err(|e| match e {
        metadata::MetadataError::Io(e) => unreadable(e),
        e => Problem::new(
            c.shown(),
            ProblemKind::BrokenArchive,
            format!("{e}; skipped"),
        ),
    })?;
    Ok((sha256, meta))
}

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digest_matches_a_known_vector() {
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
