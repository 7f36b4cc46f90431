//! `cargo xtask fetch`: the first stage of build-pypy on its own, from a
//! recipe to the source tree a translation reads (patched, when the recipe
//! has patches), printed on stdout.

use anyhow::{Context, Result};
use xshell::Shell;

use crate::fetch::{self, FetchArgs};
use crate::recipe;

/// Options of `cargo xtask fetch`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Recipe name (see `cargo xtask recipes`) or path of a recipe file; default: the newest recipe.
    #[arg(long, value_name = "NAME|PATH")]
    pub recipe: Option<String>,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

pub fn run(args: Args) -> Result<()> {
    let recipe = match &args.recipe {
        Some(name) => recipe::find(name)?,
        None => recipe::newest()?,
    };
    let opts = args.fetch.options()?;
    let tree = fetch::fetch_source(&recipe, &opts)
        .with_context(|| format!("fetching the source of recipe {}", recipe.name))?;
    // The tree printed is the one a translation reads: patched, unless there
    // are no patches or --no-patches.
    let sh = Shell::new()?;
    let source_id = fetch::source_id_of(&sh, &tree)?;
    let patched = crate::patch::apply_recipe_patches(&sh, &recipe, &tree.root, &source_id, &opts)
        .with_context(|| format!("patching the source of recipe {}", recipe.name))?;
    eprintln!("fetch: source tree ready");
    println!("{}", patched.root.display());
    Ok(())
}
