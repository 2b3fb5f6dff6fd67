//! `lpsim`: the lpu simulator's command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use lpu_cli::{report_error, write_atomic, Artifact, EXIT_ERROR, EXIT_FOUND, EXIT_OK};
use lpu_graph::{Graph, Tensor};
use lpu_sim::dynamic::{run_seeds_with, Distribution, DynamicOptions, DynamicReport};
use lpu_sim::{check, perturb, report, trace, SimOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs lpu programs cycle-accurately with real values.
#[derive(Parser)]
#[command(name = "lpsim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once; `run`'s flags are many
enum Command {
    /// Run a program (.lpb/.lpa) or a model (.graph, compiled in-process).
    Run(RunArgs),
    /// Static vs dynamic scheduling of the same program side by side
    /// (latency, stalls, the dynamic latency distribution over `--seeds`
    /// runs, default 16, and the GPU baseline when the model is known).
    Compare(RunArgs),
    /// A grid of chip configurations (`--set KEY=V1,V2,...`, repeatable)
    /// compiled and simulated in parallel: CSV plus an SVG plot of latency
    /// (and energy) against the first swept parameter.
    Sweep(lpu_cli::sweep::Args),
    /// Run ONNX backend-test cases (DIR/model.onnx, DIR/test_data_set_N/)
    /// and compare with their expected outputs (rtol 1e-3, atol 1e-7).
    OnnxTest(lpu_cli::onnx_test::Args),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Program or model file (not needed with `--gpu list`).
    input: Option<PathBuf>,
    /// Chip for a model: a preset (tsp, tiny) or a RON file. For a program it
    /// must name the chip the program was compiled for.
    #[arg(long)]
    chip: Option<String>,
    /// Input tensors as NumPy .npy files: NAME=FILE, or FILE in the order of
    /// the model's inputs. Unspecified inputs are seeded random tensors.
    #[arg(long, num_args = 1..)]
    inputs: Vec<String>,
    /// Seed for random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compare with the reference interpreter (bit-exact for integers).
    #[arg(long)]
    check: bool,
    /// The model a program was compiled from (needed by --check for programs).
    #[arg(long)]
    graph: Option<PathBuf>,
    /// Write a text trace (trace.txt) and a Chrome trace (trace.json) to DIR
    /// (default: <model>-trace).
    #[arg(long, num_args = 0..=1, value_name = "DIR")]
    trace: Option<Option<PathBuf>>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Move one seeded-random instruction one cycle later.
    #[arg(long, value_name = "SEED")]
    perturb: Option<u64>,
    /// Write the outputs as .npy files to DIR.
    #[arg(long, value_name = "DIR")]
    save_outputs: Option<PathBuf>,
    /// Simulate timing only: no values, no outputs (same cycles, counters
    /// and value-independent hazards as a full run; for quick sweeps).
    #[arg(long)]
    timing_only: bool,
    /// GPU baseline beside the LPU: a preset (h100, a100, h200, l4), a RON
    /// file, `none` to drop it, or `list` to print the presets. Needs the
    /// model: a .graph, or --graph with a program.
    #[arg(long, value_name = "NAME|FILE", default_value = "h100")]
    gpu: String,
    /// How the GPU baseline launches kernels: graphs (CUDA graphs), launch
    /// (plain stream launches) or eager (an eager framework).
    #[arg(long, value_name = "MODE", default_value = "graphs")]
    gpu_mode: String,
    /// Seed of the GPU baseline's jitter model (p50, p99).
    #[arg(long, value_name = "N", default_value_t = 0)]
    gpu_seed: u64,
    /// Per-node breakdown in the text report: `node` (every node), `layer`
    /// (nodes grouped by the name prefix up to the first numbered part, e.g.
    /// `layer1.0`), `op` (by operator type), or `none`.
    #[arg(long, value_name = "node|layer|op|none", default_value = "node")]
    by: String,
    /// Scheduling: `static` (the compiler's cycle-exact schedule) or
    /// `dynamic` (the dependence DAG on interlocked queues; simulator/DYNAMIC.md).
    #[arg(long, value_name = "static|dynamic", default_value = "static")]
    schedule: String,
    /// Dynamic mode: issue window per queue (default: the chip's
    /// `dynamic.window`, else 8).
    #[arg(long, value_name = "N")]
    window: Option<u32>,
    /// Dynamic mode: `sram` (on-chip, no extra latency) or `hbm` (the chip's
    /// HBM figures, else the defaults of simulator/DYNAMIC.md); default: the
    /// chip's `dynamic.memory`.
    #[arg(long, value_name = "sram|hbm")]
    memory: Option<String>,
    /// Dynamic mode: N runs with seeds --seed.. --seed+N-1 in parallel, and
    /// their latency distribution.
    #[arg(long, value_name = "N")]
    seeds: Option<u64>,
    /// Dynamic mode: where results wait for their consumers: `unbounded`
    /// (latched at the consumer however long) or `window` (only into a
    /// consumer inside its queue's issue window); default: the chip's
    /// `dynamic.latch_in_window`, else unbounded.
    #[arg(long, value_name = "unbounded|window")]
    latch: Option<String>,
    /// No progress bar on stderr for `--seeds` runs (it is drawn only when
    /// stderr is a terminal anyway).
    #[arg(long, short = 'q')]
    quiet: bool,
    #[command(flatten)]
    prepare: lpu_cli::PrepareArgs,
}

/// `run_seeds` with a progress bar on a terminal's stderr.
fn seeds(
    args: &RunArgs,
    p: &lpu_isa::Program,
    inputs: &BTreeMap<String, Tensor>,
    o: &DynamicOptions,
    n: u64,
) -> Result<Distribution> {
    let bar = lpu_cli::progress::Progress::new(n, "seeds", args.quiet);
    let d = run_seeds_with(p, inputs, o, n, &|| bar.inc())?;
    bar.finish();
    Ok(d)
}

/// The dynamic-mode options of a run: the chip's section overridden by
/// `--window` and `--memory`.
fn dynamic_options(args: &RunArgs, p: &lpu_isa::Program) -> Result<DynamicOptions> {
    let mut o = DynamicOptions::for_chip(&p.chip, args.seed);
    if let Some(w) = args.window {
        if !(1..=1024).contains(&w) {
            bail!("--window {w}: expected 1..=1024");
        }
        o.window = w as usize;
    }
    match args.memory.as_deref() {
        None => {}
        Some("sram") => o.memory = lpu_isa::MemoryModel::Sram,
        Some("hbm") if !matches!(o.memory, lpu_isa::MemoryModel::Hbm { .. }) => {
            o.memory = lpu_isa::MemoryModel::hbm_default();
        }
        Some("hbm") => {}
        Some(m) => bail!("--memory '{m}': expected sram or hbm"),
    }
    match args.latch.as_deref() {
        None => {}
        Some("unbounded") => o.latch_in_window = false,
        Some("window") => o.latch_in_window = true,
        Some(l) => bail!("--latch '{l}': expected unbounded or window"),
    }
    if args.seeds == Some(0) {
        bail!("--seeds must be at least 1");
    }
    Ok(o)
}

/// The GPU baseline's spec and options, or `None` for `--gpu none`.
fn gpu_for(args: &RunArgs) -> Result<Option<(lpu_gpu::GpuSpec, lpu_gpu::Options)>> {
    if args.gpu == "none" {
        return Ok(None);
    }
    let Some(mode) = lpu_gpu::LaunchMode::parse(&args.gpu_mode) else {
        bail!(
            "--gpu-mode: unknown mode '{}'; expected graphs, launch or eager",
            args.gpu_mode
        );
    };
    let spec = lpu_gpu::GpuSpec::resolve(&args.gpu)?;
    Ok(Some((
        spec,
        lpu_gpu::Options {
            mode,
            seed: args.gpu_seed,
        },
    )))
}

fn gpu_report(
    gpu: &Option<(lpu_gpu::GpuSpec, lpu_gpu::Options)>,
    g: &Graph,
    lpu_latency_us: Option<f64>,
) -> Option<report::GpuReport> {
    gpu.as_ref().map(|(spec, opts)| {
        let e = lpu_gpu::estimate_graph(g, spec, opts, lpu_gpu::F32Math::Tf32);
        report::GpuReport::new(spec, e, lpu_latency_us)
    })
}

/// For a model that does not fit: the GPU figures and the LPU's shortfall,
/// on stdout, before the error.
fn print_does_not_fit(
    args: &RunArgs,
    g: &Graph,
    gpu: &Option<(lpu_gpu::GpuSpec, lpu_gpu::Options)>,
    e: &lpu_compiler::CompileError,
) -> Result<()> {
    let lpu_compiler::CompileError::DoesNotFit {
        model,
        chip,
        required_mib,
        available_mib,
        largest,
    } = e
    else {
        return Ok(());
    };
    let Some(gr) = gpu_report(gpu, g, None) else {
        return Ok(());
    };
    if args.json {
        let v = serde_json::json!({
            "model": model,
            "chip": chip,
            "fits": false,
            "sram_required_mib": required_mib,
            "sram_available_mib": available_mib,
            "sram_shortfall_mib": required_mib - available_mib,
            "largest_tensors": largest,
            "gpu": gr,
        });
        lpu_cli::print_stdout(&(serde_json::to_string_pretty(&v)? + "\n"))?;
    } else {
        let mut s = format!(
            "model {model}  on chip {chip}: DOES NOT FIT\n  SRAM         needs {required_mib:.2} MiB, the chip has {available_mib:.2} MiB (short by {:.2} MiB)\n",
            required_mib - available_mib
        );
        s.push_str(&gr.text(&format!("{chip} (does not fit)"), None, None));
        lpu_cli::print_stdout(&s)?;
    }
    Ok(())
}

fn inputs_for(
    graph_inputs: &[(String, lpu_isa::DType, Vec<usize>)],
    args: &RunArgs,
    random: BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>> {
    let mut out = random;
    for (k, spec) in args.inputs.iter().enumerate() {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) => (n.to_string(), PathBuf::from(p)),
            None => match graph_inputs.get(k) {
                Some((n, _, _)) => (n.clone(), PathBuf::from(spec)),
                None => bail!(
                    "--inputs: more files ({}) than model inputs ({})",
                    args.inputs.len(),
                    graph_inputs.len()
                ),
            },
        };
        let Some((_, dtype, shape)) = graph_inputs.iter().find(|(n, _, _)| *n == name) else {
            let names: Vec<&str> = graph_inputs.iter().map(|(n, _, _)| n.as_str()).collect();
            bail!(
                "--inputs: the model has no input '{name}' (its inputs: {})",
                names.join(", ")
            );
        };
        let t = lpu_graph::npy::read_npy(&path)?;
        if t.dtype() != *dtype || &t.shape != shape {
            bail!(
                "{}: input '{name}' must be {dtype} {:?}, the file holds {} {:?}",
                path.display(),
                shape,
                t.dtype(),
                t.shape
            );
        }
        out.insert(name, t);
    }
    Ok(out)
}

