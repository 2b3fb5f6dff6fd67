//! Lowering: graph nodes to groups of slice instructions ([`crate::group`]),
//! with every tensor placed in SRAM ([`crate::alloc`]).
//!
//! | op | lowering |
//! |---|---|
//! | MatMul, Gemm, MatMulInteger | weights (a constant `[K, N]`, transposed at compile time for `transB`) are cut into `lanes x lanes` tiles; each tile's rows are read from SRAM and loaded (`lw`) into an MXM plane's staging buffer, installed (`iw`), and every activation row's K-slice is streamed through (`mm`), accumulating over K-tiles; each result vector is emitted (`emit`), scaled by `alpha`, added to `beta*C` on the VXM, and written to SRAM. fp32 operands run on the MXM in fp16 with fp32 accumulation (weights converted at compile time, activations by a VXM `cvt`); under `fp32-split` ([`lower_opts`]) in three fp16 passes over the operands' high and low halves (both weight halves installed per K-tile, the activations split on the VXM first), fp32-accurate. Each N-tile's rows are cut into chunks, and a long product's K-tiles into runs, and the (N-tile, chunk, run) items spread over the planes by estimated cost (`Lowerer::plan_items`): few rows with long weight loads stay together, many rows spread over every plane, and a product with fewer N-tiles than planes splits its K-tiles over them (split-K: each run but the last stores its partial sums, the last adds them before the epilogue). |
//! | Add, Sub, Mul | per output vector: read both operands, VXM op, write. Operands may be the same shape as the output, a row broadcast (`[N]`, `[1, N]`), or a constant scalar (materialised as a row). |
//! | Relu, Cast, QuantizeLinear, DequantizeLinear | per vector: read, VXM op (`relu`, `cvt`, `qnt`, `dqnt`), write. Quantization parameters must be constant scalars; they become immediates. |
//! | Identity | no instructions: the output shares the input's storage. |
//! | Sigmoid, Tanh, Exp, Sqrt, Reciprocal, Div, Erf, Gelu, LeakyRelu, HardSigmoid, HardSwish, Silu, Clip, Pow | VXM expression trees, in passes where a value is needed twice ([`unary`]). |
//! | Softmax, LayerNormalization, RMSNormalization, ReduceSum/Mean/Max (last axis) | sums across lanes on the MXM (all-ones weights), maxima by an SXM rotation tree ([`rowwise`]). |
//! | Reshape/Transpose into and out of attention heads, MatMul `Q.K^T` and `P.V` | head views of `[S, H]` storage, K transposed on the SXM/VXM, products with computed weights ([`attention`]). |
//! | Decode attention (one new token over a KV cache: `Concat` of a past-key input and the new key, scores, Softmax, context) | the cache stored token-major (one row of `heads*d` lanes per token); per-head lane sums on the MXM, the softmax and `P.V` lane-parallel across token rows on the VXM, no lane moves ([`decode`]). |
//! | Gather, Slice (rows), nodes of constants only | row copies, per-bank `gather`s for embedding lookups, compile-time folding ([`select`]). |
//! | Reshape/Flatten/Squeeze/Unsqueeze that change the tiling, Concat, Split, Slice across lanes, Transpose | lane moves: each result vector built from pieces of source vectors, shifted into place on the SXM and merged by integer adds on the VXM, bit for bit ([`lanes`]); a Reshape whose tiles line up is a view. |
//!
//! **Fusion.** An elementwise node (Relu, Cast, QuantizeLinear,
//! DequantizeLinear, or Add/Sub/Mul whose other operand is already
//! available) that is the only consumer of a chain's result is appended to
//! that chain instead of round-tripping through SRAM: a MatMul's emit flows
//! through dequantize, bias add, ReLU and quantize on the VXM before one
//! write. Its instructions keep the fused node's provenance.
//!
//! **Retiming.** When two members of one group would need the same MEM queue
//! or bank on overlapping cycles (two operands in one slice, say), a VXM
//! `mov` is inserted after one read so it issues earlier
//! ([`crate::group::retime_reads`]).

mod attention;
mod decode;
mod lanes;
mod layout;
mod rowwise;
mod select;
mod spatial;
mod unary;
mod variadic;

use crate::alloc::{view2d, Homes, Reuse, SramAlloc, TableChunk, TensorLoc};
use crate::group::{retime_reads, Floorplan, Group, Link, Member, MemberRef, Place};
use crate::CompileError;
use half::f16;
use layout::{
    broadcast_kind, column_axis, plan_flat, plan_layouts, plan_s2d, s2d_view, storage_shape,
    Broadcast, NHWC,
};
use lpu_graph::{Graph, Node, Tensor};
use lpu_isa::program::{Binding, MemInit, Probe, VecLoc};
use lpu_isa::{ChipConfig, DType, Instr, Opcode, SliceKind, Values};
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, BTreeSet};

/// The lowered program before scheduling.
pub struct Lowered {
    /// Groups in a topological order.
    pub groups: Vec<Group>,
    /// Input bindings.
    pub inputs: Vec<Binding>,
    /// Output bindings.
    pub outputs: Vec<Binding>,
    /// Initial memory image.
    pub memory: Vec<MemInit>,
    /// Peak of live SRAM bytes.
    pub sram_bytes: u64,
    /// Every computed tensor that has storage, with its writer node (empty
    /// unless asked for: see [`lower_with`]).
    pub probes: Vec<Probe>,
    /// The program's permutation tables (`perm`'s `tab=`), in index order.
    pub perm_tables: Vec<Vec<u16>>,
}

/// Per-accumulator ordering state.
#[derive(Clone, Default)]
struct AccState {
    last_mm: Option<MemberRef>,
    last_emit: Option<MemberRef>,
}

/// Per-MXM-plane ordering state.
struct Plane {
    slice: u16,
    /// Whether the plane lies west of the (first) VXM (false on a chip
    /// without one): which half of the MEM slices its weights live on
    /// ([`Lowerer::weight_homes`]).
    west: bool,
    /// Estimated cycles of the work given to the plane so far
    /// ([`Lowerer::plan_items`]): which plane takes a product's next item
    /// when its planes are equally busy with the product.
    load: u64,
    last_iw: Option<MemberRef>,
    lw_since_iw: Vec<MemberRef>,
    mm_since_iw: Vec<MemberRef>,
    accs: Vec<AccState>,
    next_acc: usize,
}

struct Lowerer<'a> {
    g: &'a Graph,
    chip: &'a ChipConfig,
    lanes: usize,
    alloc: SramAlloc,
    locs: BTreeMap<String, TensorLoc>,
    /// Lookup tables placed for `gather`, by key (see `lower_gather`).
    tables: BTreeMap<String, Vec<TableChunk>>,
    /// Permutation tables for `perm`, in index order (see
    /// [`Lowerer::perm_table`]).
    perm_tables: Vec<Vec<u16>>,
    writer: HashMap<(u16, u32), MemberRef>,
    /// Reads of each vector since its last write (for write-after-read
    /// ordering when freed storage is reused).
    readers: HashMap<(u16, u32), Vec<MemberRef>>,
    groups: Vec<Group>,
    planes: Vec<Plane>,
    node: u32,
    fp: Floorplan,
    /// Per node, the elementwise nodes fused into its groups.
    tails: Vec<Vec<usize>>,
    /// Nodes lowered as part of another node's groups.
    absorbed: Vec<bool>,
    /// Tensors stored channels-last ([`layout::plan_layouts`]).
    cl: BTreeSet<String>,
    /// Flattened channels-last tensors ([`layout::plan_flat`]).
    flat: BTreeMap<String, (usize, usize)>,
    /// Space-to-depth tensors ([`layout::plan_s2d`]).
    s2d: BTreeSet<String>,
    /// A zero vector per element type, for matrix-product rows whose every
    /// input vector is padding.
    zeros: BTreeMap<DType, VecLoc>,
    /// Attention head views and per-K-tile staging offsets ([`attention`]).
    attn: attention::State,
    /// Decode attention over a token-major KV cache ([`decode`]).
    dec: decode::State,
    /// Products of f32 activations by constant f32 weights in three fp16
    /// passes ([`crate::Precision::Fp32Split`], [`split_weights`]).
    split: bool,
    /// Which of how many concurrent readers the fused tail being lowered
    /// belongs to ([`Lowerer::row_copy_skewed`]): set by
    /// [`Lowerer::matmul`] per MXM plane, else `(0, 1)`.
    copy_skew: (usize, usize),
    /// How this attempt spends SRAM ([`lower_opts`]).
    plan: SramPlan,
}

/// One fused elementwise step after a chain's last result.
struct TailOp {
    node: u32,
    kind: TailKind,
}

enum TailKind {
    /// A one-operand VXM instruction.
    Unary(Instr),
    /// A two-operand VXM instruction whose other operand is read from SRAM;
    /// `chain_first` says whether the chain's value is the first operand.
    Binary {
        instr: Instr,
        other: TensorLoc,
        chain_first: bool,
    },
}

/// A group under construction.
struct Gb {
    g: Group,
    index: u32,
}

/// One item of a matrix product ([`Lowerer::plan_items`]): a column tile,
/// a range of result rows, the MXM plane (index) that computes them, and
/// which run of the column tile's K-tiles it accumulates.
#[derive(Clone, Debug, PartialEq)]
struct PlaneItem {
    /// Column tile.
    j: usize,
    /// Result rows.
    rows: std::ops::Range<usize>,
    /// MXM plane (index into the planes).
    plane: usize,
    /// Part `k` of `parts` (split-K): the `k`-th of `parts` near-equal runs
    /// of the column tile's used K-tiles ([`k_run`]). With several parts,
    /// each part but the last stores its partial sums to scratch, and the
    /// last adds them before the epilogue.
    part: (usize, usize),
}

/// The used K-tiles (indices into a column tile's `n` used K-tiles) of
/// part `k` of `parts`: near-equal runs, the longer ones first.
fn k_run(n: usize, (k, parts): (usize, usize)) -> std::ops::Range<usize> {
    let (base, extra) = (n / parts, n % parts);
    let start = k * base + k.min(extra);
    start..start + base + usize::from(k < extra)
}

/// The type split-K partial sums are stored and added in for a product
/// that emits `emit_ty`: fp32 for fp16 (an fp16 sum would round each
/// part's fp32 accumulation) and int32 for int8, else `emit_ty`.
fn sum_type(emit_ty: DType) -> DType {
    match emit_ty {
        DType::F16 => DType::F32,
        DType::I8 => DType::I32,
        t => t,
    }
}

/// What an item's `emit`s do with split-K partial sums
/// ([`Lowerer::emit_row`]).
#[derive(Clone, Copy)]
enum PartialSums<'t> {
    /// Not the last part: store the row's partial sums here, no epilogue.
    Store(&'t TensorLoc),
    /// The last part: add the other parts' partial sums (none when the
    /// column tile is not split), round them to the emit type, then the
    /// epilogue.
    Add(&'t [TensorLoc]),
}

/// Which accumulator of which plane holds result vector `(r, j)` of a
/// product ([`Lowerer::emit_row`]).
#[derive(Clone, Copy)]
struct EmitRow {
    p: usize,
    acc: usize,
    r: usize,
    j: usize,
}

/// Copies of a broadcast constant row ([`Lowerer::const_row`]) when SRAM
/// is short ([`SramPlan::Frugal`]).
const ROW_COPIES: usize = 16;

/// The most bytes one broadcast constant row takes in all its copies under
/// [`SramPlan::Roomy`]; a row too wide for more copies than the frugal
/// count within it keeps the frugal count.
const ROOMY_ROW_BYTES: usize = 1 << 20;

/// How a lowering attempt spends SRAM; [`lower_opts`] tries
/// [`SramPlan::ATTEMPTS`] in order and keeps the first that fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SramPlan {
    /// A copy of every broadcast constant row on every MEM slice (up to
    /// [`ROOMY_ROW_BYTES`] per row), and fresh vectors first: the fewest
    /// bank-port conflicts and write-after-read orderings.
    Roomy,
    /// [`ROW_COPIES`] copies per row near the VXM, fresh vectors first.
    Frugal,
    /// [`ROW_COPIES`] copies per row, freed vectors first.
    Smallest,
    /// As [`SramPlan::Smallest`], and no product split over K (no split-K
    /// scratch for partial sums, [`Lowerer::plan_items`]): the smallest
    /// footprint, for a graph whose split products do not fit.
    Unsplit,
}

impl SramPlan {
    /// The plans [`lower_opts`] tries, most generous first.
    const ATTEMPTS: [SramPlan; 4] = [
        SramPlan::Roomy,
        SramPlan::Frugal,
        SramPlan::Smallest,
        SramPlan::Unsplit,
    ];

    /// The allocator's reuse order under this plan.
    fn reuse(self, chip: &ChipConfig) -> Reuse {
        match self {
            SramPlan::Roomy | SramPlan::Frugal => Reuse::FreshFirst {
                age: fresh_age(chip),
            },
            SramPlan::Smallest | SramPlan::Unsplit => Reuse::FreedFirst,
        }
    }
}

/// One K-tile of a matrix product: weight rows `w_row0..w_row0 + rows` of
/// the weight matrix, installed together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KTile {
    w_row0: usize,
    rows: usize,
}

/// An activation lookup of a [`MatmulPlan`]: `(row, K-tile) -> vector`.
type ActFn<'p> = dyn Fn(usize, usize) -> Option<VecLoc> + 'p;

