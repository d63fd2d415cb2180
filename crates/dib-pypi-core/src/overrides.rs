//! Detecting settings that would beat our config files, so the user hears about them.
//!
//! `sudo -E chroot` carries the host's environment into the image, and pip
//! and uv give environment variables precedence over any config file.

use std::ffi::OsStr;
use std::path::Path;

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
    for (name, _) in vars {
        let Some(name) = name.as_ref().to_str() else {
            continue;
        };
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

#[cfg(test)]
mod tests {
    use super::*;

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
