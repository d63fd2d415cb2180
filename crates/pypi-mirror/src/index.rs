//! The one index model of the mirror: a project page's files, read from
//! upstream PEP 503 HTML or PEP 691 JSON or from the tree's state, merged,
//! and rendered by the one renderer both `build`/`add` (the tree's pages)
//! and `serve` (pages on the wire) use, so a page says the same offline as
//! online.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use url::Url;

use crate::html::{escape, percent_encode};
use crate::name::{self, ArchiveKind};
use crate::state;

/// Longest file name accepted, from upstream or in a request: what a Linux
/// file system takes, so every accepted name can be a file in the tree.
pub const MAX_FILENAME: usize = 255;

/// Whether `<file>.metadata` exists, and its hash if the page gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreMetadata {
    /// Not announced: clients download the file to read its metadata.
    No,
    /// Announced (PEP 658/714), with its sha256 when known.
    Yes(Option<String>),
}

/// One distribution file of a project page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The file name: the last segment of the link on our page.
    pub filename: String,
    /// Where upstream has it (`None` for a file only the tree has).
    pub url: Option<Url>,
    /// Lower-case hex sha256, if the page gave one.
    pub sha256: Option<String>,
    /// `Requires-Python`, unescaped.
    pub requires_python: Option<String>,
    /// PEP 658/714 metadata file.
    pub metadata: CoreMetadata,
    /// PEP 592: `Some(reason)` (maybe empty) when yanked.
    pub yanked: Option<String>,
    /// PEP 700 size in bytes, when known.
    pub size: Option<u64>,
    /// PEP 700 upload time, as upstream gave it; never invented.
    pub upload_time: Option<String>,
    /// The file is in the mirror tree.
    pub in_tree: bool,
}

impl FileEntry {
    /// The entry of a file the tree holds, from its state record.
    pub fn from_state(e: &state::Entry) -> Self {
        Self {
            filename: e.filename.clone(),
            url: None,
            sha256: Some(e.sha256.clone()),
            requires_python: e.requires_python.clone(),
            metadata: match &e.metadata_sha256 {
                Some(sha) => CoreMetadata::Yes(Some(sha.clone())),
                None => CoreMetadata::No,
            },
            yanked: e.listing.yanked.clone(),
            size: Some(e.stamp.size),
            upload_time: e.listing.upload_time.clone(),
            in_tree: true,
        }
    }

    /// Whether `self` (upstream's) and `tree` are the same bytes: only then
    /// does what upstream says of its file apply to the tree's.
    fn same_bytes(&self, tree: &Self) -> bool {
        self.sha256.is_some() && self.sha256 == tree.sha256
    }
}

/// What a page says of a file besides its bytes, as upstream says it now:
/// the values the tree's record must take for its page to say the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relisting {
    /// The file.
    pub filename: String,
    /// `Requires-Python` to record.
    pub requires_python: Option<String>,
    /// Yanked mark to record.
    pub yanked: Option<String>,
    /// Upload time to record.
    pub upload_time: Option<String>,
}

/// A tree entry as served while upstream lists the same bytes: upstream's
/// URL, its yanked mark (a yank or un-yank upstream reaches the tree), and
/// its `Requires-Python` and upload time where it gives them.
fn overlay(tree: &FileEntry, up: &FileEntry) -> FileEntry {
    FileEntry {
        url: up.url.clone(),
        yanked: up.yanked.clone(),
        requires_python: up
            .requires_python
            .clone()
            .or_else(|| tree.requires_python.clone()),
        upload_time: up.upload_time.clone().or_else(|| tree.upload_time.clone()),
        ..tree.clone()
    }
}

/// Whether `name` may be a distribution file name on our pages and in the
/// tree: a wheel or sdist name, one path segment, not hidden, not too long.
pub fn acceptable_filename(name: &str) -> bool {
    name.len() <= MAX_FILENAME
        && !name.starts_with('.')
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b'\\' || b.is_ascii_control())
        && ArchiveKind::from_filename(name).is_some()
        && crate::name::split_filename(name).is_some()
}

