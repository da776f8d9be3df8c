//! The embedded web UI: `/admin/assets/{*path}` serves files from `ui/`, and every other
//! non-API GET under `/admin` serves `ui/index.html` so deep links work.
//!
//! Debug builds read `ui/` from disk at run time (UI edits need no rebuild); release builds
//! embed the files.

use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::api::ApiError;

#[derive(rust_embed::Embed)]
#[folder = "ui/"]
struct Assets;

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn content_type(path: &str) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    match (mime.type_(), mime.subtype().as_str()) {
        (mime_guess::mime::TEXT, _) | (mime_guess::mime::APPLICATION, "javascript" | "json") => {
            let essence = if mime.subtype() == "javascript" {
                "text/javascript".to_string()
            } else {
                mime.essence_str().to_string()
            };
            format!("{essence}; charset=utf-8")
        }
        _ => mime.essence_str().to_string(),
    }
}

fn method_not_allowed() -> Response {
    let mut r = ApiError::method_not_allowed("only GET and HEAD").into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

/// Serves one embedded file with content type, a sha256 ETag (`If-None-Match` → 304),
/// `Cache-Control: no-cache` and `nosniff`. HEAD gets the headers without a body.
fn serve(path: &str, method: &Method, headers: &HeaderMap) -> Response {
    if *method != Method::GET && *method != Method::HEAD {
        return method_not_allowed();
    }
    let safe = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path.split('/').all(|seg| !seg.is_empty() && seg != "..");
    let Some(file) = safe.then(|| Assets::get(path)).flatten() else {
        return ApiError::not_found().into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let status = if matches {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let body = if matches || *method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(file.data.into_owned())
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type(path)) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

pub(crate) async fn asset(
    Path(path): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    serve(&path, &method, &headers)
}

pub(crate) async fn index(method: Method, headers: HeaderMap) -> Response {
    serve("index.html", &method, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_carry_charset_for_text() {
        assert_eq!(content_type("js/main.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("css/app.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("img/x.png"), "image/png");
    }

    #[test]
    fn traversal_and_missing_files_are_not_found() {
        let h = HeaderMap::new();
        for p in [
            "../Cargo.toml",
            "js/../../Cargo.toml",
            "",
            "/etc/passwd",
            "nope.js",
        ] {
            assert_eq!(
                serve(p, &Method::GET, &h).status(),
                StatusCode::NOT_FOUND,
                "{p}"
            );
        }
    }

    #[test]
    fn index_has_etag_and_conditional_get_returns_304() {
        let r = serve("index.html", &Method::GET, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        let etag = r.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            serve("index.html", &Method::GET, &h).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            serve("index.html", &Method::POST, &h).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
