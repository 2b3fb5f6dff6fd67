//! Transformer operators end to end on `tiny` (16 lanes, so widths like 24
//! and 40 straddle vector tiles): each graph is compiled, simulated with
//! seeded inputs and compared with the reference interpreter within the
//! check's tolerance.

use lpu_isa::ChipConfig;

mod common;

/// Compiles `g` for `chip`, simulates it on seeded inputs (`seed`), asserts
/// there is no hazard and returns the check against the interpreter.
fn check_on(g: &lpu_graph::Graph, chip: &str, seed: u64) -> lpu_sim::check::Check {
    common::compile_and_check(g, chip, seed).check
}

/// `g` rewritten to int8 (`--precision int8`).
fn int8(g: lpu_graph::Graph) -> lpu_graph::Graph {
    let options = lpu_compiler::CompileOptions {
        precision: lpu_compiler::Precision::Int8,
        ..Default::default()
    };
    lpu_compiler::prepare(g, &options).expect("int8").graph
}

/// Compiles and simulates `text` on `tiny`; returns the check.
fn run(text: &str) -> lpu_sim::check::Check {
    let g = lpu_graph::parse_graph(text, "<test>", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    check_on(&g, "tiny", 5)
}

fn assert_passes(text: &str, what: &str) {
    let c = run(text);
    assert!(c.passed, "{what}: {:?}", c.failures);
}

/// One node `op` on `x [shape]` (extra initializers and attributes given).
fn one(op: &str, shape: &[usize], extra_inputs: &str, inits: &str, attrs: &str) -> String {
    format!(
        r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: {shape:?})],
  outputs: [ValueInfo(name: "y")],
  initializers: [{inits}],
  nodes: [Node(op_type: "{op}", inputs: ["x"{extra_inputs}], outputs: ["y"], attributes: {{ {attrs} }})])"#
    )
}

#[test]
fn single_input_elementwise_ops() {
    for op in [
        "Sigmoid",
        "Tanh",
        "Exp",
        "Erf",
        "Gelu",
        "LeakyRelu",
        "HardSigmoid",
        "HardSwish",
        "Silu",
        "Reciprocal",
    ] {
        assert_passes(&one(op, &[3, 24], "", "", ""), op);
    }
    let sqrt = r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: [3, 24])],
  outputs: [ValueInfo(name: "y")],
  nodes: [Node(op_type: "Exp", inputs: ["x"], outputs: ["e"]), Node(op_type: "Sqrt", inputs: ["e"], outputs: ["y"])])"#;
    assert_passes(sqrt, "sqrt");
    assert_passes(
        &one("Gelu", &[5, 17], "", "", r#""approximate": String("tanh")"#),
        "gelu tanh",
    );
    assert_passes(
        &one("LeakyRelu", &[2, 20], "", "", r#""alpha": Float(0.3)"#),
        "leaky",
    );
}

#[test]
fn layer_norm_softmax_and_reductions() {
    let ln = |w: usize| {
        format!(
            r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 5, {w}])],
  outputs: [ValueInfo(name: "y")],
  initializers: [
    Initializer(name: "g", dtype: F32, shape: [{w}], data: Random(seed: 2, dist: Uniform(low: 0.5, high: 1.5))),
    Initializer(name: "b", dtype: F32, shape: [{w}], data: Random(seed: 3, dist: Uniform(low: -0.5, high: 0.5))),
  ],
  nodes: [Node(op_type: "LayerNormalization", inputs: ["x", "g", "b"], outputs: ["y"], attributes: {{ "axis": Int(-1), "epsilon": Float(0.00001) }})])"#
        )
    };
    assert_passes(&ln(24), "layernorm 24");
    assert_passes(&ln(40), "layernorm 40");
    assert_passes(
        &one("Softmax", &[1, 2, 5, 17], "", "", r#""axis": Int(-1)"#),
        "softmax 17",
    );
    assert_passes(&one("Softmax", &[7, 40], "", "", ""), "softmax 40");
}

/// A Softmax read only by an fp32-accurate context product (int8's f32
/// attention) leaves its rows unnormalized: it issues no `mul` of its own
/// (the context's epilogue scales each head's lanes by `r r` instead), and
/// the block still matches the reference to f32 rounding. Under `mixed`
/// (fp16 values, one MXM pass) the Softmax normalizes its rows itself.
#[test]
fn softmax_before_the_context_product_is_left_unnormalized() {
    let block = || {
        lpu_graph::load_graph(std::path::Path::new("../examples/transformer-block.graph"))
            .expect("example")
    };
    let softmax_muls = |p: &lpu_isa::program::Program| {
        let softmax: Vec<u32> = (0..p.nodes.len() as u32)
            .filter(|&k| p.nodes[k as usize].op == "Softmax")
            .collect();
        assert!(!softmax.is_empty());
        p.queues
            .iter()
            .flat_map(|q| &q.slots)
            .filter(|s| s.instr.op == lpu_isa::Opcode::Mul)
            .filter(|s| s.node.is_some_and(|k| softmax.contains(&k)))
            .count()
    };
    for chip in ["tiny", "tsp"] {
        let r = common::compile_and_check(&int8(block()), chip, 0);
        assert!(r.check.passed, "{chip}: {:?}", r.check.failures);
        assert!(
            r.check.max_abs_err < 1e-4,
            "{chip}: {}",
            r.check.max_abs_err
        );
        assert_eq!(softmax_muls(&r.program), 0, "{chip}");
    }
    let options = lpu_compiler::CompileOptions {
        precision: lpu_compiler::Precision::Mixed,
        ..Default::default()
    };
    let mixed = lpu_compiler::prepare(block(), &options)
        .expect("mixed")
        .graph;
    let r = common::compile_and_check(&mixed, "tsp", 0);
    assert!(r.check.passed, "{:?}", r.check.failures);
    assert!(softmax_muls(&r.program) > 0);
}

