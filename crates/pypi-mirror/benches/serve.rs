//! Benchmark: `pypi-mirror serve` against devpi-server and proxpi on one
//! loopback upstream, side by side in one run: warm-cache pages and files
//! (requests/s, p50/p99 at 1 and 64 clients, measured with wrk), cold
//! `pip install` of 30 packages through each against direct (paired runs),
//! peak RSS.
//!
//! Run: `cargo bench -p pypi-mirror --bench serve` (options after `--`:
//! `--runs N` cold installs per server (5), `--seconds N` per wrk run (3),
//! `--rounds N` of the warm runs (3), `--projects N` (30), `--no-peers`,
//! `--keep`: keep the work directory).
//! Needs `wrk` (Debian package) and python3; installs devpi-server,
//! devpi-client, proxpi and gunicorn into a venv under target/ once.
//! Prints a Markdown report; nothing here asserts on a timing.

use std::error::Error;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pypi_mirror::serve::index;
use pypi_mirror::BuildOptions;
use pypi_mirror_testkit::{self as testkit, synth, BuildFrom};

type Res<T> = Result<T, Box<dyn Error>>;

struct Args {
    runs: usize,
    seconds: u64,
    rounds: usize,
    projects: usize,
    peers: bool,
    keep: bool,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        runs: 5,
        seconds: 3,
        rounds: 3,
        projects: 30,
        peers: true,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = || -> Res<usize> { Ok(it.next().ok_or("missing value")?.parse()?) };
        match arg.as_str() {
            "--runs" => a.runs = num()?.max(1),
            "--seconds" => a.seconds = num()?.max(1) as u64,
            "--rounds" => a.rounds = num()?.max(1),
            "--projects" => a.projects = num()?.max(1),
            "--no-peers" => a.peers = false,
            "--keep" => a.keep = true,
            // cargo passes --bench.
            _ => {}
        }
    }
    Ok(a)
}

/// The venv with the peer tools, made once.
fn peers_venv() -> Res<PathBuf> {
    let dir = testkit::target_dir().join("serve-bench-venv");
    let ready = dir.join(".ready");
    if !ready.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
        // Pinned so a comparison cannot change silently.
        run(Command::new(dir.join("bin/pip")).args([
            "install",
            "-q",
            "--disable-pip-version-check",
            "devpi-server==6.20.3",
            "devpi-client==7.3.0",
            "proxpi==1.3.1",
            "gunicorn==27.0.1",
        ]))?;
        fs::write(&ready, b"")?;
    }
    Ok(dir)
}

fn run(cmd: &mut Command) -> Res<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Status and body of a plain GET (`html`: asking for an HTML page).
fn get(url: &str, html: bool) -> Res<(u16, Vec<u8>)> {
    let rest = url.strip_prefix("http://").ok_or("not http")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{}Connection: close\r\n\r\n",
        if html { "Accept: text/html\r\n" } else { "" }
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no head")?;
    let status = String::from_utf8_lossy(&raw[..split])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    Ok((status, raw[split + 4..].to_vec()))
}

/// `e` with the end of a server's stderr, to say why it did not start.
fn with_log(e: Box<dyn Error>, log: &Path) -> Box<dyn Error> {
    let err = fs::read_to_string(log.with_extension("err")).unwrap_or_default();
    let tail: Vec<&str> = err.lines().rev().take(8).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!("{e}\n{}", tail.join("\n")).into()
}

fn wait_ready(url: &str, secs: u64) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if matches!(get(url, false), Ok((200, _))) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{url} not ready after {secs} s").into())
}

/// A server process: SIGTERM and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.0.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn spawn(cmd: &mut Command, log: &Path) -> Res<Self> {
        Ok(Self(
            cmd.stdin(Stdio::null())
                .stdout(fs::File::create(log)?)
                .stderr(fs::File::create(log.with_extension("err"))?)
                .spawn()?,
        ))
    }

    /// Peak RSS (VmHWM) of the process and its children, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let mut pids = vec![self.0.id()];
        let children = format!("/proc/{0}/task/{0}/children", self.0.id());
        if let Ok(s) = fs::read_to_string(children) {
            pids.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
        pids.iter()
            .filter_map(|p| fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .sum()
    }
}

/// One of the servers under test, running on a fresh cache.
struct Server {
    name: &'static str,
    proc: Proc,
    /// Simple index URL, ending in `/`.
    index: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    Devpi,
    Proxpi,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ours => "pypi-mirror serve",
            Kind::Devpi => "devpi-server",
            Kind::Proxpi => "proxpi",
        }
    }
}

