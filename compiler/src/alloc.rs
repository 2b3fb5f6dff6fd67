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
//! live bytes is what must fit. Under [`Reuse::FreshFirst`] freed vectors
//! are taken only once the never-used ones run out, and then the earliest
//! freed first: a reused vector orders its new writer after its old
//! readers, and on a chip with room to spare that ordering is a stall the
//! schedule need not have (ResNet-50 int8 on `tsp`: 80,686 cycles reusing
//! the latest freed vector first, 79,620 the earliest, 78,626 fresh first).

use crate::CompileError;
use lpu_isa::program::{MemInit, VecLoc};
use lpu_isa::{ChipConfig, DType, SliceKind, Values};

/// The MEM slices each vector of a matrix should live on, by K-tile (every
/// `tile_rows` rows) and column tile: `slices[kt * vpr + j]` for K-tile
/// `kt` and column tile `j`. An empty list (or a missing one) is no
/// preference; the default is none anywhere.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Homes {
    /// Rows per K-tile (`usize::MAX`: one K-tile, homes per column tile).
    pub tile_rows: usize,
    /// Column tiles per row.
    pub vpr: usize,
    /// Slice positions per K-tile and column tile.
    pub slices: Vec<Vec<u16>>,
}

impl Homes {
    /// The same slices for every vector of a `vpr`-vector-wide tensor.
    pub fn everywhere(vpr: usize, slices: &[u16]) -> Homes {
        Homes {
            tile_rows: usize::MAX,
            vpr,
            slices: vec![slices.to_vec(); vpr],
        }
    }

    /// The preferred slices of row `r`'s vector `j`.
    fn of(&self, r: usize, j: usize) -> &[u16] {
        let kt = r / self.tile_rows.max(1);
        kt.checked_mul(self.vpr)
            .and_then(|i| i.checked_add(j))
            .and_then(|i| self.slices.get(i))
            .map_or(&[], Vec::as_slice)
    }
}

/// One run of a lookup table's rows in one bank of one MEM slice, for
/// `gather` (see [`SramAlloc::constant_table`]): rows `lo .. lo + rows`,
/// vector `j` of row `r` at address `addr + (j * rows + r - lo) * w` for
/// elements of `w` bytes, so that one column tile's vectors are a window of
/// consecutive vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableChunk {
    /// MEM slice position.
    pub slice: u16,
    /// Address of vector 0 of row `lo`.
    pub addr: u32,
    /// The first row it holds.
    pub lo: usize,
    /// How many rows it holds.
    pub rows: usize,
}

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

/// Which vectors [`SramAlloc`] hands out first to a tensor that may reuse
/// freed ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Freed vectors once `age` bytes have been allocated since they were
    /// freed (earliest freed first), else never-used ones while any slice
    /// has one, else any freed one: fewer write-after-read orderings, at a
    /// footprint of about `age` bytes more.
    FreshFirst {
        /// Bytes allocated after a vector is freed before it is preferred.
        age: u64,
    },
    /// Freed vectors first (earliest freed first), then never-used ones:
    /// the smallest footprint.
    FreedFirst,
}

/// The SRAM allocator and memory-image builder.
pub struct SramAlloc {
    /// The order in which vectors are handed out.
    reuse: Reuse,
    lanes: usize,
    slices: Vec<u16>,
    per_bank: u32,
    banks: u32,
    /// Next free address per (slice, bank).
    next: Vec<Vec<u32>>,
    cursor: usize,
    /// The round-robin position of [`SramAlloc::constant_near`].
    near_cursor: usize,
    /// Freed vectors per (slice index, width), earliest freed first.
    /// Each entry is the address and [`SramAlloc::allocated`] when freed.
    /// Indexed by width, then slice index.
    free: std::collections::BTreeMap<u32, Vec<std::collections::VecDeque<(u32, u64)>>>,
    /// Bytes allocated so far outside a home (never decreasing): the clock
    /// of [`Reuse`]'s `age`. Constants placed on their home slices (matrix
    /// weights, replicated rows) do not advance it: counting them too made
    /// freed vectors eligible sooner, 78,704 cycles against 78,657 on
    /// ResNet-50 and 73,071 against 71,828 on GPT-2 decode (int8, `tsp`).
    allocated: u64,
    used_bytes: u64,
    peak_bytes: u64,
    overflow: bool,
    requests: Vec<(String, u64)>,
    image: Vec<MemInit>,
}

impl SramAlloc {
    /// An empty allocator for `chip` that reuses freed vectors first.
    pub fn new(chip: &ChipConfig) -> SramAlloc {
        SramAlloc::with_reuse(chip, Reuse::FreedFirst)
    }

    /// An empty allocator for `chip` handing out vectors in `reuse` order.
    pub fn with_reuse(chip: &ChipConfig, reuse: Reuse) -> SramAlloc {
        let slices = chip.positions_of(SliceKind::Mem);
        SramAlloc {
            reuse,
            lanes: chip.lanes() as usize,
            next: vec![vec![0; chip.mem.banks as usize]; slices.len()],
            slices,
            per_bank: chip.mem.addresses_per_bank,
            banks: chip.mem.banks,
            cursor: 0,
            near_cursor: 0,
            free: std::collections::BTreeMap::new(),
            allocated: 0,
            used_bytes: 0,
            peak_bytes: 0,
            overflow: false,
            requests: Vec::new(),
            image: Vec::new(),
        }
    }

