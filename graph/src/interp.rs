//! The reference interpreter: the correctness oracle the simulator's results
//! are compared against. Its arithmetic is a contract with the simulator:
//!
//! - **f32** elementwise ops are plain IEEE `f32` operations.
//!   `MatMul`/`Gemm` in f32: `acc = 0.0f32`; for `k` in `0..K` ascending,
//!   `acc = acc + a[m,k] * b[k,n]` (a separate multiply, then add, both
//!   rounded to f32; no fused multiply-add). `Gemm` then computes
//!   `y = alpha * acc` (no multiply when `alpha == 1`) and, when `C` is given,
//!   `y = y + beta * c` (no multiply when `beta == 1`), all in f32.
//! - **f16**: each elementwise op converts its f16 operands to f32, computes
//!   in f32 and rounds the result to f16 (`f16::from_f32`, to nearest even).
//!   `MatMul`/`Gemm` in f16 convert the operands to f32, run exactly the f32
//!   procedure above (including alpha/beta) and round to f16 once at the end.
//! - **i8** `Add`/`Sub`/`Mul` saturate to `[-128, 127]`; **i32** ones wrap.
//! - `Relu`: `if x < 0 { 0 } else { x }` (so NaN and -0.0 pass unchanged);
//!   on integers `max(x, 0)`.
//! - `QuantizeLinear`: `r = (x / scale).round_ties_even()` in f32, then
//!   `(r + zp as f32).clamp(-128.0, 127.0) as i8`; NaN gives 0. The zero
//!   point defaults to 0 and the output is always i8.
//! - `DequantizeLinear`: `((x as i64 - zp as i64) as f32) * scale`.
//! - `MatMulInteger`: `y[m,n] = Σ_k (a[m,k] - azp) * (b[k,n] - bzp)` in i32,
//!   accumulating with wrapping arithmetic, `k` ascending.
//! - `Cast`: f32 → f16 rounds to nearest even; float → integer rounds toward
//!   zero and saturates (NaN → 0, Rust's `as`); integer → f32 rounds to
//!   nearest (i32 → f16 rounds once, from the exact value); i32 → i8
//!   saturates; f16 → f32 and i8 → i32 are exact.
//! - `Identity` copies.
//!
//! Broadcasting follows NumPy (see [`crate::infer`]).

use std::collections::BTreeMap;

use half::f16;
use lpu_isa::{DType, Values};

use crate::error::GraphError;
use crate::infer::{broadcast, onnx_dtype};
use crate::ir::{Graph, Node};
use crate::tensor::{num_elements, Tensor, TensorInfo};

