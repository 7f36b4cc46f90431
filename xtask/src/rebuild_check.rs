//! `cargo xtask rebuild-check ARCHIVE`: rebuild an archive from what its manifest records, and compare.
//!
//! The archive's `PYPY.json` names the recipe, the source, the patches, the
//! translation options and the build machine (`origin.build`: host Python,
//! compiler, `SOURCE_DATE_EPOCH`, the target table's entry). This command
//! checks that this checkout can rebuild exactly that, translates again
//! (never from the cache), and reports either "identical" or every file that
//! differs. Differences in the build machine are reported up front, since
//! they usually explain differing bytes (docs/reproducible-builds.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::fetch::FetchArgs;
use crate::manifest::{self, BuildRecord, FileDifference, FileEntry, Manifest, Source};
use crate::translate::{self, RunOptions, Spec};
use crate::{build_pypy, patch, paths, recipe, targets};
use pypy_archive::extract::unpack_top;
use pypy_archive::tree::hash_tree;

/// Options of `cargo xtask rebuild-check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The archive to rebuild (one that `cargo xtask build-pypy` made).
    pub archive: PathBuf,
    /// Keep the rebuilt archive in this folder [default: a temporary folder,
    /// kept only when the archives differ].
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// The Python 2.7 that runs RPython; best the same version the archive records.
    #[arg(long, env = crate::host::HOST_ENV)]
    pub host_python: Option<PathBuf>,
    /// Download the official PyPy 2.7 of the target table and use it as host.
    #[arg(long, conflicts_with = "host_python")]
    pub bootstrap_host: bool,
    /// Parallel jobs for the C compile (they do not change the result).
    #[arg(long)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

pub fn run(args: Args) -> Result<()> {
    let original = pypy_archive::extract::read_manifest(&args.archive)
        .with_context(|| format!("reading the manifest of {}", args.archive.display()))?;
    let plan = plan_rebuild(&original, &args)?;
    let sh = Shell::new()?;
    report_machine(&sh, &original, &plan, &args.fetch.options()?.cache_dir)?;

    let (out_dir, temporary) = match &args.out_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let parent = paths::workspace_root().join("target");
            fs_err::create_dir_all(&parent)?;
            let tmp = tempfile::Builder::new()
                .prefix("rebuild-check-")
                .tempdir_in(&parent)
                .context("creating a folder for the rebuilt archive")?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    eprintln!(
        "rebuild-check: rebuilding {} into {} (a full translation)",
        args.archive.display(),
        out_dir.display()
    );
    let rebuilt = build_pypy::build(&plan.build_options(&args, &out_dir)?)
        .context("rebuilding the archive")?;

    let comparison = compare_archives(&args.archive, &rebuilt)?;
    print!("{}", comparison.render(&args.archive, &rebuilt));
    if comparison.identical() {
        return Ok(());
    }
    if let Some(tmp) = temporary {
        // Kept so that the two can be compared further (diffoscope).
        let _ = tmp.keep();
    }
    bail!(
        "the rebuild differs from {} ({} file(s), {} manifest field(s)); see above",
        args.archive.display(),
        comparison.files.len(),
        comparison.manifest_fields.len()
    )
}

/// What the manifest asks for, checked against this checkout before an hour is spent.
#[derive(Debug)]
pub struct RebuildPlan {
    pub recipe: recipe::Recipe,
    pub opt: String,
    pub record: BuildRecord,
    pub patches_skipped: bool,
    /// The archive's target: this machine's, or one it cross-builds.
    pub target: targets::Target,
}

impl RebuildPlan {
    fn build_options(&self, args: &Args, out_dir: &Path) -> Result<build_pypy::BuildOptions> {
        let mut fetch = args.fetch.options()?;
        fetch.no_patches = self.patches_skipped;
        Ok(build_pypy::BuildOptions {
            recipe: self.recipe.clone(),
            target: self.target.clone(),
            dist_dir: out_dir.to_path_buf(),
            skip_doctor: false,
            // Built as the original was: with the portable toolchain or without.
            system_compiler: !self
                .record
                .compiler
                .starts_with(crate::toolchain::VERSION_PREFIX),
            source_date_epoch: Some(self.record.source_date_epoch),
            // PyPy records the folder it was translated in: the rebuild uses the same one.
            build_dir: Some(PathBuf::from(&self.record.source_root)),
            fetch,
            run: RunOptions {
                host_python: args.host_python.clone(),
                opt: Some(self.opt.clone()),
                jobs: args.jobs,
                no_cache: true,
                bootstrap_host: args.bootstrap_host,
                ..RunOptions::default()
            },
        })
    }
}

