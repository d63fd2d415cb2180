//! Rendering [`Settings`] into the pip and uv config files the image's tools read.

use std::fmt::Write as _;

use crate::layout::{CA_BUNDLE, CLIENT_CERT};
use crate::settings::Settings;

/// pip command sections that override `[global]` for the keys we set. A
/// `[install] index-url` in the image's global config would beat our
/// `[global]` one, so we repeat the keys in each command that resolves
/// packages.
pub const PIP_SECTIONS: &[&str] = &["global", "install", "download", "wheel", "index", "lock"];

const HEADER: &str = "Written by the diskimage-builder pypi element for the image build only.\n\
Its cleanup.d hook removes this file and puts back what was here before.";

/// First bytes of every file we write, so a leftover can be recognised.
pub const MARKER: &str = "# Written by the diskimage-builder pypi element";

/// Whether `content` is a config file this element wrote.
pub fn is_ours(content: &[u8]) -> bool {
    content.starts_with(MARKER.as_bytes())
}

fn comment_block(prefix: &str) -> String {
    HEADER.lines().map(|l| format!("{prefix} {l}\n")).collect()
}

/// The pip configuration (`pip.conf`, INI syntax read by configparser).
///
/// Values are URLs already validated to contain no whitespace or control
/// characters, so they cannot break out of their line.
pub fn pip_conf(settings: &Settings) -> String {
    let mut keys = String::new();
    let mut indexes = settings.indexes.iter();
    if let Some(first) = indexes.next() {
        let _ = writeln!(keys, "index-url = {}", first.as_str());
    }
    let extra: Vec<&str> = indexes.map(|m| m.as_str()).collect();
    if !extra.is_empty() {
        keys.push_str("extra-index-url =");
        for url in extra {
            let _ = write!(keys, "\n    {url}");
        }
        keys.push('\n');
    }
    let trusted: Vec<String> = settings
        .indexes
        .iter()
        .filter_map(|m| m.insecure_host())
        .fold(Vec::new(), |mut acc, h| {
            if !acc.contains(&h) {
                acc.push(h);
            }
            acc
        });
    if !trusted.is_empty() {
        keys.push_str("trusted-host =");
        for host in trusted {
            let _ = write!(keys, "\n    {host}");
        }
        keys.push('\n');
    }
    // An image-wide `no-index = true` would silently disable every mirror.
    keys.push_str("no-index = false\n");
    if let Some(retries) = settings.retries {
        let _ = writeln!(keys, "retries = {retries}");
    }
    // pip's `cert` replaces its CA list: the bundle holds the public CAs
    // too (see `certs`).
    if settings.mirror_ca {
        let _ = writeln!(keys, "cert = {CA_BUNDLE}");
    }
    if settings.client_cert {
        let _ = writeln!(keys, "client-cert = {CLIENT_CERT}");
    }

    let mut out = comment_block("#");
    for section in PIP_SECTIONS {
        let _ = write!(out, "\n[{section}]\n{keys}");
    }
    out
}

/// The uv configuration (`uv.toml`). uv consults `[[index]]` entries in the
/// order written; the one marked `default` is tried last and replaces
/// upstream PyPI, which is how an offline build keeps uv off the network.
/// `index-strategy` says how it chooses among them (by default pip's rule,
/// see [`crate::settings::IndexStrategy`]); a top-level key, so it comes
/// before the first table.
pub fn uv_toml(settings: &Settings) -> String {
    let mut out = comment_block("#");
    let _ = writeln!(
        out,
        "\nindex-strategy = {}",
        toml_string(settings.uv_index_strategy.name())
    );
    let last = settings.indexes.len().saturating_sub(1);
    for (i, index) in settings.indexes.iter().enumerate() {
        let _ = write!(out, "\n[[index]]\nurl = {}\n", toml_string(index.as_str()));
        if i == last {
            out.push_str("default = true\n");
        }
    }
    out
}

