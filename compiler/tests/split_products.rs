//! `--precision fp32-split` end to end on `tiny` (16 lanes, so K and N
//! straddle vector tiles): MatMul, Gemm, Conv and ConvTranspose with f32
//! weights compiled in three fp16 MXM passes agree with the reference
//! interpreter's f32 products to about 1e-6 of the output's scale, where
//! the default fp32 (one fp16 pass) is about 1e-3 off; the split costs
//! three times the `mm`s; and the default fp32 program is unchanged.

mod common;

use common::{count, parse};
use lpu_compiler::{CompileOptions, Precision};
use lpu_isa::{ChipConfig, Opcode, Program};
use lpu_sim::SimOptions;

/// Compiles `g` on `tiny` in `precision` (passes, precision rewrite,
/// lowering), as `lpc compile --precision` does.
fn compile(g: &lpu_graph::Graph, precision: Precision) -> Program {
    let options = CompileOptions {
        precision,
        ..Default::default()
    };
    let chip = ChipConfig::preset("tiny").expect("tiny");
    lpu_compiler::compile_with(g, &chip, &options)
        .unwrap_or_else(|e| panic!("{precision}: {e}"))
        .program
}

/// The largest error of the simulated outputs against the interpreter's,
/// relative to the largest reference value of each output.
fn rel_err(g: &lpu_graph::Graph, p: &Program) -> f64 {
    let inputs = lpu_graph::random_inputs(g, 7);
    let o = lpu_sim::simulate(p, &inputs, &SimOptions::default()).expect("runs");
    assert!(o.hazard.is_none(), "{:?}", o.hazard);
    let reference = lpu_graph::interpret(g, &inputs).expect("reference");
    let mut worst = 0f64;
    for (name, r) in &reference {
        let s = &o.outputs[name];
        assert_eq!(s.shape, r.shape, "{name}");
        let scale = (0..r.len())
            .map(|i| r.values.get_f64(i).abs())
            .fold(0f64, f64::max);
        let err = (0..r.len())
            .map(|i| (s.values.get_f64(i) - r.values.get_f64(i)).abs())
            .fold(0f64, f64::max);
        worst = worst.max(err / scale.max(f64::MIN_POSITIVE));
    }
    worst
}

/// Split is accurate to `1e-5` of the output's scale (1e-6 typical), the
/// default fp32 is not (it is off by more than `1e-4`), and the split
/// program has three `mm`s for each of fp32's and twice its `lw`s.
fn assert_split_accurate(text: &str) -> (Program, Program) {
    let g = parse(text);
    let fp32 = compile(&g, Precision::Fp32);
    let split = compile(&g, Precision::Fp32Split);
    let (e32, es) = (rel_err(&g, &fp32), rel_err(&g, &split));
    eprintln!(
        "{}: fp32 error {e32:.2e}, fp32-split error {es:.2e}",
        g.name
    );
    assert!(es < 1e-5, "fp32-split error {es:e} (fp32: {e32:e})");
    assert!(
        e32 > 1e-4,
        "fp32 (fp16 MXM) error {e32:e} is expected to be fp16-sized"
    );
    assert_eq!(
        count(&split, Opcode::Matmul),
        3 * count(&fp32, Opcode::Matmul),
        "three passes per product"
    );
    assert_eq!(
        count(&split, Opcode::LoadWeights),
        2 * count(&fp32, Opcode::LoadWeights),
        "both weight halves are loaded"
    );
    (fp32, split)
}

const MATMUL: &str = r#"Graph(name: "mm", inputs: [ValueInfo(name: "x", dtype: F32, shape: [9, 40])],
  outputs: [ValueInfo(name: "y", dtype: F32, shape: [9, 24])],
  initializers: [Initializer(name: "w", dtype: F32, shape: [40, 24], data: Random(seed: 2, dist: Normal(mean: 0.0, std: 0.05)))],
  nodes: [Node(op_type: "MatMul", inputs: ["x", "w"], outputs: ["y"])])"#;

#[test]
fn split_matmul_matches_the_interpreter() {
    assert_split_accurate(MATMUL);
}

