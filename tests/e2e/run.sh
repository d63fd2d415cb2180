#!/bin/bash
# End-to-end test of the pypi element in real diskimage-builder builds.
#
#   tests/e2e/run.sh [--dib-venv DIR] [--work DIR] [--elements DIR]
#                    [--builds "file http parallel serve"] [--keep]
#
# 1. installs the element as users do: `pip install .` of this checkout
#    into a fresh venv WORK/venv, ELEMENTS_PATH from its `pypi-mirror
#    elements-path` (or takes an already assembled one from --elements
#    DIR), and runs DIB's dib-lint over that installed copy, with no
#    ignore settings; builds the test tools seccomp-run and pypi-mirror
#    when a build needs them;
# 2. runs disk-image-create -t tar debian-minimal pypi pypi-test builds:
#    "file"     the element's defaults: a PEP 503 mirror in
#               $DIB_IMAGE_CACHE/pypi/mirror (file:///tmp/pypi), upstream
#               PyPI disabled (DIB_NO_PYPI_PIP=1);
#    "http"     the mirrors served on loopback over http:
#               DIB_PYPI_MIRROR_URL (with a user and password),
#               DIB_PYPI_MIRROR_URL_1 wrong (404), DIB_PYPI_MIRROR_URL_2
#               and DIB_PYPI_MIRROR_URL_10 working, DIB_OFFLINE=1, -x;
#    "user"     as the ordinary user $E2E_USER (password-less sudo), with
#               DIB_IMAGE_CACHE unset: the mirror is that user's
#               ~/.cache/image-create/pypi/mirror;
#    "seccomp"  as root, the whole disk-image-create under
#               `seccomp-run linux-4.18 --`: every syscall newer than
#               Linux 4.18 (openat2 included) answers ENOSYS;
#    "parallel" "user" and "seccomp" at the same time, sharing one mirror
#               directory (the root build's $DIB_IMAGE_CACHE/pypi/mirror
#               is a symlink to the user's), while `pypi-mirror add` adds
#               a wheel to it mid-build;
#    "serve"    two builds in a row: "serve-online" through
#               `pypi-mirror serve` (DIB_PYPI_MIRROR_URL), which caches
#               what pip and uv fetch from a loopback upstream (with a
#               user and password) into $DIB_IMAGE_CACHE/pypi/mirror;
#               then "serve-offline" with upstream and serve stopped,
#               DIB_OFFLINE=1 and the default file:///tmp/pypi: the same
#               versions, from the tree serve filled;
# 3. opens each tar and checks what the element must leave (and not
#    leave) in the image, the build log, and the host: every host check
#    is scoped to its own build (its DIB build dir, its mirror), so other
#    DIB builds on the host cannot make it pass or fail.
#
# Prints one line per check and ends with "N passed, M failed"; exits
# non-zero if any check failed.  See docs/E2E.md.
#
# Options (environment variables in brackets):
#   --dib-venv DIR   venv with diskimage-builder [DIB_VENV, /opt/dib-venv]
#   --work DIR       work dir [E2E_WORK, <repo>/target/e2e]
#   --elements DIR   use DIR/pypi instead of `pip install .` [E2E_ELEMENTS]
#   --builds LIST    which builds to run [E2E_BUILDS, "file http parallel serve"];
#                    one of file, http, user, seccomp, parallel, serve each
#   --keep           keep the extracted image trees [E2E_KEEP=1]
# Other environment:
#   E2E_IMAGE_CACHE        DIB_IMAGE_CACHE of the root builds [WORK/cache];
#                          holds the debootstrap tarball (reused by later
#                          builds)
#   E2E_USER               the ordinary build user [dib-e2e] (.ci/install-deps
#                          creates it)
#   E2E_SECCOMP_PROFILE    seccomp-run profile of the seccomp build
#                          [linux-4.18]
#   E2E_UV_WHEEL           a uv wheel to use instead of downloading one
#   E2E_UV_SPEC            what `pip download` fetches ["uv==0.13.9", the
#                          version the cargo tests pin]
#   E2E_BUILD_TIMEOUT      seconds per disk-image-create [1200]
#   E2E_HTTP_TRACE         1: run the http build with -x [1]
#   DIB_DISTRIBUTION_MIRROR, DIB_DEBIAN_SECURITY_MIRROR
#                          default: read from the host's apt sources

set -eu
set -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

DIB_VENV=${DIB_VENV:-/opt/dib-venv}
WORK=${E2E_WORK:-$REPO/target/e2e}
ELEMENTS_SRC=${E2E_ELEMENTS:-}
BUILDS=${E2E_BUILDS:-file http parallel serve}
KEEP=${E2E_KEEP:-0}
E2E_USER=${E2E_USER:-dib-e2e}
SECCOMP_PROFILE=${E2E_SECCOMP_PROFILE:-linux-4.18}

while [ $# -gt 0 ]; do
    case "$1" in
        --dib-venv) DIB_VENV=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --elements) ELEMENTS_SRC=$2; shift 2 ;;
        --builds) BUILDS=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
CACHE=${E2E_IMAGE_CACHE:-$WORK/cache}
BUILD_TIMEOUT=${E2E_BUILD_TIMEOUT:-1200}
HTTP_TRACE=${E2E_HTTP_TRACE:-1}
RELEASE=bookworm
PROBE=dib-pypi-e2e-probe
PROBE_MODULE=dib_pypi_e2e_probe
SEED=$HERE/elements/pypi-test/pypi-test-data/seed-pip.conf
PY=$DIB_VENV/bin/python
# the wheel `pypi-mirror add` puts into the shared mirror mid-build
ADDED=dib-pypi-e2e-added
ADDED_WHEEL_NAME=dib_pypi_e2e_added-1.0-py3-none-any.whl
# the test tools, built by `cargo build` below when a build needs them
TOOLS=${CARGO_TARGET_DIR:-$REPO/target}/debug
SECCOMP_RUN=$TOOLS/seccomp-run
PYPI_MIRROR=$TOOLS/pypi-mirror

if [ "$(id -u)" -eq 0 ]; then
    SUDO=
else
    SUDO=sudo
fi

NEED_USER=0
NEED_TOOLS=0
for build in $BUILDS; do
    case "$build" in
        file|http) ;;
        user|parallel) NEED_USER=1; NEED_TOOLS=1 ;;
        seccomp|serve) NEED_TOOLS=1 ;;
        *) echo "run.sh: unknown build '$build' (file, http, user, seccomp, parallel, serve)" >&2; exit 2 ;;
    esac
done

# ---------------------------------------------------------------- report

PASSED=0
FAILED=0
SKIPPED=0
TIMINGS=()
SERVER_PID=         # the loopback http server of build "http", the upstream of "serve"
TLS_SERVER_PID=     # build "http"'s https mirror (private CA, client certificates)
SERVE_PID=          # `pypi-mirror serve` of build "serve"
declare -A BUILD_PID    # build name -> pid of its background job
declare -A BUILD_MIRROR # build name -> the host mirror directory it mounts
declare -A BUILD_DIR    # build name -> DIB's TMP_BUILD_DIR ("Building in ...")
declare -A BUILD_WHAT   # build name -> how it runs, for the report
declare -A MIRROR_NOTE  # build name -> what its mirror is expected to be, if not as found
declare -A MIRROR_LIVE  # build name -> who changes its mirror while it runs (checked by its build's own checks)

