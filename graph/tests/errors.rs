//! Bad input gives one clear error line (never a panic) naming the file, the
//! node and the tensor.

use std::collections::BTreeMap;
use std::path::Path;

use lpu_graph::{interpret, load_graph, parse_graph, random_inputs, GraphError, Tensor, Values};

fn parse(text: &str) -> Result<lpu_graph::Graph, GraphError> {
    parse_graph(text, "test.graph", Path::new("."))
}

fn err(text: &str) -> String {
    let e = parse(text).expect_err("expected an error");
    let s = e.to_string();
    assert!(!s.contains('\n'), "multi-line error: {s}");
    assert!(
        s.starts_with("test.graph"),
        "error does not name the file: {s}"
    );
    s
}

const MLP: &str = r#"Graph(
  name: "mlp",
  inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 784])],
  outputs: [ValueInfo(name: "y", dtype: F32, shape: [1, 10])],
  initializers: [
    Initializer(name: "w1", dtype: F32, shape: [784, 16], data: Random(seed: 1, dist: Normal(mean: 0.0, std: 0.05))),
    Initializer(name: "b1", dtype: F32, shape: [16], data: Random(seed: 2, dist: Uniform(low: -0.1, high: 0.1))),
    Initializer(name: "w3", dtype: F32, shape: [10, 16], data: Random(seed: 3, dist: Normal(mean: 0.0, std: 0.2))),
  ],
  nodes: [
    Node(name: "fc1", op_type: "MatMul", inputs: ["x", "w1"], outputs: ["h1"]),
    Node(name: "bias1", op_type: "Add", inputs: ["h1", "b1"], outputs: ["h2"]),
    Node(name: "relu1", op_type: "Relu", inputs: ["h2"], outputs: ["h3"]),
    Node(name: "out", op_type: "Gemm", inputs: ["h3", "w3"], outputs: ["y"], attributes: {"transB": Int(1)}),
  ],
)"#;

#[test]
fn baseline_is_valid() {
    let g = parse(MLP).unwrap();
    assert_eq!(g.source, "test.graph");
    assert_eq!(g.outputs, vec!["y".to_string()]);
    interpret(&g, &random_inputs(&g, 1)).unwrap();
}

