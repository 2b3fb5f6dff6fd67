//! Layout changes that move elements to other lanes (`lower/lanes.rs`):
//! Reshape, Flatten, Squeeze and Unsqueeze that change the tiling, Concat,
//! Split and Slice along the last axis, and Transpose. Each graph is
//! compiled for `tiny` (16 lanes) and `tsp` (320 lanes), simulated and
//! compared with the reference interpreter *bit for bit* (a layout change
//! must not touch a value: `-0.0`, infinities and NaN payloads included).

use lpu_graph::Tensor;
use lpu_isa::{ChipConfig, DType, Values};
use lpu_sim::SimOptions;
use std::collections::BTreeMap;

/// Compiles `g` for `chip`, simulates it on `inputs`, asserts there is no
/// hazard and that every output equals the interpreter's bit for bit.
fn check_exact(g: &lpu_graph::Graph, chip: &str, inputs: &BTreeMap<String, Tensor>, what: &str) {
    let cfg = ChipConfig::preset(chip).expect("preset");
    let p = lpu_compiler::compile(g, &cfg)
        .unwrap_or_else(|e| panic!("{what} on {chip}: {e}"))
        .program;
    let o = lpu_sim::simulate(&p, inputs, &SimOptions::default()).expect("runs");
    assert!(o.hazard.is_none(), "{what} on {chip}: {:?}", o.hazard);
    let reference = lpu_graph::interpret(g, inputs).expect("reference");
    for (name, want) in &reference {
        if !g.outputs.contains(name) {
            continue;
        }
        let got = o
            .outputs
            .get(name)
            .unwrap_or_else(|| panic!("{what}: no {name}"));
        assert_eq!(got.shape, want.shape, "{what} on {chip}: shape of {name}");
        assert_eq!(got.values.dtype(), want.values.dtype(), "{what}: dtype");
        assert!(
            got.values.to_le_bytes() == want.values.to_le_bytes(),
            "{what} on {chip}: {name} differs:\n got {:?}\nwant {:?}",
            got.values,
            want.values
        );
    }
}

fn parse(text: &str) -> lpu_graph::Graph {
    lpu_graph::parse_graph(text, "<test>", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Checks `text` on both chips with seeded random inputs.
fn check(text: &str, what: &str) {
    let g = parse(text);
    let inputs = lpu_graph::random_inputs(&g, 7);
    for chip in ["tiny", "tsp"] {
        check_exact(&g, chip, &inputs, what);
    }
}

/// One node on input `x` (`dtype`, `shape`), extra inputs and attributes.
fn one(op: &str, dtype: &str, shape: &[usize], extra: &str, inits: &str, attrs: &str) -> String {
    format!(
        r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: {dtype}, shape: {shape:?})],
  outputs: [ValueInfo(name: "y")],
  initializers: [{inits}],
  nodes: [Node(op_type: "{op}", inputs: ["x"{extra}], outputs: ["y"], attributes: {{ {attrs} }})])"#
    )
}

