//! The PyTorch-exported models in `onnx/tests/data/torch/` (made by
//! `scripts/make-torch-models.py`; expected outputs computed by
//! onnxruntime) through `lpsim onnx-test`'s runner, chip `tsp`.
//!
//! The runner compiles in `fp32-split` by default (products by constant
//! weights fp32-accurate in three fp16 MXM passes): `cnn` and `bert_block`
//! pass in it, and still fail on precision only in plain `fp32` (one fp16
//! pass). Each test pins down exactly why, so that a change in the
//! compiler that moves them shows here: when one starts to pass, change its
//! test to expect `PASS` (and list it in `docs/onnx-conformance.md`).

use std::path::{Path, PathBuf};

use lpu_cli::onnx_test::{run_case, run_case_with, CaseResult, Status};
use lpu_compiler::Precision;

fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../onnx/tests/data/torch")
        .join(name)
}

fn run(name: &str) -> CaseResult {
    let chip = lpu_isa::ChipConfig::preset("tsp").expect("tsp");
    let r = run_case(&case(name), &chip);
    assert_eq!(r.name, format!("torch/{name}"));
    r
}

/// [`run`] compiled in plain `fp32` (products in one fp16 MXM pass).
fn run_fp32(name: &str) -> CaseResult {
    let chip = lpu_isa::ChipConfig::preset("tsp").expect("tsp");
    run_case_with(&case(name), &chip, Precision::Fp32)
}

/// Asserts a `PASS` with every error at the level of f32 rounding.
fn assert_fp32_pass(r: &CaseResult) {
    let Status::Pass { max_abs_err } = r.status else {
        panic!("{} is expected to pass in fp32-split: {}", r.name, r.line());
    };
    assert!(
        max_abs_err < 1e-5,
        "{}: max abs error {max_abs_err:e}",
        r.name
    );
}

/// Asserts a precision `FAIL`: simulated to the end, every error of an
/// fp16-sized magnitude, the first bad element of output `y` reported.
fn assert_fp16_fail(r: &CaseResult) {
    let Status::Fail {
        max_abs_err,
        detail,
    } = &r.status
    else {
        panic!(
            "{} is no longer a precision FAIL (if it passes, expect PASS here): {}",
            r.name,
            r.line()
        );
    };
    assert!(
        (1e-5..1e-3).contains(max_abs_err),
        "an fp16-sized error is expected: {}",
        r.line()
    );
    assert!(
        detail.starts_with("test_data_set_0: output 'y' element ")
            && detail.ends_with("(rtol 0.001, atol 0.0000001)"),
        "{}",
        r.line()
    );
}

/// Conv -> (BatchNorm, folded by the exporter) -> ReLU -> MaxPool, twice,
/// then Flatten -> Linear: it imports, compiles and simulates; with the
/// Conv and Gemm products split into three fp16 passes it passes (max abs
/// error about 1e-7). In plain fp32 they run on the MXM in one fp16 pass,
/// and the logits (about 0.07 to 0.3) come out with absolute errors of
/// about 1e-4, outside the backend tests' rtol 1e-3.
#[test]
fn torch_cnn_passes_with_split_matrix_products() {
    assert_fp32_pass(&run("cnn"));
    assert_fp16_fail(&run_fp32("cnn"));
}

/// A BERT-style encoder block (separate Q/K/V projections, heads by
/// view/transpose, softmax attention, two post-norm residuals, ReLU
/// feed-forward): it imports and compiles (the head split and merge are
/// views, K^T a real transpose) and simulates; with the six projections
/// split into three fp16 passes it passes (max abs error below 1e-6). In
/// plain fp32 the projections multiply in one fp16 pass on the MXM: errors
/// of about 4e-4, outside rtol 1e-3 on the smaller outputs.
#[test]
fn torch_bert_block_passes_with_split_matrix_products() {
    assert_fp32_pass(&run("bert_block"));
    assert_fp16_fail(&run_fp32("bert_block"));
}

/// `nn.TransformerEncoderLayer` (d_model 32, 4 heads, ReLU feed-forward):
/// it imports, and the `Reshape` that splits the packed QKV projection into
/// heads now lowers as lane moves; the compiler stops at the attention
/// product, a MatMul of two computed tensors in a layout the attention
/// lowering does not recognise.
#[test]
fn torch_transformer_stops_at_a_product_of_computed_tensors() {
    let r = run("transformer");
    assert_eq!(
        r.status,
        Status::Unsupported(vec![
            "MatMul (not lowered: the right operand 'val_72' must be a constant (weights); \
             products of two computed tensors are not lowered yet)"
                .into()
        ]),
        "{}",
        r.line()
    );
}

/// The committed files stay small (the limit is 1 MB for both).
#[test]
fn torch_models_are_small() {
    fn size(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    size(&e.path())
                } else {
                    m.len()
                }
            })
            .sum()
    }
    let total = size(&case(""));
    assert!(total < 1 << 20, "onnx/tests/data/torch is {total} bytes");
}
