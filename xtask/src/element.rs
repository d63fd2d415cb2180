//! `cargo xtask element`: build the static hook binaries and lay out the DIB element.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use dib_pypi_common::element::{is_hook_script, FILES, NAME, SHARE_DIR, VERSION_PLACEHOLDER};
pub use dib_pypi_common::element::{BINARIES, LIBEXEC};

/// The version of the workspace, the wheel and every binary: one
/// `[workspace.package] version` (xtask inherits it like every crate).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `[tool.maturin] data` of pyproject.toml, relative to the workspace
/// root: the wheel's `<name>.data/` directory, which `cargo xtask
/// wheel-data` fills before maturin runs. Its `data/` subdirectory goes to
/// the installation prefix, so the element lands in
/// `<prefix>/share/dib-pypi/elements/pypi`.
pub const WHEEL_DATA: &str = "target/wheel-data";

/// Workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The host's target triple, as rustc names it.
pub fn host_triple() -> Result<String, String> {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .map_err(|e| format!("running rustc -vV: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .ok_or_else(|| "rustc -vV printed no host triple".into())
}

/// Build the binaries statically linked (the image may have any libc, or
/// none we could load), in their own target dir so the flags do not
/// invalidate the normal build. Returns the directory holding them.
pub fn build_static() -> Result<PathBuf, String> {
    let root = workspace_root();
    let triple = host_triple()?;
    let target_dir = root.join("target/static");
    let var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        triple.to_uppercase().replace(['-', '.'], "_")
    );
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args(["build", "--release", "--locked", "--target", &triple])
        .arg("--target-dir")
        .arg(&target_dir)
        // With an explicit --target these flags reach only the target
        // binaries, not build scripts or proc macros (which cannot be static).
        .env(var, "-C target-feature=+crt-static")
        .env_remove("RUSTFLAGS");
    for bin in BINARIES {
        cmd.args(["--package", bin]);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("running cargo build: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build of the static binaries failed ({status})"
        ));
    }
    Ok(target_dir.join(triple).join("release"))
}

/// The program headers of a 64-bit little-endian ELF file:
/// `(p_type, p_offset, p_filesz)` each.
fn elf_segments(bytes: &[u8]) -> Result<Vec<(u32, u64, u64)>, String> {
    check_elf(bytes)?;
    let bad = || "truncated ELF header".to_string();
    let phoff = usize::try_from(u64_at(bytes, 0x20).ok_or_else(bad)?).map_err(|_| bad())?;
    let phentsize = usize::from(u16_at(bytes, 0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(bytes, 0x38).ok_or_else(bad)?);
    (0..phnum)
        .map(|i| {
            let at = phoff + i * phentsize;
            Ok((
                u32_at(bytes, at).ok_or_else(bad)?,
                u64_at(bytes, at + 8).ok_or_else(bad)?,
                u64_at(bytes, at + 0x20).ok_or_else(bad)?,
            ))
        })
        .collect()
}

fn check_elf(bytes: &[u8]) -> Result<(), String> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    Ok(())
}

fn u16_at(bytes: &[u8], o: usize) -> Option<u16> {
    bytes
        .get(o..o + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], o: usize) -> Option<u32> {
    bytes
        .get(o..o + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(bytes: &[u8], o: usize) -> Option<u64> {
    bytes.get(o..o + 8).map(|b| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    })
}

const PT_INTERP: u32 = 3;

/// Whether an ELF file asks for a program interpreter (dynamic loader).
/// Static and static-pie binaries have no PT_INTERP segment.
pub fn elf_has_interpreter(bytes: &[u8]) -> Result<bool, String> {
    Ok(elf_segments(bytes)?.iter().any(|s| s.0 == PT_INTERP))
}

/// The program interpreter an ELF file names (`/lib64/ld-linux-x86-64.so.2`
/// for glibc's loader), if it names one.
pub fn elf_interpreter(bytes: &[u8]) -> Result<Option<String>, String> {
    let Some(&(_, offset, size)) = elf_segments(bytes)?.iter().find(|s| s.0 == PT_INTERP) else {
        return Ok(None);
    };
    let range = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(size).ok())
        .and_then(|(o, n)| bytes.get(o..o.checked_add(n)?))
        .ok_or_else(|| "PT_INTERP beyond the end of the file".to_string())?;
    let name = range.split(|&b| b == 0).next().unwrap_or_default();
    Ok(Some(String::from_utf8_lossy(name).into_owned()))
}

