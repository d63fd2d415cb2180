//! `pypi-mirror`: command-line front end of the mirror builder.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Build the local PEP 503 mirror used by the dib `pypi` element.
#[derive(Debug, Parser)]
#[command(name = "pypi-mirror", version, about)]
struct Cli {
    /// More output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Index every wheel and sdist in the given directories into the mirror.
    Build {
        /// Directory to index, recursively (repeatable). Default: re-index
        /// the mirror directory itself.
        #[arg(long = "from", value_name = "DIR")]
        from: Vec<PathBuf>,
        /// Mirror directory [default: $DIB_IMAGE_CACHE/pypi/mirror or
        /// ~/.cache/image-create/pypi/mirror].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Remove files from the mirror that no source directory has.
        #[arg(long)]
        prune: bool,
        /// Worker threads (default: number of CPUs).
        #[arg(short, long, default_value_t = 0, hide_default_value = true)]
        jobs: usize,
    },
    /// Add wheel or sdist files to the mirror, updating only their projects.
    Add {
        /// Files to add.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Mirror directory (default as for `build`).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Serve the mirror over HTTP as a pull-through cache of upstream
    /// indexes: what clients fetch is published into the mirror.
    Serve {
        /// Upstream simple index, repeatable; the first that has a project
        /// wins [default: https://pypi.org/simple/].
        #[arg(long = "upstream", value_name = "URL")]
        upstreams: Vec<String>,
        /// Address to listen on (port 0: any free port).
        #[arg(long, value_name = "ADDR", default_value = pypi_mirror::serve::DEFAULT_LISTEN)]
        listen: String,
        /// Mirror directory (default as for `build`).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Never ask upstream: serve what the mirror has.
        #[arg(long)]
        offline: bool,
        /// Seconds an upstream project page is used before it is fetched
        /// again.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        ttl: u64,
        /// Write the port, once listening, to this file (removed on exit).
        #[arg(long, value_name = "FILE")]
        port_file: Option<PathBuf>,
        /// Concurrent upstream requests at most.
        #[arg(long, value_name = "N", default_value_t = 16)]
        max_upstream: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Info,
        (false, 1) => log::LevelFilter::Debug,
        (false, _) => log::LevelFilter::Trace,
    };
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    if cli.verbose < 2 {
        // serve's HTTP stack: its connection chatter only with -vv, so -v
        // is the one-line-per-request log.
        for module in [
            "reqwest",
            "hyper_util",
            "rustls",
            "rustls_platform_verifier",
        ] {
            builder.filter_module(module, level.min(log::LevelFilter::Info));
        }
    }
    let logger = builder
        .parse_env("PYPI_MIRROR_LOG")
        .format(|buf, record| {
            // One line per message, tool-style: "pypi-mirror: error: ...".
            let level = match record.level() {
                log::Level::Info => String::new(),
                l => format!("{}: ", l.as_str().to_ascii_lowercase()),
            };
            writeln!(buf, "pypi-mirror: {level}{}", record.args())
        })
        .build();
    let max = logger.filter();
    // Without a logger messages are lost, not fatal; this cannot fail anyway
    // since nothing else installs one.
    if log::set_boxed_logger(Box::new(BarAwareLogger(logger))).is_ok() {
        log::set_max_level(max);
    }

    let progress = std::io::stderr().is_terminal();
    let (out, result) = match cli.command {
        Command::Build {
            from,
            out,
            prune,
            jobs,
        } => {
            let Some(out) = out.or_else(pypi_mirror::default_out) else {
                return no_out();
            };
            let opts = pypi_mirror::BuildOptions {
                from,
                out: out.clone(),
                prune,
                progress,
                jobs,
            };
            (out, pypi_mirror::build(&opts))
        }
        Command::Serve {
            upstreams,
            listen,
            out,
            offline,
            ttl,
            port_file,
            max_upstream,
        } => {
            let Some(out) = out.or_else(pypi_mirror::default_out) else {
                return no_out();
            };
            let mut opts = pypi_mirror::serve::ServeOptions::new(out);
            opts.upstreams = upstreams;
            opts.listen = listen;
            opts.offline = offline;
            opts.ttl = std::time::Duration::from_secs(ttl);
            opts.port_file = port_file;
            opts.max_upstream = max_upstream;
            return match pypi_mirror::serve::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Add { files, out } => {
            let Some(out) = out.or_else(pypi_mirror::default_out) else {
                return no_out();
            };
            let mut opts = pypi_mirror::AddOptions::new(out.clone(), files);
            opts.progress = progress;
            (out, pypi_mirror::add_with(&opts))
        }
    };
    match result {
        Ok(report) => {
            log::info!(
                "{}: {} files in {} projects ({} added, {} updated, {} removed, {} unchanged; {} pages written)",
                out.display(),
                report.files,
                report.projects,
                report.added.len(),
                report.updated.len(),
                report.removed.len(),
                report.unchanged,
                report.pages_written.len() + usize::from(report.root_written),
            );
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                log::error!(
                    "{} file(s) skipped, see the messages above",
                    report.problems.len()
                );
                ExitCode::from(1)
            }
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(2)
        }
    }
}

/// env_logger, but printing around the progress bar instead of through it.
struct BarAwareLogger(env_logger::Logger);

impl log::Log for BarAwareLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.0.matches(record) {
            pypi_mirror::suspend_progress(|| self.0.log(record));
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

fn no_out() -> ExitCode {
    log::error!("no mirror directory: pass --out, or set DIB_IMAGE_CACHE or HOME");
    ExitCode::from(2)
}
