//! Convolutional operators end to end on `tiny` (16 lanes, so channel
//! counts like 17 and 33 straddle vector tiles): each graph is compiled,
//! simulated with seeded inputs and compared with the reference
//! interpreter. fp32 convolutions run on the MXM in fp16 (with fp32
//! accumulation), so they agree to the check's tolerance; int8 ones are
//! bit-exact.

use lpu_isa::ChipConfig;
use lpu_sim::SimOptions;

mod common;

/// Compiles and simulates `text` on `chip`; returns the check and the
/// simulated cycle count.
fn run(text: &str, chip: &str) -> (lpu_sim::check::Check, u64) {
    let r = common::compile_and_check(&common::parse(text), chip, 3);
    (r.check, r.cycles)
}

/// One Conv node on a `[1, c, h, w]` input with weights `[co, c/group, k, k]`.
fn conv_graph(
    c: usize,
    h: usize,
    w: usize,
    co: usize,
    k: usize,
    attrs: &str,
    bias: bool,
) -> String {
    let group = attrs
        .split("\"group\": Int(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1);
    let g = lpu_graph::parse_graph(
        &format!(
            r#"Graph(name: "probe", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, {c}, {h}, {w}])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "w", dtype: F32, shape: [{co}, {cg}, {k}, {k}], data: Random(seed: 2, dist: Normal(mean: 0.0, std: 0.3)))],
  nodes: [Node(op_type: "Conv", inputs: ["x", "w"], outputs: ["y"], attributes: {{ {attrs} }})])"#,
            cg = c / group
        ),
        "<probe>",
        std::path::Path::new("."),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ys = &g.info("y").expect("y").shape;
    let b = if bias { r#", "b""# } else { "" };
    format!(
        r#"Graph(name: "conv", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, {c}, {h}, {w}])],
  outputs: [ValueInfo(name: "z", dtype: F32, shape: {ys:?})],
  initializers: [
    Initializer(name: "w", dtype: F32, shape: [{co}, {cg}, {k}, {k}], data: Random(seed: 2, dist: Normal(mean: 0.0, std: 0.3))),
    Initializer(name: "b", dtype: F32, shape: [{co}], data: Random(seed: 3, dist: Uniform(low: -0.5, high: 0.5))),
  ],
  nodes: [
    Node(op_type: "Conv", inputs: ["x", "w"{b}], outputs: ["y"], attributes: {{ {attrs} }}),
    Node(op_type: "Relu", inputs: ["y"], outputs: ["z"]),
  ])"#,
        cg = c / group
    )
}

fn assert_conv(c: usize, h: usize, w: usize, co: usize, k: usize, attrs: &str, bias: bool) {
    let text = conv_graph(c, h, w, co, k, attrs, bias);
    let (check, _) = run(&text, "tiny");
    assert!(
        check.passed,
        "conv c={c} co={co} k={k} {attrs}: {:?}",
        check.failures
    );
}

#[test]
fn conv_same_padding_with_bias() {
    assert_conv(3, 8, 8, 8, 3, r#""pads": Ints([1, 1, 1, 1])"#, true);
}

#[test]
fn narrow_convs_pack_a_kernel_row_into_one_k_tile() {
    // 3 taps x 5 channels fit in tiny's 16 lanes: the input is rewritten
    // with SXM shifts, and the product takes 3 K-tiles per pixel, not 9.
    let text = conv_graph(5, 6, 7, 4, 3, r#""pads": Ints([1, 1, 1, 1])"#, true);
    let g = lpu_graph::parse_graph(&text, "<test>", std::path::Path::new(".")).expect("parses");
    let p = lpu_compiler::compile(&g, &ChipConfig::preset("tiny").expect("tiny"))
        .expect("compiles")
        .program;
    let count = |op: lpu_isa::Opcode| {
        p.queues
            .iter()
            .flat_map(|q| &q.slots)
            .filter(|s| s.instr.op == op)
            .count()
    };
    // 6 x 7 packed rows, 2 shifts each except the last column's, whose
    // right tap is padding (the shifts start at the first real tap); 42
    // output pixels x 3 kernel rows minus the 2 x 7 in the top and bottom
    // padding.
    assert_eq!(count(lpu_isa::Opcode::Shift), 6 * (7 * 2 - 1));
    assert_eq!(count(lpu_isa::Opcode::Matmul), 42 * 3 - 14);
    let (check, _) = run(&text, "tiny");
    assert!(check.passed, "{:?}", check.failures);
}

#[test]
fn conv_strided_asymmetric_padding_odd_channels() {
    // 17 input channels = two vector tiles on tiny; 33 outputs = three.
    assert_conv(
        17,
        9,
        7,
        33,
        3,
        r#""strides": Ints([2, 2]), "pads": Ints([1, 0, 0, 1])"#,
        true,
    );
}

#[test]
fn stride_two_convs_on_graph_inputs_run_space_to_depth() {
    // 4C <= 16 lanes: the input is stored as 2x2 blocks (ResNet's stem).
    assert_conv(
        3,
        12,
        10,
        8,
        7,
        r#""strides": Ints([2, 2]), "pads": Ints([3, 3, 3, 3])"#,
        true,
    );
    assert_conv(
        4,
        8,
        8,
        5,
        3,
        r#""strides": Ints([2, 2]), "pads": Ints([1, 0, 1, 2])"#,
        false,
    );
    assert_conv(2, 6, 6, 3, 2, r#""strides": Ints([2, 2])"#, true);
    // The layout really is space-to-depth: 2x2 blocks of 3 channels.
    let text = conv_graph(
        3,
        12,
        10,
        8,
        7,
        r#""strides": Ints([2, 2]), "pads": Ints([3, 3, 3, 3])"#,
        true,
    );
    let g = lpu_graph::parse_graph(&text, "<test>", std::path::Path::new(".")).expect("parses");
    let p = lpu_compiler::compile(&g, &ChipConfig::preset("tiny").expect("tiny"))
        .expect("compiles")
        .program;
    assert_eq!(p.inputs[0].view, vec![1, 3, 6, 2, 5, 2]);
    assert_eq!((p.inputs[0].rows, p.inputs[0].cols), (30, 12));
}

#[test]
fn conv_dilated_and_auto_pad() {
    assert_conv(
        4,
        10,
        10,
        5,
        3,
        r#""dilations": Ints([2, 2]), "pads": Ints([2, 2, 2, 2])"#,
        false,
    );
    assert_conv(
        4,
        7,
        9,
        6,
        3,
        r#""auto_pad": String("SAME_UPPER"), "strides": Ints([2, 2])"#,
        false,
    );
    assert_conv(4, 7, 9, 6, 2, r#""auto_pad": String("SAME_LOWER")"#, true);
}

#[test]
fn conv_grouped_and_depthwise() {
    assert_conv(
        8,
        6,
        6,
        12,
        3,
        r#""group": Int(4), "pads": Ints([1, 1, 1, 1])"#,
        true,
    );
    // Depthwise over 40 channels: three vector tiles, block-diagonal weights.
    assert_conv(
        40,
        5,
        5,
        40,
        3,
        r#""group": Int(40), "pads": Ints([1, 1, 1, 1]), "strides": Ints([2, 2])"#,
        true,
    );
}

#[test]
fn conv_1x1_and_kernel_larger_than_padding_window() {
    assert_conv(20, 4, 4, 18, 1, "", true);
    assert_conv(2, 5, 5, 3, 5, r#""pads": Ints([4, 4, 4, 4])"#, false);
}

fn pool_graph(op: &str, c: usize, h: usize, w: usize, attrs: &str, out: &[usize]) -> String {
    format!(
        r#"Graph(name: "pool", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, {c}, {h}, {w}])],
  outputs: [ValueInfo(name: "y", dtype: F32, shape: {out:?})],
  nodes: [Node(op_type: "{op}", inputs: ["x"], outputs: ["y"], attributes: {{ {attrs} }})])"#
    )
}

#[test]
fn pools_match_the_reference_exactly_or_within_rounding() {
    let cases = [
        pool_graph(
            "MaxPool",
            17,
            9,
            9,
            r#""kernel_shape": Ints([3, 3]), "strides": Ints([2, 2]), "pads": Ints([1, 1, 1, 1])"#,
            &[1, 17, 5, 5],
        ),
        pool_graph(
            "AveragePool",
            5,
            7,
            6,
            r#""kernel_shape": Ints([3, 2]), "pads": Ints([1, 0, 1, 1])"#,
            &[1, 5, 7, 6],
        ),
        pool_graph(
            "AveragePool",
            5,
            7,
            6,
            r#""kernel_shape": Ints([3, 3]), "strides": Ints([2, 2]), "pads": Ints([1, 1, 1, 1]), "count_include_pad": Int(1)"#,
            &[1, 5, 4, 3],
        ),
        pool_graph("GlobalAveragePool", 33, 7, 7, "", &[1, 33, 1, 1]),
    ];
    for text in &cases {
        let (check, _) = run(text, "tiny");
        assert!(check.passed, "{text}: {:?}", check.failures);
        assert!(check.max_abs_err < 1e-5, "{text}: {}", check.max_abs_err);
    }
}

#[test]
fn maxpool_is_bit_exact() {
    let text = pool_graph(
        "MaxPool",
        6,
        8,
        8,
        r#""kernel_shape": Ints([2, 2]), "strides": Ints([2, 2])"#,
        &[1, 6, 4, 4],
    );
    let (check, _) = run(&text, "tiny");
    assert!(check.passed && check.max_abs_err == 0.0, "{:?}", check);
}

/// A small CNN: Conv+BN+Relu, MaxPool, a residual Add with a per-channel
/// bias broadcast, GlobalAveragePool, Flatten and a Gemm classifier.
const SMALL_CNN: &str = r#"Graph(name: "small-cnn",
  inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 3, 12, 12])],
  outputs: [ValueInfo(name: "logits", dtype: F32, shape: [1, 10])],
  initializers: [
    Initializer(name: "w1", dtype: F32, shape: [18, 3, 3, 3], data: Random(seed: 1, dist: Normal(mean: 0.0, std: 0.3))),
    Initializer(name: "g1", dtype: F32, shape: [18], data: Random(seed: 2, dist: Uniform(low: 0.5, high: 1.5))),
    Initializer(name: "b1", dtype: F32, shape: [18], data: Random(seed: 3, dist: Uniform(low: -0.2, high: 0.2))),
    Initializer(name: "m1", dtype: F32, shape: [18], data: Random(seed: 4, dist: Uniform(low: -0.2, high: 0.2))),
    Initializer(name: "v1", dtype: F32, shape: [18], data: Random(seed: 5, dist: Uniform(low: 0.5, high: 1.5))),
    Initializer(name: "w2", dtype: F32, shape: [18, 18, 3, 3], data: Random(seed: 6, dist: Normal(mean: 0.0, std: 0.1))),
    Initializer(name: "cb", dtype: F32, shape: [18, 1, 1], data: Random(seed: 7, dist: Uniform(low: -0.1, high: 0.1))),
    Initializer(name: "shape", dtype: I32, shape: [2], data: Inline([1, 18])),
    Initializer(name: "fc", dtype: F32, shape: [10, 18], data: Random(seed: 8, dist: Normal(mean: 0.0, std: 0.3))),
    Initializer(name: "fcb", dtype: F32, shape: [10], data: Random(seed: 9, dist: Uniform(low: -0.1, high: 0.1))),
  ],
  nodes: [
    Node(name: "conv1", op_type: "Conv", inputs: ["x", "w1"], outputs: ["c1"], attributes: {"pads": Ints([1, 1, 1, 1])}),
    Node(name: "bn1", op_type: "BatchNormalization", inputs: ["c1", "g1", "b1", "m1", "v1"], outputs: ["n1"]),
    Node(name: "relu1", op_type: "Relu", inputs: ["n1"], outputs: ["r1"]),
    Node(name: "pool", op_type: "MaxPool", inputs: ["r1"], outputs: ["p1"], attributes: {"kernel_shape": Ints([2, 2]), "strides": Ints([2, 2])}),
    Node(name: "conv2", op_type: "Conv", inputs: ["p1", "w2"], outputs: ["c2"], attributes: {"pads": Ints([1, 1, 1, 1])}),
    Node(name: "bias2", op_type: "Add", inputs: ["c2", "cb"], outputs: ["c2b"]),
    Node(name: "res", op_type: "Add", inputs: ["c2b", "p1"], outputs: ["s"]),
    Node(name: "relu2", op_type: "Relu", inputs: ["s"], outputs: ["r2"]),
    Node(name: "gap", op_type: "GlobalAveragePool", inputs: ["r2"], outputs: ["g"]),
    Node(name: "flat", op_type: "Reshape", inputs: ["g", "shape"], outputs: ["f"]),
    Node(name: "fc", op_type: "Gemm", inputs: ["f", "fc", "fcb"], outputs: ["logits"], attributes: {"transB": Int(1)}),
  ])"#;

#[test]
fn small_cnn_runs_on_both_chips() {
    for chip in ["tiny", "tsp"] {
        let (check, cycles) = run(SMALL_CNN, chip);
        assert!(check.passed, "{chip}: {:?}", check.failures);
        assert!(cycles > 0);
    }
}

/// int8: QuantizeLinear -> ConvInteger -> per-channel DequantizeLinear ->
/// bias -> Relu -> QuantizeLinear, fused into one MXM/VXM chain.
const INT8_CONV: &str = r#"Graph(name: "int8-conv",
  inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 5, 6, 6])],
  outputs: [ValueInfo(name: "y", dtype: I8, shape: [1, 19, 3, 3])],
  initializers: [
    Initializer(name: "xs", dtype: F32, shape: [], data: Inline([0.05])),
    Initializer(name: "w", dtype: I8, shape: [19, 5, 3, 3], data: Random(seed: 1, dist: Uniform(low: -127.0, high: 127.0))),
    Initializer(name: "ws", dtype: F32, shape: [19], data: Random(seed: 2, dist: Uniform(low: 0.00001, high: 0.0001))),
    Initializer(name: "b", dtype: F32, shape: [1, 19, 1, 1], data: Random(seed: 3, dist: Uniform(low: -0.1, high: 0.1))),
    Initializer(name: "ys", dtype: F32, shape: [], data: Inline([0.01])),
  ],
  nodes: [
    Node(op_type: "QuantizeLinear", inputs: ["x", "xs"], outputs: ["xq"]),
    Node(op_type: "ConvInteger", inputs: ["xq", "w"], outputs: ["acc"], attributes: {"strides": Ints([2, 2]), "pads": Ints([1, 1, 1, 1])}),
    Node(op_type: "DequantizeLinear", inputs: ["acc", "ws"], outputs: ["d"], attributes: {"axis": Int(1)}),
    Node(op_type: "Add", inputs: ["d", "b"], outputs: ["db"]),
    Node(op_type: "Relu", inputs: ["db"], outputs: ["r"]),
    Node(op_type: "QuantizeLinear", inputs: ["r", "ys"], outputs: ["y"]),
  ])"#;

