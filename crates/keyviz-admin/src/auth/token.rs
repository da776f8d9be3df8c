//! Compact HMAC-SHA256 signed tokens: `base64url(payload) "." base64url(mac)`.
//!
//! The MAC covers a domain string as well as the payload, so a session token can never be
//! accepted as a peer token or the other way round, even though both use the cluster secret.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

use crate::host::ClusterSecret;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted before any decoding (bounds work on hostile input).
const MAX_TOKEN_LEN: usize = 4096;

/// Why a token was rejected. Callers map every variant to one generic 401 so an attacker
/// learns nothing from the reason; the reason is for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not two base64url segments, too long, or undecodable.
    #[error("malformed token")]
    Malformed,
    /// No verification key produced the MAC.
    #[error("bad signature")]
    BadSignature,
    /// The signed payload is not the expected JSON.
    #[error("bad claims")]
    BadClaims,
    /// The token is expired, not yet valid, too long-lived, for another audience or scope.
    #[error("token rejected: {0}")]
    Rejected(&'static str),
}

fn mac_for(key: &[u8], domain: &str, payload_b64: &str) -> Option<HmacSha256> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).ok()?;
    mac.update(domain.as_bytes());
    mac.update(b".");
    mac.update(payload_b64.as_bytes());
    Some(mac)
}

/// Signs `claims` with the current secret under `domain`.
///
/// # Errors
/// Only if the claims cannot be serialised (never for the crate's own claim types).
pub(crate) fn sign<T: Serialize>(
    secret: &ClusterSecret,
    domain: &str,
    claims: &T,
) -> Result<String, TokenError> {
    let json = serde_json::to_vec(claims).map_err(|_| TokenError::BadClaims)?;
    let payload = URL_SAFE_NO_PAD.encode(json);
    let mac = mac_for(secret.current(), domain, &payload).ok_or(TokenError::BadClaims)?;
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{payload}.{sig}"))
}

/// Checks the MAC with the current then the previous secret (constant-time compare) and
/// decodes the claims. Time, audience and role checks are the caller's.
pub(crate) fn verify<T: DeserializeOwned>(
    secret: &ClusterSecret,
    domain: &str,
    token: &str,
) -> Result<T, TokenError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (payload, sig_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if payload.is_empty() || sig_b64.contains('.') {
        return Err(TokenError::Malformed);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| TokenError::Malformed)?;
    let mut ok = false;
    for key in secret.verify_keys() {
        if let Some(mac) = mac_for(key, domain, payload) {
            // verify_slice compares in constant time.
            if mac.verify_slice(&sig).is_ok() {
                ok = true;
                break;
            }
        }
    }
    if !ok {
        return Err(TokenError::BadSignature);
    }
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| TokenError::BadClaims)
}

/// `base64url(HMAC-SHA256(key, domain "." data))`; `None` only if HMAC refuses the key
/// (it accepts any length).
pub(crate) fn mac_b64(key: &[u8], domain: &str, data: &str) -> Option<String> {
    let mac = mac_for(key, domain, data)?;
    Some(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// `n` random bytes from the OS as base64url without padding.
pub(crate) fn random_b64(n: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct C {
        a: u32,
    }

    fn secret(byte: u8, previous: Option<u8>) -> ClusterSecret {
        match ClusterSecret::new(vec![byte; 32], previous.map(|p| vec![p; 32])) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn round_trip_and_exactly_one_dot() {
        let s = secret(1, None);
        let t = sign(&s, "d", &C { a: 7 }).unwrap_or_default();
        assert_eq!(t.matches('.').count(), 1);
        assert_eq!(verify::<C>(&s, "d", &t), Ok(C { a: 7 }));
    }

    #[test]
    fn other_domain_or_key_is_rejected_previous_key_accepted() {
        let old = secret(1, None);
        let t = sign(&old, "d", &C { a: 1 }).unwrap_or_default();
        assert_eq!(verify::<C>(&old, "e", &t), Err(TokenError::BadSignature));
        assert_eq!(
            verify::<C>(&secret(2, None), "d", &t),
            Err(TokenError::BadSignature)
        );
        assert_eq!(verify::<C>(&secret(2, Some(1)), "d", &t), Ok(C { a: 1 }));
        assert_eq!(
            verify::<C>(&secret(2, Some(3)), "d", &t),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let s = secret(1, None);
        for t in [
            "",
            "abc",
            "a.b.c",
            ".sig",
            "a.b",
            "not-header.payload.sig",
            "a.!!",
        ] {
            assert!(verify::<C>(&s, "d", t).is_err(), "{t:?} accepted");
        }
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(verify::<C>(&s, "d", &long), Err(TokenError::Malformed));
    }

    #[test]
    fn tampered_payload_fails_the_mac() {
        let s = secret(1, None);
        let t = sign(&s, "d", &C { a: 1 }).unwrap_or_default();
        let (_, sig) = t.split_once('.').unwrap_or_default();
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(br#"{"a":2}"#));
        assert_eq!(verify::<C>(&s, "d", &forged), Err(TokenError::BadSignature));
    }
}
