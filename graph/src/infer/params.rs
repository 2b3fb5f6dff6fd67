//! Attribute and constant-input resolution shared by shape inference and the
//! interpreter, so that both read a node's parameters the same way: window
//! geometry (`Conv`, `ConvTranspose`, pools), axes, target shapes, slice,
//! split, pad and resize plans, `Constant` values. Every function returns a
//! one-line message on bad input (the callers add the file and node).

use std::path::Path;

use lpu_isa::{DType, Values};

use crate::error::GraphError;
use crate::format::Initializer;
use crate::ir::{AttrValue, Node};
use crate::tensor::Tensor;

/// A result whose error is a message without file or node.
pub(crate) type R<T> = Result<T, String>;

/// The message of an error raised by a [`Node`] accessor.
pub(crate) fn msg(e: GraphError) -> String {
    match e {
        GraphError::Node { message, .. } => message,
        other => other.to_string(),
    }
}

/// Integer attribute with a default.
pub(crate) fn int(node: &Node, name: &str, default: i64) -> R<i64> {
    node.attr_int(name, default).map_err(msg)
}

/// Float attribute with a default.
pub(crate) fn float(node: &Node, name: &str, default: f32) -> R<f32> {
    node.attr_float(name, default).map_err(msg)
}

/// Integer-list attribute, `None` if absent.
pub(crate) fn ints(node: &Node, name: &str) -> R<Option<Vec<i64>>> {
    node.attr_ints(name)
        .map(|o| o.map(<[i64]>::to_vec))
        .map_err(msg)
}

/// String attribute with a default.
pub(crate) fn string(node: &Node, name: &str, default: &str) -> R<String> {
    node.attr_string(name, default)
        .map(str::to_string)
        .map_err(msg)
}

/// A boolean (0/1) integer attribute.
pub(crate) fn flag(node: &Node, name: &str, default: bool) -> R<bool> {
    match int(node, name, default as i64)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(format!("attribute '{name}' is {v}; expected 0 or 1")),
    }
}

/// `axis` normalized into `0..rank` (ONNX accepts `-rank..rank`).
pub(crate) fn norm_axis(axis: i64, rank: usize, what: &str) -> R<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!(
            "{what} {axis} is out of range for rank {rank} (expected {} to {})",
            -r,
            r - 1
        ));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Distinct axes normalized into `0..rank`, sorted.
pub(crate) fn norm_axes(axes: &[i64], rank: usize, what: &str) -> R<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = norm_axis(a, rank, what)?;
        if out.contains(&n) {
            return Err(format!("{what}s {axes:?} name axis {n} twice"));
        }
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

/// The values of an integer tensor (`i32`, standing for ONNX `int64`, or
/// `i8`).
pub(crate) fn int_values(t: &Tensor, what: &str) -> R<Vec<i64>> {
    match &t.values {
        Values::I32(v) => Ok(v.iter().map(|&x| x as i64).collect()),
        Values::I8(v) => Ok(v.iter().map(|&x| x as i64).collect()),
        other => Err(format!(
            "{what} is {}; expected an integer tensor (i32, which stands for ONNX int64)",
            other.dtype()
        )),
    }
}

/// The values of a 1-D (or scalar) integer tensor.
pub(crate) fn int_list(t: &Tensor, what: &str) -> R<Vec<i64>> {
    if t.shape.len() > 1 {
        return Err(format!("{what} has shape {:?}; expected 1-D", t.shape));
    }
    int_values(t, what)
}

/// The values of a float tensor, widened to f32.
pub(crate) fn float_values(t: &Tensor, what: &str) -> R<Vec<f32>> {
    match &t.values {
        Values::F32(v) => Ok(v.clone()),
        Values::F16(v) => Ok(v.iter().map(|x| x.to_f32()).collect()),
        other => Err(format!("{what} is {}; expected f32", other.dtype())),
    }
}

/// The largest stride, dilation, pad or size accepted from an attribute or
/// constant (2^28, the largest tensor), so that window arithmetic cannot
/// overflow.
const LIMIT: i64 = 1 << 28;

/// A non-negative dimension from an `i64`, at most 2^28.
fn dim(v: i64, what: &str) -> R<usize> {
    if !(0..=LIMIT).contains(&v) {
        return Err(format!("{what} is {v}; expected a value from 0 to 2^28"));
    }
    Ok(v as usize)
}

/// Sliding-window geometry over the spatial dimensions (`Conv`, pools,
/// `ConvTranspose`): for each spatial dimension the kernel size, stride,
/// dilation, padding at the beginning and end, and the output size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// Kernel size per spatial dimension.
    pub kernel: Vec<usize>,
    /// Strides.
    pub strides: Vec<usize>,
    /// Dilations.
    pub dilations: Vec<usize>,
    /// Padding before each dimension.
    pub pads_begin: Vec<usize>,
    /// Padding after each dimension.
    pub pads_end: Vec<usize>,
    /// Output spatial size.
    pub out: Vec<usize>,
}

/// A positive integer list attribute of length `n`, default all 1.
fn positive_list(node: &Node, name: &str, n: usize) -> R<Vec<usize>> {
    match ints(node, name)? {
        None => Ok(vec![1; n]),
        Some(v) => {
            if v.len() != n {
                return Err(format!(
                    "attribute '{name}' is {v:?} ({} values); expected {n}, one per spatial dimension",
                    v.len()
                ));
            }
            v.iter()
                .map(|&x| {
                    if (1..=LIMIT).contains(&x) {
                        Ok(x as usize)
                    } else {
                        Err(format!(
                            "attribute '{name}' is {v:?}; every value must be from 1 to 2^28"
                        ))
                    }
                })
                .collect()
        }
    }
}

