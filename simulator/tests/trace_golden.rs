//! The per-cycle text trace of a small program on `tiny`, compared with a
//! committed expectation (`BLESS=1` rewrites it). The program is the
//! compiler's golden assembly of `add-relu.graph`, so this test needs no
//! compiler.

use lpu_graph::Tensor;
use lpu_sim::{simulate, trace, SimOptions};
use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn add_relu_trace_on_tiny() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let asm = std::fs::read_to_string(root.join("../compiler/tests/filetests/add-relu.lpa"))
        .expect("golden asm");
    let p = lpu_isa::asm::assemble(&asm).expect("assembles");
    let inputs: BTreeMap<String, Tensor> = p
        .inputs
        .iter()
        .map(|b| {
            let n: usize = b.shape.iter().product();
            let v = lpu_isa::Values::F32((0..n).map(|i| i as f32 - 10.0).collect());
            (
                b.name.clone(),
                Tensor::new(b.shape.clone(), v).expect("tensor"),
            )
        })
        .collect();
    let o = simulate(
        &p,
        &inputs,
        &SimOptions {
            trace: true,
            ..SimOptions::default()
        },
    )
    .expect("runs");
    assert!(o.hazard.is_none(), "{:?}", o.hazard);
    // y = relu(a + b) with a = b = i - 10.
    let y = &o.outputs["y"];
    let want: Vec<f64> = (0..20)
        .map(|i| (2.0 * (i as f64 - 10.0)).max(0.0))
        .collect();
    assert_eq!(
        (0..20).map(|i| y.values.get_f64(i)).collect::<Vec<_>>(),
        want
    );
    let text = trace::text(&p, &o.trace);
    let golden = root.join("tests/golden/add-relu.trace.txt");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&golden, &text).expect("write");
    }
    let expected = std::fs::read_to_string(&golden).expect("golden trace (BLESS=1 creates it)");
    assert_eq!(text, expected, "trace changed; BLESS=1 accepts it");
    // The Chrome trace is valid JSON with one event per issue plus metadata.
    let json: serde_json::Value = serde_json::from_str(&trace::chrome(&p, &o.trace)).expect("json");
    let events = json["traceEvents"].as_array().expect("events");
    assert_eq!(
        events.iter().filter(|e| e["ph"] == "X").count(),
        o.trace.len()
    );
}
