//! Tests of the wheel and sdist checks, on wheels and sdists made here, right and broken.

use std::io::Write;
use std::path::PathBuf;

use super::*;

const DATA: &str = "dib_pypi-VER.data";

/// `path` with this version for `VER`.
fn v(path: &str) -> String {
    path.replace("VER", VERSION)
}

/// A minimal 64-bit ELF file for `machine`, with a PT_INTERP segment
/// naming `interp` if given.
fn elf(machine: u16, interp: Option<&str>) -> Vec<u8> {
    let mut b = vec![0u8; 0x40 + 0x38];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
    b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
    b[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
    b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    let p_type: u32 = if interp.is_some() { 3 } else { 1 };
    b[0x40..0x44].copy_from_slice(&p_type.to_le_bytes());
    if let Some(i) = interp {
        let at = b.len() as u64;
        b[0x48..0x50].copy_from_slice(&at.to_le_bytes());
        b[0x60..0x68].copy_from_slice(&(i.len() as u64 + 1).to_le_bytes());
        b.extend_from_slice(i.as_bytes());
        b.push(0);
    }
    b
}

const GLIBC: Option<&str> = Some("/lib64/ld-linux-x86-64.so.2");

/// An element directory whose files are `FILES` with distinct contents,
/// the binaries static x86_64 ELF files.
fn element(tmp: &Path) -> PathBuf {
    let dir = tmp.join("pypi");
    for file in FILES {
        let path = dir.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes = if file.starts_with(LIBEXEC) && !file.ends_with(".bash") {
            let mut b = elf(62, None);
            b.extend_from_slice(file.as_bytes());
            b
        } else {
            format!("contents of {file}\n").into_bytes()
        };
        fs::write(&path, bytes).unwrap();
    }
    dir
}

/// The files of a right wheel of `element`, RECORD not included.
fn files_of(element: &Path) -> Files {
    let mut files = vec![(
        v(&format!("{DATA}/scripts/pypi-mirror")),
        elf(62, GLIBC),
        true,
    )];
    for file in FILES {
        files.push((
            v(&format!("{DATA}/data/share/dib-pypi/elements/pypi/{file}")),
            fs::read(element.join(file)).unwrap(),
            is_hook_script(file),
        ));
    }
    files.push((
        v("dib_pypi-VER.dist-info/WHEEL"),
        b"Wheel-Version: 1.0\n".to_vec(),
        false,
    ));
    files
}

/// Write a wheel named `name` holding `files` and a RECORD listing them
/// (plus `extra_record` lines).
fn write_wheel(
    dir: &Path,
    name: &str,
    files: &[(String, Vec<u8>, bool)],
    extra_record: &str,
) -> PathBuf {
    let path = dir.join(v(name));
    let mut zip = zip::ZipWriter::new(fs::File::create(&path).unwrap());
    let mut record = String::new();
    for (name, bytes, exec) in files {
        let mode = if *exec { 0o755 } else { 0o644 };
        let options = zip::write::SimpleFileOptions::default().unix_permissions(mode);
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
        record.push_str(&format!("{name},{},{}\n", record_hash(bytes), bytes.len()));
    }
    let record_path = v("dib_pypi-VER.dist-info/RECORD");
    record.push_str(&format!("{record_path},,\n{extra_record}"));
    zip.start_file(
        record_path.as_str(),
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.write_all(record.as_bytes()).unwrap();
    zip.finish().unwrap();
    path
}

/// Files of a wheel: name, bytes, executable.
type Files = Vec<(String, Vec<u8>, bool)>;

/// A way to break a right wheel.
type Breakage = Box<dyn Fn(&mut Files)>;

const NAME_OK: &str = "dib_pypi-VER-py3-none-manylinux_2_34_x86_64.whl";

#[test]
fn record_hashes_are_urlsafe_base64_without_padding() {
    assert_eq!(
        record_hash(b""),
        "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
    );
    assert_eq!(base64_urlsafe_nopad(b"f"), "Zg");
    assert_eq!(base64_urlsafe_nopad(b"fo"), "Zm8");
    assert_eq!(base64_urlsafe_nopad(b"foo"), "Zm9v");
    assert_eq!(base64_urlsafe_nopad(&[0xfb, 0xff]), "-_8");
}

#[test]
fn record_lines_are_parsed_with_csv_quoting() {
    let lines = parse_record("a/b,sha256=x,3\n\"c,d\"\"e\",,\nf,,\n").unwrap();
    assert_eq!(lines[0].path, "a/b");
    assert_eq!(
        (lines[0].hash.as_str(), lines[0].size.as_str()),
        ("sha256=x", "3")
    );
    assert_eq!(lines[1].path, "c,d\"e");
    assert_eq!(lines[2].hash, "");
    assert!(parse_record("just-a-path\n").is_err());
    assert!(parse_record("a,b,c,d\n").is_err());
    assert!(parse_record("\"unterminated,x,1\n").is_err());
}

#[test]
fn wheel_names_are_split_into_tags() {
    let n = parse_wheel_name("dib_pypi-1.0-py3-none-manylinux_2_34_x86_64.whl").unwrap();
    assert_eq!(n.platform, "manylinux_2_34_x86_64");
    assert_eq!((n.dist.as_str(), n.version.as_str()), ("dib_pypi", "1.0"));
    assert!(parse_wheel_name("dib_pypi-1.0.tar.gz").is_err());
    assert!(parse_wheel_name("dib_pypi-1.0-py3-none.whl").is_err());
}

#[test]
fn a_right_wheel_passes_every_check() {
    let tmp = tempfile::tempdir().unwrap();
    let el = element(tmp.path());
    let wheel = read_wheel(&write_wheel(tmp.path(), NAME_OK, &files_of(&el), "")).unwrap();
    check_record(&wheel).unwrap();
    check_contents(&wheel, &el).unwrap();
    check_tag(&wheel, "x86_64", false).unwrap();
}

#[test]
fn a_record_that_misses_or_misstates_a_file_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let el = element(tmp.path());
    let files = files_of(&el);
    // a file the RECORD does not list
    let mut wheel = read_wheel(&write_wheel(tmp.path(), NAME_OK, &files, "")).unwrap();
    wheel.entries.insert(
        "dib_pypi-extra.txt".into(),
        Entry {
            bytes: vec![],
            executable: false,
        },
    );
    let err = check_record(&wheel).unwrap_err();
    assert!(err.ends_with("does not list dib_pypi-extra.txt"), "{err}");
    // a file whose bytes changed after the RECORD was written
    let mut wheel = read_wheel(&write_wheel(tmp.path(), NAME_OK, &files, "")).unwrap();
    let readme = v(&format!(
        "{DATA}/data/share/dib-pypi/elements/pypi/README.rst"
    ));
    wheel.entries.get_mut(&readme).unwrap().bytes.push(b'!');
    let err = check_record(&wheel).unwrap_err();
    assert!(err.contains(&format!("{readme}: says sha256=")), "{err}");
    // a line for a file the wheel does not hold, and a file listed twice
    let wheel = read_wheel(&write_wheel(tmp.path(), NAME_OK, &files, "ghost,,\n")).unwrap();
    assert!(check_record(&wheel)
        .unwrap_err()
        .contains("lists ghost, which the wheel does not hold"));
    let twice = format!("{},,\n", files[0].0);
    let wheel = read_wheel(&write_wheel(tmp.path(), NAME_OK, &files, &twice)).unwrap();
    assert!(check_record(&wheel).unwrap_err().contains("twice"));
}

#[test]
fn an_element_that_differs_from_the_assembled_one_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let el = element(tmp.path());
    let cases: Vec<(&str, Breakage)> = vec![
        (
            "root.d/50-pypi-mirror-mount is not executable",
            Box::new(|f| {
                f.iter_mut()
                    .find(|x| x.0.ends_with("root.d/50-pypi-mirror-mount"))
                    .unwrap()
                    .2 = false;
            }),
        ),
        (
            "dib-pypi-libexec/dib-pypi-mount is executable",
            Box::new(|f| {
                f.iter_mut()
                    .find(|x| x.0.ends_with("libexec/dib-pypi-mount"))
                    .unwrap()
                    .2 = true;
            }),
        ),
        (
            "README.rst differs",
            Box::new(|f| {
                f.iter_mut()
                    .find(|x| x.0.ends_with("README.rst"))
                    .unwrap()
                    .1
                    .push(b'!');
            }),
        ),
        (
            "dib-pypi-libexec/dib-pypi-restore is missing",
            Box::new(|f| {
                f.retain(|x| !x.0.ends_with("libexec/dib-pypi-restore"));
            }),
        ),
        (
            "scripts/pypi-mirror is not executable",
            Box::new(|f| {
                f[0].2 = false;
            }),
        ),
        (
            "stray.txt: neither",
            Box::new(|f| {
                f.push(("stray.txt".into(), vec![], false));
            }),
        ),
    ];
    for (want, break_it) in cases {
        let mut files = files_of(&el);
        break_it(&mut files);
        let wheel = read_wheel(&write_wheel(tmp.path(), NAME_OK, &files, "")).unwrap();
        check_record(&wheel).unwrap();
        let err = check_contents(&wheel, &el).unwrap_err();
        assert!(err.contains(want), "{want}: {err}");
        assert!(!err.contains('\n'));
    }
}