/// Runs `graph` on `inputs` (every graph input, by name, with the declared
/// type and shape) and returns the graph outputs by name.
pub fn interpret(
    graph: &Graph,
    inputs: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>, GraphError> {
    let input_err = |message: String| GraphError::Input {
        file: graph.source.clone(),
        message,
    };
    for name in inputs.keys() {
        if !graph.inputs.iter().any(|(n, _)| n == name) {
            let names: Vec<String> = graph.inputs.iter().map(|(n, _)| format!("'{n}'")).collect();
            return Err(input_err(format!(
                "an input named '{name}' was given, but the graph has no such input (its inputs are {})",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )));
        }
    }
    for (name, info) in &graph.inputs {
        let t = inputs
            .get(name)
            .ok_or_else(|| input_err(format!("input '{name}' ({info}) was not given")))?;
        if t.dtype() != info.dtype || t.shape != info.shape {
            return Err(input_err(format!(
                "input '{name}' is {}; expected {info}",
                t.info()
            )));
        }
        if num_elements(&t.shape) != Some(t.len()) {
            return Err(input_err(format!(
                "input '{name}' has shape {:?} but {} values",
                t.shape,
                t.len()
            )));
        }
    }

    let mut computed: BTreeMap<String, Tensor> = BTreeMap::new();
    for node in &graph.nodes {
        let node_err = |message: String| GraphError::Node {
            file: graph.source.clone(),
            node: node.name.clone(),
            op_type: node.op_type.clone(),
            message,
        };
        let mut ins: Vec<Option<&Tensor>> = Vec::with_capacity(node.inputs.len());
        for k in 0..node.inputs.len() {
            let Some(name) = node.input(k) else {
                ins.push(None);
                continue;
            };
            let t = computed
                .get(name)
                .or_else(|| inputs.get(name))
                .or_else(|| graph.initializers.get(name))
                .ok_or_else(|| node_err(format!("input '{name}' has no value")))?;
            let expected = graph.tensors.get(name);
            if expected != Some(&t.info()) || num_elements(&t.shape) != Some(t.len()) {
                return Err(node_err(format!(
                    "input '{name}' is {} with {} values; expected {}",
                    t.info(),
                    t.len(),
                    expected.map_or("<unknown>".to_string(), |i| i.to_string())
                )));
            }
            ins.push(Some(t));
        }
        let out_name = node.outputs.first().cloned().unwrap_or_default();
        let out_info = graph
            .tensors
            .get(&out_name)
            .ok_or_else(|| node_err(format!("output '{out_name}' has no inferred type")))?;
        let out = eval_node(node, &ins, out_info).map_err(node_err)?;
        if out.info() != *out_info || out.len() != out_info.len() {
            return Err(node_err(format!(
                "internal error: computed {} for output '{out_name}'; inference said {out_info}",
                out.info()
            )));
        }
        computed.insert(out_name, out);
    }

    let mut result = BTreeMap::new();
    for name in &graph.outputs {
        let t = computed
            .get(name)
            .or_else(|| inputs.get(name))
            .or_else(|| graph.initializers.get(name))
            .ok_or_else(|| input_err(format!("graph output '{name}' has no value")))?;
        result.insert(name.clone(), t.clone());
    }
    Ok(result)
}

/// Evaluates one node on its inputs (by position, `None` if omitted), whose
/// types and shapes have been validated; `out` is the inferred output.
pub fn eval_node(node: &Node, ins: &[Option<&Tensor>], out: &TensorInfo) -> Result<Tensor, String> {
    let req = |i: usize| -> Result<&Tensor, String> {
        ins.get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("input #{i} is missing"))
    };
    let values = match node.op_type.as_str() {
        "Add" => binary(
            req(0)?,
            req(1)?,
            &out.shape,
            |a, b| a + b,
            i8::saturating_add,
            i32::wrapping_add,
        )?,
        "Sub" => binary(
            req(0)?,
            req(1)?,
            &out.shape,
            |a, b| a - b,
            i8::saturating_sub,
            i32::wrapping_sub,
        )?,
        "Mul" => binary(
            req(0)?,
            req(1)?,
            &out.shape,
            |a, b| a * b,
            i8::saturating_mul,
            i32::wrapping_mul,
        )?,
        "Relu" => match &req(0)?.values {
            Values::F32(v) => Values::F32(v.iter().map(|&x| relu(x)).collect()),
            Values::F16(v) => {
                Values::F16(v.iter().map(|&x| f16::from_f32(relu(x.to_f32()))).collect())
            }
            Values::I8(v) => Values::I8(v.iter().map(|&x| x.max(0)).collect()),
            Values::I32(v) => Values::I32(v.iter().map(|&x| x.max(0)).collect()),
        },
        "Identity" => req(0)?.values.clone(),
        "Cast" => {
            let to = onnx_dtype(node.attr_int("to", 0).map_err(|e| e.to_string())?)
                .ok_or("unsupported Cast target")?;
            cast(&req(0)?.values, to)
        }
        "MatMul" => matmul(req(0)?, req(1)?, &out.shape)?,
        "Gemm" => gemm(node, req(0)?, req(1)?, ins.get(2).copied().flatten())?,
        "QuantizeLinear" => {
            let x = as_f32(&req(0)?.values)?;
            let scale = scalar_f32(req(1)?)?;
            let zp = match ins.get(2).copied().flatten() {
                Some(t) => scalar_i64(t)? as f32,
                None => 0.0,
            };
            Values::I8(x.iter().map(|&x| quantize(x, scale, zp)).collect())
        }
        "DequantizeLinear" => {
            let x = req(0)?;
            let scale = scalar_f32(req(1)?)?;
            let zp = match ins.get(2).copied().flatten() {
                Some(t) => scalar_i64(t)?,
                None => 0,
            };
            let deq = |q: i64| ((q - zp) as f32) * scale;
            match &x.values {
                Values::I8(v) => Values::F32(v.iter().map(|&q| deq(q as i64)).collect()),
                Values::I32(v) => Values::F32(v.iter().map(|&q| deq(q as i64)).collect()),
                other => {
                    return Err(format!(
                        "DequantizeLinear of {} is not supported",
                        other.dtype()
                    ))
                }
            }
        }
        "MatMulInteger" => {
            let (a, b) = (req(0)?, req(1)?);
            let azp = ins
                .get(2)
                .copied()
                .flatten()
                .map(scalar_i64)
                .transpose()?
                .unwrap_or(0) as i32;
            let bzp = ins
                .get(3)
                .copied()
                .flatten()
                .map(scalar_i64)
                .transpose()?
                .unwrap_or(0) as i32;
            let (Values::I8(av), Values::I8(bv)) = (&a.values, &b.values) else {
                return Err("MatMulInteger needs i8 inputs".into());
            };
            let (&[m, k], &[k2, n]) = (a.shape.as_slice(), b.shape.as_slice()) else {
                return Err("MatMulInteger needs rank-2 inputs".into());
            };
            if k != k2 || av.len() != m * k || bv.len() != k * n {
                return Err("MatMulInteger: inconsistent shapes".into());
            }
            let mut y = vec![0i32; m * n];
            for i in 0..m {
                for j in 0..n {
                    let mut acc = 0i32;
                    for kk in 0..k {
                        let p =
                            (av[i * k + kk] as i32 - azp).wrapping_mul(bv[kk * n + j] as i32 - bzp);
                        acc = acc.wrapping_add(p);
                    }
                    y[i * n + j] = acc;
                }
            }
            Values::I32(y)
        }
        other => return Err(format!("op type '{other}' is not supported")),
    };
    Tensor::new(out.shape.clone(), values).map_err(|e| e.to_string())
}

