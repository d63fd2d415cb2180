//! root.d: the mirrors' CA bundle and client certificate, put into the image for the build only.
//!
//! The files come from the build host (see `certs`), which the chroot
//! cannot see, so root.d writes them into the state directory, journaled
//! like every other change: the CA bundle world-readable (any user's pip
//! or uv may need it), the client certificate with its key 0600. The
//! configure hook points pip at them (`cert`, `client-cert`), and the
//! element's `environment.d` points uv at them (`SSL_CERT_FILE`,
//! `SSL_CLIENT_CERT`: uv reads no CA path from `uv.toml`). cleanup.d
//! removes them with the rest.

use std::path::Path;

use crate::certs::MirrorTls;
use crate::error::Result;
use crate::journal::Journal;
use crate::layout::{CA_BUNDLE, CA_BUNDLE_MODE, CLIENT_CERT, SECRET_MODE, TLS_JOURNAL};
use crate::mounter::Mounter;
use crate::rootfs::Root;
use crate::txn::Txn;

/// Put `tls` into the image (nothing when it is empty). A second root.d
/// first takes out what the first put in, so the files are always the
/// ones of this run.
pub fn install(root: &Root, tls: &MirrorTls, mounter: &dyn Mounter) -> Result<()> {
    let previous = Journal::new(root, Path::new(TLS_JOURNAL));
    if previous.read()?.is_some() {
        crate::undo::undo_journal(root, &previous, mounter)?;
    }
    if tls.is_empty() {
        return crate::state::teardown(root);
    }
    Txn::run(root, Path::new(TLS_JOURNAL), mounter, |txn| {
        if let Some(bundle) = &tls.ca_bundle {
            txn.write_file(Path::new(CA_BUNDLE), bundle, CA_BUNDLE_MODE)?;
            log::debug!("wrote the mirrors' CA bundle to {CA_BUNDLE}");
        }
        if let Some(client) = &tls.client_cert {
            txn.write_file(Path::new(CLIENT_CERT), client, SECRET_MODE)?;
            log::debug!("wrote the mirrors' client certificate to {CLIENT_CERT}");
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::restore;
    use crate::testing::{tree, NoMounts};
    use std::os::unix::fs::PermissionsExt;

    fn tls(ca: &[u8], client: &[u8]) -> MirrorTls {
        MirrorTls {
            ca_bundle: Some(ca.to_vec()),
            client_cert: Some(client.to_vec()),
            warnings: Vec::new(),
        }
    }

    fn mode(dir: &Path, inner: &str) -> u32 {
        std::fs::metadata(dir.join(inner.trim_start_matches('/')))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn written_with_their_modes_replaced_by_a_rerun_and_removed_by_restore() {
        let dir = tempfile::tempdir().unwrap();
        let before = tree(dir.path());
        let root = Root::open(dir.path()).unwrap();
        install(&root, &tls(b"ca 1", b"key 1"), &NoMounts).unwrap();
        assert_eq!(mode(dir.path(), CA_BUNDLE), 0o644);
        assert_eq!(mode(dir.path(), CLIENT_CERT), 0o600);
        assert_eq!(mode(dir.path(), TLS_JOURNAL), 0o600);
        install(&root, &tls(b"ca 2", b"key 2"), &NoMounts).unwrap();
        let read = |p: &str| std::fs::read(dir.path().join(p.trim_start_matches('/'))).unwrap();
        assert_eq!(
            (read(CA_BUNDLE), read(CLIENT_CERT)),
            (b"ca 2".to_vec(), b"key 2".to_vec())
        );
        restore(&root, &NoMounts, Path::new("/root")).unwrap();
        assert_eq!(tree(dir.path()), before);
    }

    #[test]
    fn nothing_to_install_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        install(&root, &tls(b"ca", b"key"), &NoMounts).unwrap();
        // A rerun without the variables takes the earlier files out.
        let empty = MirrorTls {
            ca_bundle: None,
            client_cert: None,
            warnings: Vec::new(),
        };
        install(&root, &empty, &NoMounts).unwrap();
        assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
    }

    #[test]
    fn killed_at_any_step_then_restored_exactly() {
        let n = crate::fault::at_every_crash_point(|plan| {
            let dir = tempfile::tempdir().unwrap();
            let before = tree(dir.path());
            let killed = Root::open(dir.path()).unwrap().with_faults(plan.clone());
            let result = install(&killed, &tls(b"ca", b"key"), &NoMounts);
            let root = Root::open(dir.path()).unwrap();
            restore(&root, &NoMounts, Path::new("/root")).unwrap();
            assert_eq!(tree(dir.path()), before, "killed at step {}", plan.steps());
            result
        });
        assert!(n > 10, "{n}");
    }
}
