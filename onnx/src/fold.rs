//! Import-time constant folding of the shape subgraphs exporters emit
//! around static shapes (`Shape -> Gather -> Unsqueeze -> Concat ->
//! Reshape`, `ConstantOfShape`, `Expand`, `Where`, `Cast`, `Equal`, ...).
//!
//! A small evaluator over [`Const`] values, independent of `lpu-graph`'s
//! interpreter: integer arithmetic is exact in i64 (wrapping, integer
//! division truncates toward zero as in ONNX Runtime), float arithmetic is
//! computed in f64 and rounded once to the element type, which is the
//! correctly rounded IEEE result for `+ - * /`. A node folds when every
//! input it reads is constant (for `Shape` and `Size`: when the input's
//! shape is known) and the result has at most [`FOLD_LIMIT`] elements;
//! otherwise it stays in the graph.

use std::collections::BTreeMap;

use half::{bf16, f16};

use crate::proto::data_type as dt;
use crate::tensor::{elem_size, Const, Data};

/// The largest result, in elements, that folding materialises (2^22).
pub const FOLD_LIMIT: usize = 1 << 22;

/// An attribute value as decoded from an `AttributeProto`.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// `INT`.
    Int(i64),
    /// `FLOAT`.
    Float(f32),
    /// `INTS`.
    Ints(Vec<i64>),
    /// `FLOATS`.
    Floats(Vec<f32>),
    /// `STRING`.
    String(String),
    /// `STRINGS`.
    Strings(Vec<String>),
    /// `TENSOR`.
    Tensor(Const),
    /// A kind the importer does not use (graphs, sparse tensors, type
    /// protos, lists of tensors), by name.
    Other(&'static str),
}

/// Attributes by name.
pub type Attrs = BTreeMap<String, Attr>;

/// The op types [`fold`] can evaluate.
pub const FOLDABLE: &[&str] = &[
    "Identity",
    "Shape",
    "Size",
    "Cast",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Reshape",
    "Flatten",
    "ConstantOfShape",
    "Expand",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "Not",
    "And",
    "Or",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Neg",
    "Abs",
    "Min",
    "Max",
    "Range",
    "Slice",
];

pub(crate) fn attr_int(attrs: &Attrs, name: &str, default: i64) -> Result<i64, String> {
    match attrs.get(name) {
        None => Ok(default),
        Some(Attr::Int(v)) => Ok(*v),
        Some(other) => Err(format!("attribute '{name}' is {other:?}; expected an INT")),
    }
}

/// Normalises a possibly negative axis against `rank`.
fn axis(a: i64, rank: usize, what: &str) -> Result<usize, String> {
    let r = rank as i64;
    let b = if a < 0 { a + r } else { a };
    if (0..r).contains(&b) {
        Ok(b as usize)
    } else {
        Err(format!("{what} {a} is out of range for rank {rank}"))
    }
}

/// Row-major strides.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn count(shape: &[usize]) -> Result<usize, String> {
    let mut n: usize = 1;
    for &d in shape {
        n = n
            .checked_mul(d)
            .ok_or_else(|| format!("shape {shape:?} overflows"))?;
    }
    Ok(n)
}

/// `Ok(None)` when a result of `shape` is too big to fold.
fn fits(shape: &[usize]) -> Result<bool, String> {
    Ok(count(shape)? <= FOLD_LIMIT)
}

/// NumPy broadcast of several shapes.
fn broadcast(shapes: &[&[usize]]) -> Result<Vec<usize>, String> {
    let n = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; n];
    for s in shapes {
        for (k, &d) in s.iter().enumerate() {
            let o = &mut out[n - s.len() + k];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(format!("shapes {shapes:?} do not broadcast"));
            }
        }
    }
    Ok(out)
}

