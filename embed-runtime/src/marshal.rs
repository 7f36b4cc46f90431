//! Rust values to Python's `marshal` format and back, through serde: the
//! wire format of typed calls. Python reads and writes it with `marshal`
//! (version 2: no back-references), which PyPy implements at interpreter
//! level, so neither side parses text. Two common cases skip Python's
//! `marshal` module, with the same bytes: the bootstrap reads positional
//! arguments that are all `int`, `float` or `str` in place, and writes flat
//! results (a dict with `str` keys, a list or a tuple of `None`, `bool`,
//! 32-bit `int`, `float` and `str`, or one such value) itself, because
//! PyPy's JIT traces `marshal.dumps` of a float or a `str` step by step.
//!
//! Rust → Python: `bool`, integers, floats, `str`/`char`, bytes (via
//! `serde_bytes`), `Option`, sequences (→ `list`), tuples (→ `tuple`),
//! maps and structs (→ `dict`), enums (unit variants → their name, others
//! → `{name: value}`). Python → Rust: the same back, plus `set`; an `int`
//! that does not fit the Rust type is an error, as is any other Python
//! type. Every error says where: the argument's position or the field.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// `$method!` over every integer method of serde's `Deserializer`, for the
/// two deserializers here (`Value` and `stream`).
macro_rules! every_int_method {
    ($method:ident) => {
        $method!(
            deserialize_i8 visit_i8 i8,
            deserialize_i16 visit_i16 i16,
            deserialize_i32 visit_i32 i32,
            deserialize_i64 visit_i64 i64,
            deserialize_i128 visit_i128 i128,
            deserialize_u8 visit_u8 u8,
            deserialize_u16 visit_u16 u16,
            deserialize_u32 visit_u32 u32,
            deserialize_u64 visit_u64 u64,
            deserialize_u128 visit_u128 u128
        );
    };
}

mod stream;

// Type codes of CPython's and PyPy's marshal.
const NULL: u8 = b'0';
const NONE: u8 = b'N';
const FALSE: u8 = b'F';
const TRUE: u8 = b'T';
const INT: u8 = b'i';
const LONG: u8 = b'l';
const BINARY_FLOAT: u8 = b'g';
const STRING: u8 = b's';
const INTERNED: u8 = b't';
const UNICODE: u8 = b'u';
const TUPLE: u8 = b'(';
const LIST: u8 = b'[';
const DICT: u8 = b'{';
const SET: u8 = b'<';
const FROZENSET: u8 = b'>';

/// A conversion that failed: what was wrong, and where (`argument 2`,
/// `.scores[3]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    pub message: String,
    /// From the outside in: `argument 1`, `.name`, `[0]`.
    pub path: Vec<String>,
}

impl ConvertError {
    fn new(message: impl Into<String>) -> Self {
        ConvertError {
            message: message.into(),
            path: Vec::new(),
        }
    }

    /// The same error one level further out.
    pub(crate) fn at(mut self, place: impl Into<String>) -> Self {
        self.path.insert(0, place.into());
        self
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            let mut place = String::new();
            for part in &self.path {
                if !place.is_empty() && !part.starts_with(['[', '.']) {
                    place.push(' ');
                }
                place.push_str(part);
            }
            write!(f, "{}: {}", place.trim_start_matches('.'), self.message)
        }
    }
}

impl std::error::Error for ConvertError {}

impl ser::Error for ConvertError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ConvertError::new(msg.to_string())
    }
}

impl de::Error for ConvertError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ConvertError::new(msg.to_string())
    }
}

// ------------------------------------------------------------------ writing

/// `value` in marshal format.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ConvertError> {
    let mut w = Writer::default();
    value.serialize(&mut w)?;
    Ok(w.out)
}

