//! Hostile input: environment values and image states that must give a one-line error or exactly the intended config files.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use dib_pypi_core::configure::configure;
use dib_pypi_core::layout::with_suffix;
use dib_pypi_core::render::PIP_SECTIONS;
use dib_pypi_core::restore::restore;
use dib_pypi_core::settings::Settings;
use dib_pypi_core::tools::{PIP, UV};
use dib_pypi_tests::{
    assert_tree_eq, hook_binary, output_of_fresh_binary, record_figures, require_root, FakeMounter,
    MiniImage, Row,
};

use super::{configs, home, secret_settings, seeded, SECTIONS};

/// Environment variables of a case.
type Vars = Vec<(OsString, OsString)>;

/// What a case must give.
enum Expect {
    /// An error whose message starts with this.
    Error(String),
    /// Config files listing exactly these indexes, and these trusted hosts.
    Indexes(Vec<String>, Vec<String>),
}

struct Case {
    name: String,
    vars: Vars,
    expect: Expect,
}

fn case(name: &str, vars: &[(&str, &str)], expect: Expect) -> Case {
    Case {
        name: name.into(),
        vars: vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        expect,
    }
}

fn err(prefix: &str) -> Expect {
    Expect::Error(prefix.into())
}

fn idx(urls: &[&str], trusted: &[&str]) -> Expect {
    Expect::Indexes(
        urls.iter().map(|u| u.to_string()).collect(),
        trusted.iter().map(|t| t.to_string()).collect(),
    )
}

const OFF: (&str, &str) = ("DIB_OFFLINE", "1");
const SECRET: &str = "hunter2";

