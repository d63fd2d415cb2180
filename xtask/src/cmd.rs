//! Running the tools xtask drives (maturin, pip, debootstrap, chroot):
//! one-line errors naming what was run and how it failed.

use std::process::Command;

/// Run `cmd`, failing with `what` and its status.
pub fn run(what: &str, cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Run `cmd` and return its standard output, failing with `what`, its
/// status and its standard error.
pub fn output(what: &str, cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "{what} failed ({}): {}",
            out.status,
            err.trim().lines().last().unwrap_or_default()
        ))
    }
}
