//! A hand-written reader of one queue chunk of the binary program: the
//! bytes postcard writes for a `Vec<QueueProgram>` through serde's derive,
//! read field by field without serde's visitor machinery.
//!
//! Loading a program is mostly decoding its slots (ResNet-50 has 2.2 M),
//! and through serde each field of each slot went through a generic
//! visitor. This reader accepts exactly the byte strings postcard accepts
//! and gives the same values (a test decodes every opcode, operand and
//! edge kind both ways, and damaged chunks must fail or succeed alike); the
//! writer stays serde's.
//!
//! The wire rules it follows (postcard 1): unsigned integers above one byte
//! as LEB128 varints of at most `ceil(bits / 7)` bytes, whose last byte may
//! not carry bits past the type's width; signed ones zigzag-encoded first;
//! `u8` as one byte; `bool` as a byte 0 or 1; `f64` as 8 little-endian
//! bytes; `Option` as a byte 0 (`None`) or 1 followed by the value; a
//! sequence as its varint length and then its elements; an enum as the
//! varint index of its variant (in declaration order), then its fields.

use crate::isa::OPCODES;
use crate::program::{Dep, DepKind, Deps, QueueId, QueueProgram, Slot};
use crate::{DType, Dir, Instr, Opcode, StreamRef, Unit};
use serde::Serialize;
use std::sync::OnceLock;

/// Decodes one chunk: a postcard `Vec<QueueProgram>`, with no bytes left.
pub(crate) fn decode_chunk(bytes: &[u8]) -> Result<Vec<QueueProgram>, String> {
    let mut r = Reader { bytes, pos: 0 };
    let n = r.len()?;
    // (A length is only trusted as far as the bytes could hold it.)
    let mut queues = Vec::with_capacity(n.min(bytes.len()));
    for _ in 0..n {
        queues.push(r.queue()?);
    }
    if r.pos != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - r.pos));
    }
    Ok(queues)
}

/// The enums' variants by wire index, found by encoding each variant with
/// postcard itself (so they cannot drift from the derive).
struct Tables {
    opcodes: Vec<Opcode>,
    dtypes: Vec<DType>,
    units: Vec<Unit>,
    dirs: Vec<Dir>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| Tables {
        opcodes: by_index(OPCODES.iter().map(|o| o.op)),
        dtypes: by_index(DType::ALL),
        units: by_index([Unit::Icu, Unit::Mem, Unit::Vxm, Unit::Mxm, Unit::Sxm]),
        dirs: by_index([Dir::East, Dir::West]),
    })
}