/// A Softmax row of one vector and at most `P` columns (`P` a power of two
/// below the lanes) takes its maximum by a butterfly of `log2 P` `perm`s
/// instead of `log2 lanes` rotations, and still leaves its padding lanes
/// 0: the Reshape after it moves lanes and counts on that padding.
#[test]
fn short_softmax_rows_fold_by_butterfly() {
    let graph = |rows: usize, cols: usize| {
        common::parse(&format!(
            r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: [{rows}, {cols}])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "flat", dtype: I32, shape: [2], data: Inline([1, {n}]))],
  nodes: [
    Node(op_type: "Softmax", inputs: ["x"], outputs: ["p"], attributes: {{ "axis": Int(-1) }}),
    Node(op_type: "Reshape", inputs: ["p", "flat"], outputs: ["y"]),
  ])"#,
            n = rows * cols
        ))
    };
    // (chip, rows, columns, butterfly steps per row): `tiny` has 16 lanes
    // (4 rotations a row), `tsp` 320 (9).
    for (chip, rows, cols, steps) in [("tiny", 6, 5, 3), ("tsp", 3, 100, 7), ("tsp", 2, 33, 6)] {
        let r = common::compile_and_check(&graph(rows, cols), chip, 11);
        assert!(
            r.check.passed,
            "{chip} {rows}x{cols}: {:?}",
            r.check.failures
        );
        let count = |op| common::count(&r.program, op);
        assert_eq!(
            count(lpu_isa::Opcode::Permute),
            rows * steps,
            "{chip} {rows}x{cols}"
        );
        assert_eq!(count(lpu_isa::Opcode::Rotate), 0, "{chip} {rows}x{cols}");
        assert_eq!(r.program.perm_tables.len(), steps, "{chip} {rows}x{cols}");
    }
    // A row as wide as `tiny`'s vector keeps the rotation tree.
    let r = common::compile_and_check(&graph(3, 16), "tiny", 11);
    assert!(r.check.passed, "{:?}", r.check.failures);
    assert_eq!(common::count(&r.program, lpu_isa::Opcode::Permute), 0);
    assert_eq!(common::count(&r.program, lpu_isa::Opcode::Rotate), 3 * 4);
}

/// Compiles and checks a zoo graph on `tiny`.
fn zoo_passes(file: lpu_graph::format::GraphFile, what: &str) {
    let g = lpu_graph::load::build(file, "<zoo>", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let c = check_on(&g, "tiny", 7);
    assert!(c.passed, "{what}: {:?}", c.failures);
}

/// The bundled transformer block, as loaded or prepared at `precision`
/// (as `lpc --precision` does), passes on `tiny`.
fn example_block_passes(precision: Option<lpu_compiler::Precision>) {
    let mut g = lpu_graph::load_graph(std::path::Path::new("../examples/transformer-block.graph"))
        .expect("example");
    if let Some(precision) = precision {
        let options = lpu_compiler::CompileOptions {
            precision,
            ..Default::default()
        };
        g = lpu_compiler::prepare(g, &options)
            .unwrap_or_else(|e| panic!("{precision:?}: {e}"))
            .graph;
    }
    let c = check_on(&g, "tiny", 0);
    assert!(c.passed, "{precision:?}: {:?}", c.failures);
}

#[test]
fn transformer_block_example_on_tiny() {
    example_block_passes(None);
}

/// `--precision fp16` reads every constant row (transpose masks, lane
/// caps) and every per-row statistic (softmax and normalization sums, which
/// the MXM emits in f32) as f16: each used to be read as f32 by an f16
/// instruction, a hazard.
#[test]
fn transformer_block_in_fp16_on_tiny() {
    example_block_passes(Some(lpu_compiler::Precision::Fp16));
}

/// `--precision mixed` (int8 products, fp16 attention): the attention's
/// context is stored in its graph type, f16, so the `Cast` to f32 after it
/// is a real conversion that carries the fused `QuantizeLinear` (stored in
/// f32, it became an alias that dropped it), and the scores emit their own
/// type before the fused scaling and `Cast` (they used to emit the chain's
/// last type, f32, into an f16 `muli`).
#[test]
fn transformer_block_in_mixed_precision_on_tiny() {
    example_block_passes(Some(lpu_compiler::Precision::Mixed));
}

#[test]
fn attention_with_heads_straddling_vectors() {
    use lpu_graph::zoo::{transformer_block, TransformerBlockOpts};
    // d = 12 (heads straddle 16-lane vectors), seq 5.
    zoo_passes(
        transformer_block(&TransformerBlockOpts {
            batch: 1,
            seq: 5,
            hidden: 24,
            heads: 2,
            ffn: 40,
        }),
        "hidden 24, 2 heads, seq 5",
    );
    // d = 10, seq 17 (two key tiles).
    zoo_passes(
        transformer_block(&TransformerBlockOpts {
            batch: 1,
            seq: 17,
            hidden: 40,
            heads: 4,
            ffn: 24,
        }),
        "hidden 40, 4 heads, seq 17",
    );
}

#[test]
fn embedding_lookup_slices_and_pooler() {
    // Indices are drawn in [-1000, 1000]: a table of 1010 rows (negative
    // indices count from the end), 24 columns.
    let text = r#"Graph(name: "emb", inputs: [ValueInfo(name: "ids", dtype: I32, shape: [1, 5])],
  outputs: [ValueInfo(name: "h"), ValueInfo(name: "pooled")],
  initializers: [
    Initializer(name: "word", dtype: F32, shape: [1010, 24], data: Random(seed: 1, dist: Normal(mean: 0.0, std: 1.0))),
    Initializer(name: "pos", dtype: F32, shape: [9, 24], data: Random(seed: 2, dist: Normal(mean: 0.0, std: 1.0))),
    Initializer(name: "typ", dtype: F32, shape: [2, 24], data: Random(seed: 3, dist: Normal(mean: 0.0, std: 1.0))),
    Initializer(name: "g", dtype: F32, shape: [24], data: Random(seed: 4, dist: Uniform(low: 0.5, high: 1.5))),
    Initializer(name: "b", dtype: F32, shape: [24], data: Random(seed: 5, dist: Uniform(low: -0.5, high: 0.5))),
    Initializer(name: "wd", dtype: F32, shape: [24, 24], data: Random(seed: 6, dist: Uniform(low: -0.3, high: 0.3))),
    Initializer(name: "bd", dtype: F32, shape: [24], data: Random(seed: 7, dist: Uniform(low: -0.3, high: 0.3))),
    Initializer(name: "s0", dtype: I32, shape: [1], data: Inline([0])),
    Initializer(name: "e5", dtype: I32, shape: [1], data: Inline([5])),
    Initializer(name: "e1", dtype: I32, shape: [1], data: Inline([1])),
    Initializer(name: "i0", dtype: I32, shape: [], data: Inline([0])),
  ],
  nodes: [
    Node(op_type: "Gather", inputs: ["word", "ids"], outputs: ["w"], attributes: { "axis": Int(0) }),
    Node(op_type: "Slice", inputs: ["pos", "s0", "e5", "s0"], outputs: ["p"]),
    Node(op_type: "Slice", inputs: ["typ", "s0", "e1", "s0"], outputs: ["t"]),
    Node(op_type: "Add", inputs: ["w", "p"], outputs: ["a"]),
    Node(op_type: "Add", inputs: ["a", "t"], outputs: ["a1"]),
    Node(op_type: "LayerNormalization", inputs: ["a1", "g", "b"], outputs: ["h"], attributes: { "axis": Int(-1) }),
    Node(op_type: "Gather", inputs: ["h", "i0"], outputs: ["cls"], attributes: { "axis": Int(1) }),
    Node(op_type: "Gemm", inputs: ["cls", "wd", "bd"], outputs: ["d"], attributes: { "transB": Int(1) }),
    Node(op_type: "Tanh", inputs: ["d"], outputs: ["pooled"]),
  ])"#;
    assert_passes(text, "embedding");
}