#[test]
fn split_gemm_with_alpha_bias_and_trans_b() {
    assert_split_accurate(
        r#"Graph(name: "gemm", inputs: [ValueInfo(name: "x", dtype: F32, shape: [5, 33])],
  outputs: [ValueInfo(name: "z", dtype: F32, shape: [5, 20])],
  initializers: [
    Initializer(name: "w", dtype: F32, shape: [20, 33], data: Random(seed: 4, dist: Normal(mean: 0.0, std: 0.002))),
    Initializer(name: "b", dtype: F32, shape: [20], data: Random(seed: 5, dist: Uniform(low: -0.01, high: 0.01))),
  ],
  nodes: [
    Node(op_type: "Gemm", inputs: ["x", "w", "b"], outputs: ["y"], attributes: { "transB": Int(1), "alpha": Float(0.75) }),
    Node(op_type: "Relu", inputs: ["y"], outputs: ["z"]),
  ])"#,
    );
}

/// A Conv of `c` channels, `co` outputs, 3x3, padding 1, then Relu.
fn conv(c: usize, co: usize, group: usize) -> String {
    format!(
        r#"Graph(name: "conv", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, {c}, 6, 7])],
  outputs: [ValueInfo(name: "z", dtype: F32, shape: [1, {co}, 6, 7])],
  initializers: [
    Initializer(name: "w", dtype: F32, shape: [{co}, {cg}, 3, 3], data: Random(seed: 2, dist: Normal(mean: 0.0, std: 0.1))),
    Initializer(name: "b", dtype: F32, shape: [{co}], data: Random(seed: 3, dist: Uniform(low: -0.5, high: 0.5))),
  ],
  nodes: [
    Node(op_type: "Conv", inputs: ["x", "w", "b"], outputs: ["y"], attributes: {{ "pads": Ints([1, 1, 1, 1]), "group": Int({group}) }}),
    Node(op_type: "Relu", inputs: ["y"], outputs: ["z"]),
  ])"#,
        cg = c / group
    )
}

#[test]
fn split_conv_matches_the_interpreter() {
    // 17 channels: two channel tiles, one K-tile per (tap, tile).
    assert_split_accurate(&conv(17, 12, 1));
}

#[test]
fn split_width_packed_and_grouped_convs() {
    // 3 taps x 5 channels fit in 16 lanes: the packed input is split.
    assert_split_accurate(&conv(5, 8, 1));
    assert_split_accurate(&conv(8, 8, 4));
}

#[test]
fn split_stride_two_conv_of_a_graph_input() {
    // A stride-2 convolution of a graph input reads it as 2x2 blocks
    // (space-to-depth): the halves keep that view.
    assert_split_accurate(
        r#"Graph(name: "s2d", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 3, 8, 8])],
  outputs: [ValueInfo(name: "y", dtype: F32, shape: [1, 6, 4, 4])],
  initializers: [Initializer(name: "w", dtype: F32, shape: [6, 3, 3, 3], data: Random(seed: 2, dist: Normal(mean: 0.0, std: 0.1)))],
  nodes: [Node(op_type: "Conv", inputs: ["x", "w"], outputs: ["y"], attributes: { "pads": Ints([1, 1, 1, 1]), "strides": Ints([2, 2]) })])"#,
    );
}

#[test]
fn split_conv_transpose_matches_the_interpreter() {
    assert_split_accurate(
        r#"Graph(name: "convT", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 6, 4, 5])],
  outputs: [ValueInfo(name: "y", dtype: F32, shape: [1, 5, 9, 11])],
  initializers: [Initializer(name: "w", dtype: F32, shape: [6, 5, 3, 3], data: Random(seed: 8, dist: Normal(mean: 0.0, std: 0.2)))],
  nodes: [Node(op_type: "ConvTranspose", inputs: ["x", "w"], outputs: ["y"], attributes: { "strides": Ints([2, 2]) })])"#,
    );
}

