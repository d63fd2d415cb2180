//! Synthetic, valid and installable Python distributions for tests and
//! benchmarks, so no test has to download anything.
//!
//! Every distribution contains one importable package whose behaviour is
//! checkable from outside:
//!
//! ```text
//! python -c 'import foo_bar; print(foo_bar.hello())'   # hello from foo-bar 1.0
//! python -m foo_bar                                     # same line
//! ```
//!
//! Wheels are complete (METADATA with `Name`, `Version`, `Requires-Python`,
//! WHEEL, RECORD with correct sha256 digests). Sdists carry `PKG-INFO`, a
//! `pyproject.toml` and a tiny in-tree PEP 517 backend using only the standard
//! library, so pip and uv can build them offline without fetching setuptools.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use pypi_mirror::name;

/// What to put into a synthetic distribution. [`Spec::new`] gives the
/// defaults used by [`write_wheel`] and [`write_sdist`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Project name as written into the metadata (any PEP 508 name).
    pub name: String,
    /// Version (used verbatim in metadata and file names; pass a normalized
    /// PEP 440 version such as `1.0` or `2.0.1`).
    pub version: String,
    /// `Requires-Python`; `None` omits the field.
    pub requires_python: Option<String>,
    /// `Requires-Dist` lines (PEP 508 requirements), e.g. `["dep>=1"]`.
    pub requires_dist: Vec<String>,
}

impl Spec {
    /// A spec with `Requires-Python: >=3.8` and no dependencies.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            requires_python: Some(">=3.8".to_owned()),
            requires_dist: Vec::new(),
        }
    }

    /// Replace `Requires-Python` (`None` removes it).
    pub fn requires_python(mut self, spec: Option<&str>) -> Self {
        self.requires_python = spec.map(str::to_owned);
        self
    }

    /// Add a `Requires-Dist` line.
    pub fn requires(mut self, requirement: &str) -> Self {
        self.requires_dist.push(requirement.to_owned());
        self
    }
}

/// Write `{dist}-{version}-py3-none-any.whl` into `dir` and return its path.
pub fn write_wheel(dir: &Path, name: &str, version: &str) -> io::Result<PathBuf> {
    write_wheel_spec(dir, &Spec::new(name, version))
}

/// Write `{dist}-{version}.tar.gz` into `dir` and return its path.
pub fn write_sdist(dir: &Path, name: &str, version: &str) -> io::Result<PathBuf> {
    write_sdist_spec(dir, &Spec::new(name, version))
}

/// The importable package name of a synthetic project: the PEP 503 name with
/// `-` turned into `_` (`Foo.Bar` → `foo_bar`), prefixed with `_` when it
/// would start with a digit.
pub fn module_name(project: &str) -> String {
    let m = name::normalize(project).replace('-', "_");
    if m.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{m}")
    } else {
        m
    }
}

/// The line that `hello()` returns and `python -m MODULE` prints:
/// `hello from {normalized name} {version}`.
pub fn expected_output(project: &str, version: &str) -> String {
    format!("hello from {} {}", name::normalize(project), version)
}

/// The file-name form of a project name (PEP 427 / binary distribution
/// format): normalized, with `_` for separators.
pub fn dist_name(project: &str) -> String {
    name::normalize(project).replace('-', "_")
}

/// The wheel file name [`write_wheel_spec`] produces.
pub fn wheel_filename(project: &str, version: &str) -> String {
    format!("{}-{}-py3-none-any.whl", dist_name(project), version)
}

/// The sdist file name [`write_sdist_spec`] produces.
pub fn sdist_filename(project: &str, version: &str) -> String {
    format!("{}-{}.tar.gz", dist_name(project), version)
}

/// Write a wheel built from `spec` into `dir`; returns its path.
pub fn write_wheel_spec(dir: &Path, spec: &Spec) -> io::Result<PathBuf> {
    let bytes = wheel_bytes(spec)?;
    let path = dir.join(wheel_filename(&spec.name, &spec.version));
    fs::write(&path, bytes)?;
    Ok(path)
}

