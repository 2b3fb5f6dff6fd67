//! Lowering of the convolutional operators on channels-last tensors (see
//! [`super::layout`]): one row per pixel, channels across the lanes.
//!
//! | op | lowering |
//! |---|---|
//! | Conv, ConvInteger | implicit GEMM by shifted reads: output pixel `p` of channel tile `j` is `sum over (kh, kw, cin tile) of x[pixel(p, kh, kw), tile] . W[kh, kw][tile, j]`. Each (tap, input-channel tile) is one K-tile of the MXM: its weight rows are installed once per chunk of output rows and every output pixel streams the input pixel under that tap through `mm`, accumulating; taps that fall in the padding are skipped (they would multiply zeros). Strides and dilations only change which input row a tap reads. Grouped and depthwise convolutions use block-diagonal weight tiles; tiles that are all zero are skipped. fp32 runs on the MXM in fp16 with fp32 accumulation, as MatMul does (or, under `fp32-split`, in three fp16 passes over the operands' halves, as MatMul does; ConvTranspose likewise). The bias is added on the VXM after `emit`. |
//! | MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool | per output vector, a VXM chain over the window's input rows (`max`, or `add` then `muli` by 1/count); taps in the padding are skipped, which is exactly max-pooling's `-inf` padding and average-pooling's `count_include_pad = 0` (with `count_include_pad = 1` the count includes the explicit padding). |
//! | Resize | from the interpreter's sampling plan (`lpu_graph::interp::resize_taps`), height and width only: `nearest` copies the picked input row; `linear`, `cubic` and their `antialias` forms sum, per output vector, `x * w` over the width taps (one `muli` per tap, one `add` after the first), then weight each such row sum by its height tap (`muli`) and add them, in the interpreter's order; at most four input reads per group, longer sums spilled through SRAM. `tf_crop_and_resize` outside the input copies a constant row of `extrapolation_value`. |
//! | BatchNormalization (not folded) | per vector, `mul` by the row `scale / sqrt(var + eps)` and `add` the row `B - mean * scale / sqrt(var + eps)`, both computed at compile time. |
//! | Flatten, Reshape, Squeeze, Unsqueeze | no instructions when the element order and vector tiling do not change (same last stored axis; a channels-last `[N, C, 1, 1]` is row-major `[N, C]`); otherwise not lowered yet. |

use super::layout::{storage_shape, NHWC};
use super::{Epilogue, KTile, Lowerer};
use crate::alloc::view2d;
use crate::CompileError;
use half::f16;
use lpu_graph::Node;
use lpu_isa::program::VecLoc;
use lpu_isa::{ChipConfig, DType, Instr, Opcode, SliceKind, Values};

/// The geometry of a 2-D sliding window over an `H x W` input.
#[derive(Clone, Debug)]
struct Window {
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    /// Padding: top, left, bottom, right.
    pads: [usize; 4],
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
}

impl Window {
    /// Input (row, column) under tap `(i, j)` of output `(oh, ow)`, if inside
    /// the input.
    fn tap(&self, oh: usize, ow: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let ih = (oh * self.sh + i * self.dh) as i64 - self.pads[0] as i64;
        let iw = (ow * self.sw + j * self.dw) as i64 - self.pads[1] as i64;
        ((0..self.h as i64).contains(&ih) && (0..self.w as i64).contains(&iw))
            .then_some((ih as usize, iw as usize))
    }

    /// Whether tap `(i, j)` of output `(oh, ow)` is inside the explicitly
    /// padded input (for `count_include_pad`).
    fn in_padded(&self, oh: usize, ow: usize, i: usize, j: usize) -> bool {
        let ih = oh * self.sh + i * self.dh;
        let iw = ow * self.sw + j * self.dw;
        ih < self.h + self.pads[0] + self.pads[2] && iw < self.w + self.pads[1] + self.pads[3]
    }
}

/// Channel grouping of a (transposed) convolution's weight matrix.
#[derive(Clone, Copy)]
struct Grouping {
    /// Input channels, and per group.
    c: usize,
    cg: usize,
    /// Output channels, and per group.
    co: usize,
    cog: usize,
    lanes: usize,
}

/// One K-tile per (tap, `lanes`-wide tile of the `c` input channels), in
/// that order: K-tile `kt` is tap `kt / ctiles`, channel tile
/// `kt % ctiles`, rows `tap * c + ci` of the weight matrix.
fn tap_ktiles(taps: usize, c: usize, lanes: usize) -> Vec<KTile> {
    let ctiles = c.div_ceil(lanes);
    (0..taps * ctiles)
        .map(|kt| {
            let (tap, ct) = (kt / ctiles, kt % ctiles);
            KTile {
                w_row0: tap * c + ct * lanes,
                rows: lanes.min(c - ct * lanes),
            }
        })
        .collect()
}

/// Whether K-tile `t` (rows `tap * c + ci`) and output column tile `j` share
/// a channel group, i.e. the weight tile is not all zeros.
fn groups_meet(t: KTile, j: usize, g: Grouping) -> bool {
    let ci0 = t.w_row0 % g.c;
    let (gi0, gi1) = (ci0 / g.cg, (ci0 + t.rows - 1) / g.cg);
    let last = (j * g.lanes + g.lanes).min(g.co) - 1;
    let (go0, go1) = ((j * g.lanes) / g.cog, last / g.cog);
    gi0 <= go1 && go0 <= gi1
}

/// Window taps reduced per group (the first group reads this many inputs,
/// later ones the partial result and one fewer): half the chip's MEM
/// slices, at least 4. The chain's adds are two cycles apart, and every
/// trip of a partial result through SRAM costs a write and a read (some 80
/// cycles): ResNet-50's global average pool (49 taps) took 1.5K cycles at
/// the end of the network in chunks of 4 (81,795 cycles in all, 80,686 in
/// one chain of 49). Consecutive taps lie on consecutive MEM slices, and
/// half the slices keeps a chain's reads on distinct ones: 44 on `tsp`,
/// while `tiny` (8 slices) keeps 4, since a 9-tap max pool in one group
/// needs more than its 8 streams per direction.
fn pool_chunk(chip: &ChipConfig) -> usize {
    (chip.positions_of(SliceKind::Mem).len() / 2).max(4)
}

/// Input vectors a Resize group reads at most (besides its spilled partial
/// sums); bilinear's four neighbours fit one group.
const RESIZE_READS: usize = 4;

/// Integer-list attribute `name`; an error when present with another kind.
fn ints(n: &Node, name: &str) -> Result<Option<Vec<i64>>, CompileError> {
    Ok(n.attr_ints(name)?.map(<[i64]>::to_vec))
}

