//! Unit tests of the in-root file operations (no root needed).

use super::*;
use crate::layout::{is_clean_absolute, with_suffix};
use std::os::unix::fs::{symlink, PermissionsExt};

fn tree() -> (tempfile::TempDir, tempfile::TempDir, Root) {
    let image = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let root = Root::open(image.path()).unwrap();
    (image, host, root)
}

#[test]
fn absolute_symlink_parent_resolves_inside_the_root() {
    let (image, host, root) = tree();
    std::fs::create_dir(image.path().join("real")).unwrap();
    // In the image, /root -> <host dir>; must land on <image>/<host dir>.
    symlink(host.path(), image.path().join("root")).unwrap();
    let escaped = Path::new("/root/pip.conf");
    let err = root.write_new(escaped, b"x", 0o644).unwrap_err();
    assert!(err.to_string().contains("No such file"), "{err}");
    assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
}

#[test]
fn dotdot_symlink_parent_stays_inside_the_root() {
    let (image, host, root) = tree();
    let canary = host.path().join("canary");
    std::fs::write(&canary, "keep").unwrap();
    let depth = image.path().components().count() + 3;
    let up = "../".repeat(depth);
    symlink(
        format!("{up}{}", host.path().display()),
        image.path().join("etc"),
    )
    .unwrap();
    assert_eq!(root.lstat(Path::new("/etc/canary")).unwrap(), None);
    assert!(!root.unlink(Path::new("/etc/canary")).unwrap());
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep");
}

#[test]
fn final_symlink_is_renamed_not_followed() {
    let (image, host, root) = tree();
    let canary = host.path().join("canary");
    std::fs::write(&canary, "keep").unwrap();
    symlink(&canary, image.path().join("link")).unwrap();
    let e = root.lstat(Path::new("/link")).unwrap().unwrap();
    assert_eq!(e.kind, Kind::Symlink);
    root.rename_noreplace(Path::new("/link"), Path::new("/link.bak"))
        .unwrap();
    assert!(root.unlink(Path::new("/link.bak")).unwrap());
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep");
    // Writing through a final symlink is refused.
    symlink(&canary, image.path().join("link2")).unwrap();
    assert!(root.write_new(Path::new("/link2"), b"evil", 0o644).is_err());
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep");
}

#[test]
fn write_new_sets_exact_mode_and_refuses_to_replace() {
    let (image, _host, root) = tree();
    root.write_new(Path::new("/f"), b"secret", 0o600).unwrap();
    let meta = std::fs::metadata(image.path().join("f")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert!(root.write_new(Path::new("/f"), b"again", 0o600).is_err());
    assert_eq!(std::fs::read(image.path().join("f")).unwrap(), b"secret");
}

#[test]
fn mkdir_rmdir_and_kinds() {
    let (image, _host, root) = tree();
    root.mkdir(Path::new("/d"), 0o700).unwrap();
    let e = root.lstat(Path::new("/d")).unwrap().unwrap();
    assert_eq!((e.kind, e.mode), (Kind::Dir, 0o700));
    std::fs::write(image.path().join("d/x"), "").unwrap();
    assert_eq!(root.rmdir(Path::new("/d")).unwrap(), Rmdir::NotEmpty);
    std::fs::remove_file(image.path().join("d/x")).unwrap();
    assert_eq!(root.rmdir(Path::new("/d")).unwrap(), Rmdir::Removed);
    assert_eq!(root.rmdir(Path::new("/d")).unwrap(), Rmdir::Absent);
    assert_eq!(root.lstat(Path::new("/nope/deeper")).unwrap(), None);
    nix::unistd::mkfifo(&image.path().join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
    assert_eq!(
        root.lstat(Path::new("/fifo")).unwrap().unwrap().kind,
        Kind::Special
    );
}

#[test]
fn read_refuses_fifos_and_limits_size() {
    let (image, _host, root) = tree();
    nix::unistd::mkfifo(&image.path().join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
    assert!(root.read(Path::new("/fifo"), 10).is_err());
    std::fs::write(image.path().join("big"), "0123456789").unwrap();
    assert_eq!(root.read(Path::new("/big"), 4).unwrap().unwrap(), b"0123");
    assert_eq!(root.read(Path::new("/none"), 4).unwrap(), None);
}

#[test]
fn suffix_and_clean_paths() {
    assert_eq!(
        with_suffix(Path::new("/root/.pip/pip.conf"), ".orig"),
        PathBuf::from("/root/.pip/pip.conf.orig")
    );
    assert!(is_clean_absolute(Path::new("/root/.pip")));
    assert!(!is_clean_absolute(Path::new("/root/../etc")));
    assert!(!is_clean_absolute(Path::new("root")));
}