#[test]
fn embedding_lookup_in_a_table_spread_over_many_banks() {
    // 20,000 f32 rows on `tiny` fill many banks of many MEM slices, so each
    // looked-up vector is the sum of many gathers, all but one of them 0.
    // Indices in [-1000, 1000] reach both ends of the table (a negative
    // index counts from the end). The sum is the table entry, exactly.
    let text = r#"Graph(name: "wide", inputs: [ValueInfo(name: "ids", dtype: I32, shape: [1, 8])],
  outputs: [ValueInfo(name: "w")],
  initializers: [
    Initializer(name: "word", dtype: F32, shape: [20000, 4], data: Random(seed: 1, dist: Normal(mean: 0.0, std: 1.0))),
  ],
  nodes: [Node(op_type: "Gather", inputs: ["word", "ids"], outputs: ["w"], attributes: { "axis": Int(0) })])"#;
    let g = lpu_graph::parse_graph(text, "<test>", std::path::Path::new(".")).expect("parses");
    let cfg = lpu_isa::ChipConfig::preset("tiny").expect("preset");
    let program = lpu_compiler::compile(&g, &cfg).expect("compiles").program;
    let gathers: std::collections::BTreeSet<u16> = program
        .queues
        .iter()
        .filter(|q| {
            q.slots
                .iter()
                .any(|s| s.instr.op == lpu_isa::Opcode::Gather)
        })
        .map(|q| q.queue.slice)
        .collect();
    assert!(gathers.len() > 4, "gathers on slices {gathers:?}");
    for seed in [5, 6] {
        let c = check_on(&g, "tiny", seed);
        assert!(c.passed && c.max_abs_err == 0.0, "seed {seed}: {c:?}");
    }
}

#[test]
fn embedding_lookup_in_more_runs_than_map_copies() {
    // 26,000 f32 rows of 8 columns on `tsp`: 1,024 rows per bank, so 26
    // runs. 128 indices' maps in 26 copies would pass the lowering's 4 MiB
    // for maps, so 25 copies serve the 26 runs.
    let text = r#"Graph(name: "runs", inputs: [ValueInfo(name: "ids", dtype: I32, shape: [1, 128])],
  outputs: [ValueInfo(name: "w")],
  initializers: [
    Initializer(name: "word", dtype: F32, shape: [26000, 8], data: Random(seed: 3, dist: Normal(mean: 0.0, std: 1.0))),
  ],
  nodes: [Node(op_type: "Gather", inputs: ["word", "ids"], outputs: ["w"], attributes: { "axis": Int(0) })])"#;
    let g = lpu_graph::parse_graph(text, "<test>", std::path::Path::new(".")).expect("parses");
    let cfg = lpu_isa::ChipConfig::preset("tsp").expect("preset");
    let program = lpu_compiler::compile(&g, &cfg).expect("compiles").program;
    let count = |op: lpu_isa::Opcode, ty: lpu_isa::DType| {
        program
            .queues
            .iter()
            .flat_map(|q| &q.slots)
            .filter(|s| s.instr.op == op && s.instr.ty == ty)
            .count()
    };
    assert_eq!(
        count(lpu_isa::Opcode::Gather, lpu_isa::DType::F32),
        128 * 26
    );
    // Each index's map: computed once, then copied 24 times.
    assert_eq!(count(lpu_isa::Opcode::Write, lpu_isa::DType::I32), 128 * 25);
    let c = check_on(&g, "tsp", 7);
    assert!(c.passed && c.max_abs_err == 0.0, "{c:?}");
}