/// Checks that `original` can be rebuilt here: its recipe exists with the same
/// source, patches and options, and the target is this machine's or one it
/// cross-builds.
pub fn plan_rebuild(original: &Manifest, args: &Args) -> Result<RebuildPlan> {
    let origin = &original.origin;
    let Some(record) = origin.build.clone() else {
        bail!(
            "{}: the manifest has no build record (origin.build); only archives that \
             `cargo xtask build-pypy` translated can be rebuilt (repackaged ones and those \
             made before the record existed cannot)",
            args.archive.display()
        );
    };
    let Some(name) = &origin.recipe else {
        bail!("the manifest names no recipe (origin.recipe); nothing to rebuild from");
    };
    let recipe = recipe::find(name).with_context(|| {
        format!("the archive was built from recipe {name}, which this checkout does not have")
    })?;
    let target = targets::ensure_buildable_here(&original.target)
        .with_context(|| format!("rebuilding an archive for {}", original.target))?;
    // A cross-build adds our RPython patch after the recipe's (as build-pypy does).
    let cross = target.triple != targets::host_triple();
    let patched_recipe = if cross {
        crate::emulator::recipe_for_cross(&recipe)
    } else {
        recipe.clone()
    };
    match &origin.source {
        Source::Release { url, sha256 } => {
            if *sha256 != recipe.source.sha256 {
                bail!(
                    "the archive was built from {url} (sha256 {sha256}), but recipe {name} \
                     now pins {} (sha256 {}); check out the commit that built the archive",
                    recipe.source.url,
                    recipe.source.sha256
                );
            }
        }
        Source::Checkout { commit } => {
            if args.fetch.source_dir.is_none() {
                bail!(
                    "the archive was built from a local source tree{}; pass the same tree \
                     with --source-dir",
                    commit
                        .as_ref()
                        .map(|c| format!(" (git commit {c})"))
                        .unwrap_or_default()
                );
            }
        }
        Source::Prebuilt { description, .. } => {
            bail!("the archive repackages a PyPy built elsewhere ({description}); nothing was translated here to rebuild")
        }
    }
    let opt = origin
        .translation_options
        .iter()
        .find_map(|o| o.strip_prefix("--opt="))
        .context("the manifest's translation_options has no --opt=")?
        .to_string();
    let expected = Spec::planned(
        &recipe,
        Path::new(""),
        String::new(),
        &original.target,
        &RunOptions {
            opt: Some(opt.clone()),
            ..RunOptions::default()
        },
    )
    .recorded_options();
    if expected != origin.translation_options {
        bail!(
            "the archive was translated with {:?}, recipe {name} gives {:?}; rebuild-check \
             rebuilds recipes as written, so check out the commit that built the archive",
            origin.translation_options,
            expected
        );
    }
    if !origin.patches_skipped {
        let fetch = args.fetch.options()?;
        let ours: Vec<_> = patch::fetch_patches(&patched_recipe, &fetch)?
            .into_iter()
            .map(|ready| ready.record)
            .collect();
        if ours != origin.patches {
            bail!(
                "the archive's patches ({}) are not recipe {name}'s ({}); check out the \
                 commit that built the archive",
                describe_patches(&origin.patches),
                describe_patches(&ours)
            );
        }
    }
    Ok(RebuildPlan {
        recipe,
        opt,
        record,
        patches_skipped: origin.patches_skipped,
        target,
    })
}

