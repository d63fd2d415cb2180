//! Request paths and `Accept` headers, validated before anything touches
//! the tree: a path maps to a normalized project and a checked file name,
//! or to nothing. Pure functions, so the hostile cases are unit-tested.

use percent_encoding::percent_decode_str;

use super::index::{acceptable_filename, MAX_FILENAME};
use crate::name;

/// Longest request path considered at all.
const MAX_PATH: usize = 2048;

/// What a request path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/simple/`
    Root,
    /// `/simple/<project>/`, project normalized.
    Project(String),
    /// `/simple/<project>/<file>`
    File {
        /// Normalized project.
        project: String,
        /// Checked distribution file name.
        filename: String,
    },
    /// `/simple/<project>/<file>.metadata`
    Metadata {
        /// Normalized project.
        project: String,
        /// The distribution file name (without `.metadata`).
        filename: String,
    },
    /// Same resource under its canonical path (PEP 503 allows redirecting
    /// to the normalized name).
    Redirect(String),
    /// Anything else: nothing is read for it.
    NotFound,
}

/// Decode one path segment; `None` if it is empty, `.`/`..`, not UTF-8, or
/// would smuggle a separator, NUL or control character through escapes.
fn segment(raw: &str) -> Option<String> {
    let s = percent_decode_str(raw).decode_utf8().ok()?;
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= MAX_FILENAME + ".metadata".len()
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b'\\' || b.is_ascii_control());
    ok.then(|| s.into_owned())
}

/// Map a raw (still percent-encoded) request path to a [`Route`].
pub fn route(path: &str) -> Route {
    if path.len() > MAX_PATH {
        return Route::NotFound;
    }
    if path == "/" || path == "/simple" {
        return Route::Redirect("/simple/".to_owned());
    }
    let Some(rest) = path.strip_prefix("/simple/") else {
        return Route::NotFound;
    };
    if rest.is_empty() {
        return Route::Root;
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let (raw_project, file) = match parts.as_slice() {
        [p] => (*p, None),
        [p, ""] => (*p, None),
        [p, f] => (*p, Some(*f)),
        _ => return Route::NotFound,
    };
    let Some(project) = segment(raw_project) else {
        return Route::NotFound;
    };
    if !name::is_valid(&project) {
        return Route::NotFound;
    }
    let normalized = name::normalize(&project);
    let Some(raw_file) = file else {
        if parts.len() == 1 || raw_project != normalized {
            return Route::Redirect(format!("/simple/{normalized}/"));
        }
        return Route::Project(normalized);
    };
    let Some(file) = segment(raw_file) else {
        return Route::NotFound;
    };
    if raw_project != normalized {
        return Route::Redirect(format!(
            "/simple/{normalized}/{}",
            crate::html::percent_encode(&file)
        ));
    }
    if let Some(base) = file.strip_suffix(".metadata") {
        if acceptable_filename(base) {
            return Route::Metadata {
                project: normalized,
                filename: base.to_owned(),
            };
        }
        return Route::NotFound;
    }
    if acceptable_filename(&file) {
        Route::File {
            project: normalized,
            filename: file,
        }
    } else {
        Route::NotFound
    }
}

/// The two page formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PEP 503 HTML; `vnd` says whether to answer with PEP 691's HTML type.
    Html {
        /// Answer `application/vnd.pypi.simple.v1+html` rather than `text/html`.
        vnd: bool,
    },
    /// PEP 691 JSON.
    Json,
}

impl Format {
    /// The `Content-Type` to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Html { vnd: false } => "text/html; charset=utf-8",
            Self::Html { vnd: true } => "application/vnd.pypi.simple.v1+html",
            Self::Json => "application/vnd.pypi.simple.v1+json",
        }
    }
}

