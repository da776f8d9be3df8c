//! The peer HTTP client: one GET with a deadline and a body cap enforced while streaming.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Bytes of a non-200 body quoted in the error text.
const ERROR_BODY_PREFIX: usize = 512;

/// Why one peer call failed. Every variant becomes `ok:false` with its text; the fan-out
/// itself never fails because of a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The configured entry is not a usable peer address.
    #[error("invalid peer address: {0}")]
    Address(String),
    /// Connection or protocol failure before a response arrived.
    #[error("peer request failed: {0}")]
    Connect(String),
    /// No complete answer within the fan-out timeout.
    #[error("peer did not answer within {0:?}")]
    Timeout(Duration),
    /// The peer answered with a non-200 status.
    #[error("peer returned status {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Up to 512 bytes of the body, lossily decoded.
        body: String,
    },
    /// The body exceeded the cap; reading stopped there.
    #[error("peer response exceeds the {cap}-byte cap")]
    BodyCap {
        /// The cap in bytes.
        cap: usize,
    },
    /// The body is not a matrix (syntax, types).
    #[error("decode peer response: {0}")]
    Decode(String),
    /// The matrix decoded but breaks an invariant (lengths, order).
    #[error("invalid peer matrix: {0}")]
    Invalid(String),
    /// The peer is not the node it was addressed as (or did not say who it is).
    #[error("peer identity: {0}")]
    Identity(String),
    /// The hot-key answer decoded but breaks an invariant (bounds, order, limits, series).
    #[error("invalid peer hot keys: {0}")]
    InvalidHotKeys(String),
    /// The peer keeps no hot keys: an older node without the endpoint (404), KeyViz off
    /// there (503 `keyviz_disabled`), or capture mode `off`.
    #[error("peer has no hot keys: {0}")]
    HotKeysUnavailable(String),
}

impl PeerError {
    /// Short stable label used as the metrics `reason`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            PeerError::Address(_) => "address",
            PeerError::Connect(_) => "connect",
            PeerError::Timeout(_) => "timeout",
            PeerError::Status { .. } => "status",
            PeerError::BodyCap { .. } => "body_cap",
            PeerError::Decode(_) => "decode",
            PeerError::Invalid(_) => "invalid",
            PeerError::Identity(_) => "identity",
            PeerError::InvalidHotKeys(_) => "invalid",
            PeerError::HotKeysUnavailable(_) => "hot_keys_unavailable",
        }
    }
}

/// Renders an error with its source chain, which is where hyper keeps the useful part
/// ("Connection refused"). Pure; shared with the `keyviz` CLI's admin client.
#[must_use = "pure function"]
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// A pooled HTTP/1 client for peer calls (`http://`, and `https://` when built with TLS).
/// Cloning shares the pool.
#[derive(Clone)]
pub struct PeerClient {
    client: Http,
}

#[derive(Clone)]
enum Http {
    Plain(Client<HttpConnector, Empty<Bytes>>),
    Tls(Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>),
}

impl PeerClient {
    /// A client whose TCP connect gives up after `connect_timeout`; it refuses `https://`
    /// peers ([`PeerError::Address`]): use [`PeerClient::with_tls`] for them.
    #[must_use]
    pub fn new(connect_timeout: Duration) -> Self {
        Self::with_tls(connect_timeout, None)
    }

    /// As [`PeerClient::new`]; with `tls`, `https://` peers are called with it (server
    /// certificates verified against its roots, its client certificate presented when
    /// asked) and `http://` peers still in plain TCP.
    #[must_use]
    pub fn with_tls(
        connect_timeout: Duration,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8);
        let client = match tls {
            Some(cfg) => {
                Http::Tls(builder.build(crate::tls::https_connector(cfg, connect_timeout)))
            }
            None => {
                let mut conn = HttpConnector::new();
                conn.set_connect_timeout(Some(connect_timeout));
                conn.set_nodelay(true);
                Http::Plain(builder.build(conn))
            }
        };
        PeerClient { client }
    }

    /// GETs `url` with the given headers and returns the body of a 200 answer with its
    /// `Content-Type` (if any). The body is
    /// read frame by frame and the call stops as soon as more than `cap` bytes arrived (a
    /// `Content-Length` above the cap is refused before reading), so memory stays below
    /// `cap` plus one frame. No deadline here: the caller wraps the call in one.
    ///
    /// # Errors
    /// [`PeerError`] for bad URLs, transport failures, non-200 statuses and the cap.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(header::HeaderName, String)],
        cap: usize,
    ) -> Result<(Bytes, Option<String>), PeerError> {
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| PeerError::Address(format!("{url}: {e}")))?;
        let mut builder = Request::get(uri.clone());
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let req = builder
            .body(Empty::<Bytes>::new())
            .map_err(|e| PeerError::Address(e.to_string()))?;
        let sent = match &self.client {
            Http::Tls(c) => c.request(req).await,
            Http::Plain(_) if uri.scheme_str() == Some("https") => {
                return Err(PeerError::Address(format!(
                    "{url}: https peers need TLS on this node (tls_cert, tls_key and tls_ca)"
                )));
            }
            Http::Plain(c) => c.request(req).await,
        };
        let resp = sent.map_err(|e| PeerError::Connect(chain(&e)))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = resp.into_body();
        if status != StatusCode::OK {
            let mut prefix = BytesMut::new();
            while prefix.len() < ERROR_BODY_PREFIX {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            prefix.extend_from_slice(&data);
                        }
                    }
                    _ => break,
                }
            }
            prefix.truncate(ERROR_BODY_PREFIX);
            return Err(PeerError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&prefix).trim_end().to_string(),
            });
        }
        if declared.is_some_and(|n| n > cap as u64) {
            return Err(PeerError::BodyCap { cap });
        }
        let initial = declared.map_or(64 * 1024, |n| usize::try_from(n).unwrap_or(cap));
        let mut buf = BytesMut::with_capacity(initial.min(cap));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| PeerError::Connect(chain(&e)))?;
            if let Ok(data) = frame.into_data() {
                if buf.len().saturating_add(data.len()) > cap {
                    return Err(PeerError::BodyCap { cap });
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok((buf.freeze(), content_type))
    }
}
