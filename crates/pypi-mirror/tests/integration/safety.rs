//! pypi-mirror must never lose what it holds: `--prune` against unreadable
//! sources, recorded files, dry runs, refused file names, and bad input that
//! must change nothing. Real files, the real binary, and real pip for the
//! end-to-end case.

// Helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pypi_mirror_testkit::{self as testkit, synth, BuildFrom};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pypi_mirror::indexer::sha256_hex;
use pypi_mirror::{add, add_with, build, AddOptions, BuildOptions, ProblemKind};

const ALPHA: &str = "alpha-1.0-py3-none-any.whl";
const BETA: &str = "beta-1.0-py3-none-any.whl";

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pypi-mirror"));
    cmd.env_remove("PYPI_MIRROR_LOG").env_remove("RUST_LOG");
    cmd
}

/// `pypi-mirror build FLAGS --from SRC --out OUT`, run to the end.
fn build_cli(flags: &[&str], src: &Path, out: &Path) -> Output {
    bin()
        .arg("build")
        .args(flags)
        .arg("--from")
        .arg(src)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir` (state and lock included) with its inode, mtime
/// and content hash: equal snapshots mean nothing was touched.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, i64, i64, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let md = fs::symlink_metadata(&path).unwrap();
            if md.is_dir() {
                stack.push(path.clone());
            }
            let hash = if md.is_file() {
                sha256_hex(&fs::read(&path).unwrap())
            } else {
                String::new()
            };
            let rel = path.strip_prefix(dir).unwrap().to_owned();
            out.insert(rel, (md.ino(), md.mtime(), md.mtime_nsec(), hash));
        }
    }
    out
}

/// `tmp/src` with alpha and beta 1.0, built into `tmp/out`.
fn mirror_of_two() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    fs::create_dir_all(&src).unwrap();
    synth::write_wheel(&src, "alpha", "1.0").unwrap();
    synth::write_wheel(&src, "beta", "1.0").unwrap();
    let report = build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    assert_eq!(report.added, [ALPHA, BETA]);
    (tmp, src, out)
}

fn page(out: &Path, project: &str) -> String {
    fs::read_to_string(out.join(project).join("index.html")).unwrap_or_default()
}

#[test]
fn a_mistyped_source_with_prune_changes_nothing() {
    let (tmp, _src, out) = mirror_of_two();
    let before = snapshot(&out);
    let o = bin()
        .current_dir(tmp.path())
        .args(["build", "--from", "scr", "--prune", "--out", "out"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "pypi-mirror: error: scr: cannot read the source directory: No such file or directory (os error 2)\n"
    );
    assert_eq!(snapshot(&out), before);
}

#[test]
fn prune_removes_nothing_when_a_file_was_skipped_and_says_what_it_would_remove() {
    let (_tmp, src, out) = mirror_of_two();
    fs::remove_file(src.join(BETA)).unwrap();
    fs::write(src.join("broken-1.0-py3-none-any.whl"), b"not a zip").unwrap();
    let o = build_cli(&["--prune"], &src, &out);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let warning = err
        .lines()
        .find(|l| l.starts_with("pypi-mirror: warn: --prune removed nothing"))
        .unwrap_or_else(|| panic!("no prune warning in {err}"));
    assert!(
        warning.ends_with(&format!("It would remove: {BETA}")),
        "{warning}"
    );
    assert!(out.join("beta").join(BETA).exists());
    assert!(page(&out, "beta").contains(BETA));

    // Once the source is fixed, the same command prunes.
    fs::remove_file(src.join("broken-1.0-py3-none-any.whl")).unwrap();
    let mut opts = BuildOptions::new(&out).with_source(&src);
    opts.prune = true;
    let report = build(&opts).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.removed, [BETA]);
    assert!(report.prune_withheld.is_empty());
    assert!(!out.join("beta").exists());
}

#[test]
fn an_unreadable_file_in_a_source_withholds_prune_too() {
    let (tmp, src, out) = mirror_of_two();
    // beta now reaches the source only through a link that dangles (say, an
    // unmounted disk): it is not readable, so not known to be gone.
    fs::remove_file(src.join(BETA)).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("gone").join(BETA), src.join(BETA)).unwrap();
    let mut opts = BuildOptions::new(&out).with_source(&src);
    opts.prune = true;
    let report = build(&opts).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].kind, ProblemKind::Unreadable);
    assert!(report.removed.is_empty());
    assert_eq!(report.prune_withheld, [BETA]);
    assert_eq!(report.files, 2);
    assert!(out.join("beta").join(BETA).exists());
}

#[test]
fn recorded_files_survive_prune_unless_prune_recorded_says_so() {
    let (tmp, src, out) = mirror_of_two();
    // A caching proxy fetched gamma, recorded it, and its download is gone.
    let cache = tmp.path().join("cache");
    fs::create_dir_all(&cache).unwrap();
    let gamma = synth::write_wheel(&cache, "gamma", "1.0").unwrap();
    let mut opts = AddOptions::new(&out, [&gamma]);
    opts.recorded = true;
    let report = add_with(&opts).unwrap();
    assert_eq!(report.added, ["gamma-1.0-py3-none-any.whl"]);
    fs::remove_file(&gamma).unwrap();

    // Re-indexing the tree itself must not lose the mark.
    assert!(build(&BuildOptions::new(&out)).unwrap().is_clean());

    let mut prune = BuildOptions::new(&out).with_source(&src);
    prune.prune = true;
    let report = build(&prune).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.removed.is_empty(), "{:?}", report.removed);
    assert_eq!(report.kept_recorded, ["gamma-1.0-py3-none-any.whl"]);
    assert!(page(&out, "gamma").contains("gamma-1.0-py3-none-any.whl#sha256="));
    assert!(out.join("gamma/gamma-1.0-py3-none-any.whl").exists());

    // The CLI says why it kept it and how to remove it.
    let o = build_cli(&["--prune"], &src, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--prune kept 1 recorded file(s) that no source has (--prune-recorded removes them too): gamma-1.0-py3-none-any.whl"),
        "{}",
        stderr(&o)
    );

    let o = build_cli(&["--prune-recorded"], &src, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("(0 added, 0 updated, 1 removed"),
        "{}",
        stderr(&o)
    );
    assert!(!out.join("gamma").exists());
    assert!(!fs::read_to_string(out.join("index.html"))
        .unwrap()
        .contains("gamma"));
}

#[test]
fn dry_run_tells_what_would_change_and_changes_nothing() {
    let (tmp, src, out) = mirror_of_two();
    fs::remove_file(src.join(BETA)).unwrap();
    synth::write_wheel(&src, "alpha", "2.0").unwrap();
    let before = snapshot(&out);
    let o = build_cli(&["--prune", "--dry-run"], &src, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for want in [
        "pypi-mirror: would add alpha-2.0-py3-none-any.whl\n",
        &format!("pypi-mirror: would remove {BETA}\n"),
        "dry run, nothing changed; would have 2 files in 1 projects (1 to add, 0 to update, 1 to remove, 1 unchanged; 2 pages to write)",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    assert_eq!(snapshot(&out), before);

    // The same without --prune removes nothing; and the real run then does
    // what the dry run said.
    let mut opts = BuildOptions::new(&out).with_source(&src);
    opts.dry_run = true;
    let report = build(&opts).unwrap();
    assert!(report.dry_run && report.removed.is_empty());
    assert_eq!(report.added, ["alpha-2.0-py3-none-any.whl"]);
    assert_eq!(snapshot(&out), before);
    opts.dry_run = false;
    opts.prune = true;
    let report = build(&opts).unwrap();
    assert_eq!(
        (report.added.as_slice(), report.removed.as_slice()),
        (
            &["alpha-2.0-py3-none-any.whl".to_owned()][..],
            &[BETA.to_owned()][..]
        )
    );

    // A dry run into a mirror that does not exist does not create it.
    let fresh = tmp.path().join("fresh");
    let mut opts = BuildOptions::new(&fresh).with_source(&src);
    opts.dry_run = true;
    let report = build(&opts).unwrap();
    assert_eq!(report.added.len(), 2);
    assert!(!fresh.exists());
    let mut opts = AddOptions::new(&fresh, [src.join(ALPHA)]);
    opts.dry_run = true;
    assert_eq!(add_with(&opts).unwrap().added, [ALPHA]);
    assert!(!fresh.exists());
}

#[test]
fn file_names_pip_would_ignore_are_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    fs::create_dir_all(&src).unwrap();
    let good = synth::write_wheel(&src, "pkg", "1.0").unwrap();
    // A browser's second download of the same wheel.
    fs::copy(&good, src.join("pkg-1.0-py3-none-any (1).whl")).unwrap();
    // A wheel whose file name says pkg but whose metadata says other.
    let other = synth::wheel_bytes(&synth::Spec::new("other", "2.0")).unwrap();
    fs::write(src.join("pkg-2.0-py3-none-any.whl"), other).unwrap();
    // An sdist whose PKG-INFO names another project than its file name.
    let sdist = synth::write_sdist(tmp.path(), "other", "3.0").unwrap();
    fs::copy(&sdist, src.join("pkg-3.0.tar.gz")).unwrap();
    // An sdist whose version is not PEP 440.
    let sdist = synth::write_sdist_spec(tmp.path(), &synth::Spec::new("pkg", "latest")).unwrap();
    fs::copy(&sdist, src.join("pkg-latest.tar.gz")).unwrap();

    let o = bin()
        .current_dir(tmp.path())
        .args(["build", "--from", "src", "--out", "out"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for (file, why) in [
        (
            "pkg-1.0-py3-none-any (1).whl",
            "not a valid wheel file name: white space in the file name; skipped",
        ),
        (
            "pkg-2.0-py3-none-any.whl",
            "the file name is for project \"pkg\" but the metadata says \"other\", so pip would not find it; skipped",
        ),
        (
            "pkg-3.0.tar.gz",
            "the file name is for project \"pkg\" but the metadata says \"other\"",
        ),
        (
            "pkg-latest.tar.gz",
            "not a valid sdist file name: version \"latest\" is not a valid PEP 440 version; skipped",
        ),
    ] {
        // One line, naming the path as given (relative to the source dir).
        let line = format!("pypi-mirror: error: src/{file}: {why}");
        assert!(err.lines().any(|l| l.starts_with(&line)), "{line:?} not in {err}");
    }
    let page = page(&out, "pkg");
    assert_eq!(page.matches("<a href=").count(), 1, "{page}");
    assert!(page.contains("pkg-1.0-py3-none-any.whl#"));
    assert!(!out.join("other").exists());

    let report = add(&out, &[src.join("pkg-2.0-py3-none-any.whl")]).unwrap();
    assert_eq!(report.problems[0].kind, ProblemKind::NameMismatch);
    let report = add(&out, &[src.join("pkg-1.0-py3-none-any (1).whl")]).unwrap();
    assert_eq!(report.problems[0].kind, ProblemKind::BadFilename);
    assert!(report.added.is_empty());
}

#[test]
fn bad_input_gives_one_line_naming_it_and_changes_nothing() {
    let (tmp, src, out) = mirror_of_two();
    let before = snapshot(&out);
    let output = |args: &[&str]| {
        let o = bin().current_dir(tmp.path()).args(args).output().unwrap();
        (o.status.code(), stderr(&o))
    };
    let run = |args: &[&str]| {
        let (code, err) = output(args);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        (code, err)
    };

    // The mirror cannot be created: named as given, not its state dir.
    let (code, err) = run(&["build", "--from", "src", "--out", "/proc/x"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "pypi-mirror: error: /proc/x: cannot create the mirror directory: No such file or directory (os error 2)\n"
    );

    // A file where a source directory should be.
    let (code, err) = run(&[
        "build",
        "--from",
        "src/alpha-1.0-py3-none-any.whl",
        "--out",
        "new",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with("pypi-mirror: error: src/alpha-1.0-py3-none-any.whl: cannot read the source directory: "),
        "{err}"
    );

    // An option value that is no number, and an unknown option.
    let (code, err) = run(&["build", "-j", "many", "--out", "new"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("'many'") && err.contains("--jobs"), "{err}");
    let (code, err) = run(&["build", "--prun", "--out", "new"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--prun") && err.contains("--prune"), "{err}");

    // `add` of a path that is not there: skipped (then the summary), and
    // with nothing else to add the mirror is not even created.
    let (code, err) = output(&["add", "nope-1.0-py3-none-any.whl", "--out", "new"]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("pypi-mirror: error: nope-1.0-py3-none-any.whl: No such file or directory (os error 2); skipped\n"),
        "{err}"
    );
    assert!(err.contains("new: 0 files in 0 projects (0 added, 0 updated, 0 removed, 0 unchanged; 0 pages written)"), "{err}");

    assert!(!tmp.path().join("new").exists());
    assert_eq!(snapshot(&out), before);
    assert!(src.join(ALPHA).exists());
}

#[test]
fn a_damaged_tree_copy_is_dropped_from_the_index_but_never_deleted() {
    let (tmp, _src, out) = mirror_of_two();
    // Added from a directory no build looks at, then its .metadata is
    // deleted by hand: the index cannot serve it as it is.
    let extra = tmp.path().join("extra");
    fs::create_dir_all(&extra).unwrap();
    let gamma = synth::write_wheel(&extra, "gamma", "1.0").unwrap();
    add(&out, std::slice::from_ref(&gamma)).unwrap();
    fs::remove_file(&gamma).unwrap();
    let placed = out.join("gamma/gamma-1.0-py3-none-any.whl");
    fs::remove_file(placed.with_file_name("gamma-1.0-py3-none-any.whl.metadata")).unwrap();

    let other = tmp.path().join("other");
    fs::create_dir_all(&other).unwrap();
    let report = build(&BuildOptions::new(&out).with_source(&other)).unwrap();
    assert_eq!(report.removed, ["gamma-1.0-py3-none-any.whl"]);
    assert!(placed.exists(), "the wheel itself must stay");
    assert!(!fs::read_to_string(out.join("index.html"))
        .unwrap()
        .contains("gamma"));

    // And it can be indexed again from where it is.
    let report = add(&out, std::slice::from_ref(&placed)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(page(&out, "gamma").contains("data-core-metadata"));
}

#[test]
fn pip_installs_a_recorded_file_after_prune() {
    // End to end: what `serve` will rely on.
    let tools = testkit::tools_venv().unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("pypi-mirror-safety-")
        .tempdir_in(testkit::target_dir())
        .unwrap();
    let src = tmp.path().join("src");
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("mirror");
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&cache).unwrap();
    synth::write_wheel(&src, "synth-local", "1.0").unwrap();
    let fetched = synth::write_wheel(&cache, "synth-fetched", "1.0").unwrap();
    build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    let mut opts = AddOptions::new(&out, [&fetched]);
    opts.recorded = true;
    assert!(add_with(&opts).unwrap().is_clean());
    fs::remove_dir_all(&cache).unwrap();
    let mut prune = BuildOptions::new(&out).with_source(&src);
    prune.prune = true;
    assert!(build(&prune).unwrap().removed.is_empty());

    let target = tmp.path().join("target");
    let o = tools
        .pip()
        .args(["install", "--no-cache-dir", "--index-url"])
        .arg(testkit::file_url(&out))
        .arg("--target")
        .arg(&target)
        .arg("synth-fetched")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = testkit::isolated(&tools.python)
        .env("PYTHONPATH", &target)
        .args(["-m", "synth_fetched"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        synth::expected_output("synth-fetched", "1.0")
    );
}

/// A small tmpfs, unmounted (lazily) when dropped.
struct SmallTmpfs(PathBuf);

impl SmallTmpfs {
    /// Needs root: it mounts. Fails, never skips, without it (CI is root).
    fn mount(dir: &Path) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test mounts a tmpfs to fill it up: run it as root, as CI does"
        );
        fs::create_dir_all(dir).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=8m"),
        )
        .unwrap();
        Self(dir.to_owned())
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Write `path` until the file system is full (hard links and new empty
/// files still fit; writing a byte does not).
fn fill_up(path: &Path) {
    use std::io::Write;
    let mut f = fs::File::create(path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0u8; chunk];
        loop {
            match f.write_all(&buf).and_then(|()| f.sync_data()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
    }
}

#[test]
fn a_file_whose_page_cannot_be_written_is_withdrawn_never_left_unlisted() {
    let t = tempfile::Builder::new()
        .prefix("pypi-mirror-enospc-")
        .tempdir_in(testkit::target_dir())
        .unwrap();
    let fs_root = t.path().join("fs");
    let _tmpfs = SmallTmpfs::mount(&fs_root);
    let (src, out) = (fs_root.join("src"), fs_root.join("out"));
    fs::create_dir_all(&src).unwrap();
    let wheel = synth::write_wheel(&src, "alpha", "1.0").unwrap();
    assert!(add(&out, &[wheel]).unwrap().is_clean());
    // An sdist of the same project on the same file system: placing it is
    // a hard link (no data written); its page needs room, and none is left.
    let sdist = synth::write_sdist(&src, "alpha", "2.0").unwrap();
    let placed = out.join("alpha").join(sdist.file_name().unwrap());
    let page_before = fs::read(out.join("alpha/index.html")).unwrap();
    let state_before = fs::read(out.join(".pypi-mirror/state")).unwrap();
    fill_up(&fs_root.join("filler"));

    let err = add(&out, std::slice::from_ref(&sdist)).unwrap_err();
    assert!(err.to_string().contains("index.html"), "{err}");
    assert!(!placed.exists(), "placed but never listed");
    assert_eq!(fs::read(out.join("alpha/index.html")).unwrap(), page_before);
    assert_eq!(
        fs::read(out.join(".pypi-mirror/state")).unwrap(),
        state_before
    );
    assert!(sdist.exists(), "the source is not ours to remove");

    // With room again, the same add lists it.
    fs::remove_file(fs_root.join("filler")).unwrap();
    assert!(add(&out, &[sdist]).unwrap().is_clean());
    assert!(placed.exists());
    let page = fs::read_to_string(out.join("alpha/index.html")).unwrap();
    assert!(page.contains("alpha-2.0.tar.gz"), "{page}");
}