/// `QuantizeLinear` of one value (see the module doc).
pub fn quantize(x: f32, scale: f32, zp: f32) -> i8 {
    let r = (x / scale).round_ties_even();
    (r + zp).clamp(-128.0, 127.0) as i8
}

fn relu(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

fn as_f32(v: &Values) -> Result<Vec<f32>, String> {
    match v {
        Values::F32(v) => Ok(v.clone()),
        Values::F16(v) => Ok(v.iter().map(|x| x.to_f32()).collect()),
        other => Err(format!("expected a float tensor, found {}", other.dtype())),
    }
}

/// Converts f32 results back to `dtype` (F32 or F16).
fn from_f32(dtype: DType, v: Vec<f32>) -> Values {
    match dtype {
        DType::F16 => Values::F16(v.into_iter().map(f16::from_f32).collect()),
        _ => Values::F32(v),
    }
}

fn scalar_f32(t: &Tensor) -> Result<f32, String> {
    match &t.values {
        Values::F32(v) if v.len() == 1 => Ok(v[0]),
        _ => Err(format!("expected a scalar f32, found {}", t.info())),
    }
}

fn scalar_i64(t: &Tensor) -> Result<i64, String> {
    match &t.values {
        Values::I8(v) if v.len() == 1 => Ok(v[0] as i64),
        Values::I32(v) if v.len() == 1 => Ok(v[0] as i64),
        _ => Err(format!("expected an integer scalar, found {}", t.info())),
    }
}

/// Strides of `shape` (row-major) aligned to `out` (rank >= shape's rank),
/// 0 where `shape` is broadcast.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; out.len()];
    let mut s = 1;
    let off = out.len().saturating_sub(shape.len());
    for (i, &d) in shape.iter().enumerate().rev() {
        if d != 1 {
            if let Some(x) = strides.get_mut(off + i) {
                *x = s;
            }
        }
        s *= d;
    }
    strides
}

