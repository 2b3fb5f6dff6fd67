//! Hand-computed values and edge cases for the operators beyond the ONNX
//! reference cases (`onnx_reference.rs`): `Silu` (not in ONNX), negative
//! pads, the ceil-mode rule for pools, constant folding of shape
//! computations, tensor attributes, multi-output `Split`, and the error
//! messages for bad attributes, shapes and indices (never a panic).

use std::collections::BTreeMap;
use std::path::Path;

use half::f16;
use lpu_graph::{interpret, parse_graph, AttrValue, Graph, Tensor, Values};

fn parse(text: &str) -> Result<Graph, String> {
    parse_graph(text, "t.graph", Path::new(".")).map_err(|e| e.to_string())
}

/// A one-node graph over inline initializers (`(name, dtype, shape,
/// values)`; an empty name is an omitted input) with `n_out` outputs
/// `y0..`.
fn graph1(op: &str, attrs: &str, ins: &[(&str, &str, &[usize], &[f64])], n_out: usize) -> String {
    let mut seen = Vec::new();
    let inits: Vec<String> = ins
        .iter()
        .filter(|i| !i.0.is_empty())
        .filter(|i| {
            let fresh = !seen.contains(&i.0);
            seen.push(i.0);
            fresh
        })
        .map(|(n, d, s, v)| {
            format!("Initializer(name: \"{n}\", dtype: {d}, shape: {s:?}, data: Inline({v:?}))")
        })
        .collect();
    let names: Vec<String> = ins.iter().map(|i| format!("\"{}\"", i.0)).collect();
    let outs: Vec<String> = (0..n_out).map(|k| format!("\"y{k}\"")).collect();
    let vis: Vec<String> = (0..n_out)
        .map(|k| format!("ValueInfo(name: \"y{k}\")"))
        .collect();
    format!(
        "Graph(name: \"t\", inputs: [], outputs: [{}], initializers: [{}],
           nodes: [Node(name: \"n\", op_type: \"{op}\", inputs: [{}], outputs: [{}], attributes: {{{attrs}}})])",
        vis.join(", "),
        inits.join(", "),
        names.join(", "),
        outs.join(", ")
    )
}

fn run(text: &str) -> Result<BTreeMap<String, Tensor>, String> {
    let g = parse(text)?;
    interpret(&g, &BTreeMap::new()).map_err(|e| e.to_string())
}

fn run1(op: &str, attrs: &str, ins: &[(&str, &str, &[usize], &[f64])]) -> Tensor {
    let text = graph1(op, attrs, ins, 1);
    run(&text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .remove("y0")
        .unwrap()
}

/// The error of loading (or, if it loads, interpreting) a one-node graph;
/// checks that it is one line naming the file.
fn err1(op: &str, attrs: &str, ins: &[(&str, &str, &[usize], &[f64])]) -> String {
    let text = graph1(op, attrs, ins, 1);
    let e = run(&text).expect_err("expected an error");
    assert!(!e.contains('\n'), "multi-line error: {e}");
    assert!(e.starts_with("t.graph: "), "does not name the file: {e}");
    e
}

fn f32s(t: &Tensor) -> Vec<f32> {
    match &t.values {
        Values::F32(v) => v.clone(),
        other => panic!("expected f32, got {other:?}"),
    }
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "{got:?} vs {want:?}"
        );
    }
}

const F: &str = "F32";

#[test]
fn silu_is_x_times_sigmoid() {
    let y = run1("Silu", "", &[("x", F, &[4], &[0.0, 1.0, -1.0, 2.0])]);
    close(&f32s(&y), &[0.0, 0.731_058_6, -0.268_941_43, 1.761_594_2]);
}

#[test]
fn f16_unary_rounds_once() {
    let y = run1("Sigmoid", "", &[("x", "F16", &[2], &[0.3, -2.5])]);
    let want: Vec<f16> = [0.3f32, -2.5]
        .iter()
        .map(|&x| {
            let x = f16::from_f32(x).to_f32();
            f16::from_f32(1.0 / (1.0 + (-x).exp()))
        })
        .collect();
    assert_eq!(y.values, Values::F16(want));
}

#[test]
fn conv_by_hand() {
    let x: Vec<f64> = (1..=9).map(f64::from).collect();
    let y = run1(
        "Conv",
        "",
        &[
            ("x", F, &[1, 1, 3, 3], &x),
            ("w", F, &[1, 1, 2, 2], &[1.0; 4]),
        ],
    );
    assert_eq!(y.shape, [1, 1, 2, 2]);
    assert_eq!(f32s(&y), [12.0, 16.0, 24.0, 28.0]);
    // Depthwise, two channels, weights 1 and -1, padding 1, stride 2, bias.
    let x: Vec<f64> = (1..=8).map(f64::from).collect();
    let y = run1(
        "Conv",
        "\"group\": Int(2), \"pads\": Ints([1, 1, 1, 1]), \"strides\": Ints([2, 2])",
        &[
            ("x", F, &[1, 2, 2, 2], &x),
            ("w", F, &[2, 1, 1, 1], &[1.0, -1.0]),
            ("b", F, &[2], &[0.5, 0.25]),
        ],
    );
    // Output 2x2 per channel samples padded positions (0,0),(0,2),(2,0),(2,2):
    // only (2,2) -> input (1,1) is inside.
    assert_eq!(y.shape, [1, 2, 2, 2]);
    assert_eq!(f32s(&y), [0.5, 0.5, 0.5, 4.5, 0.25, 0.25, 0.25, -7.75]);
}

#[test]
fn conv_integer_wraps_and_uses_per_channel_zero_points() {
    let y = run1(
        "ConvInteger",
        "",
        &[
            ("x", "I8", &[1, 1, 1, 2], &[-128.0, 127.0]),
            ("w", "I8", &[2, 1, 1, 1], &[3.0, -3.0]),
            ("", "", &[], &[]),
            ("wz", "I8", &[2], &[1.0, -1.0]),
        ],
    );
    assert_eq!(y.values, Values::I32(vec![-256, 254, 256, -254]));
}

#[test]
fn pool_ceil_mode_drops_a_window_starting_in_the_padding() {
    // x = [1, 2, 3, 4], k = 1, s = 2, end pad 1, ceil: ceil(4/2)+1 = 3
    // windows, but the third would start at 4 >= 4 + 0: dropped.
    let y = run1(
        "MaxPool",
        "\"kernel_shape\": Ints([1]), \"strides\": Ints([2]), \"pads\": Ints([0, 1]), \"ceil_mode\": Int(1)",
        &[("x", F, &[1, 1, 4], &[1.0, 2.0, 3.0, 4.0])],
    );
    assert_eq!(f32s(&y), [1.0, 3.0]);
    let y = run1(
        "AveragePool",
        "\"kernel_shape\": Ints([2]), \"strides\": Ints([2]), \"ceil_mode\": Int(1)",
        &[("x", F, &[1, 1, 5], &[1.0, 2.0, 3.0, 4.0, 5.0])],
    );
    assert_eq!(f32s(&y), [1.5, 3.5, 5.0]);
}

#[test]
fn pad_negative_crops() {
    let x: Vec<f64> = (1..=20).map(f64::from).collect();
    let y = run1(
        "Pad",
        "",
        &[
            ("x", F, &[4, 5], &x),
            ("p", "I32", &[4], &[-1.0, 1.0, 0.0, -2.0]),
        ],
    );
    assert_eq!(y.shape, [3, 4]);
    assert_eq!(
        f32s(&y),
        [0.0, 6.0, 7.0, 8.0, 0.0, 11.0, 12.0, 13.0, 0.0, 16.0, 17.0, 18.0]
    );
    // reflect on a size-1 dimension repeats the element.
    let y = run1(
        "Pad",
        "\"mode\": String(\"reflect\")",
        &[
            ("x", F, &[1, 2], &[1.0, 2.0]),
            ("p", "I32", &[4], &[1.0, 0.0, 1.0, 0.0]),
        ],
    );
    assert_eq!(f32s(&y), [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
}

#[test]
fn split_has_several_outputs() {
    let x: Vec<f64> = (0..7).map(f64::from).collect();
    let text = graph1("Split", "\"num_outputs\": Int(3)", &[("x", F, &[7], &x)], 3);
    let out = run(&text).unwrap();
    assert_eq!(f32s(&out["y0"]), [0.0, 1.0, 2.0]);
    assert_eq!(f32s(&out["y1"]), [3.0, 4.0, 5.0]);
    assert_eq!(f32s(&out["y2"]), [6.0]);
    let e = parse(&graph1("Split", "", &[("x", F, &[7], &x)], 2)).unwrap_err();
    assert!(e.contains("does not split evenly into 2 outputs"), "{e}");
}

#[test]
fn comparisons_give_i8_bools_and_where_selects() {
    let y = run1(
        "Less",
        "",
        &[("a", F, &[3], &[1.0, 2.0, 3.0]), ("b", F, &[], &[2.0])],
    );
    assert_eq!(y.values, Values::I8(vec![1, 0, 0]));
    let y = run1(
        "Where",
        "",
        &[
            ("c", "I8", &[3], &[1.0, 0.0, 5.0]),
            ("a", F, &[3], &[1.0, 2.0, 3.0]),
            ("b", F, &[1], &[-1.0]),
        ],
    );
    assert_eq!(f32s(&y), [1.0, -1.0, 3.0]);
}

const SHAPE_CHAIN: &str = r#"Graph(
  name: "chain",
  inputs: [ValueInfo(name: "x", dtype: F32, shape: [2, 3, 4])],
  outputs: [ValueInfo(name: "y", dtype: F32, shape: [2, 12])],
  initializers: [
    Initializer(name: "zero", dtype: I32, shape: [], data: Inline([0.0])),
    Initializer(name: "ax0", dtype: I32, shape: [1], data: Inline([0.0])),
  ],
  nodes: [
    Node(name: "shape", op_type: "Shape", inputs: ["x"], outputs: ["s"]),
    Node(name: "batch", op_type: "Gather", inputs: ["s", "zero"], outputs: ["b"]),
    Node(name: "unsq", op_type: "Unsqueeze", inputs: ["b", "ax0"], outputs: ["b1"]),
    Node(name: "minus1", op_type: "Constant", inputs: [], outputs: ["m"],
         attributes: {"value_ints": Ints([-1])}),
    Node(name: "cat", op_type: "Concat", inputs: ["b1", "m"], outputs: ["target"],
         attributes: {"axis": Int(0)}),
    Node(name: "reshape", op_type: "Reshape", inputs: ["x", "target"], outputs: ["y"]),
  ],
)"#;

#[test]
fn shape_computations_fold_at_load() {
    let g = parse(SHAPE_CHAIN).unwrap();
    assert_eq!(g.info("y").unwrap().shape, [2, 12]);
    assert_eq!(g.constants["s"].values, Values::I32(vec![2, 3, 4]));
    assert_eq!(g.constants["target"].values, Values::I32(vec![2, -1]));
    assert!(!g.constants.contains_key("y"));
    let x: Vec<f32> = (0..24).map(|i| i as f32).collect();
    let inputs = BTreeMap::from([(
        "x".to_string(),
        Tensor::new(vec![2, 3, 4], Values::F32(x.clone())).unwrap(),
    )]);
    let out = interpret(&g, &inputs).unwrap();
    assert_eq!(out["y"].shape, [2, 12]);
    assert_eq!(f32s(&out["y"]), x);
    // A shape that is not constant is reported.
    let text = SHAPE_CHAIN
        .replace(
            "inputs: [ValueInfo(name: \"x\", dtype: F32, shape: [2, 3, 4])]",
            "inputs: [ValueInfo(name: \"x\", dtype: F32, shape: [2, 3, 4]), ValueInfo(name: \"t\", dtype: I32, shape: [2])]",
        )
        .replace("inputs: [\"x\", \"target\"]", "inputs: [\"x\", \"t\"]");
    let e = parse(&text).unwrap_err();
    assert_eq!(e, "t.graph: node 'reshape' (Reshape): input 't' (#1) must be a constant: an initializer, the output of a Constant node, or computable from those when the graph is loaded");
}

#[test]
fn tensor_attributes_are_materialized() {
    let text = r#"Graph(name: "c", outputs: [ValueInfo(name: "y", dtype: F32, shape: [2, 2])],
      nodes: [Node(name: "k", op_type: "Constant", inputs: [], outputs: ["y"],
        attributes: {"value": Tensor(dtype: F32, shape: [2, 2],
          data: Random(seed: 3, dist: Uniform(low: -1.0, high: 1.0)))})])"#;
    let g = parse(text).unwrap();
    let AttrValue::Tensor { data, .. } = &g.nodes[0].attributes["value"] else {
        panic!()
    };
    assert!(matches!(data, lpu_graph::format::InitData::Inline(v) if v.len() == 4));
    let y = interpret(&g, &BTreeMap::new())
        .unwrap()
        .remove("y")
        .unwrap();
    assert_eq!(y.values, g.constants["y"].values);
    let e = parse(&text.replace("shape: [2, 2],\n", "shape: [3],\n")).unwrap_err();
    assert!(e.contains("declared with shape [2, 2]"), "{e}");
    let e = parse(&text.replace(
        "data: Random(seed: 3, dist: Uniform(low: -1.0, high: 1.0))",
        "data: Inline([1.0])",
    ))
    .unwrap_err();
    assert!(
        e.starts_with("t.graph: node 'k' (Constant): attribute 'value' (f32 [2, 2]): Inline gives 1 value(s); expected 4"),
        "{e}"
    );
}

#[test]
fn bad_attributes_are_errors() {
    let x: &[f64] = &[0.0; 16];
    let xin = ("x", F, &[1, 1, 4, 4][..], x);
    let w = ("w", F, &[1, 1, 2, 2][..], &[1.0; 4][..]);
    let e = err1("Conv", "\"strides\": Ints([0, 1])", &[xin, w]);
    assert!(
        e.contains("'strides' is [0, 1]; every value must be from 1 to 2^28"),
        "{e}"
    );
    let e = err1("Conv", "\"pads\": Ints([1, -1, 0, 0])", &[xin, w]);
    assert!(e.contains("negative padding is not supported"), "{e}");
    let e = err1("Conv", "\"pads\": Ints([1, 1])", &[xin, w]);
    assert!(e.contains("expected 4, the beginning and end"), "{e}");
    let e = err1("Conv", "\"group\": Int(2)", &[xin, w]);
    assert!(e.contains("'group' is 2; expected 1 to 1"), "{e}");
    let e = err1("Conv", "\"auto_pad\": String(\"SAME\")", &[xin, w]);
    assert!(
        e.contains("expected NOTSET, SAME_UPPER, SAME_LOWER or VALID"),
        "{e}"
    );
    let e = err1("Conv", "\"kernel_shape\": Ints([3, 3])", &[xin, w]);
    assert!(
        e.contains("expected [2, 2], the spatial dimensions of W"),
        "{e}"
    );
    let e = err1("Conv", "\"dilations\": Int(2)", &[xin, w]);
    assert!(
        e.contains("attribute 'dilations' is Int(2); expected Ints(..)"),
        "{e}"
    );
    let e = err1("MaxPool", "\"kernel_shape\": Ints([5, 5])", &[xin]);
    assert!(e.contains("smaller than the kernel extent 5"), "{e}");
    let e = err1("MaxPool", "", &[xin]);
    assert!(e.contains("'kernel_shape' is missing"), "{e}");
    let e = err1(
        "AveragePool",
        "\"kernel_shape\": Ints([2, 2]), \"pads\": Ints([1000000000, 0, 0, 0])",
        &[xin],
    );
    assert!(e.contains("limited to 2^28"), "{e}");
    let e = err1("Softmax", "\"axis\": Int(4)", &[xin]);
    assert!(
        e.contains("attribute 'axis' 4 is out of range for rank 4"),
        "{e}"
    );
    let e = err1("Gelu", "\"approximate\": String(\"erf\")", &[xin]);
    assert!(e.contains("expected \"none\" or \"tanh\""), "{e}");
    let e = err1(
        "Resize",
        "\"mode\": String(\"quintic\")",
        &[
            xin,
            ("", "", &[], &[]),
            ("s", F, &[4], &[1.0, 1.0, 2.0, 2.0]),
        ],
    );
    assert!(e.contains("supported: nearest, linear, cubic"), "{e}");
    let e = err1(
        "Resize",
        "\"antialias\": Int(1)",
        &[
            xin,
            ("", "", &[], &[]),
            ("s", F, &[4], &[1.0, 1.0, 0.5, 0.5]),
        ],
    );
    assert!(e.contains("linear and cubic modes only"), "{e}");
    let e = err1(
        "Resize",
        "\"coordinate_transformation_mode\": String(\"tf_crop_and_resize\")",
        &[
            xin,
            ("r", F, &[6], &[0.0; 6]),
            ("s", F, &[4], &[1.0, 1.0, 0.5, 0.5]),
        ],
    );
    assert!(
        e.contains("expected 8 (a start and an end per axis)"),
        "{e}"
    );
    let e = err1(
        "BatchNormalization",
        "\"training_mode\": Int(1)",
        &[
            ("x", F, &[1, 2], &[0.0, 0.0]),
            ("s", F, &[2], &[1.0, 1.0]),
            ("b", F, &[2], &[0.0, 0.0]),
            ("m", F, &[2], &[0.0, 0.0]),
            ("v", F, &[2], &[1.0, 1.0]),
        ],
    );
    assert!(e.contains("only the inference form"), "{e}");
    let e = err1(
        "Constant",
        "\"value_float\": Float(1.0), \"value_int\": Int(1)",
        &[],
    );
    assert!(e.contains("needs exactly one of"), "{e}");
    let e = err1("Constant", "\"value_int\": Int(5000000000)", &[]);
    assert!(e.contains("does not fit in i32"), "{e}");
    let e = err1("Concat", "", &[xin, xin]);
    assert!(e.contains("'axis' is missing"), "{e}");
}

#[test]
fn bad_shapes_and_indices_are_errors() {
    let x: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let xin = ("x", F, &[2, 3][..], x);
    let e = err1("Reshape", "", &[xin, ("s", "I32", &[2], &[4.0, -1.0])]);
    assert!(e.contains("6 is not a multiple of 4"), "{e}");
    let e = err1("Reshape", "", &[xin, ("s", "I32", &[2], &[-1.0, -1.0])]);
    assert!(e.contains("more than one -1"), "{e}");
    let e = err1("Reshape", "", &[xin, ("s", F, &[2], &[3.0, 2.0])]);
    assert!(e.contains("has type f32; expected i8 or i32"), "{e}");
    let e = err1("Gather", "", &[xin, ("i", "I32", &[1], &[2.0])]);
    assert!(
        e.contains("index 2 in 'i' [1] is out of range for axis 0"),
        "{e}"
    );
    let e = err1(
        "Slice",
        "",
        &[
            xin,
            ("s", "I32", &[1], &[0.0]),
            ("e", "I32", &[1], &[2.0]),
            ("", "", &[], &[]),
            ("st", "I32", &[1], &[0.0]),
        ],
    );
    assert!(e.contains("steps [0] contain 0"), "{e}");
    let e = err1(
        "Slice",
        "",
        &[xin, ("s", "I32", &[1], &[2.0]), ("e", "I32", &[1], &[1.0])],
    );
    assert!(e.contains("empty tensors are not supported"), "{e}");
    let e = err1("Squeeze", "", &[xin, ("a", "I32", &[1], &[0.0])]);
    assert!(e.contains("cannot squeeze axis 0 of [2, 3]"), "{e}");
    let e = err1("Unsqueeze", "", &[xin, ("a", "I32", &[2], &[1.0, -3.0])]);
    assert!(e.contains("name axis 1 twice"), "{e}");
    let e = err1("Transpose", "\"perm\": Ints([0, 0])", &[xin]);
    assert!(e.contains("expected a permutation of 0..2"), "{e}");
    let e = err1("Expand", "", &[xin, ("s", "I32", &[1], &[4.0])]);
    assert!(e.contains("cannot be broadcast to shape [4]"), "{e}");
    let e = err1("ConstantOfShape", "", &[("s", "I32", &[2], &[2.0, -1.0])]);
    assert!(e.contains("expected positive sizes"), "{e}");
    let e = err1(
        "Div",
        "",
        &[
            ("a", "I32", &[2], &[1.0, 2.0]),
            ("b", "I32", &[2], &[1.0, 0.0]),
        ],
    );
    assert!(e.contains("integer division by zero (2 / 0)"), "{e}");
    let e = err1("Where", "", &[("c", F, &[1], &[1.0]), xin, xin]);
    assert!(e.contains("expected i8"), "{e}");
    let e = err1("QuantizeLinear", "", &[xin, ("s", F, &[2], &[1.0, 1.0])]);
    assert!(e.contains("expected f32 [3]"), "{e}");
    let e = err1(
        "LayerNormalization",
        "",
        &[xin, ("s", F, &[2], &[1.0, 1.0])],
    );
    assert!(
        e.contains("not broadcastable to the normalized shape [3]"),
        "{e}"
    );
    let e = err1(
        "Conv",
        "",
        &[
            ("x", F, &[1, 2, 3, 3], &[0.0; 18]),
            ("w", F, &[1, 3, 1, 1], &[0.0; 3]),
        ],
    );
    assert!(e.contains("needs its second dimension to be 2"), "{e}");
    let e = err1(
        "Pad",
        "\"mode\": String(\"mirror\")",
        &[xin, ("p", "I32", &[4], &[0.0; 4])],
    );
    assert!(
        e.contains("expected constant, reflect, edge or wrap"),
        "{e}"
    );
    // Runtime indices out of range are found when interpreting.
    let text = r#"Graph(name: "g", inputs: [ValueInfo(name: "i", dtype: I32, shape: [2])],
      outputs: [ValueInfo(name: "y")],
      initializers: [Initializer(name: "e", dtype: F32, shape: [3, 2], data: Inline([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))],
      nodes: [Node(name: "emb", op_type: "Gather", inputs: ["e", "i"], outputs: ["y"])])"#;
    let g = parse(text).unwrap();
    let inputs = BTreeMap::from([(
        "i".to_string(),
        Tensor::new(vec![2], Values::I32(vec![-3, 3])).unwrap(),
    )]);
    let e = interpret(&g, &inputs).unwrap_err().to_string();
    assert_eq!(e, "t.graph: node 'emb' (Gather): index 3 is out of range for axis 0 of size 3 (expected -3 to 2)");
}

#[test]
fn arity_of_variadic_and_multi_output_ops() {
    let e = parse(&graph1("Sum", "", &[], 1)).unwrap_err();
    assert!(
        e.contains("has 0 input(s); expected 1 or more (data_0...)"),
        "{e}"
    );
    let e = parse(&graph1("Relu", "", &[("x", F, &[1], &[1.0])], 2)).unwrap_err();
    assert!(e.contains("has 2 output(s); expected 1"), "{e}");
    let y = run1(
        "Max",
        "",
        &[
            ("a", F, &[2], &[1.0, 5.0]),
            ("b", F, &[2, 1], &[3.0, 0.0]),
            ("c", F, &[], &[2.0]),
        ],
    );
    assert_eq!(f32s(&y), [3.0, 5.0, 2.0, 5.0]);
}
