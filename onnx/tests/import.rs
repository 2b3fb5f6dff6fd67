//! The importer on models built here as protobuf messages (encoded with
//! prost, so the decoder reads real wire bytes) and on the small `.onnx`
//! files in `tests/data/` (made by `tests/data/make_models.py` with the
//! `onnx` package).

use std::collections::BTreeMap;
use std::path::Path;

use lpu_graph::format::InitData;
use lpu_graph::{AttrValue, DType};
use lpu_onnx::proto::{
    attribute_type as at, data_type as dt, AttributeProto, DimValue, Dimension, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    TypeProtoTensor, ValueInfoProto,
};
use lpu_onnx::{import_bytes, ImportError, ImportOptions};
use prost::Message;

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn vi(name: &str, code: i32, dims: &[&str]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: code,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d.parse::<i64>() {
                                Ok(v) => DimValue::DimValue(v),
                                Err(_) => DimValue::DimParam(d.to_string()),
                            }),
                            denotation: String::new(),
                        })
                        .collect(),
                }),
            }),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn node(
    op: &str,
    name: &str,
    ins: &[&str],
    outs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: at::INTS,
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: v,
        r#type: at::INT,
        ..Default::default()
    }
}

fn f32_init(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dt::FLOAT,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn i64_init(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: dt::INT64,
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn model(opset: i64, graph: GraphProto) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn import(bytes: &[u8], opts: &ImportOptions) -> Result<lpu_onnx::Imported, ImportError> {
    import_bytes(bytes, "test.onnx", Path::new("."), opts)
}

/// Imports and validates with lpu-graph's loader.
fn build(bytes: &[u8], opts: &ImportOptions) -> lpu_graph::Graph {
    let imp = import(bytes, opts).unwrap();
    lpu_graph::load::build(imp.graph, "test.onnx", Path::new(".")).unwrap()
}

#[test]
fn gemm_relu_with_symbolic_batch() {
    let g = GraphProto {
        name: "g".into(),
        node: vec![
            node(
                "Gemm",
                "fc",
                &["x", "w", "b"],
                &["h"],
                vec![int_attr("transB", 0)],
            ),
            node("Relu", "relu", &["h"], &["y"], vec![]),
        ],
        initializer: vec![
            f32_init("w", &[4, 2], &[1.0; 8]),
            TensorProto {
                name: "b".into(),
                dims: vec![2],
                data_type: dt::FLOAT,
                float_data: vec![0.5, -0.5],
                ..Default::default()
            },
        ],
        input: vec![
            vi("x", dt::FLOAT, &["batch", "4"]),
            vi("w", dt::FLOAT, &["4", "2"]),
        ],
        output: vec![vi("y", dt::FLOAT, &["batch", "2"])],
        ..Default::default()
    };
    let bytes = model(13, g);
    let e = import(&bytes, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "graph input 'x': dimension #0 is symbolic ('batch'); bind it with --dim batch=N"
        ),
        "{e}"
    );

    let mut opts = ImportOptions::default();
    opts.dims.insert("batch".into(), 3);
    let graph = build(&bytes, &opts);
    // 'w' is both a graph input and an initializer: an initializer.
    assert_eq!(graph.inputs.len(), 1);
    assert_eq!(graph.inputs[0].1.shape, [3, 4]);
    assert_eq!(graph.tensors["y"].shape, [3, 2]);
    assert_eq!(
        graph.initializers["b"].values,
        lpu_graph::Values::F32(vec![0.5, -0.5])
    );
    // transB = 0 is Gemm's default: kept or dropped, the graph is the same.
    let x = lpu_graph::Tensor::new(vec![3, 4], lpu_graph::Values::F32(vec![1.0; 12])).unwrap();
    let out = lpu_graph::interpret(&graph, &[("x".to_string(), x)].into_iter().collect()).unwrap();
    assert_eq!(out["y"].values.get_f64(0), 4.5);
    assert_eq!(out["y"].values.get_f64(1), 3.5);

    // --input-shape binds the symbol too.
    let mut opts = ImportOptions::default();
    opts.input_shapes.insert("x".into(), vec![5, 4]);
    let graph = build(&bytes, &opts);
    assert_eq!(graph.tensors["y"].shape, [5, 2]);
    opts.input_shapes.insert("nope".into(), vec![1]);
    let e = import(&bytes, &opts).unwrap_err().to_string();
    assert!(e.contains("--input-shape names 'nope'"), "{e}");
}

#[test]
fn shape_chain_folds_to_a_constant() {
    // y = Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])), with a
    // Cast and an Equal/Where on the way, as exporters write them.
    let g = GraphProto {
        node: vec![
            node("Shape", "s", &["x"], &["xs"], vec![]),
            node(
                "Gather",
                "g",
                &["xs", "zero"],
                &["n"],
                vec![int_attr("axis", 0)],
            ),
            node("Unsqueeze", "u", &["n", "axes"], &["n1"], vec![]),
            node(
                "Concat",
                "c",
                &["n1", "m1"],
                &["t0"],
                vec![int_attr("axis", 0)],
            ),
            node("Equal", "eq", &["t0", "m1"], &["isneg"], vec![]),
            node("Where", "w", &["isneg", "twelve", "t0"], &["t1"], vec![]),
            node(
                "Cast",
                "cast",
                &["t1"],
                &["t"],
                vec![int_attr("to", dt::INT64 as i64)],
            ),
            node("ConstantOfShape", "zeros", &["t"], &["z"], vec![]),
            node("Reshape", "r", &["x", "t"], &["xr"], vec![]),
            node("Add", "add", &["xr", "z"], &["y"], vec![]),
        ],
        initializer: vec![
            TensorProto {
                name: "zero".into(),
                data_type: dt::INT64,
                int64_data: vec![0],
                ..Default::default()
            },
            i64_init("axes", &[0]),
            i64_init("m1", &[-1]),
            i64_init("twelve", &[12]),
        ],
        input: vec![vi("x", dt::FLOAT, &["2", "3", "4"])],
        output: vec![vi("y", dt::FLOAT, &["2", "12"])],
        ..Default::default()
    };
    let imp = import(&model(17, g), &ImportOptions::default()).unwrap();
    let ops: Vec<&str> = imp.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Reshape", "Add"]);
    let t = imp
        .graph
        .initializers
        .iter()
        .find(|i| i.name == "t")
        .unwrap();
    assert_eq!(t.data, InitData::Inline(vec![2.0, 12.0]));
    let z = imp
        .graph
        .initializers
        .iter()
        .find(|i| i.name == "z")
        .unwrap();
    assert_eq!((z.dtype, z.shape.clone()), (DType::F32, vec![2, 12]));
    let graph = lpu_graph::load::build(imp.graph, "t", Path::new(".")).unwrap();
    assert_eq!(graph.tensors["y"].shape, [2, 12]);
}

#[test]
fn older_opset_attributes_become_inputs() {
    // Opset 9: Unsqueeze axes and Slice starts/ends/axes are attributes;
    // opset 10: Clip min/max are attributes; opset 11: Squeeze axes.
    let g = GraphProto {
        node: vec![
            node(
                "Unsqueeze",
                "u",
                &["x"],
                &["u"],
                vec![ints_attr("axes", &[0])],
            ),
            node(
                "Slice",
                "s",
                &["u"],
                &["y"],
                vec![
                    ints_attr("starts", &[1]),
                    ints_attr("ends", &[3]),
                    ints_attr("axes", &[2]),
                ],
            ),
        ],
        input: vec![vi("x", dt::FLOAT, &["2", "4"])],
        output: vec![vi("y", dt::FLOAT, &["1", "2", "2"])],
        ..Default::default()
    };
    let imp = import(&model(9, g), &ImportOptions::default()).unwrap();
    let u = &imp.graph.nodes[0];
    assert_eq!(u.inputs, ["x", "u_axes"]);
    assert!(u.attributes.is_empty());
    let s = &imp.graph.nodes[1];
    assert_eq!(s.inputs, ["u", "s_starts", "s_ends", "s_axes"]);
    let graph = lpu_graph::load::build(imp.graph, "t", Path::new(".")).unwrap();
    assert_eq!(graph.tensors["y"].shape, [1, 2, 2]);

    let clip = |opset| {
        let g = GraphProto {
            node: vec![node(
                "Clip",
                "c",
                &["x"],
                &["y"],
                vec![AttributeProto {
                    name: "max".into(),
                    f: 6.0,
                    r#type: at::FLOAT,
                    ..Default::default()
                }],
            )],
            input: vec![vi("x", dt::FLOAT, &["4"])],
            output: vec![vi("y", dt::FLOAT, &["4"])],
            ..Default::default()
        };
        import(&model(opset, g), &ImportOptions::default())
    };
    let n = &clip(10).unwrap().graph.nodes[0];
    assert_eq!(n.inputs, ["x", "", "c_max"]);
    // In opset 11 'max' is not an attribute any more: it is passed through
    // and the loader says what is wrong.
    let n = &clip(11).unwrap().graph.nodes[0];
    assert_eq!(n.attributes.get("max"), Some(&AttrValue::Float(6.0)));

    // Softmax before opset 13: axis 1 of a rank-2 input is the last axis.
    let g = GraphProto {
        node: vec![node("Softmax", "sm", &["x"], &["y"], vec![])],
        input: vec![vi("x", dt::FLOAT, &["2", "4"])],
        output: vec![vi("y", dt::FLOAT, &["2", "4"])],
        ..Default::default()
    };
    let imp = import(&model(11, g.clone()), &ImportOptions::default()).unwrap();
    assert_eq!(
        imp.graph.nodes[0].attributes.get("axis"),
        Some(&AttrValue::Int(-1))
    );
    let mut g3 = g;
    g3.input = vec![vi("x", dt::FLOAT, &["2", "4", "3"])];
    g3.output = vec![vi("y", dt::FLOAT, &["2", "4", "3"])];
    let e = import(&model(11, g3), &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("node 'sm' (Softmax)") && e.contains("only the last axis"),
        "{e}"
    );
}

#[test]
fn every_unsupported_op_is_listed_once() {
    let g = GraphProto {
        node: vec![
            node("TopK", "t1", &["x", "k"], &["a", "ai"], vec![]),
            node("NonZero", "nz", &["a"], &["b"], vec![]),
            node("TopK", "t2", &["a", "k"], &["c", "ci"], vec![]),
            NodeProto {
                domain: "com.example".into(),
                ..node("Custom", "cu", &["x"], &["d"], vec![])
            },
            node("Relu", "r", &["x"], &["y"], vec![]),
        ],
        initializer: vec![i64_init("k", &[2])],
        input: vec![vi("x", dt::FLOAT, &["1", "4"])],
        output: vec![vi("y", dt::FLOAT, &["1", "4"])],
        ..Default::default()
    };
    let e = import(&model(17, g), &ImportOptions::default()).unwrap_err();
    let ImportError::Unsupported { ops, .. } = &e else {
        panic!("{e}");
    };
    let got: Vec<(&str, usize, &str)> = ops
        .iter()
        .map(|o| (o.op_type.as_str(), o.count, o.first_node.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("NonZero", 1, "nz"),
            ("TopK", 2, "t1"),
            ("com.example:Custom", 1, "cu")
        ]
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("test.onnx: unsupported operators: NonZero (1 node, first 'nz'), TopK (2 nodes, first 't1')"),
        "{msg}"
    );
}

#[test]
fn constant_nodes_and_dtypes() {
    let tensor_attr = |t: TensorProto| AttributeProto {
        name: "value".into(),
        t: Some(t),
        r#type: at::TENSOR,
        ..Default::default()
    };
    let g = GraphProto {
        node: vec![
            node(
                "Constant",
                "k",
                &[],
                &["w"],
                vec![tensor_attr(TensorProto {
                    dims: vec![2],
                    data_type: dt::DOUBLE,
                    double_data: vec![0.25, 2.0],
                    ..Default::default()
                })],
            ),
            node("Mul", "m", &["x", "w"], &["y"], vec![]),
        ],
        input: vec![vi("x", dt::FLOAT, &["2"])],
        output: vec![vi("y", dt::FLOAT, &["2"])],
        ..Default::default()
    };
    let imp = import(&model(13, g), &ImportOptions::default()).unwrap();
    assert_eq!(imp.graph.initializers[0].name, "w");
    assert_eq!(imp.graph.initializers[0].dtype, DType::F32);
    assert!(
        imp.notes
            .iter()
            .any(|n| n.contains("DOUBLE rounded to f32")),
        "{:?}",
        imp.notes
    );

    // UINT8 tensors are widened to i32 (exactly, with a note)...
    let g = GraphProto {
        node: vec![node("Add", "a", &["x", "q"], &["y"], vec![])],
        initializer: vec![TensorProto {
            name: "q".into(),
            dims: vec![2],
            data_type: dt::UINT8,
            raw_data: vec![1, 200],
            ..Default::default()
        }],
        input: vec![vi("x", dt::UINT8, &["2"])],
        output: vec![vi("y", dt::UINT8, &["2"])],
        ..Default::default()
    };
    let imp = import(&model(13, g), &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        imp.notes.iter().any(|n| n.contains("UINT8 widened to i32")),
        "{:?}",
        imp.notes
    );
    let q = imp
        .graph
        .initializers
        .iter()
        .find(|i| i.name == "q")
        .expect("q");
    assert_eq!(q.dtype, DType::I32);
    // ... and the MXM's integer products read them shifted to i8 by -128,
    // with the zero point shifted alike (so `x - zero_point` is unchanged):
    // a runtime operand through `Sub` and `Cast`.
    let g = GraphProto {
        node: vec![node(
            "MatMulInteger",
            "mm",
            &["x", "w", "xz"],
            &["y"],
            vec![],
        )],
        initializer: vec![
            TensorProto {
                name: "w".into(),
                dims: vec![2, 2],
                data_type: dt::INT8,
                raw_data: vec![1, 2, 3, 4],
                ..Default::default()
            },
            TensorProto {
                name: "xz".into(),
                dims: vec![],
                data_type: dt::UINT8,
                raw_data: vec![128],
                ..Default::default()
            },
        ],
        input: vec![vi("x", dt::UINT8, &["1", "2"])],
        output: vec![vi("y", dt::INT32, &["1", "2"])],
        ..Default::default()
    };
    let graph = build(&model(13, g), &ImportOptions::default());
    let ops: Vec<&str> = graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Sub", "Cast", "MatMulInteger"]);
    let mm = &graph.nodes[2];
    assert_eq!(graph.initializers[&mm.inputs[2]].values.get_f64(0), 0.0);
    let x = lpu_graph::Tensor::new(vec![1, 2], lpu_graph::Values::I32(vec![130, 255])).expect("x");
    let out = lpu_graph::interpret(&graph, &BTreeMap::from([("x".to_string(), x)])).expect("runs");
    // (130 - 128) * [1, 2] + (255 - 128) * [3, 4]
    assert_eq!(
        out["y"].values,
        lpu_graph::Values::I32(vec![2 + 381, 4 + 508])
    );
}

#[test]
fn model_level_errors_name_the_file() {
    let e = import(b"\xff\xff\xff", &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("test.onnx: not a valid ONNX model"), "{e}");
    let no_graph = ModelProto::default().encode_to_vec();
    let e = import(&no_graph, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert_eq!(e, "test.onnx: the model has no graph");
    let g = GraphProto {
        node: vec![node("Relu", "r", &["x"], &["y"], vec![])],
        input: vec![vi("x", dt::FLOAT, &["4"])],
        output: vec![vi("y", dt::FLOAT, &["4"])],
        ..Default::default()
    };
    let e = import(&model(1, g), &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("opset 1 is older than 6"), "{e}");
}

#[test]
fn files_made_by_the_onnx_package() {
    let opts = ImportOptions {
        dims: BTreeMap::from([("batch".to_string(), 2)]),
        ..Default::default()
    };
    let (g, _) = lpu_onnx::load(&data("mlp.onnx"), &opts).unwrap();
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Gemm", "Relu", "Reshape"]);
    assert_eq!(g.tensors["y"].shape, [2, 16]);

    let (g, _) = lpu_onnx::load(&data("opset9.onnx"), &ImportOptions::default()).unwrap();
    assert_eq!(g.tensors["y"].shape, [1, 2, 2]);

    // Weights in external.onnx.data.
    let (g, _) = lpu_onnx::load(&data("external.onnx"), &ImportOptions::default()).unwrap();
    let w = &g.initializers["W"];
    assert_eq!(w.shape, [4, 8]);
    assert_eq!(w.values.get_f64(31), (31.0f32 / 10.0) as f64);

    let e = lpu_onnx::import(&data("unsupported.onnx"), &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(&e, ImportError::Unsupported { ops, .. } if ops.len() == 3),
        "{e}"
    );
}

#[test]
fn written_graph_reads_back() {
    // Side files for large initializers, inline for small ones.
    let big: Vec<f32> = (0..2048).map(|i| i as f32 * 0.5).collect();
    let g = GraphProto {
        node: vec![node("MatMul", "mm", &["x", "w/0"], &["y"], vec![])],
        initializer: vec![f32_init("w/0", &[2, 1024], &big)],
        input: vec![vi("x", dt::FLOAT, &["1", "2"])],
        output: vec![vi("y", dt::FLOAT, &["1", "1024"])],
        ..Default::default()
    };
    let imp = import(&model(13, g), &ImportOptions::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("lpu-onnx-write-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.graph");
    let files = lpu_onnx::write_graph(&imp.graph, &path).unwrap();
    assert_eq!(files, [dir.join("m.graph.data/w_0.bin")]);
    let g = lpu_graph::load_graph(&path).unwrap();
    assert_eq!(g.initializers["w/0"].values, lpu_graph::Values::F32(big));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn opset6_legacy_broadcast() {
    // Add(A [2, 3, 4], B [3], broadcast = 1, axis = 1): B lines up with
    // A's axis 1, which NumPy broadcasting spells B [3, 1].
    let g = GraphProto {
        node: vec![node(
            "Add",
            "add",
            &["a", "b"],
            &["y"],
            vec![int_attr("broadcast", 1), int_attr("axis", 1)],
        )],
        initializer: vec![f32_init("b", &[3], &[1.0, 2.0, 3.0])],
        input: vec![vi("a", dt::FLOAT, &["2", "3", "4"])],
        output: vec![vi("y", dt::FLOAT, &["2", "3", "4"])],
        ..Default::default()
    };
    let imp = import(&model(6, g), &ImportOptions::default()).unwrap();
    let n = &imp.graph.nodes[0];
    assert!(n.attributes.is_empty(), "{:?}", n.attributes);
    let b = imp
        .graph
        .initializers
        .iter()
        .find(|i| i.name == n.inputs[1])
        .unwrap();
    assert_eq!(b.shape, [3, 1]);
    let graph = lpu_graph::load::build(imp.graph, "t", Path::new(".")).unwrap();
    let a = lpu_graph::Tensor::new(vec![2, 3, 4], lpu_graph::Values::F32(vec![0.0; 24])).unwrap();
    let out = lpu_graph::interpret(&graph, &[("a".to_string(), a)].into_iter().collect()).unwrap();
    // Element [0, 2, 3] gets B[2].
    assert_eq!(out["y"].values.get_f64(2 * 4 + 3), 3.0);
}

#[test]
fn typed_float16_and_int_fields() {
    let t = TensorProto {
        dims: vec![2],
        data_type: dt::FLOAT16,
        int32_data: vec![
            half::f16::from_f32(0.5).to_bits() as i32,
            half::f16::from_f32(-2.0).to_bits() as i32,
        ],
        ..Default::default()
    };
    let c = lpu_onnx::tensor::Const::from_proto(&t, None).unwrap();
    assert_eq!((c.data.get_f64(0), c.data.get_f64(1)), (0.5, -2.0));
    let t = TensorProto {
        dims: vec![2],
        data_type: dt::UINT64,
        uint64_data: vec![3, u64::MAX],
        ..Default::default()
    };
    let e = lpu_onnx::tensor::Const::from_proto(&t, None).unwrap_err();
    assert!(e.contains("exceeds 2^63 - 1"), "{e}");
}

#[test]
fn unsupported_operators_come_before_type_errors() {
    // A STRING input would be an element-type error; the operator that can
    // never import is what the error is about.
    let g = GraphProto {
        node: vec![
            node("StringNormalizer", "sn", &["s"], &["t"], vec![]),
            node("Xor", "x1", &["a", "b"], &["c"], vec![]),
            node("Xor", "x2", &["c", "b"], &["d"], vec![]),
        ],
        input: vec![
            vi("s", dt::STRING, &["2"]),
            vi("a", dt::BOOL, &["2"]),
            vi("b", dt::BOOL, &["2"]),
        ],
        output: vec![vi("t", dt::STRING, &["2"]), vi("d", dt::BOOL, &["2"])],
        ..Default::default()
    };
    let e = import(&model(17, g), &ImportOptions::default()).unwrap_err();
    let ImportError::Unsupported { ops, .. } = &e else {
        panic!("{e}");
    };
    let got: Vec<(&str, usize, &str)> = ops
        .iter()
        .map(|o| (o.op_type.as_str(), o.count, o.first_node.as_str()))
        .collect();
    assert_eq!(got, [("StringNormalizer", 1, "sn"), ("Xor", 2, "x1")]);
}

#[test]
fn bool_is_i8_and_cast_to_double_is_float() {
    // BOOL graph inputs are i8 0/1, what Where takes as its condition.
    let g = GraphProto {
        node: vec![
            node("Where", "w", &["c", "x", "y"], &["z"], vec![]),
            node(
                "Cast",
                "cd",
                &["z"],
                &["zd"],
                vec![int_attr("to", dt::DOUBLE as i64)],
            ),
        ],
        input: vec![
            vi("c", dt::BOOL, &["2", "2"]),
            vi("x", dt::FLOAT, &["2", "2"]),
            vi("y", dt::FLOAT, &["2", "2"]),
        ],
        output: vec![vi("zd", dt::DOUBLE, &["2", "2"])],
        ..Default::default()
    };
    let bytes = model(17, g);
    let imp = import(&bytes, &ImportOptions::default()).unwrap();
    assert!(
        imp.notes.iter().any(|n| n.contains("BOOL stored as i8")),
        "{:?}",
        imp.notes
    );
    assert!(
        imp.notes.iter().any(|n| n.contains("Cast to DOUBLE")),
        "{:?}",
        imp.notes
    );
    let g = build(&bytes, &ImportOptions::default());
    assert_eq!(g.tensors["c"].dtype, DType::I8);
    assert_eq!(g.tensors["zd"].dtype, DType::F32);
    let cast = g.nodes.iter().find(|n| n.op_type == "Cast").unwrap();
    assert_eq!(cast.attributes["to"], AttrValue::Int(dt::FLOAT as i64));
}

/// The names of an imported graph's inputs.
fn input_names(imp: &lpu_onnx::Imported) -> Vec<&str> {
    imp.graph.inputs.iter().map(|i| i.name.as_str()).collect()
}

#[test]
fn empty_axes_input_means_no_axes() {
    // An empty `axes` (a graph input of shape [0], which has no data and
    // so is a constant, or an empty initializer) is no axes: every axis,
    // or none with noop_with_empty_axes.
    for noop in [0, 1] {
        let out = if noop == 1 { ["2", "3"] } else { ["1", "1"] };
        let mut g = GraphProto {
            node: vec![node(
                "ReduceSum",
                "sum",
                &["x", "axes"],
                &["y"],
                vec![
                    int_attr("keepdims", 1),
                    int_attr("noop_with_empty_axes", noop),
                ],
            )],
            input: vec![vi("x", dt::FLOAT, &["2", "3"])],
            output: vec![vi("y", dt::FLOAT, &out)],
            ..Default::default()
        };
        if noop == 1 {
            g.initializer.push(i64_init("axes", &[]));
        } else {
            g.input.push(vi("axes", dt::INT64, &["0"]));
        }
        let bytes = model(13, g);
        let imp = import(&bytes, &ImportOptions::default()).unwrap();
        assert_eq!(input_names(&imp), ["x"]);
        assert_eq!(imp.graph.nodes[0].inputs, ["x"]);
        assert!(imp.graph.initializers.is_empty());
        if noop == 0 {
            assert!(
                imp.notes
                    .iter()
                    .any(|n| n.contains("graph input 'axes' has shape [0]")),
                "{:?}",
                imp.notes
            );
        }
        let g = build(&bytes, &ImportOptions::default());
        let want: Vec<usize> = out.iter().map(|d| d.parse().unwrap()).collect();
        assert_eq!(g.tensors["y"].shape, want);
    }
}

#[test]
fn unused_empty_input_is_dropped() {
    // CastLike's expansion leaves `like` unread; it has no elements.
    let g = GraphProto {
        node: vec![node(
            "Cast",
            "cast",
            &["x"],
            &["y"],
            vec![int_attr("to", dt::FLOAT16 as i64)],
        )],
        input: vec![
            vi("x", dt::FLOAT, &["3", "4"]),
            vi("like", dt::FLOAT16, &["0"]),
        ],
        output: vec![vi("y", dt::FLOAT16, &["3", "4"])],
        ..Default::default()
    };
    let bytes = model(21, g);
    let imp = import(&bytes, &ImportOptions::default()).unwrap();
    assert_eq!(input_names(&imp), ["x"]);
    assert!(imp.graph.initializers.is_empty());
    assert!(
        imp.notes.iter().any(|n| n.contains("'like'")),
        "{:?}",
        imp.notes
    );
    let g = build(&bytes, &ImportOptions::default());
    let names: Vec<&str> = g.inputs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x"]);
}

#[test]
fn reduction_over_an_empty_axis_is_a_constant() {
    // data [2, 0, 4]: ReduceMax over axis 1 is -inf, ReduceSum 0 (ONNX's
    // reductions of the empty set); ReduceSum over axis 2 is empty itself.
    let g = GraphProto {
        node: vec![
            node("ReduceMax", "max", &["data", "a1"], &["mx"], vec![]),
            node(
                "ReduceSum",
                "sum",
                &["data", "a1"],
                &["s"],
                vec![int_attr("keepdims", 0)],
            ),
            node("ReduceSum", "sum2", &["data", "a2"], &["e"], vec![]),
        ],
        initializer: vec![i64_init("a1", &[1]), i64_init("a2", &[2])],
        input: vec![vi("data", dt::FLOAT, &["2", "0", "4"])],
        output: vec![
            vi("mx", dt::FLOAT, &["2", "1", "4"]),
            vi("s", dt::FLOAT, &["2", "4"]),
            vi("e", dt::FLOAT, &["2", "0", "1"]),
        ],
        ..Default::default()
    };
    let imp = import(&model(18, g.clone()), &ImportOptions::default()).unwrap();
    assert!(imp.graph.nodes.is_empty());
    assert!(imp.graph.inputs.is_empty());
    let init = |n: &str| imp.graph.initializers.iter().find(|i| i.name == n).unwrap();
    assert_eq!(init("mx").shape, [2, 1, 4]);
    assert_eq!(
        init("mx").data,
        InitData::Inline(vec![f64::NEG_INFINITY; 8])
    );
    assert_eq!(init("s").data, InitData::Inline(vec![0.0; 8]));
    let outs: Vec<&str> = imp.graph.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outs, ["mx", "s"]);
    assert_eq!(imp.empty_outputs, [("e".to_string(), vec![2, 0, 1])]);
    let graph = lpu_graph::load::build(imp.graph, "t", Path::new(".")).unwrap();
    assert_eq!(graph.tensors["s"].shape, [2, 4]);

    // The mean of the empty set is undefined.
    let mut mean = g.clone();
    mean.node = vec![node("ReduceMean", "mean", &["data", "a1"], &["mx"], vec![])];
    mean.output.truncate(1);
    let e = import(&model(18, mean), &ImportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("undefined"), "{e}");

    // Runtime axes: the node cannot be evaluated at import, and the error
    // names the input that must be a constant.
    let mut rt = g;
    rt.node.truncate(1);
    rt.output.truncate(1);
    rt.initializer.clear();
    rt.input.push(vi("a1", dt::INT64, &["1"]));
    let e = import(&model(18, rt), &ImportOptions::default()).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("'a1' must be a constant") && m.contains("empty tensor 'data'"),
        "{m}"
    );
}

#[test]
fn split_with_a_zero_piece() {
    // x [2, 8]: Split [8, 0] is x and an empty piece, which Concat drops;
    // Split [3, 0, 5] is a Split into [3, 5] and an empty output.
    let g = GraphProto {
        node: vec![
            node(
                "Split",
                "s1",
                &["x", "s80"],
                &["a", "b"],
                vec![int_attr("axis", 1)],
            ),
            node(
                "Concat",
                "cat",
                &["a", "b"],
                &["c"],
                vec![int_attr("axis", -1)],
            ),
            node("Relu", "relu", &["c"], &["y"], vec![]),
            node(
                "Split",
                "s2",
                &["x", "s305"],
                &["p", "q", "r"],
                vec![int_attr("axis", -1)],
            ),
            node("Slice", "sl", &["x", "st", "en"], &["z"], vec![]),
        ],
        initializer: vec![
            i64_init("s80", &[8, 0]),
            i64_init("s305", &[3, 0, 5]),
            i64_init("st", &[1000]),
            i64_init("en", &[1000]),
        ],
        input: vec![vi("x", dt::FLOAT, &["2", "8"])],
        output: vec![
            vi("y", dt::FLOAT, &["2", "8"]),
            vi("p", dt::FLOAT, &["2", "3"]),
            vi("q", dt::FLOAT, &["2", "0"]),
            vi("r", dt::FLOAT, &["2", "5"]),
            vi("z", dt::FLOAT, &["0", "8"]),
        ],
        ..Default::default()
    };
    let imp = import(&model(18, g), &ImportOptions::default()).unwrap();
    let ops: Vec<(&str, Vec<String>)> = imp
        .graph
        .nodes
        .iter()
        .map(|n| (n.op_type.as_str(), n.outputs.clone()))
        .collect();
    assert_eq!(
        ops,
        [
            ("Identity", vec!["a".to_string()]),
            ("Identity", vec!["c".to_string()]),
            ("Relu", vec!["y".to_string()]),
            ("Split", vec!["p".to_string(), "r".to_string()]),
        ]
    );
    let split = &imp.graph.nodes[3];
    let sizes = imp
        .graph
        .initializers
        .iter()
        .find(|i| i.name == split.inputs[1])
        .unwrap();
    assert_eq!(sizes.data, InitData::Inline(vec![3.0, 5.0]));
    assert_eq!(
        imp.empty_outputs,
        [("q".to_string(), vec![2, 0]), ("z".to_string(), vec![0, 8])]
    );
    let g = lpu_graph::load::build(imp.graph, "t", Path::new(".")).unwrap();
    assert_eq!(g.tensors["y"].shape, [2, 8]);
    assert_eq!(g.tensors["r"].shape, [2, 5]);
    let x = lpu_graph::Tensor::new(
        vec![2, 8],
        lpu_graph::Values::F32((0..16).map(|v| v as f32 - 8.0).collect()),
    )
    .unwrap();
    let out = lpu_graph::interpret(&g, &BTreeMap::from([("x".to_string(), x)])).unwrap();
    assert_eq!(
        out["r"].values,
        lpu_graph::Values::F32(vec![-5.0, -4.0, -3.0, -2.0, -1.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    );
}

/// Conversions to narrow types import as lpu ops: a `QuantizeLinear` to
/// INT4 as the int8 one then a `Clip` to [-8, 7] (with the zero point as
/// INT8, so the rewrite does not apply to itself again), a `Cast` to FLOAT8
/// as a `NarrowCast`, and the results run in the interpreter as ONNX says.
#[test]
fn narrow_types_import_as_lpu_ops() {
    let int_attr = |name: &str, i: i64| AttributeProto {
        name: name.into(),
        i,
        r#type: at::INT,
        ..Default::default()
    };
    let g = GraphProto {
        node: vec![
            node("QuantizeLinear", "q", &["x", "s", "z"], &["y"], vec![]),
            node("Cast", "c", &["x"], &["f8"], vec![int_attr("to", 17)]),
        ],
        initializer: vec![
            TensorProto {
                name: "s".into(),
                data_type: dt::FLOAT,
                float_data: vec![2.0],
                ..Default::default()
            },
            TensorProto {
                name: "z".into(),
                data_type: 22, // INT4, one element packed in one byte
                raw_data: vec![0x01],
                ..Default::default()
            },
        ],
        input: vec![vi("x", dt::FLOAT, &["4"])],
        output: vec![vi("y", 22, &["4"]), vi("f8", 17, &["4"])],
        ..Default::default()
    };
    let graph = build(&model(21, g), &ImportOptions::default());
    let ops: Vec<&str> = graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["QuantizeLinear", "Clip", "NarrowCast"]);
    let x = lpu_graph::Tensor::new(
        vec![4],
        lpu_graph::Values::F32(vec![0.0, 5.0, 40.0, -1000.0]),
    )
    .expect("tensor");
    let out = lpu_graph::interpret(&graph, &BTreeMap::from([("x".to_string(), x)])).expect("runs");
    // round(x / 2) + 1, clamped to INT4's [-8, 7].
    assert_eq!(out["y"].values, lpu_graph::Values::I8(vec![1, 3, 7, -8]));
    // FLOAT8E4M3FN saturates at 448.
    assert_eq!(
        out["f8"].values,
        lpu_graph::Values::F32(vec![0.0, 5.0, 40.0, -448.0])
    );
}
