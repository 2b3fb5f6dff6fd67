//! The precision rewrite: [`apply_precision`] turns an fp32 graph into one
//! that computes in the chosen [`Precision`], and [`node_precisions`] states
//! the precision of every node (for the report).
//!
//! `lpc compile --precision int8|fp16|fp32|fp32-split|mixed` selects it
//! (default `fp32`):
//!
//! - **fp32**: the graph is unchanged. The MXM multiplies only fp16 and
//!   int8, so a product of f32 activations by constant f32 weights
//!   (`MatMul`, `Gemm`, `Conv`, `ConvTranspose`) rounds both to fp16 and
//!   accumulates in f32: results about 1e-4 relative off. (Products of two
//!   computed tensors, attention's, and the MXM's lane sums already split
//!   their f32 operands, as below.)
//! - **fp32-split**: the graph is unchanged too (the reference interpreter
//!   computes its f32 products in f32), and the lowering computes every
//!   such product fp32-accurately, about 1e-6 relative
//!   ([`crate::lower::lower_opts`]): `x . W = xh . Wh + xl . Wh + xh . Wl`,
//!   three fp16 MXM passes into one f32 accumulator (`xl . Wl`, about
//!   2^-22 of the product, is dropped). `Wh = fp16(W * 2^s)` and
//!   `Wl = fp16(W * 2^s - Wh)` are made at compile time, with the power of
//!   two `s` that puts the largest weight near 2^14 so the low halves stay
//!   normal fp16, and the result is scaled back by `2^-s` after `emit`
//!   (exact, one VXM `mul`); `xh = fp16(x)` and `xl = fp16(x - xh)` are
//!   made on the VXM before the product (`cvt`, `cvt`, `sub`, `cvt` per
//!   vector, into two fp16 copies of the activations). The cost is real
//!   and the simulator reports it: three times the `mm` passes, twice the
//!   weight loads and installs and twice the weight SRAM (both halves are
//!   stored), the split's VXM work and the halves' SRAM while the product
//!   runs. The pass over `Wl` is skipped where every weight is an fp16
//!   value already. The report gives such products as `fp32-split`
//!   ([`split_precisions`]). `lpsim onnx-test` compiles in this mode by
//!   default, as the ONNX backend tests expect fp32 results (rtol 1e-3,
//!   atol 1e-7).
//! - **fp16**: weights and activations in f16. Every f32 graph input is
//!   `Cast` to f16 where it is first read (`<input>/cast_fp16`), every f32
//!   initializer read by an f16 node is converted at compile time
//!   (`<name>/fp16`), and every graph output is `Cast` back to f32
//!   (`<output>/cast_fp32`), so the program's interface is unchanged. Matrix
//!   products accumulate in f32 and round once (the interpreter's f16
//!   `MatMul`/`Gemm` rule, which the MXM lowering mirrors). Nodes that must
//!   stay f32 do: `QuantizeLinear`/`DequantizeLinear`, and any node whose
//!   shape/type inference rejects f16 operands.
//! - **int8**: post-training symmetric quantization of every `MatMul`,
//!   `Gemm` and `Conv` (see [`super::quantize`] for the exact rewrite and
//!   arithmetic): per-output-channel int8 weights, per-tensor int8
//!   activations calibrated on sample inputs ([`super::calib`]), zero points
//!   0, int32 accumulation, dequantization (requantization, when the next
//!   layer quantizes again) on the VXM. Activation x activation `MatMul`s
//!   (attention's scores and context) quantize both operands per tensor
//!   where the graph crate can express the integer product (rank 2); the
//!   batched ones stay f32 (the lowering computes them fp32-accurately
//!   with split fp16 halves). Lookup tables (`Gather` of an f32 constant
//!   by runtime indices: embeddings) are rounded to fp16 values, as the
//!   lowering stores them (the report gives those gathers as fp16); tables
//!   of [`INT8_TABLE_ELEMENTS`] or more (GPT-2's and BERT-base's token
//!   embeddings) are quantized to int8 per column instead, the gather
//!   followed by a per-axis `DequantizeLinear` ([`int8_tables`]), which
//!   halves their SRAM.
//!   Everything else stays as it was (f32).
//! - **mixed**: `MatMul`/`Gemm`/`Conv` with constant weights in int8 as
//!   above; activation x activation `MatMul`s in fp16; these in f32:
//!   `Softmax`, `LogSoftmax`, `LayerNormalization`, `RMSNormalization`,
//!   `BatchNormalization`, `InstanceNormalization`, `GroupNormalization`,
//!   `LpNormalization`, `LRN`, `ReduceMean`, `ReduceSum`, `ReduceSumSquare`,
//!   `ReduceL2`, `ReduceLogSumExp` (the normalizations and the reductions
//!   they are built from, whose sums lose too much in f16), and
//!   `QuantizeLinear`/`DequantizeLinear` with the bias `Add` of an int8
//!   chain, and the elementwise ops of [`MIXED_EPILOGUE_OPS`] (activations,
//!   `Add`, `Mul`, ...) whose runtime float inputs are all f32 already, so
//!   the epilogue of an int8 product (dequantize, bias, activation,
//!   residual add, requantize) stays in f32 without casts; the large
//!   lookup tables in int8 as under int8 (their gathers are left f32 for
//!   that rewrite, so the dequantized rows and the elementwise ops after
//!   them stay f32 too); every other float node in fp16, with `Cast`s
//!   where an f32 and an f16 node meet.
//!
//! Casts and converted initializers are made once per tensor and type and
//! shared by every reader. The result is validated, and nodes or
//! initializers left unread (the fp32 weights that were quantized) are
//! removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use lpu_graph::{AttrValue, DType, Graph, Node, Tensor, TensorInfo};

