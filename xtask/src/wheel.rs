//! Checks of the built wheel and sdist: RECORD lists every file, the element is whole, the tag fits the binaries.
//!
//! A wheel is a zip whose `<name>-<version>.dist-info/RECORD` lists every
//! other file with its sha256 (urlsafe base64, no padding) and size, and
//! itself with neither (the binary distribution format spec). pip
//! installs `<name>-<version>.data/data/X` at `<prefix>/X` and
//! `.data/scripts/X` at `<prefix>/bin/X`, each executable when its zip
//! entry is.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::Path;

use dib_pypi_common::element::{is_hook_script, BINARIES, FILES, LIBEXEC, NAME, SHARE_DIR};
use sha2::{Digest, Sha256};

use crate::element::{elf_has_interpreter, elf_interpreter, elf_machine, VERSION};

/// The distribution's name as wheel and sdist file names spell it.
pub const DIST: &str = "dib_pypi";

/// The program maturin builds and the wheel installs into `<prefix>/bin`.
pub const PROGRAM: &str = "pypi-mirror";

/// One file of a wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Whether its unix mode has an executable bit.
    pub executable: bool,
}

/// A wheel, read whole.
#[derive(Debug)]
pub struct Wheel {
    /// Its file name.
    pub file_name: String,
    /// Its files by name.
    pub entries: BTreeMap<String, Entry>,
}

/// The parts of a wheel's file name.
#[derive(Debug, PartialEq, Eq)]
pub struct WheelName {
    /// Distribution, escaped (`dib_pypi`).
    pub dist: String,
    /// Version.
    pub version: String,
    /// Python tag (`py3`).
    pub python: String,
    /// ABI tag (`none`).
    pub abi: String,
    /// Platform tag (`manylinux_2_34_x86_64`).
    pub platform: String,
}

/// Split `dist-version-python-abi-platform.whl` (no build tag here).
pub fn parse_wheel_name(file_name: &str) -> Result<WheelName, String> {
    let stem = file_name
        .strip_suffix(".whl")
        .ok_or_else(|| format!("{file_name}: not a .whl file name"))?;
    let parts: Vec<&str> = stem.split('-').collect();
    let [dist, version, python, abi, platform] = parts[..] else {
        return Err(format!(
            "{file_name}: not name-version-python-abi-platform.whl"
        ));
    };
    Ok(WheelName {
        dist: dist.into(),
        version: version.into(),
        python: python.into(),
        abi: abi.into(),
        platform: platform.into(),
    })
}

/// Read every file of the wheel at `path`.
pub fn read_wheel(path: &Path) -> Result<Wheel, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = fs::File::open(path).map_err(|e| at(&e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| at(&e))?;
    let mut entries = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| at(&e))?;
        if f.is_dir() {
            continue;
        }
        let name = f.name().map_err(|e| at(&e))?.into_owned();
        let executable = f.unix_mode().is_some_and(|m| m & 0o111 != 0);
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)
            .map_err(|e| at(&format!("{name}: {e}")))?;
        if entries
            .insert(name.clone(), Entry { bytes, executable })
            .is_some()
        {
            return Err(at(&format!("{name} is in the zip twice")));
        }
    }
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| at(&"no UTF-8 file name"))?
        .to_string();
    Ok(Wheel { file_name, entries })
}

/// `sha256=<urlsafe base64 without padding>` of `bytes`, as RECORD gives it.
pub fn record_hash(bytes: &[u8]) -> String {
    format!("sha256={}", base64_urlsafe_nopad(&Sha256::digest(bytes)))
}

fn base64_urlsafe_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let at = |i: usize| chunk.get(i).copied().unwrap_or(0);
        let b = [at(0), at(1), at(2)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// One RECORD line: path, hash, size (the last two empty for RECORD).
#[derive(Debug, PartialEq, Eq)]
pub struct RecordLine {
    /// Path, relative to the wheel root (or site-packages once installed).
    pub path: String,
    /// `sha256=...`, or empty.
    pub hash: String,
    /// Size in bytes, or empty.
    pub size: String,
}

/// Parse RECORD, a CSV file of `path,hash,size` lines (a path with a
/// comma or quote is quoted, its quotes doubled).
pub fn parse_record(text: &str) -> Result<Vec<RecordLine>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let bad = || format!("RECORD line {}: not path,hash,size: {line:?}", n + 1);
        let (path, rest) = if let Some(quoted) = line.strip_prefix('"') {
            let mut path = String::new();
            let mut chars = quoted.char_indices();
            loop {
                match chars.next() {
                    Some((i, '"')) if quoted[i + 1..].starts_with('"') => {
                        path.push('"');
                        chars.next();
                    }
                    Some((i, '"')) => {
                        break (path, quoted[i + 1..].strip_prefix(',').ok_or_else(bad)?)
                    }
                    Some((_, c)) => path.push(c),
                    None => return Err(bad()),
                }
            }
        } else {
            let (path, rest) = line.split_once(',').ok_or_else(bad)?;
            (path.to_string(), rest)
        };
        let (hash, size) = rest.split_once(',').ok_or_else(bad)?;
        if size.contains(',') || path.is_empty() {
            return Err(bad());
        }
        out.push(RecordLine {
            path,
            hash: hash.into(),
            size: size.into(),
        });
    }
    Ok(out)
}

