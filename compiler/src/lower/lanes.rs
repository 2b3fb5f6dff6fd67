//! Lane moves: layout changes that move elements to other lanes.
//!
//! A tensor is stored as `rows x cols` (cols: the last axis of its storage
//! shape), each row cut into vectors of `lanes` elements, the last one
//! zero-padded. A Reshape that keeps `cols` (and the storage order) is a free
//! view; anything else that reorders elements (a Reshape, Flatten, Squeeze
//! or Unsqueeze that changes the tiling, a Concat or Split along the last
//! axis, a Transpose, a Slice along the last axis) moves elements to other
//! lanes. [`Lowerer::move_lanes`] lowers every such change the same way,
//! from an element map: output element `e` (row-major in the declared shape)
//! is element `map(e)` of one of the sources.
//!
//! # Pieces
//!
//! Each output vector is cut into *pieces*: maximal runs of output lanes
//! `[p, p + len)` that come from consecutive lanes `[a, a + len)` of one
//! source vector (whose valid lanes are `[0, ns)`; the lanes from `ns` on
//! are the zero padding). A row-major reshape gives at most
//! `ceil(lanes / cols_in) + 1` pieces per vector (usually 1 or 2), a Concat
//! or Split 1 or 2, a Transpose that moves the last axis one piece per lane.
//!
//! A piece is moved with SXM lane shifts (`shl k`: `out[i] = in[i - k]`,
//! zero where `i - k` falls outside the vector). A shift both moves the run
//! and clears the lanes pushed off either end, so a piece is also *cut* out
//! of its source vector by shifting the unwanted lanes off:
//!
//! | the source vector holds, besides the run | shifts |
//! |---|---|
//! | nothing (`a = 0`, `a + len = ns`) | 1 by `p - a` (none when `p = a`) |
//! | valid lanes above the run only | 1 when the run ends the output vector (`p + len = lanes`), else 2: up by `lanes - a - len` (the lanes above fall off), then down to `p` |
//! | valid lanes below the run only | 1 when the run starts the output vector (`p = 0`), else 2: down by `a`, then up by `p` |
//! | valid lanes on both sides | 2 when `p = 0` or `p + len = lanes`, else 3 (up to the top, down to lane 0, up to `p`) |
//!
//! Shifts are pure data movement, so they are exact for every type.
//!
//! # Merging pieces exactly
//!
//! The shifted pieces of one output vector are zero outside their own lanes
//! and are merged with VXM `add`s. A float `add` is not an identity on
//! every value (`-0.0 + 0.0 = +0.0`; NaN payloads are not promised), so the
//! whole move runs on an *integer view* of the bytes: SRAM holds a vector
//! as byte planes at consecutive addresses, and a `read`/`write` of another
//! type of the same width reinterprets them. An f32 (or i32) vector moves as
//! `i32` (wrapping `x + 0 = x`, bit for bit); an i8 vector as `i8`
//! (saturating `x + 0 = x`); an f16 vector, for which no 16-bit integer
//! type exists, as its two byte planes, each an `i8` vector at address `a`
//! and `a + 1`, moved one after the other (plane 1, then plane 0, whose
//! write is the one later readers of the vector wait for). Every value,
//! `-0.0`, infinities and NaN payloads included, arrives unchanged.
//!
//! # Groups and cost
//!
//! One group per output vector (and byte plane) reads the pieces' source
//! vectors, shifts each on the SXM, adds them in a chain on the VXM and
//! writes the result. A group holds at most [`MAX_PIECES`] pieces of a
//! 4-byte view on a chip with 32 streams per direction (`tsp`: 4 of i32, 8
//! of i8), scaled by the streams and the view's width (`tiny`, 8 streams: 1
//! of i32, 4 of i8). Because a group's members issue at fixed offsets, two
//! pieces' shifts may fall on one cycle; where the SXM has fewer queues
//! than that (`tiny`: one), up to [`MAX_MOVS`] VXM `mov`s before a piece's
//! `add` delay its shifts to free cycles, and a piece that would need more
//! starts the next group. An output vector built by several groups is
//! written by the first and read back, added to and rewritten by the
//! others.
//!
//! The storage of a Reshape's result whose elements moved is its own: it is
//! freed with the class of tensors the Reshape aliases otherwise
//! (`free_points`), once for every distinct storage.
//!
//! Per output vector (per byte plane for f16), with `P` pieces and `S`
//! shifts in all (`S <= 3P`, usually `P <= 2` and `S <= 2` for a reshape,
//! Concat or Split):
//!
//! | instructions | count |
//! |---|---|
//! | `read` (i32 / i8 view) | `P`, plus 1 per extra group |
//! | `shl` (SXM, delay 2 each) | `S` |
//! | `add` (VXM, integer) | `P - 1` |
//! | `mov` (VXM, retiming on one-queue SXMs) | at most `MAX_MOVS` per piece, usually none on `tsp` |
//! | `write` | 1, plus 1 per extra group |
//!
//! A vector that is one whole source vector in place (a Concat or Split
//! along a row axis, or one that happens to align with the lanes) costs one
//! read and one write. A Reshape whose every result vector is one whole
//! source vector (`[4, 96]` to `[8, 48]` on 16 lanes, `[2, 640]` to
//! `[4, 320]` on `tsp`) costs nothing: the result is a view that lists the
//! source's vectors in the new order.

