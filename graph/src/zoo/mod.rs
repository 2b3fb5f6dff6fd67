//! The model zoo: deterministic generators of real model architectures as
//! [`GraphFile`]s, and the catalog of the `.graph` files bundled in the
//! workspace's `examples/`.
//!
//! | model | function | bundled file(s) | parameters |
//! |---|---|---|---|
//! | LeNet-5 | [`lenet`] | `lenet.graph` | 61,706 |
//! | ResNet-50 v1.5 | [`resnet50`] | `resnet50.graph` | 25,557,032 |
//! | BERT-base encoder + pooler | [`bert`] | `bert-base.graph` | 109,482,240 |
//! | one transformer block | [`transformer_block`] | `transformer-block.graph` | 49,984 |
//! | GPT-2 small, one decode step | [`gpt2_decode`] | `gpt2-decode-128.graph`, `gpt2-decode-1024.graph` | 124,439,808 |
//! | Llama-2-7B, one decode step | [`llama_decode`] | none (on request) | 6,738,415,616 |
//!
//! Model code is written with [`GraphBuilder`] (module [`builder`]), which
//! names layers like PyTorch modules and makes every weight a seeded
//! `Random(..)` initializer, so the files stay small text however large the
//! model. [`text::render`] writes a file in the layout of the hand-written
//! examples. Operators and attributes are ONNX's, by the names ONNX gives
//! them; integer shape and index tensors are `I32` (the format has no int64).
//!
//! The catalog ([`Model`], [`Sizes`], [`Entry`], [`bundled`]) is what the
//! `zoo` example binary and the golden test share:
//!
//! ```text
//! cargo run -p lpu-graph --example zoo                      # every bundled file into examples/
//! cargo run -p lpu-graph --example zoo -- --only gpt2 --context 1024 --layers 2 --out /tmp
//! cargo run -p lpu-graph --example zoo -- --only llama2-7b --context 4096
//! ```
//!
//! Parameters are counted as in PyTorch's `parameters()`: every `Random`
//! initializer except batch normalization's running mean and variance
//! (buffers, counted apart by [`buffer_count`]); inline constants (shapes,
//! axes, scales) are not parameters.

pub mod bert;
pub mod builder;
pub mod decoder;
pub mod lenet;
pub mod resnet;
pub mod text;

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::format::{GraphFile, InitData, ValueInfo};

pub use bert::{bert, encoder_layer, transformer_block, BertOpts, TransformerBlockOpts};
pub use builder::{Conv2d, GraphBuilder, Value};
pub use decoder::{gpt2_decode, llama_decode, DecoderOpts};
pub use lenet::{lenet, LeNetOpts};
pub use resnet::{resnet50, ResNetOpts};

/// Names of the initializers that are batch normalization running
/// statistics (inputs 3 and 4 of a `BatchNormalization` node).
fn bn_statistics(g: &GraphFile) -> BTreeSet<&str> {
    g.nodes
        .iter()
        .filter(|n| n.op_type == "BatchNormalization")
        .flat_map(|n| n.inputs.iter().skip(3).map(String::as_str))
        .collect()
}

/// Elements of the `Random` initializers of `g` for which `keep` holds.
fn random_elements(g: &GraphFile, keep: impl Fn(&str) -> bool) -> u64 {
    g.initializers
        .iter()
        .filter(|i| matches!(i.data, InitData::Random { .. }) && keep(&i.name))
        .map(|i| i.shape.iter().map(|&d| d as u64).product::<u64>())
        .sum()
}

/// The number of learned parameters of `g`: elements of its `Random`
/// initializers other than batch normalization running statistics.
pub fn param_count(g: &GraphFile) -> u64 {
    let stats = bn_statistics(g);
    random_elements(g, |n| !stats.contains(n))
}

/// The number of batch normalization running-statistic elements of `g`
/// (buffers, not parameters).
pub fn buffer_count(g: &GraphFile) -> u64 {
    let stats = bn_statistics(g);
    random_elements(g, |n| stats.contains(n))
}

