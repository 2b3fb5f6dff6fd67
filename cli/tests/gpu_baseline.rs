//! The GPU baseline and energy in `lpsim run`: `--gpu` presets, files,
//! `none` and `list`, the JSON blocks, programs without their model, and a
//! model that does not fit the LPU.

mod common;
use common::*;

#[test]
fn json_has_gpu_and_energy_blocks() {
    let r = run_ok(lpsim().args(["run", MLP_INT8, "--chip", "tiny", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    let g = &v["gpu"];
    assert_eq!(g["name"], "h100", "{}", r.stdout);
    for f in ["latency_us", "p50_us", "p99_us", "energy_j"] {
        assert!(
            g[f].as_f64().is_some_and(|x| x > 0.0),
            "gpu.{f}: {}",
            r.stdout
        );
    }
    assert!(g["p99_us"].as_f64() >= g["p50_us"].as_f64());
    let kernels = g["kernels"].as_array().expect("kernel list");
    // Three matrix products, each with its epilogue fused, plus the input
    // quantization.
    assert!(!kernels.is_empty() && kernels.len() <= 6, "{kernels:?}");
    let e = &v["energy"];
    assert!(
        e["total_j"].as_f64().is_some_and(|x| x > 0.0),
        "{}",
        r.stdout
    );
    assert!(e["macs"].as_u64().is_some_and(|x| x > 0), "{}", r.stdout);
    // The old fields are still there.
    assert!(v["cycles"].as_u64().is_some());
}

#[test]
fn gpu_presets_files_none_and_list() {
    let r = run_ok(lpsim().args(["run", "--gpu", "list"]));
    for name in ["h100", "a100", "h200", "l4"] {
        assert!(r.stdout.contains(name), "{}", r.stdout);
    }
    let a = run_ok(lpsim().args(["run", MLP, "--chip", "tiny", "--gpu", "a100", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&a.stdout).expect("JSON");
    assert_eq!(v["gpu"]["name"], "a100");
    let n = run_ok(lpsim().args(["run", MLP, "--chip", "tiny", "--gpu", "none", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&n.stdout).expect("JSON");
    assert!(v["gpu"].is_null());
    let t = run_ok(lpsim().args(["run", MLP, "--chip", "tiny"]));
    assert!(
        t.stdout.contains("vs GPU") && t.stdout.contains("speedup"),
        "{}",
        t.stdout
    );
    // A user's file: the a100 preset renamed.
    let tmp = TempDir::new("gpu-file");
    let file = tmp.join("mine.ron");
    std::fs::write(
        &file,
        include_str!("../../gpu/presets/a100.ron").replace("name: \"a100\"", "name: \"mine\""),
    )
    .unwrap();
    let f = run_ok(
        lpsim()
            .args(["run", MLP, "--chip", "tiny", "--json", "--gpu"])
            .arg(&file),
    );
    let v: serde_json::Value = serde_json::from_str(&f.stdout).expect("JSON");
    assert_eq!(v["gpu"]["name"], "mine");
}

#[test]
fn bad_gpu_is_a_clear_error() {
    let r = run(lpsim().args(["run", MLP, "--chip", "tiny", "--gpu", "v100"]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("unknown GPU 'v100'"), "{r:?}");
    let tmp = TempDir::new("gpu-bad");
    let file = tmp.join("broken.ron");
    std::fs::write(&file, "GpuSpec(name: ").unwrap();
    let r = run(lpsim()
        .args(["run", MLP, "--chip", "tiny", "--gpu"])
        .arg(&file));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("broken.ron") && r.stderr.contains("invalid GPU config"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("panicked"));
    let r = run(lpsim().args(["run", MLP, "--gpu-mode", "warp"]));
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn graphs_mode_is_faster_than_eager() {
    let lat = |mode: &str| {
        let r = run_ok(lpsim().args(["run", MLP, "--chip", "tiny", "--json", "--gpu-mode", mode]));
        let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
        v["gpu"]["latency_us"].as_f64().expect("latency")
    };
    assert!(lat("graphs") < lat("launch"));
    assert!(lat("launch") < lat("eager"));
}

#[test]
fn a_program_without_its_model_has_no_gpu_baseline() {
    let tmp = TempDir::new("gpu-prog");
    let prog = tmp.join("mlp.lpb");
    run_ok(
        lpc()
            .args(["compile", MLP, "--chip", "tiny", "-o"])
            .arg(&prog),
    );
    let r = run_ok(lpsim().arg("run").arg(&prog).arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert!(v["gpu"].is_null());
    assert!(r.stderr.contains("needs the model"), "{r:?}");
    let r = run_ok(
        lpsim()
            .arg("run")
            .arg(&prog)
            .args(["--json", "--graph", MLP]),
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(v["gpu"]["name"], "h100");
}

#[test]
fn a_model_that_does_not_fit_still_gets_gpu_figures() {
    let tmp = TempDir::new("gpu-fit");
    let model = tmp.join("big.graph");
    std::fs::write(
        &model,
        r#"Graph(
  name: "big",
  inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 1024])],
  outputs: [ValueInfo(name: "y")],
  initializers: [
    Initializer(name: "w", dtype: F32, shape: [1024, 2048], data: Random(seed: 1, dist: Uniform(low: -1.0, high: 1.0))),
  ],
  nodes: [
    Node(name: "fc", op_type: "MatMul", inputs: ["x", "w"], outputs: ["y"]),
  ],
)
"#,
    )
    .unwrap();
    let r = run(lpsim()
        .arg("run")
        .arg(&model)
        .args(["--chip", "tiny", "--json"]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("does not fit"), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(v["fits"], false);
    assert!(
        v["sram_shortfall_mib"].as_f64().is_some_and(|x| x > 0.0),
        "{}",
        r.stdout
    );
    assert!(
        v["gpu"]["latency_us"].as_f64().is_some_and(|x| x > 0.0),
        "{}",
        r.stdout
    );
    let r = run(lpsim().arg("run").arg(&model).args(["--chip", "tiny"]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("DOES NOT FIT") && r.stdout.contains("GPU h100"),
        "{}",
        r.stdout
    );
}
