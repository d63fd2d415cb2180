//! Core metadata: finding `METADATA` in wheels and `PKG-INFO` in sdists, and
//! reading the few fields the index needs out of it.

use std::io::{self, Read, Seek};

use crate::name::{self, ArchiveKind};

/// Upper bound on a metadata file we are willing to inflate: real ones are a
/// few KiB (large ones embed a long README), so anything past this is a
/// corrupt or hostile archive rather than metadata.
pub const MAX_METADATA_BYTES: u64 = 32 * 1024 * 1024;

/// The fields of a core metadata file (`METADATA` / `PKG-INFO`) that matter to
/// an index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreMetadata {
    /// `Name:`, as written.
    pub name: Option<String>,
    /// `Version:`, as written.
    pub version: Option<String>,
    /// `Requires-Python:`, as written (a PEP 440 specifier set).
    pub requires_python: Option<String>,
}

/// Why metadata could not be read out of an archive.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The zip container is unreadable.
    #[error("broken zip archive: {0}")]
    Zip(String),
    /// The gzip stream or tar container is unreadable.
    #[error("broken tar.gz archive: {0}")]
    Tar(String),
    /// A wheel without exactly one `*.dist-info/METADATA`.
    #[error("{0}")]
    Layout(String),
    /// Reading the archive failed for another reason.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
}

/// Parse the RFC 822 style header block of a core metadata file.
///
/// Only the header part is read (everything up to the first empty line); the
/// description body that may follow is ignored. Folded continuation lines are
/// joined, because `Requires-Python` is occasionally wrapped by old tools.
pub fn parse(bytes: &[u8]) -> CoreMetadata {
    let text = String::from_utf8_lossy(bytes);
    let mut md = CoreMetadata::default();
    let mut current: Option<(String, String)> = None;
    let commit = |md: &mut CoreMetadata, field: Option<(String, String)>| {
        if let Some((key, value)) = field {
            let value = value.trim().to_owned();
            let slot = match key.to_ascii_lowercase().as_str() {
                "name" => &mut md.name,
                "version" => &mut md.version,
                "requires-python" => &mut md.requires_python,
                _ => return,
            };
            // First occurrence wins: these fields are single-use, and pip's
            // own parser (email.message) returns the first one.
            if slot.is_none() && !value.is_empty() {
                *slot = Some(value);
            }
        }
    };
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.as_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        commit(&mut md, current.take());
        if let Some((key, value)) = line.split_once(':') {
            current = Some((key.trim().to_owned(), value.to_owned()));
        }
    }
    commit(&mut md, current.take());
    md
}

/// Read the bytes of `{dist}-{version}.dist-info/METADATA` from a wheel.
///
/// `filename` is used to pick the right `.dist-info` directory when a
/// (malformed but installable-looking) wheel has more than one.
pub fn wheel_metadata<R: Read + Seek>(reader: R, filename: &str) -> Result<Vec<u8>, MetadataError> {
    let mut archive =
        zip::ZipArchive::new(reader).map_err(|e| MetadataError::Zip(e.to_string()))?;
    let mut candidates: Vec<String> = Vec::new();
    for raw in archive.file_names_raw() {
        // Entry names in wheels are UTF-8; a non-UTF-8 name cannot be the
        // metadata file we are after, so it is simply not a candidate.
        let Ok(entry) = std::str::from_utf8(raw) else {
            continue;
        };
        if let Some((dir, file)) = entry.split_once('/') {
            if file == "METADATA" && dir.ends_with(".dist-info") {
                candidates.push(entry.to_owned());
            }
        }
    }
    let chosen = match candidates.len() {
        0 => {
            return Err(MetadataError::Layout(
                "no *.dist-info/METADATA in wheel".to_owned(),
            ))
        }
        1 => candidates.swap_remove(0),
        _ => {
            // Prefer the directory named after the file, compared normalized
            // so `Foo_Bar-1.0.dist-info` matches `foo_bar-1.0-....whl`.
            let want = name::split_filename(filename)
                .map(|(_, n, v)| format!("{}-{}", name::normalize(n), v.to_ascii_lowercase()));
            let pick = candidates.iter().position(|c| {
                let dir = c
                    .trim_end_matches("/METADATA")
                    .trim_end_matches(".dist-info");
                dir.rsplit_once('-')
                    .map(|(n, v)| format!("{}-{}", name::normalize(n), v.to_ascii_lowercase()))
                    == want
            });
            match pick {
                Some(i) => candidates.swap_remove(i),
                None => {
                    return Err(MetadataError::Layout(format!(
                        "{} .dist-info directories and none matches the file name",
                        candidates.len()
                    )))
                }
            }
        }
    };
    let entry = archive
        .by_name(&chosen)
        .map_err(|e| MetadataError::Zip(format!("{chosen}: {e}")))?;
    read_bounded(entry, &chosen).map_err(|e| MetadataError::Zip(e.to_string()))
}

