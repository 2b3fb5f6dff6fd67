//! Dead node elimination: removes every node none of whose outputs reaches a
//! graph output, and every initializer no remaining node reads (and that is
//! not itself a graph output). Graph inputs stay, used or not: they are the
//! program's interface.

use std::collections::BTreeSet;

use lpu_graph::Graph;

use super::Parts;
use crate::CompileError;

/// Removes dead nodes and unused initializers; returns the graph and how many
/// nodes and initializers were removed (0: `g` is returned as it was).
pub fn eliminate_dead(g: Graph) -> Result<(Graph, usize), CompileError> {
    let mut live: BTreeSet<&str> = g.outputs.iter().map(String::as_str).collect();
    let mut keep = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate().rev() {
        if n.outputs.iter().any(|o| live.contains(o.as_str())) {
            keep[i] = true;
            live.extend(
                n.inputs
                    .iter()
                    .map(String::as_str)
                    .filter(|t| !t.is_empty()),
            );
        }
    }
    let dead_inits: Vec<String> = g
        .initializers
        .keys()
        .filter(|k| !live.contains(k.as_str()))
        .cloned()
        .collect();
    let removed = keep.iter().filter(|k| !**k).count() + dead_inits.len();
    if removed == 0 {
        return Ok((g, 0));
    }
    let mut p = Parts::of(g);
    let mut it = keep.into_iter();
    p.nodes.retain(|_| it.next().unwrap_or(true));
    for k in &dead_inits {
        p.initializers.remove(k);
    }
    Ok((p.rebuild("dce")?, removed))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn removes_nodes_that_reach_no_output_and_unused_initializers() {
        let g = parse(
            r#"Graph(
              name: "dce",
              inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 4]),
                       ValueInfo(name: "unused_in", dtype: F32, shape: [1, 4])],
              outputs: [ValueInfo(name: "y"), ValueInfo(name: "c")],
              initializers: [
                Initializer(name: "c", dtype: F32, shape: [4], data: Inline([1, 2, 3, 4])),
                Initializer(name: "k", dtype: F32, shape: [4], data: Inline([1, 1, 1, 1])),
                Initializer(name: "gone", dtype: F32, shape: [4], data: Inline([0, 0, 0, 0])),
              ],
              nodes: [
                Node(name: "a", op_type: "Add", inputs: ["x", "c"], outputs: ["t"]),
                Node(name: "dead1", op_type: "Mul", inputs: ["t", "k"], outputs: ["u"]),
                Node(name: "dead2", op_type: "Relu", inputs: ["u"], outputs: ["v"]),
                Node(name: "r", op_type: "Relu", inputs: ["t"], outputs: ["y"]),
              ],
            )"#,
        );
        let (o, removed) = eliminate_dead(g.clone()).unwrap();
        assert_eq!(removed, 4, "dead1, dead2, k, gone");
        let names: Vec<&str> = o.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "r"]);
        assert_eq!(o.initializers.keys().collect::<Vec<_>>(), ["c"]);
        assert_eq!(o.inputs.len(), 2, "graph inputs stay");
        assert_same_outputs(&g, &o, 0.0);
        let (_, again) = eliminate_dead(o).unwrap();
        assert_eq!(again, 0);
    }
}
