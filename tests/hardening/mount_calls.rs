//! The exact mount calls of root.d and cleanup.d, with failures injected at each of them.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use dib_pypi_core::mount::{mount_mirror, MountOutcome};
use dib_pypi_core::mounter::Mounter;
use dib_pypi_core::restore::restore;
use dib_pypi_tests::{
    assert_tree_eq, record_figures, require_root, FakeMounter, MiniImage, MountCall, Row,
};

use super::{home, SECTIONS};

/// The calls of a staged mount of `source` at `mp`, up to the bind.
fn staged(stage: &Path, source: &Path) -> Vec<MountCall> {
    vec![
        MountCall::Tmpfs(stage.to_path_buf()),
        MountCall::MakePrivate(stage.to_path_buf()),
        MountCall::Bind {
            source: source.to_path_buf(),
            target: stage.join("mirror"),
        },
    ]
}

/// Expected calls: the staged bind, then `rest`.
fn then(mut calls: Vec<MountCall>, rest: &[MountCall]) -> Vec<MountCall> {
    calls.extend_from_slice(rest);
    calls
}

/// root.d with one call of the fake made to fail: the error names the
/// step, the calls are exactly `expected`, and nothing is left (no mount,
/// no staging directory, the tree as before).
fn failing(
    img: &MiniImage,
    source: &Path,
    fail: impl Fn(&FakeMounter) -> &AtomicBool,
    error: &str,
    expected: &[MountCall],
) {
    let before = img.snapshot();
    let fake = FakeMounter::default();
    fail(&fake).store(true, Ordering::SeqCst);
    let e = mount_mirror(&img.open(), source, &fake)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(error), "{e}");
    assert!(!e.contains('\n'), "{e}");
    assert_eq!(fake.calls(), expected, "{error}");
    assert!(fake.mounted().is_empty(), "{error}: {:?}", fake.mounted());
    assert!(!img.stage().exists(), "{error}: staging directory left");
    assert_tree_eq(error, &before, &img.snapshot());
}

