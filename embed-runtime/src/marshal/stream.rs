//! Marshal data read straight into a Rust value, with no `Value` tree in
//! between: the hot path of every typed call's result.
//!
//! The common Python types (None, bool, small int, float, str, bytes,
//! tuple, list, set, dict) are decoded in place; anything else (ints past
//! 32 bits, enums) is read as a `Value` and handed to its deserializer. The
//! errors here say nothing of where: `from_bytes` reads the data once more
//! through `Value`, whose errors name the argument or field, so the two
//! paths must accept exactly the same inputs.

use serde::de::{self, DeserializeSeed, Visitor};

use super::{
    read, ConvertError, Value, BINARY_FLOAT, DICT, FALSE, FROZENSET, INT, INTERNED, LIST, NONE,
    NULL, SET, STRING, TRUE, TUPLE, UNICODE,
};

/// The marshal bytes not read yet.
pub(super) struct Stream<'de> {
    pub(super) bytes: &'de [u8],
}

fn cut_short() -> ConvertError {
    ConvertError::new("the marshal data from Python is cut short")
}

impl<'de> Stream<'de> {
    #[inline]
    fn peek(&self) -> Result<u8, ConvertError> {
        self.bytes.first().copied().ok_or_else(cut_short)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8], ConvertError> {
        if self.bytes.len() < n {
            return Err(cut_short());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// The 32-bit little-endian number after a type code.
    #[inline]
    fn int32(&mut self) -> Result<i32, ConvertError> {
        let four: [u8; 4] = self.take(4)?.try_into().map_err(|_| cut_short())?;
        Ok(i32::from_le_bytes(four))
    }

    #[inline]
    fn length(&mut self) -> Result<usize, ConvertError> {
        usize::try_from(self.int32()?)
            .map_err(|_| ConvertError::new("a negative length in marshal data"))
    }

    /// The next value as a `Value`, for the cases this reader leaves to it.
    fn value(&mut self) -> Result<Value, ConvertError> {
        let (value, rest) = read(self.bytes)?;
        self.bytes = rest;
        Ok(value)
    }

    /// The code of the next value, consumed when it is one of `codes`.
    #[inline]
    fn accept(&mut self, codes: &[u8]) -> Result<Option<u8>, ConvertError> {
        let code = self.peek()?;
        if codes.contains(&code) {
            self.bytes = &self.bytes[1..];
            Ok(Some(code))
        } else {
            Ok(None)
        }
    }

    #[inline]
    fn text(&mut self) -> Result<&'de str, ConvertError> {
        let n = self.length()?;
        std::str::from_utf8(self.take(n)?)
            .map_err(|_| ConvertError::new("a Python str with lone surrogates has no Rust String"))
    }

    fn seq<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, ConvertError> {
        let left = self.length()?;
        let mut items = Items { stream: self, left };
        let value = visitor.visit_seq(&mut items)?;
        // A visitor may stop early; the rest is skipped, as `Value` drops it.
        for _ in 0..items.left {
            items.stream.value()?;
        }
        Ok(value)
    }

    fn map<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, ConvertError> {
        let mut entries = Entries { stream: self };
        let value = visitor.visit_map(&mut entries)?;
        while entries.stream.peek()? != NULL {
            entries.stream.value()?;
        }
        entries.stream.bytes = &entries.stream.bytes[1..];
        Ok(value)
    }
}

macro_rules! int_method {
    ($($method:ident $visit:ident $ty:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
            match self.accept(&[INT, TRUE, FALSE])? {
                Some(INT) => {
                    let n = self.int32()?;
                    let fits = <$ty>::try_from(n).map_err(|_| ConvertError::new("does not fit"))?;
                    visitor.$visit(fits)
                }
                Some(code) => visitor.$visit(<$ty>::from(code == TRUE)),
                None => self.value()?.$method(visitor),
            }
        }
    )*};
}