/// `pads` attribute: `2n` non-negative values (all begins, then all ends).
fn pads_attr(node: &Node, n: usize) -> R<(Vec<usize>, Vec<usize>)> {
    match ints(node, "pads")? {
        None => Ok((vec![0; n], vec![0; n])),
        Some(v) => {
            if v.len() != 2 * n {
                return Err(format!(
                    "attribute 'pads' is {v:?} ({} values); expected {}, the beginning and end of each of the {n} spatial dimensions",
                    v.len(),
                    2 * n
                ));
            }
            if v.iter().any(|&p| p < 0) {
                return Err(format!(
                    "attribute 'pads' is {v:?}; negative padding is not supported"
                ));
            }
            if v.iter().any(|&p| p > LIMIT) {
                return Err(format!(
                    "attribute 'pads' is {v:?}; padding is limited to 2^28"
                ));
            }
            let u: Vec<usize> = v.iter().map(|&p| p as usize).collect();
            Ok((u[..n].to_vec(), u[n..].to_vec()))
        }
    }
}

/// The `auto_pad` attribute, checked.
fn auto_pad(node: &Node) -> R<String> {
    let a = string(node, "auto_pad", "NOTSET")?;
    match a.as_str() {
        "NOTSET" | "SAME_UPPER" | "SAME_LOWER" | "VALID" => Ok(a),
        other => Err(format!(
            "attribute 'auto_pad' is \"{other}\"; expected NOTSET, SAME_UPPER, SAME_LOWER or VALID"
        )),
    }
}

/// Window geometry of `Conv`, `ConvInteger`, `MaxPool` and `AveragePool` on
/// spatial input sizes `input` with kernel `kernel` (ONNX rules, including
/// `auto_pad` and, for pools, `ceil_mode`, where a last window that would
/// start in the end padding is dropped).
pub(crate) fn window(node: &Node, input: &[usize], kernel: &[usize], ceil_mode: bool) -> R<Window> {
    let n = input.len();
    let strides = positive_list(node, "strides", n)?;
    let dilations = positive_list(node, "dilations", n)?;
    let (mut pb, mut pe) = pads_attr(node, n)?;
    let ap = auto_pad(node)?;
    let mut out = vec![0; n];
    for i in 0..n {
        let (x, k, s, d) = (input[i], kernel[i], strides[i], dilations[i]);
        if k == 0 {
            return Err("the kernel has a zero dimension".into());
        }
        let ek = (k - 1)
            .checked_mul(d)
            .and_then(|v| v.checked_add(1))
            .ok_or("kernel extent overflows")?;
        match ap.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => {
                out[i] = x.div_ceil(s);
                let total = ((out[i] - 1) * s + ek).saturating_sub(x);
                if ap == "SAME_UPPER" {
                    pb[i] = total / 2;
                    pe[i] = total - total / 2;
                } else {
                    pb[i] = total - total / 2;
                    pe[i] = total / 2;
                }
            }
            _ => {
                if ap == "VALID" {
                    pb[i] = 0;
                    pe[i] = 0;
                }
                let padded = x + pb[i] + pe[i];
                if padded < ek {
                    return Err(format!(
                        "spatial dimension {i}: the padded input size {padded} ({x} + pads {} + {}) is smaller than the kernel extent {ek} (kernel {k}, dilation {d})",
                        pb[i], pe[i]
                    ));
                }
                out[i] = if ceil_mode {
                    let mut o = (padded - ek).div_ceil(s) + 1;
                    if (o - 1) * s >= x + pb[i] {
                        o -= 1;
                    }
                    o
                } else {
                    (padded - ek) / s + 1
                };
            }
        }
    }
    Ok(Window {
        kernel: kernel.to_vec(),
        strides,
        dilations,
        pads_begin: pb,
        pads_end: pe,
        out,
    })
}

/// `Conv` / `ConvInteger` / `ConvTranspose` geometry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    /// Batch.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Groups.
    pub group: usize,
    /// Spatial input size.
    pub input: Vec<usize>,
    /// The window.
    pub win: Window,
}

/// The `kernel_shape` attribute checked against the weight's spatial dims.
fn check_kernel_attr(node: &Node, kernel: &[usize]) -> R<()> {
    if let Some(ks) = ints(node, "kernel_shape")? {
        let ok = ks.len() == kernel.len() && ks.iter().zip(kernel).all(|(&a, &b)| a == b as i64);
        if !ok {
            return Err(format!(
                "attribute 'kernel_shape' is {ks:?}; expected {kernel:?}, the spatial dimensions of W"
            ));
        }
    }
    Ok(())
}

/// Checks `x` `[N, C, D1..]` and `w` of the same rank; returns the group.
fn conv_common(node: &Node, x: &[usize], w: &[usize]) -> R<usize> {
    if x.len() < 3 {
        return Err(format!(
            "X has shape {x:?}; expected [N, C, D1, ...] with at least one spatial dimension"
        ));
    }
    if w.len() != x.len() {
        return Err(format!(
            "W has shape {w:?} (rank {}); expected rank {}, the rank of X {x:?}",
            w.len(),
            x.len()
        ));
    }
    let g = int(node, "group", 1)?;
    if g < 1 || g > x[1] as i64 {
        return Err(format!(
            "attribute 'group' is {g}; expected 1 to {}, the channels of X",
            x[1]
        ));
    }
    Ok(g as usize)
}