#[test]
fn mount_calls_are_exact_and_failures_are_rolled_back() {
    require_root();
    let source = std::env::temp_dir();
    let mut rows = Vec::new();
    let mut row = |case: &str, result: &str| rows.push(Row::new(case, 1, result));

    // The normal sequence, a second root.d, cleanup.
    let img = MiniImage::new();
    let before = img.snapshot();
    let mp = img.path("/tmp/pypi");
    let stage = img.stage();
    let mirror = stage.join("mirror");
    let fake = FakeMounter::default();
    let root = img.open();
    assert_eq!(
        mount_mirror(&root, &source, &fake).unwrap(),
        MountOutcome::Mounted
    );
    let ro = MountCall::RemountReadOnly(mirror.clone());
    let moved = MountCall::Move {
        from: mirror.clone(),
        to: mp.clone(),
    };
    let unstage = MountCall::Unmount(stage.clone());
    let first = then(
        staged(&stage, &source),
        &[ro.clone(), moved.clone(), unstage.clone()],
    );
    assert_eq!(fake.calls(), first);
    assert!(fake.writable_under(img.root()).is_empty());
    assert!(!stage.exists());
    assert_eq!(
        mount_mirror(&root, &source, &fake).unwrap(),
        MountOutcome::AlreadyMounted
    );
    let again = then(first.clone(), &[MountCall::RemountReadOnly(mp.clone())]);
    assert_eq!(fake.calls(), again);
    restore(&root, &fake, home()).unwrap();
    assert_eq!(fake.calls(), then(again, &[MountCall::Unmount(mp.clone())]));
    assert_tree_eq("normal", &before, &img.snapshot());
    row(
        "root.d, root.d again, cleanup.d",
        "calls exactly: private tmpfs beside the image, bind there, remount read-only, \
         move into the image, unmount the tmpfs; remount read-only (no second bind); unmount. \
         Tree restored",
    );

    failing(
        &img,
        &source,
        |f| &f.fail_bind,
        "bind-mount mirror on ",
        &then(staged(&stage, &source), std::slice::from_ref(&unstage)),
    );
    row(
        "bind fails",
        "one-line error; calls exactly: tmpfs, private, bind, unmount the tmpfs; \
         nothing left in or beside the image",
    );

    failing(
        &img,
        &source,
        |f| &f.fail_remount,
        "make read-only ",
        &then(
            staged(&stage, &source),
            &[
                ro.clone(),
                MountCall::Unmount(mirror.clone()),
                unstage.clone(),
            ],
        ),
    );
    row(
        "remount read-only fails",
        "one-line error; the writable bind never reaches the image; calls exactly: tmpfs, \
         private, bind, remount, unmount the bind, unmount the tmpfs; nothing left",
    );

    failing(
        &img,
        &source,
        |f| &f.fail_move,
        "move the read-only mirror to ",
        &then(
            staged(&stage, &source),
            &[
                ro.clone(),
                moved.clone(),
                MountCall::Unmount(mirror.clone()),
                unstage.clone(),
            ],
        ),
    );
    row(
        "moving the mount into the image fails",
        "one-line error; calls exactly: tmpfs, private, bind, remount, move, unmount the bind, \
         unmount the tmpfs; mount point and state directory removed",
    );

    // remount and unmount fail: the staged mount cannot be taken down, so
    // its directory is kept (never removed under a mount); nothing reached
    // the image, and a later cleanup clears the stage.
    let fake = FakeMounter::default();
    fake.fail_remount.store(true, Ordering::SeqCst);
    fake.fail_unmount.store(true, Ordering::SeqCst);
    assert!(mount_mirror(&root, &source, &fake).is_err());
    assert!(mirror.is_dir());
    assert_eq!(fake.mounted(), [stage.clone(), mirror.clone()]);
    assert!(fake.writable_under(img.root()).is_empty());
    fake.fail_unmount.store(false, Ordering::SeqCst);
    restore(&root, &fake, home()).unwrap();
    assert!(fake.mounted().is_empty());
    assert!(!stage.exists());
    assert_tree_eq("remount and unmount fail", &before, &img.snapshot());
    row(
        "remount and the rollback's unmounts fail",
        "the staging directory is kept with its mounts, outside the image; \
         a later cleanup unmounts them and removes it",
    );

    // Someone else's mount at /tmp/pypi.
    std::fs::create_dir(&mp).unwrap();
    let before_other = img.snapshot();
    let fake = FakeMounter::default();
    fake.pretend_mounted(&mp);
    let e = mount_mirror(&root, &source, &fake).unwrap_err().to_string();
    assert!(
        e.ends_with("tmp/pypi: something else is already mounted here"),
        "{e}"
    );
    assert!(fake.calls().is_empty());
    assert_tree_eq("foreign mount", &before_other, &img.snapshot());
    restore(&root, &fake, home()).unwrap();
    assert_eq!(
        fake.mounted(),
        std::slice::from_ref(&mp),
        "not ours to unmount"
    );
    std::fs::remove_dir(&mp).unwrap();
    row(
        "something else already mounted at /tmp/pypi",
        "refused, no mount call; cleanup leaves that mount alone",
    );

    // /tmp/pypi is a file, a symlink inside the image, a FIFO.
    for (what, make) in [
        (
            "a file",
            &(|p: &Path| std::fs::write(p, "x").unwrap()) as &dyn Fn(&Path),
        ),
        ("a symlink inside the image", &|p: &Path| {
            symlink("/root", p).unwrap()
        }),
        ("a FIFO", &|p: &Path| {
            nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
        }),
    ] {
        make(&mp);
        let before_kind = img.snapshot();
        let fake = FakeMounter::default();
        let e = mount_mirror(&root, &source, &fake).unwrap_err().to_string();
        assert!(e.contains("; refusing to mount over it"), "{e}");
        assert!(fake.calls().is_empty());
        assert_tree_eq(what, &before_kind, &img.snapshot());
        std::fs::remove_file(&mp).unwrap();
        row(
            &format!("/tmp/pypi is {what}"),
            "refused with a one-line error, no mount call, nothing changed",
        );
    }

    // No mirror on the host.
    let fake = FakeMounter::default();
    let none = mount_mirror(&root, &source.join("no-such-mirror-dir"), &fake).unwrap();
    assert_eq!(none, MountOutcome::NoMirror);
    assert!(fake.calls().is_empty());
    assert_tree_eq("no mirror", &before, &img.snapshot());
    row(
        "no mirror directory on the host",
        "nothing done, no mount call",
    );

    // DIB unmounted everything before cleanup: the mount point still goes.
    let fake = FakeMounter::default();
    mount_mirror(&root, &source, &fake).unwrap();
    fake.unmount(&mp).unwrap();
    let made = fake.calls().len();
    restore(&root, &fake, home()).unwrap();
    assert_eq!(fake.calls().len(), made, "{:?}", fake.calls());
    assert_tree_eq("dib unmounted", &before, &img.snapshot());
    row(
        "mirror unmounted by DIB before cleanup.d",
        "cleanup makes no mount call, removes the mount point and state directory",
    );

    // A staging directory left by a killed root.d is cleared by the next.
    let fake = FakeMounter::default();
    std::fs::create_dir_all(&mirror).unwrap();
    fake.pretend_mounted(&stage);
    fake.pretend_mounted(&mirror);
    mount_mirror(&root, &source, &fake).unwrap();
    assert_eq!(
        fake.calls()[..2],
        [
            MountCall::Unmount(mirror.clone()),
            MountCall::Unmount(stage.clone())
        ]
    );
    assert_eq!(fake.mounted(), std::slice::from_ref(&mp));
    restore(&root, &fake, home()).unwrap();
    assert_tree_eq("leftover stage", &before, &img.snapshot());
    let leftover: Vec<PathBuf> = fake.mounted();
    assert!(leftover.is_empty(), "{leftover:?}");
    row(
        "a killed root.d's staging directory, with its mounts",
        "the next root.d unmounts both and removes it before mounting",
    );

    record_figures(SECTIONS, "mount-calls", &rows);
}
