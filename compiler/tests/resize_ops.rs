//! `Resize` end to end beyond nearest and bilinear (`cnn_ops.rs`): cubic
//! (with `cubic_coeff_a`, `exclude_outside`, `antialias`), antialiased
//! linear, `tf_crop_and_resize` with an extrapolation value, and
//! `keep_aspect_ratio_policy`. Each graph is compiled for `tiny` (16 lanes,
//! so 17 channels straddle two vectors), simulated with seeded inputs and
//! compared with the reference interpreter: the lowering takes the
//! interpreter's taps and weights in its order, so the results are equal.

use lpu_isa::{ChipConfig, Opcode, Program};

mod common;

/// Compiles and simulates `text` on `chip`; returns the check and the
/// program.
fn run(text: &str, chip: &str) -> (lpu_sim::check::Check, Program) {
    let r = common::compile_and_check(&common::parse(text), chip, 3);
    (r.check, r.program)
}

/// Issued instructions of opcode `op` (a REPEAT after one counts its
/// repetitions).
fn count(p: &Program, op: Opcode) -> i64 {
    count_if(p, op, |_| true)
}

/// [`count`] of the instructions of `op` that `keep` accepts.
fn count_if(p: &Program, op: Opcode, keep: impl Fn(&lpu_isa::Instr) -> bool) -> i64 {
    let mut n = 0;
    for q in &p.queues {
        for (k, s) in q.slots.iter().enumerate() {
            if s.instr.op == op && keep(&s.instr) {
                n += 1;
                if let Some(r) = q.slots.get(k + 1).filter(|r| r.instr.op == Opcode::Repeat) {
                    n += r.instr.arg;
                }
            }
        }
    }
    n
}

/// A Resize of `x` (`[n, 17, 4, 6]`) with the given attributes and
/// constant inputs (`(roi, scales, sizes)` as RON lists, `""` when
/// omitted).
fn resize_graph(n: usize, attrs: &str, roi: &str, scales: &str, sizes: &str) -> String {
    let mut inits = Vec::new();
    let mut names = Vec::new();
    for (name, dtype, v) in [
        ("roi", "F32", roi),
        ("scales", "F32", scales),
        ("sizes", "I32", sizes),
    ] {
        if v.is_empty() {
            names.push("\"\"".to_string());
        } else {
            let len = v.split(',').count();
            inits.push(format!(
                "Initializer(name: \"{name}\", dtype: {dtype}, shape: [{len}], data: Inline({v}))"
            ));
            names.push(format!("\"{name}\""));
        }
    }
    format!(
        r#"Graph(name: "resize", inputs: [ValueInfo(name: "x", dtype: F32, shape: [{n}, 17, 4, 6])],
  outputs: [ValueInfo(name: "y")],
  initializers: [{}],
  nodes: [Node(op_type: "Resize", inputs: ["x", {}], outputs: ["y"], attributes: {{ {attrs} }})])"#,
        inits.join(", "),
        names.join(", ")
    )
}

fn assert_exact(text: &str, chip: &str, what: &str) -> Program {
    let (check, p) = run(text, chip);
    assert!(check.passed, "{what}: {check:?}");
    assert_eq!(check.outputs_compared, 1, "{what}");
    assert_eq!(check.max_abs_err, 0.0, "{what}");
    p
}

#[test]
fn cubic_modes_match_the_interpreter() {
    for (attrs, scales) in [
        (r#""mode": String("cubic")"#, "[1.0, 1.0, 2.0, 1.5]"),
        (
            r#""mode": String("cubic"), "coordinate_transformation_mode": String("align_corners")"#,
            "[1.0, 1.0, 0.75, 0.5]",
        ),
        (
            r#""mode": String("cubic"), "coordinate_transformation_mode": String("asymmetric")"#,
            "[1.0, 1.0, 1.5, 2.0]",
        ),
        (
            r#""mode": String("cubic"), "cubic_coeff_a": Float(-0.5), "exclude_outside": Int(1)"#,
            "[1.0, 1.0, 1.5, 0.8]",
        ),
        // Eight width taps per output (scale 1/2): partial sums spill.
        (
            r#""mode": String("cubic"), "antialias": Int(1)"#,
            "[1.0, 1.0, 0.75, 0.5]",
        ),
        (
            r#""mode": String("linear"), "antialias": Int(1)"#,
            "[1.0, 1.0, 0.5, 0.34]",
        ),
    ] {
        let text = resize_graph(2, attrs, "", scales, "");
        assert_exact(&text, "tiny", attrs);
    }
}

#[test]
fn cubic_costs_one_vxm_op_per_tap() {
    // 4 x 4 taps per output vector: 16 + 4 `muli`, 12 + 3 `add`;
    // 8 x 9 output pixels of 2 vectors each. (A `muli 1.0` is a retiming
    // step between a read and its consumer, not a tap.)
    let text = resize_graph(
        1,
        r#""mode": String("cubic")"#,
        "",
        "[1.0, 1.0, 2.0, 1.5]",
        "",
    );
    let p = assert_exact(&text, "tiny", "cubic");
    let vectors = 8 * 9 * 2;
    assert_eq!(count_if(&p, Opcode::MulImm, |i| i.imm != 1.0), 20 * vectors);
    assert_eq!(count(&p, Opcode::Add), 15 * vectors);
    // The same on the full chip.
    assert_exact(&text, "tsp", "cubic on tsp");
}

#[test]
fn tf_crop_and_resize_extrapolates() {
    // The crop runs past the input's bottom and right: those pixels are
    // copies of the extrapolation row.
    for (mode, extra) in [("linear", "2.5"), ("nearest", "-1.0"), ("cubic", "0.0")] {
        let attrs = format!(
            r#""mode": String("{mode}"), "coordinate_transformation_mode": String("tf_crop_and_resize"), "extrapolation_value": Float({extra})"#
        );
        let text = resize_graph(
            1,
            &attrs,
            "[0.0, 0.0, 0.25, 0.1, 1.0, 1.0, 1.3, 1.2]",
            "",
            "[1, 17, 5, 7]",
        );
        assert_exact(&text, "tiny", &attrs);
    }
    // On the resized axes only.
    let text = resize_graph(
        2,
        r#""mode": String("linear"), "coordinate_transformation_mode": String("tf_crop_and_resize"), "axes": Ints([3, 2])"#,
        "[0.2, 0.4, 0.9, 0.6]",
        "",
        "[5, 3]",
    );
    assert_exact(&text, "tiny", "axes [3, 2]");
}

#[test]
fn keep_aspect_ratio_policy_resizes_uniformly() {
    for policy in ["not_larger", "not_smaller"] {
        let attrs = format!(
            r#""mode": String("nearest"), "axes": Ints([2, 3]), "keep_aspect_ratio_policy": String("{policy}")"#
        );
        let text = resize_graph(1, &attrs, "", "", "[7, 8]");
        assert_exact(&text, "tiny", policy);
    }
}

#[test]
fn cropping_the_channels_is_not_lowered() {
    let text = resize_graph(
        1,
        r#""mode": String("linear"), "coordinate_transformation_mode": String("tf_crop_and_resize")"#,
        "[0.0, 0.2, 0.0, 0.0, 1.0, 0.8, 1.0, 1.0]",
        "",
        "[1, 17, 4, 6]",
    );
    let g = lpu_graph::parse_graph(&text, "<test>", std::path::Path::new(".")).unwrap();
    let e = lpu_compiler::compile(&g, &ChipConfig::preset("tiny").unwrap())
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("height and width only"), "{e}");
}