/// Geometry of `Conv` / `ConvInteger`: `x` `[N, C, D..]`, `w`
/// `[M, C/group, K..]`.
pub(crate) fn conv_geom(node: &Node, x: &[usize], w: &[usize]) -> R<ConvGeom> {
    let group = conv_common(node, x, w)?;
    let (cin, cout) = (x[1], w[0]);
    if !cin.is_multiple_of(group) || w[1] * group != cin {
        return Err(format!(
            "X has {cin} channels and group is {group}; W {w:?} needs its second dimension to be {}",
            if cin.is_multiple_of(group) {
                format!("{}", cin / group)
            } else {
                "C / group (C is not a multiple of group)".into()
            }
        ));
    }
    if !cout.is_multiple_of(group) {
        return Err(format!(
            "W {w:?} has {cout} output channels, not a multiple of group {group}"
        ));
    }
    check_kernel_attr(node, &w[2..])?;
    let win = window(node, &x[2..], &w[2..], false)?;
    Ok(ConvGeom {
        n: x[0],
        cin,
        cout,
        group,
        input: x[2..].to_vec(),
        win,
    })
}

/// Geometry of `ConvTranspose`: `x` `[N, C, D..]`, `w` `[C, M/group, K..]`;
/// `win.out` is the output size and `win.pads_*` the (possibly computed)
/// pads.
pub(crate) fn conv_transpose_geom(node: &Node, x: &[usize], w: &[usize]) -> R<ConvGeom> {
    let group = conv_common(node, x, w)?;
    let n = x.len() - 2;
    let cin = x[1];
    if w[0] != cin || !cin.is_multiple_of(group) {
        return Err(format!(
            "W has shape {w:?}; expected its first dimension to be {cin}, the channels of X, and a multiple of group {group}"
        ));
    }
    let cout = w[1] * group;
    let kernel = &w[2..];
    check_kernel_attr(node, kernel)?;
    let strides = positive_list(node, "strides", n)?;
    let dilations = positive_list(node, "dilations", n)?;
    let output_padding = match ints(node, "output_padding")? {
        None => vec![0; n],
        Some(v) => {
            if v.len() != n {
                return Err(format!(
                    "attribute 'output_padding' is {v:?}; expected {n} values"
                ));
            }
            v.iter()
                .map(|&p| dim(p, "an 'output_padding' value"))
                .collect::<R<Vec<usize>>>()?
        }
    };
    for i in 0..n {
        if output_padding[i] >= strides[i].max(dilations[i]) {
            return Err(format!(
                "attribute 'output_padding' {output_padding:?}: each value must be smaller than the stride or the dilation"
            ));
        }
    }
    let ap = auto_pad(node)?;
    let output_shape = ints(node, "output_shape")?;
    let full: Vec<usize> = (0..n)
        .map(|i| {
            strides[i] * (x[i + 2] - 1)
                + output_padding[i]
                + (kernel[i].max(1) - 1) * dilations[i]
                + 1
        })
        .collect();
    let (mut pb, mut pe) = (vec![0; n], vec![0; n]);
    let mut out = vec![0; n];
    if output_shape.is_some() || ap == "SAME_UPPER" || ap == "SAME_LOWER" {
        let target: Vec<usize> = match &output_shape {
            Some(os) => {
                // Either the spatial dims or the full shape.
                let sp: &[i64] = if os.len() == n + 2 { &os[2..] } else { os };
                if sp.len() != n {
                    return Err(format!(
                        "attribute 'output_shape' is {os:?}; expected {n} spatial sizes"
                    ));
                }
                sp.iter()
                    .map(|&v| dim(v, "an 'output_shape' value"))
                    .collect::<R<_>>()?
            }
            None => (0..n).map(|i| x[i + 2] * strides[i]).collect(),
        };
        for i in 0..n {
            let total = full[i].checked_sub(target[i]).ok_or_else(|| {
                format!(
                    "output size {} in spatial dimension {i} is larger than the largest this ConvTranspose produces ({})",
                    target[i], full[i]
                )
            })?;
            if ap == "SAME_UPPER" {
                pb[i] = total / 2;
                pe[i] = total - total / 2;
            } else {
                pb[i] = total - total / 2;
                pe[i] = total / 2;
            }
            out[i] = target[i];
        }
    } else {
        let (b, e) = pads_attr(node, n)?;
        if ap == "NOTSET" {
            (pb, pe) = (b, e);
        }
        for i in 0..n {
            out[i] = full[i]
                .checked_sub(pb[i] + pe[i])
                .filter(|&o| o > 0)
                .ok_or_else(|| {
                    format!(
                        "pads {} + {} in spatial dimension {i} leave no output (the unpadded output size is {})",
                        pb[i], pe[i], full[i]
                    )
                })?;
        }
    }
    Ok(ConvGeom {
        n: x[0],
        cin,
        cout,
        group,
        input: x[2..].to_vec(),
        win: Window {
            kernel: kernel.to_vec(),
            strides,
            dilations,
            pads_begin: pb,
            pads_end: pe,
            out,
        },
    })
}

