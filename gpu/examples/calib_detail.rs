//! Prints each calibration workload's kernel breakdown
//! (`cargo run -p lpu-gpu --example calib_detail [ID]`).
fn main() {
    let want = std::env::args().nth(1);
    for r in lpu_gpu::calib::evaluate() {
        let pt = &r.point;
        let mut spec = lpu_gpu::GpuSpec::preset(pt.preset).expect("preset");
        if let Some(bw) = pt.hbm_gbps {
            spec.hbm_gbps = bw;
        }
        let e = lpu_gpu::estimate(
            &spec,
            &pt.kernels,
            &lpu_gpu::Options {
                mode: pt.mode,
                seed: 0,
            },
        );
        println!(
            "{:<18} kernels {:>4}  latency {:>9.1} us  exec {:>9.1}  overhead {:>8.1}  p50 {:>9.1} p99 {:>9.1}  energy {:.4} J",
            pt.id, e.kernels.len(), e.latency_us, e.exec_us, e.overhead_us, e.p50_us, e.p99_us, e.energy.total_j
        );
        if want.as_deref() == Some(pt.id) {
            for k in &e.kernels {
                println!(
                    "  {:<20} {:?} {:>8} {:>8.2} us {:?} flops {:.3e} hbm {:.3e}",
                    k.name,
                    k.gemm,
                    k.tile.clone().unwrap_or_default(),
                    k.exec_us,
                    k.bound,
                    k.flops,
                    k.hbm_bytes
                );
            }
        }
    }
}
