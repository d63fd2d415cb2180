//! The request handler: routes a validated path to a page, a file or a
//! `.metadata` file, from memory, the tree or upstream, with the caching
//! headers, conditional answers and ranges of `caching`. HEAD does none of
//! the body's work: of a file not in the tree it asks upstream for the
//! headers only.

use std::convert::Infallible;
use std::io;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::caching::{Conditions, PageValidators, Ranged, Validators};
use super::download::{Downloads, Wanted};
use super::index::CoreMetadata;
use super::pages::{Answer, Page, Pages};
use super::route::{self, Format, Route};
use super::upstream::{self, Client};

/// Response body type: in memory or streamed.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Files up to this size are read in one go; larger ones are streamed.
const SLURP: u64 = 1 << 20;

/// Largest `.metadata` accepted from upstream.
const MAX_METADATA: usize = 16 << 20;

/// Everything a request needs.
#[derive(Debug)]
pub struct App {
    /// The mirror tree.
    pub out: PathBuf,
    /// Pages.
    pub pages: Arc<Pages>,
    /// Upstream client and transfers; `None` with `--offline`.
    pub online: Option<(Client, Arc<Downloads>)>,
    /// The cap on concurrent upstream requests.
    pub limit: Arc<tokio::sync::Semaphore>,
    /// `--ttl`: how long clients may keep a page (`Cache-Control`).
    pub ttl: Duration,
    /// The validators of rendered pages.
    pub validators: PageValidators,
}

/// A distribution file never changes under its name.
const IMMUTABLE: HeaderValue = HeaderValue::from_static("max-age=31536000, immutable");

const OCTETS: &str = "application/octet-stream";

fn full(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", format!("{msg}\n"))
}

/// A body-less answer: 304, or HEAD (hyper sends a HEAD answer's own
/// `Content-Length`, which says what GET would send).
fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::new())
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

fn streamed(stream: impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static) -> Body {
    StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync()
}

/// Serve one request; never fails (errors are answers).
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let resp = answer(&app, &req).await;
    log::debug!(
        "{} {:?} {} {:.1?}",
        req.method(),
        req.uri().path(),
        resp.status().as_u16(),
        start.elapsed()
    );
    Ok(resp)
}

