//! The environment-to-settings model: which mirrors, in which order, online or not.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::certs::{CA_VAR, CLIENT_CERT_VAR};
use crate::error::{Error, Result};
use crate::mirror::{MirrorUrl, DEFAULT_MIRROR, UPSTREAM_INDEX};

/// Prefix of the current mirror variables.
pub const MIRROR_VAR: &str = "DIB_PYPI_MIRROR_URL";
/// Prefix of the deprecated mirror variables, still honoured.
pub const LEGACY_MIRROR_VAR: &str = "PYPI_MIRROR_URL";
/// How uv chooses among the indexes.
pub const UV_INDEX_STRATEGY_VAR: &str = "DIB_PYPI_UV_INDEX_STRATEGY";

/// uv's `index-strategy`: how it picks a version when several indexes have
/// the project. pip has one rule, the best version across all its indexes;
/// uv's default is the first index that has the project at all, which
/// protects against dependency confusion but makes a stale mirror win over
/// upstream PyPI. The element's default is pip's rule, so that both tools
/// in one image install the same versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexStrategy {
    /// The best version across all indexes (pip's rule).
    #[default]
    UnsafeBestMatch,
    /// Every version from the first index that has the project.
    FirstIndex,
    /// The first index with a matching version.
    UnsafeFirstMatch,
}

impl IndexStrategy {
    /// Every strategy, by the name uv gives it.
    pub const ALL: [(IndexStrategy, &'static str); 3] = [
        (IndexStrategy::UnsafeBestMatch, "unsafe-best-match"),
        (IndexStrategy::FirstIndex, "first-index"),
        (IndexStrategy::UnsafeFirstMatch, "unsafe-first-match"),
    ];

    /// uv's name for it (`index-strategy = "..."`).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("unsafe-best-match", |(_, n)| n)
    }

    /// What uv takes under this strategy, for the log.
    pub fn describe(self) -> String {
        let what = match self {
            IndexStrategy::UnsafeBestMatch => "the best version across them",
            IndexStrategy::FirstIndex => "only the first that has the project",
            IndexStrategy::UnsafeFirstMatch => "the first with a matching version",
        };
        format!("{what} (index-strategy {})", self.name())
    }

    fn parse(value: &OsStr) -> Result<IndexStrategy> {
        Self::ALL
            .iter()
            .find(|(_, n)| OsStr::new(n) == value)
            .map(|(s, _)| *s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                Error::env(
                    UV_INDEX_STRATEGY_VAR,
                    format!(
                        "{:?} is not one of {}",
                        clip(&value.to_string_lossy(), 40),
                        names.join(", ")
                    ),
                )
            })
    }
}

