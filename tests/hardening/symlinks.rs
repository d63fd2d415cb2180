//! Symlinks that point out of the image: at every path the hooks use, before the build and swapped in before cleanup.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use dib_pypi_core::configure::configure;
use dib_pypi_core::layout::with_suffix;
use dib_pypi_core::mount::{mount_mirror, MountOutcome};
use dib_pypi_core::mounter::SystemMounter;
use dib_pypi_core::restore::restore;
use dib_pypi_tests::{
    assert_tree_eq, mounts_under, record_figures, require_root, snapshot, MiniImage, Row,
};

use super::{home, mirror_source, secret_settings, seeded, SECTIONS};

/// Names the hooks touch, laid out in the host directory a symlink points
/// to, so that any write, rename or delete that escaped would change it.
fn host_canary() -> tempfile::TempDir {
    // At the host's top level: seen from inside the image, its path then
    // never runs through one of the replaced components (as it would under
    // /tmp), so the outcomes do not depend on $TMPDIR or the checkout.
    let host = tempfile::Builder::new()
        .prefix("dib-pypi-canary.")
        .tempdir_in("/")
        .unwrap();
    let files = [
        "canary",
        "pip.conf",
        "pip.conf.dib-pypi-orig",
        "pip.conf.dib-pypi-tmp",
        "uv.toml",
        "uv.toml.dib-pypi-orig",
        "config.journal",
        "mount.journal",
        ".pip/pip.conf",
        ".config/pip/pip.conf",
        ".config/uv/uv.toml",
        "pypi/index.html",
        "dib-pypi/config.journal",
        "uv/uv.toml",
        "xdg/uv/uv.toml",
    ];
    for f in files {
        let p = host.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("host file {f}\n")).unwrap();
    }
    host
}

/// In-image paths (directories and files) a symlink may replace, and the
/// name in the host directory it then points at.
const LINKED: &[(&str, &str)] = &[
    ("/tmp", ""),
    ("/tmp/pypi", "pypi"),
    ("/dib-pypi", "dib-pypi"),
    ("/dib-pypi/config.journal", "config.journal"),
    ("/dib-pypi/mount.journal", "mount.journal"),
    ("/etc", ""),
    ("/etc/uv", "uv"),
    ("/root", ""),
    ("/root/.pip", ".pip"),
    ("/root/.config", ".config"),
    ("/root/.config/pip", ".config/pip"),
    ("/root/.config/uv", ".config/uv"),
    ("/root/.pip/pip.conf", "pip.conf"),
    ("/root/.config/pip/pip.conf", ".config/pip/pip.conf"),
    ("/root/.config/uv/uv.toml", "uv.toml"),
    (
        "/root/.pip/pip.conf.dib-pypi-orig",
        "pip.conf.dib-pypi-orig",
    ),
];

/// Replace in-image `inner` (whatever it is) by a symlink to `target`.
fn replace_with_link(img: &MiniImage, inner: &str, target: &Path) {
    let p = img.path(inner);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
        Ok(_) => std::fs::remove_file(&p).unwrap(),
        Err(_) => {}
    }
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, &p).unwrap();
}

