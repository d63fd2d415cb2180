//! Project names: PEP 508 validity, PEP 503 normalization, and the names and
//! versions that can be read off wheel and sdist file names.

use std::fmt;

/// The archive formats the mirror indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveKind {
    /// A built distribution (`.whl`, PEP 427).
    Wheel,
    /// A gzipped tar source distribution (`.tar.gz`).
    SdistTarGz,
    /// A legacy zip source distribution (`.zip`).
    SdistZip,
}

impl ArchiveKind {
    /// Classify a file name by its extension; `None` for anything the mirror
    /// does not index (e.g. `.egg`, `.tar.bz2`, stray files).
    pub fn from_filename(filename: &str) -> Option<Self> {
        // Extensions are matched case-insensitively because pip does too
        // (`Link.ext` lower-cases), and a mirror filled on a case-insensitive
        // file system may carry `.ZIP`.
        let lower = filename.to_ascii_lowercase();
        if lower.ends_with(".whl") {
            Some(Self::Wheel)
        } else if lower.ends_with(".tar.gz") {
            Some(Self::SdistTarGz)
        } else if lower.ends_with(".zip") {
            Some(Self::SdistZip)
        } else {
            None
        }
    }

    /// The extension including the dot(s), in lower case.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Wheel => ".whl",
            Self::SdistTarGz => ".tar.gz",
            Self::SdistZip => ".zip",
        }
    }

    fn ext_len(self) -> usize {
        self.extension().len()
    }

    /// Whether this is a wheel (and so gets a PEP 658 `.metadata` file).
    pub fn is_wheel(self) -> bool {
        self == Self::Wheel
    }
}

/// A project name that is not valid under PEP 508.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName(pub String);

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid project name {:?} (PEP 508 names are ASCII letters, digits, '.', '_' and '-', \
             starting and ending with a letter or digit)",
            self.0
        )
    }
}

impl std::error::Error for InvalidName {}

/// PEP 508: `^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$`, case-insensitively.
pub fn is_valid(name: &str) -> bool {
    let b = name.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// PEP 503 normalization: `re.sub(r"[-_.]+", "-", name).lower()`.
///
/// Applies to any string; use [`normalize_checked`] to also reject names that
/// pip would never ask for.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.extend(c.to_lowercase());
            in_sep = false;
        }
    }
    out
}

/// Validate (PEP 508) then normalize (PEP 503).
pub fn normalize_checked(name: &str) -> Result<String, InvalidName> {
    if is_valid(name) {
        Ok(normalize(name))
    } else {
        Err(InvalidName(name.to_owned()))
    }
}

/// The distribution name and version encoded in an archive's file name, if
/// the file name has the expected shape (see [`check_filename`]).
pub fn split_filename(filename: &str) -> Option<(ArchiveKind, &str, &str)> {
    check_filename(filename).ok()
}

/// Check that `filename` is one pip and uv would pick up from an index, and
/// split it into kind, distribution name and version; the error says what
/// is wrong, in a few words.
///
/// Wheels (PEP 427): `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`
/// with a valid project name, a PEP 440 version, a build tag starting with a
/// digit, and compatibility tags (PEP 425) made of letters, digits and `_`,
/// joined by `.` in compressed sets such as `py2.py3`. Sdists:
/// `{name}-{version}.tar.gz|.zip`, split at the last `-` because legacy
/// sdists may have `-` inside the name; their version can only be checked
/// once the project name is known (see [`sdist_version`]). A name with white
/// space (`pkg-1.0-py3-none-any (1).whl`, a browser's second download) is
/// never valid.
pub fn check_filename(filename: &str) -> Result<(ArchiveKind, &str, &str), String> {
    let kind = ArchiveKind::from_filename(filename)
        .ok_or_else(|| "not a .whl, .tar.gz or .zip file".to_owned())?;
    if filename
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("white space in the file name".to_owned());
    }
    let stem = filename
        .get(..filename.len() - kind.ext_len())
        .unwrap_or_default();
    match kind {
        ArchiveKind::Wheel => check_wheel_stem(stem).map(|(n, v)| (kind, n, v)),
        ArchiveKind::SdistTarGz | ArchiveKind::SdistZip => match stem.rsplit_once('-') {
            Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((kind, n, v)),
            _ => Err("no {name}-{version} before the extension".to_owned()),
        },
    }
}

