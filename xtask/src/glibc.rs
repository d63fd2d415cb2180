//! The wheel's glibc floor: no binary in it needs a glibc newer than its manylinux tag promises.
//!
//! pip installs a `manylinux_2_N` wheel on any host whose glibc is 2.N or
//! newer (`manylinux2014` is `manylinux_2_17`), and the dynamic loader then
//! refuses a program that asks for a symbol version the host's glibc lacks.
//! So the tag is true only if the newest `GLIBC_x.y` any binary's
//! `.gnu.version_r` names is at most 2.N, and the binary links nothing but
//! libraries every such host has. The wheel must also be installable where
//! DIB runs (RHEL 8: glibc 2.28, Ubuntu 20.04 and Debian 11: 2.31), which
//! [`FLOOR`] holds with room to spare.

use goblin::elf::Elf;

use crate::wheel::{parse_wheel_name, Wheel};

/// A glibc version, major and minor (`GLIBC_2.2.5` counts as 2.2).
pub type Glibc = (u32, u32);

/// The newest glibc the wheel's tag may promise: manylinux2014's.
pub const FLOOR: Glibc = (2, 17);

/// The policy maturin is told to build for, whose glibc is [`FLOOR`].
pub const FLOOR_POLICY: &str = "manylinux2014";

/// The libraries a manylinux wheel may link without carrying them: PEP
/// 599's list without its X11 and OpenGL part, plus the loader itself.
const SYSTEM_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "libresolv.so.2",
    "libnsl.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
];

/// What one ELF file asks of the host's C library.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// `DT_NEEDED` libraries.
    pub libraries: Vec<String>,
    /// Symbol version names it needs (`GLIBC_2.17`, `GCC_3.0`).
    pub versions: Vec<String>,
}

/// The libraries and symbol versions the ELF file `bytes` needs (none for
/// a static binary).
pub fn needs(bytes: &[u8]) -> Result<Needs, String> {
    let elf = Elf::parse(bytes).map_err(|e| format!("not a readable ELF file: {e}"))?;
    let mut versions = Vec::new();
    if let Some(verneed) = &elf.verneed {
        for need in verneed.iter() {
            for aux in need.iter() {
                let name = elf.dynstrtab.get_at(aux.vna_name).ok_or_else(|| {
                    format!(
                        "a version name at dynstr offset {} is not there",
                        aux.vna_name
                    )
                })?;
                versions.push(name.to_string());
            }
        }
    }
    Ok(Needs {
        libraries: elf.libraries.iter().map(|l| (*l).to_string()).collect(),
        versions,
    })
}

/// The newest glibc among symbol version names (`GLIBC_2.17`); names of
/// other libraries (`GCC_3.0`) do not count. `GLIBC_PRIVATE` is an error:
/// it ties a program to the exact glibc it was linked with.
pub fn newest_glibc(versions: &[String]) -> Result<Option<Glibc>, String> {
    let mut newest = None;
    for name in versions {
        let Some(number) = name.strip_prefix("GLIBC_") else {
            continue;
        };
        let mut parts = number.split('.').map(str::parse::<u32>);
        let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
            return Err(format!("needs {name}, which no glibc release is"));
        };
        newest = newest.max(Some((major, minor)));
    }
    Ok(newest)
}

/// The glibc a wheel's platform tag set promises on `arch`: the oldest of
/// its tags (pip takes the wheel if any one fits the host). Every tag must
/// be a manylinux tag of `arch`.
pub fn tag_glibc(platform: &str, arch: &str) -> Result<Glibc, String> {
    let mut oldest: Option<Glibc> = None;
    for tag in platform.split('.') {
        let bad = || format!("platform tag {tag}: not manylinux*_{arch}");
        let policy = tag.strip_suffix(&format!("_{arch}")).ok_or_else(bad)?;
        let glibc = match policy {
            "manylinux1" => (2, 5),
            "manylinux2010" => (2, 12),
            "manylinux2014" => (2, 17),
            _ => {
                let numbers = policy.strip_prefix("manylinux_").ok_or_else(bad)?;
                let (major, minor) = numbers.split_once('_').ok_or_else(bad)?;
                (
                    major.parse().map_err(|_| bad())?,
                    minor.parse().map_err(|_| bad())?,
                )
            }
        };
        oldest = Some(oldest.map_or(glibc, |o| o.min(glibc)));
    }
    oldest.ok_or_else(|| format!("no platform tag in {platform:?}"))
}

/// `2.17` for (2, 17).
pub fn show(glibc: Glibc) -> String {
    format!("{}.{}", glibc.0, glibc.1)
}

/// The wheel's tag promises a glibc no newer than [`FLOOR`], and every ELF
/// file in it needs no glibc newer than the tag promises and links only
/// [`SYSTEM_LIBRARIES`]. Returns the newest glibc any of them needs.
pub fn check_floor(wheel: &Wheel, arch: &str) -> Result<Option<Glibc>, String> {
    let at = |e: String| format!("{}: {e}", wheel.file_name);
    let name = parse_wheel_name(&wheel.file_name)?;
    let promised = tag_glibc(&name.platform, arch).map_err(at)?;
    if promised > FLOOR {
        return Err(at(format!(
            "tagged for glibc {}, wants {} ({FLOOR_POLICY}) or older: pip refuses it on older hosts",
            show(promised),
            show(FLOOR)
        )));
    }
    check_binaries(wheel, promised)
}

