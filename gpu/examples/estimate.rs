//! Estimates a `.graph` on a GPU and prints the kernel table:
//! `cargo run -p lpu-gpu --example estimate -- MODEL.graph [GPU] [MODE]`
//! (GPU: a preset or RON file, default h100; MODE: graphs, launch, eager).
use lpu_gpu::{estimate_graph, F32Math, GpuSpec, LaunchMode, Options};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: estimate MODEL.graph [GPU] [graphs|launch|eager]");
        std::process::exit(2);
    };
    let run = || -> Result<(), String> {
        let g = lpu_graph::load_graph(std::path::Path::new(path)).map_err(|e| e.to_string())?;
        let spec = GpuSpec::resolve(args.get(2).map_or("h100", String::as_str))
            .map_err(|e| e.to_string())?;
        let mode =
            LaunchMode::parse(args.get(3).map_or("graphs", String::as_str)).ok_or("bad mode")?;
        let e = estimate_graph(&g, &spec, &Options { mode, seed: 0 }, F32Math::Tf32);
        println!(
            "{} on {} ({}): {} kernels, latency {:.1} us (p50 {:.1}, p99 {:.1}), exec {:.1} us, {:.3} GFLOP, {:.2} MB HBM, {:.3} mJ",
            g.name, spec.name, mode.name(), e.kernels.len(), e.latency_us, e.p50_us, e.p99_us, e.exec_us,
            e.flops / 1e9, e.hbm_bytes / 1e6, e.energy.total_j * 1e3
        );
        for k in &e.kernels {
            println!(
                "  {:<28} {:<20} {:<5} {:>24} {:>10} {:>9.2} us {:<7} fused {}",
                k.name,
                k.op,
                k.precision.name(),
                k.gemm
                    .map(|d| format!("{}x{}x{} b{}", d[0], d[1], d[2], d[3]))
                    .unwrap_or_default(),
                k.tile.clone().unwrap_or_default(),
                k.exec_us,
                format!("{:?}", k.bound),
                k.nodes.len() - 1
            );
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("estimate: error: {e}");
        std::process::exit(2);
    }
}
