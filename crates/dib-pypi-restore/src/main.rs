//! cleanup.d hook: put back every file the element replaced and remove everything it created.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dib_pypi_core::hook::{run_hook, Report};
use dib_pypi_core::layout::DEFAULT_HOME;
use dib_pypi_core::mounter::SystemMounter;
use dib_pypi_core::restore::restore;
use dib_pypi_core::rootfs::Root;

/// Undo the pypi element's changes to the image, as recorded in its journals.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The image root (DIB exports it to cleanup.d hooks).
    #[arg(long, env = "TARGET_ROOT")]
    target_root: PathBuf,
    /// root's home in the image, as pre-install.d saw it (DIB runs the
    /// in-chroot hooks with HOME=/root); where leftovers are looked for.
    #[arg(long, default_value = DEFAULT_HOME)]
    home: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    run_hook("dib-pypi-restore", || {
        restore(&Root::open(&args.target_root)?, &SystemMounter, &args.home)?;
        let mut report = Report::default();
        report.info("restored the image's original pip and uv configuration");
        Ok(report)
    })
}
