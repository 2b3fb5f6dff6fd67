//! `MatMul` (batched, broadcasting batch dimensions) and `Gemm`.

use lpu_isa::Values;

use super::tile::{wide_registers, WIDE_TILE_COLUMNS};
use super::{as_f32, broadcast_strides, for_each_pair, from_f32};
use crate::infer::broadcast;
use crate::ir::Node;
use crate::tensor::{num_elements, Tensor};

/// `y[i,j]`: `acc = 0.0f32`, then `acc = acc + a(i,k) * b(k,j)` for `k`
/// ascending (a separate multiply and add). The loops run `i`, `k`, `j` with
/// a row of accumulators, which performs exactly these operations in this
/// order for every element, only in a cache-friendly sequence. `b` is read
/// through the accessor once into a row-major `[k, n]` buffer.
pub(super) fn mm_f32(
    m: usize,
    k: usize,
    n: usize,
    a: impl Fn(usize, usize) -> f32,
    b: impl Fn(usize, usize) -> f32,
) -> Vec<f32> {
    let mut bm = Vec::with_capacity(k * n);
    for kk in 0..k {
        for j in 0..n {
            bm.push(b(kk, j));
        }
    }
    mm_rows(m, k, n, a, &bm)
}

/// Rows of `a` in one register tile of [`mm_rows`].
const TILE_ROWS: usize = 4;

/// Columns of `b` in one register tile of [`mm_rows`] where the
/// registers do not allow [`WIDE_TILE_COLUMNS`] ([`wide_registers`]).
const TILE_COLS: usize = 8;

/// [`mm_f32`] with `b` already a row-major `[k, n]` slice. With at least
/// [`TILE_ROWS`] rows, the register tiles ([`mm_tiles`],
/// [`WIDE_TILE_COLUMNS`] wide where the registers allow, else
/// [`TILE_COLS`]); fewer rows take the
/// row loop, which reads `b` once. Both perform every element's
/// operations in [`mm_f32`]'s order.
fn mm_rows(m: usize, k: usize, n: usize, a: impl Fn(usize, usize) -> f32, b: &[f32]) -> Vec<f32> {
    if m >= TILE_ROWS && n > 0 && k > 0 {
        return if wide_registers() {
            mm_tiles::<WIDE_TILE_COLUMNS>(m, k, n, a, b)
        } else {
            mm_tiles::<TILE_COLS>(m, k, n, a, b)
        };
    }
    let mut y = vec![0.0f32; m * n];
    if n > 0 {
        // A row of accumulators per row of `a`, each row of `b` read once.
        for (i, row) in y.chunks_mut(n).enumerate() {
            for (kk, brow) in b.chunks_exact(n).enumerate() {
                let av = a(i, kk);
                for (acc, &bv) in row.iter_mut().zip(brow) {
                    *acc += av * bv;
                }
            }
        }
    }
    y
}

/// [`mm_rows`]' tiles of [`TILE_ROWS`] rows by `TC` columns: `a` gathered
/// into blocks of [`TILE_ROWS`] rows and `b` into blocks of `TC` columns
/// (zeros past the edges, whose sums are dropped), each tile of
/// accumulators in registers for the whole sum over `k`. Needs
/// `m, k, n > 0`.
fn mm_tiles<const TC: usize>(
    m: usize,
    k: usize,
    n: usize,
    a: impl Fn(usize, usize) -> f32,
    b: &[f32],
) -> Vec<f32> {
    let mut y = vec![0.0f32; m * n];
    let (rb, cb) = (m.div_ceil(TILE_ROWS), n.div_ceil(TC));
    let mut ap = vec![0.0f32; rb * k * TILE_ROWS];
    for (blk, rows) in ap.chunks_exact_mut(k * TILE_ROWS).enumerate() {
        for (kk, r) in rows.chunks_exact_mut(TILE_ROWS).enumerate() {
            for (p, v) in r.iter_mut().enumerate() {
                let i = blk * TILE_ROWS + p;
                if i < m {
                    *v = a(i, kk);
                }
            }
        }
    }
    let mut bp = vec![0.0f32; cb * k * TC];
    for (blk, cols) in bp.chunks_exact_mut(k * TC).enumerate() {
        let j0 = blk * TC;
        let width = (n - j0).min(TC);
        for (kk, c) in cols.chunks_exact_mut(TC).enumerate() {
            c[..width].copy_from_slice(&b[kk * n + j0..][..width]);
        }
    }
    pulp::Arch::new().dispatch(Tiles::<TC> {
        shape: (m, k, n),
        ap: &ap,
        bp: &bp,
        y: &mut y,
    });
    y
}