/// A sha256 hex string as found in a page, lower-cased, if it is one.
fn sha256_of(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// The `sha256=` part of a URL fragment or a `data-core-metadata` value
/// (`sha256=<hex>`; other algorithms do not count).
fn sha256_from_pair(s: &str) -> Option<String> {
    s.split('&')
        .find_map(|kv| kv.strip_prefix("sha256="))
        .and_then(sha256_of)
}

/// Split a resolved link into the entry's file name and its URL without
/// fragment; `None` if the name is not one we serve.
fn file_of(mut url: Url) -> Option<(String, Url, Option<String>)> {
    let sha = url.fragment().and_then(sha256_from_pair);
    url.set_fragment(None);
    let last = url.path_segments()?.next_back()?.to_owned();
    let name = percent_encoding::percent_decode_str(&last)
        .decode_utf8()
        .ok()?
        .into_owned();
    acceptable_filename(&name).then_some((name, url, sha))
}

/// Parse a PEP 503 HTML project page found at `base`.
pub fn parse_html(body: &[u8], base: &Url) -> Vec<FileEntry> {
    let mut base = base.clone();
    let mut files = Vec::new();
    for token in html5gum::Tokenizer::new(body) {
        let Ok(html5gum::Token::StartTag(tag)) = token else {
            continue;
        };
        let attr = |k: &str| {
            tag.attributes
                .get(k.as_bytes())
                .map(|v| String::from_utf8_lossy(&v.value).into_owned())
        };
        if tag.name == b"base" {
            if let Some(href) = attr("href").and_then(|h| base.join(&h).ok()) {
                base = href;
            }
            continue;
        }
        if tag.name != b"a" {
            continue;
        }
        let Some(href) = attr("href") else { continue };
        let Some((filename, url, sha256)) = base.join(href.trim()).ok().and_then(file_of) else {
            log::debug!("ignoring link {href:?}: not a wheel or sdist");
            continue;
        };
        // PEP 714: the new name wins over the old one when both are given.
        let metadata = match attr("data-core-metadata").or_else(|| attr("data-dist-info-metadata"))
        {
            None => CoreMetadata::No,
            Some(v) if v == "false" => CoreMetadata::No,
            Some(v) => CoreMetadata::Yes(sha256_from_pair(&v)),
        };
        files.push(FileEntry {
            filename,
            url: Some(url),
            sha256,
            requires_python: attr("data-requires-python").filter(|s| !s.is_empty()),
            metadata,
            yanked: attr("data-yanked"),
            size: None,
            upload_time: None,
            in_tree: false,
        });
    }
    files
}

/// A PEP 691 page as read: typed and borrowing from the body, so a page of
/// tens of MiB is not held again as a tree of `Value`s.
#[derive(Deserialize)]
struct JsonPage<'a> {
    #[serde(borrow)]
    files: Vec<JsonFile<'a>>,
}

#[derive(Deserialize)]
struct JsonFile<'a> {
    #[serde(borrow)]
    filename: Cow<'a, str>,
    #[serde(borrow)]
    url: Cow<'a, str>,
    #[serde(default)]
    hashes: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(default, borrow, rename = "requires-python")]
    requires_python: Option<Cow<'a, str>>,
    #[serde(default, rename = "core-metadata")]
    core_metadata: Option<Value>,
    #[serde(default, rename = "dist-info-metadata")]
    dist_info_metadata: Option<Value>,
    #[serde(default)]
    yanked: Option<Value>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, borrow, rename = "upload-time")]
    upload_time: Option<Cow<'a, str>>,
}

/// Longest upload time kept: an ISO 8601 time is about 27 characters.
const MAX_UPLOAD_TIME: usize = 64;

