//! `pypi-mirror elements-path`: the directory holding the `pypi` element that pip installed beside this program.
//!
//! The wheel carries the element as data, which pip installs under the
//! same prefix as the program: `<prefix>/bin/pypi-mirror` and
//! `<prefix>/share/dib-pypi/elements/pypi/` (a venv, `/usr/local`,
//! `~/.local` alike). So the element is found from the program's own
//! path, as ironic-python-agent-builder finds its elements from its
//! script's: first from the program's real path (symlinks resolved, so a
//! link in `~/.local/bin` to a venv's program finds the venv's element),
//! then from the path it was started as. The element found must be whole
//! and of this program's version, or it is an error naming the file at
//! fault: DIB would otherwise fail later, less clearly.

use std::fs;
use std::path::{Path, PathBuf};

use dib_pypi_common::element::{readme_version, FILES, NAME, SHARE_DIR};

/// Why no element directory can be given.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program cannot tell where it is.
    #[error("cannot tell where this program is: {0}")]
    NoExe(std::io::Error),
    /// Nothing installed beside the program.
    #[error(
        "no {NAME} element installed beside {}: {} does not exist (pip install the dib-pypi package; from a checkout, `cargo xtask element` builds the element)",
        exe.display(),
        element.display()
    )]
    NotInstalled {
        /// The program's path.
        exe: PathBuf,
        /// Where its element would be.
        element: PathBuf,
    },
    /// An element whose files are not all there.
    #[error("{}: missing, so the {NAME} element there is incomplete (reinstall the dib-pypi package)", .0.display())]
    Incomplete(PathBuf),
    /// An element of another version.
    #[error("{}: the element is version {found}, this pypi-mirror is {want} (reinstall the dib-pypi package)", readme.display())]
    WrongVersion {
        /// The element's README.rst.
        readme: PathBuf,
        /// The version it gives ("none" when it gives none).
        found: String,
        /// This program's version.
        want: String,
    },
    /// A file of the element that cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// The directory to put on `ELEMENTS_PATH` for the element installed
/// beside the running program.
pub fn elements_path() -> Result<PathBuf, Error> {
    let real = std::env::current_exe().map_err(Error::NoExe)?;
    let mut exes = vec![real];
    // The path it was started as, when that is a path (a bare name was
    // found on PATH, which leads to the real path above).
    if let Some(arg0) = std::env::args_os().next().map(PathBuf::from) {
        if arg0.components().count() > 1 {
            if let Ok(cwd) = std::env::current_dir() {
                exes.push(cwd.join(arg0));
            }
        }
    }
    find(&exes, env!("CARGO_PKG_VERSION"))
}

/// The elements directory beside the first of `exes` that has one, checked
/// whole and of `version`.
pub fn find(exes: &[PathBuf], version: &str) -> Result<PathBuf, Error> {
    let mut first_missing = None;
    for exe in exes {
        let dir = elements_dir_of(exe);
        let element = dir.join(NAME);
        if element.is_dir() {
            check(&element, version)?;
            return fs::canonicalize(&dir).map_err(|source| Error::Io { path: dir, source });
        }
        first_missing.get_or_insert((exe, element));
    }
    let (exe, element) = first_missing.ok_or_else(|| {
        Error::NoExe(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no path to look beside",
        ))
    })?;
    Err(Error::NotInstalled {
        exe: exe.clone(),
        element,
    })
}

/// `<prefix>/share/dib-pypi/elements` for `<prefix>/bin/<program>` (the
/// prefix of `/bin/<program>` is `/`).
fn elements_dir_of(exe: &Path) -> PathBuf {
    let bin = exe.parent().unwrap_or(Path::new("/"));
    bin.parent().unwrap_or(Path::new("/")).join(SHARE_DIR)
}

