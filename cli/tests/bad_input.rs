//! Bad input: every case exits with code 2 and prints one clear line on
//! stderr that names the file (and the node or tensor where relevant),
//! never a panic.

mod common;

use common::{data, lpc, lpsim, run, Ran, TempDir, MLP, MLP_INT8};
use std::path::Path;
use std::process::Command;

/// Runs `cmd`, asserts exit code 2, a single non-empty stderr line without a
/// panic, and that it contains every string of `needles`. Returns stderr.
fn fails_cleanly(cmd: &mut Command, needles: &[&str]) -> String {
    let r: Ran = run(cmd);
    assert_eq!(r.code, 2, "expected exit code 2 from {cmd:?}: {r:?}");
    let err = r.stderr.trim_end();
    assert!(!err.is_empty(), "no message on stderr from {cmd:?}");
    assert!(!err.contains("panicked"), "panic from {cmd:?}: {err}");
    assert!(
        !err.contains("RUST_BACKTRACE"),
        "panic-like output from {cmd:?}: {err}"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "expected a single line on stderr from {cmd:?}: {err}"
    );
    assert!(
        err.contains("error"),
        "message does not say it is an error: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "message lacks '{n}': {err}");
    }
    err.to_string()
}

fn compile_cmd(model: &Path, out: &Path) -> Command {
    let mut c = lpc();
    c.arg("compile")
        .arg(model)
        .arg("--chip")
        .arg("tiny")
        .arg("-o")
        .arg(out);
    c
}

/// Both tools on one graph file: `lpc compile` and `lpsim run`.
fn both_fail(name: &str, needles: &[&str]) {
    let tmp = TempDir::new("bad-graph");
    let model = data(name);
    let out = tmp.join("out.lpb");
    fails_cleanly(&mut compile_cmd(&model, &out), needles);
    assert!(
        !out.exists(),
        "lpc wrote {} despite the error",
        out.display()
    );
    fails_cleanly(
        lpsim()
            .arg("run")
            .arg(&model)
            .arg("--chip")
            .arg("tiny")
            .arg("--check"),
        needles,
    );
    // Nothing but the (absent) output was written next to the model either.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "files left behind: {leftovers:?}");
}

#[test]
fn truncated_ron_has_line_and_column() {
    let err = fails_cleanly(
        &mut compile_cmd(&data("truncated.graph"), &TempDir::new("t").join("x.lpb")),
        &["truncated.graph:"],
    );
    // `file:LINE:COL: message`, at the end of the file (line 7 col 1).
    let after = err.split("truncated.graph:").nth(1).unwrap();
    let mut parts = after.splitn(3, ':');
    let line: usize = parts.next().unwrap().parse().expect("line number");
    let col: usize = parts.next().unwrap().parse().expect("column number");
    assert!(line >= 6, "line {line} is not at the cut: {err}");
    assert!(col >= 1, "{err}");
    assert!(err.to_lowercase().contains("end"), "{err}");
    both_fail("truncated.graph", &["truncated.graph:"]);
}

#[test]
fn invalid_ron_syntax_has_position() {
    // The missing comma after "y" is on line 4, column 33.
    let err = fails_cleanly(
        &mut compile_cmd(&data("bad_syntax.graph"), &TempDir::new("s").join("x.lpb")),
        &["bad_syntax.graph:4:"],
    );
    assert!(err.to_lowercase().contains("comma"), "{err}");
    both_fail("bad_syntax.graph", &["bad_syntax.graph:4:"]);
}

#[test]
fn unknown_op_types_are_listed() {
    both_fail(
        "unknown_op.graph",
        &[
            "unknown_op.graph",
            "'DeformConv'",
            "'Hardmax'",
            "conv1",
            "MatMul",
        ],
    );
}

#[test]
fn matmul_shape_mismatch_names_node_and_tensor() {
    both_fail(
        "shape_mismatch.graph",
        &[
            "shape_mismatch.graph",
            "fc_bad",
            "MatMul",
            "w_bad",
            "[5, 3]",
        ],
    );
}

#[test]
fn cycle_names_its_nodes() {
    let err = fails_cleanly(
        &mut compile_cmd(&data("cycle.graph"), &TempDir::new("c").join("x.lpb")),
        &["cycle.graph", "cycle", "'loop_a'", "'loop_b'"],
    );
    // `head` is not on the cycle.
    assert!(!err.contains("'head'"), "{err}");
    both_fail("cycle.graph", &["cycle.graph", "'loop_a'", "'loop_b'"]);
}

