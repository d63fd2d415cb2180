//! Detecting settings that would beat our config files, so the user hears about them.
//!
//! `sudo -E chroot` carries the host's environment into the image, and pip
//! and uv give environment variables precedence over any config file.

use std::ffi::OsStr;
use std::path::Path;

use crate::certs::{CA_VAR, CLIENT_CERT_VAR};
use crate::layout::{CA_BUNDLE, CLIENT_CERT};
use crate::rootfs::Root;

/// pip options, as `PIP_<NAME>` variables, that change where packages come
/// from or make pip ignore our file.
const PIP_VARS: &[&str] = &[
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_NO_INDEX",
    "PIP_FIND_LINKS",
    "PIP_TRUSTED_HOST",
    "PIP_RETRIES",
    "PIP_CONFIG_FILE",
    "PIP_ISOLATED",
    "PIP_CERT",
    "PIP_CLIENT_CERT",
    "PIP_PROXY",
];

/// uv's equivalents.
const UV_VARS: &[&str] = &[
    "UV_INDEX",
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_NO_INDEX",
    "UV_FIND_LINKS",
    "UV_INDEX_STRATEGY",
    "UV_CONFIG_FILE",
    "UV_NO_CONFIG",
    "UV_OFFLINE",
];

/// pip's site config for the system interpreter (`sys.prefix/pip.conf`),
/// read after the user config, so it wins over ours.
pub const SITE_CONFIGS: &[&str] = &["/usr/pip.conf", "/usr/local/pip.conf"];

/// Warnings about variables in `vars` that override the files we write.
/// Only names are reported: values may hold credentials.
pub fn env_warnings<I, K, V>(vars: I) -> Vec<String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut pip = Vec::new();
    let mut uv = Vec::new();
    let mut xdg = false;
    for (name, value) in vars {
        let Some(name) = name.as_ref().to_str() else {
            continue;
        };
        // environment.d points PIP_CERT and friends at the element's own
        // files: those override nothing.
        if [CA_BUNDLE, CLIENT_CERT]
            .map(OsStr::new)
            .contains(&value.as_ref())
        {
            continue;
        }
        if PIP_VARS.contains(&name) {
            pip.push(name.to_string());
        } else if UV_VARS.contains(&name) {
            uv.push(name.to_string());
        } else if name == "XDG_CONFIG_HOME" {
            xdg = true;
        }
    }
    pip.sort();
    uv.sort();
    let mut out = Vec::new();
    if !pip.is_empty() {
        out.push(format!(
            "{} set in the environment (DIB carries the host's into the chroot) override the mirror config for pip",
            pip.join(", ")
        ));
    }
    if !uv.is_empty() {
        out.push(format!(
            "{} set in the environment override the mirror config for uv",
            uv.join(", ")
        ));
    }
    if xdg {
        out.push(
            "XDG_CONFIG_HOME is set; uv reads its config from there instead of ~/.config/uv/uv.toml"
                .to_string(),
        );
    }
    out
}

/// Warnings about config files in the image that pip reads after ours.
pub fn image_warnings(root: &Root) -> Vec<String> {
    SITE_CONFIGS
        .iter()
        .filter(|p| matches!(root.lstat(Path::new(p)), Ok(Some(_))))
        .map(|p| format!("{p} exists in the image; pip reads it after the mirror config, so its settings win"))
        .collect()
}

/// Host variables that point TLS clients at a CA bundle or client
/// certificate, the tool that reads each, and the element's variable to
/// use instead.
const TLS_PATH_VARS: &[(&str, &str, &str)] = &[
    ("PIP_CERT", "pip", CA_VAR),
    ("PIP_CLIENT_CERT", "pip", CLIENT_CERT_VAR),
    ("REQUESTS_CA_BUNDLE", "pip", CA_VAR),
    ("SSL_CERT_FILE", "uv and Python", CA_VAR),
    ("SSL_CLIENT_CERT", "uv", CLIENT_CERT_VAR),
    ("CURL_CA_BUNDLE", "curl", CA_VAR),
];

