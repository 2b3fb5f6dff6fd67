//! The reference interpreter: the correctness oracle the simulator's results
//! are compared against. Its arithmetic is a contract with the simulator.
//!
//! # General rules
//!
//! - **f32** ops are plain IEEE `f32` operations, each rounded to f32, in
//!   the order stated below; no fused multiply-add anywhere. "Sum in
//!   ascending order" means `acc = 0.0f32; for each term in the stated
//!   order: acc = acc + term`.
//! - **f16**: every float op converts its f16 operands to f32, runs exactly
//!   the f32 procedure, and rounds each output element to f16 once, at the
//!   end of the op (`f16::from_f32`, to nearest even).
//! - **i8** arithmetic saturates to `[-128, 127]`; **i32** arithmetic wraps
//!   (two's complement), except where stated.
//! - Transcendentals use Rust's `std` `f32` functions (`exp`, `tanh`,
//!   `sqrt`, `powf`), whose results are what the platform's libm gives;
//!   `erf` is this crate's own f64 implementation ([`erf`], accurate to
//!   about 1e-15 relative) rounded to f32.
//! - Broadcasting follows NumPy (see [`crate::infer`]); outputs are
//!   produced in row-major order.
//! - `bool` is `i8` 0/1 (any non-zero `i8` reads as true); ONNX `int64` is
//!   `i32`.
//!
//! # Per op
//!
//! - `MatMul`/`Gemm` in f32: `acc = 0.0f32`; for `k` in `0..K` ascending,
//!   `acc = acc + a[m,k] * b[k,n]`. Batched `MatMul` does this for each
//!   (broadcast) batch index. `Gemm` then computes `y = alpha * acc` (no
//!   multiply when `alpha == 1`) and, when `C` is given, `y = y + beta * c`
//!   (no multiply when `beta == 1`).
//! - `Add`, `Sub`, `Mul`: `a op b`; i8 saturating, i32 wrapping. `Div`:
//!   floats `a / b`; integers truncate toward zero, i8 saturates
//!   (`-128 / -1 = 127`), i32 wraps (`MIN / -1 = MIN`); an integer division
//!   by zero is an error. `Pow`: `x.powf(y as f32)` (`y` converted exactly
//!   from f16/i8, rounded from i32).
//! - `Sum`: folds the inputs left to right, `((x0 + x1) + x2) + ...`, with
//!   the type's addition (f32, i8 saturating, i32 wrapping). `Max`/`Min`:
//!   `acc = x0`, then for each later input `if v > acc { acc = v }` (resp.
//!   `<`) on floats — so a NaN in `x0` is kept and a later NaN ignored — and
//!   `max`/`min` on integers.
//! - `Equal`, `Less`, `Greater`: IEEE comparisons (NaN compares false) on the
//!   f32 values (f16 widened), integer comparisons on integers; 1 or 0.
//!   `Where`: `if cond != 0 { x } else { y }`.
//! - `Relu`: `if x < 0 { 0 } else { x }` (so NaN and -0.0 pass unchanged);
//!   on integers `max(x, 0)`. `LeakyRelu`: `if x < 0 { alpha * x } else { x }`.
//!   `PRelu`: the same with the broadcast slope.
//! - `Clip`: `if x < min { min } else if x > max { max } else { x }` (NaN
//!   passes); absent bounds are skipped.
//! - `Sqrt`: `x.sqrt()`. `Reciprocal`: `1.0 / x`. `Exp`: `x.exp()`.
//!   `Tanh`: `x.tanh()`. `Erf`: `erf(x as f64) as f32`.
//!   `Sigmoid`: `1.0 / (1.0 + (-x).exp())`. `Silu`: `x * sigmoid(x)` with
//!   that sigmoid. `HardSigmoid`: `max(0, min(1, alpha * x + beta))`
//!   (computed as `alpha * x`, then `+ beta`, then clamped).
//!   `HardSwish`: `x * hardsigmoid(x)` with `alpha = 1/6` (`1.0f32 / 6.0`),
//!   `beta = 0.5`.
//!   `Gelu` `"none"`: `0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))`, evaluated as
//!   `(0.5 * x) * (1.0 + e)` with `e = erf((x * FRAC_1_SQRT_2) as f64) as f32`;
//!   `"tanh"`: `(0.5 * x) * (1.0 + tanh(c * (x + 0.044715 * (x * x * x))))`
//!   with `c = sqrt(2/pi)` as an f32 constant (`0.797_884_6`).
//! - `Cast`: f32 → f16 rounds to nearest even; float → integer rounds toward
//!   zero and saturates (NaN → 0, Rust's `as`); integer → f32 rounds to
//!   nearest (i32 → f16 rounds once, from the exact value); i32 → i8
//!   saturates; f16 → f32 and i8 → i32 are exact. To BOOL (9): `x != 0`
//!   as i8 0/1 (NaN is true). To INT64 (7): as to INT32.
//! - `QuantizeLinear`: `r = (x / scale).round_ties_even()` in f32, then
//!   `(r + zp as f32).clamp(-128.0, 127.0) as i8`; NaN gives 0. The zero
//!   point defaults to 0 and the output is always i8. Per-axis: `scale` and
//!   `zp` indexed by the element's coordinate along `axis`.
//! - `DequantizeLinear`: `((x as i64 - zp as i64) as f32) * scale`, per
//!   axis likewise.
//! - `MatMulInteger`: `y[m,n] = Σ_k (a[m,k] - azp) * (b[k,n] - bzp)` in i32,
//!   accumulating with wrapping arithmetic, `k` ascending.
//! - `Conv`: for each output element, `acc = 0.0f32`, then for `ci` in the
//!   group's input channels ascending, then each kernel position in
//!   row-major order (`kh`, then `kw`, ...), skipping positions that fall in
//!   the padding, `acc = acc + x * w`; then `acc + b[m]` when `B` is given.
//! - `ConvInteger`: the same order with `(x - xzp) * (w - wzp[m])` in i32,
//!   wrapping; padding positions are skipped (they contribute 0, i.e. the
//!   pad value is the zero point).
//! - `ConvTranspose`: for each output element `(n, m, o..)`, `acc = 0.0f32`;
//!   for `ci` in the group's input channels ascending, then kernel positions
//!   row-major, when `o + pad_begin - k * dilation` is a non-negative
//!   multiple of the stride whose quotient `i` is inside the input,
//!   `acc = acc + x[n, ci, i..] * w[ci, m % (M/group), k..]`; then `+ b[m]`.
//! - `MaxPool`: the largest element of each window (`if v > acc`, starting
//!   from the first in-bounds element, row-major over the window); padding
//!   and positions past the end never count.
//! - `AveragePool`: the in-bounds elements of the window summed in row-major
//!   order, then divided (`sum / count as f32`) by the number of in-bounds
//!   elements, or with `count_include_pad` by the number of window positions
//!   inside the padded input (positions that `ceil_mode` adds past the end
//!   padding are never counted).
//! - `GlobalAveragePool`: the spatial elements summed in row-major order,
//!   divided by their count (`sum / n as f32`).
//! - `BatchNormalization`: `(x - mean) / (var + epsilon).sqrt() * scale + b`
//!   per channel, in that order.
//! - `LRN`: `sq = Σ x[c']²` over `c'` from `max(0, c - (size-1)/2)` to
//!   `min(C-1, c + ceil((size-1)/2))` ascending (each square `x * x`), then
//!   `x / (bias + alpha / size as f32 * sq).powf(beta)`, with
//!   `alpha / size` computed first.
//! - `Softmax`: along `axis`, `m = max` (first element, then `if v > m`),
//!   `e_i = (x_i - m).exp()`, `s = Σ e_i` ascending, `y_i = e_i / s`.
//! - `LayerNormalization`: over the normalized dimensions in row-major order,
//!   `mean = (Σ x) / n as f32`, `d = x - mean`, `var = (Σ d * d) / n as f32`,
//!   `inv = 1.0 / (var + epsilon).sqrt()`, `y = d * inv * scale (+ b)`;
//!   the optional outputs Mean and InvStdDev are `mean` and `inv` (f32,
//!   X's shape with the normalized dimensions 1). `RMSNormalization`: `ms = (Σ x * x) / n as f32`,
//!   `inv = 1.0 / (ms + epsilon).sqrt()`, `y = x * inv * scale`.
//! - `ReduceSum`: the reduced elements summed in row-major order of the
//!   input, starting from 0 (i8 saturating, i32 wrapping). `ReduceMean`:
//!   that sum `/ count as f32`. `ReduceMax`: the first reduced element, then
//!   `if v > acc`.
//! - Layout ops (`Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`, `Identity`,
//!   `Transpose`, `Concat`, `Split`, `Slice`, `Gather`, `Expand`, `Pad`,
//!   `Shape`, `Constant`, `ConstantOfShape`) copy values exactly. `Gather`
//!   indices may be negative (counting from the end); an out-of-range index
//!   is an error. `Pad`: `constant` fills with `constant_value` (default 0);
//!   `reflect` mirrors without repeating the edge (period `2 * (D - 1)`),
//!   `edge` repeats the edge, `wrap` wraps around.
//! - `Resize`: per output coordinate `x` along each dimension, the input
//!   coordinate `x'` is computed in f64 from the scale `s` (given, or
//!   `out / in` when `sizes` is given): `half_pixel` `(x + 0.5) / s - 0.5`;
//!   `half_pixel_symmetric` the same plus `in/2 * (1 - out / (s * in))`;
//!   `pytorch_half_pixel` like `half_pixel` but 0 when `out == 1`;
//!   `align_corners` `x * (in - 1) / (in * scale - 1)` (0 when `out == 1`; `in * scale` is the output length when sizes are given);
//!   `asymmetric` `x / s`; `tf_crop_and_resize` with the region `[a, b]`
//!   of the input `roi`, `a * (in - 1) + x * (b - a) * (in - 1) / (s * in - 1)`
//!   (`(b - a) * (in - 1) / 2 + a * (in - 1)` when `s * in == 1`), and an
//!   output element whose `x'` is outside `[0, in - 1]` along any dimension
//!   is `extrapolation_value`. With `sizes` and a `keep_aspect_ratio_policy`
//!   other than `stretch`, every resized axis takes the smallest
//!   (`not_larger`) or largest (`not_smaller`) of the `out / in` ratios and
//!   its size is `floor(s * in + 0.5)`. (The output size ignores the roi, as
//!   the ONNX reference and shape inference do.) `nearest` rounds `x'` per `nearest_mode`
//!   (`round_prefer_floor`: `ceil(x' - 0.5)`, `round_prefer_ceil`:
//!   `floor(x' + 0.5)`, `floor`, `ceil`) and clamps to `0..in`. The other
//!   modes interpolate separably, dimension by dimension from the last to
//!   the first, a dimension left unchanged (one tap of weight 1 at its own
//!   position) being skipped, each output `v = x[t0] * w0 + x[t1] * w1 + ..`
//!   summed in f32 over its taps in order ([`ResizeTaps`], also what the
//!   compiler lowers). `linear`: `i0 = floor(x')`, `r = (x' - i0) as f32`,
//!   taps `i0` and `i0 + 1` clamped into the input with weights `1.0 - r`
//!   and `r`. `cubic` and the `antialias` forms follow onnx's reference
//!   implementation, weights computed in f64 and rounded to f32: the left
//!   neighbour `i0 = ceil(x') - 1` (so the ratio `x' - i0` is in (0, 1]);
//!   `cubic` weights Keys' kernel with `a = cubic_coeff_a` at taps
//!   `i0 - 1 ..= i0 + 2`; `antialias` stretches the kernel (triangle for
//!   `linear`, Keys for `cubic`) by `1 / min(s, 1)` over the taps
//!   `i0 + k` for `k` in `floor(-r / s') + 1 ..= -floor(-r / s')` (`r` the
//!   kernel radius, 1 or 2; `s' = min(s, 1)`) and normalizes the weights to
//!   sum 1. A window that would leave the input by more than its half width
//!   is shifted back, and taps are clamped into the input (edge padding);
//!   `exclude_outside` zeroes the weights of taps outside the input and
//!   renormalizes.

