//! The tree `build` and `add` produce, incrementally, and how they handle
//! bad input (library API; no Python needed).

// Helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pypi_mirror_testkit::{synth, BuildFrom};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pypi_mirror::indexer::sha256_hex;
use pypi_mirror::{add, build, BuildOptions, ProblemKind};

fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    fs::create_dir_all(&src).unwrap();
    (tmp, src, out)
}

fn read(p: impl AsRef<Path>) -> String {
    fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

fn wheel_metadata(wheel: &Path) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(fs::File::open(wheel).unwrap()).unwrap();
    let name = z
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .find(|n| n.ends_with(".dist-info/METADATA"))
        .unwrap();
    let mut buf = Vec::new();
    z.by_name(&name).unwrap().read_to_end(&mut buf).unwrap();
    buf
}

/// (inode, mtime) of a file, to prove it was not rewritten.
fn identity(p: &Path) -> (u64, SystemTime) {
    let md = fs::metadata(p).unwrap();
    (md.ino(), md.modified().unwrap())
}

#[test]
fn builds_a_pep_503_tree_with_hashes_and_core_metadata() {
    let (_tmp, src, out) = dirs();
    let whl = synth::write_wheel_spec(
        &src,
        &synth::Spec::new("Foo.Bar", "1.0").requires_python(Some(">=3.8,<4")),
    )
    .unwrap();
    let sdist = synth::write_sdist(&src, "Foo.Bar", "1.0").unwrap();
    synth::write_wheel(&src, "baz", "2.0").unwrap();
    fs::write(src.join("README.txt"), "not an archive").unwrap();

    let report = build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!((report.files, report.projects), (3, 2));
    assert!(report.root_written);

    let root = read(out.join("index.html"));
    assert!(root.contains("<a href=\"foo-bar/\">foo-bar</a>"), "{root}");
    assert!(root.contains("<a href=\"baz/\">baz</a>"), "{root}");

    let page = read(out.join("foo-bar/index.html"));
    let wname = "foo_bar-1.0-py3-none-any.whl";
    let wsha = sha256_hex(&fs::read(&whl).unwrap());
    let md = wheel_metadata(&whl);
    let msha = sha256_hex(&md);
    assert!(
        page.contains(&format!(
            "<a href=\"{wname}#sha256={wsha}\" data-requires-python=\"&gt;=3.8,&lt;4\" data-core-metadata=\"sha256={msha}\" data-dist-info-metadata=\"sha256={msha}\">{wname}</a>"
        )),
        "{page}"
    );
    let ssha = sha256_hex(&fs::read(&sdist).unwrap());
    assert!(
        page.contains(&format!(
            "<a href=\"foo_bar-1.0.tar.gz#sha256={ssha}\" data-requires-python=\"&gt;=3.8\">"
        )),
        "{page}"
    );
    // PEP 658: the .metadata file is the wheel's METADATA, byte for byte.
    assert_eq!(
        fs::read(out.join("foo-bar").join(format!("{wname}.metadata"))).unwrap(),
        md
    );
    assert!(!out.join("foo-bar/foo_bar-1.0.tar.gz.metadata").exists());
    // Hard-linked, not copied.
    assert_eq!(
        fs::metadata(out.join("foo-bar").join(wname)).unwrap().ino(),
        fs::metadata(&whl).unwrap().ino()
    );
    assert!(!out.join("README.txt").exists());
}

#[test]
fn rerun_without_changes_reads_and_writes_nothing() {
    let (_tmp, src, out) = dirs();
    for i in 0..5 {
        synth::write_wheel(&src, &format!("p{i}"), "1.0").unwrap();
    }
    build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    let before = [
        identity(&out.join("index.html")),
        identity(&out.join("p3/index.html")),
    ];
    let report = build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    assert_eq!(report.hashed, 0);
    assert_eq!(report.unchanged, 5);
    assert!(report.pages_written.is_empty() && !report.root_written && report.added.is_empty());
    let after = [
        identity(&out.join("index.html")),
        identity(&out.join("p3/index.html")),
    ];
    assert_eq!(before, after);

    // A touched file is re-hashed once, but nothing is rewritten.
    let f = src.join(synth::wheel_filename("p1", "1.0"));
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let report = build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    assert_eq!(report.hashed, 1);
    assert!(report.pages_written.is_empty() && report.updated.is_empty());
    assert_eq!(
        build(&BuildOptions::new(&out).with_source(&src))
            .unwrap()
            .hashed,
        0
    );
}