#[test]
fn int8_conv_chain_is_bit_exact() {
    // 5 channels: channels-last on tiny (4C > 16), space-to-depth on tsp.
    // 3 channels: space-to-depth on both, through the QuantizeLinear.
    let three = INT8_CONV
        .replace("[1, 5, 6, 6]", "[1, 3, 6, 6]")
        .replace("[19, 5, 3, 3]", "[19, 3, 3, 3]");
    for text in [INT8_CONV.to_string(), three] {
        for chip in ["tiny", "tsp"] {
            let (check, _) = run(&text, chip);
            assert!(check.passed, "{chip}: {:?}", check.failures);
            assert_eq!(check.max_abs_err, 0.0, "{chip}");
        }
    }
}

/// One ConvTranspose node on a `[1, c, h, w]` input with weights
/// `[c, co/group, k, k]`; the output shape comes from the loader.
fn conv_transpose_graph(c: usize, h: usize, w: usize, cog: usize, k: usize, attrs: &str) -> String {
    let probe = format!(
        r#"Graph(name: "ct", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, {c}, {h}, {w}])],
  outputs: [ValueInfo(name: "y")],
  initializers: [
    Initializer(name: "w", dtype: F32, shape: [{c}, {cog}, {k}, {k}], data: Random(seed: 4, dist: Normal(mean: 0.0, std: 0.3))),
    Initializer(name: "b", dtype: F32, shape: [BIAS], data: Random(seed: 5, dist: Uniform(low: -0.5, high: 0.5))),
  ],
  nodes: [Node(op_type: "ConvTranspose", inputs: ["x", "w", "b"], outputs: ["y"], attributes: {{ {attrs} }})])"#
    );
    let group = attrs
        .split("\"group\": Int(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1);
    probe.replace("BIAS", &(cog * group).to_string())
}

