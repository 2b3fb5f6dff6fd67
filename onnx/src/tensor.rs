//! [`Const`], a constant tensor as ONNX holds it (any numeric element type),
//! decoded from a `TensorProto` ([`Const::from_proto`]) with every length
//! checked, from `raw_data`, the typed fields or an external data file; and
//! its conversion to an lpu [`Tensor`] or `.graph` [`Initializer`].

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use half::{bf16, f16};
use lpu_graph::format::{InitData, Initializer};
use lpu_graph::tensor::{num_elements, MAX_ELEMENTS};
use lpu_graph::{DType, Tensor, Values};
use lpu_isa::narrow::{self, Format};

use crate::proto::{data_type as dt, TensorProto, DATA_LOCATION_EXTERNAL};

/// The elements of a [`Const`].
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// FLOAT (and BFLOAT16, widened exactly).
    F32(Vec<f32>),
    /// FLOAT16.
    F16(Vec<f16>),
    /// DOUBLE.
    F64(Vec<f64>),
    /// Every integer type and BOOL (0 or 1), widened to i64; UINT64 values
    /// above `i64::MAX` are rejected on decoding.
    Int(Vec<i64>),
}

impl Data {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F16(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::Int(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as f64 (exact except for integers beyond 2^53).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Data::F32(v) => v.get(i).map_or(0.0, |x| *x as f64),
            Data::F16(v) => v.get(i).map_or(0.0, |x| x.to_f64()),
            Data::F64(v) => v.get(i).copied().unwrap_or(0.0),
            Data::Int(v) => v.get(i).map_or(0.0, |x| *x as f64),
        }
    }

    /// The elements at `idx`, in that order (every index must be in range).
    pub fn gather(&self, idx: &[usize]) -> Data {
        fn g<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
            idx.iter().filter_map(|&i| v.get(i).copied()).collect()
        }
        match self {
            Data::F32(v) => Data::F32(g(v, idx)),
            Data::F16(v) => Data::F16(g(v, idx)),
            Data::F64(v) => Data::F64(g(v, idx)),
            Data::Int(v) => Data::Int(g(v, idx)),
        }
    }
}

/// A constant tensor with its ONNX element type.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    /// The ONNX data type code (see [`crate::proto::data_type`]).
    pub code: i32,
    /// Dimensions; `[]` is a scalar.
    pub shape: Vec<usize>,
    /// Exactly `product(shape)` elements, row-major.
    pub data: Data,
}

/// Size in bytes of one element of `code` in `raw_data`, for the supported
/// numeric types.
pub fn elem_size(code: i32) -> Option<usize> {
    Some(match code {
        dt::UINT8 | dt::INT8 | dt::BOOL => 1,
        dt::UINT16 | dt::INT16 | dt::FLOAT16 | dt::BFLOAT16 => 2,
        dt::FLOAT | dt::INT32 | dt::UINT32 => 4,
        dt::INT64 | dt::UINT64 | dt::DOUBLE => 8,
        _ => return None,
    })
}

/// The ONNX codes lpu reads that pack elements below a byte or hold a
/// narrow float: the [`Format`] each one's values follow and its width in
/// bits (INT4/UINT4/FLOAT4E2M1 two per byte, INT2/UINT2 four per byte, low
/// bits first).
pub fn narrow_type(code: i32) -> Option<(Format, usize)> {
    Some(match code {
        17 => (Format::E4m3fn, 8),
        18 => (Format::E4m3fnuz, 8),
        19 => (Format::E5m2, 8),
        20 => (Format::E5m2fnuz, 8),
        21 => (Format::U4, 4),
        22 => (Format::I4, 4),
        23 => (Format::E2m1, 4),
        24 => (Format::E8m0Up, 8),
        25 => (Format::U2, 2),
        26 => (Format::I2, 2),
        _ => return None,
    })
}

/// Bytes of `raw_data` that `n` elements of `code` take.
fn raw_len(code: i32, n: usize) -> Option<usize> {
    match narrow_type(code) {
        Some((_, bits)) => Some(n.div_ceil(8 / bits)),
        None => elem_size(code).map(|s| n * s),
    }
}