/// The two ways to point out: `/host/dir`, and `../../..(x16)/host/dir`,
/// which climbs to the host's `/` from anywhere in the image.
fn link_targets(host: &Path, name: &str) -> [(&'static str, PathBuf); 2] {
    let abs = if name.is_empty() {
        host.to_path_buf()
    } else {
        host.join(name)
    };
    let rel = PathBuf::from("../".repeat(16)).join(abs.strip_prefix("/").unwrap());
    [("absolute", abs), ("..-relative", rel)]
}

#[test]
fn symlinks_out_of_the_image_never_reach_the_host() {
    require_root();
    let host = host_canary();
    let host_before = snapshot(host.path(), &[]);
    let mirror = mirror_source();
    let mirror_before = snapshot(mirror.path(), &[]);

    let (mut before_cases, mut refused, mut inside) = (0, 0, 0);
    for (inner, name) in LINKED {
        for (style, target) in link_targets(host.path(), name) {
            let ctx = format!("{inner} -> {style} link, before the build");
            let img = seeded();
            if inner.starts_with("/dib-pypi/") {
                std::fs::create_dir_all(img.path("/dib-pypi")).unwrap();
            }
            replace_with_link(&img, inner, &target);
            let before = img.snapshot();

            let root = img.open();
            let mounted = mount_mirror(&root, mirror.path(), &SystemMounter);
            // Other tests mount in parallel elsewhere; what matters is
            // where the links point, and that ours stays in the image.
            assert!(
                mounts_under(host.path()).is_empty(),
                "{ctx}: host mounted over"
            );
            let ours = mounts_under(img.root());
            assert!(
                ours.is_empty() || ours == [img.path("/tmp/pypi")],
                "{ctx}: mounted at {ours:?}"
            );
            let configured = configure(&root, &secret_settings(), home(), &SystemMounter);
            let refused_here = mounted.is_err() || configured.is_err();
            assert_tree_eq(&ctx, &host_before, &snapshot(host.path(), &[]));
            restore(&root, &SystemMounter, home())
                .unwrap_or_else(|e| panic!("{ctx}: restore: {e}"));
            assert!(mounts_under(img.root()).is_empty(), "{ctx}: mount left");
            assert!(!img.stage().exists(), "{ctx}: staging directory left");
            assert_tree_eq(&ctx, &before, &img.snapshot());
            assert_tree_eq(&ctx, &host_before, &snapshot(host.path(), &[]));
            for e in [mounted.err(), configured.err()].into_iter().flatten() {
                let msg = e.to_string();
                assert!(
                    !msg.contains('\n') && !msg.contains("s3cret"),
                    "{ctx}: {msg}"
                );
            }
            before_cases += 1;
            if refused_here {
                refused += 1;
            } else {
                inside += 1;
            }
        }
    }

    let (mut swap_cases, mut swap_restored) = (0, 0);
    for (inner, name) in LINKED {
        if *inner == "/tmp/pypi" {
            // A mount point cannot be renamed (EBUSY); its parent is tried.
            continue;
        }
        for (style, target) in link_targets(host.path(), name) {
            let ctx = format!("{inner} -> {style} link, swapped in before cleanup");
            let img = seeded();
            let root = img.open();
            assert_eq!(
                mount_mirror(&root, mirror.path(), &SystemMounter).unwrap(),
                MountOutcome::Mounted
            );
            configure(&root, &secret_settings(), home(), &SystemMounter).unwrap();
            let p = img.path(inner);
            if std::fs::symlink_metadata(&p).is_ok() {
                std::fs::rename(&p, with_suffix(&p, ".moved")).unwrap();
            }
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(&target, &p).unwrap();
            let restored = restore(&root, &SystemMounter, home());
            assert!(
                mounts_under(host.path()).is_empty(),
                "{ctx}: the host directory was mounted over"
            );
            assert_tree_eq(&ctx, &host_before, &snapshot(host.path(), &[]));
            swap_cases += 1;
            swap_restored += usize::from(restored.is_ok());
        }
    }
    assert_tree_eq("the mirror", &mirror_before, &snapshot(mirror.path(), &[]));

    record_figures(
        SECTIONS,
        "symlinks",
        &[
            Row::new(
                format!(
                    "symlink at one of {} paths before the build, 2 styles: root.d, pre-install.d, cleanup.d",
                    LINKED.len()
                ),
                before_cases,
                format!(
                    "host directory unchanged and never mounted over in {before_cases}/{before_cases}; \
                     image restored exactly in {before_cases}/{before_cases} \
                     ({refused} refused with a one-line error, {inside} resolved inside the image)"
                ),
            ),
            Row::new(
                format!(
                    "symlink swapped in after pre-install.d, at one of {} paths, 2 styles: cleanup.d",
                    LINKED.len() - 1
                ),
                swap_cases,
                format!(
                    "host directory unchanged and never mounted over in {swap_cases}/{swap_cases} \
                     (cleanup reported success in {swap_restored}, an error in {})",
                    swap_cases - swap_restored
                ),
            ),
        ],
    );
}
