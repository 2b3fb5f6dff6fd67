//! The lower bound and timing-only simulation on the example models, on
//! `tiny`: the bound never exceeds the simulated cycles, static or
//! dynamic; a timing-only run
//! gives the same cycles, counters, report and hazards (of seeded
//! perturbations too) as a full run; `lpsim --timing-only` refuses `--check`.

use lpu_sim::dynamic::{simulate_dynamic, DynamicOptions};
use lpu_sim::{lower_bound, report, simulate, SimOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Examples too large for a test on `tiny` (minutes and gigabytes each);
/// `lpsim run` covers them by hand.
const LARGE: &[&str] = &[
    "resnet50",
    "bert-base",
    "gpt2-decode-128",
    "gpt2-decode-1024",
];

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "graph"))
        .filter(|p| {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            !LARGE.contains(&stem)
        })
        .collect();
    v.sort();
    v
}

fn timing() -> SimOptions {
    SimOptions {
        timing_only: true,
        ..SimOptions::default()
    }
}

#[test]
fn bound_holds_and_timing_only_matches_on_every_small_example() {
    let chip = lpu_isa::ChipConfig::preset("tiny").expect("tiny");
    let mut ran = 0;
    for path in examples() {
        let name = path.display().to_string();
        let g = lpu_graph::load_graph(&path).expect(&name);
        let p = match lpu_compiler::compile(&g, &chip) {
            Ok(c) => c.program,
            Err(lpu_compiler::CompileError::Unsupported { .. }) => continue,
            Err(e) => panic!("{name}: {e}"),
        };
        let inputs = lpu_graph::random_inputs(&g, 0);
        let full = simulate(&p, &inputs, &SimOptions::default()).expect(&name);
        assert!(full.hazard.is_none(), "{name}: {:?}", full.hazard);
        let b = lower_bound(&p);
        assert!(
            b.cycles <= full.cycles,
            "{name}: bound {} ({}) above the simulated {} cycles: {:?}",
            b.cycles,
            b.kind,
            full.cycles,
            b.breakdown
        );
        assert!(b.cycles > 0, "{name}");
        // Every dynamic run is another schedule of the same instructions
        // (with the same dependences and resources), so the bound holds for
        // it too: in order, at the default window, a wide one, latched.
        for (window, latch_in_window) in [(1, false), (8, false), (64, false), (8, true)] {
            let opts = DynamicOptions {
                window,
                latch_in_window,
                ..DynamicOptions::for_chip(&chip, 0)
            };
            let d = simulate_dynamic(&p, &inputs, &opts).expect(&name);
            assert!(d.outcome.hazard.is_none(), "{name}: {:?}", d.outcome.hazard);
            assert!(
                b.cycles <= d.outcome.cycles,
                "{name}: bound {} ({}) above a dynamic run's {} cycles (window {window})",
                b.cycles,
                b.kind,
                d.outcome.cycles
            );
        }
        let t = simulate(&p, &inputs, &timing()).expect(&name);
        assert_eq!(t.cycles, full.cycles, "{name}");
        assert_eq!(t.stats, full.stats, "{name}");
        assert!(t.hazard.is_none(), "{name}: {:?}", t.hazard);
        assert!(t.outputs.is_empty(), "{name}");
        assert_eq!(
            report::build(&p, &t, None, None),
            report::build(&p, &full, None, None),
            "{name}: report"
        );
        // Perturbed programs: the same hazard (or none) at the same cycle.
        for seed in 0..4 {
            let Some((q, _)) = lpu_sim::perturb::perturb(&p, seed) else {
                continue;
            };
            let a = simulate(&q, &inputs, &SimOptions::default()).expect(&name);
            let z = simulate(&q, &inputs, &timing()).expect(&name);
            assert_eq!(z.hazard, a.hazard, "{name}: perturb {seed}");
            assert_eq!(z.cycles, a.cycles, "{name}: perturb {seed}");
            assert_eq!(z.stats, a.stats, "{name}: perturb {seed}");
            if a.hazard.is_none() {
                assert!(lower_bound(&q).cycles <= a.cycles, "{name}: perturb {seed}");
            }
        }
        ran += 1;
    }
    assert!(ran >= 4, "only {ran} examples ran");
}

fn lpsim(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_lpsim"))
        .args(args)
        .output()
        .expect("lpsim runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A functional delay far longer than the chip is wide (a sweep of
/// `latency.read`, lab 3): a stream value lands on a wavefront diagonal
/// that many cycles ahead, which the simulator's ring of diagonals must
/// still hold when its reader comes.
#[test]
fn long_functional_delays_keep_their_stream_values() {
    let mut chip = lpu_isa::ChipConfig::preset("tiny").expect("tiny");
    chip.latency_overrides.insert("read".into(), 203);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mlp-int8.graph");
    let g = lpu_graph::load_graph(&path).expect("mlp-int8");
    let p = lpu_compiler::compile(&g, &chip).expect("compile").program;
    let inputs = lpu_graph::random_inputs(&g, 0);
    for opts in [SimOptions::default(), timing()] {
        let o = simulate(&p, &inputs, &opts).expect("runs");
        assert!(o.hazard.is_none(), "{:?}", o.hazard);
        assert_eq!(o.cycles, 3222);
    }
}

#[test]
fn lpsim_timing_only_reports_the_same_cycles_and_the_bound() {
    let mlp = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mlp-int8.graph");
    let base = [
        "run", mlp, "--chip", "tiny", "--json", "--gpu", "none", "--by", "none",
    ];
    let (code, full, err) = lpsim(&base);
    assert_eq!(code, 0, "{err}");
    let mut args = base.to_vec();
    args.push("--timing-only");
    let (code, timed, err) = lpsim(&args);
    assert_eq!(code, 0, "{err}");
    let f: serde_json::Value = serde_json::from_str(&full).expect("json");
    let t: serde_json::Value = serde_json::from_str(&timed).expect("json");
    assert_eq!(f, t);
    let bound = f["lower_bound_cycles"].as_u64().expect("bound");
    assert!(bound > 0 && bound <= f["cycles"].as_u64().expect("cycles"));
    assert!(f["bound_kind"].is_string());
    assert_eq!(
        f["bound"]["critical_path"]["resource"].as_str(),
        Some("critical-path")
    );
    let (code, text, _) = lpsim(&base[..base.len() - 5]);
    assert_eq!(code, 0);
    assert!(text.contains("  lower bound  "), "{text}");
    assert!(text.contains("x the bound"), "{text}");
    let (code, _, err) = lpsim(&["run", mlp, "--chip", "tiny", "--timing-only", "--check"]);
    assert_eq!(code, 2);
    assert!(err.contains("--timing-only computes no values"), "{err}");
}
