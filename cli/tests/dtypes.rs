//! fp16 and conversion paths end to end: compile for both presets, simulate,
//! and compare with the reference interpreter.

use lpu_isa::ChipConfig;
use lpu_sim::SimOptions;
use std::path::Path;

fn run(file: &str, chip: &str) -> lpu_sim::check::Check {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file);
    let g = lpu_graph::load_graph(&path).unwrap_or_else(|e| panic!("{e}"));
    let chip = ChipConfig::preset(chip).expect("preset");
    let p = lpu_compiler::compile(&g, &chip)
        .unwrap_or_else(|e| panic!("{e}"))
        .program;
    let inputs = lpu_graph::random_inputs(&g, 5);
    let o = lpu_sim::simulate(&p, &inputs, &SimOptions::default()).expect("runs");
    assert!(o.hazard.is_none(), "{:?}", o.hazard);
    let reference = lpu_graph::interpret(&g, &inputs).expect("reference");
    lpu_sim::check::compare(&o.outputs, &reference)
}

#[test]
fn fp16_mlp_matches_the_reference() {
    for chip in ["tiny", "tsp"] {
        let c = run("mlp_f16.graph", chip);
        assert!(c.passed, "{chip}: {:?}", c.failures);
        // fp16 outputs: within a few fp16 ulps of values below 4.
        assert!(c.max_abs_err < 4e-3, "{chip}: {}", c.max_abs_err);
    }
}

#[test]
fn casts_identity_and_scalar_broadcast_are_exact() {
    for chip in ["tiny", "tsp"] {
        let c = run("cast_identity_scalar.graph", chip);
        assert!(c.passed, "{chip}: {:?}", c.failures);
        // Only elementwise VXM arithmetic: the same rounding as the reference.
        assert_eq!(c.max_abs_err, 0.0, "{chip}");
    }
}