/// Parse a PEP 691 JSON project page found at `base`.
pub fn parse_json(body: &[u8], base: &Url) -> Result<Vec<FileEntry>, String> {
    let page: JsonPage<'_> =
        serde_json::from_slice(body).map_err(|e| format!("bad JSON page: {e}"))?;
    let mut files = Vec::with_capacity(page.files.len());
    for f in page.files {
        let Some(mut url) = base.join(&f.url).ok() else {
            continue;
        };
        url.set_fragment(None);
        if !acceptable_filename(&f.filename) {
            log::debug!("ignoring file {:?}: not a wheel or sdist", f.filename);
            continue;
        }
        // PEP 714: the new name wins over the old one when both are given.
        let metadata = match f.core_metadata.or(f.dist_info_metadata) {
            None | Some(Value::Bool(false)) | Some(Value::Null) => CoreMetadata::No,
            Some(Value::Object(h)) => {
                CoreMetadata::Yes(h.get("sha256").and_then(Value::as_str).and_then(sha256_of))
            }
            Some(_) => CoreMetadata::Yes(None),
        };
        let yanked = match f.yanked {
            Some(Value::Bool(true)) => Some(String::new()),
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        files.push(FileEntry {
            filename: f.filename.into_owned(),
            url: Some(url),
            sha256: f.hashes.get("sha256").and_then(|s| sha256_of(s)),
            requires_python: f
                .requires_python
                .filter(|s| !s.is_empty())
                .map(Cow::into_owned),
            metadata,
            yanked,
            size: f.size,
            upload_time: f
                .upload_time
                .filter(|s| !s.is_empty() && s.len() <= MAX_UPLOAD_TIME)
                .map(Cow::into_owned),
            in_tree: false,
        });
    }
    Ok(files)
}

/// Project names linked from a root page (ours: `<a href="name/">`).
pub fn parse_root(body: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    for token in html5gum::Tokenizer::new(body) {
        let Ok(html5gum::Token::StartTag(tag)) = token else {
            continue;
        };
        if tag.name != b"a" {
            continue;
        }
        if let Some(href) = tag.attributes.get(b"href".as_slice()) {
            let href = String::from_utf8_lossy(&href.value);
            let name = href.trim_end_matches('/');
            if crate::name::is_valid(name) {
                names.push(crate::name::normalize(name));
            }
        }
    }
    names
}

/// Merge upstream's files with the tree's (both sorted by file name): the
/// tree's copy of a name wins (it is what the server hands out), with what
/// upstream says of it (see [`overlay`]) when both are the same bytes.
/// Sorted by file name.
pub fn merge(upstream: &[FileEntry], tree: &[FileEntry]) -> Vec<FileEntry> {
    let mut all: BTreeMap<&str, FileEntry> = upstream
        .iter()
        .map(|f| (f.filename.as_str(), f.clone()))
        .collect();
    for t in tree {
        let entry = match all.get(t.filename.as_str()) {
            Some(u) if u.same_bytes(t) => overlay(t, u),
            _ => t.clone(),
        };
        all.insert(
            &t.filename,
            FileEntry {
                in_tree: true,
                ..entry
            },
        );
    }
    all.into_values().collect()
}

/// The tree records whose listing differs from what upstream now says of
/// the same bytes: what the tree must record so that its page, offline,
/// says what the merged page says online.
pub fn relistings(upstream: &[FileEntry], tree: &[FileEntry]) -> Vec<Relisting> {
    let by_name: BTreeMap<&str, &FileEntry> =
        upstream.iter().map(|f| (f.filename.as_str(), f)).collect();
    tree.iter()
        .filter_map(|t| {
            let u = by_name
                .get(t.filename.as_str())
                .filter(|u| u.same_bytes(t))?;
            let o = overlay(t, u);
            let changed = o.yanked != t.yanked
                || o.requires_python != t.requires_python
                || o.upload_time != t.upload_time;
            changed.then(|| Relisting {
                filename: t.filename.clone(),
                requires_python: o.requires_python,
                yanked: o.yanked,
                upload_time: o.upload_time,
            })
        })
        .collect()
}

/// PEP 629/700 API version of a page: 1.1 promises every file's `size`, so
/// a page with a file of unknown size (listed only by an HTML upstream)
/// says 1.0 and gives the sizes it knows as extra keys, which PEP 691 has
/// clients ignore.
fn api_version(files: &[FileEntry]) -> &'static str {
    if files.iter().all(|f| f.size.is_some()) {
        "1.1"
    } else {
        "1.0"
    }
}

/// PEP 700 `versions`: the distinct versions of the listed files, in
/// PEP 440 order.
pub fn versions(project: &str, files: &[FileEntry]) -> Vec<String> {
    let set: BTreeSet<(Option<pep440_rs::Version>, String)> = files
        .iter()
        .filter_map(|f| name::version_of(&f.filename, project))
        .map(|v| match v.parse::<pep440_rs::Version>() {
            Ok(parsed) => (Some(parsed.clone()), parsed.to_string()),
            Err(_) => (None, v),
        })
        .collect();
    let mut seen = BTreeSet::new();
    set.into_iter()
        .filter_map(|(_, v)| seen.insert(v.clone()).then_some(v))
        .collect()
}

