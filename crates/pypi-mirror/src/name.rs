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

    /// Length of the extension including the dot(s).
    fn ext_len(self) -> usize {
        match self {
            Self::Wheel => 4,
            Self::SdistTarGz => 7,
            Self::SdistZip => 4,
        }
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
/// the file name has the expected shape.
///
/// Wheels: `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`, where
/// the name never contains `-`. Sdists: `{name}-{version}.tar.gz|.zip`; legacy
/// sdists may have `-` inside the name, so the split is at the last `-`.
pub fn split_filename(filename: &str) -> Option<(ArchiveKind, &str, &str)> {
    let kind = ArchiveKind::from_filename(filename)?;
    let stem = filename.get(..filename.len() - kind.ext_len())?;
    let (name, version) = match kind {
        ArchiveKind::Wheel => {
            let mut parts = stem.split('-');
            let name = parts.next()?;
            let version = parts.next()?;
            // python, abi and platform tags must follow (build tag optional).
            let rest = parts.count();
            if !(3..=4).contains(&rest) {
                return None;
            }
            (name, version)
        }
        ArchiveKind::SdistTarGz | ArchiveKind::SdistZip => stem.rsplit_once('-')?,
    };
    if name.is_empty() || version.is_empty() {
        return None;
    }
    Some((kind, name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(split_filename("nodash.tar.gz"), None);
        assert_eq!(split_filename("foo-1.0.egg"), None);
        assert_eq!(
            ArchiveKind::from_filename("X-1.ZIP"),
            Some(ArchiveKind::SdistZip)
        );
    }
}
