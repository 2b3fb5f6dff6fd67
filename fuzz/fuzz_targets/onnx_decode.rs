//! ONNX bytes through the decoder, the importer and the `.graph` loader:
//! any input gives a graph or an error, never a panic, a hang or an
//! unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let base = std::path::Path::new(".");
    let mut opts = lpu_onnx::ImportOptions::default();
    opts.dims.insert("batch".into(), 2);
    if let Ok(imp) = lpu_onnx::import_bytes(data, "<fuzz>", base, &opts) {
        let _ = lpu_onnx::write::render(&imp.graph, "m.graph.data");
        let _ = lpu_graph::load::build(imp.graph, "<fuzz>", base);
    }
    if let Ok(t) = <lpu_onnx::proto::TensorProto as prost::Message>::decode(data) {
        // Every element type's decoding, the packed narrow types included.
        if let Ok(c) = lpu_onnx::tensor::Const::from_proto(&t, None) {
            for d in lpu_graph::DType::ALL {
                let _ = c.to_tensor(d);
            }
        }
    }
});
