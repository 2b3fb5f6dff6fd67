//! Damaged `.graph` text never panics the parser or the compiler: a seeded
//! stream of small edits to the example models must give a graph or an
//! error, and a compiled program must simulate without panicking.

use lpu_isa::ChipConfig;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// Mutants per example; `LPU_FUZZ_MUTANTS` and `LPU_FUZZ_SEED` run longer
/// or other searches.
fn budget() -> (usize, u64) {
    let n = std::env::var("LPU_FUZZ_MUTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed = std::env::var("LPU_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2026);
    (n, seed)
}

fn mutate(text: &str, rng: &mut rand_chacha::ChaCha8Rng) -> String {
    let mut b: Vec<char> = text.chars().collect();
    for _ in 0..rng.gen_range(1..4) {
        if b.is_empty() {
            break;
        }
        let i = rng.gen_range(0..b.len());
        match rng.gen_range(0..5) {
            0 => {
                b.remove(i);
            }
            1 => b.insert(
                i,
                ['0', '9', ',', '[', ']', '"', '-', '('][rng.gen_range(0..8)],
            ),
            2 if b[i].is_ascii_digit() => b[i] = char::from(b'0' + rng.gen_range(0..10u8)),
            3 => b.truncate(i),
            _ => {
                let j = rng.gen_range(0..b.len());
                b.swap(i, j);
            }
        }
    }
    b.into_iter().collect()
}

#[test]
fn damaged_graphs_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let tiny = ChipConfig::preset("tiny").expect("tiny");
    let (mutants, seed) = budget();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut compiled = 0;
    for name in ["mlp.graph", "mlp-int8.graph"] {
        let text = std::fs::read_to_string(root.join(name)).expect("example");
        for _ in 0..mutants {
            let m = mutate(&text, &mut rng);
            let Ok(g) = lpu_graph::parse_graph(&m, "<mutant>", &root) else {
                continue;
            };
            // Keep the run short: skip mutants that grew a huge tensor.
            if g.tensors
                .values()
                .any(|t| t.shape.iter().product::<usize>() > 1 << 20)
            {
                continue;
            }
            if let Ok(c) = lpu_compiler::compile(&g, &tiny) {
                compiled += 1;
                let inputs = lpu_graph::random_inputs(&g, 1);
                let _ = lpu_sim::simulate(&c.program, &inputs, &lpu_sim::SimOptions::default());
            }
        }
    }
    // Most single edits break the syntax; some still give a valid model.
    assert!(compiled > 0);
}