/// Read `{top}/PKG-INFO` from a `.tar.gz` sdist; `Ok(None)` when the archive
/// is readable but has no such file (very old sdists), so the caller can fall
/// back to the file name.
pub fn targz_pkg_info<R: Read>(reader: R) -> Result<Option<Vec<u8>>, MetadataError> {
    let gz = flate2::read::GzDecoder::new(reader);
    let mut archive = tar::Archive::new(gz);
    let entries = archive
        .entries()
        .map_err(|e| MetadataError::Tar(e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| MetadataError::Tar(e.to_string()))?;
        let is_pkg_info = {
            let path = entry.path_bytes();
            is_top_level_pkg_info(&path)
        };
        if is_pkg_info && entry.header().entry_type().is_file() {
            return read_bounded(entry, "PKG-INFO")
                .map(Some)
                .map_err(|e| MetadataError::Tar(e.to_string()));
        }
    }
    Ok(None)
}

/// Read `{top}/PKG-INFO` from a legacy `.zip` sdist; `Ok(None)` when absent.
pub fn zip_pkg_info<R: Read + Seek>(reader: R) -> Result<Option<Vec<u8>>, MetadataError> {
    let mut archive =
        zip::ZipArchive::new(reader).map_err(|e| MetadataError::Zip(e.to_string()))?;
    let found = archive
        .file_names_raw()
        .find(|raw| is_top_level_pkg_info(raw))
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .map(str::to_owned);
    let Some(found) = found else {
        return Ok(None);
    };
    let entry = archive
        .by_name(&found)
        .map_err(|e| MetadataError::Zip(format!("{found}: {e}")))?;
    read_bounded(entry, &found)
        .map(Some)
        .map_err(|e| MetadataError::Zip(e.to_string()))
}

/// Read the core metadata bytes of any supported archive.
pub fn archive_metadata<R: Read + Seek>(
    kind: ArchiveKind,
    reader: R,
    filename: &str,
) -> Result<Option<Vec<u8>>, MetadataError> {
    match kind {
        ArchiveKind::Wheel => wheel_metadata(reader, filename).map(Some),
        ArchiveKind::SdistTarGz => targz_pkg_info(reader),
        ArchiveKind::SdistZip => zip_pkg_info(reader),
    }
}

/// `top/PKG-INFO` (exactly one directory level), tolerating a leading `./`.
fn is_top_level_pkg_info(path: &[u8]) -> bool {
    let path = path.strip_prefix(b"./").unwrap_or(path);
    let mut parts = path.split(|&b| b == b'/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(top), Some(b"PKG-INFO"), None) if !top.is_empty()
    )
}

fn read_bounded<R: Read>(reader: R, what: &str) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader.take(MAX_METADATA_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_METADATA_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} larger than {MAX_METADATA_BYTES} bytes"),
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn parses_header_fields_and_ignores_body() {
        let md = parse(
            b"Metadata-Version: 2.1\r\nName: Foo.Bar\nVersion: 1.0\nRequires-Python: >=3.8,\n  <4\nSummary: x\n\nName: not-this\nRequires-Python: body\n",
        );
        assert_eq!(md.name.as_deref(), Some("Foo.Bar"));
        assert_eq!(md.version.as_deref(), Some("1.0"));
        assert_eq!(md.requires_python.as_deref(), Some(">=3.8, <4"));
    }

    #[test]
    fn missing_and_empty_fields_are_none() {
        let md = parse(b"Metadata-Version: 2.1\nName: x\nRequires-Python:\n");
        assert_eq!(md.name.as_deref(), Some("x"));
        assert_eq!(md.version, None);
        assert_eq!(md.requires_python, None);
        assert_eq!(parse(b""), CoreMetadata::default());
    }

    #[test]
    fn broken_and_empty_archives_are_errors() {
        let err = wheel_metadata(Cursor::new(b"not a zip".to_vec()), "x-1-py3-none-any.whl");
        assert!(matches!(err, Err(MetadataError::Zip(_))), "{err:?}");
        let err = targz_pkg_info(Cursor::new(b"not gzip".to_vec()));
        assert!(matches!(err, Err(MetadataError::Tar(_))), "{err:?}");

        // A valid zip without a .dist-info directory.
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file("x/__init__.py", zip::write::SimpleFileOptions::default())
                .unwrap();
            w.finish().unwrap();
        }
        let err = wheel_metadata(Cursor::new(buf.into_inner()), "x-1-py3-none-any.whl");
        assert!(matches!(err, Err(MetadataError::Layout(_))), "{err:?}");
    }

    #[test]
    fn top_level_pkg_info_only() {
        assert!(is_top_level_pkg_info(b"foo-1.0/PKG-INFO"));
        assert!(is_top_level_pkg_info(b"./foo-1.0/PKG-INFO"));
        assert!(!is_top_level_pkg_info(b"foo-1.0/foo.egg-info/PKG-INFO"));
        assert!(!is_top_level_pkg_info(b"PKG-INFO"));
    }
}
