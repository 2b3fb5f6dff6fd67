//! Program bytes through the binary loader and validation, and text
//! through the assembler.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = lpu_isa::Program::from_bytes(data) {
        let _ = p.issue_times();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = lpu_isa::asm::assemble(text);
    }
});
