//! Calibration: public measurements, the workloads they ran described as
//! kernel lists (no graph file needed), and the table that compares the
//! model's predictions with them. `docs/gpu-model.md` embeds
//! [`markdown_table`]; a test keeps the two identical.
//!
//! The workloads are built the way a production runtime runs them:
//! convolutions with batch norm, bias, residual add and ReLU fused into
//! their epilogues (TensorRT), BERT as TensorRT's demoBERT plugins run it
//! (one GEMM per projection, a fused attention kernel, fused
//! skip-LayerNorm), LLM decode as torch.compile runs it in gpt-fast
//! (GEMVs that stream the weights, small fused pointwise kernels, CUDA
//! graphs).

use crate::kernel::{GemmDims, Kernel, KernelKind, Precision};
use crate::model::{estimate, LaunchMode, Options};
use crate::spec::GpuSpec;
use std::fmt::Write as _;

/// What a measurement reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Throughput of one kernel, TFLOPS.
    Tflops,
    /// End-to-end latency, ms.
    LatencyMs,
    /// Time per generated token, ms.
    MsPerToken,
}

impl Metric {
    fn unit(self) -> &'static str {
        match self {
            Metric::Tflops => "TFLOPS",
            Metric::LatencyMs => "ms",
            Metric::MsPerToken => "ms/token",
        }
    }
}

/// One public measurement and the workload it ran.
#[derive(Clone, Debug)]
pub struct Point {
    /// Short id.
    pub id: &'static str,
    /// The GPU preset the model uses.
    pub preset: &'static str,
    /// The card measured, as its source names it.
    pub card: &'static str,
    /// DRAM bandwidth of the measured card when it differs from the preset
    /// (GB/s).
    pub hbm_gbps: Option<f64>,
    /// The workload, in words.
    pub workload: &'static str,
    /// What was measured.
    pub metric: Metric,
    /// The published figure.
    pub measured: f64,
    /// Launch mode of the measured runtime.
    pub mode: LaunchMode,
    /// Where the figure comes from.
    pub source: &'static str,
    /// Caveats; "weak" marks a weakly sourced figure.
    pub note: &'static str,
    /// The kernels of the workload.
    pub kernels: Vec<Kernel>,
}

/// A convolution as an implicit GEMM with its epilogue fused; `h`, `w` the
/// input size. Returns the kernel and the output size.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    name: &str,
    cin: u64,
    h: u64,
    w: u64,
    cout: u64,
    k: u64,
    stride: u64,
    pad: u64,
    p: Precision,
    e: f64,
) -> (Kernel, u64, u64) {
    let ho = (h + 2 * pad - k) / stride + 1;
    let wo = (w + 2 * pad - k) / stride + 1;
    let dims = GemmDims {
        m: ho * wo,
        n: cout,
        k: cin * k * k,
        batch: 1,
    };
    let mut kern = Kernel::gemm(name, "Conv", dims, p, e, e, true);
    kern.input_bytes = (cin * h * w) as f64 * e;
    kern.largest_activation_bytes = kern.input_bytes.max(kern.output_bytes);
    (kern, ho, wo)
}

