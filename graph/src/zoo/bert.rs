//! Encoder transformers: BERT-base ([`bert`]) and the one-block teaching
//! model ([`transformer_block`]), which share [`encoder_layer`].

use lpu_isa::DType;

use crate::format::GraphFile;
use crate::zoo::builder::{uniform_std, GraphBuilder, Value};

/// Options of [`bert`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BertOpts {
    /// Batch size.
    pub batch: usize,
    /// Sequence length (at most `max_positions`).
    pub seq: usize,
    /// Number of encoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads (`hidden` must divide by it).
    pub heads: usize,
    /// Inner size of the feed-forward network.
    pub ffn: usize,
    /// Vocabulary size (rows of the word embedding table).
    pub vocab: usize,
    /// Rows of the learned position embedding table.
    pub max_positions: usize,
    /// Rows of the token type (segment) embedding table.
    pub type_vocab: usize,
    /// `LayerNormalization` epsilon.
    pub epsilon: f32,
}

impl BertOpts {
    /// BERT-base, uncased: 12 layers, hidden 768, 12 heads, FFN 3072,
    /// vocabulary 30522, 512 positions, 2 token types, epsilon 1e-12; batch 1,
    /// sequence 128.
    pub fn base() -> BertOpts {
        BertOpts {
            batch: 1,
            seq: 128,
            layers: 12,
            hidden: 768,
            heads: 12,
            ffn: 3072,
            vocab: 30522,
            max_positions: 512,
            type_vocab: 2,
            epsilon: 1e-12,
        }
    }
}

impl Default for BertOpts {
    /// [`BertOpts::base`].
    fn default() -> BertOpts {
        BertOpts::base()
    }
}

/// BERT (Devlin et al. 2018) encoder with its pooler, in the layout of
/// Hugging Face's `BertModel` exported to ONNX.
///
/// - Input `input_ids` `I32 [batch, seq]`. Embeddings: `Gather` of the word
///   table, plus the first `seq` rows of the position table (a `Slice`),
///   plus row 0 of the token type table (a `Slice`: one segment, no
///   `token_type_ids` input), then `LayerNormalization`. There is no
///   attention mask: every position is a real token.
/// - `layers` post-LN encoder layers ([`encoder_layer`], exact `Gelu`).
/// - Outputs `last_hidden_state [batch, seq, hidden]` and `pooler_output
///   [batch, hidden]` (`Tanh` of a `Gemm` on the first token, taken with
///   `Gather` along axis 1).
///
/// BERT-base has 109,482,240 parameters: 23,837,184 in the embeddings
/// (with their layer norm), 85,054,464 in the 12 layers and 590,592 in the
/// pooler.
pub fn bert(opts: &BertOpts) -> GraphFile {
    let o = opts;
    let mut b = GraphBuilder::new("bert");
    let ids = b.input("input_ids", DType::I32, &[o.batch, o.seq]);
    let x = b.scoped("embeddings", |b| {
        let std = uniform_std(0.02);
        let word = b.param("word_embeddings.weight", &[o.vocab, o.hidden], std);
        let pos = b.param(
            "position_embeddings.weight",
            &[o.max_positions, o.hidden],
            std,
        );
        let typ = b.param(
            "token_type_embeddings.weight",
            &[o.type_vocab, o.hidden],
            std,
        );
        let x = b.gather(&word, &ids, 0);
        let p = b.slice(&pos, &[0], &[o.seq], &[0]);
        let t = b.slice(&typ, &[0], &[1], &[0]);
        let x = b.add(&x, &p);
        let x = b.add(&x, &t);
        b.layer_norm(&x, "LayerNorm", o.epsilon)
    });
    let mut x = x;
    for i in 0..o.layers {
        x = b.scoped(&format!("encoder.layer.{i}"), |b| {
            encoder_layer(b, &x, o.heads, o.ffn, o.epsilon)
        });
    }
    let h = b.output(&x, "last_hidden_state");
    let pooled = b.scoped("pooler", |b| {
        let first = b.constant("index_0", DType::I32, &[], &[0.0]);
        let cls = b.gather(&h, &first, 1);
        let d = b.gemm(&cls, "dense", o.hidden, true);
        b.tanh(&d)
    });
    b.output(&pooled, "pooler_output");
    b.finish()
}