#[test]
fn conv_transpose_strided_padded_and_grouped() {
    for (c, h, w, cog, k, attrs) in [
        (
            3,
            4,
            5,
            4,
            3,
            r#""strides": Ints([2, 2]), "pads": Ints([1, 1, 1, 1])"#,
        ),
        (4, 3, 3, 2, 2, r#""strides": Ints([2, 2])"#),
        (
            6,
            4,
            4,
            3,
            3,
            r#""group": Int(2), "pads": Ints([1, 0, 1, 0]), "output_padding": Ints([0, 0])"#,
        ),
        (
            17,
            3,
            4,
            5,
            3,
            r#""strides": Ints([2, 1]), "dilations": Ints([1, 2])"#,
        ),
    ] {
        let text = conv_transpose_graph(c, h, w, cog, k, attrs);
        let (check, _) = run(&text, "tiny");
        assert!(check.passed, "{attrs}: {:?}", check.failures);
        // Products run in fp16 with f32 accumulation: small but nonzero.
        assert!(
            check.max_abs_err > 0.0 && check.max_abs_err < 2e-2,
            "{attrs}: {}",
            check.max_abs_err
        );
    }
}

#[test]
fn pad_modes_are_exact_copies() {
    for (mode, pads) in [
        ("constant", "[0, 0, 1, 2, 0, 0, 2, 1]"),
        ("edge", "[0, 0, 2, 1, 0, 0, 1, 3]"),
        ("reflect", "[0, 0, 2, 2, 0, 0, 1, 2]"),
        ("wrap", "[0, 0, 1, 0, 0, 0, 3, 2]"),
    ] {
        let text = format!(
            r#"Graph(name: "pad", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 17, 4, 5])],
  outputs: [ValueInfo(name: "y")],
  initializers: [
    Initializer(name: "pads", dtype: I32, shape: [8], data: Inline({pads})),
    Initializer(name: "v", dtype: F32, shape: [], data: Inline([1.5])),
  ],
  nodes: [Node(op_type: "Pad", inputs: ["x", "pads", "v"], outputs: ["y"], attributes: {{"mode": String("{mode}")}})])"#
        );
        let (check, _) = run(&text, "tiny");
        assert!(
            check.passed && check.max_abs_err == 0.0,
            "{mode}: {check:?}"
        );
    }
}

