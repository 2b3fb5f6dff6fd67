//! A long list in the binary program as independent chunks, so a reader
//! decodes them on all cores.
//!
//! A list is written as a sequence of byte strings, each the postcard
//! encoding of a `Vec` of up to `N` consecutive elements; reading borrows the
//! strings and decodes them in parallel (rayon), then joins them in order.
//! The result does not depend on the thread count. Decoding the 2.2 M slots
//! of ResNet-50 was the largest serial part of loading a program.
//!
//! Used through `#[serde(with = "...")]` by [`crate::program::Program`]:
//! [`per_queue`] for the queues (one queue per chunk: their sizes differ,
//! and work stealing balances them), [`per_4096`] for the memory image.

use rayon::prelude::*;
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One chunk, written as the byte string of its elements' encoding (made
/// as it is written, so a whole second copy of the list is never held).
struct Chunk<'a, T>(&'a [T]);

impl<T: Serialize> Serialize for Chunk<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&postcard::to_allocvec(self.0).map_err(S::Error::custom)?)
    }
}

/// Writes `items` as chunks of up to `n` elements.
fn serialize<T: Serialize, S: Serializer>(items: &[T], n: usize, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(items.chunks(n).map(Chunk))
}

/// Reads chunks written by [`serialize`], decoding them in parallel.
fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
where
    T: DeserializeOwned + Send,
    D: Deserializer<'de>,
{
    let chunks: Vec<&'de [u8]> = Vec::deserialize(d)?;
    let parts: Vec<Vec<T>> = chunks
        .par_iter()
        .map(|bytes| {
            let (part, rest): (Vec<T>, &[u8]) =
                postcard::take_from_bytes(bytes).map_err(|e| format!("damaged chunk: {e}"))?;
            if rest.is_empty() {
                Ok(part)
            } else {
                Err(format!("{} trailing bytes in a chunk", rest.len()))
            }
        })
        .collect::<Result<_, String>>()
        .map_err(D::Error::custom)?;
    Ok(parts.into_iter().flatten().collect())
}

/// One element per chunk (the queues).
pub mod per_queue {
    use super::*;

    /// See [`super::serialize`].
    pub fn serialize<T: Serialize, S: Serializer>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
        super::serialize(items, 1, s)
    }

    /// See [`super::deserialize`].
    pub fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
    where
        T: DeserializeOwned + Send,
        D: Deserializer<'de>,
    {
        super::deserialize(d)
    }
}

/// 4096 elements per chunk (the memory image's vectors).
pub mod per_4096 {
    use super::*;

    /// See [`super::serialize`].
    pub fn serialize<T: Serialize, S: Serializer>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
        super::serialize(items, 4096, s)
    }

    /// See [`super::deserialize`].
    pub fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
    where
        T: DeserializeOwned + Send,
        D: Deserializer<'de>,
    {
        super::deserialize(d)
    }
}