/// PEP 691 content negotiation: the acceptable format with the highest
/// quality, the first listed on a tie; HTML without an `Accept` header;
/// `None` when nothing offered is acceptable (406).
pub fn negotiate(accept: Option<&str>) -> Option<Format> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Format::Html { vnd: false });
    };
    let mut best: Option<(f32, Format)> = None;
    for item in accept.split(',') {
        let mut params = item.split(';');
        let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in params {
            if let Some(v) = p.trim().strip_prefix("q=") {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        let format =
            match media.as_str() {
                "application/vnd.pypi.simple.v1+json"
                | "application/vnd.pypi.simple.latest+json" => Format::Json,
                "application/vnd.pypi.simple.v1+html"
                | "application/vnd.pypi.simple.latest+html" => Format::Html { vnd: true },
                "text/html" | "text/*" | "*/*" => Format::Html { vnd: false },
                _ => continue,
            };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, format));
        }
    }
    best.map(|(_, f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str, f: &str) -> Route {
        Route::File {
            project: p.to_owned(),
            filename: f.to_owned(),
        }
    }

    #[test]
    fn maps_the_simple_api() {
        assert_eq!(route("/simple/"), Route::Root);
        assert_eq!(route("/simple/foo-bar/"), Route::Project("foo-bar".into()));
        assert_eq!(
            route("/simple/Foo_Bar/"),
            Route::Redirect("/simple/foo-bar/".into())
        );
        assert_eq!(route("/simple/foo"), Route::Redirect("/simple/foo/".into()));
        assert_eq!(
            route("/simple/foo/foo-1.0%2Blocal-py3-none-any.whl"),
            file("foo", "foo-1.0+local-py3-none-any.whl")
        );
        assert_eq!(
            route("/simple/foo/foo-1.0-py3-none-any.whl.metadata"),
            Route::Metadata {
                project: "foo".into(),
                filename: "foo-1.0-py3-none-any.whl".into()
            }
        );
        assert_eq!(route("/"), Route::Redirect("/simple/".into()));
    }

    #[test]
    fn refuses_hostile_paths() {
        let long = format!("/simple/foo/{}-1.0.tar.gz", "a".repeat(300));
        for bad in [
            "/simple/../etc/passwd",
            "/simple/%2e%2e/passwd",
            "/simple/foo/..",
            "/simple/foo/%2e%2e",
            "/simple/foo/%2E%2E%2Fx-1.0.tar.gz",
            "/simple/foo/..%2f..%2fx-1.0.tar.gz",
            "/simple/foo%2f..%2f..%2fetc/passwd",
            "/simple/foo/%2fetc%2fpasswd",
            "/simple/foo/x-1.0.tar.gz%00",
            "/simple/foo/x%00-1.0.tar.gz",
            "/simple/foo/.x-1.0.tar.gz",
            "/simple/foo/x-1.0.tar.gz/",
            "/simple/foo/bar/x-1.0.tar.gz",
            "/simple/foo/index.html",
            "/simple/foo/..%5cx-1.0.tar.gz",
            "/simple/.pypi-mirror/state",
            "/simple/%2epypi-mirror/lock",
            "/etc/passwd",
            "//etc/passwd",
            "/simple//etc/passwd",
            "/simple/foo/%ff-1.0.tar.gz",
            "/simple/-foo/",
            long.as_str(),
        ] {
            let r = route(bad);
            assert!(r == Route::NotFound, "{bad:?} routed to {r:?}");
        }
        // Non-normalized names are only ever redirected to valid ones.
        assert_eq!(
            route("/simple/Foo/x-1.0.tar.gz"),
            Route::Redirect("/simple/foo/x-1.0.tar.gz".into())
        );
    }

    #[test]
    fn negotiates_like_pep_691() {
        let pip = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
        assert_eq!(negotiate(Some(pip)), Some(Format::Json));
        assert_eq!(negotiate(None), Some(Format::Html { vnd: false }));
        assert_eq!(
            negotiate(Some("text/html")),
            Some(Format::Html { vnd: false })
        );
        assert_eq!(
            negotiate(Some(
                "application/vnd.pypi.simple.v1+json;q=0.2, application/vnd.pypi.simple.v1+html"
            )),
            Some(Format::Html { vnd: true })
        );
        assert_eq!(negotiate(Some("image/png")), None);
        assert_eq!(
            negotiate(Some("application/vnd.pypi.simple.v1+json;q=0")),
            None
        );
    }
}
