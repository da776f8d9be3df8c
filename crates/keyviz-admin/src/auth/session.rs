//! Operator session tokens: who logged in, with which role, until when.

use serde::{Deserialize, Serialize};

use super::token::{self, TokenError};
use crate::auth::Role;
use crate::host::ClusterSecret;

const DOMAIN: &str = "keyviz-session-v1";

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
    /// Random session id; logout revokes it on the node that served the logout.
    pub sid: String,
}

impl SessionClaims {
    /// Claims for `sub` with `role`, issued at `now_s` and valid for `ttl_s` seconds, with a
    /// fresh random session id.
    ///
    /// # Errors
    /// When the OS random source fails.
    pub fn issue(sub: &str, role: Role, now_s: i64, ttl_s: i64) -> Result<Self, getrandom::Error> {
        Ok(SessionClaims {
            sub: sub.to_string(),
            role,
            iat: now_s,
            exp: now_s.saturating_add(ttl_s),
            sid: token::random_b64(16)?,
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
    /// `iat <= now + skew_s`, non-empty `sub` and `sid`.
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
        if c.sub.is_empty() || c.sid.is_empty() {
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
        let c = match SessionClaims::issue("alice", role, iat, 3600) {
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
            },
        )
        .unwrap_or_default();
        assert_eq!(
            SessionClaims::verify(&s, &empty, T0, 30),
            Err(TokenError::BadClaims)
        );
    }
}
