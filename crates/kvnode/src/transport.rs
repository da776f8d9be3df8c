//! The internal transport between nodes: postcard bodies over HTTP/1.1 on `raft_addr`,
//! carrying Raft RPCs per group and forwarded client operations.
//!
//! The HTTP client is the shared peer transport of `keyviz_admin::peer` (one pooled client,
//! deadlines, `Limited` body caps, one signing scheme). When a cluster secret is configured,
//! every request is signed for the node it is sent to (method, path, body digest, time,
//! nonce, issuer, audience), the server verifies it in constant time and refuses replays
//! (`internal::router`), and every answer carries a MAC bound to the request's nonce that
//! the client verifies before decoding it. Bodies are capped in both directions
//! ([`MAX_BODY_BYTES`], sized so that the largest legal client write always fits); every
//! call has a deadline that grows with the bytes it moves ([`deadline_for`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use keyviz_admin::peer::{PeerKeys, PeerTransport, Signing, TransportConfig};
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

/// Content type of every internal body.
pub(crate) const CONTENT_TYPE: &str = "application/x-kvnode-postcard";

/// The deadline of a call moving `bytes` bytes (request plus expected answer): `base` plus
/// the time to move them at [`ASSUMED_BYTES_PER_SEC`].
pub fn deadline_for(base: Duration, bytes: usize) -> Duration {
    let extra_ms = (bytes as u64).saturating_mul(1000) / ASSUMED_BYTES_PER_SEC;
    base.saturating_add(Duration::from_millis(extra_ms))
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
    /// The answer failed its MAC (tampered, or not from the node addressed), or the address
    /// is no known member so the request cannot be signed for it; nothing of it is trusted.
    #[error("peer {addr} not authenticated: {detail}")]
    Unauthenticated {
        /// Peer address.
        addr: String,
        /// Cause.
        detail: String,
    },
}

/// How long a signed internal request may take to arrive, on top of the time its body
/// needs at [`ASSUMED_BYTES_PER_SEC`] (the server measures the body it read): the same
/// base as the internal port's request deadline, so a request the server would still
/// serve is never refused as stale on a loaded machine.
pub(crate) const SIGNATURE_MAX_AGE: Duration = Duration::from_secs(40);

/// Accepted clock difference between nodes for signed requests.
pub(crate) const SIGNATURE_CLOCK_SKEW: Duration = Duration::from_secs(10);

/// Live nonces the internal port remembers at most: small requests are remembered for
/// `SIGNATURE_MAX_AGE + 2 × SIGNATURE_CLOCK_SKEW` (60 s), so this allows ~8 700 signed
/// requests per second from all peers together (heartbeats and forwarded batches, far
/// below that) before new ones get 503; about 32 MiB when full. Only requests with a valid
/// MAC are remembered.
pub(crate) const REPLAY_CAPACITY: usize = 1 << 19;

/// Unix ms now, as signatures carry it.
pub(crate) fn now_ms() -> i64 {
    i64::try_from(crate::dispatch::now_unix_ms()).unwrap_or(i64::MAX)
}

/// The node name a kvnode id signs and verifies as (`node-<id>`, as the admin API names it).
pub(crate) fn peer_name(id: u64) -> String {
    format!("node-{id}")
}

/// Header in which an internal call names the calling node (its id). Under mutual TLS the
/// server checks it against the client certificate and the signature's issuer
/// (`internal::check_peer_certificate`, `internal::check_signed_claim`).
pub(crate) const NODE_HEADER: &str = "x-kvnode-node";

/// Pooled, signing HTTP client for peer calls; cheap to clone (shares the pool).
#[derive(Clone)]
pub(crate) struct PeerClient {
    transport: PeerTransport,
    keys: Option<Arc<PeerKeys>>,
    self_name: Arc<str>,
    /// This node's id as the [`NODE_HEADER`] value.
    self_id: http::HeaderValue,
    /// Internal address → node name: the audience a request to that address is signed for.
    audiences: Arc<HashMap<String, String>>,
    scheme: &'static str,
}

impl PeerClient {
    /// A client signing with `secret` (none: unsigned, allowed on loopback only) as node
    /// `self_id`, for the members' internal addresses in `members` (id → address), over
    /// `transport` (its `tls` turns the scheme to https).
    pub(crate) fn new(
        secret: Option<&[u8]>,
        self_id: u64,
        members: impl IntoIterator<Item = (u64, String)>,
        transport: &TransportConfig,
    ) -> Self {
        Self {
            transport: PeerTransport::new(transport),
            keys: secret.map(|s| Arc::new(PeerKeys::new(s.to_vec(), None))),
            self_name: Arc::from(peer_name(self_id)),
            self_id: http::HeaderValue::from(self_id),
            audiences: Arc::new(
                members
                    .into_iter()
                    .map(|(id, addr)| (addr, peer_name(id)))
                    .collect(),
            ),
            scheme: if transport.tls.is_some() {
                "https"
            } else {
                "http"
            },
        }
    }

