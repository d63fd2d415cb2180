//! root.d hook: the mirrors' TLS files into the image, and the host's PyPI mirror read-only at /tmp/pypi.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dib_pypi_core::hook::run_hook;
use dib_pypi_core::mount::root_d_hook;
use dib_pypi_core::mounter::SystemMounter;

/// Bind-mount $DIB_IMAGE_CACHE/pypi/mirror read-only at $TARGET_ROOT/tmp/pypi,
/// and put the files of DIB_PYPI_MIRROR_CA and DIB_PYPI_MIRROR_CLIENT_CERT
/// into the image for the build.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The image root being built (DIB exports it to root.d hooks).
    #[arg(long, env = "TARGET_ROOT")]
    target_root: PathBuf,
    /// The mirror directory on the host [default: $DIB_IMAGE_CACHE/pypi/mirror,
    /// $DIB_IMAGE_CACHE defaulting to ~/.cache/image-create].
    #[arg(long)]
    mirror_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    run_hook("dib-pypi-mount", || {
        root_d_hook(&args.target_root, args.mirror_dir, &SystemMounter)
    })
}