/// Render the project page as PEP 503 HTML; links are relative, so they
/// resolve to `<project>/<file>` beside the page, in the tree and on the
/// server alike.
pub fn render_html(project: &str, files: &[FileEntry]) -> String {
    let title = escape(project);
    let mut out = String::with_capacity(256 + files.len() * 320);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"{}\">\n    <title>Links for {title}</title>\n  </head>\n  <body>\n    <h1>Links for {title}</h1>\n",
        api_version(files)
    );
    for f in files {
        let _ = write!(
            out,
            "    <a href=\"{}",
            escape(&percent_encode(&f.filename))
        );
        if let Some(sha) = &f.sha256 {
            let _ = write!(out, "#sha256={sha}");
        }
        out.push('"');
        if let Some(rp) = &f.requires_python {
            let _ = write!(out, " data-requires-python=\"{}\"", escape(rp));
        }
        match &f.metadata {
            CoreMetadata::No => {}
            // Both spellings: pip < 23.3 and older uv know only PEP 658's.
            CoreMetadata::Yes(Some(sha)) => {
                let _ = write!(
                    out,
                    " data-core-metadata=\"sha256={sha}\" data-dist-info-metadata=\"sha256={sha}\""
                );
            }
            CoreMetadata::Yes(None) => {
                out.push_str(" data-core-metadata=\"true\" data-dist-info-metadata=\"true\"");
            }
        }
        if let Some(reason) = &f.yanked {
            let _ = write!(out, " data-yanked=\"{}\"", escape(reason));
        }
        let _ = writeln!(out, ">{}</a><br>", escape(&f.filename));
    }
    out.push_str("  </body>\n</html>\n");
    out
}

/// One file of a PEP 691 page as written: serialized straight from the
/// entries, without building a tree of `Value`s for a page of thousands.
#[derive(Serialize)]
struct JsonFileOut<'a> {
    filename: &'a str,
    url: String,
    hashes: HashesOut<'a>,
    #[serde(rename = "requires-python", skip_serializing_if = "Option::is_none")]
    requires_python: Option<&'a str>,
    // PEP 714: only the new key in JSON. pip 22.3 to 23.1 (Debian
    // bookworm's is 23.0.1) fails hard on any `dist-info-metadata` in
    // JSON, even `false`; absent means no metadata file.
    #[serde(rename = "core-metadata", skip_serializing_if = "Option::is_none")]
    core_metadata: Option<MetadataOut<'a>>,
    yanked: YankedOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(rename = "upload-time", skip_serializing_if = "Option::is_none")]
    upload_time: Option<&'a str>,
}

#[derive(Serialize)]
struct HashesOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum MetadataOut<'a> {
    Known(HashesOut<'a>),
    Unknown(bool),
}

#[derive(Serialize)]
#[serde(untagged)]
enum YankedOut<'a> {
    Flag(bool),
    Reason(&'a str),
}

#[derive(Serialize)]
struct JsonPageOut<'a> {
    meta: MetaOut,
    name: &'a str,
    versions: Vec<String>,
    files: Vec<JsonFileOut<'a>>,
}

#[derive(Serialize)]
struct MetaOut {
    #[serde(rename = "api-version")]
    api_version: &'static str,
}

/// Render the project page as PEP 691 JSON, with PEP 700's `size`,
/// `upload-time` and `versions`.
pub fn render_json(project: &str, files: &[FileEntry]) -> Vec<u8> {
    let page = JsonPageOut {
        meta: MetaOut {
            api_version: api_version(files),
        },
        name: project,
        versions: versions(project, files),
        files: files
            .iter()
            .map(|f| JsonFileOut {
                filename: &f.filename,
                url: percent_encode(&f.filename),
                hashes: HashesOut {
                    sha256: f.sha256.as_deref(),
                },
                requires_python: f.requires_python.as_deref(),
                core_metadata: match &f.metadata {
                    CoreMetadata::No => None,
                    CoreMetadata::Yes(Some(sha)) => {
                        Some(MetadataOut::Known(HashesOut { sha256: Some(sha) }))
                    }
                    CoreMetadata::Yes(None) => Some(MetadataOut::Unknown(true)),
                },
                yanked: match f.yanked.as_deref() {
                    None => YankedOut::Flag(false),
                    Some("") => YankedOut::Flag(true),
                    Some(reason) => YankedOut::Reason(reason),
                },
                size: f.size,
                upload_time: f.upload_time.as_deref(),
            })
            .collect(),
    };
    let mut out = Vec::with_capacity(256 + files.len() * 400);
    // Serializing plain structs into memory cannot fail.
    let _ = serde_json::to_writer(&mut out, &page);
    out
}

/// The root page in HTML.
pub fn render_root_html(projects: &[String]) -> String {
    crate::html::root_page(projects.iter().map(String::as_str))
}

