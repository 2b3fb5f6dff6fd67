//! Operators the graph passes rewrite into lowered ones: 1-D Conv,
//! ConvTranspose and pools as 2-D ones with a unit height
//! (`passes/spatial1d.rs`: Unsqueeze -> 2-D node -> Squeeze, the reshapes
//! lowered as lane moves), and `Gemm` with `transA = 1` as a `Transpose`
//! of its left operand (`passes/gemm.rs`). Each graph is compiled with the
//! passes for `tiny` (16 lanes, so 17 or 33 channels straddle vector
//! tiles) and `tsp` (320 lanes), simulated on seeded inputs and compared
//! with the reference interpreter on the *original* graph: bit for bit
//! where the lowering is exact (MaxPool, the layout moves), within the
//! check's tolerance where products run on the MXM in fp16.

use lpu_compiler::CompileOptions;
use lpu_isa::ChipConfig;
use lpu_sim::SimOptions;

fn parse(text: &str) -> lpu_graph::Graph {
    lpu_graph::parse_graph(text, "<test>", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Compiles `text` (with the graph passes, fp32) for both chips, simulates
/// it on seeded inputs and compares with the interpreter on the original
/// graph: bit-exactly when `exact`, else with the check's tolerance.
/// Returns the op types of the graph that was lowered.
fn check(text: &str, exact: bool, what: &str) -> Vec<String> {
    let g = parse(text);
    let inputs = lpu_graph::random_inputs(&g, 5);
    let reference = lpu_graph::interpret(&g, &inputs).expect("reference");
    let lowered = lpu_compiler::prepare(g.clone(), &CompileOptions::default())
        .expect("prepare")
        .graph;
    for chip in ["tiny", "tsp"] {
        let cfg = ChipConfig::preset(chip).expect("preset");
        let p = lpu_compiler::compile_with(&g, &cfg, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{what} on {chip}: {e}"))
            .program;
        let o = lpu_sim::simulate(&p, &inputs, &SimOptions::default()).expect("runs");
        assert!(o.hazard.is_none(), "{what} on {chip}: {:?}", o.hazard);
        if exact {
            for name in &g.outputs {
                let (got, want) = (&o.outputs[name], &reference[name]);
                assert_eq!(got.shape, want.shape, "{what} on {chip}: shape of {name}");
                assert!(
                    got.values.to_le_bytes() == want.values.to_le_bytes(),
                    "{what} on {chip}: {name} differs:\n got {:?}\nwant {:?}",
                    got.values,
                    want.values
                );
            }
        } else {
            let c = lpu_sim::check::compare(&o.outputs, &reference);
            assert!(c.passed, "{what} on {chip}: {:?}", c.failures);
        }
    }
    lowered.nodes.iter().map(|n| n.op_type.clone()).collect()
}

/// One `op` node on `x: [n, c, l]` (`dtype`), with `extra` inputs, their
/// initializers and `attrs`, followed by `tail` nodes reading `y` and
/// writing `z` (or none: then `y` is the output).
fn graph(
    op: &str,
    dtype: &str,
    x: [usize; 3],
    inits: &str,
    extra: &str,
    attrs: &str,
    tail: &str,
) -> String {
    let out = if tail.is_empty() { "y" } else { "z" };
    format!(
        r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: {dtype}, shape: {x:?})],
  outputs: [ValueInfo(name: "{out}")],
  initializers: [{inits}],
  nodes: [Node(name: "op", op_type: "{op}", inputs: ["x"{extra}], outputs: ["y"], attributes: {{ {attrs} }}){tail}])"#
    )
}

/// Weights `w` of `shape` and (when `bias`) a bias `b` of `nb` values.
fn weights(shape: [usize; 3], nb: usize) -> String {
    format!(
        r#"Initializer(name: "w", dtype: F32, shape: {shape:?}, data: Random(seed: 2, dist: Normal(mean: 0.0, std: 0.3))),
    Initializer(name: "b", dtype: F32, shape: [{nb}], data: Random(seed: 3, dist: Uniform(low: -0.5, high: 0.5)))"#
    )
}

fn assert_rewritten(ops: &[String], op: &str) {
    assert!(
        ops.iter().any(|o| o == op) && ops.iter().any(|o| o == "Squeeze"),
        "{op} was not rewritten: {ops:?}"
    );
}