/// ResNet v1 at batch 1, 224 x 224, as TensorRT runs it: `blocks` per
/// stage (ResNet-50: 3, 4, 6, 3; ResNet-101: 3, 4, 23, 3), the stride in
/// each stage's first 1x1 convolution (v1), residual add and ReLU fused
/// into the expanding convolution.
pub fn resnet_v1(blocks: [u64; 4], p: Precision) -> Vec<Kernel> {
    let e = match p {
        Precision::Int8 | Precision::Fp8 => 1.0,
        Precision::Fp16 => 2.0,
        _ => 4.0,
    };
    let mut ks = vec![Kernel::memory(
        "input_reformat",
        "QuantizeLinear",
        3.0 * 224.0 * 224.0 * 4.0,
        0.0,
        3.0 * 224.0 * 224.0 * e,
        3.0 * 224.0 * 224.0,
    )];
    let (c1, h, w) = conv("conv1", 3, 224, 224, 64, 7, 2, 3, p, e);
    ks.push(c1);
    // 3x3/2 max pooling: 112 -> 56.
    ks.push(Kernel::memory(
        "pool1",
        "MaxPool",
        64.0 * (h * w) as f64 * e,
        0.0,
        64.0 * 56.0 * 56.0 * e,
        64.0 * 56.0 * 56.0 * 9.0,
    ));
    let (mut h, mut w, mut cin) = (56, 56, 64);
    for (stage, (&n, width)) in blocks.iter().zip([64u64, 128, 256, 512]).enumerate() {
        for b in 0..n {
            let stride = if b == 0 && stage > 0 { 2 } else { 1 };
            let name =
                |s: &str| format!("res{}{}_{s}", stage + 2, (b'a' + b.min(25) as u8) as char);
            let (k1, h1, w1) = conv(&name("1x1a"), cin, h, w, width, 1, stride, 0, p, e);
            let (k2, h2, w2) = conv(&name("3x3"), width, h1, w1, width, 3, 1, 1, p, e);
            let (mut k3, _, _) = conv(&name("1x1b"), width, h2, w2, 4 * width, 1, 1, 0, p, e);
            // The residual read in the epilogue.
            k3.input_bytes += (4 * width * h2 * w2) as f64 * e;
            ks.push(k1);
            ks.push(k2);
            if b == 0 {
                let (sc, _, _) = conv(&name("shortcut"), cin, h, w, 4 * width, 1, stride, 0, p, e);
                ks.push(sc);
            }
            ks.push(k3);
            (h, w, cin) = (h2, w2, 4 * width);
        }
    }
    ks.push(Kernel::memory(
        "avgpool",
        "GlobalAveragePool",
        (cin * h * w) as f64 * e,
        0.0,
        cin as f64 * e,
        (cin * h * w) as f64,
    ));
    ks.push(Kernel::gemm(
        "fc",
        "Gemm",
        GemmDims {
            m: 1,
            n: 1000,
            k: cin,
            batch: 1,
        },
        p,
        e,
        4.0,
        true,
    ));
    ks
}

/// A depthwise 3x3 convolution on the CUDA cores, epilogue fused; `h`, `w`
/// the input size.
pub fn depthwise(name: &str, c: u64, h: u64, w: u64, stride: u64, e: f64) -> (Kernel, u64, u64) {
    let (ho, wo) = ((h + 2 - 3) / stride + 1, (w + 2 - 3) / stride + 1);
    let mut k = Kernel::memory(
        name,
        "Conv",
        (c * h * w) as f64 * e,
        (c * 9) as f64 * e,
        (c * ho * wo) as f64 * e,
        2.0 * (c * ho * wo * 9) as f64,
    );
    k.kind = KernelKind::DirectConv;
    (k, ho, wo)
}

fn stem(p: Precision, e: f64) -> Vec<Kernel> {
    vec![
        Kernel::memory(
            "input_reformat",
            "QuantizeLinear",
            3.0 * 224.0 * 224.0 * 4.0,
            0.0,
            3.0 * 224.0 * 224.0 * e,
            3.0 * 224.0 * 224.0,
        ),
        conv("conv1", 3, 224, 224, 32, 3, 2, 1, p, e).0,
    ]
}

fn head(name: &str, c: u64, hw: u64, classes: u64, p: Precision, e: f64) -> [Kernel; 2] {
    [
        Kernel::memory(
            "avgpool",
            "GlobalAveragePool",
            (c * hw) as f64 * e,
            0.0,
            c as f64 * e,
            (c * hw) as f64,
        ),
        Kernel::gemm(
            name,
            "Gemm",
            GemmDims {
                m: 1,
                n: classes,
                k: c,
                batch: 1,
            },
            p,
            e,
            4.0,
            true,
        ),
    ]
}

