//! An https mirror on loopback for the TLS tests: a certificate from a throw-away CA, optionally requiring a client certificate.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use dib_pypi_core::testing::Pki;

/// Python's http.server over TLS, one request per line on stderr.
const SERVER: &str = r#"
import http.server, ssl, sys, functools
directory, cert, key, client_ca = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if client_ca:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(client_ca)
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"#;

/// A CA, and an https server for `dir` with a certificate it signed.
#[derive(Debug)]
pub struct HttpsMirror {
    child: Child,
    port: u16,
    /// The files the test hands to the element, and the server's own.
    pub files: tempfile::TempDir,
}

impl HttpsMirror {
    /// Serve `dir` over https on 127.0.0.1; with `client_auth`, only to
    /// clients that show a certificate of the same CA.
    pub fn start(dir: &Path, client_auth: bool) -> HttpsMirror {
        let pki = Pki::new("dib-pypi test CA");
        let files = tempfile::tempdir().unwrap();
        let (cert, key) = pki.server(&["127.0.0.1", "localhost"]);
        let put = |name: &str, data: &str| {
            let p = files.path().join(name);
            std::fs::write(&p, data).unwrap();
            p
        };
        let ca = put("ca.pem", &pki.ca_pem());
        let cert = put("server.pem", &cert);
        let key = put("server.key", &key);
        put("client.pem", &pki.client("dib builder"));
        let mut child = Command::new("python3")
            .args(["-c", SERVER])
            .arg(dir)
            .arg(&cert)
            .arg(&key)
            .arg(if client_auth {
                ca.as_os_str()
            } else {
                "".as_ref()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("https server said {line:?}"));
        HttpsMirror { child, port, files }
    }

    /// `https://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }

    /// The CA certificate (PEM file on the host).
    pub fn ca(&self) -> PathBuf {
        self.files.path().join("ca.pem")
    }

    /// A client certificate with its key, signed by the CA.
    pub fn client(&self) -> PathBuf {
        self.files.path().join("client.pem")
    }
}

impl Drop for HttpsMirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
