//! The hook wrapper (`hooks/dib-pypi-libexec/run-hook.bash`) when the binary ends by itself, fails, or the hook is interrupted.
//!
//! Each case runs a real hook script of a copy of the assembled element
//! whose binaries are replaced by a small shell script, "the fake": it
//! records its arguments and pid, then exits with a chosen status or blocks
//! until it is stopped. The hook runs in a process group of its own, with
//! a TMPDIR (outside the chroot) or an image /tmp (inside) that belongs to
//! the test. Once it has ended, no `dib-pypi.*` directory may be left
//! there, no process may be left in its group (the fake included), and its
//! exit status must be the fake's own status or 128 + the signal's number.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dib_pypi_tests::{clean_command, element, require_root, Image};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

const ROOT_D: &str = "root.d/50-pypi-mirror-mount";
const PRE_INSTALL: &str = "pre-install.d/04-pypi-configure";
const CLEANUP: &str = "cleanup.d/99-pypi-restore";

/// How long a hook may take before the test calls it hung (a working
/// wrapper needs milliseconds; a broken one blocks for good).
const PATIENCE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(5);

/// The stand-in for every hook binary. `FAKE_EXIT` is its exit status, or
/// `block` (wait to be stopped), or `block-ignoring-int` (the same with
/// SIGINT and SIGQUIT ignored, as they stay in an asynchronous command of
/// bash before 4.3). Once its pid is written it starts no other process (a
/// child could outlive it as a zombie for a moment), and `exec sleep`
/// keeps it one process, like the real binary.
const FAKE: &str = r#"#!/bin/sh
set -e
if [ "$FAKE_EXIT" = block-ignoring-int ]; then
    trap '' INT QUIT
fi
printf '%s\n' "$*" > "$FAKE_DIR/args"
echo $$ > "$FAKE_DIR/pid"
case "$FAKE_EXIT" in
    block*) exec sleep 600 ;;
esac
exit "$FAKE_EXIT"
"#;

