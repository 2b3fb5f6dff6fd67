//! Seeded, platform-independent pseudo-random tensors: `Random(..)`
//! initializers and [`random_inputs`].
//!
//! The generator is `rand_chacha::ChaCha8Rng::seed_from_u64(seed)`. Every value
//! is first made as an `f64`:
//!
//! - uniform `u` in `[0, 1)`: `(rng.next_u64() >> 11) as f64 * 2^-53`;
//! - `Uniform(low, high)`: `low + (high - low) * u`;
//! - `Normal(mean, std)`: Box–Muller with two draws per value,
//!   `u1 = 1 - u` (in `(0, 1]`), `u2 = u`,
//!   `mean + std * sqrt(-2 ln u1) * cos(2π u2)` (the sine half is discarded).
//!
//! and then converted to the element type: `f32` by `as f32`, `f16` by
//! `f16::from_f32(v as f32)`, integers by rounding half to even and clamping
//! to the type's range. The uniform path is exact integer/IEEE arithmetic and
//! so bit-identical everywhere; the normal path uses `ln`, `sqrt` and `cos`
//! of the platform's libm in `f64`, whose rare last-bit differences vanish
//! when the value is rounded to `f32`.
//!
//! [`random_inputs`] gives input number `i` (in declared order) the seed
//! `seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i)`, and draws
//! floats uniform in `[-1, 1)`, `i8` uniform over `[-128, 127]`
//! (`(next_u64() >> 56) as u8 as i8`) and `i32` uniform over `[-1000, 1000]`
//! (`((next_u64() >> 32) % 2001) as i32 - 1000`).

use std::collections::BTreeMap;

use half::f16;
use lpu_isa::{DType, Values};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::format::Dist;
use crate::ir::Graph;
use crate::tensor::Tensor;

/// The generator for `seed`.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A uniform `f64` in `[0, 1)` from the top 53 bits of one `next_u64`.
pub fn uniform01(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal `f64` by Box–Muller (two draws, cosine half).
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - uniform01(rng);
    let u2 = uniform01(rng);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The next sample of `dist` from `rng`, as `f64`.
pub fn sample_one(dist: Dist, rng: &mut ChaCha8Rng) -> f64 {
    match dist {
        Dist::Uniform { low, high } => low + (high - low) * uniform01(rng),
        Dist::Normal { mean, std } => mean + std * standard_normal(rng),
    }
}

/// `n` samples of `dist` from a generator seeded with `seed`, as `f64`.
pub fn sample(dist: Dist, n: usize, seed: u64) -> Vec<f64> {
    let mut r = rng(seed);
    (0..n).map(|_| sample_one(dist, &mut r)).collect()
}

fn to_i8(x: f64) -> i8 {
    x.round_ties_even().clamp(-128.0, 127.0) as i8
}

fn to_i32(x: f64) -> i32 {
    x.round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

/// Builds `n` values of `dtype` from `f64`s produced by `next`, converted as
/// described in the module doc.
fn collect_as(dtype: DType, n: usize, mut next: impl FnMut() -> f64) -> Values {
    match dtype {
        DType::F32 => Values::F32((0..n).map(|_| next() as f32).collect()),
        DType::F16 => Values::F16((0..n).map(|_| f16::from_f32(next() as f32)).collect()),
        DType::I8 => Values::I8((0..n).map(|_| to_i8(next())).collect()),
        DType::I32 => Values::I32((0..n).map(|_| to_i32(next())).collect()),
    }
}

/// Converts `f64` values to `dtype`: floats by `as f32` (then to `f16`
/// rounding to nearest even), integers by rounding half to even and clamping
/// to the type's range (NaN becomes 0).
pub fn convert_f64(dtype: DType, v: &[f64]) -> Values {
    let mut it = v.iter().copied();
    collect_as(dtype, v.len(), || it.next().unwrap_or(0.0))
}

/// `n` values of `dtype` drawn from `dist` with `seed` (what a
/// `Random(seed, dist)` initializer holds).
pub fn random_values(dtype: DType, dist: Dist, n: usize, seed: u64) -> Values {
    let mut r = rng(seed);
    collect_as(dtype, n, || sample_one(dist, &mut r))
}

/// The seed [`random_inputs`] uses for input number `index`.
pub fn input_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index as u64)
}

