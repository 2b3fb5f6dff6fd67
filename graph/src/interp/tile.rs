//! The register tile that the f32 `Conv` panels (`conv.rs`) and `MatMul`
//! (`matmul.rs`) share.

/// `acc[r][c]`, from `+0.0`, plus `a_k[r] * b_k[c]` for each `k` ascending
/// (a separate multiply and add), where `a` holds `R` values per `k` and
/// `b` holds `C`: every element's operations in the interpreter's order,
/// with the `R x C` accumulators in registers for the whole sum. Inlined
/// into each caller's `pulp` width, so it vectorizes as wide as the CPU
/// allows with the same bits.
#[inline(always)]
pub(super) fn tile_sum<const R: usize, const C: usize>(a: &[f32], b: &[f32]) -> [[f32; C]; R] {
    let mut acc = [[0.0f32; C]; R];
    for (ak, bk) in a.chunks_exact(R).zip(b.chunks_exact(C)) {
        // Copied into arrays (the lengths hold by construction), so the
        // loops below index without checks.
        let ak: [f32; R] = std::array::from_fn(|r| ak[r]);
        let bk: [f32; C] = std::array::from_fn(|c| bk[c]);
        for r in 0..R {
            for c in 0..C {
                acc[r][c] += ak[r] * bk[c];
            }
        }
    }
    acc
}
