//! `--precision fp32-split` through `lpc compile` and `lpsim run`: the
//! flag is accepted, `--check` passes with errors at f32 rounding, the
//! report names the split products, and the cost shows in the cycles and
//! the MXM instructions.

mod common;

use common::{lpc, lpsim, run_ok, TempDir, MLP};

fn report(precision: &str) -> serde_json::Value {
    let r = run_ok(lpsim().args(["run", MLP, "--precision", precision, "--check", "--json"]));
    serde_json::from_str(&r.stdout).expect("JSON report")
}

#[test]
fn lpsim_run_checks_the_split_products() {
    let (fp32, split) = (report("fp32"), report("fp32-split"));
    assert_eq!(split["precision"], "fp32-split");
    assert_eq!(split["check"]["passed"], true);
    let err = |r: &serde_json::Value| r["check"]["max_abs_err"].as_f64().expect("max_abs_err");
    assert!(err(&split) < 1e-5, "fp32-split error {}", err(&split));
    assert!(err(&fp32) > 1e-5, "fp32 error {}", err(&fp32));
    let fc1 = |r: &serde_json::Value| {
        r["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["name"] == "fc1")
            .cloned()
            .expect("fc1")
    };
    assert_eq!(fc1(&split)["precision"], "fp32-split");
    assert_eq!(fc1(&fp32)["precision"], "fp32");
    // Three MXM passes and a VXM split cost cycles.
    let cycles = |r: &serde_json::Value| r["cycles"].as_u64().expect("cycles");
    assert!(
        cycles(&split) > cycles(&fp32),
        "{} vs {}",
        cycles(&split),
        cycles(&fp32)
    );
}

#[test]
fn lpc_compile_stats_name_the_precision() {
    let tmp = TempDir::new("split");
    let out = tmp.join("mlp.lpb");
    let r = run_ok(
        lpc()
            .args(["compile", MLP, "--precision", "fp32-split", "--stats", "-o"])
            .arg(&out),
    );
    assert!(
        r.stdout.contains("precision     fp32-split ("),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("fp32-split 3"), "{}", r.stdout);
}
