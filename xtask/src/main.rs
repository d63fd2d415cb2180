//! `cargo xtask`: assemble the DIB element and run the project's checks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xtask::{dist, element, test};

#[derive(Debug, Parser)]
#[command(about = "Project automation for the dib pypi element")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build static release binaries and write a complete element to OUT/pypi.
    Element {
        /// Directory that receives the `pypi` element (put it on ELEMENTS_PATH).
        #[arg(long, default_value = "target/element")]
        out: PathBuf,
    },
    /// Write the wheel's data directory (target/wheel-data) afresh: the
    /// element of `element`, where the wheel installs it. The build backend
    /// runs this before maturin.
    WheelData,
    /// Build the wheel and the sdist with maturin into OUT, check them, and
    /// check the wheel installed by pip into a fresh venv.
    Dist {
        /// Directory that receives them (emptied first).
        #[arg(long, default_value = dist::DIST_DIR)]
        out: PathBuf,
        /// Also install the wheel with Debian 11's pip in a debootstrapped
        /// root (glibc 2.31) and run it there in a chroot (needs root;
        /// the root is made once, in target/old-debian, from the Debian
        /// mirror apt uses or DIB_PYPI_DEBIAN_MIRROR).
        #[arg(long)]
        old_debian: bool,
    },
    /// Run every check CI runs: fmt, clippy, unit and integration tests, and
    /// the disk-image-create end-to-end builds.
    Test {
        /// Skip the disk-image-create builds (they need DIB and take minutes).
        #[arg(long)]
        no_e2e: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Element { out } => element::assemble(&out).map(|dir| {
            println!("element written to {}", dir.display());
        }),
        Command::WheelData => element::wheel_data().map(|dir| {
            println!("element written to {}", dir.display());
        }),
        Command::Dist { out, old_debian } => dist::dist(&out, old_debian).map(|d| {
            println!("{}", d.wheel.display());
            println!("{}", d.sdist.display());
        }),
        Command::Test { no_e2e } => test::run(!no_e2e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
