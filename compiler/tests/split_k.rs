//! Split-K matrix products (`Lowerer::plan_items`): a product with few
//! column tiles and a long run of K-tiles spreads its K-tiles over the MXM
//! planes it would leave idle, each part but the last stores its partial
//! sums, and the last adds them before the epilogue. The result is exact
//! for integer products and within the fp16 MXM's tolerance for float ones;
//! a short product is not split.

mod common;

use common::{compile_and_check, parse};
use lpu_isa::{Opcode, Program};

/// `rows x k` int8 activations times a `k x n` int8 constant, int32 out.
fn int8_product(rows: usize, k: usize, n: usize) -> String {
    format!(
        r#"Graph(name: "mm", inputs: [ValueInfo(name: "x", dtype: I8, shape: [{rows}, {k}])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "w", dtype: I8, shape: [{k}, {n}], data: Random(seed: 3, dist: Uniform(low: -127.0, high: 127.0)))],
  nodes: [Node(op_type: "MatMulInteger", inputs: ["x", "w"], outputs: ["y"])])"#
    )
}

/// The same product in f32 (fp16 on the MXM, f32 accumulation).
fn f32_product(rows: usize, k: usize, n: usize) -> String {
    format!(
        r#"Graph(name: "mm", inputs: [ValueInfo(name: "x", dtype: F32, shape: [{rows}, {k}])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "w", dtype: F32, shape: [{k}, {n}], data: Random(seed: 3, dist: Uniform(low: -1.0, high: 1.0)))],
  nodes: [Node(op_type: "MatMul", inputs: ["x", "w"], outputs: ["y"])])"#
    )
}

fn count(p: &Program, op: Opcode) -> usize {
    p.queues
        .iter()
        .flat_map(|q| &q.slots)
        .filter(|s| s.instr.op == op)
        .count()
}

/// Two rows against 16 K-tiles of one 320-lane column tile on `tsp` (4
/// planes): split over all four planes, so each row is emitted four times
/// (three partial sums stored, one result) and added up exactly.
#[test]
fn a_long_narrow_int8_product_splits_over_the_planes_exactly() {
    let g = parse(&int8_product(2, 16 * 320, 320));
    let run = compile_and_check(&g, "tsp", 5);
    assert!(run.check.passed, "{:?}", run.check);
    assert_eq!(run.check.max_abs_err, 0.0);
    assert_eq!(count(&run.program, Opcode::Emit), 2 * 4);
    // The partial sums come back for the last part's epilogue: one add
    // per stored partial row.
    assert_eq!(count(&run.program, Opcode::Add), 2 * 3);
}

#[test]
fn a_split_float_product_agrees_with_the_reference() {
    let g = parse(&f32_product(3, 16 * 320, 320));
    let run = compile_and_check(&g, "tsp", 5);
    assert!(run.check.passed, "{:?}", run.check);
    assert!(count(&run.program, Opcode::Emit) > 3);
}

/// Two K-tiles are too short a product to pay for the partial sums'
/// latency: one emit per row.
#[test]
fn a_short_product_is_not_split() {
    let g = parse(&int8_product(2, 2 * 320, 320));
    let run = compile_and_check(&g, "tsp", 5);
    assert!(run.check.passed, "{:?}", run.check);
    assert_eq!(count(&run.program, Opcode::Emit), 2);
}

/// `tiny` has 8 streams a direction: no room for the partial sums beside
/// the epilogue, so even a long product stays whole.
#[test]
fn a_chip_with_few_streams_does_not_split() {
    let g = parse(&int8_product(1, 64 * 16, 16));
    let run = compile_and_check(&g, "tiny", 5);
    assert!(run.check.passed, "{:?}", run.check);
    assert_eq!(count(&run.program, Opcode::Emit), 1);
}
