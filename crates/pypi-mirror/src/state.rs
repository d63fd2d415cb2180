//! The mirror's own record of what it indexed (`.pypi-mirror/state`), which
//! makes re-runs and `add` incremental.
//!
//! The file is an append-only log of tab-separated records so that `add` costs
//! one small append instead of rewriting a line per file of the mirror; a full
//! build compacts it. A torn last line (crash mid-append) has no newline and
//! is ignored, so the log never needs repair: the worst case is re-hashing
//! the files of that last run.
//!
//! A record is `F`, then tab-separated: file name, project, sha256, the
//! source's dev, ino, size, mtime and mtime_nsec, the `.metadata` sha256,
//! `Requires-Python`, the source path, and (added later, so optional)
//! `recorded` or nothing, then `yanked` or nothing and the yank reason, the
//! upload time and the upstream the file came from (what an index page says
//! of a file besides its bytes: `serve` records what upstream said, so the
//! tree's pages say offline what `serve` said online). Readers ignore fields
//! they do not know, so older versions of the tool still read the log.

use dib_pypi_common::escape::unescape;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const HEADER: &str = "# pypi-mirror state v1";

/// Value of the `recorded` field of a recorded file's record.
const RECORDED: &[u8] = b"recorded";

/// Value of the `yanked` field of a yanked file's record.
const YANKED: &[u8] = b"yanked";

/// Identity of a source file as seen by `stat`: if all of it is unchanged the
/// file's content is assumed unchanged and is not read again.
///
/// ctime is deliberately not part of it: hard-linking the source into the
/// mirror bumps the source's ctime, which would defeat the whole point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Device id.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds part.
    pub mtime: i64,
    /// Modification time, nanoseconds part.
    pub mtime_nsec: i64,
}

impl Stamp {
    /// The stamp of already fetched metadata.
    pub fn of(md: &fs::Metadata) -> Self {
        Self {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec(),
        }
    }
}

/// One file of the mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File name (also its name inside the project directory).
    pub filename: String,
    /// Normalized project name, i.e. the directory it lives in.
    pub project: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// `stat` identity of the source the file was indexed from.
    pub stamp: Stamp,
    /// Lower-case hex sha256 of `<file>.metadata`, for wheels.
    pub metadata_sha256: Option<String>,
    /// `Requires-Python` of the file, if any.
    pub requires_python: Option<String>,
    /// Where the file was indexed from (used to tell an updated file from a
    /// conflicting duplicate).
    pub source: PathBuf,
    /// Recorded into the mirror (e.g. by a caching proxy) rather than
    /// indexed from a source the user keeps: it may not be fetchable
    /// anywhere else, so `--prune` keeps it unless told otherwise.
    pub recorded: bool,
    /// What the index page says of the file besides its bytes.
    pub listing: Listing,
}

/// What an index page says of a file besides its bytes and metadata: kept
/// with the file so a page rendered from the tree says what upstream said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// PEP 592: `Some(reason)` (maybe empty) when yanked.
    pub yanked: Option<String>,
    /// PEP 700 `upload-time`, as upstream gave it; never invented.
    pub upload_time: Option<String>,
    /// The upstream index the file was fetched from (its URL, without
    /// credentials); `None` for files indexed from local sources.
    pub origin: Option<String>,
}

/// The mirror's state: every indexed file by file name.
#[derive(Debug, Default, Clone)]
pub struct State {
    /// Indexed files, keyed by file name (file names are unique in an index).
    pub entries: BTreeMap<String, Entry>,
    /// Number of records in the log, to decide when to compact.
    pub records: usize,
}

/// A change to log.
#[derive(Debug, Clone)]
pub enum Record<'a> {
    /// The file is indexed as described.
    Put(&'a Entry),
    /// The file was removed from the mirror.
    Delete(&'a str),
}

impl State {
    /// Load the log at `path`; a missing file is an empty state. A file with
    /// an unknown header is ignored with a warning (a full re-index follows),
    /// because refusing to run over a state file would be worse than
    /// re-hashing.
    pub fn load(path: &Path) -> io::Result<Self> {
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e),
        };
        let mut state = Self::default();
        match body_of(&data) {
            Some(body) => {
                state.replay(body);
            }
            None => log::warn!(
                "{}: unrecognised state file, re-indexing everything",
                path.display()
            ),
        }
        Ok(state)
    }

    /// Replay the records of `body` (a log's bytes after its header line,
    /// or a later part of it starting at a line boundary); only complete
    /// lines count. Returns how many bytes were consumed, so a reader that
    /// follows a growing log continues from there.
    pub fn replay(&mut self, body: &[u8]) -> usize {
        let mut used = 0;
        for line in body.split_inclusive(|&b| b == b'\n') {
            // Only complete lines count: see the module docs on torn appends.
            let Some(record) = line.strip_suffix(b"\n") else {
                break;
            };
            used += line.len();
            self.records += 1;
            match parse_record(record) {
                Some(Parsed::Put(e)) => {
                    self.entries.insert(e.filename.clone(), *e);
                }
                Some(Parsed::Delete(f)) => {
                    self.entries.remove(&f);
                }
                None => log::debug!("ignoring malformed state record"),
            }
        }
        used
    }
}

