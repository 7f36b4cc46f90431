//! One command of a build stage as a value: the program, its arguments and
//! the environment it gets. The stage builds it once; the build runs it and
//! `build-pypy --plan` prints it, so the two cannot say different things.
//!
//! [`record`] lets a test run a real stage and see every command it ran, to
//! compare with what the plan printed for the same inputs: drift between
//! plan and build then fails a test instead of waiting for a snapshot review.

use std::cell::RefCell;
use std::ffi::OsString;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

/// A command a stage runs, on top of the environment of the shell that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub argv: Vec<String>,
    /// Variables set for this command only, in the order the plan prints them.
    pub env: Vec<(String, OsString)>,
}

impl Command {
    pub fn new(argv: Vec<String>) -> Self {
        Command {
            argv,
            env: Vec::new(),
        }
    }

    pub fn env(mut self, var: &str, value: impl Into<OsString>) -> Self {
        self.env.push((var.to_string(), value.into()));
        self
    }

    pub fn envs<K: AsRef<str>>(mut self, vars: impl IntoIterator<Item = (K, OsString)>) -> Self {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.as_ref().to_string(), v)));
        self
    }

    /// The xshell command that runs this in `sh`'s folder, with `sh`'s
    /// environment and this command's on top; a [`record`]ing test sees it.
    pub fn cmd<'a>(&self, sh: &'a Shell) -> Result<xshell::Cmd<'a>> {
        RECORDING.with(|recording| {
            if let Some(ran) = recording.borrow_mut().as_mut() {
                ran.push(self.clone());
            }
        });
        let (program, args) = self.argv.split_first().context("a command has a program")?;
        let mut command = cmd!(sh, "{program} {args...}");
        for (var, value) in &self.env {
            command = command.env(var, value);
        }
        Ok(command)
    }

    /// How the plan prints it: one `VAR=value` line each, then `$ argv`,
    /// with `show` applied to every value and argument (paths read the same
    /// on every machine).
    pub fn plan_lines(&self, show: impl Fn(&str) -> String) -> Vec<String> {
        let mut lines: Vec<String> = self
            .env
            .iter()
            .map(|(var, value)| format!("{var}={}", show(&value.to_string_lossy())))
            .collect();
        lines.push(self.command_line(show));
        lines
    }

    /// `$ program args…`, quoting what a shell would split.
    pub fn command_line(&self, show: impl Fn(&str) -> String) -> String {
        let quoted: Vec<String> = self
            .argv
            .iter()
            .map(|a| {
                let a = show(a);
                if a.is_empty() || a.contains([' ', '"', '$']) {
                    format!("'{a}'")
                } else {
                    a
                }
            })
            .collect();
        format!("$ {}", quoted.join(" ")).replace('\\', "/")
    }
}

thread_local! {
    static RECORDING: RefCell<Option<Vec<Command>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns, with its result, every [`Command`] it ran on this
/// thread (stages build and start their commands on the caller's thread).
pub fn record<T>(f: impl FnOnce() -> T) -> (T, Vec<Command>) {
    let outer = RECORDING.with(|r| r.borrow_mut().replace(Vec::new()));
    let result = f();
    let ran = RECORDING.with(|r| std::mem::replace(&mut *r.borrow_mut(), outer));
    (result, ran.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_command_runs_with_its_environment() {
        let sh = Shell::new().unwrap();
        let command = Command::new(vec!["sh".into(), "-c".into(), "echo $STAGE_TEST".into()])
            .env("STAGE_TEST", "from the stage");
        let (out, ran) = record(|| command.cmd(&sh).unwrap().read().unwrap());
        assert_eq!(out, "from the stage");
        assert_eq!(ran, vec![command.clone()]);
        // Outside `record`, nothing is kept.
        let (_, nested) = record(|| ());
        assert!(nested.is_empty());
    }

    #[test]
    fn the_plan_prints_variables_then_the_quoted_command() {
        let command = Command::new(vec!["git".into(), "apply".into(), "/w/a b.patch".into()])
            .env("GIT_CEILING_DIRECTORIES", "/w");
        let show = |s: &str| s.replace("/w", "<workspace>");
        assert_eq!(
            command.plan_lines(show),
            vec![
                "GIT_CEILING_DIRECTORIES=<workspace>".to_string(),
                "$ git apply '<workspace>/a b.patch'".to_string(),
            ]
        );
    }
}
