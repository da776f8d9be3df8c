//! Decoding and validating a peer's matrix body: the compact encoding (what peers of this
//! version send), or JSON through serde_json for peers that do not speak it. There is one
//! JSON parser: serde_json, whose allocations grow with the bytes actually parsed, so a
//! hostile length or count in the body cannot reserve more than the body's size.

use keyviz::Matrix;

use super::client::PeerError;

/// Parses a JSON matrix without validating it.
pub(crate) fn decode_json(body: &[u8]) -> Result<Matrix, PeerError> {
    serde_json::from_slice(body).map_err(|e| PeerError::Decode(e.to_string()))
}

/// Parses a peer body as a JSON matrix and checks its invariants (`Matrix::validate`:
/// lengths, order, unique bucket ids). Trailing whitespace is allowed; anything else after
/// the value is an error.
///
/// # Errors
/// [`PeerError::Decode`] for syntax/type errors, [`PeerError::Invalid`] for invariants.
pub fn decode_matrix(body: &[u8]) -> Result<Matrix, PeerError> {
    let m = decode_json(body)?;
    m.validate()
        .map_err(|e| PeerError::Invalid(e.to_string()))?;
    Ok(m)
}

/// Like [`decode_matrix`] for a body in the compact encoding
/// ([`super::compact::CONTENT_TYPE`]).
///
/// # Errors
/// As [`decode_matrix`].
pub fn decode_compact_matrix(body: &[u8]) -> Result<Matrix, PeerError> {
    let m = super::compact::decode(body)?;
    m.validate()
        .map_err(|e| PeerError::Invalid(e.to_string()))?;
    Ok(m)
}
