//! Symlinks that point out of the image: at every path the hooks use, before the build and swapped in before cleanup.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use dib_pypi_core::configure::configure_tools;
use dib_pypi_core::layout::with_suffix;
use dib_pypi_core::mount::{mount_mirror, MountOutcome};
use dib_pypi_core::mounter::SystemMounter;
use dib_pypi_core::restore::restore_tools;
use dib_pypi_core::tools::{ToolSpec, TOOLS};
use dib_pypi_tests::{
    assert_tree_eq, mounts_under, record_figures, require_root, snapshot, MiniImage, Row,
};

use super::{home, mirror_source, secret_settings, seeded, SECTIONS};

/// In-image paths (directories and files) a symlink may replace: the
/// element's own places, and for each tool in `tools` (from its spec)
/// every user and system config file, each directory on the way to one,
/// and the backup name of its first user file. Each with the name in the
/// host directory the symlink then points at: the path without its first
/// component (`/root/.config/uv` -> `.config/uv`, `/etc` -> the host
/// directory itself).
pub(super) fn linked(tools: &[&ToolSpec]) -> Vec<(PathBuf, PathBuf)> {
    let mut paths: Vec<PathBuf> = [
        "/tmp",
        "/tmp/pypi",
        "/dib-pypi",
        "/dib-pypi/config.journal",
        "/dib-pypi/mount.journal",
        "/etc",
        "/root",
    ]
    .map(PathBuf::from)
    .to_vec();
    for tool in tools {
        let user = tool.user_paths(home());
        let backup = user.first().map(|f| with_suffix(f, ".dib-pypi-orig"));
        let system = tool.system_files.iter().map(PathBuf::from);
        for file in user.iter().cloned().chain(system).chain(backup) {
            let mut on_the_way: Vec<PathBuf> = file
                .ancestors()
                .skip(1)
                .filter(|d| d.components().count() > 2)
                .map(Path::to_path_buf)
                .collect();
            on_the_way.reverse();
            for p in on_the_way.into_iter().chain([file]) {
                if !paths.contains(&p) {
                    paths.push(p);
                }
            }
        }
    }
    paths
        .into_iter()
        .map(|p| {
            let name: PathBuf = p.components().skip(2).collect();
            (p, name)
        })
        .collect()
}

/// The host directory a symlink points into: at every name of `linked`,
/// what is there in the image (a file; a directory with a canary file),
/// and beside every file its backup and temp names, so that any write,
/// rename or delete that escaped would change it.
fn host_canary(linked: &[(PathBuf, PathBuf)]) -> tempfile::TempDir {
    // At the host's top level: seen from inside the image, its path then
    // never runs through one of the replaced components (as it would under
    // /tmp), so the outcomes do not depend on $TMPDIR or the checkout.
    let host = tempfile::Builder::new()
        .prefix("dib-pypi-canary.")
        .tempdir_in("/")
        .unwrap();
    let write = |name: &Path| {
        let p = host.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("host file {}\n", name.display())).unwrap();
    };
    write(Path::new("canary"));
    let is_file = |inner: &Path| inner.extension().is_some() || inner.starts_with("/dib-pypi/");
    for (inner, name) in linked {
        if name.as_os_str().is_empty() {
            continue;
        }
        if is_file(inner) {
            write(name);
            write(&with_suffix(name, ".dib-pypi-orig"));
            write(&with_suffix(name, ".dib-pypi-tmp"));
        } else {
            write(&name.join("canary"));
        }
    }
    host
}

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
fn link_targets(host: &Path, name: &Path) -> [(&'static str, PathBuf); 2] {
    let abs = if name.as_os_str().is_empty() {
        host.to_path_buf()
    } else {
        host.join(name)
    };
    let rel = PathBuf::from("../".repeat(16)).join(abs.strip_prefix("/").unwrap());
    [("absolute", abs), ("..-relative", rel)]
}

/// What [`symlink_matrix`] counted.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) paths: usize,
    before_cases: usize,
    refused: usize,
    inside: usize,
    swap_cases: usize,
    swap_restored: usize,
}

#[test]
fn symlinks_out_of_the_image_never_reach_the_host() {
    require_root();
    let c = symlink_matrix(TOOLS);
    let Counts {
        paths,
        before_cases,
        refused,
        inside,
        swap_cases,
        swap_restored,
    } = c;
    record_figures(
        SECTIONS,
        "symlinks",
        &[
            Row::new(
                format!(
                    "symlink at one of {paths} paths before the build, 2 styles: root.d, pre-install.d, cleanup.d",
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
                    paths - 1
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

/// Every path of [`linked`] for `tools`, in both styles, replaced by a
/// symlink out of the image before the build (root.d, configure and
/// cleanup must keep to the image and restore it exactly), and swapped in
/// after configure (cleanup must not touch the host).
pub(super) fn symlink_matrix(tools: &[&'static ToolSpec]) -> Counts {
    let linked = linked(tools);
    let host = host_canary(&linked);
    let host_before = snapshot(host.path(), &[]);
    let mirror = mirror_source();
    let mirror_before = snapshot(mirror.path(), &[]);

    let (mut before_cases, mut refused, mut inside) = (0, 0, 0);
    for (inner, name) in &linked {
        let inner = inner.to_str().unwrap();
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
            let configured =
                configure_tools(&root, &secret_settings(), home(), &SystemMounter, tools);
            let refused_here = mounted.is_err() || configured.is_err();
            assert_tree_eq(&ctx, &host_before, &snapshot(host.path(), &[]));
            restore_tools(&root, &SystemMounter, home(), tools)
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
    for (inner, name) in &linked {
        let inner = inner.to_str().unwrap();
        if inner == "/tmp/pypi" {
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
            configure_tools(&root, &secret_settings(), home(), &SystemMounter, tools).unwrap();
            let p = img.path(inner);
            if std::fs::symlink_metadata(&p).is_ok() {
                std::fs::rename(&p, with_suffix(&p, ".moved")).unwrap();
            }
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(&target, &p).unwrap();
            let restored = restore_tools(&root, &SystemMounter, home(), tools);
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

    Counts {
        paths: linked.len(),
        before_cases,
        refused,
        inside,
        swap_cases,
        swap_restored,
    }
}