fn check_wheel_stem(stem: &str) -> Result<(&str, &str), String> {
    let parts: Vec<&str> = stem.split('-').collect();
    let (name, version, build, tags) = match parts.as_slice() {
        [n, v, tags @ ..] if tags.len() == 3 => (*n, *v, None, tags),
        [n, v, b, tags @ ..] if tags.len() == 3 => (*n, *v, Some(*b), tags),
        _ => return Err("not {name}-{version}(-{build})-{python}-{abi}-{platform}.whl".to_owned()),
    };
    if !is_valid(name) {
        return Err(format!("{name:?} is not a valid project name"));
    }
    // pip reads `_` in a wheel's version as `-` (old tools escaped it so).
    check_version(&version.replace('_', "-"))?;
    if let Some(b) = build {
        if !b.starts_with(|c: char| c.is_ascii_digit()) || !is_tag(b) {
            return Err(format!("build tag {b:?} must start with a digit"));
        }
    }
    for (what, tag) in ["python", "abi", "platform"].iter().zip(tags) {
        if !tag.split('.').all(is_tag) {
            return Err(format!(
                "{what} tag {tag:?} may only have letters, digits, '_' and '.'"
            ));
        }
    }
    Ok((name, version))
}

fn is_tag(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `version` is a valid PEP 440 version: pip and uv skip files whose
/// version is not.
pub fn check_version(version: &str) -> Result<(), String> {
    version
        .parse::<pep440_rs::Version>()
        .map(|_| ())
        .map_err(|_| format!("version {version:?} is not a valid PEP 440 version"))
}

/// The version part of an sdist file name (without extension) for the
/// normalized `project`, found as pip finds it: after the first `-` whose
/// prefix normalizes to the project name. `None` if no prefix does, i.e. pip
/// would not take the file for a release of `project`.
pub fn sdist_version<'a>(stem: &'a str, project: &str) -> Option<&'a str> {
    stem.match_indices('-')
        .find(|(i, _)| normalize(&stem[..*i]) == project)
        .map(|(i, _)| &stem[i + 1..])
        .filter(|v| !v.is_empty())
}

/// Whether pip would take `filename` for a release of the normalized
/// `project`: a wheel's name part normalizes to it, an sdist's name starts
/// with it (see [`sdist_version`]). A file listed under another project is
/// never fetched, published or served there.
pub fn belongs_to(filename: &str, project: &str) -> bool {
    let Ok((kind, name, _)) = check_filename(filename) else {
        return false;
    };
    if kind.is_wheel() {
        return normalize(name) == project;
    }
    let stem = filename
        .get(..filename.len() - kind.ext_len())
        .unwrap_or_default();
    sdist_version(stem, project).is_some_and(|v| check_version(v).is_ok())
}