/// `variants` ordered by the variant index postcard writes for each.
fn by_index<T: Serialize + Copy>(variants: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut indexed: Vec<(u64, T)> = variants
        .into_iter()
        .filter_map(|v| {
            let bytes = postcard::to_allocvec(&v).ok()?;
            let mut r = Reader {
                bytes: &bytes,
                pos: 0,
            };
            Some((r.varint::<5>().ok()?, v))
        })
        .collect();
    indexed.sort_by_key(|(i, _)| *i);
    // Every index from 0 is present for a plain enum; a gap would be a
    // variant this reader was not given, which it then refuses.
    indexed
        .iter()
        .enumerate()
        .take_while(|(k, (i, _))| *k as u64 == *i)
        .map(|(_, (_, v))| *v)
        .collect()
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// What went wrong (a static message: the hot path returns no `String`).
type Read<T> = Result<T, &'static str>;

impl Reader<'_> {
    #[inline(always)]
    fn byte(&mut self) -> Read<u8> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or("the chunk ends inside a slot")?;
        self.pos += 1;
        Ok(b)
    }

    /// A LEB128 varint of at most `MAX` bytes, as postcard reads one for a
    /// type of `MAX` varint bytes.
    #[inline(always)]
    fn varint<const MAX: usize>(&mut self) -> Read<u64> {
        let b = self.byte()?;
        if b < 0x80 {
            return Ok(u64::from(b));
        }
        self.varint_rest::<MAX>(b)
    }

    /// The rest of a varint whose first byte `first` has more to come.
    fn varint_rest<const MAX: usize>(&mut self, first: u8) -> Read<u64> {
        let last_max: u8 = match MAX {
            3 => 0b11,   // u16: 16 = 2 * 7 + 2
            5 => 0b1111, // u32: 32 = 4 * 7 + 4
            10 => 0b1,   // u64: 64 = 9 * 7 + 1
            _ => 0x7f,
        };
        let mut out = u64::from(first & 0x7f);
        for i in 1..MAX {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == MAX - 1 && b > last_max {
                    return Err("a bad varint");
                }
                return Ok(out);
            }
        }
        Err("a bad varint")
    }

    #[inline(always)]
    fn u16(&mut self) -> Read<u16> {
        Ok(self.varint::<3>()? as u16)
    }

    #[inline(always)]
    fn u32(&mut self) -> Read<u32> {
        Ok(self.varint::<5>()? as u32)
    }

    #[inline(always)]
    fn len(&mut self) -> Read<usize> {
        usize::try_from(self.varint::<10>()?).map_err(|_| "a length past usize")
    }

    #[inline(always)]
    fn i64(&mut self) -> Read<i64> {
        let v = self.varint::<10>()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    #[inline(always)]
    fn i32(&mut self) -> Read<i32> {
        let v = self.u32()?;
        Ok((v >> 1) as i32 ^ -((v & 1) as i32))
    }

    #[inline(always)]
    fn f64(&mut self) -> Read<f64> {
        let b: [u8; 8] = self
            .bytes
            .get(self.pos..self.pos + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or("the chunk ends inside a slot")?;
        self.pos += 8;
        Ok(f64::from_le_bytes(b))
    }

    /// A `bool`, or an `Option`'s tag (whether a value follows).
    #[inline(always)]
    fn flag(&mut self) -> Read<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("a bad bool or option tag"),
        }
    }

    #[inline(always)]
    fn variant<T: Copy>(&mut self, table: &[T]) -> Read<T> {
        let i = self.u32()?;
        table
            .get(i as usize)
            .copied()
            .ok_or("an unknown enum variant")
    }

    fn queue(&mut self) -> Read<QueueProgram> {
        let t = tables();
        let queue = QueueId {
            unit: self.variant(&t.units)?,
            slice: self.u16()?,
            index: self.byte()?,
        };
        let n = self.len()?;
        let mut slots = Vec::with_capacity(n.min(self.bytes.len() - self.pos));
        for _ in 0..n {
            slots.push(self.slot(t)?);
        }
        Ok(QueueProgram { queue, slots })
    }

    #[inline(always)]
    fn stream(&mut self, t: &Tables) -> Read<Option<StreamRef>> {
        Ok(if self.flag()? {
            Some(StreamRef {
                id: self.byte()?,
                dir: self.variant(&t.dirs)?,
            })
        } else {
            None
        })
    }

    fn slot(&mut self, t: &Tables) -> Read<Slot> {
        let id = self.u32()?;
        let instr = Instr {
            op: self.variant(&t.opcodes)?,
            ty: self.variant(&t.dtypes)?,
            to: self.variant(&t.dtypes)?,
            src: self.stream(t)?,
            src2: self.stream(t)?,
            dst: self.stream(t)?,
            arg: self.i64()?,
            arg2: self.i64()?,
            imm: self.f64()?,
            accumulate: self.flag()?,
        };
        let node = if self.flag()? {
            Some(self.u32()?)
        } else {
            None
        };
        let n = self.len()?;
        let mut deps = Deps::with_capacity(n.min(self.bytes.len() - self.pos));
        for _ in 0..n {
            let on = self.u32()?;
            let kind = match self.u32()? {
                0 => DepKind::Src,
                1 => DepKind::Src2,
                2 => DepKind::Order(self.i32()?),
                _ => return Err("an unknown dependence kind"),
            };
            let group = self.byte()?;
            deps.push(Dep { on, kind, group });
        }
        Ok(Slot {
            id,
            instr,
            node,
            deps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Slots that use every opcode, type, stream and edge kind, and large,
    /// negative and odd operand values.
    fn sample() -> Vec<QueueProgram> {
        let stream = |id: u8, dir: Dir| Some(StreamRef { id, dir });
        let mut slots = Vec::new();
        for (k, info) in OPCODES.iter().enumerate() {
            let ty = DType::ALL[k % 4];
            let to = DType::ALL[(k / 4) % 4];
            let mut deps = Deps::new();
            for j in 0..k % 4 {
                deps.push(Dep {
                    on: (k * 1000 + j) as u32,
                    kind: [
                        DepKind::Src,
                        DepKind::Src2,
                        DepKind::Order(-(k as i32) * 77),
                    ][j % 3],
                    group: (j * 3) as u8,
                });
            }
            slots.push(Slot {
                id: (k as u32) << (k % 25),
                instr: Instr {
                    op: info.op,
                    ty,
                    to,
                    src: stream(k as u8, Dir::East),
                    src2: if k % 2 == 0 {
                        None
                    } else {
                        stream(31, Dir::West)
                    },
                    dst: stream(200, Dir::West),
                    arg: [0, -1, i64::MAX, i64::MIN, 1 << 40, -300][k % 6],
                    arg2: -(k as i64) * 12345,
                    imm: [0.0, -1.5, f64::MAX, 1e-300, f64::NAN][k % 5],
                    accumulate: k % 3 == 0,
                },
                node: (k % 2 == 0).then_some(k as u32 * 99_999),
                deps,
            });
        }
        vec![
            QueueProgram {
                queue: QueueId {
                    unit: Unit::Vxm,
                    slice: 300,
                    index: 3,
                },
                slots: slots.clone(),
            },
            QueueProgram {
                queue: QueueId::ICU,
                slots: Vec::new(),
            },
            QueueProgram {
                queue: QueueId {
                    unit: Unit::Sxm,
                    slice: u16::MAX,
                    index: 255,
                },
                slots,
            },
        ]
    }

    /// Equal, with NaN immediates compared by their bits.
    fn same(a: &[QueueProgram], b: &[QueueProgram]) -> bool {
        let bits = |q: &[QueueProgram]| -> Vec<u64> {
            q.iter()
                .flat_map(|q| q.slots.iter().map(|s| s.instr.imm.to_bits()))
                .collect()
        };
        let clean = |q: &[QueueProgram]| -> Vec<QueueProgram> {
            let mut q = q.to_vec();
            for s in q.iter_mut().flat_map(|q| q.slots.iter_mut()) {
                s.instr.imm = 0.0;
            }
            q
        };
        bits(a) == bits(b) && clean(a) == clean(b)
    }

    #[test]
    fn decodes_what_serde_writes() {
        let queues = sample();
        let bytes = postcard::to_allocvec(&queues).expect("encodes");
        let decoded = decode_chunk(&bytes).expect("decodes");
        assert!(same(&decoded, &queues));
        assert_eq!(tables().opcodes.len(), OPCODES.len());
        assert_eq!(tables().units.len(), 5);
    }

    #[test]
    fn a_short_or_long_chunk_is_an_error() {
        let bytes = postcard::to_allocvec(&sample()).expect("encodes");
        assert!(decode_chunk(&bytes[..bytes.len() - 1]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode_chunk(&long).is_err());
    }

    proptest! {
        /// A damaged chunk decodes as serde would decode it, or fails as
        /// serde's decoding fails.
        #[test]
        fn damaged_chunks_decode_as_serde_does(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = postcard::to_allocvec(&sample()).expect("encodes");
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let keep = bytes.len() - cut.index(bytes.len() / 8 + 1);
            bytes.truncate(keep);
            let ours = decode_chunk(&bytes);
            let serde = match postcard::take_from_bytes::<Vec<QueueProgram>>(&bytes) {
                Ok((q, [])) => Ok(q),
                Ok(_) => Err(()),
                Err(_) => Err(()),
            };
            match (ours, serde) {
                (Ok(a), Ok(b)) => prop_assert!(same(&a, &b)),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "ours {:?}, serde {:?}", a.is_ok(), b.is_ok()),
            }
        }
    }
}
