//! Decoding and validating a peer's matrix body: a fast reader for the common shape, with
//! serde_json as the fallback and the source of error messages.

use keyviz::Matrix;

use super::client::PeerError;

/// Parses a peer body as a matrix and checks its invariants (`Matrix::validate`: lengths,
/// order). Trailing whitespace is allowed; anything else after the value is an error.
///
/// # Errors
/// [`PeerError::Decode`] for syntax/type errors, [`PeerError::Invalid`] for invariants.
pub fn decode_matrix(body: &[u8]) -> Result<Matrix, PeerError> {
    let m = match super::fast_json::decode(body) {
        Ok(m) => m,
        // Outside the fast subset (or invalid): serde_json decides and words the error.
        Err(_) => serde_json::from_slice(body).map_err(|e| PeerError::Decode(e.to_string()))?,
    };
    m.validate()
        .map_err(|e| PeerError::Invalid(e.to_string()))?;
    Ok(m)
}
