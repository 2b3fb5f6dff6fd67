//! The model zoo (`lpu_graph::zoo`): the bundled `examples/*.graph` files are
//! exactly what the generator writes (`BLESS=1 cargo test -p lpu-graph
//! --test zoo` rewrites them, as `cargo run -p lpu-graph --example zoo`
//! does), parameter counts match the published ones, the models load and
//! infer their outputs' shapes, and the small ones run in the reference
//! interpreter with finite, O(1) outputs.

use std::path::{Path, PathBuf};

use lpu_graph::zoo::{self, DecoderOpts, Entry, Model, Sizes};
use lpu_graph::{interpret, load_graph, parse_graph, random_inputs, DType, Graph, Tensor, Values};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("examples")
}

fn entry(model: Model) -> Entry {
    Entry::new(model, Sizes::default()).unwrap()
}

/// Parses the generated text of `e` (no file needed).
fn load(e: &Entry) -> Graph {
    let text = e.render();
    parse_graph(&text, &e.file_name(), Path::new("."))
        .unwrap_or_else(|err| panic!("{}: {err}", e.file_name()))
}

#[test]
fn bundled_files_are_up_to_date() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut stale = Vec::new();
    for e in zoo::bundled() {
        let path = examples().join(e.file_name());
        let text = e.render();
        if bless {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(old) if old == text => {}
            Ok(_) => stale.push(format!("{} differs", path.display())),
            Err(_) => stale.push(format!("{} is missing", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "{}; run `cargo run -p lpu-graph --example zoo` (or BLESS=1 cargo test -p lpu-graph --test zoo)",
        stale.join(", ")
    );
}

#[test]
fn generation_is_deterministic() {
    for e in zoo::bundled() {
        assert_eq!(e.render(), e.render(), "{}", e.file_name());
    }
}

#[test]
fn parameter_counts_match_the_published_ones() {
    let count = |m| zoo::param_count(&entry(m).build());
    assert_eq!(count(Model::Lenet), 61_706);
    // torchvision resnet50: 25,557,032 (25.6M).
    let resnet = entry(Model::Resnet50).build();
    assert_eq!(zoo::param_count(&resnet), 25_557_032);
    assert_eq!(zoo::buffer_count(&resnet), 53_120);
    // bert-base-uncased BertModel: 109,482,240 (110M); without the
    // embeddings 85.6M (86M), of which 85,054,464 in the 12 layers.
    let bert = entry(Model::BertBase).build();
    let total = zoo::param_count(&bert);
    assert_eq!(total, 109_482_240);
    let embeddings: u64 = bert
        .initializers
        .iter()
        .filter(|i| i.name.starts_with("embeddings."))
        .map(|i| i.shape.iter().product::<usize>() as u64)
        .sum();
    assert_eq!(total - embeddings, 85_645_056);
    // GPT-2 small, tied LM head: 124,439,808 (124M), at both contexts.
    for e in zoo::bundled()
        .iter()
        .filter(|e| e.model == Model::Gpt2Decode)
    {
        assert_eq!(
            zoo::param_count(&e.build()),
            124_439_808,
            "{}",
            e.file_name()
        );
    }
    // Llama-2-7B: 6,738,415,616 (6.7B); built, never loaded.
    assert_eq!(count(Model::Llama2_7b), 6_738_415_616);
    assert_eq!(count(Model::TransformerBlock), 49_984);
}

/// The declared type and shape of every output, as inferred on load.
fn assert_outputs(g: &Graph, expected: &[(&str, DType, &[usize])]) {
    for (name, dtype, shape) in expected {
        let info = g
            .info(name)
            .unwrap_or_else(|| panic!("{}: no tensor {name}", g.name));
        assert_eq!(
            (info.dtype, info.shape.as_slice()),
            (*dtype, *shape),
            "{}: {name}",
            g.name
        );
    }
}

#[test]
fn small_models_load_and_infer() {
    let g = load(&entry(Model::Lenet));
    assert_outputs(
        &g,
        &[
            ("logits", DType::F32, &[1, 10]),
            ("conv2", DType::F32, &[1, 16, 10, 10]),
        ],
    );
    let g = load(&entry(Model::TransformerBlock));
    assert_outputs(
        &g,
        &[
            ("y", DType::F32, &[1, 16, 64]),
            ("block.attention.self/probs", DType::F32, &[1, 4, 16, 16]),
        ],
    );
}

#[test]
fn resnet50_loads_and_infers() {
    let g = load_graph(&examples().join("resnet50.graph")).unwrap();
    assert_outputs(
        &g,
        &[
            ("logits", DType::F32, &[1, 1000]),
            ("maxpool", DType::F32, &[1, 64, 56, 56]),
            ("layer1.2/out", DType::F32, &[1, 256, 56, 56]),
            ("layer2.0.conv2", DType::F32, &[1, 128, 28, 28]),
            ("layer4.2/out", DType::F32, &[1, 2048, 7, 7]),
        ],
    );
    assert_eq!(g.nodes.iter().filter(|n| n.op_type == "Conv").count(), 53);
}

#[test]
fn bert_base_loads_and_infers() {
    let g = load_graph(&examples().join("bert-base.graph")).unwrap();
    assert_outputs(
        &g,
        &[
            ("last_hidden_state", DType::F32, &[1, 128, 768]),
            ("pooler_output", DType::F32, &[1, 768]),
            (
                "encoder.layer.11.attention.self/probs",
                DType::F32,
                &[1, 12, 128, 128],
            ),
            (
                "encoder.layer.0.intermediate/gelu",
                DType::F32,
                &[1, 128, 3072],
            ),
        ],
    );
}

#[test]
fn gpt2_decode_loads_and_infers() {
    for context in [128, 1024] {
        let g = load_graph(&examples().join(format!("gpt2-decode-{context}.graph"))).unwrap();
        assert_eq!(g.inputs.len(), 1 + 2 * 12);
        assert_eq!(g.outputs.len(), 1 + 2 * 12);
        assert_outputs(
            &g,
            &[
                ("logits", DType::F32, &[1, 50257]),
                ("present_key.0", DType::F32, &[1, 12, 1, 64]),
                ("present_value.11", DType::F32, &[1, 12, 1, 64]),
                ("h.0.attn/keys", DType::F32, &[1, 12, context + 1, 64]),
                ("h.11.attn/probs", DType::F32, &[1, 12, 1, context + 1]),
            ],
        );
    }
}

#[test]
fn llama_decode_loads_and_infers_at_small_width() {
    // Llama-2-7B's structure at a width that loads in a test.
    let opts = DecoderOpts {
        layers: 2,
        hidden: 64,
        heads: 4,
        ffn: 172,
        vocab: 100,
        ..DecoderOpts::llama2_7b(8)
    };
    let file = zoo::llama_decode(&opts);
    let text = zoo::text::render(&file, "");
    let g = parse_graph(&text, "llama-small", Path::new(".")).unwrap();
    assert_outputs(
        &g,
        &[
            ("logits", DType::F32, &[1, 100]),
            ("present_key.1", DType::F32, &[1, 4, 1, 16]),
            ("layers.1.mlp/gated", DType::F32, &[1, 1, 172]),
        ],
    );
    let mut inputs = random_inputs(&g, 1);
    let ids = Tensor::new(vec![1, 1], Values::I32(vec![42])).unwrap();
    inputs.insert("input_ids".to_string(), ids);
    let out = interpret(&g, &inputs).unwrap();
    assert_finite(&g, &out["logits"].values, 10.0);
}

fn assert_finite(g: &Graph, v: &Values, bound: f64) {
    let max = (0..v.len()).map(|i| v.get_f64(i).abs()).fold(0.0, f64::max);
    assert!(
        (0..v.len()).all(|i| v.get_f64(i).is_finite()) && max < bound && max > 1e-3,
        "{}: max |output| = {max}",
        g.name
    );
}

#[test]
fn lenet_runs_in_the_interpreter() {
    let g = load_graph(&examples().join("lenet.graph")).unwrap();
    for seed in 0..3 {
        let out = interpret(&g, &random_inputs(&g, seed)).unwrap();
        assert_finite(&g, &out["logits"].values, 10.0);
    }
}

#[test]
fn transformer_block_runs_in_the_interpreter() {
    let g = load_graph(&examples().join("transformer-block.graph")).unwrap();
    for seed in 0..3 {
        let out = interpret(&g, &random_inputs(&g, seed)).unwrap();
        // Post-LN: each position normalized, scaled by 1 +- 0.1.
        assert_finite(&g, &out["y"].values, 10.0);
    }
}

fn rms(v: &Values) -> f64 {
    ((0..v.len()).map(|i| v.get_f64(i).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

/// ResNet-50 through the reference interpreter (about 10 s): with the zoo's
/// weight scales the activations stay O(1) over all 16 blocks.
#[test]
fn resnet50_activations_stay_order_one() {
    let mut g = load_graph(&examples().join("resnet50.graph")).unwrap();
    let probes = [
        "maxpool",
        "layer1.0/out",
        "layer1.2/out",
        "layer2.0/out",
        "layer2.3/out",
        "layer3.0/out",
        "layer3.5/out",
        "layer4.0/out",
        "layer4.2/out",
        "flatten",
    ];
    g.outputs.extend(probes.iter().map(|p| p.to_string()));
    let out = interpret(&g, &random_inputs(&g, 0)).unwrap();
    for p in probes.iter().chain(&["logits"]) {
        let rms = rms(&out[*p].values);
        println!("{p}: rms {rms:.3}");
        assert!(rms > 0.2 && rms < 5.0, "{p}: rms {rms}");
    }
}

#[test]
fn gpt2_decode_runs_in_the_interpreter() {
    let g = load_graph(&examples().join("gpt2-decode-128.graph")).unwrap();
    let mut inputs = random_inputs(&g, 3);
    let ids = Tensor::new(vec![1, 1], Values::I32(vec![50_000])).unwrap();
    inputs.insert("input_ids".to_string(), ids);
    let out = interpret(&g, &inputs).unwrap();
    for name in ["logits", "present_key.0", "present_value.11"] {
        let r = rms(&out[name].values);
        println!("{name}: rms {r:.3}");
        assert!(r > 0.05 && r < 5.0, "{name}: rms {r}");
    }
}

#[test]
fn bert_runs_in_the_interpreter_at_reduced_size() {
    let sizes = Sizes {
        layers: Some(2),
        seq: Some(32),
        ..Sizes::default()
    };
    let e = Entry::new(Model::BertBase, sizes).unwrap();
    assert_eq!(e.file_name(), "bert-base-s32-l2.graph");
    let g = load(&e);
    let mut inputs = random_inputs(&g, 5);
    let ids = (0..32).map(|i| i * 937 % 30522).collect();
    inputs.insert(
        "input_ids".to_string(),
        Tensor::new(vec![1, 32], Values::I32(ids)).unwrap(),
    );
    let out = interpret(&g, &inputs).unwrap();
    for name in ["last_hidden_state", "pooler_output"] {
        let r = rms(&out[name].values);
        println!("{name}: rms {r:.3}");
        assert!(r > 0.05 && r < 5.0, "{name}: rms {r}");
    }
}

#[test]
fn resized_models_load_and_infer() {
    let cases: [(Model, Sizes, &str, &[usize]); 5] = [
        (
            Model::Lenet,
            Sizes {
                batch: Some(4),
                ..Sizes::default()
            },
            "logits",
            &[4, 10],
        ),
        (
            Model::Resnet50,
            Sizes {
                batch: Some(2),
                image: Some(160),
                ..Sizes::default()
            },
            "layer4.2/out",
            &[2, 2048, 5, 5],
        ),
        (
            Model::BertBase,
            Sizes {
                batch: Some(2),
                seq: Some(64),
                layers: Some(1),
                ..Sizes::default()
            },
            "encoder.layer.0.attention.self/probs",
            &[2, 12, 64, 64],
        ),
        (
            Model::TransformerBlock,
            Sizes {
                batch: Some(3),
                seq: Some(8),
                ..Sizes::default()
            },
            "y",
            &[3, 8, 64],
        ),
        (
            Model::Gpt2Decode,
            Sizes {
                context: Some(7),
                layers: Some(1),
                ..Sizes::default()
            },
            "h.0.attn/probs",
            &[1, 12, 1, 8],
        ),
    ];
    for (model, sizes, tensor, shape) in cases {
        let e = Entry::new(model, sizes).unwrap();
        let g = load(&e);
        assert_eq!(g.name, e.file_name().trim_end_matches(".graph"));
        assert_outputs(&g, &[(tensor, DType::F32, shape)]);
    }
}
