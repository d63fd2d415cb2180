//! HTTP caching as clients expect it (RFC 9110 §8.8, §13, §14): the
//! validators (`ETag`, `Last-Modified`) of pages and tree files, the
//! conditional requests they answer with 304, and single byte ranges.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_range_header::RangeUnsatisfiableError;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::Method;

/// Pages whose validators are remembered; beyond it they are forgotten
/// (and computed again on the next request for each).
const MAX_KNOWN_PAGES: usize = 50_000;

/// What identifies one version of a representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong entity tag, quotes included.
    pub etag: String,
    /// Whole seconds, as `Last-Modified` carries it.
    pub last_modified: SystemTime,
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

impl Validators {
    /// A file of the tree: a file is published by renaming a new one into
    /// place and never rewritten, so inode, size and modification time
    /// name its content.
    pub fn of_file(md: &std::fs::Metadata) -> Self {
        Self {
            etag: format!(
                "\"{:x}-{:x}-{:x}.{:x}\"",
                md.ino(),
                md.size(),
                md.mtime(),
                md.mtime_nsec()
            ),
            last_modified: whole_seconds(md.modified().unwrap_or(UNIX_EPOCH)),
        }
    }

    /// Add `ETag` and `Last-Modified` to `headers`.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.etag) {
            headers.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(self.last_modified)) {
            headers.insert(header::LAST_MODIFIED, v);
        }
    }
}

/// Whether `etag` (ours, strong) is in the `If-None-Match` list `list`
/// by weak comparison: `*`, or one of the entity-tags, `W/` or not.
/// A malformed list matches nothing (the full answer is never wrong).
fn none_match_hits(list: &str, etag: &str) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return false;
        }
        let tag = rest.strip_prefix("W/").unwrap_or(rest);
        let Some(end) = tag.get(1..).and_then(|t| t.find('"')) else {
            return false;
        };
        if !tag.starts_with('"') {
            return false;
        }
        let (quoted, after) = tag.split_at(end + 2);
        if quoted == etag {
            return true;
        }
        rest = after;
    }
}

/// The preconditions and range of a request, read once.
#[derive(Debug, Default, Clone)]
pub struct Conditions {
    if_none_match: Option<String>,
    if_modified_since: Option<SystemTime>,
    range: Option<String>,
    if_range: Option<String>,
}

/// What part of a representation to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// All of it (no range, an ignored one, or several).
    Whole,
    /// One range, inclusive: 206.
    Part(RangeInclusive<u64>),
    /// No byte of the range exists: 416.
    Unsatisfiable,
}

impl Conditions {
    /// Read from a request. Only GET and HEAD reach here; a range is only
    /// defined for GET.
    pub fn of(method: &Method, headers: &HeaderMap) -> Self {
        let all = |name: header::HeaderName| -> Option<String> {
            let values: Vec<&str> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        };
        let one = |name: header::HeaderName| -> Option<String> {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_owned())
        };
        Self {
            if_none_match: all(header::IF_NONE_MATCH),
            if_modified_since: one(header::IF_MODIFIED_SINCE)
                .and_then(|d| httpdate::parse_http_date(&d).ok()),
            range: (method == Method::GET)
                .then(|| one(header::RANGE))
                .flatten(),
            if_range: one(header::IF_RANGE),
        }
    }

    /// Whether the client's copy is current (304). `If-None-Match`, when
    /// present, decides alone; `If-Modified-Since` only without it.
    pub fn not_modified(&self, v: &Validators) -> bool {
        match (&self.if_none_match, self.if_modified_since) {
            (Some(list), _) => none_match_hits(list, &v.etag),
            (None, Some(since)) => v.last_modified <= since,
            (None, None) => false,
        }
    }

    /// `If-Range`: the range applies only to the version the client has,
    /// named by a strong entity tag or exactly its `Last-Modified`.
    fn range_applies(&self, v: &Validators) -> bool {
        match &self.if_range {
            None => true,
            Some(tag) if tag.starts_with('"') => *tag == v.etag,
            Some(weak) if weak.starts_with("W/") => false,
            Some(date) => httpdate::parse_http_date(date).is_ok_and(|d| d == v.last_modified),
        }
    }

    /// The part of a representation of `len` bytes to send. A malformed
    /// range is ignored, as RFC 9110 allows; so are several ranges.
    pub fn range(&self, v: &Validators, len: u64) -> Ranged {
        let Some(range) = &self.range else {
            return Ranged::Whole;
        };
        if !self.range_applies(v) {
            return Ranged::Whole;
        }
        let Ok(parsed) = http_range_header::parse_range_header(range) else {
            return Ranged::Whole;
        };
        match parsed.validate(len) {
            Ok(ranges) => match <[_; 1]>::try_from(ranges) {
                Ok([one]) => Ranged::Part(one),
                Err(_) => Ranged::Whole,
            },
            Err(RangeUnsatisfiableError::Unsatisfiable) => Ranged::Unsatisfiable,
            Err(_) => Ranged::Whole,
        }
    }
}

/// The entity tag of a rendered page: a hash of its bytes.
pub fn etag_of(body: &[u8]) -> String {
    let hash = crate::indexer::sha256_hex(body);
    format!("\"{}\"", hash.get(..32).unwrap_or(&hash))
}

/// The `Last-Modified` of rendered pages: when a page with a different
/// entity tag was first served. Only tags and times are kept, never a
/// page's bytes, so the page cache's bound holds.
#[derive(Debug, Default)]
pub struct PageValidators {
    known: Mutex<HashMap<(String, bool), Validators>>,
}