say() { echo "e2e: $*"; }
ok() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
not_ok() { FAILED=$((FAILED + 1)); echo "not ok - $*"; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "skip - $*"; }
# check DESCRIPTION COMMAND...: one check, passes when COMMAND succeeds.
check() {
    local desc=$1
    shift
    if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
timing() { TIMINGS+=("$(printf '%-28s %5ss' "$1" "$2")"); }

finish() {
    local rc=$?
    local name
    for name in "${!BUILD_PID[@]}"; do
        # stopped early: end our builds' timeouts (DIB cleans up on TERM)
        if [ -s "$WORK/build-$name/pid" ]; then
            kill "$(cat "$WORK/build-$name/pid")" 2>/dev/null || true
        fi
        wait "${BUILD_PID[$name]}" 2>/dev/null || true
    done
    if [ -n "$SERVE_PID" ]; then
        kill "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
        SERVE_PID=
    fi
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
    if [ -n "$TLS_SERVER_PID" ]; then
        kill "$TLS_SERVER_PID" 2>/dev/null || true
        wait "$TLS_SERVER_PID" 2>/dev/null || true
        TLS_SERVER_PID=
    fi
    if [ ${#TIMINGS[@]} -gt 0 ]; then
        echo "e2e: timings:"
        printf '  %s\n' "${TIMINGS[@]}" | tee "$WORK/timings.txt"
    fi
    if [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then
        # died outside a check (set -e): that is a failure too
        not_ok "run.sh stopped early (exit $rc)"
    fi
    local line="$PASSED passed, $FAILED failed"
    if [ "$SKIPPED" -gt 0 ]; then
        line="$line, $SKIPPED skipped"
    fi
    echo "$line"
    if [ "$FAILED" -gt 0 ]; then
        exit 1
    fi
    exit 0
}
trap finish EXIT
# a signal ends the run through finish too (bash skips the EXIT trap on
# an untrapped SIGTERM), so builds still running are stopped
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

# Host-derived Debian mirrors: the main one from the apt sources, the
# security one from a "-security" suite there or else the same host.
read_apt_mirrors() {
    "$PY" - "$RELEASE" <<'EOF'
import glob, re, sys
from urllib.parse import urlsplit
release = sys.argv[1]
entries = []  # (uri, suite)
for path in glob.glob("/etc/apt/sources.list.d/*.sources"):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.split()
        if "deb" not in fields.get("types", []):
            continue
        if fields.get("enabled", ["yes"])[0].lower() == "no":
            continue
        for uri in fields.get("uris", []):
            for suite in fields.get("suites", []):
                entries.append((uri, suite))
for path in ["/etc/apt/sources.list"] + glob.glob("/etc/apt/sources.list.d/*.list"):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb":
            entries.append((line[1], line[2]))
main = next((u for u, s in entries if s == release), None)
main = main or next((u for u, s in entries if "-" not in s), None)
if not main:
    sys.exit("no Debian mirror found in the apt sources")
sec = next((u for u, s in entries if s == release + "-security"), None)
if not sec:
    p = urlsplit(main)
    sec = "%s://%s/debian-security" % (p.scheme, p.netloc)
print(main.rstrip("/"))
print(sec.rstrip("/"))
EOF
}

# Environment for disk-image-create: nothing from the caller that would
# steer pip, uv or the element, so only what each build sets counts.
UNSET_ARGS=()
STRIPPED=()
for v in $(compgen -e); do
    case "$v" in
        PIP_*|UV_*|PYPI_MIRROR_URL*|DIB_PYPI_MIRROR_URL*|DIB_OFFLINE|\
        DIB_NO_PYPI_PIP|DIB_PIP_RETRIES|DIB_PYPI_UV_INDEX_STRATEGY|VIRTUAL_ENV|PYTHONPATH|PYTHONHOME|\
        ELEMENTS_PATH|DIB_DEBUG_TRACE|XDG_CONFIG_HOME|XDG_CACHE_HOME|\
        SSL_CERT_FILE|SSL_CLIENT_CERT|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE)
            UNSET_ARGS+=(-u "$v")
            STRIPPED+=("$v")
            ;;
    esac
done

random_hex() { "$PY" -c 'import secrets; print(secrets.token_hex(8))'; }

# make_pki DIR: a throw-away CA (ca.pem), a server certificate for
# 127.0.0.1 (server.pem, server.key) and a client certificate with its key
# in one file (client.pem), the shape DIB_PYPI_MIRROR_CLIENT_CERT takes.
make_pki() {
    local d=$1
    rm -rf "$d"
    mkdir -p "$d"
    (
        cd "$d"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=dib-pypi e2e CA" \
            -keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key \
            -out server.csr
        printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 2 -extfile server.ext -out server.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=dib builder" -keyout client.key \
            -out client.csr
        printf 'extendedKeyUsage=clientAuth\n' > client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 2 -extfile client.ext -out client.crt
        cat client.crt client.key > client.pem
    ) > "$d.log" 2>&1
}

# A line of base64 from the body of PEM file $1 (its 3rd line): it stands
# for the file's content when looking for copies of it.
pem_line() { sed -n 3p "$1"; }

# Extract an image tar to DIR (as root, keeping owners and modes).
extract() {
    rm -rf "$2"
    mkdir -p "$2"
    $SUDO tar --numeric-owner -xpf "$1" -C "$2"
}

# Run a command as the ordinary build user.
as_user() { $SUDO runuser -u "$E2E_USER" -- "$@"; }

# The DIB build dir (TMP_BUILD_DIR) that a build log names:
# "Building in /tmp/dib_build.XXXXXXXX".
build_dir_of() {
    grep -o -m 1 'Building in /[^ ]*' "$1" 2>/dev/null | sed 's/^Building in //' || true
}

# Mount points at or under DIR in the host's mount table.  A build dir
# is a fresh mktemp name, so this sees only that build's mounts.
mounts_under() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo
}

# Anything named *dib-pypi-stage* (the element's private staging
# directory is "<image root>.dib-pypi-stage", next to DIB's image root
# $TMP_BUILD_DIR/mnt) left in build dir DIR or mounted under it.
stage_leftovers() {
    awk -v d="$1" 'index($5, d "/") == 1 && $5 ~ /dib-pypi-stage/ { print $5 }' /proc/self/mountinfo
    if [ -e "$1" ]; then
        $SUDO find "$1" -maxdepth 2 -name '*dib-pypi-stage*' -print
    fi
}

# Mount points anywhere on the host whose source is directory DIR (or a
# directory under it): same device, and a root inside the filesystem
# equal to DIR's.  DIR is this run's own mirror, so another build's
# mirror mount never matches.
# (Prints a line, so the check fails, when DIR cannot be resolved.)
mounts_of() {
    local real majmin fsroot target rel key
    if ! real=$(readlink -e "$1") ||
        ! read -r majmin fsroot target < <(findmnt -n -r -o MAJ:MIN,FSROOT,TARGET -T "$real"); then
        echo "cannot resolve $1 and its filesystem"
        return 0
    fi
    if [ "$target" = / ]; then rel=$real; else rel=${real#"$target"}; fi
    key=${fsroot%/}$rel
    findmnt -n -r -o MAJ:MIN,FSROOT,TARGET |
        awk -v m="$majmin" -v k="$key" '$1 == m && ($2 == k || index($2, k "/") == 1) { print $3 }'
}

# Device and inode of directory DIR (following a symlink at it), as
# stat(1) prints them for the root of a bind mount of DIR.
dir_id() { stat -L -c '%d:%i' "$1"; }

# One line per entry under DIR (following a symlink at DIR itself):
# path, type, mode, owner, and the sha256 of a file's bytes.
mirror_manifest() {
    "$PY" - "$1" <<'EOF'
import hashlib
import os
import stat
import sys

top = sys.argv[1]
if not os.path.isdir(top):
    print("missing")
    sys.exit(0)
rows = []
for dirpath, dirs, files in os.walk(top):
    for name in dirs + files:
        path = os.path.join(dirpath, name)
        st = os.lstat(path)
        kind, digest = "other", "-"
        if stat.S_ISDIR(st.st_mode):
            kind = "dir"
        elif stat.S_ISREG(st.st_mode):
            kind, h = "file", hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            digest = h.hexdigest()
        meta = "%s %o %d:%d" % (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        rows.append("\t".join((os.path.relpath(path, top), meta, digest)))
for row in sorted(rows):
    print(row)
EOF
}

# mirror_is DIR MANIFEST: DIR is now exactly as MANIFEST recorded it.
mirror_is() {
    local now
    now=$(mirror_manifest "$1")
    if [ "$now" != "$(cat "$2")" ]; then
        diff <(echo "$now") "$2" | head -n 10 | sed 's/^/    /' >&2
        return 1
    fi
}

# Paths whose line differs between two manifests, added or removed.
manifest_changes() {
    diff "$1" "$2" | sed -n 's/^[<>] \([^\t]*\)\t.*/\1/p' | LC_ALL=C sort -u || true
}

# dist_info_exists VENV NAME-VERSION
dist_info_exists() { compgen -G "$1/lib/python3*/site-packages/$2.dist-info" >/dev/null; }
file_absent() { [ ! -e "$1" ] && [ ! -L "$1" ]; }
no_state_dir_in() { file_absent "$1/dib-pypi" && file_absent "$1/.dib-pypi" && file_absent "$1/var/lib/dib-pypi"; }
none_found() { [ -z "$("$@" 2>/dev/null | head -n 5)" ]; }
file_is() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
mode_is() { [ "$(stat -c '%a %u %g' "$1" 2>/dev/null)" = "$2" ]; }
log_has() { grep -q -F -- "$2" "$1"; }
log_lacks() { ! grep -q -F -- "$2" "$1"; }
# has_line FILE LINE: FILE has exactly this line ("mounted /tmp/pypi" is
# not "not-mounted /tmp/pypi").
has_line() { grep -q -x -F -- "$2" "$1"; }

# "Looking in indexes: A, B, C" of pip: the URLs in order, exactly.
pip_indexes_are() {
    local log=$1
    shift
    local want
    want="Looking in indexes: $(
        IFS=,
        echo "$*" | sed 's/,/, /g'
    )"
    local got
    got=$(grep -o 'Looking in indexes: .*' "$log" | sort -u)
    if [ "$got" != "$want" ]; then
        echo "    want: $want" >&2
        echo "    got:  ${got:-<none>}" >&2
        return 1
    fi
}

# ---------------------------------------------------------------- setup

T0=$(date +%s)
say "work dir $WORK, image cache $CACHE, DIB venv $DIB_VENV"
if [ ${#STRIPPED[@]} -gt 0 ]; then
    say "not passed to disk-image-create: ${STRIPPED[*]}"
fi

for tool in "$DIB_VENV/bin/disk-image-create" "$DIB_VENV/bin/dib-lint"; do
    if [ ! -x "$tool" ]; then
        not_ok "$tool not found (run .ci/install-deps)"
        exit 1
    fi
done
for tool in debootstrap sudo losetup mkfs.ext4 fstrim mount findmnt mountpoint file git \
    runuser flock; do
    if ! command -v "$tool" >/dev/null; then
        not_ok "host tool $tool missing (run .ci/install-deps)"
        exit 1
    fi
done

mapfile -t apt_mirrors < <(read_apt_mirrors)
DISTRO_MIRROR=${DIB_DISTRIBUTION_MIRROR:-${apt_mirrors[0]}}
SECURITY_MIRROR=${DIB_DEBIAN_SECURITY_MIRROR:-${apt_mirrors[1]}}
say "Debian mirror $DISTRO_MIRROR, security mirror $SECURITY_MIRROR"

# 1. the element -----------------------------------------------------------

# As users get it: `pip install .` of this checkout into a fresh venv (pip
# builds the wheel: maturin, after `cargo xtask wheel-data` for the
# element), the element where `pypi-mirror elements-path` says.  Or a copy
# of an element assembled already (--elements DIR).
VENV=$WORK/venv
t=$(date +%s)
rm -rf "$VENV" "$WORK/elements"
if [ -n "$ELEMENTS_SRC" ]; then
    ELEMENTS=$WORK/elements
    mkdir -p "$ELEMENTS"
    say "using the element in $ELEMENTS_SRC/pypi"
    cp -a "$ELEMENTS_SRC/pypi" "$ELEMENTS/pypi"
    timing "element (copied)" $(($(date +%s) - t))
else
    # as from a fresh checkout: no wheel data directory yet
    rm -rf "$REPO/target/wheel-data"
    say "pip install $REPO into a fresh venv $VENV"
    if ! { "$PY" -m venv "$VENV" &&
        (cd "$REPO" && umask 022 && "$VENV/bin/pip" install --disable-pip-version-check .); } \
        > "$WORK/pip-install.log" 2>&1; then
        tail -n 40 "$WORK/pip-install.log"
        not_ok "element: pip install . into a fresh venv (log: $WORK/pip-install.log)"
        exit 1
    fi
    timing "element (pip install .)" $(($(date +%s) - t))
    if ! ELEMENTS=$("$VENV/bin/pypi-mirror" elements-path); then
        not_ok "element: $VENV/bin/pypi-mirror elements-path"
        exit 1
    fi
    check "element: pypi-mirror elements-path names the venv's share/dib-pypi/elements ($ELEMENTS)" \
        test "$ELEMENTS" = "$(cd "$VENV/share/dib-pypi/elements" && pwd -P)"
fi
EL=$ELEMENTS/pypi
check "element: $EL has README.rst, root.d, pre-install.d/04-pypi-configure, cleanup.d" \
    test -f "$EL/README.rst" -a -d "$EL/root.d" -a -x "$EL/pre-install.d/04-pypi-configure" -a -d "$EL/cleanup.d"
check "element: its hook binaries have no exec bit (the hook scripts run a copy)" \
    none_found find "$EL/dib-pypi-libexec" -type f -perm /111

# dib-lint, as DIB runs it on its own elements: from a fresh git tree
# (dib-lint skips files git ignores, and /target is ignored here) with no
# tox.ini, so no global ignore settings.
lint() {
    local name=$1 src=$2
    local dir=$WORK/lint-$name
    rm -rf "$dir"
    mkdir -p "$dir/elements" "$dir/lib"
    cp -a "$src" "$dir/elements/"
    git -C "$dir" init -q
    if (cd "$dir" && PATH="$DIB_VENV/bin:$PATH" ELEMENTS_DIR=elements LIB_DIR=lib \
        "$DIB_VENV/bin/dib-lint") > "$dir.log" 2>&1 &&
        grep -q '^PASS$' "$dir.log" && ! grep -q '^Skipping' "$dir.log"; then
        return 0
    fi
    grep -E 'ERROR|FAIL|Skipping' "$dir.log" | head -n 40 >&2
    return 1
}
t=$(date +%s)
check "dib-lint passes on the element in $EL (log: $WORK/lint-pypi.log)" lint pypi "$EL"
check "element carries no '# dib-lint:' exclusions" \
    none_found grep -r -a -l 'dib-lint:' "$EL"
check "dib-lint passes on the test element pypi-test" lint pypi-test "$HERE/elements/pypi-test"
timing "dib-lint" $(($(date +%s) - t))

# The test tools: seccomp-run (the seccomp build runs DIB under it) and
# pypi-mirror (builds and updates the mirrors of the user, seccomp and
# parallel builds; `serve` of the serve build).
if [ "$NEED_TOOLS" = 1 ]; then
    t=$(date +%s)
    say "cargo build -p dib-pypi-tests --bin seccomp-run -p pypi-mirror --bin pypi-mirror"
    if ! (cd "$REPO" && cargo build --locked -p dib-pypi-tests --bin seccomp-run \
        -p pypi-mirror --bin pypi-mirror) > "$WORK/tools.log" 2>&1; then
        tail -n 40 "$WORK/tools.log"
        not_ok "cargo build of seccomp-run and pypi-mirror (log: $WORK/tools.log)"
        exit 1
    fi
    timing "tools (cargo build)" $(($(date +%s) - t))
fi

# The ordinary build user, as .ci/install-deps creates it: it must exist,
# have password-less sudo, and reach everything its build reads.
if [ "$NEED_USER" = 1 ]; then
    if ! UHOME=$(getent passwd "$E2E_USER" | cut -d: -f6) || [ -z "$UHOME" ]; then
        not_ok "build user $E2E_USER exists (run .ci/install-deps)"
        exit 1
    fi
    UCACHE=$UHOME/.cache/image-create
    UMIRROR=$UCACHE/pypi/mirror
    if ! as_user sudo -n true; then
        not_ok "build user $E2E_USER has password-less sudo (run .ci/install-deps)"
        exit 1
    fi
    if ! as_user test -r "$ELEMENTS/pypi/README.rst" -a -r "$HERE/elements/pypi-test/README.rst" \
        -a -x "$DIB_VENV/bin/disk-image-create" -a -x "$PYPI_MIRROR"; then
        not_ok "build user $E2E_USER can read the elements and the DIB venv, and run pypi-mirror"
        exit 1
    fi
    # The user's ~/.cache/image-create is one per host: one run at a time.
    exec {user_lock}>"/run/lock/dib-pypi-e2e-$E2E_USER.lock"
    if ! flock -n "$user_lock"; then
        say "waiting for another e2e run that uses $E2E_USER's cache"
        if ! flock -w "$BUILD_TIMEOUT" "$user_lock"; then
            not_ok "no other e2e run holds $E2E_USER's cache (/run/lock/dib-pypi-e2e-$E2E_USER.lock)"
            exit 1
        fi
    fi
fi

# 2. mirror contents ---------------------------------------------------------

t=$(date +%s)
DL=$WORK/downloads
mkdir -p "$DL"
if [ -n "${E2E_UV_WHEEL:-}" ]; then
    UV_WHEEL=$E2E_UV_WHEEL
else
    # Pinned, so a new uv release cannot change a result.
    UV_SPEC=${E2E_UV_SPEC:-uv==0.13.9}
    UV_GLOB="uv-${UV_SPEC#uv==}-*.whl"
    [ "$UV_SPEC" = "${UV_SPEC#uv==}" ] && UV_GLOB='uv-*.whl'
    UV_WHEEL=$(find "$DL" -maxdepth 1 -name "$UV_GLOB" | sort | tail -n 1)
    if [ -z "$UV_WHEEL" ]; then
        say "downloading $UV_SPEC from PyPI (host side)"
        env "${UNSET_ARGS[@]}" "$PY" -m pip download --quiet --no-deps --only-binary=:all: \
            --dest "$DL" "$UV_SPEC"
        UV_WHEEL=$(find "$DL" -maxdepth 1 -name "$UV_GLOB" | sort | tail -n 1)
    fi
fi
if [ ! -f "$UV_WHEEL" ]; then
    not_ok "a uv wheel for the mirror (E2E_UV_WHEEL or pip download uv)"
    exit 1
fi
UV_VERSION=$(basename "$UV_WHEEL" | cut -d- -f2)
say "uv wheel: $(basename "$UV_WHEEL")"

WHEELS=$WORK/wheels
rm -rf "$WHEELS"
# one probe wheel per role, each with its own token
declare -A TOKEN
mkwheel() { # role version
    TOKEN[$1]="$1-$(random_hex)"
    "$PY" "$HERE/mirror.py" wheel --name "$PROBE" --version "$2" \
        --token "${TOKEN[$1]}" --out "$WHEELS/$1" >/dev/null
}
mkwheel file 1.0       # build "file": the local mirror
mkwheel http-2 1.0     # build "http": DIB_PYPI_MIRROR_URL_2
mkwheel http-10 2.0    # build "http": DIB_PYPI_MIRROR_URL_10
mkwheel decoy 9.0      # build "http": the local mirror, must not be used
mkwheel user 1.0       # builds "user" and "parallel": the user's mirror
mkwheel seccomp 1.0    # build "seccomp" alone: its own mirror
mkwheel serve 3.0      # build "serve": upstream of pypi-mirror serve
# added to the shared mirror mid-build ("parallel"): a project no build
# installs, so what the builds install does not depend on the timing
"$PY" "$HERE/mirror.py" wheel --name "$ADDED" --version 1.0 \
    --token "added-$(random_hex)" --out "$WHEELS/added" >/dev/null
timing "mirror contents" $(($(date +%s) - t))

# 3. builds ------------------------------------------------------------------

# What every build gets, whoever runs it.
DIB_VARS=(
    "ELEMENTS_PATH=$ELEMENTS:$HERE/elements"
    "DIB_RELEASE=$RELEASE"
    "DIB_DISTRIBUTION_MIRROR=$DISTRO_MIRROR"
    "DIB_DEBIAN_SECURITY_MIRROR=$SECURITY_MIRROR"
    # write the debootstrap tarball to $DIB_IMAGE_CACHE, and use it when
    # it is there: only the first build of a run debootstraps
    "DIB_DEBOOTSTRAP_CACHE=1"
    "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE=1"
)
# The ordinary user's whole environment: a login's, nothing of the
# caller's (so no DIB_IMAGE_CACHE: DIB defaults it to
# ~/.cache/image-create).  The sbin directories are on PATH because DIB
# runs fstrim and debootstrap --version without sudo, and Debian keeps
# them in /usr/sbin.
if [ "$NEED_USER" = 1 ]; then
    USER_ENV=(
        "HOME=$UHOME" "USER=$E2E_USER" "LOGNAME=$E2E_USER" "SHELL=/bin/bash" "LANG=C.UTF-8"
        "PATH=$DIB_VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    )
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        if [ -n "${!v:-}" ]; then
            USER_ENV+=("$v=${!v}")
        fi
    done
fi

# dib_start NAME MODE MIRROR [VAR=VALUE...] [-- DIB-OPTIONS...]
# Start one disk-image-create in the background.  MIRROR is the host
# directory the element is to mount (its state now is what the build
# must leave).  MODE:
#   caller   as whoever runs this script (root in CI), DIB_IMAGE_CACHE=$CACHE
#   user     as $E2E_USER, with that user's login environment only
#   seccomp  as root, DIB_IMAGE_CACHE=$CACHE, the whole disk-image-create
#            under `seccomp-run $SECCOMP_PROFILE --` (it and everything it
#            starts inherit the filter)
dib_start() {
    local name=$1 mode=$2 mirror=$3
    shift 3
    local envs=() opts=() run=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        envs+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift
    opts=("$@")
    local b=$WORK/build-$name
    $SUDO rm -rf "$b"
    mkdir -p "$b"
    BUILD_MIRROR[$name]=$mirror
    BUILD_DIR[$name]=
    mirror_manifest "$mirror" > "$b/mirror-expected.txt"
    case "$mode" in
        caller)
            BUILD_WHAT[$name]="as $(id -un)"
            run=(env "${UNSET_ARGS[@]}" "PATH=$DIB_VENV/bin:$PATH" "DIB_IMAGE_CACHE=$CACHE"
                "${DIB_VARS[@]}" "${envs[@]}")
            ;;
        user)
            BUILD_WHAT[$name]="as $E2E_USER"
            $SUDO chown "$E2E_USER:" "$b"
            run=($SUDO runuser -u "$E2E_USER" -- env -i "${USER_ENV[@]}" "${DIB_VARS[@]}" "${envs[@]}")
            ;;
        seccomp)
            BUILD_WHAT[$name]="as root under seccomp-run $SECCOMP_PROFILE"
            run=($SUDO env "${UNSET_ARGS[@]}" "PATH=$DIB_VENV/bin:$PATH" "DIB_IMAGE_CACHE=$CACHE"
                "${DIB_VARS[@]}" "${envs[@]}" "$SECCOMP_RUN" "$SECCOMP_PROFILE" --)
            ;;
    esac
    say "build $name (${BUILD_WHAT[$name]}): disk-image-create ${opts[*]} -t tar debian-minimal pypi pypi-test (log: $b/build.log)"
    (
        t0=$(date +%s)
        timeout "$BUILD_TIMEOUT" "${run[@]}" "$DIB_VENV/bin/disk-image-create" "${opts[@]}" \
            -t tar -o "$b/image" --logfile "$b/build.log" \
            debian-minimal pypi pypi-test > "$b/dib.out" 2>&1 &
        echo $! > "$b/pid"
        rc=0
        wait $! || rc=$?
        echo "$rc $(($(date +%s) - t0))" > "$b/exit"
    ) &
    BUILD_PID[$name]=$!
}

# Whether build NAME is still running.
build_running() { [ ! -s "$WORK/build-$1/exit" ]; }

# Whether build NAME's image has its mirror mounted at /tmp/pypi right
# now: a mount point whose root is the mirror directory itself.
mirror_mounted() {
    local bd
    bd=$(build_dir_of "$WORK/build-$1/build.log")
    [ -n "$bd" ] && mountpoint -q "$bd/mnt/tmp/pypi" &&
        [ "$(stat -c '%d:%i' "$bd/mnt/tmp/pypi")" = "$(dir_id "${BUILD_MIRROR[$1]}")" ]
}

# What made a build fail, in one line: a hook of ours that said
# "error:", or the timeout.
build_error() {
    local b=$1 rc=$2 line
    if [ "$rc" = 124 ]; then
        echo "timed out after ${BUILD_TIMEOUT}s"
        return
    fi
    line=$(grep -h -o -m 1 -E 'dib-pypi-[a-z]+: error: .*' "$b/build.log" "$b/dib.out" 2>/dev/null |
        head -n 1 || true)
    echo "${line:-no error line of the element; see $b/build.log}"
}

# dib_finish NAME: wait for build NAME; report it; extract its image.
dib_finish() {
    local name=$1
    local b=$WORK/build-$name rc=255 secs=0 t
    wait "${BUILD_PID[$name]}" || true
    unset "BUILD_PID[$name]"
    if [ -s "$b/exit" ]; then
        read -r rc secs < "$b/exit"
    fi
    timing "build $name" "$secs"
    BUILD_DIR[$name]=$(build_dir_of "$b/build.log")
    if [ "$rc" -ne 0 ] || [ ! -f "$b/image.tar" ]; then
        tail -n 40 "$b/build.log" 2>/dev/null || cat "$b/dib.out"
        not_ok "build $name: disk-image-create ${BUILD_WHAT[$name]} succeeded (exit $rc: $(build_error "$b" "$rc"))"
        return 1
    fi
    ok "build $name: disk-image-create ${BUILD_WHAT[$name]} succeeded"
    t=$(date +%s)
    extract "$b/image.tar" "$b/root"
    timing "extract $name" $(($(date +%s) - t))
}

# Checks on the host after build NAME, scoped to it: its DIB build dir
# (from its own log) and its own mirror directory.  They run whether
# the build succeeded or not: a failed build is when leftovers happen.
host_checks() {
    local name=$1
    local b=$WORK/build-$name bd=${BUILD_DIR[$name]} mirror=${BUILD_MIRROR[$name]}
    if [ -n "$bd" ]; then
        check "$name: no mount left under its build dir $bd" \
            none_found mounts_under "$bd"
        check "$name: nothing named *.dib-pypi-stage left in or mounted under $bd" \
            none_found stage_leftovers "$bd"
    else
        not_ok "$name: its log names its build dir (\"Building in ...\"), so the host can be checked"
    fi
    check "$name: no mount of its mirror $mirror left on the host" \
        none_found mounts_of "$mirror"
    if [ -n "${MIRROR_LIVE[$name]:-}" ]; then
        say "$name: its mirror changes while it runs (${MIRROR_LIVE[$name]}): checked by the $name checks, not against its state at the start"
    else
        check "$name: its mirror is byte for byte ${MIRROR_NOTE[$name]:-as the build found it}" \
            mirror_is "$mirror" "$b/mirror-expected.txt"
    fi
}

# run_build NAME MODE MIRROR [VAR=VALUE...] [-- DIB-OPTIONS...]: one build
# from start to end, then its host checks; succeeds if it made an image.
run_build() {
    local name=$1 rc=0
    dib_start "$@"
    dib_finish "$name" || rc=1
    host_checks "$name"
    return $rc
}

# Checks that hold for every build.  $1 = build name, $2 = expected
# "VERSION TOKEN" of the pip install, $3 = of the uv install.
common_checks() {
    local name=$1 want_pip=$2 want_uv=$3
    local b=$WORK/build-$name r=$WORK/build-$name/root
    local log=$b/build.log
    local o=$r/opt/pypi-test

    # our element, not DIB's own "pypi" element, ran
    check "$name: our pypi element overrides DIB's own" \
        log_has "$log" "pre-install.d/04-pypi-configure"
    check "$name: DIB's own pypi element hooks did not run" \
        none_found grep -E '04-configure-pypi-mirror|00-mount-pypi-mirror|00-unconfigure-pypi-mirror' "$log"

    # at the end of root.d (the test element's root.d/90 probe): the
    # mount is there, read-only, of this build's own mirror directory,
    # and the element's staging directory next to the image root is gone
    check "$name: after root.d, /tmp/pypi was a read-only mount of its mirror (same device and inode)" \
        has_line "$o/after-root.d.txt" "mirror-mount $(dir_id "${BUILD_MIRROR[$name]}") ro"
    check "$name: after root.d, no <image root>.dib-pypi-stage was left beside the image root" \
        has_line "$o/after-root.d.txt" "stage absent"

    # during the build
    check "$name: while install.d ran, /root/.pip/pip.conf was in place" \
        has_line "$o/during-build.txt" "present /root/.pip/pip.conf"
    check "$name: while install.d ran, /root/.config/pip/pip.conf was in place" \
        has_line "$o/during-build.txt" "present /root/.config/pip/pip.conf"
    check "$name: while install.d ran, /root/.config/uv/uv.toml was in place" \
        has_line "$o/during-build.txt" "present /root/.config/uv/uv.toml"
    check "$name: while install.d ran, /tmp/pypi was mounted" \
        has_line "$o/during-build.txt" "mounted /tmp/pypi"
    check "$name: upstream PyPI was not in the pip/uv configuration" \
        has_line "$o/during-build.txt" "upstream absent"
    check "$name: pip installed the probe from the mirror ($want_pip)" \
        file_is "$o/pip-venv.probe" "$want_pip"
    check "$name: uv installed the probe from the mirror ($want_uv)" \
        file_is "$o/uv-venv.probe" "$want_uv"
    check "$name: the pip-venv probe was installed by pip" \
        file_is "$(echo "$o"/pip-venv/lib/python3*/site-packages/${PROBE_MODULE}-*.dist-info/INSTALLER)" pip
    check "$name: the uv-venv probe was installed by uv" \
        file_is "$(echo "$o"/uv-venv/lib/python3*/site-packages/${PROBE_MODULE}-*.dist-info/INSTALLER)" uv
    check "$name: uv $UV_VERSION (the mirror's wheel) is in the pip-venv" \
        dist_info_exists "$o/pip-venv" "uv-$UV_VERSION"

    # after the build: the image's own pip config is back ...
    check "$name: /root/.config/pip/pip.conf is back byte for byte" \
        cmp -s "$SEED" "$r/root/.config/pip/pip.conf"
    check "$name: /root/.config/pip/pip.conf is back with mode 0640 root:root" \
        mode_is "$r/root/.config/pip/pip.conf" "640 0 0"
    check "$name: /root/.config/pip keeps mode 0750" \
        mode_is "$r/root/.config/pip" "750 0 0"
    # ... and nothing of ours is left
    check "$name: no /root/.pip (made by the element) in the image" \
        file_absent "$r/root/.pip"
    check "$name: no /root/.config/uv (made by the element) in the image" \
        file_absent "$r/root/.config/uv"
    check "$name: no *.dib-pypi-orig backup anywhere in the image" \
        none_found find "$r" -xdev -name '*.dib-pypi-orig'
    check "$name: no state directory of the element (/dib-pypi, nor the older /.dib-pypi or /var/lib/dib-pypi) in the image" \
        no_state_dir_in "$r"
    check "$name: no dib-pypi file or directory anywhere in the image" \
        none_found find "$r" -xdev -name '*dib-pypi*'
    check "$name: no /tmp/pypi in the image" \
        file_absent "$r/tmp/pypi"
    check "$name: no pip.log or pip-log.txt anywhere in the image" \
        none_found find "$r" -xdev \( -name pip.log -o -name pip-log.txt \)
    check "$name: no uv.toml or pip.conf left in /etc" \
        none_found find "$r/etc" -xdev \( -name uv.toml -o -name pip.conf \)
    check "$name: no file in /root or /etc mentions /tmp/pypi" \
        none_found grep -r -l -F /tmp/pypi "$r/root" "$r/etc"
    # DIB copies every element directory into its hooks dir, and some
    # names are special there (install-bin copies every bin/* into
    # /usr/local/bin of the image): none of the element's files may end
    # up in the image.
    check "$name: none of the element's files was copied into the image" \
        none_found element_files_in_image "$r"
}

# Files of the element (by content) found anywhere in the image but /opt
# and /tmp.
element_files_in_image() {
    local r=$1
    local sums
    sums=$(find "$EL" -type f -size +0 -exec sha256sum {} + | awk '{ print $1 }' | sort -u)
    find "$r" -xdev -type f -size +0 \
        -not -path "$r/opt/*" -not -path "$r/proc/*" -not -path "$r/sys/*" \
        \( -path "$r/usr/local/*" -o -path "$r/usr/bin/*" -o -path "$r/usr/sbin/*" \
        -o -path "$r/usr/lib/*" -o -path "$r/root/*" -o -path "$r/etc/*" -o -path "$r/var/*" \) \
        -size -64M -exec sha256sum {} + 2>/dev/null |
        awk 'NR == FNR { want[$1] = 1; next } ($1 in want) { print $2 }' <(echo "$sums") -
}

# The user's and the seccomp build's mirror: uv and probe ROLE, built by
# pypi-mirror into DIR, by the user when OWNER is "user" (its own cache).
make_mirror() {
    local dir=$1 role=$2 owner=$3
    local src=$WORK/mirror-src/$role
    local as=()
    $SUDO rm -rf "$src" "$dir"
    mkdir -p "$src"
    cp "$UV_WHEEL" "$WHEELS/$role"/*.whl "$src/"
    if [ "$owner" = user ]; then
        as=(as_user)
        $SUDO chown -R "$E2E_USER:" "$src"
        as_user mkdir -p "$(dirname "$dir")"
    else
        mkdir -p "$(dirname "$dir")"
    fi
    "${as[@]}" "$PYPI_MIRROR" build -q --from "$src" --out "$dir"
}

# Seed the user's cache from the root builds' one, so the user build
# neither debootstraps nor downloads what they already have: the
# debootstrap tarball (copied: DIB rewrites it in place with
# DIB_DEBOOTSTRAP_CACHE=1 when it is missing) and the .debs of DIB's
# apt cache.  The user's apt cache stays its own directory (apt locks it
# while it installs).
seed_user_cache() {
    local tarball=debootstrap-debian-$RELEASE-amd64.tar.gz deb n=0
    as_user mkdir -p "$UCACHE/apt/debian"
    if [ -f "$CACHE/$tarball" ] && ! cmp -s "$CACHE/$tarball" "$UCACHE/$tarball"; then
        as_user cp "$CACHE/$tarball" "$UCACHE/$tarball.tmp"
        as_user mv "$UCACHE/$tarball.tmp" "$UCACHE/$tarball"
        say "seeded $UCACHE with the debootstrap tarball of $CACHE"
    fi
    for deb in "$CACHE"/apt/debian/*.deb; do
        if [ -f "$deb" ] && [ ! -e "$UCACHE/apt/debian/${deb##*/}" ]; then
            as_user cp "$deb" "$UCACHE/apt/debian/"
            n=$((n + 1))
        fi
    done
    if [ "$n" -gt 0 ]; then
        say "seeded $UCACHE/apt/debian with $n .debs of $CACHE/apt/debian"
    fi
}

# Checks of the build run by the ordinary user.
user_checks() {
    local r=$WORK/build-user/root
    check "user: its root.d hooks ran as $E2E_USER, not root" \
        has_line "$r/opt/pypi-test/after-root.d.txt" "user $E2E_USER"
    # DIB's manifest records the DIB_* variables disk-image-create was
    # started with (before it defaults DIB_IMAGE_CACHE); the common
    # checks prove that the mirror mounted was the one under $UCACHE.
    check "user: DIB ran with DIB_IMAGE_CACHE unset (none in DIB's record of its DIB_* variables)" \
        no_image_cache_in "$WORK/build-user/image.d/dib-manifests/dib_environment"
}
no_image_cache_in() { [ -s "$1" ] && ! grep -q '^declare -x DIB_IMAGE_CACHE=' "$1"; }

# Checks of the build run under seccomp-run: the filter reached DIB's
# hooks outside the chroot and the processes inside it.
seccomp_checks() {
    local o=$WORK/build-seccomp/root/opt/pypi-test want_openat2 want_faccessat2
    case "$SECCOMP_PROFILE" in
        linux-4.18) want_openat2=ENOSYS want_faccessat2=ENOSYS ;;
        openat2-enosys) want_openat2=ENOSYS want_faccessat2=ok ;;
        openat2-eperm) want_openat2=EPERM want_faccessat2=ok ;;
        *) want_openat2="?" want_faccessat2="?" ;;
    esac
    check "seccomp: its root.d hooks ran under a seccomp filter (Seccomp: 2)" \
        has_line "$o/after-root.d.txt" "seccomp 2"
    check "seccomp: in the chroot openat2 answered $want_openat2 ($SECCOMP_PROFILE)" \
        has_line "$o/during-build.txt" "syscall openat2 $want_openat2"
    check "seccomp: in the chroot faccessat2 answered $want_faccessat2 ($SECCOMP_PROFILE)" \
        has_line "$o/during-build.txt" "syscall faccessat2 $want_faccessat2"
}