#[test]
fn resize_nearest_and_linear() {
    for (attrs, scales, exact) in [
        (r#""mode": String("nearest")"#, "[1.0, 1.0, 2.0, 2.0]", true),
        (
            r#""mode": String("nearest"), "coordinate_transformation_mode": String("asymmetric"), "nearest_mode": String("floor")"#,
            "[1.0, 1.0, 1.5, 0.5]",
            true,
        ),
        (r#""mode": String("linear")"#, "[1.0, 1.0, 2.0, 1.5]", false),
        (
            r#""mode": String("linear"), "coordinate_transformation_mode": String("align_corners")"#,
            "[1.0, 1.0, 1.75, 2.0]",
            false,
        ),
    ] {
        let text = format!(
            r#"Graph(name: "resize", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 17, 4, 6])],
  outputs: [ValueInfo(name: "y")],
  initializers: [Initializer(name: "scales", dtype: F32, shape: [4], data: Inline({scales}))],
  nodes: [Node(op_type: "Resize", inputs: ["x", "", "scales"], outputs: ["y"], attributes: {{ {attrs} }})])"#
        );
        let (check, _) = run(&text, "tiny");
        assert!(check.passed, "{attrs}: {check:?}");
        if exact {
            assert_eq!(check.max_abs_err, 0.0, "{attrs}");
        } else {
            assert!(check.max_abs_err < 1e-6, "{attrs}: {}", check.max_abs_err);
        }
    }
}

#[test]
fn variadic_prelu_and_expand() {
    let text = r#"Graph(name: "misc",
  inputs: [
    ValueInfo(name: "a", dtype: F32, shape: [3, 20]),
    ValueInfo(name: "b", dtype: F32, shape: [3, 20]),
  ],
  outputs: [ValueInfo(name: "s"), ValueInfo(name: "mx"), ValueInfo(name: "mn"), ValueInfo(name: "p"), ValueInfo(name: "e")],
  initializers: [
    Initializer(name: "row", dtype: F32, shape: [20], data: Random(seed: 1, dist: Uniform(low: -1.0, high: 1.0))),
    Initializer(name: "slope", dtype: F32, shape: [20], data: Random(seed: 2, dist: Uniform(low: 0.0, high: 0.5))),
    Initializer(name: "shape", dtype: I32, shape: [2], data: Inline([4, 20])),
  ],
  nodes: [
    Node(op_type: "Sum", inputs: ["a", "b", "row"], outputs: ["s"]),
    Node(op_type: "Max", inputs: ["a", "row", "b"], outputs: ["mx"]),
    Node(op_type: "Min", inputs: ["b", "a"], outputs: ["mn"]),
    Node(op_type: "PRelu", inputs: ["a", "slope"], outputs: ["p"]),
    Node(op_type: "Expand", inputs: ["row", "shape"], outputs: ["e"]),
  ])"#;
    let (check, _) = run(text, "tiny");
    assert!(check.passed && check.max_abs_err == 0.0, "{check:?}");
}

