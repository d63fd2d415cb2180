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
        /// Remove files from the mirror that no source directory has (not
        /// recorded ones; nothing at all if any file was skipped).
        #[arg(long)]
        prune: bool,
        /// Like --prune, and remove recorded files too.
        #[arg(long)]
        prune_recorded: bool,
        /// Show what would be added, updated and removed; change nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
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
        /// Mark the files as recorded: `build --prune` keeps them.
        #[arg(long)]
        recorded: bool,
        /// Show what would be added; change nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Serve the mirror over HTTP as a pull-through cache of upstream
    /// indexes: what clients fetch is published into the mirror.
    Serve {
        /// Upstream simple index, repeatable; the first that has a project
        /// wins [default: $PYPI_MIRROR_UPSTREAM (URLs separated by
        /// spaces; the place for passwords, which `ps` does not show),
        /// else https://pypi.org/simple/].
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
        /// MiB of project pages kept in memory at most (default: 1/32 of
        /// the machine's memory, between 64 MiB and 1 GiB).
        #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
        page_cache: Option<u64>,
    },
    /// Print the directory to put on ELEMENTS_PATH: the one holding the
    /// `pypi` element that pip installed beside this program.
    ElementsPath,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
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
        Command::ElementsPath => {
            return match pypi_mirror::elements::elements_path() {
                Ok(dir) => {
                    println!("{}", dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Build {
            from,
            out,
            prune,
            prune_recorded,
            dry_run,
            jobs,
        } => {
            let Some(out) = out.or_else(pypi_mirror::default_out) else {
                return no_out();
            };
            let opts = pypi_mirror::BuildOptions {
                from,
                out: out.clone(),
                prune: prune || prune_recorded,
                prune_recorded,
                dry_run,
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
            page_cache,
        } => {
            let Some(out) = out.or_else(pypi_mirror::default_out) else {
                return no_out();
            };
            let mut opts = pypi_mirror::serve::ServeOptions::new(out);
            opts.upstreams = upstreams;
            opts.upstream_env = match std::env::var(pypi_mirror::serve::UPSTREAM_ENV) {
                Ok(v) => Some(v),
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(_)) => {
                    log::error!("{}: not UTF-8", pypi_mirror::serve::UPSTREAM_ENV);
                    return ExitCode::from(2);
                }
            };
            opts.listen = listen;
            opts.offline = offline;
            opts.ttl = std::time::Duration::from_secs(ttl);
            opts.port_file = port_file;
            opts.max_upstream = max_upstream;
            opts.page_cache = page_cache.map_or(0, |mib| mib << 20);
            return match pypi_mirror::serve::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Add {
            files,
            out,
            recorded,
            dry_run,
        } => {
            let Some(out) = out.or_else(pypi_mirror::default_out) else {
                return no_out();
            };
            let mut opts = pypi_mirror::AddOptions::new(out.clone(), files);
            opts.progress = progress;
            opts.recorded = recorded;
            opts.dry_run = dry_run;
            (out, pypi_mirror::add_with(&opts))
        }
    };
    match result {
        Ok(report) => {
            summarise(&out, &report);
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

/// Say what the run did, or in a dry run what it would do, and what
/// `--prune` left alone and why.
fn summarise(out: &std::path::Path, report: &pypi_mirror::Report) {
    if report.dry_run {
        for (verb, names) in [
            ("would add", &report.added),
            ("would update", &report.updated),
            ("would remove", &report.removed),
        ] {
            for name in names {
                log::info!("{verb} {name}");
            }
        }
    }
    if !report.prune_withheld.is_empty() {
        log::warn!(
            "--prune removed nothing because files were skipped or a source could not be read (see above), and a file missing from a source may just be unreadable; fix that and run again. It would remove: {}",
            report.prune_withheld.join(", ")
        );
    }
    if !report.kept_recorded.is_empty() {
        log::info!(
            "--prune kept {} recorded file(s) that no source has (--prune-recorded removes them too): {}",
            report.kept_recorded.len(),
            report.kept_recorded.join(", ")
        );
    }
    let (verbs, prefix) = if report.dry_run {
        (
            ["to add", "to update", "to remove", "pages to write"],
            "dry run, nothing changed; would have ",
        )
    } else {
        (["added", "updated", "removed", "pages written"], "")
    };
    log::info!(
        "{}: {prefix}{} files in {} projects ({} {}, {} {}, {} {}, {} unchanged; {} {})",
        out.display(),
        report.files,
        report.projects,
        report.added.len(),
        verbs[0],
        report.updated.len(),
        verbs[1],
        report.removed.len(),
        verbs[2],
        report.unchanged,
        report.pages_written.len() + usize::from(report.root_written),
        verbs[3],
    );
}

/// Help and version go to stdout as usual; a usage error is one line, like
/// every other error of the tool, naming the option, with exit status 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        // clap's own exit status: 0 for help, 2 for help instead of a
        // missing subcommand.
        e.exit();
    }
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // clap's "tip: a similar argument exists" is worth keeping.
    let tip = lines
        .find(|l| l.starts_with("tip: "))
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    eprintln!("pypi-mirror: error: {first}{tip} (see pypi-mirror --help)");
    ExitCode::from(2)
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