/// A Reshape of `x` to `to`.
fn reshape(dtype: &str, from: &[usize], to: &[usize]) -> String {
    let init = format!(
        r#"Initializer(name: "s", dtype: I32, shape: [{}], data: Inline({:?}))"#,
        to.len(),
        to.iter().map(|&d| d as f64).collect::<Vec<_>>()
    );
    one("Reshape", dtype, from, r#", "s""#, &init, "")
}

#[test]
fn reshapes_that_change_the_tiling() {
    for dtype in ["F32", "F16", "I8", "I32"] {
        check(
            &reshape(dtype, &[3, 24], &[4, 18]),
            &format!("reshape {dtype}"),
        );
        check(
            &reshape(dtype, &[5, 7], &[35]),
            &format!("flatten to 1-D {dtype}"),
        );
        check(
            &reshape(dtype, &[2, 37], &[37, 2]),
            &format!("narrow {dtype}"),
        );
    }
    // Rows longer than a tsp vector (several pieces per vector on tiny).
    check(&reshape("F32", &[2, 333], &[3, 222]), "wide reshape");
    check(&reshape("F16", &[660], &[2, 330]), "1-D to 2-D f16");
}

#[test]
fn flatten_squeeze_and_unsqueeze() {
    check(
        &one("Flatten", "F32", &[2, 3, 5, 7], "", "", r#""axis": Int(2)"#),
        "flatten axis 2",
    );
    check(
        &one("Flatten", "I8", &[3, 5, 7], "", "", r#""axis": Int(1)"#),
        "flatten i8",
    );
    let axes =
        |v: &str| format!(r#"Initializer(name: "a", dtype: I32, shape: [1], data: Inline([{v}]))"#);
    check(
        &one("Unsqueeze", "F32", &[3, 19], r#", "a""#, &axes("2.0"), ""),
        "unsqueeze last",
    );
    check(
        &one("Squeeze", "F16", &[3, 19, 1], r#", "a""#, &axes("2.0"), ""),
        "squeeze last",
    );
}

#[test]
fn concat_split_and_slice_along_the_last_axis() {
    for dtype in ["F32", "F16", "I8", "I32"] {
        let concat = format!(
            r#"Graph(name: "t", inputs: [ValueInfo(name: "a", dtype: {dtype}, shape: [3, 20]), ValueInfo(name: "b", dtype: {dtype}, shape: [3, 13]), ValueInfo(name: "c", dtype: {dtype}, shape: [3, 5])],
  outputs: [ValueInfo(name: "y")],
  nodes: [Node(op_type: "Concat", inputs: ["a", "b", "c"], outputs: ["y"], attributes: {{ "axis": Int(-1) }})])"#
        );
        check(&concat, &format!("concat {dtype}"));
        let split = format!(
            r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: {dtype}, shape: [3, 37])],
  outputs: [ValueInfo(name: "y"), ValueInfo(name: "z")],
  initializers: [Initializer(name: "s", dtype: I32, shape: [2], data: Inline([10.0, 27.0]))],
  nodes: [Node(op_type: "Split", inputs: ["x", "s"], outputs: ["y", "z"], attributes: {{ "axis": Int(1) }})])"#
        );
        check(&split, &format!("split {dtype}"));
    }
    // Along a row axis and along a middle axis.
    let concat0 = r#"Graph(name: "t", inputs: [ValueInfo(name: "a", dtype: F32, shape: [2, 3, 17]), ValueInfo(name: "b", dtype: F32, shape: [2, 4, 17])],
  outputs: [ValueInfo(name: "y")],
  nodes: [Node(op_type: "Concat", inputs: ["a", "b"], outputs: ["y"], attributes: { "axis": Int(1) })])"#;
    check(concat0, "concat axis 1");
    let slice = r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: [4, 41])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "st", dtype: I32, shape: [1], data: Inline([3.0])), Initializer(name: "en", dtype: I32, shape: [1], data: Inline([38.0])), Initializer(name: "ax", dtype: I32, shape: [1], data: Inline([1.0])), Initializer(name: "sp", dtype: I32, shape: [1], data: Inline([2.0]))],
  nodes: [Node(op_type: "Slice", inputs: ["x", "st", "en", "ax", "sp"], outputs: ["y"])])"#;
    check(slice, "strided slice along lanes");
}

#[test]
fn transposes() {
    check(
        &one(
            "Transpose",
            "F32",
            &[3, 5, 7],
            "",
            "",
            r#""perm": Ints([0, 2, 1])"#,
        ),
        "swap last two",
    );
    check(&one("Transpose", "F16", &[6, 19], "", "", ""), "2-D f16");
    check(
        &one(
            "Transpose",
            "I8",
            &[2, 3, 4],
            "",
            "",
            r#""perm": Ints([1, 0, 2])"#,
        ),
        "keeps last axis",
    );
}

#[test]
fn reshape_feeding_a_matmul() {
    let text = r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: [4, 27])],
  outputs: [ValueInfo(name: "y")],
  initializers: [
    Initializer(name: "s", dtype: I32, shape: [2], data: Inline([6.0, 18.0])),
    Initializer(name: "w", dtype: F32, shape: [18, 21], data: Random(seed: 2, dist: Normal(mean: 0.0, std: 0.3)))],
  nodes: [
    Node(op_type: "Relu", inputs: ["x"], outputs: ["r"]),
    Node(op_type: "Reshape", inputs: ["r", "s"], outputs: ["f"]),
    Node(op_type: "MatMul", inputs: ["f", "w"], outputs: ["y"])])"#;
    let g = parse(text);
    let inputs = lpu_graph::random_inputs(&g, 3);
    for chip in ["tiny", "tsp"] {
        let cfg = ChipConfig::preset(chip).expect("preset");
        let p = lpu_compiler::compile(&g, &cfg)
            .unwrap_or_else(|e| panic!("{e}"))
            .program;
        let o = lpu_sim::simulate(&p, &inputs, &SimOptions::default()).expect("runs");
        assert!(o.hazard.is_none(), "{:?}", o.hazard);
        let reference = lpu_graph::interpret(&g, &inputs).expect("reference");
        let c = lpu_sim::check::compare(&o.outputs, &reference);
        assert!(c.passed, "{chip}: {:?}", c.failures);
    }
}