/// For each element of `out`, the flat index of the element of a tensor of
/// shape `inp` (broadcast to `out`) it reads.
fn broadcast_src(out: &[usize], inp: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let off = out.len() - inp.len();
    let ist = strides(inp);
    let mut idx = vec![0usize; out.len()];
    let mut src = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = 0;
        for (k, &d) in inp.iter().enumerate() {
            if d != 1 {
                s += idx[off + k] * ist[k];
            }
        }
        src.push(s);
        for k in (0..out.len()).rev() {
            idx[k] += 1;
            if idx[k] < out[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    src
}

/// Converts data to element type `to`, as ONNX `Cast` does: float to
/// integer truncates toward zero (NaN and infinities become 0), integers
/// wrap to the target width, BOOL is `x != 0`.
pub fn cast(data: &Data, to: i32) -> Result<Data, String> {
    let n = data.len();
    let f = |i: usize| data.get_f64(i);
    Ok(match to {
        dt::FLOAT => Data::F32((0..n).map(|i| f(i) as f32).collect()),
        dt::BFLOAT16 => Data::F32((0..n).map(|i| bf16::from_f64(f(i)).to_f32()).collect()),
        dt::FLOAT16 => Data::F16((0..n).map(|i| f16::from_f64(f(i))).collect()),
        dt::DOUBLE => Data::F64((0..n).map(f).collect()),
        _ if elem_size(to).is_some() => {
            let ints: Vec<i64> = match data {
                Data::Int(v) => v.clone(),
                _ => (0..n)
                    .map(|i| {
                        let x = f(i);
                        if x.is_finite() {
                            x.trunc() as i64
                        } else {
                            0
                        }
                    })
                    .collect(),
            };
            Data::Int(
                ints.into_iter()
                    .map(|x| match to {
                        dt::BOOL => (x != 0) as i64,
                        dt::INT8 => x as i8 as i64,
                        dt::UINT8 => x as u8 as i64,
                        dt::INT16 => x as i16 as i64,
                        dt::UINT16 => x as u16 as i64,
                        dt::INT32 => x as i32 as i64,
                        dt::UINT32 => x as u32 as i64,
                        _ => x,
                    })
                    .collect(),
            )
        }
        _ => return Err(format!("cannot cast to {}", dt::name(to))),
    })
}

/// Rebuilds data of `like`'s kind from f64 values.
fn from_f64(like: &Data, v: Vec<f64>) -> Data {
    match like {
        Data::F32(_) => Data::F32(v.into_iter().map(|x| x as f32).collect()),
        Data::F16(_) => Data::F16(v.into_iter().map(f16::from_f64).collect()),
        Data::F64(_) => Data::F64(v),
        Data::Int(_) => Data::Int(v.into_iter().map(|x| x as i64).collect()),
    }
}

fn same_kind(a: &Data, b: &Data) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Elementwise binary op with broadcasting.
fn binary(op: &str, a: &Const, b: &Const) -> Result<Option<Const>, String> {
    if !same_kind(&a.data, &b.data) {
        return Ok(None);
    }
    let out = broadcast(&[&a.shape, &b.shape])?;
    if !fits(&out)? {
        return Ok(None);
    }
    let (sa, sb) = (broadcast_src(&out, &a.shape), broadcast_src(&out, &b.shape));
    let cmp = matches!(
        op,
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or"
    );
    if let (Data::Int(x), Data::Int(y)) = (&a.data, &b.data) {
        let mut v = Vec::with_capacity(sa.len());
        for (&i, &j) in sa.iter().zip(&sb) {
            let (p, q) = (x[i], y[j]);
            v.push(match op {
                "Add" => p.wrapping_add(q),
                "Sub" => p.wrapping_sub(q),
                "Mul" => p.wrapping_mul(q),
                "Div" => {
                    if q == 0 {
                        return Err("integer division by zero".into());
                    }
                    p.wrapping_div(q)
                }
                "Min" => p.min(q),
                "Max" => p.max(q),
                "Equal" => (p == q) as i64,
                "Less" => (p < q) as i64,
                "Greater" => (p > q) as i64,
                "LessOrEqual" => (p <= q) as i64,
                "GreaterOrEqual" => (p >= q) as i64,
                "And" => (p != 0 && q != 0) as i64,
                "Or" => (p != 0 || q != 0) as i64,
                _ => return Ok(None),
            });
        }
        let code = if cmp { dt::BOOL } else { a.code };
        return Const::new(code, out, Data::Int(v)).map(Some);
    }
    let mut v = Vec::with_capacity(sa.len());
    for (&i, &j) in sa.iter().zip(&sb) {
        let (p, q) = (a.data.get_f64(i), b.data.get_f64(j));
        v.push(match op {
            "Add" => p + q,
            "Sub" => p - q,
            "Mul" => p * q,
            "Div" => p / q,
            "Min" => p.min(q),
            "Max" => p.max(q),
            "Equal" => (p == q) as i64 as f64,
            "Less" => (p < q) as i64 as f64,
            "Greater" => (p > q) as i64 as f64,
            "LessOrEqual" => (p <= q) as i64 as f64,
            "GreaterOrEqual" => (p >= q) as i64 as f64,
            _ => return Ok(None),
        });
    }
    if cmp {
        return Const::new(
            dt::BOOL,
            out,
            Data::Int(v.into_iter().map(|x| x as i64).collect()),
        )
        .map(Some);
    }
    Const::new(a.code, out, from_f64(&a.data, v)).map(Some)
}

/// Evaluates node `op` on constant inputs. `ins[k]` is input `k` when it is
/// constant (`None` when omitted or not constant); `shapes[k]` its shape
/// when known. `Ok(None)`: not foldable here (an input is not constant, the
/// result is too large, or a case the evaluator does not cover).
pub fn fold(
    op: &str,
    ins: &[Option<&Const>],
    present: &[bool],
    shapes: &[Option<&[usize]>],
    attrs: &Attrs,
) -> Result<Option<Vec<Const>>, String> {
    let c = |k: usize| ins.get(k).copied().flatten();
    let has = |k: usize| present.get(k).copied().unwrap_or(false);
    // Every present input must be constant, except for Shape and Size.
    if !matches!(op, "Shape" | "Size") && (0..present.len()).any(|k| has(k) && c(k).is_none()) {
        return Ok(None);
    }
    let one = |x: Const| Ok(Some(vec![x]));
    match op {
        "Identity" => match c(0) {
            Some(x) => one(x.clone()),
            None => Ok(None),
        },
        "Shape" => {
            let Some(s) = shapes.first().copied().flatten() else {
                return Ok(None);
            };
            let r = s.len() as i64;
            let clampi = |a: i64| (if a < 0 { a + r } else { a }).clamp(0, r) as usize;
            let start = clampi(attr_int(attrs, "start", 0)?);
            let end = clampi(attr_int(attrs, "end", r)?);
            let v: Vec<i64> = s
                .get(start..end.max(start))
                .unwrap_or(&[])
                .iter()
                .map(|&d| d as i64)
                .collect();
            one(Const::ints(v))
        }
        "Size" => {
            let Some(s) = shapes.first().copied().flatten() else {
                return Ok(None);
            };
            one(Const::new(
                dt::INT64,
                vec![],
                Data::Int(vec![count(s)? as i64]),
            )?)
        }
        "Cast" => {
            let Some(x) = c(0) else { return Ok(None) };
            let to = attr_int(attrs, "to", 0)? as i32;
            one(Const::new(to, x.shape.clone(), cast(&x.data, to)?)?)
        }
        "Gather" => {
            let (Some(d), Some(i)) = (c(0), c(1)) else {
                return Ok(None);
            };
            let Some(idx) = i.as_ints() else {
                return Err("indices are not integers".into());
            };
            let ax = axis(attr_int(attrs, "axis", 0)?, d.shape.len(), "axis")?;
            let dim = d.shape[ax] as i64;
            let mut out_shape = d.shape[..ax].to_vec();
            out_shape.extend_from_slice(&i.shape);
            out_shape.extend_from_slice(&d.shape[ax + 1..]);
            if !fits(&out_shape)? {
                return Ok(None);
            }
            let outer: usize = d.shape[..ax].iter().product();
            let inner: usize = d.shape[ax + 1..].iter().product();
            let mut src = Vec::new();
            for o in 0..outer {
                for &k in idx {
                    let k2 = if k < 0 { k + dim } else { k };
                    if !(0..dim).contains(&k2) {
                        return Err(format!("index {k} is out of range for dimension {dim}"));
                    }
                    let base = (o * d.shape[ax] + k2 as usize) * inner;
                    src.extend(base..base + inner);
                }
            }
            one(Const::new(d.code, out_shape, d.data.gather(&src))?)
        }
        "Unsqueeze" | "Squeeze" => {
            let Some(x) = c(0) else { return Ok(None) };
            let axes: Option<Vec<i64>> = match c(1) {
                Some(a) => Some(a.as_ints().ok_or("axes are not integers")?.to_vec()),
                None => None,
            };
            let shape = if op == "Unsqueeze" {
                let axes = axes.ok_or("Unsqueeze needs axes")?;
                let r = x.shape.len() + axes.len();
                let mut ins: Vec<usize> = axes
                    .iter()
                    .map(|&a| axis(a, r, "axis"))
                    .collect::<Result<_, _>>()?;
                ins.sort_unstable();
                if ins.windows(2).any(|w| w[0] == w[1]) {
                    return Err(format!("axes {axes:?} repeat an axis"));
                }
                let mut it = x.shape.iter();
                (0..r)
                    .map(|k| {
                        if ins.contains(&k) {
                            1
                        } else {
                            it.next().copied().unwrap_or(1)
                        }
                    })
                    .collect()
            } else {
                let r = x.shape.len();
                let drop: Vec<usize> = match axes {
                    Some(a) => a
                        .iter()
                        .map(|&a| axis(a, r, "axis"))
                        .collect::<Result<_, _>>()?,
                    None => (0..r).filter(|&k| x.shape[k] == 1).collect(),
                };
                if let Some(&k) = drop.iter().find(|&&k| x.shape[k] != 1) {
                    return Err(format!("cannot squeeze axis {k} of size {}", x.shape[k]));
                }
                (0..r)
                    .filter(|k| !drop.contains(k))
                    .map(|k| x.shape[k])
                    .collect()
            };
            one(Const::new(x.code, shape, x.data.clone())?)
        }
        "Flatten" => {
            let Some(x) = c(0) else { return Ok(None) };
            let r = x.shape.len();
            let a = attr_int(attrs, "axis", 1)?;
            let a = if a < 0 { a + r as i64 } else { a };
            if !(0..=r as i64).contains(&a) {
                return Err(format!("axis {a} is out of range for rank {r}"));
            }
            let a = a as usize;
            let shape = vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()];
            one(Const::new(x.code, shape, x.data.clone())?)
        }
        "Concat" => {
            let parts: Vec<&Const> = (0..present.len()).filter_map(c).collect();
            let Some(first) = parts.first() else {
                return Ok(None);
            };
            if parts.iter().any(|p| !same_kind(&p.data, &first.data)) {
                return Ok(None);
            }
            let r = first.shape.len();
            let ax = axis(attr_int(attrs, "axis", 0)?, r, "axis")?;
            for p in &parts {
                if p.shape.len() != r
                    || p.shape[..ax] != first.shape[..ax]
                    || p.shape[ax + 1..] != first.shape[ax + 1..]
                {
                    return Err(format!(
                        "inputs of shapes {:?} and {:?} do not concatenate on axis {ax}",
                        first.shape, p.shape
                    ));
                }
            }
            let mut shape = first.shape.clone();
            shape[ax] = parts.iter().map(|p| p.shape[ax]).sum();
            if !fits(&shape)? {
                return Ok(None);
            }
            let outer: usize = first.shape[..ax].iter().product();
            let mut src: Vec<(usize, usize)> = Vec::with_capacity(count(&shape)?);
            for o in 0..outer {
                for (pi, p) in parts.iter().enumerate() {
                    let chunk = p.shape[ax..].iter().product::<usize>();
                    src.extend((o * chunk..(o + 1) * chunk).map(|i| (pi, i)));
                }
            }
            let data = match &first.data {
                Data::Int(_) => Data::Int(
                    src.iter()
                        .map(|&(pi, i)| match &parts[pi].data {
                            Data::Int(x) => x[i],
                            _ => 0,
                        })
                        .collect(),
                ),
                d => from_f64(
                    d,
                    src.iter()
                        .map(|&(pi, i)| parts[pi].data.get_f64(i))
                        .collect(),
                ),
            };
            one(Const::new(first.code, shape, data)?)
        }
        "Reshape" => {
            let (Some(x), Some(s)) = (c(0), c(1)) else {
                return Ok(None);
            };
            let spec = s.as_ints().ok_or("shape is not integers")?;
            let shape = reshape_target(&x.shape, spec, attr_int(attrs, "allowzero", 0)? != 0)?;
            one(Const::new(x.code, shape, x.data.clone())?)
        }
        "ConstantOfShape" => {
            let Some(s) = c(0) else { return Ok(None) };
            let dims = s.as_ints().ok_or("shape is not integers")?;
            let (shape, n) = crate::tensor::checked_dims(dims)?;
            if n > FOLD_LIMIT {
                return Ok(None);
            }
            let value = match attrs.get("value") {
                None => Const::new(dt::FLOAT, vec![1], Data::F32(vec![0.0]))?,
                Some(Attr::Tensor(t)) if t.len() == 1 => t.clone(),
                Some(other) => {
                    return Err(format!(
                        "attribute 'value' is {other:?}; expected a one-element TENSOR"
                    ))
                }
            };
            let data = value.data.gather(&vec![0; n]);
            one(Const::new(value.code, shape, data)?)
        }
        "Expand" => {
            let (Some(x), Some(s)) = (c(0), c(1)) else {
                return Ok(None);
            };
            let dims = s.as_ints().ok_or("shape is not integers")?;
            let (target, _) = crate::tensor::checked_dims(dims)?;
            let out = broadcast(&[&x.shape, &target])?;
            if !fits(&out)? {
                return Ok(None);
            }
            let src = broadcast_src(&out, &x.shape);
            one(Const::new(x.code, out, x.data.gather(&src))?)
        }
        "Where" => {
            let (Some(cond), Some(x), Some(y)) = (c(0), c(1), c(2)) else {
                return Ok(None);
            };
            let (Some(cv), true) = (cond.as_ints(), same_kind(&x.data, &y.data)) else {
                return Ok(None);
            };
            let out = broadcast(&[&cond.shape, &x.shape, &y.shape])?;
            if !fits(&out)? {
                return Ok(None);
            }
            let (sc, sx, sy) = (
                broadcast_src(&out, &cond.shape),
                broadcast_src(&out, &x.shape),
                broadcast_src(&out, &y.shape),
            );
            let data = match (&x.data, &y.data) {
                (Data::Int(a), Data::Int(b)) => Data::Int(
                    (0..sc.len())
                        .map(|k| if cv[sc[k]] != 0 { a[sx[k]] } else { b[sy[k]] })
                        .collect(),
                ),
                _ => from_f64(
                    &x.data,
                    (0..sc.len())
                        .map(|k| {
                            if cv[sc[k]] != 0 {
                                x.data.get_f64(sx[k])
                            } else {
                                y.data.get_f64(sy[k])
                            }
                        })
                        .collect(),
                ),
            };
            one(Const::new(x.code, out, data)?)
        }
        "Not" | "Neg" | "Abs" => {
            let Some(x) = c(0) else { return Ok(None) };
            let data = match (&x.data, op) {
                (Data::Int(v), "Not") => Data::Int(v.iter().map(|&a| (a == 0) as i64).collect()),
                (Data::Int(v), "Neg") => Data::Int(v.iter().map(|a| a.wrapping_neg()).collect()),
                (Data::Int(v), _) => Data::Int(v.iter().map(|a| a.wrapping_abs()).collect()),
                (d, "Neg") => from_f64(d, (0..d.len()).map(|i| -d.get_f64(i)).collect()),
                (d, "Abs") => from_f64(d, (0..d.len()).map(|i| d.get_f64(i).abs()).collect()),
                _ => return Ok(None),
            };
            one(Const::new(x.code, x.shape.clone(), data)?)
        }
        "Add" | "Sub" | "Mul" | "Div" | "Min" | "Max" | "Equal" | "Less" | "Greater"
        | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" => {
            if present.len() != 2 {
                return Ok(None);
            }
            let (Some(a), Some(b)) = (c(0), c(1)) else {
                return Ok(None);
            };
            Ok(binary(op, a, b)?.map(|x| vec![x]))
        }
        "Range" => {
            let (Some(s), Some(l), Some(d)) = (c(0), c(1), c(2)) else {
                return Ok(None);
            };
            if s.len() != 1 || l.len() != 1 || d.len() != 1 {
                return Err("start, limit and delta must be scalars".into());
            }
            let (s0, l0, d0) = (s.data.get_f64(0), l.data.get_f64(0), d.data.get_f64(0));
            if d0 == 0.0 || !d0.is_finite() || !s0.is_finite() || !l0.is_finite() {
                return Err(format!(
                    "delta {d0} (start {s0}, limit {l0}) gives no range"
                ));
            }
            let n = ((l0 - s0) / d0).ceil().max(0.0);
            if n > FOLD_LIMIT as f64 {
                return Ok(None);
            }
            let n = n as usize;
            let data = match (&s.data, &d.data) {
                (Data::Int(a), Data::Int(b)) => Data::Int(
                    (0..n as i64)
                        .map(|k| a[0].wrapping_add(k.wrapping_mul(b[0])))
                        .collect(),
                ),
                (sd, _) => from_f64(sd, (0..n).map(|k| s0 + k as f64 * d0).collect()),
            };
            one(Const::new(s.code, vec![n], data)?)
        }
        "Slice" => {
            let (Some(x), Some(st), Some(en)) = (c(0), c(1), c(2)) else {
                return Ok(None);
            };
            let ints = |k: usize| -> Result<Option<Vec<i64>>, String> {
                match c(k) {
                    Some(t) => Ok(Some(
                        t.as_ints()
                            .ok_or("slice parameters are not integers")?
                            .to_vec(),
                    )),
                    None => Ok(None),
                }
            };
            let _ = (st, en);
            let r = x.shape.len();
            let (axes, steps) = (ints(3)?, ints(4)?);
            let per = slice_plan(
                &x.shape,
                &ints(1)?.unwrap_or_default(),
                &ints(2)?.unwrap_or_default(),
                axes.as_deref(),
                steps.as_deref(),
            )?;
            let shape: Vec<usize> = per.iter().map(|p| p.2).collect();
            if !fits(&shape)? {
                return Ok(None);
            }
            let ist = strides(&x.shape);
            let n = count(&shape)?;
            let mut src = Vec::with_capacity(n);
            let mut idx = vec![0usize; r];
            for _ in 0..n {
                let mut s = 0i64;
                for k in 0..r {
                    s += (per[k].0 + idx[k] as i64 * per[k].1) * ist[k] as i64;
                }
                src.push(s as usize);
                for k in (0..r).rev() {
                    idx[k] += 1;
                    if idx[k] < shape[k] {
                        break;
                    }
                    idx[k] = 0;
                }
            }
            one(Const::new(x.code, shape, x.data.gather(&src))?)
        }
        _ => Ok(None),
    }
}