/// `n` elements of a narrow type from packed bytes: floats decoded to f32
/// (exactly), integers sign- or zero-extended.
fn unpack_narrow(f: Format, bits: usize, bytes: &[u8], n: usize) -> Data {
    let per = 8 / bits;
    let mask = ((1u16 << bits) - 1) as u8;
    let raw =
        (0..n).map(|i| (bytes.get(i / per).copied().unwrap_or(0) >> ((i % per) * bits)) & mask);
    match f {
        Format::I4 | Format::I2 => Data::Int(
            raw.map(|b| {
                let v = b as i64;
                if v >= 1 << (bits - 1) {
                    v - (1 << bits)
                } else {
                    v
                }
            })
            .collect(),
        ),
        Format::U4 | Format::U2 => Data::Int(raw.map(|b| b as i64).collect()),
        _ => Data::F32(raw.map(|b| narrow::decode8(f, b) as f32).collect()),
    }
}

/// Checks ONNX dims (non-negative, at most [`MAX_ELEMENTS`] elements) and
/// returns them as `usize` with the element count.
pub fn checked_dims(dims: &[i64]) -> Result<(Vec<usize>, usize), String> {
    let mut shape = Vec::with_capacity(dims.len().min(64));
    for (k, &d) in dims.iter().enumerate() {
        if d < 0 {
            return Err(format!("dimension #{k} is {d}; expected >= 0"));
        }
        shape.push(usize::try_from(d).map_err(|_| format!("dimension #{k} ({d}) is too large"))?);
    }
    let n = num_elements(&shape).ok_or_else(|| {
        format!("shape {shape:?} has more than 2^28 = {MAX_ELEMENTS} elements, the largest tensor supported")
    })?;
    Ok((shape, n))
}

impl Const {
    /// A constant, checking that the data has `product(shape)` elements.
    pub fn new(code: i32, shape: Vec<usize>, data: Data) -> Result<Const, String> {
        let n = num_elements(&shape)
            .ok_or_else(|| format!("shape {shape:?} has more than 2^28 elements"))?;
        if n != data.len() {
            return Err(format!(
                "shape {shape:?} has {n} elements but {} values were given",
                data.len()
            ));
        }
        Ok(Const { code, shape, data })
    }

    /// A 1-D INT64 tensor.
    pub fn ints(v: Vec<i64>) -> Const {
        Const {
            code: dt::INT64,
            shape: vec![v.len()],
            data: Data::Int(v),
        }
    }

