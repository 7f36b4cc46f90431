//! Records the target triple the xtask is built for, the only one it can translate for.

fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    println!("cargo:rustc-env=XTASK_HOST_TRIPLE={target}");
}
