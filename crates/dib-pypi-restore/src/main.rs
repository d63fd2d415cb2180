//! cleanup.d hook: put back every file the element replaced and remove everything it created.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dib_pypi_core::mount::SystemMounter;
use dib_pypi_core::rootfs::Root;
use dib_pypi_core::undo::restore;

/// Undo the pypi element's changes to the image, as recorded in its journals.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The image root (DIB exports it to cleanup.d hooks).
    #[arg(long, env = "TARGET_ROOT")]
    target_root: PathBuf,
}

fn main() -> ExitCode {
    dib_pypi_core::logging::init("dib-pypi-restore");
    let args = Args::parse();
    match Root::open(&args.target_root).and_then(|root| restore(&root, &SystemMounter)) {
        Ok(()) => {
            log::info!("restored the image's original pip and uv configuration");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