use super::calib::{calibration_inputs, max_abs, DEFAULT_CALIB_SAMPLES, DEFAULT_CALIB_SEED};
use super::{f32s, float_values, infer, Names, Parts};
use crate::CompileError;

/// The numeric precision a graph is compiled in (`--precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precision {
    /// The graph as given (f32 models stay f32).
    #[default]
    Fp32,
    /// Weights and activations in f16, f32 accumulation in matrix products.
    Fp16,
    /// Post-training int8 quantization of matrix products and convolutions.
    Int8,
    /// Int8 products with constant weights, f32 normalizations, f16 elsewhere.
    Mixed,
    /// The graph as given, with f32 products by constant weights computed
    /// fp32-accurately in three fp16 MXM passes (see the module doc).
    Fp32Split,
}

impl Precision {
    /// Every precision, in the order `--help` lists them.
    pub const ALL: [Precision; 5] = [
        Precision::Int8,
        Precision::Fp16,
        Precision::Fp32,
        Precision::Fp32Split,
        Precision::Mixed,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Fp32Split => "fp32-split",
            Precision::Int8 => "int8",
            Precision::Mixed => "mixed",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    /// Parses `int8`, `fp16`, `fp32`, `fp32-split` or `mixed`
    /// (case-insensitive).
    fn from_str(s: &str) -> Result<Precision, String> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown precision '{s}'; expected int8, fp16, fp32, fp32-split or mixed")
            })
    }
}

/// Ops kept in f32 under [`Precision::Mixed`].
pub const MIXED_F32_OPS: &[&str] = &[
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "RMSNormalization",
    "BatchNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "LpNormalization",
    "LRN",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceLogSumExp",
];

/// Elementwise ops that stay in f32 under [`Precision::Mixed`] when every
/// runtime float input is f32 already (an int8 product's dequantized result,
/// or another such op): the product's epilogue then needs no casts.
pub const MIXED_EPILOGUE_OPS: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "Erf",
    "HardSigmoid",
    "HardSwish",
    "Silu",
    "Sum",
    "Max",
    "Min",
];

/// The result of [`apply_precision`].
#[derive(Clone, Debug)]
pub struct PrecisionOutcome {
    /// The rewritten, validated graph.
    pub graph: Graph,
    /// The precision of every node of `graph`, by node name (see
    /// [`node_precisions`]).
    pub node_precision: BTreeMap<String, String>,
}

/// The report name of an element type: `fp32`, `fp16`, `int8`, or the
/// type's own name (`i32`) for others.
pub fn dtype_precision(d: DType) -> String {
    match d {
        DType::F32 => "fp32".into(),
        DType::F16 => "fp16".into(),
        DType::I8 => "int8".into(),
        other => other.to_string(),
    }
}

/// The precision each node of `g` computes in, by node name: `int8` for
/// `MatMulInteger` and `ConvInteger` (int8 operands, int32 accumulation),
/// otherwise the type of the node's first output (`fp32`, `fp16`, `int8`
/// for `QuantizeLinear`, `i32`, ...).
pub fn node_precisions(g: &Graph) -> BTreeMap<String, String> {
    g.nodes
        .iter()
        .map(|n| {
            let p = match n.op_type.as_str() {
                "MatMulInteger" | "ConvInteger" => "int8".to_string(),
                _ => n
                    .outputs
                    .first()
                    .and_then(|o| g.info(o))
                    .map_or_else(|| "?".to_string(), |i| dtype_precision(i.dtype)),
            };
            (n.name.clone(), p)
        })
        .collect()
}

/// [`node_precisions`] under [`Precision::Fp32Split`]: `fp32-split` for the
/// products the lowering splits (`MatMul`, `Gemm`, `Conv`, `ConvTranspose`
/// of an f32 first operand by constant f32 weights).
pub fn split_precisions(g: &Graph) -> BTreeMap<String, String> {
    let mut out = node_precisions(g);
    for n in &g.nodes {
        if is_split_product(g, n) {
            out.insert(n.name.clone(), Precision::Fp32Split.name().to_string());
        }
    }
    out
}

/// Whether `n` is a product that [`Precision::Fp32Split`] computes in
/// three fp16 passes.
fn is_split_product(g: &Graph, n: &Node) -> bool {
    let f32_of = |i: Option<&str>| {
        i.and_then(|t| g.info(t))
            .is_some_and(|t| t.dtype == DType::F32)
    };
    matches!(
        n.op_type.as_str(),
        "MatMul" | "Gemm" | "Conv" | "ConvTranspose"
    ) && f32_of(n.input(0))
        && f32_of(n.input(1))
        && n.input(1)
            .is_some_and(|w| g.initializers.contains_key(w) || g.constants.contains_key(w))
}

/// Rewrites `graph` to compute in `precision` (see the module doc).
/// `calib` are calibration input sets for int8 and mixed; when empty,
/// [`DEFAULT_CALIB_SAMPLES`] seeded samples from [`DEFAULT_CALIB_SEED`] are
/// used ([`calibration_inputs`]). fp32 and fp16 ignore it.
pub fn apply_precision(
    graph: &Graph,
    precision: Precision,
    calib: &[BTreeMap<String, Tensor>],
) -> Result<PrecisionOutcome, CompileError> {
    rewrite(graph, precision, calib, INT8_TABLE_ELEMENTS)
}