#[test]
fn missing_initializer_names_node_and_tensor() {
    both_fail(
        "missing_initializer.graph",
        &[
            "missing_initializer.graph",
            "add_bias",
            "'bias_nowhere'",
            "not defined",
        ],
    );
}

#[test]
fn wrong_input_npy_shape() {
    let tmp = TempDir::new("npy");
    let f = tmp.join("x.npy");
    let t = lpu_graph::Tensor::new(vec![1, 10], lpu_graph::Values::F32(vec![0.5; 10])).unwrap();
    lpu_graph::npy::write_npy(&f, &t).unwrap();
    let spec = format!("x={}", f.display());
    fails_cleanly(
        lpsim()
            .args(["run", MLP, "--chip", "tiny", "--inputs"])
            .arg(&spec),
        &["x.npy", "'x'", "[1, 784]", "[1, 10]"],
    );
    // Same with a positional file (no NAME=) and with a wrong dtype.
    fails_cleanly(
        lpsim()
            .args(["run", MLP, "--chip", "tiny", "--inputs"])
            .arg(&f),
        &["x.npy", "'x'", "[1, 784]"],
    );
    let g = tmp.join("g.npy");
    let t = lpu_graph::Tensor::new(vec![1, 784], lpu_graph::Values::I32(vec![1; 784])).unwrap();
    lpu_graph::npy::write_npy(&g, &t).unwrap();
    fails_cleanly(
        lpsim()
            .args(["run", MLP, "--chip", "tiny", "--inputs"])
            .arg(format!("x={}", g.display())),
        &["g.npy", "'x'", "f32", "i32"],
    );
}

#[test]
fn unknown_input_name_and_missing_npy() {
    let tmp = TempDir::new("npy2");
    let f = tmp.join("x.npy");
    let t = lpu_graph::Tensor::new(vec![1, 784], lpu_graph::Values::F32(vec![0.5; 784])).unwrap();
    lpu_graph::npy::write_npy(&f, &t).unwrap();
    fails_cleanly(
        lpsim()
            .args(["run", MLP, "--chip", "tiny", "--inputs"])
            .arg(format!("nosuch={}", f.display())),
        &["'nosuch'", "x"],
    );
    fails_cleanly(
        lpsim()
            .args(["run", MLP, "--chip", "tiny", "--inputs"])
            .arg(format!("x={}", tmp.join("absent.npy").display())),
        &["absent.npy"],
    );
    let junk = tmp.join("junk.npy");
    std::fs::write(&junk, b"this is not numpy").unwrap();
    fails_cleanly(
        lpsim()
            .args(["run", MLP, "--chip", "tiny", "--inputs"])
            .arg(format!("x={}", junk.display())),
        &["junk.npy"],
    );
}

#[test]
fn unknown_chip() {
    let tmp = TempDir::new("chip");
    fails_cleanly(
        &mut {
            let mut c = lpc();
            c.args(["compile", MLP, "--chip", "nosuchchip", "-o"])
                .arg(tmp.join("x.lpb"));
            c
        },
        &["'nosuchchip'", "tsp", "tiny"],
    );
    fails_cleanly(
        lpsim().args(["run", MLP, "--chip", "nosuchchip"]),
        &["'nosuchchip'", "tsp", "tiny"],
    );
    // A program run against another chip than it was compiled for.
    let p = tmp.join("m.lpb");
    common::run_ok(&mut compile_cmd(Path::new(MLP_INT8), &p));
    fails_cleanly(
        lpsim().arg("run").arg(&p).args(["--chip", "tsp"]),
        &["m.lpb", "'tiny'", "'tsp'"],
    );
}

#[test]
fn nonexistent_files() {
    let tmp = TempDir::new("missing");
    for name in ["nothere.graph", "nothere.lpb", "nothere.lpa"] {
        let p = tmp.join(name);
        fails_cleanly(lpsim().arg("run").arg(&p), &[name]);
    }
    fails_cleanly(
        &mut compile_cmd(&tmp.join("nothere.graph"), &tmp.join("o.lpb")),
        &["nothere.graph"],
    );
    fails_cleanly(
        lpc().arg("disasm").arg(tmp.join("nothere.lpb")),
        &["nothere.lpb"],
    );
    // --graph pointing nowhere.
    let p = tmp.join("m.lpb");
    common::run_ok(&mut compile_cmd(Path::new(MLP_INT8), &p));
    fails_cleanly(
        lpsim()
            .arg("run")
            .arg(&p)
            .arg("--check")
            .arg("--graph")
            .arg(tmp.join("gone.graph")),
        &["gone.graph"],
    );
}