    /// The transport settings of the internal client: a pool below the server's keep-alive
    /// timeout, so the client never reuses a connection the server is about to close.
    pub(crate) fn transport_config() -> TransportConfig {
        TransportConfig {
            connect_timeout: Duration::from_millis(500),
            pool_idle_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: 32,
            tls: None,
        }
    }

    /// POSTs `body` (postcard) to `{addr}{path}` and decodes the postcard answer; for small
    /// bodies (encoded on the calling worker). A body that may be big goes through
    /// [`PeerClient::call_weighed`].
    ///
    /// The deadline is `timeout` extended by the request's size ([`deadline_for`]); it covers
    /// connecting, sending and reading the whole answer. Blocks on nothing but the network
    /// (and, for a big answer, the thread while it is verified and decoded off the worker).
    pub(crate) async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Q,
        timeout: Duration,
    ) -> Result<R, TransportError> {
        self.call_weighed(addr, path, body, 0, timeout).await
    }

    /// As [`PeerClient::call`] for a body carrying about `weight` bytes of keys and values
    /// (a forwarded write, a snapshot chunk): at [`keyviz_admin::peer::OFF_WORKER_BYTES`] or
    /// more it is encoded off the tokio worker ([`keyviz_admin::peer::off_worker`]), blocking
    /// only the calling thread meanwhile.
    pub(crate) async fn call_weighed<Q: Serialize, R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Q,
        weight: usize,
        timeout: Duration,
    ) -> Result<R, TransportError> {
        let payload = keyviz_admin::peer::off_worker(weight, || to_bin("internal request", body))
            .map_err(|e| TransportError::Body {
            addr: addr.to_string(),
            detail: e.to_string(),
        })?;
        let timeout = deadline_for(timeout, payload.len());
        self.call_raw(addr, path, Bytes::from(payload), timeout)
            .await
    }

    /// As [`PeerClient::call`] with a body already encoded and a deadline already computed.
    /// Signing a big body, and verifying and decoding a big answer, run off the worker
    /// ([`keyviz_admin::peer::off_worker`]).
    pub(crate) async fn call_raw<R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<R, TransportError> {
        use keyviz_admin::peer::TransportError as T;
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
        let signing = match &self.keys {
            None => None,
            Some(keys) => {
                let audience =
                    self.audiences
                        .get(addr)
                        .ok_or_else(|| TransportError::Unauthenticated {
                            addr: addr.to_string(),
                            detail: "not a member's internal address: cannot sign for it".into(),
                        })?;
                Some((keys, audience))
            }
        };
        let content_type = http::HeaderValue::from_static(CONTENT_TYPE);
        let resp = self
            .transport
            .send(
                http::Method::POST,
                &format!("{}://{addr}{path}", self.scheme),
                &[
                    (http::header::CONTENT_TYPE, content_type),
                    (
                        http::HeaderName::from_static(NODE_HEADER),
                        self.self_id.clone(),
                    ),
                ],
                payload,
                MAX_BODY_BYTES,
                timeout,
                signing.map(|(keys, audience)| Signing {
                    keys,
                    issuer: &self.self_name,
                    audience,
                    now_ms: now_ms(),
                }),
            )
            .await
            .map_err(|e| match e {
                T::Connect { detail, connect } => TransportError::Unreachable {
                    addr: addr.to_string(),
                    detail,
                    connect,
                },
                T::Timeout(_) => TransportError::Timeout(addr.to_string()),
                T::Unauthenticated(e) => TransportError::Unauthenticated {
                    addr: addr.to_string(),
                    detail: e.to_string(),
                },
                other => body_err(other.to_string()),
            })?;
        if !resp.status.is_success() {
            return Err(TransportError::Status {
                addr: addr.to_string(),
                status: resp.status.as_u16(),
                body: resp.body_prefix(),
            });
        }
        // A big answer (a forwarded read of a big value) is decoded off the worker.
        keyviz_admin::peer::off_worker(resp.body.len(), || from_bin("internal answer", &resp.body))
            .map_err(|e| body_err(e.to_string()))
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
}
