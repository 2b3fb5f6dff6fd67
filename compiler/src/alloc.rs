//! SRAM allocation: places every tensor's vectors in MEM slices and builds
//! the initial memory image.
//!
//! A tensor is viewed as `rows x cols` (cols = its last dimension) and each
//! row is cut into vectors of `lanes` elements; consecutive vectors go to
//! consecutive MEM slices (round-robin) so that they can be read in the same
//! cycle, alternating banks within a slice so that wide accesses overlap.
//! Capacity is checked: when the chip is full the allocator keeps counting, and
//! [`SramAlloc::finish`] reports the shortfall with the largest tensors.
//!
//! Tensors whose last reader has been lowered are [freed](SramAlloc::free);
//! their vectors are reused by later tensors of the same element width (the
//! lowering adds the write-after-read ordering that reuse needs). The peak of
//! live bytes is what must fit.

use crate::CompileError;
use lpu_isa::program::{MemInit, VecLoc};
use lpu_isa::{ChipConfig, DType, SliceKind, Values};

/// Where a tensor lives: its 2-D view and one location per vector.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorLoc {
    /// Element type in SRAM.
    pub dtype: DType,
    /// Rows of the 2-D view.
    pub rows: usize,
    /// Columns of the 2-D view.
    pub cols: usize,
    /// Vectors per row.
    pub vpr: usize,
    /// Vector locations, row-major.
    pub vectors: Vec<VecLoc>,
    /// Storage order of the declared shape's axes (see
    /// `lpu_isa::program::Binding::layout`); empty for row-major.
    pub layout: Vec<usize>,
    /// The shape the declared tensor is viewed as before `layout` (see
    /// `lpu_isa::program::Binding::view`); empty for the declared shape.
    pub view: Vec<usize>,
    /// A broadcast row stored `rows` times (on different MEM slices), so
    /// that consecutive result rows read different copies instead of
    /// queueing on one slice's port: result row `r` reads copy `r % rows`.
    pub replicated: bool,
}

impl TensorLoc {
    /// Vector `j` of the row that result row `r` reads: `r` itself, row 0
    /// of a single stored row, or copy `r % rows` of a replicated row.
    pub fn for_row(&self, r: usize, j: usize) -> VecLoc {
        let row = if self.rows == 1 {
            0
        } else if self.replicated {
            r % self.rows
        } else {
            r
        };
        self.at(row, j)
    }

    /// [`TensorLoc::for_row`], but for a replicated row the first copy from
    /// `r % rows` on whose MEM slice no slice of `avoid` lies (the other
    /// reads of the reading group: a slice has one queue, and two reads on
    /// it would cost a retiming `mov`); copy `r % rows` when every copy is
    /// on such a slice.
    pub fn for_row_avoiding(&self, r: usize, j: usize, avoid: &[u16]) -> VecLoc {
        let first = self.for_row(r, j);
        if !self.replicated || self.rows < 2 {
            return first;
        }
        (0..self.rows)
            .map(|k| self.at((r + k) % self.rows, j))
            .find(|v| !avoid.contains(&v.slice))
            .unwrap_or(first)
    }

    /// Location of vector `j` of row `r`.
    pub fn at(&self, r: usize, j: usize) -> VecLoc {
        self.vectors[r * self.vpr + j]
    }
}

/// The 2-D view of a shape: (rows, cols).
pub fn view2d(shape: &[usize]) -> (usize, usize) {
    match shape.split_last() {
        None => (1, 1),
        Some((last, lead)) => (lead.iter().product(), *last),
    }
}

/// The SRAM allocator and memory-image builder.
pub struct SramAlloc {
    lanes: usize,
    slices: Vec<u16>,
    per_bank: u32,
    banks: u32,
    /// Next free address per (slice, bank).
    next: Vec<Vec<u32>>,
    cursor: usize,
    /// The round-robin position of [`SramAlloc::constant_near`].
    near_cursor: usize,
    /// Freed vectors per (slice index, width), reused first.
    free: std::collections::BTreeMap<(usize, u32), Vec<u32>>,
    used_bytes: u64,
    peak_bytes: u64,
    overflow: bool,
    requests: Vec<(String, u64)>,
    image: Vec<MemInit>,
}

impl SramAlloc {
    /// An empty allocator for `chip`.
    pub fn new(chip: &ChipConfig) -> SramAlloc {
        let slices = chip.positions_of(SliceKind::Mem);
        SramAlloc {
            lanes: chip.lanes() as usize,
            next: vec![vec![0; chip.mem.banks as usize]; slices.len()],
            slices,
            per_bank: chip.mem.addresses_per_bank,
            banks: chip.mem.banks,
            cursor: 0,
            near_cursor: 0,
            free: std::collections::BTreeMap::new(),
            used_bytes: 0,
            peak_bytes: 0,
            overflow: false,
            requests: Vec::new(),
            image: Vec::new(),
        }
    }

