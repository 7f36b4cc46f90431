//! The bridge protocol between Rust and `bootstrap.py` as one table: every
//! number both sides must agree on, under the name bootstrap.py gives it,
//! with its value taken from the Rust side (the enums and the `Bridge`
//! struct's layout). The test below reads bootstrap.py's constants and checks
//! each against the table, both ways, so a code added, renumbered or
//! reordered on one side only fails the test-suite instead of a call.

use crate::ffi::{bridge_word, ObjectOp};
use crate::registry::{CallMode, ReplyStatus};

/// bootstrap.py's name for each protocol number, and the number.
pub(crate) fn table() -> Vec<(&'static str, i64)> {
    let mut rows: Vec<(&'static str, i64)> = vec![
        ("REPLY_OK", ReplyStatus::Ok as i64),
        ("REPLY_ERROR", ReplyStatus::Error as i64),
        ("REPLY_PANIC", ReplyStatus::Panic as i64),
        ("REPLY_NOT_FOUND", ReplyStatus::NotFound as i64),
        ("REPLY_OK_MARSHAL", ReplyStatus::OkMarshal as i64),
        ("REPLY_WRONG_ARGUMENTS", ReplyStatus::WrongArguments as i64),
        ("MODE_BYTES", CallMode::Bytes as i64),
        ("MODE_STR", CallMode::Str as i64),
        ("MODE_MARSHAL", CallMode::Marshal as i64),
        ("OP_IMPORT", ObjectOp::Import as i64),
        ("OP_GETATTR", ObjectOp::GetAttr as i64),
        ("OP_CALL", ObjectOp::Call as i64),
        ("OP_CALL_METHOD", ObjectOp::CallMethod as i64),
        ("OP_EXTRACT", ObjectOp::Extract as i64),
        ("OP_REPR", ObjectOp::Repr as i64),
        ("OP_STR", ObjectOp::Str as i64),
        ("OP_DROP", ObjectOp::Drop as i64),
        ("OP_FROM_FUNCTION", ObjectOp::FromFunction as i64),
        ("BRIDGE_WORDS", crate::ffi::bridge_words().len() as i64),
    ];
    rows.extend(
        crate::ffi::bridge_words()
            .into_iter()
            .map(|(name, _)| (name, bridge_word(name) as i64)),
    );
    rows
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// bootstrap.py's integer constants: `NAME = 3`, and the names unpacked
    /// from `range(n)`, on one line or in parentheses over several.
    fn constants(source: &str) -> BTreeMap<String, i64> {
        let mut found = BTreeMap::new();
        let mut pending: Option<String> = None;
        for line in source.lines() {
            let code = line.split('#').next().unwrap_or("").trim_end();
            if line.starts_with(' ') || code.is_empty() {
                if let Some(names) = &mut pending {
                    names.push_str(code);
                }
                continue;
            }
            let text = match pending.take() {
                Some(mut names) => {
                    names.push_str(code);
                    names
                }
                None if code == "(" => {
                    pending = Some(String::new());
                    continue;
                }
                None => code.to_string(),
            };
            let Some((left, right)) = text.split_once(" = ") else {
                continue;
            };
            let names: Vec<&str> = left
                .trim_matches(|c| c == '(' || c == ')' || c == ' ')
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect();
            if !names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            {
                continue;
            }
            if let Ok(value) = right.trim().parse::<i64>() {
                if let [name] = names.as_slice() {
                    found.insert(name.to_string(), value);
                }
            } else if let Some(n) = right
                .trim()
                .strip_prefix("range(")
                .and_then(|r| r.strip_suffix(')'))
            {
                assert_eq!(n.parse::<usize>().ok(), Some(names.len()), "{text}");
                for (i, name) in names.iter().enumerate() {
                    found.insert(name.to_string(), i as i64);
                }
            }
        }
        found
    }

    #[test]
    fn bootstrap_py_agrees_with_the_table() {
        let ours: BTreeMap<String, i64> = table()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        let theirs = constants(crate::ffi::BOOTSTRAP);
        // Constants that are not protocol numbers.
        let local = ["CALLBACK_BROKEN"];
        let theirs: BTreeMap<String, i64> = theirs
            .into_iter()
            .filter(|(name, _)| !local.contains(&name.as_str()))
            .collect();
        assert_eq!(
            ours, theirs,
            "bootstrap.py (right) against the Rust side (left)"
        );
    }

    #[test]
    fn bootstrap_py_names_the_rust_check_of_cached_files() {
        let line = format!("CHECK_CACHED_FILE = \"{}\"", crate::runtime::WATCH_FUNCTION);
        assert!(
            crate::ffi::BOOTSTRAP.lines().any(|l| l == line),
            "bootstrap.py lacks `{line}`"
        );
    }

    #[test]
    fn the_reader_sees_every_form_and_a_change() {
        let source =
            "A_B = 4\nX, Y = range(2)\n(\n    P,\n    Q,\n    R,\n) = range(3)\nT = \"text\"\n";
        let found = constants(source);
        let want: BTreeMap<String, i64> =
            [("A_B", 4), ("X", 0), ("Y", 1), ("P", 0), ("Q", 1), ("R", 2)]
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect();
        assert_eq!(found, want);
        // A renumbered code on one side shows as a difference.
        let changed = crate::ffi::BOOTSTRAP.replace("REPLY_PANIC = 2", "REPLY_PANIC = 7");
        assert_eq!(constants(&changed)["REPLY_PANIC"], 7);
    }
}
