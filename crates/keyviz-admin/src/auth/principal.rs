//! The `Principal` extractor: a handler taking one is unreachable without a valid operator
//! session (plus CSRF on non-GET) or a verified signed peer request.

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{Extensions, HeaderMap, Method};

use super::cookies::{CSRF_HEADER, SESSION_COOKIE, cookie_value};
use super::peer_token::PeerClaims;
use super::registry::SessionState;
use super::session::SessionClaims;
use crate::api::ApiError;
use crate::clock;
use crate::host::ClusterSecret;
use crate::state::AdminState;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A logged-in operator (from the `admin_session` cookie).
    Operator(SessionClaims),
    /// Another node of the cluster (a request signed for this node, verified by the peer
    /// guard): gets the local view only and never triggers a fan-out.
    Peer(PeerClaims),
}

/// CSRF check for state-changing methods: the `X-Admin-CSRF` header must carry the token
/// derived from this session ([`SessionClaims::csrf_token`]; the `admin_csrf` cookie holds
/// it for the UI to read, but the cookie's value is never trusted). GET, HEAD and OPTIONS
/// pass.
///
/// # Errors
/// 403 `csrf_missing` (no header) or `csrf_mismatch` (not this session's token).
pub fn check_csrf(
    secret: &ClusterSecret,
    session: &SessionClaims,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let header = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                http::StatusCode::FORBIDDEN,
                "csrf_missing",
                "X-Admin-CSRF header is required for write operations",
            )
        })?;
    if !session.csrf_matches(secret, header) {
        return Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "csrf_mismatch",
            "CSRF token mismatch",
        ));
    }
    Ok(())
}

/// Authenticates a request from its method and headers at the current time.
///
/// # Errors
/// 401 `unauthenticated` (missing, invalid, expired, revoked or pre-restart session, or a
/// signed identity challenge used elsewhere; bad signatures never get here: the peer guard
/// refuses them), 401 `session_wrong_node` (a valid session issued by another node, which is
/// named), 403 from CSRF.
pub(crate) fn authenticate(
    state: &AdminState,
    method: &Method,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<Principal, ApiError> {
    let inner = &state.inner;
    if let Some(v) = extensions.get::<crate::peer::VerifiedRequest>() {
        return PeerClaims::from_verified(v, inner.identity.node_id())
            .map(Principal::Peer)
            .ok_or_else(|| ApiError::unauthenticated("identity challenges grant nothing else"));
    }
    if crate::peer::signing::is_signed(headers) {
        // Unreachable behind the guard; refuse rather than fall back to cookies.
        return Err(ApiError::unauthenticated("peer request not authenticated"));
    }
    let cookie = cookie_value(headers, SESSION_COOKIE)
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::unauthenticated("missing session cookie"))?;
    let skew_s = i64::try_from(inner.config.clock_skew.as_secs()).unwrap_or(i64::MAX);
    let claims = SessionClaims::verify(&inner.secret, cookie, clock::now_unix_s(), skew_s)
        .map_err(|e| {
            tracing::debug!(error = %e, "session rejected");
            ApiError::unauthenticated("invalid or expired session")
        })?;
    if claims.aud != inner.identity.node_id() {
        return Err(ApiError::new(
            http::StatusCode::UNAUTHORIZED,
            "session_wrong_node",
            format!(
                "this session was issued by node {:?} and is valid only there; sign in on this node",
                claims.aud
            ),
        ));
    }
    match inner.sessions.state(&claims.generation, &claims.sid) {
        SessionState::Live => {}
        SessionState::Revoked | SessionState::OldGeneration => {
            return Err(ApiError::unauthenticated("invalid or expired session"));
        }
    }
    check_csrf(&inner.secret, &claims, method, headers)?;
    Ok(Principal::Operator(claims))
}

impl FromRequestParts<AdminState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(state, &parts.method, &parts.headers, &parts.extensions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::COOKIE;

    fn headers(cookie: Option<&'static str>, csrf: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(c) = cookie {
            h.insert(COOKIE, HeaderValue::from_static(c));
        }
        if let Some(x) = csrf {
            h.insert(CSRF_HEADER, HeaderValue::from_static(x));
        }
        h
    }

    #[test]
    fn csrf_header_must_be_the_sessions_derived_token_not_the_cookie() {
        let secret = match ClusterSecret::new(vec![7; 32], None) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let session = match SessionClaims::issue("a", crate::auth::Role::Full, "n1", "g", 1, 60) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let good = session.csrf_token(&secret);
        let check = |h: &HeaderMap| check_csrf(&secret, &session, &Method::POST, h);
        assert!(check_csrf(&secret, &session, &Method::GET, &headers(None, None)).is_ok());
        let e = check(&headers(Some("admin_csrf=a"), None));
        assert!(e.is_err_and(|e| e.code == "csrf_missing" && e.message.contains("header")));
        // The old double-submit bypass: an attacker-chosen cookie equal to the header.
        let e = check(&headers(Some("admin_csrf=planted"), Some("planted")));
        assert!(e.is_err_and(|e| e.code == "csrf_mismatch"));
        let mut h = HeaderMap::new();
        h.insert(
            CSRF_HEADER,
            HeaderValue::from_str(&good).unwrap_or(HeaderValue::from_static("x")),
        );
        assert!(
            check(&h).is_ok(),
            "the derived token passes without any cookie"
        );
    }
}