/// Copy the assembled element into `to`, each binary replaced by the fake
/// and shipped 0644 like the binaries.
fn fake_element(to: &Path) {
    fs::create_dir_all(to).unwrap();
    let out = Command::new("cp")
        .arg("-a")
        .arg(element().join("."))
        .arg(to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "copying the element: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for bin in xtask::element::BINARIES {
        let path = to.join(xtask::element::LIBEXEC).join(bin);
        assert!(path.is_file(), "{} is not in the element", path.display());
        fs::write(&path, FAKE).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// Where the hooks run: on the host, or in a chroot of a throw-away image
/// (the element copied to its /tmp/in_target.d, as DIB provides it).
#[derive(Debug)]
struct Bench {
    /// Logs, and for the host: the element, TMPDIR, the fake's directory,
    /// TARGET_ROOT and DIB_IMAGE_CACHE.
    dir: tempfile::TempDir,
    image: Option<Image>,
    /// On the host, with an `id` on PATH that says the user is not root:
    /// the wrapper then runs the binary through the real sudo (which lets
    /// root run anything), as for a build started by a normal user.
    via_sudo: bool,
}

/// `id -u` of a user who is not root; anything else as the real id.
const NOT_ROOT_ID: &str = r#"#!/bin/sh
if [ "$*" = -u ]; then
    echo 1000
else
    exec /usr/bin/id "$@"
fi
"#;

impl Bench {
    fn outside() -> Bench {
        Bench::on_host(false)
    }

    fn outside_via_sudo() -> Bench {
        Bench::on_host(true)
    }

    fn on_host(via_sudo: bool) -> Bench {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("dib-pypi-wrapper.")
            .tempdir()
            .unwrap();
        fake_element(&dir.path().join("element"));
        for d in ["tmp", "fake", "target", "cache", "bin"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        let id = dir.path().join("bin/id");
        fs::write(&id, NOT_ROOT_ID).unwrap();
        fs::set_permissions(&id, fs::Permissions::from_mode(0o755)).unwrap();
        Bench {
            dir,
            image: None,
            via_sudo,
        }
    }

    fn inside() -> Bench {
        let image = Image::new();
        fake_element(&image.path("/tmp/in_target.d"));
        fs::create_dir(image.path("/root/fake")).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("dib-pypi-wrapper.")
            .tempdir()
            .unwrap();
        Bench {
            dir,
            image: Some(image),
            via_sudo: false,
        }
    }

    fn name(&self) -> &'static str {
        match (&self.image, self.via_sudo) {
            (Some(_), _) => "in the chroot",
            (None, false) => "outside",
            (None, true) => "outside via sudo",
        }
    }

    /// Host path of the element copy.
    fn element_dir(&self) -> PathBuf {
        match &self.image {
            Some(image) => image.path("/tmp/in_target.d"),
            None => self.dir.path().join("element"),
        }
    }

    /// Host path of the directory that must hold the staged copy, and
    /// nothing once the hook has ended.
    fn tmp(&self) -> PathBuf {
        match &self.image {
            Some(image) => image.path("/tmp"),
            None => self.dir.path().join("tmp"),
        }
    }

    /// Host path of the directory the fake writes to.
    fn fake_dir(&self) -> PathBuf {
        match &self.image {
            Some(image) => image.path("/root/fake"),
            None => self.dir.path().join("fake"),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("hook.log")
    }

    /// The hook's command line, as DIB runs it: outside with TARGET_ROOT,
    /// inside through chroot with a clean environment.
    fn command(&self, script: &str, mode: &str, trace: bool) -> Command {
        let mut cmd = match &self.image {
            None => {
                let d = self.dir.path();
                let mut cmd = clean_command("bash");
                cmd.arg(d.join("element").join(script))
                    .env("TARGET_ROOT", d.join("target"))
                    .env("TMPDIR", d.join("tmp"))
                    .env("DIB_IMAGE_CACHE", d.join("cache"))
                    .env("FAKE_DIR", d.join("fake"))
                    .env("FAKE_EXIT", mode);
                if trace {
                    cmd.env("DIB_DEBUG_TRACE", "1");
                }
                if self.via_sudo {
                    let path = std::env::var_os("PATH").unwrap_or_default();
                    let mut dirs = vec![d.join("bin")];
                    dirs.extend(std::env::split_paths(&path));
                    cmd.env("PATH", std::env::join_paths(dirs).unwrap());
                }
                cmd
            }
            Some(image) => {
                let mut cmd = Command::new("chroot");
                cmd.arg(image.root()).args([
                    "/usr/bin/env",
                    "-i",
                    "HOME=/root",
                    "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                    "LANG=C.UTF-8",
                    // Not in the image: the wrapper must stage in /tmp.
                    "TMPDIR=/no/such/dir",
                    "FAKE_DIR=/root/fake",
                    &format!("FAKE_EXIT={mode}"),
                ]);
                if trace {
                    cmd.arg("DIB_DEBUG_TRACE=1");
                }
                cmd.arg("bash").arg(format!("/tmp/in_target.d/{script}"));
                cmd
            }
        };
        let log = fs::File::create(self.log()).unwrap();
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        cmd
    }

    /// Start `script` with the fake in `mode`.
    fn start(&self, script: &str, mode: &str, trace: bool) -> Hook<'_> {
        for f in ["pid", "args"] {
            let _ = fs::remove_file(self.fake_dir().join(f));
        }
        let child = self.command(script, mode, trace).spawn().unwrap();
        Hook {
            what: format!(
                "{script} {}, fake {mode}{}",
                self.name(),
                if trace { ", DIB_DEBUG_TRACE=1" } else { "" }
            ),
            bench: self,
            child,
            status: None,
        }
    }

    /// Entries of the temp dir named like the wrapper's staging dirs.
    fn staged(&self) -> Vec<PathBuf> {
        fs::read_dir(self.tmp())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("dib-pypi."))
            .map(|e| e.path())
            .collect()
    }
}

/// A running hook. Dropping it kills whatever is left of its group.
#[derive(Debug)]
struct Hook<'a> {
    what: String,
    bench: &'a Bench,
    child: Child,
    status: Option<ExitStatus>,
}

/// What /proc says about a process (zombies included: a process the
/// wrapper did not wait for counts as left over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    zombie: bool,
    pgrp: i32,
    session: i32,
    /// Start time, which tells a process apart from a later one that gets
    /// the same pid.
    start: u64,
}

/// The fake as a process.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: i32,
    stat: Stat,
}

fn proc_stat(pid: i32) -> Option<Stat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "pid (comm) ", from field 3: pgrp is field 5, session 6,
    // starttime 22.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    Some(Stat {
        zombie: *fields.first()? == "Z",
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Processes (pid and command line) in process group `pgid`.
fn group_members(pgid: i32) -> Vec<String> {
    members(|s| s.pgrp == pgid)
}

/// Processes (pid and command line) whose /proc stat matches `filter`.
fn members(filter: impl Fn(&Stat) -> bool) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|s| filter(&s)))
        .map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            )
        })
        .collect()
}