/// MobileNet v1 (width 1.0) at batch 1, 224 x 224: 13 depthwise-separable
/// blocks (depthwise 3x3 on the CUDA cores, pointwise 1x1 as a GEMM).
pub fn mobilenet_v1(p: Precision) -> Vec<Kernel> {
    let e = elem(p);
    let mut ks = stem(p, e);
    let (mut h, mut c) = (112, 32);
    let blocks = [
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    ];
    for (i, (cout, s)) in blocks.into_iter().enumerate() {
        let (dw, ho, _) = depthwise(&format!("b{i}_dw"), c, h, h, s, e);
        let (pw, _, _) = conv(&format!("b{i}_pw"), c, ho, ho, cout, 1, 1, 0, p, e);
        ks.push(dw);
        ks.push(pw);
        (h, c) = (ho, cout);
    }
    ks.extend(head("fc", c, h * h, 1000, p, e));
    ks
}

/// MobileNet v2 (width 1.0) at batch 1, 224 x 224: inverted residual
/// blocks (expand 1x1, depthwise 3x3, project 1x1 with the residual add
/// fused).
pub fn mobilenet_v2(p: Precision) -> Vec<Kernel> {
    let e = elem(p);
    let mut ks = stem(p, e);
    let (mut h, mut c) = (112, 32);
    let cfg = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let mut b = 0;
    for (t, cout, n, s) in cfg {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = c * t;
            if t != 1 {
                ks.push(conv(&format!("b{b}_expand"), c, h, h, hidden, 1, 1, 0, p, e).0);
            }
            let (dw, ho, _) = depthwise(&format!("b{b}_dw"), hidden, h, h, stride, e);
            ks.push(dw);
            let (mut pj, _, _) = conv(
                &format!("b{b}_project"),
                hidden,
                ho,
                ho,
                cout,
                1,
                1,
                0,
                p,
                e,
            );
            if stride == 1 && c == cout {
                pj.input_bytes += (cout * ho * ho) as f64 * e;
            }
            ks.push(pj);
            (h, c, b) = (ho, cout, b + 1);
        }
    }
    ks.push(conv("conv_last", c, h, h, 1280, 1, 1, 0, p, e).0);
    ks.extend(head("fc", 1280, h * h, 1000, p, e));
    ks
}

fn elem(p: Precision) -> f64 {
    match p {
        Precision::Int8 | Precision::Fp8 => 1.0,
        Precision::Fp16 => 2.0,
        _ => 4.0,
    }
}

/// A BERT encoder (base: 12 layers, hidden 768, 12 heads; large: 24, 1024,
/// 16) at `batch` x `seq`, fp16, as TensorRT's demoBERT runs it.
pub fn bert(layers: u64, hidden: u64, heads: u64, batch: u64, seq: u64) -> Vec<Kernel> {
    let p = Precision::Fp16;
    let tok = batch * seq;
    let h = hidden;
    let act = |c: u64| (tok * c) as f64 * 2.0;
    let g = |name: String, n: u64, k: u64| {
        Kernel::gemm(
            &name,
            "MatMul",
            GemmDims {
                m: tok,
                n,
                k,
                batch: 1,
            },
            p,
            2.0,
            2.0,
            true,
        )
    };
    let mut ks = vec![Kernel::memory(
        "embeddings_layernorm",
        "Gather",
        3.0 * act(h),
        0.0,
        act(h),
        10.0 * (tok * h) as f64,
    )];
    for l in 0..layers {
        ks.push(g(format!("l{l}_qkv"), 3 * h, h));
        // Fused multi-head attention: QK^T and PV per head, softmax inside.
        let d = h / heads;
        let mut mha = Kernel::gemm(
            &format!("l{l}_mha"),
            "Attention",
            GemmDims {
                m: seq,
                n: seq,
                k: d,
                batch: batch * heads,
            },
            p,
            2.0,
            2.0,
            false,
        );
        mha.flops *= 2.0;
        mha.input_bytes = act(3 * h);
        mha.output_bytes = act(h);
        mha.largest_activation_bytes = act(3 * h);
        ks.push(mha);
        ks.push(g(format!("l{l}_proj"), h, h));
        ks.push(Kernel::memory(
            &format!("l{l}_skipln1"),
            "LayerNormalization",
            2.0 * act(h),
            0.0,
            act(h),
            8.0 * (tok * h) as f64,
        ));
        ks.push(g(format!("l{l}_fc1_gelu"), 4 * h, h));
        ks.push(g(format!("l{l}_fc2"), h, 4 * h));
        ks.push(Kernel::memory(
            &format!("l{l}_skipln2"),
            "LayerNormalization",
            2.0 * act(h),
            0.0,
            act(h),
            8.0 * (tok * h) as f64,
        ));
    }
    ks.push(Kernel::gemm(
        "squad_logits",
        "MatMul",
        GemmDims {
            m: tok,
            n: 2,
            k: h,
            batch: 1,
        },
        p,
        2.0,
        2.0,
        true,
    ));
    ks
}

