//! `cargo xtask repackage` and `verify` as a user runs them, with
//! `SOURCE_DATE_EPOCH` setting every entry's mtime.

use xtask::{fixtures, manifest};

#[test]
fn repackage_command_honours_source_date_epoch() {
    let tree = fixtures::debian_pypy3().unwrap();
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("repackage")
        .arg(&tree)
        .arg("--out")
        .arg(out.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .status()
        .unwrap();
    assert!(status.success());
    let archive = out.path().join(fixtures::DEBIAN_ARCHIVE);
    let file = fs_err::File::open(&archive).unwrap();
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let mut count = 0;
    for e in tar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().mtime().unwrap(), 1_700_000_000);
        count += 1;
    }
    let m = xtask::verify::read_manifest(&archive).unwrap();
    assert!(count > m.files.len(), "folders and files are all archived");
    assert_eq!(m.format_version, manifest::FORMAT_VERSION);

    let status = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("verify")
        .arg(&archive)
        .status()
        .unwrap();
    assert!(status.success());

    // A bad SOURCE_DATE_EPOCH is an error, and nothing is left behind.
    let out2 = tempfile::tempdir().unwrap();
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("repackage")
        .arg(&tree)
        .arg("--out")
        .arg(out2.path())
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .output()
        .unwrap();
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("SOURCE_DATE_EPOCH"));
    assert_eq!(fs_err::read_dir(out2.path()).unwrap().count(), 0);
}
