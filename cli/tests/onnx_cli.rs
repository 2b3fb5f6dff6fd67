//! `lpc import`, `lpc compile model.onnx` and `lpsim onnx-test` as a user
//! runs them, on the small models in `onnx/tests/data/`.

mod common;

use common::{lpc, lpsim, run, run_ok, TempDir};

const ONNX_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../onnx/tests/data");

fn onnx(name: &str) -> String {
    format!("{ONNX_DATA}/{name}")
}

#[test]
fn import_writes_a_graph_that_loads() {
    let tmp = TempDir::new("onnx-import");
    let out = tmp.join("mlp.graph");
    // The batch dimension is symbolic: without --dim it is an error (exit 2)
    // that says how to bind it.
    let r = run(lpc()
        .arg("import")
        .arg(onnx("mlp.onnx"))
        .arg("-o")
        .arg(&out));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--dim batch=N"), "{}", r.stderr);
    let r = run_ok(
        lpc()
            .arg("import")
            .arg(onnx("mlp.onnx"))
            .arg("-o")
            .arg(&out)
            .args(["--dim", "batch=2"]),
    );
    assert!(r.stderr.contains("note:"), "{}", r.stderr);
    let g = lpu_graph::load_graph(&out).expect("the written graph loads");
    assert_eq!(g.tensors["y"].shape, [2, 16]);
    // --input-shape works as well, and the model simulates.
    run_ok(
        lpc()
            .arg("import")
            .arg(onnx("mlp.onnx"))
            .arg("-o")
            .arg(&out)
            .args(["--input-shape", "x=3x8"]),
    );
    let r = run_ok(
        lpsim()
            .arg("run")
            .arg(&out)
            .args(["--chip", "tiny", "--json"]),
    );
    assert!(r.stdout.contains("\"cycles\""), "{}", r.stdout);
}

#[test]
fn compile_and_run_onnx_directly() {
    let tmp = TempDir::new("onnx-compile");
    let out = tmp.join("m.lpb");
    run_ok(
        lpc()
            .arg("compile")
            .arg(onnx("external.onnx"))
            .args(["--chip", "tiny", "-o"])
            .arg(&out),
    );
    assert!(out.exists());
    run_ok(
        lpc()
            .arg("compile")
            .arg(onnx("mlp.onnx"))
            .args(["--chip", "tiny", "--dim", "batch=4", "-o"])
            .arg(&out),
    );
    // lpsim run takes a static .onnx model as it is.
    let r = run_ok(
        lpsim()
            .arg("run")
            .arg(onnx("case_add_relu/model.onnx"))
            .args(["--chip", "tiny", "--check"]),
    );
    assert!(!r.stdout.is_empty());
    // Unsupported operators: all listed in one error.
    let r = run(lpc()
        .arg("compile")
        .arg(onnx("unsupported.onnx"))
        .arg("-o")
        .arg(&out));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("NonZero (1 node, first 'nonzero'), TopK (2 nodes, first 'topk_a'), com.example:Custom (1 node, first 'custom')"),
        "{}",
        r.stderr
    );
}

