//! The wire encoding of Raft RPC bodies: postcard, read strictly.
//!
//! A body is accepted only if it is exactly the encoding this crate would
//! produce for the value it decodes to. Refused are:
//!
//! * an empty body;
//! * anything postcard refuses: a body that ends early, a length or a
//!   varint that runs past the end, an enum variant index outside the
//!   type's variants, a `bool` or `Option` tag other than 0 or 1, invalid
//!   UTF-8;
//! * bytes after the encoded value (postcard itself ignores them);
//! * a non-canonical encoding: postcard reads an integer padded with
//!   continuation bytes (`0x80 0x00` for 0) and a map or set with keys out
//!   of order or repeated, none of which it ever writes.
//!
//! So every accepted request body re-encodes to itself, and a forged or
//! garbled body cannot pass for a well-formed one by carrying extra bytes.
//! The canonical check re-encodes the decoded value into a comparing sink,
//! with no allocation, and stops at the first differing byte. Answers, which
//! come from the peer this node called, are read with the same rules except
//! the canonical check.
//!
//! The wire types must encode deterministically for this to hold (no
//! `HashMap`s): the property tests in this module encode and decode
//! arbitrary values of every RPC's request type.

use bytes::Bytes;
use postcard::ser_flavors::Flavor;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why an RPC body (or an answer) was refused before anything acted on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is empty.
    #[error("the body is empty")]
    Empty,
    /// The body is not an encoding of the expected type: postcard's reason.
    #[error("the body is not an encoding of this RPC's message: {0}")]
    Malformed(String),
    /// Bytes follow the encoded value.
    #[error("{extra} byte(s) follow the encoded message")]
    TrailingBytes {
        /// How many bytes follow the value.
        extra: usize,
    },
    /// The body decodes, but is not the encoding this crate writes (an
    /// integer padded with continuation bytes, map or set keys out of order
    /// or repeated).
    #[error("the body is not in canonical form")]
    NonCanonical,
}

/// Encodes a value for the wire.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Bytes, postcard::Error> {
    postcard::to_stdvec(value).map(Bytes::from)
}

/// Decodes a body that must hold exactly one value: refuses an empty body,
/// what postcard refuses and trailing bytes. Answers from peers are read
/// with this.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    if bytes.is_empty() {
        return Err(BodyError::Empty);
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| BodyError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(BodyError::TrailingBytes { extra: rest.len() });
    }
    Ok(value)
}

/// [`decode`], and the body must be the canonical encoding of the value
/// (see the [module docs](self)). Request bodies are read with this.
pub(crate) fn decode_canonical<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, BodyError> {
    let value = decode(bytes)?;
    if !is_encoding_of(&value, bytes) {
        return Err(BodyError::NonCanonical);
    }
    Ok(value)
}

/// Whether `bytes` is exactly the encoding of `value`.
fn is_encoding_of<T: Serialize>(value: &T, bytes: &[u8]) -> bool {
    postcard::serialize_with_flavor(
        value,
        SameAs {
            expected: bytes,
            at: 0,
        },
    )
    .is_ok()
}

/// A postcard sink that compares what it is given with `expected` instead of
/// storing it, and fails at the first difference or if `expected` has bytes
/// left at the end.
struct SameAs<'a> {
    expected: &'a [u8],
    at: usize,
}

impl Flavor for SameAs<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self
            .at
            .checked_add(data.len())
            .ok_or(postcard::Error::SerializeBufferFull)?;
        if self.expected.get(self.at..end) != Some(data) {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.at = end;
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<()> {
        if self.at == self.expected.len() {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }
}

#[cfg(test)]
mod tests;