async fn answer(app: &Arc<App>, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let head = req.method() == Method::HEAD;
    let cond = Conditions::of(req.method(), req.headers());
    match route::route(req.uri().path()) {
        Route::Root => match route::negotiate(accept) {
            None => not_acceptable(),
            Some(format) => {
                let names = app.pages.root_projects();
                let body = match format {
                    Format::Json => Bytes::from(super::index::render_root_json(&names)),
                    Format::Html { .. } => Bytes::from(super::index::render_root_html(&names)),
                };
                let etag = super::caching::etag_of(&body);
                page_response(app, &cond, "", format, body, &etag)
            }
        },
        Route::Project(project) => match route::negotiate(accept) {
            None => not_acceptable(),
            Some(format) => {
                let page = app.pages.get(&project).await;
                if !page.exists {
                    return unknown(&page, "no such project");
                }
                let (body, etag) = page.body(format == Format::Json);
                page_response(app, &cond, &project, format, body.clone(), etag)
            }
        },
        Route::File { project, filename } => file(app, &cond, head, &project, &filename).await,
        Route::Metadata { project, filename } => {
            metadata(app, &cond, head, &project, &filename).await
        }
        Route::Redirect(to) => {
            let mut r = text(StatusCode::MOVED_PERMANENTLY, "moved");
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Route::NotFound => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The answer for what the page does not list: 404, unless an upstream
/// failed, when nobody can say (502 naming that upstream and what failed).
fn unknown(page: &Page, what: &str) -> Response<Body> {
    match page.answer() {
        Answer::Failed { error, .. } => text(StatusCode::BAD_GATEWAY, error),
        _ => text(StatusCode::NOT_FOUND, what),
    }
}

/// The upstream whose page listed `page`'s upstream URLs.
fn lister(page: &Page) -> Option<usize> {
    match page.answer() {
        Answer::Found { upstream, .. } => Some(*upstream),
        _ => None,
    }
}

fn not_acceptable() -> Response<Body> {
    text(
        StatusCode::NOT_ACCEPTABLE,
        "acceptable: text/html, application/vnd.pypi.simple.v1+html, application/vnd.pypi.simple.v1+json",
    )
}

/// A page, or 304 when the client's copy is current; either way with
/// its validators and `Cache-Control: max-age=<--ttl>`.
fn page_response(
    app: &App,
    cond: &Conditions,
    key: &str,
    format: Format,
    body: Bytes,
    etag: &str,
) -> Response<Body> {
    let v = app
        .validators
        .get(key, matches!(format, Format::Json), etag);
    let mut r = if cond.not_modified(&v) {
        empty(StatusCode::NOT_MODIFIED)
    } else {
        full(StatusCode::OK, format.content_type(), body)
    };
    let h = r.headers_mut();
    // The same URL answers HTML or JSON: caches must key on Accept.
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Ok(cc) = HeaderValue::from_str(&format!("max-age={}", app.ttl.as_secs())) {
        h.insert(header::CACHE_CONTROL, cc);
    }
    v.insert_into(h);
    r
}

/// What to send of a file of the tree, decided where it was opened.
enum TreeFile {
    NotModified,
    Unsatisfiable,
    /// HEAD: the headers only.
    Head,
    /// Read whole or the range; `range` set for a 206.
    Read {
        data: Bytes,
        range: Option<RangeInclusive<u64>>,
    },
    /// To be streamed from where it was positioned, `n` bytes.
    Stream {
        file: std::fs::File,
        n: u64,
        range: Option<RangeInclusive<u64>>,
    },
}

/// Open, check and decide in one trip to the blocking pool; reads only
/// what is sent, and only when it is small.
fn decide_tree_file(
    path: &std::path::Path,
    cond: &Conditions,
    head: bool,
) -> io::Result<(Validators, u64, TreeFile)> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(path)?;
    let md = file.metadata()?;
    if !md.is_file() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let v = Validators::of_file(&md);
    let len = md.len();
    if cond.not_modified(&v) {
        return Ok((v, len, TreeFile::NotModified));
    }
    if head {
        return Ok((v, len, TreeFile::Head));
    }
    let range = match cond.range(&v, len) {
        Ranged::Unsatisfiable => return Ok((v, len, TreeFile::Unsatisfiable)),
        Ranged::Part(r) => Some(r),
        Ranged::Whole => None,
    };
    let (start, n) = match &range {
        Some(r) => (*r.start(), r.end() - r.start() + 1),
        None => (0, len),
    };
    if start > 0 {
        file.seek(io::SeekFrom::Start(start))?;
    }
    if n > SLURP {
        return Ok((v, len, TreeFile::Stream { file, n, range }));
    }
    let mut buf = Vec::with_capacity(n as usize);
    file.take(n).read_to_end(&mut buf)?;
    if buf.len() as u64 != n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let data = Bytes::from(buf);
    Ok((v, len, TreeFile::Read { data, range }))
}

/// A file of the tree, if it is there: whole or one range, 304 when the
/// client's copy is current. `None` when it is not a regular file of the
/// tree.
async fn from_tree(path: PathBuf, cond: &Conditions, head: bool) -> Option<Response<Body>> {
    let cond = cond.clone();
    let (v, len, what) = tokio::task::spawn_blocking(move || decide_tree_file(&path, &cond, head))
        .await
        .ok()?
        .ok()?;
    let content_range = |r: &RangeInclusive<u64>| {
        HeaderValue::from_str(&format!("bytes {}-{}/{len}", r.start(), r.end())).ok()
    };
    let status = |range: &Option<RangeInclusive<u64>>| {
        if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        }
    };
    let mut resp = match what {
        TreeFile::NotModified => empty(StatusCode::NOT_MODIFIED),
        TreeFile::Unsatisfiable => {
            let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(cr) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, cr);
            }
            r
        }
        TreeFile::Head => {
            let mut r = empty(StatusCode::OK);
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTETS));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
        TreeFile::Read { data, range } => {
            let mut r = full(status(&range), OCTETS, data);
            if let Some(cr) = range.as_ref().and_then(content_range) {
                r.headers_mut().insert(header::CONTENT_RANGE, cr);
            }
            r
        }
        TreeFile::Stream { file, n, range } => {
            let file = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), n);
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
            let mut r = Response::new(streamed(stream));
            *r.status_mut() = status(&range);
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTETS));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            if let Some(cr) = range.as_ref().and_then(content_range) {
                r.headers_mut().insert(header::CONTENT_RANGE, cr);
            }
            r
        }
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, IMMUTABLE);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    v.insert_into(h);
    Some(resp)
}

