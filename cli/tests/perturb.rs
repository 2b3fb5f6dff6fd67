//! Hazard coverage: moving an instruction by a cycle must either be caught as
//! a hazard or leave the outputs bit-identical. Never a silent wrong answer.

mod common;

use common::{lpsim, output_bits, run, MLP, MLP_INT8};
use lpu_sim::{perturb::perturb, simulate, SimOptions};

/// Perturbs `model` compiled for `chip` with seeds `0..seeds` and returns how
/// many seeds gave a hazard.
fn sweep(model: &str, chip: &str, seeds: u64) -> usize {
    let g = common::load(model);
    let p = common::compile(&g, chip);
    let inputs = lpu_graph::random_inputs(&g, 0);
    let base = simulate(&p, &inputs, &SimOptions::default()).expect("simulate");
    assert!(
        base.hazard.is_none(),
        "{model}: unperturbed run: {:?}",
        base.hazard
    );
    let want = output_bits(&base.outputs);
    assert!(!want.is_empty());
    let mut hazards = 0;
    let mut moved = std::collections::BTreeSet::new();
    for seed in 0..seeds {
        let (q, d) = perturb(&p, seed).expect("something can move");
        assert_eq!(d.seed, seed);
        assert_eq!(d.to_cycle, d.from_cycle + 1, "{d:?}");
        assert!(q != p, "seed {seed}: perturb returned the same program");
        assert!(q.validate().is_ok(), "seed {seed}: invalid program: {d:?}");
        // Exactly one non-NOP instruction issues one cycle later; nothing
        // else moves.
        let issues = |x: &lpu_isa::Program| {
            let t = x.issue_times().unwrap();
            let mut v: Vec<(u32, u64, u32)> = t
                .iter()
                .map(|i| {
                    let s = &x.queues[i.queue as usize].slots[i.slot as usize];
                    (s.id, i.cycle, i.repeat)
                })
                .collect();
            v.sort_unstable();
            v
        };
        let (a, b) = (issues(&p), issues(&q));
        assert_eq!(a.len(), b.len(), "seed {seed}: issue count changed");
        let diff: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).collect();
        assert_eq!(diff.len(), 1, "seed {seed}: {d:?} changed {diff:?}");
        let ((id0, c0, _), (id1, c1, _)) = (diff[0].0, diff[0].1);
        assert_eq!(id0, id1);
        assert_eq!(format!("i{id0}"), d.instr);
        assert_eq!((*c0, *c1), (d.from_cycle, d.to_cycle));
        moved.insert(d.instr.clone());

        let out = simulate(&q, &inputs, &SimOptions::default()).expect("simulate perturbed");
        match &out.hazard {
            Some(h) => {
                hazards += 1;
                assert!(out.outputs.is_empty(), "hazard but outputs: {h}");
            }
            None => assert!(
                output_bits(&out.outputs) == want,
                "{model} on {chip}, seed {seed}: moved {} `{}` on {} from cycle {} to {}: no hazard, but the outputs changed",
                d.instr,
                d.asm,
                d.queue,
                d.from_cycle,
                d.to_cycle
            ),
        }
    }
    println!(
        "{model} on {chip}: {hazards} of {seeds} perturbations gave a hazard ({} distinct instructions moved)",
        moved.len()
    );
    hazards
}

#[test]
fn perturbing_int8_mlp_is_caught_or_harmless() {
    let h = sweep(MLP_INT8, "tiny", 40);
    assert!(h > 0, "no perturbation of the int8 MLP produced a hazard");
}

#[test]
fn perturbing_fp32_mlp_is_caught_or_harmless() {
    let h = sweep(MLP, "tiny", 40);
    assert!(h > 0, "no perturbation of the fp32 MLP produced a hazard");
}

#[test]
fn perturbing_on_tsp_is_caught_or_harmless() {
    sweep(MLP_INT8, "tsp", 12);
}

#[test]
fn perturb_is_deterministic() {
    let p = common::compile(&common::load(MLP_INT8), "tiny");
    for seed in [0, 3, 17] {
        let a = perturb(&p, seed).unwrap();
        let b = perturb(&p, seed).unwrap();
        assert!(a.0 == b.0 && a.1 == b.1, "seed {seed}");
    }
}

#[test]
fn cli_perturb_reports_hazard_and_move() {
    let r = run(lpsim().args([
        "run",
        MLP_INT8,
        "--chip",
        "tiny",
        "--perturb",
        "3",
        "--json",
    ]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON report");
    let h = &v["hazard"];
    assert!(h.is_object(), "hazard is {h}");
    for f in ["kind", "cycle", "queue", "instr", "asm", "message"] {
        assert!(!h[f].is_null(), "hazard.{f} missing: {h}");
    }
    let p = &v["perturb"];
    assert!(p.is_object(), "perturb is {p}");
    assert_eq!(p["seed"], 3);
    assert_eq!(
        p["to_cycle"].as_u64().unwrap(),
        p["from_cycle"].as_u64().unwrap() + 1
    );
    for f in ["instr", "asm", "queue"] {
        assert!(p[f].is_string(), "perturb.{f}: {p}");
    }
    // With a hazard there is no comparison to report.
    assert!(v["check"].is_null());
    // The same run, as text, names the hazard.
    let t = run(lpsim().args(["run", MLP_INT8, "--chip", "tiny", "--perturb", "3"]));
    assert_eq!(t.code, 1, "{t:?}");
    assert!(t.stdout.contains("HAZARD"), "{}", t.stdout);
    assert!(t.stdout.contains("perturb"), "{}", t.stdout);
}

/// Shortens the first `nop n=K` (K >= 2) in a MEM queue that is directly
/// followed by a read, moving that read and everything after it in the queue
/// one cycle earlier. Returns the edited text and the edited line.
fn shorten_nop_before_read(text: &str) -> (String, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let mut in_mem = false;
    for (k, line) in lines.iter().enumerate() {
        let code = line.split(';').next().unwrap_or("").trim();
        if let Some(q) = code.strip_prefix(".queue ") {
            in_mem = q.starts_with("mem@");
            continue;
        }
        if !in_mem {
            continue;
        }
        let toks: Vec<&str> = code.split_whitespace().collect();
        let [id, "nop", n] = toks[..] else { continue };
        let Some(n) = n.strip_prefix("n=").and_then(|x| x.parse::<u64>().ok()) else {
            continue;
        };
        let next = lines.get(k + 1).map(|l| l.trim()).unwrap_or("");
        let next_op = next.split_whitespace().nth(1).unwrap_or("");
        if n >= 2 && next_op.starts_with("read.") {
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            out[k] = format!("  {id} nop n={}", n - 1);
            return (out.join("\n") + "\n", k);
        }
    }
    panic!("no `nop n>=2` followed by a read in any MEM queue");
}

#[test]
fn hand_edited_assembly_is_caught() {
    for model in [MLP_INT8, MLP] {
        let g = common::load(model);
        let p = common::compile(&g, "tiny");
        let text = lpu_isa::asm::disassemble(&p);
        let (edited, line) = shorten_nop_before_read(&text);
        assert_ne!(edited, text);
        let q = lpu_isa::asm::assemble(&edited).expect("edited assembly still assembles");
        assert!(q != p);
        let inputs = lpu_graph::random_inputs(&g, 0);
        let out = simulate(&q, &inputs, &SimOptions::default()).expect("simulate");
        let h = out.hazard.unwrap_or_else(|| {
            panic!(
                "{model}: shortening the NOP on line {} went unnoticed",
                line + 1
            )
        });
        println!("{model}: edit on line {} caught: {h}", line + 1);
    }
}