/// The register tiles of [`mm_tiles`] over the gathered blocks `ap` (by
/// row block, `k`, row) and `bp` (by column block, `k`, column), compiled
/// for AVX2 too and picked at run time by `pulp` (as the interpreter's f32
/// `Conv`): a multiply and an add per element in every width, so the same
/// bits on every machine.
struct Tiles<'a, const TC: usize> {
    shape: (usize, usize, usize),
    ap: &'a [f32],
    bp: &'a [f32],
    y: &'a mut [f32],
}

impl<const TC: usize> pulp::WithSimd for Tiles<'_, TC> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        const TR: usize = TILE_ROWS;
        let Tiles {
            shape: (m, k, n),
            ap,
            bp,
            y,
        } = self;
        for (rblk, arows) in ap.chunks_exact(k * TR).enumerate() {
            for (cblk, bcols) in bp.chunks_exact(k * TC).enumerate() {
                let acc = super::tile::tile_sum::<TR, TC>(arows, bcols);
                let (i0, j0) = (rblk * TR, cblk * TC);
                for (p, row) in acc.iter().enumerate().take(m - i0) {
                    let width = (n - j0).min(TC);
                    y[(i0 + p) * n + j0..][..width].copy_from_slice(&row[..width]);
                }
            }
        }
    }
}

pub(super) fn matmul(a: &Tensor, b: &Tensor, out: &[usize]) -> Result<Values, String> {
    let dtype = a.dtype();
    let (av, bv) = (as_f32(&a.values)?, as_f32(&b.values)?);
    let a2: Vec<usize> = if a.shape.len() == 1 {
        vec![1, a.shape[0]]
    } else {
        a.shape.clone()
    };
    let b2: Vec<usize> = if b.shape.len() == 1 {
        vec![b.shape[0], 1]
    } else {
        b.shape.clone()
    };
    let (ra, rb) = (a2.len(), b2.len());
    if ra < 2 || rb < 2 {
        return Err("MatMul needs inputs of rank 1 or more".into());
    }
    let (m, k, k2, n) = (a2[ra - 2], a2[ra - 1], b2[rb - 2], b2[rb - 1]);
    let (abatch, bbatch) = (&a2[..ra - 2], &b2[..rb - 2]);
    let batch = broadcast(abatch, bbatch).ok_or("batch dimensions do not broadcast")?;
    if k != k2 || num_elements(&a2) != Some(av.len()) || num_elements(&b2) != Some(bv.len()) {
        return Err("MatMul: inconsistent shapes".into());
    }
    // Batch strides in units of whole matrices, times the matrix size.
    let sa: Vec<usize> = broadcast_strides(abatch, &batch)
        .iter()
        .map(|s| s * m * k)
        .collect();
    let sb: Vec<usize> = broadcast_strides(bbatch, &batch)
        .iter()
        .map(|s| s * k * n)
        .collect();
    let mut y = Vec::with_capacity(num_elements(out).unwrap_or(0));
    for_each_pair(&batch, &sa, &sb, |oa, ob| {
        y.extend(mm_rows(
            m,
            k,
            n,
            |i, kk| av[oa + i * k + kk],
            &bv[ob..ob + k * n],
        ));
    });
    Ok(from_f32(dtype, y))
}