/// The shape of a matrix product for [`Lowerer::matmul`]: result rows, the
/// K-tiles, and for each (row, K-tile) the activation vector to stream
/// (`None`: all padding, skipped), and for each (K-tile, column tile)
/// whether the weights are not all zero.
struct MatmulPlan<'p> {
    rows: usize,
    ktiles: &'p [KTile],
    act: &'p dyn Fn(usize, usize) -> Option<VecLoc>,
    used: &'p dyn Fn(usize, usize) -> bool,
    act_ty: DType,
    /// The low fp16 halves of the weights (same layout as the weights),
    /// for an fp32-accurate product of f32 operands (see `attention.rs`):
    /// each K-tile then runs `x_hi . W_hi + x_lo . W_hi + x_hi . W_lo`.
    w_lo: Option<&'p TensorLoc>,
    /// The low fp16 halves of the activations (`act` then reads the high
    /// halves, in fp16), for the same split.
    act_lo: Option<&'p dyn Fn(usize, usize) -> Option<VecLoc>>,
}

/// What follows `emit` in a matrix product's epilogue (before any fused
/// tail).
struct Epilogue {
    alpha: Option<f32>,
    bias: Option<TensorLoc>,
}

/// Ops whose lowering ends in a VXM/MXM chain that fused ops can extend.
fn is_chain_producer(g: &Graph, n: &Node) -> bool {
    match n.op_type.as_str() {
        "MatMul" | "Gemm" | "MatMulInteger" | "Add" | "Sub" | "Mul" | "Relu" | "QuantizeLinear"
        | "DequantizeLinear" | "Conv" | "ConvInteger" | "ConvTranspose" | "MaxPool"
        | "AveragePool" | "GlobalAveragePool" | "BatchNormalization" => true,
        "Cast" => is_real_cast(g, n),
        "Softmax" | "LayerNormalization" | "RMSNormalization" => true,
        op => unary::is_unary(op),
    }
}

fn is_real_cast(g: &Graph, n: &Node) -> bool {
    let from = n.inputs.first().and_then(|x| g.info(x)).map(|i| i.dtype);
    let to = n.outputs.first().and_then(|x| g.info(x)).map(|i| i.dtype);
    from.is_some() && from != to
}

/// Whether `c` can be fused after the node `producer` whose result is `t`:
/// elementwise, same shape as `t`, and any other operand already available
/// when `producer` is lowered.
fn fusible(g: &Graph, cl: &BTreeSet<String>, c: &Node, t: &str, producer: usize) -> bool {
    let out_info = c.outputs.first().and_then(|o| g.info(o));
    let t_info = g.info(t);
    let (Some(oi), Some(ti)) = (out_info, t_info) else {
        return false;
    };
    if oi.shape != ti.shape {
        return false;
    }
    let scalar_const = |name: &str| g.initializers.get(name).is_some_and(|x| x.len() == 1);
    match c.op_type.as_str() {
        "Relu" => true,
        "Cast" => is_real_cast(g, c),
        "QuantizeLinear" => {
            c.input(0) == Some(t)
                && c.input(1).is_some_and(scalar_const)
                && c.input(2).is_none_or(scalar_const)
        }
        "DequantizeLinear" => {
            c.input(0) == Some(t)
                && (c.input(1).is_some_and(scalar_const)
                    || per_axis_row(g, cl, c, &ti.shape, cl.contains(t)).is_some())
                && c.input(2).is_none_or(|z| {
                    g.initializers
                        .get(z)
                        .is_some_and(|x| (0..x.len()).all(|i| x.values.get_f64(i) == 0.0))
                })
        }
        op if unary::is_unary(op) => unary::fusible(g, cl, c, t),
        "Add" | "Sub" | "Mul" => {
            let other = if c.input(0) == Some(t) {
                c.input(1)
            } else {
                c.input(0)
            };
            let Some(other) = other else { return false };
            let ready = g.producer(other).is_none_or(|p| p < producer);
            ready
                && !matches!(
                    broadcast_kind(g, cl, other, &ti.shape, cl.contains(t)),
                    Broadcast::Unsupported | Broadcast::Lanes
                )
        }
        _ => false,
    }
}

/// The per-channel scale of a per-axis DequantizeLinear `n` on a result of
/// `shape`: `Some(scale tensor)` when the scale is a constant vector along
/// the result's column axis (so it becomes one row).
fn per_axis_row<'g>(
    g: &'g Graph,
    _cl: &BTreeSet<String>,
    n: &Node,
    shape: &[usize],
    result_cl: bool,
) -> Option<&'g Tensor> {
    let scale = g.initializers.get(n.input(1)?)?;
    if scale.shape.len() != 1 || shape.is_empty() {
        return None;
    }
    let rank = shape.len() as i64;
    let axis = n.attr_int("axis", 1).ok()?;
    let axis = if axis < 0 { axis + rank } else { axis };
    let col = column_axis(shape.len(), result_cl) as i64;
    (axis == col && scale.shape[0] == shape[col as usize]).then_some(scale)
}

/// For each lowering step (node index), the computed tensors whose last
/// reader is lowered in that step and whose storage can then be reused:
/// not graph outputs, and not shared through an alias (Identity, or a Cast
/// to the same type).
fn free_points(g: &Graph, tails: &[Vec<usize>]) -> Vec<Vec<String>> {
    let n = g.nodes.len();
    let mut owner: Vec<usize> = (0..n).collect();
    for (i, t) in tails.iter().enumerate() {
        for &c in t {
            owner[c] = i;
        }
    }
    let aliasing = |node: &Node| {
        (matches!(
            node.op_type.as_str(),
            "Identity" | "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze"
        ) && !attention::is_head_merge(g, node))
            || (node.op_type == "Cast" && !is_real_cast(g, node))
    };
    let mut pinned: std::collections::BTreeSet<&str> =
        g.outputs.iter().map(String::as_str).collect();
    // Tensors that share storage through aliasing nodes form one class under
    // its root (the tensor a real node computed). The class is freed once,
    // under the root, after the last reader of any member; a class with a
    // graph output, a graph input or constant root, or an attention head
    // split (whose storage the attention lowering frees) is kept.
    let mut root: BTreeMap<&str, &str> = BTreeMap::new();
    let mut members: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in g.nodes.iter().filter(|x| aliasing(x)) {
        let Some(x) = node.input(0) else { continue };
        let r = root.get(x).copied().unwrap_or(x);
        let keep = attention::is_head_split(g, node) || g.producer(r).is_none();
        for y in &node.outputs {
            root.insert(y.as_str(), r);
            members.entry(r).or_insert_with(|| vec![r]).push(y.as_str());
        }
        if keep {
            pinned.insert(r);
        }
    }
    for ms in members.values() {
        if ms.iter().any(|m| pinned.contains(m)) {
            pinned.extend(ms.iter().copied());
        }
    }
    let mut out = vec![Vec::new(); n];
    for (i, node) in g.nodes.iter().enumerate() {
        // A fused node's output (the end of a chain) is written by its
        // owner's step; intermediate chain values have no storage and are
        // skipped when freed.
        let step = owner[i];
        for t in &node.outputs {
            if pinned.contains(t.as_str()) || root.contains_key(t.as_str()) {
                continue;
            }
            let class = members
                .get(t.as_str())
                .cloned()
                .unwrap_or_else(|| vec![t.as_str()]);
            let last = class
                .iter()
                .flat_map(|m| g.consumers(m))
                .map(|c| owner[c])
                .max()
                .unwrap_or(step)
                .max(step);
            out[last].extend(class.iter().map(|m| m.to_string()));
        }
    }
    out
}

/// Decides which elementwise nodes fuse into their producer's groups.
fn plan_fusion(
    g: &Graph,
    cl: &BTreeSet<String>,
    flat: &BTreeMap<String, (usize, usize)>,
) -> (Vec<Vec<usize>>, Vec<bool>) {
    let n = g.nodes.len();
    let mut tails = vec![Vec::new(); n];
    let mut absorbed = vec![false; n];
    for i in 0..n {
        if absorbed[i] || !is_chain_producer(g, &g.nodes[i]) {
            continue;
        }
        let Some(mut t) = g.nodes[i].outputs.first().cloned() else {
            continue;
        };
        loop {
            if g.outputs.contains(&t) {
                break;
            }
            let cons = g.consumers(&t);
            let [c] = cons.as_slice() else { break };
            let node = &g.nodes[*c];
            if node.inputs.iter().filter(|x| **x == t).count() != 1
                || !fusible(g, cl, node, &t, i)
                || (flat.contains_key(&t) && !flat.contains_key(node.outputs[0].as_str()))
            {
                break;
            }
            tails[i].push(*c);
            absorbed[*c] = true;
            match node.outputs.first() {
                Some(o) => t = o.clone(),
                None => break,
            }
        }
    }
    (tails, absorbed)
}

/// Lowers a validated graph for `chip`.
pub fn lower(graph: &Graph, chip: &ChipConfig) -> Result<Lowered, CompileError> {
    lower_with(graph, chip, false)
}

/// [`lower`], and with `probes` also records where every computed tensor
/// with storage lives ([`Lowered::probes`]), for `--check`'s node-by-node
/// comparison. The instructions are the same either way.
pub fn lower_with(graph: &Graph, chip: &ChipConfig, probes: bool) -> Result<Lowered, CompileError> {
    lower_opts(graph, chip, probes, false)
}

/// [`lower_with`]; with `split` (`--precision fp32-split`,
/// [`crate::Precision::Fp32Split`]), every MatMul, Gemm, Conv and
/// ConvTranspose of f32 activations by constant f32 weights computes
/// `x . W` as `xh . Wh + xl . Wh + xh . Wl`: three fp16 MXM passes into one
/// f32 accumulator, `Wh`/`Wl` the weights' fp16 halves made at compile
/// time ([`split_weights`]), `xh`/`xl` the activations' halves made on the
/// VXM ([`Lowerer::split_tensor`]). Without `split` the program is the
/// one [`lower_with`] makes.
///
/// SRAM is first spent generously ([`SramPlan::Roomy`]: a copy of each
/// broadcast constant row on every MEM slice, and [fresh
/// vectors first](Reuse::FreshFirst), which spares the schedule
/// write-after-read orderings); a graph that does not fit that way is
/// lowered again with fewer copies ([`SramPlan::Frugal`]), then reusing
/// freed vectors first ([`SramPlan::Smallest`]), then without split-K's
/// partial-sum scratch ([`SramPlan::Unsplit`], the smallest footprint), so
/// neither the generosity nor split-K ever makes a graph fail to fit. An attempt that runs out
/// of SRAM stops there ([`SramAlloc::overflow_error`]).
pub fn lower_opts(
    graph: &Graph,
    chip: &ChipConfig,
    probes: bool,
    split: bool,
) -> Result<Lowered, CompileError> {
    let [first @ .., last] = SramPlan::ATTEMPTS;
    for plan in first {
        match lower_planned(graph, chip, probes, split, plan) {
            Err(CompileError::DoesNotFit { .. }) => continue,
            lowered => return lowered,
        }
    }
    lower_planned(graph, chip, probes, split, last)
}

/// How many bytes must be allocated after a vector is freed before the
/// lowering prefers it to a never-used one ([`Reuse::FreshFirst`]).
fn fresh_age(chip: &ChipConfig) -> u64 {
    chip.sram_capacity_bytes() / 4
}

/// [`lower_opts`] with SRAM spent as `plan` says. Under
/// [`Reuse::FreshFirst`] it stops at the first vector that finds no room.
fn lower_planned(
    graph: &Graph,
    chip: &ChipConfig,
    probes: bool,
    split: bool,
    plan: SramPlan,
) -> Result<Lowered, CompileError> {
    let reuse = plan.reuse(chip);
    let vxm = chip.positions_of(SliceKind::Vxm).first().copied();
    let planes = chip
        .positions_of(SliceKind::Mxm)
        .into_iter()
        .map(|slice| Plane {
            slice,
            west: vxm.is_some_and(|v| slice < v),
            load: 0,
            last_iw: None,
            lw_since_iw: vec![],
            mm_since_iw: vec![],
            accs: vec![AccState::default(); chip.mxm.accumulators as usize],
            next_acc: 0,
        })
        .collect();
    let mut l = Lowerer {
        g: graph,
        chip,
        lanes: chip.lanes() as usize,
        alloc: SramAlloc::with_reuse(chip, reuse),
        locs: BTreeMap::new(),
        tables: BTreeMap::new(),
        perm_tables: Vec::new(),
        writer: HashMap::default(),
        readers: HashMap::default(),
        groups: Vec::new(),
        planes,
        node: 0,
        fp: Floorplan::new(chip),
        tails: Vec::new(),
        absorbed: Vec::new(),
        cl: plan_layouts(graph),
        flat: BTreeMap::new(),
        s2d: plan_s2d(graph, chip.lanes() as usize),
        zeros: BTreeMap::new(),
        attn: attention::State::default(),
        dec: decode::plan(graph),
        split,
        copy_skew: (0, 1),
        plan,
    };
    l.flat = plan_flat(graph, &l.cl);
    (l.tails, l.absorbed) = plan_fusion(graph, &l.cl, &l.flat);
    for (name, info) in &graph.inputs {
        let loc = l.alloc_tensor(name, &info.shape, info.dtype);
        l.locs.insert(name.clone(), loc);
    }
    let frees = free_points(graph, &l.tails);
    let mut probed = Vec::new();
    let mut writers: BTreeMap<String, u32> = BTreeMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if l.absorbed[i] {
            continue;
        }
        l.node = i as u32;
        l.lower_node(node)?;
        if matches!(reuse, Reuse::FreshFirst { .. }) {
            // Lowering on would only count the shortfall; the caller
            // lowers again reusing freed vectors first.
            if let Some(e) = l.alloc.overflow_error(&graph.name, chip) {
                return Err(e);
            }
        }
        if probes {
            l.record_probes(i, &mut writers, &mut probed);
        }
        // A class's members share the root's vectors, except a reshape
        // whose elements moved (`lanes.rs`): free each storage once.
        let mut freed = BTreeSet::new();
        for t in &frees[i] {
            if let Some(loc) = l.locs.remove(t) {
                if loc
                    .vectors
                    .iter()
                    .all(|v| !freed.contains(&(v.slice, v.addr)))
                {
                    freed.extend(loc.vectors.iter().map(|v| (v.slice, v.addr)));
                    l.alloc.free(&loc);
                }
            }
        }
    }
    let bind = |l: &mut Lowerer, name: &str| -> Result<Binding, CompileError> {
        let info = graph
            .info(name)
            .cloned()
            .ok_or_else(|| l.unsupported_msg(&format!("tensor '{name}' has no inferred type")))?;
        if l.flat.contains_key(name) {
            return Err(l.unsupported_msg(&format!(
                "graph output '{name}' is a flattened spatial tensor; reading it out in NCHW order needs lane moves (not lowered yet)"
            )));
        }
        let loc = l.operand(name)?;
        Ok(binding(name, &info.shape, &loc))
    };
    let inputs = graph
        .inputs
        .iter()
        .map(|(n, _)| bind(&mut l, n))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = graph
        .outputs
        .iter()
        .map(|n| bind(&mut l, n))
        .collect::<Result<Vec<_>, _>>()?;
    let sram_bytes = l.alloc.peak_bytes();
    let memory = l.alloc.finish(&graph.name, chip)?;
    Ok(Lowered {
        groups: l.groups,
        inputs,
        outputs,
        memory,
        sram_bytes,
        probes: probed,
        perm_tables: l.perm_tables,
    })
}