mod conv;
mod elementwise;
mod layout;
mod matmul;
mod norm;
mod pool;
mod quant;
mod reduce;
mod tile;

use std::collections::BTreeMap;

use half::f16;
use lpu_isa::{DType, Values};

use crate::error::GraphError;
use crate::ir::{Graph, Node};
use crate::tensor::{num_elements, Tensor, TensorInfo};

pub use elementwise::erf;
pub use layout::{nearest_index, pad_source, resize_taps, source_coord, ResizeTaps};
pub use quant::quantize;

/// Runs `graph` on `inputs` (every graph input, by name, with the declared
/// type and shape) and returns the graph outputs by name.
pub fn interpret(
    graph: &Graph,
    inputs: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>, GraphError> {
    check_inputs(graph, inputs)?;
    let computed = evaluate(graph, inputs, &BTreeMap::new())?;
    let mut result = BTreeMap::new();
    for name in &graph.outputs {
        let t = computed
            .get(name)
            .or_else(|| inputs.get(name))
            .or_else(|| graph.initializers.get(name))
            .ok_or_else(|| GraphError::Input {
                file: graph.source.clone(),
                message: format!("graph output '{name}' has no value"),
            })?;
        result.insert(name.clone(), t.clone());
    }
    Ok(result)
}

/// Node by node: every node's outputs computed from its inputs, where an
/// input found in `observed` (for example a simulator's captured tensors)
/// takes that value instead of the one this run computed. Returns every
/// node output by name. With `observed` empty it is the plain
/// interpretation; with every computed tensor observed, each node is checked
/// on exactly the inputs it saw, so differences do not cascade.
pub fn interpret_nodes(
    graph: &Graph,
    inputs: &BTreeMap<String, Tensor>,
    observed: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>, GraphError> {
    check_inputs(graph, inputs)?;
    evaluate(graph, inputs, observed)
}

/// Checks that `inputs` are exactly the graph's inputs, with their types.
fn check_inputs(graph: &Graph, inputs: &BTreeMap<String, Tensor>) -> Result<(), GraphError> {
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

    Ok(())
}

/// Evaluates every node in order; see [`interpret_nodes`].
fn evaluate(
    graph: &Graph,
    inputs: &BTreeMap<String, Tensor>,
    observed: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>, GraphError> {
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
            let t = observed
                .get(name)
                .or_else(|| computed.get(name))
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
        let mut out_infos = Vec::with_capacity(node.outputs.len());
        for o in &node.outputs {
            let info = graph
                .tensors
                .get(o)
                .ok_or_else(|| node_err(format!("output '{o}' has no inferred type")))?;
            out_infos.push(info.clone());
        }
        let outs = eval_node(node, &ins, &out_infos).map_err(node_err)?;
        if outs.len() != node.outputs.len() {
            return Err(node_err(format!(
                "internal error: computed {} outputs; the node has {}",
                outs.len(),
                node.outputs.len()
            )));
        }
        for ((name, out), info) in node.outputs.iter().zip(outs).zip(&out_infos) {
            if out.info() != *info || out.len() != info.len() {
                return Err(node_err(format!(
                    "internal error: computed {} for output '{name}'; inference said {info}",
                    out.info()
                )));
            }
            computed.insert(name.clone(), out);
        }
    }
    Ok(computed)
}

/// The inputs of one node, by position, with accessors.
pub(crate) struct Ins<'a> {
    pub(crate) ins: &'a [Option<&'a Tensor>],
}