/// Every file of the element is there, and its README gives `version`.
fn check(element: &Path, version: &str) -> Result<(), Error> {
    for file in FILES {
        let path = element.join(file);
        if !path.is_file() {
            return Err(Error::Incomplete(path));
        }
    }
    let readme = element.join("README.rst");
    let text = fs::read_to_string(&readme).map_err(|source| Error::Io {
        path: readme.clone(),
        source,
    })?;
    match readme_version(&text) {
        Some(found) if found == version => Ok(()),
        found => Err(Error::WrongVersion {
            found: found.unwrap_or("none").to_string(),
            readme,
            want: version.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dib_pypi_common::element::VERSION_FIELD;

    /// `<root>/<prefix>/bin/pypi-mirror` with a whole element of `version`
    /// beside it; returns the program's path.
    fn install(root: &Path, prefix: &str, version: &str) -> PathBuf {
        let prefix = root.join(prefix);
        let element = prefix.join(SHARE_DIR).join(NAME);
        for file in FILES {
            let path = element.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "x").unwrap();
        }
        fs::write(
            element.join("README.rst"),
            format!("pypi\n\n{VERSION_FIELD}{version}\n"),
        )
        .unwrap();
        fs::create_dir_all(prefix.join("bin")).unwrap();
        let exe = prefix.join("bin/pypi-mirror");
        fs::write(&exe, "").unwrap();
        exe
    }

    #[test]
    fn the_element_beside_the_program_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let exe = install(tmp.path(), "venv", "1.0");
        let want = fs::canonicalize(tmp.path().join("venv/share/dib-pypi/elements")).unwrap();
        assert_eq!(find(&[exe], "1.0").unwrap(), want);
    }

    #[test]
    fn the_first_program_path_with_an_element_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let bare = tmp.path().join("bare/bin/pypi-mirror");
        let exe = install(tmp.path(), "venv", "1.0");
        let found = find(&[bare, exe.clone()], "1.0").unwrap();
        assert!(found.ends_with("venv/share/dib-pypi/elements"), "{found:?}");
        let other = install(tmp.path(), "other", "1.0");
        let found = find(&[other, exe], "1.0").unwrap();
        assert!(
            found.ends_with("other/share/dib-pypi/elements"),
            "{found:?}"
        );
    }

    #[test]
    fn a_program_at_the_top_looks_in_slash_share() {
        assert_eq!(
            elements_dir_of(Path::new("/bin/pypi-mirror")),
            Path::new("/share/dib-pypi/elements")
        );
        assert_eq!(
            elements_dir_of(Path::new("/pypi-mirror")),
            Path::new("/share/dib-pypi/elements")
        );
        assert!(find(&[], "1.0").is_err());
    }

    #[test]
    fn no_element_is_one_line_naming_where_it_was_looked_for() {
        let tmp = tempfile::tempdir().unwrap();
        let exe = tmp.path().join("venv/bin/pypi-mirror");
        let err = find(std::slice::from_ref(&exe), "1.0")
            .unwrap_err()
            .to_string();
        let element = tmp.path().join("venv/share/dib-pypi/elements/pypi");
        assert!(
            err.starts_with(&format!(
                "no pypi element installed beside {}: {} does not exist",
                exe.display(),
                element.display()
            )),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn an_incomplete_element_names_the_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let exe = install(tmp.path(), "venv", "1.0");
        let gone = tmp
            .path()
            .join("venv/share/dib-pypi/elements/pypi/dib-pypi-libexec/dib-pypi-mount");
        fs::remove_file(&gone).unwrap();
        let err = find(&[exe], "1.0").unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: missing", gone.display())),
            "{err}"
        );
    }

    #[test]
    fn an_element_of_another_version_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let exe = install(tmp.path(), "venv", "0.9");
        let err = find(&[exe], "1.0").unwrap_err().to_string();
        assert!(
            err.ends_with("README.rst: the element is version 0.9, this pypi-mirror is 1.0 (reinstall the dib-pypi package)"),
            "{err}"
        );
    }
}
