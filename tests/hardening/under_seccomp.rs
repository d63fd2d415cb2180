//! Every suite again, in child processes whose tests run with `openat2` refused by a seccomp filter (ENOSYS, then EPERM).
//!
//! The child is this same test binary. Its tests call `require_root`,
//! which installs the profile named in the environment on the test's
//! thread before anything else, and checks that the hook code then
//! resolves paths in user space; every process a test starts (the hook
//! scripts, their binaries, chroot, pip, uv) inherits the filter. The
//! children record their own tables in docs/RELIABILITY.md.

use std::process::Command;

use dib_pypi_tests::seccomp::{Profile, PROFILE_VAR};
use dib_pypi_tests::{element, require_root, ELEMENT_VAR};

/// The lines of `text` worth showing when a child failed: its failures
/// and the end.
fn digest(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let failures = lines
        .iter()
        .filter(|l| l.contains("FAILED") || l.contains("panicked"))
        .take(20);
    let tail = lines.iter().skip(lines.len().saturating_sub(40));
    failures.chain(tail).copied().collect::<Vec<_>>().join("\n")
}

#[test]
fn every_suite_passes_with_openat2_refused() {
    require_root();
    assert!(
        std::env::var_os(PROFILE_VAR).is_none(),
        "the seccomp runs must not start runs of their own (--skip under_seccomp)"
    );
    let exe = std::env::current_exe().unwrap();
    // The children use this run's element: assembling it again would
    // rewrite the directory the parent's tests are running hooks from.
    let element_dir = element().parent().unwrap().to_path_buf();
    for profile in [Profile::Openat2Enosys, Profile::Openat2Eperm] {
        let out = Command::new(&exe)
            .args(["--skip", "under_seccomp"])
            .env(PROFILE_VAR, profile.name())
            .env(ELEMENT_VAR, &element_dir)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "the suites failed under the seccomp profile {profile} ({}):\n{}",
            out.status,
            digest(&text)
        );
        // Not vacuous: the child really ran the suites.
        let passed = text
            .lines()
            .find_map(|l| l.strip_prefix("test result: ok. "))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        assert!(
            passed >= 15,
            "{profile}: only {passed} tests ran:\n{}",
            digest(&text)
        );
    }
}
