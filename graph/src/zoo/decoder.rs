//! Decoder transformers, one generation step with a KV cache: GPT-2
//! ([`gpt2_decode`]) and Llama ([`llama_decode`]).
//!
//! Both graphs take the current token and, per layer `i`, the cached keys and
//! values of the `context` tokens before it, and return the next-token logits
//! and the new token's key and value (which a runtime appends to the cache):
//!
//! ```text
//! inputs:  input_ids I32 [1, 1]
//!          past_key.i, past_value.i  F32 [1, heads, context, head_dim]
//! outputs: logits F32 [1, vocab]
//!          present_key.i, present_value.i  F32 [1, heads, 1, head_dim]
//! ```
//!
//! Attention runs over `context + 1` positions: `Concat` of the past and new
//! keys (and values) along axis 2, no mask (every cached position is
//! visible to the newest token).

use lpu_isa::DType;

use crate::format::GraphFile;
use crate::zoo::builder::{uniform_std, GraphBuilder, Value};

/// Options of [`gpt2_decode`] and [`llama_decode`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecoderOpts {
    /// Number of decoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads (`hidden` must divide by it).
    pub heads: usize,
    /// Inner size of the feed-forward network.
    pub ffn: usize,
    /// Tokens already in the KV cache.
    pub context: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Rows of the learned position embedding table (GPT-2 only).
    pub max_positions: usize,
    /// Normalization epsilon.
    pub epsilon: f32,
}

impl DecoderOpts {
    /// GPT-2 small (124M): 12 layers, hidden 768, 12 heads, FFN 3072,
    /// vocabulary 50257, 1024 positions, epsilon 1e-5.
    pub fn gpt2_small(context: usize) -> DecoderOpts {
        DecoderOpts {
            layers: 12,
            hidden: 768,
            heads: 12,
            ffn: 3072,
            context,
            vocab: 50257,
            max_positions: 1024,
            epsilon: 1e-5,
        }
    }

    /// Llama-2-7B: 32 layers, hidden 4096, 32 heads of 128 (no grouped
    /// query attention), FFN 11008, vocabulary 32000, RMS epsilon 1e-5.
    pub fn llama2_7b(context: usize) -> DecoderOpts {
        DecoderOpts {
            layers: 32,
            hidden: 4096,
            heads: 32,
            ffn: 11008,
            context,
            vocab: 32000,
            max_positions: 4096,
            epsilon: 1e-5,
        }
    }

    fn head_dim(&self) -> usize {
        assert_eq!(
            self.hidden % self.heads,
            0,
            "hidden does not divide into heads"
        );
        self.hidden / self.heads
    }
}

/// Declares the token and cache inputs; returns the token ids and the
/// per-layer past keys and values.
fn decode_inputs(b: &mut GraphBuilder, o: &DecoderOpts) -> (Value, Vec<(Value, Value)>) {
    let ids = b.input("input_ids", DType::I32, &[1, 1]);
    let cache = [1, o.heads, o.context, o.head_dim()];
    let past = (0..o.layers)
        .map(|i| {
            (
                b.input(&format!("past_key.{i}"), DType::F32, &cache),
                b.input(&format!("past_value.{i}"), DType::F32, &cache),
            )
        })
        .collect();
    (ids, past)
}

/// Attention of the new token's projections `q`, `k`, `v` (`[1, 1, hidden]`)
/// over the cache plus itself; declares `k` and `v` (in head layout) as
/// outputs `present_key.i` / `present_value.i` and returns the context
/// `[1, 1, hidden]`.
fn cached_attention(
    b: &mut GraphBuilder,
    layer: usize,
    heads: usize,
    qkv: [&Value; 3],
    past: &(Value, Value),
) -> Value {
    let hidden = qkv[0].dim(-1);
    let d = hidden / heads;
    let split = |b: &mut GraphBuilder, t: &Value| {
        let t = b.reshape(t, &[1, 1, heads, d]);
        b.transpose(&t, &[0, 2, 1, 3])
    };
    let q = split(b, qkv[0]);
    let k = split(b, qkv[1]);
    let v = split(b, qkv[2]);
    let k = b.output(&k, &format!("present_key.{layer}"));
    let v = b.output(&v, &format!("present_value.{layer}"));
    let keys = b.named("keys").concat(&[&past.0, &k], 2);
    let values = b.named("values").concat(&[&past.1, &v], 2);
    let kt = b.named("keys_t").transpose(&keys, &[0, 1, 3, 2]);
    let s = b.named("scores").matmul(&q, &kt);
    let scale = b.const_scalar(&format!("sqrt_{d}"), (d as f64).sqrt());
    let s = b.named("scaled").div(&s, &scale);
    let p = b.named("probs").softmax(&s, -1);
    let c = b.named("context").matmul(&p, &values);
    let c = b.transpose(&c, &[0, 2, 1, 3]);
    b.named("merged").reshape(&c, &[1, 1, hidden])
}

/// Moves the last output (the logits) before the per-layer cache outputs.
fn logits_first(mut g: GraphFile) -> GraphFile {
    g.outputs.rotate_right(1);
    g
}

