# Shared by the pypi element's hook scripts: run one of its static binaries.
#
# The binaries ship without their executable bit: dib-lint reads every
# executable file of an element as a script, and an ELF file can never pass
# its tab and final-newline checks. So each run copies the binary to a fresh
# private directory, makes the copy executable, runs it and removes it.
# Sourced, never executed; the calling hook has already set -eu -o pipefail
# and sets no traps of its own.
#
# Interruptions. The copy must go on every exit, and the hook's status must
# say what happened: the binary's own status when it ends by itself (or
# 128+N when something else killed it with signal N), and 128+N when the
# hook itself is stopped by signal N: 129 SIGHUP, 130 SIGINT, 131 SIGQUIT,
# 143 SIGTERM. (SIGKILL cannot be caught: a copy it leaves, under 2 MB,
# stays in TMPDIR; whatever the binary had done is undone by cleanup.d.)
#
# - Ctrl-C sends SIGINT to the whole foreground process group and a CI
#   runner usually sends SIGTERM to the whole group; the binary stays in
#   the hook's group, so it gets those signals directly, as a foreground
#   command would. A signal may also reach bash alone (kill PID, timeout(1)
#   on the hook, a parent stopping its child).
# - So the binary runs as an asynchronous command and bash waits for it
#   with `wait`: a trapped signal interrupts `wait` at once, whereas with a
#   foreground command bash would run the trap only after the binary ended
#   by itself, which may be never.
# - The trap then sends the binary SIGTERM, whichever signal stopped the
#   hook (with sudo: to sudo, which relays it), waits for it to end,
#   removes the copy and exits 128+N. Stopping the binary part way is safe:
#   it journals every change before making it, and cleanup.d (or the next
#   run) undoes what a stopped run left. Letting it finish instead would
#   make Ctrl-C wait for whatever it is stuck on.
#   SIGTERM rather than the same signal because it is the one bash never
#   ignores in asynchronous commands: without job control they start with
#   SIGINT and SIGQUIT ignored, and before bash 4.3 `trap -` in the subshell
#   cannot undo that (an image may still have such a bash). Where it can,
#   the subshell resets them, so that Ctrl-C reaches the binary directly,
#   as it would a foreground command. (sudo running the binary on a pty
#   may drop our SIGTERM when it comes together with the group's signal;
#   it relays that one, which is enough: the host's bash is >= 4.3.)
# - While it cleans up, the trap ignores further signals so that a second
#   Ctrl-C cannot cut the removal short; the binary keeps its own default
#   handling of them.
# - mktemp runs with these signals ignored, so it cannot die between
#   creating the directory and printing its name; bash runs a pending trap
#   only after the assignment, so the trap always knows the directory.
#   The EXIT trap removes it when a command fails under set -e.

DIB_PYPI_LIBEXEC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The staged copy's directory ("" when there is none), and whether the
# binary may be running (started or about to be, not yet waited for).
DIB_PYPI_STAGED=
DIB_PYPI_RUNNING=no

dib_pypi_unstage() {
    if [ -n "$DIB_PYPI_STAGED" ]; then
        rm -rf -- "$DIB_PYPI_STAGED"
        DIB_PYPI_STAGED=
    fi
}

# Trap for a signal: stop the binary, wait for it, remove the copy and
# exit with status $1 (128 + the signal's number).
dib_pypi_interrupted() {
    trap '' HUP INT QUIT TERM
    if [ "$DIB_PYPI_RUNNING" = yes ] && [ -n "${!:-}" ]; then
        kill -s TERM "$!" 2>/dev/null || true
        wait "$!" 2>/dev/null || true
    fi
    dib_pypi_unstage || true
    exit "$1"
}

# dib_pypi_run DIR NAME VIA ARG...: stage binary NAME in a new directory
# under DIR and run it with the ARGs, directly (VIA=direct) or through
# sudo -E (VIA=sudo). Returns the binary's status.
dib_pypi_run() {
    local dir=$1
    local name=$2
    local via=$3
    shift 3
    local rc=0
    trap dib_pypi_unstage EXIT
    trap 'dib_pypi_interrupted 129' HUP
    trap 'dib_pypi_interrupted 130' INT
    trap 'dib_pypi_interrupted 131' QUIT
    trap 'dib_pypi_interrupted 143' TERM
    DIB_PYPI_STAGED=$(trap '' HUP INT QUIT TERM &&
        mktemp -d "$dir/dib-pypi.XXXXXXXX")
    local bin=$DIB_PYPI_STAGED/$name
    install -m 0755 "$DIB_PYPI_LIBEXEC/$name" "$bin"
    DIB_PYPI_RUNNING=yes
    if [ "$via" = sudo ]; then
        (trap - INT QUIT && exec sudo -E "$bin" "$@") &
    else
        (trap - INT QUIT && exec "$bin" "$@") &
    fi
    wait "$!" || rc=$?
    DIB_PYPI_RUNNING=no
    dib_pypi_unstage
    trap - HUP INT QUIT TERM EXIT
    return "$rc"
}

# Outside the chroot (root.d, cleanup.d): hooks run as the user who started
# disk-image-create, so the binary needs sudo unless that user is root.
dib_pypi_run_outside() {
    local name=$1
    shift
    local via=direct
    if [ "$(id -u)" != 0 ]; then
        via=sudo
    fi
    dib_pypi_run "${TMPDIR:-/tmp}" "$name" "$via" \
        --target-root "$TARGET_ROOT" "$@"
}

# Inside the chroot (pre-install.d): already root. The copy lives in the
# image's /tmp only while the binary runs.
dib_pypi_run_inside() {
    local name=$1
    shift
    dib_pypi_run /tmp "$name" direct "$@"
}
