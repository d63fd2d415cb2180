//! HTML helpers of the PEP 503 pages: the root page, escaping, and
//! percent-encoding (project pages: `index`).

use std::fmt::Write as _;

/// PEP 629 repository version of the root page (project pages: see
/// `index::render_html`).
const REPOSITORY_VERSION: &str = "1.0";

/// Render the root `index.html` listing every project (normalized names).
pub fn root_page<'a>(projects: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"{REPOSITORY_VERSION}\">\n    <title>Simple index</title>\n  </head>\n  <body>\n"
    );
    for p in projects {
        let _ = writeln!(
            out,
            "    <a href=\"{}/\">{}</a><br>",
            escape(&percent_encode(p)),
            escape(p)
        );
    }
    out.push_str("  </body>\n</html>\n");
    out
}

/// HTML-escape text or an attribute value (`&`, `<`, `>`, `"`, `'`).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a file name for use as a relative URL path segment.
///
/// Everything outside RFC 3986 unreserved characters is encoded except `+`
/// and `!`, which are common in wheel names (local versions) and legal in a
/// path; `#`, `?`, `%` and `/` must be encoded or the URL would mean
/// something else.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'!') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_url_specials() {
        assert_eq!(percent_encode("a b#c%d?e/f"), "a%20b%23c%25d%3Fe%2Ff");
        assert_eq!(escape("<'&\">"), "&lt;&#x27;&amp;&quot;&gt;");
        let root = root_page(["a", "b-c"]);
        assert!(root.contains("<a href=\"b-c/\">b-c</a>"));
    }
}
