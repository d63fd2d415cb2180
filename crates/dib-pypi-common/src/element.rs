//! The `pypi` element as installed: its files, and where a pip install puts it beside `pypi-mirror`.
//!
//! `cargo xtask element` lays the element out with these names and refuses
//! a tree that differs from [`FILES`]; the wheel carries it as data under
//! [`SHARE_DIR`]; `pypi-mirror elements-path` finds it there. One list for
//! all three, so none of them can drift.

/// The element's name: the directory DIB looks for on `ELEMENTS_PATH`.
pub const NAME: &str = "pypi";

/// The directory that holds [`NAME`]`/`, relative to the installation
/// prefix: the parent of the `bin/` directory pip installs `pypi-mirror`
/// into (`<venv>/bin/pypi-mirror`, `<venv>/share/dib-pypi/elements/pypi`).
/// Element collections installed with pip keep theirs in
/// `share/<package>/` the same way.
pub const SHARE_DIR: &str = "share/dib-pypi/elements";

/// The element's directory of helper files (not `bin/`: DIB would install
/// that into the image's /usr/local/bin). Its name is unique because DIB
/// merges the subdirectories of all elements into one hooks tree.
pub const LIBEXEC: &str = "dib-pypi-libexec";

/// The hook binaries, by crate name; each is the file of that name in
/// [`LIBEXEC`].
pub const BINARIES: &[&str] = &["dib-pypi-mount", "dib-pypi-configure", "dib-pypi-restore"];

/// Every file of the assembled element, relative to its directory, and
/// nothing else: the skeleton in the repository's `hooks/` plus
/// [`BINARIES`].
pub const FILES: &[&str] = &[
    "README.rst",
    "cleanup.d/99-pypi-restore",
    "dib-pypi-libexec/dib-pypi-configure",
    "dib-pypi-libexec/dib-pypi-mount",
    "dib-pypi-libexec/dib-pypi-restore",
    "dib-pypi-libexec/run-hook.bash",
    "environment.d/10-pypi-mask-mirror-credentials",
    "environment.d/20-pypi-mirror-tls",
    "pre-install.d/04-pypi-configure",
    "root.d/50-pypi-mirror-mount",
];

/// The element's `README.rst` in the repository says this where the
/// assembled one gives the version.
pub const VERSION_PLACEHOLDER: &str = "@DIB_PYPI_VERSION@";

/// The line of the assembled `README.rst` that gives the version: this,
/// then the version.
pub const VERSION_FIELD: &str = ":Version: ";

/// Whether `path` (relative to the element) is a hook script DIB runs: a
/// file directly in a `*.d` phase directory other than `environment.d`,
/// whose files DIB sources.
pub fn is_hook_script(path: &str) -> bool {
    match path.split_once('/') {
        Some((dir, name)) => dir.ends_with(".d") && dir != "environment.d" && !name.contains('/'),
        None => false,
    }
}

/// The version an assembled `README.rst` gives, if it gives one.
pub fn readme_version(readme: &str) -> Option<&str> {
    readme
        .lines()
        .find_map(|l| l.strip_prefix(VERSION_FIELD))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_sorted_unique_and_hold_every_binary() {
        let mut sorted = FILES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, FILES);
        for bin in BINARIES {
            assert!(
                FILES.contains(&format!("{LIBEXEC}/{bin}").as_str()),
                "{bin}"
            );
        }
    }

    #[test]
    fn hook_scripts_are_recognised_by_their_phase_dir() {
        assert!(is_hook_script("root.d/50-x"));
        assert!(is_hook_script("cleanup.d/99-pypi-restore"));
        assert!(!is_hook_script("environment.d/10-x"));
        assert!(!is_hook_script("dib-pypi-libexec/dib-pypi-mount"));
        assert!(!is_hook_script("README.rst"));
        assert!(!is_hook_script("root.d/sub/50-x"));
        let hooks: Vec<_> = FILES.iter().filter(|f| is_hook_script(f)).collect();
        assert_eq!(hooks.len(), 3, "{hooks:?}");
    }

    #[test]
    fn the_version_line_is_read_back() {
        assert_eq!(
            readme_version("====\npypi\n====\n\n:Version: 1.2.3\n"),
            Some("1.2.3")
        );
        assert_eq!(readme_version(":Version: \n"), None);
        assert_eq!(
            readme_version(&format!("{VERSION_FIELD}{VERSION_PLACEHOLDER}")),
            Some(VERSION_PLACEHOLDER)
        );
        assert_eq!(readme_version("no version here"), None);
    }
}