#[test]
fn binary_and_parameterised_elementwise_ops() {
    let two = |op: &str, b_shape: &str, b_init: bool| {
        let (inputs, inits) = if b_init {
            (
                String::new(),
                format!(
                    r#"Initializer(name: "b", dtype: F32, shape: {b_shape}, data: Random(seed: 9, dist: Uniform(low: 0.5, high: 2.0)))"#
                ),
            )
        } else {
            (
                format!(r#", ValueInfo(name: "b", dtype: F32, shape: {b_shape})"#),
                String::new(),
            )
        };
        format!(
            r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: [4, 20]){inputs}],
  outputs: [ValueInfo(name: "y")],
  initializers: [{inits}],
  nodes: [Node(op_type: "{op}", inputs: ["x", "b"], outputs: ["y"])])"#
        )
    };
    assert_passes(&two("Div", "[]", true), "div by a scalar constant");
    assert_passes(&two("Div", "[20]", true), "div by a constant row");
    assert_passes(&two("Div", "[4, 20]", false), "div by a computed tensor");
    for p in [
        "2.0", "3.0", "-1.0", "1.0", "0.25", "-0.25", "0.75", "-0.75", "1.5", "-1.5", "-2.0",
    ] {
        let text = one(
            "Pow",
            &[3, 18],
            r#", "p""#,
            &format!(r#"Initializer(name: "p", dtype: F32, shape: [], data: Inline([{p}]))"#),
            "",
        );
        assert_passes(&text, &format!("pow {p}"));
    }
    let clip = one(
        "Clip",
        &[3, 18],
        r#", "lo", "hi""#,
        r#"Initializer(name: "lo", dtype: F32, shape: [], data: Inline([-0.25])), Initializer(name: "hi", dtype: F32, shape: [], data: Inline([0.5]))"#,
        "",
    );
    assert_passes(&clip, "clip");
}

#[test]
fn reductions_and_rms_norm_along_the_last_axis() {
    for op in ["ReduceMean", "ReduceSum", "ReduceMax"] {
        let text = one(
            op,
            &[2, 3, 37],
            r#", "axes""#,
            r#"Initializer(name: "axes", dtype: I32, shape: [1], data: Inline([-1]))"#,
            "",
        );
        assert_passes(&text, op);
    }
    let rms = one(
        "RMSNormalization",
        &[6, 40],
        r#", "g""#,
        r#"Initializer(name: "g", dtype: F32, shape: [40], data: Random(seed: 2, dist: Uniform(low: 0.5, high: 1.5)))"#,
        r#""axis": Int(-1)"#,
    );
    assert_passes(&rms, "rms norm");
}

#[test]
fn fused_tails_after_a_matmul() {
    // MatMul -> Div by a constant -> Sigmoid -> Clip: all fused into the
    // product's chain.
    let text = r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: [5, 24])],
  outputs: [ValueInfo(name: "y")],
  initializers: [
    Initializer(name: "w", dtype: F32, shape: [24, 20], data: Random(seed: 1, dist: Uniform(low: -0.5, high: 0.5))),
    Initializer(name: "c", dtype: F32, shape: [], data: Inline([3.0])),
    Initializer(name: "lo", dtype: F32, shape: [], data: Inline([0.2])),
  ],
  nodes: [
    Node(op_type: "MatMul", inputs: ["x", "w"], outputs: ["m"]),
    Node(op_type: "Div", inputs: ["m", "c"], outputs: ["d"]),
    Node(op_type: "Sigmoid", inputs: ["d"], outputs: ["s"]),
    Node(op_type: "Clip", inputs: ["s", "lo"], outputs: ["y"]),
  ])"#;
    assert_passes(text, "fused tails");
}

#[test]
fn transformer_block_compiles_deterministically() {
    let g = lpu_graph::load_graph(std::path::Path::new("../examples/transformer-block.graph"))
        .expect("example");
    let chip = ChipConfig::preset("tiny").expect("preset");
    let a = lpu_compiler::compile(&g, &chip)
        .expect("compiles")
        .program
        .to_bytes();
    let b = lpu_compiler::compile(&g, &chip)
        .expect("compiles")
        .program
        .to_bytes();
    assert!(a == b, "two compilations differ");
}

#[test]
fn int8_attention_products_are_fp32_accurate() {
    // int8 quantizes the projections and the FFN; the batched attention
    // products stay f32 and run as split fp16 halves (see
    // lower/attention.rs), so the simulated block matches the reference to
    // f32 rounding, not fp16's 2^-11 (a plain fp16 product gave 1.9e-2 here:
    // its differences flip int8 roundings downstream).
    let g = lpu_graph::load_graph(std::path::Path::new("../examples/transformer-block.graph"))
        .expect("example");
    let c = check_on(&int8(g), "tiny", 0);
    assert!(c.passed, "{:?}", c.failures);
    assert!(c.max_abs_err < 1e-4, "max abs error {}", c.max_abs_err);
}

