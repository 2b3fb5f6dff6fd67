//! Reading a `.graph` file into a validated [`Graph`]: RON parsing,
//! initializer materialization, and validation (unique names, every tensor
//! defined exactly once, supported ops with the right arity and attributes,
//! no cycles), stable topological ordering and shape/type inference.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::path::Path;

use lpu_isa::{DType, Values};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::GraphError;
use crate::format::{Dist, GraphFile, InitData, Initializer};
use crate::infer::infer_node;
use crate::interp::eval_node;
use crate::ir::{AttrValue, Graph, Node};
use crate::ops::{op_spec, SUPPORTED_OPS};
use crate::random::{convert_f64, random_values};
use crate::tensor::{checked_elements, Tensor, TensorInfo};

/// The largest node output (in elements) folded into [`Graph::constants`]
/// when all of the node's inputs are constant.
pub const FOLD_LIMIT: usize = 4096;

/// An attribute value for an error message: tensors without their data.
fn short_attr(v: &AttrValue) -> String {
    match v {
        AttrValue::Tensor { dtype, shape, .. } => format!("Tensor({dtype} {shape:?})"),
        other => format!("{other:?}"),
    }
}

/// Reads and validates the `.graph` file at `path`; `File(..)` initializers
/// are read relative to the file's directory.
pub fn load_graph(path: &Path) -> Result<Graph, GraphError> {
    let text = std::fs::read_to_string(path).map_err(|e| GraphError::Io {
        path: path.display().to_string(),
        message: format!("cannot read graph file: {e}"),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_graph(&text, &path.display().to_string(), base)
}

/// Parses and validates `.graph` text. `source` names it in error messages
/// (a path, or `<string>`); `File(..)` initializers are read relative to
/// `base_dir`.
pub fn parse_graph(text: &str, source: &str, base_dir: &Path) -> Result<Graph, GraphError> {
    let file: GraphFile = ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .from_str(text)
        .map_err(|e| GraphError::Syntax {
            file: source.to_string(),
            line: e.position.line,
            col: e.position.col,
            message: e.code.to_string(),
        })?;
    build(file, source, base_dir)
}

/// Validates a parsed file and builds the [`Graph`].
pub fn build(file: GraphFile, source: &str, base_dir: &Path) -> Result<Graph, GraphError> {
    build_with(file, BTreeMap::new(), source, base_dir)
}

/// Builds a validated [`Graph`] from parts whose initializers are already
/// tensors (what graph passes produce): `file` gives the name, inputs,
/// outputs, nodes and any further initializers; `initializers` are added as
/// initializers, checked like the file's (no name defined twice). Validation,
/// topological ordering and inference are exactly those of [`build`].
pub fn build_from_parts(
    file: GraphFile,
    initializers: BTreeMap<String, Tensor>,
    source: &str,
) -> Result<Graph, GraphError> {
    build_with(file, initializers, source, Path::new("."))
}

/// [`build`] with `extra` initializers given as tensors.
fn build_with(
    file: GraphFile,
    extra: BTreeMap<String, Tensor>,
    source: &str,
    base_dir: &Path,
) -> Result<Graph, GraphError> {
    let invalid = |message: String| GraphError::Invalid {
        file: source.to_string(),
        message,
    };
    let node_err = |n: &Node, message: String| GraphError::Node {
        file: source.to_string(),
        node: n.name.clone(),
        op_type: n.op_type.clone(),
        message,
    };

    // Where each tensor is defined, for duplicate-definition messages.
    let mut defined: BTreeMap<String, String> = BTreeMap::new();
    let mut tensors: BTreeMap<String, TensorInfo> = BTreeMap::new();

    // Graph inputs.
    let mut inputs = Vec::new();
    for (i, vi) in file.inputs.iter().enumerate() {
        if vi.name.is_empty() {
            return Err(invalid(format!("graph input #{i} has an empty name")));
        }
        let what = format!("graph input '{}'", vi.name);
        let (Some(dtype), Some(shape)) = (vi.dtype, vi.shape.clone()) else {
            return Err(invalid(format!(
                "{what} needs both 'dtype' and 'shape' (e.g. ValueInfo(name: \"{}\", dtype: F32, shape: [1, 784]))",
                vi.name
            )));
        };
        check_shape(&shape).map_err(|m| invalid(format!("{what}: {m}")))?;
        if let Some(prev) = defined.insert(vi.name.clone(), "a graph input".into()) {
            return Err(invalid(format!(
                "tensor '{}' is defined twice: as {prev} and as a graph input",
                vi.name
            )));
        }
        let info = TensorInfo { dtype, shape };
        tensors.insert(vi.name.clone(), info.clone());
        inputs.push((vi.name.clone(), info));
    }

    // Initializers: values drawn or read on rayon's pool (each from its
    // own seed or file, so the same whatever the thread count), then
    // checked in file order so the first error is the one a serial load
    // meets.
    let materialized: Vec<Result<Tensor, String>> = {
        use rayon::prelude::*;
        file.initializers
            .par_iter()
            .map(|init| materialize(init, base_dir))
            .collect()
    };
    let mut initializers = BTreeMap::new();
    for ((i, init), t) in file.initializers.iter().enumerate().zip(materialized) {
        if init.name.is_empty() {
            return Err(invalid(format!("initializer #{i} has an empty name")));
        }
        if let Some(prev) = defined.insert(init.name.clone(), "an initializer".into()) {
            return Err(invalid(format!(
                "tensor '{}' is defined twice: as {prev} and as an initializer",
                init.name
            )));
        }
        let t = t.map_err(|m| {
            invalid(format!(
                "initializer '{}' ({} {:?}): {m}",
                init.name, init.dtype, init.shape
            ))
        })?;
        tensors.insert(init.name.clone(), t.info());
        initializers.insert(init.name.clone(), t);
    }
    for (name, t) in extra {
        if name.is_empty() {
            return Err(invalid("an initializer has an empty name".into()));
        }
        if let Some(prev) = defined.insert(name.clone(), "an initializer".into()) {
            return Err(invalid(format!(
                "tensor '{name}' is defined twice: as {prev} and as an initializer"
            )));
        }
        tensors.insert(name.clone(), t.info());
        initializers.insert(name, t);
    }

    // Node names.
    let mut nodes = file.nodes;
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, n) in nodes.iter_mut().enumerate() {
        if n.name.is_empty() {
            n.name = format!("{}_{i}", n.op_type);
        }
        if let Some(j) = names.insert(n.name.clone(), i) {
            return Err(invalid(format!(
                "two nodes are named '{}' (nodes #{j} and #{i} in the file); node names must be unique",
                n.name
            )));
        }
    }

    // Tensor attributes: read files and draw random values now, so that a
    // `Graph`'s tensor attributes are always `Inline`.
    for n in nodes.iter_mut() {
        let (nname, op) = (n.name.clone(), n.op_type.clone());
        for (aname, value) in n.attributes.iter_mut() {
            let AttrValue::Tensor { dtype, shape, data } = value else {
                continue;
            };
            let init = Initializer {
                name: aname.clone(),
                dtype: *dtype,
                shape: shape.clone(),
                data: data.clone(),
            };
            let t = materialize(&init, base_dir).map_err(|m| GraphError::Node {
                file: source.to_string(),
                node: nname.clone(),
                op_type: op.clone(),
                message: format!("attribute '{aname}' ({dtype} {shape:?}): {m}"),
            })?;
            if !matches!(data, InitData::Inline(_)) {
                *data = InitData::Inline((0..t.len()).map(|i| t.values.get_f64(i)).collect());
            }
        }
    }

    // Unknown op types, all at once.
    let mut unknown: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for n in &nodes {
        if op_spec(&n.op_type).is_none() {
            let e = unknown
                .entry(n.op_type.clone())
                .or_insert((0, n.name.clone()));
            e.0 += 1;
        }
    }
    if !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|(op, (count, first))| {
                let s = if *count == 1 { "" } else { "s" };
                format!("'{op}' ({count} node{s}, first '{first}')")
            })
            .collect();
        return Err(GraphError::UnknownOps {
            file: source.to_string(),
            ops: unknown.keys().cloned().collect(),
            message: format!(
                "unsupported op type{}: {}; supported ops are {}",
                if unknown.len() == 1 { "" } else { "s" },
                list.join(", "),
                SUPPORTED_OPS.join(", ")
            ),
        });
    }

    // Arity, attributes, outputs.
    let mut producer: BTreeMap<String, usize> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let spec = op_spec(&n.op_type).ok_or_else(|| node_err(n, "unsupported op type".into()))?;
        let max = spec.max_inputs();
        if n.inputs.len() < spec.required_inputs || n.inputs.len() > max {
            let range = if spec.variadic_inputs {
                format!("{} or more", spec.required_inputs)
            } else if spec.required_inputs == max {
                format!("{max}")
            } else {
                format!("{} to {max}", spec.required_inputs)
            };
            let names = if spec.variadic_inputs {
                format!("{}...", spec.inputs.join(", "))
            } else {
                spec.inputs.join(", ")
            };
            return Err(node_err(
                n,
                format!(
                    "has {} input(s); expected {range} ({names})",
                    n.inputs.len()
                ),
            ));
        }
        for (k, name) in n.inputs.iter().enumerate().take(spec.required_inputs) {
            if name.is_empty() {
                return Err(node_err(
                    n,
                    format!(
                        "input #{k} ({}) is empty; it is required",
                        spec.inputs.get(k).copied().unwrap_or("?")
                    ),
                ));
            }
        }
        if n.outputs.len() < spec.min_outputs || n.outputs.len() > spec.max_outputs {
            let want = if spec.max_outputs == usize::MAX {
                format!("{} or more", spec.min_outputs)
            } else if spec.min_outputs == spec.max_outputs {
                format!("{}", spec.min_outputs)
            } else {
                format!("{} to {}", spec.min_outputs, spec.max_outputs)
            };
            return Err(node_err(
                n,
                format!("has {} output(s); expected {want}", n.outputs.len()),
            ));
        }
        for (name, value) in &n.attributes {
            let Some((_, kind)) = spec.attributes.iter().find(|(a, _)| a == name) else {
                let known: Vec<&str> = spec.attributes.iter().map(|(a, _)| *a).collect();
                return Err(node_err(
                    n,
                    format!(
                        "unknown attribute '{name}'; {} accepts {}",
                        n.op_type,
                        if known.is_empty() {
                            "no attributes".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            if !kind.matches(value) {
                return Err(node_err(
                    n,
                    format!(
                        "attribute '{name}' is {}; expected {}(..)",
                        short_attr(value),
                        kind.name()
                    ),
                ));
            }
        }
        for o in &n.outputs {
            if o.is_empty() {
                return Err(node_err(n, "has an empty output name".into()));
            }
            if let Some(prev) = defined.get(o) {
                return Err(node_err(n, format!(
                    "output '{o}' is already defined as {prev}; every tensor must be produced exactly once"
                )));
            }
            defined.insert(o.clone(), format!("the output of node '{}'", n.name));
            producer.insert(o.clone(), i);
        }
    }

    // Every input defined.
    for n in &nodes {
        for t in n.inputs.iter().filter(|t| !t.is_empty()) {
            if !defined.contains_key(t) {
                return Err(node_err(n, format!(
                    "input '{t}' is not defined: it is not a graph input, an initializer or the output of any node"
                )));
            }
        }
    }

    // Graph outputs.
    if file.outputs.is_empty() {
        return Err(invalid("the graph declares no outputs".into()));
    }
    let mut outputs: Vec<String> = Vec::new();
    for vi in &file.outputs {
        if !defined.contains_key(&vi.name) {
            return Err(invalid(format!(
                "graph output '{}' is not defined: it is not a graph input, an initializer or the output of any node",
                vi.name
            )));
        }
        if outputs.contains(&vi.name) {
            return Err(invalid(format!(
                "graph output '{}' is declared twice",
                vi.name
            )));
        }
        outputs.push(vi.name.clone());
    }

    // Stable topological order.
    let preds: Vec<BTreeSet<usize>> = nodes
        .iter()
        .map(|n| {
            n.inputs
                .iter()
                .filter_map(|t| producer.get(t).copied())
                .collect()
        })
        .collect();
    let order = stable_toposort(&preds).ok_or_else(|| GraphError::Cycle {
        file: source.to_string(),
        nodes: cycle_nodes(&preds)
            .into_iter()
            .filter_map(|i| nodes.get(i).map(|n| n.name.clone()))
            .collect(),
    })?;
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let nodes: Vec<Node> = order
        .iter()
        .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
        .collect();

    // Inference, in order, folding small constants as we go.
    let mut constants: BTreeMap<String, Tensor> = BTreeMap::new();
    for n in &nodes {
        let ins: Vec<Option<&TensorInfo>> = (0..n.inputs.len())
            .map(|k| n.input(k).and_then(|t| tensors.get(t)))
            .collect();
        let consts: Vec<Option<&Tensor>> = (0..n.inputs.len())
            .map(|k| {
                n.input(k)
                    .and_then(|t| initializers.get(t).or_else(|| constants.get(t)))
            })
            .collect();
        let outs = infer_node(n, &ins, &consts).map_err(|e| e.in_file(source))?;
        let all_const = consts
            .iter()
            .zip(&n.inputs)
            .all(|(c, name)| c.is_some() || name.is_empty());
        let folded = if n.op_type == "Shape" {
            // Shapes are static: the value needs only the input's shape.
            let shape = ins.first().copied().flatten().map(|i| i.shape.as_slice());
            Some(vec![
                crate::interp::shape_of(n, shape.unwrap_or(&[])).map_err(|m| node_err(n, m))?
            ])
        } else if n.op_type == "Constant"
            || (all_const && outs.iter().all(|o| o.len() <= FOLD_LIMIT))
        {
            Some(eval_node(n, &consts, &outs).map_err(|m| node_err(n, m))?)
        } else {
            None
        };
        for (k, (name, info)) in n.outputs.iter().zip(outs).enumerate() {
            tensors.insert(name.clone(), info);
            if let Some(v) = folded.as_ref().and_then(|v| v.get(k)) {
                constants.insert(name.clone(), v.clone());
            }
        }
    }

    // Declared outputs against inference.
    for vi in &file.outputs {
        let Some(info) = tensors.get(&vi.name) else {
            continue;
        };
        if let Some(dt) = vi.dtype {
            if dt != info.dtype {
                return Err(invalid(format!(
                    "graph output '{}' is declared {dt}, but its inferred type is {}",
                    vi.name, info.dtype
                )));
            }
        }
        if let Some(shape) = &vi.shape {
            if *shape != info.shape {
                return Err(invalid(format!(
                    "graph output '{}' is declared with shape {shape:?}, but its inferred shape is {:?}",
                    vi.name, info.shape
                )));
            }
        }
    }

    // The DAG.
    let mut dag = DiGraph::with_capacity(nodes.len(), 0);
    for i in 0..nodes.len() {
        dag.add_node(i);
    }
    let pos: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i)))
        .collect();
    for (j, n) in nodes.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for t in n.inputs.iter().filter(|t| !t.is_empty()) {
            if let Some(&i) = pos.get(t.as_str()) {
                if seen.insert(t.as_str()) {
                    dag.add_edge(NodeIndex::new(i), NodeIndex::new(j), t.clone());
                }
            }
        }
    }

    Ok(Graph {
        name: file.name,
        source: source.to_string(),
        inputs,
        outputs,
        initializers,
        nodes,
        tensors,
        constants,
        dag,
    })
}