#[test]
fn add_touches_only_the_changed_project() {
    let (tmp, src, out) = dirs();
    synth::write_wheel(&src, "alpha", "1.0").unwrap();
    synth::write_wheel(&src, "beta", "1.0").unwrap();
    build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    let root_before = identity(&out.join("index.html"));
    let beta_before = identity(&out.join("beta/index.html"));

    let extra = tmp.path().join("extra");
    fs::create_dir_all(&extra).unwrap();
    let new = synth::write_wheel(&extra, "alpha", "2.0").unwrap();
    let report = add(&out, std::slice::from_ref(&new)).unwrap();
    assert!(report.is_clean());
    assert_eq!(report.added, [synth::wheel_filename("alpha", "2.0")]);
    assert_eq!(report.pages_written, ["alpha"]);
    assert!(!report.root_written);
    assert_eq!(identity(&out.join("index.html")), root_before);
    assert_eq!(identity(&out.join("beta/index.html")), beta_before);
    let page = read(out.join("alpha/index.html"));
    assert!(
        page.contains("alpha-1.0-py3-none-any.whl#")
            && page.contains("alpha-2.0-py3-none-any.whl#")
    );

    // A new project also rewrites the root page.
    let gamma = synth::write_sdist(&extra, "gamma", "0.1").unwrap();
    let report = add(&out, &[gamma]).unwrap();
    assert!(report.root_written);
    assert!(read(out.join("index.html")).contains("href=\"gamma/\""));

    // Adding the same file again is a no-op; a later build keeps added files.
    let report = add(&out, &[new]).unwrap();
    assert!(report.added.is_empty() && report.pages_written.is_empty());
    let report = build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    assert_eq!(report.files, 4);
    assert!(report.removed.is_empty());
}

#[test]
fn no_temporary_files_are_left_behind() {
    let (_tmp, src, out) = dirs();
    synth::write_wheel(&src, "alpha", "1.0").unwrap();
    build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    synth::write_wheel(&src, "alpha", "1.1").unwrap();
    build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    let mut names: Vec<String> = fs::read_dir(out.join("alpha"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "alpha-1.0-py3-none-any.whl",
            "alpha-1.0-py3-none-any.whl.metadata",
            "alpha-1.1-py3-none-any.whl",
            "alpha-1.1-py3-none-any.whl.metadata",
            "index.html"
        ]
    );
}