/// The records part of a log: what follows its header line, if the header
/// is ours.
pub fn body_of(data: &[u8]) -> Option<&[u8]> {
    data.strip_prefix(HEADER.as_bytes())?.strip_prefix(b"\n")
}

/// Whether a log of `records` records holding `live` entries has grown
/// enough to be worth rewriting.
pub fn wants_compaction(records: usize, live: usize) -> bool {
    records > 2 * live + 1024
}

/// Append `records` to the log at `path` (creating it with its header) and
/// fsync it.
pub fn append(path: &Path, records: &[Record<'_>]) -> io::Result<()> {
    let mut buf = Vec::new();
    let exists = path.exists();
    if !exists {
        buf.extend_from_slice(HEADER.as_bytes());
        buf.push(b'\n');
    }
    for r in records {
        encode(r, &mut buf);
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(&buf)?;
    f.sync_data()?;
    Ok(())
}

/// Render a complete, compacted log of `entries`.
pub fn render<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.extend_from_slice(HEADER.as_bytes());
    buf.push(b'\n');
    for e in entries {
        encode(&Record::Put(e), &mut buf);
    }
    buf
}

fn encode(r: &Record<'_>, buf: &mut Vec<u8>) {
    match r {
        Record::Put(e) => {
            buf.push(b'F');
            for field in [
                e.filename.as_bytes(),
                e.project.as_bytes(),
                e.sha256.as_bytes(),
                e.stamp.dev.to_string().as_bytes(),
                e.stamp.ino.to_string().as_bytes(),
                e.stamp.size.to_string().as_bytes(),
                e.stamp.mtime.to_string().as_bytes(),
                e.stamp.mtime_nsec.to_string().as_bytes(),
                e.metadata_sha256.as_deref().unwrap_or("").as_bytes(),
                e.requires_python.as_deref().unwrap_or("").as_bytes(),
                e.source.as_os_str().as_bytes(),
                if e.recorded { RECORDED } else { b"" },
                if e.listing.yanked.is_some() {
                    YANKED
                } else {
                    b""
                },
                e.listing.yanked.as_deref().unwrap_or("").as_bytes(),
                e.listing.upload_time.as_deref().unwrap_or("").as_bytes(),
                e.listing.origin.as_deref().unwrap_or("").as_bytes(),
            ] {
                buf.push(b'\t');
                escape_into(field, buf);
            }
        }
        Record::Delete(f) => {
            buf.extend_from_slice(b"D\t");
            escape_into(f.as_bytes(), buf);
        }
    }
    buf.push(b'\n');
}

enum Parsed {
    Put(Box<Entry>),
    Delete(String),
}

fn parse_record(line: &[u8]) -> Option<Parsed> {
    let mut fields = line.split(|&b| b == b'\t');
    let tag = fields.next()?;
    // Escapes are rare (only odd paths or specifiers have them), so fields
    // are borrowed unless they contain one: `add` parses the whole log and
    // must stay fast on a large mirror.
    let mut next = || fields.next().and_then(unescape);
    let text = |v: Cow<'_, [u8]>| match v {
        Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(str::to_owned),
        Cow::Owned(b) => String::from_utf8(b).ok(),
    };
    fn num<T: std::str::FromStr>(v: Cow<'_, [u8]>) -> Option<T> {
        std::str::from_utf8(&v).ok()?.parse().ok()
    }
    match tag {
        b"D" => Some(Parsed::Delete(text(next()?)?)),
        b"F" => {
            let filename = text(next()?)?;
            let project = text(next()?)?;
            let sha256 = text(next()?)?;
            let stamp = Stamp {
                dev: num(next()?)?,
                ino: num(next()?)?,
                size: num(next()?)?,
                mtime: num(next()?)?,
                mtime_nsec: num(next()?)?,
            };
            let metadata_sha256 = text(next()?)?;
            let requires_python = text(next()?)?;
            let source = PathBuf::from(OsString::from_vec(next()?.into_owned()));
            // Absent in logs written before the fields existed.
            let recorded = next().is_some_and(|f| *f == *RECORDED);
            let yanked = next().is_some_and(|f| *f == *YANKED);
            let reason = next().and_then(text).unwrap_or_default();
            let upload_time = next().and_then(text);
            let origin = next().and_then(text);
            let opt = |s: String| (!s.is_empty()).then_some(s);
            Some(Parsed::Put(Box::new(Entry {
                filename,
                project,
                sha256,
                stamp,
                metadata_sha256: opt(metadata_sha256),
                requires_python: opt(requires_python),
                source,
                recorded,
                listing: Listing {
                    yanked: yanked.then_some(reason),
                    upload_time: upload_time.and_then(opt),
                    origin: origin.and_then(opt),
                },
            })))
        }
        _ => None,
    }
}

