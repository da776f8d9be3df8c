//! `POST /admin/api/v1/auth/login` and `POST /admin/api/v1/auth/logout`.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};

use super::cookies::{CSRF_COOKIE, SESSION_COOKIE, set_cookie};
use super::credentials::{CredentialCheck, Role};
use super::pool::PoolError;
use super::principal::Principal;
use super::rate_limit::{RateDecision, client_ip};
use crate::api::{ApiError, BODY_LIMIT};
use crate::clock;
use crate::state::AdminState;

#[derive(Deserialize)]
struct LoginBody {
    #[serde(default)]
    access_key: String,
    #[serde(default)]
    secret_key: String,
}

/// Body of a successful login.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginResponse {
    /// Granted role.
    pub role: Role,
    /// Session expiry, RFC 3339 UTC.
    pub expires_at: String,
}

async fn read_limited(body: Body) -> Result<bytes::Bytes, ApiError> {
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::payload_too_large())
        }
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "failed to read body",
        )),
    }
}

/// Login: method → rate limit → content type → body → fields → credentials → cookies.
pub(crate) async fn login(State(state): State<AdminState>, req: Request) -> Response {
    match login_inner(&state, req).await {
        Ok(r) => r,
        Err(e) => {
            state.inner.metrics.login_failure(e.code);
            e.into_response()
        }
    }
}

async fn login_inner(state: &AdminState, req: Request) -> Result<Response, ApiError> {
    let inner = &state.inner;
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed("login requires POST"));
    }
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let xff = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = client_ip(remote, xff, &inner.config.trusted_proxies);
    // Only failed logins count against an address: scripts that sign in on every run
    // (`keyviz matrix`, `keyviz top --once` in a loop) are not throttled, while guessing is.
    // Guesses in flight at once are bounded by the login pool and its queue, so at most that
    // many more than the limit are checked before the refusals start.
    if let RateDecision::Deny { retry_after_secs } = inner.limiter.peek(&ip, Instant::now()) {
        return Err(ApiError::rate_limited(retry_after_secs));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !content_type.starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "login requires Content-Type: application/json",
        ));
    }
    let bytes = read_limited(req.into_body()).await?;
    let body: LoginBody = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "body is not valid JSON",
        )
    })?;
    let access_key = body.access_key.trim().to_string();
    if access_key.is_empty() || body.secret_key.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_fields",
            "access_key and secret_key are required",
        ));
    }
    let store = inner.credentials.clone();
    let key = access_key.clone();
    // argon2 verification is deliberately slow and memory-hard: run it on the bounded pool,
    // off the async workers, and refuse at once when the pool and its queue are full.
    let check = match inner
        .login_pool
        .run(move || store.check(&key, &body.secret_key))
        .await
    {
        Ok(c) => c,
        Err(PoolError::Busy) => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "login_busy",
                "too many logins in progress; try again shortly",
            );
            e.retry_after_secs = Some(1);
            return Err(e);
        }
        Err(PoolError::Failed) => return Err(ApiError::internal("credential check failed")),
    };
    let role = match check {
        CredentialCheck::Granted(role) => role,
        CredentialCheck::Invalid => {
            let _ = inner.limiter.check(&ip, Instant::now());
            tracing::info!(claimed_actor = %access_key, remote = %ip, "admin login rejected");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "access_key or secret_key is invalid",
            ));
        }
        CredentialCheck::NotAuthorized => {
            return Err(ApiError::forbidden(
                "access_key is not authorised for admin access",
            ));
        }
    };
    let ttl_s = i64::try_from(inner.config.session_ttl.as_secs()).unwrap_or(i64::MAX);
    let issued = state.issue_session(&access_key, role)?;
    let (claims, token, csrf) = (issued.claims, issued.cookie_value, issued.csrf);
    let secure = inner.config.secure_cookies || inner.config.secure_transport;
    let body = LoginResponse {
        role,
        expires_at: keyviz::format_rfc3339_ms(claims.exp.saturating_mul(1000)),
    };
    let mut resp = crate::api::json_ok(&body);
    let h = resp.headers_mut();
    for cookie in [
        set_cookie(SESSION_COOKIE, &token, ttl_s, true, secure),
        set_cookie(CSRF_COOKIE, &csrf, ttl_s, false, secure),
    ] {
        let v = HeaderValue::from_str(&cookie).map_err(ApiError::internal)?;
        h.append(header::SET_COOKIE, v);
    }
    tracing::info!(actor = %access_key, role = role.as_str(), remote = %ip, "admin_audit login");
    Ok(resp)
}

/// Logout: needs a session and CSRF (the extractor), then POST; revokes the session id on
/// this node (the only node that accepts it) and clears both cookies.
pub(crate) async fn logout(
    State(state): State<AdminState>,
    principal: Principal,
    method: Method,
) -> Result<Response, ApiError> {
    let Principal::Operator(claims) = principal else {
        return Err(ApiError::forbidden("peer tokens cannot log out"));
    };
    if method != Method::POST {
        return Err(ApiError::method_not_allowed("logout requires POST"));
    }
    state.inner.sessions.revoke(
        &claims.generation,
        &claims.sid,
        claims.exp,
        clock::now_unix_s(),
    );
    let secure = state.inner.config.secure_cookies || state.inner.config.secure_transport;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in [
        set_cookie(SESSION_COOKIE, "", 0, true, secure),
        set_cookie(CSRF_COOKIE, "", 0, false, secure),
    ] {
        let v = HeaderValue::from_str(&cookie).map_err(ApiError::internal)?;
        h.append(header::SET_COOKIE, v);
    }
    tracing::info!(actor = %claims.sub, "admin_audit logout");
    Ok(resp)
}