/// The models of the zoo, by the names the `zoo` binary takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Model {
    /// LeNet-5 ([`lenet`]).
    Lenet,
    /// ResNet-50 v1.5 ([`resnet50`]).
    Resnet50,
    /// BERT-base ([`bert`]).
    BertBase,
    /// One transformer encoder block ([`transformer_block`]).
    TransformerBlock,
    /// GPT-2 small, one decode step ([`gpt2_decode`]).
    Gpt2Decode,
    /// Llama-2-7B, one decode step ([`llama_decode`]); not bundled.
    Llama2_7b,
}

impl Model {
    /// Every model, in catalog order.
    pub const ALL: [Model; 6] = [
        Model::Lenet,
        Model::Resnet50,
        Model::BertBase,
        Model::TransformerBlock,
        Model::Gpt2Decode,
        Model::Llama2_7b,
    ];

    /// The model's name (`lenet`, `resnet50`, `bert-base`,
    /// `transformer-block`, `gpt2-decode`, `llama2-7b`).
    pub fn name(self) -> &'static str {
        match self {
            Model::Lenet => "lenet",
            Model::Resnet50 => "resnet50",
            Model::BertBase => "bert-base",
            Model::TransformerBlock => "transformer-block",
            Model::Gpt2Decode => "gpt2-decode",
            Model::Llama2_7b => "llama2-7b",
        }
    }

    /// The model called `name`, also accepting the short aliases `resnet`,
    /// `bert`, `block`, `gpt2` and `llama`.
    pub fn from_name(name: &str) -> Option<Model> {
        let alias = match name {
            "resnet" => Some(Model::Resnet50),
            "bert" => Some(Model::BertBase),
            "block" => Some(Model::TransformerBlock),
            "gpt2" => Some(Model::Gpt2Decode),
            "llama" | "llama2" => Some(Model::Llama2_7b),
            _ => None,
        };
        alias.or_else(|| Model::ALL.into_iter().find(|m| m.name() == name))
    }

    /// One line on what the model is.
    pub fn description(self) -> &'static str {
        match self {
            Model::Lenet => "LeNet-5 for 28 x 28 digits (ReLU, max pooling)",
            Model::Resnet50 => "ResNet-50 v1.5 image classifier (torchvision layout)",
            Model::BertBase => "BERT-base encoder with pooler (Hugging Face BertModel layout)",
            Model::TransformerBlock => "one post-LN transformer encoder block, teaching size",
            Model::Gpt2Decode => "GPT-2 small, one decode step with a KV cache",
            Model::Llama2_7b => "Llama-2-7B shapes, one decode step with a KV cache",
        }
    }

    /// The size options the model accepts ([`Sizes`] field names).
    pub fn size_options(self) -> &'static [&'static str] {
        match self {
            Model::Lenet => &["batch"],
            Model::Resnet50 => &["batch", "image"],
            Model::BertBase => &["batch", "seq", "layers"],
            Model::TransformerBlock => &["batch", "seq"],
            Model::Gpt2Decode | Model::Llama2_7b => &["context", "layers"],
        }
    }

    /// The model's default sizes (every option it accepts set).
    pub fn defaults(self) -> Sizes {
        let mut s = Sizes::default();
        match self {
            Model::Lenet => s.batch = Some(1),
            Model::Resnet50 => {
                s.batch = Some(1);
                s.image = Some(224);
            }
            Model::BertBase => {
                s.batch = Some(1);
                s.seq = Some(128);
                s.layers = Some(12);
            }
            Model::TransformerBlock => {
                s.batch = Some(1);
                s.seq = Some(16);
            }
            Model::Gpt2Decode => {
                s.context = Some(128);
                s.layers = Some(12);
            }
            Model::Llama2_7b => {
                s.context = Some(4096);
                s.layers = Some(32);
            }
        }
        s
    }

    /// Notes on the modelling choices, for the file header.
    fn notes(self) -> &'static str {
        match self {
            Model::Lenet => {
                "LeCun et al. 1998 in its common modern form: conv1 pads by 2 (the original 32 x 32\n\
                 input), ReLU and MaxPool 2x2 stand in for scaled tanh and trainable subsampling;\n\
                 fully connected layers are Gemm with transB = 1 (weights [out, in])."
            }
            Model::Resnet50 => {
                "v1.5: stride 2 in the 3x3 conv of each downsampling bottleneck (and its 1x1\n\
                 projection). Conv (no bias) + BatchNormalization (not folded) + Relu; MaxPool\n\
                 3x3 s2 p1; residual Add then Relu; GlobalAveragePool, Flatten, Gemm 2048 -> 1000."
            }
            Model::BertBase => {
                "Input is token ids: Gather of the word embeddings, plus position embeddings (a Slice\n\
                 of the first seq rows of the 512-row table), plus token type 0's embedding (one\n\
                 segment, no token_type_ids input), then LayerNormalization (epsilon 1e-12).\n\
                 No attention mask. Post-LN layers: Q, K, V as MatMul + Add, heads by Reshape and\n\
                 Transpose, Softmax(Q K^T / 8) V as batched MatMul, exact Gelu in the FFN.\n\
                 Pooler: Gather of token 0, Gemm 768 -> 768, Tanh. Parameters: 23,837,184 in the\n\
                 embeddings, 85,054,464 in the 12 layers, 590,592 in the pooler."
            }
            Model::TransformerBlock => {
                "Exactly one BERT layer (see bert-base.graph) over input embeddings, epsilon 1e-5:\n\
                 Q, K, V projections, 4 heads of 16, Softmax attention, output projection,\n\
                 residual + LayerNormalization, FFN 64 -> 256 -> 64 with exact Gelu, residual +\n\
                 LayerNormalization."
            }
            Model::Gpt2Decode => {
                "Inputs: the current token and, per layer, the cached keys and values of the\n\
                 `context` previous tokens [1, heads, context, 64]; outputs: logits and the new\n\
                 token's key and value (present_key.i, present_value.i [1, heads, 1, 64]).\n\
                 Attention spans context + 1 positions (Concat of past and new K/V, no mask).\n\
                 Pre-LN; c_attn is one MatMul split into Q, K, V; Gelu with approximate = \"tanh\".\n\
                 The LM head is tied to the token embedding wte (Gemm, transB = 1). The new token's\n\
                 position embedding is row min(context, 1023) of wpe (GPT-2 has 1024 positions)."
            }
            Model::Llama2_7b => {
                "Pre-norm with RMSNormalization, no biases, separate Q/K/V projections, SiLU-gated\n\
                 MLP (SiLU as Mul(x, Sigmoid(x))), untied LM head. Rotary position embeddings are\n\
                 omitted (elementwise rotations of Q and K: no parameters, no shape change).\n\
                 For studying what does not fit. Loading it materializes every weight (25.1 GiB\n\
                 at f32): not on a small machine."
            }
        }
    }
}