    /// Allocates a tensor of `shape` and `dtype`, named `name` in reports.
    pub fn tensor(&mut self, name: &str, shape: &[usize], dtype: DType) -> TensorLoc {
        self.place(name, shape, dtype, true, false, &Homes::default())
    }

    /// Places vectors column tile by column tile when `columns_first`, so
    /// consecutive rows of one column tile (the weight rows an `lw` loads
    /// together) land on consecutive MEM slices. `homes` lists the MEM
    /// slice positions each vector should use (it spills to any slice when
    /// those are full).
    fn place(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        reuse: bool,
        columns_first: bool,
        homes: &Homes,
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
            vectors[idx] = self.vector(w, reuse, homes.of(idx / vpr, idx % vpr));
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
        self.constant_placed(name, shape, values, false, &Homes::default())
    }

    /// A constant placed column tiles first (see [`SramAlloc::place`]): the
    /// layout of matrix weights.
    pub fn constant_columns_first(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &Values,
    ) -> TensorLoc {
        self.constant_placed(name, shape, values, true, &Homes::default())
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
        let homes = Homes::everywhere(vpr, home);
        // A round-robin of its own, so that other tensors' goes on where it
        // was and successive rows take successive `home` slices.
        let cursor = std::mem::replace(&mut self.cursor, self.near_cursor);
        let loc = self.constant_placed(name, shape, values, false, &homes);
        self.near_cursor = std::mem::replace(&mut self.cursor, cursor);
        loc
    }

    /// Matrix weights placed column tiles first, each K-tile of each column
    /// tile on its `homes` (any slice where that list is empty or missing):
    /// the slices nearest the MXM plane that will load the tile, so that two
    /// planes loading weights at once read disjoint slices and their
    /// streams stay short.
    pub fn constant_weights(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &Values,
        homes: &Homes,
    ) -> TensorLoc {
        self.constant_placed(name, shape, values, true, homes)
    }

    fn constant_placed(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &Values,
        columns_first: bool,
        homes: &Homes,
    ) -> TensorLoc {
        let loc = self.place(name, shape, values.dtype(), false, columns_first, homes);
        if !self.overflow {
            for r in 0..loc.rows {
                for j in 0..loc.vpr {
                    let start = r * loc.cols + j * self.lanes;
                    let len = self.lanes.min(loc.cols - j * self.lanes);
                    let v = values.slice_padded_to(start, len, self.lanes);
                    self.image.push(MemInit {
                        at: loc.at(r, j),
                        values: v,
                    });
                }
            }
        }
        loc
    }

