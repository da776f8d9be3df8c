//! Node-to-node tokens: short-lived, bound to one target node, read-only KeyViz scope.
//!
//! Sent as `Authorization: KeyViz-Peer <token>`. A request carrying a valid one is answered
//! from the local view only, which is what makes fan-out recursion impossible.

use serde::{Deserialize, Serialize};

use super::token::{self, TokenError};
use crate::host::ClusterSecret;

const DOMAIN: &str = "keyviz-peer-v1";
/// The only scope peers are ever granted.
pub const SCOPE_KEYVIZ_READ: &str = "keyviz:read";
/// Authorization scheme of peer requests.
pub const AUTH_SCHEME: &str = "KeyViz-Peer";
/// Longest lifetime a peer token may claim, in milliseconds.
pub const MAX_PEER_TOKEN_TTL_MS: i64 = 30_000;

/// The signed content of a peer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerClaims {
    /// Node id of the caller.
    pub iss: String,
    /// Node id of the only node that accepts the token.
    pub aud: String,
    /// Granted scope; always [`SCOPE_KEYVIZ_READ`].
    pub scope: String,
    /// Issue time, unix milliseconds.
    pub iat_ms: i64,
    /// Expiry, unix milliseconds (exclusive); at most 30 s after `iat_ms`.
    pub exp_ms: i64,
}

/// Mints a token from `issuer` for `audience`, valid `ttl_ms` (clamped to 1..=30 000) from
/// `now_ms`.
///
/// # Errors
/// Never for well-formed input (serialisation cannot fail).
pub fn mint(
    secret: &ClusterSecret,
    issuer: &str,
    audience: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<String, TokenError> {
    let claims = PeerClaims {
        iss: issuer.to_string(),
        aud: audience.to_string(),
        scope: SCOPE_KEYVIZ_READ.to_string(),
        iat_ms: now_ms,
        exp_ms: now_ms.saturating_add(ttl_ms.clamp(1, MAX_PEER_TOKEN_TTL_MS)),
    };
    token::sign(secret, DOMAIN, &claims)
}

/// Verifies a peer token for `self_node_id` at `now_ms`: MAC, audience, scope, expiry, a
/// lifetime of at most 30 s, and `iat` no more than `skew_ms` in the future.
///
/// # Errors
/// [`TokenError`] for the first failed check.
pub fn verify(
    secret: &ClusterSecret,
    token_text: &str,
    self_node_id: &str,
    now_ms: i64,
    skew_ms: i64,
) -> Result<PeerClaims, TokenError> {
    let c: PeerClaims = token::verify(secret, DOMAIN, token_text)?;
    if c.aud != self_node_id {
        return Err(TokenError::Rejected("audience"));
    }
    if c.scope != SCOPE_KEYVIZ_READ {
        return Err(TokenError::Rejected("scope"));
    }
    if c.exp_ms.saturating_sub(c.iat_ms) > MAX_PEER_TOKEN_TTL_MS || c.exp_ms <= c.iat_ms {
        return Err(TokenError::Rejected("lifetime"));
    }
    if now_ms >= c.exp_ms {
        return Err(TokenError::Rejected("expired"));
    }
    if c.iat_ms > now_ms.saturating_add(skew_ms) {
        return Err(TokenError::Rejected("issued in the future"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ClusterSecret {
        match ClusterSecret::new(vec![9; 32], None) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn token_is_accepted_only_by_its_audience_before_expiry() {
        let s = secret();
        let t = mint(&s, "n1", "n2", NOW, 10_000).unwrap_or_default();
        assert!(verify(&s, &t, "n2", NOW + 1, 1000).is_ok_and(|c| c.iss == "n1"));
        assert_eq!(
            verify(&s, &t, "n3", NOW + 1, 1000),
            Err(TokenError::Rejected("audience"))
        );
        assert_eq!(
            verify(&s, &t, "n2", NOW + 10_000, 1000),
            Err(TokenError::Rejected("expired"))
        );
    }

    #[test]
    fn lifetime_is_clamped_to_thirty_seconds() {
        let s = secret();
        let t = mint(&s, "n1", "n2", NOW, 3_600_000).unwrap_or_default();
        assert!(verify(&s, &t, "n2", NOW + 29_999, 0).is_ok());
        assert!(verify(&s, &t, "n2", NOW + 30_000, 0).is_err());
    }

    #[test]
    fn session_token_is_not_a_peer_token() {
        let s = secret();
        let c =
            match crate::auth::SessionClaims::issue("a", crate::auth::Role::Full, "n2", "g", 1, 60)
            {
                Ok(c) => c,
                Err(e) => panic!("{e}"),
            };
        let t = c.sign(&s).unwrap_or_default();
        assert_eq!(verify(&s, &t, "n2", NOW, 0), Err(TokenError::BadSignature));
    }
}