/// [`apply_precision`], storing lookup tables of at least `table_elements`
/// in int8 under int8 and mixed ([`int8_tables`]).
fn rewrite(
    graph: &Graph,
    precision: Precision,
    calib: &[BTreeMap<String, Tensor>],
    table_elements: usize,
) -> Result<PrecisionOutcome, CompileError> {
    if precision == Precision::Fp32 {
        return Ok(PrecisionOutcome {
            node_precision: node_precisions(graph),
            graph: graph.clone(),
        });
    }
    if precision == Precision::Fp32Split {
        return Ok(PrecisionOutcome {
            node_precision: split_precisions(graph),
            graph: graph.clone(),
        });
    }
    let amax = if matches!(precision, Precision::Int8 | Precision::Mixed) {
        if calib.is_empty() {
            let samples = calibration_inputs(graph, DEFAULT_CALIB_SAMPLES, DEFAULT_CALIB_SEED);
            max_abs(graph, &samples)?
        } else {
            max_abs(graph, calib)?
        }
    } else {
        BTreeMap::new()
    };
    let mut r = Rewriter::new(graph, precision, amax, table_elements);
    for n in &graph.nodes {
        r.visit(n)?;
    }
    r.finish_outputs()?;
    let parts = r.into_parts();
    let g = parts.rebuild("precision")?;
    let (g, _) = super::dce::eliminate_dead(g)?;
    let (mut g, int8_gathers) = if matches!(precision, Precision::Int8 | Precision::Mixed) {
        int8_tables(g, table_elements)?
    } else {
        (g, Vec::new())
    };
    let mut node_precision = node_precisions(&g);
    if matches!(precision, Precision::Int8 | Precision::Mixed) {
        for n in fp16_tables(&mut g) {
            node_precision.insert(n, "fp16".to_string());
        }
        for n in int8_gathers {
            node_precision.insert(n, "int8".to_string());
        }
    }
    Ok(PrecisionOutcome {
        node_precision,
        graph: g,
    })
}

/// Lookup tables of at least this many elements are stored int8 by int8
/// and mixed (see [`int8_tables`]); smaller ones in fp16 ([`fp16_tables`]).
/// GPT-2's token embedding (50257 x 768, 38.6M elements) is one: in fp16
/// it alone would take 92 MiB of `tsp`'s 220 MiB (768 columns padded to 960
/// lanes). BERT-base's word embedding (30522 x 768, 23.4M) is another: in
/// int8 it takes half the SRAM, its lookup's gathers and sums move half
/// the bytes (as a one-hot product it was 254,284 -> 252,634 cycles on
/// `tsp`, mixed 220,722 -> 217,470), and its outputs stay as far from fp32
/// as with the fp16 table
/// (on `random_inputs(.., 0)`, int8 `last_hidden_state` max |err| 0.096
/// against 0.099, RMS 0.0242 against 0.0246; mixed 0.110 against 0.104,
/// RMS 0.0243 against 0.0249; the int8 activations dominate). Position
/// tables (512 x 768 and 1024 x 768) stay fp16.
pub const INT8_TABLE_ELEMENTS: usize = 1 << 24;

/// Whether `n` gathers rows of a table by runtime indices.
fn is_table_gather(g: &Graph, n: &Node) -> bool {
    n.op_type == "Gather"
        && n.input(1)
            .is_some_and(|i| !g.initializers.contains_key(i) && !g.constants.contains_key(i))
}

/// The f32 lookup tables of `g` that [`int8_tables`] quantizes: `[V, H]`
/// initializers of at least `min_elements`, read only by gathers along
/// axis 0 by runtime indices (and not graph outputs).
fn int8_table_names(g: &Graph, min_elements: usize) -> BTreeSet<String> {
    g.initializers
        .iter()
        .filter(|(t, x)| {
            x.dtype() == DType::F32
                && x.shape.len() == 2
                && x.len() >= min_elements
                && !g.outputs.contains(*t)
                && !g.consumers(t).is_empty()
                && g.consumers(t).iter().all(|&c| {
                    let n = &g.nodes[c];
                    is_table_gather(g, n)
                        && n.input(0) == Some(t.as_str())
                        && n.inputs.iter().filter(|i| *i == *t).count() == 1
                        && n.attr_int("axis", 0).ok() == Some(0)
                })
        })
        .map(|(t, _)| t.clone())
        .collect()
}

/// int8 and mixed store large lookup tables ([`INT8_TABLE_ELEMENTS`]) in
/// int8: an f32 `[V, H]` table read only by gathers along axis 0 by runtime
/// indices is quantized per column (`quantize_per_channel` along axis 1,
/// symmetric, as weights are), and each `Gather(table, ids) -> y` becomes
/// `Gather(table_q, ids) -> y_q` (int8) then `DequantizeLinear(y_q,
/// scale, axis = last) -> y`. The lowering's gathers then read the int8
/// entries exactly and the dequantization is one VXM `mul` by the scale
/// row, as the reference computes it. Tables of fewer than `min_elements` are left alone. Returns
/// the graph and the rewritten gathers.
fn int8_tables(g: Graph, min_elements: usize) -> Result<(Graph, Vec<String>), CompileError> {
    let tables = int8_table_names(&g, min_elements);
    let mut names = Names::of(&g);
    let mut inits: Vec<(String, Tensor)> = Vec::new();
    let mut replace: BTreeMap<usize, Vec<Node>> = BTreeMap::new();
    let mut gathers = Vec::new();
    let mut removed = Vec::new();
    for t in tables {
        let x = &g.initializers[&t];
        let Some(w) = f32s(&x.values) else { continue };
        let Some((q, scales)) = super::quantize::quantize_per_channel(&w, &x.shape, 1) else {
            continue;
        };
        let (qn, sn) = (
            names.fresh(&format!("{t}/q")),
            names.fresh(&format!("{t}/scale")),
        );
        let h = x.shape[1];
        let bad = |e: lpu_graph::error::GraphError| CompileError::Pass {
            model: g.name.clone(),
            pass: "int8 tables".into(),
            message: format!("table '{t}': {e}"),
        };
        inits.push((
            qn.clone(),
            Tensor::new(x.shape.clone(), lpu_isa::Values::I8(q)).map_err(bad)?,
        ));
        inits.push((
            sn.clone(),
            Tensor::new(vec![h], lpu_isa::Values::F32(scales)).map_err(bad)?,
        ));
        for c in g.consumers(&t) {
            let n = &g.nodes[c];
            let Some(y) = n.outputs.first() else { continue };
            let rank = g.info(y).map_or(2, |i| i.shape.len());
            let yq = names.fresh(&format!("{y}/q"));
            let mut gather = n.clone();
            gather.inputs[0] = qn.clone();
            gather.outputs = vec![yq.clone()];
            let dq = Node {
                name: names.fresh(&format!("{}/dequant", n.name)),
                op_type: "DequantizeLinear".into(),
                inputs: vec![yq, sn.clone()],
                outputs: vec![y.clone()],
                attributes: [(
                    "axis".to_string(),
                    AttrValue::Int(rank.saturating_sub(1) as i64),
                )]
                .into(),
            };
            gathers.push(n.name.clone());
            replace.insert(c, vec![gather, dq]);
        }
        removed.push(t);
    }
    if replace.is_empty() {
        return Ok((g, gathers));
    }
    let mut parts = Parts::of(g);
    for t in removed {
        parts.initializers.remove(&t);
    }
    parts.initializers.extend(inits);
    let nodes = std::mem::take(&mut parts.nodes);
    for (i, n) in nodes.into_iter().enumerate() {
        match replace.remove(&i) {
            Some(new) => parts.nodes.extend(new),
            None => parts.nodes.push(n),
        }
    }
    Ok((parts.rebuild("int8 tables")?, gathers))
}