#[test]
fn split_conv_flatten_gemm() {
    // The Gemm reads the Conv's channels-last result flattened in place
    // (its weight rows permuted): the halves keep that storage order.
    assert_split_accurate(
        r#"Graph(name: "cnn", inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 3, 4, 4])],
  outputs: [ValueInfo(name: "z", dtype: F32, shape: [2, 10])],
  initializers: [
    Initializer(name: "w", dtype: F32, shape: [6, 3, 3, 3], data: Random(seed: 2, dist: Normal(mean: 0.0, std: 0.2))),
    Initializer(name: "w2", dtype: F32, shape: [96, 10], data: Random(seed: 3, dist: Normal(mean: 0.0, std: 0.1))),
  ],
  nodes: [
    Node(op_type: "Conv", inputs: ["x", "w"], outputs: ["c"], attributes: { "pads": Ints([1, 1, 1, 1]) }),
    Node(op_type: "Relu", inputs: ["c"], outputs: ["r"]),
    Node(op_type: "Flatten", inputs: ["r"], outputs: ["f"]),
    Node(op_type: "Gemm", inputs: ["f", "w2"], outputs: ["z"]),
  ])"#,
    );
}

#[test]
fn weights_exact_in_fp16_skip_the_low_pass() {
    // Every weight is a small integer: Wl is all zeros, so only the two
    // passes over Wh run, and the result is still exact to the split.
    let text = r#"Graph(name: "ints", inputs: [ValueInfo(name: "x", dtype: F32, shape: [4, 20])],
  outputs: [ValueInfo(name: "y", dtype: F32, shape: [4, 3])],
  initializers: [Initializer(name: "w", dtype: F32, shape: [20, 3], data: Inline([
    1, -2, 3, 0, 1, 2, -1, 1, 0, 2, 2, 1, 0, -3, 1, 1, 1, 1, -1, 0,
    1, -2, 3, 0, 1, 2, -1, 1, 0, 2, 2, 1, 0, -3, 1, 1, 1, 1, -1, 0,
    1, -2, 3, 0, 1, 2, -1, 1, 0, 2, 2, 1, 0, -3, 1, 1, 1, 1, -1, 0]))],
  nodes: [Node(op_type: "MatMul", inputs: ["x", "w"], outputs: ["y"])])"#;
    let g = parse(text);
    let fp32 = compile(&g, Precision::Fp32);
    let split = compile(&g, Precision::Fp32Split);
    assert_eq!(
        count(&split, Opcode::Matmul),
        2 * count(&fp32, Opcode::Matmul)
    );
    assert_eq!(
        count(&split, Opcode::LoadWeights),
        count(&fp32, Opcode::LoadWeights)
    );
    let e = rel_err(&g, &split);
    assert!(e < 1e-5, "{e:e}");
}

#[test]
fn fp32_default_is_unchanged() {
    // The default options, `compile` and `compile_prepared` in fp32 all
    // give the same program, and fp32-split another one.
    let g = parse(MATMUL);
    let chip = ChipConfig::preset("tiny").expect("tiny");
    let prepared = lpu_compiler::prepare(g.clone(), &CompileOptions::default())
        .expect("prepares")
        .graph;
    let plain = lpu_compiler::compile(&prepared, &chip)
        .expect("compiles")
        .program;
    let with = lpu_compiler::compile_with(&g, &chip, &CompileOptions::default())
        .expect("compiles")
        .program;
    let fp32 = lpu_compiler::compile_prepared(&prepared, &chip, Precision::Fp32, false)
        .expect("compiles")
        .program;
    assert_eq!(plain.to_bytes(), with.to_bytes());
    assert_eq!(plain.to_bytes(), fp32.to_bytes());
    let split = compile(&g, Precision::Fp32Split);
    assert_ne!(plain.to_bytes(), split.to_bytes());
    // The split precision rewrites nothing in the graph: the interpreter
    // checks it on the model's own f32 products.
    let options = CompileOptions {
        precision: Precision::Fp32Split,
        ..Default::default()
    };
    let out = lpu_compiler::prepare(g.clone(), &options).expect("prepares");
    assert_eq!(out.graph.nodes.len(), prepared.nodes.len());
    assert_eq!(
        out.node_precision.values().collect::<Vec<_>>(),
        ["fp32-split"]
    );
    assert_eq!("FP32-Split".parse::<Precision>(), Ok(Precision::Fp32Split));
}