/// Calls `f(offset_a, offset_b)` for every index of `out` in row-major order.
fn for_each_pair(out: &[usize], sa: &[usize], sb: &[usize], mut f: impl FnMut(usize, usize)) {
    let total: usize = out.iter().product();
    if total == 0 {
        return;
    }
    let mut idx = vec![0usize; out.len()];
    let (mut oa, mut ob) = (0usize, 0usize);
    for _ in 0..total {
        f(oa, ob);
        for d in (0..out.len()).rev() {
            idx[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if idx[d] < out[d] {
                break;
            }
            oa -= sa[d] * out[d];
            ob -= sb[d] * out[d];
            idx[d] = 0;
        }
    }
}

fn bcast<T: Copy>(
    a: &[T],
    ash: &[usize],
    b: &[T],
    bsh: &[usize],
    out: &[usize],
    f: impl Fn(T, T) -> T,
) -> Result<Vec<T>, String> {
    if num_elements(ash) != Some(a.len())
        || num_elements(bsh) != Some(b.len())
        || broadcast(ash, bsh).as_deref() != Some(out)
    {
        return Err(format!("cannot broadcast {ash:?} with {bsh:?} to {out:?}"));
    }
    let (sa, sb) = (broadcast_strides(ash, out), broadcast_strides(bsh, out));
    let mut y = Vec::with_capacity(num_elements(out).unwrap_or(0));
    for_each_pair(out, &sa, &sb, |i, j| y.push(f(a[i], b[j])));
    Ok(y)
}

fn binary(
    a: &Tensor,
    b: &Tensor,
    out: &[usize],
    ff: impl Fn(f32, f32) -> f32,
    fi8: impl Fn(i8, i8) -> i8,
    fi32: impl Fn(i32, i32) -> i32,
) -> Result<Values, String> {
    let (ash, bsh) = (&a.shape, &b.shape);
    Ok(match (&a.values, &b.values) {
        (Values::F32(x), Values::F32(y)) => Values::F32(bcast(x, ash, y, bsh, out, ff)?),
        (Values::F16(x), Values::F16(y)) => {
            Values::F16(bcast(x, ash, y, bsh, out, |p: f16, q: f16| {
                f16::from_f32(ff(p.to_f32(), q.to_f32()))
            })?)
        }
        (Values::I8(x), Values::I8(y)) => Values::I8(bcast(x, ash, y, bsh, out, fi8)?),
        (Values::I32(x), Values::I32(y)) => Values::I32(bcast(x, ash, y, bsh, out, fi32)?),
        (x, y) => {
            return Err(format!(
                "operand types differ: {} and {}",
                x.dtype(),
                y.dtype()
            ))
        }
    })
}

/// `acc = 0; acc = acc + a*b` for k ascending, f32, row-major `[m,k] x [k,n]`
/// read through accessor closures.
fn mm_f32(
    m: usize,
    k: usize,
    n: usize,
    a: impl Fn(usize, usize) -> f32,
    b: impl Fn(usize, usize) -> f32,
) -> Vec<f32> {
    let mut y = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for kk in 0..k {
                let p = a(i, kk) * b(kk, j);
                acc += p;
            }
            y.push(acc);
        }
    }
    y
}

fn matmul(a: &Tensor, b: &Tensor, out: &[usize]) -> Result<Values, String> {
    let dtype = a.dtype();
    let (av, bv) = (as_f32(&a.values)?, as_f32(&b.values)?);
    let a2: Vec<usize> = if a.shape.len() == 1 {
        vec![1, a.shape[0]]
    } else {
        a.shape.clone()
    };
    let b2: Vec<usize> = if b.shape.len() == 1 {
        vec![b.shape[0], 1]
    } else {
        b.shape.clone()
    };
    let (ra, rb) = (a2.len(), b2.len());
    if ra < 2 || rb < 2 {
        return Err("MatMul needs inputs of rank 1 or more".into());
    }
    let (m, k, k2, n) = (a2[ra - 2], a2[ra - 1], b2[rb - 2], b2[rb - 1]);
    let (abatch, bbatch) = (&a2[..ra - 2], &b2[..rb - 2]);
    let batch = broadcast(abatch, bbatch).ok_or("batch dimensions do not broadcast")?;
    if k != k2 || num_elements(&a2) != Some(av.len()) || num_elements(&b2) != Some(bv.len()) {
        return Err("MatMul: inconsistent shapes".into());
    }
    // Batch strides in units of whole matrices, times the matrix size.
    let sa: Vec<usize> = broadcast_strides(abatch, &batch)
        .iter()
        .map(|s| s * m * k)
        .collect();
    let sb: Vec<usize> = broadcast_strides(bbatch, &batch)
        .iter()
        .map(|s| s * k * n)
        .collect();
    let mut y = Vec::with_capacity(num_elements(out).unwrap_or(0));
    for_each_pair(&batch, &sa, &sb, |oa, ob| {
        y.extend(mm_f32(
            m,
            k,
            n,
            |i, kk| av[oa + i * k + kk],
            |kk, j| bv[ob + kk * n + j],
        ));
    });
    Ok(from_f32(dtype, y))
}

