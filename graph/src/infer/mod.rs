//! Shape and element-type inference, one rule per op (ONNX semantics,
//! restricted to what the chip supports). Parameters that ONNX passes as
//! inputs (`Reshape`'s `shape`, `Slice`'s `starts`..., `Split`'s `split`,
//! `Squeeze`/`Unsqueeze`/reduction `axes`, `Pad`'s `pads`, `Resize`'s
//! `scales`/`sizes`, `Expand`'s and `ConstantOfShape`'s shape) must be
//! constants known at load time: initializers, `Constant` outputs or values
//! folded from them (see [`crate::Graph::constants`]).
//!
//! **Types.** The chip's types are `f32`, `f16`, `i8`, `i32`. ONNX `int64`
//! tensors (shapes, indices, axes) are represented as `i32` (an `Inline`
//! value out of `i32` range is an error); ONNX `bool` tensors (the outputs
//! of `Equal`/`Less`/`Greater`, `Where`'s condition, `Cast` to BOOL) are
//! `i8` holding 0 or 1 (any non-zero `i8` counts as true). Empty tensors
//! (a zero dimension) are rejected everywhere.
//!
//! - `MatMul`: float (`f32`/`f16`) `A`, `B` of the same type; NumPy `matmul`
//!   shapes: `[.., M, K] x [.., K, N] -> [.., M, N]` with the batch
//!   dimensions broadcast, a rank-1 `A` (`B`) taken as a row (column).
//! - `Gemm`: float rank-2 `A`, `B` (transposed per `transA`/`transB`),
//!   optional `C` unidirectionally broadcastable to `[M, N]`; `alpha`,
//!   `beta` floats.
//! - `Add`, `Sub`, `Mul`, `Div`: the same type on both sides (any type),
//!   multidirectional (NumPy) broadcasting. `Pow`: float `X`, `Y` of any
//!   type, broadcast; the output has `X`'s type.
//! - `Sum`, `Max`, `Min`: one or more inputs of one type, all broadcast.
//! - `Equal`, `Less`, `Greater`: the same type on both sides, broadcast →
//!   `i8` (bool). `Where`: `i8` condition, `X`, `Y` of one type, all three
//!   broadcast.
//! - Unary float ops (`Sqrt`, `Reciprocal`, `Exp`, `Sigmoid`, `Tanh`,
//!   `Erf`, `Gelu` with `approximate` `"none"`/`"tanh"`, `HardSigmoid`
//!   (`alpha` 0.2, `beta` 0.5), `HardSwish`, `Silu`, `LeakyRelu` (`alpha`
//!   0.01)): same type and shape. `PRelu`: float `X`, `slope` of the same type
//!   unidirectionally broadcastable to `X`.
//! - `Relu`, `Identity`: any type, same shape. `Clip`: any type; optional
//!   scalar `min`, `max` inputs of the input's type (or, opset 6, float
//!   attributes `min`/`max`).
//! - `Cast`: attribute `to` (ONNX `TensorProto` code: 1 FLOAT → `f32`,
//!   10 FLOAT16 → `f16`, 3 INT8 → `i8`, 6 INT32 → `i32`, 7 INT64 → `i32`,
//!   9 BOOL → `i8`).
//! - `QuantizeLinear`: `f32` `x`, `f32` `y_scale` either a scalar or 1-D of
//!   length `x.shape[axis]` (per-axis; `axis` default 1, negative allowed),
//!   optional `i8` `y_zero_point` of the scale's shape → `i8` of `x`'s shape.
//!   Without a zero point the output is still `i8` (zero point 0) — a
//!   deliberate deviation from ONNX, which defaults to `uint8`.
//! - `DequantizeLinear`: `i8` or `i32` `x`, `f32` `x_scale` (scalar or
//!   per-axis as above), optional `x_zero_point` of `x`'s type and the
//!   scale's shape → `f32`.
//! - `MatMulInteger`: rank-2 `i8` `A`, `B`, optional scalar `i8` zero points
//!   → `i32` `[M, N]`.
//! - `Conv`: float `X` `[N, C, D1..]`, `W` `[M, C/group, K1..]` of the same
//!   type, optional `B` `[M]`; `strides`, `dilations` (default 1), `pads`
//!   (`[begins.., ends..]`, default 0, non-negative), `group` (default 1;
//!   `group == C` is depthwise), `auto_pad` (`NOTSET`, `SAME_UPPER`,
//!   `SAME_LOWER`, `VALID`), `kernel_shape` (checked against `W`). Output
//!   size per spatial dimension `floor((D + pb + pe - ((K-1)*d + 1)) / s) + 1`;
//!   with `SAME_*`, `ceil(D / s)` and the total padding
//!   `max(0, (out-1)*s + (K-1)*d + 1 - D)` split evenly, the odd one at the
//!   end (`SAME_UPPER`) or the beginning (`SAME_LOWER`); `VALID` has no
//!   padding.
//! - `ConvInteger`: `Conv` on `i8` `x`, `w` with an optional scalar `i8`
//!   `x_zero_point` and an optional `i8` `w_zero_point` (scalar or `[M]`)
//!   → `i32`.
//! - `ConvTranspose`: float `X` `[N, C, D..]`, `W` `[C, M/group, K..]`,
//!   optional `B` `[M]`; output size `s*(D-1) + output_padding +
//!   (K-1)*d + 1 - pb - pe`, or `output_shape` (or `D*s` for `SAME_*`) with
//!   the pads computed as in the ONNX spec.
//! - `MaxPool` (any type), `AveragePool` (float): `kernel_shape` (required),
//!   `strides`, `pads`, `dilations`, `auto_pad` as for `Conv`; `ceil_mode`
//!   rounds the output size up, dropping a last window that would start in
//!   the end padding; `count_include_pad` (AveragePool); `storage_order`
//!   must be 0; the optional `Indices` output is not supported.
//!   `GlobalAveragePool`: float `[N, C, D..]` → `[N, C, 1..]`.
//! - `BatchNormalization` (inference form, `training_mode` 0): float `X`
//!   `[N, C, ..]`, `scale`, `B`, `input_mean`, `input_var` `[C]` of the
//!   same type; `epsilon` (1e-5), `momentum` ignored.
//! - `LRN`: float `[N, C, ..]`, `size` (required, ≥ 1), `alpha` (1e-4),
//!   `beta` (0.75), `bias` (1.0).
//! - `Softmax`: float, `axis` (default -1). `LayerNormalization`: float `X`,
//!   `Scale` and optional `B` broadcastable to `X.shape[axis..]`; `axis`
//!   (-1), `epsilon` (1e-5), `stash_type` 1. `RMSNormalization` (opset 23):
//!   the same without `B`. Only the `Y` output.
//! - `ReduceMean` (float), `ReduceSum`, `ReduceMax` (any type): axes from the
//!   second input (opset 13/18) or attribute `axes` (older), negative
//!   allowed; no axes reduce everything unless `noop_with_empty_axes`;
//!   `keepdims` (default 1).
//! - Layout (any type): `Reshape` (constant `shape`, `0` copies, one `-1`
//!   inferred, `allowzero`), `Flatten` (`axis` 1, output rank 2),
//!   `Transpose` (`perm`, default reversed), `Concat` (`axis` required; all
//!   inputs the same type and rank, equal except along `axis`), `Split`
//!   (`axis` 0; sizes from the `split` input, the `split` attribute, or
//!   `num_outputs` — `ceil(D / n)` each and the remainder last — or even),
//!   `Slice` (constant `starts`, `ends`, optional `axes`, `steps`; negative
//!   indices count from the end, then clamp to the dimension as in ONNX),
//!   `Squeeze` (axes optional: all size-1 dimensions), `Unsqueeze` (axes
//!   against the output rank), `Gather` (`i32`/`i8` `indices`, `axis` 0;
//!   output `data.shape[..axis] + indices.shape + data.shape[axis+1..]`),
//!   `Pad` (constant `pads`, optional scalar `constant_value` and constant
//!   `axes`; `mode` constant, reflect, edge or wrap; negative pads crop),
//!   `Expand` (bidirectional broadcast with the constant shape), `Resize`
//!   (`scales` or `sizes`, attribute `axes`; output `floor(D * scale)`;
//!   `mode` nearest or linear; `coordinate_transformation_mode`
//!   half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners,
//!   asymmetric; `roi` ignored).
//! - `Constant`: exactly one of `value` (a tensor), `value_float(s)`,
//!   `value_int(s)` (→ `i32`). `ConstantOfShape`: constant 1-D shape, `value`
//!   a one-element tensor (default f32 0). `Shape` → `i32` `[end - start]`
//!   (`start`, `end` attributes).
//!
//! Scalars are shape `[]` or `[1]`.