# Where build NAME stands with the shared mirror, for the report.
mount_state_of() {
    if mirror_mounted "$1"; then
        echo mounted
    elif build_running "$1"; then
        echo "running, mirror not mounted"
    else
        echo "ended (exit $(cut -d' ' -f1 "$WORK/build-$1/exit"))"
    fi
}

# Paths that changed between mirror manifests $1 and $2 other than what
# `pypi-mirror add` of the new project must change: the root page (a
# new project), its state log, and the project's new directory.
unexpected_changes() {
    manifest_changes "$1" "$2" | grep -v -x -F \
        -e index.html -e .pypi-mirror/state -e "$ADDED" -e "$ADDED/$ADDED_WHEEL_NAME" \
        -e "$ADDED/$ADDED_WHEEL_NAME.metadata" -e "$ADDED/index.html" || true
}

# Paths in manifest $2 that are not in manifest $1, on one line.
new_paths() { comm -13 <(cut -f1 "$1") <(cut -f1 "$2") | tr '\n' ' '; }

# ---------------------------------------------------------------- serve

# wait_port_file FILE PID: print the port that process PID writes to
# FILE once it listens; fails if PID ends or 20 s pass first.
wait_port_file() {
    local _
    for _ in $(seq 200); do
        if [ -s "$1" ]; then
            cat "$1"
            return 0
        fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# stop_pid PID: SIGTERM to our child PID, then up to 60 s for it to end;
# STOP_RC is its exit status ("timeout" if it had to be killed).  (Not in
# a $(...): a subshell cannot wait for its parent's child.)
STOP_RC=
stop_pid() {
    local _
    STOP_RC=0
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 600); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -KILL "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
        STOP_RC=timeout
        return 0
    fi
    wait "$1" || STOP_RC=$?
}

