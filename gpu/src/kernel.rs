//! The front end: a graph becomes the list of kernels a production GPU
//! runtime would launch for it. Nothing here knows a particular GPU; the
//! timing lives in [`crate::model`].
//!
//! Each node is classified by its ONNX op type and the inferred shapes:
//!
//! | op types | kernel |
//! |---|---|
//! | `MatMul`, `MatMulInteger`, `Gemm` | GEMM (batched when both operands carry batch dims) |
//! | `Conv`, `ConvInteger` | implicit GEMM: M = N x out spatial, N = Cout / group, K = Cin / group x kernel area, `group` GEMMs; grouped convolutions with `Cout / group < 8` (depthwise) run on CUDA cores |
//! | `Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`, `Identity` | none (a view) |
//! | elementwise (`Add`, `Relu`, `QuantizeLinear`, `BatchNormalization`, ...) and `Transpose` | fused into the producing kernel's epilogue when it is that kernel's only consumer, else its own memory-bound kernel |
//! | any node whose inputs are all constant | none (folded when the engine is built) |
//! | `Gather`, `Slice` | a memory-bound kernel reading only what it outputs |
//! | everything else (pooling, `Softmax`, `LayerNormalization`, `Gather`, `Transpose`, `Concat`, unknown ops) | one memory-bound kernel: read the inputs, write the outputs |
//!
//! Element types follow the graph: int8 operands run on int8 tensor
//! cores, fp16 on fp16 tensor cores, fp32 on TF32 tensor cores (as TensorRT
//! does by default) or on the CUDA cores ([`F32Math`]).

use lpu_graph::{AttrValue, DType, Graph, Node};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The arithmetic a kernel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// FP16/BF16 tensor cores.
    Fp16,
    /// FP8 tensor cores.
    Fp8,
    /// INT8 tensor cores.
    Int8,
    /// TF32 tensor cores.
    Tf32,
    /// FP32 (or int32) on the CUDA cores.
    Fp32,
}

impl Precision {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp16 => "fp16",
            Precision::Fp8 => "fp8",
            Precision::Int8 => "int8",
            Precision::Tf32 => "tf32",
            Precision::Fp32 => "fp32",
        }
    }
}

/// How fp32 matrix products run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum F32Math {
    /// TF32 tensor cores (TensorRT's default on Ampere and later).
    #[default]
    Tf32,
    /// Strict fp32 on the CUDA cores.
    Fp32,
}

/// The dimensions of a GEMM kernel (one of `batch` independent products).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GemmDims {
    /// Output rows.
    pub m: u64,
    /// Output columns.
    pub n: u64,
    /// Reduction length.
    pub k: u64,
    /// Independent products (batched GEMM, convolution groups).
    pub batch: u64,
}

/// What a kernel's time is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelKind {
    /// A tensor-core GEMM (matrix product, implicit-GEMM convolution).
    Gemm,
    /// A direct convolution on the CUDA cores (depthwise and small groups).
    DirectConv,
    /// A memory-bound kernel: elementwise, reductions, data movement.
    Memory,
}

/// One kernel launch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Kernel {
    /// Name of the kernel's main node.
    pub name: String,
    /// Op type of the main node.
    pub op: String,
    /// Every node the kernel executes, main node first (fused epilogues after).
    pub nodes: Vec<String>,
    /// What bounds it.
    pub kind: KernelKind,
    /// Arithmetic used for its flops.
    pub precision: Precision,
    /// GEMM dimensions, for [`KernelKind::Gemm`].
    pub gemm: Option<GemmDims>,
    /// Floating-point (or integer) operations, multiply-add = 2.
    pub flops: f64,
    /// Bytes of constants (weights) read.
    pub weight_bytes: f64,
    /// Bytes of activations read.
    pub input_bytes: f64,
    /// Bytes written.
    pub output_bytes: f64,
    /// Size of the largest single activation (input or output) in bytes,
    /// to decide whether it stays in L2.
    pub largest_activation_bytes: f64,
}