#[test]
fn bad_files_are_reported_and_the_rest_indexed() {
    let (tmp, src, out) = dirs();
    synth::write_wheel(&src, "good", "1.0").unwrap();
    fs::write(
        src.join("broken-1.0-py3-none-any.whl"),
        b"PK\x03\x04 truncated",
    )
    .unwrap();
    fs::write(src.join("broken-1.0.tar.gz"), b"\x1f\x8b garbage").unwrap();
    fs::write(src.join("noversion.whl"), b"x").unwrap();
    // Name in METADATA that does not normalize (invalid under PEP 508).
    let bad = synth::wheel_bytes(&synth::Spec::new("bad name!", "1.0")).unwrap();
    fs::write(src.join("bad_name-1.0-py3-none-any.whl"), bad).unwrap();
    // Same file name in a second directory with different content.
    let other = tmp.path().join("other");
    fs::create_dir_all(&other).unwrap();
    let dup = other.join(synth::wheel_filename("good", "1.0"));
    let different = synth::wheel_bytes(&synth::Spec::new("good", "1.0").requires("x")).unwrap();
    fs::File::create(&dup)
        .unwrap()
        .write_all(&different)
        .unwrap();
    // And an identical copy, which is fine.
    let third = tmp.path().join("third");
    fs::create_dir_all(&third).unwrap();
    synth::write_wheel(&third, "good", "1.0").unwrap();

    let report = build(
        &BuildOptions::new(&out)
            .with_source(&src)
            .with_source(&other)
            .with_source(&third),
    )
    .unwrap();
    assert_eq!(report.files, 1, "{report:?}");
    let mut kinds: Vec<(String, ProblemKind)> = report
        .problems
        .iter()
        .map(|p| {
            (
                p.path.file_name().unwrap().to_string_lossy().into_owned(),
                p.kind,
            )
        })
        .collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        kinds,
        [
            (
                "bad_name-1.0-py3-none-any.whl".to_owned(),
                ProblemKind::InvalidName
            ),
            (
                "broken-1.0-py3-none-any.whl".to_owned(),
                ProblemKind::BrokenArchive
            ),
            ("broken-1.0.tar.gz".to_owned(), ProblemKind::BrokenArchive),
            (
                "good-1.0-py3-none-any.whl".to_owned(),
                ProblemKind::Duplicate
            ),
            ("noversion.whl".to_owned(), ProblemKind::BadFilename),
        ]
    );
    for p in &report.problems {
        let line = p.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(&*p.path.to_string_lossy()), "{line}");
    }
    let dup_msg = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Duplicate)
        .unwrap();
    assert_eq!(dup_msg.path, dup);
    assert!(
        dup_msg.message.contains(&*src.to_string_lossy()),
        "{}",
        dup_msg.message
    );

    // A different file under a name the mirror already serves is refused.
    let report = add(&out, std::slice::from_ref(&dup)).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind, ProblemKind::Conflict);
    assert!(report.added.is_empty());
}

#[test]
fn legacy_zip_sdist_and_sdist_without_pkg_info() {
    let (_tmp, src, out) = dirs();
    // .zip sdist with PKG-INFO naming the project.
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("Legacy.Pkg-0.9/PKG-INFO", o).unwrap();
        z.write_all(
            b"Metadata-Version: 1.1\nName: Legacy.Pkg\nVersion: 0.9\nRequires-Python: >2.7\n",
        )
        .unwrap();
        z.finish().unwrap();
    }
    fs::write(src.join("Legacy.Pkg-0.9.zip"), buf.into_inner()).unwrap();
    // .tar.gz without PKG-INFO: the name comes from the file name.
    let f = fs::File::create(src.join("old_thing-0.1.tar.gz")).unwrap();
    let mut t = tar::Builder::new(flate2::write::GzEncoder::new(
        f,
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_mode(0o644);
    t.append_data(&mut h, "old_thing-0.1/setup.py", &b""[..])
        .unwrap();
    t.into_inner().unwrap().finish().unwrap();

    let report = build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let page = read(out.join("legacy-pkg/index.html"));
    assert!(
        page.contains("href=\"Legacy.Pkg-0.9.zip#sha256=")
            && page.contains("data-requires-python=\"&gt;2.7\""),
        "{page}"
    );
    assert!(read(out.join("old-thing/index.html")).contains("old_thing-0.1.tar.gz"));
}

#[test]
fn rebuilt_file_at_same_path_replaces_and_prune_removes() {
    let (_tmp, src, out) = dirs();
    let a = synth::write_wheel(&src, "alpha", "1.0").unwrap();
    synth::write_wheel(&src, "beta", "1.0").unwrap();
    build(&BuildOptions::new(&out).with_source(&src)).unwrap();

    // Rebuilt in place with different metadata: replaced, not a conflict.
    fs::remove_file(&a).unwrap();
    synth::write_wheel_spec(
        &src,
        &synth::Spec::new("alpha", "1.0").requires_python(Some(">=3.10")),
    )
    .unwrap();
    let report = build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.updated, ["alpha-1.0-py3-none-any.whl"]);
    assert_eq!(report.pages_written, ["alpha"]);
    assert!(read(out.join("alpha/index.html")).contains("&gt;=3.10"));

    // Without --prune a vanished source keeps its file; with it, it goes.
    fs::remove_file(src.join("beta-1.0-py3-none-any.whl")).unwrap();
    let report = build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    assert_eq!(report.files, 2);
    let mut opts = BuildOptions::new(&out).with_source(&src);
    opts.prune = true;
    let report = build(&opts).unwrap();
    assert_eq!(report.removed, ["beta-1.0-py3-none-any.whl"]);
    assert!(report.root_written);
    assert!(!out.join("beta").exists());
    assert!(!read(out.join("index.html")).contains("beta"));
}