pub(super) fn gemm(
    node: &Node,
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
) -> Result<Values, String> {
    let alpha = node.attr_float("alpha", 1.0).map_err(|e| e.to_string())?;
    let beta = node.attr_float("beta", 1.0).map_err(|e| e.to_string())?;
    let ta = node.attr_int("transA", 0).map_err(|e| e.to_string())? != 0;
    let tb = node.attr_int("transB", 0).map_err(|e| e.to_string())? != 0;
    let dtype = a.dtype();
    let (av, bv) = (as_f32(&a.values)?, as_f32(&b.values)?);
    let (&[a0, a1], &[b0, b1]) = (a.shape.as_slice(), b.shape.as_slice()) else {
        return Err("Gemm needs rank-2 A and B".into());
    };
    let (m, k) = if ta { (a1, a0) } else { (a0, a1) };
    let (k2, n) = if tb { (b1, b0) } else { (b0, b1) };
    if k != k2 || av.len() != a0 * a1 || bv.len() != b0 * b1 {
        return Err("Gemm: inconsistent shapes".into());
    }
    let mut y = mm_f32(
        m,
        k,
        n,
        |i, kk| if ta { av[kk * m + i] } else { av[i * k + kk] },
        |kk, j| if tb { bv[j * k + kk] } else { bv[kk * n + j] },
    );
    if alpha != 1.0 {
        for v in &mut y {
            *v *= alpha;
        }
    }
    if let Some(c) = c {
        let cv = as_f32(&c.values)?;
        let out = [m, n];
        if num_elements(&c.shape) != Some(cv.len())
            || broadcast(&c.shape, &out).as_deref() != Some(&out[..])
        {
            return Err(format!("C {:?} does not broadcast to [{m}, {n}]", c.shape));
        }
        let sc = broadcast_strides(&c.shape, &out);
        let zero = vec![0; 2];
        let mut i = 0;
        for_each_pair(&out, &sc, &zero, |oc, _| {
            let cval = if beta == 1.0 { cv[oc] } else { beta * cv[oc] };
            y[i] += cval;
            i += 1;
        });
    }
    Ok(from_f32(dtype, y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The tiles and the row loop give the bits of the plain sum
        /// `acc = 0.0; acc += a[i][k] * b[k][j]` for `k` ascending (any NaN
        /// counts as one value: its payload may depend on operand order).
        #[test]
        fn mm_rows_is_the_plain_sum(
            (m, k, n) in (0usize..11, 0usize..7, 0usize..19),
            seed in any::<u64>(),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let pick = |r: &mut rand_chacha::ChaCha8Rng| match r.gen_range(0..16) {
                0 => -0.0f32,
                1 => 0.0,
                2 => f32::INFINITY,
                3 => 1e38,
                _ => r.gen_range(-2.0f32..2.0),
            };
            let a: Vec<f32> = (0..m * k).map(|_| pick(&mut rng)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| pick(&mut rng)).collect();
            let bits = |v: f32| if v.is_nan() { u32::MAX } else { v.to_bits() };
            let mut want = Vec::with_capacity(m * n);
            for i in 0..m {
                for j in 0..n {
                    let mut acc = 0.0f32;
                    for kk in 0..k {
                        acc += a[i * k + kk] * b[kk * n + j];
                    }
                    want.push(bits(acc));
                }
            }
            let got: Vec<u32> = mm_rows(m, k, n, |i, kk| a[i * k + kk], &b)
                .into_iter()
                .map(bits)
                .collect();
            prop_assert_eq!(got, want.clone());
            // Both tile widths, whichever this CPU picks.
            if m.min(k).min(n) > 0 {
                let a = |i: usize, kk: usize| a[i * k + kk];
                let narrow: Vec<u32> = mm_tiles::<TILE_COLS>(m, k, n, a, &b).into_iter().map(bits).collect();
                prop_assert_eq!(narrow, want.clone());
                let wide: Vec<u32> = mm_tiles::<WIDE_TILE_COLUMNS>(m, k, n, a, &b).into_iter().map(bits).collect();
                prop_assert_eq!(wide, want);
            }
        }
    }
}