/// The wheel's RECORD lists every other file once, with its right hash and
/// size, and itself without them; and nothing that is not in the wheel.
pub fn check_record(wheel: &Wheel) -> Result<(), String> {
    let name = parse_wheel_name(&wheel.file_name)?;
    let record_path = format!("{}-{}.dist-info/RECORD", name.dist, name.version);
    let at = |e: String| format!("{}: {record_path}: {e}", wheel.file_name);
    let record = wheel
        .entries
        .get(&record_path)
        .ok_or_else(|| at("missing".into()))?;
    let text = std::str::from_utf8(&record.bytes).map_err(|e| at(e.to_string()))?;
    let mut listed = BTreeSet::new();
    for line in parse_record(text).map_err(at)? {
        if !listed.insert(line.path.clone()) {
            return Err(at(format!("lists {} twice", line.path)));
        }
        let Some(entry) = wheel.entries.get(&line.path) else {
            return Err(at(format!(
                "lists {}, which the wheel does not hold",
                line.path
            )));
        };
        let want = if line.path == record_path {
            (String::new(), String::new())
        } else {
            (record_hash(&entry.bytes), entry.bytes.len().to_string())
        };
        if (line.hash.as_str(), line.size.as_str()) != (want.0.as_str(), want.1.as_str()) {
            return Err(at(format!(
                "{}: says {},{} but the file is {},{}",
                line.path, line.hash, line.size, want.0, want.1
            )));
        }
    }
    match wheel.entries.keys().find(|k| !listed.contains(*k)) {
        Some(unlisted) => Err(at(format!("does not list {unlisted}"))),
        None => Ok(()),
    }
}

/// The wheel is this version of dib-pypi and holds, besides its
/// dist-info, exactly the program (executable) and the element of
/// `element` (same bytes; hook scripts executable, nothing else).
pub fn check_contents(wheel: &Wheel, element: &Path) -> Result<(), String> {
    let name = parse_wheel_name(&wheel.file_name)?;
    let at = |e: String| format!("{}: {e}", wheel.file_name);
    if (name.dist.as_str(), name.version.as_str()) != (DIST, VERSION) {
        return Err(at(format!(
            "is {} {}, wants {DIST} {VERSION}",
            name.dist, name.version
        )));
    }
    let data = format!("{DIST}-{VERSION}.data");
    let dist_info = format!("{DIST}-{VERSION}.dist-info/");
    let program = format!("{data}/scripts/{PROGRAM}");
    let element_prefix = format!("{data}/data/{SHARE_DIR}/{NAME}/");
    let mut element_files = BTreeSet::new();
    for (path, entry) in &wheel.entries {
        if path.starts_with(&dist_info) {
            continue;
        }
        if *path == program {
            if !entry.executable {
                return Err(at(format!("{path} is not executable")));
            }
            continue;
        }
        let Some(rel) = path.strip_prefix(&element_prefix) else {
            return Err(at(format!(
                "{path}: neither the program, the element nor dist-info"
            )));
        };
        let want = fs::read(element.join(rel))
            .map_err(|e| at(format!("{path}: {}: {e}", element.join(rel).display())))?;
        if entry.bytes != want {
            return Err(at(format!(
                "{path} differs from {}",
                element.join(rel).display()
            )));
        }
        if entry.executable != is_hook_script(rel) {
            return Err(at(format!(
                "{path} is {}executable, wants {}",
                if entry.executable { "" } else { "not " },
                if is_hook_script(rel) {
                    "executable (a hook script)"
                } else {
                    "no exec bit"
                }
            )));
        }
        element_files.insert(rel);
    }
    if !wheel.entries.contains_key(&program) {
        return Err(at(format!("{program} is missing")));
    }
    match FILES.iter().find(|f| !element_files.contains(**f)) {
        Some(missing) => Err(at(format!("{element_prefix}{missing} is missing"))),
        None => Ok(()),
    }
}

