//! `--check` node by node: the simulator captures every computed tensor as
//! its node writes it, and each is compared with the reference interpreter
//! run on that node's own simulated inputs.

mod common;

use common::{lpsim, run_ok, MLP};
use lpu_isa::ChipConfig;
use lpu_sim::{check, SimOptions};
use std::collections::BTreeMap;

const BLOCK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/transformer-block.graph"
);

/// Compiles `path` with probes for `chip`, simulates it with captures on
/// seeded inputs, and returns the graph, the inputs and the outcome.
fn captured(
    path: &str,
    chip: &str,
) -> (
    lpu_graph::Graph,
    BTreeMap<String, lpu_graph::Tensor>,
    lpu_sim::Outcome,
) {
    let g = common::load(path);
    let chip = ChipConfig::preset(chip).expect("preset");
    let c = lpu_compiler::compile_probed(&g, &chip, true).expect("compiles");
    assert!(!c.probes.is_empty());
    let inputs = lpu_graph::random_inputs(&g, 7);
    let opts = SimOptions {
        probes: c.probes,
        ..SimOptions::default()
    };
    let o = lpu_sim::simulate(&c.program, &inputs, &opts).expect("runs");
    assert!(o.hazard.is_none(), "{:?}", o.hazard);
    (g, inputs, o)
}

/// The computed tensors of `g` in graph order.
fn order(g: &lpu_graph::Graph) -> Vec<String> {
    g.nodes.iter().flat_map(|n| n.outputs.clone()).collect()
}

#[test]
fn probes_do_not_change_the_program() {
    for (path, chip) in [(MLP, "tiny"), (BLOCK, "tiny"), (BLOCK, "tsp")] {
        let g = common::load(path);
        let chip = ChipConfig::preset(chip).expect("preset");
        let plain = lpu_compiler::compile(&g, &chip).expect("compiles");
        let probed = lpu_compiler::compile_probed(&g, &chip, true).expect("compiles");
        assert!(plain.probes.is_empty());
        assert_eq!(
            plain.program.to_bytes(),
            probed.program.to_bytes(),
            "{path}"
        );
    }
}

#[test]
fn captured_graph_outputs_equal_the_final_outputs() {
    // A capture is the value the writer node left: for a graph output it is
    // exactly what the host reads back at the end.
    let (g, _, o) = captured(BLOCK, "tiny");
    for name in &g.outputs {
        let end = &o.outputs[name];
        let cap = o.probed.get(name).expect("the output is captured");
        assert_eq!(cap, end, "{name}");
    }
}

#[test]
fn a_wrong_node_is_named_and_does_not_cascade() {
    let (g, inputs, o) = captured(MLP, "tiny");
    let clean = lpu_graph::interpret_nodes(&g, &inputs, &o.probed).expect("reference");
    let ok = check::compare_nodes(&order(&g), &o.probed, &clean);
    assert!(ok.passed, "{:?}", ok.failures);
    assert!(ok.tensors_compared >= 2, "{ok:?}");

    // Judge the simulation against a reference whose first layer computes
    // something else (bias1 + 0.5), as if that layer's lowering were wrong.
    let mut wrong = g.clone();
    match &mut wrong.initializers.get_mut("b1").expect("b1").values {
        lpu_isa::Values::F32(v) => v.iter_mut().for_each(|x| *x += 0.5),
        other => panic!("b1 is {}", other.dtype()),
    }
    let reference = lpu_graph::interpret_nodes(&wrong, &inputs, &o.probed).expect("reference");
    let c = check::compare_nodes(&order(&g), &o.probed, &reference);
    assert!(!c.passed);
    // Only the first layer's result fails: the later layers are judged on
    // the values they were given, so the failure points at one node.
    assert_eq!(c.failures.len(), 1, "{:?}", c.failures);
    assert!(c.failures[0].starts_with("'a1'"), "{:?}", c.failures);
    // End to end, the same difference shows only at the output.
    let end = lpu_graph::interpret(&wrong, &inputs).expect("reference");
    let e = check::compare(&o.outputs, &end);
    assert!(
        !e.passed && e.failures[0].contains("'y'"),
        "{:?}",
        e.failures
    );
}

#[test]
fn lpsim_check_reports_node_by_node() {
    let r = run_ok(lpsim().args(["run", BLOCK, "--chip", "tiny", "--check", "--json"]));
    let j: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let pn = &j["check"]["per_node"];
    assert_eq!(j["check"]["passed"], true, "{}", j["check"]);
    assert_eq!(pn["passed"], true, "{pn}");
    assert!(pn["tensors_compared"].as_u64().unwrap_or(0) >= 5, "{pn}");
    let text = run_ok(lpsim().args(["run", BLOCK, "--chip", "tiny", "--check"])).stdout;
    assert!(text.contains("PASSED node by node"), "{text}");
    assert!(text.contains("end to end (1 output)"), "{text}");
    // A program file has no probes: the check is end to end.
    let tmp = common::TempDir::new("check-nodes");
    let prog = tmp.join("b.lpb");
    run_ok(
        common::lpc()
            .args(["compile", BLOCK, "--chip", "tiny", "-o"])
            .arg(&prog),
    );
    let r = run_ok(
        lpsim()
            .arg("run")
            .arg(&prog)
            .args(["--graph", BLOCK, "--check", "--json"]),
    );
    let j: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(j["check"]["passed"], true);
    assert!(j["check"].get("per_node").is_none(), "{}", j["check"]);
}