fn describe_patches(patches: &[manifest::PatchRecord]) -> String {
    if patches.is_empty() {
        return "none".into();
    }
    patches
        .iter()
        .map(|p| format!("{} {}", p.name, &p.sha256[..p.sha256.len().min(12)]))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints the recorded build machine beside this one; a difference is a warning, not an error.
fn report_machine(
    sh: &Shell,
    original: &Manifest,
    plan: &RebuildPlan,
    cache_root: &Path,
) -> Result<()> {
    let target = targets::get(&original.target)?;
    let portable = plan
        .record
        .compiler
        .starts_with(crate::toolchain::VERSION_PREFIX);
    // A portable build's compiler and libraries are pinned by this checkout:
    // what it would use is known without building them.
    let here_compiler = if portable {
        let here = targets::get(targets::host_triple())?;
        let pin = crate::toolchain::of(&here)?;
        let zig = crate::toolchain::locate(&here, &target, cache_root)?;
        let (prefix, _) = crate::deps::plan(&zig, &pin.zig_sha256, cache_root, 1)?;
        let (_, version, _) = pin.wheel_requirement()?;
        translate::portable_compiler_line(&version, &zig.target, &prefix.dir)
    } else {
        translate::compiler_version(sh, None)?
    };
    eprintln!(
        "rebuild-check: for the same bytes these must match: the recipe, its patches and the \
         source (checked), the folder the source is translated in, SOURCE_DATE_EPOCH and \
         the host Python (below), and {}",
        if portable {
            "the pinned zig and C libraries (this checkout's pins, compared below)"
        } else {
            "the machine's C compiler and its libraries' headers (compared below)"
        }
    );
    let here_entry = serde_json::to_value(&target)?;
    let rows = [
        (
            "C compiler",
            plan.record.compiler.clone(),
            here_compiler.clone(),
        ),
        (
            "target table entry",
            short_json(&plan.record.target_entry),
            short_json(&here_entry),
        ),
    ];
    eprintln!(
        "rebuild-check: recorded host Python: {} (the rebuild's is printed by build-pypy)",
        plan.record.host_python
    );
    eprintln!(
        "rebuild-check: SOURCE_DATE_EPOCH={} ({})",
        plan.record.source_date_epoch, plan.record.source_date_from
    );
    let fixed = Path::new(&plan.record.source_root).starts_with(&target.build_dir);
    eprintln!(
        "rebuild-check: the source was translated in {}{}; the rebuild copies it to the same folder",
        plan.record.source_root,
        if fixed {
            " (the target table's fixed build folder, the same on every machine)"
        } else {
            " (not the target table's build folder: built with --build-dir, or before builds had one)"
        }
    );
    for (what, recorded, here) in rows {
        if recorded != here {
            eprintln!(
                "rebuild-check: warning: {what} differs: the archive's was {recorded}, this \
                 machine's is {here}; the bytes will likely differ"
            );
        }
    }
    Ok(())
}

fn short_json(value: &serde_json::Value) -> String {
    let sha = pypy_archive::hash::sha256_bytes(value.to_string().as_bytes());
    format!("sha256 {}", &sha[..12])
}

/// How two archives differ.
#[derive(Debug, Default)]
pub struct Comparison {
    pub sha256: (String, String),
    /// Files that differ, by path under the top folder, with what differs.
    pub files: Vec<(String, String)>,
    /// Fields of `PYPY.json` other than `files` that differ, as JSON paths.
    pub manifest_fields: Vec<String>,
}

impl Comparison {
    pub fn identical(&self) -> bool {
        self.sha256.0 == self.sha256.1
    }

    pub fn render(&self, original: &Path, rebuilt: &Path) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "original: {}\n  sha256 {}\nrebuilt:  {}\n  sha256 {}\n",
            original.display(),
            self.sha256.0,
            rebuilt.display(),
            self.sha256.1
        ));
        if self.identical() {
            out.push_str("identical: the rebuild has the same sha256\n");
            return out;
        }
        if self.files.is_empty() && self.manifest_fields.is_empty() {
            out.push_str(
                "every file and manifest field is the same; the archives differ in how they \
                 are packed (entry order, dates or compression)\n",
            );
        }
        for field in &self.manifest_fields {
            out.push_str(&format!("differs: {}: {field}\n", manifest::MANIFEST_NAME));
        }
        for (path, what) in &self.files {
            out.push_str(&format!("differs: {path}: {what}\n"));
        }
        out
    }
}

