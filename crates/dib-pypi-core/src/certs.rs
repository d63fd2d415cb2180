//! The mirrors' TLS material on the build host: a private CA and a client certificate, read and checked before anything changes.
//!
//! Corporate mirrors (Artifactory, Nexus, devpi behind a company CA) need
//! pip and uv in the image to trust that CA, sometimes to present a client
//! certificate. The files live on the build host; root.d reads them here,
//! refuses bad ones with one line naming the variable, and puts them into
//! the image for the build (see `tls`). pip's `cert` option *replaces* its
//! CA list and uv's `SSL_CERT_FILE` does too, so the CA file the image gets
//! is the host's public bundle followed by the private CAs: upstream PyPI
//! stays reachable. Nothing read here is ever printed.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{PemObject, SectionKind};
use x509_parser::prelude::{parse_x509_certificate, ASN1Time};

use crate::error::{Error, Result};

/// The variable naming the PEM file of the mirrors' CA certificates.
pub const CA_VAR: &str = "DIB_PYPI_MIRROR_CA";
/// The variable naming the PEM file of the client certificate and its key.
pub const CLIENT_CERT_VAR: &str = "DIB_PYPI_MIRROR_CLIENT_CERT";

/// The system CA bundles of the distributions DIB runs on, in the order
/// they are looked for: Debian/Ubuntu, RHEL/Fedora, SUSE, Alpine.
pub const HOST_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A PEM file bigger than this is not a CA list or a client certificate.
const LIMIT: u64 = 4 << 20;

/// What root.d puts into the image for TLS to the mirrors.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MirrorTls {
    /// The CA bundle (host's public CAs, then the private ones), when
    /// `DIB_PYPI_MIRROR_CA` is set.
    pub ca_bundle: Option<Vec<u8>>,
    /// The client certificate with its key, when
    /// `DIB_PYPI_MIRROR_CLIENT_CERT` is set.
    pub client_cert: Option<Vec<u8>>,
    /// What the user should know (no secret in them).
    pub warnings: Vec<String>,
}