/// The prefill (first token) of a Llama-style decoder at batch 1 over
/// `tokens` prompt tokens, as TensorRT-LLM runs it: fused QKV, fused
/// causal attention (fp16), fused gate/up MLP GEMM, GEMMs in `p` (fp16, or
/// fp8 on Hopper), the LM head for the last token only.
pub fn llama_prefill(
    layers: u64,
    d: u64,
    ffn: u64,
    heads: u64,
    vocab: u64,
    tokens: u64,
    p: Precision,
) -> Vec<Kernel> {
    let e = elem(p);
    let a = |c: u64| (tokens * c) as f64 * 2.0;
    let g = |name: String, n: u64, k: u64| {
        let mut kern = Kernel::gemm(
            &name,
            "MatMul",
            GemmDims {
                m: tokens,
                n,
                k,
                batch: 1,
            },
            p,
            e,
            2.0,
            true,
        );
        kern.input_bytes = a(k);
        kern.output_bytes = a(n);
        kern.largest_activation_bytes = a(n.max(k));
        kern
    };
    let mut ks = vec![Kernel::memory("embedding", "Gather", 0.0, a(d), a(d), 0.0)];
    for l in 0..layers {
        ks.push(Kernel::memory(
            &format!("l{l}_rmsnorm"),
            "RMSNorm",
            a(d),
            v_bytes(d),
            a(d),
            4.0 * (tokens * d) as f64,
        ));
        ks.push(g(format!("l{l}_qkv"), 3 * d, d));
        // Causal attention: QK^T and PV, half of each computed.
        let hd = d / heads;
        let mut att = Kernel::gemm(
            &format!("l{l}_attention"),
            "Attention",
            GemmDims {
                m: tokens,
                n: tokens,
                k: hd,
                batch: heads,
            },
            Precision::Fp16,
            2.0,
            2.0,
            false,
        );
        att.input_bytes = a(3 * d);
        att.output_bytes = a(d);
        att.largest_activation_bytes = a(3 * d);
        ks.push(att);
        ks.push(g(format!("l{l}_wo"), d, d));
        ks.push(Kernel::memory(
            &format!("l{l}_add_rmsnorm"),
            "RMSNorm",
            a(2 * d),
            v_bytes(d),
            a(2 * d),
            5.0 * (tokens * d) as f64,
        ));
        ks.push(g(format!("l{l}_gate_up"), 2 * ffn, d));
        ks.push(Kernel::memory(
            &format!("l{l}_swiglu"),
            "Mul",
            a(2 * ffn),
            0.0,
            a(ffn),
            4.0 * (tokens * ffn) as f64,
        ));
        ks.push(g(format!("l{l}_w2"), d, ffn));
    }
    ks.push(Kernel::memory(
        "final_norm",
        "RMSNorm",
        a(2 * d),
        v_bytes(d),
        v_bytes(d),
        5.0 * d as f64,
    ));
    let mut head = Kernel::gemm(
        "lm_head",
        "MatMul",
        GemmDims {
            m: 1,
            n: vocab,
            k: d,
            batch: 1,
        },
        Precision::Fp16,
        2.0,
        2.0,
        true,
    );
    head.input_bytes = v_bytes(d);
    ks.push(head);
    ks
}

fn v_bytes(c: u64) -> f64 {
    c as f64 * 2.0
}

