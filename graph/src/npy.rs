//! NumPy `.npy` files (format versions 1.0, 2.0 and 3.0) holding one tensor of
//! a supported type: `<f4` (f32), `<f2` (f16), `|i1` (i8), `<i4` (i32).
//! Fortran-order files are read (and transposed into row-major order);
//! written files are version 1.0, C order, with the header padded so the
//! data starts at a multiple of 64 bytes, as NumPy does.

use std::path::Path;

use lpu_isa::{DType, Values};

use crate::error::GraphError;
use crate::tensor::{checked_elements, Tensor};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads the `.npy` file at `path`.
pub fn read_npy(path: &Path) -> Result<Tensor, GraphError> {
    let bytes = std::fs::read(path).map_err(|e| GraphError::Io {
        path: path.display().to_string(),
        message: format!("cannot read .npy file: {e}"),
    })?;
    decode_npy(&bytes, &path.display().to_string())
}

/// Writes `t` to `path` as a `.npy` file.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), GraphError> {
    std::fs::write(path, encode_npy(t)).map_err(|e| GraphError::Io {
        path: path.display().to_string(),
        message: format!("cannot write .npy file: {e}"),
    })
}

fn descr(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "<f4",
        DType::F16 => "<f2",
        DType::I8 => "|i1",
        DType::I32 => "<i4",
    }
}

/// The bytes of a version 1.0 `.npy` file holding `t`.
pub fn encode_npy(t: &Tensor) -> Vec<u8> {
    let shape = match t.shape.as_slice() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        descr(t.dtype())
    );
    // magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.len() * t.dtype().bytes());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&t.values.to_le_bytes());
    out
}

/// Decodes the bytes of a `.npy` file; `source` names it in errors.
pub fn decode_npy(bytes: &[u8], source: &str) -> Result<Tensor, GraphError> {
    let err = |message: String| GraphError::Npy {
        file: source.to_string(),
        message,
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(err(
            "not a .npy file: it does not start with the magic string \\x93NUMPY".into(),
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or_else(|| err("truncated .npy header".into()))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        _ => {
            return Err(err(format!(
                ".npy format version {major}.{minor} is not supported; expected 1.0, 2.0 or 3.0"
            )))
        }
    };
    let header = start
        .checked_add(header_len)
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| {
            err(format!(
                "truncated .npy header: it claims {header_len} bytes but the file has {}",
                bytes.len()
            ))
        })?;
    let header =
        std::str::from_utf8(header).map_err(|_| err(".npy header is not valid text".into()))?;
    let data = &bytes[start + header_len..];

    let descr_s = dict_str(header, "descr").ok_or_else(|| {
        err(format!(
            "the .npy header has no 'descr' string: {}",
            header.trim()
        ))
    })?;
    let dtype = match descr_s.as_str() {
        "<f4" => DType::F32,
        "<f2" => DType::F16,
        "|i1" | "<i1" | "i1" | ">i1" => DType::I8,
        "<i4" => DType::I32,
        other => {
            return Err(err(format!(
                "element type '{other}' is not supported; expected '<f4' (f32), '<f2' (f16), '|i1' (i8) or '<i4' (i32)"
            )))
        }
    };
    let fortran = match dict_raw(header, "fortran_order") {
        Some(v) if v.starts_with("True") => true,
        Some(v) if v.starts_with("False") => false,
        _ => {
            return Err(err(format!(
                "the .npy header has no 'fortran_order' True/False: {}",
                header.trim()
            )))
        }
    };
    let shape = dict_raw(header, "shape")
        .and_then(parse_tuple)
        .ok_or_else(|| {
            err(format!(
                "the .npy header has no valid 'shape' tuple: {}",
                header.trim()
            ))
        })?;
    let n = checked_elements(&shape).map_err(err)?;
    let want = n * dtype.bytes();
    if data.len() != want {
        return Err(err(format!(
            "the data is {} bytes; expected {want} for {} {shape:?}",
            data.len(),
            dtype
        )));
    }
    let values = Values::from_le_bytes(dtype, data)
        .ok_or_else(|| err("the data size is not a multiple of the element size".into()))?;
    let values = if fortran && shape.len() > 1 {
        fortran_to_c(&values, &shape)
    } else {
        values
    };
    Tensor::new(shape, values).map_err(|e| err(e.to_string()))
}

/// The text following `'key':` in a Python dict literal, trimmed at the start.
fn dict_raw<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_single = format!("'{key}'");
    let pat_double = format!("\"{key}\"");
    let at = header
        .find(&pat_single)
        .map(|i| i + pat_single.len())
        .or_else(|| header.find(&pat_double).map(|i| i + pat_double.len()))?;
    let rest = header.get(at..)?.trim_start();
    Some(rest.strip_prefix(':')?.trim_start())
}

