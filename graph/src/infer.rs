//! Shape and element-type inference, one rule per op (ONNX semantics,
//! restricted to what the chip supports):
//!
//! - `MatMul`: float (`f32`/`f16`) `A`, `B` of the same type; NumPy `matmul`
//!   shapes: `[.., M, K] x [.., K, N] -> [.., M, N]` with the batch
//!   dimensions broadcast, a rank-1 `A` (`B`) taken as a row (column).
//! - `Gemm`: float rank-2 `A`, `B` (transposed per `transA`/`transB`),
//!   optional `C` unidirectionally broadcastable to `[M, N]`; `alpha`,
//!   `beta` floats.
//! - `Add`, `Sub`, `Mul`: the same type on both sides, multidirectional
//!   (NumPy) broadcasting.
//! - `Relu`, `Identity`: same type and shape as the input.
//! - `Cast`: attribute `to` (ONNX `TensorProto` code: 1 FLOAT → `f32`,
//!   10 FLOAT16 → `f16`, 3 INT8 → `i8`, 6 INT32 → `i32`).
//! - `QuantizeLinear`: `f32` `x`, scalar `f32` `y_scale`, optional scalar
//!   `i8` `y_zero_point` → `i8` of `x`'s shape. Without a zero point the
//!   output is still `i8` (zero point 0) — a deliberate deviation from ONNX,
//!   which defaults to `uint8`.
//! - `DequantizeLinear`: `i8` or `i32` `x`, scalar `f32` `x_scale`, optional
//!   scalar `x_zero_point` of `x`'s type → `f32`.
//! - `MatMulInteger`: rank-2 `i8` `A`, `B`, optional scalar `i8` zero points
//!   → `i32` `[M, N]`.
//!
//! Scalars are shape `[]` or `[1]`. Only per-tensor quantization is
//! supported (`axis` is accepted and has no effect).

use lpu_isa::DType;

use crate::error::GraphError;
use crate::ir::Node;
use crate::tensor::{checked_elements, TensorInfo};

/// The element type for ONNX `TensorProto` data type `code`, if supported.
pub fn onnx_dtype(code: i64) -> Option<DType> {
    match code {
        1 => Some(DType::F32),
        10 => Some(DType::F16),
        3 => Some(DType::I8),
        6 => Some(DType::I32),
        _ => None,
    }
}

/// NumPy multidirectional broadcast of two shapes, or `None` if they are
/// incompatible.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        // Dimension i of the output, counted from the left; align right.
        let da = (i + a.len()).checked_sub(n).map_or(1, |j| a[j]);
        let db = (i + b.len()).checked_sub(n).map_or(1, |j| b[j]);
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

struct Ctx<'a> {
    node: &'a Node,
    inputs: &'a [Option<&'a TensorInfo>],
}

impl Ctx<'_> {
    fn err(&self, message: String) -> GraphError {
        GraphError::Node {
            file: String::new(),
            node: self.node.name.clone(),
            op_type: self.node.op_type.clone(),
            message,
        }
    }

    fn name(&self, i: usize) -> &str {
        self.node.input(i).unwrap_or("")
    }

    /// `'w1' [700, 256]`
    fn show(&self, i: usize) -> String {
        match self.opt(i) {
            Some(t) => format!("'{}' {:?}", self.name(i), t.shape),
            None => "(omitted)".into(),
        }
    }

    fn opt(&self, i: usize) -> Option<&TensorInfo> {
        self.inputs.get(i).copied().flatten()
    }

    fn req(&self, i: usize) -> Result<&TensorInfo, GraphError> {
        self.opt(i)
            .ok_or_else(|| self.err(format!("input #{i} is missing; it is required")))
    }

    fn dtype_in(&self, i: usize, allowed: &[DType]) -> Result<DType, GraphError> {
        let t = self.req(i)?;
        if allowed.contains(&t.dtype) {
            Ok(t.dtype)
        } else {
            let names: Vec<&str> = allowed.iter().map(|d| d.name()).collect();
            Err(self.err(format!(
                "input '{}' has type {}; expected {}",
                self.name(i),
                t.dtype,
                names.join(" or ")
            )))
        }
    }

    fn same_dtype(&self, i: usize, j: usize) -> Result<(), GraphError> {
        let (a, b) = (self.req(i)?, self.req(j)?);
        if a.dtype != b.dtype {
            return Err(self.err(format!(
                "input '{}' has type {}; expected {}, the type of '{}'",
                self.name(j),
                b.dtype,
                a.dtype,
                self.name(i)
            )));
        }
        Ok(())
    }

    fn scalar(&self, i: usize, dtype: DType) -> Result<(), GraphError> {
        if let Some(t) = self.opt(i) {
            if t.dtype != dtype || !t.is_scalar() {
                return Err(self.err(format!(
                    "input '{}' is {} {:?}; expected a scalar {} (shape [] or [1]) — only per-tensor quantization is supported",
                    self.name(i),
                    t.dtype,
                    t.shape,
                    dtype
                )));
            }
        }
        Ok(())
    }

    fn rank2(&self, i: usize) -> Result<(usize, usize), GraphError> {
        let t = self.req(i)?;
        match t.shape.as_slice() {
            [r, c] => Ok((*r, *c)),
            s => Err(self.err(format!(
                "input '{}' has shape {s:?} (rank {}); expected rank 2",
                self.name(i),
                s.len()
            ))),
        }
    }

    fn out(&self, dtype: DType, shape: Vec<usize>) -> Result<Vec<TensorInfo>, GraphError> {
        checked_elements(&shape).map_err(|m| {
            self.err(format!(
                "output '{}': {m}",
                self.node.outputs.first().map_or("", String::as_str)
            ))
        })?;
        Ok(vec![TensorInfo { dtype, shape }])
    }
}

