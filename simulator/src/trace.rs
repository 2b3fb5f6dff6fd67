//! Traces: a per-cycle text trace a student can read, and a Chrome
//! trace-event JSON (one track per queue) that Perfetto and
//! `chrome://tracing` open. In the JSON, one microsecond of trace time is one
//! machine cycle.

use crate::engine::TraceEvent;
use lpu_isa::Program;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// The text trace: one line per issued instruction, in cycle order.
pub fn text(p: &Program, events: &[TraceEvent]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "; lpsim trace of '{}' on chip '{}' ({} lanes, {} MHz)",
        p.model,
        p.chip.name,
        p.chip.lanes(),
        p.chip.clock_mhz
    );
    let _ = writeln!(
        out,
        "; cycle  queue       instruction                                       lands  node"
    );
    let mut last = None;
    for e in events {
        if last.is_some_and(|c| c != e.cycle) {
            out.push('\n');
        }
        last = Some(e.cycle);
        let node = e
            .node
            .and_then(|n| p.nodes.get(n as usize))
            .map(|n| format!("{} ({})", n.name, n.op))
            .unwrap_or_default();
        let rep = if e.repeat > 0 {
            format!(" (repeat {})", e.repeat)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:>7}  {:<11} {:<49} {:>6}  {node}{rep}",
            e.cycle,
            e.queue.to_string(),
            e.asm,
            e.cycle + e.delay
        );
    }
    out
}

/// The Chrome trace-event JSON.
pub fn chrome(p: &Program, events: &[TraceEvent]) -> String {
    let mut list: Vec<Value> = Vec::with_capacity(events.len() + p.queues.len() + 1);
    list.push(
        json!({"ph": "M", "name": "process_name", "pid": 0, "tid": 0,
        "args": {"name": format!("lpu {} — {} (1 us = 1 cycle)", p.chip.name, p.model)}}),
    );
    for (k, q) in p.queues.iter().enumerate() {
        list.push(json!({"ph": "M", "name": "thread_name", "pid": 0, "tid": k, "args": {"name": q.queue.to_string()}}));
        list.push(json!({"ph": "M", "name": "thread_sort_index", "pid": 0, "tid": k, "args": {"sort_index": k}}));
    }
    for e in events {
        let mnemonic = e.asm.split_whitespace().nth(1).unwrap_or("?");
        let node = e
            .node
            .and_then(|n| p.nodes.get(n as usize))
            .map(|n| n.name.clone());
        list.push(json!({
            "ph": "X", "pid": 0, "tid": e.queue_index,
            "name": mnemonic,
            "cat": e.queue.unit.name(),
            "ts": e.cycle,
            "dur": e.delay.max(1),
            "args": {"asm": e.asm, "node": node, "lands": e.cycle + e.delay},
        }));
    }
    let doc = json!({"traceEvents": list, "displayTimeUnit": "ns"});
    serde_json::to_string(&doc).unwrap_or_default()
}
