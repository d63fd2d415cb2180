//! Helpers for the integration tests: a real chroot image, the assembled element, a real mirror.
//!
//! Everything here needs root (bind mounts, chroot, mknod). Tests call
//! [`require_root`] first, which fails loudly rather than skipping.
// Test support code: a failed setup step should abort the test with a
// message, which is what expect/panic do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod seccomp;

/// Fail (never skip) when not root: these tests are the proof that the real
/// mounts and chroot work, and CI runs as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the element integration tests need root (real bind mounts, chroot, mknod); \
         run them as root, as CI does"
    );
}

fn workspace() -> PathBuf {
    xtask::element::workspace_root()
}

/// The element, assembled once per test run by the same code as
/// `cargo xtask element`.
pub fn element() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        xtask::element::assemble(&workspace().join("target/test-element"))
            .unwrap_or_else(|e| panic!("assembling the element: {e}"))
    })
}

/// A command with the host's pip/uv settings removed (this host sets
/// PIP_FIND_LINKS and friends, which would change what we test).
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("PIP_") || k.starts_with("UV_") || k.starts_with("DIB_") {
            cmd.env_remove(&*k);
        }
    }
    cmd
}

/// Directory holding the uv wheel for this platform, downloaded from PyPI
/// once and cached under target/.
pub fn uv_wheel_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = workspace().join("target/test-cache/uv-wheel");
        let has_wheel = fs::read_dir(&dir)
            .map(|mut d| {
                d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".whl")))
            })
            .unwrap_or(false);
        if !has_wheel {
            let out = clean_command("python3")
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "-d",
                ])
                .arg(&dir)
                .arg("uv")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pip download uv failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

/// A PEP 503 mirror built by `pypi-mirror` from synthetic wheels
/// (plus, optionally, the uv wheel).
pub fn build_mirror(out: &Path, projects: &[&str], with_uv: bool) {
    let wheels = out.with_extension("wheels");
    fs::create_dir_all(&wheels).unwrap();
    for p in projects {
        pypi_mirror::synth::write_wheel(&wheels, p, "1.0").unwrap();
    }
    let mut opts = pypi_mirror::BuildOptions::new(out).from_dir(&wheels);
    if with_uv {
        opts = opts.from_dir(uv_wheel_dir());
    }
    let report = pypi_mirror::build(&opts).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// What one entry of a tree looks like, for exact before/after comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// File content, symlink target, or empty for directories.
    pub data: Vec<u8>,
}