/// A quoted string value of `key`.
fn dict_str(header: &str, key: &str) -> Option<String> {
    let raw = dict_raw(header, key)?;
    let q = raw.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &raw[1..];
    let end = body.find(q)?;
    Some(body[..end].to_string())
}

/// `(1, 784)`, `(5,)`, `()` → dimensions.
fn parse_tuple(raw: &str) -> Option<Vec<usize>> {
    let body = raw.strip_prefix('(')?;
    let body = &body[..body.find(')')?];
    body.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>().ok())
        .collect()
}

/// Reorders column-major `values` of `shape` into row-major order.
fn fortran_to_c(values: &Values, shape: &[usize]) -> Values {
    // Column-major strides.
    let mut strides = Vec::with_capacity(shape.len());
    let mut s = 1;
    for &d in shape {
        strides.push(s);
        s *= d;
    }
    let n: usize = shape.iter().product();
    let mut order = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        order.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>());
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    fn gather<T: Copy>(v: &[T], order: &[usize]) -> Vec<T> {
        order.iter().filter_map(|&i| v.get(i).copied()).collect()
    }
    match values {
        Values::F32(v) => Values::F32(gather(v, &order)),
        Values::F16(v) => Values::F16(gather(v, &order)),
        Values::I8(v) => Values::I8(gather(v, &order)),
        Values::I32(v) => Values::I32(gather(v, &order)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn round_trip_all_types() {
        let cases = [
            Tensor::new(
                vec![2, 3],
                Values::F32(vec![1.0, -2.5, 3.25, 0.0, 1e-8, -7.0]),
            )
            .unwrap(),
            Tensor::new(
                vec![3],
                Values::F16(vec![f16::from_f32(0.5), f16::MAX, f16::MIN]),
            )
            .unwrap(),
            Tensor::new(vec![], Values::I8(vec![-128])).unwrap(),
            Tensor::new(vec![1, 2, 2], Values::I32(vec![1, -2, i32::MAX, i32::MIN])).unwrap(),
        ];
        for t in cases {
            let bytes = encode_npy(&t);
            let header_end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!(header_end % 64, 0);
            assert_eq!(decode_npy(&bytes, "mem").unwrap(), t);
        }
        let dir = std::env::temp_dir().join(format!("lpu-graph-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.npy");
        let t = Tensor::new(vec![2], Values::F32(vec![1.0, 2.0])).unwrap();
        write_npy(&p, &t).unwrap();
        assert_eq!(read_npy(&p).unwrap(), t);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn decodes_hand_written_header() {
        // As NumPy 1.x writes np.array([[1, 2, 3], [4, 5, 6]], dtype='<i4').
        let mut header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }".to_string();
        let pad = (64 - (10 + header.len() + 1) % 64) % 64;
        header.push_str(&" ".repeat(pad));
        header.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        for x in 1i32..=6 {
            b.extend_from_slice(&x.to_le_bytes());
        }
        let t = decode_npy(&b, "hand").unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.values, Values::I32(vec![1, 2, 3, 4, 5, 6]));

        // The same matrix in Fortran order, version 2.0 header.
        let header = "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }\n";
        let mut b = b"\x93NUMPY\x02\x00".to_vec();
        b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        for x in [1i32, 4, 2, 5, 3, 6] {
            b.extend_from_slice(&x.to_le_bytes());
        }
        let t = decode_npy(&b, "hand").unwrap();
        assert_eq!(t.values, Values::I32(vec![1, 2, 3, 4, 5, 6]));
    }

    #[test]
    fn bad_files() {
        let t = Tensor::new(vec![4], Values::F32(vec![0.0; 4])).unwrap();
        let good = encode_npy(&t);
        let e = decode_npy(&good[..good.len() - 1], "x.npy")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "x.npy: the data is 15 bytes; expected 16 for f32 [4]");
        let e = decode_npy(b"hello", "x.npy").unwrap_err().to_string();
        assert!(e.contains("not a .npy file"), "{e}");
        let mut bad = good.clone();
        let pos = bad.windows(3).position(|w| w == b"<f4").unwrap();
        bad[pos..pos + 3].copy_from_slice(b"<f8");
        let e = decode_npy(&bad, "x.npy").unwrap_err().to_string();
        assert!(e.contains("'<f8' is not supported"), "{e}");
        for cut in 0..good.len() {
            let _ = decode_npy(&good[..cut], "x.npy");
        }
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 9999999), }";
        let mut huge = b"\x93NUMPY\x01\x00".to_vec();
        huge.extend_from_slice(&(h.len() as u16).to_le_bytes());
        huge.extend_from_slice(h.as_bytes());
        let e = decode_npy(&huge, "h.npy").unwrap_err().to_string();
        assert!(e.contains("2^28"), "{e}");
    }
}
