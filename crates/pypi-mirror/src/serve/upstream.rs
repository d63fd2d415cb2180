//! The upstream indexes: parsing `--upstream` URLs (credentials kept apart
//! and never displayed), the HTTP clients (rustls with the platform's CA
//! roots, the environment's proxies, one per upstream with its own
//! [`Policy`] of what it may make us fetch), and fetching project pages.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use url::Url;

use super::index::{self, FileEntry};
use super::policy::{Policy, PolicyResolver, TEST_PUBLIC_UPSTREAMS_ENV};

/// The upstream used when none is given.
pub const DEFAULT_UPSTREAM: &str = "https://pypi.org/simple/";

/// Largest project page accepted from upstream. PyPI's biggest pages are a
/// few MiB; this bounds what one answer can make us hold in memory.
const MAX_PAGE: usize = 64 << 20;

/// What we ask upstream for: JSON when it speaks PEP 691, HTML otherwise.
const PAGE_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

/// One `--upstream`: its URL without credentials, and the credentials.
#[derive(Clone)]
pub struct Upstream {
    /// Base URL of the simple index, ending in `/`, without user info.
    pub url: Url,
    user: Option<(String, Option<String>)>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

/// Redacted: `https://user:***@host/simple/`.
impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            None => write!(f, "{}", self.url),
            Some((user, _)) => {
                let mut u = self.url.clone();
                let _ = u.set_username(user);
                let _ = u.set_password(Some("***"));
                write!(f, "{u}")
            }
        }
    }
}

/// `s` with any password of a URL in it replaced, for error messages about
/// a value that did not even parse.
pub fn redact(s: &str) -> String {
    if let Ok(mut u) = Url::parse(s) {
        if u.has_host() {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            return u.to_string();
        }
    }
    // Not a URL with a host: hide everything before an '@', whatever it is.
    let start = s.find("://").map_or(0, |i| i + 3);
    match s.rfind('@') {
        Some(at) if at >= start => format!("{}***{}", &s[..start], &s[at..]),
        _ => s.to_owned(),
    }
}

impl Upstream {
    /// Parse an upstream URL given by `origin` (`--upstream`, or the
    /// environment variable), which error messages name.
    pub fn parse(origin: &str, s: &str) -> Result<Self, String> {
        let shown = redact(s);
        let mut url = Url::parse(s).map_err(|e| format!("{origin} {shown:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!("{origin} {shown:?}: not an http or https URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{origin} {shown:?}: a simple index URL has no query or fragment"
            ));
        }
        let user = (!url.username().is_empty()).then(|| {
            let dec = |v: &str| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(url.username()), url.password().map(dec))
        });
        let _ = url.set_username("");
        let _ = url.set_password(None);
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(Self { url, user })
    }

    /// Whether the URL carried a password.
    pub fn has_password(&self) -> bool {
        matches!(self.user, Some((_, Some(_))))
    }

    /// The credentials to send to `target`: this upstream's, if `target` is
    /// on the same origin (as pip does; never to another host).
    fn auth_for(&self, target: &Url) -> Option<&(String, Option<String>)> {
        (target.origin() == self.url.origin())
            .then_some(self.user.as_ref())
            .flatten()
    }
}

/// An upstream's answer for a project page.
#[derive(Debug)]
pub enum PageAnswer {
    /// The files it lists.
    Found(Vec<FileEntry>),
    /// 404 or 410: it does not have the project.
    Missing,
    /// It could not be asked (connection, timeout, 5xx, bad page).
    Failed(String),
}

/// The HTTP clients and the list of upstreams, in priority order.
#[derive(Debug, Clone)]
pub struct Client {
    /// One client per upstream: each resolves names and follows redirects
    /// under its upstream's policy.
    http: Vec<(reqwest::Client, Arc<Policy>)>,
    /// The upstreams, first wins.
    pub upstreams: Vec<Upstream>,
}

/// A one-line description of a client error, without its URL (which the
/// caller prints redacted).
pub fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else if e.is_redirect() {
        "redirect not followed".to_owned()
    } else if e.is_body() || e.is_decode() {
        "broken transfer".to_owned()
    } else {
        "request failed".to_owned()
    };
    // The innermost cause says what really happened (refused, reset, TLS).
    let mut src = e.source();
    let mut last = None;
    while let Some(s) = src {
        last = Some(s.to_string());
        src = s.source();
    }
    if let Some(l) = last {
        msg.push_str(": ");
        msg.push_str(&l);
    }
    msg
}