/// Geometry of `MaxPool` / `AveragePool` on `x` `[N, C, D..]`.
pub(crate) fn pool_geom(node: &Node, x: &[usize]) -> R<Window> {
    if x.len() < 3 {
        return Err(format!(
            "X has shape {x:?}; expected [N, C, D1, ...] with at least one spatial dimension"
        ));
    }
    let n = x.len() - 2;
    let ks =
        ints(node, "kernel_shape")?.ok_or("attribute 'kernel_shape' is missing; it is required")?;
    if ks.len() != n {
        return Err(format!(
            "attribute 'kernel_shape' is {ks:?}; expected {n} values, one per spatial dimension"
        ));
    }
    let kernel: Vec<usize> = ks
        .iter()
        .map(|&k| {
            if k >= 1 {
                Ok(k as usize)
            } else {
                Err(format!(
                    "attribute 'kernel_shape' is {ks:?}; every value must be at least 1"
                ))
            }
        })
        .collect::<R<_>>()?;
    if int(node, "storage_order", 0)? != 0 {
        return Err("attribute 'storage_order' must be 0 (row-major)".into());
    }
    let ceil = flag(node, "ceil_mode", false)?;
    window(node, &x[2..], &kernel, ceil)
}

/// The reduced axes of `ReduceMean`/`ReduceSum`/`ReduceMax` on a tensor of
/// rank `rank`, as a mask; `None` means the node is an identity
/// (`noop_with_empty_axes` with no axes). `axes` is the second input's value
/// when given; otherwise attribute `axes` (older opsets).
pub(crate) fn reduce_mask(node: &Node, rank: usize, axes: Option<&Tensor>) -> R<Option<Vec<bool>>> {
    let list = match axes {
        Some(t) => Some(int_list(t, "input 'axes'")?),
        None => ints(node, "axes")?,
    };
    flag(node, "keepdims", true)?;
    let noop = flag(node, "noop_with_empty_axes", false)?;
    let list = list.unwrap_or_default();
    if list.is_empty() {
        return Ok(if noop { None } else { Some(vec![true; rank]) });
    }
    let axes = norm_axes(&list, rank, "axis")?;
    let mut mask = vec![false; rank];
    for a in axes {
        mask[a] = true;
    }
    Ok(Some(mask))
}

/// The shape a reduction produces.
pub(crate) fn reduced_shape(shape: &[usize], mask: &[bool], keepdims: bool) -> Vec<usize> {
    shape
        .iter()
        .zip(mask)
        .filter_map(|(&d, &m)| match (m, keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// `Reshape`'s output shape: `0` copies the input dimension (unless
/// `allowzero`), one `-1` is inferred.
pub(crate) fn reshape_target(node: &Node, input: &[usize], shape: &Tensor) -> R<Vec<usize>> {
    let spec = int_list(shape, "input 'shape'")?;
    let allowzero = flag(node, "allowzero", false)?;
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer_at = None;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            -1 => {
                if infer_at.replace(i).is_some() {
                    return Err(format!("shape {spec:?} has more than one -1"));
                }
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| {
                format!("shape {spec:?}: the 0 at position {i} copies an input dimension, but the input {input:?} has rank {}", input.len())
            })?),
            s if (1..=LIMIT).contains(&s) => out.push(s as usize),
            s => return Err(format!("shape {spec:?} has the invalid value {s}")),
        }
    }
    let known: usize = crate::tensor::num_elements(&out)
        .ok_or_else(|| format!("shape {spec:?} has more than 2^28 elements"))?;
    if let Some(i) = infer_at {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!(
                "cannot reshape {input:?} ({total} elements) to {spec:?}: {total} is not a multiple of {known}"
            ));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!(
            "cannot reshape {input:?} ({total} elements) to {spec:?} ({known} elements)"
        ));
    }
    Ok(out)
}

/// `Flatten`'s output shape.
pub(crate) fn flatten_shape(node: &Node, input: &[usize]) -> R<Vec<usize>> {
    let r = input.len() as i64;
    let axis = int(node, "axis", 1)?;
    if axis < -r || axis > r {
        return Err(format!(
            "attribute 'axis' is {axis}; expected {} to {r} for rank {r}",
            -r
        ));
    }
    let a = if axis < 0 { axis + r } else { axis } as usize;
    Ok(vec![
        input[..a].iter().product(),
        input[a..].iter().product(),
    ])
}

/// `Transpose`'s permutation (default: reversed dimensions).
pub(crate) fn transpose_perm(node: &Node, rank: usize) -> R<Vec<usize>> {
    match ints(node, "perm")? {
        None => Ok((0..rank).rev().collect()),
        Some(p) => {
            let mut seen = vec![false; rank];
            let mut out = Vec::with_capacity(rank);
            for &v in &p {
                let ok = v >= 0 && (v as usize) < rank && !seen[v as usize];
                if !ok || p.len() != rank {
                    return Err(format!(
                        "attribute 'perm' is {p:?}; expected a permutation of 0..{rank}"
                    ));
                }
                seen[v as usize] = true;
                out.push(v as usize);
            }
            if p.len() != rank {
                return Err(format!(
                    "attribute 'perm' is {p:?}; expected a permutation of 0..{rank}"
                ));
            }
            Ok(out)
        }
    }
}

