//! Determinism: compiling and simulating the same thing twice gives the same
//! bytes, and the binary and assembly forms round-trip exactly.

mod common;

use common::{lpc, lpsim, run_ok, TempDir, MLP, MLP_INT8};
use std::path::Path;

fn compile_to(model: &str, out: &Path) {
    run_ok(
        lpc()
            .args(["compile", model, "--chip", "tiny", "-o"])
            .arg(out),
    );
}

#[test]
fn compiling_twice_gives_identical_files() {
    let tmp = TempDir::new("det-compile");
    for (k, model) in [MLP, MLP_INT8].into_iter().enumerate() {
        for ext in ["lpb", "lpa"] {
            let a = tmp.join(&format!("a{k}.{ext}"));
            let b = tmp.join(&format!("b{k}.{ext}"));
            compile_to(model, &a);
            compile_to(model, &b);
            let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
            assert!(!x.is_empty());
            assert!(x == y, "{model}: two compilations to .{ext} differ");
        }
        // The library agrees with the binary, byte for byte.
        let p = common::compile(&common::load(model), "tiny");
        let lpb = std::fs::read(tmp.join(&format!("a{k}.lpb"))).unwrap();
        assert!(p.to_bytes() == lpb, "{model}: library and lpc differ");
        let lpa = std::fs::read_to_string(tmp.join(&format!("a{k}.lpa"))).unwrap();
        assert!(
            lpu_isa::asm::disassemble(&p) == lpa,
            "{model}: library disassembly and lpc .lpa differ"
        );
        // `lpc disasm` of the binary prints the same text.
        let r = run_ok(lpc().arg("disasm").arg(tmp.join(&format!("a{k}.lpb"))));
        assert!(r.stdout == lpa, "{model}: lpc disasm differs from .lpa");
        // `lpc asm` of the text gives back the binary.
        let back = tmp.join(&format!("back{k}.lpb"));
        run_ok(
            lpc()
                .arg("asm")
                .arg(tmp.join(&format!("a{k}.lpa")))
                .arg("-o")
                .arg(&back),
        );
        assert!(
            std::fs::read(&back).unwrap() == lpb,
            "{model}: lpc asm does not reproduce the .lpb"
        );
    }
}

#[test]
fn json_report_is_deterministic() {
    for model in [MLP, MLP_INT8] {
        let run = || {
            run_ok(lpsim().args([
                "run", model, "--chip", "tiny", "--json", "--check", "--seed", "5",
            ]))
            .stdout
        };
        let (a, b) = (run(), run());
        assert!(a == b, "{model}: two --json runs differ");
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["check"]["passed"], true, "{a}");
    }
}

#[test]
fn traces_are_deterministic() {
    let tmp = TempDir::new("det-trace");
    for (k, model) in [MLP_INT8, MLP].into_iter().enumerate() {
        let dirs = [tmp.join(&format!("t{k}a")), tmp.join(&format!("t{k}b"))];
        for d in &dirs {
            run_ok(
                lpsim()
                    .args(["run", model, "--chip", "tiny", "--json", "--trace"])
                    .arg(d),
            );
        }
        for f in ["trace.txt", "trace.json"] {
            let a = std::fs::read(dirs[0].join(f)).unwrap();
            let b = std::fs::read(dirs[1].join(f)).unwrap();
            assert!(!a.is_empty(), "{model}: empty {f}");
            assert!(a == b, "{model}: two runs wrote different {f}");
        }
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dirs[0].join("trace.json")).unwrap())
                .expect("trace.json is JSON");
        assert!(json.is_object() || json.is_array());
    }
}

#[test]
fn binary_and_assembly_round_trip() {
    for model in [MLP, MLP_INT8] {
        let g = common::load(model);
        for chip in ["tiny", "tsp"] {
            let p = common::compile(&g, chip);
            let bytes = p.to_bytes();
            let from_bin = lpu_isa::Program::from_bytes(&bytes).expect("decode");
            assert!(
                from_bin == p,
                "{model}/{chip}: from_bytes(to_bytes(p)) != p"
            );
            let text = lpu_isa::asm::disassemble(&from_bin);
            let re = lpu_isa::asm::assemble(&text).expect("assemble disassembly");
            assert!(re == p, "{model}/{chip}: assemble(disassemble(p)) != p");
            assert!(
                re.to_bytes() == bytes,
                "{model}/{chip}: binary -> asm -> binary changed bytes"
            );
            assert!(
                lpu_isa::asm::disassemble(&re) == text,
                "{model}/{chip}: disassemble(assemble(text)) != text"
            );
        }
    }
}
