//! What a verified peer request grants: read-only KeyViz access to this node's local view.
//!
//! Peers no longer carry bearer tokens: every peer request is signed on its own
//! ([`crate::peer::signing`]: method, path, body, time, nonce, issuer, audience) and
//! verified by the router's peer guard before any handler runs, so a request captured on
//! the way to one node cannot be replayed, re-aimed at another node or altered. A handler
//! sees the outcome as [`PeerClaims`].

use crate::peer::VerifiedRequest;
use crate::peer::signing::AUD_IDENTITY;

/// The only scope peers are ever granted.
pub const SCOPE_KEYVIZ_READ: &str = "keyviz:read";

/// Who called, as proven by the request's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerClaims {
    /// Node id of the caller.
    pub iss: String,
    /// Node id of this node (the signed audience).
    pub aud: String,
    /// Granted scope; always [`SCOPE_KEYVIZ_READ`].
    pub scope: String,
    /// When the request was signed, unix milliseconds.
    pub iat_ms: i64,
}

impl PeerClaims {
    /// The claims of a verified request addressed to `self_node_id`; `None` for an
    /// identity challenge (audience [`AUD_IDENTITY`]), which grants nothing beyond the
    /// identity answer.
    #[must_use]
    pub fn from_verified(v: &VerifiedRequest, self_node_id: &str) -> Option<Self> {
        (v.audience == self_node_id && v.audience != AUD_IDENTITY).then(|| PeerClaims {
            iss: v.issuer.clone(),
            aud: v.audience.clone(),
            scope: SCOPE_KEYVIZ_READ.to_string(),
            iat_ms: v.ts_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_challenges_and_other_audiences_grant_nothing() {
        let v = |aud: &str| VerifiedRequest {
            issuer: "n1".into(),
            audience: aud.into(),
            nonce: "x".into(),
            ts_ms: 5,
            answer_digest: Default::default(),
        };
        assert!(PeerClaims::from_verified(&v("n2"), "n2").is_some_and(|c| c.iss == "n1"));
        assert_eq!(PeerClaims::from_verified(&v(AUD_IDENTITY), "n2"), None);
        assert_eq!(PeerClaims::from_verified(&v("n3"), "n2"), None);
    }
}