/// The argument list of a call: a tuple is the arguments, `()` none, any
/// other value the one argument; `kwargs` (a map or struct) or `None`.
/// Written as the 2-tuple `(args, kwargs)` the bootstrap reads.
pub fn call_bytes<A: Serialize + ?Sized, K: Serialize + ?Sized>(
    args: &A,
    kwargs: Option<&K>,
) -> Result<Vec<u8>, ConvertError> {
    // Room for the usual few arguments up front: growing byte by byte
    // cost more than the rest of the encoding.
    let mut w = Writer {
        out: Vec::with_capacity(128),
        key: false,
    };
    w.out.push(TUPLE);
    w.out.extend_from_slice(&2i32.to_le_bytes());
    let start = w.out.len();
    match args.serialize(&mut w).map_err(|e| e.at("arguments"))? {
        Written::Tuple => {}
        Written::Unit => {
            w.out.truncate(start);
            w.out.push(TUPLE);
            w.out.extend_from_slice(&0i32.to_le_bytes());
        }
        Written::Other => {
            let one = w.out.split_off(start);
            w.out.push(TUPLE);
            w.out.extend_from_slice(&1i32.to_le_bytes());
            w.out.extend_from_slice(&one);
        }
    }
    match kwargs {
        Some(kwargs) => {
            let at = w.out.len();
            kwargs
                .serialize(&mut w)
                .map_err(|e| e.at("keyword arguments"))?;
            if w.out.get(at) != Some(&DICT) {
                return Err(ConvertError::new(
                    "keyword arguments must be a map or a struct (a Python dict)",
                ));
            }
        }
        None => w.out.push(NONE),
    }
    Ok(w.out)
}

/// What the outermost value was, for [`call_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Tuple,
    Unit,
    Other,
}

#[derive(Default)]
struct Writer {
    out: Vec<u8>,
    /// Writing a dict key: Python needs it hashable.
    key: bool,
}

impl Writer {
    fn int(&mut self, v: i128) -> Result<Written, ConvertError> {
        if let Ok(small) = i32::try_from(v) {
            self.out.push(INT);
            self.out.extend_from_slice(&small.to_le_bytes());
            return Ok(Written::Other);
        }
        // Arbitrary size: 15-bit digits, least significant first; the
        // count's sign is the number's.
        let mut magnitude = v.unsigned_abs();
        let mut digits = Vec::new();
        while magnitude > 0 {
            digits.push((magnitude & 0x7fff) as u16);
            magnitude >>= 15;
        }
        let count = digits.len() as i32;
        self.out.push(LONG);
        self.out
            .extend_from_slice(&(if v < 0 { -count } else { count }).to_le_bytes());
        for d in digits {
            self.out.extend_from_slice(&d.to_le_bytes());
        }
        Ok(Written::Other)
    }

    fn len(&mut self, len: usize) -> Result<(), ConvertError> {
        let len = i32::try_from(len).map_err(|_| {
            ConvertError::new(format!("{len} items are more than Python's marshal takes"))
        })?;
        self.out.extend_from_slice(&len.to_le_bytes());
        Ok(())
    }

    fn unhashable(&self, what: &str) -> Result<(), ConvertError> {
        if self.key {
            Err(ConvertError::new(format!(
                "a {what} cannot be a Python dict key (unhashable); use a tuple or a scalar"
            )))
        } else {
            Ok(())
        }
    }

    /// Serializes `value` as a dict value (hashability does not matter there).
    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ConvertError> {
        let key = std::mem::replace(&mut self.key, false);
        let result = value.serialize(&mut *self).map(|_| ());
        self.key = key;
        result
    }

    fn seq(&mut self, code: u8, kind: Written) -> SeqWriter<'_> {
        self.out.push(code);
        let count_at = self.out.len();
        self.out.extend_from_slice(&0i32.to_le_bytes());
        SeqWriter {
            w: self,
            count_at,
            count: 0,
            kind,
            close_variant: false,
        }
    }
}

/// A list or tuple being written; its count is patched in at the end.
pub struct SeqWriter<'a> {
    w: &'a mut Writer,
    count_at: usize,
    count: usize,
    kind: Written,
    /// Closes the `{variant: ...}` dict of an enum after the tuple.
    close_variant: bool,
}

impl SeqWriter<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ConvertError> {
        let index = self.count;
        value
            .serialize(&mut *self.w)
            .map_err(|e| e.at(format!("[{index}]")))?;
        self.count += 1;
        Ok(())
    }

    fn finish(self) -> Result<Written, ConvertError> {
        let count = i32::try_from(self.count)
            .map_err(|_| ConvertError::new("too many items for Python's marshal"))?;
        self.w.out[self.count_at..self.count_at + 4].copy_from_slice(&count.to_le_bytes());
        if self.close_variant {
            self.w.out.push(NULL);
        }
        Ok(self.kind)
    }
}

