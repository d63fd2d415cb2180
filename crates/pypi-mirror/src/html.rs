//! Rendering of the PEP 503 simple-repository pages (root and per project).

use std::fmt::Write as _;

/// One distribution file as listed on a project page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link<'a> {
    /// File name, relative to the project page.
    pub filename: &'a str,
    /// Lower-case hex sha256 of the file.
    pub sha256: &'a str,
    /// `Requires-Python` from the file's metadata, unescaped.
    pub requires_python: Option<&'a str>,
    /// Lower-case hex sha256 of the `<file>.metadata` file (wheels only).
    pub metadata_sha256: Option<&'a str>,
}

/// PEP 629 repository version. 1.0 is what pip expects from HTML pages; the
/// PEP 658/714 attributes are optional extras that old clients ignore.
const REPOSITORY_VERSION: &str = "1.0";

/// Render `<project>/index.html`. `links` must already be in the desired
/// order (the builder sorts by file name so output is reproducible).
pub fn project_page(project: &str, links: &[Link<'_>]) -> String {
    let title = escape(project);
    let mut out = String::with_capacity(256 + links.len() * 300);
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"{REPOSITORY_VERSION}\">\n    <title>Links for {title}</title>\n  </head>\n  <body>\n    <h1>Links for {title}</h1>\n"
    );
    for link in links {
        let _ = write!(
            out,
            "    <a href=\"{}#sha256={}\"",
            escape(&percent_encode(link.filename)),
            link.sha256
        );
        if let Some(rp) = link.requires_python {
            let _ = write!(out, " data-requires-python=\"{}\"", escape(rp));
        }
        if let Some(md) = link.metadata_sha256 {
            // PEP 714 renamed the attribute; pip < 23.3 and older uv only know
            // the PEP 658 spelling, so both are emitted.
            let _ = write!(
                out,
                " data-core-metadata=\"sha256={md}\" data-dist-info-metadata=\"sha256={md}\""
            );
        }
        let _ = writeln!(out, ">{}</a><br>", escape(link.filename));
    }
    out.push_str("  </body>\n</html>\n");
    out
}

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

/// [`percent_encode`] for a whole path: `/` separators are kept.
pub fn percent_encode_path(path: &str) -> String {
    path.split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_requires_python_and_names() {
        let page = project_page(
            "foo",
            &[Link {
                filename: "foo-1.0+local-py3-none-any.whl",
                sha256: "ab",
                requires_python: Some(">=3.8,<4"),
                metadata_sha256: Some("cd"),
            }],
        );
        assert!(page.contains(
            "<a href=\"foo-1.0+local-py3-none-any.whl#sha256=ab\" data-requires-python=\"&gt;=3.8,&lt;4\" data-core-metadata=\"sha256=cd\" data-dist-info-metadata=\"sha256=cd\">foo-1.0+local-py3-none-any.whl</a><br>"
        ), "{page}");
    }

    #[test]
    fn sdists_have_no_metadata_attributes() {
        let page = project_page(
            "foo",
            &[Link {
                filename: "foo-1.0.tar.gz",
                sha256: "ab",
                requires_python: None,
                metadata_sha256: None,
            }],
        );
        assert!(page.contains("<a href=\"foo-1.0.tar.gz#sha256=ab\">foo-1.0.tar.gz</a>"));
        assert!(!page.contains("data-"));
    }

    #[test]
    fn encodes_url_specials() {
        assert_eq!(percent_encode("a b#c%d?e/f"), "a%20b%23c%25d%3Fe%2Ff");
        assert_eq!(escape("<'&\">"), "&lt;&#x27;&amp;&quot;&gt;");
        let root = root_page(["a", "b-c"]);
        assert!(root.contains("<a href=\"b-c/\">b-c</a>"));
    }
}
