//! The request handler: routes a validated path to a page, a file or a
//! `.metadata` file, from memory, the tree or upstream.

use std::convert::Infallible;
use std::io;
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
}

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
    match route::route(req.uri().path()) {
        Route::Root => match route::negotiate(accept) {
            None => not_acceptable(),
            Some(format) => {
                let names = app.pages.root_projects();
                let body = match format {
                    Format::Json => Bytes::from(super::index::render_root_json(&names)),
                    Format::Html { .. } => Bytes::from(super::index::render_root_html(&names)),
                };
                page_response(format, body)
            }
        },
        Route::Project(project) => match route::negotiate(accept) {
            None => not_acceptable(),
            Some(format) => {
                let page = app.pages.get(&project).await;
                if !page.exists {
                    return unknown(&page, "no such project");
                }
                page_response(format, page.body(format == Format::Json))
            }
        },
        Route::File { project, filename } => file(app, &project, &filename).await,
        Route::Metadata { project, filename } => metadata(app, &project, &filename).await,
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

fn page_response(format: Format, body: Bytes) -> Response<Body> {
    let mut r = full(StatusCode::OK, format.content_type(), body);
    // The same URL answers HTML or JSON: caches must key on Accept.
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

/// A file of the tree, if it is there: read whole when small, else
/// streamed. `None` when it is not a regular file of the tree.
async fn from_tree(path: PathBuf) -> Option<Response<Body>> {
    // One trip to the blocking pool for open, fstat and a small read,
    // rather than one per call as tokio::fs would make.
    let opened =
        tokio::task::spawn_blocking(move || -> io::Result<Result<Bytes, (std::fs::File, u64)>> {
            let mut file = std::fs::File::open(path)?;
            let md = file.metadata()?;
            if !md.is_file() {
                return Err(io::ErrorKind::InvalidInput.into());
            }
            if md.len() > SLURP {
                return Ok(Err((file, md.len())));
            }
            let mut buf = Vec::with_capacity(md.len() as usize);
            io::Read::read_to_end(&mut file, &mut buf)?;
            Ok(Ok(Bytes::from(buf)))
        })
        .await
        .ok()?
        .ok()?;
    let mut resp = match opened {
        Ok(data) => full(StatusCode::OK, "application/octet-stream", data),
        Err((file, len)) => {
            let file = tokio::fs::File::from_std(file);
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
            let body = StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync();
            let mut r = Response::new(body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
    };
    // A distribution file never changes under its name.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000, immutable"),
    );
    Some(resp)
}

async fn file(app: &Arc<App>, project: &str, filename: &str) -> Response<Body> {
    // A file is served, fetched and published only under its own project.
    if !crate::name::belongs_to(filename, project) {
        return text(StatusCode::NOT_FOUND, "not a file of this project");
    }
    if let Some(r) = from_tree(app.out.join(project).join(filename)).await {
        return r;
    }
    let Some((_, downloads)) = &app.online else {
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
    let body = StreamBody::new(download.body(reader).map_ok(Frame::data)).boxed_unsync();
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(n) = total {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    r
}

async fn metadata(app: &Arc<App>, project: &str, filename: &str) -> Response<Body> {
    if !crate::name::belongs_to(filename, project) {
        return text(StatusCode::NOT_FOUND, "not a file of this project");
    }
    let path = app.out.join(project).join(format!("{filename}.metadata"));
    if let Some(r) = from_tree(path).await {
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
            full(StatusCode::OK, "application/octet-stream", body)
        }
        Err(e) => {
            log::warn!("{project}/{filename}.metadata: {e}");
            text(StatusCode::BAD_GATEWAY, &format!("upstream: {e}"))
        }
    }
}
