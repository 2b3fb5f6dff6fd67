//! `Resize`'s cubic, antialiased, tf_crop_and_resize and
//! keep_aspect_ratio_policy modes in the interpreter: values computed by
//! hand (Keys' cubic with `a = -0.75` at ratio 1/2 is
//! `[-3/32, 19/32, 19/32, -3/32]`) or taken from the ONNX backend tests'
//! expected outputs (which come from onnx's reference implementation).

use std::collections::BTreeMap;
use std::path::Path;

use lpu_graph::{interpret, parse_graph, Tensor};

mod common;
use common::{f32s, Init};

fn run(attrs: &str, ins: &[Init<'_>]) -> Result<Tensor, String> {
    let text = common::one_node_graph("Resize", attrs, ins);
    let g = parse_graph(&text, "t.graph", Path::new(".")).map_err(|e| e.to_string())?;
    let mut out = interpret(&g, &BTreeMap::new()).map_err(|e| e.to_string())?;
    out.remove("y").ok_or_else(|| "no output y".to_string())
}

/// Within 1e-6 relative (the interpreter sums in f32, the values here are
/// exact or f64).
fn close(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (*g as f64 - w).abs() <= 1e-6 * w.abs().max(1.0),
            "{got:?} vs {want:?}"
        );
    }
}

const F: &str = "F32";
const I: &str = "I32";

/// `[1, 2, 4, 8]` along the width of a `[1, 1, 1, 4]` tensor.
const ROW: (&str, &str, &[usize], &[f64]) = ("x", F, &[1, 1, 1, 4], &[1.0, 2.0, 4.0, 8.0]);
const NO: (&str, &str, &[usize], &[f64]) = ("", "", &[], &[]);
const UP2: (&str, &str, &[usize], &[f64]) = ("s", F, &[4], &[1.0, 1.0, 1.0, 2.0]);
const DOWN2: (&str, &str, &[usize], &[f64]) = ("s", F, &[4], &[1.0, 1.0, 1.0, 0.5]);

/// The ONNX tests' 4x4 input, 1..=16.
fn square() -> Vec<f64> {
    (1..=16).map(f64::from).collect()
}

#[test]
fn cubic_asymmetric_upsample_by_hand() {
    // x' = o / 2: whole positions copy; at half positions the taps are
    // (clamped) i0 - 1 ..= i0 + 2 weighted [-3, 19, 19, -3] / 32, e.g.
    // o = 1: (-3 * 1 + 19 * 1 + 19 * 2 - 3 * 4) / 32 = 1.3125.
    let y = run(
        "\"mode\": String(\"cubic\"), \"coordinate_transformation_mode\": String(\"asymmetric\")",
        &[ROW, NO, UP2],
    )
    .unwrap();
    assert_eq!(y.shape, vec![1, 1, 1, 8]);
    assert_eq!(
        f32s(&y),
        vec![1.0, 1.3125, 2.0, 2.71875, 4.0, 6.1875, 8.0, 8.375]
    );
}

#[test]
fn cubic_exclude_outside_renormalizes() {
    // o = 1: the tap at -1 is dropped, (19 * 1 + 19 * 2 - 3 * 4) / 35 = 9/7;
    // o = 7: taps 2..=5, the two past the end dropped: (-3 * 4 + 19 * 8) / 16.
    let y = run(
        "\"mode\": String(\"cubic\"), \"coordinate_transformation_mode\": String(\"asymmetric\"), \"exclude_outside\": Int(1)",
        &[ROW, NO, UP2],
    )
    .unwrap();
    close(
        &f32s(&y),
        &[
            1.0,
            9.0 / 7.0,
            2.0,
            2.71875,
            4.0,
            (-3.0 * 2.0 + 19.0 * 4.0 + 19.0 * 8.0) / 35.0,
            8.0,
            8.75,
        ],
    );
}

#[test]
fn cubic_coefficient_a() {
    // a = -0.5 at ratio 1/2: [-1, 9, 9, -1] / 16; o = 3 reads 1, 2, 4, 8.
    let y = run(
        "\"mode\": String(\"cubic\"), \"coordinate_transformation_mode\": String(\"asymmetric\"), \"cubic_coeff_a\": Float(-0.5)",
        &[ROW, NO, UP2],
    )
    .unwrap();
    assert_eq!(f32s(&y)[3], (-1.0 + 9.0 * 2.0 + 9.0 * 4.0 - 8.0) / 16.0);
}

#[test]
fn linear_antialias_widens_the_triangle() {
    // Scale 1/2, half_pixel: x' = 0.5 and 2.5; the triangle stretched by 2
    // covers i0 - 1 ..= i0 + 2 with weights [1, 3, 3, 1] / 8.
    let y = run(
        "\"mode\": String(\"linear\"), \"antialias\": Int(1)",
        &[ROW, NO, DOWN2],
    )
    .unwrap();
    assert_eq!(y.shape, vec![1, 1, 1, 2]);
    assert_eq!(f32s(&y), vec![1.75, 5.75]);
    // Without antialias: plain linear between the two neighbours.
    let y = run("\"mode\": String(\"linear\")", &[ROW, NO, DOWN2]).unwrap();
    assert_eq!(f32s(&y), vec![1.5, 6.0]);
}