fn hostile_cases() -> Vec<Case> {
    let mib = "a".repeat(1 << 20);
    let huge_url = format!("http://m.example/{mib}");
    let max_url = format!("http://m.example/{}", "b".repeat(8192 - 17));
    let mut cases = vec![
        case(
            "newline and [section] injection",
            &[("DIB_PYPI_MIRROR_URL", "http://m/\n[global]\nindex-url = http://evil/"), OFF],
            err("DIB_PYPI_MIRROR_URL: mirror URL contains the character '\\n'"),
        ),
        case(
            "carriage return injection",
            &[("DIB_PYPI_MIRROR_URL_1", "http://m/\r[install]"), OFF],
            err("DIB_PYPI_MIRROR_URL_1: mirror URL contains the character '\\r'"),
        ),
        case(
            "continuation-line injection (leading space)",
            &[("DIB_PYPI_MIRROR_URL", " http://evil/"), OFF],
            err("DIB_PYPI_MIRROR_URL: mirror URL contains the character ' '"),
        ),
        case(
            "tab in URL",
            &[("DIB_PYPI_MIRROR_URL", "http://m/\tx"), OFF],
            err("DIB_PYPI_MIRROR_URL: mirror URL contains the character '\\t'"),
        ),
        case(
            "Unicode line separator (U+2028)",
            &[("DIB_PYPI_MIRROR_URL", "http://m/\u{2028}[global]"), OFF],
            err("DIB_PYPI_MIRROR_URL: mirror URL contains the character '\\u{2028}'"),
        ),
        case(
            "NEL (U+0085)",
            &[("DIB_PYPI_MIRROR_URL", "http://m/\u{85}x"), OFF],
            err("DIB_PYPI_MIRROR_URL: mirror URL contains the character '\\u{85}'"),
        ),
        case(
            "[section] text inside a URL, no newline",
            &[("DIB_PYPI_MIRROR_URL", "http://m.example/[global]/"), OFF],
            idx(&["http://m.example/[global]/"], &["m.example"]),
        ),
        case(
            "TOML quote and key injection",
            &[("DIB_PYPI_MIRROR_URL", "https://m.example/\"default=true\"\\x"), OFF],
            idx(&["https://m.example/%22default=true%22/x"], &[]),
        ),
        case(
            "1 MiB URL",
            &[("DIB_PYPI_MIRROR_URL", &huge_url), OFF],
            err("DIB_PYPI_MIRROR_URL: value is 1048593 bytes long; a mirror URL may have at most 8192"),
        ),
        case(
            "URL of exactly the 8192-byte limit",
            &[("DIB_PYPI_MIRROR_URL", &max_url), OFF],
            idx(&[&max_url], &["m.example"]),
        ),
        case(
            "1 MiB DIB_PIP_RETRIES",
            &[("DIB_PIP_RETRIES", &mib)],
            err(&format!(
                "DIB_PIP_RETRIES: \"{}... (1048576 bytes)\" is not a non-negative integer",
                "a".repeat(40)
            )),
        ),
        case(
            "1 MiB DIB_OFFLINE (any non-empty value)",
            &[("DIB_PYPI_MIRROR_URL", "https://m.example/"), ("DIB_OFFLINE", &mib)],
            idx(&["https://m.example/"], &[]),
        ),
        case(
            "duplicate mirrors (same URL, and same after normalisation)",
            &[
                ("DIB_PYPI_MIRROR_URL", "http://m.example/s/"),
                ("DIB_PYPI_MIRROR_URL_1", "http://m.example/s/"),
                ("DIB_PYPI_MIRROR_URL_2", "HTTP://M.EXAMPLE:80/s/"),
                ("DIB_PYPI_MIRROR_URL_3", "https://n.example/"),
                OFF,
            ],
            idx(&["http://m.example/s/", "https://n.example/"], &["m.example"]),
        ),
        case(
            "same mirror number twice (_1 and _01)",
            &[
                ("DIB_PYPI_MIRROR_URL_1", "http://a/"),
                ("DIB_PYPI_MIRROR_URL_01", "http://b/"),
            ],
            err("DIB_PYPI_MIRROR_URL_01: same mirror number as DIB_PYPI_MIRROR_URL_1"),
        ),
        case(
            "IPv6 hosts with ports",
            &[
                ("DIB_PYPI_MIRROR_URL", "http://[::1]:3141/root/pypi/+simple/"),
                ("DIB_PYPI_MIRROR_URL_1", "https://[2001:db8::7]:8443/simple/"),
                ("DIB_PYPI_MIRROR_URL_2", "http://[2001:DB8:0:0::8]/s/"),
            ],
            idx(
                &[
                    "http://[::1]:3141/root/pypi/+simple/",
                    "https://[2001:db8::7]:8443/simple/",
                    "http://[2001:db8::8]/s/",
                    "https://pypi.org/simple",
                ],
                &["[::1]:3141", "[2001:db8::8]"],
            ),
        ),
        case(
            "IPv6 zone identifier",
            &[("DIB_PYPI_MIRROR_URL", "http://[fe80::1%25eth0]:3141/"), OFF],
            err("DIB_PYPI_MIRROR_URL: not a valid URL"),
        ),
        case(
            "userinfo with percent-encoded @ : / # and a raw @",
            &[
                ("DIB_PYPI_MIRROR_URL", "https://us%40er:p%3Aa%2Fs%23hunter2@m.example/simple/"),
                ("DIB_PYPI_MIRROR_URL_1", "https://tok:hunter2@ss@n.example/"),
                OFF,
            ],
            idx(
                &[
                    "https://us%40er:p%3Aa%2Fs%23hunter2@m.example/simple/",
                    "https://tok:hunter2%40ss@n.example/",
                ],
                &[],
            ),
        ),
        case(
            "userinfo with a raw # (cuts the URL short)",
            &[("DIB_PYPI_MIRROR_URL", "https://user:hunter2#x@m.example/"), OFF],
            err("DIB_PYPI_MIRROR_URL: not a valid URL"),
        ),
        case(
            "unsupported schemes",
            &[("DIB_PYPI_MIRROR_URL", "ftp://u:hunter2@m/")],
            err("DIB_PYPI_MIRROR_URL: scheme \"ftp\" is not supported"),
        ),
        case(
            "file URL naming a host",
            &[("DIB_PYPI_MIRROR_URL", "file://server/share")],
            err("DIB_PYPI_MIRROR_URL: file:// mirror URL must not name a host"),
        ),
    ];

    let many: Vec<(String, String)> = (1..=1000)
        .rev()
        .map(|n| {
            (
                format!("DIB_PYPI_MIRROR_URL_{n}"),
                format!("http://m{n}.example:{}/simple/", 10_000 + n),
            )
        })
        .collect();
    let mut vars: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.push(OFF);
    let urls: Vec<String> = (1..=1000)
        .map(|n| format!("http://m{n}.example:{}/simple/", 10_000 + n))
        .collect();
    let trusted: Vec<String> = (1..=1000)
        .map(|n| format!("m{n}.example:{}", 10_000 + n))
        .collect();
    cases.push(Case {
        name: "1000 numbered mirrors, given in reverse order".into(),
        vars: vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        expect: Expect::Indexes(urls, trusted),
    });

    let sparse: Vec<(String, String)> = (0..1000)
        .map(|i| {
            (
                format!("DIB_PYPI_MIRROR_URL_{}", 1 + i * 7919 % 100_000),
                format!("https://h{i}.example/"),
            )
        })
        .collect();
    let mut ordered = sparse.clone();
    ordered.sort_by_key(|(k, _)| k.rsplit('_').next().unwrap().parse::<u64>().unwrap());
    cases.push(Case {
        name: "1000 mirrors with sparse, shuffled numbers".into(),
        vars: sparse
            .iter()
            .map(|(k, v)| (k.into(), v.into()))
            .chain([(OFF.0.into(), OFF.1.into())])
            .collect(),
        expect: Expect::Indexes(ordered.into_iter().map(|(_, v)| v).collect(), vec![]),
    });

    for (var, value, expected) in [
        (
            "DIB_PYPI_MIRROR_URL",
            b"http://m/\xff\xfe".to_vec(),
            "DIB_PYPI_MIRROR_URL: value is not valid UTF-8",
        ),
        (
            "PYPI_MIRROR_URL_2",
            b"http://m/\xc3\x28".to_vec(),
            "PYPI_MIRROR_URL_2: value is not valid UTF-8",
        ),
        (
            "DIB_PIP_RETRIES",
            b"3\xff".to_vec(),
            "DIB_PIP_RETRIES: \"3\u{fffd}\" is not a non-negative integer",
        ),
    ] {
        cases.push(Case {
            name: format!("non-UTF-8 value of {var}"),
            vars: vec![(var.into(), OsString::from_vec(value))],
            expect: err(expected),
        });
    }
    cases.push(Case {
        name: "non-UTF-8 mirror variable name".into(),
        vars: vec![(
            OsString::from_vec(b"DIB_PYPI_MIRROR_URL_\xff".to_vec()),
            "http://m/".into(),
        )],
        expect: err("DIB_PYPI_MIRROR_URL_\u{fffd}: not a mirror variable"),
    });
    cases
}

