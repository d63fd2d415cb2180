//! What the install tests share: the synthetic project set, real pip and
//! uv installing it into a target directory, and the check that what they
//! installed imports and says who it is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Output;

use pypi_mirror_testkit::{self as testkit, synth};

/// Write the set into `src`: synth-alpha 1.0 (and 2.0, which needs
/// Python 4 or later and must be skipped), synth-beta 1.0 depending on
/// synth.alpha, and synth-gamma 1.0 as an sdist.
pub fn write_synth_set(src: &Path) {
    synth::write_wheel(src, "Synth.Alpha", "1.0").unwrap();
    synth::write_wheel_spec(
        src,
        &synth::Spec::new("Synth.Alpha", "2.0").requires_python(Some(">=4")),
    )
    .unwrap();
    synth::write_wheel_spec(
        src,
        &synth::Spec::new("synth-beta", "1.0").requires("synth.alpha>=1"),
    )
    .unwrap();
    synth::write_sdist(src, "synth_gamma", "1.0").unwrap();
}

/// `out`'s stdout and stderr, after asserting it succeeded.
pub fn check(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    format!("{stdout}\n{stderr}")
}

/// pip installs synth-beta and synth-gamma (so synth-alpha too) from
/// `index` into `target`; its output.
pub fn pip_install(tools: &testkit::Tools, index: &str, target: &Path) -> String {
    let out = tools
        .pip()
        .args([
            "install",
            "-v",
            "--no-cache-dir",
            "--index-url",
            index,
            "--target",
        ])
        .arg(target)
        .args(["synth-beta", "synth-gamma"])
        .output()
        .unwrap();
    check(out, &format!("pip install from {index}"))
}

/// The same with uv.
pub fn uv_install(tools: &testkit::Tools, index: &str, target: &Path) -> String {
    let out = tools
        .uv()
        .args(["pip", "install", "--no-cache", "--python"])
        .arg(&tools.python)
        .args(["--index-url", index, "--target"])
        .arg(target)
        .args(["synth-beta", "synth-gamma"])
        .output()
        .unwrap();
    check(out, &format!("uv pip install from {index}"))
}

/// Import the three synthetic packages from `target` and compare what they
/// say with what synth promises; alpha is 1.0 (2.0 must have been skipped
/// through requires-python).
pub fn assert_installed(tools: &testkit::Tools, target: &Path) {
    let out = testkit::isolated(&tools.python)
        .env("PYTHONPATH", target)
        .args([
            "-c",
            "import synth_alpha, synth_beta, synth_gamma\n\
             for m in (synth_alpha, synth_beta, synth_gamma): print(m.hello())",
        ])
        .output()
        .unwrap();
    let text = check(out, "import");
    for (name, version) in [
        ("Synth.Alpha", "1.0"),
        ("synth-beta", "1.0"),
        ("synth_gamma", "1.0"),
    ] {
        let line = synth::expected_output(name, version);
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in {text}"
        );
    }
    // `python -m` works too (the __main__ module is installed).
    let out = testkit::isolated(&tools.python)
        .env("PYTHONPATH", target)
        .args(["-m", "synth_beta"])
        .output()
        .unwrap();
    assert_eq!(
        check(out, "python -m").trim(),
        synth::expected_output("synth-beta", "1.0")
    );
    assert!(target.join("synth_alpha-1.0.dist-info").exists());
}
