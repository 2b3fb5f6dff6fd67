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

/// Columns (or output channels) of the wide tile: 4 rows by this many
/// sums, where [`wide_registers`] says they fit; the narrow tiles are 8.
pub(super) const WIDE_TILE_COLUMNS: usize = 16;

/// Whether this CPU keeps a tile of 4 x [`WIDE_TILE_COLUMNS`] `f32` sums
/// in registers: eight
/// AVX2 registers, enough independent sums to keep both of a core's adders
/// busy (a 4 x 8 tile's four sums each wait on their own last add). That
/// is `pulp`'s AVX2 level on x86-64, where SSE2's 4-lane registers would
/// spill them, and any other architecture's SIMD, whose registers are as
/// many as the lanes need.
pub(super) fn wide_registers() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        pulp::x86::V3::try_new().is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}
