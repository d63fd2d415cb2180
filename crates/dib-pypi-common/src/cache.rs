//! Where DIB keeps its image cache, and so where the host-side mirror lives.

use std::ffi::OsString;
use std::path::PathBuf;

/// Sub-path of the image cache that holds the PEP 503 mirror tree.
pub const MIRROR_SUBDIR: &str = "pypi/mirror";

/// Resolve the mirror directory the way `disk-image-create` resolves its
/// cache: `$DIB_IMAGE_CACHE`, else `$HOME/.cache/image-create`.
///
/// Takes the two variables as arguments (rather than reading the process
/// environment) so callers and tests control the inputs.
pub fn mirror_dir(dib_image_cache: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let cache = match dib_image_cache.filter(|v| !v.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(home.filter(|v| !v.is_empty())?).join(".cache/image-create"),
    };
    Some(cache.join(MIRROR_SUBDIR))
}

/// [`mirror_dir`] from the current process environment.
pub fn mirror_dir_from_env() -> Option<PathBuf> {
    mirror_dir(
        std::env::var_os("DIB_IMAGE_CACHE"),
        std::env::var_os("HOME"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_cache_variable_wins_over_home() {
        let dir = mirror_dir(Some("/var/cache/dib".into()), Some("/home/u".into()));
        assert_eq!(dir, Some(PathBuf::from("/var/cache/dib/pypi/mirror")));
    }

    #[test]
    fn home_default_when_cache_unset_or_empty() {
        for cache in [None, Some(OsString::new())] {
            let dir = mirror_dir(cache, Some("/home/u".into()));
            assert_eq!(
                dir,
                Some(PathBuf::from("/home/u/.cache/image-create/pypi/mirror"))
            );
        }
    }

    #[test]
    fn nothing_without_either_variable() {
        assert_eq!(mirror_dir(None, None), None);
    }
}
