#!/usr/bin/env python3
"""Measure GEMMs and one small model on a real NVIDIA GPU with PyTorch and
print rows in the format of the calibration table in docs/gpu-model.md.

    python3 benches/gpu/measure.py            # GEMMs + ResNet-50 batch 1
    python3 benches/gpu/measure.py --quick    # fewer iterations

Needs PyTorch with CUDA (and torchvision for the model). Nothing here runs in
the Rust test suite; see README.md in this directory for how to turn the
printed rows into calibration points.
"""
import argparse
import statistics

import torch

GEMMS = [  # (M, N, K): the calibration table's shapes and a few ordinary ones
    (6912, 16384, 2048),
    (1024, 10240, 5120),
    (6144, 17920, 2816),
    (2048, 2048, 13312),
    (4096, 4096, 4096),
    (1, 8192, 8192),  # a GEMV: bandwidth-bound
]


def time_cuda(fn, warmup, iters):
    """Mean milliseconds per call, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


def row(card, workload, metric, value, mode, note):
    """One row in the calibration table's columns; `#`, `model` and `error`
    are filled in when the point is added to gpu/src/calib.rs."""
    print(
        f"| - | {card} | {workload} | {metric} | {value:.2f} | - | - | {mode} "
        f"| benches/gpu/measure.py, torch {torch.__version__}, CUDA {torch.version.cuda}; {note} |"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    warmup, iters = (5, 20) if args.quick else (50, 200)
    card = torch.cuda.get_device_name(0)
    print("| # | GPU (preset) | workload | metric | measured | model | error | mode | source |")
    print("|---|---|---|---|---:|---:|---:|---|---|")
    for m, n, k in GEMMS:
        a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
        t = statistics.mean(time_cuda(lambda: a @ b, warmup, iters))
        row(card, f"BF16 GEMM {m}x{n}x{k}", "TFLOPS", 2 * m * n * k / (t * 1e-3) / 1e12, "graphs", "mean of CUDA-event times")
    try:
        import torchvision
    except ImportError:
        print("# torchvision not installed: skipping ResNet-50")
        return
    model = torchvision.models.resnet50().eval().cuda().half()
    x = torch.randn(1, 3, 224, 224, device="cuda", dtype=torch.half)
    with torch.inference_mode():
        eager = time_cuda(lambda: model(x), warmup, iters)
        row(card, "ResNet-50 v1.5, batch 1, FP16", "ms", statistics.median(eager), "eager",
            f"PyTorch eager, p50 of {iters}; p99 {sorted(eager)[int(0.99 * len(eager)) - 1]:.3f} ms")
        # CUDA graphs: capture one forward pass and replay it.
        static_x = x.clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                model(static_x)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            model(static_x)
        graphs = time_cuda(g.replay, warmup, iters)
        row(card, "ResNet-50 v1.5, batch 1, FP16", "ms", statistics.median(graphs), "graphs",
            f"CUDA graph replay, p50 of {iters}; p99 {sorted(graphs)[int(0.99 * len(graphs)) - 1]:.3f} ms")


if __name__ == "__main__":
    main()
