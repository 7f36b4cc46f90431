//! `cargo xtask repackage` and `verify` as a user runs them, with
//! `SOURCE_DATE_EPOCH` setting every entry's mtime.

// Debian's pypy3 (an x86_64 ELF tree in `usr/` layout) is a fixture of Linux machines only.
#![cfg(target_os = "linux")]

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
    let archive = out.path().join(fixtures::debian_archive_name());
    let file = fs_err::File::open(&archive).unwrap();
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let mut count = 0;
    for e in tar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().mtime().unwrap(), 1_700_000_000);
        count += 1;
    }
    let m = pypy_archive::extract::read_manifest(&archive).unwrap();
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

/// Serves `body` for every GET on 127.0.0.1 (a real socket, one thread).
fn serve(body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        // One download is expected; stop after it so the thread ends.
        if let Ok((stream, _)) = listener.accept() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let mut stream = stream;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (
        format!("http://{addr}/{}", fixtures::debian_archive_name()),
        handle,
    )
}

#[test]
fn repackage_downloads_a_release_by_url() {
    let release = fixtures::debian_archive().unwrap();
    let sha = xtask::hash::sha256_file(&release).unwrap();
    let (url, server) = serve(fs_err::read(&release).unwrap());
    let out = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["repackage", &url, "--sha256", &sha, "--out"])
        .arg(out.path())
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    server.join().unwrap();
    let m = pypy_archive::extract::read_manifest(&out.path().join(fixtures::debian_archive_name()))
        .unwrap();
    match m.origin.source {
        manifest::Source::Prebuilt {
            sha256,
            description,
        } => {
            assert_eq!(sha256.as_deref(), Some(sha.as_str()));
            assert!(
                description.contains(&fixtures::debian_archive_name()),
                "{description}"
            );
        }
        other => panic!("{other:?}"),
    }

    // Without --sha256 a URL is refused before anything is downloaded.
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["repackage", &url, "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("--sha256"));
}