impl<'a> Ins<'a> {
    /// Required input `i`.
    pub(crate) fn req(&self, i: usize) -> Result<&'a Tensor, String> {
        self.ins
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("input #{i} is missing"))
    }

    /// Optional input `i`.
    pub(crate) fn opt(&self, i: usize) -> Option<&'a Tensor> {
        self.ins.get(i).copied().flatten()
    }

    /// Number of input slots.
    pub(crate) fn len(&self) -> usize {
        self.ins.len()
    }
}

/// Evaluates one node on its inputs (by position, `None` if omitted), whose
/// types and shapes have been validated; `outs` are the inferred outputs.
/// Returns one tensor per output.
pub fn eval_node(
    node: &Node,
    ins: &[Option<&Tensor>],
    outs: &[TensorInfo],
) -> Result<Vec<Tensor>, String> {
    let x = Ins { ins };
    let out = outs.first().ok_or("the node has no outputs")?;
    let op = node.op_type.as_str();
    let values = match op {
        "Split" => return layout::split(node, &x, outs),
        "LayerNormalization" if outs.len() > 1 => {
            let (y, mean, inv) = norm::layer_norm_stats(node, &x)?;
            let mut r = vec![Tensor::new(out.shape.clone(), y).map_err(|e| e.to_string())?];
            for (info, v) in outs[1..].iter().zip([mean, inv]) {
                r.push(Tensor::new(info.shape.clone(), Values::F32(v)).map_err(|e| e.to_string())?);
            }
            return Ok(r);
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Less" | "Greater" => {
            elementwise::binary(op, x.req(0)?, x.req(1)?, &out.shape)?
        }
        "Sum" | "Max" | "Min" => elementwise::variadic(op, &x, &out.shape)?,
        "Where" => elementwise::where_(&x, &out.shape)?,
        "Relu" | "LeakyRelu" | "Sqrt" | "Reciprocal" | "Exp" | "Sigmoid" | "Tanh" | "Erf"
        | "Gelu" | "HardSigmoid" | "HardSwish" | "Silu" => elementwise::unary(node, x.req(0)?)?,
        "PRelu" => elementwise::prelu(x.req(0)?, x.req(1)?)?,
        "Clip" => elementwise::clip(node, &x)?,
        "Cast" => elementwise::cast_node(node, x.req(0)?)?,
        "NarrowCast" => elementwise::narrow_cast(node, x.req(0)?)?,
        "MatMul" => matmul::matmul(x.req(0)?, x.req(1)?, &out.shape)?,
        "Gemm" => matmul::gemm(node, x.req(0)?, x.req(1)?, x.opt(2))?,
        "QuantizeLinear" => quant::quantize_linear(node, &x)?,
        "DequantizeLinear" => quant::dequantize_linear(node, &x)?,
        "MatMulInteger" => quant::matmul_integer(&x)?,
        "Conv" => conv::conv(node, &x)?,
        "ConvInteger" => conv::conv_integer(node, &x)?,
        "ConvTranspose" => conv::conv_transpose(node, &x)?,
        "MaxPool" | "AveragePool" => pool::pool(node, x.req(0)?)?,
        "GlobalAveragePool" => pool::global_average_pool(x.req(0)?)?,
        "BatchNormalization" => norm::batch_norm(node, &x)?,
        "LRN" => norm::lrn(node, x.req(0)?)?,
        "Softmax" => norm::softmax(node, x.req(0)?)?,
        "LayerNormalization" | "RMSNormalization" => norm::layer_norm(node, &x)?,
        "ReduceMean" | "ReduceSum" | "ReduceMax" => reduce::reduce(node, &x)?,
        "Identity" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => x.req(0)?.values.clone(),
        "Transpose" => layout::transpose(node, x.req(0)?)?,
        "Concat" => layout::concat(node, &x, &out.shape)?,
        "Slice" => layout::slice(&x)?,
        "Gather" => layout::gather(node, x.req(0)?, x.req(1)?)?,
        "Pad" => layout::pad(node, &x)?,
        "Expand" => layout::expand(x.req(0)?, &out.shape)?,
        "Resize" => layout::resize(node, &x)?,
        "Constant" => crate::infer::params::constant_value(node)?.values,
        "ConstantOfShape" => layout::constant_of_shape(node, x.req(0)?)?,
        "Shape" => return Ok(vec![shape_of(node, &x.req(0)?.shape)?]),
        other => return Err(format!("op type '{other}' is not supported")),
    };
    Ok(vec![
        Tensor::new(out.shape.clone(), values).map_err(|e| e.to_string())?
    ])
}