use super::{Gb, Lowerer, Place};
use crate::alloc::TensorLoc;
use crate::group::MemberRef;
use crate::CompileError;
use lpu_graph::Node;
use lpu_isa::program::{Binding, VecLoc};
use lpu_isa::{DType, Instr, Opcode};

/// Most pieces one group merges, for 4-byte (i32 view) elements on a chip
/// with 32 streams per direction; scaled down with fewer streams, up with
/// narrower elements.
const MAX_PIECES: usize = 4;

/// Most VXM `mov`s that delay one piece (on a chip with few SXM queues);
/// a piece that would need more starts the next group instead.
const MAX_MOVS: usize = 3;

/// One run of lanes of an output vector that comes from one source vector:
/// output lanes `[to, to + len)` are source lanes `[from, from + len)` of
/// vector `vec` of source `src`, whose lanes `[0, valid)` hold data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    src: usize,
    vec: usize,
    from: usize,
    to: usize,
    len: usize,
    valid: usize,
}

/// The shifts (`shl` amounts, in order) that move a piece to its lanes and
/// clear every other lane (see the module doc's table).
fn shift_plan(p: &Piece, lanes: usize) -> Vec<i64> {
    let l = lanes as i64;
    let (a, len, ns, to) = (p.from as i64, p.len as i64, p.valid as i64, p.to as i64);
    let b = a + len;
    let q = to + len;
    let plan = match (a > 0, b < ns) {
        (false, false) => vec![to - a],
        (false, true) if q == l => vec![to - a],
        (false, true) => vec![l - b, q - l],
        (true, false) if to == 0 => vec![-a],
        (true, false) => vec![-a, to],
        (true, true) if to == 0 => vec![l - b, -(l - len)],
        (true, true) if q == l => vec![-a, to],
        (true, true) => vec![l - b, -(l - len), to],
    };
    plan.into_iter().filter(|k| *k != 0).collect()
}

/// The integer view a vector of `ty` moves as: the type and how many byte
/// planes of that type make one vector (see the module doc).
fn int_view(ty: DType) -> (DType, usize) {
    match ty {
        DType::F32 | DType::I32 => (DType::I32, 1),
        DType::I8 => (DType::I8, 1),
        DType::F16 => (DType::I8, 2),
    }
}

