//! Unit tests of reading the CA and client certificate files: good files, and every bad one refused in one line naming the variable.

use super::*;
use crate::testing::Pki;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn put(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

fn err(ca: Option<&Path>, client: Option<&Path>) -> String {
    let e = MirrorTls::read(ca, client, now(), &[])
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n'), "{e}");
    assert!(!e.contains("PRIVATE KEY") && !e.contains("BEGIN"), "{e}");
    e
}

#[test]
fn the_bundle_is_the_public_cas_then_the_private_ones() {
    let f = Files::new();
    let pki = Pki::new("Corp Root CA");
    let public = f.put("public.crt", "-----public bundle-----");
    let ca = f.put("ca.pem", pki.ca_pem());
    let client = f.put("client.pem", pki.client("builder"));
    let tls = MirrorTls::read(
        Some(&ca),
        Some(&client),
        now(),
        &[Path::new("/nonexistent"), &public],
    )
    .unwrap();
    let bundle = String::from_utf8(tls.ca_bundle.clone().unwrap()).unwrap();
    assert_eq!(bundle, format!("-----public bundle-----\n{}", pki.ca_pem()));
    assert_eq!(
        tls.client_cert.as_deref(),
        Some(std::fs::read(&client).unwrap().as_slice())
    );
    assert!(tls.warnings.is_empty(), "{:?}", tls.warnings);
    // Debug shows sizes, never the bytes.
    let shown = format!("{tls:?}");
    assert!(!shown.contains("BEGIN"), "{shown}");
}

#[test]
fn without_a_public_bundle_the_build_is_warned() {
    let f = Files::new();
    let ca = f.put("ca.pem", Pki::new("Corp").ca_pem());
    let tls = MirrorTls::read(Some(&ca), None, now(), &[Path::new("/nonexistent/bundle")]).unwrap();
    assert_eq!(tls.ca_bundle.unwrap(), std::fs::read(&ca).unwrap());
    assert!(
        tls.warnings[0].starts_with("no public CA bundle on this host"),
        "{:?}",
        tls.warnings
    );
}

#[test]
fn unset_or_empty_variables_mean_nothing_to_do() {
    let tls = MirrorTls::read(None, Some(Path::new("")), now(), &[]).unwrap();
    assert!(tls.is_empty());
}

#[test]
fn bad_files_are_refused_naming_the_variable() {
    let f = Files::new();
    let pki = Pki::new("Corp");
    let (server, key) = pki.server(&["127.0.0.1"]);
    let missing = f.dir.path().join("missing.pem");
    let garbage = f.put("garbage.pem", "not a certificate at all\n");
    let broken = f.put(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    );
    let expired = f.put("expired.pem", Pki::ca_valid("Old CA", 2000, 2010));
    let future = f.put("future.pem", Pki::ca_valid("New CA", 2100, 2110));
    let with_key = f.put("with-key.pem", pki.ca_pem() + &key);
    let key_only = f.put("key.pem", &key);
    let cert_only = f.put("cert.pem", &server);
    let two_keys = f.put("two-keys.pem", server.clone() + &key + &key);
    let expired_client = f.put("old-client.pem", Pki::ca_valid("Old", 2000, 2010) + &key);
    for (ca, client, want) in [
        (
            Some(missing.as_path()),
            None,
            format!(
                "DIB_PYPI_MIRROR_CA: cannot read {}: No such file or directory",
                missing.display()
            ),
        ),
        (
            Some(Path::new("relative.pem")),
            None,
            "DIB_PYPI_MIRROR_CA: relative.pem is not an absolute path".into(),
        ),
        (
            Some(f.dir.path()),
            None,
            format!(
                "DIB_PYPI_MIRROR_CA: {} is not a regular file",
                f.dir.path().display()
            ),
        ),
        (
            Some(&garbage),
            None,
            format!(
                "DIB_PYPI_MIRROR_CA: {} holds no PEM certificate",
                garbage.display()
            ),
        ),
        (
            Some(&broken),
            None,
            format!(
                "DIB_PYPI_MIRROR_CA: {}: not a readable PEM file",
                broken.display()
            ),
        ),
        (
            Some(&expired),
            None,
            format!(
                "DIB_PYPI_MIRROR_CA: {}: the certificate of \"CN=Old CA\" expired on",
                expired.display()
            ),
        ),
        (
            Some(&future),
            None,
            format!(
                "DIB_PYPI_MIRROR_CA: {}: the certificate of \"CN=New CA\" is not valid before",
                future.display()
            ),
        ),
        (
            Some(&with_key),
            None,
            format!(
                "DIB_PYPI_MIRROR_CA: {} holds a private key",
                with_key.display()
            ),
        ),
        (
            None,
            Some(&key_only),
            format!(
                "DIB_PYPI_MIRROR_CLIENT_CERT: {} holds a private key but no certificate",
                key_only.display()
            ),
        ),
        (
            None,
            Some(&cert_only),
            format!(
                "DIB_PYPI_MIRROR_CLIENT_CERT: {} holds a certificate but no private key",
                cert_only.display()
            ),
        ),
        (
            None,
            Some(&two_keys),
            format!(
                "DIB_PYPI_MIRROR_CLIENT_CERT: {} holds more than one private key",
                two_keys.display()
            ),
        ),
        (
            None,
            Some(&garbage),
            format!(
                "DIB_PYPI_MIRROR_CLIENT_CERT: {} holds no PEM certificate and no private key",
                garbage.display()
            ),
        ),
        (
            None,
            Some(&expired_client),
            format!(
                "DIB_PYPI_MIRROR_CLIENT_CERT: {}: the certificate of \"CN=Old\" expired on",
                expired_client.display()
            ),
        ),
    ] {
        let e = err(ca, client.map(PathBuf::as_path));
        assert!(e.starts_with(&want), "want {want:?}\n got {e:?}");
    }
}