/// The indexes and trusted hosts pip and uv read from the files written
/// in `img`, parsed by Python's configparser (as pip does) and tomllib.
fn read_back(img: &MiniImage) -> Vec<String> {
    const SCRIPT: &str = r#"
import sys, configparser, tomllib
uv, *pips = sys.argv[1:]
for p in pips:
    c = configparser.RawConfigParser()
    with open(p) as f:
        c.read_file(f)
    print("pip", p, "sections", *c.sections())
    for s in c.sections():
        idx = [c.get(s, "index-url")] + c.get(s, "extra-index-url", fallback="").split()
        print("pip", p, s, "index", *idx)
        print("pip", p, s, "trusted", *c.get(s, "trusted-host", fallback="").split())
        print("pip", p, s, "keys", *sorted(c.options(s)))
with open(uv, "rb") as f:
    t = tomllib.load(f)
print("uv keys", *sorted(t))
print("uv index-strategy", t["index-strategy"])
print("uv urls", *[i["url"] for i in t["index"]])
print("uv default", *[i["url"] for i in t["index"] if i.get("default")])
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .args(
            UV.user_paths(home())
                .iter()
                .map(|p| img.path(p.to_str().unwrap())),
        )
        .args(
            PIP.user_paths(home())
                .iter()
                .map(|p| img.path(p.to_str().unwrap())),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn check_read_back(ctx: &str, img: &MiniImage, urls: &[String], trusted: &[String]) {
    let lines = read_back(img);
    let mut expected = Vec::new();
    for conf in PIP.user_paths(home()) {
        let p = img.path(conf.to_str().unwrap());
        let p = p.display();
        expected.push(format!("pip {p} sections {}", PIP_SECTIONS.join(" ")));
        for s in PIP_SECTIONS {
            expected.push(
                format!("pip {p} {s} index {}", urls.join(" "))
                    .trim_end()
                    .to_string(),
            );
            expected.push(
                format!("pip {p} {s} trusted {}", trusted.join(" "))
                    .trim_end()
                    .to_string(),
            );
            let keys = if trusted.is_empty() {
                "keys extra-index-url index-url no-index"
            } else {
                "keys extra-index-url index-url no-index trusted-host"
            };
            let keys = if urls.len() == 1 {
                keys.replace("extra-index-url ", "")
            } else {
                keys.to_string()
            };
            expected.push(format!("pip {p} {s} {keys}"));
        }
    }
    expected.push("uv keys index index-strategy".into());
    expected.push("uv index-strategy unsafe-best-match".into());
    expected.push(format!("uv urls {}", urls.join(" ")));
    expected.push(format!("uv default {}", urls.last().unwrap()));
    if lines != expected {
        let diff: Vec<String> = lines
            .iter()
            .zip(&expected)
            .filter(|(a, b)| a != b)
            .take(3)
            .map(|(a, b)| format!("read {}\nwant {}", clip(a), clip(b)))
            .collect();
        panic!(
            "{ctx}: config read back differs ({} vs {} lines):\n{}",
            lines.len(),
            expected.len(),
            diff.join("\n")
        );
    }
}

fn clip(s: &str) -> &str {
    s.get(..300).unwrap_or(s)
}

/// What an image's config path can be, other than a file or symlink.
const BAD_KINDS: &[&str] = &[
    "a directory",
    "a FIFO",
    "a socket",
    "a character device",
    "under a regular file",
    "beside a leftover backup",
    "beside a leftover temp file",
];

fn make_bad(img: &MiniImage, conf: &str, kind: &str) -> String {
    let p = img.path(conf);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
    match kind {
        "a directory" => {
            std::fs::create_dir(&p).unwrap();
            format!("{}: is a directory, not a config file", p.display())
        }
        "a FIFO" => {
            nix::unistd::mkfifo(&p, mode).unwrap();
            format!("{}: is a FIFO, socket or device", p.display())
        }
        "a socket" => {
            drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
            format!("{}: is a FIFO, socket or device", p.display())
        }
        "a character device" => {
            nix::sys::stat::mknod(
                &p,
                nix::sys::stat::SFlag::S_IFCHR,
                mode,
                nix::sys::stat::makedev(1, 3),
            )
            .unwrap();
            format!("{}: is a FIFO, socket or device", p.display())
        }
        "under a regular file" => {
            let parent = p.parent().unwrap();
            std::fs::remove_dir_all(parent).unwrap();
            std::fs::write(parent, "not a dir").unwrap();
            format!(
                "{}: exists but is not a directory (a regular file)",
                parent.display()
            )
        }
        "beside a leftover backup" => {
            let b = with_suffix(&p, ".dib-pypi-orig");
            std::fs::write(&b, "old").unwrap();
            format!("{}: already exists", b.display())
        }
        "beside a leftover temp file" => {
            let t = with_suffix(&p, ".dib-pypi-tmp");
            std::fs::write(&t, "old").unwrap();
            format!("{}: already exists", t.display())
        }
        _ => unreachable!(),
    }
}

#[test]
fn hostile_input_gets_a_clear_error_or_exact_output_and_changes_nothing() {
    require_root();
    let cases = hostile_cases();
    let (mut errors, mut accepted) = (0, 0);
    for c in &cases {
        let img = seeded();
        let before = img.snapshot();
        let root = img.open();
        let fake = FakeMounter::default();
        let result = Settings::from_vars(c.vars.iter().map(|(k, v)| (k, v)))
            .and_then(|s| configure(&root, &s, home(), &fake).map(|_| s));
        match (&c.expect, result) {
            (Expect::Error(prefix), Err(e)) => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with(prefix.as_str()),
                    "{}: {}",
                    c.name,
                    clip(&msg)
                );
                assert!(
                    !msg.contains('\n') && !msg.contains(SECRET),
                    "{}: {msg}",
                    c.name
                );
                assert!(msg.len() < 300, "{}: {} byte message", c.name, msg.len());
                assert_tree_eq(&c.name, &before, &img.snapshot());
                errors += 1;
            }
            (Expect::Indexes(urls, trusted), Ok(s)) => {
                for w in &s.warnings {
                    assert!(!w.contains(SECRET), "{}: {w}", c.name);
                }
                for m in &s.indexes {
                    assert!(!m.to_string().contains(SECRET), "{}: {m}", c.name);
                }
                check_read_back(&c.name, &img, urls, trusted);
                let mode = std::fs::metadata(img.path(&configs()[0]))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(
                    mode & 0o777,
                    if s.has_credentials() { 0o600 } else { 0o644 },
                    "{}",
                    c.name
                );
                restore(&root, &fake, home()).unwrap();
                assert_tree_eq(&c.name, &before, &img.snapshot());
                accepted += 1;
            }
            (Expect::Error(_), Ok(_)) => panic!("{}: accepted", c.name),
            (Expect::Indexes(..), Err(e)) => {
                panic!("{}: refused: {}", c.name, clip(&e.to_string()))
            }
        }
    }

    // Config paths that are not files.
    let mut bad = 0;
    for conf in configs() {
        let conf = conf.as_str();
        for kind in BAD_KINDS {
            let ctx = format!("{conf} {kind}");
            let img = MiniImage::new();
            let expected = make_bad(&img, conf, kind);
            let before = img.snapshot();
            let root = img.open();
            let e = configure(&root, &secret_settings(), home(), &FakeMounter::default())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&expected), "{ctx}: {e}");
            assert_tree_eq(&ctx, &before, &img.snapshot());
            bad += 1;
        }
    }

    // The same through the real binary (its environment, its one line).
    let bin = hook_binary("dib-pypi-configure");
    let near_limit = format!("http://m/{}", "c".repeat(120 << 10));
    let binary_cases: Vec<(Vars, Option<&str>)> = vec![
        (
            vec![(
                "DIB_PYPI_MIRROR_URL_2".into(),
                "http://u:hunter2@m/\n[global]".into(),
            )],
            Some("DIB_PYPI_MIRROR_URL_2: mirror URL contains the character '\\n'"),
        ),
        (
            vec![(
                "DIB_PYPI_MIRROR_URL".into(),
                OsString::from_vec(b"http://m/\xff".to_vec()),
            )],
            Some("DIB_PYPI_MIRROR_URL: value is not valid UTF-8"),
        ),
        (
            vec![("DIB_PYPI_MIRROR_URL".into(), near_limit.clone().into())],
            Some("DIB_PYPI_MIRROR_URL: value is 122889 bytes long"),
        ),
        (
            vec![(
                "DIB_PYPI_MIRROR_URL".into(),
                "https://u%3A:hunter2@[::1]:3141/s/".into(),
            )],
            None,
        ),
    ];
    let mut through_binary = 0;
    for (vars, expected) in &binary_cases {
        let img = seeded();
        let before = img.snapshot();
        let out = output_of_fresh_binary(
            Command::new(&bin)
                .env_clear()
                .env("HOME", "/root")
                .env("DIB_DEBUG_TRACE", "1")
                .envs(vars.iter().map(|(k, v)| (k, v)))
                .arg("--root")
                .arg(img.root()),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains(SECRET), "{stderr}");
        match expected {
            Some(prefix) => {
                assert!(!out.status.success());
                let lines: Vec<&str> = stderr.lines().collect();
                assert_eq!(lines.len(), 1, "{}", clip(&stderr));
                assert!(
                    lines[0].starts_with(&format!("dib-pypi-configure: error: {prefix}")),
                    "{}",
                    clip(&stderr)
                );
                assert_tree_eq("binary", &before, &img.snapshot());
            }
            None => {
                assert!(out.status.success(), "{stderr}");
                assert!(stderr.contains("u%3A:***@[::1]:3141"), "{stderr}");
                restore(&img.open(), &FakeMounter::default(), home()).unwrap();
                assert_tree_eq("binary", &before, &img.snapshot());
            }
        }
        through_binary += 1;
    }

    record_figures(
        SECTIONS,
        "hostile-input",
        &[
            Row::new(
                "hostile environment values: newline/CR/tab/U+2028/NEL and [section] injection, \
                 TOML quotes, 1 MiB values, 8 KiB limit, 1000 mirrors (reverse, sparse), duplicates, \
                 `_1` vs `_01`, IPv6 with ports and zone, userinfo with special characters, \
                 bad schemes, non-UTF-8 names and values",
                cases.len(),
                format!(
                    "{errors} refused with a one-line error naming the variable, image unchanged; \
                     {accepted} accepted, read back exactly by configparser and tomllib, restored exactly"
                ),
            ),
            Row::new(
                format!(
                    "each of the 3 config paths as: {}",
                    BAD_KINDS.join(", ")
                ),
                bad,
                format!("{bad}/{bad} refused with a one-line error naming the path, image unchanged"),
            ),
            Row::new(
                "through the real configure binary: newline injection, non-UTF-8, 120 KiB value, IPv6 with userinfo",
                through_binary,
                format!("{through_binary}/{through_binary} as expected (one stderr line for errors); password never printed"),
            ),
        ],
    );
}
