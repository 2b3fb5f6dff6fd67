//! Helpers shared by the graph crate's operator tests: one-node graphs
//! over inline initializers.

#![allow(dead_code)]

use lpu_graph::{Tensor, Values};

/// One inline initializer: `(name, dtype, shape, values)`; an empty name
/// is an omitted input.
pub type Init<'a> = (&'a str, &'a str, &'a [usize], &'a [f64]);

/// The `.graph` text of `y = op(ins...)` with attributes `attrs` (RON map
/// entries), every input an inline initializer.
pub fn one_node_graph(op: &str, attrs: &str, ins: &[Init<'_>]) -> String {
    let inits: Vec<String> = ins
        .iter()
        .filter(|i| !i.0.is_empty())
        .map(|(n, d, s, v)| {
            format!("Initializer(name: \"{n}\", dtype: {d}, shape: {s:?}, data: Inline({v:?}))")
        })
        .collect();
    let names: Vec<String> = ins.iter().map(|i| format!("\"{}\"", i.0)).collect();
    format!(
        "Graph(name: \"t\", inputs: [], outputs: [ValueInfo(name: \"y\")],
           initializers: [{}],
           nodes: [Node(name: \"n\", op_type: \"{op}\", inputs: [{}], outputs: [\"y\"], attributes: {{{attrs}}})])",
        inits.join(", "),
        names.join(", ")
    )
}

/// The f32 values of `t` (panics on another type).
pub fn f32s(t: &Tensor) -> Vec<f32> {
    match &t.values {
        Values::F32(v) => v.clone(),
        other => panic!("expected f32, got {other:?}"),
    }
}
