//! The wheel installed by pip into a fresh venv, checked as a user gets it.
//!
//! `pypi-mirror elements-path` names the venv's element; the element there
//! is the assembled one byte for byte, hook scripts executable and nothing
//! else (dib-lint reads executables as scripts); the hook binaries and
//! `pypi-mirror` say this version, and it serves from an https upstream
//! (`served.rs`); pip's RECORD of the installation lists
//! every file it put in `share/` and `bin/`, with the right hashes, so
//! `pip uninstall` removes them all, which it then must (pip leaves empty
//! directories behind, as it does for any data).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use dib_pypi_common::element::{is_hook_script, BINARIES, LIBEXEC, NAME, SHARE_DIR};

use crate::cmd::{output, run};
use crate::element::VERSION;
use crate::wheel::{parse_record, record_hash, DIST, PROGRAM};

/// Install `wheel` into a fresh venv in `work` and check the result
/// against the assembled `element`; then uninstall it.
pub fn check_installed(wheel: &Path, element: &Path, work: &Path) -> Result<(), String> {
    if work.exists() {
        fs::remove_dir_all(work).map_err(|e| format!("removing {}: {e}", work.display()))?;
    }
    let venv = work.join("venv");
    run(
        "python3 -m venv",
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
    )?;
    let python = venv.join("bin/python");
    let pip = |args: &[&str]| {
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "pip", "--disable-pip-version-check", "--quiet"])
            .args(args);
        cmd
    };
    run(
        &format!("pip install {}", wheel.display()),
        pip(&["install", "--no-deps", "--no-index"]).arg(wheel),
    )?;
    let program = venv.join("bin").join(PROGRAM);
    says_version(&program, PROGRAM)?;

    let printed = output(
        "pypi-mirror elements-path",
        Command::new(&program).arg("elements-path"),
    )?;
    let want = fs::canonicalize(venv.join(SHARE_DIR))
        .map_err(|e| format!("{}: {e}", venv.join(SHARE_DIR).display()))?;
    if printed != format!("{}\n", want.display()) {
        return Err(format!(
            "{} elements-path printed {printed:?}, wants {}",
            program.display(),
            want.display()
        ));
    }
    let installed = want.join(NAME);
    same_element(&installed, element)?;
    for bin in BINARIES {
        let staged = work.join(bin);
        fs::copy(installed.join(LIBEXEC).join(bin), &staged)
            .map_err(|e| format!("copying {bin}: {e}"))?;
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", staged.display()))?;
        says_version(&staged, bin)?;
    }

    let platlib = output(
        "python: platlib",
        Command::new(&python).args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['platlib'])",
        ]),
    )?;
    let platlib = PathBuf::from(platlib.trim());
    let mut ours = files_under(&venv.join("share/dib-pypi"))?;
    ours.insert(program.clone());
    record_lists(&platlib, &ours)?;

    crate::served::check_serves_https(&program, &python, wheel, work)?;

    // pip removes every file its RECORD lists; it may leave the empty
    // directories above them.
    run(
        "pip uninstall",
        &mut pip(&["uninstall", "--yes", "dib-pypi"]),
    )?;
    let share = venv.join("share/dib-pypi");
    let mut left = if share.exists() {
        files_under(&share)?
    } else {
        BTreeSet::new()
    };
    if program.exists() {
        left.insert(program);
    }
    match left.first() {
        Some(file) => Err(format!(
            "{}: still there after pip uninstall",
            file.display()
        )),
        None => Ok(()),
    }
}

/// `program --version` prints `name VERSION`.
fn says_version(program: &Path, name: &str) -> Result<(), String> {
    let what = format!("{} --version", program.display());
    let out = output(&what, Command::new(program).arg("--version"))?;
    if out.trim() == format!("{name} {VERSION}") {
        Ok(())
    } else {
        Err(format!(
            "{what} printed {out:?}, wants \"{name} {VERSION}\""
        ))
    }
}

/// The installed element has the assembled one's files, bytes, and exec
/// bits on exactly the hook scripts; no symlink, nothing else.
fn same_element(installed: &Path, element: &Path) -> Result<(), String> {
    let have = files_under(installed)?;
    let want = files_under(element)?;
    let rel = |set: &BTreeSet<PathBuf>, base: &Path| -> BTreeSet<PathBuf> {
        set.iter()
            .filter_map(|p| p.strip_prefix(base).ok().map(Path::to_path_buf))
            .collect()
    };
    let (have_rel, want_rel) = (rel(&have, installed), rel(&want, element));
    if let Some(extra) = have_rel.difference(&want_rel).next() {
        return Err(format!(
            "{}: not in the assembled element",
            installed.join(extra).display()
        ));
    }
    if let Some(missing) = want_rel.difference(&have_rel).next() {
        return Err(format!("{}: missing", installed.join(missing).display()));
    }
    for file in &have_rel {
        let path = installed.join(file);
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if bytes != fs::read(element.join(file)).unwrap_or_default() {
            return Err(format!(
                "{}: differs from the assembled element",
                path.display()
            ));
        }
        let mode = fs::metadata(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .permissions()
            .mode();
        let hook = is_hook_script(&file.to_string_lossy());
        if (mode & 0o111 != 0) != hook {
            return Err(format!(
                "{}: mode {:o}, wants {}",
                path.display(),
                mode & 0o7777,
                if hook { "executable" } else { "no exec bit" }
            ));
        }
    }
    Ok(())
}

/// Every file under `dir`; an error at a symlink or anything not a file.
fn files_under(dir: &Path) -> Result<BTreeSet<PathBuf>, String> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in fs::read_dir(&d).map_err(|e| format!("reading {}: {e}", d.display()))? {
            let path = entry
                .map_err(|e| format!("reading {}: {e}", d.display()))?
                .path();
            let kind = fs::symlink_metadata(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .file_type();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                out.insert(path);
            } else {
                return Err(format!(
                    "{}: neither a file nor a directory",
                    path.display()
                ));
            }
        }
    }
    Ok(out)
}