/// One decode step (batch 1) of a Llama-style decoder: `layers`, hidden
/// `d`, MLP width `ffn`, vocabulary `vocab`, `ctx` cached tokens; weights
/// of `e` bytes per element (2: bf16), as gpt-fast runs it under
/// torch.compile with CUDA graphs.
pub fn llama_decode(layers: u64, d: u64, ffn: u64, vocab: u64, ctx: u64, e: f64) -> Vec<Kernel> {
    let p = if e >= 2.0 {
        Precision::Fp16
    } else {
        Precision::Int8
    };
    let v = |c: u64| c as f64 * 2.0;
    let gemv = |name: String, n: u64, k: u64| {
        let mut kern = Kernel::gemm(
            &name,
            "MatMul",
            GemmDims {
                m: 1,
                n,
                k,
                batch: 1,
            },
            p,
            e,
            2.0,
            true,
        );
        kern.input_bytes = v(k);
        kern.output_bytes = v(n);
        kern.largest_activation_bytes = v(n.max(k));
        kern
    };
    let mut ks = vec![Kernel::memory("embedding", "Gather", 0.0, v(d), v(d), 0.0)];
    for l in 0..layers {
        ks.push(Kernel::memory(
            &format!("l{l}_rmsnorm"),
            "RMSNorm",
            v(d),
            v(d),
            v(d),
            4.0 * d as f64,
        ));
        ks.push(gemv(format!("l{l}_wqkv"), 3 * d, d));
        ks.push(Kernel::memory(
            &format!("l{l}_rope_kv"),
            "Rotary",
            v(3 * d),
            0.0,
            v(2 * d),
            6.0 * d as f64,
        ));
        let kv = 2.0 * v(ctx * d);
        ks.push(Kernel::memory(
            &format!("l{l}_attention"),
            "Attention",
            kv + v(d),
            0.0,
            v(d),
            4.0 * (ctx * d) as f64,
        ));
        ks.push(gemv(format!("l{l}_wo"), d, d));
        ks.push(Kernel::memory(
            &format!("l{l}_add_rmsnorm"),
            "RMSNorm",
            v(2 * d),
            v(d),
            v(2 * d),
            5.0 * d as f64,
        ));
        ks.push(gemv(format!("l{l}_w1"), ffn, d));
        ks.push(gemv(format!("l{l}_w3"), ffn, d));
        ks.push(Kernel::memory(
            &format!("l{l}_silu_mul"),
            "Mul",
            v(2 * ffn),
            0.0,
            v(ffn),
            4.0 * ffn as f64,
        ));
        ks.push(gemv(format!("l{l}_w2"), d, ffn));
    }
    ks.push(Kernel::memory(
        "final_norm",
        "RMSNorm",
        v(2 * d),
        v(d),
        v(d),
        5.0 * d as f64,
    ));
    ks.push(gemv("lm_head".into(), vocab, d));
    ks.push(Kernel::memory(
        "sample",
        "ArgMax",
        v(vocab),
        0.0,
        8.0,
        vocab as f64,
    ));
    ks
}

fn single(m: u64, n: u64, k: u64) -> Vec<Kernel> {
    vec![Kernel::gemm(
        "gemm",
        "MatMul",
        GemmDims { m, n, k, batch: 1 },
        Precision::Fp16,
        2.0,
        2.0,
        false,
    )]
}

const MAMF: &str = "ml-engineering, \"Maximum Achievable Matmul FLOPS comparison table\" (S. Bekman; mamf-finder.py, mean of 100 iterations)";
const TRT_ZOO: &str = "NVIDIA TensorRT TensorFlow-Quantization toolkit docs, \"Model Zoo Results\" (A100, TensorRT 8.4, PTQ INT8)";
const DEMOBERT: &str = "NVIDIA/TensorRT demo/BERT README, \"Inference performance: NVIDIA A100 (40GB)\" (average latency)";
const TRT_LLM: &str = "NVIDIA/TensorRT-LLM docs/source/performance.md, \"Low Latency\" first-token latency (TensorRT-LLM v0.5)";
const MEASURE_H200: &str = "benches/gpu/measure.py and extra_points.py on this project's device (NVIDIA H200, driver 580.159.04, torch 2.11.0+cu130), 2026-11-27";
const GPT_FAST: &str = "pytorch-labs/gpt-fast README, Benchmarks (A100-80GB, batch 1)";