/// For each element of a tensor stored as `loc` with declared shape
/// `shape`, in the declared row-major order, its index in storage order
/// (row-major in `rows x cols`); `None` when the storage does not hold
/// exactly the tensor's elements.
fn storage_index(loc: &TensorLoc, shape: &[usize]) -> Option<Vec<usize>> {
    let total: usize = shape.iter().product();
    if loc.rows * loc.cols != total {
        return None;
    }
    let b = Binding {
        name: String::new(),
        dtype: loc.dtype,
        shape: shape.to_vec(),
        rows: loc.rows,
        cols: loc.cols,
        vectors: vec![],
        layout: loc.layout.clone(),
        view: loc.view.clone(),
    };
    if b.base_shape().iter().product::<usize>() != total {
        return None;
    }
    match b.storage_gather() {
        None => Some((0..total).collect()),
        Some(gather) => {
            let mut pos = vec![0; total];
            for (s, e) in gather.into_iter().enumerate() {
                pos[e] = s;
            }
            Some(pos)
        }
    }
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Normalises a possibly negative axis of a rank-`rank` tensor.
fn norm_axis(axis: i64, rank: usize) -> usize {
    if axis < 0 {
        (axis + rank as i64).max(0) as usize
    } else {
        axis as usize
    }
}

impl<'a> Lowerer<'a> {
    /// The storage and declared shape of input `name`, for a lane move.
    fn lane_source(&mut self, name: &str) -> Result<(TensorLoc, Vec<usize>), CompileError> {
        if self.flat.contains_key(name) {
            return self.unsupported(&format!(
                "'{name}' is a flattened spatial tensor stored channels-last; moving its lanes is not lowered"
            ));
        }
        let loc = self.operand(name)?;
        let Some(info) = self.g.info(name) else {
            return self.unsupported(&format!("tensor '{name}' has no inferred shape"));
        };
        Ok((loc, info.shape.clone()))
    }

    /// Output `k` of the current node, allocated for a lane move (no fused
    /// tail, storage holding exactly its elements).
    fn lane_output(&mut self, k: usize) -> Result<(TensorLoc, Vec<usize>), CompileError> {
        if !self.tails[self.node as usize].is_empty() {
            return self.unsupported("nothing can be fused after a lane move");
        }
        let (name, loc) = self.output(k)?;
        if self.flat.contains_key(&name) {
            return self.unsupported("a lane move into a flattened spatial tensor is not lowered");
        }
        let shape = self
            .g
            .info(&name)
            .map(|i| i.shape.clone())
            .unwrap_or_default();
        Ok((loc, shape))
    }

    /// Reshape, Flatten, Squeeze or Unsqueeze whose result is tiled
    /// differently from its input: every element keeps its row-major index.
    pub(super) fn lower_relayout(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let x = self.lane_source(&xn)?;
        let (y, ys) = self.lane_output(0)?;
        let srcs = [x];
        let plans = self.lane_plans(&srcs, &y, &ys, &|e| (0, e))?;
        let whole = |p: &[Piece]| matches!(p, [q] if q.from == 0 && q.to == 0 && q.len == q.valid);
        if plans.iter().all(|p| whole(p)) {
            // Every result vector is one whole source vector (the tiles
            // line up): a view listing the source's vectors, no
            // instructions. `free_points` frees the class's storage once.
            self.alloc.free(&y);
            let view = TensorLoc {
                vectors: plans.iter().map(|p| srcs[0].0.vectors[p[0].vec]).collect(),
                ..y
            };
            let yn = n.outputs.first().cloned().unwrap_or_default();
            self.locs.insert(yn, view);
            return Ok(());
        }
        self.emit_moves(&srcs, &y, &plans);
        Ok(())
    }

    /// Concat of computed tensors along any axis.
    pub(super) fn lower_concat(&mut self, n: &Node) -> Result<(), CompileError> {
        let mut srcs = Vec::new();
        for i in n.inputs.iter().filter(|i| !i.is_empty()) {
            srcs.push(self.lane_source(i)?);
        }
        let (y, ys) = self.lane_output(0)?;
        let axis = match n.attr_int("axis", 0) {
            Ok(a) => norm_axis(a, ys.len()),
            Err(e) => return self.unsupported(&e.to_string()),
        };
        // Per output coordinate along `axis`: (source, coordinate there).
        let mut along = Vec::new();
        for (k, (_, s)) in srcs.iter().enumerate() {
            along.extend((0..s.get(axis).copied().unwrap_or(0)).map(|c| (k, c)));
        }
        if axis >= ys.len() || along.len() != ys[axis] {
            return self.unsupported("concat shapes do not add up along the axis");
        }
        let inner: usize = ys[axis + 1..].iter().product();
        let dims: Vec<usize> = srcs.iter().map(|(_, s)| s[axis]).collect();
        let map = |e: usize| {
            let (outer, rest) = (e / (ys[axis] * inner), e % (ys[axis] * inner));
            let (c, i) = (rest / inner, rest % inner);
            let (k, ck) = along[c];
            (k, (outer * dims[k] + ck) * inner + i)
        };
        self.move_lanes(&srcs, &y, &ys, &map)
    }

    /// Split of a computed tensor along any axis: each output is a lane
    /// move of its slab.
    pub(super) fn lower_split(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let x = self.lane_source(&xn)?;
        let xs = x.1.clone();
        let axis = match n.attr_int("axis", 0) {
            Ok(a) => norm_axis(a, xs.len()),
            Err(e) => return self.unsupported(&e.to_string()),
        };
        if axis >= xs.len() {
            return self.unsupported("split axis out of range");
        }
        let inner: usize = xs[axis + 1..].iter().product();
        let mut start = 0;
        let srcs = [x];
        for k in 0..n.outputs.len() {
            if n.outputs[k].is_empty() {
                continue;
            }
            let (y, ys) = self.lane_output(k)?;
            let d = ys.get(axis).copied().unwrap_or(0);
            let base = start;
            let map = |e: usize| {
                let (outer, rest) = (e / (d * inner), e % (d * inner));
                (0, (outer * xs[axis] + base) * inner + rest)
            };
            self.move_lanes(&srcs, &y, &ys, &map)?;
            start += d;
        }
        Ok(())
    }

    /// Transpose by the `perm` attribute (reversed axes by default).
    pub(super) fn lower_transpose(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let x = self.lane_source(&xn)?;
        let xs = x.1.clone();
        let perm: Vec<usize> = match n.attr_ints("perm") {
            Ok(Some(p)) => p.iter().map(|&a| norm_axis(a, xs.len())).collect(),
            Ok(None) => (0..xs.len()).rev().collect(),
            Err(e) => return self.unsupported(&e.to_string()),
        };
        let (y, ys) = self.lane_output(0)?;
        let (xst, yst) = (strides(&xs), strides(&ys));
        let map = |e: usize| {
            let mut src = 0;
            let mut rest = e;
            for (i, &s) in yst.iter().enumerate() {
                src += (rest / s) * xst[perm[i]];
                rest %= s;
            }
            (0, src)
        };
        self.move_lanes(&[x], &y, &ys, &map)
    }

    /// Slice of a computed tensor with constant `starts`, `ends` and
    /// optional `axes` and `steps` (ONNX semantics, negative steps too): a
    /// lane move of the selected elements.
    pub(super) fn lower_slice_lanes(
        &mut self,
        n: &Node,
        starts: &[i64],
        axes: &[i64],
        steps: &[i64],
    ) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let x = self.lane_source(&xn)?;
        let xs = x.1.clone();
        let xst = strides(&xs);
        let (y, ys) = self.lane_output(0)?;
        if ys.len() != xs.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return self.unsupported("slice parameters do not match the rank");
        }
        // Per input axis: (first coordinate, step).
        let mut first: Vec<(i64, i64)> = vec![(0, 1); xs.len()];
        for ((&a, &s), &st) in axes.iter().zip(starts).zip(steps) {
            let a = norm_axis(a, xs.len());
            if a >= xs.len() || st == 0 {
                return self.unsupported("slice axis out of range or zero step");
            }
            let dim = xs[a] as i64;
            let s = if s < 0 { s + dim } else { s };
            let s = if st > 0 {
                s.clamp(0, dim)
            } else {
                s.clamp(0, dim - 1)
            };
            first[a] = (s, st);
        }
        let yst = strides(&ys);
        let map = |e: usize| {
            let mut src = 0i64;
            let mut rest = e;
            for (i, &s) in yst.iter().enumerate() {
                let (start, step) = first[i];
                src += (start + (rest / s) as i64 * step) * xst[i] as i64;
                rest %= s;
            }
            (0, src as usize)
        };
        self.move_lanes(&[x], &y, &ys, &map)
    }

    /// Writes `out` (declared shape `out_shape`): output element `e`
    /// (row-major) is element `map(e).1` (row-major) of source
    /// `srcs[map(e).0]` (storage, declared shape). See the module doc.
    pub(super) fn move_lanes(
        &mut self,
        srcs: &[(TensorLoc, Vec<usize>)],
        out: &TensorLoc,
        out_shape: &[usize],
        map: &dyn Fn(usize) -> (usize, usize),
    ) -> Result<(), CompileError> {
        let plans = self.lane_plans(srcs, out, out_shape, map)?;
        self.emit_moves(srcs, out, &plans);
        Ok(())
    }

    /// The pieces of every vector of `out`, in storage order (see
    /// [`Lowerer::move_lanes`]).
    fn lane_plans(
        &self,
        srcs: &[(TensorLoc, Vec<usize>)],
        out: &TensorLoc,
        out_shape: &[usize],
        map: &dyn Fn(usize) -> (usize, usize),
    ) -> Result<Vec<Vec<Piece>>, CompileError> {
        let lanes = self.lanes;
        let ty = out.dtype;
        let mut pos = Vec::new();
        for (loc, shape) in srcs {
            if loc.dtype != ty {
                return self
                    .unsupported(&format!("moving {} elements into a {ty} tensor", loc.dtype));
            }
            match storage_index(loc, shape) {
                Some(p) => pos.push(p),
                None => return self.unsupported("a source's storage is not its elements"),
            }
        }
        // Storage index of the output -> declared index.
        let Some(out_pos) = storage_index(out, out_shape) else {
            return self.unsupported("the result's storage is not its elements");
        };
        let mut out_decl = vec![0; out_pos.len()];
        for (e, s) in out_pos.iter().enumerate() {
            out_decl[*s] = e;
        }
        let mut plans: Vec<Vec<Piece>> = Vec::new();
        for r in 0..out.rows {
            for j in 0..out.vpr {
                let n = out.cols.saturating_sub(j * lanes).min(lanes);
                let mut pieces: Vec<Piece> = Vec::new();
                for l in 0..n {
                    let e = out_decl[r * out.cols + j * lanes + l];
                    let (k, se) = map(e);
                    let (src, _) = &srcs[k];
                    let s = pos[k][se];
                    let (sr, sc) = (s / src.cols, s % src.cols);
                    let (vec, lane) = (sr * src.vpr + sc / lanes, sc % lanes);
                    if let Some(last) = pieces.last_mut() {
                        if last.src == k && last.vec == vec && last.from + last.len == lane {
                            last.len += 1;
                            continue;
                        }
                    }
                    let valid = src.cols.saturating_sub((sc / lanes) * lanes).min(lanes);
                    pieces.push(Piece {
                        src: k,
                        vec,
                        from: lane,
                        to: l,
                        len: 1,
                        valid,
                    });
                }
                plans.push(pieces);
            }
        }
        Ok(plans)
    }

    /// Emits the groups that build every vector of `out` from its pieces
    /// (`plans`, in storage order).
    fn emit_moves(
        &mut self,
        srcs: &[(TensorLoc, Vec<usize>)],
        out: &TensorLoc,
        plans: &[Vec<Piece>],
    ) {
        let ty = out.dtype;
        let (vt, planes) = int_view(ty);
        // One group moves one byte plane: `vt.bytes()` streams per value.
        let streams = self.chip.streams_per_direction as usize;
        let max_pieces = (MAX_PIECES * streams * 4 / (32 * vt.bytes())).clamp(1, 8);
        // Plane 1 (the high byte of an f16) first: plane 0's write is the
        // one the vector's later readers wait for.
        for p in (0..planes).rev() {
            for (v, pieces) in plans.iter().enumerate() {
                let at = &out.vectors[v];
                if pieces.is_empty() {
                    let z = self.zero_vector(ty);
                    let mut gb = self.begin();
                    let v = self.read_plane(&mut gb, z, p, vt);
                    self.write_plane(&mut gb, v, *at, p, vt);
                    self.finish(gb);
                    continue;
                }
                let mut i = 0;
                while i < pieces.len() {
                    let end = (i + max_pieces).min(pieces.len());
                    let (shifts, movs) = self.retime_pieces(srcs, &pieces[i..end], i > 0);
                    let mut gb = self.begin();
                    let partial = (i > 0).then(|| self.read_plane(&mut gb, *at, p, vt));
                    let chunk = &pieces[i..i + movs.len()];
                    let v = self.merge_pieces(&mut gb, srcs, chunk, &shifts, &movs, partial, p, vt);
                    self.write_plane(&mut gb, v, *at, p, vt);
                    self.finish(gb);
                    i += movs.len();
                }
            }
        }
    }

    /// Plans one group's share of `pieces` (read back onto a partial
    /// result when `partial`): each piece's shifts and the VXM `mov`s that
    /// delay it so that no cycle asks an SXM for more queues than it has
    /// (a piece shifts on the SXM nearest its source vector, as
    /// [`Lowerer::merge_pieces`] places it). Takes the longest prefix (at
    /// least one piece) whose pieces need at most [`MAX_MOVS`] `mov`s each;
    /// returns the shifts and `mov` counts of the pieces taken.
    fn retime_pieces(
        &self,
        srcs: &[(TensorLoc, Vec<usize>)],
        pieces: &[Piece],
        partial: bool,
    ) -> (Vec<Vec<i64>>, Vec<usize>) {
        let (d_shl, d_add, d_mov) = (
            self.d(Opcode::Shift) as i64,
            self.d(Opcode::Add) as i64,
            self.d(Opcode::Mov) as i64,
        );
        let queues = self.fp.sxm_queues.max(1) as usize;
        // Issue cycles of the shifts taken so far, relative to the first
        // add, with the SXM each runs on.
        let mut busy: Vec<(u16, i64)> = Vec::new();
        let (mut shifts, mut movs) = (Vec::new(), Vec::new());
        for (i, piece) in pieces.iter().enumerate() {
            let plan = shift_plan(piece, self.lanes);
            let sxm = self
                .fp
                .nearest_sxm(srcs[piece.src].0.vectors[piece.vec].slice);
            let hop = (sxm as i64 - self.fp.vxm as i64).abs();
            // Piece i meets the chain at add i (i - 1 without a partial:
            // pieces 0 and 1 both feed the first add).
            let add = if partial { i } else { i.max(1) - 1 } as i64 * d_add;
            let fits = |m: usize| -> Option<Vec<i64>> {
                let last = add - hop - d_shl - m as i64 * d_mov;
                let times: Vec<i64> = (0..plan.len() as i64).map(|s| last - s * d_shl).collect();
                let full = times
                    .iter()
                    .any(|t| busy.iter().filter(|b| **b == (sxm, *t)).count() >= queues);
                (!full).then_some(times)
            };
            let Some((m, times)) = (0..=MAX_MOVS).find_map(|m| fits(m).map(|t| (m, t))) else {
                if i == 0 {
                    // Alone in its group: nothing to collide with.
                    shifts.push(plan);
                    movs.push(0);
                }
                break;
            };
            busy.extend(times.into_iter().map(|t| (sxm, t)));
            shifts.push(plan);
            movs.push(m);
        }
        (shifts, movs)
    }

    /// Reads, shifts (`shifts[i]`), delays (`movs[i]` VXM `mov`s) and adds
    /// `pieces` (after `partial`, when given) in group `gb`, in byte plane
    /// `plane` of integer view `vt`; returns the last member.
    #[allow(clippy::too_many_arguments)]
    fn merge_pieces(
        &mut self,
        gb: &mut Gb,
        srcs: &[(TensorLoc, Vec<usize>)],
        pieces: &[Piece],
        shifts: &[Vec<i64>],
        movs: &[usize],
        partial: Option<u32>,
        plane: usize,
        vt: DType,
    ) -> u32 {
        let mut acc = partial;
        for (i, piece) in pieces.iter().enumerate() {
            let src = &srcs[piece.src].0;
            let mut v = self.read_plane(gb, src.vectors[piece.vec], plane, vt);
            for k in &shifts[i] {
                let shl = Instr {
                    arg: *k,
                    ..Instr::new(Opcode::Shift).typed(vt)
                };
                let sxm = self.sxm_near(gb, v);
                v = self.op(gb, shl, sxm, &[v], vec![]);
            }
            for _ in 0..movs[i] {
                v = self.op(
                    gb,
                    Instr::new(Opcode::Mov).typed(vt),
                    Place::Vxm,
                    &[v],
                    vec![],
                );
            }
            acc = Some(match acc {
                None => v,
                Some(a) => self.op(
                    gb,
                    Instr::new(Opcode::Add).typed(vt),
                    Place::Vxm,
                    &[a, v],
                    vec![],
                ),
            });
        }
        acc.unwrap_or_default()
    }

    /// Reads byte plane `plane` of the vector at `base` as `vt`; a plane
    /// above 0 also waits for the vector's writer and counts as a reader of
    /// the vector.
    fn read_plane(&mut self, gb: &mut Gb, base: VecLoc, plane: usize, vt: DType) -> u32 {
        let at = VecLoc {
            slice: base.slice,
            addr: base.addr + plane as u32,
        };
        let m = self.read(gb, at, vt);
        if plane > 0 {
            if let Some(w) = self.writer.get(&(base.slice, base.addr)).copied() {
                let d = self.d(Opcode::Write);
                gb.g.members[m as usize].after.push((w, d));
            }
            self.readers
                .entry((base.slice, base.addr))
                .or_default()
                .push(MemberRef {
                    group: gb.index,
                    member: m,
                });
        }
        m
    }

    /// Writes member `from` to byte plane `plane` of the vector at `base`
    /// as `vt`. A plane above 0 lands after the vector's earlier readers and
    /// writer and becomes the vector's writer until plane 0 is written.
    fn write_plane(&mut self, gb: &mut Gb, from: u32, base: VecLoc, plane: usize, vt: DType) {
        if plane == 0 {
            self.write(gb, from, base, vt);
            return;
        }
        let key = (base.slice, base.addr);
        let d_write = self.d(Opcode::Write);
        let mut after: Vec<(MemberRef, i32)> = self
            .readers
            .get(&key)
            .map(|rs| {
                rs.iter()
                    .filter(|r| r.group != gb.index)
                    .map(|r| (*r, 1 - d_write))
                    .collect()
            })
            .unwrap_or_default();
        after.extend(self.writer.get(&key).map(|w| (*w, 1)));
        let at = VecLoc {
            slice: base.slice,
            addr: base.addr + plane as u32,
        };
        let m = self.write(gb, from, at, vt);
        gb.g.members[m as usize].after.extend(after);
        self.writer.insert(
            key,
            MemberRef {
                group: gb.index,
                member: m,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies a shift plan to a vector of lane numbers (`None`: zero).
    fn apply(p: &Piece, lanes: usize) -> Vec<Option<usize>> {
        let mut v: Vec<Option<usize>> = (0..lanes).map(|i| (i < p.valid).then_some(i)).collect();
        for k in shift_plan(p, lanes) {
            v = (0..lanes as i64)
                .map(|i| {
                    let s = i - k;
                    if (0..lanes as i64).contains(&s) {
                        v[s as usize]
                    } else {
                        None
                    }
                })
                .collect();
        }
        v
    }

    #[test]
    fn every_piece_lands_alone_in_at_most_three_shifts() {
        let lanes = 16;
        for valid in 1..=lanes {
            for from in 0..valid {
                for len in 1..=valid - from {
                    for to in 0..=lanes - len {
                        let p = Piece {
                            src: 0,
                            vec: 0,
                            from,
                            to,
                            len,
                            valid,
                        };
                        assert!(shift_plan(&p, lanes).len() <= 3);
                        let got = apply(&p, lanes);
                        let want: Vec<Option<usize>> = (0..lanes)
                            .map(|i| (to..to + len).contains(&i).then(|| i - to + from))
                            .collect();
                        assert_eq!(got, want, "{p:?}");
                    }
                }
            }
        }
    }
}