/// A TOML basic string. URLs are already free of control characters; the
/// escapes keep this correct for any input all the same.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::UPSTREAM_INDEX;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        Settings::from_vars(vars.iter().copied()).unwrap()
    }

    #[test]
    fn the_mirrors_tls_files_are_in_every_pip_section() {
        let conf = pip_conf(&settings(&[
            ("DIB_PYPI_MIRROR_CA", "/etc/corp/ca.pem"),
            ("DIB_PYPI_MIRROR_CLIENT_CERT", "/etc/corp/me.pem"),
        ]));
        for section in PIP_SECTIONS {
            let body = conf.split(&format!("[{section}]\n")).nth(1).unwrap();
            let body = body.split("\n[").next().unwrap();
            assert!(
                body.contains("\ncert = /dib-pypi/mirror-ca.pem\n"),
                "{section}: {body}"
            );
            assert!(
                body.contains("\nclient-cert = /dib-pypi/mirror-client.pem\n"),
                "{section}"
            );
        }
        // Unset or empty: no such keys.
        let plain = pip_conf(&settings(&[("DIB_PYPI_MIRROR_CA", "")]));
        assert!(!plain.contains("cert"), "{plain}");
    }

    #[test]
    fn pip_conf_lists_first_mirror_as_index_and_the_rest_as_extras() {
        let s = settings(&[
            ("DIB_PYPI_MIRROR_URL", "http://m1:8080/simple/"),
            ("DIB_PYPI_MIRROR_URL_1", "https://m2/simple/"),
            ("DIB_PYPI_MIRROR_URL_2", "file:///tmp/pypi"),
            ("DIB_PIP_RETRIES", "0"),
        ]);
        let conf = pip_conf(&s);
        let expected_keys = format!(
            "index-url = http://m1:8080/simple/\n\
             extra-index-url =\n    https://m2/simple/\n    file:///tmp/pypi\n    {UPSTREAM_INDEX}\n\
             trusted-host =\n    m1:8080\n\
             no-index = false\n\
             retries = 0\n"
        );
        for section in PIP_SECTIONS {
            assert!(
                conf.contains(&format!("\n[{section}]\n{expected_keys}")),
                "[{section}] missing or wrong in:\n{conf}"
            );
        }
        assert!(!conf.contains("None"));
        assert!(is_ours(conf.as_bytes()));
        assert!(is_ours(uv_toml(&s).as_bytes()));
        assert!(!is_ours(
            b"[global]\n# Written by the diskimage-builder pypi element"
        ));
    }

    #[test]
    fn pip_conf_has_no_trusted_host_for_https_and_file() {
        let conf = pip_conf(&settings(&[("DIB_PYPI_MIRROR_URL", "https://m/")]));
        assert!(!conf.contains("trusted-host"), "{conf}");
        assert!(!conf.contains("retries"), "{conf}");
    }

    #[test]
    fn pip_conf_lists_each_insecure_host_once() {
        let conf = pip_conf(&settings(&[
            ("DIB_PYPI_MIRROR_URL", "http://m/a/"),
            ("DIB_PYPI_MIRROR_URL_1", "http://m/b/"),
            ("DIB_OFFLINE", "1"),
        ]));
        assert!(conf.contains("trusted-host =\n    m\nno-index"), "{conf}");
    }

    #[test]
    fn pip_conf_single_mirror_offline_has_no_extras() {
        let conf = pip_conf(&settings(&[
            ("DIB_PYPI_MIRROR_URL", "https://m/"),
            ("DIB_OFFLINE", "1"),
        ]));
        assert!(!conf.contains("extra-index-url"), "{conf}");
    }

    #[test]
    fn uv_toml_keeps_order_and_marks_the_last_index_default() {
        let toml = uv_toml(&settings(&[
            ("DIB_PYPI_MIRROR_URL", "http://m1/"),
            ("DIB_PYPI_MIRROR_URL_1", "file:///tmp/pypi"),
        ]));
        let expected = format!(
            "\n[[index]]\nurl = \"http://m1/\"\n\
             \n[[index]]\nurl = \"file:///tmp/pypi\"\n\
             \n[[index]]\nurl = \"{UPSTREAM_INDEX}\"\ndefault = true\n"
        );
        assert!(toml.ends_with(&expected), "{toml}");
    }

    #[test]
    fn uv_toml_says_how_uv_chooses_among_the_indexes_before_any_table() {
        let default = uv_toml(&settings(&[]));
        let first = uv_toml(&settings(&[("DIB_PYPI_UV_INDEX_STRATEGY", "first-index")]));
        for (toml, name) in [(default, "unsafe-best-match"), (first, "first-index")] {
            let key = format!("\nindex-strategy = \"{name}\"\n");
            let at = toml.find(&key).unwrap_or_else(|| panic!("{toml}"));
            assert!(at < toml.find("[[index]]").unwrap(), "{toml}");
            assert_eq!(toml.matches("index-strategy").count(), 1, "{toml}");
        }
    }

    #[test]
    fn uv_toml_offline_makes_the_last_mirror_the_default() {
        let toml = uv_toml(&settings(&[
            ("DIB_PYPI_MIRROR_URL", "http://m1/"),
            ("DIB_NO_PYPI_PIP", "1"),
        ]));
        assert!(
            toml.ends_with("url = \"http://m1/\"\ndefault = true\n"),
            "{toml}"
        );
        assert!(!toml.contains(UPSTREAM_INDEX));
    }

    #[test]
    fn toml_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(toml_string("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }
}
