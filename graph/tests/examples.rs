//! The example graphs in `examples/` load, validate and interpret, and their
//! outputs are in a sensible range.

use std::path::PathBuf;

use lpu_graph::{interpret, load_graph, random_inputs, DType, Graph, Values};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join(name)
}

fn range(v: &Values) -> (f64, f64) {
    (0..v.len())
        .map(|i| v.get_f64(i))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        })
}

/// Runs `g` with every tensor named in `probe` added to the outputs, prints
/// their ranges and returns them.
fn probe(g: &Graph, probe: &[&str], seed: u64) -> Vec<(String, (f64, f64), Values)> {
    let mut g = g.clone();
    for p in probe {
        if !g.outputs.iter().any(|o| o == p) {
            g.outputs.push(p.to_string());
        }
    }
    let out = interpret(&g, &random_inputs(&g, seed)).unwrap();
    probe
        .iter()
        .map(|p| {
            let t = &out[*p];
            let r = range(&t.values);
            println!(
                "{}: {p} {:?} {}: [{:.4}, {:.4}]",
                g.name,
                t.shape,
                t.dtype(),
                r.0,
                r.1
            );
            (p.to_string(), r, t.values.clone())
        })
        .collect()
}

#[test]
fn mlp_loads_and_runs() {
    let g = load_graph(&example("mlp.graph")).unwrap();
    assert_eq!(g.nodes.len(), 7);
    let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["fc1", "bias1", "relu1", "fc2", "bias2", "relu2", "fc3"]
    );
    assert_eq!(g.info("y").unwrap().shape, vec![1, 10]);
    assert_eq!(g.info("h1").unwrap().shape, vec![1, 256]);
    assert_eq!(g.dag.node_count(), 7);
    assert_eq!(g.dag.edge_count(), 6);
    assert_eq!(g.consumers("a1"), vec![3]);
    assert_eq!(g.producer("y"), Some(6));
    assert_eq!(g.producer("x"), None);
    for seed in 0..3 {
        let p = probe(&g, &["h1b", "a2", "y"], seed);
        let (lo, hi) = p[2].1;
        assert!(
            lo > -5.0 && hi < 5.0 && hi - lo > 0.05,
            "y range [{lo}, {hi}]"
        );
    }
}

#[test]
fn mlp_int8_loads_and_runs() {
    let g = load_graph(&example("mlp-int8.graph")).unwrap();
    assert_eq!(g.nodes.len(), 14);
    assert_eq!(g.info("acc1").unwrap().dtype, DType::I32);
    assert_eq!(g.info("a1q").unwrap().dtype, DType::I8);
    for seed in 0..3 {
        let p = probe(&g, &["a1", "a1q", "a2", "a2q", "y"], seed);
        let (lo, hi) = p[4].1;
        assert!(
            lo > -5.0 && hi < 5.0 && hi - lo > 0.05,
            "y range [{lo}, {hi}]"
        );
        for q in [1, 3] {
            let Values::I8(v) = &p[q].2 else { panic!() };
            let saturated = v.iter().filter(|&&x| x == 127).count();
            let max = v.iter().copied().max().unwrap_or(0);
            println!("  {}: max {max}, saturated {saturated}/{}", p[q].0, v.len());
            assert!(
                max >= 40,
                "{} uses too little of the int8 range: max {max}",
                p[q].0
            );
            assert!(
                saturated * 50 <= v.len(),
                "{} saturates too often: {saturated}",
                p[q].0
            );
        }
    }
}

#[test]
fn int8_tracks_fp32_shape_of_computation() {
    // Not the same weights, but both outputs are O(1) logits.
    for name in ["mlp.graph", "mlp-int8.graph"] {
        let g = load_graph(&example(name)).unwrap();
        let out = interpret(&g, &random_inputs(&g, 42)).unwrap();
        let (lo, hi) = range(&out["y"].values);
        println!("{name}: y in [{lo:.4}, {hi:.4}]");
        assert!(lo.is_finite() && hi.is_finite());
    }
}
