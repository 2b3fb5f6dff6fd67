//! Golden text tests ("filetests"): compile a graph and compare the
//! assembly with a committed expectation. A mismatch prints the first
//! differing line; `BLESS=1 cargo test -p lpu-compiler --test golden`
//! rewrites the expectations on purpose.
//!
//! - `tests/filetests/NAME.graph` -> `NAME.lpa` on the chip named by a
//!   `// chip: NAME` line (default `tiny`), whole text.
//! - `examples/mlp-int8.graph` on `tiny` -> `tests/golden/mlp-int8.tiny.lpa`,
//!   without the `.data` lines (the weights), which are replaced by one digest
//!   line so the file stays readable.

use lpu_isa::ChipConfig;
use std::path::{Path, PathBuf};

fn compile_asm(graph: &Path, chip: &str) -> String {
    let g = lpu_graph::load_graph(graph).unwrap_or_else(|e| panic!("{e}"));
    let chip = ChipConfig::preset(chip).expect("preset");
    let c = lpu_compiler::compile(&g, &chip).unwrap_or_else(|e| panic!("{e}"));
    lpu_isa::asm::disassemble(&c.program)
}

/// FNV-1a, 64 bits: a stable digest for the golden files.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn check(expected_path: &Path, actual: &str) {
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(expected_path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(expected_path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; run with BLESS=1 to create it",
            expected_path.display()
        )
    });
    if expected != actual {
        let (n, (e, a)) = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .find(|(_, (e, a))| e != a)
            .unwrap_or((
                expected.lines().count().min(actual.lines().count()),
                ("<end>", "<end>"),
            ));
        panic!(
            "{} differs at line {}:\n  expected: {e}\n  actual:   {a}\n(run with BLESS=1 to accept the new output)",
            expected_path.display(),
            n + 1
        );
    }
}

#[test]
fn filetests() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let mut graphs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("filetests dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "graph"))
        .collect();
    graphs.sort();
    assert!(!graphs.is_empty());
    for g in graphs {
        let text = std::fs::read_to_string(&g).expect("read");
        let chip = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("// chip:"))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|| "tiny".into());
        let asm = compile_asm(&g, &chip);
        check(&g.with_extension("lpa"), &asm);
        // The expectation also assembles back to the same program.
        let p = lpu_isa::asm::assemble(&asm).unwrap_or_else(|e| panic!("{}: {e}", g.display()));
        assert_eq!(lpu_isa::asm::disassemble(&p), asm);
    }
}

#[test]
fn mlp_int8_on_tiny() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let asm = compile_asm(&root.join("../examples/mlp-int8.graph"), "tiny");
    let (data, code): (Vec<&str>, Vec<&str>) = asm.lines().partition(|l| l.starts_with(".data "));
    let mut golden = code.join("\n");
    golden.push_str(&format!(
        "\n; {} .data lines, fnv1a64 {:016x}\n",
        data.len(),
        fnv1a(data.join("\n").as_bytes())
    ));
    check(&root.join("tests/golden/mlp-int8.tiny.lpa"), &golden);
}