/// `Slice`: per dimension of the input, `(start, step, len)` of the
/// selected elements (indices `start + k * step` for `k < len`).
pub(crate) fn slice_plan(
    input: &[usize],
    starts: &Tensor,
    ends: &Tensor,
    axes: Option<&Tensor>,
    steps: Option<&Tensor>,
) -> R<Vec<(i64, i64, usize)>> {
    let starts = int_list(starts, "input 'starts'")?;
    let ends = int_list(ends, "input 'ends'")?;
    let rank = input.len();
    let axes = match axes {
        Some(t) => int_list(t, "input 'axes'")?,
        None => (0..starts.len() as i64).collect(),
    };
    let steps = match steps {
        Some(t) => int_list(t, "input 'steps'")?,
        None => vec![1; starts.len()],
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(format!(
            "starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} must have the same length"
        ));
    }
    let mut plan: Vec<(i64, i64, usize)> = input.iter().map(|&d| (0, 1, d)).collect();
    let mut seen = vec![false; rank];
    for k in 0..starts.len() {
        let a = norm_axis(axes[k], rank, "slice axis")?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(format!("axes {axes:?} name axis {a} twice"));
        }
        let d = input[a] as i64;
        let step = steps[k];
        if step == 0 {
            return Err(format!("steps {steps:?} contain 0"));
        }
        let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (s, e) = (fix(starts[k]), fix(ends[k]));
        let (s, e) = if step > 0 {
            (s.clamp(0, d), e.clamp(0, d))
        } else {
            (s.clamp(0, d - 1), e.clamp(-1, d - 1))
        };
        let (s128, e128, st) = (s as i128, e as i128, step as i128);
        let len = if step > 0 {
            if e > s {
                (e128 - s128 + st - 1) / st
            } else {
                0
            }
        } else if s > e {
            (s128 - e128 - st - 1) / (-st)
        } else {
            0
        };
        plan[a] = (s, step, len as usize);
    }
    Ok(plan)
}

/// `Split`: the axis and the size of each of the `n_out` parts.
pub(crate) fn split_sizes(
    node: &Node,
    input: &[usize],
    n_out: usize,
    split: Option<&Tensor>,
) -> R<(usize, Vec<usize>)> {
    let axis = norm_axis(int(node, "axis", 0)?, input.len(), "attribute 'axis'")?;
    let d = input[axis];
    let list = match split {
        Some(t) => Some(int_list(t, "input 'split'")?),
        None => ints(node, "split")?,
    };
    let num = node
        .attributes
        .get("num_outputs")
        .map(|_| int(node, "num_outputs", 0))
        .transpose()?;
    let sizes: Vec<usize> = match (list, num) {
        (Some(_), Some(_)) => {
            return Err("give either 'split' or 'num_outputs', not both".into());
        }
        (Some(l), None) => {
            let s: Vec<usize> = l
                .iter()
                .map(|&v| dim(v, "a split size"))
                .collect::<R<_>>()?;
            if s.len() != n_out || s.iter().sum::<usize>() != d {
                // (each size is at most 2^28, so the sum cannot overflow)
                return Err(format!(
                    "split {l:?} must have {n_out} sizes (one per output) summing to {d}, dimension {axis} of {input:?}"
                ));
            }
            s
        }
        (None, Some(k)) => {
            if k < 1 || k as usize != n_out {
                return Err(format!(
                    "attribute 'num_outputs' is {k}; expected {n_out}, the number of outputs"
                ));
            }
            let chunk = d.div_ceil(n_out);
            if chunk * (n_out - 1) >= d {
                return Err(format!(
                    "dimension {axis} of {input:?} ({d}) cannot be split into {n_out} non-empty parts"
                ));
            }
            let mut s = vec![chunk; n_out];
            s[n_out - 1] = d - chunk * (n_out - 1);
            s
        }
        (None, None) => {
            if !d.is_multiple_of(n_out) {
                return Err(format!(
                    "dimension {axis} of {input:?} ({d}) does not split evenly into {n_out} outputs; give 'split' or 'num_outputs'"
                ));
            }
            vec![d / n_out; n_out]
        }
    };
    if sizes.contains(&0) {
        return Err(format!(
            "split sizes {sizes:?} contain 0; empty tensors are not supported"
        ));
    }
    Ok((axis, sizes))
}

/// The axes of `Squeeze`/`Unsqueeze`: the second input's value, or
/// attribute `axes` (older opsets).
pub(crate) fn axes_input_or_attr(node: &Node, axes: Option<&Tensor>) -> R<Option<Vec<i64>>> {
    match axes {
        Some(t) => Ok(Some(int_list(t, "input 'axes'")?)),
        None => ints(node, "axes"),
    }
}

/// `Squeeze`'s output shape.
pub(crate) fn squeeze_shape(node: &Node, input: &[usize], axes: Option<&Tensor>) -> R<Vec<usize>> {
    match axes_input_or_attr(node, axes)? {
        None => Ok(input.iter().copied().filter(|&d| d != 1).collect()),
        Some(list) => {
            let ax = norm_axes(&list, input.len(), "axis")?;
            for &a in &ax {
                if input[a] != 1 {
                    return Err(format!(
                        "cannot squeeze axis {a} of {input:?}: its size is {}, not 1",
                        input[a]
                    ));
                }
            }
            Ok(input
                .iter()
                .enumerate()
                .filter(|(i, _)| !ax.contains(i))
                .map(|(_, &d)| d)
                .collect())
        }
    }
}

/// `Unsqueeze`'s output shape.
pub(crate) fn unsqueeze_shape(
    node: &Node,
    input: &[usize],
    axes: Option<&Tensor>,
) -> R<Vec<usize>> {
    let list = axes_input_or_attr(node, axes)?
        .ok_or("the axes are missing: give input 'axes' (or attribute 'axes' in older opsets)")?;
    let rank = input.len() + list.len();
    let ax = norm_axes(&list, rank, "axis")?;
    let mut it = input.iter();
    Ok((0..rank)
        .map(|i| {
            if ax.contains(&i) {
                1
            } else {
                it.next().copied().unwrap_or(1)
            }
        })
        .collect())
}