pub(crate) mod params;

use lpu_isa::DType;

use crate::error::GraphError;
use crate::ir::Node;
use crate::tensor::{checked_elements, Tensor, TensorInfo};
use params::R;

/// The element type for ONNX `TensorProto` data type `code`, if supported:
/// 1 FLOAT → f32, 10 FLOAT16 → f16, 3 INT8 → i8, 6 INT32 → i32, and the
/// representations 7 INT64 → i32, 9 BOOL → i8.
pub fn onnx_dtype(code: i64) -> Option<DType> {
    match code {
        1 => Some(DType::F32),
        10 => Some(DType::F16),
        3 | 9 => Some(DType::I8),
        6 | 7 => Some(DType::I32),
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
    consts: &'a [Option<&'a Tensor>],
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

    /// Wraps a message-only result.
    fn p<T>(&self, r: R<T>) -> Result<T, GraphError> {
        r.map_err(|m| self.err(m))
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

    fn shape(&self, i: usize) -> Result<&[usize], GraphError> {
        Ok(&self.req(i)?.shape)
    }

    /// The value of input `i` when it must be known at load time: `None`
    /// when the input is omitted, an error when it is not constant.
    fn konst(&self, i: usize) -> Result<Option<&Tensor>, GraphError> {
        if self.node.input(i).is_none() {
            return Ok(None);
        }
        match self.consts.get(i).copied().flatten() {
            Some(t) => Ok(Some(t)),
            None => Err(self.err(format!(
                "input '{}' (#{i}) must be a constant: an initializer, the output of a Constant node, or computable from those when the graph is loaded",
                self.name(i)
            ))),
        }
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
                    "input '{}' is {} {:?}; expected a scalar {} (shape [] or [1])",
                    self.name(i),
                    t.dtype,
                    t.shape,
                    dtype
                )));
            }
        }
        Ok(())
    }

    /// Optional input `i` of type `dtype` and shape `[n]` (or, when
    /// `scalar_ok`, a scalar).
    fn vector(&self, i: usize, dtype: DType, n: usize, scalar_ok: bool) -> Result<(), GraphError> {
        if let Some(t) = self.opt(i) {
            let ok = t.dtype == dtype && (t.shape == [n] || (scalar_ok && t.is_scalar()));
            if !ok {
                return Err(self.err(format!(
                    "input '{}' is {} {:?}; expected {} [{n}]{}",
                    self.name(i),
                    t.dtype,
                    t.shape,
                    dtype,
                    if scalar_ok { " or a scalar" } else { "" }
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

    /// Broadcast of all the given inputs' shapes.
    fn broadcast_all(&self, idx: &[usize]) -> Result<Vec<usize>, GraphError> {
        let mut shape: Vec<usize> = Vec::new();
        for &i in idx {
            let s = self.shape(i)?;
            shape = broadcast(&shape, s).ok_or_else(|| {
                let shown: Vec<String> = idx.iter().map(|&j| self.show(j)).collect();
                self.err(format!(
                    "inputs {} cannot be broadcast together (NumPy rules: aligned from the right, each dimension pair must be equal or one of them 1)",
                    shown.join(" and ")
                ))
            })?;
        }
        Ok(shape)
    }

    fn out(&self, dtype: DType, shape: Vec<usize>) -> Result<Vec<TensorInfo>, GraphError> {
        self.out_k(0, dtype, shape).map(|t| vec![t])
    }

    fn out_k(&self, k: usize, dtype: DType, shape: Vec<usize>) -> Result<TensorInfo, GraphError> {
        let name = self.node.outputs.get(k).map_or("", String::as_str);
        let n = checked_elements(&shape).map_err(|m| self.err(format!("output '{name}': {m}")))?;
        if n == 0 {
            return Err(self.err(format!(
                "output '{name}' would have shape {shape:?}; empty tensors are not supported"
            )));
        }
        Ok(TensorInfo { dtype, shape })
    }

    /// Same type and shape as input 0.
    fn same(&self) -> Result<Vec<TensorInfo>, GraphError> {
        let t = self.req(0)?;
        self.out(t.dtype, t.shape.clone())
    }
}

const FLOATS: &[DType] = &[DType::F32, DType::F16];
const ALL: &[DType] = &DType::ALL;
const INTS: &[DType] = &[DType::I8, DType::I32];

/// Infers the outputs of `node` from its inputs' infos, given by position
/// (`None` for an omitted optional input), and the values of those inputs
/// that are known at load time (`consts`, by position; `None` when not
/// constant or omitted). The node must have passed the arity and attribute
/// checks of [`crate::ops::op_spec`]. Errors carry no file name (see
/// [`GraphError::Node`]).
pub fn infer_node(
    node: &Node,
    inputs: &[Option<&TensorInfo>],
    consts: &[Option<&Tensor>],
) -> Result<Vec<TensorInfo>, GraphError> {
    let c = Ctx {
        node,
        inputs,
        consts,
    };
    match node.op_type.as_str() {
        "MatMul" => matmul(&c),
        "Gemm" => gemm(&c),
        "Add" | "Sub" | "Mul" | "Div" | "Equal" | "Less" | "Greater" => {
            let dt = c.dtype_in(0, ALL)?;
            c.same_dtype(0, 1)?;
            let shape = c.broadcast_all(&[0, 1])?;
            let dt = if matches!(node.op_type.as_str(), "Equal" | "Less" | "Greater") {
                DType::I8
            } else {
                dt
            };
            c.out(dt, shape)
        }
        "Pow" => {
            let dt = c.dtype_in(0, FLOATS)?;
            c.req(1)?;
            let shape = c.broadcast_all(&[0, 1])?;
            c.out(dt, shape)
        }
        "Sum" | "Max" | "Min" => {
            let dt = c.dtype_in(0, ALL)?;
            let idx: Vec<usize> = (0..node.inputs.len()).collect();
            for &i in &idx[1..] {
                c.same_dtype(0, i)?;
            }
            let shape = c.broadcast_all(&idx)?;
            c.out(dt, shape)
        }
        "Where" => {
            c.dtype_in(0, &[DType::I8])?;
            let dt = c.dtype_in(1, ALL)?;
            c.same_dtype(1, 2)?;
            let shape = c.broadcast_all(&[0, 1, 2])?;
            c.out(dt, shape)
        }
        "Sqrt" | "Reciprocal" | "Exp" | "Sigmoid" | "Tanh" | "Erf" | "HardSwish" | "Silu" => {
            c.dtype_in(0, FLOATS)?;
            c.same()
        }
        "Gelu" => {
            let a = c.p(params::string(node, "approximate", "none"))?;
            if a != "none" && a != "tanh" {
                return Err(c.err(format!(
                    "attribute 'approximate' is \"{a}\"; expected \"none\" or \"tanh\""
                )));
            }
            c.dtype_in(0, FLOATS)?;
            c.same()
        }
        "HardSigmoid" => {
            node.attr_float("alpha", 0.2)?;
            node.attr_float("beta", 0.5)?;
            c.dtype_in(0, FLOATS)?;
            c.same()
        }
        "LeakyRelu" => {
            node.attr_float("alpha", 0.01)?;
            c.dtype_in(0, FLOATS)?;
            c.same()
        }
        "PRelu" => {
            c.dtype_in(0, FLOATS)?;
            c.same_dtype(0, 1)?;
            let (x, s) = (c.shape(0)?, c.shape(1)?);
            if broadcast(s, x).as_deref() != Some(x) {
                return Err(c.err(format!(
                    "input {} is not unidirectionally broadcastable to {}",
                    c.show(1),
                    c.show(0)
                )));
            }
            c.same()
        }
        "Relu" | "Identity" => c.same(),
        "Clip" => {
            let dt = c.dtype_in(0, ALL)?;
            c.scalar(1, dt)?;
            c.scalar(2, dt)?;
            let has_attr =
                node.attributes.contains_key("min") || node.attributes.contains_key("max");
            if has_attr && (!dt.is_float() || node.input(1).is_some() || node.input(2).is_some()) {
                return Err(c.err(
                    "attributes 'min'/'max' (opset 6) need a float input and no min/max inputs"
                        .into(),
                ));
            }
            c.same()
        }
        "Cast" => {
            let t = c.req(0)?;
            let (_, to) = c.p(params::cast_target(node))?;
            node.attr_int("saturate", 1)?;
            c.out(to, t.shape.clone())
        }
        "NarrowCast" => {
            let t = c.req(0)?;
            let (f, _) = c.p(params::narrow_format(node))?;
            c.out(f.container(), t.shape.clone())
        }
        "QuantizeLinear" | "DequantizeLinear" => quant(&c),
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
        "Conv" | "ConvTranspose" => {
            let dt = c.dtype_in(0, FLOATS)?;
            c.same_dtype(0, 1)?;
            let (x, w) = (c.shape(0)?, c.shape(1)?);
            let g = if node.op_type == "Conv" {
                c.p(params::conv_geom(node, x, w))?
            } else {
                c.p(params::conv_transpose_geom(node, x, w))?
            };
            c.vector(2, dt, g.cout, false)?;
            let mut shape = vec![g.n, g.cout];
            shape.extend(&g.win.out);
            c.out(dt, shape)
        }
        "ConvInteger" => {
            c.dtype_in(0, &[DType::I8])?;
            c.dtype_in(1, &[DType::I8])?;
            let g = c.p(params::conv_geom(node, c.shape(0)?, c.shape(1)?))?;
            c.scalar(2, DType::I8)?;
            c.vector(3, DType::I8, g.cout, true)?;
            let mut shape = vec![g.n, g.cout];
            shape.extend(&g.win.out);
            c.out(DType::I32, shape)
        }
        "MaxPool" | "AveragePool" => {
            let dt = if node.op_type == "MaxPool" {
                c.dtype_in(0, ALL)?
            } else {
                c.p(params::flag(node, "count_include_pad", false))?;
                c.dtype_in(0, FLOATS)?
            };
            let x = c.shape(0)?;
            let w = c.p(params::pool_geom(node, x))?;
            let mut shape = x[..2].to_vec();
            shape.extend(&w.out);
            c.out(dt, shape)
        }
        "GlobalAveragePool" => {
            let dt = c.dtype_in(0, FLOATS)?;
            let x = c.shape(0)?;
            if x.len() < 3 {
                return Err(c.err(format!(
                    "input {} has rank {}; expected [N, C, D1, ...]",
                    c.show(0),
                    x.len()
                )));
            }
            let mut shape = x[..2].to_vec();
            shape.resize(x.len(), 1);
            c.out(dt, shape)
        }
        "BatchNormalization" => {
            let dt = c.dtype_in(0, FLOATS)?;
            node.attr_float("epsilon", 1e-5)?;
            node.attr_float("momentum", 0.9)?;
            if node.attr_int("training_mode", 0)? != 0 {
                return Err(c.err(
                    "attribute 'training_mode' is not 0; only the inference form is supported"
                        .into(),
                ));
            }
            let x = c.shape(0)?;
            if x.len() < 2 {
                return Err(c.err(format!(
                    "input {} has rank {}; expected [N, C, ...]",
                    c.show(0),
                    x.len()
                )));
            }
            for i in 1..5 {
                c.req(i)?;
                c.vector(i, dt, x[1], false)?;
            }
            c.same()
        }
        "LRN" => {
            c.dtype_in(0, FLOATS)?;
            let size = match node.attributes.get("size") {
                None => return Err(c.err("attribute 'size' is missing; it is required".into())),
                Some(_) => node.attr_int("size", 1)?,
            };
            if size < 1 {
                return Err(c.err(format!("attribute 'size' is {size}; expected at least 1")));
            }
            for (a, d) in [("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)] {
                node.attr_float(a, d)?;
            }
            if c.shape(0)?.len() < 2 {
                return Err(c.err(format!(
                    "input {} has rank < 2; expected [N, C, ...]",
                    c.show(0)
                )));
            }
            c.same()
        }
        "Softmax" => {
            c.dtype_in(0, FLOATS)?;
            let r = c.shape(0)?.len();
            c.p(params::norm_axis(
                node.attr_int("axis", -1)?,
                r,
                "attribute 'axis'",
            ))?;
            c.same()
        }
        "LayerNormalization" | "RMSNormalization" => {
            c.dtype_in(0, FLOATS)?;
            let x = c.shape(0)?;
            let axis = c.p(params::norm_axis(
                node.attr_int("axis", -1)?,
                x.len(),
                "attribute 'axis'",
            ))?;
            node.attr_float("epsilon", 1e-5)?;
            let st = node.attr_int("stash_type", 1)?;
            if st != 1 {
                return Err(c.err(format!(
                    "attribute 'stash_type' is {st}; only 1 (compute in f32) is supported"
                )));
            }
            for i in 1..node.inputs.len() {
                if let Some(t) = c.opt(i) {
                    c.same_dtype(0, i)?;
                    let ok = t.shape.len() <= x.len() - axis
                        && broadcast(&t.shape, &x[axis..]).as_deref() == Some(&x[axis..]);
                    if !ok {
                        return Err(c.err(format!(
                            "input {} is not broadcastable to the normalized shape {:?} (dimensions {axis}.. of {})",
                            c.show(i),
                            &x[axis..],
                            c.show(0)
                        )));
                    }
                }
            }
            // Mean and InvStdDev (LayerNormalization): X's shape with the
            // normalized dimensions 1, in f32 (stash_type 1).
            let mut outs = c.same()?;
            let mut stat = x[..axis].to_vec();
            stat.resize(x.len(), 1);
            for k in 1..node.outputs.len() {
                outs.push(c.out_k(k, DType::F32, stat.clone())?);
            }
            Ok(outs)
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" => {
            let dt = if node.op_type == "ReduceMean" {
                c.dtype_in(0, FLOATS)?
            } else {
                c.dtype_in(0, ALL)?
            };
            let x = c.shape(0)?;
            let axes = c.konst(1)?;
            let keep = c.p(params::flag(node, "keepdims", true))?;
            match c.p(params::reduce_mask(node, x.len(), axes))? {
                None => c.same(),
                Some(mask) => c.out(dt, params::reduced_shape(x, &mask, keep)),
            }
        }
        "Reshape" => {
            let t = c.req(0)?;
            c.dtype_in(1, INTS)?;
            let s = c
                .konst(1)?
                .ok_or_else(|| c.err("input 'shape' is missing".into()))?;
            let shape = c.p(params::reshape_target(node, &t.shape, s))?;
            c.out(t.dtype, shape)
        }
        "Flatten" => {
            let t = c.req(0)?;
            let shape = c.p(params::flatten_shape(node, &t.shape))?;
            c.out(t.dtype, shape)
        }
        "Transpose" => {
            let t = c.req(0)?;
            let perm = c.p(params::transpose_perm(node, t.shape.len()))?;
            c.out(t.dtype, perm.iter().map(|&p| t.shape[p]).collect())
        }
        "Concat" => concat(&c),
        "Split" => {
            let t = c.req(0)?;
            if c.opt(1).is_some() {
                c.dtype_in(1, INTS)?;
            }
            let split = c.konst(1)?;
            let (axis, sizes) = c.p(params::split_sizes(
                node,
                &t.shape,
                node.outputs.len(),
                split,
            ))?;
            sizes
                .iter()
                .enumerate()
                .map(|(k, &s)| {
                    let mut shape = t.shape.clone();
                    shape[axis] = s;
                    c.out_k(k, t.dtype, shape)
                })
                .collect()
        }
        "Slice" => {
            let t = c.req(0)?;
            let k = |i| c.konst(i);
            let (starts, ends) = (
                k(1)?.ok_or_else(|| c.err("input 'starts' is missing".into()))?,
                k(2)?.ok_or_else(|| c.err("input 'ends' is missing".into()))?,
            );
            let plan = c.p(params::slice_plan(&t.shape, starts, ends, k(3)?, k(4)?))?;
            c.out(t.dtype, plan.iter().map(|p| p.2).collect())
        }
        "Squeeze" | "Unsqueeze" => {
            let t = c.req(0)?;
            let axes = c.konst(1)?;
            let shape = if node.op_type == "Squeeze" {
                c.p(params::squeeze_shape(node, &t.shape, axes))?
            } else {
                c.p(params::unsqueeze_shape(node, &t.shape, axes))?
            };
            c.out(t.dtype, shape)
        }
        "Gather" => {
            let t = c.req(0)?;
            c.dtype_in(1, INTS)?;
            let idx = c.shape(1)?;
            let axis = c.p(params::norm_axis(
                node.attr_int("axis", 0)?,
                t.shape.len(),
                "attribute 'axis'",
            ))?;
            if let Some(v) = c.consts.get(1).copied().flatten() {
                let d = t.shape[axis] as i64;
                let vals = c.p(params::int_values(v, "input 'indices'"))?;
                if let Some(bad) = vals.iter().find(|&&i| i < -d || i >= d) {
                    return Err(c.err(format!(
                        "index {bad} in {} is out of range for axis {axis} of {} (expected {} to {})",
                        c.show(1),
                        c.show(0),
                        -d,
                        d - 1
                    )));
                }
            }
            let mut shape = t.shape[..axis].to_vec();
            shape.extend(idx);
            shape.extend(&t.shape[axis + 1..]);
            c.out(t.dtype, shape)
        }
        "Pad" => {
            let t = c.req(0)?;
            c.scalar(2, t.dtype)?;
            if node.attributes.contains_key("value") && node.input(2).is_some() {
                return Err(c.err(
                    "give the pad value as input 'constant_value' or attribute 'value', not both"
                        .into(),
                ));
            }
            let (plan, _) = c.p(params::pad_plan(
                node,
                t.shape.len(),
                c.konst(1)?,
                c.konst(3)?,
            ))?;
            let shape = c.p(params::padded_shape(&t.shape, &plan))?;
            c.out(t.dtype, shape)
        }
        "Resize" => {
            let t = c.req(0)?;
            // The roi is read by tf_crop_and_resize only.
            let crop = c.p(params::string(
                node,
                "coordinate_transformation_mode",
                "half_pixel",
            ))? == "tf_crop_and_resize";
            let plan = c.p(params::resize_plan(
                node,
                &t.shape,
                if crop { c.konst(1)? } else { None },
                c.konst(2)?,
                c.konst(3)?,
            ))?;
            if plan.mode != "nearest" && !t.dtype.is_float() {
                return Err(c.err(format!(
                    "{} Resize needs a float input; '{}' is {}",
                    plan.mode,
                    c.name(0),
                    t.dtype
                )));
            }
            c.out(t.dtype, plan.out)
        }
        "Expand" => {
            let t = c.req(0)?;
            let s = c
                .konst(1)?
                .ok_or_else(|| c.err("input 'shape' is missing".into()))?;
            let shape = c.p(params::expand_shape(&t.shape, s))?;
            c.out(t.dtype, shape)
        }
        "Constant" => {
            let v = c.p(params::constant_value(node))?;
            c.out(v.dtype(), v.shape)
        }
        "ConstantOfShape" => {
            c.dtype_in(0, INTS)?;
            let s = c
                .konst(0)?
                .ok_or_else(|| c.err("input 'input' is missing".into()))?;
            let (shape, value) = c.p(params::constant_of_shape(node, s))?;
            c.out(value.dtype(), shape)
        }
        "Shape" => {
            let r = c.shape(0)?.len();
            let (s, e) = c.p(params::shape_range(node, r))?;
            c.out(DType::I32, vec![e - s])
        }
        other => Err(c.err(format!(
            "op type '{other}' is not supported; supported ops: {}",
            crate::ops::SUPPORTED_OPS.join(", ")
        ))),
    }
}

fn quant(c: &Ctx) -> Result<Vec<TensorInfo>, GraphError> {
    let q = c.node.op_type == "QuantizeLinear";
    let dt = if q {
        c.dtype_in(0, &[DType::F32])?
    } else {
        c.dtype_in(0, &[DType::I8, DType::I32])?
    };
    let x = c.shape(0)?;
    // An i32 zero point makes an i32 result (the widened UINT8, INT16 and
    // UINT16 of ONNX, clamped after by the importer's `Clip`).
    let zp_dt = match (q, c.node.input(2)) {
        (true, Some(_)) => c.dtype_in(2, &[DType::I8, DType::I32])?,
        (true, None) => DType::I8,
        (false, _) => dt,
    };
    let s = c.req(1)?;
    if s.dtype != DType::F32 {
        return Err(c.err(format!(
            "input '{}' has type {}; expected f32",
            c.name(1),
            s.dtype
        )));
    }
    if s.is_scalar() {
        c.scalar(2, zp_dt)?;
    } else if s.shape.len() == 1 {
        let axis = c.p(params::norm_axis(
            c.node.attr_int("axis", 1)?,
            x.len(),
            "attribute 'axis'",
        ))?;
        let n = x[axis];
        c.vector(1, DType::F32, n, false)?;
        c.vector(2, zp_dt, n, false)?;
    } else {
        return Err(c.err(format!(
            "input {} has rank {}; expected a scalar (per-tensor) or 1-D (per-axis) scale (blocked quantization is not supported)",
            c.show(1),
            s.shape.len()
        )));
    }
    c.out(if q { zp_dt } else { DType::F32 }, x.to_vec())
}

fn concat(c: &Ctx) -> Result<Vec<TensorInfo>, GraphError> {
    let t0 = c.req(0)?;
    let r = t0.shape.len();
    let axis_v = match c.node.attributes.get("axis") {
        None => return Err(c.err("attribute 'axis' is missing; it is required".into())),
        Some(_) => c.node.attr_int("axis", 0)?,
    };
    let axis = c.p(params::norm_axis(axis_v, r, "attribute 'axis'"))?;
    let mut shape = t0.shape.clone();
    shape[axis] = 0;
    for i in 0..c.node.inputs.len() {
        let t = c.req(i)?;
        c.same_dtype(0, i)?;
        let ok = t.shape.len() == r
            && t.shape
                .iter()
                .enumerate()
                .all(|(d, &v)| d == axis || v == t0.shape[d]);
        if !ok {
            return Err(c.err(format!(
                "input {} does not match {} except along axis {axis}",
                c.show(i),
                c.show(0)
            )));
        }
        shape[axis] += t.shape[axis];
    }
    c.out(t0.dtype, shape)
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
        infer_node(n, &refs, &[])
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
        let out = run(&q, &[ti(DType::F32, &[1, 8]), ti(DType::F32, &[8])]).unwrap();
        assert_eq!(out, ti(DType::I8, &[1, 8]));
        let e = run(&q, &[ti(DType::F32, &[1, 8]), ti(DType::F32, &[3])]).unwrap_err();
        assert!(e.contains("expected f32 [8]"), "{e}");
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
