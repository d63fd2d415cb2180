//! Test fakes, in one place for the unit and the integration tests: mounters that record instead of mounting, and tree listings.
//!
//! Compiled only for tests and with the `testing` feature, like
//! [`crate::fault`]; the hook binaries never contain it.
// Test support: a broken fixture should stop the test with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::fault::FaultPlan;
use crate::mounter::Mounter;

/// A [`Mounter`] for hooks that must not mount anything.
#[derive(Debug, Default)]
pub struct NoMounts;

fn no_mounts<T>() -> io::Result<T> {
    Err(io::Error::other("no mounts in this test"))
}

impl Mounter for NoMounts {
    fn mount_tmpfs(&self, _: &Path) -> io::Result<()> {
        no_mounts()
    }
    fn make_private(&self, _: &Path) -> io::Result<()> {
        no_mounts()
    }
    fn bind(&self, _: &Path, _: &Path) -> io::Result<()> {
        no_mounts()
    }
    fn remount_read_only(&self, _: &Path) -> io::Result<()> {
        no_mounts()
    }
    fn mount_move(&self, _: &Path, _: &Path) -> io::Result<()> {
        no_mounts()
    }
    fn unmount(&self, _: &Path) -> io::Result<()> {
        no_mounts()
    }
    fn mount_points(&self) -> io::Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
}

/// One call a [`FakeMounter`] received, with `/proc/self/fd/N` targets
/// resolved to the host path they stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountCall {
    Tmpfs(PathBuf),
    MakePrivate(PathBuf),
    Bind { source: PathBuf, target: PathBuf },
    RemountReadOnly(PathBuf),
    Move { from: PathBuf, to: PathBuf },
    Unmount(PathBuf),
}

/// One entry of a [`FakeMounter`]'s mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMount {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A [`Mounter`] that mounts nothing but records every call and keeps its
/// own mount table, with the kernel's rules where the element relies on
/// them (a remount or move needs a mount there; a mount with another below
/// it is busy). Failures and crash points can be injected.
#[derive(Debug, Default)]
pub struct FakeMounter {
    calls: Mutex<Vec<MountCall>>,
    table: Mutex<Vec<FakeMount>>,
    pub fail_bind: AtomicBool,
    pub fail_remount: AtomicBool,
    pub fail_move: AtomicBool,
    pub fail_unmount: AtomicBool,
    faults: Mutex<Option<Arc<FaultPlan>>>,
}

fn resolve_magic(path: &Path) -> PathBuf {
    if path.starts_with("/proc/self/fd") {
        std::fs::read_link(path).unwrap()
    } else {
        path.to_path_buf()
    }
}

fn einval<T>() -> io::Result<T> {
    Err(io::Error::from_raw_os_error(nix::libc::EINVAL))
}

impl FakeMounter {
    pub fn calls(&self) -> Vec<MountCall> {
        self.calls.lock().unwrap().clone()
    }

    /// What is mounted now, as host paths.
    pub fn mounted(&self) -> Vec<PathBuf> {
        self.table
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.path.clone())
            .collect()
    }

    /// Mounts at or below `dir` that are writable.
    pub fn writable_under(&self, dir: &Path) -> Vec<PathBuf> {
        self.table
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.path.starts_with(dir) && !m.read_only)
            .map(|m| m.path.clone())
            .collect()
    }

    /// Pretend something (not us) is mounted at host path `path`.
    pub fn pretend_mounted(&self, path: &Path) {
        self.table.lock().unwrap().push(FakeMount {
            path: path.to_path_buf(),
            read_only: false,
        });
    }

    /// Make every call a crash point of `plan` (or stop, with `None`).
    pub fn set_faults(&self, plan: Option<Arc<FaultPlan>>) {
        *self.faults.lock().unwrap() = plan;
    }

    fn call(&self, call: MountCall, what: &str, fail: Option<&AtomicBool>) -> io::Result<()> {
        self.calls.lock().unwrap().push(call);
        if let Some(plan) = self.faults.lock().unwrap().as_ref() {
            if plan.step(what)? {
                return Err(plan.die());
            }
        }
        if fail.is_some_and(|f| f.load(Ordering::SeqCst)) {
            return Err(io::Error::from_raw_os_error(nix::libc::EPERM));
        }
        Ok(())
    }

    fn position(&self, path: &Path) -> Option<usize> {
        self.table
            .lock()
            .unwrap()
            .iter()
            .rposition(|m| m.path == path)
    }

    fn push(&self, path: PathBuf) {
        self.table.lock().unwrap().push(FakeMount {
            path,
            read_only: false,
        });
    }
}

