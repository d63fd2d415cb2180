//! pre-install.d hook: point root's pip and uv at the mirrors for the rest of the build.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dib_pypi_core::configure::configure;
use dib_pypi_core::layout::home_dir;
use dib_pypi_core::mounter::SystemMounter;
use dib_pypi_core::overrides::{env_warnings, image_warnings, tls_path_warnings};
use dib_pypi_core::rootfs::Root;
use dib_pypi_core::settings::{process_env, Settings};

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
    dib_pypi_core::logging::init("dib-pypi-configure");
    let args = Args::parse();
    let env = process_env();
    let settings = match Settings::from_vars(env.iter().map(|(k, v)| (k, v))) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let home = home_dir(std::env::var_os("HOME").as_deref());
    let result = Root::open(&args.root).and_then(|root| {
        let done = configure(&root, &settings, &home, &SystemMounter)?;
        Ok((root, done))
    });
    match result {
        Ok((root, done)) => {
            for w in settings
                .warnings
                .iter()
                .chain(&done.warnings)
                .chain(&env_warnings(env.iter().map(|(k, v)| (k, v))))
                .chain(&image_warnings(&root))
                .chain(&tls_path_warnings(&root, env.iter().map(|(k, v)| (k, v))))
            {
                log::warn!("{w}");
            }
            let first = settings
                .indexes
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            log::info!(
                "pip and uv use {first}{} ({} index{} in all)",
                if settings.upstream {
                    ", then upstream PyPI"
                } else {
                    ""
                },
                settings.indexes.len(),
                if settings.indexes.len() == 1 {
                    ""
                } else {
                    "es"
                }
            );
            for (n, index) in settings.indexes.iter().enumerate() {
                log::debug!("index {}: {index}", n + 1);
            }
            for path in done.written {
                log::debug!("wrote {}", path.display());
            }
            if let Some(dir) = settings.indexes.iter().find_map(|m| m.file_path()) {
                if !root.is_dir(&dir).unwrap_or(false) {
                    log::warn!(
                        "{} does not exist in the image (no mirror mounted)",
                        dir.display()
                    );
                }
            }
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