/// The value of a `Shape` node whose input has shape `shape`: the
/// dimensions `start..end` as `i32`.
pub fn shape_of(node: &Node, shape: &[usize]) -> Result<Tensor, String> {
    let (s, e) = crate::infer::params::shape_range(node, shape.len())?;
    let dims = shape[s..e]
        .iter()
        .map(|&d| i32::try_from(d).map_err(|_| format!("dimension {d} does not fit in i32")))
        .collect::<Result<Vec<i32>, String>>()?;
    Tensor::new(vec![e - s], Values::I32(dims)).map_err(|e| e.to_string())
}

/// The values widened to f32 (float tensors only).
pub(crate) fn as_f32(v: &Values) -> Result<Vec<f32>, String> {
    match v {
        Values::F32(v) => Ok(v.clone()),
        Values::F16(v) => Ok(v.iter().map(|x| x.to_f32()).collect()),
        other => Err(format!("expected a float tensor, found {}", other.dtype())),
    }
}

/// Converts f32 results back to `dtype` (F32 or F16, rounding once).
pub(crate) fn from_f32(dtype: DType, v: Vec<f32>) -> Values {
    match dtype {
        DType::F16 => Values::F16(v.into_iter().map(f16::from_f32).collect()),
        _ => Values::F32(v),
    }
}