impl Mounter for FakeMounter {
    fn mount_tmpfs(&self, target: &Path) -> io::Result<()> {
        let target = resolve_magic(target);
        self.call(MountCall::Tmpfs(target.clone()), "mount tmpfs", None)?;
        self.push(target);
        Ok(())
    }

    fn make_private(&self, target: &Path) -> io::Result<()> {
        let target = resolve_magic(target);
        self.call(MountCall::MakePrivate(target.clone()), "make private", None)?;
        self.position(&target).map_or_else(einval, |_| Ok(()))
    }

    fn bind(&self, source: &Path, target: &Path) -> io::Result<()> {
        let target = resolve_magic(target);
        let call = MountCall::Bind {
            source: source.to_path_buf(),
            target: target.clone(),
        };
        self.call(call, "bind", Some(&self.fail_bind))?;
        self.push(target);
        Ok(())
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        let target = resolve_magic(target);
        let call = MountCall::RemountReadOnly(target.clone());
        self.call(call, "remount read-only", Some(&self.fail_remount))?;
        let i = self.position(&target).map_or_else(einval, Ok)?;
        self.table.lock().unwrap()[i].read_only = true;
        Ok(())
    }

    fn mount_move(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (resolve_magic(from), resolve_magic(to));
        let call = MountCall::Move {
            from: from.clone(),
            to: to.clone(),
        };
        self.call(call, "move mount", Some(&self.fail_move))?;
        let i = self.position(&from).map_or_else(einval, Ok)?;
        self.table.lock().unwrap()[i].path = to;
        Ok(())
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        let target = resolve_magic(target);
        let call = MountCall::Unmount(target.clone());
        self.call(call, "unmount", Some(&self.fail_unmount))?;
        let mut table = self.table.lock().unwrap();
        if table
            .iter()
            .any(|m| m.path != target && m.path.starts_with(&target))
        {
            return Err(io::Error::from_raw_os_error(nix::libc::EBUSY));
        }
        match table.iter().rposition(|m| m.path == target) {
            Some(i) => {
                table.remove(i);
                Ok(())
            }
            None => einval(),
        }
    }

    fn mount_points(&self) -> io::Result<Vec<PathBuf>> {
        Ok(self.mounted())
    }
}

/// Every entry under `dir`: (mode, content or link target).
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let data = if meta.is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                if meta.is_dir() {
                    todo.push(p.clone());
                }
                Vec::new()
            };
            out.insert(
                p.strip_prefix(dir).unwrap().to_path_buf(),
                (meta.mode(), data),
            );
        }
    }
    out
}

/// A throw-away PKI for the TLS tests: a CA, server certificates for
/// loopback, client certificates, and certificates outside their validity.
pub struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pki")
    }
}

/// Validity from a year ago to a year ahead.
fn valid_now(params: &mut rcgen::CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(365);
    params.not_after = now + time::Duration::days(365);
}

impl Pki {
    /// A new CA called `name`.
    pub fn new(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        valid_now(&mut params);
        let key = rcgen::KeyPair::generate().unwrap();
        Pki {
            ca: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn leaf(&self, names: &[&str], usage: rcgen::ExtendedKeyUsagePurpose) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![usage];
        valid_now(&mut params);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for `names` (IP addresses or DNS names) and
    /// its key, PEM.
    pub fn server(&self, names: &[&str]) -> (String, String) {
        self.leaf(names, rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate followed by its key, in one PEM text (what
    /// pip's `client-cert` and uv's `SSL_CLIENT_CERT` take).
    pub fn client(&self, name: &str) -> String {
        let (cert, key) = self.leaf(&[name], rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        cert + &key
    }

    /// A self-signed CA certificate valid from `from` to `to` (years).
    pub fn ca_valid(name: &str, from: i32, to: i32) -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }
}