fn random_for(p: &lpu_isa::Program, seed: u64) -> Result<BTreeMap<String, Tensor>> {
    // The same tensors the reference would draw: build a graph-shaped view.
    let mut out = BTreeMap::new();
    for (i, b) in p.inputs.iter().enumerate() {
        let n: usize = b.shape.iter().product();
        let v = lpu_graph::random::random_input_values(
            b.dtype,
            n,
            lpu_graph::random::input_seed(seed, i),
        );
        out.insert(b.name.clone(), Tensor::new(b.shape.clone(), v)?);
    }
    Ok(out)
}

/// A program ready to run: the program, its model when known, the
/// per-node precisions of an in-process compile, and the inputs.
struct Loaded {
    program: lpu_isa::Program,
    graph: Option<Graph>,
    node_precision: BTreeMap<String, String>,
    inputs: BTreeMap<String, Tensor>,
    /// Where the computed tensors live, for `--check` node by node (an
    /// in-process compile with `--check` only).
    probes: Vec<lpu_isa::program::Probe>,
}

fn run(args: RunArgs) -> Result<u8> {
    if args.gpu == "list" {
        lpu_cli::print_stdout(&lpu_gpu::GpuSpec::list())?;
        return Ok(EXIT_OK);
    }
    let gpu = gpu_for(&args)?;
    let by = report::Breakdown::parse(&args.by)
        .ok_or_else(|| anyhow::anyhow!("--by '{}': expected node, layer, op or none", args.by))?;
    let dynamic = match args.schedule.as_str() {
        "static" => None,
        "dynamic" => Some(()),
        s => bail!("--schedule '{s}': expected static or dynamic"),
    };
    if dynamic.is_none()
        && (args.seeds.is_some()
            || args.window.is_some()
            || args.memory.is_some()
            || args.latch.is_some())
    {
        bail!("--seeds, --window, --memory and --latch need --schedule dynamic");
    }
    if args.timing_only && (args.check || args.save_outputs.is_some() || dynamic.is_some()) {
        bail!("--timing-only computes no values: it cannot be combined with --check, --save-outputs or --schedule dynamic");
    }
    let Loaded {
        program,
        graph,
        node_precision,
        inputs,
        probes,
    } = load(&args, &gpu)?;
    // Captures cost memory and a comparison per node: only for a static
    // --check of the program as compiled (a perturbed one is checked end to
    // end).
    let probes = if args.check && dynamic.is_none() && args.perturb.is_none() {
        probes
    } else {
        Vec::new()
    };
    let (program, perturbation) = match args.perturb {
        Some(seed) => match perturb::perturb(&program, seed) {
            Some((p, d)) => (p, Some(d)),
            None => bail!("--perturb: no instruction can move one cycle later in this program"),
        },
        None => (program, None),
    };
    let opts = SimOptions {
        trace: args.trace.is_some(),
        timing_only: args.timing_only,
        probes,
    };
    // The lower bound and the energy's counts depend on the program alone:
    // they are worked out on a second core while the first simulates.
    let terms = || report::ProgramTerms::of(&program);
    let (run, terms) = match dynamic {
        None => {
            let (run, terms) = lpu_sim::simulate_beside(&program, &inputs, &opts, terms);
            (run.map(|o| (o, None)).map_err(anyhow::Error::new), terms)
        }
        Some(()) => rayon::join(
            || {
                let o = DynamicOptions {
                    trace: opts.trace,
                    ..dynamic_options(&args, &program)?
                };
                let d = lpu_sim::simulate_dynamic(&program, &inputs, &o)?;
                let mut dr = DynamicReport::new(&o, &d);
                dr.static_cycles = lpu_sim::simulate(&program, &inputs, &SimOptions::default())
                    .ok()
                    .filter(|s| s.hazard.is_none())
                    .map(|s| s.cycles);
                if let Some(n) = args.seeds {
                    dr.distribution = Some(seeds(&args, &program, &inputs, &o, n)?);
                }
                Ok::<_, anyhow::Error>((d.outcome, Some(dr)))
            },
            terms,
        ),
    };
    let (mut outcome, dyn_report) = run?;
    let check = match (&graph, args.check && outcome.hazard.is_none()) {
        (Some(g), true) => {
            let reference = lpu_graph::interpret(g, &inputs)?;
            let end_to_end = check::compare(&outcome.outputs, &reference);
            Some(if opts.probes.is_empty() {
                end_to_end
            } else {
                check_nodes(g, &inputs, std::mem::take(&mut outcome.probed), end_to_end)?
            })
        }
        _ => None,
    };
    if let Some(dir) = &args.trace {
        let dir = dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}-trace", program.model)));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        write_atomic(
            &dir.join("trace.txt"),
            trace::text(&program, &outcome.trace).as_bytes(),
        )?;
        write_atomic(
            &dir.join("trace.json"),
            trace::chrome(&program, &outcome.trace).as_bytes(),
        )?;
        if !args.json {
            eprintln!(
                "lpsim: wrote {} and {}",
                dir.join("trace.txt").display(),
                dir.join("trace.json").display()
            );
        }
    }
    if let Some(dir) = &args.save_outputs {
        save_outputs(dir, &outcome.outputs)?;
    }
    let found = outcome.hazard.is_some() || check.as_ref().is_some_and(|c| !c.passed);
    let mut r = report::build_with(&program, &outcome, terms, check, perturbation);
    r.set_precisions(&args.prepare.precision, &node_precision);
    r.dynamic = dyn_report;
    if let Some(g) = &graph {
        r.gpu = gpu_report(&gpu, g, Some(r.latency_us));
    }
    if args.json {
        lpu_cli::print_stdout(&(serde_json::to_string_pretty(&r)? + "\n"))?;
    } else {
        lpu_cli::print_stdout(&report::text_by(&r, by))?;
    }
    // The process ends here: freeing a large program's millions of slots
    // one by one took 50 ms of a 0.85 s ResNet-50 run; the OS takes the
    // memory back at exit instead.
    std::mem::forget((program, outcome, r));
    Ok(if found { EXIT_FOUND } else { EXIT_OK })
}