impl Kernel {
    /// A GEMM of `batch` products `[m, k] x [k, n]`, element size `elem`
    /// bytes for inputs and `out_elem` for the output, weights read once
    /// when `b_is_weight`.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        name: &str,
        op: &str,
        dims: GemmDims,
        precision: Precision,
        elem: f64,
        out_elem: f64,
        b_is_weight: bool,
    ) -> Kernel {
        let GemmDims { m, n, k, batch } = dims;
        let (m, n, k, b) = (m as f64, n as f64, k as f64, batch as f64);
        let a_bytes = b * m * k * elem;
        let b_bytes = b * k * n * elem;
        let out = b * m * n * out_elem;
        Kernel {
            name: name.into(),
            op: op.into(),
            nodes: vec![name.into()],
            kind: KernelKind::Gemm,
            precision,
            gemm: Some(dims),
            flops: 2.0 * b * m * n * k,
            weight_bytes: if b_is_weight { b_bytes } else { 0.0 },
            input_bytes: a_bytes + if b_is_weight { 0.0 } else { b_bytes },
            output_bytes: out,
            largest_activation_bytes: a_bytes.max(out),
        }
    }

    /// A memory-bound kernel reading `input_bytes` of activations and
    /// `weight_bytes` of constants and writing `output_bytes`, with `flops`
    /// of CUDA-core work.
    pub fn memory(
        name: &str,
        op: &str,
        input_bytes: f64,
        weight_bytes: f64,
        output_bytes: f64,
        flops: f64,
    ) -> Kernel {
        Kernel {
            name: name.into(),
            op: op.into(),
            nodes: vec![name.into()],
            kind: KernelKind::Memory,
            precision: Precision::Fp32,
            gemm: None,
            flops,
            weight_bytes,
            input_bytes,
            output_bytes,
            largest_activation_bytes: input_bytes.max(output_bytes),
        }
    }

    /// Fuses an elementwise node into this kernel's epilogue: it reads
    /// `extra_input_bytes` more and its output replaces the kernel's output.
    pub fn fuse(
        &mut self,
        node: &str,
        extra_input_bytes: f64,
        extra_weight_bytes: f64,
        output_bytes: f64,
        flops: f64,
    ) {
        self.nodes.push(node.into());
        self.input_bytes += extra_input_bytes;
        self.weight_bytes += extra_weight_bytes;
        self.output_bytes = output_bytes;
        self.flops += flops;
        self.largest_activation_bytes = self.largest_activation_bytes.max(output_bytes);
    }
}

/// Op types that are views: no kernel at all.
pub const FREE_OPS: &[&str] = &[
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Dropout",
];

/// Elementwise op types that fuse into a producer's epilogue.
pub const ELEMENTWISE_OPS: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "Erf",
    "Exp",
    "Sqrt",
    "Neg",
    "Abs",
    "Clip",
    "Cast",
    "QuantizeLinear",
    "DequantizeLinear",
    "BatchNormalization",
    "HardSigmoid",
    "HardSwish",
    "Pow",
    "Max",
    "Min",
    "Where",
];

/// Layout changes that fuse into a producer's epilogue (it writes the new
/// layout) when they are its only consumer.
pub const LAYOUT_OPS: &[&str] = &["Transpose"];

/// Ops that read only the part of their data input that they output.
const GATHER_OPS: &[&str] = &["Gather", "GatherElements", "Slice"];

const GEMM_OPS: &[&str] = &["MatMul", "MatMulInteger", "Gemm"];
const CONV_OPS: &[&str] = &["Conv", "ConvInteger"];

fn bytes_of(g: &Graph, t: &str) -> f64 {
    g.info(t)
        .map(|i| i.len() as f64 * i.dtype.bytes() as f64)
        .unwrap_or(0.0)
}

fn elements(g: &Graph, t: &str) -> f64 {
    g.info(t).map(|i| i.len() as f64).unwrap_or(0.0)
}

fn shape<'g>(g: &'g Graph, t: Option<&str>) -> Option<&'g [usize]> {
    t.and_then(|t| g.info(t)).map(|i| i.shape.as_slice())
}

fn attr_int(n: &Node, name: &str, default: i64) -> i64 {
    match n.attributes.get(name) {
        Some(AttrValue::Int(v)) => *v,
        _ => default,
    }
}

fn precision_of(d: DType, f32_math: F32Math) -> Precision {
    match d {
        DType::I8 => Precision::Int8,
        DType::F16 => Precision::Fp16,
        DType::F32 => match f32_math {
            F32Math::Tf32 => Precision::Tf32,
            F32Math::Fp32 => Precision::Fp32,
        },
        DType::I32 => Precision::Fp32,
    }
}

