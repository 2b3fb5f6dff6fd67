#!/usr/bin/env python3
"""Independent oracle for lpu-graph's reference interpreter.

For each case below this script builds a one-node ONNX model, runs it with
`onnx.reference.ReferenceEvaluator` (the pure-Python ONNX reference
implementation) on fixed, seeded inputs, and writes into `onnx_ref/`:

- `<case>.graph`: the same node as a `.graph` file. Runtime inputs are graph
  inputs `x0`, `x1`, ...; inputs marked constant (shapes, axes, pads, ...)
  are `Inline` initializers; outputs are `y0`, `y1`, ...
- `<case>.x<k>.npy`: the runtime inputs; `<case>.y<k>.npy`: the expected
  outputs.

ONNX int64 tensors are written as int32 and bool tensors as int8 0/1, which
is how lpu-graph represents them. `graph/tests/onnx_reference.rs` loads every
case, interprets it and compares (f32: 1e-5 relative, f16: 2e-3 relative,
integers: exact).

Usage (from the repository root; needs `pip install onnx numpy`):

    python3 graph/tests/data/gen_reference.py

Regenerating is deterministic for a given onnx/numpy version (recorded in
`onnx_ref/VERSIONS`); the committed files were made with the versions there.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx_ref")

DTYPES = {
    np.dtype(np.float32): ("F32", np.float32),
    np.dtype(np.float16): ("F16", np.float16),
    np.dtype(np.int8): ("I8", np.int8),
    np.dtype(np.int32): ("I32", np.int32),
    np.dtype(np.int64): ("I32", np.int32),
    np.dtype(np.bool_): ("I8", np.int8),
}


def ours(a: np.ndarray) -> np.ndarray:
    """The array as lpu-graph holds it (int64 -> int32, bool -> int8)."""
    dt = DTYPES[a.dtype][1]
    if a.dtype == np.int64:
        assert np.all(np.abs(a) < 2**31), "int64 value out of i32 range"
    return np.array(a.astype(dt), order="C")  # keeps 0-d arrays 0-d


def fmt_num(v, dtype: str) -> str:
    if dtype in ("I8", "I32"):
        return f"{int(v)}.0"
    f = float(v)
    if np.isnan(f):
        raise ValueError("NaN in inline data")
    return repr(f)


def ron_tensor_body(a: np.ndarray) -> str:
    a = ours(a)
    dt = DTYPES[a.dtype][0]
    vals = ", ".join(fmt_num(v, dt) for v in a.reshape(-1))
    return f"dtype: {dt}, shape: {list(a.shape)}, data: Inline([{vals}])"


def ron_attr(v) -> str:
    if isinstance(v, bool):
        raise TypeError("bool attribute")
    if isinstance(v, int):
        return f"Int({v})"
    if isinstance(v, float):
        return f"Float({float(np.float32(v))!r})"
    if isinstance(v, str):
        return f'String("{v}")'
    if isinstance(v, np.ndarray):
        return f"Tensor({ron_tensor_body(v)})"
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, int) for x in v):
            return f"Ints({list(v)})"
        return "Floats([" + ", ".join(repr(float(np.float32(x))) for x in v) + "])"
    raise TypeError(type(v))


def onnx_attr(v):
    if isinstance(v, np.ndarray):
        return numpy_helper.from_array(v)
    return v


CASES: list[str] = []


def case(name, op, inputs, attrs=None, n_out=1, opset=23, expect=None):
    """`inputs`: list of None (omitted) or (array, const: bool). `expect`,
    when given, computes the expected outputs from the feeds instead of
    running the node itself (still with the ReferenceEvaluator, on a
    decomposition: see `conv_transpose_grouped`)."""
    attrs = attrs or {}
    assert name not in CASES, name
    CASES.append(name)
    in_names, feeds, ron_inputs, ron_inits, ron_node_inputs = [], {}, [], [], []
    for k, inp in enumerate(inputs):
        if inp is None:
            in_names.append("")
            ron_node_inputs.append('""')
            continue
        arr, const = inp
        nm = f"c{k}" if const else f"x{k}"
        in_names.append(nm)
        ron_node_inputs.append(f'"{nm}"')
        feeds[nm] = arr
        if const:
            ron_inits.append(f'Initializer(name: "{nm}", {ron_tensor_body(arr)})')
        else:
            a = ours(arr)
            ron_inputs.append(
                f'ValueInfo(name: "{nm}", dtype: {DTYPES[a.dtype][0]}, shape: {list(a.shape)})'
            )
            np.save(os.path.join(OUT, f"{name}.{nm}.npy"), a)
    out_names = [f"y{k}" for k in range(n_out)]
    node = helper.make_node(
        op, in_names, out_names, **{k: onnx_attr(v) for k, v in attrs.items()}
    )
    g_inputs = [
        helper.make_tensor_value_info(
            nm, helper.np_dtype_to_tensor_dtype(feeds[nm].dtype), feeds[nm].shape
        )
        for nm in in_names
        if nm
    ]
    g_outputs = [
        helper.make_tensor_value_info(nm, TensorProto.UNDEFINED, None)
        for nm in out_names
    ]
    graph = helper.make_graph([node], name, g_inputs, g_outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if expect is None:
        results = ReferenceEvaluator(model).run(None, dict(feeds))
    else:
        results = expect(feeds)
    for nm, r in zip(out_names, results):
        np.save(os.path.join(OUT, f"{name}.{nm}.npy"), ours(np.asarray(r)))
    ron_attrs = ", ".join(f'"{k}": {ron_attr(v)}' for k, v in sorted(attrs.items()))
    outs_vi = ", ".join('ValueInfo(name: "%s")' % o for o in out_names)
    outs_q = ", ".join('"%s"' % o for o in out_names)
    text = (
        f'Graph(name: "{name}",\n'
        f"  inputs: [{', '.join(ron_inputs)}],\n"
        f"  outputs: [{outs_vi}],\n"
        f"  initializers: [{', '.join(ron_inits)}],\n"
        f'  nodes: [Node(name: "n", op_type: "{op}", inputs: [{", ".join(ron_node_inputs)}], '
        f"outputs: [{outs_q}], attributes: {{{ron_attrs}}})],\n"
        ")\n"
    )
    with open(os.path.join(OUT, f"{name}.graph"), "w") as f:
        f.write(text)


def rng(seed):
    return np.random.default_rng(seed)


def randn(seed, *shape, dtype=np.float32):
    return rng(seed).standard_normal(shape).astype(dtype)


def rand_i8(seed, *shape, lo=-128, hi=128):
    return rng(seed).integers(lo, hi, size=shape).astype(np.int8)


def i64(*v):
    return np.array(v, dtype=np.int64)


def f32(*v):
    return np.array(v, dtype=np.float32)


def R(a):
    """A runtime input."""
    return (a, False)


def C(a):
    """A constant input (an initializer)."""
    return (a, True)


def elementwise():
    case("add_bcast_row", "Add", [R(randn(1, 2, 3, 4)), R(randn(2, 4))])
    case("add_bcast_both", "Add", [R(randn(3, 3, 1, 5)), R(randn(4, 4, 1))])
    case("add_f16", "Add", [R(randn(5, 2, 17, dtype=np.float16)), R(randn(6, 17, dtype=np.float16))])
    case("sub_bcast_col", "Sub", [R(randn(7, 2, 33)), R(randn(8, 2, 1))])
    case("mul_scalar", "Mul", [R(randn(9, 3, 5)), C(f32(2.5).reshape(()))])
    case("div_f32", "Div", [R(randn(10, 2, 17)), R(f32(*np.linspace(0.5, 3.0, 17)))])
    case("div_i32_trunc", "Div", [R(np.array([7, -7, 7, -7, 0, 100], np.int32)), R(np.array([2, 2, -2, -2, 3, -7], np.int32))])
    case("pow_f32", "Pow", [R(np.abs(randn(11, 2, 3)) + 0.1), R(f32(0.5, 2.0, 3.0))])
    case("pow_int_exp", "Pow", [R(randn(12, 2, 3)), R(np.array([2], np.int32))])
    case("sqrt", "Sqrt", [R(np.abs(randn(13, 3, 7)))])
    case("reciprocal", "Reciprocal", [R(randn(14, 3, 7) + 5.0)])
    case("exp", "Exp", [R(randn(15, 3, 7))])
    case("relu", "Relu", [R(randn(16, 2, 17))])
    case("relu_i8", "Relu", [R(rand_i8(17, 33))])
    case("leaky_relu", "LeakyRelu", [R(randn(18, 2, 9))], {"alpha": 0.1})
    case("leaky_relu_default", "LeakyRelu", [R(randn(19, 2, 9))])
    case("prelu_channel", "PRelu", [R(randn(20, 2, 3, 4, 5)), C(randn(21, 3, 1, 1))])
    case("prelu_last", "PRelu", [R(randn(22, 2, 5)), C(randn(23, 5))])
    case("clip_inputs", "Clip", [R(randn(24, 3, 11)), C(f32(-0.5).reshape(())), C(f32(0.75).reshape(()))])
    case("clip_max_only", "Clip", [R(randn(25, 3, 11)), None, C(f32(6.0).reshape(()) * 0.1)])
    case("clip_i8", "Clip", [R(rand_i8(26, 20)), C(np.array(-10, np.int8)), C(np.array(20, np.int8))])
    case("clip_attr_opset6", "Clip", [R(randn(27, 3, 5))], {"min": -0.3, "max": 0.4}, opset=6)
    case("sigmoid", "Sigmoid", [R(randn(28, 3, 17) * 4)])
    case("tanh", "Tanh", [R(randn(29, 3, 17) * 2)])
    case("erf", "Erf", [R(randn(30, 5, 17) * 1.5)])
    case("gelu_none", "Gelu", [R(randn(31, 3, 17) * 2)], opset=20)
    case("gelu_tanh", "Gelu", [R(randn(32, 3, 17) * 2)], {"approximate": "tanh"}, opset=20)
    case("hard_sigmoid", "HardSigmoid", [R(randn(33, 4, 9) * 3)], {"alpha": 0.3, "beta": 0.4})
    case("hard_sigmoid_default", "HardSigmoid", [R(randn(34, 4, 9) * 3)])
    case("hard_swish", "HardSwish", [R(randn(35, 4, 9) * 4)])
    case("sum3", "Sum", [R(randn(36, 2, 3, 4)), R(randn(37, 3, 1)), R(randn(38, 4))])
    case("sum1", "Sum", [R(randn(39, 5))])
    case("max3", "Max", [R(randn(40, 2, 3)), R(randn(41, 3)), R(randn(42, 2, 1))])
    case("min2_i32", "Min", [R(np.array([[1, -5, 3]], np.int32)), R(np.array([[0], [4]], np.int32))])
    case("equal_i32", "Equal", [R(np.array([1, 2, 3, 4], np.int32)), R(np.array([1, 0, 3, 0], np.int32))])
    case("less_bcast", "Less", [R(randn(43, 2, 5)), R(randn(44, 5))])
    case("greater_bcast", "Greater", [R(randn(45, 3, 1)), R(randn(46, 4))])
    case("where_bcast", "Where", [R(rng(47).random((2, 1)) > 0.5), R(randn(48, 2, 5)), R(randn(49, 5))])
    case("where_cond_mixed", "Where", [R(np.array([[True, False, True]])), R(randn(50, 2, 3)), C(f32(-1.0).reshape(()))])
    case("identity", "Identity", [R(randn(51, 4, 3))])
    case("cast_f16", "Cast", [R(randn(52, 3, 7) * 100)], {"to": TensorProto.FLOAT16})
    case("cast_i32", "Cast", [R(randn(53, 3, 7) * 100)], {"to": TensorProto.INT32})
    case("cast_bool", "Cast", [R(np.array([0.0, 1.5, -2.0, 0.0], np.float32))], {"to": TensorProto.BOOL})
    case("cast_i32_to_f32", "Cast", [R(np.array([1, -7, 123456], np.int32))], {"to": TensorProto.FLOAT})
    case("cast_i64", "Cast", [R(randn(54, 6) * 50)], {"to": TensorProto.INT64})


def quant():
    x = randn(60, 2, 3, 4)
    case("quantize_tensor", "QuantizeLinear", [R(x), C(f32(0.02).reshape(())), C(np.array(3, np.int8))])
    case("quantize_axis1", "QuantizeLinear", [R(x), C(f32(0.01, 0.02, 0.05)), C(np.array([0, -5, 7], np.int8))], {"axis": 1})
    case("quantize_axis_neg", "QuantizeLinear", [R(x), C(f32(0.01, 0.02, 0.03, 0.04)), C(np.array([1, 2, 3, 4], np.int8))], {"axis": -1})
    case("dequantize_axis0", "DequantizeLinear", [R(rand_i8(61, 2, 5)), C(f32(0.5, 0.25)), C(np.array([-3, 4], np.int8))], {"axis": 0})
    case("dequantize_tensor", "DequantizeLinear", [R(rand_i8(62, 7)), C(f32(0.1).reshape(())), C(np.array(-2, np.int8))])
    case("dequantize_i32", "DequantizeLinear", [R(np.array([100000, -5, 7], np.int32)), C(f32(0.001).reshape(()))])
    case("matmul_integer", "MatMulInteger", [R(rand_i8(63, 3, 17)), C(rand_i8(64, 17, 5)), C(np.array(3, np.int8)), C(np.array(-2, np.int8))])


def matmul():
    case("matmul_batched", "MatMul", [R(randn(70, 2, 1, 3, 4)), R(randn(71, 5, 4, 6))])
    case("matmul_attention", "MatMul", [R(randn(72, 1, 4, 5, 8)), R(randn(73, 1, 4, 8, 5))])
    case("matmul_vec_right", "MatMul", [R(randn(74, 3, 4)), R(randn(75, 4))])
    case("matmul_vec_left", "MatMul", [R(randn(76, 4)), R(randn(77, 2, 4, 3))])
    case("gemm_trans", "Gemm", [R(randn(78, 4, 3)), C(randn(79, 5, 4)), C(randn(80, 5))], {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0})
    case("gemm_c_scalar", "Gemm", [R(randn(81, 2, 3)), C(randn(82, 3, 4)), C(f32(1.5).reshape(()))])


def conv():
    case("conv_3x3_pad1_bias", "Conv", [R(randn(100, 1, 3, 7, 7)), C(randn(101, 4, 3, 3, 3)), C(randn(102, 4))], {"pads": [1, 1, 1, 1]})
    case("conv_stride2_dil2", "Conv", [R(randn(103, 2, 3, 9, 8)), C(randn(104, 5, 3, 3, 3))], {"strides": [2, 2], "dilations": [2, 2], "kernel_shape": [3, 3]})
    case("conv_group2", "Conv", [R(randn(105, 1, 4, 5, 5)), C(randn(106, 6, 2, 3, 3))], {"group": 2, "pads": [1, 0, 1, 0]})
    case("conv_depthwise17", "Conv", [R(randn(107, 1, 17, 6, 6)), C(randn(108, 17, 1, 3, 3)), C(randn(109, 17))], {"group": 17, "pads": [1, 1, 1, 1], "strides": [2, 2]})
    case("conv_same_upper_s2", "Conv", [R(randn(110, 1, 2, 6, 7)), C(randn(111, 3, 2, 3, 3))], {"auto_pad": "SAME_UPPER", "strides": [2, 2]})
    case("conv_same_lower_k4", "Conv", [R(randn(112, 1, 2, 5, 5)), C(randn(113, 3, 2, 4, 4))], {"auto_pad": "SAME_LOWER"})
    case("conv_valid", "Conv", [R(randn(114, 1, 2, 5, 6)), C(randn(115, 2, 2, 2, 3))], {"auto_pad": "VALID"})
    case("conv_asym_pads", "Conv", [R(randn(116, 1, 1, 4, 4)), C(randn(117, 2, 1, 3, 3))], {"pads": [0, 1, 2, 0]})
    case("conv_1x1_c33", "Conv", [R(randn(118, 1, 33, 3, 3)), C(randn(119, 5, 33, 1, 1)), C(randn(120, 5))])
    case("conv_1d", "Conv", [R(randn(121, 2, 3, 10)), C(randn(122, 4, 3, 3))], {"pads": [2, 1], "strides": [3]})
    case("conv_f16", "Conv", [R(randn(123, 1, 2, 4, 4, dtype=np.float16)), C(randn(124, 3, 2, 3, 3, dtype=np.float16))], {"pads": [1, 1, 1, 1]})
    case("conv_integer", "ConvInteger", [R(rand_i8(125, 1, 3, 5, 5)), C(rand_i8(126, 4, 3, 3, 3)), C(np.array(5, np.int8)), C(np.array(-3, np.int8))], {"pads": [1, 1, 1, 1]})
    case("conv_integer_s2", "ConvInteger", [R(rand_i8(127, 1, 2, 6, 6)), C(rand_i8(128, 2, 2, 3, 3))], {"strides": [2, 2]})
    case("conv_transpose_s2", "ConvTranspose", [R(randn(129, 1, 2, 3, 3)), C(randn(130, 2, 3, 3, 3)), C(randn(131, 3))], {"strides": [2, 2]})
    case("conv_transpose_pads_op", "ConvTranspose", [R(randn(132, 1, 2, 4, 3)), C(randn(133, 2, 2, 3, 3))], {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]})
    # The ReferenceEvaluator's grouped ConvTranspose slices W by output
    # channel (wrong unless M == C); the expected values are the reference's
    # ungrouped ConvTranspose of each group, concatenated.
    def conv_transpose_grouped(group, attrs):
        def run(feeds):
            x, w = feeds["x0"], feeds["c1"]
            cg = x.shape[1] // group
            parts = []
            for g in range(group):
                node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)
                gr = helper.make_graph(
                    [node], "g",
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, None),
                     helper.make_tensor_value_info("w", TensorProto.FLOAT, None)],
                    [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)])
                m = helper.make_model(gr, opset_imports=[helper.make_opsetid("", 23)])
                parts.append(ReferenceEvaluator(m).run(
                    None, {"x": x[:, g * cg:(g + 1) * cg], "w": w[g * cg:(g + 1) * cg]})[0])
            return [np.concatenate(parts, axis=1)]
        return run

    a = {"dilations": [2, 2], "strides": [2, 1]}
    case("conv_transpose_group_dil", "ConvTranspose", [R(randn(134, 1, 4, 3, 3)), C(randn(135, 4, 3, 2, 2))], {"group": 2, **a}, expect=conv_transpose_grouped(2, a))
    case("conv_transpose_dil", "ConvTranspose", [R(randn(138, 1, 2, 3, 3)), C(randn(139, 2, 3, 2, 2))], {"dilations": [2, 2]})
    case("conv_transpose_k4s2p1", "ConvTranspose", [R(randn(136, 1, 3, 4, 4)), C(randn(137, 3, 2, 4, 4))], {"strides": [2, 2], "pads": [1, 1, 1, 1]})


def pools():
    x = randn(140, 1, 3, 9, 9)
    case("maxpool_3x3_s2_p1", "MaxPool", [R(x)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})
    case("maxpool_ceil", "MaxPool", [R(randn(141, 1, 2, 6, 6))], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1})
    case("maxpool_dil", "MaxPool", [R(randn(142, 1, 2, 7, 7))], {"kernel_shape": [2, 2], "dilations": [2, 2]})
    case("maxpool_same_upper", "MaxPool", [R(randn(143, 1, 2, 5, 5))], {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"})
    case("maxpool_i8", "MaxPool", [R(rand_i8(144, 1, 3, 4, 4))], {"kernel_shape": [2, 2], "strides": [2, 2]})
    case("maxpool_1d", "MaxPool", [R(randn(145, 2, 3, 11))], {"kernel_shape": [3], "strides": [2], "pads": [1, 1]})
    case("avgpool_exclude_pad", "AveragePool", [R(x)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})
    case("avgpool_include_pad", "AveragePool", [R(x)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1})
    case("avgpool_ceil", "AveragePool", [R(randn(146, 1, 2, 6, 6))], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1})
    case("avgpool_ceil_incl", "AveragePool", [R(randn(147, 1, 2, 6, 6))], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1, "count_include_pad": 1, "pads": [1, 1, 1, 1]})
    case("avgpool_same_lower", "AveragePool", [R(randn(148, 1, 2, 5, 5))], {"kernel_shape": [3, 3], "auto_pad": "SAME_LOWER"})
    case("avgpool_7x7", "AveragePool", [R(randn(149, 1, 33, 7, 7))], {"kernel_shape": [7, 7]})
    case("global_avgpool", "GlobalAveragePool", [R(randn(150, 2, 33, 5, 5))])
    case("global_avgpool_1d", "GlobalAveragePool", [R(randn(151, 2, 3, 7))])


def norms():
    x = randn(160, 2, 17, 4, 3)
    case("batchnorm", "BatchNormalization", [R(x), C(randn(161, 17)), C(randn(162, 17)), C(randn(163, 17)), C(np.abs(randn(164, 17)) + 0.1)], {"epsilon": 1e-3})
    case("batchnorm_2d", "BatchNormalization", [R(randn(165, 3, 5)), C(randn(166, 5)), C(randn(167, 5)), C(randn(168, 5)), C(np.abs(randn(169, 5)) + 0.5)])
    # The ReferenceEvaluator's LRN loops over the batch dimension instead of
    # the channels; the expected values come from this direct numpy
    # transcription of the ONNX spec formula instead.
    def lrn(size, alpha=1e-4, beta=0.75, bias=1.0):
        def run(feeds):
            x = feeds["x0"].astype(np.float64)
            sq = np.zeros_like(x)
            c = x.shape[1]
            for ch in range(c):
                lo = max(0, ch - (size - 1) // 2)
                hi = min(c - 1, ch + int(np.ceil((size - 1) / 2)))
                sq[:, ch] = np.sum(x[:, lo:hi + 1] ** 2, axis=1)
            return [(x / (bias + alpha / size * sq) ** beta).astype(np.float32)]
        return run

    case("lrn_3", "LRN", [R(randn(170, 1, 7, 3, 3))], {"size": 3}, expect=lrn(3))
    case("lrn_4", "LRN", [R(randn(171, 2, 6, 2, 2))], {"size": 4, "alpha": 0.01, "beta": 0.5, "bias": 2.0}, expect=lrn(4, 0.01, 0.5, 2.0))
    case("softmax_last", "Softmax", [R(randn(172, 2, 3, 33) * 3)])
    case("softmax_axis1", "Softmax", [R(randn(173, 2, 5, 3) * 3)], {"axis": 1})
    case("softmax_f16", "Softmax", [R(randn(174, 2, 17, dtype=np.float16))])
    case("layernorm_last_bias", "LayerNormalization", [R(randn(175, 2, 5, 33)), C(randn(176, 33)), C(randn(177, 33))], {"epsilon": 1e-5})
    case("layernorm_axis1", "LayerNormalization", [R(randn(178, 2, 3, 4)), C(randn(179, 3, 4))], {"axis": 1})
    case("layernorm_neg2", "LayerNormalization", [R(randn(180, 2, 3, 4)), C(randn(181, 4)), C(randn(182, 4))], {"axis": -2, "epsilon": 1e-3})
    case("rmsnorm_last", "RMSNormalization", [R(randn(183, 2, 3, 17)), C(randn(184, 17))])
    case("rmsnorm_axis1", "RMSNormalization", [R(randn(185, 2, 3, 4)), C(randn(186, 3, 4))], {"axis": 1, "epsilon": 0.01})


def reduces():
    x = randn(190, 2, 3, 5)
    case("reducemean_axes_keep", "ReduceMean", [R(x), C(i64(1))])
    case("reducemean_neg_nokeep", "ReduceMean", [R(x), C(i64(-1, 0))], {"keepdims": 0})
    case("reducemean_all", "ReduceMean", [R(x)])
    case("reducemean_attr_opset13", "ReduceMean", [R(x)], {"axes": [2], "keepdims": 1}, opset=13)
    case("reducesum_axes", "ReduceSum", [R(x), C(i64(0, 2))], opset=13)
    case("reducesum_noop", "ReduceSum", [R(x)], {"noop_with_empty_axes": 1})
    case("reducesum_attr_opset11", "ReduceSum", [R(x)], {"axes": [1], "keepdims": 0}, opset=11)
    case("reducesum_i32", "ReduceSum", [R(np.arange(-6, 6, dtype=np.int32).reshape(3, 4)), C(i64(1))])
    case("reducemax_axes", "ReduceMax", [R(x), C(i64(-2))], {"keepdims": 0})
    case("reducemax_attr_opset11", "ReduceMax", [R(x)], {"axes": [0, 2]}, opset=11)
    case("reducemax_i8", "ReduceMax", [R(rand_i8(191, 3, 7)), C(i64(1))])


def layout():
    x = randn(200, 2, 3, 4)
    case("reshape_zero_neg1", "Reshape", [R(x), C(i64(0, -1))])
    case("reshape_4d", "Reshape", [R(x), C(i64(2, 2, 3, 2))])
    case("reshape_neg1_first", "Reshape", [R(x), C(i64(-1, 6))])
    case("flatten_default", "Flatten", [R(randn(201, 2, 3, 2, 2))])
    case("flatten_0", "Flatten", [R(x)], {"axis": 0})
    case("flatten_neg1", "Flatten", [R(x)], {"axis": -1})
    case("transpose_nhwc", "Transpose", [R(randn(202, 1, 3, 2, 4))], {"perm": [0, 2, 3, 1]})
    case("transpose_default", "Transpose", [R(x)])
    case("transpose_heads", "Transpose", [R(randn(203, 1, 5, 4, 3))], {"perm": [0, 2, 1, 3]})
    case("concat_axis1", "Concat", [R(randn(204, 2, 1, 3)), R(randn(205, 2, 4, 3)), R(randn(206, 2, 2, 3))], {"axis": 1})
    case("concat_neg1", "Concat", [R(randn(207, 2, 3)), C(randn(208, 2, 5))], {"axis": -1})
    case("concat_i32_shapes", "Concat", [R(np.array([1, 2], np.int32)), C(np.array([7], np.int32))], {"axis": 0})
    case("split_input", "Split", [R(randn(209, 2, 7)), C(i64(2, 3, 2))], {"axis": 1}, n_out=3)
    case("split_num_outputs_uneven", "Split", [R(randn(210, 7, 2))], {"num_outputs": 3}, n_out=3, opset=18)
    case("split_equal", "Split", [R(randn(211, 2, 6))], {"axis": -1}, n_out=2)
    case("split_attr_opset11", "Split", [R(randn(212, 5, 2))], {"split": [1, 4]}, n_out=2, opset=11)
    case("slice_basic", "Slice", [R(randn(213, 5, 6)), C(i64(1, 0)), C(i64(4, 6)), C(i64(0, 1)), C(i64(1, 2))])
    case("slice_negative_clamped", "Slice", [R(randn(214, 5, 6)), C(i64(-3)), C(i64(1000)), C(i64(-1))])
    case("slice_reverse", "Slice", [R(randn(215, 5, 6)), C(i64(-1, 4)), C(i64(-1000, 0)), C(i64(0, 1)), C(i64(-1, -2))])
    case("slice_no_axes", "Slice", [R(randn(216, 4, 3)), C(i64(1)), C(i64(3))])
    case("squeeze_axes", "Squeeze", [R(randn(217, 1, 3, 1, 2)), C(i64(0, -2))])
    case("squeeze_all", "Squeeze", [R(randn(218, 1, 3, 1, 2))])
    case("unsqueeze", "Unsqueeze", [R(randn(219, 3, 2)), C(i64(0, -1))])
    case("unsqueeze_mid", "Unsqueeze", [R(randn(220, 3, 2)), C(i64(1))])
    case("gather_embedding", "Gather", [C(randn(221, 10, 4)), R(np.array([[0, 3, 9], [-1, 2, 2]], np.int64))])
    case("gather_axis1", "Gather", [R(randn(222, 2, 5, 3)), C(i64(4, 0))], {"axis": 1})
    case("gather_i32_scalar", "Gather", [R(randn(223, 4, 3)), C(np.array(2, np.int32))], {"axis": -2})
    case("pad_constant", "Pad", [R(randn(224, 2, 3)), C(i64(0, 1, 1, 2)), C(f32(1.5).reshape(()))])
    case("pad_reflect", "Pad", [R(randn(225, 1, 2, 4, 3)), C(i64(0, 0, 2, 1, 0, 0, 3, 2))], {"mode": "reflect"})
    case("pad_edge", "Pad", [R(randn(226, 3, 3)), C(i64(2, 0, 1, 3))], {"mode": "edge"})
    case("pad_wrap", "Pad", [R(randn(227, 3, 4)), C(i64(1, 2, 2, 1))], {"mode": "wrap"}, opset=19)
    case("pad_axes", "Pad", [R(randn(229, 2, 3, 4)), C(i64(1, 2)), None, C(i64(-1))])
    case("expand", "Expand", [R(randn(230, 3, 1)), C(i64(2, 3, 4))])
    case("expand_bidir", "Expand", [R(randn(231, 2, 3)), C(i64(1, 1))])
    case("constant_tensor", "Constant", [], {"value": randn(232, 2, 3)})
    case("constant_floats", "Constant", [], {"value_floats": [1.5, -2.0, 0.25]})
    case("constant_ints", "Constant", [], {"value_ints": [3, -1, 7]})
    case("constant_float", "Constant", [], {"value_float": 0.125})
    case("constant_of_shape_default", "ConstantOfShape", [C(i64(2, 3))])
    case("constant_of_shape_i32", "ConstantOfShape", [C(i64(4))], {"value": np.array([7], np.int32)})
    case("shape", "Shape", [R(x)])
    case("shape_start_end", "Shape", [R(randn(233, 2, 3, 4, 5))], {"start": 1, "end": -1})


def resize():
    x = randn(240, 1, 2, 3, 4)
    case("resize_nearest_asym_floor", "Resize", [R(x), None, C(f32(1, 1, 2, 2))], {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"})
    case("resize_nearest_halfpixel_sizes", "Resize", [R(x), None, None, C(i64(1, 2, 5, 7))])
    case("resize_nearest_ceil_align", "Resize", [R(x), None, None, C(i64(1, 2, 5, 6))], {"coordinate_transformation_mode": "align_corners", "nearest_mode": "ceil"})
    case("resize_nearest_prefer_ceil", "Resize", [R(x), None, C(f32(1, 1, 1.5, 1.5))], {"nearest_mode": "round_prefer_ceil"})
    case("resize_linear_halfpixel", "Resize", [R(x), None, C(f32(1, 1, 2, 2))], {"mode": "linear"})
    case("resize_linear_align_sizes", "Resize", [R(x), None, None, C(i64(1, 2, 5, 7))], {"mode": "linear", "coordinate_transformation_mode": "align_corners"})
    case("resize_linear_pytorch", "Resize", [R(x), None, None, C(i64(1, 2, 1, 6))], {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"})
    case("resize_linear_down", "Resize", [R(randn(241, 1, 1, 6, 8)), None, C(f32(1, 1, 0.5, 0.5))], {"mode": "linear"})
    case("resize_linear_symmetric", "Resize", [R(x), None, C(f32(1, 1, 1.7, 2.3))], {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"})
    case("resize_axes", "Resize", [R(x), None, C(f32(2, 3))], {"axes": [2, 3], "mode": "nearest"})


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    for family in (elementwise, quant, matmul, conv, pools, norms, reduces, layout, resize):
        family()
    with open(os.path.join(OUT, "VERSIONS"), "w") as f:
        f.write(f"onnx {onnx.__version__}\nnumpy {np.__version__}\ncases {len(CASES)}\n")
    print(f"wrote {len(CASES)} cases to {OUT}")


if __name__ == "__main__":
    main()
