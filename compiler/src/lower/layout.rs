//! Tensor layouts in SRAM, and how an elementwise operand reaches a result
//! stored in a given layout.
//!
//! Every tensor is stored as the 2-D view of its *storage shape* (rows x
//! cols, cols the last storage axis, each row cut into lane vectors; see
//! [`crate::alloc`]). Most tensors are stored row-major in their declared
//! shape. The 4-D tensors of convolutional networks (`[N, C, H, W]`) are
//! stored **channels-last** (`[N, H, W, C]`, axis order [`NHWC`]): one row per
//! pixel, the channels across the lanes. That makes a convolution a sum of
//! matrix products over shifted pixel rows (the MXM's native operation), a
//! pooling window a VXM reduction over rows, and every per-channel constant
//! (bias, batch-norm scale, per-channel quantization scale) a single row that
//! is reread for every pixel.
//!
//! Which tensors are channels-last is decided once per graph
//! ([`plan_layouts`]): the 4-D inputs and outputs of spatial operators, then
//! everything joined to them through elementwise operators of the same shape.

use std::collections::BTreeSet;

use crate::alloc::TensorLoc;
use lpu_graph::Graph;

/// The channels-last storage order of a 4-D `[N, C, H, W]` tensor.
pub(super) const NHWC: [usize; 4] = [0, 2, 3, 1];

/// Operators whose 4-D data input and output are stored channels-last.
const SPATIAL: &[&str] = &[
    "Conv",
    "ConvInteger",
    "ConvTranspose",
    "Pad",
    "Resize",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "BatchNormalization",
];

/// Operators that compute each output element from the same position of
/// their operands: operands of the output's shape share its layout.
pub(super) const ELEMENTWISE: &[&str] = &[
    "Relu",
    "Add",
    "Sub",
    "Mul",
    "QuantizeLinear",
    "DequantizeLinear",
    "Cast",
    "NarrowCast",
    "Identity",
    "Clip",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Exp",
    "HardSigmoid",
    "HardSwish",
    "Silu",
    "Max",
    "Min",
    "Sum",
    "Neg",
    "Abs",
];

/// The set of tensors stored channels-last.
pub(super) fn plan_layouts(g: &Graph) -> BTreeSet<String> {
    let is4 = |t: &str| g.info(t).is_some_and(|i| i.shape.len() == 4);
    let mut cl = BTreeSet::new();
    for n in &g.nodes {
        if !SPATIAL.contains(&n.op_type.as_str()) {
            continue;
        }
        if let Some(x) = n.input(0).filter(|x| is4(x)) {
            cl.insert(x.to_string());
        }
        for o in n.outputs.iter().filter(|o| is4(o)) {
            cl.insert(o.clone());
        }
    }
    loop {
        let before = cl.len();
        for n in &g.nodes {
            if !ELEMENTWISE.contains(&n.op_type.as_str()) {
                continue;
            }
            let Some(out) = n.outputs.first() else {
                continue;
            };
            let Some(oi) = g.info(out) else { continue };
            if oi.shape.len() != 4 {
                continue;
            }
            let joined: Vec<&str> = n
                .inputs
                .iter()
                .map(String::as_str)
                .filter(|x| {
                    !x.is_empty()
                        && !g.initializers.contains_key(*x)
                        && g.info(x).is_some_and(|i| i.shape == oi.shape)
                })
                .chain(std::iter::once(out.as_str()))
                .collect();
            if joined.iter().any(|t| cl.contains(*t)) {
                cl.extend(joined.into_iter().map(str::to_string));
            }
        }
        if cl.len() == before {
            return cl;
        }
    }
}

/// The storage shape of a tensor of `shape` stored channels-last or not.
pub(super) fn storage_shape(shape: &[usize], channels_last: bool) -> Vec<usize> {
    if channels_last && shape.len() == 4 {
        NHWC.iter().map(|&a| shape[a]).collect()
    } else {
        shape.to_vec()
    }
}

/// How an elementwise operand reaches a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Broadcast {
    /// The operand's own storage: the result's shape and layout, or a
    /// single stored row (`[N]`, `[1, N]`, a channels-last `[1, C, 1, 1]`)
    /// reread for every result row. A constant of the result's shape is
    /// placed in the result's layout.
    Direct,
    /// A constant that varies only along the result's column axis (the last
    /// axis, or the channel axis of a channels-last result), or a scalar:
    /// materialised as one row of the result's columns.
    ConstRow,
    /// A computed float operand that is 1 along the result's last axis:
    /// `[.., 1]` with each other dimension the result's or 1, or a scalar.
    /// Its lane 0 is broadcast across the lanes by the MXM (a product with a
    /// row of ones) into a temporary of the result's columns, whose rows
    /// reach the result's as [`Broadcast::Rows`] do.
    Lanes,
    /// A row-major operand with the result's last axis and each other
    /// dimension the result's or 1 (`[3, 1, 5]` into `[3, 4, 5]`): every
    /// result row reads the operand row it broadcasts from, through a view
    /// ([`rows_view`]); no data moves.
    Rows,
    /// Anything else, which the lowering does not support.
    Unsupported,
}