#[test]
fn cubic_antialias_matches_onnx() {
    // test_resize_downsample_scales_cubic_antialias.
    let x = square();
    let y = run(
        "\"mode\": String(\"cubic\"), \"antialias\": Int(1)",
        &[
            ("x", F, &[1, 1, 4, 4], &x),
            NO,
            ("s", F, &[4], &[1.0, 1.0, 0.6, 0.6]),
        ],
    )
    .unwrap();
    assert_eq!(y.shape, vec![1, 1, 2, 2]);
    close(&f32s(&y), &[2.5180721, 4.2858863, 9.589329, 11.357142]);
}

#[test]
fn tf_crop_and_resize_with_extrapolation() {
    // test_resize_tf_crop_and_resize_extrapolation_value: height rows 1.2,
    // 2.4, 3.6 (outside), width columns 1.8, 3.45 (outside), 5.1 (outside).
    let x = square();
    let y = run(
        "\"mode\": String(\"linear\"), \"coordinate_transformation_mode\": String(\"tf_crop_and_resize\"), \"extrapolation_value\": Float(10.0)",
        &[
            ("x", F, &[1, 1, 4, 4], &x),
            ("roi", F, &[8], &[0.0, 0.0, 0.4, 0.6, 1.0, 1.0, 1.2, 1.7]),
            NO,
            ("z", I, &[4], &[1.0, 1.0, 3.0, 3.0]),
        ],
    )
    .unwrap();
    close(
        &f32s(&y),
        &[7.6, 10.0, 10.0, 12.4, 10.0, 10.0, 10.0, 10.0, 10.0],
    );
}

#[test]
fn tf_crop_and_resize_on_axes() {
    // test_resize_tf_crop_and_resize_axes_3_2: the roi and sizes follow
    // the axes (width first).
    let x = square();
    let y = run(
        "\"mode\": String(\"linear\"), \"coordinate_transformation_mode\": String(\"tf_crop_and_resize\"), \"axes\": Ints([3, 2])",
        &[
            ("x", F, &[1, 1, 4, 4], &x),
            ("roi", F, &[4], &[0.6, 0.4, 0.8, 0.6]),
            NO,
            ("z", I, &[2], &[3.0, 3.0]),
        ],
    )
    .unwrap();
    close(&f32s(&y), &[7.6, 7.9, 8.2, 8.8, 9.1, 9.4, 10.0, 10.3, 10.6]);
}

#[test]
fn nearest_crop_fills_outside() {
    // Nearest with tf_crop_and_resize: the roi [0.5, 1.5] of a width 4
    // maps the 3 outputs to 1.5, 3.0 and 4.5 (outside: -1).
    let y = run(
        "\"mode\": String(\"nearest\"), \"coordinate_transformation_mode\": String(\"tf_crop_and_resize\"), \"extrapolation_value\": Float(-1.0), \"axes\": Ints([3])",
        &[
            ROW,
            ("roi", F, &[2], &[0.5, 1.5]),
            NO,
            ("z", I, &[1], &[3.0]),
        ],
    )
    .unwrap();
    assert_eq!(f32s(&y), vec![2.0, 8.0, -1.0]);
}

#[test]
fn keep_aspect_ratio_policy() {
    // [2, 4] to sizes [1, 3]: not_larger takes scale min(1/2, 3/4) = 1/2
    // for both axes, output [1, 2] (test_resize_downsample_sizes_nearest_not_larger).
    let x: Vec<f64> = (1..=8).map(f64::from).collect();
    let xin = ("x", F, &[1, 1, 2, 4][..], &x[..]);
    let z = ("z", I, &[2][..], &[1.0, 3.0][..]);
    let y = run(
        "\"mode\": String(\"nearest\"), \"axes\": Ints([2, 3]), \"keep_aspect_ratio_policy\": String(\"not_larger\")",
        &[xin, NO, NO, z],
    )
    .unwrap();
    assert_eq!(y.shape, vec![1, 1, 1, 2]);
    assert_eq!(f32s(&y), vec![1.0, 3.0]);
    // not_smaller takes 3/4: output [round(1.5), round(3)] = [2, 3].
    let y = run(
        "\"mode\": String(\"nearest\"), \"axes\": Ints([2, 3]), \"keep_aspect_ratio_policy\": String(\"not_smaller\")",
        &[xin, NO, NO, z],
    )
    .unwrap();
    assert_eq!(y.shape, vec![1, 1, 2, 3]);
    let e = run(
        "\"mode\": String(\"nearest\"), \"keep_aspect_ratio_policy\": String(\"fit\")",
        &[xin, NO, NO, ("z", I, &[4], &[1.0, 1.0, 1.0, 3.0])],
    )
    .unwrap_err();
    assert!(
        e.contains("expected stretch, not_larger or not_smaller"),
        "{e}"
    );
}

#[test]
fn cubic_needs_a_float_input() {
    let e = run(
        "\"mode\": String(\"cubic\")",
        &[("x", I, &[1, 1, 1, 4], &[1.0, 2.0, 4.0, 8.0]), NO, UP2],
    )
    .unwrap_err();
    assert!(e.contains("cubic Resize needs a float input"), "{e}");
}