/// The binding of tensor `name` (declared `shape`) stored at `loc`.
fn binding(name: &str, shape: &[usize], loc: &TensorLoc) -> Binding {
    Binding {
        name: name.to_string(),
        dtype: loc.dtype,
        shape: shape.to_vec(),
        rows: loc.rows,
        cols: loc.cols,
        vectors: loc.vectors.clone(),
        layout: loc.layout.clone(),
        view: loc.view.clone(),
    }
}

impl Lowerer<'_> {
    /// After lowering step `i` (node `i` and its fused tail): a probe for
    /// every output of those nodes that has storage. The writer is the node
    /// itself, except for an alias (same vectors as its first input), whose
    /// writer is that input's.
    fn record_probes(&self, i: usize, writers: &mut BTreeMap<String, u32>, out: &mut Vec<Probe>) {
        let steps = std::iter::once(i).chain(self.tails[i].iter().copied());
        for k in steps {
            let node = &self.g.nodes[k];
            for t in &node.outputs {
                let (Some(loc), Some(info)) = (self.locs.get(t), self.g.info(t)) else {
                    continue;
                };
                if self.flat.contains_key(t) || writers.contains_key(t) {
                    continue;
                }
                let alias = node
                    .input(0)
                    .and_then(|x| self.locs.get(x).map(|l| (x, l)))
                    .filter(|(_, l)| l.vectors == loc.vectors);
                let writer = match alias {
                    Some((x, _)) => match writers.get(x) {
                        Some(&w) => w,
                        None => continue,
                    },
                    None => k as u32,
                };
                writers.insert(t.clone(), writer);
                out.push(Probe {
                    binding: binding(t, &info.shape, loc),
                    writer,
                });
            }
        }
    }
}

fn binary_opcode(op_type: &str) -> Opcode {
    match op_type {
        "Add" => Opcode::Add,
        "Sub" => Opcode::Sub,
        _ => Opcode::Mul,
    }
}

/// The fp16 high and low halves of f32 weights for a split product
/// ([`lower_opts`]), and the power of two `s` they are scaled by:
/// `hi = fp16(w * 2^s)`, `lo = fp16(w * 2^s - hi)`, so `hi + lo` holds
/// `w * 2^s` to about 2^-22 relative. `s` puts the largest finite `|w|`
/// at 2^13..2^14, so the halves of every weight within 2^-18 of it stay
/// normal fp16 (unscaled, the low halves of weights around 0.01 would be
/// subnormal and lose most of their bits); the product's emit is scaled
/// back by `2^-s`, which is exact. `lo` is `None` when every weight is an
/// fp16 value already (that pass would add zeros). Non-finite weights keep
/// a zero low half.
fn split_weights(w: &[f32]) -> (Values, Option<Values>, i32) {
    let m = w
        .iter()
        .filter(|x| x.is_finite())
        .fold(0f32, |m, x| m.max(x.abs()));
    let s = if m > 0.0 {
        (14 - (m as f64).log2().ceil() as i32).clamp(-120, 120)
    } else {
        0
    };
    let k = 2f64.powi(s);
    let mut hi = Vec::with_capacity(w.len());
    let mut lo = Vec::with_capacity(w.len());
    for &x in w {
        let v = x as f64 * k;
        let h = f16::from_f64(v);
        let d = v - h.to_f64();
        hi.push(h);
        lo.push(if d.is_finite() {
            f16::from_f64(d)
        } else {
            f16::ZERO
        });
    }
    let lo = lo
        .iter()
        .any(|x| *x != f16::ZERO)
        .then_some(Values::F16(lo));
    (Values::F16(hi), lo, s)
}

/// The elements of `v` as f32 (integers rounded to nearest, as through
/// f64, which holds them exactly); one type dispatch for the whole tensor.
fn f32_of(v: &Values) -> Vec<f32> {
    match v {
        Values::F32(x) => x.clone(),
        Values::F16(x) => x.iter().map(|h| h.to_f32()).collect(),
        Values::I8(x) => x.iter().map(|&a| a as f32).collect(),
        Values::I32(x) => x.iter().map(|&a| a as f32).collect(),
    }
}

