//! Every `.graph` under `examples/` (whatever models are there) runs through
//! the front end and the timing model on every preset and launch mode:
//! finite, positive figures, each node in at most one kernel, every matrix
//! product and convolution a kernel of its own.

use lpu_gpu::{estimate_graph, F32Math, GpuSpec, LaunchMode, Options};

#[test]
fn example_graphs_estimate_on_every_preset() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "graph"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty());
    for path in paths {
        let g = lpu_graph::load_graph(&path).unwrap_or_else(|e| panic!("{e}"));
        let ks = lpu_gpu::kernels(&g, F32Math::Tf32);
        assert!(!ks.is_empty(), "{}", path.display());
        let mut seen = std::collections::BTreeSet::new();
        for k in &ks {
            for n in &k.nodes {
                assert!(
                    seen.insert(n.clone()),
                    "{}: node {n} in two kernels",
                    path.display()
                );
            }
        }
        for n in &g.nodes {
            let product = ["MatMul", "Gemm", "MatMulInteger", "Conv", "ConvInteger"]
                .contains(&n.op_type.as_str());
            let all_const = n
                .inputs
                .iter()
                .filter(|t| !t.is_empty())
                .all(|t| g.initializers.contains_key(t));
            if product && !all_const {
                assert!(
                    ks.iter().any(|k| k.name == n.name),
                    "{}: {} ({}) has no kernel",
                    path.display(),
                    n.name,
                    n.op_type
                );
            }
        }
        for name in GpuSpec::PRESETS {
            let spec = GpuSpec::preset(name).expect("preset");
            for mode in [LaunchMode::Graphs, LaunchMode::Launch, LaunchMode::Eager] {
                let e = estimate_graph(&g, &spec, &Options { mode, seed: 1 }, F32Math::Tf32);
                let ok = |x: f64| x.is_finite() && x > 0.0;
                assert!(
                    ok(e.latency_us) && ok(e.p50_us) && ok(e.energy.total_j),
                    "{}: {e:?}",
                    path.display()
                );
                assert!(e.p99_us >= e.p50_us);
                assert!(e.latency_us >= e.exec_us - 1e-9);
            }
        }
    }
}