/// Element size the GPU would use for a tensor-core precision.
fn elem_bytes(p: Precision) -> f64 {
    match p {
        Precision::Int8 | Precision::Fp8 => 1.0,
        Precision::Fp16 => 2.0,
        Precision::Tf32 | Precision::Fp32 => 4.0,
    }
}

/// The kernel of one node on its own, or `None` for a view.
fn node_kernel(g: &Graph, n: &Node, f32_math: F32Math, consts: &BTreeSet<&str>) -> Option<Kernel> {
    let op = n.op_type.as_str();
    if FREE_OPS.contains(&op) {
        return None;
    }
    let is_const = |t: &str| consts.contains(t);
    let out_bytes: f64 = n.outputs.iter().map(|o| bytes_of(g, o)).sum();
    if GEMM_OPS.contains(&op) {
        if let (Some(a), Some(b)) = (shape(g, n.input(0)), shape(g, n.input(1))) {
            if !a.is_empty() && !b.is_empty() {
                let dt = g
                    .info(n.input(0).unwrap_or_default())
                    .map(|i| i.dtype)
                    .unwrap_or(DType::F32);
                let p = precision_of(dt, f32_math);
                let (ta, tb) = if op == "Gemm" {
                    (attr_int(n, "transA", 0) != 0, attr_int(n, "transB", 0) != 0)
                } else {
                    (false, false)
                };
                let a2: Vec<usize> = if a.len() == 1 {
                    vec![1, a[0]]
                } else {
                    a.to_vec()
                };
                let b2: Vec<usize> = if b.len() == 1 {
                    vec![b[0], 1]
                } else {
                    b.to_vec()
                };
                let (ar, ac) = (a2[a2.len() - 2] as u64, a2[a2.len() - 1] as u64);
                let (br, bc) = (b2[b2.len() - 2] as u64, b2[b2.len() - 1] as u64);
                let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
                let nn = if tb { br } else { bc };
                let a_batch: u64 = a2[..a2.len() - 2].iter().map(|&d| d as u64).product();
                let b_batch: u64 = b2[..b2.len() - 2].iter().map(|&d| d as u64).product();
                let b_const = n.input(1).is_some_and(is_const);
                // A batched activation times one shared matrix is a single GEMM
                // with the batch folded into M.
                let dims = if b_batch <= 1 {
                    GemmDims {
                        m: m * a_batch.max(1),
                        n: nn,
                        k,
                        batch: 1,
                    }
                } else {
                    GemmDims {
                        m,
                        n: nn,
                        k,
                        batch: a_batch.max(b_batch),
                    }
                };
                let e = elem_bytes(p);
                let out_e = g
                    .info(n.outputs.first().map_or("", String::as_str))
                    .map(|i| i.dtype.bytes() as f64)
                    .unwrap_or(e)
                    .min(4.0);
                let mut kern = Kernel::gemm(&n.name, op, dims, p, e, out_e, b_const);
                // Bias (Gemm's C) and integer zero points read with the product.
                for extra in n.inputs.iter().skip(2).filter(|t| !t.is_empty()) {
                    if is_const(extra) {
                        kern.weight_bytes += bytes_of(g, extra);
                    } else {
                        kern.input_bytes += bytes_of(g, extra);
                    }
                }
                kern.output_bytes = out_bytes;
                return Some(kern);
            }
        }
    }
    if CONV_OPS.contains(&op) {
        let x = shape(g, n.input(0));
        let w = shape(g, n.input(1));
        let y = shape(g, n.outputs.first().map(String::as_str));
        if let (Some(x), Some(w), Some(y)) = (x, w, y) {
            if x.len() >= 3 && w.len() == x.len() && y.len() == x.len() {
                let dt = g
                    .info(n.input(0).unwrap_or_default())
                    .map(|i| i.dtype)
                    .unwrap_or(DType::F32);
                let p = precision_of(dt, f32_math);
                let group = attr_int(n, "group", 1).max(1) as u64;
                let batch = x[0] as u64;
                let cin = x[1] as u64;
                let cout = y[1] as u64;
                let out_spatial: u64 = y[2..].iter().map(|&d| d as u64).product();
                let kernel_area: u64 = w[2..].iter().map(|&d| d as u64).product();
                let m = batch * out_spatial;
                let per_group_n = (cout / group).max(1);
                let k = (cin / group).max(1) * kernel_area;
                let dims = GemmDims {
                    m,
                    n: per_group_n,
                    k,
                    batch: group,
                };
                let e = elem_bytes(p);
                let mut kern = Kernel::gemm(&n.name, op, dims, p, e, e, true);
                // The activation is read once (implicit GEMM gathers its
                // patches from L2), not kernel_area times.
                kern.input_bytes = bytes_of(g, n.input(0).unwrap_or_default());
                kern.weight_bytes = n
                    .inputs
                    .iter()
                    .skip(1)
                    .filter(|t| !t.is_empty())
                    .map(|t| bytes_of(g, t))
                    .sum();
                kern.output_bytes = out_bytes;
                kern.largest_activation_bytes = kern.input_bytes.max(out_bytes);
                if group > 1 && per_group_n < 8 {
                    kern.kind = KernelKind::DirectConv;
                    kern.gemm = None;
                    kern.precision = Precision::Fp32;
                }
                return Some(kern);
            }
        }
    }
    let mut input_bytes = 0.0;
    let mut weight_bytes = 0.0;
    for t in n.inputs.iter().filter(|t| !t.is_empty()) {
        if is_const(t) {
            weight_bytes += bytes_of(g, t);
        } else {
            input_bytes += bytes_of(g, t);
        }
    }
    if GATHER_OPS.contains(&op) {
        // Only the selected rows (or the slice) of the data are read, plus
        // the indices.
        let indices: f64 = n
            .inputs
            .iter()
            .skip(1)
            .filter(|t| !t.is_empty())
            .map(|t| bytes_of(g, t))
            .sum();
        if n.input(0).is_some_and(is_const) {
            weight_bytes = out_bytes;
            input_bytes = indices;
        } else {
            input_bytes = out_bytes + indices;
            weight_bytes = 0.0;
        }
    }
    let out_elems: f64 = n.outputs.iter().map(|o| elements(g, o)).sum();
    let flops = match op {
        "Softmax" | "LogSoftmax" => 5.0 * out_elems,
        "LayerNormalization" | "BatchNormalization" | "InstanceNormalization" => 8.0 * out_elems,
        "MaxPool" | "AveragePool" => {
            let area: i64 = match n.attributes.get("kernel_shape") {
                Some(AttrValue::Ints(v)) => v.iter().product(),
                _ => 1,
            };
            out_elems * area.max(1) as f64
        }
        "GlobalAveragePool" | "ReduceMean" | "ReduceSum" => {
            n.input(0).map(|t| elements(g, t)).unwrap_or(0.0)
        }
        "Transpose" | "Concat" | "Gather" | "Slice" | "Split" | "Pad" | "Expand" | "Tile" => 0.0,
        _ => out_elems,
    };
    Some(Kernel::memory(
        &n.name,
        op,
        input_bytes,
        weight_bytes,
        out_bytes,
        flops,
    ))
}

