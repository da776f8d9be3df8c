//! The internal transport between nodes: JSON over HTTP/1.1 on 127.0.0.1 (or wherever
//! `raft_addr` points), carrying Raft RPCs per group and forwarded client operations.
//!
//! Every request carries the cluster secret in `x-kvnode-secret` when one is configured, and
//! the server refuses requests without it. Bodies are capped in both directions
//! ([`MAX_BODY_BYTES`]); every call has a deadline.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest request or response body on the internal transport (a log batch or snapshot chunk).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Header carrying the cluster secret between nodes.
pub(crate) const SECRET_HEADER: &str = "x-kvnode-secret";

/// Why an internal call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Could not connect or the connection broke before a response arrived. Nothing was
    /// processed if the connect itself failed; otherwise the outcome is unknown.
    #[error("peer {addr} unreachable: {detail}")]
    Unreachable {
        /// Peer address.
        addr: String,
        /// Cause.
        detail: String,
        /// True when the TCP connect failed, so the peer never saw the request.
        connect: bool,
    },
    /// No response before the deadline; the outcome is unknown.
    #[error("peer {0} did not answer in time")]
    Timeout(String),
    /// The peer answered with a non-success status.
    #[error("peer {addr} answered {status}: {body}")]
    Status {
        /// Peer address.
        addr: String,
        /// HTTP status.
        status: u16,
        /// Response text (truncated).
        body: String,
    },
    /// The body could not be encoded or decoded, or was too large.
    #[error("bad body from or to {addr}: {detail}")]
    Body {
        /// Peer address.
        addr: String,
        /// Cause.
        detail: String,
    },
}

/// Pooled HTTP client for peer calls; cheap to clone.
#[derive(Clone)]
pub(crate) struct PeerClient {
    http: Client<HttpConnector, Full<Bytes>>,
    secret: Option<String>,
}

impl PeerClient {
    pub(crate) fn new(secret: Option<String>) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(Duration::from_millis(500)));
        conn.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(32)
            .build(conn);
        Self { http, secret }
    }

    /// POSTs `body` as JSON to `http://{addr}{path}` and decodes the JSON answer.
    pub(crate) async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Q,
        timeout: Duration,
    ) -> Result<R, TransportError> {
        let body_err = |detail: String| TransportError::Body {
            addr: addr.to_string(),
            detail,
        };
        let payload = serde_json::to_vec(body).map_err(|e| body_err(e.to_string()))?;
        let mut req = http::Request::post(format!("http://{addr}{path}"))
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(s) = &self.secret {
            req = req.header(SECRET_HEADER, s);
        }
        let req = req
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| body_err(e.to_string()))?;
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| TransportError::Unreachable {
                    addr: addr.to_string(),
                    detail: e.to_string(),
                    connect: e.is_connect(),
                })?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| body_err(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
                return Err(TransportError::Status {
                    addr: addr.to_string(),
                    status: status.as_u16(),
                    body: text,
                });
            }
            serde_json::from_slice(&bytes).map_err(|e| body_err(e.to_string()))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| TransportError::Timeout(addr.to_string()))?
    }
}