/// A dict being written.
pub struct MapWriter<'a> {
    w: &'a mut Writer,
    /// The last key, for errors in its value.
    key: String,
    /// Closes the `{variant: ...}` dict of an enum after the inner dict.
    close_variant: bool,
}

impl MapWriter<'_> {
    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ConvertError> {
        let was = std::mem::replace(&mut self.w.key, true);
        let at = self.w.out.len();
        let result = key.serialize(&mut *self.w);
        self.w.key = was;
        result.map_err(|e| e.at("a key"))?;
        self.key = describe_key(&self.w.out[at..]);
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ConvertError> {
        let key = self.key.clone();
        self.w.value(value).map_err(|e| e.at(key))
    }

    fn finish(self) -> Result<Written, ConvertError> {
        self.w.out.push(NULL);
        if self.close_variant {
            self.w.out.push(NULL);
        }
        Ok(Written::Other)
    }
}

/// `.name` for a str key, `[3]` for an int key, `[key]` otherwise.
fn describe_key(bytes: &[u8]) -> String {
    match read(bytes) {
        Ok((Value::Str(s), _)) => format!(".{s}"),
        Ok((v, _)) => format!("[{}]", v.repr()),
        Err(_) => "[key]".into(),
    }
}

impl<'a> ser::Serializer for &'a mut Writer {
    type Ok = Written;
    type Error = ConvertError;
    type SerializeSeq = SeqWriter<'a>;
    type SerializeTuple = SeqWriter<'a>;
    type SerializeTupleStruct = SeqWriter<'a>;
    type SerializeTupleVariant = SeqWriter<'a>;
    type SerializeMap = MapWriter<'a>;
    type SerializeStruct = MapWriter<'a>;
    type SerializeStructVariant = MapWriter<'a>;

