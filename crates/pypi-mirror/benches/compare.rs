//! Benchmark: `pypi-mirror` against `dir2pi` (PyPI package pip2pi) on the
//! same synthetic wheels, full build and one-file incremental add.
//!
//! Run: `cargo bench -p pypi-mirror --bench compare` (options after `--`:
//! `--wheels N`, `--projects N`, `--runs N`, `--no-dir2pi`, `--work-dir DIR`
//! (default: the target directory; e.g. /dev/shm to take the disk out)). Prints a
//! Markdown report on stdout; docs/PERFORMANCE.md is made from it. Timings
//! are wall-clock on a warm page cache; nothing here asserts on them.

use std::error::Error;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use pypi_mirror::{AddOptions, BuildOptions};
use pypi_mirror_testkit::{self as testkit, synth, BuildFrom};

type Res<T> = Result<T, Box<dyn Error>>;

struct Args {
    wheels: usize,
    projects: usize,
    runs: usize,
    dir2pi: bool,
    work_dir: PathBuf,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        wheels: 10_000,
        projects: 2_000,
        runs: 5,
        dir2pi: true,
        work_dir: testkit::target_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = || -> Res<usize> { Ok(it.next().ok_or("missing value")?.parse()?) };
        match arg.as_str() {
            "--wheels" => a.wheels = num()?,
            "--projects" => a.projects = num()?,
            "--runs" => a.runs = num()?.max(1),
            "--no-dir2pi" => a.dir2pi = false,
            "--work-dir" => a.work_dir = it.next().ok_or("missing value")?.into(),
            // cargo passes --bench; libtest-style filters are meaningless here.
            _ => {}
        }
    }
    Ok(a)
}

fn main() -> Res<()> {
    let args = parse_args()?;
    // Phase timings of the library at debug level: PYPI_MIRROR_LOG=debug.
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Warn)
        .parse_env("PYPI_MIRROR_LOG")
        .init();
    let work = tempfile::Builder::new()
        .prefix("pypi-mirror-bench-")
        .tempdir_in(&args.work_dir)?;
    let src = work.path().join("wheels");
    fs::create_dir_all(&src)?;

    // Wheels are generated once in memory per project and written for each
    // version, so generation does not dominate the run.
    let t = Instant::now();
    let per_project = args.wheels.div_ceil(args.projects.max(1));
    let mut written = 0;
    'outer: for p in 0..args.projects {
        for v in 0..per_project {
            if written == args.wheels {
                break 'outer;
            }
            let spec = synth::Spec::new(&format!("Bench_Proj.{p:05}"), &format!("{}.0", v + 1));
            synth::write_wheel_spec(&src, &spec)?;
            written += 1;
        }
    }
    let bytes: u64 = fs::read_dir(&src)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "generated {written} wheels ({:.1} MiB) in {:.2?}",
        bytes as f64 / 1048576.0,
        t.elapsed()
    );

    // Extra wheels for the incremental step: a new version of an existing
    // project, one per run.
    let extra_dir = work.path().join("extra");
    fs::create_dir_all(&extra_dir)?;
    let mut extras = Vec::new();
    let mut extras_cli = Vec::new();
    for i in 0..args.runs {
        let spec = synth::Spec::new("Bench_Proj.00007", &format!("{}.0", per_project + 1 + i));
        extras.push(synth::write_wheel_spec(&extra_dir, &spec)?);
        let v = per_project + 1 + args.runs + i;
        let spec = synth::Spec::new("Bench_Proj.00007", &format!("{v}.0"));
        extras_cli.push(synth::write_wheel_spec(&extra_dir, &spec)?);
    }

    // dir2pi setup (its own venv; installing is not timed).
    let dir2pi = if args.dir2pi {
        let tools = testkit::tools_venv()?;
        let dir2pi = tools.dir2pi()?;
        let version = String::from_utf8_lossy(
            &testkit::isolated(&tools.python)
                .args([
                    "-c",
                    "import importlib.metadata as m; print(m.version('pip2pi'))",
                ])
                .output()?
                .stdout,
        )
        .trim()
        .to_owned();
        Some((dir2pi, version))
    } else {
        None
    };

    // The machine is shared, so the tools take turns within each round
    // rather than running back to back: a burst of load from elsewhere then
    // hits both sides instead of one. Trees are kept until the end because
    // deleting tens of thousands of files (online discard) slows the disk
    // for a while afterwards.
    let bin = env!("CARGO_BIN_EXE_pypi-mirror");
    let (mut full, mut full_cli, mut noop, mut add, mut add_cli) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut d2p_full, mut d2p_add) = (Vec::new(), Vec::new());
    for i in 0..args.runs {
        // pypi-mirror as a library call, into a fresh directory.
        let out = work.path().join(format!("mirror-{i}"));
        let t = Instant::now();
        let report = pypi_mirror::build(&BuildOptions::new(&out).with_source(&src))?;
        full.push(t.elapsed());
        if !report.is_clean() || report.files != written {
            return Err(format!("unexpected build report: {report:?}").into());
        }

        // dir2pi on the same files, in a fresh directory of hard links
        // (it writes PACKAGE_DIR/simple next to the archives).
        if let Some((dir2pi, _)) = &dir2pi {
            let pkgs = work.path().join(format!("dir2pi-{i}"));
            fs::create_dir_all(&pkgs)?;
            for e in fs::read_dir(&src)? {
                let e = e?;
                fs::hard_link(e.path(), pkgs.join(e.file_name()))?;
            }
            d2p_full.push(time_cmd(Command::new(dir2pi).arg(&pkgs))?);
            let name = extras[i].file_name().ok_or("no file name")?;
            fs::hard_link(&extras[i], pkgs.join(name))?;
            // dir2pi has no incremental mode: adding a file means a re-run.
            d2p_add.push(time_cmd(Command::new(dir2pi).arg(&pkgs))?);
            let page = pkgs.join("simple/bench-proj-00007/index.html");
            if !fs::read_to_string(&page)?.contains(&*name.to_string_lossy()) {
                return Err(format!("dir2pi did not index {}", name.to_string_lossy()).into());
            }
        }

        // The command-line tool, process start included, as a user (or
        // dir2pi) experiences it.
        let out_cli = work.path().join(format!("mirror-cli-{i}"));
        full_cli.push(time_cmd(
            Command::new(bin)
                .args(["build", "-q", "--from"])
                .arg(&src)
                .arg("--out")
                .arg(&out_cli),
        )?);

        // Incremental: one new wheel into the full tree, then a no-op
        // rebuild over the unchanged sources.
        let t = Instant::now();
        let report = pypi_mirror::add_with(&AddOptions::new(&out, [&extras[i]]))?;
        add.push(t.elapsed());
        if report.added.len() != 1 || report.pages_written.len() != 1 {
            return Err(format!("unexpected add report: {report:?}").into());
        }
        add_cli.push(time_cmd(
            Command::new(bin)
                .args(["add", "-q", "--out"])
                .arg(&out_cli)
                .arg(&extras_cli[i]),
        )?);
        let t = Instant::now();
        let report = pypi_mirror::build(&BuildOptions::new(&out).with_source(&src))?;
        noop.push(t.elapsed());
        if report.hashed != 0 || !report.pages_written.is_empty() {
            return Err(format!("no-op rebuild did work: {report:?}").into());
        }
    }
    let d2p_version = dir2pi.map(|d| d.1).unwrap_or_default();

    let ours = Ours {
        full: &full,
        full_cli: &full_cli,
        noop: &noop,
        add: &add,
        add_cli: &add_cli,
    };
    print_report(
        &args,
        written,
        bytes,
        &ours,
        &d2p_full,
        &d2p_add,
        &d2p_version,
    );
    Ok(())
}