impl Client {
    /// Build the client: rustls with ring and the platform's roots
    /// (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured), proxies from
    /// `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` as pip reads them,
    /// bounded connect and read times.
    pub fn new(upstreams: Vec<Upstream>, connect_timeout: Duration) -> Result<Self, String> {
        // Another part of the process may have installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let forced_public =
            std::env::var_os(TEST_PUBLIC_UPSTREAMS_ENV).is_some_and(|v| !v.is_empty());
        let http = upstreams
            .iter()
            .map(|up| {
                let policy = Arc::new(Policy::new(up, forced_public));
                reqwest::Client::builder()
                    .user_agent(concat!("pypi-mirror-serve/", env!("CARGO_PKG_VERSION")))
                    .connect_timeout(connect_timeout)
                    .read_timeout(Duration::from_secs(60))
                    .pool_idle_timeout(Duration::from_secs(30))
                    .redirect(policy.redirects())
                    .dns_resolver(PolicyResolver(policy.clone()))
                    .build()
                    .map(|c| (c, policy))
                    .map_err(|e| format!("cannot set up the HTTP client: {}", describe(&e)))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { http, upstreams })
    }

    /// A GET of `url`, a URL upstream `i` gave (its page, a file or a
    /// `.metadata` it lists), with that upstream's credentials if `url` is
    /// on its origin; refused (one line, URL redacted) if upstream `i` may
    /// not send us there.
    pub fn get(&self, i: usize, url: &Url) -> Result<reqwest::RequestBuilder, String> {
        let (Some((http, policy)), Some(up)) = (self.http.get(i), self.upstreams.get(i)) else {
            return Err(format!("no upstream number {i}"));
        };
        policy.check_url(url)?;
        let mut req = http.get(url.clone());
        if let Some((user, pass)) = up.auth_for(url) {
            req = req.basic_auth(user, pass.as_ref());
        }
        Ok(req)
    }

    /// Ask upstream `i` for the page of `project`.
    pub async fn page(&self, i: usize, project: &str) -> PageAnswer {
        let Some(up) = self.upstreams.get(i) else {
            return PageAnswer::Missing;
        };
        let Ok(url) = up.url.join(&format!("{project}/")) else {
            return PageAnswer::Missing;
        };
        let req = match self.get(i, &url) {
            Ok(r) => r,
            Err(e) => return PageAnswer::Failed(e),
        };
        let resp = match req
            .header(ACCEPT, HeaderValue::from_static(PAGE_ACCEPT))
            .timeout(Duration::from_secs(120))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return PageAnswer::Failed(describe(&e)),
        };
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return PageAnswer::Missing;
        }
        if !status.is_success() {
            return PageAnswer::Failed(format!("HTTP {status}"));
        }
        // Links are relative to where the page really is (after redirects).
        let base = resp.url().clone();
        let json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = match read_capped(resp, MAX_PAGE).await {
            Ok(b) => b,
            Err(e) => return PageAnswer::Failed(e),
        };
        if json {
            match index::parse_json(&body, &base) {
                Ok(files) => PageAnswer::Found(files),
                Err(e) => PageAnswer::Failed(e),
            }
        } else {
            PageAnswer::Found(index::parse_html(&body, &base))
        }
    }
}

/// Read a whole body, refusing more than `cap` bytes.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Bytes, String> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(format!("answer larger than {cap} bytes"));
    }
    // Sized up front when upstream says how much: no growing copies of a
    // page of tens of MiB.
    let expected = resp.content_length().map_or(0, |n| n as usize);
    let mut buf = Vec::with_capacity(expected.min(cap));
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if buf.len() + c.len() > cap {
                    return Err(format!("answer larger than {cap} bytes"));
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(buf.into()),
            Err(e) => return Err(describe(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_credentials_apart_and_never_displays_them() {
        let up = Upstream::parse("--upstream", "https://bob:s%3Acret@idx.example/simple").unwrap();
        assert_eq!(up.url.as_str(), "https://idx.example/simple/");
        assert_eq!(up.to_string(), "https://bob:***@idx.example/simple/");
        assert!(!format!("{up:?}").contains("cret"));
        let same = Url::parse("https://idx.example/files/x-1.0.tar.gz").unwrap();
        let other = Url::parse("https://files.example/x-1.0.tar.gz").unwrap();
        assert_eq!(
            up.auth_for(&same),
            Some(&("bob".to_owned(), Some("s:cret".to_owned())))
        );
        assert_eq!(up.auth_for(&other), None);
        for bad in [
            "ftp://bob:pw@x/",
            "bob:pw@x",
            "https://bob:pw@x/?q=1",
            "not a url",
        ] {
            let e = Upstream::parse("--upstream", bad).unwrap_err();
            assert!(e.starts_with("--upstream "), "{e}");
            assert!(!e.contains("pw"), "{e}");
        }
    }
}