/// Options of [`transformer_block`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransformerBlockOpts {
    /// Batch size.
    pub batch: usize,
    /// Sequence length.
    pub seq: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads (`hidden` must divide by it).
    pub heads: usize,
    /// Inner size of the feed-forward network.
    pub ffn: usize,
}

impl Default for TransformerBlockOpts {
    /// Batch 1, sequence 16, hidden 64, 4 heads of 16, FFN 256.
    fn default() -> TransformerBlockOpts {
        TransformerBlockOpts {
            batch: 1,
            seq: 16,
            hidden: 64,
            heads: 4,
            ffn: 256,
        }
    }
}

/// One post-LN transformer encoder block at teaching size: input `x [batch,
/// seq, hidden]` (embeddings, `F32`), output `y` of the same shape. It is
/// exactly one BERT layer ([`encoder_layer`], epsilon 1e-5); with the
/// defaults, 49,984 parameters.
pub fn transformer_block(opts: &TransformerBlockOpts) -> GraphFile {
    let mut b = GraphBuilder::new("transformer-block");
    let x = b.input("x", DType::F32, &[opts.batch, opts.seq, opts.hidden]);
    let y = b.scoped("block", |b| {
        encoder_layer(b, &x, opts.heads, opts.ffn, 1e-5)
    });
    b.output(&y, "y");
    b.finish()
}

/// One post-LN encoder layer (BERT's) over `x [batch, seq, hidden]`, in the
/// current module, with Hugging Face's module names:
///
/// ```text
/// q, k, v = attention.self.{query,key,value}(x)          MatMul + Add
/// q, v -> Reshape [b, s, heads, d] -> Transpose [0, 2, 1, 3]
/// k    -> Reshape [b, s, heads, d] -> Transpose [0, 2, 3, 1]
/// p = Softmax(MatMul(q, k) / sqrt(d), axis -1)           [b, heads, s, s]
/// c = MatMul(p, v) -> Transpose [0, 2, 1, 3] -> Reshape [b, s, hidden]
/// x = attention.output.LayerNorm(x + attention.output.dense(c))
/// h = Gelu(intermediate.dense(x))                         exact (erf)
/// y = output.LayerNorm(x + output.dense(h))
/// ```
pub fn encoder_layer(
    b: &mut GraphBuilder,
    x: &Value,
    heads: usize,
    ffn: usize,
    epsilon: f32,
) -> Value {
    let (batch, seq, hidden) = (x.shape[0], x.shape[1], x.shape[2]);
    assert_eq!(
        hidden % heads,
        0,
        "hidden {hidden} does not divide into {heads} heads"
    );
    let d = hidden / heads;
    let ctx = b.scoped("attention.self", |b| {
        let q = b.linear(x, "query", hidden, true);
        let k = b.linear(x, "key", hidden, true);
        let v = b.linear(x, "value", hidden, true);
        let split = [batch, seq, heads, d];
        let q = b.reshape(&q, &split);
        let q = b.named("q_heads").transpose(&q, &[0, 2, 1, 3]);
        let k = b.reshape(&k, &split);
        let k = b.named("k_heads_t").transpose(&k, &[0, 2, 3, 1]);
        let v = b.reshape(&v, &split);
        let v = b.named("v_heads").transpose(&v, &[0, 2, 1, 3]);
        let s = b.named("scores").matmul(&q, &k);
        let scale = b.const_scalar(&format!("sqrt_{d}"), (d as f64).sqrt());
        let s = b.named("scaled").div(&s, &scale);
        let p = b.named("probs").softmax(&s, -1);
        let c = b.named("context").matmul(&p, &v);
        let c = b.transpose(&c, &[0, 2, 1, 3]);
        b.named("merged").reshape(&c, &[batch, seq, hidden])
    });
    let x = b.scoped("attention.output", |b| {
        let o = b.linear(&ctx, "dense", hidden, true);
        let r = b.named("residual").add(&o, x);
        b.layer_norm(&r, "LayerNorm", epsilon)
    });
    let h = b.scoped("intermediate", |b| {
        let h = b.linear(&x, "dense", ffn, true);
        b.gelu(&h, false)
    });
    b.scoped("output", |b| {
        let o = b.linear(&h, "dense", hidden, true);
        let r = b.named("residual").add(&o, &x);
        b.layer_norm(&r, "LayerNorm", epsilon)
    })
}
