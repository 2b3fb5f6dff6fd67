//! Smoke tests of `lpc` and `lpsim` as a user runs them.

mod common;

use common::{lpc, lpsim, run_ok, TempDir, MLP, MLP_INT8};
use lpu_graph::Tensor;
use std::collections::BTreeMap;

#[test]
fn compile_with_stats() {
    let tmp = TempDir::new("smoke-stats");
    let out = tmp.join("m.lpb");
    let r = run_ok(
        lpc()
            .args(["compile", MLP, "--chip", "tiny", "-o"])
            .arg(&out)
            .arg("--stats"),
    );
    assert!(out.exists());
    assert!(r.stdout.contains("cycles"), "{}", r.stdout);
    assert!(r.stdout.contains("tiny"), "{}", r.stdout);
    // The printed cycle count is the library's.
    let printed: u64 = r
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("cycles"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a cycle count");
    let chip = lpu_isa::ChipConfig::preset("tiny").unwrap();
    let c = lpu_compiler::compile(&common::load(MLP), &chip).unwrap();
    assert_eq!(printed, c.stats.cycles);
    assert!(printed > 0);
    // Without -o the output lands next to the model, which we do not want to
    // touch here; without --stats nothing is printed.
    let quiet = run_ok(
        lpc()
            .args(["compile", MLP, "--chip", "tiny", "-o"])
            .arg(tmp.join("q.lpb")),
    );
    assert!(quiet.stdout.is_empty(), "{}", quiet.stdout);
}

#[test]
fn run_program_with_json_check() {
    let tmp = TempDir::new("smoke-json");
    let out = tmp.join("m.lpb");
    run_ok(
        lpc()
            .args(["compile", MLP, "--chip", "tiny", "-o"])
            .arg(&out),
    );
    let r = run_ok(
        lpsim()
            .arg("run")
            .arg(&out)
            .args(["--json", "--check", "--graph", MLP]),
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(v["check"]["passed"], true, "{}", r.stdout);
    assert_eq!(v["check"]["outputs_compared"], 1);
    assert_eq!(v["model"], "mlp");
    assert_eq!(v["chip"], "tiny");
    assert_eq!(v["clock_mhz"].as_f64(), Some(900.0));
    let cycles = v["cycles"].as_u64().expect("cycles");
    assert!(cycles > 0);
    let lat = v["latency_us"].as_f64().expect("latency_us");
    assert!((lat - cycles as f64 / 900.0).abs() < 1e-9, "{lat}");
    let peak = v["sram_peak_bytes"].as_u64().expect("sram_peak_bytes");
    let cap = v["sram_capacity_bytes"]
        .as_u64()
        .expect("sram_capacity_bytes");
    assert_eq!(cap, 2 * 1024 * 1024);
    assert!(peak > 0 && peak <= cap, "{peak} of {cap}");
    assert!(v["units"]["mem"]["busy_cycles"].as_u64().unwrap() > 0);
    let u = v["units"]["mxm"]["utilization"].as_f64().unwrap();
    assert!(u > 0.0 && u <= 1.0, "{u}");
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 7);
    assert_eq!(nodes[0]["name"], "fc1");
    assert_eq!(nodes[0]["op"], "MatMul");
    for n in nodes {
        let (s, e) = (
            n["start_cycle"].as_u64().expect("start_cycle"),
            n["end_cycle"].as_u64().expect("end_cycle"),
        );
        assert!(s <= e && e <= cycles, "{n}");
    }
    assert!(v["hazard"].is_null());
    assert!(v["perturb"].is_null());
    // The report matches the compiler's own count.
    let chip = lpu_isa::ChipConfig::preset("tiny").unwrap();
    let c = lpu_compiler::compile(&common::load(MLP), &chip).unwrap();
    assert_eq!(cycles, c.stats.cycles);
}

#[test]
fn run_assembly_program() {
    let tmp = TempDir::new("smoke-lpa");
    let lpa = tmp.join("m.lpa");
    run_ok(
        lpc()
            .args(["compile", MLP_INT8, "--chip", "tiny", "-o"])
            .arg(&lpa),
    );
    let text = std::fs::read_to_string(&lpa).unwrap();
    assert!(text.contains(".model \"mlp-int8\""));
    let r = run_ok(lpsim().arg("run").arg(&lpa));
    assert!(r.stdout.contains("mlp-int8"), "{}", r.stdout);
    assert!(r.stdout.contains("cycles"), "{}", r.stdout);
    // And with --check, the integer model is exact.
    let r = run_ok(
        lpsim()
            .arg("run")
            .arg(&lpa)
            .args(["--json", "--check", "--graph", MLP_INT8]),
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["check"]["passed"], true);
    // --emit asm into a file with another extension.
    let other = tmp.join("m.txt");
    run_ok(
        lpc()
            .args(["compile", MLP_INT8, "--chip", "tiny", "--emit", "asm", "-o"])
            .arg(&other),
    );
    assert_eq!(std::fs::read_to_string(&other).unwrap(), text);
    run_ok(lpsim().arg("run").arg(&other));
}

#[test]
fn run_graph_on_tsp_with_check() {
    let r = run_ok(lpsim().args(["run", MLP, "--chip", "tsp", "--check"]));
    assert!(r.stdout.contains("PASSED"), "{}", r.stdout);
    let r = run_ok(lpsim().args(["run", MLP_INT8, "--check", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["chip"], "tsp", "tsp is the default chip");
    assert_eq!(v["check"]["passed"], true);
    assert_eq!(v["check"]["max_abs_err"].as_f64(), Some(0.0));
}

fn read_dir_npy(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn inputs_from_npy() {
    let tmp = TempDir::new("smoke-npy");
    let g = common::load(MLP);
    // The tensor `--seed 7` would draw: the same run either way.
    let x = lpu_graph::random_inputs(&g, 7).remove("x").unwrap();
    let f = tmp.join("x.npy");
    lpu_graph::npy::write_npy(&f, &x).unwrap();
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    let ra = run_ok(
        lpsim()
            .args([
                "run", MLP, "--chip", "tiny", "--json", "--check", "--inputs",
            ])
            .arg(format!("x={}", f.display()))
            .arg("--save-outputs")
            .arg(&a),
    );
    let rb = run_ok(
        lpsim()
            .args([
                "run", MLP, "--chip", "tiny", "--json", "--check", "--seed", "7",
            ])
            .arg("--save-outputs")
            .arg(&b),
    );
    assert_eq!(ra.stdout, rb.stdout);
    let (oa, ob) = (read_dir_npy(&a), read_dir_npy(&b));
    assert_eq!(oa.keys().collect::<Vec<_>>(), vec!["y.npy"]);
    assert!(oa == ob, "outputs differ between --inputs and --seed");

    // A hand-made tensor, positional: equals the library's simulation.
    let vals: Vec<f32> = (0..784).map(|i| ((i % 29) as f32 - 14.0) / 16.0).collect();
    let t = Tensor::new(vec![1, 784], lpu_graph::Values::F32(vals)).unwrap();
    let h = tmp.join("h.npy");
    lpu_graph::npy::write_npy(&h, &t).unwrap();
    let c = tmp.join("c");
    let rc = run_ok(
        lpsim()
            .args([
                "run", MLP, "--chip", "tiny", "--json", "--check", "--inputs",
            ])
            .arg(&h)
            .arg("--save-outputs")
            .arg(&c),
    );
    let v: serde_json::Value = serde_json::from_str(&rc.stdout).unwrap();
    assert_eq!(v["check"]["passed"], true);
    let p = common::compile(&g, "tiny");
    let inputs: BTreeMap<String, Tensor> = [("x".to_string(), t)].into_iter().collect();
    let o = lpu_sim::simulate(&p, &inputs, &lpu_sim::SimOptions::default()).unwrap();
    assert!(o.hazard.is_none());
    let y = lpu_graph::npy::encode_npy(&o.outputs["y"]);
    assert!(
        read_dir_npy(&c)["y.npy"] == y,
        "saved y.npy != library output"
    );
    let back = lpu_graph::npy::read_npy(&c.join("y.npy")).unwrap();
    assert_eq!(back.shape, vec![1, 10]);
}

#[test]
fn chips_lists_presets() {
    let r = run_ok(lpc().arg("chips"));
    let names: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains(&"tsp"), "{}", r.stdout);
    assert!(names.contains(&"tiny"), "{}", r.stdout);
    assert!(r.stdout.contains("2 MiB"), "{}", r.stdout);
}

#[test]
fn version_and_help() {
    for mut c in [lpc(), lpsim()] {
        let r = run_ok(c.arg("--help"));
        assert!(r.stdout.contains("Usage"), "{}", r.stdout);
        let mut c2 = std::process::Command::new(c.get_program());
        let r = run_ok(c2.arg("--version"));
        assert!(r.stdout.contains("0.1.0"), "{}", r.stdout);
    }
}
