//! `cargo xtask test`: the one command that runs every check, as CI does.

use std::process::Command;

use crate::element::workspace_root;

fn run_step(name: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: == {name}");
    let status = cmd
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("{name}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed ({status})"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Run formatting, lints, all cargo tests and (with `e2e`) the
/// disk-image-create builds.
pub fn run(e2e: bool) -> Result<(), String> {
    run_step(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run_step(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run_step(
        "cargo test",
        cargo().args(["test", "--workspace", "--locked"]),
    )?;
    // The wheel and sdist, checked, and the wheel installed into a fresh
    // venv and into a Debian 11 root.
    run_step(
        "cargo xtask dist --old-debian",
        cargo().args(["xtask", "dist", "--old-debian"]),
    )?;
    if e2e {
        run_step(
            "disk-image-create end-to-end builds",
            Command::new("bash").arg("tests/e2e/run.sh"),
        )?;
    }
    Ok(())
}