/// String attribute `name`, or `default`; an error when present with
/// another kind.
fn string(n: &Node, name: &str, default: &str) -> Result<String, CompileError> {
    Ok(n.attr_string(name, default)?.to_string())
}

impl<'a> Lowerer<'a> {
    pub(super) fn shape_of(&self, t: &str) -> Result<Vec<usize>, CompileError> {
        match self.g.info(t) {
            Some(i) => Ok(i.shape.clone()),
            None => self.unsupported(&format!("tensor '{t}' has no inferred shape")),
        }
    }

    /// A two-value positive attribute (strides, dilations of a 2-D
    /// window), 1 in both dimensions when absent; anything else is an error.
    fn pair(&self, n: &Node, name: &str) -> Result<(usize, usize), CompileError> {
        match ints(n, name)? {
            None => Ok((1, 1)),
            Some(v) if v.len() == 2 && v.iter().all(|x| *x >= 1) => {
                Ok((v[0] as usize, v[1] as usize))
            }
            Some(v) => self.unsupported(&format!(
                "attribute '{name}' = {v:?}: two positive values expected (2-D windows)"
            )),
        }
    }

    /// The window of node `n` (kernel from `kernel`), from its attributes
    /// and the inferred input and output shapes `[N, C, H, W]`.
    fn window(
        &self,
        n: &Node,
        kernel: (usize, usize),
        xs: &[usize],
        ys: &[usize],
    ) -> Result<Window, CompileError> {
        let (sh, sw) = self.pair(n, "strides")?;
        let (dh, dw) = self.pair(n, "dilations")?;
        let (h, w, ho, wo) = (xs[2], xs[3], ys[2], ys[3]);
        let auto = string(n, "auto_pad", "NOTSET")?;
        let pads = match auto.as_str() {
            "NOTSET" => match ints(n, "pads")? {
                None => [0; 4],
                Some(p) if p.len() == 4 && p.iter().all(|x| *x >= 0) => {
                    [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
                }
                Some(p) => {
                    return self.unsupported(&format!(
                        "attribute 'pads' = {p:?}: four non-negative values expected"
                    ))
                }
            },
            "VALID" => [0; 4],
            "SAME_UPPER" | "SAME_LOWER" => {
                let total = |o: usize, s: usize, k: usize, d: usize, i: usize| {
                    ((o.saturating_sub(1)) * s + (k - 1) * d + 1).saturating_sub(i)
                };
                let th = total(ho, sh, kernel.0, dh, h);
                let tw = total(wo, sw, kernel.1, dw, w);
                let upper = auto == "SAME_UPPER";
                let begin = |t: usize| if upper { t / 2 } else { t.div_ceil(2) };
                [begin(th), begin(tw), th - begin(th), tw - begin(tw)]
            }
            other => return self.unsupported(&format!("auto_pad '{other}' is not an ONNX value")),
        };
        Ok(Window {
            kh: kernel.0,
            kw: kernel.1,
            sh,
            sw,
            dh,
            dw,
            pads,
            h,
            w,
            ho,
            wo,
        })
    }

    /// Conv and ConvInteger (2-D, channels-last).
    pub(super) fn lower_conv(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let wn = self.input_name(n, 1)?;
        let yn = n.outputs.first().cloned().unwrap_or_default();
        let x = self.operand(&xn)?;
        let (xs, ys) = (self.shape_of(&xn)?, self.shape_of(&yn)?);
        // Constant weights first: a 1-D convolution with constant weights
        // reaches the lowering as a 2-D one (`passes::spatial1d`).
        let Some(wt) = self.constant(&wn) else {
            return self.unsupported(&format!("weights '{wn}' must be a constant"));
        };
        if xs.len() != 4 || (x.layout != NHWC && x.view.is_empty()) {
            return self.unsupported(
                "only 2-D convolutions (4-D NCHW input, stored channels-last) are lowered",
            );
        }
        if wt.shape.len() != 4 {
            return self.unsupported("weights must be 4-D [Cout, Cin/group, kH, kW]");
        }
        let (co, cg, kh, kw) = (wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3]);
        let c = xs[1];
        let group = n.attr_int("group", 1)?.max(1) as usize;
        if c != cg * group || co % group != 0 {
            return self.unsupported(&format!(
                "{c} input channels, weights {:?} and group {group} do not agree",
                wt.shape
            ));
        }
        let win = self.window(n, (kh, kw), &xs, &ys)?;
        let wv = super::f32_of(&wt.values);
        // The convolution as the MXM sees it: input channels as stored,
        // taps, window and weights. A space-to-depth input (see
        // `layout::plan_s2d`) turns a stride-2 convolution into a stride-1
        // one over 2x2 pixel blocks with 4C channels and about a quarter of
        // the taps.
        let s2d = !x.view.is_empty();
        let (c0, kh0, kw0) = (c, kh, kw);
        let (c, cg, kh, kw, win) = if s2d {
            let floor2 = |v: i64| v.div_euclid(2);
            let (pt, pl) = (win.pads[0] as i64, win.pads[1] as i64);
            let (th0, th1) = (floor2(-pt), floor2(kh as i64 - 1 - pt));
            let (tw0, tw1) = (floor2(-pl), floor2(kw as i64 - 1 - pl));
            let (keh, kew) = ((th1 - th0 + 1) as usize, (tw1 - tw0 + 1) as usize);
            let e = Window {
                kh: keh,
                kw: kew,
                sh: 1,
                sw: 1,
                dh: 1,
                dw: 1,
                pads: [(-th0) as usize, (-tw0) as usize, 0, 0],
                h: xs[2] / 2,
                w: xs[3] / 2,
                ho: win.ho,
                wo: win.wo,
            };
            (4 * c, 4 * c, keh, kew, e)
        } else {
            (c, cg, kh, kw, win)
        };
        let (th0, tw0) = (-(win.pads[0] as i64), -(win.pads[1] as i64));
        let (pt0, pl0) = (
            self.window(n, (kh0, kw0), &xs, &ys)?.pads[0] as i64,
            self.window(n, (kh0, kw0), &xs, &ys)?.pads[1] as i64,
        );
        let integer = n.op_type == "ConvInteger";
        let (mm_ty, emit_ty) = if integer {
            for (idx, what) in [(2, "x_zero_point"), (3, "w_zero_point")] {
                if let Some(z) = n.input(idx).and_then(|z| self.constant(z)) {
                    if (0..z.len()).any(|i| z.values.get_f64(i) != 0.0) {
                        return self
                            .unsupported(&format!("{what} must be 0 (symmetric quantization)"));
                    }
                } else if n.input(idx).is_some() {
                    return self.unsupported(&format!("{what} must be a constant"));
                }
            }
            (DType::I8, DType::I32)
        } else {
            (DType::F16, self.out_dtype(n)?)
        };
        if !self.chip.mxm.dtypes.contains(&mm_ty) {
            return self.unsupported(&format!("chip '{}' has no {mm_ty} MXM", self.chip.name));
        }
        let lanes = self.lanes;
        let taps = kh * kw;
        let (cog, ctiles) = (co / group, x.vpr);
        // The weight matrix: row `tap * C + ci`, column `co`; zero where the
        // input and output channels are in different groups (or, for a
        // space-to-depth input, where a block position falls outside the
        // original kernel).
        let k_rows = taps * c;
        // Without space-to-depth: each row's offset within an output
        // channel's weights and its group, and each column's group, worked
        // out once (divisions per weight were most of making the matrix).
        let (row_at, col_group) = if s2d {
            (vec![], vec![])
        } else {
            let rows = (0..k_rows)
                .map(|r| {
                    let (tap, ci) = (r / c, r % c);
                    let (i, j) = (tap / kw, tap % kw);
                    (((ci % cg) * kh + i) * kw + j, ci / cg)
                })
                .collect::<Vec<_>>();
            (rows, (0..co).map(|o| o / cog).collect::<Vec<_>>())
        };
        let per_channel = cg * kh * kw;
        let weight = |r: usize, o: usize| -> f32 {
            if !s2d {
                let (at, g) = row_at[r];
                return if g == col_group[o] {
                    wv[o * per_channel + at]
                } else {
                    0.0
                };
            }
            // Space-to-depth: the block position's tap of the original
            // kernel, or 0 outside it.
            let (tap, ci) = (r / c, r % c);
            let (i, j) = (tap / kw, tap % kw);
            let (blk, cc) = (ci / c0, ci % c0);
            let ki = 2 * (i as i64 + th0) + (blk / 2) as i64 + pt0;
            let kj = 2 * (j as i64 + tw0) + (blk % 2) as i64 + pl0;
            if !(0..kh0 as i64).contains(&ki) || !(0..kw0 as i64).contains(&kj) {
                return 0.0;
            }
            wv[((o * c0 + cc) * kh0 + ki as usize) * kw0 + kj as usize]
        };
        // fp32-split (`super::lower_opts`): f32 activations times the
        // weights' fp16 halves, scaled by 2^scale.
        let split = self.split && mm_ty == DType::F16 && x.dtype == DType::F32;
        let sfx = if s2d { "s2d" } else { "" };
        let (w, w_lo, scale) = self.conv_weights(
            &wn,
            ("conv", sfx, "conv weights"),
            [k_rows, co],
            mm_ty,
            split,
            weight,
        );
        // Width packing: when a kernel row's taps fit in one vector
        // (`kw * C <= lanes`, one group), the input is first rewritten so
        // that row (h, ow) holds the kw input pixels that output column ow
        // reads, side by side across the lanes (SXM shifts and VXM adds, one
        // write). The product then takes one K-tile per kernel row instead
        // of one per tap: kw times fewer MXM passes, for kw - 1 shifts per
        // packed row. The packed row index `k * C + ci` equals the unpacked
        // `tap * C + ci`, so the weight matrix is the same.
        let pack = kw > 1 && kw * c <= lanes && ctiles == 1 && group == 1 && {
            let xn = xn.clone();
            self.zero_padded(&xn, 0)
        };
        let (hw_in, hw_out) = (win.h * win.w, win.ho * win.wo);
        let packed = if pack {
            Some(self.pack_width(n, &x, &win, c, ys[0])?)
        } else {
            None
        };
        let ktiles: Vec<KTile> = if pack {
            (0..kh)
                .map(|i| KTile {
                    w_row0: i * kw * c,
                    rows: kw * c,
                })
                .collect()
        } else {
            tap_ktiles(taps, c, lanes)
        };
        let tiles = ktiles.clone();
        let used = move |kt: usize, j: usize| {
            pack || groups_meet(
                tiles[kt],
                j,
                Grouping {
                    c,
                    cg,
                    co,
                    cog,
                    lanes,
                },
            )
        };
        let wref = &win;
        // The (row, vector) of the input (or its packed copy) that result
        // row `r` streams for K-tile `kt`; `None` in the padding.
        let pos = move |r: usize, kt: usize| -> Option<(usize, usize)> {
            let (nb, p) = (r / hw_out, r % hw_out);
            let (oh, ow) = (p / wref.wo, p % wref.wo);
            if pack {
                // Kernel row kt of output (oh, ow): packed row (ih, ow).
                let ih = (oh * wref.sh + kt * wref.dh) as i64 - wref.pads[0] as i64;
                if !(0..wref.h as i64).contains(&ih) {
                    return None;
                }
                return Some(((nb * wref.h + ih as usize) * wref.wo + ow, 0));
            }
            let (tap, ct) = (kt / ctiles, kt % ctiles);
            let (ih, iw) = wref.tap(oh, ow, tap / wref.kw, tap % wref.kw)?;
            Some((nb * hw_in + ih * wref.w + iw, ct))
        };
        let epi = self.bias_epilogue(n, co, emit_ty)?;
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        if out.rows != ys[0] * hw_out || out.cols != co {
            return self.unsupported("output storage does not match the convolution's shape");
        }
        let src0 = packed.as_ref().unwrap_or(&x);
        self.product(
            n,
            (src0, src0, split),
            &pos,
            (out.rows, &ktiles, &used),
            (&w, w_lo.as_ref(), scale),
            &out,
            (mm_ty, emit_ty),
            epi,
            &tail,
        )?;
        if let Some(p) = packed {
            self.alloc.free(&p);
        }
        Ok(())
    }

