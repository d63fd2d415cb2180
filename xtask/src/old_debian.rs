//! The wheel on an older host: bullseye's own pip installs it in a debootstrapped Debian 11 root (glibc 2.31), where it runs.
//!
//! The glibc floor check reads symbol versions; this is the proof by use,
//! on the oldest glibc among the hosts we name (Debian 11 and Ubuntu 20.04:
//! 2.31) that the package archive still carries. The root is made once by
//! debootstrap (minbase and python3-venv, about a minute) into
//! `target/old-debian/`, from the Debian mirror the host's apt sources
//! name, and reused; each run copies the wheel in and, in a chroot with a
//! private /proc, makes a venv, installs the wheel with bullseye's pip
//! 20.3 and runs `pypi-mirror --version`, `elements-path` and `build`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use dib_pypi_common::element::SHARE_DIR;

use crate::cmd::{output, run};
use crate::element::{workspace_root, VERSION};
use crate::glibc::{show, Glibc};
use crate::wheel::PROGRAM;

/// The Debian release, and the glibc it has.
const SUITE: &str = "bullseye";
const SUITE_GLIBC: Glibc = (2, 31);

/// Where the root is kept, relative to the workspace root; the marker
/// beside it says it is complete.
const ROOT_DIR: &str = "target/old-debian/bullseye";

/// A mirror to use instead of the one the host's apt sources name.
pub const MIRROR_VAR: &str = "DIB_PYPI_DEBIAN_MIRROR";

/// Where the wheel is installed, inside the root.
const CHECK_IN_ROOT: &str = "/tmp/dib-pypi-check";

/// Run in the chroot, in `CHECK_IN_ROOT`, with the wheel's file name as
/// `$1`: one line of glibc's version, then what the program printed.
const SCRIPT: &str = r#"set -e
cd /tmp/dib-pypi-check
getconf GNU_LIBC_VERSION
python3 -m venv venv
venv/bin/pip install --quiet --no-index --no-deps "wheels/$1"
venv/bin/pypi-mirror --version
venv/bin/pypi-mirror elements-path
venv/bin/pypi-mirror build -q --from wheels --out mirror
ls mirror/dib-pypi/
"#;

/// Install `wheel` in the old Debian root and run it there.
pub fn check_on_old_debian(wheel: &Path) -> Result<(), String> {
    let uid = output("id -u", Command::new("id").arg("-u"))?;
    if uid.trim() != "0" {
        return Err(format!(
            "the {SUITE} check needs root (debootstrap, chroot); run as root or leave it out"
        ));
    }
    let root = old_root()?;
    let check = root.join(CHECK_IN_ROOT.trim_start_matches('/'));
    if check.exists() {
        fs::remove_dir_all(&check).map_err(|e| format!("removing {}: {e}", check.display()))?;
    }
    let wheels = check.join("wheels");
    fs::create_dir_all(&wheels).map_err(|e| format!("{}: {e}", wheels.display()))?;
    let name = wheel
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: no UTF-8 file name", wheel.display()))?;
    fs::copy(wheel, wheels.join(name)).map_err(|e| format!("copying {name}: {e}"))?;

    // A pid namespace for a /proc of our own (current_exe reads it), so no
    // mount outlives the check.
    let mut proc_mount = std::ffi::OsString::from("--mount-proc=");
    proc_mount.push(root.join("proc"));
    let printed = output(
        &format!("{PROGRAM} in a {SUITE} chroot"),
        Command::new("unshare")
            .args(["--pid", "--fork"])
            .arg(proc_mount)
            .arg("chroot")
            .arg(&root)
            .args(["/bin/sh", "-c", SCRIPT, "sh", name])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8"),
    )?;
    let elements = format!("{CHECK_IN_ROOT}/venv/{SHARE_DIR}");
    let want_version = format!("{PROGRAM} {VERSION}");
    let lines: Vec<&str> = printed.lines().collect();
    let glibc = lines
        .first()
        .and_then(|l| l.strip_prefix("glibc "))
        .and_then(|v| v.split_once('.'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    let wrong = |what: &str| format!("in the {SUITE} chroot: {what}; it printed {printed:?}");
    match glibc {
        Some(g) if g <= SUITE_GLIBC => {}
        _ => {
            return Err(wrong(&format!(
                "wants glibc {} or older",
                show(SUITE_GLIBC)
            )))
        }
    }
    if lines.get(1) != Some(&want_version.as_str()) {
        return Err(wrong(&format!("wants {want_version:?}")));
    }
    if lines.get(2) != Some(&elements.as_str()) {
        return Err(wrong(&format!("wants elements-path {elements}")));
    }
    if !lines.contains(&name) {
        return Err(wrong(&format!("wants {name} in the mirror it built")));
    }
    eprintln!(
        "xtask: {name}: installed and run on Debian {SUITE} (glibc {})",
        glibc.map(show).unwrap_or_default()
    );
    Ok(())
}

/// The old Debian root, debootstrapped the first time.
fn old_root() -> Result<PathBuf, String> {
    let root = workspace_root().join(ROOT_DIR);
    let marker = root.with_extension("complete");
    if marker.is_file() && root.join("usr/bin/python3").exists() {
        return Ok(root);
    }
    let _ = fs::remove_file(&marker);
    // A debootstrap killed half way may leave its /proc or /sys mounted in
    // the root: removing the root would then reach into them.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    if let Some(mounted) = mount_under(&mountinfo, &root) {
        return Err(format!(
            "{mounted} is mounted inside the unfinished {SUITE} root; unmount it first"
        ));
    }
    if root.exists() {
        fs::remove_dir_all(&root).map_err(|e| format!("removing {}: {e}", root.display()))?;
    }
    let mirror = match std::env::var(MIRROR_VAR) {
        Ok(m) if !m.is_empty() => m,
        _ => host_debian_mirror()?,
    };
    eprintln!(
        "xtask: debootstrap {SUITE} from {mirror} into {}",
        root.display()
    );
    run(
        &format!("debootstrap {SUITE} {mirror}"),
        Command::new("debootstrap")
            .args(["--variant=minbase", "--include=python3-venv", SUITE])
            .arg(&root)
            .arg(&mirror)
            .stdout(std::process::Stdio::null()),
    )
    .map_err(|e| format!("{e}; set {MIRROR_VAR} to a Debian mirror that has {SUITE}"))?;
    fs::write(&marker, format!("{SUITE} {mirror}\n"))
        .map_err(|e| format!("writing {}: {e}", marker.display()))?;
    Ok(root)
}

/// The first mount point in `mountinfo` at or under `dir`.
fn mount_under(mountinfo: &str, dir: &Path) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        // field 5 is the mount point, octal-escaped (`\040` for a space)
        let point = line.split(' ').nth(4)?.replace("\\040", " ");
        Path::new(&point).starts_with(dir).then_some(point)
    })
}