/// What the configure hook writes, derived from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Indexes in priority order; the first is pip's `index-url`. Includes
    /// upstream PyPI last when the build is online.
    pub indexes: Vec<MirrorUrl>,
    /// Whether upstream PyPI was appended (false when offline).
    pub upstream: bool,
    /// pip's `retries`, from `DIB_PIP_RETRIES`.
    pub retries: Option<u32>,
    /// Whether `DIB_PYPI_MIRROR_CA` is set: root.d then put the CA bundle
    /// into the image, and pip is to use it.
    pub mirror_ca: bool,
    /// Whether `DIB_PYPI_MIRROR_CLIENT_CERT` is set (the same for the
    /// client certificate).
    pub client_cert: bool,
    /// uv's `index-strategy`, from `DIB_PYPI_UV_INDEX_STRATEGY`.
    pub uv_index_strategy: IndexStrategy,
    /// Things the user should know, already phrased and free of secrets.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Whether any index carries credentials (the config must then be 0600).
    pub fn has_credentials(&self) -> bool {
        self.indexes.iter().any(MirrorUrl::has_credentials)
    }

    /// Build settings from environment variables. Only the variables this
    /// element owns are read; any error names the variable at fault.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Settings>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut current = Numbered::default();
        let mut legacy = Numbered::default();
        let mut offline = false;
        let mut retries = None;
        let mut mirror_ca = false;
        let mut client_cert = false;
        let mut uv_index_strategy = IndexStrategy::default();
        let mut warnings = Vec::new();

        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref());
            let name_bytes = name.as_bytes();
            if let Some(rest) = name_bytes.strip_prefix(MIRROR_VAR.as_bytes()) {
                current.insert(MIRROR_VAR, rest, name, value)?;
            } else if let Some(rest) = name_bytes.strip_prefix(LEGACY_MIRROR_VAR.as_bytes()) {
                legacy.insert(LEGACY_MIRROR_VAR, rest, name, value)?;
            } else if name == "DIB_OFFLINE" || name == "DIB_NO_PYPI_PIP" {
                offline |= !value.is_empty();
            } else if name == "DIB_PIP_RETRIES" && !value.is_empty() {
                retries = Some(parse_retries(value)?);
            } else if name == CA_VAR {
                mirror_ca = !value.is_empty();
            } else if name == CLIENT_CERT_VAR {
                client_cert = !value.is_empty();
            } else if name == UV_INDEX_STRATEGY_VAR && !value.is_empty() {
                uv_index_strategy = IndexStrategy::parse(value)?;
            }
        }

        let chosen = if !current.is_empty() {
            if !legacy.is_empty() {
                warnings.push(format!(
                    "ignoring deprecated {} because {} is set",
                    legacy.names().join(", "),
                    current.names().join(", ")
                ));
            }
            current
        } else if !legacy.is_empty() {
            warnings.push(format!(
                "{} is deprecated; use {MIRROR_VAR} (and {MIRROR_VAR}_1, _2, ...) instead",
                legacy.names().join(", ")
            ));
            legacy
        } else {
            Numbered::default()
        };

        let mut indexes: Vec<MirrorUrl> = Vec::new();
        for (var, value) in chosen.into_ordered() {
            let mirror = MirrorUrl::parse(&var, &value)?;
            if let Some(first) = indexes.iter().position(|m| m == &mirror) {
                warnings.push(format!(
                    "{var}: same mirror as index {} ({mirror}); listed once",
                    first + 1
                ));
            } else {
                indexes.push(mirror);
            }
        }
        if indexes.is_empty() {
            warnings.push(format!(
                "{MIRROR_VAR} is not set; using the image cache mirror {DEFAULT_MIRROR}"
            ));
            indexes.push(MirrorUrl::parse(MIRROR_VAR, DEFAULT_MIRROR)?);
        }
        let upstream_url = MirrorUrl::parse("upstream index", UPSTREAM_INDEX)?;
        let upstream = !offline && !indexes.contains(&upstream_url);
        if upstream {
            indexes.push(upstream_url);
        }
        Ok(Settings {
            indexes,
            upstream,
            retries,
            mirror_ca,
            client_cert,
            uv_index_strategy,
            warnings,
        })
    }
}

fn parse_retries(value: &OsStr) -> Result<u32> {
    let text = value
        .to_str()
        .filter(|t| t.bytes().all(|b| b.is_ascii_digit()));
    text.and_then(|t| t.parse().ok()).ok_or_else(|| {
        Error::env(
            "DIB_PIP_RETRIES",
            format!(
                "{:?} is not a non-negative integer",
                clip(&value.to_string_lossy(), 40)
            ),
        )
    })
}

/// The set of one family of mirror variables: the bare one and `_N` ones.
#[derive(Default)]
struct Numbered {
    /// Key: `None` for the bare variable (it sorts first), `Some(N)` for `_N`.
    entries: BTreeMap<Option<u64>, (String, String)>,
}

impl Numbered {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn names(&self) -> Vec<String> {
        self.entries.values().map(|(n, _)| n.clone()).collect()
    }

    fn into_ordered(self) -> impl Iterator<Item = (String, String)> {
        self.entries.into_values()
    }

    /// Record variable `name` (= `prefix` + `rest`). Empty values count as
    /// unset, as shell users expect from `export VAR=`.
    fn insert(&mut self, prefix: &str, rest: &[u8], name: &OsStr, value: &OsStr) -> Result<()> {
        let shown = clip(&name.to_string_lossy(), 80);
        let key = match rest {
            [] => None,
            [b'_', digits @ ..] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
                let n = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<u64>().ok())
                    .ok_or_else(|| Error::env(&shown, "mirror number is too large"))?;
                Some(n)
            }
            _ => {
                return Err(Error::env(
                    &shown,
                    format!("not a mirror variable: use {prefix} or {prefix}_<number>"),
                ))
            }
        };
        if value.is_empty() {
            return Ok(());
        }
        let value = value
            .to_str()
            .ok_or_else(|| Error::env(&shown, "value is not valid UTF-8"))?;
        if let Some((other, _)) = self.entries.get(&key) {
            return Err(Error::env(
                &shown,
                format!("same mirror number as {other}; the order would be ambiguous"),
            ));
        }
        self.entries.insert(key, (shown, value.to_string()));
        Ok(())
    }
}