/// Row-major strides of `shape`.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Strides of `shape` (row-major) aligned to `out` (rank >= shape's rank),
/// 0 where `shape` is broadcast.
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
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
pub(crate) fn for_each_pair(
    out: &[usize],
    sa: &[usize],
    sb: &[usize],
    mut f: impl FnMut(usize, usize),
) {
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

/// For each element of `out` (row-major), the offset of the element of a
/// tensor of shape `shape` that broadcasts to it; an error if `shape` does
/// not broadcast to `out`.
pub(crate) fn bcast_offsets(shape: &[usize], out: &[usize]) -> Result<Vec<usize>, String> {
    if shape.len() > out.len() || crate::infer::broadcast(shape, out).as_deref() != Some(out) {
        return Err(format!("cannot broadcast {shape:?} to {out:?}"));
    }
    let s = broadcast_strides(shape, out);
    let zero = vec![0; out.len()];
    let mut v = Vec::with_capacity(num_elements(out).unwrap_or(0));
    for_each_pair(out, &s, &zero, |a, _| v.push(a));
    Ok(v)
}

/// The elements of `v` at `idx`, in order (indices must be in range).
pub(crate) fn take(v: &Values, idx: &[usize]) -> Result<Values, String> {
    fn t<T: Copy>(v: &[T], idx: &[usize]) -> Result<Vec<T>, String> {
        idx.iter()
            .map(|&i| {
                v.get(i)
                    .copied()
                    .ok_or_else(|| format!("internal error: index {i} out of {}", v.len()))
            })
            .collect()
    }
    Ok(match v {
        Values::F32(x) => Values::F32(t(x, idx)?),
        Values::F16(x) => Values::F16(t(x, idx)?),
        Values::I8(x) => Values::I8(t(x, idx)?),
        Values::I32(x) => Values::I32(t(x, idx)?),
    })
}

/// Like [`take`], with `None` meaning element 0 of `fill`.
pub(crate) fn take_or(v: &Values, idx: &[Option<usize>], fill: &Values) -> Result<Values, String> {
    fn t<T: Copy>(v: &[T], idx: &[Option<usize>], fill: &[T]) -> Result<Vec<T>, String> {
        let f = *fill.first().ok_or("empty fill value")?;
        idx.iter()
            .map(|i| match i {
                None => Ok(f),
                Some(i) => v
                    .get(*i)
                    .copied()
                    .ok_or_else(|| format!("internal error: index {i} out of {}", v.len())),
            })
            .collect()
    }
    Ok(match (v, fill) {
        (Values::F32(x), Values::F32(f)) => Values::F32(t(x, idx, f)?),
        (Values::F16(x), Values::F16(f)) => Values::F16(t(x, idx, f)?),
        (Values::I8(x), Values::I8(f)) => Values::I8(t(x, idx, f)?),
        (Values::I32(x), Values::I32(f)) => Values::I32(t(x, idx, f)?),
        (a, b) => {
            return Err(format!(
                "fill value of type {} for a tensor of type {}",
                b.dtype(),
                a.dtype()
            ))
        }
    })
}

/// Calls `f(index)` for every multi-index of `shape` in row-major order.
pub(crate) fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    let total: usize = shape.iter().product();
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..total {
        f(&idx);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// A scalar integer input's value.
pub(crate) fn scalar_i64(t: &Tensor) -> Result<i64, String> {
    match &t.values {
        Values::I8(v) if v.len() == 1 => Ok(v[0] as i64),
        Values::I32(v) if v.len() == 1 => Ok(v[0] as i64),
        _ => Err(format!("expected an integer scalar, found {}", t.info())),
    }
}