/// Every entry under `root` except the subtrees in `skip` (in-image paths).
pub fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<PathBuf, Snap> {
    fn walk(root: &Path, rel: &Path, skip: &[&str], out: &mut BTreeMap<PathBuf, Snap>) {
        let path = root.join(rel);
        let meta = fs::symlink_metadata(&path).unwrap();
        let inner = Path::new("/").join(rel);
        let data = if meta.file_type().is_symlink() {
            fs::read_link(&path)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if meta.is_file() {
            fs::read(&path).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            inner.clone(),
            Snap {
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                data,
            },
        );
        if meta.is_dir() && !skip.iter().any(|s| Path::new(s) == inner) {
            let mut names: Vec<_> = fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(root, &rel.join(n), skip, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), skip, &mut out);
    out
}

/// Assert two snapshots are equal; the message names `ctx` and lists only
/// the differences.
pub fn assert_tree_eq(
    ctx: &str,
    before: &BTreeMap<PathBuf, Snap>,
    after: &BTreeMap<PathBuf, Snap>,
) {
    let mut diffs = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => diffs.push(format!("missing after: {}", p.display())),
            Some(a) if a != b => diffs.push(format!("changed: {} ({b:?} -> {a:?})", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("extra after: {}", p.display()));
    }
    assert!(
        diffs.is_empty(),
        "{ctx}: tree differs:\n{}",
        diffs.join("\n")
    );
}

/// [`assert_tree_eq`] for the one image of a test.
pub fn assert_same_tree(before: &BTreeMap<PathBuf, Snap>, after: &BTreeMap<PathBuf, Snap>) {
    assert_tree_eq("image", before, after);
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `path` is listed as a mount point in this namespace.
pub fn is_mount_point(path: &Path) -> bool {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    dib_pypi_core::mount::parse_mountinfo(&text)
        .iter()
        .any(|p| p == path)
}

/// Subtrees of an [`Image`] that belong to the harness, not to the image.
pub const HARNESS_MOUNTS: &[&str] = &["/usr", "/proc", "/tmp/in_target.d", "/opt/venvs"];

/// A throw-away image root that can run the host's Python: /usr is a
/// read-only bind of the host's, the rest is a small real tree.
#[derive(Debug)]
pub struct Image {
    dir: tempfile::TempDir,
    mounts: Vec<PathBuf>,
}

impl Image {
    /// A new image; `var_lib` controls whether /var/lib exists (to test that
    /// the state directory's parents are created and removed).
    pub fn new(var_lib: bool) -> Image {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("dib-pypi-image.")
            .tempdir()
            .unwrap();
        let root = dir.path();
        for d in [
            "usr",
            "proc",
            "dev",
            "etc",
            "tmp/in_target.d",
            "opt/venvs",
            "root",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        if var_lib {
            fs::create_dir_all(root.join("var/lib")).unwrap();
        }
        fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::set_permissions(root.join("root"), fs::Permissions::from_mode(0o700)).unwrap();
        for l in ["bin", "lib", "lib64", "sbin"] {
            std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l)).unwrap();
        }
        for f in ["passwd", "group"] {
            fs::copy(Path::new("/etc").join(f), root.join("etc").join(f)).unwrap();
        }
        for (name, major, minor) in [("null", 1, 3), ("zero", 1, 5), ("urandom", 1, 9)] {
            run_ok(
                Command::new("mknod")
                    .args(["-m", "666"])
                    .arg(root.join("dev").join(name))
                    .args(["c", &major.to_string(), &minor.to_string()]),
            );
        }
        let mut image = Image {
            dir,
            mounts: Vec::new(),
        };
        image.mount(&["--bind", "/usr"], "/usr");
        image.mount(&["-o", "remount,bind,ro"], "/usr");
        image.mount(&["-t", "proc", "proc"], "/proc");
        image
    }

    /// Host path of the image root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Host path of in-image path `inner`.
    pub fn path(&self, inner: &str) -> PathBuf {
        self.root().join(inner.trim_start_matches('/'))
    }

    fn mount(&mut self, args: &[&str], inner: &str) {
        let target = self.path(inner);
        run_ok(Command::new("mount").args(args).arg(&target));
        if !self.mounts.contains(&target) {
            self.mounts.push(target);
        }
    }

    /// Run a hook script of the element outside the chroot (root.d,
    /// cleanup.d), as DIB does: with TARGET_ROOT and the given variables.
    pub fn run_outside(&self, script: &str, env: &[(&str, &str)]) -> Output {
        let mut cmd = clean_command("bash");
        cmd.arg(element().join(script))
            .env("TARGET_ROOT", self.root());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Run a hook script inside the chroot, as DIB does: the element
    /// bind-mounted read-only at /tmp/in_target.d, HOME=/root.
    pub fn run_inside(&mut self, script: &str, env: &[(&str, &str)]) -> Output {
        self.mount(&["--bind", element().to_str().unwrap()], "/tmp/in_target.d");
        self.mount(&["-o", "remount,bind,ro"], "/tmp/in_target.d");
        let out = self.chroot(&["bash", &format!("/tmp/in_target.d/{script}")], env);
        self.unmount("/tmp/in_target.d");
        out
    }

    /// Run `argv` in the chroot with a clean environment plus `env`.
    pub fn chroot(&self, argv: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("chroot");
        cmd.arg(self.root()).arg("/usr/bin/env").arg("-i").args([
            "HOME=/root",
            "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG=C.UTF-8",
        ]);
        for (k, v) in env {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.args(argv).output().unwrap()
    }

    /// Unmount in-image path `inner` (as DIB does before cleanup.d).
    pub fn unmount(&mut self, inner: &str) {
        let target = self.path(inner);
        run_ok(Command::new("umount").arg(&target));
        self.mounts.retain(|m| m != &target);
    }

    /// Snapshot of the image, without the harness's own subtrees.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Snap> {
        snapshot(self.root(), HARNESS_MOUNTS)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // Anything a failed test left mounted, the element's /tmp/pypi
        // included, must go before the temp dir is deleted.
        let pypi = self.path("/tmp/pypi");
        let mut targets: Vec<PathBuf> = self.mounts.drain(..).collect();
        targets.push(pypi);
        for t in targets.iter().rev() {
            while is_mount_point(t) {
                if !Command::new("umount")
                    .arg("-l")
                    .arg(t)
                    .status()
                    .is_ok_and(|s| s.success())
                {
                    break;
                }
            }
        }
    }
}

/// A loopback http server over a directory (the mirror crate's test kit),
/// with the host's python3.
pub fn serve(dir: &Path) -> pypi_mirror::testkit::HttpServer {
    pypi_mirror::testkit::HttpServer::start(dir, Path::new("python3")).unwrap()
}

/// `127.0.0.1:PORT` of a server, as pip's trusted-host lists it.
pub fn host_port(server: &pypi_mirror::testkit::HttpServer) -> String {
    server
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// stdout+stderr of a finished command, as text.
pub fn text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// Assert success, showing all output otherwise.
pub fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        text(out)
    );
}

/// Read a file fully (helper for assertions).
pub fn read(path: &Path) -> String {
    let mut s = String::new();
    fs::File::open(path)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    s
}

// ---------------------------------------------------------------------------
// Hardening helpers: plain image trees driven through the core library, a
// recording fake mounter, and the generated figures of docs/RELIABILITY.md.

/// A plain image tree for tests that call the core library directly (no
/// chroot, no /usr): `/root` (0700), `/tmp` (1777), optionally `/var/lib`.
/// Whatever is still mounted under it is detached on drop.
#[derive(Debug)]
pub struct MiniImage {
    dir: tempfile::TempDir,
}

impl MiniImage {
    pub fn new(var_lib: bool) -> MiniImage {
        let dir = tempfile::Builder::new()
            .prefix("dib-pypi-mini.")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::set_permissions(dir.path().join("root"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(dir.path().join("tmp")).unwrap();
        fs::set_permissions(dir.path().join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        if var_lib {
            fs::create_dir_all(dir.path().join("var/lib")).unwrap();
        }
        MiniImage { dir }
    }

    /// An empty root directory (no /root, /tmp or /var).
    pub fn bare() -> MiniImage {
        let dir = tempfile::Builder::new()
            .prefix("dib-pypi-mini.")
            .tempdir()
            .unwrap();
        MiniImage { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Host path of in-image path `inner`.
    pub fn path(&self, inner: &str) -> PathBuf {
        self.root().join(inner.trim_start_matches('/'))
    }

    /// The image opened as the hooks open it.
    pub fn open(&self) -> dib_pypi_core::rootfs::Root {
        dib_pypi_core::rootfs::Root::open(self.root()).unwrap()
    }

    /// The image opened with crash injection.
    pub fn open_with(
        &self,
        plan: &std::sync::Arc<dib_pypi_core::fault::FaultPlan>,
    ) -> dib_pypi_core::rootfs::Root {
        self.open().with_faults(plan.clone())
    }

    pub fn snapshot(&self) -> BTreeMap<PathBuf, Snap> {
        snapshot(self.root(), &[])
    }

    /// Write in-image file `inner` (parents created) with `mode`.
    pub fn write(&self, inner: &str, data: &[u8], mode: u32) {
        let p = self.path(inner);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
}

impl Drop for MiniImage {
    fn drop(&mut self) {
        unmount_under(self.root());
    }
}

/// Detach every mount at or below `dir` (deepest first).
pub fn unmount_under(dir: &Path) {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = dib_pypi_core::mount::parse_mountinfo(&text)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Mount points of this namespace at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    dib_pypi_core::mount::parse_mountinfo(&text)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// One call a [`FakeMounter`] received, with `/proc/self/fd/N` targets
/// resolved to the host path they stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountCall {
    Bind { source: PathBuf, target: PathBuf },
    RemountReadOnly(PathBuf),
    Unmount(PathBuf),
}

/// A [`dib_pypi_core::mount::Mounter`] that mounts nothing but records
/// every call and keeps its own table of what would be mounted. Failures
/// and crash points can be injected.
#[derive(Debug, Default)]
pub struct FakeMounter {
    calls: std::sync::Mutex<Vec<MountCall>>,
    mounted: std::sync::Mutex<Vec<PathBuf>>,
    pub fail_bind: std::sync::atomic::AtomicBool,
    pub fail_remount: std::sync::atomic::AtomicBool,
    pub fail_unmount: std::sync::atomic::AtomicBool,
    faults: std::sync::Mutex<Option<std::sync::Arc<dib_pypi_core::fault::FaultPlan>>>,
}

impl FakeMounter {
    pub fn calls(&self) -> Vec<MountCall> {
        self.calls.lock().unwrap().clone()
    }

    /// What is mounted now, as host paths.
    pub fn mounted(&self) -> Vec<PathBuf> {
        self.mounted.lock().unwrap().clone()
    }

    /// Pretend something (not us) is mounted at host path `path`.
    pub fn pretend_mounted(&self, path: &Path) {
        self.mounted.lock().unwrap().push(path.to_path_buf());
    }

    /// Make every call a crash point of `plan` (or stop, with `None`).
    pub fn set_faults(&self, plan: Option<std::sync::Arc<dib_pypi_core::fault::FaultPlan>>) {
        *self.faults.lock().unwrap() = plan;
    }

    fn step(&self, what: &str, fail: &std::sync::atomic::AtomicBool) -> std::io::Result<()> {
        if let Some(plan) = self.faults.lock().unwrap().as_ref() {
            if plan.step(what)? {
                return Err(plan.die());
            }
        }
        if fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(nix::libc::EPERM));
        }
        Ok(())
    }
}

fn resolve_magic(path: &Path) -> PathBuf {
    if path.starts_with("/proc/self/fd") {
        fs::read_link(path).unwrap()
    } else {
        path.to_path_buf()
    }
}

impl dib_pypi_core::mount::Mounter for FakeMounter {
    fn bind(&self, source: &Path, target: &Path) -> std::io::Result<()> {
        let target = resolve_magic(target);
        self.calls.lock().unwrap().push(MountCall::Bind {
            source: source.to_path_buf(),
            target: target.clone(),
        });
        self.step("bind", &self.fail_bind)?;
        self.mounted.lock().unwrap().push(target);
        Ok(())
    }

    fn remount_read_only(&self, target: &Path) -> std::io::Result<()> {
        let target = resolve_magic(target);
        self.calls
            .lock()
            .unwrap()
            .push(MountCall::RemountReadOnly(target.clone()));
        self.step("remount read-only", &self.fail_remount)?;
        if self.mounted.lock().unwrap().contains(&target) {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(nix::libc::EINVAL))
        }
    }

    fn unmount(&self, target: &Path) -> std::io::Result<()> {
        let target = resolve_magic(target);
        self.calls
            .lock()
            .unwrap()
            .push(MountCall::Unmount(target.clone()));
        self.step("unmount", &self.fail_unmount)?;
        let mut mounted = self.mounted.lock().unwrap();
        match mounted.iter().rposition(|m| m == &target) {
            Some(i) => {
                mounted.remove(i);
                Ok(())
            }
            None => Err(std::io::Error::from_raw_os_error(nix::libc::EINVAL)),
        }
    }

    fn mount_points(&self) -> std::io::Result<Vec<PathBuf>> {
        Ok(self.mounted())
    }
}

/// One row of a figures table: a family of cases, how many were tried,
/// and what came of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub case: String,
    pub tried: usize,
    pub result: String,
}

impl Row {
    pub fn new(case: impl Into<String>, tried: usize, result: impl Into<String>) -> Row {
        Row {
            case: case.into(),
            tried,
            result: result.into(),
        }
    }
}

/// One section of docs/RELIABILITY.md, owned by one test.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    pub id: &'static str,
    pub title: &'static str,
    pub intro: &'static str,
}

/// Variable that makes the tests rewrite docs/RELIABILITY.md.
pub const UPDATE_RELIABILITY: &str = "UPDATE_RELIABILITY";

const RELIABILITY_HEADER: &str = "# Reliability figures\n\n\
<!-- Generated by tests/hardening.rs: do not edit by hand. -->\n\n\
Every table below is written by the test that ran the cases: the \
hardening tests in `tests/hardening.rs` (run by `cargo test --workspace`) \
compute their figures and fail when this file does not match them. After a \
change that moves a figure, regenerate it with\n\n\
```sh\nUPDATE_RELIABILITY=1 cargo test -p dib-pypi-tests --test element hardening::\n```\n\n\
Random cases use a fixed seed, so the figures are the same on every run. \
The mechanisms they exercise are in `crates/dib-pypi-core`: `rootfs.rs` \
(every path resolved inside the image), `journal.rs` and `undo.rs` \
(write-ahead journal, journaled undo), `state.rs` (the state directory, \
created and removed in crash-safe steps), `fault.rs` (the crash points, \
compiled only into tests).\n";

fn begin_marker(id: &str) -> String {
    format!("<!-- BEGIN {id} -->\n")
}

fn end_marker(id: &str) -> String {
    format!("<!-- END {id} -->\n")
}

fn render_rows(rows: &[Row]) -> String {
    let mut out = String::from("| case | tried | result |\n| --- | ---: | --- |\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            r.case.replace('|', "\\|"),
            r.tried,
            r.result.replace('|', "\\|")
        ));
    }
    out
}

fn section_block(id: &str, rows: &str) -> String {
    format!("{}{rows}{}", begin_marker(id), end_marker(id))
}

fn extract_block(doc: &str, id: &str) -> Option<String> {
    let begin = doc.find(&begin_marker(id))? + begin_marker(id).len();
    let end = doc[begin..].find(&end_marker(id))? + begin;
    Some(doc[begin..end].to_string())
}

fn reliability_path() -> PathBuf {
    workspace().join("docs/RELIABILITY.md")
}

/// Check section `id` of docs/RELIABILITY.md against `rows`, or rewrite it
/// when `UPDATE_RELIABILITY=1`. `sections` fixes the order of the whole
/// file, so concurrent tests always produce the same document.
pub fn record_figures(sections: &[Section], id: &str, rows: &[Row]) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = reliability_path();
    let doc = fs::read_to_string(&path).unwrap_or_default();
    let table = render_rows(rows);
    if std::env::var_os(UPDATE_RELIABILITY).is_some_and(|v| v == "1") {
        let mut out = String::from(RELIABILITY_HEADER);
        for s in sections {
            let body = if s.id == id {
                table.clone()
            } else {
                extract_block(&doc, s.id).unwrap_or_else(|| "(not run yet)\n".into())
            };
            out.push_str(&format!("\n## {}\n\n{}\n\n", s.title, s.intro));
            out.push_str(&section_block(s.id, &body));
        }
        fs::write(&path, out).unwrap();
        return;
    }
    let found = extract_block(&doc, id);
    assert!(
        found.as_deref() == Some(table.as_str()),
        "docs/RELIABILITY.md does not hold the figures this test produced for {id:?}.\n\
         Produced:\n{table}\nIn the file:\n{}\n\
         Regenerate it with: UPDATE_RELIABILITY=1 cargo test -p dib-pypi-tests --test element hardening::",
        found.unwrap_or_else(|| "(no such section)".into())
    );
}

/// The hook binary `name` of the assembled element, as an executable copy
/// (the element ships them without the executable bit).
pub fn hook_binary(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = workspace().join("target/test-hook-bin");
        fs::create_dir_all(&dir).unwrap();
        for bin in xtask::element::BINARIES {
            let to = dir.join(bin);
            fs::copy(element().join(xtask::element::LIBEXEC).join(bin), &to).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    });
    dir.join(name)
}
