//! Damaged `.onnx` bytes never panic the decoder, the importer or the
//! `.graph` loader after it: a seeded stream of byte-level mutations of the
//! models in `tests/data/` must give a graph or an error. Inputs that once
//! crashed are replayed from `tests/data/fuzz/` first.
//!
//! `LPU_FUZZ_MUTANTS` (per seed model, default 2000) and `LPU_FUZZ_SEED`
//! (default 2026) run longer or other searches, e.g.
//! `LPU_FUZZ_MUTANTS=200000 cargo test --release -p lpu-onnx --test fuzz_decoder`.

use std::path::Path;

use lpu_onnx::ImportOptions;
use rand::{Rng, SeedableRng};

fn budget() -> (usize, u64) {
    let n = std::env::var("LPU_FUZZ_MUTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seed = std::env::var("LPU_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2026);
    (n, seed)
}

/// Interesting bytes: varint continuation, large varints, wire types, tags
/// of the fields the importer reads.
const MAGIC: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x10, 0x12, 0x1a, 0x22, 0x2a, 0x3a, 0x42, 0x4a, 0x52,
    0x62, 0x72, 0xa0,
];

fn mutate(bytes: &[u8], rng: &mut rand_chacha::ChaCha8Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for _ in 0..rng.gen_range(1..5) {
        if b.is_empty() {
            b.push(0);
        }
        let i = rng.gen_range(0..b.len());
        match rng.gen_range(0..7) {
            0 => b[i] ^= 1 << rng.gen_range(0..8),
            1 => b[i] = MAGIC[rng.gen_range(0..MAGIC.len())],
            2 => {
                b.remove(i);
            }
            3 => b.insert(i, MAGIC[rng.gen_range(0..MAGIC.len())]),
            4 => b.truncate(i),
            5 => {
                // A huge varint (a length or a dimension).
                let v: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];
                for (k, x) in v.iter().enumerate() {
                    if i + k < b.len() {
                        b[i + k] = *x;
                    }
                }
            }
            _ => {
                // Duplicate a span (repeated fields, nested messages).
                let j = rng.gen_range(i..b.len().min(i + 64) + 1).min(b.len());
                let span = b[i..j].to_vec();
                let at = rng.gen_range(0..=b.len());
                b.splice(at..at, span);
            }
        }
    }
    b
}

fn exercise(bytes: &[u8], base: &Path) {
    let mut opts = ImportOptions::default();
    opts.dims.insert("batch".into(), 2);
    if let Ok(imp) = lpu_onnx::import_bytes(bytes, "<mutant>", base, &opts) {
        if let Ok(g) = lpu_graph::load::build(imp.graph.clone(), "<mutant>", base) {
            // Keep the run short: interpret only small graphs.
            if g.tensors.values().all(|t| t.len() <= 1 << 16) {
                let inputs = lpu_graph::random_inputs(&g, 1);
                let _ = lpu_graph::interpret(&g, &inputs);
            }
        }
        let _ = lpu_onnx::write::render(&imp.graph, "m.graph.data");
    }
    let _ = <lpu_onnx::proto::TensorProto as prost::Message>::decode(bytes);
}

#[test]
fn regressions_do_not_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut paths: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        let bytes = std::fs::read(&p).unwrap();
        exercise(&bytes, &dir);
    }
}

#[test]
fn damaged_models_do_not_panic() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let (mutants, seed) = budget();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut imported = 0;
    for name in [
        "mlp.onnx",
        "opset9.onnx",
        "external.onnx",
        "unsupported.onnx",
        "case_mlp/model.onnx",
    ] {
        let bytes = std::fs::read(data.join(name)).unwrap();
        for _ in 0..mutants {
            let m = mutate(&bytes, &mut rng);
            let mut opts = ImportOptions::default();
            opts.dims.insert("batch".into(), 2);
            if lpu_onnx::import_bytes(&m, "<mutant>", &data, &opts).is_ok() {
                imported += 1;
            }
            let r = std::panic::catch_unwind(|| exercise(&m, &data));
            if let Err(p) = r {
                // Keep the input for a regression test in tests/data/fuzz/.
                let out =
                    std::env::temp_dir().join(format!("lpu-onnx-crash-{seed}-{imported}.onnx"));
                let _ = std::fs::write(&out, &m);
                eprintln!("crashing input written to {}", out.display());
                std::panic::resume_unwind(p);
            }
        }
    }
    // Some mutants still import (a changed weight, a renamed tensor).
    assert!(imported > 0);
}

/// A random small constant: INT64, FLOAT or BOOL, rank 0 to 3, dimensions
/// 0 to 3, values including the extremes.
fn random_const(rng: &mut rand_chacha::ChaCha8Rng) -> lpu_onnx::tensor::Const {
    use lpu_onnx::proto::data_type as dt;
    use lpu_onnx::tensor::{Const, Data};
    let rank = rng.gen_range(0..4);
    let shape: Vec<usize> = (0..rank).map(|_| rng.gen_range(0..4)).collect();
    let n: usize = shape.iter().product();
    const INTS: &[i64] = &[i64::MIN, -4, -1, 0, 1, 2, 3, 7, i64::MAX];
    match rng.gen_range(0..3) {
        0 => Const::new(
            dt::INT64,
            shape,
            Data::Int((0..n).map(|_| INTS[rng.gen_range(0..INTS.len())]).collect()),
        ),
        1 => Const::new(
            dt::FLOAT,
            shape,
            Data::F32(
                (0..n)
                    .map(|_| [f32::NAN, -1.5, 0.0, 2.0, f32::INFINITY, 1e30][rng.gen_range(0..6)])
                    .collect(),
            ),
        ),
        _ => Const::new(
            dt::BOOL,
            shape,
            Data::Int((0..n).map(|_| rng.gen_range(0..2)).collect()),
        ),
    }
    .expect("consistent")
}

/// The shape-folding evaluator on random constant inputs and attributes:
/// an error or a result whose size matches its shape, never a panic.
#[test]
fn folding_random_constants_does_not_panic() {
    use lpu_onnx::fold::{fold, Attr, Attrs, FOLDABLE};
    let (mutants, seed) = budget();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..mutants * 5 {
        let op = FOLDABLE[rng.gen_range(0..FOLDABLE.len())];
        let k = rng.gen_range(0..6);
        let consts: Vec<_> = (0..k).map(|_| random_const(&mut rng)).collect();
        let ins: Vec<Option<&lpu_onnx::tensor::Const>> = consts
            .iter()
            .map(|c| (rng.gen_range(0..8) != 0).then_some(c))
            .collect();
        let present: Vec<bool> = ins.iter().map(|_| rng.gen_range(0..8) != 0).collect();
        let shapes: Vec<Option<&[usize]>> = consts.iter().map(|c| Some(&c.shape[..])).collect();
        let mut attrs = Attrs::new();
        for name in ["axis", "to", "start", "end", "allowzero"] {
            if rng.gen_range(0..3) == 0 {
                let v =
                    [-9, -2, -1, 0, 1, 2, 3, 7, 11, 16, i64::MIN, i64::MAX][rng.gen_range(0..12)];
                attrs.insert(name.into(), Attr::Int(v));
            }
        }
        if rng.gen_range(0..4) == 0 {
            attrs.insert("value".into(), Attr::Tensor(random_const(&mut rng)));
        }
        if let Ok(Some(outs)) = fold(op, &ins, &present, &shapes, &attrs) {
            for o in outs {
                assert_eq!(o.len(), o.shape.iter().product::<usize>(), "{op}");
            }
        }
    }
}