/// Deterministic bytes that are certainly not UTF-8 nor a program.
fn garbage(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x1234_5678_9abc_def0;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 17 == 3 {
                0xff
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

#[test]
fn garbage_binary_program() {
    let tmp = TempDir::new("garbage");
    let p = tmp.join("garbage.lpb");
    std::fs::write(&p, garbage(4096)).unwrap();
    fails_cleanly(lpsim().arg("run").arg(&p), &["garbage.lpb"]);
    fails_cleanly(lpc().arg("disasm").arg(&p), &["garbage.lpb"]);
    // The magic followed by garbage: a damaged program, not a panic.
    let q = tmp.join("magic.lpb");
    let mut bytes = lpu_isa::program::MAGIC.to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend(garbage(4096));
    std::fs::write(&q, bytes).unwrap();
    fails_cleanly(lpsim().arg("run").arg(&q), &["magic.lpb", "program"]);
    // Just the magic.
    let r = tmp.join("magiconly.lpb");
    std::fs::write(&r, lpu_isa::program::MAGIC).unwrap();
    fails_cleanly(lpsim().arg("run").arg(&r), &["magiconly.lpb"]);
    // An empty file.
    let e = tmp.join("empty.lpb");
    std::fs::write(&e, b"").unwrap();
    fails_cleanly(lpsim().arg("run").arg(&e), &["empty.lpb"]);
}

#[test]
fn truncated_binary_program() {
    let tmp = TempDir::new("trunc");
    let p = tmp.join("full.lpb");
    common::run_ok(&mut compile_cmd(Path::new(MLP_INT8), &p));
    let bytes = std::fs::read(&p).unwrap();
    for (name, len) in [
        ("half.lpb", bytes.len() / 2),
        ("short.lpb", bytes.len() - 1),
        ("header.lpb", 12),
        ("ten.lpb", 10),
    ] {
        let q = tmp.join(name);
        std::fs::write(&q, &bytes[..len]).unwrap();
        fails_cleanly(lpsim().arg("run").arg(&q), &[name]);
        fails_cleanly(lpc().arg("disasm").arg(&q), &[name]);
    }
    // Trailing bytes are rejected too.
    let q = tmp.join("long.lpb");
    let mut long = bytes.clone();
    long.push(0);
    std::fs::write(&q, long).unwrap();
    fails_cleanly(lpsim().arg("run").arg(&q), &["long.lpb", "trailing"]);
}

#[test]
fn assembly_with_unknown_mnemonic_has_line_number() {
    fails_cleanly(
        lpsim().arg("run").arg(data("unknown_mnemonic.lpa")),
        &["unknown_mnemonic.lpa", "line 8", "'frobnicate'"],
    );
    // The same in a real program: break one instruction deep in the file.
    let tmp = TempDir::new("asm");
    let p = tmp.join("m.lpa");
    common::run_ok(&mut compile_cmd(Path::new(MLP_INT8), &p));
    let text = std::fs::read_to_string(&p).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let k = lines
        .iter()
        .position(|l| l.trim_start().starts_with('i') && l.contains(" read."))
        .expect("a read instruction");
    lines[k] = lines[k].replacen(" read.", " raed.", 1);
    let bad = tmp.join("bad.lpa");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    fails_cleanly(
        lpsim().arg("run").arg(&bad),
        &["bad.lpa", &format!("line {}", k + 1), "'raed'"],
    );
    fails_cleanly(
        lpc().arg("asm").arg(&bad).arg("-o").arg(tmp.join("x.lpb")),
        &["bad.lpa", &format!("line {}", k + 1)],
    );
    assert!(!tmp.join("x.lpb").exists());
}

#[test]
fn check_without_graph_for_a_program() {
    let tmp = TempDir::new("nograph");
    let p = tmp.join("m.lpb");
    common::run_ok(&mut compile_cmd(Path::new(MLP_INT8), &p));
    fails_cleanly(
        lpsim().arg("run").arg(&p).arg("--check"),
        &["--check", "--graph"],
    );
}

#[test]
fn compiling_a_program_is_an_error() {
    let tmp = TempDir::new("already");
    let p = tmp.join("m.lpb");
    common::run_ok(&mut compile_cmd(Path::new(MLP_INT8), &p));
    fails_cleanly(
        &mut compile_cmd(&p, &tmp.join("again.lpb")),
        &["m.lpb", "compiled"],
    );
}

#[test]
fn model_that_does_not_fit() {
    let tmp = TempDir::new("fit");
    let model = tmp.join("huge.graph");
    // 1024 x 2048 fp32 weights are stored as fp16 for the MXM: 4 MiB, twice
    // the tiny chip's SRAM.
    std::fs::write(
        &model,
        r#"Graph(
  name: "huge",
  inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 1024])],
  outputs: [ValueInfo(name: "y")],
  initializers: [
    Initializer(name: "w_huge", dtype: F32, shape: [1024, 2048], data: Random(seed: 1, dist: Uniform(low: -1.0, high: 1.0))),
  ],
  nodes: [
    Node(name: "fc", op_type: "MatMul", inputs: ["x", "w_huge"], outputs: ["y"]),
  ],
)
"#,
    )
    .unwrap();
    let out = tmp.join("huge.lpb");
    let err = fails_cleanly(
        &mut compile_cmd(&model, &out),
        &["does not fit", "MiB", "'tiny'", "w_huge", "huge"],
    );
    assert!(!out.exists());
    // Both the need (about 4 MiB) and the capacity (2 MiB) are given.
    let nums: Vec<f64> = err
        .split_whitespace()
        .filter_map(|w| w.trim_start_matches('(').parse::<f64>().ok())
        .collect();
    assert!(
        nums.iter().any(|x| (4.0..4.1).contains(x)),
        "no ~4 MiB figure in: {err}"
    );
    assert!(nums.contains(&2.0), "no 2.00 MiB capacity in: {err}");
    fails_cleanly(
        lpsim().arg("run").arg(&model).args(["--chip", "tiny"]),
        &["does not fit", "MiB"],
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["compile"][..],
        &["frobnicate"][..],
        &["compile", MLP, "--emit", "elf"][..],
    ] {
        let r = run(lpc().args(args));
        assert_eq!(r.code, 2, "lpc {args:?}: {r:?}");
        assert!(!r.stderr.contains("panicked"), "{r:?}");
    }
    for args in [&["run"][..], &["run", MLP, "--seed", "abc"][..]] {
        let r = run(lpsim().args(args));
        assert_eq!(r.code, 2, "lpsim {args:?}: {r:?}");
        assert!(!r.stderr.contains("panicked"), "{r:?}");
    }
}