// Never shows the bytes: a key must not reach a log through `{:?}`.
impl std::fmt::Debug for MirrorTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorTls")
            .field("ca_bundle", &self.ca_bundle.as_ref().map(Vec::len))
            .field("client_cert", &self.client_cert.as_ref().map(Vec::len))
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl MirrorTls {
    /// Whether there is anything to put into the image.
    pub fn is_empty(&self) -> bool {
        self.ca_bundle.is_none() && self.client_cert.is_none()
    }

    /// Read and check the files the two variables name (`None` or empty:
    /// not set). `now` is seconds since the epoch; `host_bundles` the
    /// public CA bundles to look for, first found wins.
    pub fn read(
        ca: Option<&Path>,
        client_cert: Option<&Path>,
        now: i64,
        host_bundles: &[&Path],
    ) -> Result<MirrorTls> {
        let now = ASN1Time::from_timestamp(now)
            .map_err(|_| Error::env(CA_VAR, "the system clock is out of range"))?;
        let mut warnings = Vec::new();
        let ca_bundle = match ca.filter(|p| !p.as_os_str().is_empty()) {
            None => None,
            Some(path) => {
                let private = read_pem(CA_VAR, path)?;
                check_ca_file(path, &private, now)?;
                let mut bundle = match host_bundles.iter().find(|b| b.is_file()) {
                    Some(public) => {
                        std::fs::read(public).map_err(|e| Error::io("read", *public, e))?
                    }
                    None => {
                        warnings.push(format!(
                            "no public CA bundle on this host ({}): pip and uv in the image trust \
                             only the CAs of {CA_VAR}, so https to upstream PyPI will fail",
                            host_bundles
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                        Vec::new()
                    }
                };
                if !bundle.is_empty() && !bundle.ends_with(b"\n") {
                    bundle.push(b'\n');
                }
                bundle.extend_from_slice(&private);
                Some(bundle)
            }
        };
        let client_cert = match client_cert.filter(|p| !p.as_os_str().is_empty()) {
            None => None,
            Some(path) => {
                let pem = read_pem(CLIENT_CERT_VAR, path)?;
                check_client_file(path, &pem, now)?;
                Some(pem)
            }
        };
        Ok(MirrorTls {
            ca_bundle,
            client_cert,
            warnings,
        })
    }

    /// [`MirrorTls::read`] with the paths from the environment variables
    /// (as the root.d hook gets them), the clock and the host's bundles.
    pub fn from_env() -> Result<MirrorTls> {
        let var = |name| std::env::var_os(name).map(PathBuf::from);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let bundles: Vec<&Path> = HOST_BUNDLES.iter().map(Path::new).collect();
        MirrorTls::read(
            var(CA_VAR).as_deref(),
            var(CLIENT_CERT_VAR).as_deref(),
            now,
            &bundles,
        )
    }
}

/// The file `var` names: an absolute path to a readable regular file of
/// sensible size.
fn read_pem(var: &str, path: &Path) -> Result<Vec<u8>> {
    let shown = path.display();
    if !path.is_absolute() {
        return Err(Error::env(var, format!("{shown} is not an absolute path")));
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::env(var, format!("cannot read {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(Error::env(var, format!("{shown} is not a regular file")));
    }
    if meta.len() > LIMIT {
        return Err(Error::env(
            var,
            format!(
                "{shown} is {} bytes long; a PEM file of certificates is not",
                meta.len()
            ),
        ));
    }
    std::fs::read(path).map_err(|e| Error::env(var, format!("cannot read {shown}: {e}")))
}

/// The kinds of the PEM sections in `pem`, with their bytes; an error
/// naming `var` when a section cannot be decoded.
fn sections(var: &str, path: &Path, pem: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::env(
                var,
                format!("{}: not a readable PEM file ({e})", path.display()),
            )
        })
}

fn is_key(kind: SectionKind) -> bool {
    matches!(
        kind,
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
    )
}

/// Every certificate of the file is valid now: a CA that expired would
/// make every install fail later, with an error far from its cause.
fn check_certificate(var: &str, path: &Path, der: &[u8], now: ASN1Time) -> Result<()> {
    let (_, cert) = parse_x509_certificate(der).map_err(|e| {
        Error::env(
            var,
            format!(
                "{}: a certificate that cannot be parsed ({e})",
                path.display()
            ),
        )
    })?;
    let validity = cert.validity();
    let subject = cert.subject().to_string();
    if now < validity.not_before {
        return Err(Error::env(
            var,
            format!(
                "{}: the certificate of {subject:?} is not valid before {}",
                path.display(),
                validity.not_before
            ),
        ));
    }
    if now > validity.not_after {
        return Err(Error::env(
            var,
            format!(
                "{}: the certificate of {subject:?} expired on {}",
                path.display(),
                validity.not_after
            ),
        ));
    }
    Ok(())
}

fn check_ca_file(path: &Path, pem: &[u8], now: ASN1Time) -> Result<()> {
    let all = sections(CA_VAR, path, pem)?;
    if all.iter().any(|(k, _)| is_key(*k)) {
        // The bundle is world-readable in the image; a key has no place in it.
        return Err(Error::env(
            CA_VAR,
            format!(
                "{} holds a private key; it must hold CA certificates only \
                 (a client certificate goes in {CLIENT_CERT_VAR})",
                path.display()
            ),
        ));
    }
    let certs: Vec<&Vec<u8>> = all
        .iter()
        .filter(|(k, _)| *k == SectionKind::Certificate)
        .map(|(_, der)| der)
        .collect();
    if certs.is_empty() {
        return Err(Error::env(
            CA_VAR,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    certs
        .into_iter()
        .try_for_each(|der| check_certificate(CA_VAR, path, der, now))
}

fn check_client_file(path: &Path, pem: &[u8], now: ASN1Time) -> Result<()> {
    let all = sections(CLIENT_CERT_VAR, path, pem)?;
    let keys = all.iter().filter(|(k, _)| is_key(*k)).count();
    let certs: Vec<&Vec<u8>> = all
        .iter()
        .filter(|(k, _)| *k == SectionKind::Certificate)
        .map(|(_, der)| der)
        .collect();
    let shown = path.display();
    let problem = match (certs.first(), keys) {
        (None, 0) => Some("holds no PEM certificate and no private key"),
        (None, _) => Some("holds a private key but no certificate"),
        (Some(_), 0) => {
            Some("holds a certificate but no private key (pip and uv need both in the file)")
        }
        (Some(_), 1) => None,
        (Some(_), _) => Some("holds more than one private key"),
    };
    if let Some(problem) = problem {
        return Err(Error::env(CLIENT_CERT_VAR, format!("{shown} {problem}")));
    }
    // The first certificate is the client's own; the rest, if any, its chain.
    certs
        .into_iter()
        .try_for_each(|der| check_certificate(CLIENT_CERT_VAR, path, der, now))
}

#[cfg(test)]
mod tests;