/// `--check` node by node: each captured tensor against the interpreter run
/// on its node's captured inputs ([`check::compare_nodes`]), which then
/// decides the verdict; the end-to-end comparison stays in the report.
fn check_nodes(
    g: &Graph,
    inputs: &BTreeMap<String, Tensor>,
    mut observed: BTreeMap<String, Tensor>,
    end_to_end: check::Check,
) -> Result<check::Check> {
    // Only captures the interpreter can take in place of its own values.
    observed.retain(|name, t| g.info(name).is_some_and(|i| *i == t.info()));
    let reference = lpu_graph::interpret_nodes(g, inputs, &observed)?;
    let order: Vec<String> = g
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter())
        .filter(|t| !t.is_empty() && reference.contains_key(*t))
        .cloned()
        .collect();
    let nodes = check::compare_nodes(&order, &observed, &reference);
    Ok(check::with_nodes(end_to_end, nodes))
}

/// Loads (or compiles) the program and draws or reads its inputs.
fn load(args: &RunArgs, gpu: &Option<(lpu_gpu::GpuSpec, lpu_gpu::Options)>) -> Result<Loaded> {
    let Some(input) = args.input.clone() else {
        bail!("missing the program or model to run (lpsim run MODEL.graph|PROGRAM.lpb)");
    };
    let mut node_precision = BTreeMap::new();
    let mut probes = Vec::new();
    let (program, graph): (lpu_isa::Program, Option<Graph>) = match lpu_cli::load(&input)? {
        Artifact::Graph(g) => {
            let chip = lpu_cli::chip(args.chip.as_deref().unwrap_or("tsp"))?;
            let prepared = args
                .prepare
                .prepare(*g)
                .with_context(|| input.display().to_string())?;
            node_precision = prepared.node_precision;
            let g = Box::new(prepared.graph);
            let precision = args.prepare.precision()?;
            let c = match lpu_compiler::compile_prepared(&g, &chip, precision, args.check) {
                Ok(c) => c,
                Err(e) => {
                    print_does_not_fit(args, &g, gpu, &e)?;
                    return Err(anyhow::Error::new(e).context(input.display().to_string()));
                }
            };
            probes = c.probes;
            (c.program, Some(*g))
        }
        Artifact::Program(p) => {
            if let Some(name) = &args.chip {
                let want = lpu_cli::chip(name)?;
                if want != p.chip {
                    bail!(
                        "{}: the program was compiled for chip '{}', not '{}'",
                        input.display(),
                        p.chip.name,
                        want.name
                    );
                }
            }
            let g = match &args.graph {
                Some(path) => Some(lpu_graph::load_graph(path)?),
                None => None,
            };
            (*p, g)
        }
    };
    if args.check && graph.is_none() {
        bail!(
            "--check needs the model: run the .graph, or pass --graph MODEL.graph with a program"
        );
    }
    if gpu.is_some() && graph.is_none() {
        eprintln!(
            "lpsim: no GPU baseline: it needs the model (pass --graph MODEL.graph, or run the .graph)"
        );
    }
    let specs: Vec<_> = program
        .inputs
        .iter()
        .map(|b| (b.name.clone(), b.dtype, b.shape.clone()))
        .collect();
    let inputs = inputs_for(&specs, args, random_for(&program, args.seed)?)?;
    Ok(Loaded {
        program,
        graph,
        node_precision,
        inputs,
        probes,
    })
}

