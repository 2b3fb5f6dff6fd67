//! Element types carried by streams, held in SRAM and computed on by the units,
//! and [`Values`], a typed vector of elements of one such type.
//!
//! A stream carries one byte per lane, so a wider type occupies several
//! consecutive streams (fp16: 2, fp32/int32: 4) and several consecutive SRAM
//! addresses (one byte-plane per address). See `ISA.md`, "Data types".

use half::f16;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An element type known to the machine and to the graph format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// Signed 8-bit integer (two's complement).
    I8,
    /// Signed 32-bit integer (two's complement).
    I32,
}

impl DType {
    /// All element types, in a fixed order.
    pub const ALL: [DType; 4] = [DType::F32, DType::F16, DType::I8, DType::I32];

    /// Size of one element in bytes; also the number of streams a vector of
    /// this type occupies and the number of SRAM addresses it spans.
    pub fn bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::I8 => 1,
        }
    }

    /// The lower-case name used in assembly and in `.graph` files' docs.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "i8",
            DType::I32 => "i32",
        }
    }

    /// Parses the name printed by [`DType::name`].
    pub fn from_name(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == s)
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed, dense vector of elements: a tensor's data, a stream vector or an
/// SRAM vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Values {
    /// fp32 elements.
    F32(Vec<f32>),
    /// fp16 elements.
    F16(Vec<f16>),
    /// int8 elements.
    I8(Vec<i8>),
    /// int32 elements.
    I32(Vec<i32>),
}