    /// Places a constant `rows x cols` lookup table (`values` row-major, of
    /// its element type) for `gather`: in runs of whole rows, each run in
    /// one bank of one MEM slice (column tile by column tile, see
    /// [`TableChunk`]), one bank per slice while there are slices left, so
    /// that the gathers of one looked-up vector run on as many MEM queues
    /// as there are runs. The banks with the most
    /// never-used room come first (the farther from `keep_clear`, the MEM
    /// slices the VXM reads most, on a tie), so that the table takes few
    /// runs: every run is one more gather per looked-up vector.
    pub fn constant_table(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &Values,
        keep_clear: u16,
    ) -> Vec<TableChunk> {
        let (rows, cols) = view2d(shape);
        let vpr = cols.div_ceil(self.lanes).max(1);
        let w = values.dtype().bytes() as u32;
        let per_row = vpr as u32 * w;
        // (rank of the bank within its slice, room in rows, distance from
        // `keep_clear`, slice index, bank): each slice's roomiest bank
        // first, its other banks only once those are full.
        let mut banks: Vec<(usize, u32, u16, usize, usize)> = Vec::new();
        for s in 0..self.slices.len() {
            let mut own: Vec<(u32, usize)> = (0..self.banks as usize)
                .map(|b| ((self.per_bank - self.next[s][b]) / per_row, b))
                .filter(|&(room, _)| room > 0)
                .collect();
            own.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let dist = self.slices[s].abs_diff(keep_clear);
            banks.extend(
                own.into_iter()
                    .enumerate()
                    .map(|(rank, (room, b))| (rank, room, dist, s, b)),
            );
        }
        banks.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(b.1.cmp(&a.1))
                .then(b.2.cmp(&a.2))
                .then(a.3.cmp(&b.3))
        });
        let mut chunks = Vec::new();
        let mut lo = 0usize;
        for (_, room, _, s, b) in banks {
            if lo == rows {
                break;
            }
            let n = (room as usize).min(rows - lo);
            let addr = b as u32 * self.per_bank + self.next[s][b];
            self.next[s][b] += n as u32 * per_row;
            chunks.push(TableChunk {
                slice: self.slices[s],
                addr,
                lo,
                rows: n,
            });
            lo += n;
        }
        let bytes = (rows * vpr) as u64 * w as u64 * self.lanes as u64;
        self.used_bytes += bytes;
        self.peak_bytes = self.peak_bytes.max(self.used_bytes);
        self.requests.push((name.to_string(), bytes));
        if lo < rows {
            self.overflow = true;
            return chunks;
        }
        if !self.overflow {
            for c in &chunks {
                for j in 0..vpr {
                    for r in c.lo..c.lo + c.rows {
                        let start = r * cols + j * self.lanes;
                        let len = self.lanes.min(cols - j * self.lanes);
                        self.image.push(MemInit {
                            at: VecLoc {
                                slice: c.slice,
                                addr: c.addr + (j * c.rows + r - c.lo) as u32 * w,
                            },
                            values: values.slice_padded_to(start, len, self.lanes),
                        });
                    }
                }
            }
        }
        chunks
    }

    /// Returns a tensor's vectors for reuse.
    pub fn free(&mut self, t: &TensorLoc) {
        let w = t.dtype.bytes() as u32;
        for v in &t.vectors {
            if let Some(s) = self.slices.iter().position(|x| *x == v.slice) {
                let n = self.slices.len();
                self.free
                    .entry(w)
                    .or_insert_with(|| vec![Default::default(); n])[s]
                    .push_back((v.addr, self.allocated));
            }
        }
        self.used_bytes -= t.vectors.len() as u64 * w as u64 * self.lanes as u64;
    }

    /// The next vector of width `w`, round-robin over the MEM slices (only
    /// those in `home` while any of them has room, when `home` is not
    /// empty), never-used or freed in the allocator's [`Reuse`] order.
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
        self.allocated += w as u64 * self.lanes as u64;
        // Pass 0: freed vectors old enough (all of them under FreedFirst);
        // pass 1: never-used vectors; pass 2: any freed vector.
        let min_age = match self.reuse {
            Reuse::FreshFirst { age } => age,
            Reuse::FreedFirst => 0,
        };
        let n = self.slices.len();
        for pass in 0..3 {
            if pass != 1 && !reuse {
                continue;
            }
            for step in 0..n {
                let s = (self.cursor + step) % n;
                if pass == 1 {
                    if let Some(v) = self.fresh_vector(s, w) {
                        return v;
                    }
                    continue;
                }
                let now = self.allocated;
                let Some(list) = self.free.get_mut(&w).map(|l| &mut l[s]) else {
                    break;
                };
                let old_enough = |&(_, at): &(u32, u64)| pass == 2 || now - at >= min_age;
                if let Some((addr, _)) = list.front().copied().filter(old_enough) {
                    list.pop_front();
                    self.cursor = (s + 1) % n;
                    return VecLoc {
                        slice: self.slices[s],
                        addr,
                    };
                }
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
        match self.overflow_error(model, chip) {
            None => Ok(self.image),
            Some(e) => Err(e),
        }
    }

    /// The error [`SramAlloc::finish`] gives, once some vector has found
    /// no room (`None` until then).
    pub fn overflow_error(&self, model: &str, chip: &ChipConfig) -> Option<CompileError> {
        if !self.overflow {
            return None;
        }
        let mut req = self.requests.clone();
        req.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let largest = req
            .iter()
            .take(5)
            .map(|(n, b)| format!("{n} ({:.2} MiB)", mib(*b)))
            .collect::<Vec<_>>()
            .join(", ");
        Some(CompileError::DoesNotFit {
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
    fn fresh_first_reuses_the_earliest_freed_once_old_enough() {
        // tiny: 16 lanes, so a [16] i8 tensor is one 16-byte vector.
        let mut a = SramAlloc::with_reuse(&tiny(), Reuse::FreshFirst { age: 48 });
        let t1 = a.tensor("t1", &[16], DType::I8);
        let t2 = a.tensor("t2", &[16], DType::I8);
        a.free(&t1);
        // t1 freed 16 bytes ago: too young, a never-used vector is taken.
        let u = a.tensor("u", &[16], DType::I8);
        assert!(u.vectors != t1.vectors && u.vectors != t2.vectors);
        a.free(&t2);
        let v = a.tensor("v", &[16], DType::I8);
        assert!(v.vectors != t1.vectors && v.vectors != t2.vectors);
        // Each is taken again once 48 bytes were allocated after its free.
        assert_eq!(a.tensor("w", &[16], DType::I8).vectors, t1.vectors);
        assert_eq!(a.tensor("x", &[16], DType::I8).vectors, t2.vectors);
    }

    #[test]
    fn freed_first_reuses_the_earliest_freed() {
        let mut a = SramAlloc::new(&tiny());
        let t1 = a.tensor("t1", &[16], DType::I8);
        let t2 = a.tensor("t2", &[16], DType::I8);
        a.free(&t1);
        a.free(&t2);
        assert_eq!(a.tensor("u", &[16], DType::I8).vectors, t1.vectors);
        assert_eq!(a.tensor("v", &[16], DType::I8).vectors, t2.vectors);
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