#[test]
fn the_tag_must_fit_the_binaries() {
    let tmp = tempfile::tempdir().unwrap();
    let el = element(tmp.path());
    let files = files_of(&el);
    let tag_of = |name: &str, files: &[(String, Vec<u8>, bool)], plain: bool| {
        let wheel = read_wheel(&write_wheel(tmp.path(), name, files, "")).unwrap();
        check_tag(&wheel, "x86_64", plain)
    };
    tag_of("dib_pypi-VER-py3-none-linux_x86_64.whl", &files, true).unwrap();
    tag_of(
        "dib_pypi-VER-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        &files,
        false,
    )
    .unwrap();
    let err = tag_of(
        "dib_pypi-VER-py3-none-manylinux2014_x86_64.musllinux_1_2_x86_64.whl",
        &files,
        false,
    )
    .unwrap_err();
    assert!(err.contains("wants manylinux*_x86_64"), "{err}");
    let err = tag_of("dib_pypi-VER-py3-none-linux_x86_64.whl", &files, false).unwrap_err();
    assert!(err.contains("wants manylinux*_x86_64"), "{err}");
    let err = tag_of(
        "dib_pypi-VER-py3-none-musllinux_1_2_x86_64.whl",
        &files,
        false,
    )
    .unwrap_err();
    assert!(
        err.contains("linked against /lib64/ld-linux-x86-64.so.2"),
        "{err}"
    );
    let err = tag_of(
        "dib_pypi-VER-py3-none-manylinux_2_34_aarch64.whl",
        &files,
        false,
    )
    .unwrap_err();
    assert!(
        err.contains("platform tag manylinux_2_34_aarch64, wants manylinux*_x86_64"),
        "{err}"
    );
    let err = tag_of(
        "dib_pypi-VER-cp311-cp311-manylinux_2_34_x86_64.whl",
        &files,
        false,
    )
    .unwrap_err();
    assert!(err.contains("wants py3-none"), "{err}");
    // a hook binary for another machine, or dynamically linked
    let mut arm = files.clone();
    arm.iter_mut()
        .find(|x| x.0.ends_with("libexec/dib-pypi-mount"))
        .unwrap()
        .1 = elf(183, None);
    let err = tag_of(NAME_OK, &arm, false).unwrap_err();
    assert!(
        err.contains("dib-pypi-mount is for ELF machine 183, not x86_64"),
        "{err}"
    );
    let mut dynamic = files.clone();
    dynamic
        .iter_mut()
        .find(|x| x.0.ends_with("libexec/dib-pypi-restore"))
        .unwrap()
        .1 = elf(62, GLIBC);
    let err = tag_of(NAME_OK, &dynamic, false).unwrap_err();
    assert!(
        err.contains("dib-pypi-restore is dynamically linked"),
        "{err}"
    );
    // a musl program makes it a musllinux wheel
    let mut musl = files.clone();
    musl[0].1 = elf(62, Some("/lib/ld-musl-x86_64.so.1"));
    tag_of(
        "dib_pypi-VER-py3-none-musllinux_1_2_x86_64.whl",
        &musl,
        false,
    )
    .unwrap();
    assert!(tag_of(NAME_OK, &musl, false).is_err());
}