const FLOATS: &[DType] = &[DType::F32, DType::F16];
const ALL: &[DType] = &DType::ALL;

/// Infers the outputs of `node` from its inputs' infos, given by position
/// (`None` for an omitted optional input). The node must have passed the
/// arity and attribute checks of [`crate::ops::op_spec`]. Errors carry no
/// file name (see [`GraphError::Node`]).
pub fn infer_node(
    node: &Node,
    inputs: &[Option<&TensorInfo>],
) -> Result<Vec<TensorInfo>, GraphError> {
    let c = Ctx { node, inputs };
    match node.op_type.as_str() {
        "MatMul" => matmul(&c),
        "Gemm" => gemm(&c),
        "Add" | "Sub" | "Mul" => {
            let dt = c.dtype_in(0, ALL)?;
            c.same_dtype(0, 1)?;
            let (a, b) = (c.req(0)?, c.req(1)?);
            let shape = broadcast(&a.shape, &b.shape).ok_or_else(|| {
                c.err(format!(
                    "inputs {} and {} cannot be broadcast together (NumPy rules: aligned from the right, each dimension pair must be equal or one of them 1)",
                    c.show(0),
                    c.show(1)
                ))
            })?;
            c.out(dt, shape)
        }
        "Relu" | "Identity" => {
            let t = c.req(0)?;
            c.out(t.dtype, t.shape.clone())
        }
        "Cast" => {
            let t = c.req(0)?;
            let code = match node.attributes.get("to") {
                None => {
                    return Err(c.err(
                        "attribute 'to' is missing; it is required (ONNX TensorProto type code: 1 FLOAT, 10 FLOAT16, 3 INT8, 6 INT32)".into(),
                    ))
                }
                Some(_) => node.attr_int("to", 0)?,
            };
            let to = onnx_dtype(code).ok_or_else(|| {
                c.err(format!(
                    "attribute 'to' is {code}; expected a supported ONNX TensorProto type code: 1 FLOAT, 10 FLOAT16, 3 INT8, 6 INT32"
                ))
            })?;
            c.out(to, t.shape.clone())
        }
        "QuantizeLinear" => {
            node.attr_int("axis", 1)?;
            c.dtype_in(0, &[DType::F32])?;
            c.scalar(1, DType::F32)?;
            c.scalar(2, DType::I8)?;
            c.out(DType::I8, c.req(0)?.shape.clone())
        }
        "DequantizeLinear" => {
            node.attr_int("axis", 1)?;
            let dt = c.dtype_in(0, &[DType::I8, DType::I32])?;
            c.scalar(1, DType::F32)?;
            c.scalar(2, dt)?;
            c.out(DType::F32, c.req(0)?.shape.clone())
        }
        "MatMulInteger" => {
            c.dtype_in(0, &[DType::I8])?;
            c.dtype_in(1, &[DType::I8])?;
            let (m, k) = c.rank2(0)?;
            let (k2, n) = c.rank2(1)?;
            if k != k2 {
                return Err(c.err(format!(
                    "input {}: expected its first dimension to equal {k}, the last dimension of {}",
                    c.show(1),
                    c.show(0)
                )));
            }
            c.scalar(2, DType::I8)?;
            c.scalar(3, DType::I8)?;
            c.out(DType::I32, vec![m, n])
        }
        other => Err(c.err(format!(
            "op type '{other}' is not supported; supported ops: {}",
            crate::ops::SUPPORTED_OPS.join(", ")
        ))),
    }
}