/// The calibration points, in table order.
pub fn points() -> Vec<Point> {
    let p =
        |id, preset, card, hbm_gbps, workload, metric, measured, mode, source, note, kernels| {
            Point {
                id,
                preset,
                card,
                hbm_gbps,
                workload,
                metric,
                measured,
                mode,
                source,
                note,
                kernels,
            }
        };
    use LaunchMode::{Graphs, Launch};
    use Metric::*;
    vec![
        p(
            "gemm-a100-1",
            "a100",
            "A100 SXM",
            None,
            "BF16 GEMM 6912x16384x2048",
            Tflops,
            267.9,
            Graphs,
            MAMF,
            "best shape of a search (CUDA 12.1 run)",
            single(6912, 16384, 2048),
        ),
        p(
            "gemm-a100-2",
            "a100",
            "A100 SXM",
            None,
            "BF16 GEMM 1024x10240x5120",
            Tflops,
            271.2,
            Graphs,
            MAMF,
            "best shape of a search (torch 2.6 run)",
            single(1024, 10240, 5120),
        ),
        p(
            "gemm-h100-1",
            "h100",
            "H100 SXM",
            None,
            "BF16 GEMM 6144x17920x2816",
            Tflops,
            792.1,
            Graphs,
            MAMF,
            "best shape of a search (CUDA 12.1 run)",
            single(6144, 17920, 2816),
        ),
        p(
            "gemm-h100-2",
            "h100",
            "H100 SXM",
            None,
            "BF16 GEMM 2048x2048x13312",
            Tflops,
            794.5,
            Graphs,
            MAMF,
            "best shape of a search (torch 2.7 run)",
            single(2048, 2048, 13312),
        ),
        p(
            "resnet50-a100",
            "a100",
            "A100",
            None,
            "ResNet-50 v1, batch 1, INT8",
            LatencyMs,
            0.46,
            Launch,
            TRT_ZOO,
            "weak: A100 variant and timing method not stated",
            resnet_v1([3, 4, 6, 3], Precision::Int8),
        ),
        p(
            "resnet101-a100",
            "a100",
            "A100",
            None,
            "ResNet-101 v1, batch 1, INT8",
            LatencyMs,
            0.84,
            Launch,
            TRT_ZOO,
            "weak: A100 variant and timing method not stated",
            resnet_v1([3, 4, 23, 3], Precision::Int8),
        ),
        p(
            "mobilenet-v1-a100",
            "a100",
            "A100",
            None,
            "MobileNet v1, batch 1, INT8",
            LatencyMs,
            0.16,
            Launch,
            TRT_ZOO,
            "weak: A100 variant and timing method not stated",
            mobilenet_v1(Precision::Int8),
        ),
        p(
            "mobilenet-v2-a100",
            "a100",
            "A100",
            None,
            "MobileNet v2, batch 1, INT8",
            LatencyMs,
            0.30,
            Launch,
            TRT_ZOO,
            "weak: A100 variant and timing method not stated",
            mobilenet_v2(Precision::Int8),
        ),
        p(
            "bert-base-b1",
            "a100",
            "A100 40GB",
            Some(1555.0),
            "BERT-base, seq 128, batch 1, FP16",
            LatencyMs,
            0.67,
            Launch,
            DEMOBERT,
            "",
            bert(12, 768, 12, 1, 128),
        ),
        p(
            "bert-base-b128",
            "a100",
            "A100 40GB",
            Some(1555.0),
            "BERT-base, seq 128, batch 128, FP16",
            LatencyMs,
            16.14,
            Launch,
            DEMOBERT,
            "compute-bound",
            bert(12, 768, 12, 128, 128),
        ),
        p(
            "bert-large-384",
            "a100",
            "A100 40GB",
            Some(1555.0),
            "BERT-large, seq 384, batch 1, FP16",
            LatencyMs,
            3.12,
            Launch,
            DEMOBERT,
            "",
            bert(24, 1024, 16, 1, 384),
        ),
        p(
            "llama-7b-prefill-a100",
            "a100",
            "A100",
            None,
            "LLaMA 7B first token, 2048-token prompt, batch 1, FP16",
            LatencyMs,
            133.0,
            Launch,
            TRT_LLM,
            "A100 variant not stated",
            llama_prefill(32, 4096, 11008, 32, 32000, 2048, Precision::Fp16),
        ),
        p(
            "llama-7b-prefill-h100",
            "h100",
            "H100",
            None,
            "LLaMA 7B first token, 2048-token prompt, batch 1, FP8",
            LatencyMs,
            36.0,
            Launch,
            TRT_LLM,
            "FP8 GEMMs, fp16 attention; early (2023) FP8 kernels",
            llama_prefill(32, 4096, 11008, 32, 32000, 2048, Precision::Fp8),
        ),
        p(
            "llama2-7b-decode",
            "a100",
            "A100-80GB at 330 W",
            None,
            "Llama-2-7B decode, batch 1, BF16",
            MsPerToken,
            1000.0 / 104.9,
            Graphs,
            GPT_FAST,
            "104.9 tokens/s; card power-limited to 330 W (source: about 1700 GB/s reachable)",
            llama_decode(32, 4096, 11008, 32000, 100, 2.0),
        ),
        p(
            "gemm-h200-4096",
            "h200",
            "NVIDIA H200",
            None,
            "BF16 GEMM 4096x4096x4096",
            Tflops,
            668.80,
            Graphs,
            MEASURE_H200,
            "mean of 200 CUDA-event times",
            single(4096, 4096, 4096),
        ),
        p(
            "gemv-h200-8192",
            "h200",
            "NVIDIA H200",
            None,
            "BF16 GEMV 1x8192x8192",
            Tflops,
            2.73,
            Graphs,
            MEASURE_H200,
            "mean of 200 CUDA-event times; bandwidth-bound: the 8192x8192 operand streams from HBM as weights do",
            vec![Kernel::gemm(
                "gemv",
                "MatMul",
                GemmDims {
                    m: 1,
                    n: 8192,
                    k: 8192,
                    batch: 1,
                },
                Precision::Fp16,
                2.0,
                2.0,
                true,
            )],
        ),
        p(
            "resnet50-h200-torch",
            "h200",
            "NVIDIA H200",
            None,
            "ResNet-50 v1.5, batch 1, FP16",
            LatencyMs,
            0.946,
            Graphs,
            MEASURE_H200,
            "PyTorch with cuDNN (benchmark mode, channels-last), no layer fusion: per-layer kernels, not a TensorRT engine; p50 of 200 graph replays",
            resnet_v1([3, 4, 6, 3], Precision::Fp16),
        ),
        p(
            "bert-base-h200-torch",
            "h200",
            "NVIDIA H200",
            None,
            "BERT-base, seq 128, batch 1, FP16",
            LatencyMs,
            1.147,
            Graphs,
            MEASURE_H200,
            "Hugging Face BertModel in PyTorch, no fusion; p50 of 200 graph replays",
            bert(12, 768, 12, 1, 128),
        ),
    ]
}