impl<'a> Lowerer<'a> {
    fn cur(&self) -> &'a Node {
        &self.g.nodes[self.node as usize]
    }

    fn unsupported_msg(&self, message: &str) -> CompileError {
        let n = self.cur();
        CompileError::Unsupported {
            model: self.g.name.clone(),
            node: n.name.clone(),
            op: n.op_type.clone(),
            message: message.to_string(),
        }
    }

    fn unsupported<T>(&self, message: &str) -> Result<T, CompileError> {
        Err(self.unsupported_msg(message))
    }

    fn d(&self, op: Opcode) -> i32 {
        self.chip.delay(op) as i32
    }

    /// The storage of a tensor: a runtime tensor, or a constant placed on
    /// first use.
    fn operand(&mut self, name: &str) -> Result<TensorLoc, CompileError> {
        if let Some(l) = self.locs.get(name) {
            return Ok(l.clone());
        }
        let Some(t) = self.g.initializers.get(name) else {
            return self.unsupported(&format!(
                "tensor '{name}' is neither computed nor an initializer"
            ));
        };
        let loc = self.alloc.constant(name, &t.shape, &t.values);
        self.locs.insert(name.to_string(), loc.clone());
        Ok(loc)
    }

    fn constant(&self, name: &str) -> Option<&'a Tensor> {
        self.g.initializers.get(name)
    }

    fn scalar_const(&self, name: Option<&str>, what: &str) -> Result<Option<f64>, CompileError> {
        let Some(name) = name else { return Ok(None) };
        match self.constant(name) {
            Some(t) if t.len() == 1 => Ok(Some(t.values.get_f64(0))),
            Some(_) => self.unsupported(&format!("{what} '{name}' must be a scalar")),
            None => self.unsupported(&format!(
                "{what} '{name}' must be a constant (initializer) to become an immediate"
            )),
        }
    }

    fn output(&mut self, k: usize) -> Result<(String, TensorLoc), CompileError> {
        let n = self.cur();
        let name = n.outputs.get(k).cloned().unwrap_or_default();
        let Some(info) = self.g.info(&name).cloned() else {
            return self.unsupported(&format!("output '{name}' has no inferred type"));
        };
        let loc = self.alloc_tensor(&name, &info.shape, info.dtype);
        self.locs.insert(name.clone(), loc.clone());
        Ok((name, loc))
    }

    /// Allocates a computed tensor in its planned layout.
    fn alloc_tensor(&mut self, name: &str, shape: &[usize], dtype: DType) -> TensorLoc {
        if let Some(loc) = self.decode_alloc(name, dtype) {
            return loc;
        }
        if self.s2d.contains(name) && shape.len() == 4 {
            let (view, layout) = s2d_view(shape);
            let rows = shape[0] * (shape[2] / 2) * (shape[3] / 2);
            let mut loc = self.alloc.tensor(name, &[rows, 4 * shape[1]], dtype);
            loc.view = view;
            loc.layout = layout;
            return loc;
        }
        if let Some(&(hw, c)) = self.flat.get(name) {
            // Stored as the channels-last tensor it was flattened from.
            let n = shape.first().copied().unwrap_or(1);
            return self.alloc.tensor(name, &[n * hw, c], dtype);
        }
        let cl = self.cl.contains(name) && shape.len() == 4;
        let mut loc = self.alloc.tensor(name, &storage_shape(shape, cl), dtype);
        if cl {
            loc.layout = NHWC.to_vec();
        }
        loc
    }

    /// A constant row that every result row (or group) reads: a bias, a
    /// per-channel scale, a lane mask or cap, a fill row. Stored on
    /// distinct MEM slices, round-robin over the `2 * copies` slices nearest
    /// the VXM, so that the reads of neighbouring rows spread over several
    /// bank ports ([`TensorLoc::for_row`]) and their streams stay short:
    /// [`ROW_COPIES`] copies (fewer on small chips), or under
    /// [`SramPlan::Roomy`] one on every MEM slice (at most
    /// [`ROOMY_ROW_BYTES`] in all). An f32 row holds its bank port 4 cycles
    /// per read, and every matrix product's epilogue reads its scale and
    /// bias rows: on ResNet-50 (tsp, int8) the epilogues waited on those
    /// ports, and a copy on each of the 88 slices instead of 16 took
    /// 78,671 cycles to 75,394.
    fn const_row(&mut self, name: &str, values: &Values) -> TensorLoc {
        let mem = self.chip.positions_of(SliceKind::Mem);
        let frugal = ROW_COPIES.min(mem.len() / 2).max(1);
        let row_bytes = values.len() * values.dtype().bytes();
        let copies = match self.plan {
            SramPlan::Roomy => (ROOMY_ROW_BYTES / row_bytes.max(1)).clamp(frugal, mem.len()),
            SramPlan::Frugal | SramPlan::Smallest | SramPlan::Unsplit => frugal,
        };
        let vxm = self.chip.positions_of(SliceKind::Vxm);
        let dist = |p: u16| vxm.iter().map(|&v| p.abs_diff(v)).min().unwrap_or(0);
        let mut near = mem;
        near.sort_by_key(|&p| (dist(p), p));
        near.truncate(2 * copies);
        let n = values.len();
        let idx: Vec<usize> = (0..copies * n).map(|i| i % n).collect();
        let mut loc = self
            .alloc
            .constant_near(name, &[copies, n], &values.gather(&idx), &near);
        loc.replicated = copies > 1;
        loc
    }

    /// Vector `j` of constant row `t` for result row `r`: for a replicated
    /// row, the copy from `r % copies` on a MEM slice that group `gb` does
    /// not read yet ([`TensorLoc::for_row_avoiding`]).
    fn row_copy(gb: &Gb, t: &TensorLoc, r: usize, j: usize) -> VecLoc {
        Self::row_copy_skewed(gb, t, r, j, (0, 1))
    }

    /// [`Lowerer::row_copy`] for a reader that is one of `n` running at
    /// once (the `p`-th): a replicated row's copies are read from
    /// `p * copies / n` on, so that the `n` readers of equal rows (the MXM
    /// planes' epilogues, whose row chunks are often multiples of the copy
    /// count) use different copies and bank ports.
    fn row_copy_skewed(
        gb: &Gb,
        t: &TensorLoc,
        r: usize,
        j: usize,
        (p, n): (usize, usize),
    ) -> VecLoc {
        if !t.replicated {
            return t.for_row(r, j);
        }
        let r = r + p * t.rows / n.max(1);
        let used: Vec<u16> =
            gb.g.members
                .iter()
                .filter_map(|m| match m.place {
                    Place::Mem(at) => Some(at.slice),
                    _ => None,
                })
                .collect();
        t.for_row_avoiding(r, j, &used)
    }

    /// A zero vector of `ty` in SRAM (placed once).
    fn zero_vector(&mut self, ty: DType) -> VecLoc {
        if let Some(v) = self.zeros.get(&ty) {
            return *v;
        }
        let loc = self.alloc.constant(
            &format!("zeros ({ty})"),
            &[self.lanes],
            &Values::zeros(ty, self.lanes),
        );
        self.zeros.insert(ty, loc.vectors[0]);
        loc.vectors[0]
    }

    fn begin(&self) -> Gb {
        Gb {
            g: Group::default(),
            index: self.groups.len() as u32,
        }
    }

    fn member(&self, gb: &mut Gb, instr: Instr, place: Place, after: Vec<(MemberRef, i32)>) -> u32 {
        gb.g.members.push(Member {
            instr,
            place,
            node: self.node,
            after,
        });
        gb.g.members.len() as u32 - 1
    }

    fn read(&mut self, gb: &mut Gb, at: VecLoc, ty: DType) -> u32 {
        let mut after = vec![];
        if let Some(w) = self.writer.get(&(at.slice, at.addr)) {
            after.push((*w, self.d(Opcode::Write)));
        }
        let instr = Instr {
            arg: at.addr as i64,
            ..Instr::new(Opcode::Read).typed(ty)
        };
        let m = self.member(gb, instr, Place::Mem(at), after);
        self.readers
            .entry((at.slice, at.addr))
            .or_default()
            .push(MemberRef {
                group: gb.index,
                member: m,
            });
        m
    }

    /// The SXM for a member fed by `from`: the one nearest where `from`
    /// runs, or, when `from` runs on the VXM (about as far from either),
    /// the one nearest the group's first member, so that a group whose data
    /// sits in the east half does not cross the chip to the western SXM
    /// (and both SXMs' queues are used).
    fn sxm_near(&self, gb: &Gb, from: u32) -> Place {
        let members = &gb.g.members;
        let pos = match members.get(from as usize).map(|m| m.place) {
            Some(Place::Vxm) | None => members
                .first()
                .map_or(self.fp.vxm, |m| crate::group::position(&m.place, &self.fp)),
            Some(p) => crate::group::position(&p, &self.fp),
        };
        Place::Sxm {
            slice: self.fp.nearest_sxm(pos),
        }
    }

    /// The index of permutation table `table` (one entry per lane), added
    /// to the program's tables on first use (a program has a handful: a
    /// search of the list is enough).
    fn perm_table(&mut self, table: Vec<u16>) -> i64 {
        let k = match self.perm_tables.iter().position(|t| *t == table) {
            Some(k) => k,
            None => {
                self.perm_tables.push(table);
                self.perm_tables.len() - 1
            }
        };
        k as i64
    }

    /// Adds a member fed by `inputs`, input `k` as operand `k`.
    fn op(
        &mut self,
        gb: &mut Gb,
        instr: Instr,
        place: Place,
        inputs: &[u32],
        after: Vec<(MemberRef, i32)>,
    ) -> u32 {
        let links: Vec<(u8, u8)> = (0..inputs.len()).map(|k| (k as u8, 0)).collect();
        self.linked(gb, instr, place, inputs, &links, after)
    }

    /// Adds a member and links `inputs[k]` to its (operand, group) `links[k]`.
    fn linked(
        &mut self,
        gb: &mut Gb,
        instr: Instr,
        place: Place,
        inputs: &[u32],
        links: &[(u8, u8)],
        after: Vec<(MemberRef, i32)>,
    ) -> u32 {
        let m = self.member(gb, instr, place, after);
        for (from, (operand, group)) in inputs.iter().zip(links) {
            gb.g.links.push(Link {
                from: *from,
                to: m,
                operand: *operand,
                group: *group,
            });
        }
        m
    }

    fn write(&mut self, gb: &mut Gb, from: u32, at: VecLoc, ty: DType) -> u32 {
        let instr = Instr {
            arg: at.addr as i64,
            ..Instr::new(Opcode::Write).typed(ty)
        };
        // Reused storage: land after the old value's last read and write.
        let d_write = self.d(Opcode::Write);
        let mut after: Vec<(MemberRef, i32)> = self
            .readers
            .remove(&(at.slice, at.addr))
            .unwrap_or_default()
            .into_iter()
            // A read in this same group feeds this write through the chain,
            // so it issues earlier by construction.
            .filter(|r| r.group != gb.index)
            .map(|r| (r, 1 - d_write))
            .collect();
        after.extend(self.writer.get(&(at.slice, at.addr)).map(|w| (*w, 1)));
        let m = self.op(gb, instr, Place::Mem(at), &[from], after);
        self.writer.insert(
            (at.slice, at.addr),
            MemberRef {
                group: gb.index,
                member: m,
            },
        );
        m
    }

    /// Writes a chain's result; the write belongs to the last fused node,
    /// whose output it stores.
    fn write_end(&mut self, gb: &mut Gb, from: u32, at: VecLoc, ty: DType, tail: &[TailOp]) -> u32 {
        let own = self.node;
        if let Some(last) = tail.last() {
            self.node = last.node;
        }
        let m = self.write(gb, from, at, ty);
        self.node = own;
        m
    }

    fn finish(&mut self, mut gb: Gb) -> u32 {
        retime_reads(&mut gb.g, self.chip, &self.fp);
        self.groups.push(gb.g);
        gb.index
    }

    /// The output of the current node's chain: its own output, or the last
    /// fused node's.
    fn chain_output(&mut self) -> Result<TensorLoc, CompileError> {
        let own = self.node;
        let last = self.tails[own as usize].last().copied();
        if let Some(l) = last {
            self.node = l as u32;
        }
        let r = self.output(0).map(|(_, loc)| loc);
        self.node = own;
        r
    }

    /// Prepares the fused tail of the current node.
    fn prepare_tail(&mut self) -> Result<Vec<TailOp>, CompileError> {
        let own = self.node;
        let tail = self.tails[own as usize].clone();
        let mut ops = Vec::new();
        let mut t = self.cur().outputs.first().cloned().unwrap_or_default();
        for c in tail {
            self.node = c as u32;
            let n = self.cur();
            let ty = |l: &Self, name: &str| l.g.info(name).map(|i| i.dtype).unwrap_or(DType::F32);
            let out_ty = self.out_dtype(n)?;
            if let Some(steps) = self.unary_tail(n, &t)? {
                ops.extend(steps);
                t = n.outputs.first().cloned().unwrap_or_default();
                continue;
            }
            let kind = match n.op_type.as_str() {
                "Relu" => TailKind::Unary(Instr::new(Opcode::Relu).typed(ty(self, &t))),
                "Cast" => {
                    let mut i = Instr::new(Opcode::Convert).typed(ty(self, &t));
                    i.to = out_ty;
                    TailKind::Unary(i)
                }
                "QuantizeLinear" | "DequantizeLinear" => {
                    let q = self.quant_instr(n, ty(self, &t))?;
                    if let Some(row) = self.dequant_row(n, &t)? {
                        ops.push(TailOp {
                            node: c as u32,
                            kind: TailKind::Unary(q),
                        });
                        TailKind::Binary {
                            instr: Instr::new(Opcode::Mul).typed(DType::F32),
                            other: row,
                            chain_first: true,
                        }
                    } else {
                        TailKind::Unary(q)
                    }
                }
                _ => {
                    let chain_first = n.input(0) == Some(t.as_str());
                    let other = n
                        .input(if chain_first { 1 } else { 0 })
                        .unwrap_or_default()
                        .to_string();
                    let shape = self.g.info(&t).map(|i| i.shape.clone()).unwrap_or_default();
                    let t_cl = self.cl.contains(&t);
                    let other = self.broadcast_operand(&other, &shape, t_cl)?;
                    TailKind::Binary {
                        instr: Instr::new(binary_opcode(&n.op_type)).typed(out_ty),
                        other,
                        chain_first,
                    }
                }
            };
            ops.push(TailOp {
                node: c as u32,
                kind,
            });
            t = n.outputs.first().cloned().unwrap_or_default();
        }
        self.node = own;
        Ok(ops)
    }

    /// Appends the fused tail to a chain ending in member `last`, for output
    /// vector `(r, j)`; returns the new last member.
    fn apply_tail(
        &mut self,
        gb: &mut Gb,
        mut last: u32,
        r: usize,
        j: usize,
        tail: &[TailOp],
    ) -> u32 {
        let own = self.node;
        for op in tail {
            self.node = op.node;
            last = match &op.kind {
                TailKind::Unary(i) => self.op(gb, i.clone(), Place::Vxm, &[last], vec![]),
                TailKind::Binary {
                    instr,
                    other,
                    chain_first,
                } => {
                    let at = Self::row_copy_skewed(gb, other, r, j, self.copy_skew);
                    let x = self.read(gb, at, other.dtype);
                    let ins = if *chain_first { [last, x] } else { [x, last] };
                    self.op(gb, instr.clone(), Place::Vxm, &ins, vec![])
                }
            };
        }
        self.node = own;
        last
    }

    fn lower_node(&mut self, n: &'a Node) -> Result<(), CompileError> {
        match n.op_type.as_str() {
            _ if self.is_decode_op(n) => self.lower_decode(n),
            "MatMul" | "Reshape" | "Transpose" if self.is_head_op(n) => self.lower_head_op(n),
            "Softmax" | "LayerNormalization" | "RMSNormalization" | "ReduceMean" | "ReduceSum"
            | "ReduceMax" => self.lower_rowwise(n),
            "Gather" | "Slice" | "Concat" | "Split" => self.lower_select(n),
            op if unary::is_unary(op) => self.lower_elementwise(n),
            "MatMul" | "MatMulInteger" | "Gemm" => self.lower_matmul(n),
            "Add" | "Sub" | "Mul" => self.lower_binary(n),
            "Relu" => self.lower_unary(n, Instr::new(Opcode::Relu)),
            "Cast" => {
                let x = self.input_name(n, 0)?;
                let from = self.operand(&x)?.dtype;
                let to = self.out_dtype(n)?;
                if from == to {
                    return self.alias(n, &x);
                }
                let mut i = Instr::new(Opcode::Convert).typed(from);
                i.to = to;
                self.lower_unary(n, i)
            }
            "NarrowCast" => {
                let x = self.input_name(n, 0)?;
                let from = self.operand(&x)?.dtype;
                let name = n.attr_string("format", "").unwrap_or_default();
                let Some(f) = lpu_isa::narrow::Format::from_name(name) else {
                    return self.unsupported(&format!("unknown narrow format '{name}'"));
                };
                let mut i = Instr::new(Opcode::NarrowConvert).typed(from);
                i.to = f.container();
                i.arg = f.code();
                i.arg2 = n.attr_int("saturate", 1).unwrap_or(1).clamp(0, 1);
                self.lower_unary(n, i)
            }
            "Identity" => {
                let x = self.input_name(n, 0)?;
                self.alias(n, &x)
            }
            "QuantizeLinear" | "DequantizeLinear" => {
                let x = self.input_name(n, 0)?;
                let ty = self.operand(&x)?.dtype;
                if let Some(rows) = self.per_row_quant(n, &x)? {
                    let out_ty = self.out_dtype(n)?;
                    return self.lower_unary_rows(n, None, |r| {
                        let (scale, zp) = rows[r];
                        let mut i = Instr::new(Opcode::Quantize).typed(ty);
                        i.to = out_ty;
                        i.imm = scale;
                        i.arg2 = zp;
                        i
                    });
                }
                let i = self.quant_instr(n, ty)?;
                match self.dequant_row(n, &x)? {
                    Some(row) => self.lower_unary_then(
                        n,
                        i,
                        Some(TailOp {
                            node: self.node,
                            kind: TailKind::Binary {
                                instr: Instr::new(Opcode::Mul).typed(DType::F32),
                                other: row,
                                chain_first: true,
                            },
                        }),
                    ),
                    None => self.lower_unary(n, i),
                }
            }
            "Conv" | "ConvInteger" => self.lower_conv(n),
            "ConvTranspose" => self.lower_conv_transpose(n),
            "Pad" => self.lower_pad(n),
            "Resize" => self.lower_resize(n),
            "Sum" | "Max" | "Min" => self.lower_variadic(n),
            "PRelu" => self.lower_prelu(n),
            "Where" => self.lower_where(n),
            "Expand" => self.lower_expand(n),
            "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" => self.lower_pool(n),
            "BatchNormalization" => self.lower_batchnorm(n),
            "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => self.lower_reshape(n),
            "Transpose" => self.lower_transpose(n),
            other => self.unsupported(&format!(
                "operator '{other}' has no lowering yet (lowered: MatMul, Gemm, MatMulInteger, Add, Sub, Mul, Relu, Cast, Identity, QuantizeLinear, DequantizeLinear)"
            )),
        }
    }

    /// The `qnt`/`dqnt` instruction of a QuantizeLinear/DequantizeLinear
    /// node whose input has type `ty`.
    fn quant_instr(&self, n: &Node, ty: DType) -> Result<Instr, CompileError> {
        let scale = self.scale(n)?;
        let zp = match n.input(2).and_then(|z| self.constant(z)) {
            Some(t) if t.len() > 1 => {
                if (0..t.len()).any(|i| t.values.get_f64(i) != 0.0) {
                    return self.unsupported("per-axis zero points must be 0");
                }
                0.0
            }
            _ => self.scalar_const(n.input(2), "zero point")?.unwrap_or(0.0),
        };
        let quantize = n.op_type == "QuantizeLinear";
        let mut i = Instr::new(if quantize {
            Opcode::Quantize
        } else {
            Opcode::Dequantize
        })
        .typed(ty);
        i.to = if quantize {
            self.out_dtype(n)?
        } else {
            DType::F32
        };
        i.imm = scale;
        i.arg2 = zp as i64;
        Ok(i)
    }

    /// The per-channel scale row of a per-axis DequantizeLinear `n` whose
    /// input is `x` (`None` for a per-tensor one). The `dqnt` then runs
    /// with scale 1 (exact: an integer to f32) and a VXM `mul` by this row
    /// applies the scale, as the reference computes it.
    fn dequant_row(&mut self, n: &Node, x: &str) -> Result<Option<TensorLoc>, CompileError> {
        if n.op_type != "DequantizeLinear"
            || self
                .scalar_const(n.input(1), "scale")
                .ok()
                .flatten()
                .is_some()
        {
            return Ok(None);
        }
        let shape = self.g.info(x).map(|i| i.shape.clone()).unwrap_or_default();
        let x_cl = self.cl.contains(x);
        let Some(scale) = per_axis_row(self.g, &self.cl, n, &shape, x_cl) else {
            return self.unsupported(
                "a per-axis scale is lowered only along the column axis (the last axis, or the channel axis of a channels-last tensor)",
            );
        };
        let name = n.input(1).unwrap_or_default();
        let key = format!("{name}#dqrow");
        if let Some(l) = self.locs.get(&key) {
            return Ok(Some(l.clone()));
        }
        let values = Values::F32(f32_of(&scale.values));
        let loc = self.const_row(&format!("{name} (per-channel scale row)"), &values);
        self.locs.insert(key, loc.clone());
        Ok(Some(loc))
    }

    /// A per-axis `QuantizeLinear` whose axis runs along the rows of its
    /// (row-major) input: every row has one scale and zero point, so each
    /// row's `qnt` carries its own as immediates. `None` for any other
    /// quantization.
    fn per_row_quant(&self, n: &Node, x: &str) -> Result<Option<Vec<(f64, i64)>>, CompileError> {
        if n.op_type != "QuantizeLinear" {
            return Ok(None);
        }
        let Some(s) = n.input(1).and_then(|t| self.constant(t)) else {
            return Ok(None);
        };
        let shape = self.shape_of(x)?;
        if s.len() <= 1 || shape.len() < 2 || self.cl.contains(x) {
            return Ok(None);
        }
        let rank = shape.len() as i64;
        let a = n.attr_int("axis", 1).unwrap_or(1);
        let a = if a < 0 { a + rank } else { a };
        if !(0..rank - 1).contains(&a) {
            return Ok(None);
        }
        let a = a as usize;
        let inner: usize = shape[a + 1..shape.len() - 1].iter().product();
        let rows: usize = shape[..shape.len() - 1].iter().product();
        let zp = n.input(2).and_then(|t| self.constant(t));
        let mut out = Vec::with_capacity(rows);
        for r in 0..rows {
            let k = (r / inner.max(1)) % shape[a];
            let scale = s.values.get_f64(k);
            if !(scale.is_finite() && scale > 0.0) {
                return self.unsupported(&format!(
                    "scale must be a positive finite constant, found {scale}"
                ));
            }
            let z = zp.map_or(0.0, |z| z.values.get_f64(if z.len() > 1 { k } else { 0 }));
            out.push((scale, z as i64));
        }
        Ok(Some(out))
    }

    fn scale(&self, n: &Node) -> Result<f64, CompileError> {
        if n.op_type == "DequantizeLinear"
            && self
                .constant(n.input(1).unwrap_or_default())
                .is_some_and(|t| t.len() > 1)
        {
            // Per-axis: see `dequant_row`.
            return Ok(1.0);
        }
        let s = self.scalar_const(n.input(1), "scale")?.unwrap_or(0.0);
        if !(s.is_finite() && s > 0.0) {
            return self.unsupported(&format!(
                "scale must be a positive finite constant, found {s}"
            ));
        }
        Ok(s)
    }

    fn input_name(&self, n: &Node, k: usize) -> Result<String, CompileError> {
        match n.input(k) {
            Some(x) => Ok(x.to_string()),
            None => self.unsupported(&format!("input {k} is missing")),
        }
    }

    fn out_dtype(&self, n: &Node) -> Result<DType, CompileError> {
        let name = n.outputs.first().map(String::as_str).unwrap_or_default();
        match self.g.info(name) {
            Some(i) => Ok(i.dtype),
            None => self.unsupported(&format!("output '{name}' has no inferred type")),
        }
    }

    fn alias(&mut self, n: &Node, x: &str) -> Result<(), CompileError> {
        let loc = self.operand(x)?;
        let out = n.outputs.first().cloned().unwrap_or_default();
        self.locs.insert(out, loc);
        Ok(())
    }

    fn lower_unary(&mut self, n: &Node, instr: Instr) -> Result<(), CompileError> {
        self.lower_unary_then(n, instr, None)
    }

    /// A one-operand VXM instruction per vector, then `first` (a step of
    /// the node itself) and the fused tail.
    fn lower_unary_then(
        &mut self,
        n: &Node,
        instr: Instr,
        first: Option<TailOp>,
    ) -> Result<(), CompileError> {
        self.lower_unary_rows(n, first, |_| instr.clone())
    }

    /// [`Lowerer::lower_unary_then`] with the instruction of each result
    /// row given by `instr_of(row)` (a per-row quantization scale).
    fn lower_unary_rows(
        &mut self,
        n: &Node,
        first: Option<TailOp>,
        instr_of: impl Fn(usize) -> Instr,
    ) -> Result<(), CompileError> {
        let x = self.operand(&self.input_name(n, 0)?)?;
        let mut tail: Vec<TailOp> = first.into_iter().collect();
        tail.extend(self.prepare_tail()?);
        let out = self.chain_output()?;
        if (x.rows, x.cols) != (out.rows, out.cols) {
            return self.unsupported("input and output shapes differ");
        }
        for r in 0..out.rows {
            let instr = instr_of(r);
            let instr = if instr.op.info().typing == lpu_isa::isa::Typing::Two {
                instr
            } else {
                instr.typed(x.dtype)
            };
            for j in 0..out.vpr {
                let mut gb = self.begin();
                let a = self.read(&mut gb, x.at(r, j), x.dtype);
                let o = self.op(&mut gb, instr.clone(), Place::Vxm, &[a], vec![]);
                let o = self.apply_tail(&mut gb, o, r, j, &tail);
                self.write_end(&mut gb, o, out.at(r, j), out.dtype, &tail);
                self.finish(gb);
            }
        }
        Ok(())
    }

    /// The storage of an elementwise operand of a result of `shape`,
    /// stored channels-last when `result_cl` (see [`layout::broadcast_kind`]).
    fn broadcast_operand(
        &mut self,
        name: &str,
        shape: &[usize],
        result_cl: bool,
    ) -> Result<TensorLoc, CompileError> {
        let info = match self.g.info(name) {
            Some(i) => i.clone(),
            None => return self.unsupported(&format!("operand '{name}' has no inferred type")),
        };
        match broadcast_kind(self.g, &self.cl, name, shape, result_cl) {
            Broadcast::Direct => {
                if result_cl && shape.len() == 4 {
                    if let Some(t) = self.constant(name) {
                        // A full constant, placed channels-last like the result.
                        let key = format!("{name}#nhwc");
                        if let Some(l) = self.locs.get(&key) {
                            return Ok(l.clone());
                        }
                        let b = Binding {
                            name: name.to_string(),
                            dtype: t.dtype(),
                            shape: t.shape.clone(),
                            rows: 0,
                            cols: 0,
                            vectors: vec![],
                            layout: NHWC.to_vec(),
                            view: vec![],
                        };
                        let values = match b.storage_gather() {
                            Some(idx) => t.values.gather(&idx),
                            None => t.values.clone(),
                        };
                        let mut loc = self.alloc.constant(
                            &format!("{name} (channels-last)"),
                            &b.storage_shape(),
                            &values,
                        );
                        loc.layout = NHWC.to_vec();
                        self.locs.insert(key, loc.clone());
                        return Ok(loc);
                    }
                }
                self.operand(name)
            }
            Broadcast::ConstRow => {
                let Some(t) = self.constant(name) else {
                    return self.unsupported(&format!("operand '{name}' must be a constant"));
                };
                let col = column_axis(shape.len(), result_cl);
                let cols = shape.get(col).copied().unwrap_or(1);
                let key = format!("{name}#row{col}x{cols}");
                if let Some(l) = self.locs.get(&key) {
                    return Ok(l.clone());
                }
                // The operand varies along the column axis only (or not at
                // all): pick its value for each column.
                let varies = t.len() > 1;
                let idx: Vec<usize> = (0..cols).map(|c| if varies { c } else { 0 }).collect();
                let values = t.values.gather(&idx);
                let loc = self.const_row(&format!("{name} (broadcast row)"), &values);
                self.locs.insert(key, loc.clone());
                Ok(loc)
            }
            Broadcast::Lanes => {
                let l = self.lane_broadcast(name, shape)?;
                self.rows_of(l, name, &info.shape, shape)
            }
            Broadcast::Rows => {
                let l = self.operand(name)?;
                self.rows_of(l, name, &info.shape, shape)
            }
            Broadcast::Unsupported => self.unsupported(&format!(
                "operand '{name}' of shape {:?} broadcasts to {:?}{} in a way not lowered: only equal shapes, rows along the {} axis, constants varying along it, and scalars are",
                info.shape,
                shape,
                if result_cl { " (stored channels-last)" } else { "" },
                if result_cl { "channel" } else { "last" }
            )),
        }
    }

    /// A computed `[.., 1]` (or scalar) float tensor with its lane 0
    /// broadcast across the `shape`'s last axis ([`Broadcast::Lanes`]): the
    /// MXM multiplies each row by installed weights whose row 0 is all
    /// ones (rows not loaded are zero, so only lane 0 contributes; an
    /// infinite or NaN value in a padding lane would poison the row). An
    /// f32 operand goes in as fp16 halves ([`Lowerer::split_tensor`]), so
    /// the result holds it to about 2^-22. Made once per tensor and width.
    fn lane_broadcast(&mut self, name: &str, shape: &[usize]) -> Result<TensorLoc, CompileError> {
        let cols = shape.last().copied().unwrap_or(1);
        let key = format!("{name}#lanes{cols}");
        if let Some(l) = self.locs.get(&key) {
            return Ok(l.clone());
        }
        let x = self.operand(name)?;
        if x.cols != 1 {
            return self.unsupported(&format!("operand '{name}' is not one column wide"));
        }
        let ones_key = format!("#ones-row{cols}");
        let w = match self.locs.get(&ones_key) {
            Some(l) => l.clone(),
            None => {
                let l = self.alloc.constant_columns_first(
                    "ones (lane broadcast weights)",
                    &[1, cols],
                    &Values::F16(vec![f16::ONE; cols]),
                );
                self.locs.insert(ones_key, l.clone());
                l
            }
        };
        let out = self.alloc.tensor(
            &format!("{name} (broadcast across lanes)"),
            &[x.rows, cols],
            x.dtype,
        );
        let halves = (x.dtype == DType::F32)
            .then(|| self.split_tensor(&format!("{name} (lane broadcast)"), &x));
        let hi = halves.as_ref().map_or(&x, |(h, _)| h);
        let lo = halves.as_ref().map(|(_, l)| l);
        let ktiles = [KTile { w_row0: 0, rows: 1 }];
        let act = |r: usize, _: usize| Some(hi.at(r, 0));
        let act_lo = |r: usize, _: usize| lo.map(|l| l.at(r, 0));
        let used = |_: usize, _: usize| true;
        let plan = MatmulPlan {
            rows: x.rows,
            ktiles: &ktiles,
            act: &act,
            used: &used,
            act_ty: hi.dtype,
            w_lo: None,
            act_lo: lo
                .is_some()
                .then_some(&act_lo as &dyn Fn(usize, usize) -> Option<VecLoc>),
        };
        self.attn.lane0.clear();
        let epi = Epilogue {
            alpha: None,
            bias: None,
        };
        let r = self.matmul(&plan, &w, &out, DType::F16, x.dtype, &epi, &[]);
        if let Some((h, l)) = &halves {
            self.alloc.free(h);
            self.alloc.free(l);
        }
        r?;
        self.locs.insert(key, out.clone());
        Ok(out)
    }

    fn lower_binary(&mut self, n: &Node) -> Result<(), CompileError> {
        let op = binary_opcode(&n.op_type);
        let (an, bn) = (self.input_name(n, 0)?, self.input_name(n, 1)?);
        let Some(info) = n.outputs.first().and_then(|o| self.g.info(o)).cloned() else {
            return self.unsupported("output has no inferred type");
        };
        let ty = info.dtype;
        let out_name = n.outputs.first().cloned().unwrap_or_default();
        let out_cl = self.cl.contains(&out_name);
        let a = self.broadcast_operand(&an, &info.shape, out_cl)?;
        let b = self.broadcast_operand(&bn, &info.shape, out_cl)?;
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        let rows = out.rows;
        let pick = |t: &TensorLoc, r: usize, j: usize| t.for_row(r, j);
        for r in 0..rows {
            for j in 0..out.vpr {
                let mut gb = self.begin();
                let x = self.read(&mut gb, pick(&a, r, j), a.dtype);
                let y = self.read(&mut gb, pick(&b, r, j), b.dtype);
                let o = self.op(
                    &mut gb,
                    Instr::new(op).typed(ty),
                    Place::Vxm,
                    &[x, y],
                    vec![],
                );
                let o = self.apply_tail(&mut gb, o, r, j, &tail);
                self.write_end(&mut gb, o, out.at(r, j), out.dtype, &tail);
                self.finish(gb);
            }
        }
        Ok(())
    }

    fn lower_matmul(&mut self, n: &Node) -> Result<(), CompileError> {
        let an = self.input_name(n, 0)?;
        let bn = self.input_name(n, 1)?;
        let mut a = self.operand(&an)?;
        // As stored, for the split of its fp16 halves.
        let a_st = a.clone();
        // A flattened channels-last operand: K runs over (pixel, channel)
        // in storage; the weight rows are permuted to match.
        let flat = self.flat.get(&an).copied();
        if let Some((hw, c)) = flat {
            a.rows /= hw;
            a.cols = hw * c;
        }
        let Some(b) = self.constant(&bn) else {
            return self.unsupported(&format!(
                "the right operand '{bn}' must be a constant (weights); products of two computed tensors are not lowered yet"
            ));
        };
        if b.shape.len() != 2 || a.cols == 0 {
            return self.unsupported("only 2-D weights are lowered");
        }
        let gemm = n.op_type == "Gemm";
        let (trans_a, trans_b) = if gemm {
            (n.attr_int("transA", 0)?, n.attr_int("transB", 0)?)
        } else {
            (0, 0)
        };
        if trans_a != 0 {
            return self.unsupported("transA=1 is not lowered (transpose the left operand first)");
        }
        let (k, nn) = if trans_b != 0 {
            (b.shape[1], b.shape[0])
        } else {
            (b.shape[0], b.shape[1])
        };
        if a.cols != k {
            return self.unsupported(&format!(
                "left operand has {} columns, weights have {k} rows",
                a.cols
            ));
        }
        // Weights as K x N row-major, in the MXM's input type; for a
        // flattened channels-last operand, row `p * C + c` is the logical
        // row `c * HW + p`.
        let bv = f32_of(&b.values);
        let at = |kk: usize, j: usize| {
            let kk = match flat {
                Some((hw, c)) => (kk % c) * hw + kk / c,
                None => kk,
            };
            if trans_b != 0 {
                bv[j * k + kk]
            } else {
                bv[kk * nn + j]
            }
        };
        let integer = n.op_type == "MatMulInteger";
        let (mm_ty, emit_ty) = if integer {
            for (idx, what) in [(2, "a_zero_point"), (3, "b_zero_point")] {
                if self.scalar_const(n.input(idx), what)?.unwrap_or(0.0) != 0.0 {
                    return self.unsupported(&format!("{what} must be 0 (symmetric quantization)"));
                }
            }
            (DType::I8, DType::I32)
        } else {
            let out_ty = self.out_dtype(n)?;
            (DType::F16, out_ty)
        };
        if !self.chip.mxm.dtypes.contains(&mm_ty) {
            return self.unsupported(&format!("chip '{}' has no {mm_ty} MXM", self.chip.name));
        }
        // fp32-split ([`lower_opts`]): f32 activations times the weights'
        // fp16 halves, scaled by 2^scale.
        let split = self.split && mm_ty == DType::F16 && a.dtype == DType::F32;
        let (w, w_lo, scale) = if split {
            let wf: Vec<f32> = (0..k * nn).map(|i| at(i / nn, i % nn)).collect();
            let (hi, lo, scale) = split_weights(&wf);
            let homes = self.weight_homes(a.rows, k, nn.div_ceil(self.lanes), mm_ty);
            let place = |l: &mut Self, key: String, what: String, v: &Values| {
                if let Some(t) = l.locs.get(&key) {
                    return t.clone();
                }
                let t = l.alloc.constant_weights(&what, &[k, nn], v, &homes);
                l.locs.insert(key, t.clone());
                t
            };
            let what = |half: &str| format!("{bn} (fp16 {half} halves of the weights x 2^{scale})");
            let w = place(self, format!("{bn}#split-hi"), what("high"), &hi);
            let w_lo = lo.map(|lo| place(self, format!("{bn}#split-lo"), what("low"), &lo));
            (w, w_lo, scale)
        } else {
            let wvals = match mm_ty {
                DType::I8 => Values::I8((0..k * nn).map(|i| at(i / nn, i % nn) as i8).collect()),
                _ => Values::F16(
                    (0..k * nn)
                        .map(|i| f16::from_f32(at(i / nn, i % nn)))
                        .collect(),
                ),
            };
            let wname = format!("{bn}#{mm_ty}");
            let w = match self.locs.get(&wname) {
                Some(l) => l.clone(),
                None => {
                    let homes = self.weight_homes(a.rows, k, nn.div_ceil(self.lanes), mm_ty);
                    let l = self.alloc.constant_weights(
                        &format!("{bn} (as {mm_ty} weights)"),
                        &[k, nn],
                        &wvals,
                        &homes,
                    );
                    self.locs.insert(wname, l.clone());
                    l
                }
            };
            (w, None, 0)
        };
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        let mut epi = Epilogue {
            alpha: None,
            bias: None,
        };
        if gemm {
            let alpha = n.attr_float("alpha", 1.0)?;
            let beta = n.attr_float("beta", 1.0)?;
            if alpha != 1.0 {
                epi.alpha = Some(alpha);
            }
            if let Some(cn) = n.input(2) {
                let Some(c) = self.constant(cn) else {
                    return self.unsupported(&format!("bias '{cn}' must be a constant"));
                };
                let cv = f32_of(&c.values);
                let (cr, cc) = view2d(&c.shape);
                // beta * C broadcast to M x N, exactly as the reference computes it.
                // A row C is stored once and reread for every result row.
                let brows = if cr == 1 { 1 } else { out.rows };
                let mut full = Vec::with_capacity(brows * nn);
                for r in 0..brows {
                    for j in 0..nn {
                        let v =
                            cv[(if cr == 1 { 0 } else { r }) * cc + if cc == 1 { 0 } else { j }];
                        full.push(if beta == 1.0 { v } else { beta * v });
                    }
                }
                let values = match emit_ty {
                    DType::F16 => Values::F16(full.iter().map(|x| f16::from_f32(*x)).collect()),
                    _ => Values::F32(full),
                };
                let loc = if brows == 1 {
                    self.const_row(&format!("{cn} (beta x C, broadcast row)"), &values)
                } else {
                    self.alloc.constant(
                        &format!("{cn} (beta x C, broadcast)"),
                        &[brows, nn],
                        &values,
                    )
                };
                epi.bias = Some(loc);
            }
        }
        // For each (result row, K-tile), the stored (row, vector) to stream.
        type Pos = dyn Fn(usize, usize) -> (usize, usize);
        let (ktiles, pos): (Vec<KTile>, Box<Pos>) = match flat {
            None => (
                (0..k.div_ceil(self.lanes))
                    .map(|kt| KTile {
                        w_row0: kt * self.lanes,
                        rows: self.lanes.min(k - kt * self.lanes),
                    })
                    .collect(),
                Box::new(|r: usize, kt: usize| (r, kt)),
            ),
            Some((hw, c)) => {
                let ct = c.div_ceil(self.lanes);
                let lanes = self.lanes;
                (
                    (0..hw * ct)
                        .map(|kt| KTile {
                            w_row0: (kt / ct) * c + (kt % ct) * lanes,
                            rows: lanes.min(c - (kt % ct) * lanes),
                        })
                        .collect(),
                    Box::new(move |r: usize, kt: usize| (r * hw + kt / ct, kt % ct)),
                )
            }
        };
        let used = |_: usize, _: usize| true;
        self.product(
            n,
            (&a, &a_st, split),
            &|r, kt| Some(pos(r, kt)),
            (a.rows, &ktiles, &used),
            (&w, w_lo.as_ref(), scale),
            &out,
            (mm_ty, emit_ty),
            epi,
            &tail,
        )
    }

    /// Writes the fp16 high and low halves of the f32 vector at `at` (times
    /// the 0/1 row at `mask`, when given) to `hi_at` and `lo_at`, one group
    /// each: `hi = fp16(x)` (`cvt`), then `lo = fp16(x - f32(hi))` with `hi`
    /// reread from SRAM (`cvt`, `sub`, `cvt`). `x + lo` holds x to about
    /// 2^-22 relative (fewer bits where `lo` is subnormal).
    fn split_halves(&mut self, at: VecLoc, mask: Option<VecLoc>, hi_at: VecLoc, lo_at: VecLoc) {
        let load = |s: &mut Self, gb: &mut Gb| {
            let x = s.read(gb, at, DType::F32);
            match mask {
                None => x,
                Some(m) => {
                    let mv = s.read(gb, m, DType::F32);
                    let mul = Instr::new(Opcode::Mul).typed(DType::F32);
                    s.op(gb, mul, Place::Vxm, &[x, mv], vec![])
                }
            }
        };
        let mut to16 = Instr::new(Opcode::Convert).typed(DType::F32);
        to16.to = DType::F16;
        let mut to32 = Instr::new(Opcode::Convert).typed(DType::F16);
        to32.to = DType::F32;
        let mut gb = self.begin();
        let x = load(self, &mut gb);
        let hi = self.op(&mut gb, to16.clone(), Place::Vxm, &[x], vec![]);
        self.write(&mut gb, hi, hi_at, DType::F16);
        self.fin(gb);
        let mut gb = self.begin();
        let x = load(self, &mut gb);
        let h = self.read(&mut gb, hi_at, DType::F16);
        let h = self.op(&mut gb, to32, Place::Vxm, &[h], vec![]);
        let sub = Instr::new(Opcode::Sub).typed(DType::F32);
        let d = self.op(&mut gb, sub, Place::Vxm, &[x, h], vec![]);
        let lo = self.op(&mut gb, to16, Place::Vxm, &[d], vec![]);
        self.write(&mut gb, lo, lo_at, DType::F16);
        self.fin(gb);
    }

    /// An f32 tensor's fp16 high and low halves (see
    /// [`Lowerer::split_halves`]), as two new tensors of its shape placed
    /// [apart](unary::apart) from it and from each other (so each group
    /// reads two ports): one pass. The MXM then sees `t` to about 2^-22
    /// (the across-lane sums of `rowwise.rs`, the split products of
    /// `attention.rs`).
    fn split_tensor(&mut self, what: &str, t: &TensorLoc) -> (TensorLoc, TensorLoc) {
        let shape = [t.rows, t.cols];
        let hi = self
            .alloc
            .tensor(&format!("{what} (fp16 high halves)"), &shape, DType::F16);
        let hi = unary::apart(hi, &[t]);
        let lo = self
            .alloc
            .tensor(&format!("{what} (fp16 low halves)"), &shape, DType::F16);
        let lo = unary::apart(lo, &[t, &hi]);
        for r in 0..t.rows {
            for u in 0..t.vpr {
                self.split_halves(t.at(r, u), None, hi.at(r, u), lo.at(r, u));
            }
        }
        (hi, lo)
    }

    /// Weight rows one `lw` loads in a product of `mm_ty` operands: at most
    /// `mxm.load_rows`, each row on its own stream group.
    fn rows_per_load(&self, mm_ty: DType) -> usize {
        (self.chip.mxm.load_rows as usize)
            .min(self.chip.streams_per_direction as usize / (2 * mm_ty.bytes()))
            .max(1)
    }

    /// How [`Lowerer::matmul`] divides a product of `rows` result rows and
    /// `used.len()` column tiles (column tile `j` with `used[j]` used
    /// K-tiles) among the MXM planes: [`PlaneItem`]s, in the order they are
    /// lowered (column tile by column tile, run by run, chunk by chunk).
    /// `cost(j, n, run)` estimates the cycles an item of column tile `j`,
    /// `n` rows and the used K-tiles `run` keeps its plane busy.
    ///
    /// Each column tile's rows are cut into `c` equal chunks (at most one
    /// accumulator per row) and its K-tiles into `s` runs (split-K, at most
    /// one run per plane and K-tile). Every item goes to the plane with the
    /// least estimated work from this product (ties: a plane on the VXM's
    /// side of the run's first item, whose K-tiles it loads too; then the
    /// least work from all products so far, then the lowest). The plan kept is the one whose
    /// busiest plane ends earliest (ties: fewer runs, then fewer chunks,
    /// which load each weight tile fewer times); a split plan counts the
    /// latency of its partial sums on top, and is tried only for a product
    /// whose best plan without one takes at least four times that latency,
    /// on a chip with 16 streams a direction or more.
    ///
    /// A product's items are balanced among themselves, not against
    /// earlier work: a plane left idle earlier cannot take work back in
    /// time, as the product usually waits for the one before it. So a
    /// product with few rows and long weight loads keeps its rows together
    /// instead of loading the same weights on every plane, and splits its
    /// K-tiles over the planes its column tiles would leave idle (BERT-base's
    /// FFN output products, 3 column tiles of 10 K-tiles); one with many rows
    /// spreads them over all planes. With `commit`
    /// the planes' loads are updated.
    fn plan_items(
        &mut self,
        rows: usize,
        used: &[usize],
        cost: &dyn Fn(usize, usize, std::ops::Range<usize>) -> u64,
        commit: bool,
    ) -> Vec<PlaneItem> {
        let n = self.planes.len();
        let accs = (self.chip.mxm.accumulators as usize).max(1);
        let c_min = rows.div_ceil(accs).max(1);
        // More chunks than `c_min + n - 1` never balance better.
        let c_max = (c_min + n - 1).min(rows).max(c_min);
        // Partial sums travel and add as fp32 or int32 ([`sum_type`]): the
        // last part's epilogue takes a second 4-byte operand beside its
        // `emit`'s, so a chip with fewer than 16 streams a direction does
        // not split (a margin, not a measured limit: `tiny`, with 8, keeps
        // its products whole; a 4-stream `tiny` could not schedule the
        // int8 MLP's split last layer at all).
        let s_max = if self.chip.streams_per_direction >= 16 && self.plan != SramPlan::Unsplit {
            used.iter().copied().max().unwrap_or(1).clamp(1, n)
        } else {
            1
        };
        // What a split adds to the product's last rows: the other parts'
        // partial sums go out (`emit`), to SRAM and back (`write`, `read`,
        // travelling up to the chip's width) and are added.
        let split_penalty = [Opcode::Emit, Opcode::Write, Opcode::Read, Opcode::Add]
            .iter()
            .map(|&op| self.d(op) as u64)
            .sum::<u64>()
            + self.chip.slices().len() as u64;
        let mut best: Option<(u64, Vec<u64>, Vec<PlaneItem>)> = None;
        for s in 1..=s_max {
            // Only a long product splits: a short one overlaps the work
            // around it (its weight loads, the producer's tail), which the
            // estimate does not see, so a split gains far less than it
            // says. Splitting whenever the estimate favoured it, the MLP's
            // last layer on `tiny` (73 estimated cycles) gained 3 cycles
            // and LeNet's lost 8; counting half the latency, the MLP's
            // layers on `tsp` made it 685 cycles long instead of 488.
            // BERT-base's FFN output products (1,299) and ResNet-50's last
            // 3x3 convolutions (619) gain 380 and 190 cycles each.
            if s == 2
                && best
                    .as_ref()
                    .is_some_and(|(b, _, _)| *b < 4 * split_penalty)
            {
                break;
            }
            for c in c_min..=c_max {
                let chunk = rows.div_ceil(c);
                let mut load = vec![0u64; n];
                let mut items = Vec::new();
                for (j, &tiles) in used.iter().enumerate() {
                    let parts = s.min(tiles.max(1));
                    for k in 0..parts {
                        // The side of the run's first plane: its other row
                        // chunks load the same K-tiles, so among equally
                        // busy planes they take one on that side, and the
                        // run's weights can live there ([`Lowerer::weight_homes`]).
                        let mut side: Option<bool> = None;
                        let mut r0 = 0;
                        while r0 < rows {
                            let r1 = rows.min(r0 + chunk);
                            let p = (0..n)
                                .min_by_key(|&p| {
                                    let off = side.is_some_and(|w| self.planes[p].west != w);
                                    (load[p], off, self.planes[p].load, p)
                                })
                                .unwrap_or(0);
                            side.get_or_insert(self.planes[p].west);
                            load[p] += cost(j, r1 - r0, k_run(tiles, (k, parts)));
                            items.push(PlaneItem {
                                j,
                                rows: r0..r1,
                                plane: p,
                                part: (k, parts),
                            });
                            r0 = r1;
                        }
                    }
                }
                let end =
                    load.iter().copied().max().unwrap_or(0) + if s > 1 { split_penalty } else { 0 };
                if best.as_ref().is_none_or(|(b, _, _)| end < *b) {
                    best = Some((end, load, items));
                }
            }
        }
        let Some((_, load, items)) = best else {
            return Vec::new();
        };
        if commit {
            for (p, l) in self.planes.iter_mut().zip(load) {
                p.load += l;
            }
        }
        items
    }

    /// The estimated cycles an item of a product keeps its plane busy (see
    /// [`Lowerer::plan_items`]): per K-tile, the longer of loading its
    /// weights (`lw`s and the `iw`, per weight set) and streaming the rows
    /// through (`mm`s, per activation pass), as the next tile's loads
    /// overlap this tile's products; then one `emit` per row.
    fn item_cost(
        tiles: impl Iterator<Item = usize>,
        rows: usize,
        per: usize,
        (sets, mm_per_row): (usize, usize),
    ) -> u64 {
        let body: usize = tiles
            .map(|t| (sets * (t.div_ceil(per) + 1)).max(rows * mm_per_row))
            .sum();
        (body + rows) as u64
    }

    /// Where each K-tile of each column tile of the next product's weights
    /// should live, for a product of `rows` result rows, `k` weight rows
    /// and `vpr` column tiles (all K-tiles used, one pass), planned as
    /// [`Lowerer::plan_items`] will plan it: the MEM slices on the VXM's
    /// side of the planes whose items load that K-tile. A split-K
    /// product's runs of one column tile go to different planes, so each
    /// K-tile follows its own run (BERT-base's embedding lookup, when it
    /// was a one-hot product split between the planes at both edges, read
    /// half its table across the VXM's streams otherwise). No preference for a K-tile whose items go to both sides
    /// (a tile loaded by planes on both sides then reads all the MEM
    /// slices' ports, which GPT-2 decode's weight-bound products need more
    /// than short streams) or when the chip has no VXM to divide it.
    fn weight_homes(&mut self, rows: usize, k: usize, vpr: usize, mm_ty: DType) -> Homes {
        let (lanes, per) = (self.lanes, self.rows_per_load(mm_ty));
        let Some(&vxm) = self.chip.positions_of(SliceKind::Vxm).first() else {
            return Homes::default();
        };
        let tiles: Vec<usize> = (0..k.div_ceil(lanes))
            .map(|kt| lanes.min(k - kt * lanes))
            .collect();
        let cost = |_: usize, n: usize, run: std::ops::Range<usize>| {
            Self::item_cost(tiles[run].iter().copied(), n, per, (1, 1))
        };
        let items = self.plan_items(rows, &vec![tiles.len(); vpr], &cost, false);
        // Per K-tile and column tile: `None` before any item, then the
        // side of its items, `Some(None)` once they disagree.
        let mut side: Vec<Option<Option<bool>>> = vec![None; tiles.len() * vpr];
        for it in &items {
            let west = self.planes[it.plane].west;
            for kt in k_run(tiles.len(), it.part) {
                let s = &mut side[kt * vpr + it.j];
                *s = match *s {
                    None => Some(Some(west)),
                    Some(Some(w)) if w == west => Some(Some(w)),
                    Some(_) => Some(None),
                };
            }
        }
        let (west, east): (Vec<u16>, Vec<u16>) = self
            .chip
            .positions_of(SliceKind::Mem)
            .into_iter()
            .partition(|&m| m < vxm);
        Homes {
            tile_rows: lanes,
            vpr,
            slices: side
                .into_iter()
                .map(|s| match s.flatten() {
                    Some(true) => west.clone(),
                    Some(false) => east.clone(),
                    None => Vec::new(),
                })
                .collect(),
        }
    }

    /// [`Lowerer::matmul`] for a product whose activation of result row
    /// `r` and K-tile `kt` is vector `pos(r, kt)` (stored row, vector) of
    /// `x` (`None`: padding, skipped), that may run in `fp32-split`: then
    /// `x_storage` (the storage behind `x`) is split into fp16 halves
    /// ([`Lowerer::split_tensor`]) that the product reads instead, with the
    /// weights' low halves `w_lo`; the weights' power-of-two pre-scale
    /// `scale` is undone in the epilogue (one exact multiply), and the
    /// halves are freed after the product.
    #[allow(clippy::too_many_arguments)]
    fn product(
        &mut self,
        n: &Node,
        (x, x_storage, split): (&TensorLoc, &TensorLoc, bool),
        pos: &dyn Fn(usize, usize) -> Option<(usize, usize)>,
        (rows, ktiles, used): (usize, &[KTile], &dyn Fn(usize, usize) -> bool),
        (w, w_lo, scale): (&TensorLoc, Option<&TensorLoc>, i32),
        out: &TensorLoc,
        (mm_ty, emit_ty): (DType, DType),
        mut epi: Epilogue,
        tail: &[TailOp],
    ) -> Result<(), CompileError> {
        let halves =
            split.then(|| self.split_tensor(&format!("{} (activations)", n.name), x_storage));
        let src = halves.as_ref().map_or(x, |(hi, _)| hi);
        let act = |r: usize, kt: usize| pos(r, kt).map(|(row, v)| src.at(row, v));
        let act_lo = |r: usize, kt: usize| {
            let lo = &halves.as_ref()?.1;
            pos(r, kt).map(|(row, v)| lo.at(row, v))
        };
        let plan = MatmulPlan {
            rows,
            ktiles,
            act: &act,
            used,
            act_ty: src.dtype,
            w_lo,
            act_lo: halves.is_some().then_some(&act_lo as &ActFn),
        };
        if scale != 0 {
            epi.alpha = Some(epi.alpha.unwrap_or(1.0) * 2f32.powi(-scale));
        }
        let r = self.matmul(&plan, w, out, mm_ty, emit_ty, &epi, tail);
        if let Some((hi, lo)) = &halves {
            self.alloc.free(hi);
            self.alloc.free(lo);
        }
        r
    }

    /// Emits a tiled matrix product: for each item of
    /// [`Lowerer::plan_items`] (a column tile of `w` and a chunk of result
    /// rows, at most one accumulator each, on one MXM plane); for each K-tile, its weight rows are loaded and
    /// installed (unless the K-tile before it installed the same rows at
    /// the same staging rows, as a row sum's K-tiles do: they stay) and
    /// every row's activation vector is streamed through `mm`
    /// (rows whose activation is padding skip the tile); then each row is
    /// emitted through the epilogue and the fused tail and written.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &mut self,
        plan: &MatmulPlan,
        w: &TensorLoc,
        out: &TensorLoc,
        mm_ty: DType,
        emit_ty: DType,
        epi: &Epilogue,
        tail: &[TailOp],
    ) -> Result<(), CompileError> {
        let (d_iw, d_mm) = (self.d(Opcode::InstallWeights), self.d(Opcode::Matmul));
        let per = self.rows_per_load(mm_ty);
        // Weight sets installed per K-tile, and `mm`s per row per set.
        let sets = 1 + plan.w_lo.is_some() as usize;
        let mm_per_row = sets + plan.act_lo.is_some() as usize;
        let used_tiles: Vec<Vec<usize>> = (0..w.vpr)
            .map(|j| {
                (0..plan.ktiles.len())
                    .filter(|&kt| (plan.used)(kt, j))
                    .collect()
            })
            .collect();
        // A K-tile whose weights are the rows the tile before it installed,
        // at the same staging rows (the halves of a row sum's operand, the
        // vectors of a row against the all-ones weights), keeps them: its
        // products follow with no load and no install. Not with two
        // weight sets, which take turns.
        let lane0 = self.attn.lane0.clone();
        let weights = |kt: usize| (plan.ktiles[kt], lane0.get(kt).copied().unwrap_or(0));
        let keeps: Vec<Vec<bool>> = used_tiles
            .iter()
            .map(|used| {
                (0..used.len())
                    .map(|i| sets == 1 && i > 0 && weights(used[i - 1]) == weights(used[i]))
                    .collect()
            })
            .collect();
        let cost = |j: usize, n: usize, run: std::ops::Range<usize>| {
            let tiles = used_tiles[j][run.clone()]
                .iter()
                .zip(&keeps[j][run.clone()])
                .enumerate()
                .map(|(i, (&kt, &keep))| {
                    // A run's first K-tile installs its weights.
                    if keep && i > 0 {
                        0
                    } else {
                        plan.ktiles[kt].rows
                    }
                });
            Self::item_cost(tiles, n, per, (sets, mm_per_row))
        };
        let used_counts: Vec<usize> = used_tiles.iter().map(Vec::len).collect();
        let items = self.plan_items(plan.rows, &used_counts, &cost, true);
        // Split-K scratch: the partial sums of part `k` of a column tile
        // (all but the last part), for every result row and column tile
        // (sized for the most parts; freed after the product).
        let parts = items.iter().map(|it| it.part.1).max().unwrap_or(1);
        let partials: Vec<TensorLoc> = (0..parts - 1)
            .map(|k| {
                self.alloc.tensor(
                    &format!("{} (partial sums {k})", self.cur().name),
                    &[plan.rows, w.vpr * self.lanes],
                    sum_type(emit_ty),
                )
            })
            .collect();
        let skew_n = self.planes.len();
        for item in items {
            let (j, p, (k, parts)) = (item.j, item.plane, item.part);
            let range = item.rows;
            let skew = (p, skew_n);
            let used = &used_tiles[j][k_run(used_tiles[j].len(), item.part)];
            let cq = Place::Mxm {
                slice: self.planes[p].slice,
                queue: 1,
            };
            let rows: Vec<usize> = range.collect();
            let accs: Vec<usize> = rows
                .iter()
                .map(|_| {
                    let pl = &mut self.planes[p];
                    let acc = pl.next_acc;
                    pl.next_acc = (pl.next_acc + 1) % pl.accs.len();
                    acc
                })
                .collect();
            // Which rows have had their first `mm` (the rest start their
            // accumulator fresh).
            let mut started = vec![false; rows.len()];
            // The K-tile (and staging row) whose weights the item installed last.
            let mut installed: Option<(KTile, usize)> = None;
            for (ui, &kt) in used.iter().enumerate() {
                let last = ui + 1 == used.len();
                let acts: Vec<Option<VecLoc>> = rows
                    .iter()
                    .zip(&started)
                    .map(|(&r, &st)| match (plan.act)(r, kt) {
                        Some(at) => Some(at),
                        // A row with no real input at all multiplies a
                        // zero vector once, so its accumulator is defined.
                        None if last && !st => Some(self.zero_vector(plan.act_ty)),
                        None => None,
                    })
                    .collect();
                if acts.iter().all(Option::is_none) {
                    continue;
                }
                // One pass per installed weight set: `W` with the
                // activations (and their low halves), then `W_lo` with
                // the activations (see `MatmulPlan::w_lo`).
                let mut passes: Vec<(&TensorLoc, bool)> = vec![(w, plan.act_lo.is_some())];
                passes.extend(plan.w_lo.map(|lo| (lo, false)));
                // An item runs its K-tiles in a row on one plane, so the
                // weights the item installed last are still there (a tile
                // skipped above installed nothing, so `keeps` can be stale).
                let key = weights(kt);
                let kept = self.planes[p]
                    .last_iw
                    .filter(|_| sets == 1 && installed == Some(key));
                installed = Some(key);
                for (w, with_lo) in passes {
                    let iw = match kept {
                        Some(iw) => iw,
                        None => self.load_and_install(p, w, j, key, mm_ty),
                    };
                    let lo_acts: Vec<Option<VecLoc>> = match (with_lo, plan.act_lo) {
                        (true, Some(lo)) => rows.iter().map(|&r| lo(r, kt)).collect(),
                        _ => Vec::new(),
                    };
                    let parts = acts
                        .iter()
                        .zip(&accs)
                        .enumerate()
                        .chain(lo_acts.iter().zip(&accs).enumerate());
                    for (i, (at, &acc)) in parts {
                        let Some(at) = at else { continue };
                        let mut gb = self.begin();
                        let mut x = self.read(&mut gb, *at, plan.act_ty);
                        if plan.act_ty != mm_ty {
                            let mut cvt = Instr::new(Opcode::Convert).typed(plan.act_ty);
                            cvt.to = mm_ty;
                            x = self.op(&mut gb, cvt, Place::Vxm, &[x], vec![]);
                        }
                        let st = &self.planes[p].accs[acc];
                        let mut after = vec![(iw, d_iw)];
                        if started[i] {
                            after.extend(st.last_mm.map(|m| (m, 1)));
                        } else {
                            after.extend(st.last_emit.map(|e| (e, 1 - d_mm)));
                            after.extend(st.last_mm.map(|m| (m, 1)));
                        }
                        let mm = Instr {
                            arg: acc as i64,
                            accumulate: started[i],
                            ..Instr::new(Opcode::Matmul).typed(mm_ty)
                        };
                        started[i] = true;
                        let m = self.op(&mut gb, mm, cq, &[x], after);
                        let g = self.finish(gb);
                        let r = MemberRef {
                            group: g,
                            member: m,
                        };
                        self.planes[p].mm_since_iw.push(r);
                        self.planes[p].accs[acc].last_mm = Some(r);
                    }
                }
            }
            let sums = if k + 1 < parts {
                PartialSums::Store(&partials[k])
            } else {
                PartialSums::Add(&partials[..parts - 1])
            };
            for (&r, &acc) in rows.iter().zip(&accs) {
                let row = EmitRow { p, acc, r, j };
                self.emit_row(row, skew, sums, (emit_ty, epi, out, tail));
            }
        }
        for t in &partials {
            self.alloc.free(t);
        }
        Ok(())
    }

    /// Loads K-tile `tile` of column tile `j` of `w` onto plane `p`'s
    /// weight buffer (staging rows from `stage` on, `rows_per_load` rows a
    /// bundle, each bundle's rows from distinct MEM slices on one side of
    /// the plane) and installs it; returns the install.
    fn load_and_install(
        &mut self,
        p: usize,
        w: &TensorLoc,
        j: usize,
        (tile, stage): (KTile, usize),
        mm_ty: DType,
    ) -> MemberRef {
        let (d_lw, d_iw) = (self.d(Opcode::LoadWeights), self.d(Opcode::InstallWeights));
        let per = self.rows_per_load(mm_ty);
        let slice = self.planes[p].slice;
        let wq = Place::Mxm { slice, queue: 0 };
        let mut r0 = 0;
        while r0 < tile.rows {
            let side = |at: VecLoc| at.slice > slice;
            let first = w.at(tile.w_row0 + r0, j);
            let mut lrows = vec![first];
            while lrows.len() < per && r0 + lrows.len() < tile.rows {
                let next = w.at(tile.w_row0 + r0 + lrows.len(), j);
                if side(next) != side(first) || lrows.iter().any(|v| v.slice == next.slice) {
                    break;
                }
                lrows.push(next);
            }
            let mut gb = self.begin();
            let reads: Vec<u32> = lrows
                .iter()
                .map(|at| self.read(&mut gb, *at, mm_ty))
                .collect();
            let after: Vec<_> = self.planes[p]
                .last_iw
                .iter()
                .map(|iw| (*iw, 1 - d_lw))
                .collect();
            let lw = Instr {
                arg: (stage + r0) as i64,
                arg2: lrows.len() as i64,
                ..Instr::new(Opcode::LoadWeights).typed(mm_ty)
            };
            // Row k of the bundle is stream group k of the first operand.
            let groups: Vec<(u8, u8)> = (0..reads.len()).map(|k| (0, k as u8)).collect();
            let m = self.linked(&mut gb, lw, wq, &reads, &groups, after);
            let g = self.finish(gb);
            self.planes[p].lw_since_iw.push(MemberRef {
                group: g,
                member: m,
            });
            r0 += lrows.len();
        }
        let mut gb = self.begin();
        let pl = &mut self.planes[p];
        let after: Vec<_> = pl
            .lw_since_iw
            .drain(..)
            .map(|r| (r, d_lw))
            .chain(pl.mm_since_iw.drain(..).map(|r| (r, 1 - d_iw)))
            .collect();
        let m = self.member(&mut gb, Instr::new(Opcode::InstallWeights), wq, after);
        let g = self.finish(gb);
        let iw = MemberRef {
            group: g,
            member: m,
        };
        self.planes[p].last_iw = Some(iw);
        iw
    }

    /// The epilogue group of one result row of [`Lowerer::matmul`]: `emit`
    /// of the row's accumulator after its last `mm`, `alpha`, the bias
    /// (copies read as reader `skew`, [`Lowerer::row_copy_skewed`]), the
    /// fused tail and the write of vector `(r, j)` of `out`. Returns the
    /// `emit`.
    fn emit_row(
        &mut self,
        EmitRow { p, acc, r, j }: EmitRow,
        skew: (usize, usize),
        sums: PartialSums,
        (emit_ty, epi, out, tail): (DType, &Epilogue, &TensorLoc, &[TailOp]),
    ) -> MemberRef {
        let d_mm = self.d(Opcode::Matmul);
        let cq = Place::Mxm {
            slice: self.planes[p].slice,
            queue: 1,
        };
        let mut gb = self.begin();
        let after: Vec<_> = self.planes[p].accs[acc]
            .last_mm
            .iter()
            .map(|m| (*m, d_mm))
            .collect();
        // A split's parts come out, travel and add in their sums' type,
        // rounded to `emit_ty` once, after the last add.
        let split = !matches!(sums, PartialSums::Add([]));
        let out_ty = if split { sum_type(emit_ty) } else { emit_ty };
        let emit = Instr {
            arg: acc as i64,
            ..Instr::new(Opcode::Emit).typed(out_ty)
        };
        let e = self.op(&mut gb, emit, cq, &[], after);
        let mut last = e;
        match sums {
            PartialSums::Store(t) => {
                self.write(&mut gb, last, t.at(r, j), out_ty);
                return self.finish_emit(gb, p, acc, e);
            }
            PartialSums::Add(ts) => {
                for t in ts {
                    let v = self.read(&mut gb, t.at(r, j), out_ty);
                    last = self.op(
                        &mut gb,
                        Instr::new(Opcode::Add).typed(out_ty),
                        Place::Vxm,
                        &[last, v],
                        vec![],
                    );
                }
            }
        }
        if out_ty != emit_ty {
            let mut cvt = Instr::new(Opcode::Convert).typed(out_ty);
            cvt.to = emit_ty;
            last = self.op(&mut gb, cvt, Place::Vxm, &[last], vec![]);
        }
        if let Some(alpha) = epi.alpha {
            let mul = Instr {
                imm: alpha as f64,
                ..Instr::new(Opcode::MulImm).typed(emit_ty)
            };
            last = self.op(&mut gb, mul, Place::Vxm, &[last], vec![]);
        }
        if let Some(bias) = &epi.bias {
            let at = Self::row_copy_skewed(&gb, bias, r, j, skew);
            let c = self.read(&mut gb, at, bias.dtype);
            last = self.op(
                &mut gb,
                Instr::new(Opcode::Add).typed(emit_ty),
                Place::Vxm,
                &[last, c],
                vec![],
            );
        }
        self.copy_skew = skew;
        let last = self.apply_tail(&mut gb, last, r, j, tail);
        self.copy_skew = (0, 1);
        self.write_end(&mut gb, last, out.at(r, j), out.dtype, tail);
        self.finish_emit(gb, p, acc, e)
    }

    /// Finishes the group of an `emit` (member `e`) from accumulator `acc`
    /// of plane `p`, which the accumulator's next `mm` then follows.
    fn finish_emit(&mut self, gb: Gb, p: usize, acc: usize, e: u32) -> MemberRef {
        let g = self.finish(gb);
        let e = MemberRef {
            group: g,
            member: e,
        };
        self.planes[p].accs[acc].last_emit = Some(e);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runs of a split cover every used K-tile once, in order, the
    /// longer runs first and none longer than another by more than one.
    #[test]
    fn k_runs_partition_the_tiles() {
        assert_eq!(k_run(10, (0, 1)), 0..10);
        let runs: Vec<_> = (0..4).map(|k| k_run(10, (k, 4))).collect();
        assert_eq!(runs, vec![0..3, 3..6, 6..8, 8..10]);
        for n in 1..40 {
            for parts in 1..=n.min(5) {
                let runs: Vec<_> = (0..parts).map(|k| k_run(n, (k, parts))).collect();
                assert_eq!(runs[0].start, 0);
                assert_eq!(runs[parts - 1].end, n);
                for w in runs.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(w[0].len() >= w[1].len() && w[0].len() <= w[1].len() + 1);
                }
            }
        }
    }

    /// Six Softmaxes in a row over 256 KiB f32 tensors (each with a 256 KiB
    /// scratch), then two Adds of 256 KiB constants, on `tiny` (2 MiB of
    /// SRAM). Constants take only never-used vectors. Reusing freed vectors
    /// first, the chain's never-used vectors and the constants fit; fresh
    /// first, the chain takes a further quarter of the SRAM before it
    /// reuses anything, and the constants, allocated last, find no room.
    fn fits_only_reusing_first() -> Graph {
        let c = |i: usize| {
            format!(
                "Initializer(name: \"c{i}\", dtype: F32, shape: [256, 256], data: Random(seed: {i}, dist: Uniform(low: -1.0, high: 1.0)))"
            )
        };
        let mut nodes = Vec::new();
        for i in 1..=6 {
            nodes.push(format!(
                "Node(op_type: \"Softmax\", inputs: [\"y{}\"], outputs: [\"y{i}\"])",
                i - 1
            ));
        }
        for i in 1..=2 {
            let x = if i == 1 {
                "y6".to_string()
            } else {
                format!("z{}", i - 1)
            };
            nodes.push(format!(
                "Node(op_type: \"Add\", inputs: [\"{x}\", \"c{i}\"], outputs: [\"z{i}\"])"
            ));
        }
        let text = format!(
            r#"Graph(name: "reuse", inputs: [ValueInfo(name: "y0", dtype: F32, shape: [256, 256])],
  outputs: [ValueInfo(name: "z2")],
  initializers: [{}],
  nodes: [{}])"#,
            (1..=2).map(c).collect::<Vec<_>>().join(", "),
            nodes.join(", ")
        );
        lpu_graph::parse_graph(&text, "<test>", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The MEM slices holding a vector that starts with `marker`.
    fn slices_holding(l: &Lowered, marker: f32) -> BTreeSet<u16> {
        l.memory
            .iter()
            .filter(|m| m.values.get_f64(0) == marker as f64)
            .map(|m| m.at.slice)
            .collect()
    }

    #[test]
    fn the_roomy_plan_copies_constant_rows_to_every_slice() {
        let g = lpu_graph::parse_graph(
            r#"Graph(name: "bias", inputs: [ValueInfo(name: "x", dtype: F32, shape: [64, 8])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "b", dtype: F32, shape: [8], data: Inline([1234.5, 1, 2, 3, 4, 5, 6, 7]))],
  nodes: [Node(op_type: "Add", inputs: ["x", "b"], outputs: ["y"])])"#,
            "<test>",
            std::path::Path::new("."),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let chip = ChipConfig::preset("tsp").expect("preset");
        let mem = chip.positions_of(SliceKind::Mem).len();
        let roomy = lower_planned(&g, &chip, false, false, SramPlan::Roomy).expect("fits");
        assert_eq!(slices_holding(&roomy, 1234.5).len(), mem);
        let frugal = lower_planned(&g, &chip, false, false, SramPlan::Frugal).expect("fits");
        assert_eq!(slices_holding(&frugal, 1234.5).len(), ROW_COPIES);
        // The first plan that fits is the one kept.
        assert_eq!(
            lower_opts(&g, &chip, false, false).expect("fits").memory,
            roomy.memory
        );
    }

    #[test]
    fn a_graph_that_fits_only_reusing_first_is_lowered_that_way() {
        let g = fits_only_reusing_first();
        let chip = ChipConfig::preset("tiny").expect("preset");
        for plan in [SramPlan::Roomy, SramPlan::Frugal] {
            assert!(matches!(
                lower_planned(&g, &chip, false, false, plan),
                Err(CompileError::DoesNotFit { .. })
            ));
        }
        let retried = lower_opts(&g, &chip, false, false).expect("fits reusing first");
        let reused = lower_planned(&g, &chip, false, false, SramPlan::Smallest).expect("fits");
        assert_eq!(retried.memory, reused.memory);
        assert_eq!(retried.sram_bytes, reused.sram_bytes);
    }

    /// A long int8 product on `tsp` with room for its weights but not for
    /// split-K's partial sums beside them: the split attempts do not fit,
    /// and the last plan keeps the product whole.
    #[test]
    fn a_product_whose_partial_sums_do_not_fit_is_not_split() {
        let (rows, k) = (64, 16 * 320);
        let g = lpu_graph::parse_graph(
            &format!(
                r#"Graph(name: "mm", inputs: [ValueInfo(name: "x", dtype: I8, shape: [{rows}, {k}])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "w", dtype: I8, shape: [{k}, 320], data: Random(seed: 3, dist: Uniform(low: -127.0, high: 127.0)))],
  nodes: [Node(op_type: "MatMulInteger", inputs: ["x", "w"], outputs: ["y"])])"#
            ),
            "<test>",
            std::path::Path::new("."),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let emits = |l: &Lowered| {
            let members = l.groups.iter().flat_map(|g| &g.members);
            members.filter(|m| m.instr.op == Opcode::Emit).count()
        };
        let with_banks_of = |addresses: u32| {
            let mut chip = ChipConfig::preset("tsp").expect("preset");
            chip.mem.addresses_per_bank = addresses;
            chip
        };
        let tsp = ChipConfig::preset("tsp").expect("preset");
        let split = lower_planned(&g, &tsp, false, false, SramPlan::Smallest).expect("fits");
        assert!(emits(&split) > rows, "the product splits when it fits");
        // The fewest addresses per bank that hold the whole product.
        let (mut lo, mut hi) = (1, tsp.mem.addresses_per_bank);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match lower_planned(&g, &with_banks_of(mid), false, false, SramPlan::Unsplit) {
                Ok(_) => hi = mid,
                Err(_) => lo = mid + 1,
            }
        }
        let chip = with_banks_of(lo);
        assert!(matches!(
            lower_planned(&g, &chip, false, false, SramPlan::Smallest),
            Err(CompileError::DoesNotFit { .. })
        ));
        let lowered = lower_opts(&g, &chip, false, false).expect("fits unsplit");
        assert_eq!(emits(&lowered), rows);
    }
}
