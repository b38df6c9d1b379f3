//! Fixed-size byte arrays (keys, ids, signatures, Merkle siblings) in the binary encoding, read
//! and written eight bytes at a time.
//!
//! Serde sees a `[u8; 32]` as a tuple of 32 elements and decodes it one byte at a time, each
//! through the decoder's generic element path: for a certificate of 14 batched votes that was
//! most of the cost of checking it. Both of this crate's bincode configurations (the wire's
//! and storage's, `codec`) encode integers at fixed width, little-endian, so a `u64` takes
//! exactly its eight little-endian bytes: an array written as `N / 8` such words is
//! byte-for-byte the array written as `N` bytes. The encoding does not change, only how many
//! calls it takes (`codec`'s tests pin the bytes). Human-readable formats never get here:
//! their types print hex.

use serde::de::{Error, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserializer, Serializer};
use std::fmt;

/// Writes `bytes` as `N / 8` little-endian words (`N` a multiple of 8).
pub(crate) fn serialize<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    const { assert!(N.is_multiple_of(8)) };
    let mut tuple = serializer.serialize_tuple(N / 8)?;
    for word in bytes.chunks_exact(8) {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        tuple.serialize_element(&u64::from_le_bytes(le))?;
    }
    tuple.end()
}

/// Reads what [`serialize`] wrote.
pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    struct WordsVisitor<const N: usize>;
    impl<'de, const N: usize> Visitor<'de> for WordsVisitor<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{N} bytes")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
            let mut bytes = [0u8; N];
            for (i, word) in bytes.chunks_exact_mut(8).enumerate() {
                let value: u64 = seq
                    .next_element()?
                    .ok_or_else(|| Error::invalid_length(i * 8, &self))?;
                word.copy_from_slice(&value.to_le_bytes());
            }
            Ok(bytes)
        }
    }
    const { assert!(N.is_multiple_of(8)) };
    deserializer.deserialize_tuple(N / 8, WordsVisitor::<N>)
}

/// A 32-byte array in a tuple or struct field, encoded by words (see the module).
#[derive(Clone, Copy)]
pub(crate) struct Words32(pub(crate) [u8; 32]);

impl serde::Serialize for Words32 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Words32 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize(deserializer).map(Words32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration both of the crate's encodings share in what matters here: fixed-width
    /// little-endian integers.
    fn config() -> impl bincode::config::Config {
        bincode::config::standard()
            .with_little_endian()
            .with_fixed_int_encoding()
    }

    #[test]
    fn words_are_the_bytes_themselves_and_read_back() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
        let encoded = bincode::serde::encode_to_vec(Words32(bytes), config()).unwrap();
        assert_eq!(encoded, bytes);
        // Exactly as serde's own byte-by-byte encoding of the array.
        assert_eq!(
            encoded,
            bincode::serde::encode_to_vec(bytes, config()).unwrap()
        );
        let (read, used): (Words32, usize) =
            bincode::serde::decode_from_slice(&encoded, config()).unwrap();
        assert_eq!((read.0, used), (bytes, 32));
        // One byte short is an error, not a partial array.
        assert!(bincode::serde::decode_from_slice::<Words32, _>(&encoded[..31], config()).is_err());
    }
}