fn matmul(c: &Ctx) -> Result<Vec<TensorInfo>, GraphError> {
    let dt = c.dtype_in(0, FLOATS)?;
    c.same_dtype(0, 1)?;
    let (a, b) = (&c.req(0)?.shape, &c.req(1)?.shape);
    if a.is_empty() || b.is_empty() {
        let i = if a.is_empty() { 0 } else { 1 };
        return Err(c.err(format!(
            "input '{}' is a scalar; MatMul needs inputs of rank 1 or more",
            c.name(i)
        )));
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.clone()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.clone()
    };
    let (ra, rb) = (a2.len(), b2.len());
    let (m, k) = (a2[ra - 2], a2[ra - 1]);
    let (k2, n) = (b2[rb - 2], b2[rb - 1]);
    if k != k2 {
        let which = if b.len() <= 2 {
            "first dimension"
        } else {
            "second-to-last dimension"
        };
        return Err(c.err(format!(
            "input {}: expected its {which} to equal {k}, the last dimension of {}",
            c.show(1),
            c.show(0)
        )));
    }
    let batch = broadcast(&a2[..ra - 2], &b2[..rb - 2]).ok_or_else(|| {
        c.err(format!(
            "the batch dimensions of {} and {} cannot be broadcast together",
            c.show(0),
            c.show(1)
        ))
    })?;
    let mut shape = batch;
    if a.len() >= 2 {
        shape.push(m);
    }
    if b.len() >= 2 {
        shape.push(n);
    }
    c.out(dt, shape)
}