#[test]
fn deleted_pages_and_files_in_the_tree_are_repaired() {
    let (_tmp, src, out) = dirs();
    synth::write_wheel(&src, "alpha", "1.0").unwrap();
    build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    fs::remove_file(out.join("alpha/index.html")).unwrap();
    fs::remove_file(out.join("alpha/alpha-1.0-py3-none-any.whl.metadata")).unwrap();
    let report = build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    assert!(report.is_clean());
    assert_eq!(report.updated, ["alpha-1.0-py3-none-any.whl"]);
    assert!(out.join("alpha/index.html").exists());
    assert!(out
        .join("alpha/alpha-1.0-py3-none-any.whl.metadata")
        .exists());
}

#[test]
fn default_source_is_the_mirror_itself() {
    let (_tmp, _src, out) = dirs();
    fs::create_dir_all(&out).unwrap();
    // Archives dropped straight into the mirror directory get indexed.
    synth::write_wheel(&out, "dropped", "1.0").unwrap();
    let report = build(&BuildOptions::new(&out)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.added, ["dropped-1.0-py3-none-any.whl"]);
    assert!(out.join("dropped/dropped-1.0-py3-none-any.whl").exists());
    // The tree copies are now sources too and are recognised as unchanged.
    let report = build(&BuildOptions::new(&out)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.hashed, 0);
}

#[test]
fn mirror_nested_in_a_source_dir_is_not_indexed_into_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().to_owned();
    let out = src.join("mirror");
    synth::write_wheel(&src, "alpha", "1.0").unwrap();
    build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    let report = build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!((report.files, report.hashed), (1, 0));
}

#[test]
fn symlinked_sources_are_linked_by_target_not_as_symlinks() {
    let (tmp, src, out) = dirs();
    let real = tmp.path().join("real");
    fs::create_dir_all(&real).unwrap();
    let whl = synth::write_wheel(&real, "alpha", "1.0").unwrap();
    let name = whl.file_name().unwrap();
    std::os::unix::fs::symlink(&whl, src.join(name)).unwrap();
    let report = build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let placed = out.join("alpha").join(name);
    let md = fs::symlink_metadata(&placed).unwrap();
    assert!(md.file_type().is_file(), "{md:?}");
    assert_eq!(md.ino(), fs::metadata(&whl).unwrap().ino());
}

#[test]
fn same_file_given_twice_and_vanished_tree_copy() {
    let (tmp, src, out) = dirs();
    let a = synth::write_wheel(&src, "alpha", "1.0").unwrap();
    let report = add(&out, &[a.clone(), a.clone()]).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.added.len(), 1);

    // The tree copy is deleted by hand and a different file of the same name
    // turns up elsewhere: nothing is overridden, so it is taken.
    fs::remove_file(out.join("alpha").join(a.file_name().unwrap())).unwrap();
    let other = tmp.path().join("other");
    fs::create_dir_all(&other).unwrap();
    let b =
        synth::write_wheel_spec(&other, &synth::Spec::new("alpha", "1.0").requires("x")).unwrap();
    let report = add(&out, std::slice::from_ref(&b)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.updated.len(), 1);
    let page = read(out.join("alpha/index.html"));
    assert!(page.contains(&sha256_hex(&fs::read(&b).unwrap())), "{page}");
}