/// `lpsim compare`: the static schedule and the dynamic mode of the same
/// program on the same inputs, side by side.
fn compare(args: RunArgs) -> Result<u8> {
    if args.schedule != "static" {
        bail!("compare runs both schedules: drop --schedule");
    }
    if args.perturb.is_some() || args.trace.is_some() || args.save_outputs.is_some() {
        bail!("compare takes no --perturb, --trace or --save-outputs");
    }
    let gpu = gpu_for(&args)?;
    let Loaded {
        program,
        graph,
        inputs,
        ..
    } = load(&args, &gpu)?;
    let st = lpu_sim::simulate(&program, &inputs, &SimOptions::default())?;
    let o = dynamic_options(&args, &program)?;
    let dy = lpu_sim::simulate_dynamic(&program, &inputs, &o)?;
    let dist = seeds(&args, &program, &inputs, &o, args.seeds.unwrap_or(16))?;
    let (st_check, dy_check) = match &graph {
        Some(g) if args.check => {
            let reference = lpu_graph::interpret(g, &inputs)?;
            let c = |o: &lpu_sim::Outcome| {
                o.hazard
                    .is_none()
                    .then(|| check::compare(&o.outputs, &reference).passed)
            };
            (c(&st), c(&dy.outcome))
        }
        _ => (None, None),
    };
    let clock = program.chip.clock_mhz;
    let us = |c: u64| c as f64 / clock;
    let gr = graph
        .as_ref()
        .and_then(|g| gpu_report(&gpu, g, Some(us(st.cycles))));
    let found = st.hazard.is_some()
        || dy.outcome.hazard.is_some()
        || st_check == Some(false)
        || dy_check == Some(false)
        || dist.hazards > 0;
    let mut dr = DynamicReport::new(&o, &dy);
    dr.static_cycles = Some(st.cycles);
    dr.distribution = Some(dist.clone());
    if args.json {
        let v = serde_json::json!({
            "model": program.model,
            "chip": program.chip.name,
            "clock_mhz": clock,
            "static": {
                "cycles": st.cycles,
                "latency_us": us(st.cycles),
                "hazard": st.hazard,
                "check_passed": st_check,
            },
            "dynamic": {
                "cycles": dy.outcome.cycles,
                "latency_us": us(dy.outcome.cycles),
                "hazard": dy.outcome.hazard,
                "check_passed": dy_check,
                "report": dr,
            },
            "dynamic_over_static": dy.outcome.cycles as f64 / st.cycles.max(1) as f64,
            "gpu": gr.as_ref().map(|g| serde_json::json!({
                "name": g.name,
                "mode": g.mode,
                "latency_us": g.latency_us,
                "p50_us": g.p50_us,
                "p99_us": g.p99_us,
            })),
        });
        lpu_cli::print_stdout(&(serde_json::to_string_pretty(&v)? + "\n"))?;
        return Ok(if found { EXIT_FOUND } else { EXIT_OK });
    }
    let mut t = format!(
        "model {}  on chip {} ({} MHz): static vs dynamic (window {}, latch {}, memory {})\n",
        program.model,
        program.chip.name,
        clock,
        o.window,
        if o.latch_in_window {
            "window"
        } else {
            "unbounded"
        },
        o.memory_name()
    );
    // Static column 24 wide; a longer entry (six-digit cycles) keeps two
    // spaces before the dynamic one.
    let row = |t: &mut String, k: &str, a: String, b: String| {
        let w = 24.max(a.len() + 2);
        t.push_str(&format!("  {k:<13}{a:<w$}{b}\n"));
    };
    row(&mut t, "", "static".into(), "dynamic".into());
    row(
        &mut t,
        "cycles",
        st.cycles.to_string(),
        format!(
            "{} ({:+}, {:.3}x; seed {})",
            dy.outcome.cycles,
            dy.outcome.cycles as i64 - st.cycles as i64,
            dy.outcome.cycles as f64 / st.cycles.max(1) as f64,
            o.seed
        ),
    );
    row(
        &mut t,
        "latency",
        format!("{:.3} us", us(st.cycles)),
        format!("{:.3} us", us(dy.outcome.cycles)),
    );
    row(
        &mut t,
        "min/p50",
        format!("{0} / {0}", st.cycles),
        format!(
            "{} / {}  ({} seeds from {})",
            dist.min, dist.p50, dist.runs, dist.first_seed
        ),
    );
    row(
        &mut t,
        "p90/p99/max",
        format!("{0} / {0} / {0}", st.cycles),
        format!("{} / {} / {}", dist.p90, dist.p99, dist.max),
    );
    let s = &dy.stalls;
    row(
        &mut t,
        "stalls",
        "none (no interlocks)".into(),
        format!(
            "operand {}, structural {}, arbitration {}, memory {}",
            s.operand, s.structural, s.arbitration, s.memory
        ),
    );
    let m = &dist.mean_stalls;
    row(
        &mut t,
        "mean stalls",
        "-".into(),
        format!(
            "operand {:.1}, structural {:.1}, arbitration {:.1}, memory {:.1}",
            m.operand, m.structural, m.arbitration, m.memory
        ),
    );
    let verdict = |h: bool, c: Option<bool>| match (h, c) {
        (true, _) => "hazard".to_string(),
        (false, Some(true)) => "passed".into(),
        (false, Some(false)) => "FAILED".into(),
        (false, None) => "not checked".into(),
    };
    row(
        &mut t,
        "check",
        verdict(st.hazard.is_some(), st_check),
        verdict(dy.outcome.hazard.is_some(), dy_check),
    );
    if let Some(g) = &gr {
        t.push_str(&format!(
            "  GPU {} ({} launches): {:.3} us (p50 {:.3}, p99 {:.3}); a model (docs/gpu-model.md)\n",
            g.name, g.mode, g.latency_us, g.p50_us, g.p99_us
        ));
    }
    lpu_cli::print_stdout(&t)?;
    Ok(if found { EXIT_FOUND } else { EXIT_OK })
}

fn save_outputs(dir: &Path, outputs: &BTreeMap<String, Tensor>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    for (name, t) in outputs {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        write_atomic(
            &dir.join(format!("{safe}.npy")),
            &lpu_graph::npy::encode_npy(t),
        )?;
    }
    Ok(())
}

/// mimalloc: see the workspace `Cargo.toml` (a seventh of a compile or a
/// simulation was glibc's malloc and free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Run(a) => run(a),
        Command::Compare(a) => compare(a),
        Command::Sweep(a) => lpu_cli::sweep::main(a),
        Command::OnnxTest(a) => lpu_cli::onnx_test::main(a),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report_error("lpsim", &e);
            ExitCode::from(EXIT_ERROR)
        }
    }
}