/// Everything `Value`'s deserializer does, by the same rules.
impl<'de> de::Deserializer<'de> for &mut Stream<'de> {
    type Error = ConvertError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self.peek()? {
            NONE | TRUE | FALSE | INT | BINARY_FLOAT | UNICODE | INTERNED | STRING => {}
            TUPLE | LIST | SET | FROZENSET | DICT => {}
            _ => return self.value()?.deserialize_any(visitor),
        }
        let code = self.take(1)?[0];
        match code {
            NONE => visitor.visit_unit(),
            TRUE | FALSE => visitor.visit_bool(code == TRUE),
            INT => visitor.visit_i64(self.int32()?.into()),
            BINARY_FLOAT => self.float(visitor),
            UNICODE | INTERNED => visitor.visit_borrowed_str(self.text()?),
            STRING => {
                let n = self.length()?;
                visitor.visit_borrowed_bytes(self.take(n)?)
            }
            DICT => self.map(visitor),
            _ => self.seq(visitor),
        }
    }

    every_int_method!(int_method);

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self.accept(&[TRUE, FALSE])? {
            Some(code) => visitor.visit_bool(code == TRUE),
            None => self.value()?.deserialize_bool(visitor),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self.accept(&[BINARY_FLOAT, INT])? {
            Some(BINARY_FLOAT) => self.float(visitor),
            // Every 32-bit int is exact as an f64.
            Some(_) => visitor.visit_f64(self.int32()?.into()),
            None => self.value()?.deserialize_f64(visitor),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self.accept(&[UNICODE, INTERNED])? {
            Some(_) => visitor.visit_borrowed_str(self.text()?),
            None => self.value()?.deserialize_string(visitor),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self.accept(&[STRING, LIST, TUPLE])? {
            Some(STRING) => {
                let n = self.length()?;
                visitor.visit_borrowed_bytes(self.take(n)?)
            }
            Some(_) => self.seq(visitor),
            None => self.value()?.deserialize_byte_buf(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self.accept(&[NONE])? {
            Some(_) => visitor.visit_none(),
            None => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self.accept(&[NONE])? {
            Some(_) => visitor.visit_unit(),
            None => self.value()?.deserialize_unit(visitor),
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
        match self.accept(&[TUPLE, LIST, SET, FROZENSET])? {
            Some(_) => self.seq(visitor),
            None => self.value()?.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        let code = self.peek()?;
        if code == TUPLE || code == LIST {
            // The length is checked before any item, as `Value` does.
            let after_code = &self.bytes[1..];
            let n = Stream { bytes: after_code }.length()?;
            if n != len {
                return Err(ConvertError::new("a tuple of another length"));
            }
        }
        self.deserialize_seq(visitor)
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
        match self.accept(&[DICT])? {
            Some(_) => self.map(visitor),
            None => self.value()?.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        match self.accept(&[DICT])? {
            Some(_) => self.map(visitor),
            None => self.value()?.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        self.value()?.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConvertError> {
        match self.accept(&[UNICODE, INTERNED])? {
            Some(_) => visitor.visit_borrowed_str(self.text()?),
            None => self.value()?.deserialize_identifier(visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, ConvertError> {
        self.value()?;
        visitor.visit_unit()
    }
}

impl Stream<'_> {
    fn float<'de, V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, ConvertError> {
        let eight: [u8; 8] = self.take(8)?.try_into().map_err(|_| cut_short())?;
        visitor.visit_f64(f64::from_le_bytes(eight))
    }
}

/// The items of a tuple, list or set still to read.
struct Items<'a, 'de> {
    stream: &'a mut Stream<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
    type Error = ConvertError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ConvertError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.stream).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// The entries of a dict, up to its closing code.
struct Entries<'a, 'de> {
    stream: &'a mut Stream<'de>,
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = ConvertError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ConvertError> {
        if self.stream.peek()? == NULL {
            return Ok(None);
        }
        seed.deserialize(&mut *self.stream).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ConvertError> {
        seed.deserialize(&mut *self.stream)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};
    use std::fmt::Debug;

    use serde::de::DeserializeOwned;
    use serde::Deserialize;

    use super::super::{from_tree, to_bytes};
    use super::*;

    /// What the stream alone makes of `bytes` (None: it gave up).
    fn streamed<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
        let mut stream = Stream { bytes };
        let value = T::deserialize(&mut stream).ok()?;
        stream.bytes.is_empty().then_some(value)
    }

    /// The stream reads `bytes` itself, to the same value as the tree.
    fn fast<T: DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) -> T {
        let tree = from_tree::<T>(bytes).expect("the tree reads it");
        let stream = streamed::<T>(bytes).expect("the stream reads it");
        assert_eq!(stream, tree);
        stream
    }

    /// The stream refuses `bytes`, as the tree does.
    fn refused<T: DeserializeOwned + Debug>(bytes: &[u8]) {
        assert!(from_tree::<T>(bytes).is_err(), "the tree refuses it");
        assert!(streamed::<T>(bytes).is_none(), "the stream refuses it");
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Point {
        x: i32,
        label: Option<String>,
    }

    #[test]
    fn common_shapes_are_read_without_a_tree() {
        let map = to_bytes(&HashMap::from([("x", 1.5), ("double", 2.0)])).unwrap();
        assert_eq!(fast::<HashMap<String, f64>>(&map).len(), 2);
        assert_eq!(
            fast::<(i64, String)>(&to_bytes(&(7, "é")).unwrap()),
            (7, "é".into())
        );
        assert_eq!(
            fast::<Vec<Option<bool>>>(b"[\x02\x00\x00\x00NT"),
            [None, Some(true)]
        );
        // A set, an int where a float is wanted, a bool where an int is.
        assert_eq!(
            fast::<BTreeSet<u8>>(b"<\x01\x00\x00\x00i\x03\x00\x00\x00").len(),
            1
        );
        assert_eq!(fast::<f64>(b"i\xfe\xff\xff\xff"), -2.0);
        assert_eq!(fast::<u8>(b"T"), 1);
        assert_eq!(
            fast::<serde_bytes::ByteBuf>(b"s\x02\x00\x00\x00ab").as_ref(),
            b"ab"
        );
        // A struct skips the fields it does not know.
        let point = b"{u\x01\x00\x00\x00xi\x02\x00\x00\x00u\x03\x00\x00\x00zzz[\x01\x00\x00\x00N0";
        assert_eq!(fast::<Point>(point), Point { x: 2, label: None });
        // An int past 32 bits goes through a `Value`, to the same result.
        assert_eq!(fast::<u64>(&to_bytes(&(1u64 << 40)).unwrap()), 1 << 40);
        assert_eq!(fast::<serde_json::Value>(&map)["x"], 1.5);
    }

    #[test]
    fn what_the_tree_refuses_the_stream_refuses() {
        refused::<u8>(b"i\x00\x01\x00\x00");
        refused::<(i64, i64)>(
            b"(\x03\x00\x00\x00i\x01\x00\x00\x00i\x01\x00\x00\x00i\x01\x00\x00\x00",
        );
        refused::<String>(b"u\x03\x00\x00\x00\xed\xa0\x80");
        refused::<HashMap<String, f64>>(b"{u\x01\x00\x00\x00xu\x01\x00\x00\x00y0");
        refused::<Vec<i64>>(b"[\x02\x00\x00\x00i\x01\x00\x00\x00");
        refused::<bool>(b"N");
    }
}
