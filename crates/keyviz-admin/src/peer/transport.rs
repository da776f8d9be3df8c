//! The one HTTP/1 client of every node-to-node call: a pooled hyper client (plain, or rustls
//! when a TLS client config is given), requests signed with [`super::signing`], answers read
//! through `http_body_util::Limited` under a byte cap and verified before anything trusts
//! them, every call under a deadline.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::signing::{self, PeerKeys, SignatureError};

/// Settings of a [`PeerTransport`].
#[derive(Clone)]
pub struct TransportConfig {
    /// TCP connect deadline.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept; keep it below the servers' keep-alive
    /// timeout so a connection the server is closing is never reused.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per peer.
    pub pool_max_idle_per_host: usize,
    /// TLS client settings (roots, client certificate for mTLS). `None`: plain HTTP only,
    /// and `https://` peers are refused with [`TransportError::Address`].
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            connect_timeout: Duration::from_millis(500),
            pool_idle_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: 8,
            tls: None,
        }
    }
}

/// Why a peer call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The URL is not a usable peer address (or needs TLS that is not configured).
    #[error("invalid peer address: {0}")]
    Address(String),
    /// Connection or protocol failure before a complete answer arrived. `connect` is true
    /// when the TCP connect itself failed, so the peer never saw the request.
    #[error("peer request failed: {detail}")]
    Connect {
        /// Cause with its source chain.
        detail: String,
        /// The connect failed (nothing was sent).
        connect: bool,
    },
    /// No complete answer within the deadline; the outcome is unknown.
    #[error("peer did not answer within {0:?}")]
    Timeout(Duration),
    /// The request or the answer body exceeds the cap; reading stopped there.
    #[error("peer body exceeds the {cap}-byte cap")]
    BodyCap {
        /// The cap in bytes.
        cap: usize,
    },
    /// The request could not be signed.
    #[error("sign peer request: {0}")]
    Sign(SignatureError),
    /// The answer is not authenticated: unsigned, tampered, for another request, or from
    /// another node than the one addressed. Nothing of it may be trusted.
    #[error("peer answer not authenticated: {0}")]
    Unauthenticated(SignatureError),
}

/// Renders an error with its source chain, which is where hyper keeps the useful part
/// ("Connection refused"). Pure.
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

/// A complete peer answer.
#[derive(Debug, Clone)]
pub struct PeerResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Answer headers.
    pub headers: http::HeaderMap,
    /// The body (at most the call's cap).
    pub body: Bytes,
    /// The node that signed the answer, when the call was signed and the answer verified
    /// (always set for a 2xx answer to a signed call; `None` for an unsigned error answer).
    pub responder: Option<String>,
    /// The leaf certificate the server presented on the very connection that carried this
    /// answer (verified against the CA in the handshake); `None` over plain HTTP. Lets a
    /// caller bind the proven responder to the certificate per call, whichever pooled
    /// connection served it.
    pub server_certificate: Option<crate::tls::PeerCertificate>,
}

impl PeerResponse {
    /// Up to 512 bytes of the body, lossily decoded, for error texts.
    #[must_use]
    pub fn body_prefix(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(512)])
            .trim_end()
            .to_string()
    }
}

#[derive(Clone)]
enum Inner {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<CertConnector, Full<Bytes>>),
}

/// The rustls connector, whose connections report the server's leaf certificate as
/// hyper's connection `extra`, which the client copies into every response's extensions
/// (hence [`PeerResponse::server_certificate`]). Chosen over recording names in a custom
/// `ServerCertVerifier`: a verifier is shared by every handshake and cannot tell which
/// call a certificate belongs to, while the connection info travels with the response.
#[derive(Clone)]
struct CertConnector(hyper_rustls::HttpsConnector<HttpConnector>);

type TlsIo = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;

/// A peer connection and the certificate its server presented (read once, after the
/// handshake).
struct CertStream {
    io: TlsIo,
    cert: Option<crate::tls::PeerCertificate>,
}

impl tower::Service<Uri> for CertConnector {
    type Response = CertStream;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<CertStream, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            let cert = match &io {
                hyper_rustls::MaybeHttpsStream::Https(s) => s
                    .inner()
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| crate::tls::PeerCertificate(Arc::new(c.clone().into_owned()))),
                hyper_rustls::MaybeHttpsStream::Http(_) => None,
            };
            Ok(CertStream { io, cert })
        })
    }
}

impl hyper_util::client::legacy::connect::Connection for CertStream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        let c = self.io.connected();
        match &self.cert {
            Some(cert) => c.extra(cert.clone()),
            None => c,
        }
    }
}

