//! `build-pypy --plan` for every target of the table, against the snapshots
//! in `tests/snapshots/`: a change to any platform's steps shows up in review
//! as a change of its snapshot. `UPDATE_SNAPSHOTS=1 cargo test --test
//! plan_snapshots` rewrites them.

use std::path::{Path, PathBuf};

use xtask::fetch::FetchOptions;
use xtask::plan::{render, PlanInput};
use xtask::translate::RunOptions;
use xtask::{recipe, targets};

/// A build on the target's own runner, or a cross-build on another machine.
fn snapshot_path(triple: &str, build_machine: &str) -> PathBuf {
    let name = if triple == build_machine {
        format!("plan-{triple}.txt")
    } else {
        format!("plan-{triple}-on-{build_machine}.txt")
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name)
}

/// The plan with folders that read the same on every machine.
fn plan_for(triple: &str, build_machine: &str) -> String {
    let recipe = recipe::newest().unwrap();
    let target = targets::get(triple).unwrap();
    let fetch = FetchOptions::new(Path::new("/cache"));
    let run = RunOptions {
        jobs: Some(2),
        ..RunOptions::default()
    };
    render(&PlanInput {
        recipe: &recipe,
        target: &target,
        fetch: &fetch,
        run: &run,
        dist: Path::new("/dist"),
        portable: true,
        build_machine,
    })
    .unwrap()
}

#[test]
fn every_target_has_its_plan_snapshot() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    let mut differ = Vec::new();
    // Every target on its own runner, and every cross-build the table has.
    let builds: Vec<(String, String)> = targets::all()
        .unwrap()
        .into_iter()
        .flat_map(|t| {
            let cross = t.emulator.as_ref().map(|pin| pin.build_machine.clone());
            let own = t.triple.clone();
            std::iter::once(own.clone())
                .chain(cross)
                .map(move |machine| (own.clone(), machine))
        })
        .collect();
    assert!(
        builds.iter().any(|(t, m)| t != m),
        "the table has a cross-build: {builds:?}"
    );
    for (triple, machine) in &builds {
        let plan = plan_for(triple, machine);
        let path = snapshot_path(triple, machine);
        if update {
            std::fs::write(&path, &plan).unwrap();
            continue;
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        if stored != plan {
            differ.push(format!(
                "{triple} on {machine}: the plan differs from {} (review, then UPDATE_SNAPSHOTS=1):\n{plan}",
                path.display()
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n\n"));
}

#[test]
fn the_windows_plan_fetches_the_pinned_externals() {
    let plan = plan_for("x86_64-pc-windows-msvc", "x86_64-pc-windows-msvc");
    let pin = targets::get("x86_64-pc-windows-msvc")
        .unwrap()
        .externals
        .expect("Windows pins PyPy's externals");
    assert!(
        plan.contains(&format!(
            "$ git clone --quiet --branch {} {} /cache/externals/{}",
            pin.branch, pin.url, pin.commit
        )),
        "{plan}"
    );
    assert!(plan.contains(&format!("checkout --quiet --detach {}", pin.commit)));
    // Before the translation, which needs them.
    assert!(plan.find("externals:").unwrap() < plan.find("translate:").unwrap());
}

#[test]
fn the_macos_plans_set_the_deployment_target_and_install_names() {
    for (triple, version) in [
        ("x86_64-apple-darwin", "10.15"),
        ("aarch64-apple-darwin", "11.0"),
    ] {
        let plan = plan_for(triple, triple);
        assert!(
            plan.contains(&format!("MACOSX_DEPLOYMENT_TARGET={version}")),
            "{plan}"
        );
        assert!(plan.contains("install_name_tool -id @rpath/libpypy3.11-c.dylib"));
        assert!(plan.contains("homebrew: `brew list --versions` finds"));
        assert!(!plan.contains("externals:"));
    }
}

#[test]
fn the_plan_command_runs_for_another_os() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build-pypy", "--target", "x86_64-pc-windows-msvc", "--plan"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("externals:"), "{stdout}");
    assert!(stdout.contains("-m rpython --batch --opt=jit"), "{stdout}");
}
