#!/usr/bin/env python3
"""Builds the small ONNX models the lpu-onnx tests import.

Run from anywhere with the `onnx` and `numpy` packages installed
(`pip install onnx numpy`; made with onnx 1.23.2):

    python3 onnx/tests/data/make_models.py

It rewrites, next to this script:

- mlp.onnx: x[batch, 8] -> Gemm (raw_data weights, typed-field bias) ->
  Relu -> a Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain -> y;
  opset 13, symbolic batch dimension;
- opset9.onnx: Unsqueeze and Slice with their opset-9 attribute forms;
- external.onnx + external.onnx.data: weights in an external data file;
- unsupported.onnx: nodes of ops lpu does not support (two TopK, one
  NonZero, one custom-domain op);
- fuzz/slice_extreme_step.onnx, fuzz/slice_empty_negative_step.onnx:
  constant Slices with extreme or negative steps, which once overflowed
  the import-time folding (replayed by tests/fuzz_decoder.rs);
- case_add_relu/: y = Relu(x + b), in the ONNX backend-test layout;
- case_mlp/: mlp.onnx in the ONNX backend-test layout (model.onnx,
  test_data_set_0/input_0.pb, output_0.pb) with batch 2, its expected
  output computed by onnx's reference evaluator;
- case_empty/: empty tensors in the backend-test layout: an unused empty
  input, a Concat with an empty input, a Split with a zero-size piece (an
  empty output) and a ReduceSum over an empty axis, with the split sizes
  and axes fed as runtime inputs (`case_empty()`).
"""

import os
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)


def mlp(batch="batch"):
    w = rng.standard_normal((8, 16)).astype(np.float32) * 0.3
    b = rng.standard_normal(16).astype(np.float32) * 0.1
    w_init = numpy_helper.from_array(w, "W")  # raw_data
    b_init = helper.make_tensor("B", TensorProto.FLOAT, [16], b.tolist())  # float_data
    zero = helper.make_tensor("zero", TensorProto.INT64, [], [0])
    minus1 = helper.make_tensor("minus1", TensorProto.INT64, [1], [-1])
    axes0 = helper.make_tensor("axes0", TensorProto.INT64, [1], [0])
    nodes = [
        helper.make_node("Gemm", ["x", "W", "B"], ["h"], name="fc"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Shape", ["x"], ["xs"], name="shape"),
        helper.make_node("Gather", ["xs", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "target"], ["y"], name="reshape"),
    ]
    g = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 16])],
        [w_init, b_init, zero, minus1, axes0],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def opset9():
    nodes = [
        helper.make_node("Unsqueeze", ["x"], ["u"], name="unsq", axes=[0]),
        helper.make_node("Slice", ["u"], ["y"], name="slice", starts=[1], ends=[3], axes=[2]),
    ]
    g = helper.make_graph(
        nodes,
        "opset9",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2])],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)])


def external():
    w = np.arange(32, dtype=np.float32).reshape(4, 8) / 10
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(w, "W")],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def unsupported():
    k = helper.make_tensor("k", TensorProto.INT64, [1], [2])
    nodes = [
        helper.make_node("TopK", ["x", "k"], ["v1", "i1"], name="topk_a"),
        helper.make_node("TopK", ["v1", "k"], ["v2", "i2"], name="topk_b"),
        helper.make_node("NonZero", ["v2"], ["nz"], name="nonzero"),
        helper.make_node("Custom", ["x"], ["c"], name="custom", domain="com.example"),
        helper.make_node("Relu", ["x"], ["y"], name="relu"),
    ]
    g = helper.make_graph(
        nodes,
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [k],
    )
    return helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )


def add_relu():
    b = rng.standard_normal((1, 4)).astype(np.float32)
    g = helper.make_graph(
        [
            helper.make_node("Add", ["x", "b"], ["s"], name="add"),
            helper.make_node("Relu", ["s"], ["y"], name="relu"),
        ],
        "add_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
        [numpy_helper.from_array(b, "b")],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])