/// The decode attention of one new token over a KV cache of `past` tokens
/// (`hidden = heads * d`), as the graph passes leave GPT-2's: head views by
/// `Reshape [1,1,H] -> [1,heads,1,d]`, the new key and value as outputs;
/// the scores scaled by `Div` by `sqrt(d)` or (`mul`) `Mul` by its inverse.
fn decode_attention(hidden: usize, heads: usize, past: usize, mul: bool) -> String {
    let d = hidden / heads;
    let (op, scale) = if mul {
        ("Mul", 1.0 / (d as f64).sqrt())
    } else {
        ("Div", (d as f64).sqrt())
    };
    format!(
        r#"Graph(name: "decode", inputs: [
    ValueInfo(name: "q", dtype: F32, shape: [1, 1, {hidden}]),
    ValueInfo(name: "k", dtype: F32, shape: [1, 1, {hidden}]),
    ValueInfo(name: "v", dtype: F32, shape: [1, 1, {hidden}]),
    ValueInfo(name: "past_key", dtype: F32, shape: [1, {heads}, {past}, {d}]),
    ValueInfo(name: "past_value", dtype: F32, shape: [1, {heads}, {past}, {d}]),
  ],
  outputs: [ValueInfo(name: "y"), ValueInfo(name: "present_key"), ValueInfo(name: "present_value")],
  initializers: [
    Initializer(name: "heads", dtype: I32, shape: [4], data: Inline([1, {heads}, 1, {d}])),
    Initializer(name: "row", dtype: I32, shape: [3], data: Inline([1, 1, {hidden}])),
    Initializer(name: "scale", dtype: F32, shape: [], data: Inline([{scale}])),
  ],
  nodes: [
    Node(op_type: "Reshape", inputs: ["q", "heads"], outputs: ["qh"]),
    Node(op_type: "Reshape", inputs: ["k", "heads"], outputs: ["present_key"]),
    Node(op_type: "Reshape", inputs: ["v", "heads"], outputs: ["present_value"]),
    Node(op_type: "Concat", inputs: ["past_key", "present_key"], outputs: ["keys"], attributes: {{ "axis": Int(2) }}),
    Node(op_type: "Concat", inputs: ["past_value", "present_value"], outputs: ["values"], attributes: {{ "axis": Int(2) }}),
    Node(op_type: "Transpose", inputs: ["keys"], outputs: ["keys_t"], attributes: {{ "perm": Ints([0, 1, 3, 2]) }}),
    Node(op_type: "MatMul", inputs: ["qh", "keys_t"], outputs: ["scores"]),
    Node(op_type: "{op}", inputs: ["scores", "scale"], outputs: ["scaled"]),
    Node(op_type: "Softmax", inputs: ["scaled"], outputs: ["probs"], attributes: {{ "axis": Int(-1) }}),
    Node(op_type: "MatMul", inputs: ["probs", "values"], outputs: ["context"]),
    Node(op_type: "Reshape", inputs: ["context", "row"], outputs: ["y"]),
  ])"#
    )
}

#[test]
fn decode_attention_over_a_token_major_cache() {
    // d = 16 (a head per vector), d = 8 (whole heads, a last vector half
    // padding), d = 4 (a row narrower than a vector), d = 12 (heads straddle
    // vectors, 18 key rows), d = 10 (four heads in 40 lanes, one past token,
    // scaled by Mul).
    for (hidden, heads, past, mul) in [
        (32, 2, 5, false),
        (24, 3, 4, false),
        (8, 2, 3, true),
        (24, 2, 17, false),
        (40, 4, 1, true),
    ] {
        let c = run(&decode_attention(hidden, heads, past, mul));
        let what = format!("hidden {hidden}, {heads} heads, {past} past tokens");
        assert!(c.passed, "{what}: {:?}", c.failures);
        // Context sums and the softmax's sum are exact; the scores' lane
        // sums see each product to about 2^-22.
        assert!(
            c.max_abs_err < 1e-6,
            "{what}: max abs error {}",
            c.max_abs_err
        );
    }
}

#[test]
fn gpt2_decode_int8_on_tiny() {
    use lpu_graph::zoo::{gpt2_decode, DecoderOpts};
    let opts = DecoderOpts {
        layers: 2,
        hidden: 32,
        heads: 2,
        ffn: 64,
        context: 6,
        vocab: 1001, // random ids are drawn in [-1000, 1000]
        max_positions: 16,
        epsilon: 1e-5,
    };
    let g = lpu_graph::load::build(gpt2_decode(&opts), "<zoo>", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let c = check_on(&int8(g), "tiny", 3);
    assert!(c.passed, "{:?}", c.failures);
    assert!(c.max_abs_err < 1e-4, "max abs error {}", c.max_abs_err);
}

#[test]
fn comparisons_give_exact_zero_one_results() {
    // f32 with a broadcast row, and int32; results are int8 0/1, compared
    // exactly. Equal on random floats is almost always 0, so x is also
    // compared with itself.
    for (op, ty, b_shape) in [
        ("Greater", "F32", "[18]"),
        ("Less", "F32", "[3, 18]"),
        ("Equal", "F32", "[3, 18]"),
        ("Greater", "I32", "[3, 18]"),
        ("Equal", "I32", "[18]"),
        ("Less", "I8", "[3, 18]"),
    ] {
        let text = format!(
            r#"Graph(name: "cmp", inputs: [ValueInfo(name: "x", dtype: {ty}, shape: [3, 18]), ValueInfo(name: "b", dtype: {ty}, shape: {b_shape})],
  outputs: [ValueInfo(name: "y"), ValueInfo(name: "same")],
  nodes: [Node(name: "c", op_type: "{op}", inputs: ["x", "b"], outputs: ["y"]),
          Node(name: "s", op_type: "Equal", inputs: ["x", "x"], outputs: ["same"])])"#
        );
        let c = run(&text);
        assert!(c.passed, "{op} on {ty}: {:?}", c.failures);
        assert_eq!(c.max_abs_err, 0.0, "{op} on {ty}");
    }
}

