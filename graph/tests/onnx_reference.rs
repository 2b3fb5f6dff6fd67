//! Every case in `tests/data/onnx_ref/` (written by
//! `tests/data/gen_reference.py` with ONNX's own pure-Python
//! `ReferenceEvaluator`) loads, interprets, and matches the ONNX reference:
//! f32 within 1e-5 relative (plus 1e-6 absolute near zero), f16 within 2e-3
//! relative (the reference rounds to f16 after every numpy step, this crate
//! once per op), integers exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lpu_graph::npy::read_npy;
use lpu_graph::{interpret, load_graph, Tensor, Values};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx_ref")
}

/// Compares `got` with `want`; a description of the first mismatch.
fn compare(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.shape != want.shape || got.dtype() != want.dtype() {
        return Err(format!("got {}, want {}", got.info(), want.info()));
    }
    let tol = match &want.values {
        Values::F32(_) => Some((1e-5, 1e-6)),
        Values::F16(_) => Some((2e-3, 1e-3)),
        _ => None,
    };
    for i in 0..want.len() {
        let (g, w) = (got.values.get_f64(i), want.values.get_f64(i));
        let ok = match tol {
            None => g == w,
            Some((rel, abs)) => (g - w).abs() <= rel * w.abs() + abs || (g.is_nan() && w.is_nan()),
        };
        if !ok {
            return Err(format!("element {i}: got {g}, want {w}"));
        }
    }
    Ok(())
}

#[test]
fn matches_onnx_reference_evaluator() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/data/onnx_ref exists; run tests/data/gen_reference.py")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "graph"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 150, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for path in &cases {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let run = || -> Result<(), String> {
            let g = load_graph(path).map_err(|e| e.to_string())?;
            let mut inputs = BTreeMap::new();
            for (name, _) in &g.inputs {
                let t = read_npy(&dir().join(format!("{stem}.{name}.npy")))
                    .map_err(|e| e.to_string())?;
                inputs.insert(name.clone(), t);
            }
            let out = interpret(&g, &inputs).map_err(|e| e.to_string())?;
            for name in &g.outputs {
                let want = read_npy(&dir().join(format!("{stem}.{name}.npy")))
                    .map_err(|e| e.to_string())?;
                compare(&out[name], &want).map_err(|m| format!("output {name}: {m}"))?;
            }
            Ok(())
        };
        if let Err(m) = run() {
            failures.push(format!("{stem}: {m}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from the ONNX reference:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
