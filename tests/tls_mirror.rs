//! A corporate mirror: https with a private CA and a client certificate, for real pip and uv in the chroot, and no trace of either file afterwards.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use dib_pypi_tests::tls::HttpsMirror;
use dib_pypi_tests::{assert_ok, assert_same_tree, build_mirror, read, text, Image};

use super::{assert_installed, pip_install_argv, uv_install_argv, CLEANUP, PRE_INSTALL, ROOT_D};

/// pip in the chroot installs `project` (and uv) from the configured
/// mirror, in a shell that sourced the element's environment.d as DIB's
/// hooks do.
fn pip_install(image: &mut Image, project: &str, env: &[(&str, &str)]) -> Output {
    let argv = pip_install_argv(image, project);
    image.run_with_environment(&argv, env)
}

/// uv (installed by pip above) installs `project` into a second venv, in
/// the same kind of shell.
fn uv_install(image: &mut Image, project: &str, env: &[(&str, &str)]) -> Output {
    let argv = uv_install_argv(image, project);
    image.run_with_environment(&argv, env)
}

fn mode(image: &Image, inner: &str) -> u32 {
    std::fs::metadata(image.path(inner))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn an_https_mirror_with_a_private_ca_and_a_client_certificate() {
    let mut image = Image::new();
    // The image's own public CAs, as an image with ca-certificates has
    // them (Debian's pip reads this file, and fails without it).
    let bundle = image.path("/etc/ssl/certs/ca-certificates.crt");
    std::fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    std::fs::copy("/etc/ssl/certs/ca-certificates.crt", &bundle).unwrap();
    let tree = tempfile::tempdir().unwrap();
    build_mirror(
        &tree.path().join("m"),
        &["dibtest-alpha", "dibtest-beta"],
        true,
    );
    let server = HttpsMirror::start(&tree.path().join("m"), true);
    let before = image.snapshot();
    let no_cache = tempfile::tempdir().unwrap();
    let url = server.url();
    let ca = server.ca();
    let client = server.client();
    let base = [
        ("DIB_PYPI_MIRROR_URL", url.as_str()),
        ("DIB_OFFLINE", "1"),
        ("DIB_IMAGE_CACHE", no_cache.path().to_str().unwrap()),
    ];

    // Without the CA, pip cannot trust the mirror.
    assert_ok("pre-install.d", &image.run_inside(PRE_INSTALL, &base));
    let out = pip_install(&mut image, "dibtest-alpha", &base);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("CERTIFICATE_VERIFY_FAILED"),
        "{}",
        text(&out)
    );
    assert_ok("cleanup.d", &image.run_outside(CLEANUP, &[]));
    assert_same_tree(&before, &image.snapshot());

    // With the CA but no client certificate, the mirror refuses pip.
    let with_ca: Vec<(&str, &str)> = base
        .iter()
        .copied()
        .chain([("DIB_PYPI_MIRROR_CA", ca.to_str().unwrap())])
        .collect();
    assert_ok("root.d with the CA", &image.run_outside(ROOT_D, &with_ca));
    assert_ok("pre-install.d", &image.run_inside(PRE_INSTALL, &with_ca));
    let out = pip_install(&mut image, "dibtest-alpha", &with_ca);
    assert!(!out.status.success());
    assert!(
        !text(&out).contains("CERTIFICATE_VERIFY_FAILED"),
        "{}",
        text(&out)
    );
    assert_ok("cleanup.d", &image.run_outside(CLEANUP, &[]));
    assert_same_tree(&before, &image.snapshot());

    // With both, pip and uv install from it, although the host exports its
    // own CA variables (as a corporate host does for its own pip), to a
    // path that exists in the image too: environment.d replaces them.
    let public = "/etc/ssl/certs/ca-certificates.crt";
    let env: Vec<(&str, &str)> = with_ca
        .iter()
        .copied()
        .chain([
            ("DIB_PYPI_MIRROR_CLIENT_CERT", client.to_str().unwrap()),
            ("PIP_CERT", public),
            ("SSL_CERT_FILE", public),
            ("REQUESTS_CA_BUNDLE", public),
        ])
        .collect();
    let out = image.run_outside(ROOT_D, &env);
    assert_ok("root.d", &out);
    assert_eq!(mode(&image, "/dib-pypi/mirror-ca.pem"), 0o644);
    assert_eq!(mode(&image, "/dib-pypi/mirror-client.pem"), 0o600);
    let configured = image.run_inside(PRE_INSTALL, &env);
    assert_ok("pre-install.d", &configured);
    let conf = read(&image.path("/root/.config/pip/pip.conf"));
    assert!(
        conf.contains("\ncert = /dib-pypi/mirror-ca.pem\n"),
        "{conf}"
    );
    assert!(
        conf.contains("\nclient-cert = /dib-pypi/mirror-client.pem\n"),
        "{conf}"
    );
    let exported = image.run_with_environment(&["/usr/bin/env"], &env);
    assert_ok("env after environment.d", &exported);
    let vars = String::from_utf8_lossy(&exported.stdout);
    for var in ["PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"] {
        assert!(
            vars.contains(&format!("\n{var}=/dib-pypi/mirror-ca.pem\n")),
            "{var}: {vars}"
        );
    }
    for var in ["PIP_CLIENT_CERT", "SSL_CLIENT_CERT"] {
        assert!(
            vars.contains(&format!("\n{var}=/dib-pypi/mirror-client.pem\n")),
            "{var}: {vars}"
        );
    }
    // Not set on the host, so not set for the build either.
    assert!(!vars.contains("CURL_CA_BUNDLE"), "{vars}");
    let said = String::from_utf8_lossy(&exported.stderr);
    assert_eq!(
        said.trim_end(),
        format!(
            "pypi: for the build, the mirrors' CA and client certificate in /dib-pypi replace \
             SSL_CERT_FILE={public}, PIP_CERT={public}, REQUESTS_CA_BUNDLE={public}"
        ),
    );
    let out = pip_install(&mut image, "dibtest-alpha", &env);
    assert_ok(
        "pip install over https with the CA and the client certificate, host PIP_CERT set",
        &out,
    );
    assert_installed(&image, "/opt/venvs/pip", "dibtest-alpha");
    let out = uv_install(&mut image, "dibtest-beta", &env);
    assert_ok(
        "uv pip install over https (SSL_CERT_FILE, SSL_CLIENT_CERT)",
        &out,
    );
    assert_installed(&image, "/opt/venvs/uv", "dibtest-beta");
    // uv really needs what environment.d gives it: without it, it fails.
    let out = image.chroot(
        &[
            "/opt/venvs/pip/bin/uv",
            "pip",
            "install",
            "--no-cache",
            "--python",
            "/opt/venvs/uv/bin/python",
            "--reinstall",
            "dibtest-beta",
        ],
        &env,
    );
    assert!(!out.status.success(), "{}", text(&out));

    let out = image.run_outside(CLEANUP, &[]);
    assert_ok("cleanup.d", &out);
    assert_same_tree(&before, &image.snapshot());
    // Neither file, nor any of their text, went to the output.
    let key = std::fs::read_to_string(&client).unwrap();
    let secret_line = key.lines().find(|l| !l.starts_with("-----")).unwrap();
    for out in [&configured, &out] {
        let t = text(out);
        assert!(!t.contains("BEGIN") && !t.contains(secret_line), "{t}");
    }
}