/// One evaluated row.
#[derive(Clone, Debug)]
pub struct Row {
    /// The point.
    pub point: Point,
    /// The model's prediction in the point's metric.
    pub predicted: f64,
    /// `(predicted - measured) / measured`.
    pub error: f64,
}

/// Evaluates every point.
pub fn evaluate() -> Vec<Row> {
    points()
        .into_iter()
        .map(|pt| {
            let mut spec = GpuSpec::preset(pt.preset).expect("calibration presets exist");
            if let Some(bw) = pt.hbm_gbps {
                spec.hbm_gbps = bw;
            }
            let est = estimate(
                &spec,
                &pt.kernels,
                &Options {
                    mode: pt.mode,
                    seed: 0,
                },
            );
            let predicted = match pt.metric {
                Metric::Tflops => est.flops / (est.exec_us * 1e-6) / 1e12,
                Metric::LatencyMs | Metric::MsPerToken => est.latency_us / 1000.0,
            };
            let error = (predicted - pt.measured) / pt.measured;
            Row {
                point: pt,
                predicted,
                error,
            }
        })
        .collect()
}

/// Median of the absolute errors.
pub fn median_abs_error(rows: &[Row]) -> f64 {
    let mut e: Vec<f64> = rows.iter().map(|r| r.error.abs()).collect();
    e.sort_by(f64::total_cmp);
    match e.len() {
        0 => 0.0,
        n if n % 2 == 1 => e[n / 2],
        n => (e[n / 2 - 1] + e[n / 2]) / 2.0,
    }
}

