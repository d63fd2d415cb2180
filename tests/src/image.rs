//! Throw-away image roots: a real chroot that runs the host's Python ([`Image`]), and plain trees for the library tests ([`MiniImage`]).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::snapshot::{snapshot, Snap};
use crate::{clean_command, element, require_root};

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
    dib_pypi_core::mounter::parse_mountinfo(&text)
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
    /// A new image: `/usr` (the host's, read-only), `/proc`, `/dev` with
    /// null, zero and urandom, `/etc` with the host's passwd and group,
    /// `/root`, `/tmp`.
    // Not Default: making an image mounts things and needs root.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Image {
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
        let script = format!("/tmp/in_target.d/{script}");
        self.with_element(|image| image.chroot(&["bash", &script], env))
    }

    /// Run `argv` in the chroot as a later element's hook runs: with the
    /// elements at /tmp/in_target.d and every `environment.d` file of
    /// ours sourced first, as dib-run-parts does.
    pub fn run_with_environment(&mut self, argv: &[&str], env: &[(&str, &str)]) -> Output {
        const SOURCE_ALL: &str =
            "for f in /tmp/in_target.d/environment.d/*; do . \"$f\"; done; exec \"$@\"";
        let mut full = vec!["bash", "-c", SOURCE_ALL, "bash"];
        full.extend_from_slice(argv);
        self.with_element(|image| image.chroot(&full, env))
    }

    /// Run `f` with the element bound read-only at /tmp/in_target.d.
    fn with_element(&mut self, f: impl FnOnce(&Image) -> Output) -> Output {
        self.mount(&["--bind", element().to_str().unwrap()], "/tmp/in_target.d");
        self.mount(&["-o", "remount,bind,ro"], "/tmp/in_target.d");
        let out = f(self);
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
        let stage = stage_of(self.root());
        unmount_under(&stage);
        let _ = fs::remove_dir_all(&stage);
    }
}

/// A plain image tree for tests that call the core library directly (no
/// chroot, no /usr): `/root` (0700), `/tmp` (1777). Whatever is still
/// mounted under it, or under its staging directory beside it, is detached
/// on drop, and the staging directory removed.
#[derive(Debug)]
pub struct MiniImage {
    dir: tempfile::TempDir,
}

impl MiniImage {
    #[allow(clippy::new_without_default)]
    pub fn new() -> MiniImage {
        let img = MiniImage::bare();
        let dir = img.root();
        fs::create_dir(dir.join("root")).unwrap();
        fs::set_permissions(dir.join("root"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(dir.join("tmp")).unwrap();
        fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        img
    }

    /// An empty root directory (no /root, /tmp).
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

    /// Host path of the staging directory root.d uses beside the image.
    pub fn stage(&self) -> PathBuf {
        stage_of(self.root())
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
        let stage = self.stage();
        unmount_under(&stage);
        let _ = fs::remove_dir_all(&stage);
    }
}

/// The staging directory beside image root `root` (see the core's `stage`).
pub fn stage_of(root: &Path) -> PathBuf {
    let mut name = root.file_name().unwrap().to_os_string();
    name.push(dib_pypi_core::layout::STAGE_SUFFIX);
    root.with_file_name(name)
}

/// Detach every mount at or below `dir` (deepest first).
pub fn unmount_under(dir: &Path) {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = dib_pypi_core::mounter::parse_mountinfo(&text)
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
    dib_pypi_core::mounter::parse_mountinfo(&text)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect()
}