impl hyper::rt::Read for CertStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for CertStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How a call is signed: the keys, this node's id (the issuer) and the audience (the
/// addressed node's id, or [`signing::AUD_IDENTITY`] for an identity challenge).
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    /// The cluster keys.
    pub keys: &'a PeerKeys,
    /// This node's id.
    pub issuer: &'a str,
    /// Who the request is for.
    pub audience: &'a str,
    /// Unix ms now (the signature's timestamp).
    pub now_ms: i64,
}

/// A pooled peer client; cloning shares the pool (and the body budget). Blocks on nothing
/// but the network and, with a budget, on budget bytes (FIFO, within the call's deadline);
/// holds no lock across an await.
#[derive(Clone)]
pub struct PeerTransport {
    inner: Inner,
    budget: Option<BodyBudget>,
}

/// Bytes of answer bodies held at once by every call of one transport (a semaphore of
/// bytes).
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
    /// Takes `n` more bytes of budget, waiting (FIFO) until they are free.
    async fn take(
        &self,
        held: &mut Option<tokio::sync::OwnedSemaphorePermit>,
        n: usize,
    ) -> Result<(), TransportError> {
        let n32 = u32::try_from(n).map_err(|_| TransportError::BodyCap { cap: self.total })?;
        let more = self
            .bytes
            .clone()
            .acquire_many_owned(n32)
            .await
            .map_err(|_| TransportError::Connect {
                detail: "peer body budget closed".into(),
                connect: false,
            })?;
        match held {
            Some(p) => p.merge(more),
            None => *held = Some(more),
        }
        Ok(())
    }
}

impl std::fmt::Debug for PeerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tls = matches!(self.inner, Inner::Tls(_));
        f.debug_struct("PeerTransport").field("tls", &tls).finish()
    }
}

impl PeerTransport {
    /// A client with `config`'s connect timeout, pool and TLS settings.
    #[must_use]
    pub fn new(config: &TransportConfig) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(config.connect_timeout));
        conn.set_nodelay(true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host);
        let inner = match &config.tls {
            None => Inner::Plain(builder.build(conn)),
            Some(tls) => {
                conn.enforce_http(false);
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls.as_ref().clone())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(conn);
                Inner::Tls(builder.build(CertConnector(https)))
            }
        };
        PeerTransport {
            inner,
            budget: None,
        }
    }

    /// Bounds the bytes of answer bodies held at once by all calls of this transport (and
    /// its clones) to `bytes`: a call takes budget before it buffers (all of a declared
    /// `Content-Length` at once, else in 1 MiB steps, doubling), waits for budget when it is
    /// spent, and the returned `Bytes` give it back when dropped. A body that could never
    /// fit (larger than `bytes`) is [`TransportError::BodyCap`]. The wait counts against
    /// the call's deadline.
    #[must_use]
    pub fn with_body_budget(mut self, bytes: usize) -> Self {
        let total = bytes.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self.budget = Some(BodyBudget {
            bytes: Arc::new(tokio::sync::Semaphore::new(total)),
            total,
        });
        self
    }

    /// Budget bytes free right now (the configured total when none is held); `None`
    /// without a budget. Lock-free; for tests and metrics.
    #[must_use]
    pub fn body_budget_available(&self) -> Option<usize> {
        self.budget.as_ref().map(|b| b.bytes.available_permits())
    }

    /// Whether `https://` peers can be called.
    #[must_use]
    pub fn has_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// Sends one request and reads the whole answer, all within `deadline`.
    ///
    /// With `signing`, the request carries a fresh signature over method, path and query,
    /// body, time, nonce, issuer and audience, and a 2xx answer must carry a valid answer
    /// MAC bound to that nonce (from the audience node, unless the audience is the identity
    /// challenge); a non-2xx answer is verified when signed and otherwise returned with
    /// `responder: None`, for the caller to report but never to trust. The answer body is
    /// read through `Limited` and refused once it passes `cap` (a `Content-Length` above
    /// the cap is refused before reading), so memory stays below `cap` plus one frame.
    /// Signing a big request and verifying a big answer (SHA-256 of the body) run off the
    /// tokio worker ([`super::offload::off_worker`]), blocking only the calling thread.
    ///
    /// # Errors
    /// [`TransportError`] for bad URLs, signing, connection failures, the deadline, the cap
    /// and unauthenticated answers.
    // One argument per part of the request; call sites read as the request they send.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        cap: usize,
        deadline: Duration,
        signing: Option<Signing<'_>>,
    ) -> Result<PeerResponse, TransportError> {
        match tokio::time::timeout(
            deadline,
            self.send_unbounded(method, url, headers, body, cap, signing),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout(deadline)),
        }
    }

    async fn send_unbounded(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        cap: usize,
        signing: Option<Signing<'_>>,
    ) -> Result<PeerResponse, TransportError> {
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| TransportError::Address(format!("{url}: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") if self.has_tls() => {}
            Some("https") => {
                return Err(TransportError::Address(format!(
                    "{url}: https peers need a TLS client configuration (--tls-ca)"
                )));
            }
            _ => {
                return Err(TransportError::Address(format!(
                    "{url}: scheme must be http or https"
                )));
            }
        }
        let path_and_query = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .to_string();
        // Hashing a big body (a 16 MiB Raft entry) would starve the worker's other tasks.
        let signed = signing
            .map(|s| {
                super::offload::off_worker(body.len(), || {
                    signing::sign_request(
                        s.keys,
                        &method,
                        &path_and_query,
                        &body,
                        s.issuer,
                        s.audience,
                        s.now_ms,
                    )
                })
                .map(|r| (s, r))
            })
            .transpose()
            .map_err(TransportError::Sign)?;
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if let Some((_, r)) = &signed {
            for (name, value) in &r.headers {
                builder = builder.header(name, value);
            }
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|e| TransportError::Address(e.to_string()))?;
        let resp = match &self.inner {
            Inner::Plain(c) => c.request(req).await,
            Inner::Tls(c) => c.request(req).await,
        }
        .map_err(|e| TransportError::Connect {
            detail: chain(&e),
            connect: e.is_connect(),
        })?;
        let status = resp.status();
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap as u64) {
            return Err(TransportError::BodyCap { cap });
        }
        let (parts, body) = resp.into_parts();
        let server_certificate = parts
            .extensions
            .get::<crate::tls::PeerCertificate>()
            .cloned();
        let body = read_body(Limited::new(body, cap), declared, cap, self.budget.as_ref()).await?;
        let mut responder = None;
        if let Some((s, r)) = &signed {
            let expected = (s.audience != signing::AUD_IDENTITY).then_some(s.audience);
            let has_mac = parts.headers.contains_key(signing::HDR_RESPONSE_SIGNATURE);
            if status.is_success() || has_mac {
                let id = super::offload::off_worker(body.len(), || {
                    signing::verify_response(
                        s.keys,
                        &r.nonce,
                        s.issuer,
                        expected,
                        status.as_u16(),
                        &parts.headers,
                        &body,
                    )
                })
                .map_err(TransportError::Unauthenticated)?;
                responder = Some(id);
            }
        }
        Ok(PeerResponse {
            status,
            headers: parts.headers,
            body,
            responder,
            server_certificate,
        })
    }
}

