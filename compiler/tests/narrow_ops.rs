//! `NarrowCast`: conversions to the narrow formats lpu holds widened (fp8,
//! fp4, bf16, e8m0 in f32; int4/int2 in i8), lowered to one VXM `ncvt` per
//! vector. Each graph is compiled for `tiny` and `tsp`, simulated on seeded
//! inputs and compared bit for bit with the reference interpreter, which
//! shares the conversion rules (`lpu_isa::narrow`) but not the lowering.

use lpu_compiler::CompileOptions;
use lpu_isa::narrow::Format;
use lpu_isa::{ChipConfig, Opcode};
use lpu_sim::SimOptions;

/// `x` scaled by `scale` (so that the values reach the format's overflow
/// range), then converted to `format`.
fn graph(format: &str, saturate: i64, dtype: &str, scale: f32) -> String {
    format!(
        r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: {dtype}, shape: [3, 37])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "s", dtype: {dtype}, shape: [], data: Inline([{scale}]))],
  nodes: [Node(name: "scale", op_type: "Mul", inputs: ["x", "s"], outputs: ["xs"]),
          Node(name: "narrow", op_type: "NarrowCast", inputs: ["xs"], outputs: ["y"], attributes: {{ "format": String("{format}"), "saturate": Int({saturate}) }})])"#
    )
}

fn check(format: &str, saturate: i64, dtype: &str, scale: f32) {
    let what = format!("{format} sat={saturate} from {dtype} x{scale}");
    let g = lpu_graph::parse_graph(
        &graph(format, saturate, dtype, scale),
        "<test>",
        std::path::Path::new("."),
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let inputs = lpu_graph::random_inputs(&g, 7);
    let reference = lpu_graph::interpret(&g, &inputs).expect("reference");
    for chip in ["tiny", "tsp"] {
        let cfg = ChipConfig::preset(chip).expect("preset");
        let p = lpu_compiler::compile_with(&g, &cfg, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{what} on {chip}: {e}"))
            .program;
        assert!(
            p.queues
                .iter()
                .flat_map(|q| q.slots.iter())
                .any(|s| s.instr.op == Opcode::NarrowConvert),
            "{what}: no ncvt"
        );
        let o = lpu_sim::simulate(&p, &inputs, &SimOptions::default()).expect("runs");
        assert!(o.hazard.is_none(), "{what} on {chip}: {:?}", o.hazard);
        let (got, want) = (&o.outputs["y"], &reference["y"]);
        assert_eq!(got.values.dtype(), want.values.dtype(), "{what}");
        assert_eq!(
            got.values.to_le_bytes(),
            want.values.to_le_bytes(),
            "{what} on {chip}:\n got {:?}\nwant {:?}",
            got.values,
            want.values
        );
    }
}

#[test]
fn every_format_matches_the_interpreter_bit_for_bit() {
    for f in Format::ALL {
        // Scales that reach overflow (fp8: 448 / 57344; fp4: 6) and the
        // wrap of the small integers.
        let scale = match f {
            Format::E5m2 | Format::E5m2fnuz => 1e5,
            Format::E8m0Up | Format::E8m0Down | Format::E8m0Nearest => 3.0,
            Format::Bf16 => 1.7,
            Format::E2m1 => 9.0,
            Format::I4 | Format::U4 => 20.0,
            Format::I2 | Format::U2 => 5.0,
            _ => 700.0,
        };
        for saturate in [0, 1] {
            check(f.name(), saturate, "F32", scale);
        }
    }
    // From f16 (the ONNX `cast_FLOAT16_to_*` cases).
    check("e4m3fn", 1, "F16", 700.0);
    check("e5m2fnuz", 0, "F16", 3.0);
    check("i4", 1, "F16", 20.0);
}

#[test]
fn an_unknown_format_is_a_clear_error() {
    let g = lpu_graph::parse_graph(
        &graph("e3m4", 1, "F32", 1.0),
        "<test>",
        std::path::Path::new("."),
    );
    let e = g.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("attribute 'format' is \"e3m4\""), "{e}");
}

/// A per-axis `QuantizeLinear` along a row axis (the ONNX `_axis` and
/// int4 cases): one `qnt` per row with that row's scale and zero point,
/// bit for bit the interpreter's.
#[test]
fn per_axis_quantize_along_rows_is_exact() {
    for (axis, shape, n) in [
        (0, "[3, 2, 37]", 3),
        (1, "[2, 3, 37]", 3),
        (-2, "[4, 5, 20]", 5),
    ] {
        let scales: Vec<String> = (0..n)
            .map(|k| format!("{}", 0.02 + 0.01 * k as f32))
            .collect();
        let zps: Vec<String> = (0..n).map(|k| format!("{}", k * 3 - 4)).collect();
        let text = format!(
            r#"Graph(name: "t", inputs: [ValueInfo(name: "x", dtype: F32, shape: {shape})],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "s", dtype: F32, shape: [{n}], data: Inline([{}])),
                 Initializer(name: "z", dtype: I8, shape: [{n}], data: Inline([{}]))],
  nodes: [Node(name: "q", op_type: "QuantizeLinear", inputs: ["x", "s", "z"], outputs: ["y"], attributes: {{ "axis": Int({axis}) }})])"#,
            scales.join(", "),
            zps.join(", ")
        );
        let g = lpu_graph::parse_graph(&text, "<test>", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        let inputs = lpu_graph::random_inputs(&g, 3);
        let reference = lpu_graph::interpret(&g, &inputs).expect("reference");
        for chip in ["tiny", "tsp"] {
            let cfg = ChipConfig::preset(chip).expect("preset");
            let p = lpu_compiler::compile_with(&g, &cfg, &CompileOptions::default())
                .unwrap_or_else(|e| panic!("axis {axis} on {chip}: {e}"))
                .program;
            let o = lpu_sim::simulate(&p, &inputs, &SimOptions::default()).expect("runs");
            assert!(o.hazard.is_none(), "{:?}", o.hazard);
            assert_eq!(
                o.outputs["y"].values, reference["y"].values,
                "axis {axis} on {chip}"
            );
        }
    }
}