    /// A FLOAT scalar (shape `[]`).
    pub fn scalar_f32(x: f32) -> Const {
        Const {
            code: dt::FLOAT,
            shape: vec![],
            data: Data::F32(vec![x]),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements as integers, if this is an integer tensor.
    pub fn as_ints(&self) -> Option<&[i64]> {
        match &self.data {
            Data::Int(v) => Some(v),
            _ => None,
        }
    }

    /// Decodes a `TensorProto`. External data is read relative to
    /// `base_dir`; `None` refuses external data (test data files).
    pub fn from_proto(t: &TensorProto, base_dir: Option<&Path>) -> Result<Const, String> {
        let code = t.data_type;
        let (shape, n) = checked_dims(&t.dims)?;
        let want = raw_len(code, n).ok_or_else(|| {
            format!(
                "element type {} is not supported (supported: FLOAT, FLOAT16, BFLOAT16, DOUBLE, INT8, UINT8, INT16, UINT16, INT32, UINT32, INT64, UINT64, BOOL, and held widened: FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ, FLOAT8E8M0, FLOAT4E2M1, INT4, UINT4, INT2, UINT2)",
                dt::name(code)
            )
        })?;
        let external;
        let raw: Option<&[u8]> = if t.data_location == DATA_LOCATION_EXTERNAL {
            let dir = base_dir.ok_or("external data is not allowed here")?;
            external = read_external(t, dir, want)?;
            Some(&external)
        } else if !t.raw_data.is_empty() || n == 0 {
            Some(&t.raw_data)
        } else {
            None
        };
        let data = match raw {
            Some(bytes) => {
                if bytes.len() != want {
                    return Err(format!(
                        "raw data has {} bytes; expected {want} ({n} elements of {})",
                        bytes.len(),
                        dt::name(code)
                    ));
                }
                match narrow_type(code) {
                    Some((f, bits)) => unpack_narrow(f, bits, bytes, n),
                    None => from_raw(code, bytes)?,
                }
            }
            None => from_typed(t, code, n)?,
        };
        let data = match (code, data) {
            (dt::BFLOAT16, Data::Int(bits)) => Data::F32(
                bits.iter()
                    .map(|&b| bf16::from_bits(b as u16).to_f32())
                    .collect(),
            ),
            (_, d) => d,
        };
        Const::new(code, shape, data)
    }

    /// This tensor as an lpu [`Tensor`] of `dtype`: floats are rounded
    /// (DOUBLE to f32 is the documented narrowing), integers must fit.
    pub fn to_tensor(&self, dtype: DType) -> Result<Tensor, String> {
        let n = self.len();
        let values = match (&self.data, dtype) {
            (Data::F32(v), DType::F32) => Values::F32(v.clone()),
            (Data::F16(v), DType::F16) => Values::F16(v.clone()),
            (Data::Int(v), d) if !d.is_float() => {
                let (lo, hi) = int_range(d);
                if let Some((k, x)) = v.iter().enumerate().find(|(_, x)| **x < lo || **x > hi) {
                    return Err(format!(
                        "element #{k} is {x}, outside the range of {d} [{lo}, {hi}]"
                    ));
                }
                let bytes: Vec<u8> = v
                    .iter()
                    .flat_map(|x| x.to_le_bytes().into_iter().take(d.bytes()))
                    .collect();
                Values::from_le_bytes(d, &bytes).ok_or("internal: byte length")?
            }
            (data, d) if d.is_float() => {
                let f: Vec<f64> = (0..n).map(|i| data.get_f64(i)).collect();
                lpu_graph::random::convert_f64(d, &f)
            }
            (_, d) => {
                return Err(format!(
                    "a {} tensor cannot become {d}",
                    dt::name(self.code)
                ))
            }
        };
        Tensor::new(self.shape.clone(), values).map_err(|e| e.to_string())
    }

    /// The `.graph` initializer for this tensor as `dtype` (values inline).
    pub fn to_initializer(&self, name: &str, dtype: DType) -> Result<Initializer, String> {
        if !dtype.is_float() {
            // Range check through the same path as tensors.
            if let Data::Int(v) = &self.data {
                let (lo, hi) = int_range(dtype);
                if let Some((k, x)) = v.iter().enumerate().find(|(_, x)| **x < lo || **x > hi) {
                    return Err(format!(
                        "element #{k} is {x}, outside the range of {dtype} [{lo}, {hi}]"
                    ));
                }
            } else {
                return Err(format!(
                    "a {} tensor cannot become {dtype}",
                    dt::name(self.code)
                ));
            }
        }
        let values: Vec<f64> = (0..self.len()).map(|i| self.data.get_f64(i)).collect();
        Ok(Initializer {
            name: name.to_string(),
            dtype,
            shape: self.shape.clone(),
            data: InitData::Inline(values),
        })
    }
}

/// The value range of an integer lpu type (by its byte width).
fn int_range(d: DType) -> (i64, i64) {
    match d.bytes() {
        1 => (i8::MIN as i64, i8::MAX as i64),
        2 => (i16::MIN as i64, i16::MAX as i64),
        4 => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Elements of `code` from little-endian raw bytes (length already checked).
fn from_raw(code: i32, b: &[u8]) -> Result<Data, String> {
    fn chunks<const N: usize>(b: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        b.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
    }
    Ok(match code {
        dt::FLOAT => Data::F32(chunks::<4>(b).map(f32::from_le_bytes).collect()),
        dt::FLOAT16 => Data::F16(chunks::<2>(b).map(f16::from_le_bytes).collect()),
        dt::BFLOAT16 => Data::Int(
            chunks::<2>(b)
                .map(|c| u16::from_le_bytes(c) as i64)
                .collect(),
        ),
        dt::DOUBLE => Data::F64(chunks::<8>(b).map(f64::from_le_bytes).collect()),
        dt::INT8 => Data::Int(b.iter().map(|&x| x as i8 as i64).collect()),
        dt::UINT8 => Data::Int(b.iter().map(|&x| x as i64).collect()),
        dt::BOOL => Data::Int(b.iter().map(|&x| (x != 0) as i64).collect()),
        dt::INT16 => Data::Int(
            chunks::<2>(b)
                .map(|c| i16::from_le_bytes(c) as i64)
                .collect(),
        ),
        dt::UINT16 => Data::Int(
            chunks::<2>(b)
                .map(|c| u16::from_le_bytes(c) as i64)
                .collect(),
        ),
        dt::INT32 => Data::Int(
            chunks::<4>(b)
                .map(|c| i32::from_le_bytes(c) as i64)
                .collect(),
        ),
        dt::UINT32 => Data::Int(
            chunks::<4>(b)
                .map(|c| u32::from_le_bytes(c) as i64)
                .collect(),
        ),
        dt::INT64 => Data::Int(chunks::<8>(b).map(i64::from_le_bytes).collect()),
        dt::UINT64 => Data::Int(
            chunks::<8>(b)
                .map(|c| {
                    i64::try_from(u64::from_le_bytes(c))
                        .map_err(|_| "a UINT64 element exceeds 2^63 - 1".to_string())
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(format!("element type {} is not supported", dt::name(code))),
    })
}

/// Elements of `code` from the typed repeated field ONNX assigns to it.
fn from_typed(t: &TensorProto, code: i32, n: usize) -> Result<Data, String> {
    let count = |field: &str, len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(format!(
                "{field} has {len} element(s); expected {n}, the number of elements of the shape{}",
                if len == 0 {
                    " (the tensor carries no data: raw_data and the typed fields are empty)"
                } else {
                    ""
                }
            ))
        }
    };
    if let Some((f, bits)) = narrow_type(code) {
        // One int32 per byte of the packed form (one per element for the
        // 8-bit types).
        let want = n.div_ceil(8 / bits);
        if t.int32_data.len() != want {
            return Err(format!(
                "int32_data has {} element(s); expected {want} for {n} {} element(s)",
                t.int32_data.len(),
                dt::name(code)
            ));
        }
        let bytes: Vec<u8> = t.int32_data.iter().map(|&x| x as u8).collect();
        return Ok(unpack_narrow(f, bits, &bytes, n));
    }
    Ok(match code {
        dt::FLOAT => {
            count("float_data", t.float_data.len())?;
            Data::F32(t.float_data.clone())
        }
        dt::DOUBLE => {
            count("double_data", t.double_data.len())?;
            Data::F64(t.double_data.clone())
        }
        dt::INT64 => {
            count("int64_data", t.int64_data.len())?;
            Data::Int(t.int64_data.clone())
        }
        dt::UINT32 | dt::UINT64 => {
            count("uint64_data", t.uint64_data.len())?;
            let v = t
                .uint64_data
                .iter()
                .map(|&x| {
                    if code == dt::UINT32 && x > u32::MAX as u64 {
                        Err(format!("a UINT32 element is {x}"))
                    } else {
                        i64::try_from(x).map_err(|_| "a UINT64 element exceeds 2^63 - 1".into())
                    }
                })
                .collect::<Result<_, String>>()?;
            Data::Int(v)
        }
        dt::FLOAT16 => {
            count("int32_data", t.int32_data.len())?;
            Data::F16(
                t.int32_data
                    .iter()
                    .map(|&x| f16::from_bits(x as u16))
                    .collect(),
            )
        }
        _ => {
            count("int32_data", t.int32_data.len())?;
            let (lo, hi): (i64, i64) = match code {
                dt::INT8 => (-128, 127),
                dt::UINT8 => (0, 255),
                dt::BOOL => (0, 1),
                dt::INT16 => (i16::MIN as i64, i16::MAX as i64),
                dt::UINT16 | dt::BFLOAT16 => (0, u16::MAX as i64),
                _ => (i32::MIN as i64, i32::MAX as i64),
            };
            let v: Vec<i64> = t.int32_data.iter().map(|&x| x as i64).collect();
            if let Some(x) = v.iter().find(|x| **x < lo || **x > hi) {
                return Err(format!(
                    "int32_data holds {x}, outside the range of {} [{lo}, {hi}]",
                    dt::name(code)
                ));
            }
            Data::Int(v)
        }
    })
}

/// Reads the bytes of an external tensor: `location` (relative to
/// `base_dir`, no `..`, not absolute), `offset` and `length` (which, when
/// given, must equal the expected `want` bytes).
fn read_external(t: &TensorProto, base_dir: &Path, want: usize) -> Result<Vec<u8>, String> {
    let mut location = None;
    let mut offset: u64 = 0;
    let mut length: Option<u64> = None;
    for e in &t.external_data {
        let num = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("external_data '{}' is '{v}'; expected a number", e.key))
        };
        match e.key.as_str() {
            "location" => location = Some(e.value.clone()),
            "offset" => offset = num(&e.value)?,
            "length" => length = Some(num(&e.value)?),
            _ => {}
        }
    }
    let location = location.ok_or("external data without a 'location'")?;
    let rel = Path::new(&location);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "external data location '{location}' must be a relative path inside the model's directory"
        ));
    }
    if let Some(len) = length {
        if len != want as u64 {
            return Err(format!(
                "external data length is {len} bytes; the shape and type need {want}"
            ));
        }
    }
    let path = base_dir.join(rel);
    let mut f = std::fs::File::open(&path)
        .map_err(|e| format!("cannot open external data file '{}': {e}", path.display()))?;
    let size = f
        .metadata()
        .map_err(|e| format!("cannot read external data file '{}': {e}", path.display()))?
        .len();
    if offset.checked_add(want as u64).is_none_or(|end| end > size) {
        return Err(format!(
            "external data file '{}' has {size} bytes; the tensor needs {want} bytes at offset {offset}",
            path.display()
        ));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("cannot seek in '{}': {e}", path.display()))?;
    let mut buf = vec![0u8; want];
    f.read_exact(&mut buf)
        .map_err(|e| format!("cannot read external data file '{}': {e}", path.display()))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(code: i32, dims: &[i64]) -> TensorProto {
        TensorProto {
            data_type: code,
            dims: dims.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn narrow_types_unpack_low_bits_first() {
        // INT4: 3 elements in 2 bytes, low nibble first, sign-extended.
        let mut t = tp(22, &[3]);
        t.raw_data = vec![0x21, 0x08];
        assert_eq!(
            Const::from_proto(&t, None).unwrap().data,
            Data::Int(vec![1, 2, -8])
        );
        // UINT2: 5 elements in 2 bytes.
        let mut t = tp(25, &[5]);
        t.raw_data = vec![0b1110_0100, 0b0000_0011];
        assert_eq!(
            Const::from_proto(&t, None).unwrap().data,
            Data::Int(vec![0, 1, 2, 3, 3])
        );
        // FLOAT8E4M3FN in raw data and in int32_data; FLOAT4E2M1 packed.
        let mut t = tp(17, &[2]);
        t.raw_data = vec![0x7e, 0xff];
        let c = Const::from_proto(&t, None).unwrap();
        assert_eq!(c.data.get_f64(0), 448.0);
        assert!(c.data.get_f64(1).is_nan());
        let mut t = tp(17, &[1]);
        t.int32_data = vec![0x38];
        assert_eq!(
            Const::from_proto(&t, None).unwrap().data,
            Data::F32(vec![1.0])
        );
        let mut t = tp(23, &[2]);
        t.raw_data = vec![0xf7];
        assert_eq!(
            Const::from_proto(&t, None).unwrap().data,
            Data::F32(vec![6.0, -6.0])
        );
        // A wrong packed length is an error, not a truncation.
        let mut t = tp(22, &[3]);
        t.raw_data = vec![0x21];
        let e = Const::from_proto(&t, None).unwrap_err();
        assert!(e.contains("expected 2"), "{e}");
        // The lpu type holding each: f32 for the floats, i8 for the ints.
        assert_eq!(crate::import::lpu_dtype(17, None).unwrap().0, DType::F32);
        assert_eq!(crate::import::lpu_dtype(22, None).unwrap().0, DType::I8);
        assert_eq!(
            crate::import::lpu_dtype(dt::UINT8, None).unwrap().0,
            DType::I32
        );
    }

    #[test]
    fn raw_and_typed_agree() {
        let mut a = tp(dt::FLOAT, &[2]);
        a.raw_data = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let mut b = tp(dt::FLOAT, &[2]);
        b.float_data = vec![1.5, -2.0];
        assert_eq!(
            Const::from_proto(&a, None).unwrap(),
            Const::from_proto(&b, None).unwrap()
        );
        let mut i = tp(dt::INT64, &[3]);
        i.int64_data = vec![1, -1, 7];
        assert_eq!(
            Const::from_proto(&i, None).unwrap().as_ints(),
            Some(&[1, -1, 7][..])
        );
    }

    #[test]
    fn every_numeric_type_decodes() {
        for (code, bytes) in [
            (dt::INT8, vec![0xff]),
            (dt::UINT8, vec![0xff]),
            (dt::BOOL, vec![2]),
            (dt::INT16, vec![0xff, 0xff]),
            (dt::UINT16, vec![0xff, 0xff]),
            (dt::INT32, (-5i32).to_le_bytes().to_vec()),
            (dt::UINT32, u32::MAX.to_le_bytes().to_vec()),
            (dt::INT64, (-5i64).to_le_bytes().to_vec()),
            (dt::UINT64, 5u64.to_le_bytes().to_vec()),
            (dt::FLOAT16, f16::from_f32(0.5).to_le_bytes().to_vec()),
            (dt::BFLOAT16, bf16::from_f32(0.5).to_le_bytes().to_vec()),
            (dt::DOUBLE, 0.25f64.to_le_bytes().to_vec()),
        ] {
            let mut t = tp(code, &[1]);
            t.raw_data = bytes;
            let c = Const::from_proto(&t, None).unwrap();
            let want = match code {
                dt::INT8 | dt::INT16 => -1.0,
                dt::UINT8 => 255.0,
                dt::BOOL => 1.0,
                dt::UINT16 => 65535.0,
                dt::INT32 | dt::INT64 => -5.0,
                dt::UINT32 => u32::MAX as f64,
                dt::UINT64 => 5.0,
                dt::DOUBLE => 0.25,
                _ => 0.5,
            };
            assert_eq!(c.data.get_f64(0), want, "{}", dt::name(code));
        }
    }

    #[test]
    fn lengths_are_checked() {
        let mut t = tp(dt::FLOAT, &[3]);
        t.raw_data = vec![0; 11];
        assert!(Const::from_proto(&t, None)
            .unwrap_err()
            .contains("11 bytes; expected 12"));
        let t = tp(dt::FLOAT, &[3]);
        assert!(Const::from_proto(&t, None)
            .unwrap_err()
            .contains("carries no data"));
        let t = tp(dt::FLOAT, &[1 << 20, 1 << 20]);
        assert!(Const::from_proto(&t, None).unwrap_err().contains("2^28"));
        let t = tp(dt::FLOAT, &[-1]);
        assert!(Const::from_proto(&t, None).unwrap_err().contains(">= 0"));
        let t = tp(dt::STRING, &[1]);
        assert!(Const::from_proto(&t, None)
            .unwrap_err()
            .contains("STRING is not supported"));
        let mut t = tp(dt::INT8, &[1]);
        t.int32_data = vec![300];
        assert!(Const::from_proto(&t, None).unwrap_err().contains("300"));
    }

    #[test]
    fn external_data() {
        let dir = std::env::temp_dir().join(format!("lpu-onnx-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes: Vec<u8> = [9u8, 9]
            .into_iter()
            .chain([1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()))
            .collect();
        std::fs::write(dir.join("w.bin"), &bytes).unwrap();
        let entry = |k: &str, v: &str| crate::proto::StringStringEntryProto {
            key: k.into(),
            value: v.into(),
        };
        let mut t = tp(dt::FLOAT, &[2]);
        t.data_location = DATA_LOCATION_EXTERNAL;
        t.external_data = vec![entry("location", "w.bin"), entry("offset", "2")];
        let c = Const::from_proto(&t, Some(&dir)).unwrap();
        assert_eq!(c.data, Data::F32(vec![1.0, 2.0]));
        assert!(Const::from_proto(&t, None).is_err());
        t.external_data.push(entry("length", "4"));
        assert!(Const::from_proto(&t, Some(&dir))
            .unwrap_err()
            .contains("length is 4"));
        t.external_data = vec![entry("location", "w.bin"), entry("offset", "3")];
        assert!(Const::from_proto(&t, Some(&dir))
            .unwrap_err()
            .contains("has 10 bytes"));
        t.external_data = vec![entry("location", "../w.bin")];
        assert!(Const::from_proto(&t, Some(&dir))
            .unwrap_err()
            .contains("relative path"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn conversions() {
        let c = Const::ints(vec![1, 300]);
        assert!(c.to_tensor(DType::I8).unwrap_err().contains("300"));
        assert_eq!(
            c.to_tensor(DType::I32).unwrap().values,
            Values::I32(vec![1, 300])
        );
        let d = Const::new(dt::DOUBLE, vec![1], Data::F64(vec![0.5])).unwrap();
        assert_eq!(
            d.to_tensor(DType::F32).unwrap().values,
            Values::F32(vec![0.5])
        );
        assert!(d.to_initializer("d", DType::I32).is_err());
    }
}