/// Reads a body already capped by `Limited` at `cap`; with a budget, the buffer's capacity
/// never exceeds the budget held for it.
async fn read_body(
    mut body: Limited<hyper::body::Incoming>,
    declared: Option<u64>,
    cap: usize,
    budget: Option<&BodyBudget>,
) -> Result<Bytes, TransportError> {
    let frame_err = |e: Box<dyn std::error::Error + Send + Sync>| {
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            TransportError::BodyCap { cap }
        } else {
            TransportError::Connect {
                detail: chain(e.as_ref()),
                connect: false,
            }
        }
    };
    let Some(budget) = budget else {
        return Ok(body.collect().await.map_err(frame_err)?.to_bytes());
    };
    let limit = cap.min(budget.total);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(TransportError::BodyCap { cap: limit });
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
        let Ok(data) = frame.map_err(frame_err)?.into_data() else {
            continue;
        };
        let need = buf.len().saturating_add(data.len());
        if need > limit {
            return Err(TransportError::BodyCap { cap: limit });
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
    Ok(match held {
        Some(permit) => Bytes::from_owner(BudgetedBody {
            data: buf,
            _permit: permit,
        }),
        None => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve_once(body: &'static [u8]) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let app = axum::Router::new().route("/", axum::routing::get(move || async move { body }));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    #[tokio::test]
    async fn bodies_are_capped_and_budgeted_bodies_return_their_budget() {
        let addr = serve_once(&[b'x'; 4096]).await;
        let url = format!("http://{addr}/");
        let t = PeerTransport::new(&TransportConfig::default()).with_body_budget(10_000);
        let send = |cap| {
            t.send(
                Method::GET,
                &url,
                &[],
                Bytes::new(),
                cap,
                Duration::from_secs(5),
                None,
            )
        };
        assert_eq!(
            send(1000).await.map(|r| r.body.len()),
            Err(TransportError::BodyCap { cap: 1000 })
        );
        let r = send(8192).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.body.len(), 4096);
        assert_eq!(
            t.body_budget_available(),
            Some(10_000 - 4096),
            "held while the body lives"
        );
        drop(r);
        assert_eq!(t.body_budget_available(), Some(10_000));
        let plain = PeerTransport::new(&TransportConfig::default());
        let https = plain
            .send(
                Method::GET,
                "https://127.0.0.1:1/",
                &[],
                Bytes::new(),
                10,
                Duration::from_secs(1),
                None,
            )
            .await;
        assert!(matches!(https, Err(TransportError::Address(e)) if e.contains("TLS")));
    }
}