fn gemm(node: &Node, a: &Tensor, b: &Tensor, c: Option<&Tensor>) -> Result<Values, String> {
    let alpha = node.attr_float("alpha", 1.0).map_err(|e| e.to_string())?;
    let beta = node.attr_float("beta", 1.0).map_err(|e| e.to_string())?;
    let ta = node.attr_int("transA", 0).map_err(|e| e.to_string())? != 0;
    let tb = node.attr_int("transB", 0).map_err(|e| e.to_string())? != 0;
    let dtype = a.dtype();
    let (av, bv) = (as_f32(&a.values)?, as_f32(&b.values)?);
    let (&[a0, a1], &[b0, b1]) = (a.shape.as_slice(), b.shape.as_slice()) else {
        return Err("Gemm needs rank-2 A and B".into());
    };
    let (m, k) = if ta { (a1, a0) } else { (a0, a1) };
    let (k2, n) = if tb { (b1, b0) } else { (b0, b1) };
    if k != k2 || av.len() != a0 * a1 || bv.len() != b0 * b1 {
        return Err("Gemm: inconsistent shapes".into());
    }
    let mut y = mm_f32(
        m,
        k,
        n,
        |i, kk| if ta { av[kk * m + i] } else { av[i * k + kk] },
        |kk, j| if tb { bv[j * k + kk] } else { bv[kk * n + j] },
    );
    if alpha != 1.0 {
        for v in &mut y {
            *v *= alpha;
        }
    }
    if let Some(c) = c {
        let cv = as_f32(&c.values)?;
        let out = [m, n];
        if num_elements(&c.shape) != Some(cv.len())
            || broadcast(&c.shape, &out).as_deref() != Some(&out[..])
        {
            return Err(format!("C {:?} does not broadcast to [{m}, {n}]", c.shape));
        }
        let sc = broadcast_strides(&c.shape, &out);
        let zero = vec![0; 2];
        let mut i = 0;
        for_each_pair(&out, &sc, &zero, |oc, _| {
            let cval = if beta == 1.0 { cv[oc] } else { beta * cv[oc] };
            y[i] += cval;
            i += 1;
        });
    }
    Ok(from_f32(dtype, y))
}

fn cast(v: &Values, to: DType) -> Values {
    fn sat_i8(x: i32) -> i8 {
        x.clamp(i8::MIN as i32, i8::MAX as i32) as i8
    }
    match (v, to) {
        (Values::F32(x), DType::F32) => Values::F32(x.clone()),
        (Values::F32(x), DType::F16) => Values::F16(x.iter().map(|&x| f16::from_f32(x)).collect()),
        (Values::F32(x), DType::I8) => Values::I8(x.iter().map(|&x| x as i8).collect()),
        (Values::F32(x), DType::I32) => Values::I32(x.iter().map(|&x| x as i32).collect()),
        (Values::F16(x), DType::F32) => Values::F32(x.iter().map(|x| x.to_f32()).collect()),
        (Values::F16(x), DType::F16) => Values::F16(x.clone()),
        (Values::F16(x), DType::I8) => Values::I8(x.iter().map(|x| x.to_f32() as i8).collect()),
        (Values::F16(x), DType::I32) => Values::I32(x.iter().map(|x| x.to_f32() as i32).collect()),
        (Values::I8(x), DType::F32) => Values::F32(x.iter().map(|&x| x as f32).collect()),
        (Values::I8(x), DType::F16) => {
            Values::F16(x.iter().map(|&x| f16::from_f32(x as f32)).collect())
        }
        (Values::I8(x), DType::I8) => Values::I8(x.clone()),
        (Values::I8(x), DType::I32) => Values::I32(x.iter().map(|&x| x as i32).collect()),
        (Values::I32(x), DType::F32) => Values::F32(x.iter().map(|&x| x as f32).collect()),
        (Values::I32(x), DType::F16) => {
            Values::F16(x.iter().map(|&x| f16::from_f64(x as f64)).collect())
        }
        (Values::I32(x), DType::I8) => Values::I8(x.iter().map(|&x| sat_i8(x)).collect()),
        (Values::I32(x), DType::I32) => Values::I32(x.clone()),
    }
}
