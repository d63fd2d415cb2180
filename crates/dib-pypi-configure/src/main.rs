//! pre-install.d hook: point root's pip and uv at the mirrors for the rest of the build.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dib_pypi_core::configure::pre_install;
use dib_pypi_core::hook::run_hook;
use dib_pypi_core::layout::home_dir;
use dib_pypi_core::mounter::SystemMounter;
use dib_pypi_core::settings::process_env;
use dib_pypi_core::tools::TOOLS;

/// Back up root's pip/uv configuration and write one that uses the mirrors
/// named by DIB_PYPI_MIRROR_URL, DIB_PYPI_MIRROR_URL_1, ... (see README).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The image root; the hook runs inside the chroot, where it is `/`.
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    run_hook("dib-pypi-configure", || {
        let home = home_dir(std::env::var_os("HOME").as_deref());
        pre_install(&args.root, &process_env(), &home, &SystemMounter, TOOLS)
    })
}
