//! Operator session tokens: who logged in, with which role, until when, on which node and in
//! which session generation of that node; and the CSRF token derived from a session.
//!
//! Sessions are audience-bound: a cookie is accepted only by the node that issued it, and
//! only while that node's session generation is the one the cookie names (a restart, a
//! revocation-table overflow or [`crate::AdminState::end_all_sessions`] start a new one).
//! Revoking a session therefore needs no cluster-wide state: no other node ever accepted it.

use serde::{Deserialize, Serialize};

use super::token::{self, TokenError};
use crate::auth::Role;
use crate::host::ClusterSecret;

const DOMAIN: &str = "keyviz-session-v2";
const CSRF_DOMAIN: &str = "keyviz-csrf-v1";

/// The signed content of an `admin_session` cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Access key of the operator.
    pub sub: String,
    /// Role granted at login (not re-checked until the session ends).
    pub role: Role,
    /// Issue time, unix seconds.
    pub iat: i64,
    /// Expiry, unix seconds (exclusive).
    pub exp: i64,
    /// Random session id; logout revokes it on the issuing node (the only node that
    /// accepts the session).
    pub sid: String,
    /// Node id of the issuing node, the only node that accepts the session.
    pub aud: String,
    /// Session generation of the issuing node at login; the session dies when the node
    /// starts a new generation (restart, [`crate::AdminState::end_all_sessions`]).
    pub generation: String,
}

impl SessionClaims {
    /// Claims for `sub` with `role`, for node `aud` in its session `generation`, issued at
    /// `now_s` and valid for `ttl_s` seconds, with a fresh random session id.
    ///
    /// # Errors
    /// When the OS random source fails.
    pub fn issue(
        sub: &str,
        role: Role,
        aud: &str,
        generation: &str,
        now_s: i64,
        ttl_s: i64,
    ) -> Result<Self, getrandom::Error> {
        Ok(SessionClaims {
            sub: sub.to_string(),
            role,
            iat: now_s,
            exp: now_s.saturating_add(ttl_s),
            sid: token::random_b64(16)?,
            aud: aud.to_string(),
            generation: generation.to_string(),
        })
    }

    /// The CSRF token of this session: `base64url(HMAC(current secret, domain || sid))`.
    /// Only a holder of the cluster secret can compute it, so a cookie an attacker plants
    /// cannot be made to match.
    #[must_use]
    pub fn csrf_token(&self, secret: &ClusterSecret) -> String {
        token::mac_b64(secret.current(), CSRF_DOMAIN, &self.sid).unwrap_or_default()
    }

    /// Whether `presented` is this session's CSRF token under the current or previous
    /// secret (constant-time compare of equal-length MACs).
    #[must_use]
    pub fn csrf_matches(&self, secret: &ClusterSecret, presented: &str) -> bool {
        secret.verify_keys().any(|key| {
            token::mac_b64(key, CSRF_DOMAIN, &self.sid).is_some_and(|want| {
                want.len() == presented.len()
                    && bool::from(subtle::ConstantTimeEq::ct_eq(
                        want.as_bytes(),
                        presented.as_bytes(),
                    ))
            })
        })
    }

    /// Signs the claims with the current cluster secret.
    ///
    /// # Errors
    /// Never for well-formed claims (serialisation cannot fail).
    pub fn sign(&self, secret: &ClusterSecret) -> Result<String, TokenError> {
        token::sign(secret, DOMAIN, self)
    }

