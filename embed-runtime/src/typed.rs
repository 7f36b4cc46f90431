//! Rust values in, Rust values out: typed calls of Python functions, Python
//! objects held as handles, and Rust functions with typed signatures that
//! Python calls. Values cross in Python's `marshal` format (see `marshal`).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::ffi::ObjectOp;
use crate::marshal::{self, ConvertError};
use crate::registry::{register_fn, BoxError, CallMode, RustFn};
use crate::runtime::{Function, Runtime};

fn convert(what: String, source: ConvertError) -> Error {
    Error::Convert { what, source }
}

/// The result of a call, read as an `R`.
fn read_result<R: DeserializeOwned>(bytes: &[u8], what: impl Fn() -> String) -> Result<R, Error> {
    marshal::from_bytes(bytes)
        .map_err(|e| convert(format!("{} to {}", what(), std::any::type_name::<R>()), e))
}

/// Names an argument error by position: `argument 2` rather than `[1]`.
fn argument_error(mut e: ConvertError) -> ConvertError {
    if e.path.first().is_some_and(|p| p == "arguments") {
        e.path.remove(0);
        if let Some(index) = e.path.first().and_then(|p| {
            p.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<usize>()
                .ok()
        }) {
            e.path[0] = format!("argument {}", index + 1);
        } else {
            e.path.insert(0, "argument 1".into());
        }
    }
    e
}

impl Function {
    /// Calls the function with Rust values and converts its result: a tuple
    /// is the argument list (`(42, "x")`), `()` no arguments, any other
    /// value the one argument.
    ///
    /// ```no_run
    /// # use std::collections::HashMap;
    /// let rt = embed_runtime::start()?;
    /// rt.run("def score(n, tag): return {tag: n * 1.5}")?;
    /// let f = rt.function("__main__", "score")?;
    /// let s: HashMap<String, f64> = f.call((42, "x"))?;
    /// # Ok::<(), embed_runtime::Error>(())
    /// ```
    pub fn call<A: Serialize, R: DeserializeOwned>(&self, args: A) -> Result<R, Error> {
        self.call_kw(args, None::<&()>)
    }

    /// [`Function::call`] with keyword arguments: a map or a struct, whose
    /// keys become the argument names (`HashMap::from([("sep", ",")])`).
    pub fn call_kw<A: Serialize, K: Serialize, R: DeserializeOwned>(
        &self,
        args: A,
        kwargs: Option<&K>,
    ) -> Result<R, Error> {
        let data = marshal::call_bytes(&args, kwargs)
            .map_err(|e| convert(format!("the arguments of {}", self.name), argument_error(e)))?;
        let mut out = Vec::with_capacity(256);
        self.runtime
            .callbacks
            .call(self.handle, &data, CallMode::Marshal, &mut out)?;
        read_result(&out, || format!("the result of {}", self.name))
    }

    /// The function itself as an object handle.
    pub fn object(&self) -> Result<PyObject, Error> {
        PyObject::new_from(self.runtime, ObjectOp::FromFunction, self.handle, "", &[])
    }
}

/// A Python object that Rust holds: alive while the handle lives, released
/// when it is dropped. Handles are `Send + Sync`, may be used from any
/// thread, and borrow the runtime for `'static`, so no handle can outlive
/// the PyPy it belongs to.
pub struct PyObject {
    runtime: &'static Runtime,
    handle: u64,
}

impl fmt::Debug for PyObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.repr() {
            Ok(repr) => write!(f, "PyObject({repr})"),
            Err(_) => write!(f, "PyObject(#{})", self.handle),
        }
    }
}

impl PyObject {
    fn new_from(
        runtime: &'static Runtime,
        op: ObjectOp,
        handle: u64,
        name: &str,
        data: &[u8],
    ) -> Result<PyObject, Error> {
        let mut out = Vec::with_capacity(8);
        runtime.callbacks.object(op, handle, name, data, &mut out)?;
        let raw: [u8; 8] = out
            .as_slice()
            .try_into()
            .map_err(|_| Error::Bridge(format!("a handle of {} bytes", out.len())))?;
        Ok(PyObject {
            runtime,
            handle: u64::from_le_bytes(raw),
        })
    }

