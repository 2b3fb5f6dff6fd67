//! `.graph` text through the parser, validation and inference.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = lpu_graph::parse_graph(text, "<fuzz>", std::path::Path::new("."));
    }
});