/// HEAD of a file not in the tree: upstream's status and length, from an
/// upstream HEAD; nothing is downloaded.
async fn upstream_head(
    app: &App,
    client: &Client,
    upstream: usize,
    url: &url::Url,
) -> Response<Body> {
    let asked = async {
        let _permit = app
            .limit
            .acquire()
            .await
            .map_err(|_| "shutting down".to_owned())?;
        // `get` checks the URL against the upstream's policy and carries
        // its credentials; only the method differs.
        let (http, req) = client
            .get(upstream, url)?
            .timeout(Duration::from_secs(60))
            .build_split();
        let mut req = req.map_err(|e| upstream::describe(&e))?;
        *req.method_mut() = reqwest::Method::HEAD;
        http.execute(req).await.map_err(|e| upstream::describe(&e))
    }
    .await;
    let resp = match asked {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_GATEWAY, &format!("upstream: {e}")),
    };
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
        return text(StatusCode::NOT_FOUND, "not found upstream");
    }
    // An upstream that answers no HEAD still lists the file: say it is
    // there, without a length.
    let no_head = status == reqwest::StatusCode::METHOD_NOT_ALLOWED
        || status == reqwest::StatusCode::NOT_IMPLEMENTED;
    if !status.is_success() && !no_head {
        return text(StatusCode::BAD_GATEWAY, &format!("upstream: HTTP {status}"));
    }
    let mut r = empty(StatusCode::OK);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTETS));
    h.insert(header::CACHE_CONTROL, IMMUTABLE);
    if status.is_success() {
        let length = resp
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = length {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    r
}

async fn file(
    app: &Arc<App>,
    cond: &Conditions,
    head: bool,
    project: &str,
    filename: &str,
) -> Response<Body> {
    // A file is served, fetched and published only under its own project.
    if !crate::name::belongs_to(filename, project) {
        return text(StatusCode::NOT_FOUND, "not a file of this project");
    }
    if let Some(r) = from_tree(app.out.join(project).join(filename), cond, head).await {
        return r;
    }
    let Some((client, downloads)) = &app.online else {
        return text(StatusCode::NOT_FOUND, "not in the mirror (offline)");
    };
    let page = app.pages.get(project).await;
    let Some(entry) = page.file(filename) else {
        return unknown(&page, "no such file");
    };
    let (Some(url), Some(upstream)) = (entry.url.clone(), lister(&page)) else {
        // Listed by the tree's page but gone from the tree.
        return text(StatusCode::NOT_FOUND, "no such file");
    };
    if head {
        return upstream_head(app, client, upstream, &url).await;
    }
    let want = Wanted {
        upstream,
        project: project.to_owned(),
        filename: filename.to_owned(),
        url,
        sha256: entry.sha256.clone(),
        listed: crate::Listed {
            project: project.to_owned(),
            requires_python: entry.requires_python.clone(),
            listing: crate::state::Listing {
                yanked: entry.yanked.clone(),
                upload_time: entry.upload_time.clone(),
                origin: page.origin.clone(),
            },
        },
    };
    let (download, reader) = match downloads.join(&want) {
        Ok(d) => d,
        Err(e) => {
            log::error!("{project}/{filename}: cannot start the transfer: {e}");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot start the transfer",
            );
        }
    };
    let total = match download.started().await {
        Ok(t) => t,
        Err(e) => return text(StatusCode::BAD_GATEWAY, &format!("upstream: {e}")),
    };
    let mut r = Response::new(streamed(download.body(reader)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTETS));
    r.headers_mut().insert(header::CACHE_CONTROL, IMMUTABLE);
    if let Some(n) = total {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    r
}

async fn metadata(
    app: &Arc<App>,
    cond: &Conditions,
    head: bool,
    project: &str,
    filename: &str,
) -> Response<Body> {
    if !crate::name::belongs_to(filename, project) {
        return text(StatusCode::NOT_FOUND, "not a file of this project");
    }
    let path = app.out.join(project).join(format!("{filename}.metadata"));
    if let Some(r) = from_tree(path, cond, head).await {
        return r;
    }
    let Some((client, _)) = &app.online else {
        return text(StatusCode::NOT_FOUND, "not in the mirror (offline)");
    };
    let page = app.pages.get(project).await;
    let Some(entry) = page.file(filename) else {
        return unknown(&page, "no such file");
    };
    let (Some(url), Some(upstream), CoreMetadata::Yes(sha)) =
        (&entry.url, lister(&page), &entry.metadata)
    else {
        return text(StatusCode::NOT_FOUND, "no metadata file");
    };
    // PEP 658: the metadata file is at the file's URL plus ".metadata".
    let mut url = url.clone();
    url.set_path(&format!("{}.metadata", url.path()));
    if head {
        return upstream_head(app, client, upstream, &url).await;
    }
    let fetched = async {
        let _permit = app
            .limit
            .acquire()
            .await
            .map_err(|_| "shutting down".to_owned())?;
        let resp = client
            .get(upstream, &url)?
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| upstream::describe(&e))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        upstream::read_capped(resp, MAX_METADATA).await
    }
    .await;
    match fetched {
        Ok(body) => {
            if let Some(sha) = sha {
                if crate::indexer::sha256_hex(&body) != *sha {
                    log::warn!("{project}/{filename}.metadata: sha256 mismatch with the page");
                    return text(
                        StatusCode::BAD_GATEWAY,
                        "upstream metadata does not match its hash",
                    );
                }
            }
            let mut r = full(StatusCode::OK, OCTETS, body);
            r.headers_mut().insert(header::CACHE_CONTROL, IMMUTABLE);
            r
        }
        Err(e) => {
            log::warn!("{project}/{filename}.metadata: {e}");
            text(StatusCode::BAD_GATEWAY, &format!("upstream: {e}"))
        }
    }
}
