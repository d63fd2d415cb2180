//! Tidy: the rules of docs/ARCHITECTURE.md that a grep can hold, checked on every test run.
//!
//! In the manner of rust-analyzer's tidy tests: cheap text checks over the
//! source tree, each failing with the file and line at fault.
// Test code: an unreadable tree should stop the test with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use xtask::element::workspace_root;

/// Every Rust source file of the workspace (not `target/`).
fn rust_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == "target" || name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    let root = workspace_root();
    let mut out = Vec::new();
    for top in ["crates", "tests", "xtask"] {
        walk(&root.join(top), &mut out);
    }
    out.sort();
    assert!(out.len() > 30, "found only {} files", out.len());
    out
}

fn rel(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap()
        .display()
        .to_string()
}

/// The code of a file without its test module (by convention the
/// `#[cfg(test)]` module at the end), or nothing for a test-only file.
fn product_code(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy();
    if matches!(name.as_ref(), "tests.rs" | "testing.rs" | "fault.rs") {
        return String::new();
    }
    let text = fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

#[test]
fn every_module_starts_with_a_doc_line() {
    let missing: Vec<String> = rust_files()
        .iter()
        .filter(|p| !fs::read_to_string(p).unwrap().starts_with("//! "))
        .map(|p| rel(p))
        .collect();
    assert!(missing.is_empty(), "no `//!` first line: {missing:?}");
}

#[test]
fn no_source_file_is_over_800_lines() {
    let long: Vec<String> = rust_files()
        .iter()
        .map(|p| (rel(p), fs::read_to_string(p).unwrap().lines().count()))
        .filter(|(_, n)| *n > 800)
        .map(|(p, n)| format!("{p}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "{long:?}");
}

/// The layers of dib-pypi-core, bottom first: a module may use only
/// modules of a lower layer (so there can be no cycle). `testing` and
/// `fault` are test-only. The one list: `lib.rs` and ARCHITECTURE.md are
/// checked against it.
const LAYERS: &[&[&str]] = &[
    &["error", "fault", "logging", "layout"],
    &["hook", "rootfs", "mirror", "certs"],
    &["mounter", "settings"],
    &["journal", "state", "render"],
    &["tools", "undo"],
    &["overrides", "txn", "stage"],
    &["tls"],
    &["mount", "configure", "restore"],
    &["testing"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The core module a source file belongs to (`rootfs/resolve.rs` is part
/// of `rootfs`); `None` for the crate root.
fn core_module(path: &Path, src: &Path) -> Option<String> {
    let first = path.strip_prefix(src).ok()?.components().next()?;
    let name = first.as_os_str().to_string_lossy();
    let name = name.trim_end_matches(".rs");
    (name != "lib").then(|| name.to_string())
}

/// `crate::NAME` references in `code`, with the line they are on.
fn crate_uses(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        // A doc link is not an import.
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((n + 1, name));
            }
            rest = after;
        }
        // `use crate::{a, b}` groups.
        if let Some(group) = line.trim().strip_prefix("use crate::{") {
            for name in group.split(|c: char| !c.is_ascii_alphanumeric() && c != '_') {
                if !name.is_empty() && name.chars().next().is_some_and(char::is_lowercase) {
                    out.push((n + 1, name.to_string()));
                }
            }
        }
    }
    out
}

/// The top-level module of `crate_dir/src` a file belongs to.
fn top_module(path: &Path, src: &Path) -> Option<String> {
    core_module(path, src).filter(|m| m != "main")
}

/// A cycle among the top-level modules of the crate at `crate_dir`
/// through `crate::` references, if there is one.
fn import_cycle(crate_dir: &str) -> Option<Vec<String>> {
    let src = workspace_root().join(crate_dir).join("src");
    let mut edges: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for path in rust_files().iter().filter(|p| p.starts_with(&src)) {
        let Some(from) = top_module(path, &src) else {
            continue;
        };
        let targets = edges.entry(from.clone()).or_default();
        for (_, to) in crate_uses(&product_code(path)) {
            if to != from {
                targets.insert(to);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, std::collections::BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = std::collections::BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, &edges, &mut Vec::new(), &mut done))
}

#[test]
fn xtask_and_pypi_mirror_have_no_import_cycle() {
    for krate in ["xtask", "crates/pypi-mirror"] {
        assert_eq!(
            import_cycle(krate),
            None,
            "{krate}: modules import each other"
        );
    }
}

#[test]
fn the_core_uses_only_lower_layers() {
    let src = workspace_root().join("crates/dib-pypi-core/src");
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for path in rust_files().into_iter().filter(|p| p.starts_with(&src)) {
        if let Some(m) = core_module(&path, &src) {
            modules.entry(m).or_default().push(path);
        }
    }
    let mut wrong = Vec::new();
    for (module, files) in &modules {
        let Some(mine) = layer_of(module) else {
            wrong.push(format!(
                "{module}: in no layer of this test (and of ARCHITECTURE.md)"
            ));
            continue;
        };
        for file in files {
            for (line, used) in crate_uses(&product_code(file)) {
                if &used == module || matches!(used.as_str(), "Error" | "Result") {
                    continue;
                }
                match layer_of(&used) {
                    Some(theirs) if theirs < mine => {}
                    Some(_) => wrong.push(format!(
                        "{}:{line}: {module} uses {used}, which is not in a lower layer",
                        rel(file)
                    )),
                    None => wrong.push(format!("{}:{line}: uses unknown module {used}", rel(file))),
                }
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    assert!(modules.len() >= 18, "only {} modules found", modules.len());
}

/// Backticked names in `text` that are core modules (`journal`,
/// `journal.rs`, `rootfs/`), in order of appearance.
fn modules_named(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, chunk) in text.split('`').enumerate() {
        let name = chunk.trim_end_matches(".rs").trim_end_matches('/');
        if i % 2 == 1 && layer_of(name).is_some() && !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// The layers as a numbered list says them: `N. ...` starts layer N, and
/// every module named up to the next number belongs to it. `lines` is the
/// list's text, one line each (prefixes such as `//! ` removed).
fn numbered_layers<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<Vec<String>> {
    let mut layers: Vec<String> = Vec::new();
    for line in lines {
        let trimmed = line.trim_start();
        let numbered = line == trimmed
            && trimmed
                .split_once(". ")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered {
            layers.push(String::new());
        }
        if let Some(last) = layers.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    layers.iter().map(|l| modules_named(l)).collect()
}

fn sorted(layers: Vec<Vec<String>>) -> Vec<Vec<String>> {
    layers
        .into_iter()
        .map(|mut l| {
            l.sort();
            l
        })
        .collect()
}

fn expected_layers() -> Vec<Vec<String>> {
    sorted(
        LAYERS
            .iter()
            .map(|l| l.iter().map(ToString::to_string).collect())
            .collect(),
    )
}

#[test]
fn lib_rs_and_architecture_md_list_the_layers_of_this_test() {
    let root = workspace_root();
    let lib = fs::read_to_string(root.join("crates/dib-pypi-core/src/lib.rs")).unwrap();
    let doc: Vec<&str> = lib
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or(""))
        .collect();
    assert_eq!(
        sorted(numbered_layers(doc.into_iter())),
        expected_layers(),
        "the layer list in crates/dib-pypi-core/src/lib.rs"
    );
    let arch = fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let code_map: Vec<&str> = arch
        .lines()
        .skip_while(|l| *l != "## Code map")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .take_while(|l| !l.starts_with("Test-only") && !l.starts_with("Elsewhere"))
        .collect();
    assert_eq!(
        sorted(numbered_layers(code_map.into_iter())),
        expected_layers(),
        "the numbered layer list under \"## Code map\" in docs/ARCHITECTURE.md"
    );
}

/// Library modules return errors and warnings as values; only the hook
/// runner prints them.
#[test]
fn no_library_module_logs_an_error() {
    let src = workspace_root().join("crates/dib-pypi-core/src");
    let mut wrong = Vec::new();
    for path in rust_files().into_iter().filter(|p| p.starts_with(&src)) {
        if path == src.join("hook.rs") {
            continue;
        }
        for (n, line) in product_code(&path).lines().enumerate() {
            if line.contains("log::error!") || line.contains("log::warn!") {
                wrong.push(format!("{}:{}: {}", rel(&path), n + 1, line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "errors and warnings are returned, and printed by hook::run_hook:\n{}",
        wrong.join("\n")
    );
}

/// Where the core may use `std::fs`, and why: everywhere else a path is a
/// path in the image, and goes through `rootfs`.
const STD_FS_ALLOWED: &[(&str, &str)] = &[
    (
        "rootfs/mod.rs",
        "files opened there through fds resolved in the image",
    ),
    (
        "rootfs/resolve.rs",
        "the host's /proc/sys/fs/protected_symlinks",
    ),
    (
        "mounter.rs",
        "the host's /proc/self/mountinfo and /proc/self/fd",
    ),
    (
        "stage.rs",
        "the staging directory beside the image, on the host",
    ),
    ("mount.rs", "the host's mirror directory"),
    (
        "certs.rs",
        "the CA and client certificate files on the host",
    ),
];

#[test]
fn the_core_touches_image_paths_only_through_rootfs() {
    let src = workspace_root().join("crates/dib-pypi-core/src");
    let mut wrong = Vec::new();
    for path in rust_files().into_iter().filter(|p| p.starts_with(&src)) {
        let name = path.strip_prefix(&src).unwrap().display().to_string();
        if STD_FS_ALLOWED.iter().any(|(f, _)| *f == name) {
            continue;
        }
        for (n, line) in product_code(&path).lines().enumerate() {
            if line.contains("std::fs") {
                wrong.push(format!("{}:{}: {}", rel(&path), n + 1, line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "std::fs outside the allowed modules:\n{}",
        wrong.join("\n")
    );
}

/// System calls Linux 4.18 does not have. The product may make one only
/// behind a probe with a fallback: `openat2`, in `rootfs/resolve.rs`.
const NEWER_THAN_4_18: &[&str] = &[
    "openat2",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "clone3",
    "close_range",
    "pidfd_open",
    "pidfd_send_signal",
    "faccessat2",
    "io_uring",
    "landlock",
];

#[test]
fn no_syscall_newer_than_linux_4_18_without_its_fallback() {
    let mut wrong = Vec::new();
    for path in rust_files() {
        let r = rel(&path);
        let product = r.starts_with("crates/")
            && r.contains("/src/")
            && !r.contains("crates/pypi-mirror/src/testkit");
        if !product || r == "crates/dib-pypi-core/src/rootfs/resolve.rs" {
            continue;
        }
        for (n, line) in product_code(&path).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for call in NEWER_THAN_4_18 {
                if code.contains(call) {
                    wrong.push(format!("{r}:{}: {call}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// The `[package]` table of a Cargo.toml, or `[project]` of pyproject.toml:
/// its lines up to the next table.
fn table<'a>(text: &'a str, header: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .collect()
}

#[test]
fn one_version_for_every_crate_and_the_wheel() {
    let root = workspace_root();
    let mut manifests = vec![root.join("tests/Cargo.toml"), root.join("xtask/Cargo.toml")];
    for entry in fs::read_dir(root.join("crates")).unwrap() {
        manifests.push(entry.unwrap().path().join("Cargo.toml"));
    }
    let mut wrong = Vec::new();
    for manifest in &manifests {
        let text = fs::read_to_string(manifest).unwrap();
        let versions: Vec<&str> = table(&text, "[package]")
            .into_iter()
            .filter(|l| l.starts_with("version"))
            .collect();
        if versions != ["version.workspace = true"] {
            wrong.push(format!("{}: {versions:?}", rel(manifest)));
        }
    }
    assert!(manifests.len() >= 8, "{manifests:?}");
    let workspace = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        table(&workspace, "[workspace.package]")
            .iter()
            .any(|l| l.starts_with("version = \"")),
        "no [workspace.package] version"
    );
    // maturin takes the wheel's version from pypi-mirror's Cargo.toml.
    let pyproject = fs::read_to_string(root.join("pyproject.toml")).unwrap();
    let project = table(&pyproject, "[project]");
    if !project.contains(&"dynamic = [\"version\"]")
        || project.iter().any(|l| l.starts_with("version"))
    {
        wrong.push("pyproject.toml: [project] must take its version from Cargo.toml (dynamic = [\"version\"])".into());
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}
