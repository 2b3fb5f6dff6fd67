//! A long list in the binary program as independent chunks, so a reader
//! decodes them on all cores.
//!
//! A list is written as a sequence of byte strings, each the postcard
//! encoding of a `Vec` of up to `N` consecutive elements; reading borrows the
//! strings and decodes them in parallel (rayon), then joins them in order.
//! The result does not depend on the thread count. Decoding the 2.2 M slots
//! of ResNet-50 was the largest serial part of loading a program.
//!
//! Used through `#[serde(serialize_with, deserialize_with)]` by
//! [`crate::program::Program`]: one queue per chunk (their sizes differ,
//! and work stealing balances them), 4096 vectors per chunk of the memory
//! image.

use rayon::prelude::*;
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One chunk's encoding, written as a byte string.
struct Encoded<'a>(&'a [u8]);

impl Serialize for Encoded<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Chunks encoded at a time, on all cores: enough to keep the cores busy,
/// few enough that a whole second copy of a list is never held (a chunk is
/// one queue, at most a few MB, or 4096 vectors of the memory image).
const ENCODE_BATCH: usize = 16;

/// Writes `items` as chunks of up to `N` elements, encoding
/// [`ENCODE_BATCH`] chunks at a time in parallel (the bytes are the same on
/// any thread count).
pub fn serialize<T: Serialize + Sync, S: Serializer, const N: usize>(
    items: &[T],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(items.len().div_ceil(N)))?;
    for batch in items.chunks(N * ENCODE_BATCH) {
        let encoded: Vec<Result<Vec<u8>, postcard::Error>> =
            batch.par_chunks(N).map(postcard::to_allocvec).collect();
        for bytes in encoded {
            seq.serialize_element(&Encoded(&bytes.map_err(S::Error::custom)?))?;
        }
    }
    seq.end()
}

/// Reads chunks written by [`serialize`], decoding them in parallel.
pub fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
where
    T: DeserializeOwned + Send,
    D: Deserializer<'de>,
{
    deserialize_by(d, |bytes| {
        let (part, rest): (Vec<T>, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|e| e.to_string())?;
        if rest.is_empty() {
            Ok(part)
        } else {
            Err(format!("{} trailing bytes", rest.len()))
        }
    })
}

/// [`deserialize`] for the program's queues, each chunk read by the
/// hand-written [`crate::queue_codec`] (the same values without serde's
/// visitors: ResNet-50's decode about a third faster).
pub fn deserialize_queues<'de, D>(d: D) -> Result<Vec<crate::program::QueueProgram>, D::Error>
where
    D: Deserializer<'de>,
{
    deserialize_by(d, crate::queue_codec::decode_chunk)
}

/// Reads chunks written by [`serialize`], each decoded by `decode` (which
/// must consume all of its bytes), in parallel.
fn deserialize_by<'de, T, D>(
    d: D,
    decode: impl Fn(&[u8]) -> Result<Vec<T>, String> + Sync,
) -> Result<Vec<T>, D::Error>
where
    T: Send,
    D: Deserializer<'de>,
{
    let chunks: Vec<&'de [u8]> = Vec::deserialize(d)?;
    let parts: Vec<Result<Vec<T>, String>> = chunks
        .par_iter()
        .enumerate()
        .map(|(k, bytes)| decode(bytes).map_err(|e| format!("damaged chunk {k}: {e}")))
        .collect();
    // The first damaged chunk in order, whichever thread met it first (the
    // same error on any thread count).
    let mut items = Vec::new();
    for part in parts {
        items.extend(part.map_err(D::Error::custom)?);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct List {
        #[serde(
            serialize_with = "serialize::<_, _, 3>",
            deserialize_with = "deserialize"
        )]
        items: Vec<u32>,
    }

    #[test]
    fn chunks_round_trip_in_order() {
        for n in [0, 1, 3, 7, 300] {
            let list = List {
                items: (0..n).map(|i| i * 1000).collect(),
            };
            let bytes = postcard::to_allocvec(&list).expect("encodes");
            assert_eq!(postcard::from_bytes::<List>(&bytes).expect("decodes"), list);
        }
    }

    /// (postcard keeps no message of a custom error, only that decoding
    /// failed.)
    #[test]
    fn a_damaged_chunk_is_an_error() {
        let list = List {
            items: (0..9).map(|i| i * 1000).collect(),
        };
        let mut bytes = postcard::to_allocvec(&list).expect("encodes");
        // [chunks=3] [len] [count=3] [3 varints] ...: claim 5 elements in
        // chunk 0, which then runs out of bytes.
        bytes[2] = 5;
        assert!(postcard::from_bytes::<List>(&bytes).is_err());
    }
}