/// The version of the release `filename` is a file of, for the normalized
/// `project`, as written in the file name (a wheel's `_` read as `-`).
pub fn version_of(filename: &str, project: &str) -> Option<String> {
    let (kind, _, version) = check_filename(filename).ok()?;
    if kind.is_wheel() {
        return Some(version.replace('_', "-"));
    }
    let stem = filename.get(..filename.len() - kind.ext_len())?;
    sdist_version(stem, project).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_belong_to_the_project_their_name_says() {
        assert!(belongs_to("foo_bar-1.0-py3-none-any.whl", "foo-bar"));
        assert!(belongs_to("Foo.Bar-1.0.tar.gz", "foo-bar"));
        assert!(belongs_to("foo-bar-1.0.tar.gz", "foo-bar"));
        assert!(!belongs_to("victim-9.9-py3-none-any.whl", "evil"));
        assert!(!belongs_to("victim-9.9.tar.gz", "evil"));
        assert!(!belongs_to("foo-bar-1.0.tar.gz", "foo"));
        assert!(!belongs_to("foo-1.0.egg", "foo"));
        assert_eq!(
            version_of("foo_bar-1.0_post1-py3-none-any.whl", "foo-bar").as_deref(),
            Some("1.0-post1")
        );
        assert_eq!(
            version_of("foo-bar-2.0.zip", "foo-bar").as_deref(),
            Some("2.0")
        );
        assert_eq!(version_of("foo-bar-2.0.zip", "baz"), None);
    }

    #[test]
    fn normalizes_like_pep_503() {
        for (raw, want) in [
            ("friendly-bard", "friendly-bard"),
            ("Friendly-Bard", "friendly-bard"),
            ("FRIENDLY-BARD", "friendly-bard"),
            ("friendly.bard", "friendly-bard"),
            ("friendly_bard", "friendly-bard"),
            ("friendly--bard", "friendly-bard"),
            ("FrIeNdLy-._.-bArD", "friendly-bard"),
            ("zope.interface", "zope-interface"),
            ("A", "a"),
            ("a1", "a1"),
        ] {
            assert_eq!(normalize(raw), want, "{raw}");
            assert_eq!(normalize_checked(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn rejects_names_invalid_under_pep_508() {
        for bad in [
            "", "-foo", "foo-", ".foo", "foo_", "foo bar", "foo/bar", "föo", "foo+", "_",
        ] {
            assert!(!is_valid(bad), "{bad:?} accepted");
            assert_eq!(normalize_checked(bad), Err(InvalidName(bad.to_owned())));
        }
        assert!(is_valid("a"));
        assert!(is_valid("a.b_c-d"));
    }

    #[test]
    fn splits_wheel_and_sdist_filenames() {
        assert_eq!(
            split_filename("foo_bar-1.0-py3-none-any.whl"),
            Some((ArchiveKind::Wheel, "foo_bar", "1.0"))
        );
        assert_eq!(
            split_filename("foo-1.0-1build-cp311-cp311-manylinux_2_17_x86_64.whl"),
            Some((ArchiveKind::Wheel, "foo", "1.0"))
        );
        assert_eq!(
            split_filename("Foo.Bar-2.0.tar.gz"),
            Some((ArchiveKind::SdistTarGz, "Foo.Bar", "2.0"))
        );
        assert_eq!(
            split_filename("foo-bar-2.0.zip"),
            Some((ArchiveKind::SdistZip, "foo-bar", "2.0"))
        );
        assert_eq!(split_filename("foo.whl"), None);
        assert_eq!(split_filename("foo-1.0-py3.whl"), None);
        assert_eq!(
            split_filename("foo-1.0-py2.py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
            Some((ArchiveKind::Wheel, "foo", "1.0"))
        );
        assert_eq!(
            split_filename("torch-2.1.0+cpu-cp311-cp311-linux_x86_64.whl"),
            Some((ArchiveKind::Wheel, "torch", "2.1.0+cpu"))
        );
        assert_eq!(split_filename("nodash.tar.gz"), None);
        assert_eq!(split_filename("foo-1.0.egg"), None);
        assert_eq!(
            ArchiveKind::from_filename("X-1.ZIP"),
            Some(ArchiveKind::SdistZip)
        );
    }

    #[test]
    fn refuses_wheel_names_installers_ignore() {
        for (bad, why) in [
            ("pkg-1.0-py3-none-any (1).whl", "white space"),
            ("pkg-1.0-py3-none-any(1).whl", "platform tag \"any(1)\""),
            ("pkg-one-py3-none-any.whl", "version \"one\""),
            ("pkg-1.0-x1-py3-none-any.whl", "build tag \"x1\""),
            (
                "pk+g-1.0-py3-none-any.whl",
                "\"pk+g\" is not a valid project name",
            ),
            ("pkg-1.0-py3..py2-none-any.whl", "python tag"),
            ("pkg-1.0-none-any.whl", "not {name}-{version}"),
            ("pkg-1.0-1-2-py3-none-any.whl", "not {name}-{version}"),
        ] {
            let err = check_filename(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(
            check_filename("foo-1.0_1-py3-none-any.whl"),
            Ok((ArchiveKind::Wheel, "foo", "1.0_1"))
        );
        assert!(check_filename("pkg-1.0 (1).tar.gz").is_err());
    }

    #[test]
    fn finds_sdist_versions_the_way_pip_does() {
        assert_eq!(sdist_version("Foo.Bar-2.0", "foo-bar"), Some("2.0"));
        assert_eq!(sdist_version("foo-bar-2.0", "foo-bar"), Some("2.0"));
        assert_eq!(sdist_version("foo-1.0-post1", "foo"), Some("1.0-post1"));
        assert_eq!(sdist_version("foo-1.0", "bar"), None);
        assert_eq!(sdist_version("foo-", "foo"), None);
        assert!(check_version("1.0-post1").is_ok());
        assert!(check_version("1.0 (1)").is_err());
        assert!(check_version("latest").is_err());
    }
}