/// The wheel of `spec`, in memory.
pub fn wheel_bytes(spec: &Spec) -> io::Result<Vec<u8>> {
    let module = module_name(&spec.name);
    let info = format!("{}-{}.dist-info", dist_name(&spec.name), spec.version);
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (format!("{module}/__init__.py"), init_py(spec).into_bytes()),
        (format!("{module}/__main__.py"), MAIN_PY.as_bytes().to_vec()),
        (format!("{info}/METADATA"), metadata(spec).into_bytes()),
        (format!("{info}/WHEEL"), WHEEL.as_bytes().to_vec()),
    ];
    let mut record = String::new();
    for (path, data) in &files {
        record.push_str(&format!(
            "{path},sha256={},{}\n",
            urlsafe_b64_nopad(&Sha256::digest(data)),
            data.len()
        ));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    files.push((format!("{info}/RECORD"), record.into_bytes()));

    let mut out = io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    // Fixed timestamps (the zip default, 1980-01-01) and permissions keep the
    // output byte-for-byte reproducible, which benchmarks and hash
    // assertions rely on.
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (path, data) in &files {
        zip.start_file(path.as_str(), opts)
            .map_err(io::Error::other)?;
        zip.write_all(data)?;
    }
    zip.finish().map_err(io::Error::other)?;
    Ok(out.into_inner())
}

/// Write an sdist built from `spec` into `dir`; returns its path.
pub fn write_sdist_spec(dir: &Path, spec: &Spec) -> io::Result<PathBuf> {
    let path = dir.join(sdist_filename(&spec.name, &spec.version));
    let file = fs::File::create(&path)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let module = module_name(&spec.name);
    let top = format!("{}-{}", dist_name(&spec.name), spec.version);
    let backend = BACKEND_PY
        .replace("@DIST@", &dist_name(&spec.name))
        .replace("@VERSION@", &spec.version)
        .replace("@MODULE@", &module);
    let files: [(String, Vec<u8>); 5] = [
        (format!("{top}/PKG-INFO"), metadata(spec).into_bytes()),
        (
            format!("{top}/pyproject.toml"),
            PYPROJECT.as_bytes().to_vec(),
        ),
        (format!("{top}/_synth_backend.py"), backend.into_bytes()),
        (
            format!("{top}/{module}/__init__.py"),
            init_py(spec).into_bytes(),
        ),
        (
            format!("{top}/{module}/__main__.py"),
            MAIN_PY.as_bytes().to_vec(),
        ),
    ];
    for (name, data) in &files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_600_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, data.as_slice())?;
    }
    let gz = tar.into_inner()?;
    let file = gz.finish()?;
    file.sync_all()?;
    Ok(path)
}

/// The core metadata text (`METADATA` / `PKG-INFO`) of `spec`.
pub fn metadata(spec: &Spec) -> String {
    let mut md = format!(
        "Metadata-Version: 2.1\nName: {}\nVersion: {}\nSummary: Synthetic test package {}\n",
        spec.name, spec.version, spec.name
    );
    if let Some(rp) = &spec.requires_python {
        md.push_str(&format!("Requires-Python: {rp}\n"));
    }
    for req in &spec.requires_dist {
        md.push_str(&format!("Requires-Dist: {req}\n"));
    }
    md
}

fn init_py(spec: &Spec) -> String {
    let line = expected_output(&spec.name, &spec.version);
    format!(
        "\"\"\"Synthetic package written by pypi-mirror's synth module.\"\"\"\n\
         __version__ = {version:?}\n\n\n\
         def hello():\n    return {line:?}\n",
        version = spec.version,
    )
}

const MAIN_PY: &str = "from . import hello\n\nprint(hello())\n";

