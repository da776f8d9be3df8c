//! The peer HTTP client: one GET with a deadline and a body cap enforced while streaming.

use std::sync::Arc;
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

/// A pooled HTTP/1 client for peer calls. Cloning shares the pool and the body budget.
#[derive(Clone)]
pub struct PeerClient {
    client: Client<HttpConnector, Empty<Bytes>>,
    budget: Option<BodyBudget>,
}

/// Bytes of peer bodies held at once by every call of one client (a semaphore of bytes).
#[derive(Clone)]
struct BodyBudget {
    bytes: Arc<tokio::sync::Semaphore>,
    total: usize,
}

/// Smallest step in which a body of unknown length takes budget.
const BUDGET_STEP: usize = 1024 * 1024;

/// A received body and the budget it holds; the budget returns when the last `Bytes`
/// sharing it is dropped.
struct BudgetedBody {
    data: Vec<u8>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl AsRef<[u8]> for BudgetedBody {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl BodyBudget {
    /// Takes `n` more bytes of budget, waiting (asynchronously, FIFO) until they are free.
    async fn take(
        &self,
        held: &mut Option<tokio::sync::OwnedSemaphorePermit>,
        n: usize,
    ) -> Result<(), PeerError> {
        let n32 = u32::try_from(n).map_err(|_| PeerError::BodyCap { cap: self.total })?;
        let more = self
            .bytes
            .clone()
            .acquire_many_owned(n32)
            .await
            .map_err(|_| PeerError::Connect("peer body budget closed".into()))?;
        match held {
            Some(p) => p.merge(more),
            None => *held = Some(more),
        }
        Ok(())
    }
}

impl PeerClient {
    /// A client whose TCP connect gives up after `connect_timeout`.
    #[must_use]
    pub fn new(connect_timeout: Duration) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(connect_timeout));
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(conn);
        PeerClient {
            client,
            budget: None,
        }
    }

    /// Bounds the bytes of 200 bodies held at once by all calls of this client (and its
    /// clones) to `bytes`: a call takes budget before it buffers (all of a declared
    /// `Content-Length` at once, else in 1 MiB steps), waits for budget when it is spent,
    /// and the returned `Bytes` give it back when dropped. A body that could never fit
    /// (larger than `bytes`) is [`PeerError::BodyCap`]. The wait is bounded by the caller's
    /// deadline like the rest of the call.
    #[must_use]
    pub fn with_body_budget(mut self, bytes: usize) -> Self {
        let total = bytes.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self.budget = Some(BodyBudget {
            bytes: Arc::new(tokio::sync::Semaphore::new(total)),
            total,
        });
        self
    }

    /// Budget bytes currently free (the configured total when none is held); `None` without
    /// a budget. For tests and metrics.
    #[must_use]
    pub fn body_budget_available(&self) -> Option<usize> {
        self.budget.as_ref().map(|b| b.bytes.available_permits())
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
        let mut builder = Request::get(uri);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let req = builder
            .body(Empty::<Bytes>::new())
            .map_err(|e| PeerError::Address(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| PeerError::Connect(chain(&e)))?;
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
        if let Some(budget) = self.budget.clone() {
            return read_budgeted(body, declared, cap, &budget)
                .await
                .map(|b| (b, content_type));
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

/// Reads a 200 body under `cap` and the shared `budget`: the buffer's capacity never
/// exceeds the budget held for it.
async fn read_budgeted(
    mut body: hyper::body::Incoming,
    declared: Option<u64>,
    cap: usize,
    budget: &BodyBudget,
) -> Result<Bytes, PeerError> {
    let limit = cap.min(budget.total);
    let refuse = || PeerError::BodyCap { cap: limit };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(refuse());
    }
    let mut held = None;
    let mut held_n = 0usize;
    let mut buf: Vec<u8> = Vec::new();
    if let Some(n) = declared.and_then(|n| usize::try_from(n).ok()) {
        // One acquisition for a declared length: callers never sit on part of a body.
        budget.take(&mut held, n.max(1)).await?;
        held_n = n.max(1);
        buf.reserve_exact(n);
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| PeerError::Connect(chain(&e)))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let need = buf.len().saturating_add(data.len());
        if need > limit {
            return Err(refuse());
        }
        if need > held_n {
            let want = need
                .max(held_n.saturating_mul(2))
                .max(BUDGET_STEP)
                .min(limit);
            budget.take(&mut held, want - held_n).await?;
            held_n = want;
            buf.reserve_exact(want - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    match held {
        Some(permit) => Ok(Bytes::from_owner(BudgetedBody {
            data: buf,
            _permit: permit,
        })),
        None => Ok(Bytes::new()),
    }
}