    fn text(&self, op: ObjectOp) -> Result<String, Error> {
        let mut out = Vec::new();
        self.runtime
            .callbacks
            .object(op, self.handle, "", &[], &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    /// `getattr(obj, name)`.
    pub fn getattr(&self, name: &str) -> Result<PyObject, Error> {
        PyObject::new_from(self.runtime, ObjectOp::GetAttr, self.handle, name, &[])
    }

    /// `obj(*args)`, with the arguments as in [`Function::call`]; the result
    /// as a handle (see [`PyObject::extract`]).
    pub fn call<A: Serialize>(&self, args: A) -> Result<PyObject, Error> {
        self.call_kw(args, None::<&()>)
    }

    /// `obj(*args, **kwargs)`.
    pub fn call_kw<A: Serialize, K: Serialize>(
        &self,
        args: A,
        kwargs: Option<&K>,
    ) -> Result<PyObject, Error> {
        let data = marshal::call_bytes(&args, kwargs)
            .map_err(|e| convert("the arguments of a call".into(), argument_error(e)))?;
        PyObject::new_from(self.runtime, ObjectOp::Call, self.handle, "", &data)
    }

    /// `obj.name(*args)`.
    pub fn call_method<A: Serialize>(&self, name: &str, args: A) -> Result<PyObject, Error> {
        let data = marshal::call_bytes(&args, None::<&()>).map_err(|e| {
            convert(
                format!("the arguments of the method {name}"),
                argument_error(e),
            )
        })?;
        PyObject::new_from(self.runtime, ObjectOp::CallMethod, self.handle, name, &data)
    }

    /// The object as a Rust value.
    pub fn extract<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let mut out = Vec::new();
        self.runtime
            .callbacks
            .object(ObjectOp::Extract, self.handle, "", &[], &mut out)?;
        read_result(&out, || "a Python object".into())
    }

    /// `repr(obj)`.
    pub fn repr(&self) -> Result<String, Error> {
        self.text(ObjectOp::Repr)
    }

    /// `str(obj)`.
    pub fn str(&self) -> Result<String, Error> {
        self.text(ObjectOp::Str)
    }
}

impl Drop for PyObject {
    fn drop(&mut self) {
        // Dropping cannot report; the Python side only forgets its entry.
        let _ =
            self.runtime
                .callbacks
                .object(ObjectOp::Drop, self.handle, "", &[], &mut Vec::new());
    }
}

impl Runtime {
    /// `import name` as a handle (`rt.import("json")?.getattr("dumps")?`).
    pub fn import(&'static self, name: &str) -> Result<PyObject, Error> {
        PyObject::new_from(self, ObjectOp::Import, 0, name, &[])
    }
}

/// A Rust function Python can call with typed arguments; implemented for
/// closures of up to four arguments that `serde` can read, returning a
/// `Result` of anything `serde` can write.
pub trait TypedFn<Args>: Send + Sync + 'static {
    fn invoke(&self, args: marshal::Value) -> Result<Vec<u8>, BoxError>;
}

macro_rules! typed_fn {
    ($count:literal; $($arg:ident),*) => {
        impl<F, R, E, $($arg),*> TypedFn<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Result<R, E> + Send + Sync + 'static,
            R: Serialize,
            E: Into<BoxError>,
            $($arg: DeserializeOwned,)*
        {
            // The zero-argument case reads no item.
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn invoke(&self, args: marshal::Value) -> Result<Vec<u8>, BoxError> {
                let items = match args {
                    marshal::Value::Tuple(items) => items,
                    other => vec![other],
                };
                if items.len() != $count {
                    return Err(format!(
                        "takes {} argument(s), got {}",
                        $count,
                        items.len()
                    )
                    .into());
                }
                let mut items = items.into_iter().enumerate();
                $(
                    let (index, value) = items.next().expect("counted");
                    let $arg: $arg = serde::Deserialize::deserialize(value).map_err(|e: ConvertError| {
                        e.at(format!("argument {}", index + 1)).to_string()
                    })?;
                )*
                let result = self($($arg),*).map_err(Into::into)?;
                Ok(marshal::to_bytes(&result).map_err(|e| e.at("the result").to_string())?)
            }
        }
    };
}

typed_fn!(0;);
typed_fn!(1; A1);
typed_fn!(2; A1, A2);
typed_fn!(3; A1, A2, A3);
typed_fn!(4; A1, A2, A3, A4);

/// Makes `f` callable from Python with typed values:
/// `register_typed("add", |a: i64, b: i64| Ok::<_, BoxError>(a + b))` is
/// `embed_runtime.call("add", 1, 2)` in Python, which returns `3`. A bad
/// argument raises `embed_runtime.RustError` naming its position and types;
/// an `Err` or a panic behave as with [`register`](crate::register).
pub fn register_typed<Args, F: TypedFn<Args>>(name: impl Into<String>, f: F) {
    let f = std::sync::Arc::new(f);
    register_fn(
        name.into(),
        RustFn::Typed(std::sync::Arc::new(move |args| f.invoke(args))),
    );
}