/// The ELF file's `e_machine` (62 for x86_64).
pub fn elf_machine(bytes: &[u8]) -> Result<u16, String> {
    check_elf(bytes)?;
    u16_at(bytes, 0x12).ok_or_else(|| "truncated ELF header".into())
}

/// dib-lint greps every line of every element file, binaries included, for
/// `which ` and `export ...$(`; return the first line of `bytes` that
/// would match (lines are split on newlines, as bash `read` does).
pub fn dib_lint_trap(bytes: &[u8]) -> Option<String> {
    bytes.split(|&b| b == b'\n').find_map(|line| {
        let has = |pat: &[u8]| line.windows(pat.len()).any(|w| w == pat);
        let export_subst = line
            .windows(7)
            .position(|w| w == b"export ")
            .is_some_and(|at| line[at..].windows(2).any(|w| w == b"$("));
        (has(b"which ") || export_subst)
            .then(|| String::from_utf8_lossy(line).chars().take(80).collect())
    })
}

/// Build and write the element to `out/pypi`; returns that directory.
pub fn assemble(out: &Path) -> Result<PathBuf, String> {
    let root = workspace_root();
    let out = if out.is_absolute() {
        out.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| e.to_string())?
            .join(out)
    };
    let bins = build_static()?;
    let element = out.join(NAME);
    if element.exists() {
        fs::remove_dir_all(&element)
            .map_err(|e| format!("removing old {}: {e}", element.display()))?;
    }
    fs::create_dir_all(&element).map_err(|e| format!("creating {}: {e}", element.display()))?;
    let mut options = fs_extra::dir::CopyOptions::new();
    options.content_only = true;
    fs_extra::dir::copy(root.join("hooks"), &element, &options)
        .map_err(|e| format!("copying hooks/ into {}: {e}", element.display()))?;

    for bin in BINARIES {
        let src = bins.join(bin);
        let bytes = fs::read(&src).map_err(|e| format!("reading {}: {e}", src.display()))?;
        if elf_has_interpreter(&bytes).map_err(|e| format!("{}: {e}", src.display()))? {
            return Err(format!(
                "{} is dynamically linked; the element needs static binaries",
                src.display()
            ));
        }
        if let Some(line) = dib_lint_trap(&bytes) {
            return Err(format!(
                "{} contains {line:?}, which dib-lint reports; reword that string",
                src.display()
            ));
        }
        let dst = element.join(LIBEXEC).join(bin);
        fs::write(&dst, &bytes).map_err(|e| format!("writing {}: {e}", dst.display()))?;
    }
    set_version(&element.join("README.rst"))?;
    let found = normalise_modes(&element)?;
    check_layout(&element, &found)?;
    Ok(element)
}

/// Write the wheel's data directory afresh: the element in
/// `WHEEL_DATA/data/share/dib-pypi/elements/pypi`, nothing else. Returns
/// the element's directory.
pub fn wheel_data() -> Result<PathBuf, String> {
    let data = workspace_root().join(WHEEL_DATA);
    if data.exists() {
        fs::remove_dir_all(&data).map_err(|e| format!("removing old {}: {e}", data.display()))?;
    }
    assemble(&data.join("data").join(SHARE_DIR))
}

/// Put the version into the element's README.rst in place of its one
/// placeholder.
fn set_version(readme: &Path) -> Result<(), String> {
    let text =
        fs::read_to_string(readme).map_err(|e| format!("reading {}: {e}", readme.display()))?;
    let text = with_version(&text, VERSION).map_err(|e| format!("{}: {e}", readme.display()))?;
    fs::write(readme, text).map_err(|e| format!("writing {}: {e}", readme.display()))
}

/// `readme` with its one version placeholder replaced by `version`.
pub fn with_version(readme: &str, version: &str) -> Result<String, String> {
    match readme.matches(VERSION_PLACEHOLDER).count() {
        1 => Ok(readme.replacen(VERSION_PLACEHOLDER, version, 1)),
        n => Err(format!(
            "has {n} version placeholders {VERSION_PLACEHOLDER}, wants exactly one"
        )),
    }
}

/// The element must hold exactly the files of
/// `dib_pypi_common::element::FILES`: `pypi-mirror elements-path` and the
/// wheel checks rely on that list.
fn check_layout(element: &Path, found: &BTreeSet<String>) -> Result<(), String> {
    let want: BTreeSet<String> = FILES.iter().map(|f| (*f).to_string()).collect();
    if let Some(extra) = found.difference(&want).next() {
        return Err(format!(
            "{}: not in dib_pypi_common::element::FILES; add it there",
            element.join(extra).display()
        ));
    }
    if let Some(missing) = want.difference(found).next() {
        return Err(format!(
            "{}: missing, but dib_pypi_common::element::FILES lists it",
            element.join(missing).display()
        ));
    }
    Ok(())
}