    /// Writes the width-packed copy of `x` for a convolution with window
    /// `win` over `c` channels: row `(n, ih, ow)` holds, in lanes
    /// `[k * c, (k + 1) * c)`, input pixel `(ih, ow * sw + k * dw - pad_left)`
    /// (zero where that falls in the padding).
    fn pack_width(
        &mut self,
        n: &Node,
        x: &crate::alloc::TensorLoc,
        win: &Window,
        c: usize,
        batch: usize,
    ) -> Result<crate::alloc::TensorLoc, CompileError> {
        let ty = x.dtype;
        let rows = batch * win.h * win.wo;
        let packed = self.alloc.tensor(
            &format!("{} (width-packed input)", n.name),
            &[rows, win.kw * c],
            ty,
        );
        for nb in 0..batch {
            for ih in 0..win.h {
                for ow in 0..win.wo {
                    let mut gb = self.begin();
                    // Horner form, last tap first: acc = x[k] + (acc << c),
                    // so the shifts are chained (one SXM queue suffices).
                    let mut acc: Option<u32> = None;
                    for k in (0..win.kw).rev() {
                        if let Some(a) = acc {
                            let shift = Instr {
                                arg: c as i64,
                                ..Instr::new(Opcode::Shift).typed(ty)
                            };
                            let sxm = self.sxm_near(&gb, a);
                            acc = Some(self.op(&mut gb, shift, sxm, &[a], vec![]));
                        }
                        let iw = (ow * win.sw + k * win.dw) as i64 - win.pads[1] as i64;
                        if !(0..win.w as i64).contains(&iw) {
                            continue;
                        }
                        let at = x.at((nb * win.h + ih) * win.w + iw as usize, 0);
                        let v = self.read(&mut gb, at, ty);
                        acc = Some(match acc {
                            None => v,
                            Some(a) => self.op(
                                &mut gb,
                                Instr::new(Opcode::Add).typed(ty),
                                super::Place::Vxm,
                                &[v, a],
                                vec![],
                            ),
                        });
                    }
                    let acc = match acc {
                        Some(a) => a,
                        None => {
                            let z = self.zero_vector(ty);
                            self.read(&mut gb, z, ty)
                        }
                    };
                    let r = (nb * win.h + ih) * win.wo + ow;
                    self.write(&mut gb, acc, packed.at(r, 0), ty);
                    self.finish(gb);
                }
            }
        }
        Ok(packed)
    }

