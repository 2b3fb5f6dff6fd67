//! A [`Values`] in the binary program as its element type and one byte
//! string of little-endian elements, instead of one serde element at a time.
//!
//! Used through `#[serde(with = "crate::le_bytes")]` by
//! [`crate::program::MemInit`]: the memory image is most of a program's
//! bytes (ResNet-50 int8: 58 MB of 128 MB), and encoding or decoding it
//! element by element was the largest part of writing and reading one.

use crate::dtype::{DType, Values};
use serde::de::{Error as _, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserializer, Serializer};
use std::fmt;

/// One byte string, written with `serialize_bytes`.
struct Bytes<'a>(&'a [u8]);

impl serde::Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Writes `values` as `(dtype, bytes)`.
pub fn serialize<S: Serializer>(values: &Values, s: S) -> Result<S::Ok, S::Error> {
    let mut t = s.serialize_tuple(2)?;
    t.serialize_element(&values.dtype())?;
    t.serialize_element(&Bytes(&values.to_le_bytes()))?;
    t.end()
}

/// Reads what [`serialize`] wrote; the byte string's length must be a whole
/// number of elements.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Values, D::Error> {
    d.deserialize_tuple(2, TypedBytes)
}

struct TypedBytes;

impl<'de> Visitor<'de> for TypedBytes {
    type Value = Values;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an element type and a byte string")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Values, A::Error> {
        let dtype: DType = seq
            .next_element()?
            .ok_or_else(|| A::Error::invalid_length(0, &self))?;
        seq.next_element_seed(Elements(dtype))?
            .ok_or_else(|| A::Error::invalid_length(1, &self))
    }
}

/// The byte string of elements of one type.
struct Elements(DType);

impl<'de> serde::de::DeserializeSeed<'de> for Elements {
    type Value = Values;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Values, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for Elements {
    type Value = Values;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a byte string of {} elements", self.0)
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Values, E> {
        Values::from_le_bytes(self.0, bytes).ok_or_else(|| {
            E::custom(format!(
                "{} bytes are not a whole number of {} elements",
                bytes.len(),
                self.0
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Image {
        #[serde(with = "super")]
        values: Values,
    }

    #[test]
    fn every_type_round_trips_bit_for_bit() {
        for values in [
            Values::F32(vec![1.5, -0.0, f32::NAN, f32::MIN_POSITIVE]),
            Values::F16(vec![f16::from_f32(0.25), f16::NEG_INFINITY]),
            Values::I8(vec![-128, 0, 127]),
            Values::I32(vec![i32::MIN, -1, 0, i32::MAX]),
            Values::I8(vec![]),
        ] {
            let image = Image { values };
            let bytes = postcard::to_allocvec(&image).expect("encodes");
            let back: Image = postcard::from_bytes(&bytes).expect("decodes");
            assert_eq!(back.values.to_le_bytes(), image.values.to_le_bytes());
            assert_eq!(back.values.dtype(), image.values.dtype());
        }
    }

    /// Three bytes cannot be fp32 elements.
    #[test]
    fn a_partial_element_is_an_error() {
        let bytes = postcard::to_allocvec(&(DType::F32, Bytes(&[1, 2, 3]))).expect("encodes");
        assert!(postcard::from_bytes::<Image>(&bytes).is_err());
    }
}
