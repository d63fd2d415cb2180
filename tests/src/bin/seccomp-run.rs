//! `seccomp-run PROFILE -- COMMAND [ARG]...`: run a command with new system calls refused by seccomp.
//!
//! Test tool, not part of the element: the end-to-end test runs a whole
//! `disk-image-create` under it, so DIB and everything it starts (sudo,
//! chroot, the hooks) see the syscalls of an older kernel. Profiles:
//! `openat2-enosys`, `openat2-eperm`, `linux-4.18`. Run it as root: the
//! filter sets no_new_privs, so setuid programs such as sudo gain nothing.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use dib_pypi_tests::seccomp::Profile;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (profile, command) = match args.as_slice() {
        [name, sep, program, rest @ ..] if sep == "--" => match Profile::from_name(name) {
            Some(p) => (p, (program, rest)),
            None => return usage(&format!("unknown profile {name:?}")),
        },
        _ => return usage("expected PROFILE -- COMMAND [ARG]..."),
    };
    if let Err(e) = profile.apply_to_this_thread() {
        eprintln!("seccomp-run: error: installing the {profile} filter: {e}");
        return ExitCode::FAILURE;
    }
    let e = Command::new(command.0).args(command.1).exec();
    eprintln!("seccomp-run: error: running {}: {e}", command.0);
    ExitCode::from(127)
}

fn usage(why: &str) -> ExitCode {
    let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
    eprintln!(
        "seccomp-run: error: {why}\nusage: seccomp-run PROFILE -- COMMAND [ARG]...  (PROFILE: {})",
        names.join(", ")
    );
    ExitCode::from(2)
}