/// Unpacks both archives and compares every file's bytes, mode and link
/// target, and every manifest field.
pub fn compare_archives(original: &Path, rebuilt: &Path) -> Result<Comparison> {
    let sha256 = (
        pypy_archive::hash::sha256_file(original)?,
        pypy_archive::hash::sha256_file(rebuilt)?,
    );
    if sha256.0 == sha256.1 {
        return Ok(Comparison {
            sha256,
            ..Comparison::default()
        });
    }
    let work = tempfile::tempdir().context("creating a folder to unpack into")?;
    let mut trees = Vec::new();
    for (name, archive) in [("original", original), ("rebuilt", rebuilt)] {
        let dest = work.path().join(name);
        fs_err::create_dir(&dest)?;
        unpack_top(archive, manifest::TOP_DIR, &dest)
            .with_context(|| format!("unpacking {}", archive.display()))?;
        trees.push(dest.join(manifest::TOP_DIR));
    }
    let files = compare_trees(&hash_tree(&trees[0])?, &hash_tree(&trees[1])?);
    let manifests: Vec<serde_json::Value> = trees
        .iter()
        .map(|top| {
            let path = top.join(manifest::MANIFEST_NAME);
            let text = fs_err::read_to_string(&path)?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        })
        .collect::<Result<_>>()?;
    let mut manifest_fields = Vec::new();
    json_differences("", &manifests[0], &manifests[1], &mut manifest_fields);
    // The files are compared above, by their bytes rather than by the claims.
    manifest_fields.retain(|field| !field.starts_with("files"));
    Ok(Comparison {
        sha256,
        files,
        manifest_fields,
    })
}

/// The paths whose entries differ between two hashed trees, with what differs.
pub fn compare_trees(
    original: &BTreeMap<String, FileEntry>,
    rebuilt: &BTreeMap<String, FileEntry>,
) -> Vec<(String, String)> {
    manifest::compare_files(original, rebuilt)
        .into_iter()
        .map(|difference| {
            let what = match &difference {
                FileDifference::Missing(_) => "only in the original".to_string(),
                FileDifference::Unlisted(_) => "only in the rebuild".to_string(),
                FileDifference::Link { listed, found, .. } => {
                    format!("link {listed:?} against {found:?}")
                }
                FileDifference::Content { listed, found, .. } => {
                    format!("content ({} against {} bytes)", listed.size, found.size)
                }
                FileDifference::Mode { listed, found, .. } => {
                    format!("mode {listed:o} against {found:o}")
                }
            };
            (difference.path().to_string(), what)
        })
        .collect()
}

/// Every JSON path at which `a` and `b` differ, with both values for leaves.
fn json_differences(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match (x.get(key), y.get(key)) {
                    (Some(l), Some(r)) => json_differences(&path, l, r, out),
                    (Some(_), None) => out.push(format!("{path}: only in the original")),
                    (None, _) => out.push(format!("{path}: only in the rebuild")),
                }
            }
        }
        _ if a != b => out.push(format!("{at}: {a} against {b}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sha: &str, mode: u32) -> FileEntry {
        FileEntry {
            sha256: sha.into(),
            size: 3,
            mode,
            link: None,
        }
    }

    #[test]
    fn tree_differences_name_each_file_and_what_differs() {
        let a = BTreeMap::from([
            ("bin/libpypy3.11-c.so".to_string(), entry("aa", 0o755)),
            ("lib/same.py".to_string(), entry("cc", 0o644)),
            ("lib/gone.py".to_string(), entry("dd", 0o644)),
            ("lib/mode.py".to_string(), entry("ee", 0o644)),
        ]);
        let b = BTreeMap::from([
            ("bin/libpypy3.11-c.so".to_string(), entry("ab", 0o755)),
            ("lib/same.py".to_string(), entry("cc", 0o644)),
            ("lib/mode.py".to_string(), entry("ee", 0o755)),
            ("lib/new.py".to_string(), entry("ff", 0o644)),
        ]);
        let diff = compare_trees(&a, &b);
        assert_eq!(
            diff,
            vec![
                (
                    "bin/libpypy3.11-c.so".to_string(),
                    "content (3 against 3 bytes)".to_string()
                ),
                (
                    "lib/gone.py".to_string(),
                    "only in the original".to_string()
                ),
                (
                    "lib/mode.py".to_string(),
                    "mode 644 against 755".to_string()
                ),
                ("lib/new.py".to_string(), "only in the rebuild".to_string()),
            ]
        );
    }

    #[test]
    fn manifest_differences_are_json_paths() {
        let a = serde_json::json!({"origin": {"build": {"compiler": "gcc 12"}, "recipe": "r"}, "target": "x"});
        let b = serde_json::json!({"origin": {"build": {"compiler": "gcc 13"}, "recipe": "r"}, "extra": 1, "target": "x"});
        let mut out = Vec::new();
        json_differences("", &a, &b, &mut out);
        assert_eq!(
            out,
            vec![
                "extra: only in the rebuild".to_string(),
                "origin.build.compiler: \"gcc 12\" against \"gcc 13\"".to_string(),
            ]
        );
    }
}