/// Every ELF file in the wheel needs no glibc newer than `promised` and
/// links only [`SYSTEM_LIBRARIES`]. Returns the newest glibc any needs.
pub fn check_binaries(wheel: &Wheel, promised: Glibc) -> Result<Option<Glibc>, String> {
    let at = |e: String| format!("{}: {e}", wheel.file_name);
    let mut newest_of_all = None;
    for (path, entry) in &wheel.entries {
        if !entry.bytes.starts_with(b"\x7fELF") {
            continue;
        }
        let needs = needs(&entry.bytes).map_err(|e| at(format!("{path}: {e}")))?;
        if let Some(lib) = needs
            .libraries
            .iter()
            .find(|l| !SYSTEM_LIBRARIES.contains(&l.as_str()))
        {
            return Err(at(format!(
                "{path} links {lib}, which a manylinux host need not have"
            )));
        }
        let newest = newest_glibc(&needs.versions).map_err(|e| at(format!("{path}: {e}")))?;
        if let Some(glibc) = newest.filter(|g| *g > promised) {
            return Err(at(format!(
                "{path} needs glibc {}, but the tag promises {}",
                show(glibc),
                show(promised)
            )));
        }
        newest_of_all = newest_of_all.max(newest);
    }
    Ok(newest_of_all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn the_newest_glibc_version_counts_and_private_fails() {
        let v = names(&["GLIBC_2.2.5", "GCC_3.0", "GLIBC_2.17", "GLIBC_2.3.4"]);
        assert_eq!(newest_glibc(&v).unwrap(), Some((2, 17)));
        assert_eq!(newest_glibc(&names(&["GCC_4.2.0"])).unwrap(), None);
        let err = newest_glibc(&names(&["GLIBC_2.17", "GLIBC_PRIVATE"])).unwrap_err();
        assert_eq!(err, "needs GLIBC_PRIVATE, which no glibc release is");
    }

    #[test]
    fn platform_tags_promise_the_oldest_glibc_of_the_set() {
        let t = |p: &str| tag_glibc(p, "x86_64");
        assert_eq!(t("manylinux_2_34_x86_64").unwrap(), (2, 34));
        assert_eq!(
            t("manylinux2014_x86_64.manylinux_2_17_x86_64").unwrap(),
            (2, 17)
        );
        assert_eq!(
            t("manylinux_2_28_x86_64.manylinux2010_x86_64").unwrap(),
            (2, 12)
        );
        assert_eq!(t("manylinux1_x86_64").unwrap(), (2, 5));
        for bad in [
            "linux_x86_64",
            "musllinux_1_2_x86_64",
            "manylinux_2_17_aarch64",
            "manylinux_2_x_x86_64",
            "manylinux2014_x86_64.linux_x86_64",
        ] {
            let err = t(bad).unwrap_err();
            assert!(err.ends_with("not manylinux*_x86_64"), "{bad}: {err}");
        }
    }

    /// This test binary is linked against the host's glibc like
    /// `pypi-mirror` without zig: a wheel of it is right only when the tag
    /// promises what it needs.
    #[test]
    fn a_binary_that_needs_a_newer_glibc_than_its_tag_fails() {
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let found = needs(&bytes).unwrap();
        assert!(
            found.libraries.iter().any(|l| l == "libc.so.6"),
            "{found:?}"
        );
        let newest = newest_glibc(&found.versions).unwrap().unwrap();
        assert!(newest >= (2, 2), "{newest:?}");
        let wheel = Wheel {
            file_name: format!(
                "dib_pypi-{}-py3-none-manylinux_2_5_x86_64.whl",
                crate::element::VERSION
            ),
            entries: [(
                "bin".to_string(),
                crate::wheel::Entry {
                    bytes,
                    executable: true,
                },
            )]
            .into(),
        };
        assert_eq!(check_binaries(&wheel, newest).unwrap(), Some(newest));
        let older = (newest.0, newest.1 - 1);
        let err = check_binaries(&wheel, older).unwrap_err();
        assert!(
            err.ends_with(&format!(
                "bin needs glibc {}, but the tag promises {}",
                show(newest),
                show(older)
            )),
            "{err}"
        );
        // the tag itself: manylinux_2_5 is within the floor, 2_34 is not
        let err = check_floor(&wheel, "x86_64").unwrap_err();
        assert!(err.contains("bin needs glibc"), "{err}");
        let newer = Wheel {
            file_name: wheel.file_name.replace("2_5_", "2_34_"),
            entries: wheel.entries.clone(),
        };
        let err = check_floor(&newer, "x86_64").unwrap_err();
        assert!(
            err.ends_with("tagged for glibc 2.34, wants 2.17 (manylinux2014) or older: pip refuses it on older hosts"),
            "{err}"
        );
    }
}