/// Percent-escape `%`, control characters and bytes >= 0x7f so a field never
/// contains a tab or newline, whatever a path holds.
fn escape_into(field: &[u8], buf: &mut Vec<u8>) {
    dib_pypi_common::escape::escape_into(field, |b| (0x20..0x7f).contains(&b), buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Entry {
        Entry {
            filename: name.to_owned(),
            project: "p".to_owned(),
            sha256: "00ff".to_owned(),
            stamp: Stamp {
                dev: 1,
                ino: 2,
                size: 3,
                mtime: -4,
                mtime_nsec: 5,
            },
            metadata_sha256: None,
            requires_python: Some(">=3.8,\t<4%".to_owned()),
            source: PathBuf::from(OsString::from_vec(b"/tmp/a b\n\xff/x.whl".to_vec())),
            recorded: false,
            listing: Listing::default(),
        }
    }

    #[test]
    fn round_trips_and_replays_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (a, b) = (entry("a.whl"), entry("b.whl"));
        append(&path, &[Record::Put(&a), Record::Put(&b)]).unwrap();
        append(&path, &[Record::Delete("a.whl")]).unwrap();
        let state = State::load(&path).unwrap();
        assert_eq!(state.records, 3);
        assert_eq!(state.entries.len(), 1);
        assert_eq!(state.entries["b.whl"], b);
    }

    #[test]
    fn the_recorded_flag_round_trips_and_old_records_lack_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let mut a = entry("a.whl");
        a.recorded = true;
        let b = entry("b.whl");
        fs::write(&path, render([&a, &b])).unwrap();
        let state = State::load(&path).unwrap();
        assert_eq!(state.entries["a.whl"], a);
        assert_eq!(state.entries["b.whl"], b);

        // A record as the first version of the tool wrote it: 11 fields.
        let mut old = render([&b]);
        let cut = old.len() - 6; // the five empty later fields and the newline
        assert_eq!(&old[cut..], b"\t\t\t\t\t\n");
        old.truncate(cut);
        old.push(b'\n');
        fs::write(&path, &old).unwrap();
        assert_eq!(State::load(&path).unwrap().entries["b.whl"], b);
    }

    #[test]
    fn the_listing_round_trips_an_empty_yank_reason_included() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let mut a = entry("a.whl");
        a.listing = Listing {
            yanked: Some(String::new()),
            upload_time: Some("2024-05-20T19:31:30.123456Z".into()),
            origin: Some("https://idx.example/simple/".into()),
        };
        let mut b = entry("b.whl");
        b.listing.yanked = Some("broken\tbuild".into());
        append(&path, &[Record::Put(&a), Record::Put(&b)]).unwrap();
        let state = State::load(&path).unwrap();
        assert_eq!(state.entries["a.whl"], a);
        assert_eq!(state.entries["b.whl"], b);
    }

    #[test]
    fn torn_last_line_and_unknown_header_are_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let a = entry("a.whl");
        let mut data = render([&a]);
        data.extend_from_slice(b"F\tb.whl\tp\t00");
        fs::write(&path, &data).unwrap();
        let state = State::load(&path).unwrap();
        assert_eq!(state.entries.keys().collect::<Vec<_>>(), ["a.whl"]);

        fs::write(&path, b"something else\n").unwrap();
        assert!(State::load(&path).unwrap().entries.is_empty());
        assert!(State::load(&dir.path().join("missing"))
            .unwrap()
            .entries
            .is_empty());
    }
}
