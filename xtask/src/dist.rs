//! `cargo xtask dist`: the wheel and the sdist in target/dist/, built by maturin and checked.
//!
//! The element goes into the wheel's data directory first (`cargo xtask
//! wheel-data`, as the build backend does for pip), then maturin, from a
//! venv of its own in target/, builds the wheel and the sdist; both are
//! checked, and the wheel installed into a fresh venv (`installed.rs`). Unlike a
//! `pip install .`, whose wheel pip tags `linux_<arch>` (it is for this
//! machine), `maturin build --zig --compatibility manylinux2014` links
//! `pypi-mirror` with zig against glibc 2.17's symbols, whatever glibc
//! this host has, so the wheel installs on every host DIB runs on (RHEL 8:
//! glibc 2.28); `glibc.rs` checks that the tag is true. The static hook
//! binaries add no constraint but the architecture.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{output, run};
use crate::element::{host_triple, wheel_data, workspace_root};
use crate::glibc::{check_floor, show, FLOOR_POLICY};
use crate::installed::check_installed;
use crate::old_debian::check_on_old_debian;
use crate::wheel::{check_contents, check_record, check_sdist, check_tag, read_wheel};

/// maturin as pyproject.toml's `[build-system] requires` names it (a test
/// holds the two together).
pub const MATURIN: &str = "maturin>=1.9,<2.0";

/// maturin with its `zig` extra: `ziglang`, zig packaged on the Python
/// index, whose `zig cc` links against the glibc version asked for.
fn maturin_with_zig() -> String {
    MATURIN.replacen("maturin", "maturin[zig]", 1)
}

/// Where `cargo xtask dist` writes by default.
pub const DIST_DIR: &str = "target/dist";

/// The venv holding maturin, relative to the workspace root.
const MATURIN_VENV: &str = "target/maturin-venv";

/// What `cargo xtask dist` made.
#[derive(Debug)]
pub struct Dist {
    /// The wheel.
    pub wheel: PathBuf,
    /// The sdist.
    pub sdist: PathBuf,
    /// The element the wheel carries, as assembled.
    pub element: PathBuf,
}

/// Where the installed wheel is checked, relative to the workspace root.
pub const CHECK_DIR: &str = "target/dist-check";

/// Build the wheel and the sdist into `out` (emptied first) and check
/// them: the files in them, then the wheel installed into a fresh venv,
/// and with `old_debian` in a Debian 11 chroot too (`old_debian.rs`).
pub fn dist(out: &Path, old_debian: bool) -> Result<Dist, String> {
    let root = workspace_root();
    let out = root.join(out);
    let tracked = git_tracked(&root)?;
    let element = wheel_data()?;
    let maturin = maturin()?;
    // maturin finds zig as `python3 -m ziglang`, so its venv comes first.
    let path = std::env::join_paths(
        std::iter::once(maturin.parent().unwrap_or(&root).to_path_buf()).chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
    )
    .map_err(|e| format!("PATH with {}: {e}", maturin.display()))?;
    if out.exists() {
        fs::remove_dir_all(&out).map_err(|e| format!("removing {}: {e}", out.display()))?;
    }
    fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    run(
        "maturin build",
        Command::new(&maturin)
            .current_dir(&root)
            .env("PATH", &path)
            .args([
                "build",
                "--release",
                "--zig",
                "--compatibility",
                FLOOR_POLICY,
            ])
            .arg("--out")
            .arg(&out),
    )?;
    run(
        "maturin sdist",
        Command::new(&maturin)
            .current_dir(&root)
            .args(["sdist", "--out"])
            .arg(&out),
    )?;
    let dist = Dist {
        wheel: only_file(&out, ".whl")?,
        sdist: only_file(&out, ".tar.gz")?,
        element,
    };
    let wheel = read_wheel(&dist.wheel)?;
    check_record(&wheel)?;
    check_contents(&wheel, &dist.element)?;
    let arch = host_arch()?;
    check_tag(&wheel, &arch, false)?;
    let needed = check_floor(&wheel, &arch)?;
    eprintln!(
        "xtask: {}: needs glibc {} at most",
        wheel.file_name,
        needed.map_or_else(|| "none".into(), show)
    );
    check_sdist(&dist.sdist, &tracked)?;
    pip_takes_it_for(
        &format!("{FLOOR_POLICY}_{arch}"),
        &out,
        &root.join(CHECK_DIR),
    )?;
    check_installed(&dist.wheel, &dist.element, &root.join(CHECK_DIR))
        .map_err(|e| format!("the wheel installed: {e}"))?;
    if old_debian {
        check_on_old_debian(&dist.wheel)?;
    }
    Ok(dist)
}