#[test]
fn onnx_test_lines_summary_and_exit_codes() {
    let pass = onnx("case_add_relu");
    let r = run_ok(lpsim().args(["onnx-test", &pass]));
    assert!(
        r.stdout.starts_with("PASS data/case_add_relu\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("suite data: 1 cases, 1 with all ops supported, 1 pass"),
        "{}",
        r.stdout
    );
    // The precision it compiled in: fp32-split unless told otherwise.
    assert!(
        r.stdout
            .ends_with("onnx-test: compiled in precision fp32-split\n"),
        "{}",
        r.stdout
    );
    let r = run_ok(lpsim().args(["onnx-test", &pass, "--precision", "fp32"]));
    assert!(
        r.stdout
            .ends_with("onnx-test: compiled in precision fp32\n"),
        "{}",
        r.stdout
    );
    let r = run(lpsim().args(["onnx-test", &pass, "--precision", "bf16"]));
    assert_eq!(r.code, 2, "{r:?}");

    // A suite directory with an unsupported case: exit 1, UNSUPPORTED line.
    let tmp = TempDir::new("onnx-test");
    let suite = tmp.join("suite");
    for (case, model) in [
        ("a_pass", "case_add_relu/model.onnx"),
        ("b_unsupported", "unsupported.onnx"),
    ] {
        let d = suite.join(case);
        std::fs::create_dir_all(d.join("test_data_set_0")).unwrap();
        std::fs::copy(onnx(model), d.join("model.onnx")).unwrap();
        for f in ["input_0.pb", "output_0.pb"] {
            std::fs::copy(
                format!("{ONNX_DATA}/case_add_relu/test_data_set_0/{f}"),
                d.join("test_data_set_0").join(f),
            )
            .unwrap();
        }
    }
    let r = run(lpsim().arg("onnx-test").arg(&suite));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("PASS suite/a_pass\n"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("UNSUPPORTED suite/b_unsupported: NonZero, TopK, com.example:Custom\n"),
        "{}",
        r.stdout
    );
    let r = run(lpsim().arg("onnx-test").arg(&suite).arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(v["suites"]["suite"]["pass"], 1);
    assert_eq!(v["cases"][1]["status"], "UNSUPPORTED");
    assert_eq!(v["precision"], "fp32-split");

    // The ratchet: passing cases the manifest lacks.
    let manifest = tmp.join("m.txt");
    std::fs::write(&manifest, "# none yet\n").unwrap();
    let r = run_ok(
        lpsim()
            .arg("onnx-test")
            .arg(&suite)
            .arg("--list-new")
            .arg(&manifest),
    );
    assert_eq!(r.stdout, "suite/a_pass\n");
    std::fs::write(&manifest, "suite/a_pass\n").unwrap();
    let r = run_ok(
        lpsim()
            .arg("onnx-test")
            .arg(&suite)
            .arg("--manifest")
            .arg(&manifest),
    );
    assert!(r.stdout.starts_with("PASS suite/a_pass\n"), "{}", r.stdout);
    let r = run_ok(
        lpsim()
            .arg("onnx-test")
            .arg(&suite)
            .arg("--list-new")
            .arg(&manifest),
    );
    assert_eq!(r.stdout, "");
}

#[test]
fn onnx_test_empty_tensors() {
    // case_empty: an unused empty input, a Concat with an empty input, a
    // Split with a zero-size piece (an empty output, compared by shape) and
    // a ReduceSum over an empty axis; the split sizes and axes are runtime
    // inputs, bound to the test data (the ReduceSum's on the importer's
    // "must be a constant").
    let r = run_ok(lpsim().args(["onnx-test", &onnx("case_empty")]));
    assert!(
        r.stdout.starts_with("PASS data/case_empty\n"),
        "{}",
        r.stdout
    );

    // An empty output is compared by shape: expecting q [2, 1] fails.
    let tmp = TempDir::new("onnx-test-empty");
    let case = tmp.join("case_empty");
    let set = case.join("test_data_set_0");
    std::fs::create_dir_all(&set).unwrap();
    let src = onnx("case_empty");
    std::fs::copy(format!("{src}/model.onnx"), case.join("model.onnx")).unwrap();
    for f in std::fs::read_dir(format!("{src}/test_data_set_0")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), set.join(f.file_name())).unwrap();
    }
    // TensorProto { dims: [2, 1], data_type: FLOAT, name: "q", raw_data: 8 zero bytes }.
    let mut q = vec![0x08, 2, 0x08, 1, 0x10, 1, 0x42, 1, b'q', 0x4a, 8];
    q.extend([0u8; 8]);
    std::fs::write(set.join("output_1.pb"), q).unwrap();
    let r = run(lpsim().arg("onnx-test").arg(&case));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("output 'q' is empty with shape [2, 0]; expected shape [2, 1]"),
        "{}",
        r.stdout
    );
}