fn time_cmd(cmd: &mut Command) -> Res<Duration> {
    let t = Instant::now();
    let out = cmd.output()?;
    let d = t.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(d)
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn min(v: &[Duration]) -> Duration {
    v.iter().min().copied().unwrap_or_default()
}

fn fmt(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}

#[allow(clippy::too_many_arguments)]
/// pypi-mirror's timings.
struct Ours<'a> {
    full: &'a [Duration],
    full_cli: &'a [Duration],
    noop: &'a [Duration],
    add: &'a [Duration],
    add_cli: &'a [Duration],
}

fn print_report(
    args: &Args,
    wheels: usize,
    bytes: u64,
    ours: &Ours<'_>,
    d2p_full: &[Duration],
    d2p_add: &[Duration],
    d2p_version: &str,
) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let python = Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let fs_type = Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE", "-T"])
        .arg(&args.work_dir)
        .output()
        .map(|o| {
            // Stacked mounts list one line each; the first is the one in use.
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            out.lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_default();
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("## Results ({date})\n");
    println!(
        "Machine: {cpus} CPUs ({cpu_model}), {python}. Input: {wheels} wheels, {} projects, {:.1} MiB. {} runs each, fresh output directory per full build, warm page cache.\n",
        args.projects,
        bytes as f64 / 1048576.0,
        args.runs
    );
    println!(
        "Work directory: {} ({fs_type}). Load average at the end: {} (other jobs share this machine).\n",
        args.work_dir.display(),
        load.join(" ")
    );
    println!("| step | pypi-mirror median | pypi-mirror min | dir2pi median | dir2pi min | speed-up (median) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let row = |name: &str, ours: &[Duration], theirs: &[Duration]| {
        let (tm, tn) = if theirs.is_empty() {
            ("n/a".to_owned(), "n/a".to_owned())
        } else {
            (fmt(median(theirs)), fmt(min(theirs)))
        };
        let speedup = if theirs.is_empty() {
            "n/a".to_owned()
        } else {
            let ratio = median(theirs).as_secs_f64() / median(ours).as_secs_f64().max(1e-9);
            if ratio < 10.0 {
                format!("{ratio:.1}x")
            } else {
                format!("{ratio:.0}x")
            }
        };
        println!(
            "| {name} | {} | {} | {tm} | {tn} | {speedup} |",
            fmt(median(ours)),
            fmt(min(ours))
        );
    };
    row("full build (library call)", ours.full, d2p_full);
    row("full build (CLI process)", ours.full_cli, d2p_full);
    row("add one wheel (library call)", ours.add, d2p_add);
    row("add one wheel (CLI process)", ours.add_cli, d2p_add);
    row("no-op rebuild (library call)", ours.noop, &[]);
    let (full, add) = (ours.full_cli, ours.add_cli);
    if !d2p_version.is_empty() {
        println!("\ndir2pi: pip2pi {d2p_version} (its `add` is a full re-run: it has no incremental mode).");
    }
    println!(
        "\nTargets: full build < 1 s ({}), >= 20x dir2pi ({}), add < 50 ms ({}).",
        if median(full) < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        },
        if d2p_full.is_empty() {
            "not measured"
        } else if median(d2p_full).as_secs_f64() >= 20.0 * median(full).as_secs_f64() {
            "met"
        } else {
            "MISSED"
        },
        if median(add) < Duration::from_millis(50) {
            "met"
        } else {
            "MISSED"
        },
    );
}