    /// Whether every vector of tensor `t` is zero in its lanes past the
    /// tensor's last stored axis, so lane-shifted copies can be added:
    /// true for graph inputs (the host pads with zeros) and for results of
    /// matrix products (their weight columns past N are zero), and kept
    /// through operators that map zero to zero. Conservative: anything
    /// else (a sigmoid, say) is false.
    fn zero_padded(&self, t: &str, depth: usize) -> bool {
        if self.g.inputs.iter().any(|(i, _)| i == t) {
            return true;
        }
        if depth > 8 {
            return false;
        }
        let Some(p) = self.g.producer(t) else {
            return false;
        };
        let node = &self.g.nodes[p];
        let scalar_zero = |k: usize| {
            node.input(k).is_none_or(|z| {
                self.constant(z)
                    .is_some_and(|c| (0..c.len()).all(|i| c.values.get_f64(i) == 0.0))
            })
        };
        match node.op_type.as_str() {
            "Conv" | "ConvInteger" | "MatMul" | "MatMulInteger" | "Gemm" => true,
            "Relu" | "MaxPool" | "AveragePool" | "Identity" | "Cast" | "Flatten" | "Reshape" => {
                self.zero_padded(node.input(0).unwrap_or_default(), depth + 1)
            }
            "QuantizeLinear" | "DequantizeLinear" => {
                scalar_zero(2) && self.zero_padded(node.input(0).unwrap_or_default(), depth + 1)
            }
            // Operands broadcast from constants are stored zero-padded too.
            "Add" | "Sub" | "Mul" | "BatchNormalization" => node
                .inputs
                .iter()
                .take(2)
                .filter(|i| !i.is_empty() && self.constant(i).is_none())
                .all(|i| self.zero_padded(i, depth + 1)),
            _ => false,
        }
    }