fn start(kind: Kind, upstream: &str, dir: &Path, venv: Option<&Path>) -> Res<Server> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let port = free_port()?;
    let log = dir.join("server.log");
    let (proc, index) = match (kind, venv) {
        (Kind::Ours, _) => {
            let pf = dir.join("port");
            let p = Proc::spawn(
                Command::new(env!("CARGO_BIN_EXE_pypi-mirror"))
                    .args(["serve", "--listen", "127.0.0.1:0", "--upstream", upstream])
                    .arg("--out")
                    .arg(dir.join("tree"))
                    .arg("--port-file")
                    .arg(&pf),
                &log,
            )?;
            let deadline = Instant::now() + Duration::from_secs(20);
            let port = loop {
                if let Some(p) = fs::read_to_string(&pf)
                    .ok()
                    .and_then(|s| s.trim().parse::<u16>().ok())
                {
                    break p;
                }
                if Instant::now() > deadline {
                    return Err("serve did not start".into());
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            (p, format!("http://127.0.0.1:{port}/simple/"))
        }
        (Kind::Devpi, Some(v)) => {
            let server_dir = dir.join("server");
            run(Command::new(v.join("bin/devpi-init"))
                .arg("--serverdir")
                .arg(&server_dir))?;
            let p = Proc::spawn(
                Command::new(v.join("bin/devpi-server"))
                    .arg("--serverdir")
                    .arg(&server_dir)
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()]),
                &log,
            )?;
            let base = format!("http://127.0.0.1:{port}/");
            wait_ready(&format!("{base}+api"), 120).map_err(|e| with_log(e, &log))?;
            // A mirror index of our upstream, as devpi's docs configure one.
            let client = |args: &[&str]| {
                run(Command::new(v.join("bin/devpi"))
                    .env("DEVPI_CLIENTDIR", dir.join("client"))
                    .args(args))
            };
            client(&["use", &base])?;
            client(&["login", "root", "--password", ""])?;
            client(&[
                "index",
                "-c",
                "root/up",
                "type=mirror",
                &format!("mirror_url={upstream}"),
            ])?;
            (p, format!("{base}root/up/+simple/"))
        }
        (Kind::Proxpi, Some(v)) => {
            // proxpi's documented production setup: gunicorn, one worker
            // per core, threads for concurrent clients.
            let p = Proc::spawn(
                Command::new(v.join("bin/gunicorn"))
                    .env("PROXPI_INDEX_URL", upstream)
                    .env("PROXPI_CACHE_DIR", dir.join("cache"))
                    .args(["-w", "2", "--threads", "32", "-b"])
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("proxpi.server:app"),
                &log,
            )?;
            wait_ready(&format!("http://127.0.0.1:{port}/health"), 120)
                .map_err(|e| with_log(e, &log))?;
            (p, format!("http://127.0.0.1:{port}/index/"))
        }
        _ => return Err("peer tools not installed".into()),
    };
    if kind != Kind::Proxpi {
        wait_ready(&index, 120).map_err(|e| with_log(e, &log))?;
    }
    Ok(Server {
        name: kind.name(),
        proc,
        index,
    })
}