    fn serialize_bool(self, v: bool) -> Result<Written, ConvertError> {
        self.out.push(if v { TRUE } else { FALSE });
        Ok(Written::Other)
    }
    fn serialize_i8(self, v: i8) -> Result<Written, ConvertError> {
        self.int(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<Written, ConvertError> {
        self.int(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<Written, ConvertError> {
        self.int(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<Written, ConvertError> {
        self.int(v.into())
    }
    fn serialize_i128(self, v: i128) -> Result<Written, ConvertError> {
        self.int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Written, ConvertError> {
        self.int(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<Written, ConvertError> {
        self.int(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<Written, ConvertError> {
        self.int(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<Written, ConvertError> {
        self.int(v.into())
    }
    fn serialize_u128(self, v: u128) -> Result<Written, ConvertError> {
        let v = i128::try_from(v)
            .map_err(|_| ConvertError::new(format!("{v} is too large to send (above 2**127)")))?;
        self.int(v)
    }
    fn serialize_f32(self, v: f32) -> Result<Written, ConvertError> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<Written, ConvertError> {
        if self.key && v.is_nan() {
            return Err(ConvertError::new(
                "NaN cannot be a dict key: it is not equal to itself, so Python could never find it",
            ));
        }
        self.out.push(BINARY_FLOAT);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(Written::Other)
    }
    fn serialize_char(self, v: char) -> Result<Written, ConvertError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<Written, ConvertError> {
        self.out.push(UNICODE);
        self.len(v.len())?;
        self.out.extend_from_slice(v.as_bytes());
        Ok(Written::Other)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Written, ConvertError> {
        self.out.push(STRING);
        self.len(v.len())?;
        self.out.extend_from_slice(v);
        Ok(Written::Other)
    }
    fn serialize_none(self) -> Result<Written, ConvertError> {
        self.out.push(NONE);
        Ok(Written::Other)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Written, ConvertError> {
        value.serialize(self).map(|_| Written::Other)
    }
    fn serialize_unit(self) -> Result<Written, ConvertError> {
        self.out.push(NONE);
        Ok(Written::Unit)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Written, ConvertError> {
        self.out.push(NONE);
        Ok(Written::Other)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Written, ConvertError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Written, ConvertError> {
        value.serialize(self).map(|_| Written::Other)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Written, ConvertError> {
        self.unhashable("dict (an enum variant with data)")?;
        self.out.push(DICT);
        self.serialize_str(variant)?;
        self.value(value).map_err(|e| e.at(format!(".{variant}")))?;
        self.out.push(NULL);
        Ok(Written::Other)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<SeqWriter<'a>, ConvertError> {
        self.unhashable("list")?;
        Ok(self.seq(LIST, Written::Other))
    }
    fn serialize_tuple(self, _: usize) -> Result<SeqWriter<'a>, ConvertError> {
        Ok(self.seq(TUPLE, Written::Tuple))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<SeqWriter<'a>, ConvertError> {
        Ok(self.seq(TUPLE, Written::Other))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<SeqWriter<'a>, ConvertError> {
        self.unhashable("dict (an enum variant with data)")?;
        self.out.push(DICT);
        self.serialize_str(variant)?;
        let mut seq = self.seq(TUPLE, Written::Other);
        seq.close_variant = true;
        Ok(seq)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapWriter<'a>, ConvertError> {
        self.unhashable("dict")?;
        self.out.push(DICT);
        Ok(MapWriter {
            w: self,
            key: String::new(),
            close_variant: false,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<MapWriter<'a>, ConvertError> {
        self.unhashable("dict (a struct)")?;
        self.out.push(DICT);
        Ok(MapWriter {
            w: self,
            key: String::new(),
            close_variant: false,
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<MapWriter<'a>, ConvertError> {
        self.unhashable("dict (an enum variant with data)")?;
        self.out.push(DICT);
        self.serialize_str(variant)?;
        self.out.push(DICT);
        Ok(MapWriter {
            w: self,
            key: String::new(),
            close_variant: true,
        })
    }
}

macro_rules! seq_impl {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for SeqWriter<'_> {
            type Ok = Written;
            type Error = ConvertError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ConvertError> {
                self.element(value)
            }
            fn end(self) -> Result<Written, ConvertError> {
                self.finish()
            }
        }
    )*};
}
seq_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for MapWriter<'_> {
    type Ok = Written;
    type Error = ConvertError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ConvertError> {
        self.key(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ConvertError> {
        self.value(value)
    }
    fn end(self) -> Result<Written, ConvertError> {
        self.finish()
    }
}

macro_rules! struct_impl {
    ($($trait:ident),*) => {$(
        impl ser::$trait for MapWriter<'_> {
            type Ok = Written;
            type Error = ConvertError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                name: &'static str,
                value: &T,
            ) -> Result<(), ConvertError> {
                self.key(name)?;
                self.value(value)
            }
            fn end(self) -> Result<Written, ConvertError> {
                self.finish()
            }
        }
    )*};
}
struct_impl!(SerializeStruct, SerializeStructVariant);

// ------------------------------------------------------------------ reading

/// A Python value as marshal wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i128),
    /// An int beyond ±2**127, kept as its decimal digits' count for errors.
    HugeInt {
        digits: usize,
        negative: bool,
    },
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
}

impl Value {
    /// The Python type's name, for errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::HugeInt { .. } => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
        }
    }

    /// A short Python-like rendering, for errors and keys.
    pub fn repr(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => if *b { "True" } else { "False" }.into(),
            Value::Int(i) => i.to_string(),
            Value::HugeInt { digits, negative } => format!(
                "{}an int of about {} decimal digits",
                if *negative { "-" } else { "" },
                digits
            ),
            Value::Float(f) => format!("{f:?}"),
            Value::Str(s) if s.len() <= 40 => format!("{s:?}"),
            Value::Str(s) => format!("a str of {} bytes", s.len()),
            Value::Bytes(b) => format!("bytes of length {}", b.len()),
            Value::Tuple(v) => format!("a tuple of {}", v.len()),
            Value::List(v) => format!("a list of {}", v.len()),
            Value::Dict(v) => format!("a dict of {}", v.len()),
            Value::Set(v) => format!("a set of {}", v.len()),
        }
    }
}

/// Reads one value; returns it and the bytes after it.
pub fn read(bytes: &[u8]) -> Result<(Value, &[u8]), ConvertError> {
    let broken = || ConvertError::new("the marshal data from Python is cut short");
    let (&code, rest) = bytes.split_first().ok_or_else(broken)?;
    let int32 = |b: &[u8]| -> Result<(i32, usize), ConvertError> {
        let four: [u8; 4] = b.get(..4).ok_or_else(broken)?.try_into().unwrap();
        Ok((i32::from_le_bytes(four), 4))
    };
    let length = |b: &[u8]| -> Result<usize, ConvertError> {
        let (n, _) = int32(b)?;
        usize::try_from(n).map_err(|_| ConvertError::new("a negative length in marshal data"))
    };
    // FLAG_REF is only written by marshal version 3 and later.
    match code {
        NONE => Ok((Value::None, rest)),
        TRUE => Ok((Value::Bool(true), rest)),
        FALSE => Ok((Value::Bool(false), rest)),
        INT => {
            let (n, used) = int32(rest)?;
            Ok((Value::Int(n.into()), &rest[used..]))
        }
        LONG => {
            let (n, used) = int32(rest)?;
            let count = n.unsigned_abs() as usize;
            let body = rest.get(used..used + 2 * count).ok_or_else(broken)?;
            let after = &rest[used + 2 * count..];
            let huge = Value::HugeInt {
                digits: count * 15 * 30103 / 100000,
                negative: n < 0,
            };
            let mut magnitude: u128 = 0;
            for chunk in body.chunks(2).rev() {
                let digit = u128::from(u16::from_le_bytes([chunk[0], chunk[1]]));
                if magnitude >> 113 != 0 {
                    // Another 15 bits would not fit 128.
                    return Ok((huge, after));
                }
                magnitude = (magnitude << 15) | digit;
            }
            let value = if n < 0 {
                0i128.checked_sub_unsigned(magnitude)
            } else {
                i128::try_from(magnitude).ok()
            };
            match value {
                Some(v) => Ok((Value::Int(v), after)),
                None => Ok((huge, after)),
            }
        }
        BINARY_FLOAT => {
            let eight: [u8; 8] = rest.get(..8).ok_or_else(broken)?.try_into().unwrap();
            Ok((Value::Float(f64::from_le_bytes(eight)), &rest[8..]))
        }
        STRING | UNICODE | INTERNED => {
            let n = length(rest)?;
            let body = rest.get(4..4 + n).ok_or_else(broken)?;
            let value = if code == STRING {
                Value::Bytes(body.to_vec())
            } else {
                Value::Str(String::from_utf8(body.to_vec()).map_err(|_| {
                    ConvertError::new("a Python str with lone surrogates has no Rust String")
                })?)
            };
            Ok((value, &rest[4 + n..]))
        }
        TUPLE | LIST | SET | FROZENSET => {
            let n = length(rest)?;
            let mut rest = &rest[4..];
            let mut items = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let (item, after) = read(rest)?;
                items.push(item);
                rest = after;
            }
            let value = match code {
                TUPLE => Value::Tuple(items),
                LIST => Value::List(items),
                _ => Value::Set(items),
            };
            Ok((value, rest))
        }
        DICT => {
            let mut rest = rest;
            let mut items = Vec::new();
            loop {
                if rest.first() == Some(&NULL) {
                    return Ok((Value::Dict(items), &rest[1..]));
                }
                let (key, after) = read(rest)?;
                let (value, after) = read(after)?;
                items.push((key, value));
                rest = after;
            }
        }
        other => Err(ConvertError::new(format!(
            "Python sent a value of marshal type {:?}, which has no Rust equivalent",
            other as char
        ))),
    }
}

/// Reads `bytes` (one marshal value) as a `T`: straight from the bytes
/// when they fit, and otherwise once more through a `Value` tree, whose
/// error says where the value went wrong.
pub fn from_bytes<T: de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ConvertError> {
    let mut stream = stream::Stream { bytes };
    if let Ok(value) = T::deserialize(&mut stream) {
        if stream.bytes.is_empty() {
            return Ok(value);
        }
    }
    from_tree(bytes)
}

/// [`from_bytes`] through a `Value` tree.
fn from_tree<T: de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ConvertError> {
    let (value, rest) = read(bytes)?;
    if !rest.is_empty() {
        return Err(ConvertError::new("extra bytes after the marshal value"));
    }
    T::deserialize(value)
}

fn mismatch(value: &Value, rust: &str) -> ConvertError {
    ConvertError::new(format!(
        "expected {rust}, got Python {} {}",
        value.type_name(),
        value.repr()
    ))
}

macro_rules! int_method {
    ($($method:ident $visit:ident $ty:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
            match self {
                Value::Int(i) => match <$ty>::try_from(i) {
                    Ok(v) => visitor.$visit(v),
                    Err(_) => Err(ConvertError::new(format!(
                        "Python int {i} does not fit {}",
                        stringify!($ty)
                    ))),
                },
                Value::HugeInt { .. } => Err(ConvertError::new(format!(
                    "Python int ({}) does not fit {}",
                    self.repr(),
                    stringify!($ty)
                ))),
                Value::Bool(b) => visitor.$visit(<$ty>::from(b)),
                other => Err(mismatch(&other, stringify!($ty))),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Value {
    type Error = ConvertError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self {
            Value::None => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(i) => match i64::try_from(i) {
                Ok(v) => visitor.visit_i64(v),
                Err(_) => match u64::try_from(i) {
                    Ok(v) => visitor.visit_u64(v),
                    Err(_) => visitor.visit_i128(i),
                },
            },
            v @ Value::HugeInt { .. } => Err(ConvertError::new(format!(
                "Python int ({}) is too large for any Rust number",
                v.repr()
            ))),
            Value::Float(f) => visitor.visit_f64(f),
            Value::Str(s) => visitor.visit_string(s),
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::Tuple(items) | Value::List(items) | Value::Set(items) => {
                visitor.visit_seq(Seq::new(items))
            }
            Value::Dict(items) => visitor.visit_map(Map::new(items)),
        }
    }

    every_int_method!(int_method);

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self {
            Value::Bool(b) => visitor.visit_bool(b),
            other => Err(mismatch(&other, "bool")),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self {
            Value::Float(f) => visitor.visit_f64(f),
            // Python code returns 3 where 3.0 was meant; that is no loss.
            Value::Int(i) if i.unsigned_abs() <= 1 << 53 => visitor.visit_f64(i as f64),
            other => Err(mismatch(&other, "a float")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self {
            Value::Str(s) => visitor.visit_string(s),
            other => Err(mismatch(&other, "a String")),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self {
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::List(items) | Value::Tuple(items) => visitor.visit_seq(Seq::new(items)),
            other => Err(mismatch(&other, "bytes")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self {
            Value::None => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self {
            Value::None => visitor.visit_unit(),
            other => Err(mismatch(&other, "() (Python None)")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self {
            Value::Tuple(items) | Value::List(items) | Value::Set(items) => {
                visitor.visit_seq(Seq::new(items))
            }
            other => Err(mismatch(&other, "a sequence (list or tuple)")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        match &self {
            Value::Tuple(items) | Value::List(items) if items.len() != len => {
                Err(ConvertError::new(format!(
                    "expected a tuple of {len}, got Python {} of {}",
                    self.type_name(),
                    items.len()
                )))
            }
            _ => self.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self {
            Value::Dict(items) => visitor.visit_map(Map::new(items)),
            other => Err(mismatch(&other, "a map (Python dict)")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        match self {
            Value::Dict(items) => visitor.visit_map(Map::new(items)),
            other => Err(mismatch(&other, &format!("struct {name} (a Python dict)"))),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        match self {
            Value::Str(s) => visitor.visit_enum(s.into_deserializer()),
            Value::Dict(mut items) if items.len() == 1 => {
                let (key, value) = items.pop().unwrap();
                let Value::Str(variant) = key else {
                    return Err(mismatch(&key, &format!("a variant name of enum {name}")));
                };
                visitor.visit_enum(Enum { variant, value })
            }
            other => Err(mismatch(
                &other,
                &format!("enum {name} (a str, or a dict of one variant)"),
            )),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self {
            Value::Str(s) => visitor.visit_string(s),
            other => Err(mismatch(&other, "a field name (str)")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        visitor.visit_unit()
    }
}

impl IntoDeserializer<'_, ConvertError> for Value {
    type Deserializer = Value;
    fn into_deserializer(self) -> Value {
        self
    }
}

struct Seq {
    items: std::vec::IntoIter<Value>,
    index: usize,
}

impl Seq {
    fn new(items: Vec<Value>) -> Seq {
        Seq {
            items: items.into_iter(),
            index: 0,
        }
    }
}

impl<'de> de::SeqAccess<'de> for Seq {
    type Error = ConvertError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ConvertError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        seed.deserialize(item)
            .map(Some)
            .map_err(|e| e.at(format!("[{index}]")))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map {
    items: std::vec::IntoIter<(Value, Value)>,
    /// The value of the key just read, and that key for errors.
    value: Option<(Value, Value)>,
}

/// `.name` for a str key, `[repr]` for any other: where an error in a dict is.
fn key_place(key: &Value) -> String {
    match key {
        Value::Str(s) => format!(".{s}"),
        other => format!("[{}]", other.repr()),
    }
}

impl Map {
    fn new(items: Vec<(Value, Value)>) -> Map {
        Map {
            items: items.into_iter(),
            value: None,
        }
    }
}

impl<'de> de::MapAccess<'de> for Map {
    type Error = ConvertError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ConvertError> {
        let Some((key, value)) = self.items.next() else {
            return Ok(None);
        };
        // Places are formatted only when something fails: this is the hot
        // path of every dict a typed call returns.
        // A copy of the key (a scalar or a small tuple) names the place of an error.
        let for_errors = key.clone();
        let result = seed.deserialize(key);
        let result = result.map_err(|e| e.at(format!("{} (the key)", key_place(&for_errors))));
        self.value = Some((for_errors, value));
        result.map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ConvertError> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| ConvertError::new("a dict value without its key"))?;
        seed.deserialize(value).map_err(|e| e.at(key_place(&key)))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Enum {
    variant: String,
    value: Value,
}

impl<'de> de::EnumAccess<'de> for Enum {
    type Error = ConvertError;
    type Variant = Value;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Value), ConvertError> {
        let variant = seed.deserialize(Value::Str(self.variant))?;
        Ok((variant, self.value))
    }
}

impl<'de> de::VariantAccess<'de> for Value {
    type Error = ConvertError;
    fn unit_variant(self) -> Result<(), ConvertError> {
        match self {
            Value::None => Ok(()),
            other => Err(mismatch(&other, "None for a unit variant")),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, ConvertError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::{Deserialize, Serialize};

    use super::*;

    fn round<T: Serialize + de::DeserializeOwned>(value: &T) -> T {
        from_bytes(&to_bytes(value).unwrap()).unwrap()
    }

    #[test]
    fn scalars_are_written_as_python_writes_them() {
        // marshal.dumps(x, 2) in Python gives these bytes.
        assert_eq!(to_bytes(&()).unwrap(), b"N");
        assert_eq!(to_bytes(&true).unwrap(), b"T");
        assert_eq!(to_bytes(&5i64).unwrap(), b"i\x05\x00\x00\x00");
        assert_eq!(to_bytes(&-1i8).unwrap(), b"i\xff\xff\xff\xff");
        // 2**31: two 15-bit digits and a third (2 = 2**31 >> 30).
        assert_eq!(
            to_bytes(&(1u64 << 31)).unwrap(),
            b"l\x03\x00\x00\x00\x00\x00\x00\x00\x02\x00"
        );
        assert_eq!(
            to_bytes(&1.5f64).unwrap(),
            b"g\x00\x00\x00\x00\x00\x00\xf8\x3f"
        );
        assert_eq!(to_bytes("hé").unwrap(), b"u\x03\x00\x00\x00h\xc3\xa9");
        assert_eq!(
            to_bytes(&serde_bytes::ByteBuf::from(b"ab".to_vec())).unwrap(),
            b"s\x02\x00\x00\x00ab"
        );
        assert_eq!(
            to_bytes(&(1u8, "x")).unwrap(),
            b"(\x02\x00\x00\x00i\x01\x00\x00\x00u\x01\x00\x00\x00x"
        );
        assert_eq!(
            to_bytes(&vec![7u8]).unwrap(),
            b"[\x01\x00\x00\x00i\x07\x00\x00\x00"
        );
        assert_eq!(
            to_bytes(&BTreeMap::from([("k", 1)])).unwrap(),
            b"{u\x01\x00\x00\x00ki\x01\x00\x00\x000"
        );
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Point,
        Circle(f64),
        Rect { w: u32, h: u32 },
        Pair(i8, i8),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        name: String,
        scores: Vec<f64>,
        tags: HashMap<String, bool>,
        parent: Option<Box<Record>>,
        shape: Shape,
        raw: serde_bytes::ByteBuf,
    }

    #[test]
    fn values_come_back_unchanged() {
        for v in [
            i128::MIN + 1,
            -(1 << 70),
            i64::MIN.into(),
            -1,
            0,
            1 << 40,
            i128::MAX,
        ] {
            assert_eq!(round(&v), v);
        }
        assert_eq!(round(&u64::MAX), u64::MAX);
        assert_eq!(round(&f64::INFINITY), f64::INFINITY);
        assert!(round(&f64::NAN).is_nan());
        let record = Record {
            name: "a".into(),
            scores: vec![1.0, -2.5],
            tags: HashMap::from([("x".into(), true)]),
            parent: Some(Box::new(Record {
                name: "p".into(),
                scores: vec![],
                tags: HashMap::new(),
                parent: None,
                shape: Shape::Point,
                raw: serde_bytes::ByteBuf::new(),
            })),
            shape: Shape::Rect { w: 2, h: 3 },
            raw: serde_bytes::ByteBuf::from(vec![0, 255]),
        };
        assert_eq!(round(&record), record);
        for shape in [Shape::Point, Shape::Circle(1.0), Shape::Pair(-1, 1)] {
            assert_eq!(round(&shape), shape);
        }
        let keyed: HashMap<(i32, String), Vec<u8>> = HashMap::from([((1, "a".into()), vec![1])]);
        assert_eq!(round(&keyed), keyed);
    }

    #[test]
    fn arguments_are_a_tuple_and_keywords_a_dict() {
        let bytes = call_bytes(&(1, "x"), None::<&()>).unwrap();
        let (value, _) = read(&bytes).unwrap();
        assert_eq!(
            value,
            Value::Tuple(vec![
                Value::Tuple(vec![Value::Int(1), Value::Str("x".into())]),
                Value::None
            ])
        );
        let (value, _) = read(&call_bytes(&(), None::<&()>).unwrap()).unwrap();
        assert_eq!(value, Value::Tuple(vec![Value::Tuple(vec![]), Value::None]));
        let (value, _) =
            read(&call_bytes(&vec![1], Some(&BTreeMap::from([("sep", ",")]))).unwrap()).unwrap();
        assert_eq!(
            value,
            Value::Tuple(vec![
                Value::Tuple(vec![Value::List(vec![Value::Int(1)])]),
                Value::Dict(vec![(Value::Str("sep".into()), Value::Str(",".into()))])
            ])
        );
        let err = call_bytes(&(), Some(&5)).unwrap_err();
        assert!(err.to_string().contains("keyword arguments"), "{err}");
    }

    #[test]
    fn bad_values_are_named_with_their_place() {
        let err = to_bytes(&HashMap::from([(vec![1], 2)])).unwrap_err();
        assert!(err.to_string().contains("unhashable"), "{err}");
        let err = to_bytes(&vec![BTreeMap::from([(OrderedNan, 1)])]).unwrap_err();
        assert_eq!(err.path, ["[0]", "a key"]);
        assert!(
            err.to_string().contains("NaN cannot be a dict key"),
            "{err}"
        );

        let err = from_bytes::<i64>(&to_bytes(&(1i128 << 80)).unwrap()).unwrap_err();
        assert!(err.to_string().contains("does not fit i64"), "{err}");
        let err = from_bytes::<u8>(&to_bytes(&-1).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("Python int -1 does not fit u8"),
            "{err}"
        );
        let err =
            from_bytes::<Record>(&to_bytes(&BTreeMap::from([("name", 5)])).unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "name: expected a String, got Python int 5");
        let err = from_bytes::<Vec<(u8, String)>>(&to_bytes(&vec![(1, "a"), (2, "b")]).unwrap());
        assert!(err.is_ok());
        let err =
            from_bytes::<Vec<(u8, u8)>>(&to_bytes(&vec![(1, 2), (3, 400)]).unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "[1][1]: Python int 400 does not fit u8");
        let err = from_bytes::<String>(b"y\x00").unwrap_err();
        assert!(err.to_string().contains("marshal type 'y'"), "{err}");
    }

    /// A map key that serializes as NaN.
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct OrderedNan;

    impl Serialize for OrderedNan {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_f64(f64::NAN)
        }
    }
}