#[test]
fn computed_columns_and_scalars_broadcast_across_the_lanes() {
    // x - mean(x) with keepdims ([3, 1] over 37 columns: three vectors on
    // tiny), a runtime scalar, and a [.., 1] graph input on a 3-D result.
    let cases = [
        (
            "[3, 37]",
            r#"Node(name: "m", op_type: "ReduceMean", inputs: ["x", "axes"], outputs: ["mu"]), Node(name: "d", op_type: "Sub", inputs: ["x", "mu"], outputs: ["y"])"#,
            r#"Initializer(name: "axes", dtype: I32, shape: [1], data: Inline([-1]))"#,
            "",
        ),
        (
            "[3, 37]",
            r#"Node(name: "d", op_type: "Mul", inputs: ["x", "s"], outputs: ["y"])"#,
            "",
            r#", ValueInfo(name: "s", dtype: F32, shape: [])"#,
        ),
        (
            "[2, 3, 20]",
            r#"Node(name: "d", op_type: "Add", inputs: ["c", "x"], outputs: ["y"])"#,
            "",
            r#", ValueInfo(name: "c", dtype: F32, shape: [2, 3, 1])"#,
        ),
    ];
    for (shape, nodes, inits, inputs) in cases {
        let text = format!(
            r#"Graph(name: "bcast", inputs: [ValueInfo(name: "x", dtype: F32, shape: {shape}){inputs}],
  outputs: [ValueInfo(name: "y")], initializers: [{inits}], nodes: [{nodes}])"#
        );
        let c = run(&text);
        assert!(c.passed, "{nodes}: {:?}", c.failures);
        // The broadcast value holds the operand to about 2^-22.
        assert!(c.max_abs_err < 1e-5, "{nodes}: {}", c.max_abs_err);
    }
}

#[test]
fn mirrored_comparisons_and_integer_clip() {
    // Less(scalar, x): the broadcast operand comes first (an exported Clip).
    let less = r#"Graph(name: "lt", inputs: [ValueInfo(name: "x", dtype: F32, shape: [3, 18]), ValueInfo(name: "m", dtype: F32, shape: [])],
  outputs: [ValueInfo(name: "y"), ValueInfo(name: "z")],
  nodes: [Node(name: "a", op_type: "Less", inputs: ["m", "x"], outputs: ["y"]),
          Node(name: "b", op_type: "Greater", inputs: ["m", "x"], outputs: ["z"])])"#;
    let c = run(less);
    assert!(c.passed, "{:?}", c.failures);
    assert_eq!(c.max_abs_err, 0.0);
    let clip = r#"Graph(name: "clip8", inputs: [ValueInfo(name: "x", dtype: I8, shape: [3, 18])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "lo", dtype: I8, shape: [], data: Inline([-20])), Initializer(name: "hi", dtype: I8, shape: [], data: Inline([35]))],
  nodes: [Node(name: "c", op_type: "Clip", inputs: ["x", "lo", "hi"], outputs: ["y"])])"#;
    let c = run(clip);
    assert!(c.passed, "{:?}", c.failures);
    assert_eq!(c.max_abs_err, 0.0);
}

#[test]
fn layer_norm_mean_and_inv_std_dev_outputs() {
    // LayerNormalization's optional outputs are its per-row statistics,
    // shape [.., 1] in f32 (37 columns: three vectors on tiny).
    let text = r#"Graph(name: "ln3", inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 3, 37])],
  outputs: [ValueInfo(name: "y"), ValueInfo(name: "mean"), ValueInfo(name: "inv")],
  initializers: [Initializer(name: "g", dtype: F32, shape: [37], data: Random(seed: 1, dist: Uniform(low: 0.5, high: 1.5))),
                 Initializer(name: "b", dtype: F32, shape: [37], data: Random(seed: 2, dist: Uniform(low: -0.1, high: 0.1)))],
  nodes: [Node(name: "ln", op_type: "LayerNormalization", inputs: ["x", "g", "b"], outputs: ["y", "mean", "inv"])])"#;
    let g = lpu_graph::parse_graph(text, "<test>", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.info("mean").expect("mean").shape, vec![2, 3, 1]);
    let c = run(text);
    assert!(c.passed, "{:?}", c.failures);
    assert_eq!(c.outputs_compared, 3);
}