    /// ConvTranspose (2-D, channels-last) as an implicit GEMM that gathers:
    /// output pixel `(oh, ow)` under tap `(i, j)` reads input pixel
    /// `((oh + pad_top - i*dh) / sh, ...)` when that division is exact and
    /// in range, and skips the tap otherwise (it would multiply the zeros a
    /// scatter formulation inserts between input pixels).
    pub(super) fn lower_conv_transpose(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let wn = self.input_name(n, 1)?;
        let yn = n.outputs.first().cloned().unwrap_or_default();
        let x = self.operand(&xn)?;
        let (xs, ys) = (self.shape_of(&xn)?, self.shape_of(&yn)?);
        // Constant weights first, as for Conv.
        let Some(wt) = self.constant(&wn) else {
            return self.unsupported(&format!("weights '{wn}' must be a constant"));
        };
        if xs.len() != 4 || x.layout != NHWC {
            return self
                .unsupported("only 2-D transposed convolutions (4-D NCHW input) are lowered");
        }
        if wt.shape.len() != 4 {
            return self.unsupported("weights must be 4-D [Cin, Cout/group, kH, kW]");
        }
        let (c, cog, kh, kw) = (wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3]);
        let group = n.attr_int("group", 1)?.max(1) as usize;
        let co = cog * group;
        if c != xs[1] || c % group != 0 || ys[1] != co {
            return self.unsupported(&format!(
                "input channels {}, weights {:?} and group {group} do not agree",
                xs[1], wt.shape
            ));
        }
        let cg = c / group;
        match string(n, "auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "VALID" => {}
            other => {
                return self.unsupported(&format!(
                    "auto_pad '{other}' is not lowered for ConvTranspose (give explicit pads)"
                ))
            }
        }
        let (sh, sw) = self.pair(n, "strides")?;
        let (dh, dw) = self.pair(n, "dilations")?;
        let (pt, pl) = match ints(n, "pads")? {
            Some(p) if p.len() == 4 && p.iter().all(|x| *x >= 0) => (p[0] as usize, p[1] as usize),
            None => (0, 0),
            Some(p) => {
                return self.unsupported(&format!("pads {p:?}: four non-negative values expected"))
            }
        };
        let lanes = self.lanes;
        let mm_ty = DType::F16;
        let emit_ty = self.out_dtype(n)?;
        if !self.chip.mxm.dtypes.contains(&mm_ty) {
            return self.unsupported(&format!("chip '{}' has no {mm_ty} MXM", self.chip.name));
        }
        let (h, w, ho, wo) = (xs[2], xs[3], ys[2], ys[3]);
        let taps = kh * kw;
        let ctiles = x.vpr;
        let wv = super::f32_of(&wt.values);
        let k_rows = taps * c;
        let weight = |r: usize, o: usize| -> f32 {
            let (tap, ci) = (r / c, r % c);
            if ci / cg != o / cog {
                return 0.0;
            }
            let (i, j) = (tap / kw, tap % kw);
            wv[((ci * cog + o % cog) * kh + i) * kw + j]
        };
        // fp32-split (`super::lower_opts`), as for Conv.
        let split = self.split && x.dtype == DType::F32;
        let (wl, w_lo, scale) = self.conv_weights(
            &wn,
            ("convT", "", "transposed-conv weights"),
            [k_rows, co],
            mm_ty,
            split,
            weight,
        );
        let ktiles = tap_ktiles(taps, c, lanes);
        let tiles = ktiles.clone();
        let used = move |kt: usize, j: usize| {
            groups_meet(
                tiles[kt],
                j,
                Grouping {
                    c,
                    cg,
                    co,
                    cog,
                    lanes,
                },
            )
        };
        // The input (row, vector) that result row `r` streams for K-tile
        // `kt`; `None` for a tap that reads no input pixel.
        let pos = move |r: usize, kt: usize| -> Option<(usize, usize)> {
            let (nb, p) = (r / (ho * wo), r % (ho * wo));
            let (oh, ow) = (p / wo, p % wo);
            let (tap, ct) = (kt / ctiles, kt % ctiles);
            let (i, j) = (tap / kw, tap % kw);
            let th = (oh + pt) as i64 - (i * dh) as i64;
            let tw = (ow + pl) as i64 - (j * dw) as i64;
            if th < 0 || tw < 0 || th % sh as i64 != 0 || tw % sw as i64 != 0 {
                return None;
            }
            let (ih, iw) = ((th / sh as i64) as usize, (tw / sw as i64) as usize);
            (ih < h && iw < w).then_some(((nb * h + ih) * w + iw, ct))
        };
        let epi = self.bias_epilogue(n, co, emit_ty)?;
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        self.product(
            n,
            (&x, &x, split),
            &pos,
            (out.rows, &ktiles, &used),
            (&wl, w_lo.as_ref(), scale),
            &out,
            (mm_ty, emit_ty),
            epi,
            &tail,
        )
    }

    /// A constant integer list input (an initializer or a value folded at
    /// load time).
    fn const_ints(&self, name: &str) -> Option<Vec<i64>> {
        let t = self
            .g
            .initializers
            .get(name)
            .or_else(|| self.g.constants.get(name))?;
        Some((0..t.len()).map(|i| t.values.get_f64(i) as i64).collect())
    }

    /// Pad of a channels-last tensor along height and width: each output
    /// row is a copy of the input row the mode picks (`constant`: a row of
    /// the fill value; `edge`, `reflect`, `wrap`: the mirrored, clamped or
    /// wrapped pixel), one read and one write per vector.
    pub(super) fn lower_pad(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let x = self.operand(&xn)?;
        let xs = self.shape_of(&xn)?;
        if xs.len() != 4 || x.layout != NHWC {
            return self.unsupported("Pad is lowered on 4-D NCHW (channels-last) tensors only");
        }
        let Some(p) = n.input(1).and_then(|t| self.const_ints(t)) else {
            return self.unsupported("the pads must be a constant input");
        };
        let axes: Vec<usize> = match n.input(3) {
            Some(a) => match self.const_ints(a) {
                Some(v) => v
                    .iter()
                    .map(|&a| if a < 0 { (a + 4) as usize } else { a as usize })
                    .collect(),
                None => return self.unsupported("the axes must be a constant input"),
            },
            None => (0..4).collect(),
        };
        if p.len() != 2 * axes.len() {
            return self.unsupported(&format!("pads {p:?} do not match axes {axes:?}"));
        }
        let mut plan = [(0i64, 0i64); 4];
        for (k, &a) in axes.iter().enumerate() {
            if a < 4 {
                plan[a] = (p[k], p[k + axes.len()]);
            }
        }
        if plan[0] != (0, 0) || plan[1] != (0, 0) || plan.iter().any(|(b, e)| *b < 0 || *e < 0) {
            return self.unsupported(
                "only non-negative padding of height and width is lowered (channel padding needs lane moves)",
            );
        }
        let mode = string(n, "mode", "constant")?;
        // The interpreter's own index rule, so the copies match it exactly.
        let source = |i: i64, len: i64| lpu_graph::interp::pad_source(i, len, &mode);
        let ty = x.dtype;
        let fill = match n.input(2).and_then(|c| self.constant(c)) {
            Some(t) if t.len() == 1 => t.values.get_f64(0),
            Some(_) => return self.unsupported("constant_value must be a scalar"),
            None if n.input(2).is_some() => {
                return self.unsupported("constant_value must be a constant")
            }
            None => 0.0,
        };
        let (h, w) = (xs[2], xs[3]);
        let yn = n.outputs.first().cloned().unwrap_or_default();
        let ys = self.shape_of(&yn)?;
        let (ho, wo) = (ys[2], ys[3]);
        let fill_row = if fill == 0.0 {
            None
        } else {
            let vals = Values::F32(vec![fill as f32; xs[1]]);
            let vals = match ty {
                DType::F32 => vals,
                DType::F16 => Values::F16(vec![f16::from_f64(fill); xs[1]]),
                DType::I8 => Values::I8(vec![fill as i8; xs[1]]),
                DType::I32 => Values::I32(vec![fill as i32; xs[1]]),
            };
            Some(self.const_row(&format!("{} (fill row)", n.name), &vals))
        };
        let (_, out) = self.output(0)?;
        for r in 0..out.rows {
            let (nb, pix) = (r / (ho * wo), r % (ho * wo));
            let (oh, ow) = ((pix / wo) as i64 - plan[2].0, (pix % wo) as i64 - plan[3].0);
            let src = source(oh, h as i64)
                .zip(source(ow, w as i64))
                .map(|(ih, iw)| (nb * h + ih as usize) * w + iw as usize);
            for j in 0..out.vpr {
                let mut gb = self.begin();
                let at = match (src, &fill_row) {
                    (Some(s), _) => x.at(s, j),
                    (None, Some(f)) => f.for_row(r, j),
                    (None, None) => self.zero_vector(ty),
                };
                let v = self.read(&mut gb, at, ty);
                self.write(&mut gb, v, out.at(r, j), ty);
                self.finish(gb);
            }
        }
        Ok(())
    }

    /// Resize of a channels-last tensor's height and width, from the
    /// interpreter's own sampling plan ([`lpu_graph::interp::resize_taps`]:
    /// the same input rows and f32 weights, so the result is the
    /// interpreter's exactly). Batch and channels must be left as they are.
    /// An output pixel outside the input (`tf_crop_and_resize`) is a copy
    /// of a constant row of `extrapolation_value`. `nearest`: every other
    /// output row is a copy of the input row the plan picks. `linear`,
    /// `cubic` (and their `antialias` forms): per output vector, for each
    /// height tap `i` the width taps' sum `x * w0 + x * w1 + ..` (one `muli`
    /// per tap, one `add` per tap after the first), times the height weight
    /// (one `muli`) and added to the sum of the earlier height taps: the
    /// interpreter's order (width, then height). Each group reads at most
    /// [`RESIZE_READS`] input vectors; longer sums carry their partial
    /// results through SRAM (the output vector, and a scratch vector for a
    /// partial width sum), one write and one read each.
    pub(super) fn lower_resize(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let x = self.operand(&xn)?;
        let xs = self.shape_of(&xn)?;
        if xs.len() != 4 || x.layout != NHWC {
            return self.unsupported(
                "Resize is lowered on 4-D NCHW tensors, resizing height and width only",
            );
        }
        let crop =
            string(n, "coordinate_transformation_mode", "half_pixel")? == "tf_crop_and_resize";
        let mut konst = Vec::new();
        for i in 1..4 {
            let Some(t) = n.input(i) else {
                konst.push(None);
                continue;
            };
            if i == 1 && !crop {
                // The roi is read by tf_crop_and_resize only.
                konst.push(None);
                continue;
            }
            match self
                .g
                .initializers
                .get(t)
                .or_else(|| self.g.constants.get(t))
            {
                Some(c) => konst.push(Some(c)),
                None => return self.unsupported(&format!("input '{t}' must be a constant")),
            }
        }
        let plan = match lpu_graph::interp::resize_taps(n, &xs, konst[0], konst[1], konst[2]) {
            Ok(p) => p,
            Err(e) => return self.unsupported(&e),
        };
        if !plan.is_identity(0) || !plan.is_identity(1) {
            return self.unsupported(
                "Resize is lowered on height and width only (batch and channels unchanged)",
            );
        }
        let (th, tw) = (&plan.dims[2], &plan.dims[3]);
        let (h, w, wo) = (xs[2], xs[3], plan.out[3]);
        let ho_wo = plan.out[2] * wo;
        let ty = x.dtype;
        if !plan.nearest && ty != DType::F32 {
            return self.unsupported("linear and cubic Resize are lowered for f32 tensors");
        }
        // Output pixel `p`'s taps along height and width, `None` outside.
        let taps = |p: usize| th[p / wo].as_ref().zip(tw[p % wo].as_ref());
        let fill_row = if (0..ho_wo).all(|p| taps(p).is_some()) {
            None
        } else {
            let e = plan.extrapolation;
            let vals = match ty {
                DType::F32 => Values::F32(vec![e; xs[1]]),
                DType::F16 => Values::F16(vec![f16::from_f32(e); xs[1]]),
                DType::I8 => Values::I8(vec![e as i8; xs[1]]),
                DType::I32 => Values::I32(vec![e as i32; xs[1]]),
            };
            Some(self.const_row(&format!("{} (extrapolation row)", n.name), &vals))
        };
        let (_, out) = self.output(0)?;
        // A partial width sum is spilled only when a height tap's width
        // taps do not fit one group.
        let scratch =
            (!plan.nearest && tw.iter().flatten().any(|t| t.len() > RESIZE_READS)).then(|| {
                self.alloc.tensor(
                    &format!("{} (partial sums)", n.name),
                    &[out.rows, out.cols],
                    ty,
                )
            });
        let muli = |k: f32| Instr {
            imm: k as f64,
            ..Instr::new(Opcode::MulImm).typed(DType::F32)
        };
        let add = Instr::new(Opcode::Add).typed(DType::F32);
        for r in 0..out.rows {
            let (nb, p) = (r / ho_wo, r % ho_wo);
            let row = |ih: usize, iw: usize| (nb * h + ih) * w + iw;
            for j in 0..out.vpr {
                let Some((hs, ws)) = taps(p) else {
                    let Some(f) = fill_row.as_ref() else {
                        return self.unsupported("no extrapolation row");
                    };
                    let mut gb = self.begin();
                    let v = self.read(&mut gb, f.for_row(r, j), ty);
                    self.write(&mut gb, v, out.at(r, j), ty);
                    self.finish(gb);
                    continue;
                };
                if plan.nearest {
                    let mut gb = self.begin();
                    let v = self.read(&mut gb, x.at(row(hs[0].0, ws[0].0), j), ty);
                    self.write(&mut gb, v, out.at(r, j), ty);
                    self.finish(gb);
                    continue;
                }
                // The running sums: over height taps (`acc`, spilled to the
                // output vector) and over the current row's width taps
                // (`part`, spilled to the scratch vector); `Err` is spilled.
                let acc_at = out.at(r, j);
                let part_at = scratch.as_ref().map(|s| s.at(r, j));
                let mut gb = self.begin();
                let mut reads = 0;
                let mut acc: Option<Result<u32, VecLoc>> = None;
                for &(ih, wh) in hs {
                    let mut part: Option<Result<u32, VecLoc>> = None;
                    for (k, &(iw, ww)) in ws.iter().enumerate() {
                        // A new group before a row that does not fit the
                        // current one, and inside a row too long for any.
                        if (k == 0 && reads > 0 && reads + ws.len() > RESIZE_READS)
                            || reads >= RESIZE_READS
                        {
                            for (sum, at) in [(&mut acc, Some(acc_at)), (&mut part, part_at)] {
                                if let (Some(Ok(v)), Some(at)) = (*sum, at) {
                                    self.write(&mut gb, v, at, ty);
                                    *sum = Some(Err(at));
                                }
                            }
                            self.fin(gb);
                            gb = self.begin();
                            reads = 0;
                        }
                        let v = self.read(&mut gb, x.at(row(ih, iw), j), ty);
                        reads += 1;
                        let m = self.op(&mut gb, muli(ww), super::Place::Vxm, &[v], vec![]);
                        part = Some(Ok(self.add_to(&mut gb, part, m, (&mut reads, ty), &add)));
                    }
                    let Some(s) = part else {
                        return self.unsupported("a Resize tap list is empty");
                    };
                    let s = self.live(&mut gb, s, &mut reads, ty);
                    let t = self.op(&mut gb, muli(wh), super::Place::Vxm, &[s], vec![]);
                    acc = Some(Ok(self.add_to(&mut gb, acc, t, (&mut reads, ty), &add)));
                }
                let Some(a) = acc else {
                    return self.unsupported("a Resize tap list is empty");
                };
                let v = self.live(&mut gb, a, &mut reads, ty);
                self.write(&mut gb, v, acc_at, ty);
                self.fin(gb);
            }
        }
        if let Some(s) = scratch {
            self.alloc.free(&s);
        }
        Ok(())
    }

    /// A running sum of [`Lowerer::lower_resize`] in the current group:
    /// the value itself, or read back from where it was spilled.
    /// `sum + term` with `add`, `sum` made live first ([`Lowerer::live`],
    /// reading a spilled sum as `ty`); just `term` when there is no sum yet.
    fn add_to(
        &mut self,
        gb: &mut super::Gb,
        sum: Option<Result<u32, VecLoc>>,
        term: u32,
        (reads, ty): (&mut usize, DType),
        add: &Instr,
    ) -> u32 {
        match sum {
            None => term,
            Some(s) => {
                let s = self.live(gb, s, reads, ty);
                self.op(gb, add.clone(), super::Place::Vxm, &[s, term], vec![])
            }
        }
    }

    fn live(
        &mut self,
        gb: &mut super::Gb,
        v: Result<u32, VecLoc>,
        reads: &mut usize,
        ty: DType,
    ) -> u32 {
        match v {
            Ok(v) => v,
            Err(at) => {
                *reads += 1;
                self.read(gb, at, ty)
            }
        }
    }

    /// The weight matrix `[rows, co]` (element `(r, o)` is `weight(r, o)`)
    /// of a convolution, placed columns-first as MXM weights once per
    /// weight tensor `wn` and `kind`/`sfx` (the key), named `what` in the
    /// SRAM map: in `mm_ty`, or when `split` (fp32-split) as fp16 halves of
    /// the weights times `2^scale` ([`super::split_weights`]). Returns the
    /// (high) weights, the low halves unless every weight is exact in fp16,
    /// and the scale (0 unless split).
    fn conv_weights(
        &mut self,
        wn: &str,
        (kind, sfx, what): (&str, &str, &str),
        [rows, co]: [usize; 2],
        mm_ty: DType,
        split: bool,
        weight: impl Fn(usize, usize) -> f32,
    ) -> (
        crate::alloc::TensorLoc,
        Option<crate::alloc::TensorLoc>,
        i32,
    ) {
        // Row-major `[rows, co]`, made in 32 x 32 blocks: `weight` reads a
        // weight tensor whose rows are output channels, so walking the
        // matrix row by row read one cache line per element on large
        // layers (a tenth of lowering ResNet-50).
        let all = || {
            const B: usize = 32;
            let mut m = vec![0.0f32; rows * co];
            for r0 in (0..rows).step_by(B) {
                for o0 in (0..co).step_by(B) {
                    for o in o0..(o0 + B).min(co) {
                        for r in r0..(r0 + B).min(rows) {
                            m[r * co + o] = weight(r, o);
                        }
                    }
                }
            }
            m.into_iter()
        };
        if !split {
            let w = self.cached_weights(
                format!("{wn}#{kind}{mm_ty}{sfx}"),
                format!("{wn} (as {mm_ty} {what})"),
                [rows, co],
                || match mm_ty {
                    DType::I8 => Values::I8(all().map(|v| v as i8).collect()),
                    _ => Values::F16(all().map(f16::from_f32).collect()),
                },
            );
            return (w, None, 0);
        }
        let wf: Vec<f32> = all().collect();
        let (hi, lo, scale) = super::split_weights(&wf);
        let name = |half: &str| format!("{wn} (fp16 {half} halves of the {what} x 2^{scale})");
        let w = self.cached_weights(
            format!("{wn}#{kind}-split-hi{sfx}"),
            name("high"),
            [rows, co],
            || hi,
        );
        let w_lo = lo.map(|lo| {
            self.cached_weights(
                format!("{wn}#{kind}-split-lo{sfx}"),
                name("low"),
                [rows, co],
                || lo,
            )
        });
        (w, w_lo, scale)
    }

    /// A columns-first constant `[rows, co]` placed once per `key` (its
    /// values made only when it is not placed yet).
    fn cached_weights(
        &mut self,
        key: String,
        what: String,
        shape: [usize; 2],
        values: impl FnOnce() -> Values,
    ) -> crate::alloc::TensorLoc {
        if let Some(l) = self.locs.get(&key) {
            return l.clone();
        }
        let l = self.alloc.constant_columns_first(&what, &shape, &values());
        self.locs.insert(key, l.clone());
        l
    }

    /// The epilogue of a (transposed) convolution: its optional constant
    /// bias (input 2, `co` values) as a replicated row of `emit_ty`.
    fn bias_epilogue(
        &mut self,
        n: &Node,
        co: usize,
        emit_ty: DType,
    ) -> Result<Epilogue, CompileError> {
        let mut epi = Epilogue {
            alpha: None,
            bias: None,
        };
        if let Some(bn) = n.input(2) {
            let Some(b) = self.constant(bn) else {
                return self.unsupported(&format!("bias '{bn}' must be a constant"));
            };
            if b.len() != co {
                return self.unsupported(&format!("bias '{bn}' has {} values, not {co}", b.len()));
            }
            let bv = super::f32_of(&b.values);
            let values = match emit_ty {
                DType::F16 => Values::F16(bv.iter().map(|v| f16::from_f32(*v)).collect()),
                _ => Values::F32(bv),
            };
            epi.bias = Some(self.const_row(&format!("{bn} (bias row)"), &values));
        }
        Ok(epi)
    }

    /// MaxPool, AveragePool and the global pools (channels-last).
    pub(super) fn lower_pool(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let yn = n.outputs.first().cloned().unwrap_or_default();
        let x = self.operand(&xn)?;
        let (xs, ys) = (self.shape_of(&xn)?, self.shape_of(&yn)?);
        if xs.len() != 4 || x.layout != NHWC {
            return self.unsupported("only 2-D pooling (4-D NCHW input) is lowered");
        }
        let global = n.op_type.starts_with("Global");
        let max = n.op_type.ends_with("MaxPool");
        let win = if global {
            Window {
                kh: xs[2],
                kw: xs[3],
                sh: 1,
                sw: 1,
                dh: 1,
                dw: 1,
                pads: [0; 4],
                h: xs[2],
                w: xs[3],
                ho: 1,
                wo: 1,
            }
        } else {
            let k = ints(n, "kernel_shape")?.unwrap_or_default();
            if k.len() != 2 || k.iter().any(|v| *v < 1) {
                return self.unsupported(&format!(
                    "kernel_shape {k:?}: two positive values expected (2-D pooling)"
                ));
            }
            self.window(n, (k[0] as usize, k[1] as usize), &xs, &ys)?
        };
        if n.outputs.len() > 1 && n.outputs[1..].iter().any(|o| !o.is_empty()) {
            return self.unsupported("MaxPool's Indices output is not lowered");
        }
        let include_pad = n.attr_int("count_include_pad", 0)? != 0;
        let ty = x.dtype;
        let op = if max { Opcode::Max } else { Opcode::Add };
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        let (hw_in, hw_out) = (win.h * win.w, win.ho * win.wo);
        let chunk = pool_chunk(self.chip);
        let scratch = (out.dtype != ty && win.kh * win.kw > chunk).then(|| {
            self.alloc.tensor(
                &format!("{} (partial sums)", n.name),
                &[out.rows, out.cols],
                ty,
            )
        });
        for r in 0..out.rows {
            let (nb, p) = (r / hw_out, r % hw_out);
            let (oh, ow) = (p / win.wo, p % win.wo);
            let mut taps = Vec::new();
            let mut padded = 0usize;
            for i in 0..win.kh {
                for j in 0..win.kw {
                    if let Some((ih, iw)) = win.tap(oh, ow, i, j) {
                        taps.push(nb * hw_in + ih * win.w + iw);
                    }
                    if win.in_padded(oh, ow, i, j) {
                        padded += 1;
                    }
                }
            }
            if taps.is_empty() {
                return self.unsupported(&format!(
                    "output pixel ({oh}, {ow}) has a window entirely in the padding"
                ));
            }
            let count = if include_pad { padded } else { taps.len() };
            for ct in 0..out.vpr {
                // The window is reduced `chunk` taps per group; partial
                // results go through SRAM (the output vector itself, or a
                // scratch vector when a fused tail changes the type), which
                // keeps each group's reads few enough to place.
                let mut partial: Option<VecLoc> = None;
                let mut i = 0;
                loop {
                    let mut gb = self.begin();
                    let mut acc = match partial {
                        Some(p) => self.read(&mut gb, p, ty),
                        None => {
                            i += 1;
                            self.read(&mut gb, x.at(taps[0], ct), ty)
                        }
                    };
                    let end = (i + chunk - 1).min(taps.len());
                    for &t in &taps[i..end] {
                        let v = self.read(&mut gb, x.at(t, ct), ty);
                        acc = self.op(
                            &mut gb,
                            Instr::new(op).typed(ty),
                            super::Place::Vxm,
                            &[acc, v],
                            vec![],
                        );
                    }
                    i = end;
                    if i < taps.len() {
                        let at = match scratch.as_ref() {
                            Some(s) => s.at(r, ct),
                            None => out.at(r, ct),
                        };
                        self.write(&mut gb, acc, at, ty);
                        self.finish(gb);
                        partial = Some(at);
                        continue;
                    }
                    if !max && count > 1 {
                        let scale = Instr {
                            imm: 1.0 / count as f64,
                            ..Instr::new(Opcode::MulImm).typed(ty)
                        };
                        acc = self.op(&mut gb, scale, super::Place::Vxm, &[acc], vec![]);
                    }
                    let last = self.apply_tail(&mut gb, acc, r, ct, &tail);
                    self.write_end(&mut gb, last, out.at(r, ct), out.dtype, &tail);
                    self.finish(gb);
                    break;
                }
            }
        }
        if let Some(s) = scratch {
            self.alloc.free(&s);
        }
        Ok(())
    }

    /// BatchNormalization in inference form, as a per-channel scale and shift.
    pub(super) fn lower_batchnorm(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let x = self.operand(&xn)?;
        let xs = self.shape_of(&xn)?;
        let c = xs.get(1).copied().unwrap_or(0);
        if x.layout != NHWC || x.cols != c {
            return self.unsupported("BatchNormalization is lowered on 4-D NCHW inputs only");
        }
        let eps = n.attr_float("epsilon", 1e-5)? as f64;
        let mut params = Vec::new();
        for (k, what) in [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")] {
            let name = self.input_name(n, k)?;
            let Some(t) = self.constant(&name) else {
                return self.unsupported(&format!("{what} '{name}' must be a constant"));
            };
            if t.len() != c {
                return self.unsupported(&format!("{what} '{name}' must have {c} values"));
            }
            params.push((0..c).map(|i| t.values.get_f64(i)).collect::<Vec<f64>>());
        }
        let s: Vec<f64> = (0..c)
            .map(|i| params[0][i] / (params[3][i] + eps).sqrt())
            .collect();
        let b: Vec<f64> = (0..c).map(|i| params[1][i] - params[2][i] * s[i]).collect();
        let ty = x.dtype;
        let row = |v: &[f64]| match ty {
            DType::F16 => Values::F16(v.iter().map(|x| f16::from_f64(*x)).collect()),
            _ => Values::F32(v.iter().map(|x| *x as f32).collect()),
        };
        if !ty.is_float() {
            return self.unsupported("BatchNormalization needs a float input");
        }
        let name = n.name.clone();
        let sl = self.const_row(&format!("{name} (scale row)"), &row(&s));
        let bl = self.const_row(&format!("{name} (shift row)"), &row(&b));
        let tail = self.prepare_tail()?;
        let out = self.chain_output()?;
        for r in 0..out.rows {
            for j in 0..out.vpr {
                let mut gb = self.begin();
                let v = self.read(&mut gb, x.at(r, j), ty);
                let sv = self.read(&mut gb, sl.for_row(r, j), ty);
                let m = self.op(
                    &mut gb,
                    Instr::new(Opcode::Mul).typed(ty),
                    super::Place::Vxm,
                    &[v, sv],
                    vec![],
                );
                let bv = self.read(&mut gb, bl.for_row(r, j), ty);
                let a = self.op(
                    &mut gb,
                    Instr::new(Opcode::Add).typed(ty),
                    super::Place::Vxm,
                    &[m, bv],
                    vec![],
                );
                let last = self.apply_tail(&mut gb, a, r, j, &tail);
                self.write_end(&mut gb, last, out.at(r, j), out.dtype, &tail);
                self.finish(gb);
            }
        }
        Ok(())
    }

    /// Flatten, Reshape, Squeeze, Unsqueeze: an alias when the stored
    /// element order and vector tiling stay the same.
    pub(super) fn lower_reshape(&mut self, n: &Node) -> Result<(), CompileError> {
        let xn = self.input_name(n, 0)?;
        let yn = n.outputs.first().cloned().unwrap_or_default();
        let x = self.operand(&xn)?;
        let (xs, ys) = (self.shape_of(&xn)?, self.shape_of(&yn)?);
        if self.flat.contains_key(&yn) {
            // Flattened channels-last: same storage, read by a matrix
            // product with permuted weights (see `layout::plan_flat`).
            self.locs.insert(yn, x);
            return Ok(());
        }
        let spatial = |s: &[usize]| s.len() == 4 && s[2] * s[3] > 1;
        let x_rowmajor = x.layout.is_empty() || !spatial(&xs);
        let y_cl = self.cl.contains(&yn) && ys.len() == 4;
        let y_rowmajor = !y_cl || !spatial(&ys);
        let (_, y_cols) = view2d(&storage_shape(&ys, y_cl));
        if x_rowmajor && y_rowmajor && y_cols == x.cols {
            let mut loc = x.clone();
            loc.layout = if y_cl { NHWC.to_vec() } else { vec![] };
            self.locs.insert(yn, loc);
            return Ok(());
        }
        // Elements move to other lanes (see `lanes.rs`).
        self.lower_relayout(n)
    }
}