/// The kernels of a graph, after the optimisations a production runtime
/// does: nodes whose inputs are all constant are folded at build time; an
/// elementwise node or a `Transpose` whose first non-constant input is
/// produced by a kernel of which it is the only consumer joins that
/// kernel's epilogue.
pub fn kernels(g: &Graph, f32_math: F32Math) -> Vec<Kernel> {
    let mut out: Vec<Kernel> = Vec::new();
    // Tensor name -> index of the kernel that produced it (views pass it on).
    let mut producer: BTreeMap<&str, usize> = BTreeMap::new();
    let mut consts: BTreeSet<&str> = g.initializers.keys().map(String::as_str).collect();
    let consumers = |t: &str| {
        g.nodes
            .iter()
            .filter(|n| n.inputs.iter().any(|i| i == t))
            .count()
    };
    for n in &g.nodes {
        let inputs: Vec<&str> = n
            .inputs
            .iter()
            .map(String::as_str)
            .filter(|t| !t.is_empty())
            .collect();
        if !inputs.is_empty() && inputs.iter().all(|t| consts.contains(t)) {
            consts.extend(n.outputs.iter().map(String::as_str));
            continue;
        }
        let op = n.op_type.as_str();
        if FREE_OPS.contains(&op) {
            if let (Some(i), Some(o)) = (n.input(0), n.outputs.first()) {
                if let Some(&k) = producer.get(i) {
                    producer.insert(o.as_str(), k);
                }
            }
            continue;
        }
        if ELEMENTWISE_OPS.contains(&op) || LAYOUT_OPS.contains(&op) {
            // The activation operand this node would extend.
            let act = n
                .inputs
                .iter()
                .filter(|t| !t.is_empty() && !consts.contains(t.as_str()))
                .find(|t| producer.contains_key(t.as_str()));
            if let Some(t) = act {
                let k = producer[t.as_str()];
                if consumers(t) == 1 && g.outputs.iter().all(|o| o != t) {
                    let mut extra_in = 0.0;
                    let mut extra_w = 0.0;
                    for i in n.inputs.iter().filter(|i| !i.is_empty() && *i != t) {
                        if consts.contains(i.as_str()) {
                            extra_w += bytes_of(g, i);
                        } else {
                            extra_in += bytes_of(g, i);
                        }
                    }
                    let ob: f64 = n.outputs.iter().map(|o| bytes_of(g, o)).sum();
                    let fl: f64 = if LAYOUT_OPS.contains(&op) {
                        0.0
                    } else {
                        n.outputs.iter().map(|o| elements(g, o)).sum()
                    };
                    out[k].fuse(&n.name, extra_in, extra_w, ob, fl);
                    for o in &n.outputs {
                        producer.insert(o.as_str(), k);
                    }
                    continue;
                }
            }
        }
        if let Some(k) = node_kernel(g, n, f32_math, &consts) {
            out.push(k);
            let idx = out.len() - 1;
            for o in &n.outputs {
                producer.insert(o.as_str(), idx);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(text: &str) -> Graph {
        lpu_graph::parse_graph(text, "<test>", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const MLP: &str = r#"Graph(
  name: "t",
  inputs: [ValueInfo(name: "x", dtype: F32, shape: [4, 64])],
  outputs: [ValueInfo(name: "y", dtype: F32, shape: [4, 32])],
  initializers: [
    Initializer(name: "w", dtype: F32, shape: [64, 32], data: Random(seed: 1, dist: Uniform(low: -1.0, high: 1.0))),
    Initializer(name: "b", dtype: F32, shape: [32], data: Random(seed: 2, dist: Uniform(low: -1.0, high: 1.0))),
  ],
  nodes: [
    Node(name: "mm", op_type: "MatMul", inputs: ["x", "w"], outputs: ["h"]),
    Node(name: "bias", op_type: "Add", inputs: ["h", "b"], outputs: ["hb"]),
    Node(name: "relu", op_type: "Relu", inputs: ["hb"], outputs: ["y0"]),
    Node(name: "id", op_type: "Identity", inputs: ["y0"], outputs: ["y"]),
  ],
)"#;

    #[test]
    fn gemm_with_fused_epilogue() {
        let g = graph(MLP);
        let ks = kernels(&g, F32Math::Tf32);
        assert_eq!(ks.len(), 1, "{ks:?}");
        let k = &ks[0];
        assert_eq!(k.nodes, vec!["mm", "bias", "relu"]);
        assert_eq!(
            k.gemm,
            Some(GemmDims {
                m: 4,
                n: 32,
                k: 64,
                batch: 1
            })
        );
        assert_eq!(k.precision, Precision::Tf32);
        assert_eq!(k.flops, 2.0 * 4.0 * 32.0 * 64.0 + 2.0 * 4.0 * 32.0);
        assert_eq!(k.weight_bytes, 64.0 * 32.0 * 4.0 + 32.0 * 4.0);
        assert_eq!(k.output_bytes, 4.0 * 32.0 * 4.0);
        let strict = kernels(&g, F32Math::Fp32);
        assert_eq!(strict[0].precision, Precision::Fp32);
    }

    #[test]
    fn a_shared_activation_is_not_fused() {
        let text = MLP.replace(
            r#"Node(name: "relu", op_type: "Relu", inputs: ["hb"], outputs: ["y0"]),"#,
            r#"Node(name: "relu", op_type: "Relu", inputs: ["hb"], outputs: ["r"]),
    Node(name: "sum", op_type: "Add", inputs: ["r", "hb"], outputs: ["y0"]),"#,
        );
        let g = graph(&text);
        let ks = kernels(&g, F32Math::Tf32);
        // hb feeds relu and sum, so the GEMM keeps only the bias; relu
        // starts its own kernel and sum joins it.
        let names: Vec<Vec<String>> = ks.iter().map(|k| k.nodes.clone()).collect();
        assert_eq!(
            names,
            vec![
                vec!["mm".to_string(), "bias".into()],
                vec!["relu".into(), "sum".into()]
            ]
        );
        assert_eq!(ks[1].kind, KernelKind::Memory);
    }

    const CONV: &str = r#"Graph(
  name: "c",
  inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 3, 8, 8])],
  outputs: [ValueInfo(name: "y", dtype: F32, shape: [2, 6, 4, 4])],
  initializers: [
    Initializer(name: "w", dtype: F32, shape: [6, 3, 3, 3], data: Random(seed: 1, dist: Uniform(low: -1.0, high: 1.0))),
    Initializer(name: "wd", dtype: F32, shape: [6, 1, 3, 3], data: Random(seed: 2, dist: Uniform(low: -1.0, high: 1.0))),
  ],
  nodes: [
    Node(name: "conv", op_type: "Conv", inputs: ["x", "w"], outputs: ["c"], attributes: {"pads": Ints([1, 1, 1, 1]), "strides": Ints([2, 2])}),
    Node(name: "relu", op_type: "Relu", inputs: ["c"], outputs: ["r"]),
    Node(name: "dw", op_type: "Conv", inputs: ["r", "wd"], outputs: ["y"], attributes: {"pads": Ints([1, 1, 1, 1]), "group": Int(6)}),
  ],
)"#;

    #[test]
    fn convolutions_are_implicit_gemms_and_depthwise_runs_on_cuda_cores() {
        let g = graph(CONV);
        let ks = kernels(&g, F32Math::Tf32);
        assert_eq!(ks.len(), 2, "{ks:?}");
        // M = N x H_out x W_out = 2 x 4 x 4, N = C_out, K = C_in x 3 x 3.
        assert_eq!(
            ks[0].gemm,
            Some(GemmDims {
                m: 32,
                n: 6,
                k: 27,
                batch: 1
            })
        );
        assert_eq!(ks[0].nodes, vec!["conv", "relu"]);
        assert_eq!(ks[0].flops, 2.0 * 32.0 * 6.0 * 27.0 + 2.0 * 6.0 * 16.0);
        assert_eq!(ks[0].input_bytes, 2.0 * 3.0 * 64.0 * 4.0);
        assert_eq!(ks[1].kind, KernelKind::DirectConv);
        // 2 x 6 x 4 x 4 outputs, each 1 x 3 x 3 MACs.
        assert_eq!(ks[1].flops, 2.0 * (2.0 * 6.0 * 16.0) * 9.0);
    }

    #[test]
    fn constant_subgraphs_fold_and_gathers_read_rows() {
        let text = r#"Graph(
  name: "e",
  inputs: [ValueInfo(name: "ids", dtype: I32, shape: [1, 4])],
  outputs: [ValueInfo(name: "y", dtype: F32, shape: [1, 4, 8])],
  initializers: [
    Initializer(name: "table", dtype: F32, shape: [1000, 8], data: Random(seed: 1, dist: Uniform(low: -1.0, high: 1.0))),
    Initializer(name: "s", dtype: F32, shape: [], data: Inline([2.0])),
  ],
  nodes: [
    Node(name: "scaled", op_type: "Mul", inputs: ["table", "s"], outputs: ["t2"]),
    Node(name: "gather", op_type: "Gather", inputs: ["t2", "ids"], outputs: ["y"]),
  ],
)"#;
        let g = graph(text);
        let ks = kernels(&g, F32Math::Tf32);
        assert_eq!(ks.len(), 1, "{ks:?}");
        assert_eq!(ks[0].op, "Gather");
        // Four rows of eight f32 from the (folded) table, four i32 indices.
        assert_eq!(ks[0].weight_bytes, 4.0 * 8.0 * 4.0);
        assert_eq!(ks[0].input_bytes, 4.0 * 4.0);
    }
}
