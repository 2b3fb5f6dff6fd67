//! Split-K matrix products (`Lowerer::plan_items`): a product with few
//! column tiles and a long run of K-tiles spreads its K-tiles over the MXM
//! planes it would leave idle, each part but the last stores its partial
//! sums, and the last adds them before the epilogue. The result is exact
//! for integer products and within the fp16 MXM's tolerance for float ones;
//! a short product is not split.

mod common;

use common::{compile_and_check, count, parse, Run};
use lpu_isa::Opcode;

/// `rows x k` activations times a `k x n` constant of type `ty`:
/// `MatMulInteger` of int8 operands (int32 out), or `MatMul` of f32 or
/// f16 ones (fp16 on the MXM, fp32 accumulation, the result emitted in
/// the operands' type).
fn product(ty: &str, rows: usize, k: usize, n: usize) -> lpu_graph::Graph {
    let (op, w) = if ty == "I8" {
        ("MatMulInteger", 127.0)
    } else {
        ("MatMul", 1.0)
    };
    parse(&format!(
        r#"Graph(name: "mm", inputs: [ValueInfo(name: "x", dtype: {ty}, shape: [{rows}, {k}])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "w", dtype: {ty}, shape: [{k}, {n}], data: Random(seed: 3, dist: Uniform(low: -{w:.1}, high: {w:.1})))],
  nodes: [Node(op_type: "{op}", inputs: ["x", "w"], outputs: ["y"])])"#
    ))
}

/// [`product`] compiled for `chip` and simulated, checked against the
/// reference interpreter (integers exactly, floats within tolerance).
fn checked(ty: &str, (rows, k, n): (usize, usize, usize), chip: &str) -> Run {
    let run = compile_and_check(&product(ty, rows, k, n), chip, 5);
    assert!(run.check.passed, "{ty} on {chip}: {:?}", run.check);
    run
}

/// Two rows against 16 K-tiles of one 320-lane column tile on `tsp` (4
/// planes): split over all four planes, so each row is emitted four times
/// (three partial sums stored, one result) and added up exactly.
#[test]
fn a_long_narrow_int8_product_splits_over_the_planes_exactly() {
    let run = checked("I8", (2, 16 * 320, 320), "tsp");
    assert_eq!(run.check.max_abs_err, 0.0);
    assert_eq!(count(&run.program, Opcode::Emit), 2 * 4);
    // The partial sums come back for the last part's epilogue: one add
    // per stored partial row.
    assert_eq!(count(&run.program, Opcode::Add), 2 * 3);
}

#[test]
fn a_split_float_product_agrees_with_the_reference() {
    let run = checked("F32", (3, 16 * 320, 320), "tsp");
    assert_eq!(count(&run.program, Opcode::Emit), 3 * 4);
}

/// An fp16 product's parts travel and add in fp32 and are rounded to
/// fp16 once, after the last add (one `cvt` per row).
#[test]
fn a_split_fp16_product_adds_its_parts_in_fp32() {
    let run = checked("F16", (2, 16 * 320, 320), "tsp");
    assert_eq!(count(&run.program, Opcode::Emit), 2 * 4);
    assert_eq!(count(&run.program, Opcode::Convert), 2);
    let emits_f32 = run
        .program
        .queues
        .iter()
        .flat_map(|q| &q.slots)
        .filter(|s| s.instr.op == Opcode::Emit)
        .all(|s| s.instr.ty == lpu_isa::DType::F32);
    assert!(emits_f32);
}

/// Two K-tiles are too short a product to pay for the partial sums'
/// latency: one emit per row.
#[test]
fn a_short_product_is_not_split() {
    let run = checked("I8", (2, 2 * 320, 320), "tsp");
    assert_eq!(count(&run.program, Opcode::Emit), 2);
}

/// `tiny` has 8 streams a direction, fewer than the 16 that splits need
/// (room for the partial sums beside the epilogue), so even a long
/// product stays whole.
#[test]
fn a_chip_with_few_streams_does_not_split() {
    let run = checked("I8", (1, 64 * 16, 16), "tiny");
    assert_eq!(count(&run.program, Opcode::Emit), 1);
}