/// One decode step of GPT-2 (Radford et al. 2019) at position `context`,
/// with Hugging Face's module names (`wte`, `wpe`, `h.i.ln_1`,
/// `h.i.attn.c_attn`, ...):
///
/// ```text
/// x = Gather(wte, input_ids) + Slice(wpe, position)        [1, 1, hidden]
/// per layer (pre-LN):
///   q, k, v = Split(attn.c_attn(ln_1(x)))                  one MatMul to 3 x hidden
///   x = x + attn.c_proj(attention over past + new)
///   x = x + mlp.c_proj(Gelu_tanh(mlp.c_fc(ln_2(x))))
/// logits = Gemm(Squeeze(ln_f(x)), wte, transB = 1)         [1, vocab]
/// ```
///
/// The LM head is tied to the token embedding `wte`, as in GPT-2, so the
/// model has 124,439,808 parameters at GPT-2 small's shapes. The new token's
/// position is `context`; GPT-2 has `max_positions` (1024) positions, so at
/// `context >= 1024` it takes the last one, `max_positions - 1` (the cost is
/// the same: one row).
pub fn gpt2_decode(opts: &DecoderOpts) -> GraphFile {
    let o = opts;
    let mut b = GraphBuilder::new(&format!("gpt2-decode-{}", o.context));
    let (ids, past) = decode_inputs(&mut b, o);
    let wte = b.param("wte.weight", &[o.vocab, o.hidden], uniform_std(0.02));
    let wpe = b.param(
        "wpe.weight",
        &[o.max_positions, o.hidden],
        uniform_std(0.01),
    );
    let pos = o.context.min(o.max_positions - 1);
    let tok = b.gather(&wte, &ids, 0);
    let p = b.slice(&wpe, &[pos], &[pos + 1], &[0]);
    let mut x = b.named("embeddings").add(&tok, &p);
    for (i, past) in past.iter().enumerate() {
        x = b.scoped(&format!("h.{i}"), |b| {
            let a = b.layer_norm(&x, "ln_1", o.epsilon);
            let ctx = b.scoped("attn", |b| {
                let qkv = b.linear(&a, "c_attn", 3 * o.hidden, true);
                let h = o.hidden;
                let parts = b.split(&qkv, -1, &[h, h, h], &["q", "k", "v"]);
                let ctx = cached_attention(b, i, o.heads, [&parts[0], &parts[1], &parts[2]], past);
                b.linear(&ctx, "c_proj", o.hidden, true)
            });
            let x = b.named("residual").add(&x, &ctx);
            let m = b.layer_norm(&x, "ln_2", o.epsilon);
            let m = b.scoped("mlp", |b| {
                let m = b.linear(&m, "c_fc", o.ffn, true);
                let m = b.gelu(&m, true);
                b.linear(&m, "c_proj", o.hidden, true)
            });
            b.named("residual").add(&x, &m)
        });
    }
    let x = b.layer_norm(&x, "ln_f", o.epsilon);
    let x = b.squeeze(&x, &[1]);
    let logits = b.gemm_by(&x, "lm_head", &wte, None);
    b.output(&logits, "logits");
    logits_first(b.finish())
}

/// One decode step of a Llama-style decoder (Touvron et al. 2023) at
/// position `context`, with Hugging Face's module names (`embed_tokens`,
/// `layers.i.self_attn.q_proj`, ...):
///
/// ```text
/// x = Gather(embed_tokens, input_ids)                       [1, 1, hidden]
/// per layer (pre-norm, no biases):
///   a = input_layernorm(x)                                  RMSNormalization
///   x = x + self_attn.o_proj(attention(q_proj(a), k_proj(a), v_proj(a)))
///   m = post_attention_layernorm(x)
///   x = x + mlp.down_proj(SiLU(mlp.gate_proj(m)) * mlp.up_proj(m))
/// logits = lm_head(Squeeze(norm(x)))                        Gemm, transB = 1
/// ```
///
/// Rotary position embeddings are omitted: they rotate `q` and `k` by
/// position-dependent angles, elementwise work that changes no shape and
/// adds no parameter; so the graph has no notion of position at all. SiLU is
/// `Mul(x, Sigmoid(x))`, as standard ONNX has no SiLU operator. The LM head
/// is separate from the embedding, as in Llama-2: 6,738,415,616 parameters
/// at Llama-2-7B's shapes.
pub fn llama_decode(opts: &DecoderOpts) -> GraphFile {
    let o = opts;
    let mut b = GraphBuilder::new(&format!("llama-decode-{}", o.context));
    let (ids, past) = decode_inputs(&mut b, o);
    let emb = b.param(
        "embed_tokens.weight",
        &[o.vocab, o.hidden],
        uniform_std(0.02),
    );
    let mut x = b.named("embeddings").gather(&emb, &ids, 0);
    for (i, past) in past.iter().enumerate() {
        x = b.scoped(&format!("layers.{i}"), |b| {
            let a = b.rms_norm(&x, "input_layernorm", o.epsilon);
            let ctx = b.scoped("self_attn", |b| {
                let q = b.linear(&a, "q_proj", o.hidden, false);
                let k = b.linear(&a, "k_proj", o.hidden, false);
                let v = b.linear(&a, "v_proj", o.hidden, false);
                let ctx = cached_attention(b, i, o.heads, [&q, &k, &v], past);
                b.linear(&ctx, "o_proj", o.hidden, false)
            });
            let x = b.named("residual").add(&x, &ctx);
            let m = b.rms_norm(&x, "post_attention_layernorm", o.epsilon);
            let m = b.scoped("mlp", |b| {
                let g = b.linear(&m, "gate_proj", o.ffn, false);
                let u = b.linear(&m, "up_proj", o.ffn, false);
                let g = b.silu(&g);
                let h = b.named("gated").mul(&g, &u);
                b.linear(&h, "down_proj", o.hidden, false)
            });
            b.named("residual").add(&x, &m)
        });
    }
    let x = b.rms_norm(&x, "norm", o.epsilon);
    let x = b.squeeze(&x, &[1]);
    let logits = b.gemm(&x, "lm_head", o.vocab, false);
    b.output(&logits, "logits");
    logits_first(b.finish())
}
