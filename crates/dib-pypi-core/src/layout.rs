//! Every name the element gives to something in the image or beside it, and the modes it uses, in one place (the tools' config files are in `tools`).
//!
//! Pure data: the modules that act on these paths import them from here,
//! so the tests, the restore hook and the docs agree on one list.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The element's state directory in the image while a build runs: the
/// journals. At the top of the image so that its parent always exists
/// and creating it is one step (a deeper path would need its missing
/// parents created, and journaled, first). Not a dot name: DIB moves the
/// image into its final filesystem with `cp -ra built/* mnt` before
/// cleanup.d, and that glob leaves every top-level dot name behind.
pub const STATE_DIR: &str = "/dib-pypi";
/// Mode of the state directory: it holds the mirrors' CA bundle, which
/// every user in the image may need (the journals and the client key in
/// it are 0600 themselves).
pub const STATE_DIR_MODE: u32 = 0o755;
/// Journal of root.d (the mirror mount).
pub const MOUNT_JOURNAL: &str = "/dib-pypi/mount.journal";
/// Journal of pre-install.d (the pip and uv configs).
pub const CONFIG_JOURNAL: &str = "/dib-pypi/config.journal";
/// Journal of root.d's TLS files (the CA bundle, the client certificate).
pub const TLS_JOURNAL: &str = "/dib-pypi/tls.journal";
/// Every journal, in the order restore undoes them.
pub const JOURNALS: [&str; 3] = [CONFIG_JOURNAL, MOUNT_JOURNAL, TLS_JOURNAL];

/// The mirrors' CA bundle in the image (the host's public CAs, then
/// `DIB_PYPI_MIRROR_CA`'s): pip's `cert`, uv's `SSL_CERT_FILE`.
pub const CA_BUNDLE: &str = "/dib-pypi/mirror-ca.pem";
/// Mode of the CA bundle: public material.
pub const CA_BUNDLE_MODE: u32 = 0o644;
/// The client certificate and key in the image: pip's `client-cert`, uv's
/// `SSL_CLIENT_CERT`.
pub const CLIENT_CERT: &str = "/dib-pypi/mirror-client.pem";

/// Where the mirror appears inside the image (`file:///tmp/pypi`).
pub const MOUNTPOINT: &str = "/tmp/pypi";
/// Suffix of the private staging directory beside the image root (on the
/// host, in DIB's build directory), where the mirror is bound and made
/// read-only before it is moved into the image.
pub const STAGE_SUFFIX: &str = ".dib-pypi-stage";
/// The bind mount's name inside the staging directory.
pub const STAGE_MOUNT: &str = "mirror";

/// Suffix of the backup of an original file, kept beside it (same
/// directory, so the move is an atomic rename that keeps owner, mode,
/// times and inode).
pub const BACKUP_SUFFIX: &str = ".dib-pypi-orig";
/// Suffix of the temporary file an atomic write goes through.
pub const TEMP_SUFFIX: &str = ".dib-pypi-tmp";

/// Mode of directories we create unless said otherwise.
pub const DIR_MODE: u32 = 0o755;
/// Mode of a home directory we create.
pub const HOME_MODE: u32 = 0o700;
/// Mode of `/tmp` when the image has none yet.
pub const TMP_MODE: u32 = 0o1777;
/// Mode of a config file that holds no password.
pub const CONFIG_MODE: u32 = 0o644;
/// Mode of a config file that holds a mirror password.
pub const SECRET_MODE: u32 = 0o600;

/// root's home when `$HOME` says nothing usable: DIB runs the in-chroot
/// hooks with `HOME=/root`.
pub const DEFAULT_HOME: &str = "/root";

/// The home directory pip and uv will use: `$HOME` when it is a clean
/// absolute path, else `/root` (we run as root; no NSS lookup, the binary is
/// static and the image's libc is unknown).
pub fn home_dir(home_var: Option<&OsStr>) -> PathBuf {
    home_var
        .map(PathBuf::from)
        .filter(|p| is_clean_absolute(p))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME))
}

/// Mode of a directory we create on the way to a config file.
pub fn dir_mode(dir: &Path, home: &Path) -> u32 {
    if dir == home {
        HOME_MODE
    } else if dir == Path::new("/tmp") {
        TMP_MODE
    } else {
        DIR_MODE
    }
}

/// `path` with `suffix` appended to its file name (`pip.conf` ->
/// `pip.conf.dib-pypi-orig`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or(OsStr::new("")).to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Whether `path` is absolute and made only of normal components.
pub fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !path.as_os_str().as_bytes().contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_comes_from_a_clean_absolute_home_only() {
        assert_eq!(home_dir(Some(OsStr::new("/home/x"))), Path::new("/home/x"));
        for bad in ["", "relative", "/a/../b", "/a/\0b"] {
            assert_eq!(home_dir(Some(OsStr::new(bad))), Path::new("/root"), "{bad}");
        }
        assert_eq!(home_dir(None), Path::new("/root"));
    }

    #[test]
    fn every_journal_lives_in_the_state_directory() {
        for j in JOURNALS.iter().chain(&[CA_BUNDLE, CLIENT_CERT]) {
            assert_eq!(Path::new(j).parent(), Some(Path::new(STATE_DIR)));
        }
        assert_eq!(Path::new(STATE_DIR).parent(), Some(Path::new("/")));
    }
}
