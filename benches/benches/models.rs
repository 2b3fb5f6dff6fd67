//! Compile and simulate each bundled example model in the precision and on
//! the chip of the README's results table: `cargo bench -p lpu-benches
//! --bench models` (all of them, about 15 minutes on two cores), or one
//! model with a filter, `cargo bench -p lpu-benches --bench models --
//! resnet50`. For each model:
//!
//! - `prepare M CHIP`: the graph passes and the precision rewrite (for
//!   int8, calibration: the reference interpreter on the default 4 seeded
//!   samples; the same for every chip, timed once per row);
//! - `compile M CHIP`: lowering, scheduling and emission of the prepared
//!   graph (what each point of `lpc sweep` costs);
//! - `load M CHIP`: decoding and validating the binary program
//!   (`Program::from_bytes`);
//! - `simulate M CHIP` with values, and `simulate-timing M CHIP` timing
//!   only (`lpsim run --timing-only`), on seeded random inputs;
//! - `bound M CHIP`: the lower bound the report carries.
//!
//! `lpc compile` is `prepare` plus `compile` plus writing the file, and
//! `lpsim run PROGRAM` is `load` plus `simulate` (beside `bound`, on the
//! second core) plus the report. Figures go in `benches/README.md` with the
//! machine they ran on.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use lpu_compiler::{CompileOptions, Precision};
use lpu_isa::{ChipConfig, Program};
use lpu_sim::SimOptions;
use std::cell::OnceCell;
use std::path::Path;

/// The allocator `lpc` and `lpsim` use, so that the figures are theirs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The README's results table: model, chip, precision.
const MODELS: [(&str, &str, Precision); 7] = [
    ("lenet", "tiny", Precision::Int8),
    ("lenet", "tsp", Precision::Int8),
    ("transformer-block", "tsp", Precision::Int8),
    ("transformer-block", "tiny", Precision::Fp32),
    ("resnet50", "tsp", Precision::Int8),
    ("gpt2-decode-128", "tsp", Precision::Int8),
    ("bert-base", "tsp", Precision::Int8),
];

fn models(c: &mut Criterion) {
    for (model, chip_name, precision) in MODELS {
        let chip = ChipConfig::preset(chip_name).expect("preset");
        let options = CompileOptions {
            precision,
            ..CompileOptions::default()
        };
        // Made on first use, so that a filter naming one model does not
        // prepare and compile the others (criterion runs only the closures
        // of the benchmarks it selects).
        let graph = OnceCell::new();
        let graph = || {
            graph.get_or_init(|| {
                let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../examples")
                    .join(format!("{model}.graph"));
                lpu_graph::load_graph(&path).expect("example loads")
            })
        };
        let prepared = OnceCell::new();
        let prepared = || {
            prepared.get_or_init(|| {
                lpu_compiler::prepare(graph().clone(), &options)
                    .expect("prepares")
                    .graph
            })
        };
        let program = OnceCell::new();
        let program = || {
            program.get_or_init(|| {
                lpu_compiler::compile_prepared(prepared(), &chip, precision, false)
                    .expect("compiles")
                    .program
            })
        };
        let inputs = OnceCell::new();
        let inputs = || inputs.get_or_init(|| lpu_graph::random_inputs(prepared(), 0));
        let name = |what: &str| format!("{what} {model} {chip_name}");
        c.bench_function(&name("prepare"), |b| {
            let graph = graph();
            // `lpc compile` hands its graph over; the copy is not timed.
            b.iter_batched(
                || graph.clone(),
                |g| lpu_compiler::prepare(g, &options).expect("prepares"),
                BatchSize::LargeInput,
            )
        });
        c.bench_function(&name("compile"), |b| {
            let prepared = prepared();
            b.iter(|| {
                lpu_compiler::compile_prepared(prepared, &chip, precision, false).expect("compiles")
            })
        });
        let bytes = OnceCell::new();
        c.bench_function(&name("load"), |b| {
            let bytes = bytes.get_or_init(|| program().to_bytes());
            b.iter(|| Program::from_bytes(bytes).expect("loads"))
        });
        c.bench_function(&name("simulate"), |b| {
            let (program, inputs) = (program(), inputs());
            b.iter(|| lpu_sim::simulate(program, inputs, &SimOptions::default()).expect("runs"))
        });
        let timing = SimOptions {
            timing_only: true,
            ..SimOptions::default()
        };
        c.bench_function(&name("simulate-timing"), |b| {
            let (program, inputs) = (program(), inputs());
            b.iter(|| lpu_sim::simulate(program, inputs, &timing).expect("runs"))
        });
        c.bench_function(&name("bound"), |b| {
            let program = program();
            b.iter(|| lpu_sim::lower_bound(program))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = models
}
criterion_main!(benches);