/// `Pad`'s `(begin, end)` padding per dimension (negative values crop) and
/// its mode.
pub(crate) fn pad_plan(
    node: &Node,
    rank: usize,
    pads: Option<&Tensor>,
    axes: Option<&Tensor>,
) -> R<(Vec<(i64, i64)>, String)> {
    let mode = string(node, "mode", "constant")?;
    if !matches!(mode.as_str(), "constant" | "reflect" | "edge" | "wrap") {
        return Err(format!(
            "attribute 'mode' is \"{mode}\"; expected constant, reflect, edge or wrap"
        ));
    }
    let p = match pads {
        Some(t) => int_list(t, "input 'pads'")?,
        None => ints(node, "pads")?.ok_or("the pads are missing: give input 'pads'")?,
    };
    let axes: Vec<usize> = match axes {
        Some(t) => {
            let list = int_list(t, "input 'axes'")?;
            let mut out = Vec::new();
            for &a in &list {
                let n = norm_axis(a, rank, "axis")?;
                if out.contains(&n) {
                    return Err(format!("axes {list:?} name axis {n} twice"));
                }
                out.push(n);
            }
            out
        }
        None => (0..rank).collect(),
    };
    if p.len() != 2 * axes.len() {
        return Err(format!(
            "pads {p:?} has {} values; expected {} (a beginning and an end for each of {} axes)",
            p.len(),
            2 * axes.len(),
            axes.len()
        ));
    }
    if p.iter().any(|v| v.abs() > LIMIT) {
        return Err(format!("pads {p:?}: each pad is limited to 2^28"));
    }
    let mut plan = vec![(0i64, 0i64); rank];
    for (k, &a) in axes.iter().enumerate() {
        plan[a] = (p[k], p[k + axes.len()]);
    }
    Ok((plan, mode))
}

/// `Pad`'s output shape.
pub(crate) fn padded_shape(input: &[usize], plan: &[(i64, i64)]) -> R<Vec<usize>> {
    input
        .iter()
        .zip(plan)
        .map(|(&d, &(b, e))| {
            let o = d as i128 + b as i128 + e as i128;
            if o > LIMIT as i128 {
                return Err(format!(
                    "pads ({b}, {e}) make a dimension of size {d} larger than 2^28"
                ));
            }
            if o <= 0 {
                Err(format!(
                    "pads ({b}, {e}) leave nothing of a dimension of size {d}"
                ))
            } else {
                Ok(o as usize)
            }
        })
        .collect()
}

/// `Expand`'s output shape: the input broadcast with the given shape
/// (bidirectionally, NumPy rules).
pub(crate) fn expand_shape(input: &[usize], shape: &Tensor) -> R<Vec<usize>> {
    let s = int_list(shape, "input 'shape'")?;
    let s: Vec<usize> = s
        .iter()
        .map(|&v| {
            if v >= 1 {
                Ok(v as usize)
            } else {
                Err(format!(
                    "shape {s:?} has the value {v}; expected positive sizes"
                ))
            }
        })
        .collect::<R<_>>()?;
    super::broadcast(input, &s)
        .ok_or_else(|| format!("input {input:?} cannot be broadcast to shape {s:?}"))
}

/// `Resize`'s plan: output shape, the scale per dimension (given, or
/// `out / in` when `sizes` is given, made uniform over the axes by a
/// `keep_aspect_ratio_policy` other than `stretch`), the region of interest
/// per dimension, and the checked attributes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ResizePlan {
    /// Output shape.
    pub out: Vec<usize>,
    /// Scale of every dimension.
    pub scales: Vec<f64>,
    /// `nearest`, `linear` or `cubic`.
    pub mode: String,
    /// `coordinate_transformation_mode`.
    pub coord: String,
    /// `nearest_mode`.
    pub nearest: String,
    /// `(start, end)` of the region of interest of every dimension (from
    /// the input `roi`, read for `tf_crop_and_resize` only; `(0, 1)`
    /// otherwise).
    pub roi: Vec<(f64, f64)>,
    /// `antialias` (linear and cubic only).
    pub antialias: bool,
    /// `exclude_outside`.
    pub exclude_outside: bool,
    /// `cubic_coeff_a`.
    pub cubic_a: f64,
    /// `extrapolation_value`.
    pub extrapolation: f32,
}