/// `n` values of `dtype` as [`random_inputs`] draws them.
pub fn random_input_values(dtype: DType, n: usize, seed: u64) -> Values {
    let mut r = rng(seed);
    match dtype {
        DType::F32 => Values::F32(
            (0..n)
                .map(|_| (-1.0 + 2.0 * uniform01(&mut r)) as f32)
                .collect(),
        ),
        DType::F16 => Values::F16(
            (0..n)
                .map(|_| f16::from_f32((-1.0 + 2.0 * uniform01(&mut r)) as f32))
                .collect(),
        ),
        DType::I8 => Values::I8((0..n).map(|_| (r.next_u64() >> 56) as u8 as i8).collect()),
        DType::I32 => Values::I32(
            (0..n)
                .map(|_| ((r.next_u64() >> 32) % 2001) as i32 - 1000)
                .collect(),
        ),
    }
}

/// Random values for every runtime input of `graph` (see the module doc for
/// the exact distributions and per-input seeds).
pub fn random_inputs(graph: &Graph, seed: u64) -> BTreeMap<String, Tensor> {
    graph
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (name, info))| {
            // A validated graph's input shapes are within MAX_ELEMENTS.
            let n = info.len().min(crate::tensor::MAX_ELEMENTS);
            let values = random_input_values(info.dtype, n, input_seed(seed, i));
            let tensor = Tensor {
                shape: info.shape.clone(),
                values,
            };
            (name.clone(), tensor)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_stable() {
        // Pinned: a change to the generator must be deliberate.
        let v = random_values(
            DType::F32,
            Dist::Uniform {
                low: -1.0,
                high: 1.0,
            },
            4,
            42,
        );
        let Values::F32(v) = v else { panic!() };
        let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, PINNED_UNIFORM);
    }

    #[test]
    fn normal_is_stable() {
        let v = random_values(
            DType::F32,
            Dist::Normal {
                mean: 0.0,
                std: 1.0,
            },
            4,
            7,
        );
        let Values::F32(v) = v else { panic!() };
        let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, PINNED_NORMAL);
    }

    #[test]
    fn integers_round_half_even_and_clamp() {
        let v = convert_f64(DType::I8, &[2.5, -2.5, 3.5, 200.0, -1e9, f64::NAN, 0.49]);
        assert_eq!(v, Values::I8(vec![2, -2, 4, 127, -128, 0, 0]));
        let v = convert_f64(DType::I32, &[1e12, -0.5, 1.5]);
        assert_eq!(v, Values::I32(vec![i32::MAX, 0, 2]));
    }

    #[test]
    fn input_values_in_range_and_stable() {
        let Values::I32(v) = random_input_values(DType::I32, 1000, 3) else {
            panic!()
        };
        assert!(v.iter().all(|x| (-1000..=1000).contains(x)));
        let Values::F32(f) = random_input_values(DType::F32, 1000, 3) else {
            panic!()
        };
        assert!(f.iter().all(|x| (-1.0..1.0).contains(x)));
        assert_eq!(
            random_input_values(DType::I8, 8, 9),
            random_input_values(DType::I8, 8, 9)
        );
        assert_ne!(input_seed(1, 0), input_seed(1, 1));
        assert_eq!(input_seed(1, 2), 0x9E37_79B9_7F4A_7C17);
        assert_eq!(
            random_input_values(DType::I8, 6, 5),
            Values::I8(PINNED_I8.to_vec())
        );
    }

    // [0.3637924, 0.90055084, -0.1449672, 0.25472105]
    const PINNED_UNIFORM: [u32; 4] = [0x3eba42ff, 0x3f668a80, 0xbe147248, 0x3e826acc];
    // [0.28880185, -0.22730853, -0.8602025, 0.24327382]
    const PINNED_I8: [i8; 6] = [51, -73, -47, -34, 109, 73];
    const PINNED_NORMAL: [u32; 4] = [0x3e93ddd6, 0xbe68c391, 0xbf5c363b, 0x3e791cc6];
}