/// Resizing options; `None` leaves the model's default. Which ones a model
/// accepts: [`Model::size_options`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    /// Batch size.
    pub batch: Option<usize>,
    /// Input image height and width.
    pub image: Option<usize>,
    /// Sequence length.
    pub seq: Option<usize>,
    /// Number of layers.
    pub layers: Option<usize>,
    /// Tokens in the KV cache.
    pub context: Option<usize>,
}

impl Sizes {
    /// `(name, value)` of every field, in a fixed order.
    fn fields(&self) -> [(&'static str, Option<usize>); 5] {
        [
            ("batch", self.batch),
            ("image", self.image),
            ("seq", self.seq),
            ("layers", self.layers),
            ("context", self.context),
        ]
    }

    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, v)| v.is_none())
    }
}

/// One generated file: a model at given sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The model.
    pub model: Model,
    /// The options that differ from the model's defaults (the KV cache's
    /// `context` of a decoder is always set).
    pub sizes: Sizes,
}

impl Entry {
    /// `model` at `sizes`: an error if it does not accept a set option or a
    /// value is out of range; options equal to the default are dropped.
    pub fn new(model: Model, sizes: Sizes) -> Result<Entry, String> {
        let accepted = model.size_options();
        let defaults = model.defaults().fields();
        let mut out = Sizes::default();
        for ((name, value), (_, default)) in sizes.fields().into_iter().zip(defaults) {
            let Some(v) = value else { continue };
            if !accepted.contains(&name) {
                return Err(format!(
                    "{} does not take --{name}; it takes {}",
                    model.name(),
                    accepted
                        .iter()
                        .map(|a| format!("--{a}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if v == 0 {
                return Err(format!("--{name} must be at least 1"));
            }
            if Some(v) != default {
                match name {
                    "batch" => out.batch = Some(v),
                    "image" => out.image = Some(v),
                    "seq" => out.seq = Some(v),
                    "layers" => out.layers = Some(v),
                    _ => out.context = Some(v),
                }
            }
        }
        if matches!(model, Model::Gpt2Decode | Model::Llama2_7b) {
            out.context = sizes.context.or(model.defaults().context);
        }
        if let Some(image) = out.image {
            if image < 32 {
                return Err(format!("--image {image}: ResNet-50 needs at least 32 x 32"));
            }
        }
        if let (Model::BertBase, Some(seq)) = (model, out.seq) {
            if seq > 512 {
                return Err(format!("--seq {seq}: BERT has 512 positions"));
            }
        }
        Ok(Entry { model, sizes: out })
    }

    /// The model's sizes with this entry's options applied.
    fn effective(&self) -> Sizes {
        let d = self.model.defaults();
        let s = self.sizes;
        Sizes {
            batch: s.batch.or(d.batch),
            image: s.image.or(d.image),
            seq: s.seq.or(d.seq),
            layers: s.layers.or(d.layers),
            context: s.context.or(d.context),
        }
    }

    /// The file name: the model's name, the context of a decoder, then one
    /// suffix per changed option (`-b8`, `-i160`, `-s384`, `-l2`), and
    /// `.graph`.
    pub fn file_name(&self) -> String {
        let mut name = match self.model {
            Model::Gpt2Decode => format!("gpt2-decode-{}", self.effective().context.unwrap()),
            Model::Llama2_7b => format!("llama2-7b-decode-{}", self.effective().context.unwrap()),
            m => m.name().to_string(),
        };
        for (field, v) in self.sizes.fields() {
            if let (Some(v), false) = (v, field == "context") {
                let _ = write!(name, "-{}{v}", &field[..1]);
            }
        }
        name + ".graph"
    }

    /// The `zoo` arguments that generate exactly this file (output
    /// directory aside).
    pub fn args(&self) -> String {
        let mut s = format!("--only {}", self.model.name());
        for (field, v) in self.sizes.fields() {
            if let Some(v) = v {
                let _ = write!(s, " --{field} {v}");
            }
        }
        s
    }

    /// The full command that regenerates this file into `examples/`.
    pub fn command(&self) -> String {
        format!("cargo run -p lpu-graph --example zoo -- {}", self.args())
    }

    /// The model as a [`GraphFile`], named after the file (without
    /// `.graph`).
    pub fn build(&self) -> GraphFile {
        let s = self.effective();
        let (batch, layers) = (s.batch.unwrap_or(1), s.layers.unwrap_or(0));
        let mut g = match self.model {
            Model::Lenet => lenet(&LeNetOpts { batch }),
            Model::Resnet50 => resnet50(&ResNetOpts {
                batch,
                image: s.image.unwrap(),
                ..ResNetOpts::default()
            }),
            Model::BertBase => bert(&BertOpts {
                batch,
                seq: s.seq.unwrap(),
                layers,
                ..BertOpts::base()
            }),
            Model::TransformerBlock => transformer_block(&TransformerBlockOpts {
                batch,
                seq: s.seq.unwrap(),
                ..TransformerBlockOpts::default()
            }),
            Model::Gpt2Decode => gpt2_decode(&DecoderOpts {
                layers,
                ..DecoderOpts::gpt2_small(s.context.unwrap())
            }),
            Model::Llama2_7b => llama_decode(&DecoderOpts {
                layers,
                ..DecoderOpts::llama2_7b(s.context.unwrap())
            }),
        };
        let file = self.file_name();
        g.name = file.trim_end_matches(".graph").to_string();
        g
    }

    /// The comment header of the file for `g` (this entry's graph).
    pub fn header(&self, g: &GraphFile) -> String {
        let mut h = String::new();
        let _ = writeln!(h, "{} — {}.", self.file_name(), self.model.description());
        let _ = writeln!(h);
        let _ = writeln!(h, "Generated by `{}`", self.command());
        let _ = writeln!(
            h,
            "(graph/src/zoo in lpu-graph; `--out DIR` writes elsewhere). Edit the generator, not this file."
        );
        let _ = writeln!(h);
        let _ = writeln!(h, "Inputs:  {}", describe(&g.inputs));
        let _ = writeln!(h, "Outputs: {}", describe(&g.outputs));
        let p = param_count(g);
        let _ = write!(h, "Parameters: {}", thousands(p));
        let buffers = buffer_count(g);
        if buffers > 0 {
            let _ = write!(
                h,
                " (plus {} batch-norm running statistics)",
                thousands(buffers)
            );
        }
        let _ = writeln!(
            h,
            "; weights {} at f32, {} at f16, {} at int8.",
            size(4 * p),
            size(2 * p),
            size(p)
        );
        let cache: u64 = g
            .inputs
            .iter()
            .filter(|v| v.name.starts_with("past_"))
            .filter_map(|v| v.shape.as_ref())
            .map(|s| s.iter().product::<usize>() as u64)
            .sum();
        if cache > 0 {
            let _ = writeln!(
                h,
                "KV cache (the past_* inputs): {} at f32, {} at f16, {} at int8.",
                size(4 * cache),
                size(2 * cache),
                size(cache)
            );
        }
        let _ = writeln!(
            h,
            "{} nodes, {} initializers.",
            g.nodes.len(),
            g.initializers.len()
        );
        let _ = writeln!(h);
        let _ = writeln!(h, "{}", self.model.notes());
        let _ = writeln!(h);
        let _ = writeln!(
            h,
            "Weights are seeded Random(..) initializers (seed = creation index): uniform with std\n\
             1/sqrt(fan_in) for matrix products and convolutions, normalization scales 1 +- 0.1,\n\
             shifts and biases small; shape and index tensors are I32 constants."
        );
        h
    }

    /// The complete file text: [`Entry::header`] and the graph.
    pub fn render(&self) -> String {
        let g = self.build();
        text::render(&g, &self.header(&g))
    }
}

/// Inputs or outputs for the header; tensors `name.0`, `name.1`, ... of one
/// type and shape are written once, as `name.0..N`.
fn describe(values: &[ValueInfo]) -> String {
    // (stem, type, count of numbered members; 0 for an unnumbered tensor)
    let mut parts: Vec<(String, String, usize)> = Vec::new();
    for v in values {
        let ty = match (&v.dtype, &v.shape) {
            (Some(d), Some(s)) => format!("{d:?} {s:?}"),
            _ => String::new(),
        };
        match v.name.rsplit_once('.') {
            Some((stem, idx)) if idx.parse::<usize>().is_ok() => {
                match parts
                    .iter_mut()
                    .find(|p| p.0 == stem && p.1 == ty && p.2 > 0)
                {
                    Some(p) => p.2 += 1,
                    None => parts.push((stem.to_string(), ty, 1)),
                }
            }
            _ => parts.push((v.name.clone(), ty, 0)),
        }
    }
    parts
        .iter()
        .map(|(name, ty, count)| match count {
            0 => format!("{name} {ty}"),
            n => format!("{name}.0..{} {ty}", n - 1),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A byte count in MiB, or GiB from 10 GiB on.
fn size(bytes: u64) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    if mib >= 10240.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// `n` with thousands separators.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut s = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            s.push(',');
        }
        s.push(c);
    }
    s
}

/// The bundled files of `examples/`, in catalog order.
pub fn bundled() -> Vec<Entry> {
    let plain = |m| Entry::new(m, Sizes::default()).expect("defaults are valid");
    let gpt2 = |context| {
        Entry::new(
            Model::Gpt2Decode,
            Sizes {
                context: Some(context),
                ..Sizes::default()
            },
        )
        .expect("valid context")
    };
    vec![
        plain(Model::Lenet),
        plain(Model::Resnet50),
        plain(Model::BertBase),
        plain(Model::TransformerBlock),
        gpt2(128),
        gpt2(1024),
    ]
}

/// The entries for `--only model` with `sizes`: exactly one when a size is
/// given; otherwise the model's bundled files, or its default file if none
/// is bundled.
pub fn entries(model: Model, sizes: Sizes) -> Result<Vec<Entry>, String> {
    if sizes.is_empty() {
        let b: Vec<Entry> = bundled().into_iter().filter(|e| e.model == model).collect();
        if !b.is_empty() {
            return Ok(b);
        }
    }
    Ok(vec![Entry::new(model, sizes)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> GraphFile {
        ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .from_str(text)
            .unwrap()
    }

    #[test]
    fn small_models_round_trip_through_text() {
        for e in [Model::Lenet, Model::TransformerBlock]
            .map(|m| Entry::new(m, Sizes::default()).unwrap())
        {
            let g = e.build();
            let text = e.render();
            assert_eq!(parse(&text), g, "{}", e.file_name());
            assert_eq!(text, e.render(), "deterministic");
        }
    }

    #[test]
    fn catalog() {
        let names: Vec<String> = bundled().iter().map(Entry::file_name).collect();
        assert_eq!(
            names,
            [
                "lenet.graph",
                "resnet50.graph",
                "bert-base.graph",
                "transformer-block.graph",
                "gpt2-decode-128.graph",
                "gpt2-decode-1024.graph"
            ]
        );
        let e = Entry::new(
            Model::Gpt2Decode,
            Sizes {
                layers: Some(2),
                ..Sizes::default()
            },
        )
        .unwrap();
        assert_eq!(e.file_name(), "gpt2-decode-128-l2.graph");
        assert_eq!(e.args(), "--only gpt2-decode --layers 2 --context 128");
        let same = Sizes {
            image: Some(224),
            ..Sizes::default()
        };
        assert_eq!(
            Entry::new(Model::Resnet50, same).unwrap().file_name(),
            "resnet50.graph"
        );
        let err = Entry::new(Model::Lenet, same).unwrap_err();
        assert_eq!(err, "lenet does not take --image; it takes --batch");
        assert_eq!(
            entries(Model::Gpt2Decode, Sizes::default()).unwrap().len(),
            2
        );
        assert_eq!(
            entries(Model::Llama2_7b, Sizes::default()).unwrap()[0].file_name(),
            "llama2-7b-decode-4096.graph"
        );
        assert_eq!(Model::from_name("gpt2"), Some(Model::Gpt2Decode));
        assert_eq!(Model::from_name("bert-base"), Some(Model::BertBase));
        assert_eq!(thousands(25_557_032), "25,557,032");
        assert_eq!(thousands(999), "999");
        let io = |name: &str, shape: Vec<usize>| ValueInfo {
            name: name.into(),
            dtype: Some(crate::DType::F32),
            shape: Some(shape),
        };
        let vs = [
            io("ids", vec![1]),
            io("k.0", vec![2]),
            io("v.0", vec![2]),
            io("k.1", vec![2]),
            io("v.1", vec![2]),
            io("k.2", vec![3]),
        ];
        assert_eq!(
            describe(&vs),
            "ids F32 [1], k.0..1 F32 [2], v.0..1 F32 [2], k.0..0 F32 [3]"
        );
    }
}
