//! `cargo xtask recipes`: lists the recipes and what they build.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::{paths, recipe};

/// Options of `cargo xtask recipes`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Read recipes from this folder instead of the workspace's `recipes/`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let dir = args.dir.unwrap_or_else(paths::recipes_dir);
    let recipes = recipe::all_in(&dir).context("reading the recipes")?;
    print!("{}", render(&recipes));
    Ok(())
}

/// One line per recipe, newest first; the first one is what `build-pypy` builds by default.
pub fn render(recipes: &[recipe::Recipe]) -> String {
    let rows: Vec<[String; 5]> = recipes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut options = vec![format!("--opt={}", r.translate.opt)];
            options.extend(r.translate.options.iter().cloned());
            let targets = if r.targets.is_empty() {
                "-".to_string()
            } else {
                r.targets.keys().cloned().collect::<Vec<_>>().join(",")
            };
            let name = if i == 0 {
                format!("{} (default)", r.name)
            } else {
                r.name.clone()
            };
            [
                name,
                r.pypy.version.clone(),
                r.pypy.python.clone(),
                options.join(" "),
                format!("{}  overrides: {targets}", r.source_file_name()),
            ]
        })
        .collect();
    let header = [
        "RECIPE".to_string(),
        "PYPY".into(),
        "PYTHON".into(),
        "TRANSLATION".into(),
        "SOURCE".into(),
    ];
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_shipped_recipes_newest_first() {
        let text = render(&recipe::all().unwrap());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("RECIPE"), "{text}");
        assert!(lines[1].starts_with("pypy3.11-v7.3.23 (default)"), "{text}");
        assert!(lines[1].contains("7.3.23"), "{text}");
        assert!(lines[1].contains("--opt=jit --shared"), "{text}");
        assert!(lines[1].contains("pypy3.11-v7.3.23-src.tar.bz2"), "{text}");
        assert!(
            lines.iter().any(|l| l.starts_with("pypy3.10-v7.3.19 ")),
            "{text}"
        );
    }
}