/// A Reduce* node `op` on `x [shape]` of `dtype`, over the constant `axes`
/// (none: every axis), with `keepdims`.
fn reduce(op: &str, dtype: &str, shape: &[usize], axes: &[i64], keepdims: i64) -> String {
    let (input, init) = if axes.is_empty() {
        (String::new(), String::new())
    } else {
        (
            r#", "axes""#.to_string(),
            format!(
                r#"Initializer(name: "axes", dtype: I32, shape: [{}], data: Inline({axes:?}))"#,
                axes.len()
            ),
        )
    };
    format!(
        r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: {dtype}, shape: {shape:?})],
  outputs: [ValueInfo(name: "y")],
  initializers: [{init}],
  nodes: [Node(name: "r", op_type: "{op}", inputs: ["x"{input}], outputs: ["y"], attributes: {{ "keepdims": Int({keepdims}) }})])"#
    )
}

/// Asserts that `text` passes the check on `tiny` and on `tsp`.
fn passes_on_both(text: &str, what: &str) {
    let g = lpu_graph::parse_graph(text, "<test>", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    for chip in ["tiny", "tsp"] {
        let c = check_on(&g, chip, 11);
        assert!(c.passed, "{what} on {chip}: {:?}", c.failures);
    }
}

#[test]
fn reductions_along_other_axes() {
    // 37 columns: three vectors on tiny, one on tsp; 7 and 9 rows fold in
    // more than one group (partial results through SRAM).
    let cases: &[(&[usize], &[i64], i64)] = &[
        (&[5, 7, 37], &[0], 1),
        (&[5, 7, 37], &[0], 0),
        (&[5, 7, 37], &[-2], 0),
        (&[5, 7, 37], &[-3, 1], 1),
        (&[5, 7, 37], &[0, -1], 1),
        (&[5, 7, 37], &[1, 2], 1),
        (&[5, 7, 37], &[], 1),
        (&[5, 7, 37], &[], 0),
        (&[3, 1, 21], &[2], 0),
        (&[9, 17], &[0], 1),
        (&[40, 2, 37], &[0], 1),
        (&[2, 3, 4, 5], &[0, 2], 0),
    ];
    for op in ["ReduceMean", "ReduceSum", "ReduceMax"] {
        for &(shape, axes, keep) in cases {
            let what = format!("{op} over {axes:?} of {shape:?}, keepdims {keep}");
            passes_on_both(&reduce(op, "F32", shape, axes, keep), &what);
        }
    }
}

#[test]
fn integer_reductions_are_exact() {
    for op in ["ReduceSum", "ReduceMax"] {
        for ty in ["I8", "I32"] {
            let text = reduce(op, ty, &[6, 3, 20], &[0, 1], 0);
            let c = run(&text);
            assert!(c.passed, "{op} on {ty}: {:?}", c.failures);
            assert_eq!(c.max_abs_err, 0.0, "{op} on {ty}");
        }
    }
    // ReduceMax across the lanes too: the lane cap is an integer row.
    for ty in ["I8", "I32"] {
        for axes in [&[-1i64][..], &[0, 2][..], &[][..]] {
            let text = reduce("ReduceMax", ty, &[6, 3, 21], axes, 1);
            let c = run(&text);
            assert!(
                c.passed,
                "ReduceMax over {axes:?} on {ty}: {:?}",
                c.failures
            );
            assert_eq!(c.max_abs_err, 0.0, "ReduceMax over {axes:?} on {ty}");
        }
    }
}

#[test]
fn reductions_that_need_lane_moves_are_refused() {
    // keepdims = 0 over the last axis alone leaves [3, 4]: four values per
    // row, which would have to move into lanes.
    for (axes, what) in [(&[2i64][..], "last"), (&[1, 2][..], "last two")] {
        let text = reduce("ReduceSum", "F32", &[3, 4, 5], axes, 0);
        let g = lpu_graph::parse_graph(&text, "<test>", std::path::Path::new(".")).expect("parses");
        let chip = ChipConfig::preset("tiny").expect("preset");
        let err = lpu_compiler::compile(&g, &chip)
            .err()
            .expect(what)
            .to_string();
        assert!(
            err.contains("not lowered") && err.contains("lane moves"),
            "{what}: {err}"
        );
    }
}

#[test]
fn softmax_along_other_axes() {
    for (shape, axis) in [
        (&[4, 6, 37][..], 0),
        (&[4, 6, 37][..], 1),
        (&[4, 6, 37][..], -2),
        (&[2, 9, 3, 20][..], 1),
    ] {
        let text = one("Softmax", shape, "", "", &format!(r#""axis": Int({axis})"#));
        passes_on_both(&text, &format!("softmax axis {axis} of {shape:?}"));
    }
    // A fused tail: Softmax over axis 0, then a product with a constant row.
    let tail = r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: [5, 3, 21])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "c", dtype: F32, shape: [21], data: Random(seed: 4, dist: Uniform(low: 0.5, high: 1.5)))],
  nodes: [Node(name: "s", op_type: "Softmax", inputs: ["x"], outputs: ["p"], attributes: { "axis": Int(0) }),
          Node(name: "m", op_type: "Mul", inputs: ["p", "c"], outputs: ["y"])])"#;
    passes_on_both(tail, "softmax axis 0 with a fused product");
}

/// A LayerNormalization (with `bias`) or RMSNormalization on `x [shape]`
/// from `axis`, its scale (and bias) of shape `param`.
fn norm(op: &str, shape: &[usize], axis: i64, param: &[usize], bias: bool) -> String {
    let b = if bias {
        format!(
            r#", Initializer(name: "b", dtype: F32, shape: {param:?}, data: Random(seed: 3, dist: Uniform(low: -0.5, high: 0.5)))"#
        )
    } else {
        String::new()
    };
    format!(
        r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: {shape:?})],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "g", dtype: F32, shape: {param:?}, data: Random(seed: 2, dist: Uniform(low: 0.5, high: 1.5))){b}],
  nodes: [Node(name: "n", op_type: "{op}", inputs: ["x", "g"{}], outputs: ["y"], attributes: {{ "axis": Int({axis}), "epsilon": Float(0.001) }})])"#,
        if bias { r#", "b""# } else { "" }
    )
}