impl PageValidators {
    /// The validators of the page of `project` (`""`: the root) in JSON or
    /// HTML whose entity tag is `etag` (see [`etag_of`]). `Last-Modified`
    /// moves only when the page changes, and always forward.
    pub fn get(&self, project: &str, json: bool, etag: &str) -> Validators {
        let now = whole_seconds(SystemTime::now());
        let Ok(mut known) = self.known.lock() else {
            return Validators {
                etag: etag.to_owned(),
                last_modified: now,
            };
        };
        let key = (project.to_owned(), json);
        let last_modified = match known.get(&key) {
            Some(k) if k.etag == etag => return k.clone(),
            // Changed within the second it was last stamped: a later
            // stamp, or If-Modified-Since would call the new one unchanged.
            Some(k) => now.max(k.last_modified + Duration::from_secs(1)),
            None => now,
        };
        let validators = Validators {
            etag: etag.to_owned(),
            last_modified,
        };
        if known.len() >= MAX_KNOWN_PAGES && !known.contains_key(&key) {
            known.clear();
        }
        known.insert(key, validators.clone());
        validators
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const TAG: &str = "\"abc\"";

    fn validators() -> Validators {
        Validators {
            etag: TAG.to_owned(),
            last_modified: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }

    fn conditions(method: Method, pairs: &[(&'static str, &str)]) -> Conditions {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        Conditions::of(&method, &h)
    }

    #[test]
    fn if_none_match_compares_weakly_over_a_list() {
        for hit in [
            "\"abc\"",
            "W/\"abc\"",
            "*",
            " \"x\", W/\"abc\" ",
            "\"x\",\"abc\"",
        ] {
            assert!(none_match_hits(hit, TAG), "{hit}");
        }
        for miss in [
            "\"abcd\"",
            "\"ab\"",
            "abc",
            "\"x\", \"y\"",
            "",
            "W/",
            "\"abc",
        ] {
            assert!(!none_match_hits(miss, TAG), "{miss}");
        }
        // Several header lines are one list.
        let c = conditions(
            Method::GET,
            &[("if-none-match", "\"x\""), ("if-none-match", "\"abc\"")],
        );
        assert!(c.not_modified(&validators()));
    }

    #[test]
    fn if_modified_since_counts_only_without_if_none_match() {
        let v = validators();
        let at = httpdate::fmt_http_date(v.last_modified);
        let before = httpdate::fmt_http_date(v.last_modified - Duration::from_secs(1));
        assert!(conditions(Method::GET, &[("if-modified-since", &at)]).not_modified(&v));
        assert!(!conditions(Method::GET, &[("if-modified-since", &before)]).not_modified(&v));
        assert!(!conditions(Method::GET, &[("if-modified-since", "yesterday")]).not_modified(&v));
        let both = conditions(
            Method::HEAD,
            &[("if-modified-since", &at), ("if-none-match", "\"other\"")],
        );
        assert!(!both.not_modified(&v));
    }

    #[test]
    fn single_ranges_suffixes_and_unsatisfiable_ones() {
        let v = validators();
        let range = |r: &str| conditions(Method::GET, &[("range", r)]).range(&v, 100);
        assert_eq!(range("bytes=10-19"), Ranged::Part(10..=19));
        assert_eq!(range("bytes=90-"), Ranged::Part(90..=99));
        assert_eq!(range("bytes=-5"), Ranged::Part(95..=99));
        assert_eq!(range("bytes=-500"), Ranged::Part(0..=99));
        assert_eq!(range("bytes=95-1000"), Ranged::Part(95..=99));
        assert_eq!(range("bytes=100-"), Ranged::Unsatisfiable);
        assert_eq!(range("bytes=0-1,5-6"), Ranged::Whole);
        assert_eq!(range("lines=1-2"), Ranged::Whole);
        assert_eq!(range("bytes=5-1"), Ranged::Whole);
        // Range is for GET only.
        let head = conditions(Method::HEAD, &[("range", "bytes=0-1")]);
        assert_eq!(head.range(&v, 100), Ranged::Whole);
    }

    #[test]
    fn if_range_needs_the_same_version() {
        let v = validators();
        let with = |ir: &str| {
            conditions(Method::GET, &[("range", "bytes=0-0"), ("if-range", ir)]).range(&v, 10)
        };
        let date = httpdate::fmt_http_date(v.last_modified);
        let later = httpdate::fmt_http_date(v.last_modified + Duration::from_secs(5));
        assert_eq!(with(TAG), Ranged::Part(0..=0));
        assert_eq!(with(&date), Ranged::Part(0..=0));
        assert_eq!(with("\"old\""), Ranged::Whole);
        assert_eq!(with("W/\"abc\""), Ranged::Whole);
        assert_eq!(with(&later), Ranged::Whole);
    }

    #[test]
    fn a_page_keeps_its_validators_until_it_changes() {
        let pages = PageValidators::default();
        let one = etag_of(b"<html>one</html>");
        let a = pages.get("p", false, &one);
        assert_eq!(pages.get("p", false, &one), a);
        // The same content rendered again: same tag, same date.
        assert_eq!(pages.get("p", false, &etag_of(b"<html>one</html>")), a);
        let b = pages.get("p", false, &etag_of(b"<html>two</html>"));
        assert_ne!(b.etag, a.etag);
        assert!(b.last_modified > a.last_modified);
        assert_eq!(b.etag.len(), 34);
        // JSON and HTML are separate representations.
        let json = pages.get("p", true, &one);
        assert_eq!(json.etag, a.etag);
    }
}