#[test]
fn does_not_fit_names_the_file() {
    let tmp = TempDir::new("fit-file");
    let model = tmp.join("weights-too-big.graph");
    std::fs::write(
        &model,
        r#"Graph(
  name: "m",
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
    fails_cleanly(
        &mut compile_cmd(&model, &tmp.join("o.lpb")),
        &["weights-too-big.graph", "does not fit"],
    );
}

#[test]
fn huge_latency_override_is_rejected() {
    let tmp = TempDir::new("latency");
    let tiny = include_str!("../../isa-spec/chips/tiny.ron");
    let chip = tmp.join("slow.ron");
    std::fs::write(
        &chip,
        tiny.replace(
            "latency_overrides: {}",
            "latency_overrides: {\"read\": 2147483648}",
        ),
    )
    .unwrap();
    // A 2 GiB address-space cap turns the unbounded allocation into a quick
    // abort instead of exhausting the machine.
    let script = format!(
        "ulimit -v 2097152; exec '{}' compile '{}' --chip '{}' -o '{}'",
        env!("CARGO_BIN_EXE_lpc"),
        MLP_INT8,
        chip.display(),
        tmp.join("x.lpb").display()
    );
    let r = common::run_with_deadline(Command::new("sh").arg("-c").arg(&script), 30)
        .expect("lpc did not finish within 30 s");
    assert_eq!(r.code, 2, "{r:?}");
    assert!(!r.stderr.contains("memory allocation"), "{r:?}");
    assert!(r.stderr.contains("slow.ron"), "{r:?}");
}