#[test]
fn special_values_move_bit_for_bit() {
    let specials = [
        -0.0f32,
        0.0,
        f32::NAN,
        f32::from_bits(0x7fc0_1234),
        f32::from_bits(0xffa0_0001),
        f32::INFINITY,
        f32::NEG_INFINITY,
        1.5,
        -2.25,
        f32::MIN_POSITIVE / 2.0,
    ];
    let n = 3 * 23;
    let f: Vec<f32> = (0..n).map(|i| specials[i % specials.len()]).collect();
    let h: Vec<half::f16> = (0..n)
        .map(|i| match i % 5 {
            0 => half::f16::NEG_ZERO,
            1 => half::f16::from_bits(0x7e01),
            2 => half::f16::NEG_INFINITY,
            3 => half::f16::from_f32(-3.5),
            _ => half::f16::from_bits(0x0001),
        })
        .collect();
    for (dtype, values) in [("F32", Values::F32(f)), ("F16", Values::F16(h))] {
        let text = reshape(dtype, &[3, 23], &[23, 3]);
        let g = parse(&text);
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "x".to_string(),
            Tensor::new(vec![3, 23], values).expect("tensor"),
        );
        for chip in ["tiny", "tsp"] {
            check_exact(&g, chip, &inputs, &format!("special {dtype}"));
        }
        let _ = DType::F32;
    }
}

#[test]
fn many_shapes_and_chained_moves() {
    for dtype in ["F32", "F16", "I8"] {
        check(
            &one("Transpose", dtype, &[19, 23], "", "", ""),
            &format!("transpose 19x23 {dtype}"),
        );
        check(
            &reshape(dtype, &[7, 45], &[15, 21]),
            &format!("reshape 7x45 {dtype}"),
        );
        check(
            &reshape(dtype, &[3, 5, 21], &[5, 63]),
            &format!("reshape 3x5x21 {dtype}"),
        );
        // Lane moves feeding lane moves (and freed storage reused).
        let chain = format!(
            r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: {dtype}, shape: [6, 35]), ValueInfo(name: "z", dtype: {dtype}, shape: [7, 11])],
  outputs: [ValueInfo(name: "y"), ValueInfo(name: "w")],
  initializers: [Initializer(name: "s", dtype: I32, shape: [2], data: Inline([7.0, 30.0]))],
  nodes: [
    Node(op_type: "Reshape", inputs: ["x", "s"], outputs: ["r"]),
    Node(op_type: "Concat", inputs: ["z", "r", "z"], outputs: ["c"], attributes: {{ "axis": Int(1) }}),
    Node(op_type: "Transpose", inputs: ["c"], outputs: ["t"]),
    Node(op_type: "Split", inputs: ["t"], outputs: ["y", "w"], attributes: {{ "axis": Int(1), "num_outputs": Int(2) }})])"#
        );
        check(&chain, &format!("chained moves {dtype}"));
    }
}

#[test]
fn reshapes_whose_tiles_line_up_are_views() {
    // [4, 96] -> [8, 48] on 16 lanes: every result vector is a whole input
    // vector, so the reshape costs no instructions; it must still be right
    // when it feeds a computation and when its input dies.
    let text = r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: [4, 96])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "s", dtype: I32, shape: [2], data: Inline([8.0, 48.0]))],
  nodes: [
    Node(op_type: "Relu", inputs: ["x"], outputs: ["r"]),
    Node(op_type: "Reshape", inputs: ["r", "s"], outputs: ["f"]),
    Node(op_type: "Add", inputs: ["f", "f"], outputs: ["y"])])"#;
    check(text, "aligned reshape");
    let g = parse(text);
    let cfg = ChipConfig::preset("tiny").expect("preset");
    let p = lpu_compiler::compile(&g, &cfg).expect("compiles").program;
    let reshape_instrs = p
        .queues
        .iter()
        .flat_map(|q| &q.slots)
        .filter(|s| {
            s.node
                .is_some_and(|n| g.nodes[n as usize].op_type == "Reshape")
        })
        .count();
    assert_eq!(reshape_instrs, 0, "an aligned reshape is a view");
}

/// Lane moves shift on the SXM nearest their source vector: on `tsp`
/// (an SXM at each edge) a transpose whose 60 rows sit on MEM slices in
/// both halves shifts on both SXMs (all on the western one before), and
/// still moves every value exactly.
#[test]
fn lane_moves_use_the_nearest_sxm() {
    let g = parse(&one("Transpose", "F32", &[60, 23], "", "", ""));
    let chip = ChipConfig::preset("tsp").expect("preset");
    let p = lpu_compiler::compile(&g, &chip).expect("compiles").program;
    let sxm = chip.positions_of(lpu_isa::config::SliceKind::Sxm);
    assert_eq!(sxm.len(), 2, "tsp has an SXM at each edge");
    let shifts_on = |slice: u16| -> usize {
        p.queues
            .iter()
            .filter(|q| q.queue.unit == lpu_isa::Unit::Sxm && q.queue.slice == slice)
            .flat_map(|q| &q.slots)
            .filter(|s| s.instr.op == lpu_isa::Opcode::Shift)
            .count()
    };
    let (west, east) = (shifts_on(sxm[0]), shifts_on(sxm[1]));
    assert!(west > 0 && east > 0, "shifts west {west}, east {east}");
    let inputs = lpu_graph::random_inputs(&g, 7);
    check_exact(&g, "tsp", &inputs, "transpose over both SXMs");
}