#[test]
fn normalizations_over_several_axes() {
    let cases: &[(&[usize], i64, &[usize])] = &[
        (&[3, 5, 37], 1, &[5, 37]),
        (&[3, 5, 37], -2, &[37]),
        (&[3, 5, 37], 0, &[3, 5, 37]),
        (&[2, 3, 4, 21], 1, &[3, 4, 21]),
        (&[2, 3, 4, 21], -3, &[1, 4, 21]),
        (&[7, 20], 0, &[7, 20]),
    ];
    for &(shape, axis, param) in cases {
        for op in ["LayerNormalization", "RMSNormalization"] {
            let bias = op == "LayerNormalization";
            let text = norm(op, shape, axis, param, bias);
            passes_on_both(
                &text,
                &format!("{op} axis {axis} of {shape:?}, scale {param:?}"),
            );
        }
    }
}

#[test]
fn layer_norm_statistics_over_several_axes() {
    // Axis 1 of [2, 3, 37]: one mean and one inverse deviation per batch
    // item, shape [2, 1, 1].
    let text = r#"Graph(name: "ln", inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 3, 37])],
  outputs: [ValueInfo(name: "y"), ValueInfo(name: "mean"), ValueInfo(name: "inv")],
  initializers: [Initializer(name: "g", dtype: F32, shape: [3, 37], data: Random(seed: 1, dist: Uniform(low: 0.5, high: 1.5)))],
  nodes: [Node(name: "ln", op_type: "LayerNormalization", inputs: ["x", "g"], outputs: ["y", "mean", "inv"], attributes: { "axis": Int(1) })])"#;
    let g = lpu_graph::parse_graph(text, "<test>", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.info("mean").expect("mean").shape, vec![2, 1, 1]);
    for chip in ["tiny", "tsp"] {
        let c = check_on(&g, chip, 3);
        assert!(c.passed, "{chip}: {:?}", c.failures);
        assert_eq!(c.outputs_compared, 3);
    }
}

#[test]
fn operands_broadcast_along_other_axes() {
    // Softmax over axis 1 spelled out (as ONNX's expanded function bodies
    // do): the [4, 1, 21] max and sum broadcast back over the rows.
    let softmax = r#"Graph(name: "sm", inputs: [ValueInfo(name: "x", dtype: F32, shape: [4, 6, 21])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "axes", dtype: I32, shape: [1], data: Inline([1]))],
  nodes: [Node(name: "m", op_type: "ReduceMax", inputs: ["x", "axes"], outputs: ["m"]),
          Node(name: "d", op_type: "Sub", inputs: ["x", "m"], outputs: ["d"]),
          Node(name: "e", op_type: "Exp", inputs: ["d"], outputs: ["e"]),
          Node(name: "s", op_type: "ReduceSum", inputs: ["e", "axes"], outputs: ["s"]),
          Node(name: "y", op_type: "Div", inputs: ["e", "s"], outputs: ["y"])])"#;
    passes_on_both(softmax, "expanded softmax over axis 1");
    // RMS normalization over the last three axes spelled out: a [2, 1, 1, 1]
    // divisor, broadcast across the lanes and then over the rows.
    let rms = r#"Graph(name: "rms", inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 3, 4, 21])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "axes", dtype: I32, shape: [3], data: Inline([1, 2, 3]))],
  nodes: [Node(name: "q", op_type: "Mul", inputs: ["x", "x"], outputs: ["q"]),
          Node(name: "m", op_type: "ReduceMean", inputs: ["q", "axes"], outputs: ["m"]),
          Node(name: "r", op_type: "Sqrt", inputs: ["m"], outputs: ["r"]),
          Node(name: "y", op_type: "Div", inputs: ["x", "r"], outputs: ["y"])])"#;
    passes_on_both(rms, "expanded rms norm over three axes");
    // A graph input and a constant broadcast over the middle axis, and an
    // Expand of a [3, 1, 21] operand.
    let direct = r#"Graph(name: "rows", inputs: [ValueInfo(name: "x", dtype: F32, shape: [3, 4, 21]), ValueInfo(name: "b", dtype: F32, shape: [3, 1, 21])],
  outputs: [ValueInfo(name: "y"), ValueInfo(name: "z")],
  initializers: [Initializer(name: "c", dtype: F32, shape: [1, 4, 1, 21], data: Random(seed: 5, dist: Uniform(low: -1.0, high: 1.0))),
                 Initializer(name: "shape", dtype: I32, shape: [3], data: Inline([3, 4, 21]))],
  nodes: [Node(name: "a", op_type: "Add", inputs: ["x", "b"], outputs: ["a"]),
          Node(name: "u", op_type: "Unsqueeze", inputs: ["a"], outputs: ["u"], attributes: { "axes": Ints([2]) }),
          Node(name: "y", op_type: "Mul", inputs: ["c", "u"], outputs: ["y0"]),
          Node(name: "s", op_type: "Squeeze", inputs: ["y0"], outputs: ["y"], attributes: { "axes": Ints([2]) }),
          Node(name: "z", op_type: "Expand", inputs: ["b", "shape"], outputs: ["z"])])"#;
    passes_on_both(direct, "row broadcasts of an input and a constant");
}
