//! Detecting settings that would beat our config files, so the user hears about them.
//!
//! `sudo -E chroot` carries the host's environment into the image, and pip
//! and uv give environment variables precedence over any config file.
//! Which variables and files beat which tool is in its spec (`tools`).

use std::ffi::OsStr;
use std::path::Path;

use crate::certs::{CA_VAR, CLIENT_CERT_VAR};
use crate::layout::{CA_BUNDLE, CLIENT_CERT};
use crate::rootfs::Root;
use crate::tools::ToolSpec;

/// Warnings about variables in `vars` that override the files we write,
/// one per tool. Only names are reported: values may hold credentials.
pub fn env_warnings<I, K, V>(tools: &[&ToolSpec], vars: I) -> Vec<String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut set = Vec::new();
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
        set.push(name.to_string());
    }
    let mut out = Vec::new();
    for tool in tools {
        let mut found: Vec<&str> = tool
            .overriding_vars
            .iter()
            .copied()
            .filter(|v| set.iter().any(|s| s == v))
            .collect();
        found.sort_unstable();
        if !found.is_empty() {
            out.push(format!(
                "{} set in the environment (DIB carries the host's into the chroot) override \
                 the mirror config for {}",
                found.join(", "),
                tool.name
            ));
        }
    }
    out
}

/// Warnings about files in the image that a tool reads after ours.
pub fn image_warnings(tools: &[&ToolSpec], root: &Root) -> Vec<String> {
    tools
        .iter()
        .flat_map(|t| t.overriding_files.iter().map(move |p| (t.name, p)))
        .filter(|(_, p)| matches!(root.lstat(Path::new(p)), Ok(Some(_))))
        .map(|(tool, p)| {
            format!("{p} exists in the image; {tool} reads it after the mirror config, so its settings win")
        })
        .collect()
}

/// TLS path variables that no tool of the element reads, but that point
/// another client at a CA bundle.
const OTHER_TLS_VARS: &[(&str, &str)] = &[("CURL_CA_BUNDLE", "curl")];

/// The tools that read TLS path variable `var` (`pip`, `uv and curl`),
/// and the element's variable to set instead; `None` for other variables.
fn readers_of(tools: &[&ToolSpec], var: &str) -> Option<(String, &'static str)> {
    let mut readers: Vec<&str> = Vec::new();
    let mut instead = None;
    for tool in tools {
        if tool.ca_vars.contains(&var) {
            readers.push(tool.name);
            instead = Some(CA_VAR);
        }
        if tool.client_cert_vars.contains(&var) {
            readers.push(tool.name);
            instead = instead.or(Some(CLIENT_CERT_VAR));
        }
    }
    for (v, reader) in OTHER_TLS_VARS {
        if *v == var {
            readers.push(reader);
            instead = instead.or(Some(CA_VAR));
        }
    }
    Some((readers.join(" and "), instead?))
}

/// Warnings about TLS path variables that `sudo -E` carried from the host
/// and that name a file the image does not have: the tool then fails
/// every https request. Says what to set instead. Paths are shown (they
/// are not secrets), cut to a sane length.
pub fn tls_path_warnings<I, K, V>(tools: &[&ToolSpec], root: &Root, vars: I) -> Vec<String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut out = Vec::new();
    for (name, value) in vars {
        let Some(var) = name.as_ref().to_str() else {
            continue;
        };
        let Some((tool, instead)) = readers_of(tools, var) else {
            continue;
        };
        let path = Path::new(value.as_ref());
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
    use crate::tools::TOOLS;

    #[test]
    fn tls_paths_missing_in_the_image_say_what_to_set_instead() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/ssl")).unwrap();
        std::fs::write(dir.path().join("etc/ssl/ok.pem"), "x").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let w = tls_path_warnings(
            TOOLS,
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
        let w = env_warnings(
            TOOLS,
            [
                ("PIP_FIND_LINKS", "/opt/wheels"),
                ("PIP_INDEX_URL", "https://u:s3cret@h/"),
                ("PIP_DEFAULT_TIMEOUT", "60"),
                ("UV_INDEX_URL", "x"),
                ("HOME", "/root"),
            ],
        );
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
        let w = env_warnings(
            TOOLS,
            [("PIP_CERT", CA_BUNDLE), ("PIP_CLIENT_CERT", CLIENT_CERT)],
        );
        assert!(w.is_empty(), "{w:?}");
        let w = env_warnings(TOOLS, [("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")]);
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn quiet_without_overrides() {
        assert!(env_warnings(TOOLS, [("HOME", "/root"), ("DIB_OFFLINE", "1")]).is_empty());
    }

    #[test]
    fn xdg_config_home_is_reported() {
        let w = env_warnings(TOOLS, [("XDG_CONFIG_HOME", "/home/me/.config")]);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("XDG_CONFIG_HOME"));
    }

    #[test]
    fn site_config_in_image_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert!(image_warnings(TOOLS, &root).is_empty());
        std::fs::create_dir(dir.path().join("usr")).unwrap();
        std::fs::write(dir.path().join("usr/pip.conf"), "[global]\n").unwrap();
        let w = image_warnings(TOOLS, &root);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("/usr/pip.conf exists"));
    }
}
