//! The multi-member .tar.gz our writer produces, read by other tools:
//! `gzip -t`, GNU tar and Python's tarfile must all see the whole archive.

use xshell::{cmd, Shell};
use xtask::{fixtures, manifest};

#[test]
fn other_readers_see_every_entry() {
    let archive = fixtures::test_archive().unwrap();
    let m = pypy_archive::extract::read_manifest(&archive).unwrap();
    let sh = Shell::new().unwrap();
    // By file name from its folder: Git's GNU tar on Windows reads `D:\…` as a remote host.
    sh.change_dir(archive.parent().unwrap());
    let archive = archive.file_name().unwrap();

    cmd!(sh, "gzip -t {archive}").run().unwrap();

    let listing = cmd!(sh, "tar -tzf {archive}").read().unwrap();
    let files: Vec<&str> = listing.lines().filter(|l| !l.ends_with('/')).collect();
    // Every file and link of the manifest, plus the manifest itself.
    assert_eq!(files.len(), m.files.len() + 1);
    let last = m.files.keys().next_back().unwrap();
    assert!(
        files.contains(&format!("{}/{last}", manifest::TOP_DIR).as_str()),
        "the last members must be read too"
    );

    let code = "import sys, tarfile\n\
                t = tarfile.open(sys.argv[1], 'r:gz')\n\
                ms = t.getmembers()\n\
                assert all(m.uid == 0 and m.gid == 0 and m.uname == '' for m in ms)\n\
                print(sum(1 for m in ms if not m.isdir()))";
    let python3 = fixtures::python3();
    let count = cmd!(sh, "{python3} -c {code} {archive}").read().unwrap();
    assert_eq!(count.trim(), (m.files.len() + 1).to_string());
}
