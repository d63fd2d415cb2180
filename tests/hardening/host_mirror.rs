//! The host's mirror, mounted read-only in the image, under every wipe tried from the host side and from the chroot.

use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use dib_pypi_core::layout::with_suffix;
use dib_pypi_core::mount::{mount_mirror, MountOutcome};
use dib_pypi_core::mounter::SystemMounter;
use dib_pypi_core::restore::restore;
use dib_pypi_tests::{
    assert_tree_eq, mounts_under, record_figures, require_root, snapshot, Image, MiniImage, Row,
};

use super::{home, mirror_source, SECTIONS};

#[test]
fn the_host_mirror_survives_wipes_of_the_image() {
    require_root();
    let mirror = mirror_source();
    let mirror_before = snapshot(mirror.path(), &[]);
    let img = MiniImage::new();
    let before = img.snapshot();
    let root = img.open();
    assert_eq!(
        mount_mirror(&root, mirror.path(), &SystemMounter).unwrap(),
        MountOutcome::Mounted
    );
    let m = img.path("/tmp/pypi");
    let files: Vec<PathBuf> = mirror_before
        .iter()
        .filter(|(_, s)| s.mode & 0o170000 == 0o100000)
        .map(|(p, _)| m.join(p.strip_prefix("/").unwrap()))
        .collect();
    let dirs: Vec<PathBuf> = mirror_before
        .iter()
        .filter(|(p, s)| s.mode & 0o170000 == 0o040000 && *p != Path::new("/"))
        .map(|(p, _)| m.join(p.strip_prefix("/").unwrap()))
        .collect();

    type Attempt = Box<dyn Fn() -> std::io::Result<()>>;
    let mut attempts: Vec<(String, Attempt)> = Vec::new();
    let add = |attempts: &mut Vec<(String, Attempt)>, name: String, f: Attempt| {
        attempts.push((name, f));
    };
    for f in &files {
        let f1 = f.clone();
        add(
            &mut attempts,
            format!("unlink {}", f.display()),
            Box::new(move || std::fs::remove_file(&f1)),
        );
        let f2 = f.clone();
        add(
            &mut attempts,
            format!("truncate {}", f.display()),
            Box::new(move || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&f2)
                    .map(drop)
            }),
        );
        let f3 = f.clone();
        add(
            &mut attempts,
            format!("append to {}", f.display()),
            Box::new(move || std::fs::OpenOptions::new().append(true).open(&f3).map(drop)),
        );
        let f4 = f.clone();
        add(
            &mut attempts,
            format!("chmod {}", f.display()),
            Box::new(move || std::fs::set_permissions(&f4, std::fs::Permissions::from_mode(0o777))),
        );
        let f5 = f.clone();
        add(
            &mut attempts,
            format!("chown {}", f.display()),
            Box::new(move || chown(&f5, Some(1), Some(1))),
        );
        let f6 = f.clone();
        add(
            &mut attempts,
            format!("rename {}", f.display()),
            Box::new(move || std::fs::rename(&f6, with_suffix(&f6, ".x"))),
        );
        let f7 = f.clone();
        add(
            &mut attempts,
            format!("hard link {}", f.display()),
            Box::new(move || std::fs::hard_link(&f7, with_suffix(&f7, ".link"))),
        );
    }
    for d in dirs.iter().chain([&m]) {
        let d1 = d.clone();
        add(
            &mut attempts,
            format!("create a file in {}", d.display()),
            Box::new(move || std::fs::write(d1.join("intruder"), "x")),
        );
        let d2 = d.clone();
        add(
            &mut attempts,
            format!("mkdir in {}", d.display()),
            Box::new(move || std::fs::create_dir(d2.join("newdir"))),
        );
        let d3 = d.clone();
        add(
            &mut attempts,
            format!("symlink in {}", d.display()),
            Box::new(move || symlink("/etc", d3.join("l"))),
        );
        let d4 = d.clone();
        add(
            &mut attempts,
            format!("rmdir {}", d.display()),
            Box::new(move || std::fs::remove_dir(&d4)),
        );
        let d5 = d.clone();
        add(
            &mut attempts,
            format!("rename {}", d.display()),
            Box::new(move || std::fs::rename(&d5, with_suffix(&d5, ".x"))),
        );
        let d6 = d.clone();
        add(
            &mut attempts,
            format!("remove_dir_all {}", d.display()),
            Box::new(move || std::fs::remove_dir_all(&d6)),
        );
    }
    let tmp = img.path("/tmp");
    let t1 = tmp.clone();
    add(
        &mut attempts,
        "remove_dir_all of the image's /tmp".into(),
        Box::new(move || std::fs::remove_dir_all(&t1)),
    );
    for argv in [vec!["rm", "-rf"], vec!["find"]] {
        let t = tmp.clone();
        let name = format!("{} on the image's /tmp", argv.join(" "));
        add(
            &mut attempts,
            name,
            Box::new(move || {
                let mut cmd = Command::new(argv[0]);
                cmd.args(&argv[1..]).arg(&t);
                if argv[0] == "find" {
                    cmd.arg("-delete");
                }
                let out = cmd.output()?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(std::io::Error::other(
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    ))
                }
            }),
        );
    }

    let host_side = attempts.len();
    let succeeded: Vec<&str> = attempts
        .iter()
        .filter(|(_, f)| f().is_ok())
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(succeeded.is_empty(), "succeeded: {succeeded:?}");
    assert_tree_eq(
        "the mirror after host-side wipes",
        &mirror_before,
        &snapshot(mirror.path(), &[]),
    );
    restore(&root, &SystemMounter, home()).unwrap();
    assert!(mounts_under(img.root()).is_empty());
    assert_tree_eq("the image", &before, &img.snapshot());

    // Inside a real chroot, through the real root.d hook.
    let mut image = Image::new();
    let cache = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cache.path().join("pypi")).unwrap();
    let cached = cache.path().join("pypi/mirror");
    std::fs::rename(mirror.path(), &cached).unwrap();
    let out = image.run_outside(
        "root.d/50-pypi-mirror-mount",
        &[("DIB_IMAGE_CACHE", cache.path().to_str().unwrap())],
    );
    dib_pypi_tests::assert_ok("root.d", &out);
    let inside: &[&[&str]] = &[
        &["rm", "-rf", "/tmp/pypi"],
        &["rm", "-rf", "/tmp"],
        &["find", "/tmp/pypi", "-delete"],
        &["sh", "-c", "echo x > /tmp/pypi/index.html"],
        &["sh", "-c", "mv /tmp/pypi/dibtest-a /tmp/stolen"],
        &["python3", "-c", "import shutil; shutil.rmtree('/tmp/pypi')"],
    ];
    for argv in inside {
        let out = image.chroot(argv, &[]);
        assert!(!out.status.success(), "{argv:?} succeeded");
    }
    assert_tree_eq(
        "the mirror after wipes in the chroot",
        &mirror_before,
        &snapshot(&cached, &[]),
    );
    image.unmount("/tmp/pypi");
    dib_pypi_tests::assert_ok(
        "cleanup.d",
        &image.run_outside("cleanup.d/99-pypi-restore", &[]),
    );

    record_figures(
        SECTIONS,
        "host-mirror",
        &[
            Row::new(
                format!(
                    "destructive operations on the mounted mirror ({} files, {} directories) from the host side, as root",
                    files.len(),
                    dirs.len() + 1
                ),
                host_side,
                format!("0/{host_side} succeeded; mirror unchanged"),
            ),
            Row::new(
                "wipes from inside the chroot (rm -rf, find -delete, shutil.rmtree, overwrite, mv)",
                inside.len(),
                format!("0/{} succeeded; mirror unchanged", inside.len()),
            ),
        ],
    );
}