/// The column axis of a result of rank `rank`: the channel axis when stored
/// channels-last, else the last axis.
pub(super) fn column_axis(rank: usize, channels_last: bool) -> usize {
    if channels_last && rank == 4 {
        1
    } else {
        rank.saturating_sub(1)
    }
}

/// How operand `name` reaches a result of `shape` stored channels-last or
/// not (`cl` is the set from [`plan_layouts`]).
pub(super) fn broadcast_kind(
    g: &Graph,
    cl: &BTreeSet<String>,
    name: &str,
    shape: &[usize],
    result_cl: bool,
) -> Broadcast {
    let Some(info) = g.info(name) else {
        return Broadcast::Unsupported;
    };
    let constant = g.initializers.contains_key(name);
    if info.shape == shape && (constant || cl.contains(name) == result_cl) {
        return Broadcast::Direct;
    }
    // Equal but for leading 1s (`[S, H]` into `[1, S, H]`): the same rows.
    let strip = |s: &[usize]| {
        s.iter()
            .skip_while(|&&d| d == 1)
            .copied()
            .collect::<Vec<_>>()
    };
    if !result_cl && !cl.contains(name) && strip(&info.shape) == strip(shape) {
        return Broadcast::Direct;
    }
    if info.shape.len() > shape.len() {
        return Broadcast::Unsupported;
    }
    let pad = shape.len() - info.shape.len();
    let aligned: Vec<usize> = std::iter::repeat_n(1, pad)
        .chain(info.shape.iter().copied())
        .collect();
    let col = column_axis(shape.len(), result_cl);
    if !result_cl
        && !cl.contains(name)
        && !constant
        && info.dtype.is_float()
        && shape.get(col).is_some_and(|&c| c > 1)
        && aligned.get(col) == Some(&1)
        && fits(&aligned[..col], &shape[..col])
    {
        return Broadcast::Lanes;
    }
    let row_like = aligned
        .iter()
        .enumerate()
        .all(|(a, &d)| d == 1 || (a == col && d == shape[col]));
    if !row_like {
        let rows = !result_cl
            && !cl.contains(name)
            && aligned.get(col) == shape.get(col)
            && fits(&aligned[..col], &shape[..col]);
        return if rows {
            Broadcast::Rows
        } else {
            Broadcast::Unsupported
        };
    }
    if constant {
        return Broadcast::ConstRow;
    }
    // A computed row: its storage must be exactly one row of the columns.
    let stored = storage_shape(&info.shape, cl.contains(name));
    let (r, c) = crate::alloc::view2d(&stored);
    let cols = shape.get(col).copied().unwrap_or(1);
    if r == 1 && c == cols && aligned.get(col) == Some(&cols) {
        Broadcast::Direct
    } else {
        Broadcast::Unsupported
    }
}

/// Tensors that are a channels-last spatial tensor flattened to 2-D
/// (`Flatten`/`Reshape` of `[N, C, H, W]` to `[N, C*H*W]`) and the
/// elementwise results computed from them, each with `(H*W, C)`. They keep
/// the channels-last storage (no data moves); a matrix product that reads
/// one permutes its weight rows to the stored order instead (the flatten is
/// folded into the weights at compile time).
pub(super) fn plan_flat(
    g: &Graph,
    cl: &BTreeSet<String>,
) -> std::collections::BTreeMap<String, (usize, usize)> {
    let mut flat = std::collections::BTreeMap::new();
    for n in &g.nodes {
        let op = n.op_type.as_str();
        let (Some(x), Some(y)) = (n.input(0), n.outputs.first()) else {
            continue;
        };
        let (Some(xi), Some(yi)) = (g.info(x), g.info(y)) else {
            continue;
        };
        if matches!(op, "Flatten" | "Reshape") {
            let xs = &xi.shape;
            if cl.contains(x)
                && xs.len() == 4
                && xs[2] * xs[3] > 1
                && yi.shape == [xs[0], xs[1] * xs[2] * xs[3]]
            {
                flat.insert(y.clone(), (xs[2] * xs[3], xs[1]));
            }
            continue;
        }
        let scalar_others = n.inputs[1..]
            .iter()
            .filter(|t| !t.is_empty())
            .all(|t| g.initializers.get(t).is_some_and(|c| c.len() == 1));
        if ELEMENTWISE.contains(&op) && scalar_others && xi.shape == yi.shape {
            if let Some(&v) = flat.get(x) {
                flat.insert(y.clone(), v);
            }
        }
    }
    flat
}

/// The storage view and permutation of a space-to-depth tensor `[N, C, H,
/// W]`: 2x2 pixel blocks as rows, `(dh, dw, c)` across the lanes.
pub(super) fn s2d_view(shape: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    (vec![n, c, h / 2, 2, w / 2, 2], vec![0, 2, 4, 3, 5, 1])
}

