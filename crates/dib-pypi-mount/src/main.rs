//! root.d hook: the mirrors' TLS files into the image, and the host's PyPI mirror read-only at /tmp/pypi.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dib_pypi_core::certs::MirrorTls;
use dib_pypi_core::layout::MOUNTPOINT;
use dib_pypi_core::mount::{root_d, MountOutcome};
use dib_pypi_core::mounter::SystemMounter;
use dib_pypi_core::rootfs::Root;

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
    dib_pypi_core::logging::init("dib-pypi-mount");
    let args = Args::parse();
    let Some(source) = args
        .mirror_dir
        .or_else(dib_pypi_core::cache::mirror_dir_from_env)
    else {
        log::error!("DIB_IMAGE_CACHE and HOME are both unset; cannot locate the mirror");
        return ExitCode::FAILURE;
    };
    // The host's certificate files are checked before anything changes.
    let tls = match MirrorTls::from_env() {
        Ok(tls) => tls,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for w in &tls.warnings {
        log::warn!("{w}");
    }
    let result =
        Root::open(&args.target_root).and_then(|root| root_d(&root, &source, &tls, &SystemMounter));
    match result {
        Ok(MountOutcome::NoMirror) => {
            log::debug!("no mirror at {}; nothing to mount", source.display());
            ExitCode::SUCCESS
        }
        Ok(MountOutcome::AlreadyMounted) => {
            log::info!("mirror already mounted at {MOUNTPOINT}");
            ExitCode::SUCCESS
        }
        Ok(MountOutcome::Mounted) => {
            log::info!("mounted {} read-only at {MOUNTPOINT}", source.display());
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