#[test]
fn truncated_ron_reports_line_and_column() {
    let cut = &MLP[..MLP.find("Node(name: \"relu1\"").unwrap() + 12];
    let e = parse(cut).unwrap_err();
    let GraphError::Syntax { line, col, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(*line, 13, "{e}");
    assert!(*col > 0);
    let s = e.to_string();
    assert!(s.starts_with("test.graph:13:"), "{s}");
    // Every truncation fails cleanly.
    for i in 0..MLP.len() {
        if MLP.is_char_boundary(i) {
            assert!(parse(&MLP[..i]).is_err());
        }
    }
}

#[test]
fn typo_in_field_is_an_error() {
    let s = err(&MLP.replace("op_type: \"Relu\"", "optype: \"Relu\""));
    assert!(s.contains("optype"), "{s}");
    assert!(s.starts_with("test.graph:13:"), "{s}");
}

#[test]
fn unknown_ops_are_listed() {
    let text = MLP
        .replace("\"Relu\"", "\"Hardmax\"")
        .replace("\"Add\"", "\"DeformConv\"")
        .replace("\"Gemm\"", "\"DeformConv\"");
    let e = parse(&text).unwrap_err();
    let GraphError::UnknownOps { ops, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(ops, &["DeformConv", "Hardmax"]);
    let s = e.to_string();
    assert!(s.contains("'DeformConv' (2 nodes, first 'bias1')"), "{s}");
    assert!(s.contains("'Hardmax' (1 node, first 'relu1')"), "{s}");
    assert!(s.contains("MatMul"), "{s}");
}

#[test]
fn shape_mismatch_names_node_and_tensor() {
    let s = err(&MLP.replace("shape: [784, 16]", "shape: [700, 16]"));
    assert_eq!(
        s,
        "test.graph: node 'fc1' (MatMul): input 'w1' [700, 16]: expected its first dimension to equal 784, the last dimension of 'x' [1, 784]"
    );
    let s = err(&MLP.replace("shape: [16], data", "shape: [15], data"));
    assert!(
        s.starts_with(
            "test.graph: node 'bias1' (Add): inputs 'h1' [1, 16] and 'b1' [15] cannot be broadcast"
        ),
        "{s}"
    );
    let s = err(&MLP.replace(
        "outputs: [ValueInfo(name: \"y\", dtype: F32, shape: [1, 10])]",
        "outputs: [ValueInfo(name: \"y\", shape: [10])]",
    ));
    assert!(
        s.contains(
            "graph output 'y' is declared with shape [10], but its inferred shape is [1, 10]"
        ),
        "{s}"
    );
    let s = err(&MLP.replace("name: \"b1\", dtype: F32", "name: \"b1\", dtype: F16"));
    assert!(
        s.contains("node 'bias1' (Add): input 'b1' has type f16; expected f32, the type of 'h1'"),
        "{s}"
    );
}

#[test]
fn cycle_names_nodes() {
    // relu1 reads y (produced by out, which depends on relu1).
    let s = err(&MLP.replace("inputs: [\"h2\"]", "inputs: [\"y\"]"));
    let e = parse(&MLP.replace("inputs: [\"h2\"]", "inputs: [\"y\"]")).unwrap_err();
    let GraphError::Cycle { nodes, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(nodes, &["relu1", "out"]);
    assert!(s.contains("cycle through nodes 'relu1', 'out'"), "{s}");
    // A self-loop.
    let s = err(&MLP
        .replace(
            "inputs: [\"h2\"], outputs: [\"h3\"]",
            "inputs: [\"h3\"], outputs: [\"h3\"]",
        )
        .replace("\"h3\", \"w3\"", "\"h2\", \"w3\""));
    assert!(s.contains("cycle through nodes 'relu1'"), "{s}");
}

#[test]
fn undefined_and_duplicate_tensors() {
    let s = err(&MLP.replace("    Initializer(name: \"b1\", dtype: F32, shape: [16], data: Random(seed: 2, dist: Uniform(low: -0.1, high: 0.1))),\n", ""));
    assert_eq!(s, "test.graph: node 'bias1' (Add): input 'b1' is not defined: it is not a graph input, an initializer or the output of any node");
    let s = err(&MLP.replace("outputs: [\"h2\"]", "outputs: [\"h1\"]"));
    assert!(
        s.contains(
            "node 'bias1' (Add): output 'h1' is already defined as the output of node 'fc1'"
        ),
        "{s}"
    );
    let s = err(&MLP.replace("outputs: [\"h2\"]", "outputs: [\"b1\"]"));
    assert!(
        s.contains("output 'b1' is already defined as an initializer"),
        "{s}"
    );
    let s = err(&MLP.replace("name: \"b1\"", "name: \"x\""));
    assert!(
        s.contains("tensor 'x' is defined twice: as a graph input and as an initializer"),
        "{s}"
    );
    let s = err(&MLP.replace("ValueInfo(name: \"y\"", "ValueInfo(name: \"z\""));
    assert!(s.contains("graph output 'z' is not defined"), "{s}");
    let s = err(&MLP.replace("name: \"relu1\"", "name: \"fc1\""));
    assert!(s.contains("two nodes are named 'fc1'"), "{s}");
}

#[test]
fn arity_attributes_and_initializers() {
    let s = err(&MLP.replace("inputs: [\"h2\"]", "inputs: [\"h2\", \"h1\"]"));
    assert_eq!(
        s,
        "test.graph: node 'relu1' (Relu): has 2 input(s); expected 1 (X)"
    );
    let s = err(&MLP.replace("\"transB\": Int(1)", "\"transB\": Float(1.0)"));
    assert_eq!(
        s,
        "test.graph: node 'out' (Gemm): attribute 'transB' is Float(1.0); expected Int(..)"
    );
    let s = err(&MLP.replace("\"transB\": Int(1)", "\"transb\": Int(1)"));
    assert!(
        s.contains("unknown attribute 'transb'; Gemm accepts alpha, beta, transA, transB"),
        "{s}"
    );
    let s = err(&MLP.replace(
        "data: Random(seed: 2, dist: Uniform(low: -0.1, high: 0.1))",
        "data: Inline([1.0, 2.0])",
    ));
    assert_eq!(s, "test.graph: initializer 'b1' (f32 [16]): Inline gives 2 value(s); expected 16, the number of elements of the shape");
    let s = err(&MLP.replace(
        "dtype: F32, shape: [16], data: Random(seed: 2, dist: Uniform(low: -0.1, high: 0.1))",
        "dtype: I8, shape: [2], data: Inline([1.0, 200.0])",
    ));
    assert!(
        s.contains(
            "initializer 'b1' (i8 [2]): Inline value #1 is 200; expected an integer in [-128, 127]"
        ),
        "{s}"
    );
    let s = err(&MLP.replace("shape: [1, 784])]", "shape: [1048576, 1048576])]"));
    assert!(
        s.contains("graph input 'x': shape [1048576, 1048576] has more than 2^28"),
        "{s}"
    );
    let s = err(&MLP.replace(
        "ValueInfo(name: \"x\", dtype: F32, ",
        "ValueInfo(name: \"x\", ",
    ));
    assert!(
        s.contains("graph input 'x' needs both 'dtype' and 'shape'"),
        "{s}"
    );
    let s = err(&MLP.replace("std: 0.2", "std: -0.2"));
    assert!(
        s.contains("initializer 'w3'") && s.contains("std >= 0"),
        "{s}"
    );
}

#[test]
fn unnamed_nodes_and_stable_reordering() {
    // Nodes given in reverse; an unnamed one gets <op_type>_<index>.
    let text = MLP.replace("name: \"relu1\", ", "");
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.contains("nodes: [")).unwrap() + 1;
    let mut reordered: Vec<String> = lines[..start].iter().map(|s| s.to_string()).collect();
    let mut node_lines: Vec<String> = lines[start..start + 4]
        .iter()
        .map(|s| s.to_string())
        .collect();
    node_lines.reverse();
    reordered.extend(node_lines);
    reordered.extend(lines[start + 4..].iter().map(|s| s.to_string()));
    let g = parse(&reordered.join("\n")).unwrap();
    let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["fc1", "bias1", "Relu_1", "out"]);
    assert_eq!(g.producer("h3"), Some(2));
    assert_eq!(g.consumers("h3"), vec![3]);
    assert_eq!(g.dag[petgraph::graph::NodeIndex::new(2)], 2);
}

#[test]
fn interpret_checks_inputs() {
    let g = parse(MLP).unwrap();
    let mut ins = BTreeMap::new();
    let e = interpret(&g, &ins).unwrap_err().to_string();
    assert_eq!(e, "test.graph: input 'x' (f32 [1, 784]) was not given");
    ins.insert(
        "x".to_string(),
        Tensor::new(vec![1, 700], Values::F32(vec![0.0; 700])).unwrap(),
    );
    let e = interpret(&g, &ins).unwrap_err().to_string();
    assert_eq!(
        e,
        "test.graph: input 'x' is f32 [1, 700]; expected f32 [1, 784]"
    );
    ins.insert(
        "x".to_string(),
        Tensor::new(vec![1, 784], Values::I8(vec![0; 784])).unwrap(),
    );
    let e = interpret(&g, &ins).unwrap_err().to_string();
    assert_eq!(
        e,
        "test.graph: input 'x' is i8 [1, 784]; expected f32 [1, 784]"
    );
    ins.insert(
        "x".to_string(),
        Tensor {
            shape: vec![1, 784],
            values: Values::F32(vec![0.0; 3]),
        },
    );
    let e = interpret(&g, &ins).unwrap_err().to_string();
    assert!(e.contains("has shape [1, 784] but 3 values"), "{e}");
    ins.insert(
        "x".to_string(),
        Tensor::new(vec![1, 784], Values::F32(vec![0.0; 784])).unwrap(),
    );
    ins.insert(
        "q".to_string(),
        Tensor::new(vec![1], Values::F32(vec![0.0])).unwrap(),
    );
    let e = interpret(&g, &ins).unwrap_err().to_string();
    assert!(
        e.contains(
            "an input named 'q' was given, but the graph has no such input (its inputs are 'x')"
        ),
        "{e}"
    );
}

#[test]
fn file_initializers() {
    let dir = std::env::temp_dir().join(format!("lpu-graph-file-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes: Vec<u8> = (0..12u8).map(|b| b.wrapping_mul(37)).collect();
    std::fs::write(dir.join("w2.bin"), &bytes).unwrap();
    let graph = r#"Graph(name: "f", inputs: [ValueInfo(name: "a", dtype: I8, shape: [2, 3])], outputs: [ValueInfo(name: "y", dtype: I32)],
      initializers: [Initializer(name: "w2", dtype: I8, shape: [3, 4], data: File("w2.bin"))],
      nodes: [Node(op_type: "MatMulInteger", inputs: ["a", "w2"], outputs: ["y"])])"#;
    std::fs::write(dir.join("f.graph"), graph).unwrap();
    let g = load_graph(&dir.join("f.graph")).unwrap();
    assert_eq!(g.nodes[0].name, "MatMulInteger_0");
    let w: Vec<i8> = bytes.iter().map(|&b| b as i8).collect();
    assert_eq!(g.initializers["w2"].values, Values::I8(w));
    assert_eq!(g.info("y").unwrap().shape, vec![2, 4]);
    std::fs::write(dir.join("w2.bin"), &bytes[..11]).unwrap();
    let e = load_graph(&dir.join("f.graph")).unwrap_err().to_string();
    assert!(
        e.contains("f.graph: initializer 'w2' (i8 [3, 4]): data file")
            && e.contains("has 11 bytes; expected 12"),
        "{e}"
    );
    std::fs::remove_file(dir.join("w2.bin")).unwrap();
    let e = load_graph(&dir.join("f.graph")).unwrap_err().to_string();
    assert!(e.contains("cannot read data file"), "{e}");
    let e = load_graph(&dir.join("nope.graph")).unwrap_err().to_string();
    assert!(e.contains("nope.graph: cannot read graph file"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mutated_text_never_panics() {
    // Replace each byte of the baseline with structural characters, one at a time.
    let bytes = MLP.as_bytes();
    for i in (0..bytes.len()).step_by(3) {
        for c in [b'(', b']', b'"', b',', b'x', b'-'] {
            let mut m = bytes.to_vec();
            m[i] = c;
            if let Ok(text) = std::str::from_utf8(&m) {
                if let Err(e) = parse(text) {
                    assert!(!e.to_string().contains('\n'));
                }
            }
        }
    }
}
