//! cleanup.d hook: put back every file the element replaced and remove everything it created.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
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
    dib_pypi_core::logging::init("dib-pypi-restore");
    let args = Args::parse();
    let result =
        Root::open(&args.target_root).and_then(|root| restore(&root, &SystemMounter, &args.home));
    match result {
        Ok(()) => {
            log::info!("restored the image's original pip and uv configuration");
            ExitCode::SUCCESS
        }
        Err(e) => {
            for e in e.leaves() {
                log::error!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}
