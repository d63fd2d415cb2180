# Shared by the pypi element's hook scripts: run one of its static binaries.
#
# The binaries ship without their executable bit: dib-lint reads every
# executable file of an element as a script, and an ELF file can never pass
# its tab and final-newline checks. So each run copies the binary to a fresh
# private directory, makes the copy executable, runs it and removes it.
# Sourced, never executed; the calling hook has already set -eu -o pipefail.

DIB_PYPI_LIBEXEC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Make an executable copy of binary $1 in a new directory; print its path.
dib_pypi_stage() {
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/dib-pypi.XXXXXXXX")
    install -m 0755 "$DIB_PYPI_LIBEXEC/$1" "$dir/$1"
    echo "$dir/$1"
}

# Outside the chroot (root.d, cleanup.d): hooks run as the user who started
# disk-image-create, so the binary needs sudo unless that user is root.
dib_pypi_run_outside() {
    local name=$1
    shift
    local bin
    local rc=0
    bin=$(dib_pypi_stage "$name")
    if [ "$(id -u)" = 0 ]; then
        "$bin" --target-root "$TARGET_ROOT" "$@" || rc=$?
    else
        sudo -E "$bin" --target-root "$TARGET_ROOT" "$@" || rc=$?
    fi
    rm -rf "$(dirname "$bin")"
    return $rc
}

# Inside the chroot (pre-install.d): already root. The copy lives in the
# image's /tmp only while the binary runs.
dib_pypi_run_inside() {
    local name=$1
    shift
    local bin
    local rc=0
    bin=$(TMPDIR=/tmp dib_pypi_stage "$name")
    "$bin" "$@" || rc=$?
    rm -rf "$(dirname "$bin")"
    return $rc
}