# only_get_is LOG PATH REST: the access log of serve.py has exactly one
# GET of PATH, and it is "GET PATH REST" (status and auth).
only_get_is() {
    local lines
    lines=$(grep -F -- "GET $2 " "$1" || true)
    if [ "$lines" != "GET $2 $3" ]; then
        echo "    GETs of $2: ${lines:-<none>}" | head -n 5 >&2
        return 1
    fi
}

# every_line_auth_ok LOG: LOG has lines, and each ends in auth=ok.
every_line_auth_ok() { [ -s "$1" ] && ! grep -q -v ' auth=ok$' "$1"; }

# files_lack STRING FILE...: every FILE exists, and none holds STRING.
files_lack() {
    local s=$1 f
    shift
    for f in "$@"; do
        [ -f "$f" ] || return 1
        if grep -q -F -- "$s" "$f"; then
            return 1
        fi
    done
}

# log_lacks_all FILE STRING...: FILE exists and holds none of STRINGs.
log_lacks_all() {
    local f=$1 s
    shift
    [ -f "$f" ] || return 1
    for s in "$@"; do
        if grep -q -F -- "$s" "$f"; then
            return 1
        fi
    done
}

# served_count LOG PATH: how many GETs of PATH `pypi-mirror serve -v`
# answered with 200 ('GET "PATH" 200 TIME').
served_count() { grep -c -F -- "GET \"$2\" 200 " "$1" || true; }