/// Tensors stored space-to-depth: the input of a stride-2 convolution
/// (dilation 1, one group, even height and width, `4C <= lanes`) that comes
/// straight from a graph input through single-consumer elementwise steps
/// (a QuantizeLinear, say). The host delivers the image in that layout (a
/// reordering, no duplication, as MLPerf TPU submissions do for ResNet-50's
/// first layer), and the convolution becomes a stride-1 one over 2x2 blocks
/// with a quarter of the taps, each filling four times the lanes.
pub(super) fn plan_s2d(g: &Graph, lanes: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // A malformed attribute just disqualifies the node here; the
    // convolution's lowering reports it.
    let ints = |n: &lpu_graph::Node, a: &str| n.attr_ints(a).ok().flatten().map(<[i64]>::to_vec);
    for n in &g.nodes {
        if !matches!(n.op_type.as_str(), "Conv" | "ConvInteger") {
            continue;
        }
        let ok = ints(n, "strides").as_deref() == Some(&[2, 2])
            && ints(n, "dilations").is_none_or(|d| d == [1, 1])
            && n.attr_int("group", 1).ok() == Some(1)
            && !n.attributes.contains_key("auto_pad")
            && g.initializers
                .get(n.input(1).unwrap_or_default())
                .is_some_and(|w| w.shape.len() == 4);
        let Some(x) = n.input(0) else { continue };
        let Some(xi) = g.info(x) else { continue };
        let s = &xi.shape;
        if !ok || s.len() != 4 || s[2] % 2 != 0 || s[3] % 2 != 0 || 4 * s[1] > lanes {
            continue;
        }
        let mut chain = vec![x.to_string()];
        let mut t = x.to_string();
        let found = loop {
            if g.consumers(&t).len() != 1 || g.outputs.contains(&t) {
                break false;
            }
            if g.inputs.iter().any(|(i, _)| *i == t) {
                break true;
            }
            let Some(p) = g.producer(&t) else { break false };
            let pn = &g.nodes[p];
            let scalar_rest = pn.inputs[1..]
                .iter()
                .filter(|i| !i.is_empty())
                .all(|i| g.initializers.get(i).is_some_and(|c| c.len() == 1));
            let same = pn
                .input(0)
                .and_then(|i| g.info(i))
                .is_some_and(|i| i.shape == *s);
            if !matches!(
                pn.op_type.as_str(),
                "QuantizeLinear" | "DequantizeLinear" | "Cast" | "Relu" | "Identity"
            ) || !scalar_rest
                || !same
            {
                break false;
            }
            t = pn.input(0).unwrap_or_default().to_string();
            chain.push(t.clone());
        };
        if found {
            out.extend(chain);
        }
    }
    out
}

/// For each row of a 2-D view whose row axes (all but the last) have sizes
/// `dims`, the result row it reduces into when the axes marked in `mask`
/// are reduced (kept with size 1); and the number of result rows.
pub(super) fn row_targets(dims: &[usize], mask: &[bool]) -> (Vec<usize>, usize) {
    let out_dims: Vec<usize> = dims
        .iter()
        .zip(mask)
        .map(|(&d, &m)| if m { 1 } else { d })
        .collect();
    let rows: usize = dims.iter().product();
    let targets = (0..rows)
        .map(|i| {
            let (mut rem, mut o, mut stride) = (i, 0, 1);
            for k in (0..dims.len()).rev() {
                if !mask[k] {
                    o += (rem % dims[k]) * stride;
                }
                rem /= dims[k];
                stride *= out_dims[k];
            }
            o
        })
        .collect();
    (targets, out_dims.iter().product())
}

/// A view of `t` with one row per entry of `map`: row `r` is row `map[r]`
/// of `t` (several rows of the view may share a stored row).
pub(super) fn gather_rows(t: &TensorLoc, map: &[usize]) -> TensorLoc {
    let vectors = map
        .iter()
        .flat_map(|&r| (0..t.vpr).map(move |j| t.at(r, j)))
        .collect();
    TensorLoc {
        rows: map.len(),
        vectors,
        replicated: false,
        ..t.clone()
    }
}

/// Whether dimensions `from` broadcast to `to` (each equal or 1).
fn fits(from: &[usize], to: &[usize]) -> bool {
    from.len() == to.len() && from.iter().zip(to).all(|(&a, &b)| a == b || a == 1)
}

/// The rows of `loc`, an operand of shape `from` stored row-major (or the
/// lane broadcast of one), as seen by a result of shape `to` it broadcasts
/// to along axes other than the last ([`Broadcast::Rows`]): a view with one
/// row per result row; `loc` itself when it has one row or the result's;
/// `None` when its rows are not those of `from`.
pub(super) fn rows_view(loc: TensorLoc, from: &[usize], to: &[usize]) -> Option<TensorLoc> {
    let col = to.len().checked_sub(1)?;
    let rows: usize = to[..col].iter().product();
    if loc.rows == 1 || loc.rows == rows {
        return Some(loc);
    }
    let pad = to.len().checked_sub(from.len())?;
    let aligned: Vec<usize> = std::iter::repeat_n(1, pad)
        .chain(from.iter().copied())
        .collect();
    let mask: Vec<bool> = aligned[..col].iter().map(|&d| d == 1).collect();
    let (map, n) = row_targets(&to[..col], &mask);
    (n == loc.rows && loc.layout.is_empty()).then(|| gather_rows(&loc, &map))
}
