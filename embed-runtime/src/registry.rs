//! The Rust functions a program registers for Python to call, by name:
//! `embed_runtime.call(name, ...)` in Python reaches [`dispatch`] through
//! `ffi`, which catches panics around it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

/// Status codes of `rust_call`, mirrored in bootstrap.py.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyStatus {
    Ok = 0,
    Error = 1,
    Panic = 2,
    NotFound = 3,
    /// The reply is a marshal value (a function registered with `register_typed`).
    OkMarshal = 4,
    /// Arguments of the wrong kind for the function (Python raises `TypeError`).
    WrongArguments = 5,
}

/// How the data of a call is encoded, both ways; mirrored in bootstrap.py.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallMode {
    Bytes = 0,
    Str = 1,
    /// `(args, kwargs)` in marshal format; the result in marshal format.
    Marshal = 2,
}

/// The error a Rust function registered for Python returns; Python sees it as
/// `embed_runtime.RustError` with this message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

type BytesFn = dyn Fn(&[u8]) -> Result<Vec<u8>, BoxError> + Send + Sync;
type ValuesFn = dyn Fn(crate::marshal::Value) -> Result<Vec<u8>, BoxError> + Send + Sync;

/// A Rust function Python can call: of bytes, or of typed values (marshal).
#[derive(Clone)]
pub(crate) enum RustFn {
    Bytes(Arc<BytesFn>),
    /// Takes the marshal tuple of the arguments, returns the marshal result.
    Typed(Arc<ValuesFn>),
}

static REGISTRY: LazyLock<RwLock<HashMap<String, RustFn>>> = LazyLock::new(Default::default);

pub(crate) fn register_fn(name: String, f: RustFn) {
    REGISTRY
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name, f);
}

/// Makes `f` callable from Python as `embed_runtime.call(name, data)`, with
/// `data` as bytes (a `str` is sent as UTF-8 and the reply decoded back to
/// `str`). An `Err` raises `embed_runtime.RustError`, a panic
/// `embed_runtime.RustPanic`; neither harms the process. May be called before
/// or after start; registering a name again replaces the function.
pub fn register<F>(name: impl Into<String>, f: F)
where
    F: Fn(&[u8]) -> Result<Vec<u8>, BoxError> + Send + Sync + 'static,
{
    register_fn(name.into(), RustFn::Bytes(Arc::new(f)));
}

/// [`register`] for a function of text: the data must be UTF-8.
pub fn register_str<F>(name: impl Into<String>, f: F)
where
    F: Fn(&str) -> Result<String, BoxError> + Send + Sync + 'static,
{
    register(name, move |data: &[u8]| {
        let text = std::str::from_utf8(data)?;
        Ok(f(text)?.into_bytes())
    })
}

/// Runs the Rust function Python asked for; a panic is caught by the caller in `ffi`.
pub(crate) fn dispatch(
    name: &[u8],
    data: &[u8],
    mode: CallMode,
) -> Result<(ReplyStatus, Vec<u8>), (ReplyStatus, String)> {
    let name = String::from_utf8_lossy(name);
    let f = REGISTRY
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(name.as_ref())
        .cloned();
    // The lock is released before the call, so the function may register others.
    let Some(f) = f else {
        let mut known: Vec<String> = REGISTRY
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        known.sort();
        return Err((
            ReplyStatus::NotFound,
            format!(
                "no Rust function is registered as {name:?}; registered: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let error = |e: BoxError| (ReplyStatus::Error, e.to_string());
    match (f, mode) {
        (RustFn::Bytes(f), CallMode::Bytes | CallMode::Str) => {
            f(data).map(|out| (ReplyStatus::Ok, out)).map_err(error)
        }
        (RustFn::Bytes(_), CallMode::Marshal) => Err((
            ReplyStatus::WrongArguments,
            format!(
                "the Rust function {name:?} takes one bytes or str argument \
                 (it was registered with `register`, not `register_typed`)"
            ),
        )),
        (RustFn::Typed(f), mode) => {
            let args = match mode {
                CallMode::Marshal => crate::marshal::read(data)
                    .map(|(v, _)| v)
                    .map_err(|e| (ReplyStatus::Error, e.to_string()))?,
                CallMode::Str => crate::marshal::Value::Tuple(vec![crate::marshal::Value::Str(
                    String::from_utf8_lossy(data).into_owned(),
                )]),
                CallMode::Bytes if data.is_empty() => crate::marshal::Value::Tuple(vec![]),
                CallMode::Bytes => {
                    crate::marshal::Value::Tuple(vec![crate::marshal::Value::Bytes(data.to_vec())])
                }
            };
            f(args)
                .map(|out| (ReplyStatus::OkMarshal, out))
                .map_err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_reports_unknown_names_with_the_known_ones() {
        register("tests.echo", |d: &[u8]| Ok(d.to_vec()));
        let Err((status, message)) = dispatch(b"tests.nope", b"", CallMode::Bytes) else {
            panic!("an unknown name must fail")
        };
        assert!(matches!(status, ReplyStatus::NotFound));
        assert!(
            message.contains("tests.nope") && message.contains("tests.echo"),
            "{message}"
        );
        assert_eq!(
            dispatch(b"tests.echo", b"abc", CallMode::Bytes).unwrap(),
            (ReplyStatus::Ok, b"abc".to_vec())
        );
    }

    #[test]
    fn errors_of_rust_functions_keep_their_message() {
        register_str("tests.upper", |s: &str| {
            if s.is_empty() {
                Err("empty input".into())
            } else {
                Ok(s.to_uppercase())
            }
        });
        assert_eq!(
            dispatch(b"tests.upper", b"ab", CallMode::Str).unwrap(),
            (ReplyStatus::Ok, b"AB".to_vec())
        );
        let Err((status, message)) = dispatch(b"tests.upper", b"", CallMode::Str) else {
            panic!("empty input must fail")
        };
        assert!(matches!(status, ReplyStatus::Error));
        assert_eq!(message, "empty input");
        let Err((_, message)) = dispatch(b"tests.upper", b"\xff", CallMode::Bytes) else {
            panic!("invalid UTF-8 must fail")
        };
        assert!(message.contains("utf-8"), "{message}");
    }
}