def write_case(name, model, x):
    case = os.path.join(HERE, name)
    shutil.rmtree(case, ignore_errors=True)
    os.makedirs(os.path.join(case, "test_data_set_0"))
    onnx.save(model, os.path.join(case, "model.onnx"))
    (y,) = ReferenceEvaluator(model).run(None, {"x": x})
    for name, arr in (("input_0", x), ("output_0", y)):
        t = numpy_helper.from_array(arr, "x" if name == "input_0" else "y")
        with open(os.path.join(case, "test_data_set_0", name + ".pb"), "wb") as f:
            f.write(t.SerializeToString())


def slice_regression(data, step):
    i64 = lambda name, v: helper.make_tensor(name, TensorProto.INT64, [len(v)], v)
    g = helper.make_graph(
        [
            helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["t"], name="slice"),
            helper.make_node("Identity", ["t"], ["y"], name="id"),
        ],
        "slice_regression",
        [],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
        [
            helper.make_tensor("x", TensorProto.INT64, [len(data)], data),
            i64("s", [-1]),
            i64("e", [-(2**63)]),
            i64("a", [0]),
            i64("st", [step]),
        ],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def case_empty():
    """Writes case_empty/ (see the module docs)."""
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        [
            helper.make_node("Split", ["x", "split"], ["p", "q"], name="split", axis=1),
            helper.make_node("Concat", ["e", "x"], ["c"], name="concat", axis=0),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("ReduceSum", ["e", "axes"], ["z"], name="sum", keepdims=1),
            helper.make_node("Add", ["p", "r"], ["y"], name="add"),
        ],
        "case_empty",
        [
            vi("x", f32, [2, 6]),
            vi("like", f32, [0]),
            vi("e", f32, [0, 6]),
            vi("split", i64, [2]),
            vi("axes", i64, [1]),
        ],
        [vi("y", f32, [2, 6]), vi("q", f32, [2, 0]), vi("z", f32, [1, 6])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    case = os.path.join(HERE, "case_empty")
    shutil.rmtree(case, ignore_errors=True)
    os.makedirs(os.path.join(case, "test_data_set_0"))
    onnx.save(model, os.path.join(case, "model.onnx"))
    feeds = {
        "x": rng.standard_normal((2, 6)).astype(np.float32),
        "like": np.zeros((0,), np.float32),
        "e": np.zeros((0, 6), np.float32),
        "split": np.array([6, 0], np.int64),
        "axes": np.array([0], np.int64),
    }
    outs = ReferenceEvaluator(model).run(None, feeds)
    tensors = [("input", k, v) for k, v in feeds.items()]
    tensors += [("output", o.name, v) for o, v in zip(g.output, outs)]
    counts = {"input": 0, "output": 0}
    for kind, name, arr in tensors:
        path = os.path.join(case, "test_data_set_0", f"{kind}_{counts[kind]}.pb")
        counts[kind] += 1
        with open(path, "wb") as f:
            f.write(numpy_helper.from_array(np.asarray(arr), name).SerializeToString())


def main():
    m = mlp()
    onnx.save(m, os.path.join(HERE, "mlp.onnx"))
    os.makedirs(os.path.join(HERE, "fuzz"), exist_ok=True)
    onnx.save(slice_regression([1, 2, 3], -(2**63)), os.path.join(HERE, "fuzz", "slice_extreme_step.onnx"))
    onnx.save(slice_regression([], -1), os.path.join(HERE, "fuzz", "slice_empty_negative_step.onnx"))
    onnx.save(opset9(), os.path.join(HERE, "opset9.onnx"))
    onnx.save(unsupported(), os.path.join(HERE, "unsupported.onnx"))
    ext = os.path.join(HERE, "external.onnx")
    for f in (ext, ext + ".data"):
        if os.path.exists(f):
            os.remove(f)
    onnx.save(
        external(),
        ext,
        save_as_external_data=True,
        location="external.onnx.data",
        size_threshold=0,
    )

    fixed = mlp(batch=2)
    del fixed.graph.initializer[:]
    fixed.graph.initializer.extend(m.graph.initializer)  # the same weights
    write_case("case_mlp", fixed, rng.standard_normal((2, 8)).astype(np.float32))
    write_case("case_add_relu", add_relu(), rng.standard_normal((3, 4)).astype(np.float32))
    case_empty()

if __name__ == "__main__":
    main()