    /// Allocates a tensor of `shape` and `dtype`, named `name` in reports.
    pub fn tensor(&mut self, name: &str, shape: &[usize], dtype: DType) -> TensorLoc {
        self.place(name, shape, dtype, true, false, &[])
    }

    /// Places vectors column tile by column tile when `columns_first`, so
    /// consecutive rows of one column tile (the weight rows an `lw` loads
    /// together) land on consecutive MEM slices. `homes[j]`, when present
    /// and not empty, lists the MEM slice positions column tile `j` should
    /// use (it spills to any slice when those are full).
    fn place(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        reuse: bool,
        columns_first: bool,
        homes: &[Vec<u16>],
    ) -> TensorLoc {
        let (rows, cols) = view2d(shape);
        let vpr = cols.div_ceil(self.lanes).max(1);
        let n = rows * vpr;
        let w = dtype.bytes() as u32;
        let mut vectors = vec![VecLoc { slice: 0, addr: 0 }; n];
        for k in 0..n {
            let idx = if columns_first {
                (k % rows) * vpr + k / rows
            } else {
                k
            };
            let home = homes.get(idx % vpr).map_or(&[][..], |h| &h[..]);
            vectors[idx] = self.vector(w, reuse, home);
        }
        let bytes = n as u64 * w as u64 * self.lanes as u64;
        self.used_bytes += bytes;
        self.peak_bytes = self.peak_bytes.max(self.used_bytes);
        self.requests.push((name.to_string(), bytes));
        TensorLoc {
            dtype,
            rows,
            cols,
            vpr,
            vectors,
            layout: vec![],
            view: vec![],
            replicated: false,
        }
    }

    /// Allocates a constant tensor and records its data in the memory image.
    /// `values` holds `rows x cols` elements row-major, already of `dtype`.
    /// Constants never take freed storage: the memory image is in place before
    /// the first cycle, when the freed tensor's old value is still needed.
    pub fn constant(&mut self, name: &str, shape: &[usize], values: &Values) -> TensorLoc {
        self.constant_placed(name, shape, values, false, &[])
    }

    /// A constant placed column tiles first (see [`SramAlloc::place`]): the
    /// layout of matrix weights.
    pub fn constant_columns_first(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &Values,
    ) -> TensorLoc {
        self.constant_placed(name, shape, values, true, &[])
    }

    /// A constant placed row-major on the MEM slice positions `home`
    /// (round-robin among them while any has room, then on any slice): the
    /// copies of a replicated row, near the VXM that reads them.
    pub fn constant_near(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &Values,
        home: &[u16],
    ) -> TensorLoc {
        let vpr = view2d(shape).1.div_ceil(self.lanes).max(1);
        let homes = vec![home.to_vec(); vpr];
        // A round-robin of its own, so that other tensors' goes on where it
        // was and successive rows take successive `home` slices.
        let cursor = std::mem::replace(&mut self.cursor, self.near_cursor);
        let loc = self.constant_placed(name, shape, values, false, &homes);
        self.near_cursor = std::mem::replace(&mut self.cursor, cursor);
        loc
    }

    /// Matrix weights placed column tiles first, column tile `j` on the MEM
    /// slices `homes[j]` (any slice where that list is empty or missing):
    /// the slices nearest the MXM plane that will load the tile, so that two
    /// planes loading weights at once read disjoint slices and their
    /// streams stay short.
    pub fn constant_weights(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &Values,
        homes: &[Vec<u16>],
    ) -> TensorLoc {
        self.constant_placed(name, shape, values, true, homes)
    }

    fn constant_placed(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &Values,
        columns_first: bool,
        homes: &[Vec<u16>],
    ) -> TensorLoc {
        let loc = self.place(name, shape, values.dtype(), false, columns_first, homes);
        if !self.overflow {
            for r in 0..loc.rows {
                for j in 0..loc.vpr {
                    let start = r * loc.cols + j * self.lanes;
                    let len = self.lanes.min(loc.cols - j * self.lanes);
                    let mut v = values.slice_padded(start, len);
                    v = v.slice_padded(0, self.lanes);
                    self.image.push(MemInit {
                        at: loc.at(r, j),
                        values: v,
                    });
                }
            }
        }
        loc
    }

    /// Returns a tensor's vectors for reuse.
    pub fn free(&mut self, t: &TensorLoc) {
        let w = t.dtype.bytes() as u32;
        for v in &t.vectors {
            if let Some(s) = self.slices.iter().position(|x| *x == v.slice) {
                self.free.entry((s, w)).or_default().push(v.addr);
            }
        }
        self.used_bytes -= t.vectors.len() as u64 * w as u64 * self.lanes as u64;
    }