/// Kahn's algorithm always taking the smallest ready index: the identity
/// when the order is already topological. `None` if there is a cycle.
fn stable_toposort(preds: &[BTreeSet<usize>]) -> Option<Vec<usize>> {
    let n = preds.len();
    let mut indeg: Vec<usize> = preds.iter().map(BTreeSet::len).collect();
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (j, p) in preds.iter().enumerate() {
        for &i in p {
            if let Some(s) = succs.get_mut(i) {
                s.push(j);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indeg[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &j in &succs[i] {
            indeg[j] -= 1;
            if indeg[j] == 0 {
                ready.push(Reverse(j));
            }
        }
    }
    (order.len() == n).then_some(order)
}

/// Nodes on a cycle (strongly connected components of size > 1, or with a
/// self-loop), found with petgraph; ascending.
fn cycle_nodes(preds: &[BTreeSet<usize>]) -> Vec<usize> {
    let mut g: DiGraph<usize, ()> = DiGraph::new();
    for i in 0..preds.len() {
        g.add_node(i);
    }
    for (j, p) in preds.iter().enumerate() {
        for &i in p {
            g.add_edge(NodeIndex::new(i), NodeIndex::new(j), ());
        }
    }
    let mut on_cycle: Vec<usize> = petgraph::algo::tarjan_scc(&g)
        .into_iter()
        .filter(|scc| scc.len() > 1 || scc.iter().any(|&v| g.contains_edge(v, v)))
        .flatten()
        .map(NodeIndex::index)
        .collect();
    on_cycle.sort_unstable();
    on_cycle
}

/// Checks a declared shape: at most 2^28 elements and no zero dimension.
fn check_shape(shape: &[usize]) -> Result<usize, String> {
    let n = checked_elements(shape)?;
    if n == 0 {
        return Err(format!(
            "shape {shape:?} has a zero dimension; empty tensors are not supported"
        ));
    }
    Ok(n)
}

/// The tensor an initializer describes; errors say what is wrong with it.
pub(crate) fn materialize(init: &Initializer, base_dir: &Path) -> Result<Tensor, String> {
    let n = check_shape(&init.shape)?;
    let values = match &init.data {
        InitData::Inline(v) => {
            if v.len() != n {
                return Err(format!(
                    "Inline gives {} value(s); expected {n}, the number of elements of the shape",
                    v.len()
                ));
            }
            if !init.dtype.is_float() {
                let (lo, hi) = match init.dtype {
                    DType::I8 => (i8::MIN as f64, i8::MAX as f64),
                    _ => (i32::MIN as f64, i32::MAX as f64),
                };
                if let Some((k, x)) = v
                    .iter()
                    .enumerate()
                    .find(|(_, x)| x.fract() != 0.0 || !(lo..=hi).contains(*x))
                {
                    return Err(format!(
                        "Inline value #{k} is {x}; expected an integer in [{lo}, {hi}]"
                    ));
                }
            }
            convert_f64(init.dtype, v)
        }
        InitData::File(rel) => {
            let path = base_dir.join(rel);
            let want = n * init.dtype.bytes();
            let meta = std::fs::metadata(&path)
                .map_err(|e| format!("cannot read data file '{}': {e}", path.display()))?;
            if meta.len() != want as u64 {
                return Err(format!(
                    "data file '{}' has {} bytes; expected {want} ({n} elements of {} byte(s), little-endian)",
                    path.display(),
                    meta.len(),
                    init.dtype.bytes()
                ));
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("cannot read data file '{}': {e}", path.display()))?;
            match Values::from_le_bytes(init.dtype, &bytes) {
                Some(v) if v.len() == n => v,
                _ => {
                    return Err(format!(
                        "data file '{}' has {} bytes; expected {want}",
                        path.display(),
                        bytes.len()
                    ))
                }
            }
        }
        InitData::Random { seed, dist } => {
            match *dist {
                Dist::Uniform { low, high } => {
                    if !(low.is_finite() && high.is_finite() && low <= high) {
                        return Err(format!(
                            "Uniform(low: {low}, high: {high}): expected finite bounds with low <= high"
                        ));
                    }
                }
                Dist::Normal { mean, std } => {
                    if !(mean.is_finite() && std.is_finite() && std >= 0.0) {
                        return Err(format!(
                            "Normal(mean: {mean}, std: {std}): expected a finite mean and a finite std >= 0"
                        ));
                    }
                }
            }
            random_values(init.dtype, *dist, n, *seed)
        }
    };
    Tensor::new(init.shape.clone(), values).map_err(|e| e.to_string())
}