#[test]
fn where_selects_exactly() {
    let text = r#"Graph(name: "where",
  inputs: [
    ValueInfo(name: "c", dtype: I8, shape: [3, 20]),
    ValueInfo(name: "a", dtype: F32, shape: [3, 20]),
    ValueInfo(name: "b", dtype: F32, shape: [3, 20]),
  ],
  outputs: [ValueInfo(name: "w")],
  nodes: [Node(op_type: "Where", inputs: ["c", "a", "b"], outputs: ["w"])])"#;
    let g = lpu_graph::parse_graph(text, "<test>", std::path::Path::new(".")).expect("parses");
    let p = lpu_compiler::compile(&g, &ChipConfig::preset("tiny").expect("tiny"))
        .unwrap_or_else(|e| panic!("{e}"))
        .program;
    // A 0/1 mask (random i8 inputs are not booleans).
    let mut inputs = lpu_graph::random_inputs(&g, 3);
    let mask: Vec<i8> = (0..60).map(|i| (i % 3 == 0) as i8).collect();
    inputs.insert(
        "c".into(),
        lpu_graph::Tensor::new(vec![3, 20], lpu_isa::Values::I8(mask)).expect("tensor"),
    );
    let o = lpu_sim::simulate(&p, &inputs, &lpu_sim::SimOptions::default()).expect("runs");
    assert!(o.hazard.is_none(), "{:?}", o.hazard);
    let reference = lpu_graph::interpret(&g, &inputs).expect("reference");
    let check = lpu_sim::check::compare(&o.outputs, &reference);
    assert!(check.passed && check.max_abs_err == 0.0, "{check:?}");
}