/// See [`ResizePlan`].
pub(crate) fn resize_plan(
    node: &Node,
    input: &[usize],
    roi: Option<&Tensor>,
    scales: Option<&Tensor>,
    sizes: Option<&Tensor>,
) -> R<ResizePlan> {
    let rank = input.len();
    let mode = string(node, "mode", "nearest")?;
    if !matches!(mode.as_str(), "nearest" | "linear" | "cubic") {
        return Err(format!(
            "attribute 'mode' is \"{mode}\"; supported: nearest, linear, cubic"
        ));
    }
    let coord = string(node, "coordinate_transformation_mode", "half_pixel")?;
    if !matches!(
        coord.as_str(),
        "half_pixel"
            | "half_pixel_symmetric"
            | "pytorch_half_pixel"
            | "align_corners"
            | "asymmetric"
            | "tf_crop_and_resize"
    ) {
        return Err(format!(
            "attribute 'coordinate_transformation_mode' is \"{coord}\"; supported: half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric, tf_crop_and_resize"
        ));
    }
    let nearest = string(node, "nearest_mode", "round_prefer_floor")?;
    if !matches!(
        nearest.as_str(),
        "round_prefer_floor" | "round_prefer_ceil" | "floor" | "ceil"
    ) {
        return Err(format!(
            "attribute 'nearest_mode' is \"{nearest}\"; expected round_prefer_floor, round_prefer_ceil, floor or ceil"
        ));
    }
    let antialias = flag(node, "antialias", false)?;
    if antialias && mode == "nearest" {
        return Err(
            "attribute 'antialias' is 1; antialiasing applies to the linear and cubic modes only"
                .into(),
        );
    }
    let exclude_outside = flag(node, "exclude_outside", false)?;
    let policy = string(node, "keep_aspect_ratio_policy", "stretch")?;
    if !matches!(policy.as_str(), "stretch" | "not_larger" | "not_smaller") {
        return Err(format!(
            "attribute 'keep_aspect_ratio_policy' is \"{policy}\"; expected stretch, not_larger or not_smaller"
        ));
    }
    let cubic_a = float(node, "cubic_coeff_a", -0.75)?;
    if !cubic_a.is_finite() {
        return Err(format!(
            "attribute 'cubic_coeff_a' is {cubic_a}; expected a finite value"
        ));
    }
    let extrapolation = float(node, "extrapolation_value", 0.0)?;
    let axes: Vec<usize> = match ints(node, "axes")? {
        None => (0..rank).collect(),
        Some(a) => {
            let mut out = Vec::new();
            for &x in &a {
                let n = norm_axis(x, rank, "axis")?;
                if out.contains(&n) {
                    return Err(format!("attribute 'axes' {a:?} names axis {n} twice"));
                }
                out.push(n);
            }
            out
        }
    };
    let mut out = input.to_vec();
    let mut sc = vec![1.0f64; rank];
    match (scales, sizes) {
        (Some(_), Some(_)) => return Err("give either 'scales' or 'sizes', not both".into()),
        (None, None) => return Err("give 'scales' or 'sizes'".into()),
        (Some(s), None) => {
            let v = float_values(s, "input 'scales'")?;
            if v.len() != axes.len() {
                return Err(format!(
                    "scales {v:?} has {} values; expected {}",
                    v.len(),
                    axes.len()
                ));
            }
            for (&a, &s) in axes.iter().zip(&v) {
                if !(s.is_finite() && s > 0.0) {
                    return Err(format!("scales {v:?}: every scale must be positive"));
                }
                let o = (input[a] as f64 * s as f64).floor();
                if o < 1.0 || o > (1u64 << 28) as f64 {
                    return Err(format!(
                        "scale {s} gives output size {o} for dimension {a} of size {}",
                        input[a]
                    ));
                }
                out[a] = o as usize;
                sc[a] = s as f64;
            }
        }
        (None, Some(z)) => {
            let v = int_list(z, "input 'sizes'")?;
            if v.len() != axes.len() {
                return Err(format!(
                    "sizes {v:?} has {} values; expected {}",
                    v.len(),
                    axes.len()
                ));
            }
            for (&a, &s) in axes.iter().zip(&v) {
                if !(1..=1 << 28).contains(&s) {
                    return Err(format!(
                        "sizes {v:?}: every size must be positive and at most 2^28"
                    ));
                }
                out[a] = s as usize;
                sc[a] = s as f64 / input[a] as f64;
            }
            if policy != "stretch" {
                // One scale for all the axes (the smallest or the largest),
                // and the sizes it gives, rounded half up.
                let pick = axes.iter().map(|&a| sc[a]);
                let s = if policy == "not_larger" {
                    pick.fold(f64::INFINITY, f64::min)
                } else {
                    pick.fold(0.0, f64::max)
                };
                for &a in &axes {
                    let o = (s * input[a] as f64 + 0.5).floor();
                    if !(1.0..=(1u64 << 28) as f64).contains(&o) {
                        return Err(format!(
                            "keep_aspect_ratio_policy {policy} gives output size {o} for dimension {a} of size {}",
                            input[a]
                        ));
                    }
                    out[a] = o as usize;
                    sc[a] = s;
                }
            }
        }
    }
    let mut rois = vec![(0.0f64, 1.0f64); rank];
    if coord == "tf_crop_and_resize" {
        let Some(r) = roi else {
            return Err(
                "coordinate_transformation_mode tf_crop_and_resize needs the input 'roi'".into(),
            );
        };
        let v = float_values(r, "input 'roi'")?;
        if v.len() != 2 * axes.len() {
            return Err(format!(
                "roi {v:?} has {} values; expected {} (a start and an end per axis)",
                v.len(),
                2 * axes.len()
            ));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(format!("roi {v:?}: every value must be finite"));
        }
        for (k, &a) in axes.iter().enumerate() {
            rois[a] = (v[k] as f64, v[k + axes.len()] as f64);
        }
    }
    Ok(ResizePlan {
        out,
        scales: sc,
        mode,
        coord,
        nearest,
        roi: rois,
        antialias,
        exclude_outside,
        cubic_a: cubic_a as f64,
        extrapolation,
    })
}

/// A tensor attribute's value (data must be inline or random).
pub(crate) fn tensor_attr(name: &str, value: &AttrValue) -> R<Tensor> {
    let AttrValue::Tensor { dtype, shape, data } = value else {
        return Err(format!(
            "attribute '{name}' is {}; expected Tensor(..)",
            value.kind_name()
        ));
    };
    if matches!(data, crate::format::InitData::File(_)) {
        return Err(format!(
            "attribute '{name}': File(..) data is read when the graph is loaded"
        ));
    }
    let init = Initializer {
        name: name.to_string(),
        dtype: *dtype,
        shape: shape.clone(),
        data: data.clone(),
    };
    crate::load::materialize(&init, Path::new("."))
        .map_err(|m| format!("attribute '{name}' ({dtype} {shape:?}): {m}"))
}