impl Values {
    /// A vector of `len` zeros of type `dtype`.
    pub fn zeros(dtype: DType, len: usize) -> Values {
        match dtype {
            DType::F32 => Values::F32(vec![0.0; len]),
            DType::F16 => Values::F16(vec![f16::ZERO; len]),
            DType::I8 => Values::I8(vec![0; len]),
            DType::I32 => Values::I32(vec![0; len]),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Values::F32(_) => DType::F32,
            Values::F16(_) => DType::F16,
            Values::I8(_) => DType::I8,
            Values::I32(_) => DType::I32,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::F16(v) => v.len(),
            Values::I8(v) => v.len(),
            Values::I32(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` widened to f64 (exact for every type).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Values::F32(v) => v[i] as f64,
            Values::F16(v) => v[i].to_f64(),
            Values::I8(v) => v[i] as f64,
            Values::I32(v) => v[i] as f64,
        }
    }

    /// The elements at `idx`, in that order (every index must be in range).
    pub fn gather(&self, idx: &[usize]) -> Values {
        match self {
            Values::F32(v) => Values::F32(idx.iter().map(|&i| v[i]).collect()),
            Values::F16(v) => Values::F16(idx.iter().map(|&i| v[i]).collect()),
            Values::I8(v) => Values::I8(idx.iter().map(|&i| v[i]).collect()),
            Values::I32(v) => Values::I32(idx.iter().map(|&i| v[i]).collect()),
        }
    }

    /// Elements `start..start + len`, padded with zeros past the end.
    pub fn slice_padded(&self, start: usize, len: usize) -> Values {
        self.slice_padded_to(start, len, len)
    }

    /// The first `width` elements of [`Values::slice_padded`]`(start, len)`,
    /// padded with zeros to `width`: one row's piece of a tensor laid into a
    /// lane vector, in one pass.
    pub fn slice_padded_to(&self, start: usize, len: usize, width: usize) -> Values {
        fn take<T: Copy>(v: &[T], start: usize, len: usize, width: usize, zero: T) -> Vec<T> {
            let have = v.get(start..).unwrap_or(&[]);
            let have = &have[..len.min(width).min(have.len())];
            let mut out = Vec::with_capacity(width);
            out.extend_from_slice(have);
            out.resize(width, zero);
            out
        }
        match self {
            Values::F32(v) => Values::F32(take(v, start, len, width, 0.0)),
            Values::F16(v) => Values::F16(take(v, start, len, width, f16::ZERO)),
            Values::I8(v) => Values::I8(take(v, start, len, width, 0)),
            Values::I32(v) => Values::I32(take(v, start, len, width, 0)),
        }
    }

    /// Little-endian bytes, element after element.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Values::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::I8(v) => v.iter().map(|x| *x as u8).collect(),
            Values::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// Reads elements from little-endian bytes; `None` if the length is not a
    /// multiple of the element size.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Option<Values> {
        if !bytes.len().is_multiple_of(dtype.bytes()) {
            return None;
        }
        Some(match dtype {
            DType::F32 => Values::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::F16 => Values::F16(
                bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::I8 => Values::I8(bytes.iter().map(|b| *b as i8).collect()),
            DType::I32 => Values::I32(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
        })
    }

    /// Splits elements into byte-planes: plane `b` holds byte `b` of each
    /// element, which is how a wide vector lies across streams and addresses
    /// ([`Values::write_byte_planes`] into separate vectors).
    pub fn to_byte_planes(&self) -> Vec<Vec<u8>> {
        let (w, n) = (self.dtype().bytes(), self.len());
        let mut flat = vec![0u8; w * n];
        self.write_byte_planes(&mut flat);
        (0..w).map(|b| flat[b * n..(b + 1) * n].to_vec()).collect()
    }

    /// The byte-planes written into `out`, plane after plane (plane `b`,
    /// byte `b` of each element, at `out[b * len..(b + 1) * len]`), without
    /// allocating;
    /// `false` (and `out` untouched) unless `out` holds exactly the
    /// `dtype().bytes() * len()` bytes.
    pub fn write_byte_planes(&self, out: &mut [u8]) -> bool {
        /// Byte `b` of each element of `v` into `plane`, for every `b`.
        fn planes<T: Copy, const W: usize>(v: &[T], out: &mut [u8], bytes: impl Fn(T) -> [u8; W]) {
            for (b, plane) in out.chunks_exact_mut(v.len().max(1)).enumerate() {
                for (o, &x) in plane.iter_mut().zip(v) {
                    *o = bytes(x)[b];
                }
            }
        }
        if out.len() != self.dtype().bytes() * self.len() {
            return false;
        }
        match self {
            Values::F32(v) => planes(v, out, f32::to_le_bytes),
            Values::F16(v) => planes(v, out, f16::to_le_bytes),
            Values::I8(v) => planes(v, out, |x: i8| x.to_le_bytes()),
            Values::I32(v) => planes(v, out, i32::to_le_bytes),
        }
        true
    }

    /// Rebuilds elements from byte-planes produced by [`Values::to_byte_planes`].
    pub fn from_byte_planes(dtype: DType, planes: &[&[u8]]) -> Option<Values> {
        let w = dtype.bytes();
        if planes.len() != w {
            return None;
        }
        let n = planes[0].len();
        if planes.iter().any(|p| p.len() != n) {
            return None;
        }
        // Zipped planes (no index per byte), so the loops vectorize.
        let four = || {
            planes[0]
                .iter()
                .zip(planes[1])
                .zip(planes[2])
                .zip(planes[3])
                .map(|(((a, b), c), d)| [*a, *b, *c, *d])
        };
        Some(match dtype {
            DType::I8 => Values::I8(planes[0].iter().map(|x| *x as i8).collect()),
            DType::F16 => Values::F16(
                planes[0]
                    .iter()
                    .zip(planes[1])
                    .map(|(a, b)| f16::from_le_bytes([*a, *b]))
                    .collect(),
            ),
            DType::F32 => Values::F32(four().map(f32::from_le_bytes).collect()),
            DType::I32 => Values::I32(four().map(i32::from_le_bytes).collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_padded_to_takes_then_pads() {
        let v = Values::I32(vec![1, 2, 3, 4, 5]);
        let s = |start, len, width| v.slice_padded_to(start, len, width);
        assert_eq!(s(1, 2, 4), Values::I32(vec![2, 3, 0, 0]));
        assert_eq!(s(3, 4, 4), Values::I32(vec![4, 5, 0, 0]), "past the end");
        assert_eq!(s(0, 5, 3), Values::I32(vec![1, 2, 3]), "cut to the width");
        assert_eq!(s(9, 2, 3), Values::I32(vec![0, 0, 0]), "start past the end");
        assert_eq!(v.slice_padded(4, 3), Values::I32(vec![5, 0, 0]));
        for (start, len, width) in [(0, 2, 5), (2, 5, 3), (4, 4, 4)] {
            assert_eq!(
                s(start, len, width),
                v.slice_padded(start, len).slice_padded(0, width),
                "{start} {len} {width}"
            );
        }
    }

    #[test]
    fn byte_planes_round_trip() {
        let v = Values::F32(vec![1.5, -2.25, 3.0e7]);
        let planes = v.to_byte_planes();
        assert_eq!(planes.len(), 4);
        let refs: Vec<&[u8]> = planes.iter().map(|p| p.as_slice()).collect();
        assert_eq!(Values::from_byte_planes(DType::F32, &refs), Some(v));
    }

    use proptest::prelude::*;

    proptest! {
        /// Plane `b` holds byte `b` of every element (as `to_le_bytes` lays
        /// them out), and the planes give the elements back bit for bit.
        #[test]
        fn byte_planes_split_le_bytes_and_round_trip(
            bits in prop::collection::vec(any::<u32>(), 0..40),
            which in 0usize..4,
        ) {
            let v = match which {
                0 => Values::F32(bits.iter().map(|b| f32::from_bits(*b)).collect()),
                1 => Values::F16(bits.iter().map(|b| f16::from_bits(*b as u16)).collect()),
                2 => Values::I8(bits.iter().map(|b| *b as i8).collect()),
                _ => Values::I32(bits.iter().map(|b| *b as i32).collect()),
            };
            let w = v.dtype().bytes();
            let planes = v.to_byte_planes();
            let bytes = v.to_le_bytes();
            prop_assert_eq!(planes.len(), w);
            for (b, plane) in planes.iter().enumerate() {
                let want: Vec<u8> = bytes.iter().skip(b).step_by(w).copied().collect();
                prop_assert_eq!(plane, &want);
            }
            let refs: Vec<&[u8]> = planes.iter().map(|p| p.as_slice()).collect();
            let back = Values::from_byte_planes(v.dtype(), &refs).expect("planes");
            prop_assert_eq!(back.to_le_bytes(), bytes);
            // Written in place, the planes lie one after the other; a
            // buffer of another size is refused.
            let mut flat = vec![0u8; w * v.len()];
            prop_assert!(v.write_byte_planes(&mut flat));
            prop_assert_eq!(flat, planes.concat());
            prop_assert!(!v.write_byte_planes(&mut vec![0u8; w * v.len() + 1]));
        }
    }

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
    }
}