/// `pip install` of every project, cold (no pip cache), timed.
fn pip_install(
    tools: &testkit::Tools,
    index: &str,
    target: &Path,
    projects: &[String],
) -> Res<Duration> {
    let _ = fs::remove_dir_all(target);
    let t = Instant::now();
    let out = tools
        .pip()
        .args([
            "install",
            "-q",
            "--no-cache-dir",
            "--index-url",
            index,
            "--target",
        ])
        .arg(target)
        .args(projects)
        .output()?;
    let d = t.elapsed();
    if !out.status.success() {
        return Err(format!(
            "pip install from {index}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(d)
}

/// One wrk run: requests/s, p50, p99, errors.
#[derive(Clone, Copy, Default)]
struct Wrk {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

fn parse_latency(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// The `Accept` header pip sends for index pages.
const PIP_ACCEPT: &str = "Accept: application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";

fn wrk(url: &str, clients: usize, seconds: u64) -> Res<Wrk> {
    let threads = clients.min(2).to_string();
    let out = run(Command::new("wrk").args([
        "-H",
        PIP_ACCEPT,
        "-t",
        &threads,
        "-c",
        &clients.to_string(),
        "-d",
        &format!("{seconds}s"),
        "--latency",
        url,
    ]))?;
    let mut w = Wrk::default();
    for line in out.lines().map(str::trim) {
        let mut f = line.split_whitespace();
        match (f.next(), f.next()) {
            (Some("Requests/sec:"), Some(v)) => w.rps = v.parse()?,
            (Some("50%"), Some(v)) => w.p50 = parse_latency(v).ok_or("bad latency")?,
            (Some("99%"), Some(v)) => w.p99 = parse_latency(v).ok_or("bad latency")?,
            _ => {}
        }
        if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            w.errors += n.trim().parse::<u64>()?;
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            w.errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Ok(w)
}

fn median_by<T: Copy>(v: &[T], key: impl Fn(&T) -> f64) -> T {
    let mut s = v.to_vec();
    s.sort_by(|a, b| key(a).total_cmp(&key(b)));
    s[s.len() / 2]
}

fn fmt_d(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else if d >= Duration::from_millis(1) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    }
}

/// The upstream tree: `projects` projects, 5 versions each; the newest of
/// project i depends on projects 2i+1 and 2i+2, as a dependency tree.
fn upstream_tree(work: &Path, projects: usize) -> Res<(PathBuf, Vec<String>)> {
    let src = work.join("src");
    fs::create_dir_all(&src)?;
    let names: Vec<String> = (0..projects).map(|i| format!("bench-pkg-{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        for v in 1..=5 {
            let mut spec = synth::Spec::new(name, &format!("{v}.0"));
            if v == 5 {
                for d in [2 * i + 1, 2 * i + 2] {
                    if let Some(dep) = names.get(d) {
                        spec = spec.requires(dep);
                    }
                }
            }
            synth::write_wheel_spec(&src, &spec)?;
        }
    }
    let up = work.join("upstream");
    let report = pypi_mirror::build(&BuildOptions::new(&up).with_source(&src))?;
    if !report.is_clean() {
        return Err("upstream tree has problems".into());
    }
    Ok((up, names))
}

/// A cold-install row: name, wall times, ratios to the paired direct runs.
type Cold = (String, Vec<Duration>, Vec<f64>);

fn main() -> Res<()> {
    let args = parse_args()?;
    let tools = testkit::tools_venv()?;
    let venv = if args.peers {
        Some(peers_venv()?)
    } else {
        None
    };
    let work = tempfile::Builder::new()
        .prefix("pypi-mirror-serve-bench-")
        .tempdir_in(testkit::target_dir())?;
    let (up_dir, projects) = upstream_tree(work.path(), args.projects)?;
    let upstream = testkit::HttpServer::start(&up_dir, &tools.python)?;
    let up_url = upstream.url();
    let kinds: Vec<Kind> = if args.peers {
        vec![Kind::Ours, Kind::Devpi, Kind::Proxpi]
    } else {
        vec![Kind::Ours]
    };
    eprintln!("upstream {up_url}: {} projects", projects.len());

    // Cold installs: each server on a fresh cache, each run paired with a
    // direct install just before it, so a burst of load from other jobs
    // hits both sides of a ratio.
    let target = work.path().join("target");
    let mut cold: Vec<Cold> = vec![("direct from upstream".into(), vec![], vec![])];
    cold.extend(kinds.iter().map(|k| (k.name().to_owned(), vec![], vec![])));
    let mut last: Vec<Server> = Vec::new();
    for run_no in 0..args.runs {
        last.clear();
        for (i, kind) in kinds.iter().enumerate() {
            let dir = work.path().join(format!("server-{i}"));
            let server = start(*kind, &up_url, &dir, venv.as_deref())?;
            let direct = pip_install(&tools, &up_url, &target, &projects)?;
            let d = pip_install(&tools, &server.index, &target, &projects)?;
            eprintln!(
                "cold run {run_no}: {}: {} (direct {})",
                server.name,
                fmt_d(d),
                fmt_d(direct)
            );
            cold[0].1.push(direct);
            cold[i + 1].1.push(d);
            cold[i + 1].2.push(d.as_secs_f64() / direct.as_secs_f64());
            last.push(server);
        }
    }

    // Warm: the servers of the last cold run hold every page and file.
    let page_of = |s: &Server| format!("{}{}/", s.index, projects[0]);
    let wheel = synth::wheel_filename(&projects[0], "5.0");
    let mut file_urls = Vec::new();
    for s in &last {
        let page = page_of(s);
        let (status, body) = get(&page, true)?;
        let base = url::Url::parse(&page)?;
        let link = index::parse_html(&body, &base)
            .into_iter()
            .find(|f| f.filename == wheel)
            .and_then(|f| f.url)
            .ok_or(format!("{}: no {wheel} on {page} ({status})", s.name))?;
        file_urls.push(link.to_string());
    }
    let scenarios = [
        ("project page", 1),
        ("project page", 64),
        ("file", 1),
        ("file", 64),
    ];
    let mut warm: Vec<Vec<Vec<Wrk>>> = vec![vec![Vec::new(); last.len()]; scenarios.len()];
    for _ in 0..args.rounds {
        for (si, (what, clients)) in scenarios.iter().enumerate() {
            for (i, s) in last.iter().enumerate() {
                let url = if *what == "file" {
                    file_urls[i].clone()
                } else {
                    page_of(s)
                };
                warm[si][i].push(wrk(&url, *clients, args.seconds)?);
            }
        }
    }
    let rss: Vec<u64> = last.iter().map(|s| s.proc.peak_rss_kib()).collect();
    print_report(&args, &projects, &cold, &last, &scenarios, &warm, &rss);
    if args.keep {
        drop(last);
        eprintln!("kept {}", work.keep().display());
    }
    Ok(())
}

fn print_report(
    args: &Args,
    projects: &[String],
    cold: &[Cold],
    servers: &[Server],
    scenarios: &[(&str, usize)],
    warm: &[Vec<Vec<Wrk>>],
    rss: &[u64],
) {
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("## Results\n");
    println!(
        "Upstream: Python's http.server over a static PEP 503 tree of {} projects x 5 versions (synthetic wheels). \
         Warm: {} rounds of {} s wrk runs per cell, servers in turn; medians. Cold: {} runs of `pip install --no-cache-dir` of all {} projects, each server on a fresh cache. \
         Load average at the end: {} (other jobs share this machine).\n",
        projects.len(),
        args.rounds,
        args.seconds,
        args.runs,
        projects.len(),
        load.join(" ")
    );
    print!("| warm request | clients |");
    for s in servers {
        print!(" {} req/s | p50 | p99 |", s.name);
    }
    println!();
    print!("| --- | --- |");
    for _ in servers {
        print!(" --- | --- | --- |");
    }
    println!();
    for (si, (what, clients)) in scenarios.iter().enumerate() {
        print!("| {what} | {clients} |");
        for runs in &warm[si] {
            let rps = median_by(runs, |w| w.rps).rps;
            let p50 = median_by(runs, |w| w.p50.as_secs_f64()).p50;
            let p99 = median_by(runs, |w| w.p99.as_secs_f64()).p99;
            let errors: u64 = runs.iter().map(|w| w.errors).sum();
            let err = if errors > 0 {
                format!(" ({errors} errors)")
            } else {
                String::new()
            };
            print!(" {rps:.0}{err} | {} | {} |", fmt_d(p50), fmt_d(p99));
        }
        println!();
    }
    println!();
    if servers.len() > 1 {
        println!("| warm request | clients | ours / devpi-server | ours / proxpi |");
        println!("| --- | --- | --- | --- |");
        for (si, (what, clients)) in scenarios.iter().enumerate() {
            let rps: Vec<f64> = warm[si]
                .iter()
                .map(|r| median_by(r, |w| w.rps).rps)
                .collect();
            println!(
                "| {what} | {clients} | {:.1}x | {:.1}x |",
                rps[0] / rps[1],
                rps[0] / rps[2]
            );
        }
        println!();
    }
    println!(
        "| cold `pip install` ({} packages) | median | min | vs the direct run just before (median of ratios) |",
        projects.len()
    );
    println!("| --- | --- | --- | --- |");
    let med = |v: &[Duration]| median_by(v, Duration::as_secs_f64);
    for (name, runs, ratios) in cold {
        let vs = if ratios.is_empty() {
            String::new()
        } else {
            format!("{:+.1}%", (median_by(ratios, |r| *r) - 1.0) * 100.0)
        };
        let min = runs.iter().min().copied().unwrap_or_default();
        println!("| {name} | {} | {} | {vs} |", fmt_d(med(runs)), fmt_d(min));
    }
    println!();
    println!("| server | peak RSS (all its processes) |");
    println!("| --- | --- |");
    for (s, kib) in servers.iter().zip(rss) {
        println!("| {} | {:.1} MiB |", s.name, *kib as f64 / 1024.0);
    }
    println!();
    // Pages at 1 and at 64 clients, each against the same peer cell.
    let page_ratio = (1..servers.len())
        .flat_map(|i| {
            (0..2).map(move |si| {
                median_by(&warm[si][0], |w| w.rps).rps / median_by(&warm[si][i], |w| w.rps).rps
            })
        })
        .fold(f64::INFINITY, f64::min);
    let p99_64 = median_by(&warm[1][0], |w| w.p99.as_secs_f64()).p99;
    let cold_ours = median_by(&cold[1].2, |r| *r);
    let met = |b: bool| if b { "met" } else { "MISSED" };
    println!(
        "Targets: warm pages >= 10x both peers ({}), page p99 < 5 ms at 64 clients ({}: {}), cold install within 10% of direct ({}: {:+.1}%).",
        if servers.len() > 1 {
            met(page_ratio >= 10.0)
        } else {
            "not measured"
        },
        met(p99_64 < Duration::from_millis(5)),
        fmt_d(p99_64),
        met(cold_ours <= 1.10),
        (cold_ours - 1.0) * 100.0
    );
}
