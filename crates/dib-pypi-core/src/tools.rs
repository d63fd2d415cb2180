//! One spec per tool the element points at the mirrors (pip, uv): its files, its renderer, and what beats them.
//!
//! Everything that differs between the tools is here, as data: configure's
//! plan, restore's leftover check, the override warnings and the hooks'
//! messages iterate over [`TOOLS`] (or over a list a test gives them), so
//! adding a tool is adding a spec (see docs/ARCHITECTURE.md).

use std::path::{Path, PathBuf};

use crate::render::{pip_conf, uv_toml};
use crate::settings::Settings;

/// When a tool's system file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemFile {
    /// Only when no user file is in reach: the tool reads the system file
    /// under its user files, and ours replace every key that matters
    /// (pip: a user `index-url` beats the global one).
    InsteadOfUserFiles,
    /// Also whenever the image has one: the tool merges lists from the
    /// system file under the user file (uv's `[[index]]`), so an image's
    /// own would add its indexes to ours.
    AlsoWhenPresent,
}

/// How one tool reads its configuration, and what overrides it.
#[derive(Debug)]
pub struct ToolSpec {
    /// The tool's name, for messages.
    pub name: &'static str,
    /// User config files, relative to the home directory, in the order
    /// the tool reads them. Every one in reach is written, so that neither
    /// an existing file nor a variable choosing among them leaves the tool
    /// without the mirrors.
    pub user_files: &'static [&'static str],
    /// System config files, in the order the tool looks for them: it reads
    /// the first that is a file, else the last (which is where it is
    /// written). Also the fallback when no user file is in reach (their
    /// directory is a symlink leading nowhere).
    pub system_files: &'static [&'static str],
    /// When the system file is written.
    pub system_file: SystemFile,
    /// The file's text for the settings; starts with
    /// [`crate::render::MARKER`], so restore knows a leftover.
    pub render: fn(&Settings) -> String,
    /// Environment variables that beat the file (named in a warning,
    /// never with their value).
    pub overriding_vars: &'static [&'static str],
    /// Files in the image the tool reads after ours, so their settings win.
    pub overriding_files: &'static [&'static str],
    /// How the tool picks a version among the indexes, for the log.
    pub index_choice: fn(&Settings) -> String,
    /// Variables naming the CA bundle it trusts: environment.d points them
    /// at the mirrors' bundle; a host path the image lacks is warned about.
    pub ca_vars: &'static [&'static str],
    /// Variables naming its client certificate (the same).
    pub client_cert_vars: &'static [&'static str],
}

impl ToolSpec {
    /// The user files for home directory `home`.
    pub fn user_paths(&self, home: &Path) -> Vec<PathBuf> {
        self.user_files.iter().map(|f| home.join(f)).collect()
    }

    /// Every file the element may write for this tool.
    pub fn every_path(&self, home: &Path) -> Vec<PathBuf> {
        let mut all = self.user_paths(home);
        all.extend(self.system_files.iter().map(PathBuf::from));
        all
    }
}

/// pip: two user files (the XDG one read last, so it wins), `/etc/pip.conf`.
pub const PIP: ToolSpec = ToolSpec {
    name: "pip",
    user_files: &[".pip/pip.conf", ".config/pip/pip.conf"],
    system_files: &["/etc/pip.conf"],
    system_file: SystemFile::InsteadOfUserFiles,
    render: pip_conf,
    overriding_vars: &[
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
    ],
    // The site config of the system interpreter (`sys.prefix/pip.conf`).
    overriding_files: &["/usr/pip.conf", "/usr/local/pip.conf"],
    index_choice: |_| "the best version across them".to_string(),
    ca_vars: &["PIP_CERT", "REQUESTS_CA_BUNDLE"],
    client_cert_vars: &["PIP_CLIENT_CERT"],
};

/// uv: one user file; the system file is `$XDG_CONFIG_DIRS/uv/uv.toml`
/// (default `/etc/xdg`) if that is a file, else `/etc/uv/uv.toml`. uv
/// reads no CA path from its file, only the environment.
pub const UV: ToolSpec = ToolSpec {
    name: "uv",
    user_files: &[".config/uv/uv.toml"],
    system_files: &["/etc/xdg/uv/uv.toml", "/etc/uv/uv.toml"],
    system_file: SystemFile::AlsoWhenPresent,
    render: uv_toml,
    overriding_vars: &[
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
        // uv then reads its user file from there, not ~/.config/uv.
        "XDG_CONFIG_HOME",
    ],
    overriding_files: &[],
    index_choice: |s| s.uv_index_strategy.describe(),
    ca_vars: &["SSL_CERT_FILE"],
    client_cert_vars: &["SSL_CLIENT_CERT"],
};

/// The tools the element configures, in the order their files are written.
pub const TOOLS: &[&ToolSpec] = &[&PIP, &UV];

/// The tools' names, for a message: `pip and uv`.
pub fn names(tools: &[&ToolSpec]) -> String {
    let names: Vec<&str> = tools.iter().map(|t| t.name).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

/// Every config file the element may write for `tools`, for home `home`:
/// what restore checks for leftovers.
pub fn every_path(tools: &[&ToolSpec], home: &Path) -> Vec<PathBuf> {
    tools.iter().flat_map(|t| t.every_path(home)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::is_ours;

    #[test]
    fn every_spec_is_complete_and_renders_a_file_restore_recognises() {
        let settings = Settings::from_vars([("DIB_OFFLINE", "1")]).unwrap();
        for tool in TOOLS {
            assert!(!tool.user_files.is_empty(), "{}", tool.name);
            assert!(!tool.system_files.is_empty(), "{}", tool.name);
            assert!(
                is_ours((tool.render)(&settings).as_bytes()),
                "{}",
                tool.name
            );
            for f in tool.user_files {
                assert!(Path::new(f).is_relative(), "{f}");
            }
            for f in tool.system_files {
                assert!(crate::layout::is_clean_absolute(Path::new(f)), "{f}");
            }
        }
        assert_eq!(names(TOOLS), "pip and uv");
        assert_eq!(names(&[&PIP]), "pip");
        assert_eq!(names(&[&PIP, &UV, &PIP]), "pip, uv and pip");
    }

    #[test]
    fn every_path_lists_user_then_system_files() {
        assert_eq!(
            every_path(TOOLS, Path::new("/home/me")),
            [
                "/home/me/.pip/pip.conf",
                "/home/me/.config/pip/pip.conf",
                "/etc/pip.conf",
                "/home/me/.config/uv/uv.toml",
                "/etc/xdg/uv/uv.toml",
                "/etc/uv/uv.toml",
            ]
            .map(PathBuf::from)
        );
    }
}