/// `text` cut to at most `max` characters for an error message, saying
/// how long it was: a 1 MiB value must not make a 1 MiB log line.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    format!("{head}... ({} bytes)", text.len())
}

/// Collect the process environment as owned pairs.
pub fn process_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings> {
        Settings::from_vars(vars.iter().copied())
    }

    fn urls(s: &Settings) -> Vec<&str> {
        s.indexes.iter().map(MirrorUrl::as_str).collect()
    }

    #[test]
    fn default_is_the_cache_mirror_then_upstream_with_a_warning() {
        let s = settings(&[("HOME", "/root")]).unwrap();
        assert_eq!(urls(&s), [DEFAULT_MIRROR, UPSTREAM_INDEX]);
        assert!(s.upstream);
        assert_eq!(s.retries, None);
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("DIB_PYPI_MIRROR_URL is not set"));
    }

    #[test]
    fn numbered_mirrors_sort_numerically_after_the_bare_one() {
        let s = settings(&[
            ("DIB_PYPI_MIRROR_URL_10", "http://ten/"),
            ("DIB_PYPI_MIRROR_URL_2", "http://two/"),
            ("DIB_PYPI_MIRROR_URL", "http://bare/"),
            ("DIB_PYPI_MIRROR_URL_1", "http://one/"),
            ("DIB_OFFLINE", "1"),
        ])
        .unwrap();
        assert_eq!(
            urls(&s),
            ["http://bare/", "http://one/", "http://two/", "http://ten/"]
        );
        assert!(!s.upstream);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn no_pypi_pip_also_disables_upstream_but_empty_does_not() {
        let s = settings(&[("DIB_NO_PYPI_PIP", "yes")]).unwrap();
        assert!(!s.upstream);
        let s = settings(&[("DIB_NO_PYPI_PIP", ""), ("DIB_OFFLINE", "")]).unwrap();
        assert!(s.upstream);
    }

    #[test]
    fn legacy_variables_work_with_a_deprecation_warning() {
        let s = settings(&[
            ("PYPI_MIRROR_URL_1", "https://b/"),
            ("PYPI_MIRROR_URL", "https://a/"),
        ])
        .unwrap();
        assert_eq!(urls(&s), ["https://a/", "https://b/", UPSTREAM_INDEX]);
        assert!(s.warnings[0].contains("deprecated"), "{:?}", s.warnings);
    }

    #[test]
    fn current_variables_win_over_legacy_ones() {
        let s = settings(&[
            ("PYPI_MIRROR_URL", "https://old/"),
            ("DIB_PYPI_MIRROR_URL", "https://new/"),
        ])
        .unwrap();
        assert_eq!(urls(&s)[0], "https://new/");
        assert!(s.warnings[0].starts_with("ignoring deprecated PYPI_MIRROR_URL"));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = settings(&[("DIB_PYPI_MIRROR_URL", ""), ("DIB_PIP_RETRIES", "")]).unwrap();
        assert_eq!(urls(&s), [DEFAULT_MIRROR, UPSTREAM_INDEX]);
        assert_eq!(s.retries, None);
    }

    #[test]
    fn retries_must_be_a_non_negative_integer() {
        assert_eq!(
            settings(&[("DIB_PIP_RETRIES", "0")]).unwrap().retries,
            Some(0)
        );
        assert_eq!(
            settings(&[("DIB_PIP_RETRIES", "12")]).unwrap().retries,
            Some(12)
        );
        for bad in ["-1", "1.5", "three", " 3", "+3", "99999999999"] {
            let e = settings(&[("DIB_PIP_RETRIES", bad)])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("DIB_PIP_RETRIES: "), "{e}");
        }
    }

    #[test]
    fn bad_suffix_and_ambiguous_numbers_are_errors() {
        let e = settings(&[("DIB_PYPI_MIRROR_URL_BACKUP", "http://x/")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("DIB_PYPI_MIRROR_URL_BACKUP: not a mirror variable"),
            "{e}"
        );
        let e = settings(&[
            ("DIB_PYPI_MIRROR_URL_1", "http://x/"),
            ("DIB_PYPI_MIRROR_URL_01", "http://y/"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("same mirror number"), "{e}");
    }

    #[test]
    fn bad_url_names_its_variable() {
        let e = settings(&[("DIB_PYPI_MIRROR_URL_3", "gopher://x/")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("DIB_PYPI_MIRROR_URL_3: scheme"), "{e}");
    }

    #[test]
    fn non_utf8_value_is_an_error() {
        let value = OsString::from_vec(vec![b'h', 0xff, b'p']);
        let e = Settings::from_vars([(OsString::from("DIB_PYPI_MIRROR_URL"), value)])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "DIB_PYPI_MIRROR_URL: value is not valid UTF-8");
    }

    #[test]
    fn duplicates_are_listed_once_with_a_warning() {
        let s = settings(&[
            ("DIB_PYPI_MIRROR_URL", "http://a/"),
            ("DIB_PYPI_MIRROR_URL_1", "http://a/"),
            ("DIB_PYPI_MIRROR_URL_2", "http://b/"),
        ])
        .unwrap();
        assert_eq!(urls(&s), ["http://a/", "http://b/", UPSTREAM_INDEX]);
        assert!(s.warnings[0].starts_with("DIB_PYPI_MIRROR_URL_1: same mirror"));
    }

    #[test]
    fn upstream_given_as_a_mirror_is_not_added_twice() {
        let s = settings(&[("DIB_PYPI_MIRROR_URL", UPSTREAM_INDEX)]).unwrap();
        assert_eq!(urls(&s), [UPSTREAM_INDEX]);
    }

    #[test]
    fn a_thousand_mirrors_keep_their_order() {
        let vars: Vec<(String, String)> = (1..=1000)
            .rev()
            .map(|n| (format!("DIB_PYPI_MIRROR_URL_{n}"), format!("http://m{n}/")))
            .collect();
        let s = Settings::from_vars(vars).unwrap();
        assert_eq!(s.indexes.len(), 1001);
        assert_eq!(s.indexes[0].as_str(), "http://m1/");
        assert_eq!(s.indexes[999].as_str(), "http://m1000/");
    }

    #[test]
    fn huge_values_and_names_are_clipped_in_messages() {
        let big = "9".repeat(1 << 20);
        let e = settings(&[("DIB_PIP_RETRIES", &format!("x{big}"))])
            .unwrap_err()
            .to_string();
        assert!(e.len() < 200, "{} bytes", e.len());
        assert!(e.contains("(1048577 bytes)"), "{e}");
        let name = format!("DIB_PYPI_MIRROR_URL_{big}");
        let e = settings(&[(name.as_str(), "http://m/")])
            .unwrap_err()
            .to_string();
        assert!(
            e.len() < 200 && e.ends_with("mirror number is too large"),
            "{e}"
        );
    }

    #[test]
    fn uv_resolves_as_pip_unless_told_otherwise() {
        assert_eq!(
            settings(&[]).unwrap().uv_index_strategy,
            IndexStrategy::UnsafeBestMatch
        );
        assert_eq!(
            settings(&[(UV_INDEX_STRATEGY_VAR, "")])
                .unwrap()
                .uv_index_strategy,
            IndexStrategy::UnsafeBestMatch
        );
        for (strategy, name) in IndexStrategy::ALL {
            let s = settings(&[(UV_INDEX_STRATEGY_VAR, name)]).unwrap();
            assert_eq!(s.uv_index_strategy, strategy);
            assert_eq!(strategy.name(), name);
        }
        for bad in ["First-Index", "best", "first-index ", "unsafe_best_match"] {
            let e = settings(&[(UV_INDEX_STRATEGY_VAR, bad)])
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("DIB_PYPI_UV_INDEX_STRATEGY: ")
                    && e.ends_with(
                        "is not one of unsafe-best-match, first-index, unsafe-first-match"
                    )
                    && !e.contains('\n'),
                "{e}"
            );
        }
    }

    #[test]
    fn credentials_are_detected() {
        let s = settings(&[("DIB_PYPI_MIRROR_URL", "https://u:p@m/")]).unwrap();
        assert!(s.has_credentials());
        assert!(!settings(&[]).unwrap().has_credentials());
    }
}
