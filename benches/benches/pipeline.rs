//! Compile and simulate the bundled examples: `cargo bench -p lpu-benches`.
//! Figures go in `benches/README.md` with the machine they ran on.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{criterion_group, criterion_main, Criterion};
use lpu_isa::ChipConfig;
use lpu_sim::SimOptions;
use std::path::Path;

fn example(name: &str) -> lpu_graph::Graph {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    lpu_graph::load_graph(&path).expect("example loads")
}

fn pipeline(c: &mut Criterion) {
    for model in ["mlp.graph", "mlp-int8.graph"] {
        for chip_name in ["tiny", "tsp"] {
            let graph = example(model);
            let chip = ChipConfig::preset(chip_name).expect("preset");
            c.bench_function(&format!("compile {model} {chip_name}"), |b| {
                b.iter(|| lpu_compiler::compile(&graph, &chip).expect("compiles"))
            });
            let program = lpu_compiler::compile(&graph, &chip)
                .expect("compiles")
                .program;
            let inputs = lpu_graph::random_inputs(&graph, 0);
            c.bench_function(&format!("simulate {model} {chip_name}"), |b| {
                b.iter(|| {
                    lpu_sim::simulate(&program, &inputs, &SimOptions::default()).expect("runs")
                })
            });
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = pipeline
}
criterion_main!(benches);