#[test]
fn lrn_runs_as_a_banded_conv_on_both_chips() {
    // 17 channels straddle tiny's 16-lane vectors; window sizes odd and
    // even (the window is c - floor((size-1)/2) ..= c + ceil((size-1)/2)).
    for (size, beta, chip) in [(5, 0.75, "tiny"), (2, 0.5, "tiny"), (3, 0.75, "tsp")] {
        let text = format!(
            r#"Graph(name: "lrn", inputs: [ValueInfo(name: "x", dtype: F32, shape: [1, 17, 5, 3])],
  outputs: [ValueInfo(name: "y")],
  nodes: [Node(name: "norm", op_type: "LRN", inputs: ["x"], outputs: ["y"],
    attributes: {{"size": Int({size}), "alpha": Float(0.3), "beta": Float({beta}), "bias": Float(2.0)}})])"#
        );
        let g = lpu_graph::parse_graph(&text, "<test>", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        // The graph passes turn the LRN into ops the lowering has.
        let g = lpu_compiler::prepare(g, &lpu_compiler::CompileOptions::default())
            .expect("passes")
            .graph;
        assert!(g.nodes.iter().all(|n| n.op_type != "LRN"));
        let p = lpu_compiler::compile(&g, &ChipConfig::preset(chip).expect("preset"))
            .unwrap_or_else(|e| panic!("size {size}: {e}"))
            .program;
        let inputs = lpu_graph::random_inputs(&g, 3);
        let o = lpu_sim::simulate(&p, &inputs, &SimOptions::default()).expect("runs");
        assert!(o.hazard.is_none(), "{:?}", o.hazard);
        // Against the original LRN, not only the rewritten graph.
        let original = lpu_graph::parse_graph(&text, "<test>", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        let reference = lpu_graph::interpret(&original, &inputs).expect("reference");
        let c = lpu_sim::check::compare(&o.outputs, &reference);
        assert!(
            c.passed,
            "size {size} beta {beta} on {chip}: {:?}",
            c.failures
        );
    }
}
