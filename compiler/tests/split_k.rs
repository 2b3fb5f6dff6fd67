//! Split-K matrix products (`Lowerer::plan_items`): a product with few
//! column tiles and a long run of K-tiles spreads its K-tiles over the MXM
//! planes it would leave idle, each part but the last stores its partial
//! sums, and the last adds them before the epilogue. The result is exact
//! for integer products and within the fp16 MXM's tolerance for float ones;
//! a short product is not split.

mod common;

use common::{compile_and_check, count, parse};
use lpu_isa::Opcode;

/// `rows x k` activations times a `k x n` constant: `MatMulInteger` of
/// int8 operands (int32 out) or `MatMul` of f32 ones (fp16 on the MXM, f32
/// accumulation).
fn product(int8: bool, rows: usize, k: usize, n: usize) -> lpu_graph::Graph {
    let (ty, op, w) = if int8 {
        ("I8", "MatMulInteger", 127.0)
    } else {
        ("F32", "MatMul", 1.0)
    };
    parse(&format!(
        r#"Graph(name: "mm", inputs: [ValueInfo(name: "x", dtype: {ty}, shape: [{rows}, {k}])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "w", dtype: {ty}, shape: [{k}, {n}], data: Random(seed: 3, dist: Uniform(low: -{w:.1}, high: {w:.1})))],
  nodes: [Node(op_type: "{op}", inputs: ["x", "w"], outputs: ["y"])])"#
    ))
}

/// Two rows against 16 K-tiles of one 320-lane column tile on `tsp` (4
/// planes): split over all four planes, so each row is emitted four times
/// (three partial sums stored, one result) and added up exactly.
#[test]
fn a_long_narrow_int8_product_splits_over_the_planes_exactly() {
    let g = product(true, 2, 16 * 320, 320);
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
    let g = product(false, 3, 16 * 320, 320);
    let run = compile_and_check(&g, "tsp", 5);
    assert!(run.check.passed, "{:?}", run.check);
    assert!(count(&run.program, Opcode::Emit) > 3);
}

/// Two K-tiles are too short a product to pay for the partial sums'
/// latency: one emit per row.
#[test]
fn a_short_product_is_not_split() {
    let g = product(true, 2, 2 * 320, 320);
    let run = compile_and_check(&g, "tsp", 5);
    assert!(run.check.passed, "{:?}", run.check);
    assert_eq!(count(&run.program, Opcode::Emit), 2);
}

/// `tiny` has 8 streams a direction: no room for the partial sums beside
/// the epilogue, so even a long product stays whole.
#[test]
fn a_chip_with_few_streams_does_not_split() {
    let g = product(true, 1, 64 * 16, 16);
    let run = compile_and_check(&g, "tiny", 5);
    assert!(run.check.passed, "{:?}", run.check);
    assert_eq!(count(&run.program, Opcode::Emit), 1);
}