#[test]
fn copies_when_hard_links_are_impossible() {
    // /dev/shm (tmpfs) and the target directory are different file systems
    // on Linux hosts; where that is not so there is nothing to test.
    let shm = Path::new("/dev/shm");
    let Ok(shm_md) = fs::metadata(shm) else {
        eprintln!("no /dev/shm, skipping");
        return;
    };
    let src = tempfile::tempdir_in(shm).unwrap();
    let out_parent = tempfile::tempdir_in(pypi_mirror_testkit::target_dir()).unwrap();
    if fs::metadata(out_parent.path()).unwrap().dev() == shm_md.dev() {
        eprintln!("/dev/shm is on the target's file system, skipping");
        return;
    }
    let whl = synth::write_wheel(src.path(), "alpha", "1.0").unwrap();
    let out = out_parent.path().join("out");
    let report = build(&BuildOptions::new(&out).with_source(src.path())).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let placed = out.join("alpha").join(whl.file_name().unwrap());
    assert_ne!(
        fs::metadata(&placed).unwrap().ino(),
        fs::metadata(&whl).unwrap().ino()
    );
    assert_eq!(fs::read(&placed).unwrap(), fs::read(&whl).unwrap());
    // The source's stamp is what is remembered, so a re-run is a no-op.
    let report = build(&BuildOptions::new(&out).with_source(src.path())).unwrap();
    assert_eq!(report.hashed, 0);
}

#[test]
fn readers_never_see_a_partial_page() {
    let (tmp, src, out) = dirs();
    synth::write_wheel(&src, "alpha", "0.1").unwrap();
    build(&BuildOptions::new(&out).with_source(&src)).unwrap();
    let page = out.join("alpha/index.html");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = read(&page);
                assert!(
                    text.starts_with("<!DOCTYPE html>") && text.ends_with("</html>\n"),
                    "partial page read: {text:?}"
                );
                reads += 1;
            }
            reads
        });
        let extra = tmp.path().join("extra");
        fs::create_dir_all(&extra).unwrap();
        for i in 1..=40 {
            let w = synth::write_wheel(&extra, "alpha", &format!("1.{i}")).unwrap();
            assert!(add(&out, &[w]).unwrap().is_clean());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
    assert_eq!(read(&page).matches("<a href=").count(), 41);
}

#[test]
fn concurrent_runs_on_one_mirror_are_serialised() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let srcs: Vec<PathBuf> = (0..2)
        .map(|i| {
            let d = tmp.path().join(format!("src{i}"));
            fs::create_dir_all(&d).unwrap();
            for j in 0..30 {
                synth::write_wheel(&d, &format!("p{i}x{j}"), "1.0").unwrap();
            }
            d
        })
        .collect();
    std::thread::scope(|s| {
        for src in &srcs {
            let out = &out;
            s.spawn(move || {
                let r = build(&BuildOptions::new(out).with_source(src)).unwrap();
                assert!(r.is_clean(), "{:?}", r.problems);
            });
        }
    });
    // Neither run lost the other's files, in the tree or in the state.
    let root = read(out.join("index.html"));
    assert_eq!(root.matches("<a href=").count(), 60, "{root}");
    let report = build(
        &BuildOptions::new(&out)
            .with_source(&srcs[0])
            .with_source(&srcs[1]),
    )
    .unwrap();
    assert_eq!((report.files, report.hashed), (60, 0));
}

#[test]
fn extracts_metadata_from_synthetic_wheel_and_sdists() {
    let dir = tempfile::tempdir().unwrap();
    let whl = synth::write_wheel(dir.path(), "Foo.Bar", "1.2").unwrap();
    let fname = whl.file_name().unwrap().to_str().unwrap().to_owned();
    let bytes = std::fs::read(&whl).unwrap();
    let md = pypi_mirror::metadata::wheel_metadata(std::io::Cursor::new(&bytes), &fname).unwrap();
    let parsed = pypi_mirror::metadata::parse(&md);
    assert_eq!(parsed.name.as_deref(), Some("Foo.Bar"));
    assert_eq!(parsed.version.as_deref(), Some("1.2"));
    assert_eq!(parsed.requires_python.as_deref(), Some(">=3.8"));

    let sdist = synth::write_sdist(dir.path(), "Foo.Bar", "1.2").unwrap();
    let md = pypi_mirror::metadata::targz_pkg_info(std::fs::File::open(&sdist).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        pypi_mirror::metadata::parse(&md).name.as_deref(),
        Some("Foo.Bar")
    );
}