#[test]
fn max_pool_1d_is_exact() {
    for (dtype, x, attrs) in [
        ("F32", [1, 3, 11], r#""kernel_shape": Ints([2])"#),
        (
            "F32",
            [2, 17, 13],
            r#""kernel_shape": Ints([3]), "strides": Ints([2]), "pads": Ints([1, 2]), "dilations": Ints([2])"#,
        ),
        (
            "I8",
            [1, 5, 20],
            r#""kernel_shape": Ints([4]), "strides": Ints([3]), "ceil_mode": Int(1)"#,
        ),
        (
            "F32",
            [1, 4, 9],
            r#""kernel_shape": Ints([3]), "auto_pad": String("SAME_UPPER"), "strides": Ints([2])"#,
        ),
    ] {
        let ops = check(&graph("MaxPool", dtype, x, "", "", attrs, ""), true, attrs);
        assert_rewritten(&ops, "MaxPool");
    }
}

#[test]
fn average_pool_1d() {
    for attrs in [
        r#""kernel_shape": Ints([2])"#,
        r#""kernel_shape": Ints([3]), "strides": Ints([2]), "pads": Ints([1, 1])"#,
        r#""kernel_shape": Ints([3]), "strides": Ints([2]), "pads": Ints([2, 1]), "count_include_pad": Int(1)"#,
        r#""kernel_shape": Ints([4]), "strides": Ints([3]), "dilations": Ints([2]), "ceil_mode": Int(1)"#,
    ] {
        let ops = check(
            &graph("AveragePool", "F32", [2, 17, 13], "", "", attrs, ""),
            false,
            attrs,
        );
        assert_rewritten(&ops, "AveragePool");
    }
    let ops = check(
        &graph("GlobalAveragePool", "F32", [1, 33, 7], "", "", "", ""),
        false,
        "global",
    );
    assert_rewritten(&ops, "GlobalAveragePool");
}

#[test]
fn conv_1d_with_strides_pads_dilations_groups() {
    let relu = r#", Node(op_type: "Relu", inputs: ["y"], outputs: ["z"])"#;
    for (c, l, co, k, attrs) in [
        (3, 10, 4, 3, ""),
        (
            17,
            13,
            33,
            3,
            r#""strides": Ints([2]), "pads": Ints([1, 0])"#,
        ),
        (
            5,
            16,
            7,
            4,
            r#""dilations": Ints([2]), "pads": Ints([2, 3])"#,
        ),
        (
            6,
            11,
            9,
            5,
            r#""group": Int(3), "strides": Ints([3]), "pads": Ints([2, 2]), "dilations": Ints([2])"#,
        ),
        (4, 9, 8, 3, r#""auto_pad": String("SAME_LOWER")"#),
    ] {
        let group = if attrs.contains("group") { 3 } else { 1 };
        let text = graph(
            "Conv",
            "F32",
            [1, c, l],
            &weights([co, c / group, k], co),
            r#", "w", "b""#,
            attrs,
            relu,
        );
        let ops = check(
            &text,
            false,
            &format!("conv c={c} l={l} co={co} k={k} {attrs}"),
        );
        assert_rewritten(&ops, "Conv");
    }
}

#[test]
fn conv_transpose_1d() {
    for (c, l, co, k, attrs) in [
        (1, 3, 2, 3, ""),
        (
            5,
            7,
            3,
            3,
            r#""strides": Ints([2]), "pads": Ints([1, 1]), "output_padding": Ints([1])"#,
        ),
        (
            17,
            6,
            4,
            4,
            r#""strides": Ints([3]), "dilations": Ints([2]), "pads": Ints([0, 2])"#,
        ),
    ] {
        let text = graph(
            "ConvTranspose",
            "F32",
            [1, c, l],
            &weights([c, co, k], co),
            r#", "w", "b""#,
            attrs,
            "",
        );
        let ops = check(
            &text,
            false,
            &format!("convtranspose c={c} co={co} {attrs}"),
        );
        assert_rewritten(&ops, "ConvTranspose");
    }
}

#[test]
fn one_d_chain_conv_relu_pool() {
    // Conv -> Relu -> MaxPool -> AveragePool, all 1-D: the Squeeze ->
    // Unsqueeze between the pools collapses.
    let text = format!(
        r#"Graph(name: "chain", inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 7, 19])],
  outputs: [ValueInfo(name: "z")],
  initializers: [{}],
  nodes: [
    Node(name: "conv", op_type: "Conv", inputs: ["x", "w", "b"], outputs: ["c"], attributes: {{ "pads": Ints([1, 1]) }}),
    Node(name: "relu", op_type: "Relu", inputs: ["c"], outputs: ["r"]),
    Node(name: "max", op_type: "MaxPool", inputs: ["r"], outputs: ["m"], attributes: {{ "kernel_shape": Ints([2]), "strides": Ints([2]) }}),
    Node(name: "avg", op_type: "AveragePool", inputs: ["m"], outputs: ["z"], attributes: {{ "kernel_shape": Ints([3]), "pads": Ints([1, 1]) }}),
  ])"#,
        weights([11, 7, 3], 11)
    );
    let ops = check(&text, false, "chain");
    assert_eq!(ops.iter().filter(|o| *o == "Squeeze").count(), 2, "{ops:?}");
}

#[test]
fn gemm_with_transposed_a() {
    for (k, m, n, attrs) in [
        (5, 3, 4, ""),
        (
            19,
            7,
            33,
            r#", "alpha": Float(0.25), "beta": Float(0.5), "transB": Int(1)"#,
        ),
    ] {
        let bshape = if attrs.contains("transB") {
            [n, k]
        } else {
            [k, n]
        };
        let text = format!(
            r#"Graph(name: "g", inputs: [ValueInfo(name: "a", dtype: F32, shape: [{k}, {m}])],
  outputs: [ValueInfo(name: "y")],
  initializers: [
    Initializer(name: "w", dtype: F32, shape: {bshape:?}, data: Random(seed: 2, dist: Normal(mean: 0.0, std: 0.3))),
    Initializer(name: "c", dtype: F32, shape: [{n}], data: Random(seed: 3, dist: Uniform(low: -0.5, high: 0.5))),
  ],
  nodes: [
    Node(name: "relu", op_type: "Relu", inputs: ["a"], outputs: ["r"]),
    Node(name: "gemm", op_type: "Gemm", inputs: ["r", "w", "c"], outputs: ["y"], attributes: {{ "transA": Int(1) {attrs} }}),
  ])"#
        );
        let ops = check(&text, false, &format!("gemm k={k} m={m} n={n} {attrs}"));
        assert!(ops.iter().any(|o| o == "Transpose"), "{ops:?}");
    }
}