/// The platform tag a wheel of these binaries deserves on `arch` (as tags
/// spell it: `x86_64`, `aarch64`): the architecture of every ELF file, and
/// the C library of the one dynamically linked program: glibc's loader
/// makes it a manylinux wheel (which glibc, [`crate::glibc::check_floor`]
/// checks), musl's a `musllinux` one. The static hook binaries
/// run on any Linux of the architecture and add no constraint. A plain
/// `linux_<arch>` tag (what pip's own local builds get) passes only with
/// `allow_plain`.
pub fn check_tag(wheel: &Wheel, arch: &str, allow_plain: bool) -> Result<(), String> {
    let name = parse_wheel_name(&wheel.file_name)?;
    let at = |e: String| format!("{}: {e}", wheel.file_name);
    if (name.python.as_str(), name.abi.as_str()) != ("py3", "none") {
        return Err(at(format!(
            "tags {}-{}, wants py3-none: the binaries need no particular Python",
            name.python, name.abi
        )));
    }
    let machine =
        elf_machine_of(arch).ok_or_else(|| at(format!("no ELF machine known for {arch}")))?;
    let data = format!("{DIST}-{VERSION}.data");
    let program = format!("{data}/scripts/{PROGRAM}");
    let mut elves = vec![program.clone()];
    for bin in BINARIES {
        elves.push(format!("{data}/data/{SHARE_DIR}/{NAME}/{LIBEXEC}/{bin}"));
    }
    for path in &elves {
        let bytes = &wheel
            .entries
            .get(path)
            .ok_or_else(|| at(format!("{path} is missing")))?
            .bytes;
        let found = elf_machine(bytes).map_err(|e| at(format!("{path}: {e}")))?;
        if found != machine {
            return Err(at(format!(
                "{path} is for ELF machine {found}, not {arch} ({machine})"
            )));
        }
        if *path != program && elf_has_interpreter(bytes).map_err(|e| at(format!("{path}: {e}")))? {
            return Err(at(format!("{path} is dynamically linked")));
        }
    }
    let program_bytes = wheel
        .entries
        .get(&program)
        .map(|e| e.bytes.as_slice())
        .unwrap_or_default();
    let interp = elf_interpreter(program_bytes).map_err(|e| at(format!("{program}: {e}")))?;
    let family = match interp.as_deref() {
        Some(i) if i.contains("ld-musl") => "musllinux_",
        Some(i) if i.contains("ld-linux") => "manylinux",
        Some(i) => return Err(at(format!("{program}: unknown program interpreter {i}"))),
        None => {
            return Err(at(format!(
                "{program} is static; no tag rule for that here"
            )))
        }
    };
    let platform = &name.platform;
    // A compressed tag set (`manylinux2014_x86_64.manylinux_2_17_x86_64`)
    // fits when each of its tags does.
    let fits = platform
        .split('.')
        .all(|tag| tag.starts_with(family) && tag.ends_with(&format!("_{arch}")));
    let plain = *platform == format!("linux_{arch}");
    if fits || (allow_plain && plain) {
        Ok(())
    } else {
        Err(at(format!(
            "platform tag {platform}, wants {family}*_{arch}: {program} is linked against {} for {arch}",
            interp.unwrap_or_default()
        )))
    }
}

/// ELF `e_machine` of a wheel platform tag's architecture.
pub fn elf_machine_of(arch: &str) -> Option<u16> {
    Some(match arch {
        "x86_64" => 62,
        "aarch64" => 183,
        "ppc64le" => 21,
        "s390x" => 22,
        "riscv64" => 243,
        _ => return None,
    })
}

/// Every file of the sdist at `path` (a .tar.gz) relative to its top
/// directory `<dist>-<version>/`, which every one must be under.
pub fn sdist_files(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let top = format!("{DIST}-{VERSION}/");
    let file = fs::File::open(path).map_err(|e| at(&e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = BTreeMap::new();
    for entry in tar.entries().map_err(|e| at(&e))? {
        let mut entry = entry.map_err(|e| at(&e))?;
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| at(&e))?
            .to_string_lossy()
            .into_owned();
        let rel = name
            .strip_prefix(&top)
            .ok_or_else(|| at(&format!("{name} is not under {top}")))?
            .to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| at(&e))?;
        out.insert(rel, bytes);
    }
    Ok(out)
}

/// The sdist is the checkout: exactly the files `tracked` (what git
/// tracks) plus PKG-INFO of this version, so a wheel built from it has
/// the hook crates, `hooks/`, xtask and the build backend.
pub fn check_sdist(path: &Path, tracked: &BTreeSet<String>) -> Result<(), String> {
    let at = |e: String| format!("{}: {e}", path.display());
    let files = sdist_files(path)?;
    let pkg_info = files
        .get("PKG-INFO")
        .ok_or_else(|| at("no PKG-INFO".into()))?;
    let version_line = format!("Version: {VERSION}");
    if !String::from_utf8_lossy(pkg_info)
        .lines()
        .any(|l| l == version_line)
    {
        return Err(at(format!("PKG-INFO lacks {version_line:?}")));
    }
    let have: BTreeSet<&String> = files.keys().filter(|f| *f != "PKG-INFO").collect();
    let want: BTreeSet<&String> = tracked.iter().collect();
    if let Some(missing) = want.difference(&have).next() {
        return Err(at(format!("lacks {missing}, which git tracks")));
    }
    if let Some(extra) = have.difference(&want).next() {
        return Err(at(format!("has {extra}, which git does not track")));
    }
    for needed in ["pyproject.toml", "Cargo.lock", "pep517/dib_pypi_build.py"] {
        if !have.contains(&needed.to_string()) {
            return Err(at(format!("lacks {needed}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