/// int8 and mixed store lookup tables in fp16: the f32 table of a `Gather`
/// by runtime indices (an embedding), read by such gathers only, gets its
/// values rounded to fp16 (its type stays f32). The lowering stores a
/// table of fp16 values in fp16, half the SRAM of f32, and converts what
/// its gathers read back to f32 exactly (see `lower/select.rs`); the
/// reference computes with the same rounded values. Returns the gathers, whose precision the report gives as fp16.
fn fp16_tables(g: &mut Graph) -> Vec<String> {
    let mut tables: BTreeSet<String> = g
        .nodes
        .iter()
        .filter(|n| is_table_gather(g, n))
        .filter_map(|n| n.input(0).map(str::to_string))
        .filter(|t| {
            g.initializers
                .get(t)
                .is_some_and(|x| x.dtype() == DType::F32)
        })
        .collect();
    tables.retain(|t| {
        g.consumers(t)
            .iter()
            .all(|&c| is_table_gather(g, &g.nodes[c]) && g.nodes[c].input(0) == Some(t.as_str()))
            && !g.outputs.contains(t)
    });
    let gathers = g
        .nodes
        .iter()
        .filter(|n| n.input(0).is_some_and(|t| tables.contains(t)) && is_table_gather(g, n))
        .map(|n| n.name.clone())
        .collect();
    for t in &tables {
        if let Some(x) = g.initializers.get_mut(t) {
            if let lpu_isa::Values::F32(v) = &mut x.values {
                for e in v.iter_mut() {
                    *e = half::f16::from_f32(*e).to_f32();
                }
            }
        }
    }
    gathers
}

/// The ONNX `TensorProto` code of a float type (for `Cast`'s `to`).
fn onnx_code(d: DType) -> i64 {
    match d {
        DType::F16 => 10,
        DType::I8 => 3,
        DType::I32 => 6,
        _ => 1,
    }
}

/// Inputs that keep their type whatever the node's precision (`Resize`'s
/// `roi` and `scales` are f32 in ONNX even when `X` is f16).
fn keeps_type(op: &str, k: usize) -> bool {
    op == "Resize" && (k == 1 || k == 2)
}

/// Rebuilds the graph node by node, tracking for every original tensor the
/// versions of it that exist (by type) and their names.
pub(super) struct Rewriter<'g> {
    pub g: &'g Graph,
    pub mode: Precision,
    /// Calibrated largest magnitudes, by original tensor name.
    pub amax: BTreeMap<String, f32>,
    pub names: Names,
    pub nodes: Vec<Node>,
    /// New initializers.
    pub inits: BTreeMap<String, Tensor>,
    /// Per original tensor, its versions by type.
    versions: BTreeMap<String, BTreeMap<DType, String>>,
    /// Per original tensor, the name of the version its producer writes.
    native: BTreeMap<String, String>,
    /// Type and shape of every tensor of the new graph written so far.
    infos: BTreeMap<String, TensorInfo>,
    /// Per original activation tensor, its int8 version.
    pub qcache: BTreeMap<String, String>,
    /// Per int8 activation, its version flattened to rank 2.
    pub flat_cache: BTreeMap<String, String>,
    /// Under mixed, the lookup tables [`int8_tables`] will quantize: their
    /// gathers stay f32 here (an fp16 table is not quantized again).
    int8_tables: BTreeSet<String>,
}

