#!/usr/bin/env python3
"""Static http server for the end-to-end test's PEP 503 mirrors.

Serves DIR on 127.0.0.1 (port 0 = any free port; the port is written to
--port-file once listening).  Every request is appended to --access-log
as one line::

    METHOD PATH STATUS auth=<none|ok|bad>

``auth=ok`` means the request carried HTTP basic credentials equal to
--expect-user and the password in the environment variable
SERVE_EXPECT_PASSWORD (kept off the command line); the password itself
is never logged.

With --certfile and --keyfile it serves https; with --client-ca too, only
to clients showing a certificate that CA signed, and each line then ends
in ``cert=ok``.
The server stops by itself after --lifetime seconds, so a test that dies
cannot leave it running for long.
"""

import argparse
import base64
import functools
import http.server
import os
import ssl
import sys
import threading


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--access-log", required=True)
    parser.add_argument("--expect-user", default="")
    parser.add_argument("--lifetime", type=float, default=3600.0)
    parser.add_argument("--certfile", default="")
    parser.add_argument("--keyfile", default="")
    parser.add_argument("--client-ca", default="")
    args = parser.parse_args()

    log_lock = threading.Lock()
    expected = None
    if args.expect_user:
        password = os.environ.get("SERVE_EXPECT_PASSWORD", "")
        expected = "%s:%s" % (args.expect_user, password)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def _auth_state(self):
            header = self.headers.get("Authorization")
            if not header:
                return "none"
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic":
                return "bad"
            try:
                decoded = base64.b64decode(value.strip()).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return "bad"
            if expected is not None and decoded == expected:
                return "ok"
            return "bad"

        def log_request(self, code="-", size="-"):
            if isinstance(code, http.HTTPStatus):
                code = code.value
            line = "%s %s %s auth=%s" % (
                self.command,
                self.path,
                code,
                self._auth_state(),
            )
            if args.client_ca:
                line += " cert=%s" % ("ok" if self.connection.getpeercert() else "none")
            line += "\n"
            with log_lock:
                with open(args.access_log, "a") as fh:
                    fh.write(line)

        def log_message(self, *a):  # silence stderr chatter
            pass

    handler = functools.partial(Handler, directory=args.directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    if args.certfile:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.certfile, args.keyfile)
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("%d\n" % port)
    os.replace(tmp, args.port_file)

    timer = threading.Timer(args.lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
