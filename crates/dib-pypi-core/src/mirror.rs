//! A validated mirror URL that knows how to show itself without its credentials.

use std::fmt;

use url::Url;

use crate::error::{Error, Result};

/// Longest URL we accept. pip and uv have no such limit, but a value this
/// long is a mistake (or an attack on the config file), never a mirror.
pub const MAX_URL_LEN: usize = 8192;

/// The URL of the default mirror: the host's cache, bind-mounted by root.d.
pub const DEFAULT_MIRROR: &str = "file:///tmp/pypi";

/// Upstream PyPI's simple index (PEP 503), used as the last resort unless
/// the build is offline.
pub const UPSTREAM_INDEX: &str = "https://pypi.org/simple";

/// One index URL, parsed and checked.
#[derive(Clone, PartialEq, Eq)]
pub struct MirrorUrl {
    url: Url,
}

impl MirrorUrl {
    /// Parse `value`, the content of variable `var`. Errors name `var` and
    /// never echo the value, which may hold a password.
    pub fn parse(var: &str, value: &str) -> Result<Self> {
        if value.len() > MAX_URL_LEN {
            return Err(Error::env(
                var,
                format!(
                    "value is {} bytes long; a mirror URL may have at most {MAX_URL_LEN}",
                    value.len()
                ),
            ));
        }
        // Whitespace would split the value in pip.conf's multi-line
        // extra-index-url and control characters could start a new section.
        if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::env(
                var,
                format!("mirror URL contains the character {c:?}; that is not allowed"),
            ));
        }
        let url =
            Url::parse(value).map_err(|e| Error::env(var, format!("not a valid URL ({e})")))?;
        match url.scheme() {
            "http" | "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(Error::env(var, "http(s) mirror URL has no host"));
                }
            }
            "file" => {
                if url
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(Error::env(
                        var,
                        "file:// mirror URL must not name a host (use file:///path)",
                    ));
                }
            }
            other => {
                return Err(Error::env(
                    var,
                    format!("scheme {other:?} is not supported (use http, https or file)"),
                ))
            }
        }
        Ok(MirrorUrl { url })
    }

    /// The URL as written into the config files (credentials included).
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// Whether the URL carries a user name or password.
    pub fn has_credentials(&self) -> bool {
        !self.url.username().is_empty() || self.url.password().is_some()
    }

    /// The URL with its secret replaced by `***`: `user:***@host`, or
    /// `***@host` when the user name alone is the token.
    pub fn redacted(&self) -> String {
        let mut shown = self.url.clone();
        if shown.password().is_some() {
            // set_password only fails for URLs that cannot carry one, which
            // parse() has already excluded.
            let _ = shown.set_password(Some("***"));
        } else if !shown.username().is_empty() {
            let _ = shown.set_username("***");
        }
        shown.to_string()
    }

    /// `host[:port]` for a plain-http mirror, which pip ignores unless it is
    /// listed in `trusted-host`; `None` for https and file URLs.
    pub fn insecure_host(&self) -> Option<String> {
        if self.url.scheme() != "http" {
            return None;
        }
        let host = self.url.host_str()?;
        Some(match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        })
    }

    /// The local directory of a `file://` mirror.
    pub fn file_path(&self) -> Option<std::path::PathBuf> {
        if self.url.scheme() == "file" {
            self.url.to_file_path().ok()
        } else {
            None
        }
    }
}

impl fmt::Display for MirrorUrl {
    /// Displays the redacted form, so logging a mirror cannot leak a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for MirrorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MirrorUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<MirrorUrl> {
        MirrorUrl::parse("DIB_PYPI_MIRROR_URL", v)
    }

    #[test]
    fn accepts_the_three_schemes() {
        for v in [
            "http://m/simple",
            "https://m:8443/simple/",
            "file:///tmp/pypi",
        ] {
            assert!(parse(v).is_ok(), "{v}");
        }
    }

    #[test]
    fn rejects_other_schemes_naming_the_variable() {
        let e = parse("ftp://m/").unwrap_err().to_string();
        assert_eq!(
            e,
            "DIB_PYPI_MIRROR_URL: scheme \"ftp\" is not supported (use http, https or file)"
        );
    }

    #[test]
    fn rejects_garbage_without_echoing_it() {
        let e = parse("not a url s3cret").unwrap_err().to_string();
        assert!(e.starts_with("DIB_PYPI_MIRROR_URL: "), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let e = parse("relative/s3cret").unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn rejects_newlines_and_section_injection() {
        let e = parse("http://m/\n[global]\nindex-url=http://evil/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'\\n'"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn rejects_huge_values() {
        let v = format!("http://m/{}", "a".repeat(MAX_URL_LEN));
        assert!(parse(&v).unwrap_err().to_string().contains("at most 8192"));
    }

    #[test]
    fn rejects_hostless_http_and_hostful_file() {
        assert!(parse("http://").is_err());
        assert!(parse("file://server/share").is_err());
    }

    #[test]
    fn redacts_password_and_token() {
        let m = parse("https://alice:p%40ss@m.example/simple").unwrap();
        assert_eq!(m.redacted(), "https://alice:***@m.example/simple");
        assert_eq!(m.to_string(), m.redacted());
        assert!(!format!("{m:?}").contains("p%40ss"));
        let t = parse("https://tok3n@m.example/simple").unwrap();
        assert_eq!(t.redacted(), "https://***@m.example/simple");
        assert!(t.has_credentials());
        assert!(!parse("https://m.example/").unwrap().has_credentials());
    }

    #[test]
    fn insecure_host_only_for_http_with_port_and_ipv6() {
        assert_eq!(
            parse("http://m:8080/s").unwrap().insecure_host().as_deref(),
            Some("m:8080")
        );
        assert_eq!(
            parse("http://[::1]:3141/s")
                .unwrap()
                .insecure_host()
                .as_deref(),
            Some("[::1]:3141")
        );
        assert_eq!(
            parse("http://m/").unwrap().insecure_host().as_deref(),
            Some("m")
        );
        assert_eq!(parse("https://m/").unwrap().insecure_host(), None);
        assert_eq!(parse("file:///tmp/pypi").unwrap().insecure_host(), None);
    }

    #[test]
    fn file_path_of_file_urls() {
        assert_eq!(
            parse(DEFAULT_MIRROR).unwrap().file_path(),
            Some("/tmp/pypi".into())
        );
        assert_eq!(parse("http://m/").unwrap().file_path(), None);
    }
}