    /// Verifies a cookie value at `now_s`: MAC (current or previous secret), `now < exp`,
    /// `iat <= now + skew_s`, non-empty `sub`, `sid`, `aud` and `generation`. Audience,
    /// generation and revocation are the caller's checks (they need the node's state).
    ///
    /// # Errors
    /// [`TokenError`] describing the first failed check.
    pub fn verify(
        secret: &ClusterSecret,
        token_text: &str,
        now_s: i64,
        skew_s: i64,
    ) -> Result<Self, TokenError> {
        let c: SessionClaims = token::verify(secret, DOMAIN, token_text)?;
        if c.sub.is_empty() || c.sid.is_empty() || c.aud.is_empty() || c.generation.is_empty() {
            return Err(TokenError::BadClaims);
        }
        if c.exp <= 0 || now_s >= c.exp {
            return Err(TokenError::Rejected("expired"));
        }
        if c.iat <= 0 || c.iat > now_s.saturating_add(skew_s) {
            return Err(TokenError::Rejected("issued in the future"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8, prev: Option<u8>) -> ClusterSecret {
        match ClusterSecret::new(vec![b; 64], prev.map(|p| vec![p; 64])) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn token_at(s: &ClusterSecret, iat: i64, role: Role) -> String {
        let c = match SessionClaims::issue("alice", role, "n1", "g1", iat, 3600) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        c.sign(s).unwrap_or_default()
    }

    const T0: i64 = 1_700_000_000;

    #[test]
    fn sign_verify_round_trip_keeps_principal() {
        let s = secret(1, None);
        let t = token_at(&s, T0, Role::Full);
        let c = SessionClaims::verify(&s, &t, T0 + 10, 30);
        assert!(
            matches!(c, Ok(ref c) if c.sub == "alice" && c.role == Role::Full && c.exp == T0 + 3600)
        );
    }

    #[test]
    fn expired_and_future_tokens_are_rejected_with_skew_tolerance() {
        let s = secret(1, None);
        let t = token_at(&s, T0, Role::ReadOnly);
        assert!(SessionClaims::verify(&s, &t, T0 + 3601, 30).is_err());
        assert!(SessionClaims::verify(&s, &t, T0 + 3600, 30).is_err());
        let future = token_at(&s, T0 + 600, Role::ReadOnly);
        assert!(SessionClaims::verify(&s, &future, T0, 30).is_err());
        let ahead = token_at(&s, T0 + 120, Role::ReadOnly);
        assert!(SessionClaims::verify(&s, &ahead, T0, 30).is_err());
        assert!(SessionClaims::verify(&s, &ahead, T0, 300).is_ok());
    }

    #[test]
    fn rotation_accepts_previous_key_only() {
        let old = secret(1, None);
        let t = token_at(&old, T0, Role::Full);
        assert!(SessionClaims::verify(&secret(2, None), &t, T0, 30).is_err());
        assert!(SessionClaims::verify(&secret(2, Some(1)), &t, T0, 30).is_ok());
        assert!(SessionClaims::verify(&secret(2, Some(3)), &t, T0, 30).is_err());
    }

    #[test]
    fn unknown_role_or_empty_subject_is_rejected() {
        #[derive(Serialize)]
        struct Raw<'a> {
            sub: &'a str,
            role: &'a str,
            iat: i64,
            exp: i64,
            sid: &'a str,
            aud: &'a str,
            generation: &'a str,
        }
        let s = secret(1, None);
        let admin = token::sign(
            &s,
            DOMAIN,
            &Raw {
                sub: "a",
                role: "admin",
                iat: T0,
                exp: T0 + 60,
                sid: "x",
                aud: "n1",
                generation: "g",
            },
        )
        .unwrap_or_default();
        assert_eq!(
            SessionClaims::verify(&s, &admin, T0, 30),
            Err(TokenError::BadClaims)
        );
        let empty = token::sign(
            &s,
            DOMAIN,
            &Raw {
                sub: "",
                role: "full",
                iat: T0,
                exp: T0 + 60,
                sid: "x",
                aud: "n1",
                generation: "g",
            },
        )
        .unwrap_or_default();
        assert_eq!(
            SessionClaims::verify(&s, &empty, T0, 30),
            Err(TokenError::BadClaims)
        );
    }

    #[test]
    fn csrf_token_is_bound_to_the_session_and_the_secret() {
        let s = secret(1, None);
        let a = SessionClaims::issue("alice", Role::Full, "n1", "g", T0, 60);
        let b = SessionClaims::issue("alice", Role::Full, "n1", "g", T0, 60);
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("issue")
        };
        let ta = a.csrf_token(&s);
        assert!(ta.len() >= 43, "{ta}");
        assert!(a.csrf_matches(&s, &ta));
        assert!(!b.csrf_matches(&s, &ta), "another session's token");
        assert!(!a.csrf_matches(&s, ""));
        assert!(!a.csrf_matches(&s, &ta[1..]));
        assert!(!a.csrf_matches(&secret(2, None), &ta), "another cluster");
        assert!(a.csrf_matches(&secret(2, Some(1)), &ta), "after rotation");
    }
}