impl<'g> Rewriter<'g> {
    fn new(
        g: &'g Graph,
        mode: Precision,
        amax: BTreeMap<String, f32>,
        table_elements: usize,
    ) -> Rewriter<'g> {
        let mut r = Rewriter {
            g,
            mode,
            amax,
            names: Names::of(g),
            int8_tables: if mode == Precision::Mixed {
                int8_table_names(g, table_elements)
            } else {
                BTreeSet::new()
            },
            nodes: Vec::with_capacity(g.nodes.len()),
            inits: BTreeMap::new(),
            versions: BTreeMap::new(),
            native: BTreeMap::new(),
            infos: BTreeMap::new(),
            qcache: BTreeMap::new(),
            flat_cache: BTreeMap::new(),
        };
        let fixed = g
            .inputs
            .iter()
            .map(|(n, i)| (n.clone(), i.clone()))
            .chain(g.initializers.iter().map(|(n, t)| (n.clone(), t.info())));
        for (name, info) in fixed.collect::<Vec<_>>() {
            r.versions
                .entry(name.clone())
                .or_default()
                .insert(info.dtype, name.clone());
            r.native.insert(name.clone(), name.clone());
            r.infos.insert(name, info);
        }
        r
    }

    /// An error of this pass.
    pub fn err(&self, message: String) -> CompileError {
        CompileError::Pass {
            model: self.g.name.clone(),
            pass: "precision".into(),
            message,
        }
    }

    /// The type of original tensor `t` in the input graph.
    pub fn orig_dtype(&self, t: &str) -> Option<DType> {
        self.g.info(t).map(|i| i.dtype)
    }

    /// The value of constant `name` in the new graph, if it is one.
    fn value(&self, name: &str) -> Option<&Tensor> {
        self.inits
            .get(name)
            .or_else(|| self.g.initializers.get(name))
            .or_else(|| self.g.constants.get(name))
    }

    /// Adds an initializer named after `base`; returns its name.
    pub fn add_init(&mut self, base: &str, t: Tensor) -> String {
        let name = self.names.fresh(base);
        self.infos.insert(name.clone(), t.info());
        self.inits.insert(name.clone(), t);
        name
    }

    /// Infers `n` against the new graph's tensors.
    fn infer_new(&self, n: &Node) -> Result<Vec<TensorInfo>, String> {
        let ins: Vec<Option<&TensorInfo>> = n
            .inputs
            .iter()
            .map(|t| {
                if t.is_empty() {
                    None
                } else {
                    self.infos.get(t)
                }
            })
            .collect();
        let consts: Vec<Option<&Tensor>> = n.inputs.iter().map(|t| self.value(t)).collect();
        infer(n, &ins, &consts)
    }

    /// Appends a new node after checking it with inference; returns its
    /// outputs' infos.
    pub fn push(&mut self, n: Node) -> Result<Vec<TensorInfo>, CompileError> {
        let outs = self.infer_new(&n).map_err(|m| {
            self.err(format!(
                "the rewritten node '{}' ({}) is invalid: {m}",
                n.name, n.op_type
            ))
        })?;
        for (o, i) in n.outputs.iter().zip(&outs) {
            self.infos.insert(o.clone(), i.clone());
        }
        self.nodes.push(n);
        Ok(outs)
    }

    /// The name of a version of original tensor `t` of type `want`, making
    /// it if needed: a converted copy for initializers, a `Cast` otherwise.
    pub fn get(&mut self, t: &str, want: DType) -> Result<String, CompileError> {
        if let Some(n) = self.versions.get(t).and_then(|v| v.get(&want)) {
            return Ok(n.clone());
        }
        let native = self
            .native
            .get(t)
            .cloned()
            .ok_or_else(|| self.err(format!("tensor '{t}' is read before it is written")))?;
        let have = self.infos.get(&native).map(|i| i.dtype);
        if !(want.is_float() && have.is_some_and(|d| d.is_float())) {
            return Err(self.err(format!(
                "tensor '{t}' is {have:?}; cannot convert it to {want}"
            )));
        }
        let tag = dtype_precision(want);
        let name = if let Some(init) = self.g.initializers.get(t) {
            let v = f32s(&init.values).unwrap_or_default();
            let conv = Tensor::new(init.shape.clone(), float_values(want, v))
                .map_err(|e| self.err(format!("initializer '{t}': {e}")))?;
            self.add_init(&format!("{t}/{tag}"), conv)
        } else {
            let out = self.names.fresh(&format!("{t}/{tag}"));
            let node = Node {
                name: self.names.fresh(&format!("{t}/cast_{tag}")),
                op_type: "Cast".into(),
                inputs: vec![native],
                outputs: vec![out.clone()],
                attributes: [("to".to_string(), AttrValue::Int(onnx_code(want)))].into(),
            };
            self.push(node)?;
            out
        };
        self.versions
            .entry(t.to_string())
            .or_default()
            .insert(want, name.clone());
        Ok(name)
    }

    /// The name under which the new graph writes original output `o` when
    /// its new type is `dtype`: `o` itself, unless `o` is a graph output
    /// whose type changes (then a fresh name; [`Self::finish_outputs`] casts
    /// it back).
    pub fn out_name(&mut self, o: &str, dtype: DType) -> String {
        if self.g.outputs.iter().any(|x| x == o) && self.orig_dtype(o) != Some(dtype) {
            self.names.fresh(&format!("{o}/{}", dtype_precision(dtype)))
        } else {
            o.to_string()
        }
    }

    /// Records that original tensor `o` is now written as `name`.
    pub fn define(&mut self, o: &str, name: &str) {
        let dtype = self.infos.get(name).map(|i| i.dtype);
        if let Some(d) = dtype {
            self.versions
                .entry(o.to_string())
                .or_default()
                .insert(d, name.to_string());
        }
        self.native.insert(o.to_string(), name.to_string());
    }

    /// The float type `n` should compute in, or `None` to keep its types.
    fn float_target(&self, n: &Node) -> Option<DType> {
        let quant = matches!(n.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear");
        match self.mode {
            Precision::Fp32 | Precision::Fp32Split | Precision::Int8 => None,
            _ if quant => Some(DType::F32),
            Precision::Fp16 => Some(DType::F16),
            Precision::Mixed if MIXED_F32_OPS.contains(&n.op_type.as_str()) => Some(DType::F32),
            Precision::Mixed
                if n.op_type == "Gather"
                    && n.input(0).is_some_and(|t| self.int8_tables.contains(t)) =>
            {
                Some(DType::F32)
            }
            Precision::Mixed if self.extends_f32_chain(n) => Some(DType::F32),
            Precision::Mixed => Some(DType::F16),
        }
    }

    /// Whether `n` is an elementwise op ([`MIXED_EPILOGUE_OPS`]) whose
    /// runtime float inputs are all f32 now (under mixed precision: it
    /// continues the f32 epilogue of an int8 product).
    fn extends_f32_chain(&self, n: &Node) -> bool {
        if !MIXED_EPILOGUE_OPS.contains(&n.op_type.as_str()) {
            return false;
        }
        let mut runtime = n
            .inputs
            .iter()
            .filter(|t| !t.is_empty() && self.value(t).is_none())
            .filter(|t| self.orig_dtype(t).is_some_and(|d| d.is_float()))
            .peekable();
        runtime.peek().is_some()
            && runtime.all(|t| {
                self.native
                    .get(t.as_str())
                    .and_then(|name| self.infos.get(name))
                    .is_some_and(|i| i.dtype == DType::F32)
            })
    }

    fn visit(&mut self, n: &Node) -> Result<(), CompileError> {
        if matches!(self.mode, Precision::Int8 | Precision::Mixed) {
            if let Some(plan) = super::quantize::plan(self, n) {
                if self.emit_int8(n, plan)? {
                    return Ok(());
                }
            }
        }
        let target = self.float_target(n);
        let mut tries = vec![target];
        if target == Some(DType::F16) {
            tries.push(Some(DType::F32));
        }
        if target.is_some() {
            tries.push(None);
        }
        let mut last_err = String::new();
        for want in tries {
            let mut m = n.clone();
            for (k, t) in n.inputs.iter().enumerate() {
                if t.is_empty() {
                    continue;
                }
                let orig = self.orig_dtype(t).ok_or_else(|| {
                    self.err(format!("node '{}': input '{t}' has no type", n.name))
                })?;
                let to = match want {
                    Some(w) if orig.is_float() && !keeps_type(&n.op_type, k) => w,
                    _ => orig,
                };
                m.inputs[k] = self.get(t, to)?;
            }
            if let (Some(w), "Cast") = (want, n.op_type.as_str()) {
                let to = n.attr_int("to", 1).unwrap_or(1);
                if to == 1 || to == 10 {
                    m.attributes
                        .insert("to".into(), AttrValue::Int(onnx_code(w)));
                }
            }
            let outs = match self.infer_new(&m) {
                Ok(o) => o,
                Err(e) => {
                    last_err = e;
                    continue;
                }
            };
            for (k, (o, info)) in n.outputs.iter().zip(&outs).enumerate() {
                let name = self.out_name(o, info.dtype);
                m.outputs[k] = name;
            }
            let names = m.outputs.clone();
            self.push(m)?;
            for (o, name) in n.outputs.iter().zip(&names) {
                self.define(o, name);
            }
            return Ok(());
        }
        Err(self.err(format!(
            "node '{}' ({}) cannot be rewritten: {last_err}",
            n.name, n.op_type
        )))
    }

    /// Casts graph outputs whose type changed back to their declared type,
    /// under their own names.
    fn finish_outputs(&mut self) -> Result<(), CompileError> {
        for o in self.g.outputs.clone() {
            let Some(d0) = self.orig_dtype(&o) else {
                continue;
            };
            if self
                .versions
                .get(&o)
                .is_some_and(|v| v.get(&d0) == Some(&o))
            {
                continue;
            }
            let native = self
                .native
                .get(&o)
                .cloned()
                .ok_or_else(|| self.err(format!("graph output '{o}' is never written")))?;
            let tag = dtype_precision(d0);
            let node = Node {
                name: self.names.fresh(&format!("{o}/cast_{tag}")),
                op_type: "Cast".into(),
                inputs: vec![native],
                outputs: vec![o.clone()],
                attributes: [("to".to_string(), AttrValue::Int(onnx_code(d0)))].into(),
            };
            self.push(node)?;
            self.define(&o, &o);
        }
        Ok(())
    }

    fn into_parts(self) -> Parts {
        let mut used: BTreeSet<&str> = self.g.outputs.iter().map(String::as_str).collect();
        for n in &self.nodes {
            used.extend(n.inputs.iter().map(String::as_str));
        }
        let mut initializers: BTreeMap<String, Tensor> = self
            .g
            .initializers
            .iter()
            .filter(|(k, _)| used.contains(k.as_str()))
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        initializers.extend(self.inits);
        Parts {
            name: self.g.name.clone(),
            source: self.g.source.clone(),
            inputs: self.g.inputs.clone(),
            outputs: self.g.outputs.clone(),
            initializers,
            nodes: self.nodes,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::testutil::*;
    use super::*;

    pub(crate) const MLP: &str = r#"Graph(
      name: "mlp",
      inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 16])],
      outputs: [ValueInfo(name: "y", dtype: F32)],
      initializers: [
        Initializer(name: "w1", dtype: F32, shape: [16, 32], data: Random(seed: 1, dist: Normal(mean: 0.0, std: 0.25))),
        Initializer(name: "b1", dtype: F32, shape: [32], data: Random(seed: 2, dist: Uniform(low: -0.1, high: 0.1))),
        Initializer(name: "w2", dtype: F32, shape: [8, 32], data: Random(seed: 3, dist: Normal(mean: 0.0, std: 0.2))),
        Initializer(name: "b2", dtype: F32, shape: [8], data: Random(seed: 4, dist: Uniform(low: -0.1, high: 0.1))),
      ],
      nodes: [
        Node(name: "fc1", op_type: "MatMul", inputs: ["x", "w1"], outputs: ["h"]),
        Node(name: "bias1", op_type: "Add", inputs: ["h", "b1"], outputs: ["hb"]),
        Node(name: "relu1", op_type: "Relu", inputs: ["hb"], outputs: ["a"]),
        Node(name: "fc2", op_type: "Gemm", inputs: ["a", "w2", "b2"], outputs: ["y"], attributes: {"transB": Int(1)}),
      ],
    )"#;

    #[test]
    fn int8_rounds_lookup_tables_to_fp16_values() {
        let g = parse(
            r#"Graph(name: "emb",
              inputs: [ValueInfo(name: "ids", dtype: I32, shape: [3])],
              outputs: [ValueInfo(name: "y", dtype: F32)],
              initializers: [Initializer(name: "table", dtype: F32, shape: [1001, 4],
                data: Random(seed: 1, dist: Uniform(low: -1.0, high: 1.0)))],
              nodes: [Node(name: "lookup", op_type: "Gather", inputs: ["table", "ids"], outputs: ["y"])],
            )"#,
        );
        let before = g.initializers["table"].values.clone();
        let out = apply_precision(&g, Precision::Int8, &[]).expect("int8");
        let after = &out.graph.initializers["table"].values;
        assert_eq!(after.dtype(), DType::F32);
        let mut changed = 0;
        for i in 0..before.len() {
            let (b, a) = (before.get_f64(i) as f32, after.get_f64(i) as f32);
            assert_eq!(a, half::f16::from_f32(b).to_f32());
            changed += usize::from(a != b);
        }
        assert!(changed > 0, "random f32 values are not all fp16 values");
        assert_eq!(out.node_precision["lookup"], "fp16");
        // fp32 leaves the table alone.
        let out = apply_precision(&g, Precision::Fp32, &[]).expect("fp32");
        assert_eq!(out.graph.initializers["table"].values, before);
    }

    #[test]
    fn mixed_stores_large_lookup_tables_in_int8_too() {
        let g = parse(
            r#"Graph(name: "emb",
              inputs: [ValueInfo(name: "ids", dtype: I32, shape: [1, 3])],
              outputs: [ValueInfo(name: "y", dtype: F32)],
              initializers: [
                Initializer(name: "table", dtype: F32, shape: [1001, 24],
                  data: Random(seed: 1, dist: Uniform(low: -1.0, high: 1.0))),
                Initializer(name: "pos", dtype: F32, shape: [3, 24],
                  data: Random(seed: 2, dist: Uniform(low: -1.0, high: 1.0)))],
              nodes: [
                Node(name: "lookup", op_type: "Gather", inputs: ["table", "ids"], outputs: ["w"]),
                Node(name: "add", op_type: "Add", inputs: ["w", "pos"], outputs: ["y"])],
            )"#,
        );
        // Below the threshold: an fp16 table, its gather and the add fp16.
        let o = rewrite(&g, Precision::Mixed, &[], INT8_TABLE_ELEMENTS).expect("mixed");
        assert_eq!(o.node_precision["lookup"], "fp16");
        assert_eq!(o.node_precision["add"], "fp16");
        let table = &o.graph.nodes[0].inputs[0];
        assert_eq!(o.graph.initializers[table].dtype(), DType::F16);
        // At it: the int8 rewrite's gather and dequantization, and the add
        // after them in f32 (its runtime input is f32), as under int8.
        let o = rewrite(&g, Precision::Mixed, &[], 1).expect("mixed");
        assert_eq!(o.node_precision["lookup"], "int8");
        assert_eq!(o.node_precision["add"], "fp32");
        assert_eq!(o.graph.initializers["table/q"].dtype(), DType::I8);
        let ops: Vec<&str> = o.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Gather", "DequantizeLinear", "Add"]);
        assert_lowers_exactly(&o.graph, &lpu_graph::random_inputs(&o.graph, 2), "mixed");
    }

    /// A lookup of 3 runtime indices in a 1001 x 24 f32 table.
    const LOOKUP: &str = r#"Graph(name: "emb",
      inputs: [ValueInfo(name: "ids", dtype: I32, shape: [1, 3])],
      outputs: [ValueInfo(name: "y", dtype: F32)],
      initializers: [Initializer(name: "table", dtype: F32, shape: [1001, 24],
        data: Random(seed: 1, dist: Uniform(low: -1.0, high: 1.0)))],
      nodes: [Node(name: "lookup", op_type: "Gather", inputs: ["table", "ids"], outputs: ["y"])],
    )"#;

    #[test]
    fn int8_keeps_small_tables_f32_in_the_graph_and_fp16_in_sram() {
        // The table's values are rounded to fp16 (its type stays f32); the
        // lowering then stores it in fp16 and gathers fp16 vectors, which
        // it converts back to f32 exactly.
        let g = parse(LOOKUP);
        let o = rewrite(&g, Precision::Int8, &[], INT8_TABLE_ELEMENTS).expect("int8");
        assert_eq!(o.node_precision["lookup"], "fp16");
        let table = &o.graph.nodes[0].inputs[0];
        assert_eq!(o.graph.initializers[table].dtype(), DType::F32);
        let chip = lpu_isa::ChipConfig::preset("tiny").expect("preset");
        let p = crate::compile(&o.graph, &chip).expect("compiles").program;
        let gathers: Vec<DType> = p
            .queues
            .iter()
            .flat_map(|q| &q.slots)
            .filter(|s| s.instr.op == lpu_isa::Opcode::Gather)
            .map(|s| s.instr.ty)
            .collect();
        assert!(!gathers.is_empty() && gathers.iter().all(|t| *t == DType::F16));
        assert_lowers_exactly(&o.graph, &lpu_graph::random_inputs(&o.graph, 3), "int8");
    }

    /// Compiles `g` for `tiny`, simulates it on `inputs` and requires its
    /// outputs to equal the interpreter's bit for bit (`what` names the
    /// case in a failure).
    fn assert_lowers_exactly(g: &Graph, inputs: &BTreeMap<String, Tensor>, what: &str) {
        let chip = lpu_isa::ChipConfig::preset("tiny").expect("preset");
        let p = crate::compile(g, &chip).expect("compiles").program;
        let run = lpu_sim::simulate(&p, inputs, &Default::default()).expect("runs");
        assert!(run.hazard.is_none(), "{what}: {:?}", run.hazard);
        let want = lpu_graph::interpret(g, inputs).expect("interprets");
        let c = lpu_sim::check::compare(&run.outputs, &want);
        assert!(c.passed && c.max_abs_err == 0.0, "{what}: {c:?}");
    }

    #[test]
    fn large_lookup_tables_become_int8_gathers_then_dequantize() {
        let g = parse(LOOKUP);
        // Below the threshold (the example-size default): unchanged.
        let (same, none) = int8_tables(g.clone(), INT8_TABLE_ELEMENTS).expect("rewrite");
        assert!(none.is_empty());
        assert_eq!(same.nodes.len(), 1);
        let (q, gathers) = int8_tables(g.clone(), 1).expect("rewrite");
        assert_eq!(gathers, ["lookup"]);
        let ops: Vec<&str> = q.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Gather", "DequantizeLinear"]);
        assert!(!q.initializers.contains_key("table"));
        assert_eq!(q.initializers["table/q"].dtype(), DType::I8);
        assert_eq!(q.outputs, ["y"]);
        // Per-column int8: within half a step of the f32 table.
        let inputs = lpu_graph::random_inputs(&q, 2);
        let want = lpu_graph::interpret(&g, &inputs).expect("f32")["y"].clone();
        let got = lpu_graph::interpret(&q, &inputs).expect("int8")["y"].clone();
        for i in 0..want.len() {
            let (w, x) = (want.values.get_f64(i), got.values.get_f64(i));
            assert!((w - x).abs() <= 0.5 / 127.0 + 1e-6, "{w} vs {x}");
        }
        // The lowering (per-bank gathers of int8 entries, then the scale
        // row) is exact for tables of 63, 128 and 129 vectors per column
        // tile on `tiny`'s 16 lanes, with the first, the last and a
        // negative index.
        for rows in [1001_i32, 2048, 2049] {
            let g = parse(&format!(
                r#"Graph(name: "emb",
                  inputs: [ValueInfo(name: "ids", dtype: I32, shape: [1, 4])],
                  outputs: [ValueInfo(name: "y", dtype: F32)],
                  initializers: [Initializer(name: "table", dtype: F32, shape: [{rows}, 24],
                    data: Random(seed: 1, dist: Uniform(low: -1.0, high: 1.0)))],
                  nodes: [Node(name: "lookup", op_type: "Gather", inputs: ["table", "ids"], outputs: ["y"])],
                )"#
            ));
            let (q, _) = int8_tables(g, 1).expect("rewrite");
            let last = rows - 1;
            let ids =
                Tensor::new(vec![1, 4], lpu_graph::Values::I32(vec![0, last, -1, 17])).unwrap();
            let inputs = BTreeMap::from([("ids".to_string(), ids)]);
            assert_lowers_exactly(&q, &inputs, &format!("{rows} rows"));
        }
    }

    #[test]
    fn names_parse_and_print() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!("INT8".parse::<Precision>(), Ok(Precision::Int8));
        assert!("bf16"
            .parse::<Precision>()
            .unwrap_err()
            .contains("int8, fp16, fp32, fp32-split or mixed"));
    }

    #[test]
    fn fp32_is_unchanged() {
        let g = parse(MLP);
        let o = apply_precision(&g, Precision::Fp32, &[]).unwrap();
        assert_eq!(o.graph.nodes, g.nodes);
        assert!(o.node_precision.values().all(|p| p == "fp32"));
    }

    #[test]
    fn fp16_casts_inputs_and_outputs_and_converts_weights() {
        let g = parse(MLP);
        let o = apply_precision(&g, Precision::Fp16, &[]).unwrap();
        let h = &o.graph;
        assert_eq!(ops(h), ["Cast", "MatMul", "Add", "Relu", "Gemm", "Cast"]);
        assert_eq!(h.nodes[0].name, "x/cast_fp16");
        assert_eq!(h.nodes[5].name, "y/cast_fp32");
        assert_eq!(h.nodes[5].outputs, ["y"]);
        assert_eq!(h.info("y").unwrap().dtype, DType::F32);
        assert_eq!(h.initializers["w1/fp16"].dtype(), DType::F16);
        assert!(
            !h.initializers.contains_key("w1"),
            "f32 weights are dropped"
        );
        assert_eq!(o.node_precision["fc1"], "fp16");
        assert_eq!(o.node_precision["y/cast_fp32"], "fp32");
        // Close to the f32 graph.
        assert_same_outputs(&g, h, 2e-2);
    }

    #[test]
    fn mixed_keeps_softmax_in_f32() {
        let g = parse(
            r#"Graph(
              name: "attn",
              inputs: [ValueInfo(name: "q", dtype: F32, shape: [4, 8]), ValueInfo(name: "k", dtype: F32, shape: [8, 4])],
              outputs: [ValueInfo(name: "y")],
              nodes: [
                Node(name: "scores", op_type: "MatMul", inputs: ["q", "k"], outputs: ["s"]),
                Node(name: "sm", op_type: "Softmax", inputs: ["s"], outputs: ["p"], attributes: {"axis": Int(-1)}),
                Node(name: "r", op_type: "Relu", inputs: ["p"], outputs: ["y"]),
              ],
            )"#,
        );
        let o = apply_precision(&g, Precision::Mixed, &[]).unwrap();
        assert_eq!(
            o.node_precision["scores"], "fp16",
            "act x act stays fp16 in mixed"
        );
        assert_eq!(o.node_precision["sm"], "fp32");
        assert_eq!(o.node_precision["r"], "fp32", "continues the f32 softmax");
        assert_same_outputs(&g, &o.graph, 2e-2);
    }
}