/// Signals ignored by process `pid`, as a mask (bit N-1 for signal N).
fn ignored_signals(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// The session of the tests (and of the hooks they start).
fn this_session() -> i32 {
    nix::unistd::getsid(None).unwrap().as_raw()
}

fn bit(sig: Signal) -> u64 {
    1 << (sig as i32 - 1)
}

impl Hook<'_> {
    fn pgid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.bench.log()).unwrap_or_default()
    }

    /// Wait until the fake runs; check that it runs from a fresh staged
    /// copy and return it.
    fn fake_running(&mut self) -> Proc {
        let pid_file = self.bench.fake_dir().join("pid");
        let deadline = Instant::now() + PATIENCE;
        let pid = loop {
            // Complete once it ends with a newline (one write(2)).
            if let Some(pid) = fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.strip_suffix('\n')?.parse::<i32>().ok())
            {
                break pid;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{}: the hook ended ({status}) before the fake ran:\n{}",
                    self.what,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: the fake never ran:\n{}",
                self.what,
                self.log()
            );
            std::thread::sleep(POLL);
        };
        let stat = proc_stat(pid).unwrap();
        // sudo with use_pty (Debian's default, used when there is a
        // terminal) runs the binary in a session of its own, on a pty, and
        // relays signals to it; otherwise it is in the hook's group.
        let own_session = self.bench.via_sudo && stat.session != this_session();
        assert!(
            stat.pgrp == self.pgid() || own_session,
            "{}: the fake left the hook's group: {stat:?}",
            self.what
        );
        let staged = self.bench.staged();
        assert_eq!(staged.len(), 1, "{}: staged {staged:?}", self.what);
        let copy: Vec<_> = fs::read_dir(&staged[0])
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(copy.len(), 1, "{}: {copy:?}", self.what);
        assert_eq!(fs::read_to_string(&copy[0]).unwrap(), FAKE);
        let mode = fs::metadata(&copy[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{}", self.what);
        Proc { pid, stat }
    }

    /// Wait for the hook to end, at most PATIENCE.
    fn finish(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.status = Some(status);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the hook did not end within {PATIENCE:?}; processes in its group:\n{}\n{}",
                self.what,
                group_members(self.pgid()).join("\n"),
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Wait for the hook to end and check that it exited (not died) with
    /// `expected` and left nothing behind: no staged copy, no process in
    /// its group, no `fake`.
    fn assert_ends_cleanly(&mut self, expected: i32, fake: Option<Proc>) {
        let status = self.finish();
        let log = self.log();
        let what = &self.what;
        assert_eq!(
            status.code(),
            Some(expected),
            "{what}: the hook ended with {status}, expected exit status {expected}:\n{log}"
        );
        assert_eq!(
            self.bench.staged(),
            Vec::<PathBuf>::new(),
            "{what}: the staged copy is left:\n{log}"
        );
        let left = group_members(self.pgid());
        assert!(left.is_empty(), "{what}: still running: {left:?}\n{log}");
        if let Some(fake) = fake {
            let alive = proc_stat(fake.pid).is_some_and(|s| s.start == fake.stat.start);
            assert!(!alive, "{what}: the fake (pid {}) still exists", fake.pid);
            if fake.stat.session != this_session() {
                // sudo's pty session: its monitor process must be gone too
                // (or be a zombie: its parent, sudo, is gone and init
                // reaps it).
                let left = members(|s| s.session == fake.stat.session && !s.zombie);
                assert!(left.is_empty(), "{what}: still running: {left:?}\n{log}");
            }
        }
    }
}

impl Drop for Hook<'_> {
    fn drop(&mut self) {
        // After a failed assertion: leave no fake sleeping for minutes.
        let _ = killpg(Pid::from_raw(self.pgid()), Signal::SIGKILL);
        if self.status.is_none() {
            let _ = self.child.wait();
        }
    }
}

/// Who gets the signal.
#[derive(Debug, Clone, Copy)]
enum To {
    /// The hook's whole process group (Ctrl-C, a CI runner's SIGTERM).
    Group,
    /// Bash alone (kill PID, timeout(1)).
    Bash,
}

/// Start `script` with a blocking fake, send `sig` once the fake runs, and
/// check the hook exits 128 + `sig` and leaves nothing behind.
fn interrupt(bench: &Bench, script: &str, mode: &str, trace: bool, to: To, sig: Signal) {
    let mut hook = bench.start(script, mode, trace);
    hook.what = format!("{}, {sig} to {to:?}", hook.what);
    let fake = hook.fake_running();
    if mode == "block" {
        // Reset by the wrapper: Ctrl-C reaches the binary itself, as it
        // would a foreground command (bash >= 4.3, which the host has).
        let ignored = ignored_signals(fake.pid);
        assert_eq!(
            ignored & (bit(Signal::SIGINT) | bit(Signal::SIGQUIT)),
            0,
            "{}: the binary runs with SIGINT or SIGQUIT ignored ({ignored:#x})",
            hook.what
        );
    }
    match to {
        To::Group => killpg(Pid::from_raw(hook.pgid()), sig).unwrap(),
        To::Bash => kill(Pid::from_raw(hook.pgid()), sig).unwrap(),
    }
    hook.assert_ends_cleanly(128 + sig as i32, Some(fake));
    if trace {
        let log = hook.log();
        assert!(
            log.contains("+ dib_pypi_interrupted"),
            "{}:\n{log}",
            hook.what
        );
        assert_eq!(
            log.contains("+ exec sudo -E "),
            bench.via_sudo,
            "{}:\n{log}",
            hook.what
        );
    }
}