/// The calibration table as Markdown, with the median absolute error.
pub fn markdown_table() -> String {
    let rows = evaluate();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| # | GPU (preset) | workload | metric | measured | model | error | mode | source |"
    );
    let _ = writeln!(s, "|---|---|---|---|---:|---:|---:|---|---|");
    for (i, r) in rows.iter().enumerate() {
        let pt = &r.point;
        let note = if pt.note.is_empty() {
            String::new()
        } else {
            format!("; {}", pt.note)
        };
        let _ = writeln!(
            s,
            "| {} | {} (`{}`{}) | {} | {} | {:.2} | {:.2} | {:+.1}% | {} | {}{} |",
            i + 1,
            pt.card,
            pt.preset,
            pt.hbm_gbps
                .map(|b| format!(", {b} GB/s"))
                .unwrap_or_default(),
            pt.workload,
            pt.metric.unit(),
            pt.measured,
            r.predicted,
            100.0 * r.error,
            pt.mode.name(),
            pt.source,
            note
        );
    }
    let _ = writeln!(
        s,
        "\nMedian absolute error over {} points: **{:.1}%**.",
        rows.len(),
        100.0 * median_abs_error(&rows)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet50_has_the_published_work() {
        let ks = resnet_v1([3, 4, 6, 3], Precision::Int8);
        let gflops: f64 = ks.iter().map(|k| k.flops).sum::<f64>() / 1e9;
        // About 3.9 GMACs for ResNet-50 v1 at 224 x 224 (conv and fc).
        assert!((7.4..8.4).contains(&gflops), "{gflops}");
        let weights: f64 = ks.iter().map(|k| k.weight_bytes).sum::<f64>() / 1e6;
        assert!(
            (23.0..27.0).contains(&weights),
            "{weights} MB of int8 weights"
        );
    }

    #[test]
    fn mobilenets_have_the_published_work() {
        // About 569 M and 300 M multiply-adds (Howard et al. 2017; Sandler et al. 2018).
        let macs = |ks: Vec<Kernel>| ks.iter().map(|k| k.flops).sum::<f64>() / 2e6;
        let v1 = macs(mobilenet_v1(Precision::Int8));
        assert!((560.0..600.0).contains(&v1), "{v1}");
        let v2 = macs(mobilenet_v2(Precision::Int8));
        assert!((295.0..330.0).contains(&v2), "{v2}");
    }

    #[test]
    fn bert_base_has_the_published_work() {
        let ks = bert(12, 768, 12, 1, 128);
        let w: f64 = ks.iter().map(|k| k.weight_bytes).sum::<f64>() / 2.0 / 1e6;
        assert!((84.0..86.0).contains(&w), "{w} M encoder parameters");
    }

    #[test]
    fn llama_decode_streams_the_weights() {
        let ks = llama_decode(32, 4096, 11008, 32000, 100, 2.0);
        let w: f64 = ks.iter().map(|k| k.weight_bytes).sum::<f64>() / 2.0 / 1e9;
        assert!(
            (6.5..6.7).contains(&w),
            "{w} B parameters streamed per token"
        );
    }

    #[test]
    fn calibration_covers_the_required_ground() {
        let rows = evaluate();
        assert!(rows.len() >= 8);
        let presets: std::collections::BTreeSet<_> = rows.iter().map(|r| r.point.preset).collect();
        assert!(presets.len() >= 2);
        assert!(median_abs_error(&rows) < 0.25, "{}", markdown_table());
    }
}
