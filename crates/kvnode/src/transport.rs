//! The internal transport between nodes: postcard bodies over HTTP/1.1 on `raft_addr`,
//! carrying Raft RPCs per group and forwarded client operations.
//!
//! Every request carries the cluster secret in `x-kvnode-secret` when one is configured, and
//! the server refuses requests without it (compared in constant time, [`secret_matches`]).
//! Bodies are capped in both directions ([`MAX_BODY_BYTES`], sized so that the largest legal
//! client write always fits); every call has a deadline that grows with the bytes it moves
//! ([`deadline_for`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{from_bin, to_bin};

/// Most key and value bytes of one replicated write: a single RESP request is at most 64 MiB
/// (the codec's `max_request_bytes`, so an `MSET` too), and a pipelined run of single-key
/// writes is cut into `KvOp::Batch` entries of at most [`MAX_BATCH_BYTES`] unless one write
/// alone is bigger (resp/dispatch.rs).
pub const MAX_WRITE_BYTES: usize = 64 * 1024 * 1024;

/// A pipelined run of single-key writes is cut into `KvOp::Batch` entries of at most this
/// many key and value bytes (a single bigger write still travels alone): a big entry is slow
/// to replicate and apply, and small ones keep the latency of the writes behind it low.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Largest request or response body on the internal transport: one log entry of
/// [`MAX_WRITE_BYTES`] plus generous room for framing (log ids, lengths, up to 256 operations'
/// tags), so a legal client write is never refused here. AppendEntries RPCs stay far below
/// it except when carrying one such entry (the log reader bounds them to 8 MiB otherwise);
/// snapshot chunks are 4 MiB.
pub const MAX_BODY_BYTES: usize = MAX_WRITE_BYTES + 16 * 1024 * 1024;

/// Throughput assumed when a deadline grows with the payload: 4 MiB/s end to end (transfer,
/// decode, log append, apply) is what a heavily loaded 2-core machine running the debug build
/// achieves (release builds on real links are 10–100× faster), so a large transfer that makes
/// progress is never cut off by its own deadline.
pub const ASSUMED_BYTES_PER_SEC: u64 = 4 * 1024 * 1024;

/// Header carrying the cluster secret between nodes.
pub(crate) const SECRET_HEADER: &str = "x-kvnode-secret";

/// Content type of every internal body.
pub(crate) const CONTENT_TYPE: &str = "application/x-kvnode-postcard";

/// The deadline of a call moving `bytes` bytes (request plus expected answer): `base` plus
/// the time to move them at [`ASSUMED_BYTES_PER_SEC`].
pub fn deadline_for(base: Duration, bytes: usize) -> Duration {
    let extra_ms = (bytes as u64).saturating_mul(1000) / ASSUMED_BYTES_PER_SEC;
    base.saturating_add(Duration::from_millis(extra_ms))
}

/// Whether `given` is the cluster secret; constant time in the secret's content (a timing
/// side channel reveals at most whether the lengths differ).
pub(crate) fn secret_matches(given: Option<&[u8]>, secret: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    given.is_some_and(|g| bool::from(g.ct_eq(secret)))
}

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

/// Header in which an internal call names the calling node (its id). Under mutual TLS the
/// server checks it against the client certificate (`internal::check_peer_certificate`).
pub(crate) const NODE_HEADER: &str = "x-kvnode-node";

/// The pooled client: plain HTTP, or HTTPS when the node runs TLS.
#[derive(Clone)]
enum Http {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>),
}

/// Pooled HTTP client for peer calls; cheap to clone.
#[derive(Clone)]
pub(crate) struct PeerClient {
    http: Http,
    secret: Option<String>,
    /// This node's id, sent in [`NODE_HEADER`].
    node_id: u64,
}

impl PeerClient {
    /// A client calling peers as node `node_id`; with `tls`, over HTTPS (peers' certificates
    /// are verified against the CA, and this node's certificate is its client certificate).
    pub(crate) fn new(
        secret: Option<String>,
        node_id: u64,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Self {
        let connect_timeout = Duration::from_millis(500);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_max_idle_per_host(32)
            // Below the server's keep-alive timeout, so the client never reuses a
            // connection the server is about to close.
            .pool_idle_timeout(Duration::from_secs(5));
        let http = match tls {
            Some(cfg) => {
                Http::Tls(builder.build(keyviz_admin::tls::https_connector(cfg, connect_timeout)))
            }
            None => {
                let mut conn = HttpConnector::new();
                conn.set_connect_timeout(Some(connect_timeout));
                conn.set_nodelay(true);
                Http::Plain(builder.build(conn))
            }
        };
        Self {
            http,
            secret,
            node_id,
        }
    }

    /// POSTs `body` (postcard) to `http://{addr}{path}` and decodes the postcard answer.
    ///
    /// The deadline is `timeout` extended by the request's size ([`deadline_for`]); it covers
    /// connecting, sending and reading the whole answer. Blocks on nothing but the network.
    pub(crate) async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Q,
        timeout: Duration,
    ) -> Result<R, TransportError> {
        let payload = to_bin("internal request", body).map_err(|e| TransportError::Body {
            addr: addr.to_string(),
            detail: e.to_string(),
        })?;
        let timeout = deadline_for(timeout, payload.len());
        self.call_raw(addr, path, Bytes::from(payload), timeout)
            .await
    }

    /// As [`PeerClient::call`] with a body already encoded and a deadline already computed.
    pub(crate) async fn call_raw<R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<R, TransportError> {
        let body_err = |detail: String| TransportError::Body {
            addr: addr.to_string(),
            detail,
        };
        if payload.len() > MAX_BODY_BYTES {
            return Err(body_err(format!(
                "request of {} bytes exceeds the {MAX_BODY_BYTES}-byte cap",
                payload.len()
            )));
        }
        let scheme = match self.http {
            Http::Plain(_) => "http",
            Http::Tls(_) => "https",
        };
        let mut req = http::Request::post(format!("{scheme}://{addr}{path}"))
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(NODE_HEADER, self.node_id);
        if let Some(s) = &self.secret {
            req = req.header(SECRET_HEADER, s);
        }
        let req = req
            .body(Full::new(payload))
            .map_err(|e| body_err(e.to_string()))?;
        let fut = async {
            let sent = match &self.http {
                Http::Plain(c) => c.request(req).await,
                Http::Tls(c) => c.request(req).await,
            };
            let resp = sent.map_err(|e| TransportError::Unreachable {
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
            from_bin("internal answer", &bytes).map_err(|e| body_err(e.to_string()))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| TransportError::Timeout(addr.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_grows_with_the_payload() {
        let base = Duration::from_millis(250);
        assert_eq!(deadline_for(base, 0), base);
        assert_eq!(
            deadline_for(base, 16 * 1024 * 1024),
            base + Duration::from_secs(4)
        );
        assert_eq!(
            deadline_for(base, MAX_BODY_BYTES),
            base + Duration::from_secs(20)
        );
    }

    #[test]
    fn secret_must_match_exactly() {
        let s = b"0123456789abcdef0123456789abcdef";
        assert!(secret_matches(Some(s), s));
        assert!(!secret_matches(None, s));
        assert!(!secret_matches(
            Some(b"0123456789abcdef0123456789abcdeX"),
            s
        ));
        assert!(!secret_matches(Some(b"0123456789abcdef"), s));
        assert!(!secret_matches(Some(b""), s));
    }
}