fn places() -> [Bench; 3] {
    [Bench::outside(), Bench::outside_via_sudo(), Bench::inside()]
}

#[test]
fn a_binary_that_ends_by_itself_gives_the_hook_its_status_and_leaves_nothing() {
    for bench in places() {
        let d = bench.dir.path();
        let target = d.join("target");
        let cases = if bench.image.is_some() {
            vec![(PRE_INSTALL, String::new())]
        } else {
            vec![
                (
                    ROOT_D,
                    format!(
                        "--target-root {} --mirror-dir {}/pypi/mirror",
                        target.display(),
                        d.join("cache").display()
                    ),
                ),
                (CLEANUP, format!("--target-root {}", target.display())),
            ]
        };
        for (script, args) in &cases {
            for trace in [false, true] {
                for status in [0, 1, 3, 42] {
                    let mut hook = bench.start(script, &status.to_string(), trace);
                    hook.assert_ends_cleanly(status, None);
                    let got = fs::read_to_string(bench.fake_dir().join("args"))
                        .unwrap_or_else(|e| panic!("{}: the fake did not run: {e}", hook.what));
                    assert_eq!(got.trim_end(), args, "{}", hook.what);
                    let log = hook.log();
                    assert_eq!(
                        log.contains("+ dib_pypi_run"),
                        trace,
                        "{}: trace on is {trace}:\n{log}",
                        hook.what
                    );
                    if trace {
                        assert_eq!(
                            log.contains("+ exec sudo -E "),
                            bench.via_sudo,
                            "{}:\n{log}",
                            hook.what
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_signal_to_the_process_group_stops_the_hook_with_128_plus_its_number() {
    for bench in places() {
        let script = if bench.image.is_some() {
            PRE_INSTALL
        } else {
            ROOT_D
        };
        for trace in [false, true] {
            for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
                interrupt(&bench, script, "block", trace, To::Group, sig);
            }
        }
    }
}

#[test]
fn a_signal_to_bash_alone_stops_the_binary_too() {
    for bench in places() {
        let script = if bench.image.is_some() {
            PRE_INSTALL
        } else {
            CLEANUP
        };
        for trace in [false, true] {
            for sig in [
                Signal::SIGTERM,
                Signal::SIGINT,
                Signal::SIGHUP,
                Signal::SIGQUIT,
            ] {
                interrupt(&bench, script, "block", trace, To::Bash, sig);
            }
        }
    }
}

#[test]
fn ctrl_c_stops_a_binary_that_ignores_sigint() {
    for bench in places() {
        let script = if bench.image.is_some() {
            PRE_INSTALL
        } else {
            ROOT_D
        };
        // Not SIGINT to the group through sudo: only the image's bash can
        // be old enough to leave the binary ignoring SIGINT, never the
        // host's, which runs sudo. (And sudo with a pty, as from a
        // terminal, may drop the wrapper's SIGTERM when it arrives together
        // with the group's SIGINT: seen with sudo 1.9.13.)
        let targets: &[To] = if bench.via_sudo {
            &[To::Bash]
        } else {
            &[To::Group, To::Bash]
        };
        for &to in targets {
            interrupt(
                &bench,
                script,
                "block-ignoring-int",
                false,
                to,
                Signal::SIGINT,
            );
        }
    }
}

#[test]
fn a_failure_before_the_binary_runs_leaves_nothing() {
    for bench in places() {
        let (script, bin) = if bench.image.is_some() {
            (PRE_INSTALL, "dib-pypi-configure")
        } else {
            (ROOT_D, "dib-pypi-mount")
        };
        // The copy into the staging dir fails: set -e ends the hook there.
        let path = bench.element_dir().join(xtask::element::LIBEXEC).join(bin);
        fs::remove_file(&path).unwrap();
        let mut hook = bench.start(script, "0", true);
        hook.assert_ends_cleanly(1, None);
        let log = hook.log();
        assert!(log.contains("install: "), "{}:\n{log}", hook.what);
        assert!(
            !bench.fake_dir().join("args").exists(),
            "{}: a binary ran",
            hook.what
        );
    }
}