/// environment.d is bash and cannot read the tools' specs: it must name
/// every TLS variable each spec says its tool reads, and for the file the
/// spec's kind says (the CA bundle, the client certificate).
#[test]
fn environment_d_points_every_tools_tls_variables_at_the_elements_files() {
    let script = std::fs::read_to_string(
        dib_pypi_tests::workspace().join("hooks/environment.d/20-pypi-mirror-tls"),
    )
    .unwrap();
    let call = |file: &str| -> String {
        let at = script
            .find(&format!("dib_pypi_point {file} "))
            .unwrap_or_else(|| panic!("no dib_pypi_point for {file}:\n{script}"));
        let rest = &script[at..];
        let end = rest.find("\nfi").unwrap();
        rest[..end].to_string()
    };
    let (ca, client) = (
        call("/dib-pypi/mirror-ca.pem"),
        call("/dib-pypi/mirror-client.pem"),
    );
    for tool in dib_pypi_core::tools::TOOLS {
        for var in tool.ca_vars {
            assert!(
                ca.split_whitespace().any(|w| w.trim_matches('"') == *var),
                "{}: {var} not pointed at the CA bundle: {ca}",
                tool.name
            );
        }
        for var in tool.client_cert_vars {
            assert!(
                client
                    .split_whitespace()
                    .any(|w| w.trim_matches('"') == *var),
                "{}: {var} not pointed at the client certificate: {client}",
                tool.name
            );
        }
    }
}