/// pip's RECORD of the installation (in `platlib`) lists every file of
/// `files`, and every file it lists with a hash has that hash.
fn record_lists(platlib: &Path, files: &BTreeSet<PathBuf>) -> Result<(), String> {
    let record = platlib.join(format!("{DIST}-{VERSION}.dist-info/RECORD"));
    let text = fs::read_to_string(&record).map_err(|e| format!("{}: {e}", record.display()))?;
    let mut listed = BTreeMap::new();
    for line in parse_record(&text).map_err(|e| format!("{}: {e}", record.display()))? {
        listed.insert(lexical(&platlib.join(&line.path)), line.hash);
    }
    for file in files {
        let Some(hash) = listed.get(file) else {
            return Err(format!(
                "{}: does not list {}",
                record.display(),
                file.display()
            ));
        };
        let bytes = fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        if *hash != record_hash(&bytes) {
            return Err(format!(
                "{}: {} has hash {hash:?}, the file {}",
                record.display(),
                file.display(),
                record_hash(&bytes)
            ));
        }
    }
    Ok(())
}

/// `path` with `.` and `..` resolved by name (RECORD's paths outside
/// site-packages are `../../../bin/...`).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_paths_resolve_by_name() {
        assert_eq!(
            lexical(Path::new(
                "/v/lib/python3.11/site-packages/../../../bin/pypi-mirror"
            )),
            Path::new("/v/bin/pypi-mirror")
        );
        assert_eq!(lexical(Path::new("/a/./b")), Path::new("/a/b"));
    }

    #[test]
    fn an_unlisted_or_changed_file_fails_the_record_check() {
        let tmp = tempfile::tempdir().unwrap();
        let site = tmp.path().join("lib/site-packages");
        let info = site.join(format!("{DIST}-{VERSION}.dist-info"));
        fs::create_dir_all(&info).unwrap();
        let bin = tmp.path().join("bin/pypi-mirror");
        fs::create_dir_all(bin.parent().unwrap()).unwrap();
        fs::write(&bin, "program").unwrap();
        let other = tmp.path().join("share/x");
        fs::create_dir_all(other.parent().unwrap()).unwrap();
        fs::write(&other, "x").unwrap();
        fs::write(
            info.join("RECORD"),
            format!("../../bin/pypi-mirror,{},7\n", record_hash(b"program")),
        )
        .unwrap();
        let one: BTreeSet<PathBuf> = [bin.clone()].into();
        record_lists(&site, &one).unwrap();
        let both: BTreeSet<PathBuf> = [bin.clone(), other.clone()].into();
        let err = record_lists(&site, &both).unwrap_err();
        assert!(
            err.ends_with(&format!("does not list {}", other.display())),
            "{err}"
        );
        fs::write(&bin, "changed").unwrap();
        let err = record_lists(&site, &one).unwrap_err();
        assert!(err.contains("has hash"), "{err}");
    }

    #[test]
    fn an_installed_element_with_a_stray_exec_bit_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for dir in [&a, &b] {
            fs::create_dir_all(dir.join("root.d")).unwrap();
            fs::write(dir.join("root.d/50-x"), "#!/bin/bash\n").unwrap();
            fs::set_permissions(dir.join("root.d/50-x"), fs::Permissions::from_mode(0o755))
                .unwrap();
            fs::write(dir.join("README.rst"), "r").unwrap();
        }
        same_element(&a, &b).unwrap();
        fs::set_permissions(a.join("README.rst"), fs::Permissions::from_mode(0o755)).unwrap();
        let err = same_element(&a, &b).unwrap_err();
        assert!(
            err.contains("README.rst: mode 755, wants no exec bit"),
            "{err}"
        );
        fs::set_permissions(a.join("README.rst"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(a.join("extra"), "").unwrap();
        assert!(same_element(&a, &b).unwrap_err().contains("extra: not in"));
        fs::remove_file(a.join("extra")).unwrap();
        std::os::unix::fs::symlink("README.rst", a.join("link")).unwrap();
        assert!(same_element(&a, &b).unwrap_err().contains("neither a file"));
    }
}
