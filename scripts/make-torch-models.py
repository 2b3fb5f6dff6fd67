#!/usr/bin/env python3
"""Exports two small PyTorch models to ONNX in the backend-test layout.

    pip install torch onnx onnxscript onnxruntime   # CPU wheels are enough
    python3 scripts/make-torch-models.py        # writes onnx/tests/data/torch/

Each model becomes a case directory that `lpsim onnx-test` runs:

    onnx/tests/data/torch/<name>/model.onnx
    onnx/tests/data/torch/<name>/test_data_set_0/input_0.pb   (TensorProto)
    onnx/tests/data/torch/<name>/test_data_set_0/output_0.pb  (TensorProto)

The expected outputs are onnxruntime's (CPU, fp32) on the exported model,
not PyTorch's, so that the test checks lpu against an independent ONNX
implementation. Models, weights and inputs are seeded: a rerun with the
same torch/onnxruntime versions writes the same files (the exporter's
version is recorded in each model's producer fields).

Models:

- `cnn`: Conv2d -> BatchNorm2d -> ReLU -> MaxPool2d, twice, then Flatten
  -> Linear (a LeNet-sized image classifier; input 1x3x16x16, 10 logits).
- `transformer`: one `nn.TransformerEncoderLayer` (d_model 32, 4 heads,
  feed-forward 64, ReLU, post-norm, dropout 0, batch_first) on a 1x8x32
  sequence. The fused "fast path" is switched off so that the export is
  the plain op graph (MatMul/Add/Reshape/Transpose/Softmax/
  LayerNormalization). `nn.MultiheadAttention` packs Q, K and V into one
  projection and runs sequence-first inside.
- `bert_block`: the same layer written the way BERT-style implementations
  write it (separate Q, K and V `nn.Linear`s, heads split with `view` and
  `transpose`, `softmax(Q K^T / sqrt(d)) V`, residual + `LayerNorm` after
  attention and after the ReLU feed-forward), on a 1x8x32 sequence.

Both are exported at opset 18 with PyTorch's default exporter (the
`torch.export`-based one since PyTorch 2.9; it needs `pip install
onnxscript` too), then loaded and saved again as one self-contained,
checked file (no external data).
"""

import math
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

OPSET = 18
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "onnx", "tests", "data", "torch")


class Cnn(nn.Module):
    """A LeNet-sized CNN: (conv, bn, relu, maxpool) x 2, flatten, linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def make_cnn():
    m = Cnn()
    # Non-trivial batch-norm statistics, so that folding them matters.
    g = torch.Generator().manual_seed(1)
    for bn in (m.features[1], m.features[5]):
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
        bn.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
        bn.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return m, torch.randn(1, 3, 16, 16, generator=g)


def make_transformer():
    m = nn.TransformerEncoderLayer(
        d_model=32,
        nhead=4,
        dim_feedforward=64,
        dropout=0.0,
        activation="relu",
        batch_first=True,
    )
    g = torch.Generator().manual_seed(2)
    return m, torch.randn(1, 8, 32, generator=g)


class BertBlock(nn.Module):
    """A post-norm encoder block with separate Q/K/V projections."""

    def __init__(self, hidden=32, heads=4, ff=64):
        super().__init__()
        self.heads, self.d = heads, hidden // heads
        self.q, self.k, self.v, self.o = (nn.Linear(hidden, hidden) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.ff1, self.ff2 = nn.Linear(hidden, ff), nn.Linear(ff, hidden)

    def forward(self, x):
        b, n, h = x.shape
        q = self.q(x).view(b, n, self.heads, self.d).transpose(1, 2)
        k = self.k(x).view(b, n, self.heads, self.d).permute(0, 2, 3, 1)
        v = self.v(x).view(b, n, self.heads, self.d).transpose(1, 2)
        a = torch.softmax(torch.matmul(q, k) / math.sqrt(self.d), dim=-1)
        c = torch.matmul(a, v).transpose(1, 2).reshape(b, n, h)
        x = self.ln1(x + self.o(c))
        return self.ln2(x + self.ff2(torch.relu(self.ff1(x))))


def make_bert_block():
    m = BertBlock()
    g = torch.Generator().manual_seed(3)
    return m, torch.randn(1, 8, 32, generator=g)


def export(model, x, path):
    kw = dict(input_names=["x"], output_names=["y"], opset_version=OPSET)
    torch.onnx.export(model, (x,), path, **kw)
    # One self-contained file (no external data), checked.
    m = onnx.load(path)
    onnx.checker.check_model(m)
    onnx.save(m, path)
    if os.path.exists(path + ".data"):
        os.remove(path + ".data")


def write_case(name, model, x):
    d = os.path.join(OUT, name)
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    path = os.path.join(d, "model.onnx")
    model.eval()
    with torch.no_grad():
        export(model, x, path)
        want_torch = model(x).numpy()
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    xin = x.numpy().astype(np.float32)
    (y,) = sess.run(None, {sess.get_inputs()[0].name: xin})
    err = float(np.abs(y - want_torch).max())
    if err > 1e-4:
        sys.exit(f"{name}: onnxruntime and PyTorch disagree (max abs err {err})")
    for k, (arr, tname) in enumerate([(xin, sess.get_inputs()[0].name)]):
        t = numpy_helper.from_array(arr, tname)
        with open(os.path.join(d, "test_data_set_0", f"input_{k}.pb"), "wb") as f:
            f.write(t.SerializeToString())
    t = numpy_helper.from_array(y.astype(np.float32), sess.get_outputs()[0].name)
    with open(os.path.join(d, "test_data_set_0", "output_0.pb"), "wb") as f:
        f.write(t.SerializeToString())
    ops = sorted({n.op_type for n in onnx.load(path).graph.node})
    size = sum(
        os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs
    )
    print(f"{name}: {size} bytes, ops {', '.join(ops)}; onnxruntime vs torch {err:.1e}")


def main():
    torch.manual_seed(0)
    if hasattr(torch.backends, "mha"):
        torch.backends.mha.set_fastpath_enabled(False)
    print(f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    write_case("cnn", *make_cnn())
    write_case("transformer", *make_transformer())
    write_case("bert_block", *make_bert_block())


if __name__ == "__main__":
    main()