fn gemm(c: &Ctx) -> Result<Vec<TensorInfo>, GraphError> {
    c.node.attr_float("alpha", 1.0)?;
    c.node.attr_float("beta", 1.0)?;
    let ta = c.node.attr_int("transA", 0)? != 0;
    let tb = c.node.attr_int("transB", 0)? != 0;
    let dt = c.dtype_in(0, FLOATS)?;
    c.same_dtype(0, 1)?;
    let (a0, a1) = c.rank2(0)?;
    let (b0, b1) = c.rank2(1)?;
    let (m, k) = if ta { (a1, a0) } else { (a0, a1) };
    let (k2, n) = if tb { (b1, b0) } else { (b0, b1) };
    if k != k2 {
        let (bdim, adim) = (
            if tb { "last" } else { "first" },
            if ta { "first" } else { "last" },
        );
        return Err(c.err(format!(
            "input {} (transB={}): expected its {bdim} dimension to equal {k}, the {adim} dimension of {} (transA={})",
            c.show(1),
            tb as i32,
            c.show(0),
            ta as i32
        )));
    }
    if let Some(ct) = c.opt(2) {
        c.same_dtype(0, 2)?;
        let ok = ct.shape.len() <= 2 && broadcast(&ct.shape, &[m, n]).as_deref() == Some(&[m, n]);
        if !ok {
            return Err(c.err(format!(
                "input {}: expected a shape unidirectionally broadcastable to the output shape [{m}, {n}]",
                c.show(2)
            )));
        }
    }
    c.out(dt, vec![m, n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn node(op: &str, n_in: usize) -> Node {
        Node {
            name: "n".into(),
            op_type: op.into(),
            inputs: (0..n_in).map(|i| format!("t{i}")).collect(),
            outputs: vec!["y".into()],
            attributes: BTreeMap::new(),
        }
    }

    fn ti(dtype: DType, shape: &[usize]) -> TensorInfo {
        TensorInfo {
            dtype,
            shape: shape.to_vec(),
        }
    }

    fn run(n: &Node, ins: &[TensorInfo]) -> Result<TensorInfo, String> {
        let refs: Vec<Option<&TensorInfo>> = ins.iter().map(Some).collect();
        infer_node(n, &refs)
            .map(|mut v| v.remove(0))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast(&[2, 1, 3], &[4, 1]), Some(vec![2, 4, 3]));
        assert_eq!(broadcast(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast(&[2, 3], &[3, 2]), None);
    }

    #[test]
    fn matmul_shapes() {
        let n = node("MatMul", 2);
        let f = DType::F32;
        assert_eq!(
            run(&n, &[ti(f, &[1, 784]), ti(f, &[784, 256])]).unwrap(),
            ti(f, &[1, 256])
        );
        assert_eq!(
            run(&n, &[ti(f, &[3, 1, 2, 4]), ti(f, &[5, 4, 6])]).unwrap(),
            ti(f, &[3, 5, 2, 6])
        );
        assert_eq!(
            run(&n, &[ti(f, &[4]), ti(f, &[4, 6])]).unwrap(),
            ti(f, &[6])
        );
        let e = run(&n, &[ti(f, &[1, 784]), ti(f, &[700, 256])]).unwrap_err();
        assert_eq!(e, "node 'n' (MatMul): input 't1' [700, 256]: expected its first dimension to equal 784, the last dimension of 't0' [1, 784]");
        let e = run(&n, &[ti(f, &[2, 2]), ti(DType::I8, &[2, 2])]).unwrap_err();
        assert!(e.contains("input 't1' has type i8; expected f32"), "{e}");
    }

    #[test]
    fn gemm_shapes() {
        let mut n = node("Gemm", 3);
        n.attributes
            .insert("transB".into(), crate::AttrValue::Int(1));
        let f = DType::F32;
        assert_eq!(
            run(&n, &[ti(f, &[2, 3]), ti(f, &[4, 3]), ti(f, &[4])]).unwrap(),
            ti(f, &[2, 4])
        );
        let e = run(&n, &[ti(f, &[2, 3]), ti(f, &[4, 3]), ti(f, &[2, 4, 1])]).unwrap_err();
        assert!(
            e.contains("unidirectionally broadcastable to the output shape [2, 4]"),
            "{e}"
        );
        let e = run(&n, &[ti(f, &[2, 3]), ti(f, &[3, 4])]).unwrap_err();
        assert!(e.contains("expected its last dimension to equal 3"), "{e}");
    }

    #[test]
    fn quant_shapes() {
        let q = node("QuantizeLinear", 2);
        let out = run(&q, &[ti(DType::F32, &[1, 8]), ti(DType::F32, &[])]).unwrap();
        assert_eq!(out, ti(DType::I8, &[1, 8]));
        let e = run(&q, &[ti(DType::F32, &[1, 8]), ti(DType::F32, &[8])]).unwrap_err();
        assert!(e.contains("expected a scalar f32"), "{e}");
        let d = node("DequantizeLinear", 3);
        let e = run(
            &d,
            &[
                ti(DType::I32, &[4]),
                ti(DType::F32, &[1]),
                ti(DType::I8, &[]),
            ],
        )
        .unwrap_err();
        assert!(
            e.contains("input 't2' is i8 []; expected a scalar i32"),
            "{e}"
        );
        let mm = node("MatMulInteger", 2);
        assert_eq!(
            run(&mm, &[ti(DType::I8, &[2, 3]), ti(DType::I8, &[3, 5])]).unwrap(),
            ti(DType::I32, &[2, 5])
        );
    }

    #[test]
    fn cast_and_huge() {
        let mut c = node("Cast", 1);
        assert!(run(&c, &[ti(DType::F32, &[2])])
            .unwrap_err()
            .contains("'to' is missing"));
        c.attributes.insert("to".into(), crate::AttrValue::Int(10));
        assert_eq!(
            run(&c, &[ti(DType::F32, &[2])]).unwrap(),
            ti(DType::F16, &[2])
        );
        c.attributes.insert("to".into(), crate::AttrValue::Int(2));
        assert!(run(&c, &[ti(DType::F32, &[2])])
            .unwrap_err()
            .contains("'to' is 2"));
        let a = node("Add", 2);
        let e = run(
            &a,
            &[ti(DType::F32, &[1 << 20, 1]), ti(DType::F32, &[1 << 20])],
        )
        .unwrap_err();
        assert!(e.contains("2^28"), "{e}");
    }
}