/// A .tar.gz sdist holding `files` under `dib_pypi-VER/`.
fn write_sdist(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let path = dir.join(v("dib_pypi-VER.tar.gz"));
    let gz = flate2::write::GzEncoder::new(
        fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(
            &mut header,
            v(&format!("dib_pypi-VER/{name}")),
            text.as_bytes(),
        )
        .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    path
}

#[test]
fn the_sdist_must_be_the_tracked_files_and_pkg_info() {
    let tmp = tempfile::tempdir().unwrap();
    let tracked: BTreeSet<String> = [
        "pyproject.toml",
        "Cargo.lock",
        "pep517/dib_pypi_build.py",
        "hooks/README.rst",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    let pkg_info = v("Metadata-Version: 2.4\nName: dib-pypi\nVersion: VER\n");
    let mut files: Vec<(&str, &str)> = tracked.iter().map(|f| (f.as_str(), "x")).collect();
    files.push(("PKG-INFO", &pkg_info));
    check_sdist(&write_sdist(tmp.path(), &files), &tracked).unwrap();

    let without: Vec<_> = files
        .iter()
        .filter(|f| f.0 != "hooks/README.rst")
        .copied()
        .collect();
    let err = check_sdist(&write_sdist(tmp.path(), &without), &tracked).unwrap_err();
    assert!(
        err.ends_with("lacks hooks/README.rst, which git tracks"),
        "{err}"
    );
    let mut with = files.clone();
    with.push(("target/junk", "x"));
    let err = check_sdist(&write_sdist(tmp.path(), &with), &tracked).unwrap_err();
    assert!(
        err.ends_with("has target/junk, which git does not track"),
        "{err}"
    );
    let old: Vec<_> = files
        .iter()
        .map(|f| {
            if f.0 == "PKG-INFO" {
                ("PKG-INFO", "Version: 0.0.0\n")
            } else {
                *f
            }
        })
        .collect();
    let err = check_sdist(&write_sdist(tmp.path(), &old), &tracked).unwrap_err();
    assert!(err.contains("PKG-INFO lacks"), "{err}");
}