/// The root page in PEP 691 JSON.
pub fn render_root_json(projects: &[String]) -> Vec<u8> {
    let list: Vec<Value> = projects.iter().map(|p| json!({ "name": p })).collect();
    serde_json::to_vec(&json!({ "meta": { "api-version": "1.0" }, "projects": list }))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "ab00000000000000000000000000000000000000000000000000000000000000";

    fn base() -> Url {
        Url::parse("https://up.example/simple/foo/").unwrap()
    }

    #[test]
    fn reads_pep_503_links_with_every_attribute() {
        let html = format!(
            "<a href=\"../../packages/foo-1.0-py3-none-any.whl#sha256={}\" data-requires-python=\"&gt;=3.8\" \
             data-dist-info-metadata=\"sha256={SHA}\" data-yanked=\"broken\">x</a>\
             <a href=\"https://files.example/foo-1.0.tar.gz#md5=00\">y</a>\
             <a href=\"foo-1.0.egg\">egg</a><a href=\"../evil/..%2F.hidden-1.0.tar.gz\">z</a>",
            SHA.to_uppercase()
        );
        let files = parse_html(html.as_bytes(), &base());
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(files[0].filename, "foo-1.0-py3-none-any.whl");
        assert_eq!(
            files[0].url.as_ref().unwrap().as_str(),
            "https://up.example/packages/foo-1.0-py3-none-any.whl"
        );
        assert_eq!(files[0].sha256.as_deref(), Some(SHA));
        assert_eq!(files[0].requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(files[0].metadata, CoreMetadata::Yes(Some(SHA.to_owned())));
        assert_eq!(files[0].yanked.as_deref(), Some("broken"));
        assert_eq!(files[1].sha256, None);
        assert_eq!(files[1].metadata, CoreMetadata::No);
    }

    #[test]
    fn reads_pep_691_json() {
        let body = json!({"meta": {"api-version": "1.1"}, "name": "foo", "files": [
            {"filename": "foo-1.0-py3-none-any.whl", "url": "https://f.example/a/foo-1.0-py3-none-any.whl",
             "hashes": {"sha256": SHA}, "requires-python": ">=3.8", "core-metadata": {"sha256": SHA},
             "yanked": "reason"},
            {"filename": "foo-0.9.tar.gz", "url": "foo-0.9.tar.gz", "hashes": {}, "yanked": true},
            {"filename": "../foo-1.0.tar.gz", "url": "x", "hashes": {}}
        ]});
        let files = parse_json(&serde_json::to_vec(&body).unwrap(), &base()).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].metadata, CoreMetadata::Yes(Some(SHA.to_owned())));
        assert_eq!(files[0].yanked.as_deref(), Some("reason"));
        assert_eq!(
            files[1].url.as_ref().unwrap().as_str(),
            "https://up.example/simple/foo/foo-0.9.tar.gz"
        );
        assert_eq!(files[1].yanked.as_deref(), Some(""));
    }

    #[test]
    fn tree_wins_a_name_and_renders_round_trip() {
        let up = parse_html(
            format!("<a href=\"/p/foo-1.0.tar.gz#sha256={SHA}\" data-yanked=\"\">a</a>").as_bytes(),
            &base(),
        );
        let mut tree = up.clone();
        tree[0].url = None;
        tree[0].yanked = None;
        let merged = merge(&up, &tree);
        assert!(merged[0].in_tree);
        assert_eq!(merged[0].yanked.as_deref(), Some(""));
        let html = render_html("foo", &merged);
        assert!(
            html.contains(&format!(
                "<a href=\"foo-1.0.tar.gz#sha256={SHA}\" data-yanked=\"\">"
            )),
            "{html}"
        );
        let again = parse_html(html.as_bytes(), &base());
        assert_eq!(again[0].sha256, merged[0].sha256);
        let json: Value = serde_json::from_slice(&render_json("foo", &merged)).unwrap();
        assert_eq!(json["files"][0]["yanked"], json!(true));
        assert!(json["files"][0].get("core-metadata").is_none());
        let mut with_md = merged.clone();
        with_md[0].metadata = CoreMetadata::Yes(Some(SHA.to_owned()));
        let text = String::from_utf8(render_json("foo", &with_md)).unwrap();
        assert!(
            text.contains(&format!("\"core-metadata\":{{\"sha256\":\"{SHA}\"}}")),
            "{text}"
        );
        assert!(!text.contains("dist-info-metadata"), "{text}");
    }

    fn entry(name: &str, sha: &str) -> FileEntry {
        FileEntry {
            filename: name.to_owned(),
            url: None,
            sha256: Some(sha.to_owned()),
            requires_python: None,
            metadata: CoreMetadata::No,
            yanked: None,
            size: Some(10),
            upload_time: None,
            in_tree: true,
        }
    }

    #[test]
    fn the_tree_takes_what_upstream_says_of_the_same_bytes_only() {
        let other = "cd".repeat(32);
        let tree = vec![
            FileEntry {
                requires_python: Some(">=3.6".into()),
                upload_time: Some("old".into()),
                ..entry("foo-1.0.tar.gz", SHA)
            },
            entry("foo-2.0.tar.gz", SHA),
            entry("foo-3.0.tar.gz", SHA),
        ];
        let up = vec![
            FileEntry {
                url: Some(base()),
                yanked: Some("bad".into()),
                upload_time: Some("2024-01-01T00:00:00Z".into()),
                size: None,
                in_tree: false,
                ..entry("foo-1.0.tar.gz", SHA)
            },
            // Other bytes under the same name: upstream's word does not
            // apply to the tree's file.
            FileEntry {
                yanked: Some("x".into()),
                in_tree: false,
                ..entry("foo-2.0.tar.gz", &other)
            },
        ];
        let merged = merge(&up, &tree);
        assert_eq!(merged[0].yanked.as_deref(), Some("bad"));
        assert_eq!(merged[0].requires_python.as_deref(), Some(">=3.6"));
        assert_eq!(
            merged[0].upload_time.as_deref(),
            Some("2024-01-01T00:00:00Z")
        );
        assert_eq!(merged[0].size, Some(10), "the tree knows the real size");
        assert_eq!(merged[1], tree[1]);
        assert_eq!(
            relistings(&up, &tree),
            [Relisting {
                filename: "foo-1.0.tar.gz".into(),
                requires_python: Some(">=3.6".into()),
                yanked: Some("bad".into()),
                upload_time: Some("2024-01-01T00:00:00Z".into()),
            }]
        );
        // Once recorded, nothing more to record.
        let recorded: Vec<FileEntry> = merge(&up, &tree)
            .into_iter()
            .filter(|f| f.in_tree)
            .collect();
        assert!(relistings(&up, &recorded).is_empty());
    }

    #[test]
    fn json_pages_carry_pep_700_fields_and_say_1_1_only_when_every_size_is_known() {
        let mut files = vec![
            FileEntry {
                upload_time: Some("2024-01-01T00:00:00Z".into()),
                yanked: Some(String::new()),
                ..entry("foo-1.0.post1-py3-none-any.whl", SHA)
            },
            entry("foo-1.0.tar.gz", SHA),
            entry("foo-1.0.post1.tar.gz", SHA),
            entry("foo-0.9.zip", SHA),
        ];
        let page: Value = serde_json::from_slice(&render_json("foo", &files)).unwrap();
        assert_eq!(page["meta"]["api-version"], "1.1");
        assert_eq!(page["versions"], json!(["0.9", "1.0", "1.0.post1"]));
        assert_eq!(page["files"][0]["size"], 10);
        assert_eq!(page["files"][0]["upload-time"], "2024-01-01T00:00:00Z");
        assert_eq!(page["files"][0]["yanked"], true);
        assert!(page["files"][1].get("upload-time").is_none());
        let html = render_html("foo", &files);
        assert!(html.contains("content=\"1.1\""), "{html}");
        files[1].size = None;
        let page: Value = serde_json::from_slice(&render_json("foo", &files)).unwrap();
        assert_eq!(page["meta"]["api-version"], "1.0");
        assert!(page["files"][1].get("size").is_none());
        // What we write, we read back the same.
        let again = parse_json(&render_json("foo", &files), &base()).unwrap();
        assert_eq!(again[0].upload_time, files[0].upload_time);
        assert_eq!(again[0].size, files[0].size);
        assert_eq!(again[0].yanked, files[0].yanked);
    }

    #[test]
    fn refuses_hostile_file_names() {
        for bad in [
            "../x-1.0.tar.gz",
            ".x-1.0.tar.gz",
            "x-1.0.egg",
            "a/b-1.0.tar.gz",
            "x\0-1.0.tar.gz",
            &format!("{}-1.0.tar.gz", "a".repeat(250)),
        ] {
            assert!(!acceptable_filename(bad), "{bad:?}");
        }
        assert!(acceptable_filename("x-1.0.tar.gz"));
    }
}