    /// The next vector of width `w`, round-robin over the MEM slices (only
    /// those in `home` while any of them has room, when `home` is not empty).
    fn vector(&mut self, w: u32, reuse: bool, home: &[u16]) -> VecLoc {
        if !home.is_empty() {
            let n = self.slices.len();
            for step in 0..n {
                let s = (self.cursor + step) % n;
                if home.contains(&self.slices[s]) {
                    if let Some(v) = self.fresh_vector(s, w) {
                        return v;
                    }
                }
            }
        }
        let n = self.slices.len();
        for step in (0..n).filter(|_| reuse) {
            let s = (self.cursor + step) % n;
            if let Some(addr) = self.free.get_mut(&(s, w)).and_then(|l| l.pop()) {
                self.cursor = (s + 1) % n;
                return VecLoc {
                    slice: self.slices[s],
                    addr,
                };
            }
        }
        for step in 0..n {
            let s = (self.cursor + step) % n;
            if let Some(v) = self.fresh_vector(s, w) {
                return v;
            }
        }
        self.overflow = true;
        VecLoc {
            slice: self.slices[0],
            addr: 0,
        }
    }

    /// A never-used vector of width `w` on slice index `s`, from its
    /// emptier bank (alternating banks so that wide accesses overlap), or
    /// `None` when the slice is full.
    fn fresh_vector(&mut self, s: usize, w: u32) -> Option<VecLoc> {
        let mut banks: Vec<usize> = (0..self.banks as usize).collect();
        banks.sort_by_key(|&b| (self.next[s][b], b));
        for b in banks {
            if self.next[s][b] + w <= self.per_bank {
                let addr = b as u32 * self.per_bank + self.next[s][b];
                self.next[s][b] += w;
                self.cursor = (s + 1) % self.slices.len();
                return Some(VecLoc {
                    slice: self.slices[s],
                    addr,
                });
            }
        }
        None
    }

    /// Bytes live now.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Most bytes live at any point.
    pub fn peak_bytes(&self) -> u64 {
        self.peak_bytes
    }

    /// The memory image, or the capacity error with the numbers.
    pub fn finish(self, model: &str, chip: &ChipConfig) -> Result<Vec<MemInit>, CompileError> {
        if !self.overflow {
            return Ok(self.image);
        }
        let mut req = self.requests;
        req.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let largest = req
            .iter()
            .take(5)
            .map(|(n, b)| format!("{n} ({:.2} MiB)", mib(*b)))
            .collect::<Vec<_>>()
            .join(", ");
        Err(CompileError::DoesNotFit {
            model: model.to_string(),
            chip: chip.name.clone(),
            required_mib: mib(self.peak_bytes),
            available_mib: mib(chip.sram_capacity_bytes()),
            largest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ChipConfig {
        ChipConfig::preset("tiny").expect("tiny")
    }

    #[test]
    fn views_and_round_robin_placement() {
        assert_eq!(view2d(&[]), (1, 1));
        assert_eq!(view2d(&[7]), (1, 7));
        assert_eq!(view2d(&[2, 3, 5]), (6, 5));
        let mut a = SramAlloc::new(&tiny());
        let t = a.tensor("t", &[2, 20], DType::F32);
        // 20 columns = 2 vectors of 16 lanes per row, on 4 different slices.
        assert_eq!(t.vpr, 2);
        let slices: Vec<u16> = t.vectors.iter().map(|v| v.slice).collect();
        assert_eq!(slices, vec![2, 3, 4, 5]);
        assert_eq!(a.used_bytes(), 4 * 4 * 16);
    }

    #[test]
    fn constants_are_padded_into_the_image() {
        let mut a = SramAlloc::new(&tiny());
        let v = Values::I8((1..=20).collect());
        let t = a.constant("c", &[20], &v);
        let image = a.finish("m", &tiny()).expect("fits");
        assert_eq!(image.len(), 2);
        assert_eq!(image[1].at, t.at(0, 1));
        assert_eq!(
            image[1].values,
            Values::I8(vec![17, 18, 19, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        );
    }

    #[test]
    fn freed_vectors_are_reused_but_not_by_constants() {
        let mut a = SramAlloc::new(&tiny());
        let t = a.tensor("t", &[16], DType::I8);
        a.free(&t);
        assert_eq!(a.used_bytes(), 0);
        let c = a.constant("c", &[16], &Values::I8(vec![1; 16]));
        assert_ne!(c.vectors, t.vectors);
        let u = a.tensor("u", &[16], DType::I8);
        assert_eq!(u.vectors, t.vectors);
        // A different width does not take the freed slot.
        let mut b = SramAlloc::new(&tiny());
        let t = b.tensor("t", &[16], DType::I8);
        b.free(&t);
        assert_ne!(b.tensor("f", &[16], DType::F32).vectors[0], t.vectors[0]);
        assert_eq!(b.peak_bytes(), 64);
    }

    #[test]
    fn overflow_reports_the_numbers() {
        let mut a = SramAlloc::new(&tiny());
        a.tensor("big", &[1024, 1024], DType::F32);
        a.tensor("small", &[16], DType::I8);
        let e = a
            .finish("m", &tiny())
            .expect_err("does not fit")
            .to_string();
        assert!(e.contains("needs 4.00 MiB"), "{e}");
        assert!(e.contains("has 2.00 MiB"), "{e}");
        assert!(e.contains("big (4.00 MiB)"), "{e}");
    }
}
