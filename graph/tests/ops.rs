//! Each op's reference interpretation against hand-computed values, through
//! the whole pipeline (parse, validate, infer, interpret).

use std::collections::BTreeMap;
use std::path::Path;

use half::f16;
use lpu_graph::{interpret, parse_graph, Tensor, Values};

mod common;
use common::{f32s, Init};

/// A one-node graph `y = op(a, b, ...)` where each input is an inline
/// initializer `(name, dtype, shape, values)`; returns `y`.
fn run1(op: &str, attrs: &str, ins: &[Init<'_>]) -> Tensor {
    let text = common::one_node_graph(op, attrs, ins);
    let g =
        parse_graph(&text, "<string>", Path::new(".")).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut out = interpret(&g, &BTreeMap::new()).unwrap();
    out.remove("y").unwrap()
}

const F: &str = "F32";

#[test]
fn add_sub_mul_broadcast() {
    let a: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let y = run1(
        "Add",
        "",
        &[("a", F, &[2, 3], a), ("b", F, &[3], &[10.0, 20.0, 30.0])],
    );
    assert_eq!(y.shape, vec![2, 3]);
    assert_eq!(f32s(&y), [11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    let y = run1(
        "Sub",
        "",
        &[("a", F, &[2, 3], a), ("b", F, &[2, 1], &[1.0, 2.0])],
    );
    assert_eq!(f32s(&y), [0.0, 1.0, 2.0, 2.0, 3.0, 4.0]);
    let y = run1(
        "Mul",
        "",
        &[
            ("a", F, &[3, 1], &[1.0, 2.0, 3.0]),
            ("b", F, &[2], &[10.0, 100.0]),
        ],
    );
    assert_eq!(y.shape, vec![3, 2]);
    assert_eq!(f32s(&y), [10.0, 100.0, 20.0, 200.0, 30.0, 300.0]);
    let y = run1(
        "Mul",
        "",
        &[
            ("a", F, &[], &[0.5]),
            ("b", F, &[2, 2], &[2.0, 4.0, 6.0, 8.0]),
        ],
    );
    assert_eq!(f32s(&y), [1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn integer_elementwise_saturates_or_wraps() {
    let y = run1(
        "Add",
        "",
        &[
            ("a", "I8", &[3], &[100.0, -100.0, 5.0]),
            ("b", "I8", &[3], &[100.0, -100.0, -7.0]),
        ],
    );
    assert_eq!(y.values, Values::I8(vec![127, -128, -2]));
    let y = run1(
        "Sub",
        "",
        &[
            ("a", "I8", &[2], &[-100.0, 100.0]),
            ("b", "I8", &[2], &[100.0, -100.0]),
        ],
    );
    assert_eq!(y.values, Values::I8(vec![-128, 127]));
    let y = run1(
        "Mul",
        "",
        &[("a", "I8", &[2], &[16.0, -16.0]), ("b", "I8", &[], &[16.0])],
    );
    assert_eq!(y.values, Values::I8(vec![127, -128]));
    let max = i32::MAX as f64;
    let y = run1(
        "Add",
        "",
        &[
            ("a", "I32", &[2], &[max, 5.0]),
            ("b", "I32", &[2], &[1.0, -7.0]),
        ],
    );
    assert_eq!(y.values, Values::I32(vec![i32::MIN, -2]));
    let y = run1(
        "Mul",
        "",
        &[
            ("a", "I32", &[1], &[65536.0]),
            ("b", "I32", &[1], &[65536.0]),
        ],
    );
    assert_eq!(y.values, Values::I32(vec![0]));
}

#[test]
fn f16_rounds_each_result() {
    let y = run1(
        "Mul",
        "",
        &[("a", "F16", &[1], &[0.1]), ("b", "F16", &[1], &[0.1])],
    );
    let a = f16::from_f32(0.1);
    let want = f16::from_f32(a.to_f32() * a.to_f32());
    assert_eq!(y.values, Values::F16(vec![want]));
    // 2048 + 1 is not representable in f16: rounds to even (2048).
    let y = run1(
        "Add",
        "",
        &[
            ("a", "F16", &[2], &[2048.0, 2048.0]),
            ("b", "F16", &[2], &[1.0, 3.0]),
        ],
    );
    assert_eq!(
        y.values,
        Values::F16(vec![f16::from_f32(2048.0), f16::from_f32(2052.0)])
    );
}

#[test]
fn relu_identity() {
    let y = run1("Relu", "", &[("a", F, &[4], &[-1.5, 0.0, 2.0, -0.0])]);
    assert_eq!(f32s(&y), [0.0, 0.0, 2.0, 0.0]);
    let y = run1("Relu", "", &[("a", "I8", &[3], &[-128.0, 0.0, 127.0])]);
    assert_eq!(y.values, Values::I8(vec![0, 0, 127]));
    let y = run1("Relu", "", &[("a", "I32", &[2], &[-5.0, 5.0])]);
    assert_eq!(y.values, Values::I32(vec![0, 5]));
    let y = run1("Identity", "", &[("a", "I32", &[2], &[-5.0, 5.0])]);
    assert_eq!(y.values, Values::I32(vec![-5, 5]));
}

#[test]
fn matmul_2d_batched_and_vectors() {
    let a: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let b: &[f64] = &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
    let y = run1("MatMul", "", &[("a", F, &[2, 3], a), ("b", F, &[3, 2], b)]);
    assert_eq!(y.shape, vec![2, 2]);
    assert_eq!(f32s(&y), [58.0, 64.0, 139.0, 154.0]);
    // Batched: [2, 1, 3] x [3, 2] -> [2, 1, 2].
    let y = run1(
        "MatMul",
        "",
        &[("a", F, &[2, 1, 3], a), ("b", F, &[3, 2], b)],
    );
    assert_eq!(y.shape, vec![2, 1, 2]);
    assert_eq!(f32s(&y), [58.0, 64.0, 139.0, 154.0]);
    // Broadcast batch: [1, 2, 3] x [2, 3, 1] -> [2, 2, 1].
    let y = run1(
        "MatMul",
        "",
        &[
            ("a", F, &[1, 2, 3], a),
            ("b", F, &[2, 3, 1], &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
        ],
    );
    assert_eq!(y.shape, vec![2, 2, 1]);
    assert_eq!(f32s(&y), [1.0, 4.0, 3.0, 6.0]);
    // Vector x matrix: [3] x [3, 2] -> [2].
    let y = run1(
        "MatMul",
        "",
        &[("a", F, &[3], &[1.0, 2.0, 3.0]), ("b", F, &[3, 2], b)],
    );
    assert_eq!(y.shape, vec![2]);
    assert_eq!(f32s(&y), [58.0, 64.0]);
}

#[test]
fn matmul_accumulates_in_order_without_fma() {
    // ((0 + 1e8*1) + 1*1) + (-1e8*1): 1e8 + 1 rounds back to 1e8 in f32, so 0.
    let y = run1(
        "MatMul",
        "",
        &[
            ("a", F, &[1, 3], &[1e8, 1.0, -1e8]),
            ("b", F, &[3, 1], &[1.0, 1.0, 1.0]),
        ],
    );
    assert_eq!(f32s(&y), [0.0]);
    // Reordered the sum would be 1.
    let y = run1(
        "MatMul",
        "",
        &[
            ("a", F, &[1, 3], &[1e8, -1e8, 1.0]),
            ("b", F, &[3, 1], &[1.0, 1.0, 1.0]),
        ],
    );
    assert_eq!(f32s(&y), [1.0]);
    // f16 accumulates in f32 and rounds once: 2048 + 1 + 1 = 2050 exactly.
    let y = run1(
        "MatMul",
        "",
        &[
            ("a", "F16", &[1, 3], &[2048.0, 1.0, 1.0]),
            ("b", "F16", &[3, 1], &[1.0, 1.0, 1.0]),
        ],
    );
    assert_eq!(y.values, Values::F16(vec![f16::from_f32(2050.0)]));
}

#[test]
fn gemm_trans_alpha_beta_and_c_broadcast() {
    let a: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let b: &[f64] = &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
    // Plain, C [2] broadcast over rows.
    let y = run1(
        "Gemm",
        "",
        &[
            ("a", F, &[2, 3], a),
            ("b", F, &[3, 2], b),
            ("c", F, &[2], &[1.0, 2.0]),
        ],
    );
    assert_eq!(f32s(&y), [59.0, 66.0, 140.0, 156.0]);
    // transA: A stored [3, 2] = A^T; transB: B stored [2, 3] = B^T.
    let at: &[f64] = &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
    let bt: &[f64] = &[7.0, 9.0, 11.0, 8.0, 10.0, 12.0];
    let y = run1(
        "Gemm",
        "\"transA\": Int(1), \"transB\": Int(1), \"alpha\": Float(0.5), \"beta\": Float(2.0)",
        &[
            ("a", F, &[3, 2], at),
            ("b", F, &[2, 3], bt),
            ("c", F, &[2, 1], &[1.0, -1.0]),
        ],
    );
    assert_eq!(f32s(&y), [31.0, 34.0, 67.5, 75.0]);
    // No C.
    let y = run1(
        "Gemm",
        "\"alpha\": Float(2.0)",
        &[("a", F, &[2, 3], a), ("b", F, &[3, 2], b)],
    );
    assert_eq!(f32s(&y), [116.0, 128.0, 278.0, 308.0]);
    // Omitted optional input "" is the same as no C.
    let y = run1(
        "Gemm",
        "",
        &[
            ("a", F, &[2, 3], a),
            ("b", F, &[3, 2], b),
            ("", F, &[], &[]),
        ],
    );
    assert_eq!(f32s(&y), [58.0, 64.0, 139.0, 154.0]);
}

#[test]
fn cast() {
    let x: &[f64] = &[1.7, -1.7, 300.0, -1e10, 0.5];
    let y = run1("Cast", "\"to\": Int(3)", &[("a", F, &[5], x)]);
    assert_eq!(y.values, Values::I8(vec![1, -1, 127, -128, 0]));
    let y = run1("Cast", "\"to\": Int(6)", &[("a", F, &[5], x)]);
    assert_eq!(y.values, Values::I32(vec![1, -1, 300, i32::MIN, 0]));
    let y = run1(
        "Cast",
        "\"to\": Int(10)",
        &[("a", F, &[2], &[1.0 / 3.0, 65520.0])],
    );
    assert_eq!(
        y.values,
        Values::F16(vec![f16::from_f32(1.0 / 3.0), f16::INFINITY])
    );
    let y = run1(
        "Cast",
        "\"to\": Int(3)",
        &[("a", "I32", &[3], &[1000.0, -1000.0, 7.0])],
    );
    assert_eq!(y.values, Values::I8(vec![127, -128, 7]));
    let y = run1(
        "Cast",
        "\"to\": Int(1)",
        &[("a", "I32", &[2], &[16777217.0, -3.0])],
    );
    assert_eq!(f32s(&y), [16777216.0, -3.0]);
    let y = run1("Cast", "\"to\": Int(10)", &[("a", "I32", &[1], &[2049.0])]);
    assert_eq!(y.values, Values::F16(vec![f16::from_f32(2048.0)]));
}

#[test]
fn quantize_rounds_half_to_even_and_saturates() {
    let x: &[f64] = &[2.5, -2.5, 3.5, 0.5, 1.5, 1000.0, -1000.0, 0.4];
    let y = run1(
        "QuantizeLinear",
        "",
        &[("x", F, &[8], x), ("s", F, &[], &[1.0])],
    );
    assert_eq!(y.values, Values::I8(vec![2, -2, 4, 0, 2, 127, -128, 0]));
    let y = run1(
        "QuantizeLinear",
        "",
        &[
            ("x", F, &[4], &[2.5, 1.0, 126.0, -1.0]),
            ("s", F, &[1], &[0.5]),
            ("z", "I8", &[], &[3.0]),
        ],
    );
    assert_eq!(y.values, Values::I8(vec![8, 5, 127, 1]));
}

#[test]
fn dequantize() {
    let y = run1(
        "DequantizeLinear",
        "",
        &[
            ("x", "I8", &[3], &[-128.0, 0.0, 127.0]),
            ("s", F, &[], &[0.5]),
            ("z", "I8", &[], &[-128.0]),
        ],
    );
    assert_eq!(f32s(&y), [0.0, 64.0, 127.5]);
    let y = run1(
        "DequantizeLinear",
        "",
        &[("x", "I32", &[2], &[1000.0, -3.0]), ("s", F, &[], &[0.25])],
    );
    assert_eq!(f32s(&y), [250.0, -0.75]);
}

#[test]
fn matmul_integer_with_zero_points() {
    let y = run1(
        "MatMulInteger",
        "",
        &[
            ("a", "I8", &[2, 2], &[1.0, 2.0, 3.0, 4.0]),
            ("b", "I8", &[2, 2], &[5.0, 6.0, 7.0, 8.0]),
            ("az", "I8", &[], &[1.0]),
            ("bz", "I8", &[1], &[2.0]),
        ],
    );
    assert_eq!(y.values, Values::I32(vec![5, 6, 21, 26]));
    let y = run1(
        "MatMulInteger",
        "",
        &[
            ("a", "I8", &[1, 2], &[-128.0, -128.0]),
            ("b", "I8", &[2, 1], &[-128.0, 127.0]),
        ],
    );
    assert_eq!(y.values, Values::I32(vec![16384 - 16256]));
}