/// ONNX `Slice` of a tensor of `shape`, per axis: (first index, step,
/// count). `axes` defaults to `0..starts.len()`, `steps` to ones.
pub fn slice_plan(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<(i64, i64, usize)>, String> {
    let r = shape.len();
    let axes = axes.map_or_else(|| (0..starts.len() as i64).collect(), <[i64]>::to_vec);
    let steps = steps.map_or_else(|| vec![1; starts.len()], <[i64]>::to_vec);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    let mut per: Vec<(i64, i64, usize)> = shape.iter().map(|&d| (0, 1, d)).collect();
    for k in 0..starts.len() {
        let a = axis(axes[k], r, "axis")?;
        let dim = shape[a] as i64;
        if steps[k] == 0 {
            return Err("a step is 0".into());
        }
        if dim == 0 {
            per[a] = (0, 1, 0);
            continue;
        }
        // A step longer than the axis takes one element either way;
        // clamping keeps the arithmetic below from overflowing.
        let step = steps[k].clamp(-dim, dim);
        let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (s, e) = (norm(starts[k]), norm(ends[k]));
        let (s, e) = if step > 0 {
            (s.clamp(0, dim), e.clamp(0, dim))
        } else {
            (s.clamp(0, dim - 1), e.clamp(-1, dim - 1))
        };
        let n = if step > 0 {
            (e - s + step - 1).div_euclid(step).max(0)
        } else {
            (s - e + (-step) - 1).div_euclid(-step).max(0)
        };
        per[a] = (s, step, n as usize);
    }
    Ok(per)
}

/// A reduction (`ReduceSum`, `ReduceMax`, ...) of an input with no
/// elements, whose result is therefore known at import: empty when the
/// output has a zero dimension too, otherwise every element reduces the
/// empty set, which ONNX defines as 0 (`ReduceSum`, `ReduceSumSquare`,
/// `ReduceL1`, `ReduceL2`), 1 (`ReduceProd`), the lowest value (`ReduceMax`;
/// -inf for floats), the highest (`ReduceMin`) or -inf (`ReduceLogSum`,
/// `ReduceLogSumExp`); `ReduceMean` of it is undefined (an error).
/// `axes` empty means every axis unless `noop`. `Ok(None)`: too large.
pub fn reduce_empty(
    op: &str,
    x: &Const,
    axes: &[i64],
    keepdims: bool,
    noop: bool,
) -> Result<Option<Const>, String> {
    if !x.is_empty() {
        return Err(format!(
            "internal: {op} input of shape {:?} is not empty",
            x.shape
        ));
    }
    if axes.is_empty() && noop {
        return Ok(Some(x.clone()));
    }
    let r = x.shape.len();
    let mut mask = vec![axes.is_empty(); r];
    for &a in axes {
        mask[axis(a, r, "axis")?] = true;
    }
    let shape: Vec<usize> = x
        .shape
        .iter()
        .zip(&mask)
        .filter_map(|(&d, &m)| match (m, keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect();
    let n = count(&shape)?;
    if n > FOLD_LIMIT {
        return Ok(None);
    }
    if n == 0 {
        return Const::new(x.code, shape, x.data.clone()).map(Some);
    }
    let (lo, hi) = int_bounds(x.code);
    let float = !matches!(x.data, Data::Int(_));
    let v = match op {
        "ReduceSum" | "ReduceSumSquare" | "ReduceL1" | "ReduceL2" => 0.0,
        "ReduceProd" => 1.0,
        "ReduceMax" if float => f64::NEG_INFINITY,
        "ReduceMax" => lo as f64,
        "ReduceMin" if float => f64::INFINITY,
        "ReduceMin" => hi as f64,
        "ReduceLogSum" | "ReduceLogSumExp" if float => f64::NEG_INFINITY,
        _ => {
            return Err(format!(
                "{op} of an empty set (input shape {:?}) is undefined",
                x.shape
            ))
        }
    };
    let data = match &x.data {
        Data::Int(_) => Data::Int(vec![v as i64; n]),
        d => from_f64(d, vec![v; n]),
    };
    Const::new(x.code, shape, data).map(Some)
}

/// The value range of integer ONNX type `code`.
fn int_bounds(code: i32) -> (i64, i64) {
    match code {
        dt::BOOL => (0, 1),
        dt::INT8 => (i8::MIN as i64, i8::MAX as i64),
        dt::UINT8 => (0, u8::MAX as i64),
        dt::INT16 => (i16::MIN as i64, i16::MAX as i64),
        dt::UINT16 => (0, u16::MAX as i64),
        dt::INT32 => (i32::MIN as i64, i32::MAX as i64),
        dt::UINT32 => (0, u32::MAX as i64),
        dt::UINT64 => (0, i64::MAX),
        _ => (i64::MIN, i64::MAX),
    }
}

/// The output shape of ONNX `Reshape` of `input` to `spec` (`0` copies the
/// input's dimension unless `allowzero`, one `-1` is inferred).
pub fn reshape_target(
    input: &[usize],
    spec: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>, String> {
    let n = count(input)?;
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (k, &d) in spec.iter().enumerate() {
        out.push(match d {
            -1 => {
                if infer.replace(k).is_some() {
                    return Err(format!("shape {spec:?} has more than one -1"));
                }
                1
            }
            0 if !allowzero => *input.get(k).ok_or_else(|| {
                format!("shape {spec:?} copies dimension #{k} the input {input:?} lacks")
            })?,
            d if d < 0 => return Err(format!("shape {spec:?} has a negative dimension {d}")),
            d => usize::try_from(d).map_err(|_| format!("dimension {d} is too large"))?,
        });
    }
    let known = count(&out)?;
    if let Some(k) = infer {
        if known == 0 || n % known != 0 {
            return Err(format!("cannot reshape {input:?} to {spec:?}"));
        }
        out[k] = n / known;
    } else if known != n {
        return Err(format!(
            "cannot reshape {input:?} ({n} elements) to {spec:?} ({known} elements)"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &str, ins: &[&Const], attrs: &[(&str, Attr)]) -> Const {
        let attrs: Attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let opt: Vec<Option<&Const>> = ins.iter().map(|c| Some(*c)).collect();
        let present = vec![true; ins.len()];
        let shapes: Vec<Option<&[usize]>> = ins.iter().map(|c| Some(&c.shape[..])).collect();
        fold(op, &opt, &present, &shapes, &attrs)
            .unwrap()
            .unwrap()
            .remove(0)
    }

    fn ints(c: &Const) -> Vec<i64> {
        c.as_ints().unwrap().to_vec()
    }

    #[test]
    fn shape_chain() {
        // x: [2, 3, 4]; Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])).
        let x = Const::new(dt::FLOAT, vec![2, 3, 4], Data::F32(vec![0.0; 24])).unwrap();
        let s = run("Shape", &[&x], &[]);
        assert_eq!(ints(&s), [2, 3, 4]);
        let tail = run("Shape", &[&x], &[("start", Attr::Int(-2))]);
        assert_eq!(ints(&tail), [3, 4]);
        let zero = Const::new(dt::INT64, vec![], Data::Int(vec![0])).unwrap();
        let g = run("Gather", &[&s, &zero], &[]);
        assert_eq!((g.shape.clone(), ints(&g)), (vec![], vec![2]));
        let u = run("Unsqueeze", &[&g, &Const::ints(vec![0])], &[]);
        assert_eq!(u.shape, [1]);
        let cat = run(
            "Concat",
            &[&u, &Const::ints(vec![-1])],
            &[("axis", Attr::Int(0))],
        );
        assert_eq!(ints(&cat), [2, -1]);
        let r = run("Reshape", &[&x, &cat], &[]);
        assert_eq!(r.shape, [2, 12]);
    }

    #[test]
    fn constant_of_shape_expand_where_equal_cast() {
        let c = run("ConstantOfShape", &[&Const::ints(vec![2, 2])], &[]);
        assert_eq!((c.code, c.shape.clone()), (dt::FLOAT, vec![2, 2]));
        let one = Const::new(dt::INT64, vec![1], Data::Int(vec![7])).unwrap();
        let c = run(
            "ConstantOfShape",
            &[&Const::ints(vec![3])],
            &[("value", Attr::Tensor(one))],
        );
        assert_eq!(ints(&c), [7, 7, 7]);
        let e = run(
            "Expand",
            &[&Const::ints(vec![1, 2]), &Const::ints(vec![2, 1])],
            &[],
        );
        assert_eq!((e.shape.clone(), ints(&e)), (vec![2, 2], vec![1, 2, 1, 2]));
        let eq = run(
            "Equal",
            &[&Const::ints(vec![1, 5]), &Const::ints(vec![5])],
            &[],
        );
        assert_eq!((eq.code, ints(&eq)), (dt::BOOL, vec![0, 1]));
        let w = run(
            "Where",
            &[&eq, &Const::ints(vec![10, 20]), &Const::ints(vec![-1])],
            &[],
        );
        assert_eq!(ints(&w), [-1, 20]);
        let f = run("Cast", &[&w], &[("to", Attr::Int(dt::FLOAT as i64))]);
        assert_eq!(f.data, Data::F32(vec![-1.0, 20.0]));
        let back = run(
            "Cast",
            &[&Const::new(dt::FLOAT, vec![2], Data::F32(vec![-1.7, 300.0])).unwrap()],
            &[("to", Attr::Int(dt::INT8 as i64))],
        );
        assert_eq!(ints(&back), [-1, 44]);
    }

    #[test]
    fn slice_range_squeeze() {
        let x = Const::ints((0..10).collect());
        let s = run(
            "Slice",
            &[
                &x,
                &Const::ints(vec![-1]),
                &Const::ints(vec![i64::MIN]),
                &Const::ints(vec![0]),
                &Const::ints(vec![-3]),
            ],
            &[],
        );
        assert_eq!(ints(&s), [9, 6, 3, 0]);
        let s = run(
            "Slice",
            &[&x, &Const::ints(vec![2]), &Const::ints(vec![i64::MAX])],
            &[],
        );
        assert_eq!(ints(&s), (2..10).collect::<Vec<_>>());
        let sc = |v: i64| Const::new(dt::INT64, vec![], Data::Int(vec![v])).unwrap();
        let r = run("Range", &[&sc(5), &sc(0), &sc(-2)], &[]);
        assert_eq!(ints(&r), [5, 3, 1]);
        let q = run(
            "Squeeze",
            &[&Const::new(dt::INT64, vec![1, 2, 1], Data::Int(vec![1, 2])).unwrap()],
            &[],
        );
        assert_eq!(q.shape, [2]);
    }

    /// Found by `fuzz_decoder::folding_random_constants_does_not_panic`:
    /// extreme steps overflowed, and a negative step on an empty axis made
    /// `clamp` panic.
    #[test]
    fn slice_extreme_steps() {
        let x = Const::ints(vec![1, 2, 3]);
        let s = run(
            "Slice",
            &[
                &x,
                &Const::ints(vec![0]),
                &Const::ints(vec![3]),
                &Const::ints(vec![0]),
                &Const::ints(vec![i64::MAX]),
            ],
            &[],
        );
        assert_eq!(ints(&s), [1]);
        let s = run(
            "Slice",
            &[
                &x,
                &Const::ints(vec![-1]),
                &Const::ints(vec![i64::MIN]),
                &Const::ints(vec![0]),
                &Const::ints(vec![i64::MIN]),
            ],
            &[],
        );
        assert_eq!(ints(&s), [3]);
        let empty = Const::new(dt::INT64, vec![0], Data::Int(vec![])).unwrap();
        let s = run(
            "Slice",
            &[
                &empty,
                &Const::ints(vec![0]),
                &Const::ints(vec![1]),
                &Const::ints(vec![0]),
                &Const::ints(vec![-1]),
            ],
            &[],
        );
        assert_eq!(s.shape, [0]);
    }

    #[test]
    fn errors_and_limits() {
        let attrs = Attrs::new();
        let big = Const::ints(vec![1 << 20, 1 << 20]);
        let e = fold("ConstantOfShape", &[Some(&big)], &[true], &[None], &attrs).unwrap_err();
        assert!(e.contains("2^28"), "{e}");
        let big = Const::ints(vec![1 << 12, 1 << 12]);
        let r = fold("ConstantOfShape", &[Some(&big)], &[true], &[None], &attrs).unwrap();
        assert!(r.is_none());
        let x = Const::ints(vec![1, 2]);
        let bad = Const::ints(vec![5]);
        assert!(fold(
            "Gather",
            &[Some(&x), Some(&bad)],
            &[true, true],
            &[None, None],
            &attrs
        )
        .unwrap_err()
        .contains("out of range"));
        assert!(reshape_target(&[2, 3], &[4, -1], false).is_err());
        assert_eq!(reshape_target(&[2, 3], &[0, -1], false).unwrap(), [2, 3]);
        // A non-constant input: no fold.
        assert!(fold(
            "Add",
            &[Some(&x), None],
            &[true, true],
            &[None, None],
            &attrs
        )
        .unwrap()
        .is_none());
    }
}