/// pip, choosing for a `platform` host rather than this one, takes the
/// wheel from `dist`: the test a user on an older host would make.
fn pip_takes_it_for(platform: &str, dist: &Path, work: &Path) -> Result<(), String> {
    let target = work.join(format!("pip-target-{platform}"));
    if target.exists() {
        fs::remove_dir_all(&target).map_err(|e| format!("removing {}: {e}", target.display()))?;
    }
    run(
        &format!(
            "pip install --platform {platform} dib-pypi from {}",
            dist.display()
        ),
        Command::new("python3")
            // CI runs as root; pip's warning about that is noise here.
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .args(["-m", "pip", "--disable-pip-version-check", "--quiet"])
            .args(["install", "--no-index", "--no-deps", "--only-binary=:all:"])
            .args(["--platform", platform, "--find-links"])
            .arg(dist)
            .arg("--target")
            .arg(&target)
            .arg("dib-pypi"),
    )?;
    let program = target.join("bin").join(crate::wheel::PROGRAM);
    if program.is_file() {
        Ok(())
    } else {
        Err(format!(
            "pip install --platform {platform}: no {}",
            program.display()
        ))
    }
}

/// The one file in `dir` whose name ends with `suffix`.
fn only_file(dir: &Path, suffix: &str) -> Result<PathBuf, String> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
        let path = entry
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .path();
        if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!(
            "{}: wants one *{suffix}, has {}",
            dir.display(),
            found.len()
        )),
    }
}

/// maturin and zig, installed into their own venv the first time (again
/// when [`MATURIN`] changes).
fn maturin() -> Result<PathBuf, String> {
    let venv = workspace_root().join(MATURIN_VENV);
    let bin = venv.join("bin/maturin");
    let marker = venv.join("requirement.txt");
    if bin.is_file() && fs::read_to_string(&marker).ok() == Some(maturin_with_zig()) {
        return Ok(bin);
    }
    if venv.exists() {
        fs::remove_dir_all(&venv).map_err(|e| format!("removing {}: {e}", venv.display()))?;
    }
    let requirement = maturin_with_zig();
    eprintln!("xtask: installing {requirement} into {}", venv.display());
    run(
        "python3 -m venv",
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
    )?;
    run(
        &format!("pip install {requirement}"),
        Command::new(venv.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &requirement,
        ]),
    )?;
    fs::write(&marker, &requirement).map_err(|e| format!("writing {}: {e}", marker.display()))?;
    Ok(bin)
}

/// Every file git tracks in the checkout at `root`, relative to it: what
/// maturin's git generator puts into the sdist. A file git neither tracks
/// nor ignores is an error: the wheel would be built with it and the sdist
/// without it.
fn git_tracked(root: &Path) -> Result<BTreeSet<String>, String> {
    let untracked = output(
        "git ls-files --others",
        Command::new("git").current_dir(root).args([
            "ls-files",
            "-z",
            "--others",
            "--exclude-standard",
        ]),
    )?;
    if let Some(file) = untracked.split('\0').find(|f| !f.is_empty()) {
        return Err(format!(
            "{}: git does not track it, so the sdist would lack it; git add it, or remove it",
            root.join(file).display()
        ));
    }
    let out = output(
        "git ls-files",
        Command::new("git")
            .current_dir(root)
            .args(["ls-files", "-z"]),
    )?;
    Ok(out
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect())
}

/// The host's architecture as wheel platform tags spell it.
pub fn host_arch() -> Result<String, String> {
    let triple = host_triple()?;
    let arch = triple.split('-').next().unwrap_or_default();
    Ok(match arch {
        "powerpc64le" => "ppc64le",
        "riscv64gc" => "riscv64",
        a => a,
    }
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyproject_asks_for_the_maturin_xtask_installs() {
        let text = fs::read_to_string(workspace_root().join("pyproject.toml")).unwrap();
        let requires = text.lines().find(|l| l.starts_with("requires = ")).unwrap();
        assert_eq!(requires, format!("requires = [\"{MATURIN}\"]"));
    }

    #[test]
    fn pyproject_data_is_where_wheel_data_writes() {
        let text = fs::read_to_string(workspace_root().join("pyproject.toml")).unwrap();
        let want = format!("data = \"{}\"", crate::element::WHEEL_DATA);
        assert!(text.lines().any(|l| l == want), "no {want:?} line");
    }

    #[test]
    fn the_readme_names_the_wheel_dist_writes() {
        let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
        let arch = host_arch().unwrap();
        let (major, minor) = crate::glibc::FLOOR;
        let wheel = format!(
            "{}-{}-py3-none-{FLOOR_POLICY}_{arch}.manylinux_{major}_{minor}_{arch}.whl",
            crate::wheel::DIST,
            crate::element::VERSION
        );
        assert!(
            readme.contains(&format!("pip install ./{wheel}")),
            "README.md: no `pip install ./{wheel}`"
        );
    }

    #[test]
    fn maturin_is_installed_with_zig() {
        assert_eq!(maturin_with_zig(), "maturin[zig]>=1.9,<2.0");
    }

    #[test]
    fn the_host_architecture_has_a_tag_name() {
        let arch = host_arch().unwrap();
        assert!(crate::wheel::elf_machine_of(&arch).is_some(), "{arch}");
    }
}
