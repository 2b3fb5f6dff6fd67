//! Run-to-run variation of GPU latency, for p50 and p99.
//!
//! A GPU schedules dynamically, so the same inference takes a slightly
//! different time on every run. Published distributions (MLPerf Inference
//! single-stream logs: min, p50, p90, p99, max) show, for batch-1 inference
//! on datacenter GPUs, p99/p50 of about 1.03-1.07 with rare outliers tens
//! of times the median. Most of the spread comes from launch and scheduling
//! overheads, little from the kernels' arithmetic. The model samples runs
//!
//! ```text
//! run = exec x (1 + exec_sigma x z1) + overhead x exp(overhead_sigma x z2)
//! ```
//!
//! with `z1, z2` standard normal, and with probability
//! `outlier_probability` multiplies a run by `outlier_factor`. The samples
//! come from a ChaCha8 generator seeded by the caller, so the same seed
//! gives the same p50 and p99 on every machine.

use crate::spec::Jitter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Runs sampled per estimate.
pub const SAMPLES: usize = 10_000;

/// A standard normal sample (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Sampled latencies (microseconds) of [`SAMPLES`] runs, in sampling order.
pub fn samples(j: &Jitter, exec_us: f64, overhead_us: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..SAMPLES)
        .map(|_| {
            let e = exec_us * (1.0 + j.exec_sigma * normal(&mut rng)).max(0.0);
            let o = overhead_us * (j.overhead_sigma * normal(&mut rng)).exp();
            let outlier = rng.gen::<f64>() < j.outlier_probability;
            (e + o) * if outlier { j.outlier_factor } else { 1.0 }
        })
        .collect()
}

/// p50 and p99 (nearest rank) of the sampled runs.
pub fn percentiles(j: &Jitter, exec_us: f64, overhead_us: f64, seed: u64) -> (f64, f64) {
    let mut s = samples(j, exec_us, overhead_us, seed);
    s.sort_by(f64::total_cmp);
    let at = |q: f64| s[((q * SAMPLES as f64).ceil() as usize).clamp(1, SAMPLES) - 1];
    (at(0.50), at(0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j() -> Jitter {
        Jitter {
            exec_sigma: 0.005,
            overhead_sigma: 0.05,
            outlier_probability: 0.0005,
            outlier_factor: 20.0,
        }
    }

    #[test]
    fn deterministic_for_a_seed() {
        assert_eq!(samples(&j(), 100.0, 50.0, 7), samples(&j(), 100.0, 50.0, 7));
        assert_ne!(samples(&j(), 100.0, 50.0, 7), samples(&j(), 100.0, 50.0, 8));
        assert_eq!(
            percentiles(&j(), 100.0, 50.0, 3),
            percentiles(&j(), 100.0, 50.0, 3)
        );
    }

    #[test]
    fn tails_match_published_batch1_spreads() {
        // Half the latency overhead, as for batch-1 CNNs: p99/p50 within the
        // MLPerf single-stream range of about 1.03-1.07.
        let (p50, p99) = percentiles(&j(), 100.0, 100.0, 0);
        assert!(p99 >= p50);
        assert!((p50 / 200.0 - 1.0).abs() < 0.01, "{p50}");
        let r = p99 / p50;
        assert!((1.03..=1.08).contains(&r), "{r}");
        // Pure compute varies much less.
        let (p50, p99) = percentiles(&j(), 100.0, 0.0, 0);
        assert!(p99 / p50 < 1.02, "{}", p99 / p50);
    }

    #[test]
    fn no_jitter_means_no_spread() {
        let none = Jitter {
            exec_sigma: 0.0,
            overhead_sigma: 0.0,
            outlier_probability: 0.0,
            outlier_factor: 1.0,
        };
        assert_eq!(percentiles(&none, 10.0, 5.0, 1), (15.0, 15.0));
    }
}
