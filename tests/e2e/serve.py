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
The server stops by itself after --lifetime seconds, so a test that dies
cannot leave it running for long.
"""

import argparse
import base64
import functools
import http.server
import os
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
            line = "%s %s %s auth=%s\n" % (
                self.command,
                self.path,
                code,
                self._auth_state(),
            )
            with log_lock:
                with open(args.access_log, "a") as fh:
                    fh.write(line)

        def log_message(self, *a):  # silence stderr chatter
            pass

    handler = functools.partial(Handler, directory=args.directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
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