const WHEEL: &str =
    "Wheel-Version: 1.0\nGenerator: pypi-mirror-synth\nRoot-Is-Purelib: true\nTag: py3-none-any\n";

const PYPROJECT: &str =
    "[build-system]\nrequires = []\nbuild-backend = \"_synth_backend\"\nbackend-path = [\".\"]\n";

/// In-tree PEP 517 backend: builds the wheel with `zipfile` only. Placeholders
/// are substituted (not `format!`ed) to keep the Python braces readable.
const BACKEND_PY: &str = r#""""In-tree PEP 517 backend of a synthetic sdist (standard library only)."""
import base64
import hashlib
import os
import zipfile

_ROOT = os.path.dirname(os.path.abspath(__file__))
_DIST = "@DIST@"
_VERSION = "@VERSION@"
_MODULE = "@MODULE@"


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def _read(*parts):
    with open(os.path.join(_ROOT, *parts), "rb") as f:
        return f.read()


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "%s,sha256=%s,%d" % (path, digest.decode(), len(data))


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = "%s-%s.dist-info" % (_DIST, _VERSION)
    files = []
    for entry in sorted(os.listdir(os.path.join(_ROOT, _MODULE))):
        if entry.endswith(".py"):
            files.append(("%s/%s" % (_MODULE, entry), _read(_MODULE, entry)))
    files.append((info + "/METADATA", _read("PKG-INFO")))
    files.append((info + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: synth\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    record = [_record_line(p, d) for p, d in files] + [info + "/RECORD,,"]
    files.append((info + "/RECORD", ("\n".join(record) + "\n").encode()))
    name = "%s-%s-py3-none-any.whl" % (_DIST, _VERSION)
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files:
            z.writestr(path, data)
    return name
"#;

/// RFC 4648 §5 base64 without padding, as RECORD requires (PEP 376/427).
fn urlsafe_b64_nopad(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(urlsafe_b64_nopad(b""), "");
        assert_eq!(urlsafe_b64_nopad(b"f"), "Zg");
        assert_eq!(urlsafe_b64_nopad(b"fo"), "Zm8");
        assert_eq!(urlsafe_b64_nopad(b"foo"), "Zm9v");
        assert_eq!(urlsafe_b64_nopad(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn wheel_has_consistent_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_wheel(dir.path(), "Foo.Bar", "1.0").unwrap();
        assert_eq!(path.file_name().unwrap(), "foo_bar-1.0-py3-none-any.whl");
        let mut zip = zip::ZipArchive::new(fs::File::open(&path).unwrap()).unwrap();
        let mut record = String::new();
        zip.by_name("foo_bar-1.0.dist-info/RECORD")
            .unwrap()
            .read_to_string(&mut record)
            .unwrap();
        let mut checked = 0;
        for line in record.lines() {
            let mut f = line.split(',');
            let (p, h, n) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            if h.is_empty() {
                continue;
            }
            let mut data = Vec::new();
            zip.by_name(p).unwrap().read_to_end(&mut data).unwrap();
            assert_eq!(
                h,
                format!("sha256={}", urlsafe_b64_nopad(&Sha256::digest(&data)))
            );
            assert_eq!(n.parse::<usize>().unwrap(), data.len());
            checked += 1;
        }
        assert_eq!(checked, 4);
        let mut init = String::new();
        zip.by_name("foo_bar/__init__.py")
            .unwrap()
            .read_to_string(&mut init)
            .unwrap();
        assert!(init.contains("hello from foo-bar 1.0"), "{init}");
    }

    #[test]
    fn wheels_are_reproducible() {
        let spec = Spec::new("x", "1");
        assert_eq!(wheel_bytes(&spec).unwrap(), wheel_bytes(&spec).unwrap());
    }

    #[test]
    fn module_names_are_identifiers() {
        assert_eq!(module_name("Foo.Bar-baz"), "foo_bar_baz");
        assert_eq!(module_name("1pkg"), "_1pkg");
    }
}