/// Hook scripts 0755, everything else 0644, directories 0755; refuse
/// symlinks, which `cp -a` in DIB would carry into the chroot dangling.
/// Returns every file, relative to `element`.
fn normalise_modes(element: &Path) -> Result<BTreeSet<String>, String> {
    let mut files = BTreeSet::new();
    let mut dirs = vec![element.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let rel = path
                .strip_prefix(element)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .to_str()
                .ok_or_else(|| format!("{}: not UTF-8", path.display()))?
                .to_string();
            let mode = if kind.is_symlink() {
                return Err(format!(
                    "{} is a symlink; the element must have none",
                    path.display()
                ));
            } else if kind.is_dir() {
                dirs.push(path.clone());
                0o755
            } else {
                let mode = if is_hook_script(&rel) { 0o755 } else { 0o644 };
                files.insert(rel);
                mode
            };
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_with(types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 0x40 + types.len() * 0x38];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            let o = 0x40 + i * 0x38;
            b[o..o + 4].copy_from_slice(&t.to_le_bytes());
        }
        b
    }

    /// An ELF file for machine 62 whose one PT_INTERP segment names `interp`.
    fn elf_with_interp(interp: &str) -> Vec<u8> {
        let mut b = elf_with(&[3]);
        b[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
        let at = b.len() as u64;
        b[0x40 + 8..0x40 + 16].copy_from_slice(&at.to_le_bytes());
        b[0x40 + 0x20..0x40 + 0x28].copy_from_slice(&(interp.len() as u64 + 1).to_le_bytes());
        b.extend_from_slice(interp.as_bytes());
        b.push(0);
        b
    }

    #[test]
    fn interpreter_and_machine_are_read() {
        let b = elf_with_interp("/lib64/ld-linux-x86-64.so.2");
        assert_eq!(
            elf_interpreter(&b).unwrap().as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(elf_machine(&b).unwrap(), 62);
        assert_eq!(elf_interpreter(&elf_with(&[1, 6])).unwrap(), None);
        let mut cut = elf_with_interp("/lib/ld-musl-x86_64.so.1");
        cut.truncate(cut.len() - 4);
        assert!(elf_interpreter(&cut).is_err());
        assert!(elf_machine(b"#!/bin/sh").is_err());
    }

    #[test]
    fn interpreter_segment_is_detected() {
        assert!(elf_has_interpreter(&elf_with(&[6, 3, 1])).unwrap());
        assert!(!elf_has_interpreter(&elf_with(&[1, 2, 1])).unwrap());
        assert!(elf_has_interpreter(b"#!/bin/sh\n").is_err());
        assert!(elf_has_interpreter(&elf_with(&[1])[..0x30]).is_err());
    }

    #[test]
    fn dib_lint_traps_are_found() {
        assert!(dib_lint_trap(b"\x7fELF\0the one which fails\0").is_some());
        assert!(dib_lint_trap(b"a\nexport X=$(date)\n").is_some());
        assert!(dib_lint_trap(b"export X\n$(y)").is_none());
        assert!(dib_lint_trap(b"nothing to see").is_none());
    }

    #[test]
    fn the_version_replaces_the_one_placeholder() {
        let readme = format!("pypi\n\n:Version: {VERSION_PLACEHOLDER}\n");
        assert_eq!(
            with_version(&readme, "1.2.3").unwrap(),
            "pypi\n\n:Version: 1.2.3\n"
        );
        assert!(with_version("no placeholder", "1.2.3").is_err());
        let twice = format!("{VERSION_PLACEHOLDER} {VERSION_PLACEHOLDER}");
        assert!(with_version(&twice, "1.2.3").is_err());
    }

    #[test]
    fn the_layout_check_names_the_extra_and_the_missing_file() {
        let mut found: BTreeSet<String> = FILES.iter().map(|f| (*f).to_string()).collect();
        assert!(check_layout(Path::new("/e/pypi"), &found).is_ok());
        found.insert("root.d/60-new".into());
        let err = check_layout(Path::new("/e/pypi"), &found).unwrap_err();
        assert!(err.starts_with("/e/pypi/root.d/60-new: not in"), "{err}");
        found.remove("root.d/60-new");
        found.remove("README.rst");
        let err = check_layout(Path::new("/e/pypi"), &found).unwrap_err();
        assert!(err.starts_with("/e/pypi/README.rst: missing"), "{err}");
    }
}