# page_has_sha256 PAGE FILE: the project page PAGE links FILE with the
# sha256 of FILE's bytes.
page_has_sha256() { grep -q -F -- "$(basename "$2")#sha256=$(sha256sum < "$2" | cut -d' ' -f1)" "$1"; }

# tree_paths DIR: every path under DIR, on one line, sorted.
tree_paths() { (cd "$1" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort | tr '\n' ' '); }

# tree_consistent DIR LOG: `pypi-mirror build --out DIR` (no --from: it
# re-indexes the tree itself) succeeds and adds, updates, removes and
# writes nothing: serve's pages are what build would have written.
tree_consistent() {
    "$PYPI_MIRROR" build --out "$1" > "$2" 2>&1 &&
        grep -q -E '\(0 added, 0 updated, 0 removed, [0-9]+ unchanged; 0 pages written\)$' "$2"
}

# ports_closed PORT...: nothing accepts a connection on 127.0.0.1:PORT.
ports_closed() {
    "$PY" - "$@" <<'PYEOF'
import socket, sys
for port in sys.argv[1:]:
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
    except ConnectionRefusedError:
        continue
    print("    something still answers on 127.0.0.1:%s" % port, file=sys.stderr)
    sys.exit(1)
PYEOF
}

# Build "serve" (issue #9): the online-then-offline workflow of
# `pypi-mirror serve`, in two builds on one tree, $DIB_IMAGE_CACHE/pypi/mirror
# (emptied for it: every build makes its own mirror there anew).
#   serve-online   DIB_PYPI_MIRROR_URL is serve on loopback, DIB_NO_PYPI_PIP=1;
#                  serve's upstream is serve.py (user and password) with
#                  probe 3.0 and uv; serve keeps what pip and uv fetch;
#   serve-offline  upstream and serve stopped, DIB_OFFLINE=1, no mirror URL:
#                  the element's default file:///tmp/pypi, the tree serve
#                  left; the same probe, version and token.
serve_builds() {
    local up=$WORK/serve-upstream tree=$CACHE/pypi/mirror
    local up_log=$WORK/serve-upstream-access.log slog=$WORK/serve.log
    local up_port_file=$WORK/serve-upstream.port port_file=$WORK/serve.port
    local pwheel=${PROBE_MODULE}-3.0-py3-none-any.whl uwheel
    local want="3.0 ${TOKEN[serve]}" t up_port port url online_ok=0
    local log=$WORK/build-serve-online/build.log out=$WORK/build-serve-online/dib.out
    local r=$WORK/build-serve-online/root
    uwheel=$(basename "$UV_WHEEL")
    t=$(date +%s)

    # $tree may be the symlink "parallel" made: rm removes the link only
    rm -rf "$up" "$tree"
    mkdir -p "$tree"
    "$PY" "$HERE/mirror.py" index --root "$up" "$UV_WHEEL" "$WHEELS"/serve/*.whl
    SECRET="s3cr3t-$(random_hex)"
    rm -f "$up_port_file" "$up_log" "$port_file" "$slog"
    SERVE_EXPECT_PASSWORD=$SECRET "$PY" "$HERE/serve.py" --directory "$up" \
        --port-file "$up_port_file" --access-log "$up_log" \
        --expect-user dibuser --lifetime $((BUILD_TIMEOUT + 300)) &
    SERVER_PID=$!
    if ! up_port=$(wait_port_file "$up_port_file" "$SERVER_PID"); then
        not_ok "serve: the upstream (serve.py) listens on loopback"
        return 0
    fi
    # the password in the environment, which ps does not show other users
    PYPI_MIRROR_UPSTREAM="http://dibuser:$SECRET@127.0.0.1:$up_port/" \
        "$PYPI_MIRROR" serve --listen 127.0.0.1:0 --port-file "$port_file" --out "$tree" \
        -v 2> "$slog" &
    SERVE_PID=$!
    if ! port=$(wait_port_file "$port_file" "$SERVE_PID"); then
        cat "$slog" >&2
        not_ok "serve: pypi-mirror serve listens on loopback (log: $slog)"
        return 0
    fi
    check "serve: the upstream password (given in PYPI_MIRROR_UPSTREAM) is not in serve's command line" \
        files_lack "$SECRET" "/proc/$SERVE_PID/cmdline"
    url=http://127.0.0.1:$port/simple/
    say "serve on $url (pid $SERVE_PID, log $slog), tree $tree; upstream http://127.0.0.1:$up_port/ (pid $SERVER_PID)"

    # 1. online, through serve; the tree fills while the build runs
    MIRROR_LIVE[serve-online]="pypi-mirror serve publishes into it"
    if run_build serve-online caller "$tree" "DIB_PYPI_MIRROR_URL=$url" DIB_NO_PYPI_PIP=1; then
        online_ok=1
        common_checks serve-online "$want" "$want"
        check "serve-online: pip looked in serve ($url) only" \
            pip_indexes_are "$log" "$url"
        check "serve-online: pip and uv each took the probe wheel from serve (2 GETs answered 200 in serve.log)" \
            test "$(served_count "$slog" "/simple/$PROBE/$pwheel")" = 2
        check "serve-online: upstream was asked for the probe 3.0 wheel once (200, auth=ok), though pip and uv both installed it" \
            only_get_is "$up_log" "/$PROBE/$pwheel" "200 auth=ok"
        check "serve-online: upstream was asked for the uv wheel once (200, auth=ok)" \
            only_get_is "$up_log" "/uv/$uwheel" "200 auth=ok"
        check "serve-online: every request upstream carried its user and password (auth=ok)" \
            every_line_auth_ok "$up_log"
        check "serve-online: no file in /root or /etc mentions serve (but DIB's manifest)" \
            none_found grep -r -l -F --exclude-dir=dib-manifests "127.0.0.1:$port" "$r/root" "$r/etc"
    fi
    # leaks are checked whether the build succeeded or not
    check "serve-online: the upstream password is not in serve.log" \
        files_lack "$SECRET" "$slog"
    check "serve-online: the upstream password is not in the build log nor dib.out" \
        files_lack "$SECRET" "$log" "$out"
    check "serve-online: the upstream's address (127.0.0.1:$up_port) is not in the build log nor dib.out: the image saw serve only" \
        files_lack "127.0.0.1:$up_port" "$log" "$out"

    # 2. stop serve: SIGTERM publishes what is verified, then exits 0
    stop_pid "$SERVE_PID"
    SERVE_PID=
    check "serve: pypi-mirror serve ended on SIGTERM with exit 0 (got $STOP_RC)" test "$STOP_RC" = 0
    check "serve: its port file is gone" file_absent "$port_file"
    check "serve: no .pypi-mirror/serve-tmp left in the tree" \
        file_absent "$tree/.pypi-mirror/serve-tmp"
    check "serve: the tree's probe wheel is byte for byte upstream's" \
        cmp -s "$tree/$PROBE/$pwheel" "$up/$PROBE/$pwheel"
    check "serve: the tree's uv wheel is byte for byte upstream's" \
        cmp -s "$tree/uv/$uwheel" "$up/uv/$uwheel"
    check "serve: the tree's probe page links the wheel with its #sha256=" \
        page_has_sha256 "$tree/$PROBE/index.html" "$up/$PROBE/$pwheel"
    check "serve: the tree's uv page links the wheel with its #sha256=" \
        page_has_sha256 "$tree/uv/index.html" "$up/uv/$uwheel"
    check "serve: the tree's pages link relatively (no URL in any index.html)" \
        none_found grep -l -E 'https?://|file:' "$tree/index.html" "$tree/$PROBE/index.html" "$tree/uv/index.html"
    local want_paths=".pypi-mirror .pypi-mirror/lock .pypi-mirror/serve.lock .pypi-mirror/state"
    want_paths+=" $PROBE $PROBE/$pwheel $PROBE/$pwheel.metadata $PROBE/index.html"
    want_paths+=" index.html uv uv/index.html uv/$uwheel uv/$uwheel.metadata "
    check "serve: the tree holds what pip and uv fetched, with its pages, and nothing else" \
        test "$(tree_paths "$tree")" = "$want_paths"
    mirror_manifest "$tree" > "$WORK/serve-tree.txt"
    check "serve: pypi-mirror build --out finds the tree consistent (0 added, 0 updated, 0 removed, 0 pages written; log: $WORK/serve-build.log)" \
        tree_consistent "$tree" "$WORK/serve-build.log"
    check "serve: that build changed nothing in the tree" \
        mirror_is "$tree" "$WORK/serve-tree.txt"

    # 3. stop the upstream too
    stop_pid "$SERVER_PID"
    SERVER_PID=
    say "upstream stopped; its access log has $(wc -l < "$up_log") lines"
    check "serve: upstream and serve are stopped: nothing answers on 127.0.0.1:$up_port nor :$port" \
        ports_closed "$up_port" "$port"

    # 4. offline, from the tree serve left
    if [ "$online_ok" = 1 ]; then
        if run_build serve-offline caller "$tree" DIB_OFFLINE=1; then
            local o=$WORK/build-serve-offline/root/opt/pypi-test on=$r/opt/pypi-test
            common_checks serve-offline "$want" "$want"
            check "serve-offline: pip looked in file:///tmp/pypi only" \
                pip_indexes_are "$WORK/build-serve-offline/build.log" "file:///tmp/pypi"
            check "serve-offline: the build log names neither serve nor its upstream" \
                log_lacks_all "$WORK/build-serve-offline/build.log" "127.0.0.1:$port" "127.0.0.1:$up_port"
            check "serve-offline: pip installed what it did online (pip-venv.probe byte for byte)" \
                cmp -s "$on/pip-venv.probe" "$o/pip-venv.probe"
            check "serve-offline: uv installed what it did online (uv-venv.probe byte for byte)" \
                cmp -s "$on/uv-venv.probe" "$o/uv-venv.probe"
        fi
    else
        skip "build serve-offline: it needs the tree that serve-online filled"
    fi
    timing "serve (both builds)" $(($(date +%s) - t))
}

# pip on the host (the DIB venv's, no PIP_* of the caller) downloads the
# added wheel from mirror DIR, checking the sha256 its page gives, and
# gets the bytes that were added.
pip_gets_added() {
    local dest=$WORK/parallel-download
    rm -rf "$dest"
    env "${UNSET_ARGS[@]}" "$PY" -m pip download --quiet --no-deps --no-cache-dir \
        --disable-pip-version-check --index-url "file://$1" --dest "$dest" "$ADDED==1.0" &&
        cmp -s "$dest/$ADDED_WHEEL_NAME" "$WHEELS/added/$ADDED_WHEEL_NAME"
}

for build in $BUILDS; do
    case "$build" in
    file)
        # the default mirror: $DIB_IMAGE_CACHE/pypi/mirror -> file:///tmp/pypi
        rm -rf "$CACHE/pypi/mirror"
        "$PY" "$HERE/mirror.py" index --root "$CACHE/pypi/mirror" \
            "$UV_WHEEL" "$WHEELS"/file/*.whl
        if run_build file caller "$CACHE/pypi/mirror" DIB_NO_PYPI_PIP=1; then
            common_checks file "1.0 ${TOKEN[file]}" "1.0 ${TOKEN[file]}"
            check "file: pip looked in file:///tmp/pypi only" \
                pip_indexes_are "$WORK/build-file/build.log" "file:///tmp/pypi"
            check "file: no upstream PyPI in the build log's pip index lines" \
                none_found grep -E 'Looking in indexes: .*pypi\.(org|python\.org)' "$WORK/build-file/build.log"
        fi
        ;;
    http)
        # Mirrors on loopback, under one static server (and _2 under a
        # second one, over https with a private CA that wants a client
        # certificate: a corporate mirror, DIB_PYPI_MIRROR_CA and
        # DIB_PYPI_MIRROR_CLIENT_CERT):
        #   /a/      uv                   DIB_PYPI_MIRROR_URL, user:password
        #   /wrong/  (nothing: 404)       DIB_PYPI_MIRROR_URL_1
        #   /b/      probe 1.0 (http-2)   DIB_PYPI_MIRROR_URL_2, https
        #   /c/      probe 2.0 (http-10)  DIB_PYPI_MIRROR_URL_10
        # pip merges all indexes and takes the highest version: 2.0 from
        # _10.  uv, told DIB_PYPI_UV_INDEX_STRATEGY=first-index, takes the
        # first index (in the configured order) that has the project: _1
        # answers 404, so _2 (not _10, which a string sort would put
        # first).  The local mirror holds a decoy 9.0 that must not be
        # used once DIB_PYPI_MIRROR_URL is set.
        # The host exports PIP_CERT, SSL_CERT_FILE and REQUESTS_CA_BUNDLE
        # for its own tools, to the public bundle, a path the image has too
        # (pypi-test installs ca-certificates): sudo -E carries them into
        # the chroot, and the element's environment.d must replace them
        # with the mirrors' CA bundle, or pip and uv fail on _2.
        srv=$WORK/http
        rm -rf "$srv" "$CACHE/pypi/mirror"
        "$PY" "$HERE/mirror.py" index --root "$srv/a" "$UV_WHEEL"
        "$PY" "$HERE/mirror.py" index --root "$srv/b" "$WHEELS"/http-2/*.whl
        "$PY" "$HERE/mirror.py" index --root "$srv/c" "$WHEELS"/http-10/*.whl
        "$PY" "$HERE/mirror.py" index --root "$CACHE/pypi/mirror" "$WHEELS"/decoy/*.whl
        SECRET="s3cr3t-$(random_hex)"
        rm -f "$WORK/http.port" "$WORK/http-access.log"
        SERVE_EXPECT_PASSWORD=$SECRET "$PY" "$HERE/serve.py" --directory "$srv" \
            --port-file "$WORK/http.port" --access-log "$WORK/http-access.log" \
            --expect-user dibuser --lifetime $((BUILD_TIMEOUT + 120)) &
        SERVER_PID=$!
        for _ in $(seq 50); do
            [ -s "$WORK/http.port" ] && break
            sleep 0.1
        done
        PORT=$(cat "$WORK/http.port")
        base=http://127.0.0.1:$PORT
        say "http mirrors on $base (server pid $SERVER_PID)"
        pki=$WORK/pki
        make_pki "$pki"
        rm -f "$WORK/https.port" "$WORK/https-access.log"
        "$PY" "$HERE/serve.py" --directory "$srv" --port-file "$WORK/https.port" \
            --access-log "$WORK/https-access.log" --certfile "$pki/server.pem" \
            --keyfile "$pki/server.key" --client-ca "$pki/ca.pem" \
            --lifetime $((BUILD_TIMEOUT + 120)) &
        TLS_SERVER_PID=$!
        for _ in $(seq 50); do
            [ -s "$WORK/https.port" ] && break
            sleep 0.1
        done
        tls_base=https://127.0.0.1:$(cat "$WORK/https.port")
        say "https mirror (private CA, client certificates) on $tls_base (server pid $TLS_SERVER_PID)"
        trace=()
        if [ "$HTTP_TRACE" = 1 ]; then
            trace=(-x)
        fi
        if run_build http caller "$CACHE/pypi/mirror" \
            "DIB_PYPI_MIRROR_URL=http://dibuser:$SECRET@127.0.0.1:$PORT/a/" \
            "DIB_PYPI_MIRROR_URL_1=$base/wrong/" \
            "DIB_PYPI_MIRROR_URL_2=$tls_base/b/" \
            "DIB_PYPI_MIRROR_URL_10=$base/c/" \
            "DIB_PYPI_MIRROR_CA=$pki/ca.pem" \
            "DIB_PYPI_MIRROR_CLIENT_CERT=$pki/client.pem" \
            DIB_PYPI_UV_INDEX_STRATEGY=first-index \
            PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
            SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
            REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
            DIB_OFFLINE=1 \
            -- "${trace[@]}"; then
            r=$WORK/build-http/root
            log=$WORK/build-http/build.log
            common_checks http "2.0 ${TOKEN[http-10]}" "1.0 ${TOKEN[http-2]}"
            check "http: the debootstrap tarball from the first build was reused" \
                log_has "$log" "found in cache. Using."
            check "http: pip looked in the mirrors in order _URL, _1, _2, _10" \
                pip_indexes_are "$log" "http://dibuser:****@127.0.0.1:$PORT/a/" \
                "$base/wrong/" "$tls_base/b/" "$base/c/"
            check "http: the wrong mirror (_1) was asked, and answered 404" \
                log_has "$WORK/http-access.log" "GET /wrong/$PROBE/ 404"
            check "http: uv took the probe from _2 (the first mirror that has it), over https with the private CA and its client certificate" \
                grep -q "^GET /b/$PROBE/${PROBE_MODULE}-1.0-py3-none-any.whl 200 auth=none cert=ok$" "$WORK/https-access.log"
            check "http: pip read _2's page over https with its client certificate" \
                grep -q "^GET /b/$PROBE/ 200 auth=none cert=ok$" "$WORK/https-access.log"
            check "http: the image has the public bundle the host's PIP_CERT names" \
                test -s "$r/etc/ssl/certs/ca-certificates.crt"
            for v in PIP_CERT SSL_CERT_FILE REQUESTS_CA_BUNDLE; do
                check "http: install.d saw $v (host: the public bundle) replaced by the mirrors' CA bundle" \
                    has_line "$r/opt/pypi-test/during-build.txt" "env $v=/dib-pypi/mirror-ca.pem"
            done
            for v in PIP_CLIENT_CERT SSL_CLIENT_CERT; do
                check "http: install.d saw $v pointing at the mirrors' client certificate" \
                    has_line "$r/opt/pypi-test/during-build.txt" "env $v=/dib-pypi/mirror-client.pem"
            done
            check "http: CURL_CA_BUNDLE, unset on the host, stayed unset" \
                has_line "$r/opt/pypi-test/during-build.txt" "env CURL_CA_BUNDLE="
            check "http: the log names the host variables the element replaced" \
                log_has "$log" "pypi: for the build, the mirrors' CA and client certificate in /dib-pypi replace SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt, PIP_CERT=/etc/ssl/certs/ca-certificates.crt, REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"
            check "http: no CA bundle or client certificate of the element left in the image" \
                none_found find "$r" -xdev \( -name 'mirror-ca.pem' -o -name 'mirror-client.pem' \)
            for f in ca.pem client.pem client.key; do
                check "http: nothing of $f (the private CA, the client certificate or its key) in the image" \
                    none_found $SUDO grep -r -l -F "$(pem_line "$pki/$f")" "$r"
                check "http: nothing of $f in the build log, dib.out or beside the image (image.d/)" \
                    none_found grep -r -l -F "$(pem_line "$pki/$f")" "$log" \
                    "$WORK/build-http/dib.out" "$WORK/build-http/image.d"
            done
            check "http: pip took the probe from _10 (highest version)" \
                grep -q "^GET /c/$PROBE/${PROBE_MODULE}-2.0-py3-none-any.whl 200" "$WORK/http-access.log"
            check "http: the password of DIB_PYPI_MIRROR_URL reached the server" \
                grep -q "^GET /a/.* auth=ok$" "$WORK/http-access.log"
            # DIB itself exports DIB_ENV (declare -p of every DIB_*
            # variable); with -x, the manifests element's cleanup.d hook
            # traces it into the log, and it writes it into the image
            # (/etc/dib-manifests/dib_environment) and next to it
            # (image.d/dib-manifests/).  The element's environment.d file masks the password in
            # DIB_ENV, so DIB's own copies (the manifests element's -x
            # trace, /etc/dib-manifests, image.d/) must be clean too.
            check "http: the build log shows no mirror password" \
                log_lacks "$log" "$SECRET"
            check "http: dib.out shows no mirror password" \
                log_lacks "$WORK/build-http/dib.out" "$SECRET"
            check "http: no file in the image holds the mirror password" \
                none_found $SUDO grep -r -l -F "$SECRET" "$r"
            check "http: no mirror password beside the image (image.d/)" \
                none_found grep -r -l -F "$SECRET" "$WORK/build-http/image.d"
            check "http: DIB's manifest of DIB_ENV shows the masked mirror URL" \
                $SUDO grep -q -F "dibuser:***@127.0.0.1:$PORT" "$r/etc/dib-manifests/dib_environment"
            check "http: no file in /root or /etc mentions the mirror server (but DIB's manifest)" \
                none_found grep -r -l -F --exclude-dir=dib-manifests "127.0.0.1:$PORT" "$r/root" "$r/etc"
        fi
        kill "$SERVER_PID" "$TLS_SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" "$TLS_SERVER_PID" 2>/dev/null || true
        SERVER_PID=
        TLS_SERVER_PID=
        ;;
    user)
        # As the ordinary user, DIB_IMAGE_CACHE unset: the mirror is the
        # user's ~/.cache/image-create/pypi/mirror.
        make_mirror "$UMIRROR" user user
        seed_user_cache
        if run_build user user "$UMIRROR" DIB_NO_PYPI_PIP=1; then
            common_checks user "1.0 ${TOKEN[user]}" "1.0 ${TOKEN[user]}"
            user_checks
        fi
        ;;
    seccomp)
        # As root, the whole build under the seccomp filter, its own
        # mirror in $DIB_IMAGE_CACHE/pypi/mirror.
        make_mirror "$CACHE/pypi/mirror" seccomp root
        if run_build seccomp seccomp "$CACHE/pypi/mirror" DIB_NO_PYPI_PIP=1; then
            common_checks seccomp "1.0 ${TOKEN[seccomp]}" "1.0 ${TOKEN[seccomp]}"
            seccomp_checks
        fi
        ;;
    parallel)
        # "user" and "seccomp" at once, on one mirror directory: the
        # user's own ~/.cache/image-create/pypi/mirror, which the root
        # build reaches as $DIB_IMAGE_CACHE/pypi/mirror through a symlink.
        # Everything else of DIB's cache stays per build (DIB_IMAGE_CACHE
        # of root: $CACHE; of the user: its default), so the two builds
        # share no apt cache, apt lock, debootstrap tarball or DIB lock
        # directory.  Mid-build, pypi-mirror add puts a new wheel into
        # the mirror.
        make_mirror "$UMIRROR" user user
        seed_user_cache
        rm -rf "$CACHE/pypi/mirror"
        ln -s "$UMIRROR" "$CACHE/pypi/mirror"
        before=$WORK/parallel-mirror-before.txt
        after=$WORK/parallel-mirror-after-add.txt
        mirror_manifest "$UMIRROR" > "$before"
        t=$(date +%s)
        dib_start user user "$UMIRROR" DIB_NO_PYPI_PIP=1
        dib_start seccomp seccomp "$CACHE/pypi/mirror" DIB_NO_PYPI_PIP=1
        # Wait until each build has the mirror mounted at /tmp/pypi (or
        # has ended), then add the wheel while they run.
        for _ in $(seq "$BUILD_TIMEOUT"); do
            waiting=0
            for name in user seccomp; do
                if build_running "$name" && ! mirror_mounted "$name"; then
                    waiting=1
                fi
            done
            if [ "$waiting" = 0 ]; then
                break
            fi
            sleep 1
        done
        at_add="user: $(mount_state_of user), seccomp: $(mount_state_of seccomp)"
        say "pypi-mirror add --out $UMIRROR $ADDED_WHEEL_NAME ($at_add)"
        add_rc=0
        as_user "$PYPI_MIRROR" add --out "$UMIRROR" "$WHEELS/added/$ADDED_WHEEL_NAME" \
            > "$WORK/parallel-add.log" 2>&1 || add_rc=$?
        after_add="user: $(mount_state_of user), seccomp: $(mount_state_of seccomp)"
        mirror_manifest "$UMIRROR" > "$after"
        check "parallel: pypi-mirror add succeeded (log: $WORK/parallel-add.log)" \
            test "$add_rc" = 0
        both="user: mounted, seccomp: mounted"
        check "parallel: the add ran while both builds had the mirror mounted (before it: $at_add; after it: $after_add)" \
            test "$at_add" = "$both" -a "$after_add" = "$both"
        # both builds must leave the mirror exactly as the add made it
        for name in user seccomp; do
            cp "$after" "$WORK/build-$name/mirror-expected.txt"
            MIRROR_NOTE[$name]="as pypi-mirror add left it mid-build"
        done
        user_ok=0
        seccomp_ok=0
        dib_finish user && user_ok=1
        dib_finish seccomp && seccomp_ok=1
        timing "parallel (both builds)" $(($(date +%s) - t))
        # only now, with both ended, may no mount of the mirror be left
        host_checks user
        host_checks seccomp
        if [ "$user_ok" = 1 ]; then
            common_checks user "1.0 ${TOKEN[user]}" "1.0 ${TOKEN[user]}"
            user_checks
        fi
        if [ "$seccomp_ok" = 1 ]; then
            common_checks seccomp "1.0 ${TOKEN[user]}" "1.0 ${TOKEN[user]}"
            seccomp_checks
        fi
        # what the add did to the mirror: it changed the root page and
        # its state log, added the new project's directory with the
        # wheel, its .metadata and its page, and nothing else
        check "parallel: the add left every original file byte for byte but index.html and .pypi-mirror/state" \
            none_found unexpected_changes "$before" "$after"
        check "parallel: the add added $ADDED/ with the wheel, its .metadata and its index.html, nothing else" \
            test "$(new_paths "$before" "$after")" \
            = "$ADDED $ADDED/$ADDED_WHEEL_NAME $ADDED/$ADDED_WHEEL_NAME.metadata $ADDED/index.html "
        check "parallel: the added wheel is indexed: pip on the host downloads it from file://$UMIRROR, same bytes" \
            pip_gets_added "$UMIRROR"
        rm -f "$CACHE/pypi/mirror"
        ;;
    serve)
        serve_builds
        ;;
    esac
    if [ "$KEEP" != 1 ]; then
        names=$build
        case "$build" in
            parallel) names="user seccomp" ;;
            serve) names="serve-online serve-offline" ;;
        esac
        for name in $names; do
            $SUDO rm -rf "$WORK/build-$name/root"
        done
    fi
done

timing "total" $(($(date +%s) - T0))
