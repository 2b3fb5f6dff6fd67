//! Where a schedule leaves its units idle: per queue kind, issues per
//! window of cycles, and per graph node the busiest queue's share of the
//! node's span. A tool for schedule work (issue 7), not a user command.
//!
//! ```sh
//! cargo run --release -p lpu-cli --example queue_profile -- prog.lpb [WINDOW]
//! ```

use std::collections::BTreeMap;

use lpu_isa::{Opcode, Program, Unit};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: queue_profile PROGRAM.lpb [WINDOW]");
        std::process::exit(2);
    };
    let window: u64 = args.get(2).and_then(|w| w.parse().ok()).unwrap_or(2000);
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let program = match Program::from_bytes(&bytes) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let issues = match program.issue_times() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    // Per window: issues per (unit, queue index), and the busiest MXM
    // compute queue.
    let mut win: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    // Per node: span and issues per queue.
    let mut nodes: BTreeMap<u32, (u64, u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for is in &issues {
        let q = &program.queues[is.queue as usize];
        let s = &q.slots[is.slot as usize];
        if matches!(s.instr.op, Opcode::Nop | Opcode::Sync | Opcode::Notify) {
            continue;
        }
        let key = match q.queue.unit {
            Unit::Mxm => format!("mxm{}@{}", q.queue.index, q.queue.slice),
            Unit::Mem => format!("mem{}", q.queue.slice % 2),
            u => format!("{u:?}").to_lowercase(),
        };
        *win.entry(is.cycle / window)
            .or_default()
            .entry(key.clone())
            .or_default() += 1;
        if let Some(n) = s.node {
            let e = nodes.entry(n).or_insert((u64::MAX, 0, BTreeMap::new()));
            e.0 = e.0.min(is.cycle);
            e.1 = e.1.max(is.cycle);
            *e.2.entry(key).or_default() += 1;
        }
    }
    let keys: Vec<String> = {
        let mut k: Vec<String> = win.values().flat_map(|m| m.keys().cloned()).collect();
        k.sort();
        k.dedup();
        k
    };
    print!("{:>8}", "cycle");
    for k in &keys {
        print!(" {k:>10}");
    }
    println!();
    for (w, m) in &win {
        print!("{:>8}", w * window);
        for k in &keys {
            print!(" {:>10}", m.get(k).copied().unwrap_or(0));
        }
        println!();
    }
    println!();
    for (n, (a, b, m)) in &nodes {
        let name = &program.nodes[*n as usize].name;
        let (bk, bv) = m
            .iter()
            .max_by_key(|(_, v)| **v)
            .map(|(k, v)| (k.clone(), *v))
            .unwrap_or_default();
        println!(
            "{name:<32} {a:>7}..{b:>7} span {:>6} busiest {bk} {bv} ({:.0}%)",
            b - a + 1,
            100.0 * bv as f64 / (b - a + 1) as f64
        );
        let all: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("    {}", all.join(" "));
    }
}