/// The Debian mirror the host's apt sources name (the first `deb` source
/// that is not a security suite); set [`MIRROR_VAR`] where there is none.
fn host_debian_mirror() -> Result<String, String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let name = file.to_string_lossy();
        let found = if name.ends_with(".sources") {
            mirror_in_deb822(&text)
        } else if name.ends_with(".list") {
            mirror_in_one_line(&text)
        } else {
            None
        };
        if let Some(m) = found {
            return Ok(m);
        }
    }
    Err(format!(
        "no Debian mirror in /etc/apt/sources.list*; set {MIRROR_VAR}"
    ))
}

fn is_main_suite(suite: &str) -> bool {
    !suite.ends_with("-security") && !suite.ends_with("/updates")
}

/// Whether a source's `Signed-By` (if it names one) is Debian's archive
/// keyring: a third-party repository (Docker's, say) names its own.
fn signed_by_debian(signed_by: Option<&str>) -> bool {
    signed_by.is_none_or(|k| k.contains("debian-archive"))
}

/// The first URI of a deb822 `.sources` text whose stanza is an enabled
/// `deb` source of a main suite, signed by Debian.
fn mirror_in_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        let deb = field("Types")?.split_whitespace().any(|t| t == "deb");
        let main = field("Suites")?.split_whitespace().all(is_main_suite);
        let debian = signed_by_debian(field("Signed-By"));
        let uri = field("URIs")?.split_whitespace().next()?;
        (enabled && deb && main && debian).then(|| uri.to_string())
    })
}

/// The URI of the first `deb` line of a main suite, signed by Debian, in
/// a one-line-style `sources.list` text.
fn mirror_in_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        let mut signed_by = None;
        if uri.starts_with('[') {
            // options: `[arch=amd64 signed-by=…]`, possibly several words
            loop {
                let option = uri.trim_start_matches('[').trim_end_matches(']');
                if let Some(key) = option.strip_prefix("signed-by=") {
                    signed_by = Some(key);
                }
                if uri.ends_with(']') {
                    break;
                }
                uri = words.next()?;
            }
            uri = words.next()?;
        }
        let debian = signed_by_debian(signed_by);
        (is_main_suite(words.next()?) && debian).then(|| uri.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_is_read_from_deb822_sources() {
        let text = "Types: deb\n# a comment\nURIs: http://mirror.example/debian-security\n\
                    Suites: bookworm-security\nComponents: main\n\n\
                    Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n\
                    Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n\n\
                    Types: deb\nURIs: https://docker.example/linux/debian\nSuites: bookworm\n\
                    Signed-By: /etc/apt/keyrings/docker.asc\n\n\
                    Types: deb\nURIs: http://mirror.example/debian http://second.example/debian\n\
                    Suites: bookworm bookworm-updates\nComponents: main\n\
                    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
        assert_eq!(
            mirror_in_deb822(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_in_deb822("Types: deb-src\nURIs: x\nSuites: y\n"),
            None
        );
    }

    #[test]
    fn mounts_left_in_the_root_are_found() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n\
                    90 22 0:50 / /w/target/old-debian/bullseye/proc rw - proc proc rw\n";
        let root = Path::new("/w/target/old-debian/bullseye");
        assert_eq!(
            mount_under(info, root).as_deref(),
            Some("/w/target/old-debian/bullseye/proc")
        );
        assert_eq!(
            mount_under(info, Path::new("/w/target/old-debian/bull")),
            None
        );
    }

    #[test]
    fn the_mirror_is_read_from_one_line_sources() {
        let text = "# deb http://commented.example/debian bookworm main\n\
                    deb http://security.example/debian-security bookworm-security main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://third.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_in_one_line(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_in_one_line("deb http://old.example/debian-security buster/updates main"),
            None
        );
    }
}