/// An `i64` as `i32` (ONNX int64 is represented as i32).
fn to_i32(v: i64, what: &str) -> R<i32> {
    i32::try_from(v)
        .map_err(|_| format!("{what} {v} does not fit in i32, which represents ONNX int64 here"))
}

/// The value of a `Constant` node: exactly one of `value`, `value_float`,
/// `value_floats`, `value_int`, `value_ints` (integers become `i32`).
pub(crate) fn constant_value(node: &Node) -> R<Tensor> {
    let given: Vec<&String> = node.attributes.keys().collect();
    if given.len() != 1 {
        return Err(format!(
            "needs exactly one of the attributes value, value_float, value_floats, value_int, value_ints; found {}",
            if given.is_empty() {
                "none".to_string()
            } else {
                given.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
            }
        ));
    }
    let (name, value) = node.attributes.iter().next().ok_or("no attribute")?;
    let t = match (name.as_str(), value) {
        ("value", v) => tensor_attr("value", v)?,
        ("value_float", AttrValue::Float(x)) => Tensor {
            shape: vec![],
            values: Values::F32(vec![*x]),
        },
        ("value_floats", AttrValue::Floats(x)) => Tensor {
            shape: vec![x.len()],
            values: Values::F32(x.clone()),
        },
        ("value_int", AttrValue::Int(x)) => Tensor {
            shape: vec![],
            values: Values::I32(vec![to_i32(*x, "value_int")?]),
        },
        ("value_ints", AttrValue::Ints(x)) => Tensor {
            shape: vec![x.len()],
            values: Values::I32(
                x.iter()
                    .map(|&v| to_i32(v, "a value_ints value"))
                    .collect::<R<_>>()?,
            ),
        },
        (n, v) => {
            return Err(format!(
                "attribute '{n}' has kind {}, which does not fit",
                v.kind_name()
            ))
        }
    };
    if t.shape.contains(&0) {
        return Err("the value is empty; empty tensors are not supported".into());
    }
    Ok(t)
}

/// `ConstantOfShape`: the output shape (from the input's values) and the
/// one-element fill value (attribute `value`, default f32 0).
pub(crate) fn constant_of_shape(node: &Node, shape: &Tensor) -> R<(Vec<usize>, Tensor)> {
    let s = int_list(shape, "input 'input'")?;
    let out = s
        .iter()
        .map(|&v| {
            if v >= 1 {
                Ok(v as usize)
            } else {
                Err(format!(
                    "shape {s:?} has the value {v}; expected positive sizes (empty tensors are not supported)"
                ))
            }
        })
        .collect::<R<Vec<usize>>>()?;
    let value = match node.attributes.get("value") {
        None => Tensor {
            shape: vec![1],
            values: Values::F32(vec![0.0]),
        },
        Some(v) => {
            let t = tensor_attr("value", v)?;
            if t.len() != 1 {
                return Err(format!(
                    "attribute 'value' has shape {:?}; expected one element",
                    t.shape
                ));
            }
            t
        }
    };
    Ok((out, value))
}

/// `Shape`'s `start..end` range of dimensions (attributes `start`, `end`,
/// negative counting from the end, clamped).
pub(crate) fn shape_range(node: &Node, rank: usize) -> R<(usize, usize)> {
    let r = rank as i64;
    let fix = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = fix(int(node, "start", 0)?);
    let end = fix(int(node, "end", r)?);
    if end <= start {
        return Err(format!(
            "start {start} and end {end} select no dimension of a rank-{rank} tensor (empty tensors are not supported)"
        ));
    }
    Ok((start, end))
}

/// The ONNX `TensorProto` data type code of Cast's `to`, and the type it
/// produces here: 1 FLOAT → f32, 10 FLOAT16 → f16, 3 INT8 → i8, 6 INT32 →
/// i32, 7 INT64 → i32 (ONNX int64 is represented as i32), 9 BOOL → i8 (0/1).
/// `NarrowCast`'s format and saturation.
pub(crate) fn narrow_format(node: &Node) -> R<(lpu_isa::narrow::Format, bool)> {
    let name = node.attr_string("format", "").map_err(msg)?;
    let f = lpu_isa::narrow::Format::from_name(name).ok_or_else(|| {
        let all: Vec<&str> = lpu_isa::narrow::Format::ALL
            .iter()
            .map(|f| f.name())
            .collect();
        format!(
            "attribute 'format' is \"{name}\"; expected one of {}",
            all.join(", ")
        )
    })?;
    Ok((f, flag(node, "saturate", true)?))
}

pub(crate) fn cast_target(node: &Node) -> R<(i64, DType)> {
    if !node.attributes.contains_key("to") {
        return Err("attribute 'to' is missing; it is required (ONNX TensorProto type code: 1 FLOAT, 10 FLOAT16, 3 INT8, 6 INT32, 7 INT64, 9 BOOL)".into());
    }
    let code = int(node, "to", 0)?;
    let dt = super::onnx_dtype(code).ok_or_else(|| {
        format!("attribute 'to' is {code}; expected a supported ONNX TensorProto type code: 1 FLOAT, 10 FLOAT16, 3 INT8, 6 INT32, 7 INT64, 9 BOOL")
    })?;
    Ok((code, dt))
}