/// Warnings about TLS path variables that `sudo -E` carried from the host
/// and that name a file the image does not have: the tool then fails
/// every https request. Says what to set instead. Paths are shown (they
/// are not secrets), cut to a sane length.
pub fn tls_path_warnings<I, K, V>(root: &Root, vars: I) -> Vec<String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut out = Vec::new();
    for (name, value) in vars {
        let (name, value) = (name.as_ref(), value.as_ref());
        let Some(&(var, tool, instead)) =
            TLS_PATH_VARS.iter().find(|(v, _, _)| OsStr::new(v) == name)
        else {
            continue;
        };
        let path = Path::new(value);
        let missing = path.is_absolute()
            && crate::layout::is_clean_absolute(path)
            && matches!(root.kind_following(path), Ok(None));
        if missing {
            let shown: String = path.display().to_string().chars().take(200).collect();
            out.push(format!(
                "{var}={shown} (from the host) names a file that is not in the image, so {tool} \
                 will fail on https; unset {var} and set {instead}={shown} instead (root.d \
                 then puts it into the image for the build)"
            ));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_paths_missing_in_the_image_say_what_to_set_instead() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/ssl")).unwrap();
        std::fs::write(dir.path().join("etc/ssl/ok.pem"), "x").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let w = tls_path_warnings(
            &root,
            [
                ("PIP_CERT", "/etc/corp/ca.pem"),
                ("SSL_CERT_FILE", "/etc/ssl/ok.pem"),
                ("SSL_CLIENT_CERT", "/home/me/me.pem"),
                ("HOME", "/nonexistent"),
            ],
        );
        assert_eq!(
            w,
            [
                "PIP_CERT=/etc/corp/ca.pem (from the host) names a file that is not in the image, \
                 so pip will fail on https; unset PIP_CERT and set DIB_PYPI_MIRROR_CA=/etc/corp/ca.pem \
                 instead (root.d then puts it into the image for the build)",
                "SSL_CLIENT_CERT=/home/me/me.pem (from the host) names a file that is not in the \
                 image, so uv will fail on https; unset SSL_CLIENT_CERT and set \
                 DIB_PYPI_MIRROR_CLIENT_CERT=/home/me/me.pem instead (root.d then puts it into the \
                 image for the build)",
            ]
        );
    }

    #[test]
    fn names_overriding_variables_without_values() {
        let w = env_warnings([
            ("PIP_FIND_LINKS", "/opt/wheels"),
            ("PIP_INDEX_URL", "https://u:s3cret@h/"),
            ("PIP_DEFAULT_TIMEOUT", "60"),
            ("UV_INDEX_URL", "x"),
            ("HOME", "/root"),
        ]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("PIP_FIND_LINKS, PIP_INDEX_URL set"),
            "{w:?}"
        );
        assert!(w[1].starts_with("UV_INDEX_URL set"), "{w:?}");
        assert!(!w.concat().contains("s3cret"));
        assert!(!w.concat().contains("TIMEOUT"));
    }

    #[test]
    fn the_elements_own_tls_files_override_nothing() {
        let w = env_warnings([("PIP_CERT", CA_BUNDLE), ("PIP_CLIENT_CERT", CLIENT_CERT)]);
        assert!(w.is_empty(), "{w:?}");
        let w = env_warnings([("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")]);
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn quiet_without_overrides() {
        assert!(env_warnings([("HOME", "/root"), ("DIB_OFFLINE", "1")]).is_empty());
    }

    #[test]
    fn xdg_config_home_is_reported() {
        let w = env_warnings([("XDG_CONFIG_HOME", "/home/me/.config")]);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("XDG_CONFIG_HOME"));
    }

    #[test]
    fn site_config_in_image_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert!(image_warnings(&root).is_empty());
        std::fs::create_dir(dir.path().join("usr")).unwrap();
        std::fs::write(dir.path().join("usr/pip.conf"), "[global]\n").unwrap();
        let w = image_warnings(&root);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("/usr/pip.conf exists"));
    }
}
