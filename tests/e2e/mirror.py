#!/usr/bin/env python3
"""Test-data helper for the end-to-end test (tests/e2e/run.sh).

Two sub-commands, standard library only, so it runs with any python3:

``wheel``  writes a minimal but valid pure-Python wheel of the probe
           package.  Its module carries a token, so the test can tell
           which wheel (and so which mirror) an install in the image
           came from.

``index``  lays files out as a PEP 503 "simple" repository:

               ROOT/index.html                 links to every project
               ROOT/<project>/index.html       links to its files
               ROOT/<project>/<file>           the files themselves

           Links are relative and carry ``#sha256=`` fragments, so the
           same tree works as ``file:///tmp/pypi`` (the pypi element's
           default) and behind a static http server.

Example::

    mirror.py wheel --name dib-pypi-e2e-probe --version 1.0 \
        --token abc --out /tmp/wheels
    mirror.py index --root /tmp/mirror /tmp/wheels/*.whl
"""

import argparse
import base64
import hashlib
import html
import os
import re
import shutil
import sys
import zipfile

# A fixed timestamp keeps the wheel bytes reproducible for a given token.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def normalize(name):
    """PEP 503 project name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(name, version, token, out_dir):
    dist = re.sub(r"[-_.]+", "_", name)
    module = dist.lower()
    dist_info = "%s-%s.dist-info" % (dist, version)
    files = [
        (
            "%s/__init__.py" % module,
            (
                '"""Probe package of the dib-pypi end-to-end test."""\n'
                "VERSION = %r\n"
                "TOKEN = %r\n" % (version, token)
            ).encode(),
        ),
        (
            "%s/METADATA" % dist_info,
            (
                "Metadata-Version: 2.1\n"
                "Name: %s\n"
                "Version: %s\n"
                "Summary: probe package of the dib-pypi end-to-end test\n"
                "\n" % (name, version)
            ).encode(),
        ),
        (
            "%s/WHEEL" % dist_info,
            (
                "Wheel-Version: 1.0\n"
                "Generator: dib-pypi-e2e (1.0)\n"
                "Root-Is-Purelib: true\n"
                "Tag: py3-none-any\n"
            ).encode(),
        ),
    ]
    record_name = "%s/RECORD" % dist_info
    record = "".join(
        "%s,%s,%d\n" % (path, _record_hash(data), len(data))
        for path, data in files
    )
    record += "%s,,\n" % record_name
    files.append((record_name, record.encode()))

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "%s-%s-py3-none-any.whl" % (dist, version))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in files:
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


def _project_of(filename):
    """Project name of a wheel or sdist file name."""
    base = os.path.basename(filename)
    if base.endswith(".whl"):
        return base.split("-")[0]
    for ext in (".tar.gz", ".zip", ".tar.bz2"):
        if base.endswith(ext):
            return base[: -len(ext)].rsplit("-", 1)[0]
    raise ValueError("not a wheel or sdist: %s" % filename)


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _page(title, links):
    body = "\n".join(
        '    <a href="%s">%s</a><br/>' % (html.escape(href), html.escape(text))
        for href, text in links
    )
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        "    <title>%s</title>\n  </head>\n  <body>\n%s\n  </body>\n</html>\n"
        % (html.escape(title), body)
    )


def build_index(root, files):
    """Copy FILES into ROOT and (re)write every index page under ROOT."""
    os.makedirs(root, exist_ok=True)
    for path in files:
        project = normalize(_project_of(path))
        dest = os.path.join(root, project)
        os.makedirs(dest, exist_ok=True)
        shutil.copy2(path, os.path.join(dest, os.path.basename(path)))

    projects = sorted(
        d
        for d in os.listdir(root)
        if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")
    )
    for project in projects:
        pdir = os.path.join(root, project)
        links = []
        for f in sorted(os.listdir(pdir)):
            if f == "index.html" or f.startswith("."):
                continue
            digest = _sha256_file(os.path.join(pdir, f))
            links.append(("%s#sha256=%s" % (f, digest), f))
        with open(os.path.join(pdir, "index.html"), "w") as fh:
            fh.write(_page("Links for %s" % project, links))
    with open(os.path.join(root, "index.html"), "w") as fh:
        fh.write(_page("Simple index", [(p + "/", p) for p in projects]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    w = sub.add_parser("wheel", help="build the probe wheel")
    w.add_argument("--name", required=True)
    w.add_argument("--version", required=True)
    w.add_argument("--token", required=True)
    w.add_argument("--out", required=True)

    i = sub.add_parser("index", help="lay files out as a PEP 503 tree")
    i.add_argument("--root", required=True)
    i.add_argument("files", nargs="*")

    args = parser.parse_args(argv)
    if args.cmd == "wheel":
        print(build_wheel(args.name, args.version, args.token, args.out))
    else:
        build_index(args.root, args.files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
