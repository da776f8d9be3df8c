//! The admin error envelope: `{"error": code, "message": text}` with the reference's codes,
//! statuses and headers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API failure as the client sees it: an HTTP status, a stable machine-readable `code` and a
/// human message.
///
/// Guarantees: the response body is exactly `{"error":code,"message":text}` followed by a
/// newline (the `message` key is omitted when empty), with `Content-Type: application/json;
/// charset=utf-8`, `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`. Internal
/// failures use [`ApiError::internal`], which logs the detail and shows a generic message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// Stable error code, e.g. `invalid_query`.
    pub code: &'static str,
    /// Human-readable explanation; may be empty.
    pub message: String,
    /// Seconds for a `Retry-After` header (only set for 429).
    pub retry_after_secs: Option<u64>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
}

impl ApiError {
    /// Builds an error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 400 `invalid_query` with the given message.
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    /// 401 `unauthenticated` with the given message.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 `forbidden` with the given message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 405 `method_not_allowed` with the given message.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        )
    }

    /// 404 `unknown_endpoint` for a path under `/admin/api/v1/` that has no handler.
    pub fn unknown_endpoint() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_endpoint",
            "no admin API handler is registered for this path",
        )
    }

    /// 404 `not_found` (no message) for anything else the admin surface does not serve.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "")
    }

    /// 503 `keyviz_disabled`: the host has no sampler.
    pub fn keyviz_disabled() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "keyviz_disabled",
            "key visualizer sampler is not configured on this node",
        )
    }

    /// 413 `payload_too_large` for request bodies over the 64 KiB admin limit.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body exceeds the 64 KiB admin limit",
        )
    }

    /// 429 `rate_limited` carrying a `Retry-After` of `retry_after_secs` (at least 1).
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many login attempts from this source; try again later",
        );
        e.retry_after_secs = Some(retry_after_secs.max(1));
        e
    }

    /// 500 `internal`: logs `detail` at ERROR and shows the client only a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "admin internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::to_vec(&Envelope {
            error: self.code,
            message: &self.message,
        })
        .unwrap_or_else(|_| br#"{"error":"internal"}"#.to_vec());
        body.push(b'\n');
        let mut resp = (self.status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Serialises `value` as a 200 JSON success response with a trailing newline and
/// `Cache-Control: no-store`.
pub(crate) fn json_ok<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            json_bytes_ok(body.into())
        }
        Err(e) => ApiError::internal(format!("encode response: {e}")).into_response(),
    }
}

/// Wraps an already encoded JSON `body` (sent as is) in a 200 response with
/// `Content-Type: application/json; charset=utf-8` and `Cache-Control: no-store`.
pub(crate) fn json_bytes_ok(body: bytes::Bytes) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(resp: Response) -> Vec<u8> {
        match resp.into_body().collect().await {
            Ok(c) => c.to_bytes().to_vec(),
            Err(e) => panic!("body: {e}"),
        }
    }

    #[tokio::test]
    async fn envelope_has_code_message_newline_and_headers() {
        let resp = ApiError::invalid_query("rows must be an integer").into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        let body = body_of(resp).await;
        assert_eq!(
            body,
            b"{\"error\":\"invalid_query\",\"message\":\"rows must be an integer\"}\n"
        );
    }

    #[tokio::test]
    async fn empty_message_is_omitted_and_retry_after_is_set_for_rate_limit() {
        let body = body_of(ApiError::not_found().into_response()).await;
        assert_eq!(body, b"{\"error\":\"not_found\"}\n");
        let resp = ApiError::rate_limited(60).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "60");
    }
}
