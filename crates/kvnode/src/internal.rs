//! The internal HTTP server on `raft_addr`: Raft RPCs, forwarded operations, leadership
//! campaigns, splits and status. When a cluster secret is set, every request must be signed
//! for this node and every answer is signed (`keyviz_admin::peer`: MACs checked in constant
//! time, replays refused); bodies of the Raft RPCs and forwarded operations are postcard
//! ([`Bin`]). [`serve`] runs this router and the admin router with header, body and total
//! deadlines, an idle keep-alive timeout and a concurrency limit (503 beyond it).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use keyviz_admin::tls::PeerCertificate;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use crate::dispatch::{DispatchError, Dispatcher, GroupCommand, GroupReply};
use crate::raft::{GroupError, GroupStatus, HandOverRequest, Leadership, TransferError};
use crate::routing::Route;
use crate::store::{from_bin, to_bin};
use crate::transport::{CONTENT_TYPE, MAX_BODY_BYTES, NODE_HEADER, deadline_for};
use keyviz_admin::peer::{GuardConfig, PeerGuard, PeerKeys};

/// A postcard request body (extractor) or small answer (response). A body that does not decode is
/// refused with 400; one over [`MAX_BODY_BYTES`] with 413.
pub(crate) struct Bin<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Bin<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        // A big body (an AppendEntries with a big entry, a forwarded big write) is decoded
        // off the worker: it would starve the other groups' timers.
        keyviz_admin::peer::off_worker(bytes.len(), || from_bin("internal request", &bytes))
            .map(Bin)
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
    }
}

impl<T: Serialize> IntoResponse for Bin<T> {
    fn into_response(self) -> Response {
        answer(&self.0, 0)
    }
}

/// A postcard answer carrying about `.1` bytes of values: encoded off the worker when big
/// ([`keyviz_admin::peer::off_worker`]); otherwise as [`Bin`].
pub(crate) struct WeighedBin<T>(pub(crate) T, pub(crate) usize);

impl<T: Serialize> IntoResponse for WeighedBin<T> {
    fn into_response(self) -> Response {
        answer(&self.0, self.1)
    }
}

/// Encodes `v` (about `weight` bytes of values) as a postcard answer; 500 if it cannot be.
fn answer<T: Serialize>(v: &T, weight: usize) -> Response {
    match keyviz_admin::peer::off_worker(weight, || to_bin("internal answer", v)) {
        Ok(raw) => ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], raw).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Limits of one HTTP server ([`serve`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    /// Time to receive a request's headers, counted from when the connection starts waiting
    /// for it: also the idle timeout of a keep-alive connection.
    pub(crate) header_timeout: Duration,
    /// Longest pause between two pieces of a request body.
    pub(crate) body_stall_timeout: Duration,
    /// Longest time to read the whole request and produce the answer (408 after it).
    pub(crate) request_timeout: Duration,
    /// Requests served at once; more are answered 503 at once.
    pub(crate) max_concurrent: usize,
}

impl HttpLimits {
    /// The internal port: the request deadline covers reading the largest legal body at the
    /// assumed throughput plus a snapshot install (openraft's 30 s snapshot deadline).
    pub(crate) fn internal() -> Self {
        Self {
            header_timeout: Duration::from_secs(15),
            body_stall_timeout: Duration::from_secs(10),
            request_timeout: deadline_for(Duration::from_secs(40), MAX_BODY_BYTES),
            max_concurrent: 512,
        }
    }

    /// The admin port (UI, API, fan-out): small bodies, answers within the fan-out timeout.
    pub(crate) fn admin() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_stall_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_concurrent: 256,
        }
    }
}

/// The answer when the middleware stack fails: 503 when the concurrency limit shed the request.
async fn middleware_error(e: BoxError) -> Response {
    if e.is::<tower::load_shed::error::Overloaded>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "server overloaded, retry later",
        )
            .into_response()
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
    }
}

/// Serves `router` on `listener` until `shutdown` turns true, with `limits`: hyper's header
/// read timeout (which is also the keep-alive idle timeout), a per-frame body timeout, a total
/// request timeout (408), and a concurrency limit that sheds excess requests with 503 instead
/// of queueing them. The peer address is available to handlers as `ConnectInfo<SocketAddr>`.
/// With `tls`, every connection first completes a TLS handshake within the header timeout
/// (a client that does not, such as a plain-HTTP client, is dropped and logged at `debug`),
/// and a verified client certificate is available to handlers as
/// [`keyviz_admin::tls::PeerCertificate`].
/// One task per connection; at shutdown, open connections finish their current request
/// (bounded by the request timeout) and close.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stack = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(middleware_error))
        .load_shed()
        .concurrency_limit(limits.max_concurrent)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .service(router);
    loop {
        let (stream, peer) = tokio::select! {
            _ = crate::node::stopped(&mut shutdown) => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let stack = stack.clone();
        let stop = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                serve_connection(TokioIo::new(stream), peer, None, stack, limits, stop).await;
                return;
            };
            match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let cert = tls_stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| PeerCertificate(Arc::new(c.clone().into_owned())));
                    serve_connection(TokioIo::new(tls_stream), peer, cert, stack, limits, stop)
                        .await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Serves one (plain or TLS) connection until it closes or `stop` turns true.
async fn serve_connection<I, S>(
    io: I,
    peer: std::net::SocketAddr,
    cert: Option<PeerCertificate>,
    stack: S,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let mut req = req.map(|b| {
            Body::new(tower_http::timeout::TimeoutBody::new(
                limits.body_stall_timeout,
                b,
            ))
        });
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(c) = &cert {
            req.extensions_mut().insert(c.clone());
        }
        let stack = stack.clone();
        async move { Ok::<_, Infallible>(stack.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = crate::node::stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.request_timeout, conn).await;
        }
    }
}

/// `GET /status` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeStatus {
    /// This node's id.
    pub(crate) node_id: u64,
    /// Every hosted group.
    pub(crate) groups: Vec<GroupStatus>,
    /// The route catalog as this node sees it.
    pub(crate) routes: Vec<Route>,
}

/// `POST /kv/split` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SplitRequest {
    /// Split key (the first key of the new route).
    pub(crate) at: Vec<u8>,
}

#[derive(Clone)]
struct Ctx {
    dispatcher: Arc<Dispatcher>,
}

/// The internal router. With `secret`, the peer guard refuses (401) every request not
/// signed with it for `node_id` (or replayed), and signs every answer; without one (allowed
/// only on a loopback-only `raft_addr`, see `NodeConfig::validate`) every request passes.
///
/// With `mtls_members` (mutual TLS on), every request must also carry a client certificate
/// naming a member and the node it claims in [`NODE_HEADER`] ([`check_peer_certificate`],
/// before the signature check), and a signed request's issuer must be that node
/// ([`check_signed_claim`], after it).
pub(crate) fn router(
    dispatcher: Arc<Dispatcher>,
    secret: Option<&[u8]>,
    node_id: u64,
    mtls_members: Option<std::collections::BTreeSet<u64>>,
) -> Router {
    let ctx = Ctx {
        dispatcher: dispatcher.clone(),
    };
    let router = Router::new()
        .route("/kv/{group}/exec", post(exec))
        .route("/kv/{group}/elect", post(elect))
        .route("/kv/{group}/hand_over", post(hand_over))
        .route("/kv/{group}/read_index", post(read_index))
        .route("/kv/split", post(split))
        .route("/status", get(status))
        .with_state(ctx)
        .merge(crate::raft::router::routes(dispatcher.groups().clone()));
    let router = if mtls_members.is_some() {
        router.layer(middleware::from_fn(check_signed_claim))
    } else {
        router
    };
    let router = match secret {
        None => router,
        Some(secret) => router.layer(middleware::from_fn_with_state(
            Arc::new(guard(secret, node_id)),
            keyviz_admin::peer::server::guard,
        )),
    };
    let router = match mtls_members {
        Some(members) => router.layer(middleware::from_fn_with_state(
            Arc::new(members),
            check_peer_certificate,
        )),
        None => router,
    };
    router.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Under mutual TLS (outermost, before the signature check), accepts only requests whose
/// verified client certificate names the node they claim to come from ([`NODE_HEADER`]),
/// and only members; anything else gets 403 with the reason.
async fn check_peer_certificate(
    State(members): State<Arc<std::collections::BTreeSet<u64>>>,
    req: Request,
    next: Next,
) -> Response {
    let refuse = |why: String| (StatusCode::FORBIDDEN, why).into_response();
    let claimed = req
        .headers()
        .get(NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(id) = claimed else {
        return refuse(format!(
            "mutual TLS: the request must name the calling node id in {NODE_HEADER}"
        ));
    };
    if !members.contains(&id) {
        return refuse(format!("mutual TLS: node {id} is not a member"));
    }
    let Some(cert) = req.extensions().get::<PeerCertificate>() else {
        return refuse("mutual TLS: no client certificate".into());
    };
    if !cert.names_node(id) {
        return refuse(format!(
            "mutual TLS: the client certificate does not name {} (the node the request claims)",
            keyviz_admin::tls::node_dns_name(id)
        ));
    }
    next.run(req).await
}

/// Under mutual TLS (innermost, after the signature check): a signed request's issuer must
/// be the node its [`NODE_HEADER`] claims, so the certificate checked by
/// [`check_peer_certificate`] and the signature name the same node.
async fn check_signed_claim(req: Request, next: Next) -> Response {
    let claimed = req
        .headers()
        .get(NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let (Some(v), Some(id)) = (
        req.extensions()
            .get::<keyviz_admin::peer::VerifiedRequest>(),
        claimed,
    ) && v.issuer != crate::transport::peer_name(id)
    {
        return (
            StatusCode::FORBIDDEN,
            format!("mutual TLS: signed by {} but claims node {id}", v.issuer),
        )
            .into_response();
    }
    next.run(req).await
}

/// The verifier of the internal port.
fn guard(secret: &[u8], node_id: u64) -> PeerGuard {
    PeerGuard::new(
        PeerKeys::new(secret.to_vec(), None),
        GuardConfig {
            self_id: crate::transport::peer_name(node_id),
            max_age: crate::transport::SIGNATURE_MAX_AGE,
            max_skew: crate::transport::SIGNATURE_CLOCK_SKEW,
            age_bytes_per_sec: Some(crate::transport::ASSUMED_BYTES_PER_SEC),
            replay_capacity: crate::transport::REPLAY_CAPACITY,
            request_cap: MAX_BODY_BYTES,
            identity_path: None,
            required: true,
        },
        refuse,
        crate::transport::now_ms,
    )
}

fn refuse(status: StatusCode, _code: &'static str, message: String) -> Response {
    (status, message).into_response()
}

fn to_wire(e: DispatchError) -> GroupError {
    match e {
        DispatchError::Group(g) => g,
        other => GroupError::Raft {
            group: 0,
            detail: other.to_string(),
        },
    }
}

async fn exec(
    State(ctx): State<Ctx>,
    Path(group): Path<u64>,
    Bin(cmd): Bin<GroupCommand>,
) -> WeighedBin<Result<GroupReply, GroupError>> {
    let answer = ctx
        .dispatcher
        .execute_as_leader(group, &cmd)
        .await
        .map_err(to_wire);
    let weight = answer.as_ref().map_or(0, GroupReply::payload_bytes);
    WeighedBin(answer, weight)
}

async fn read_index(
    State(ctx): State<Ctx>,
    Path(group): Path<u64>,
) -> Bin<Result<u64, GroupError>> {
    Bin(ctx.dispatcher.groups().read_index(group).await)
}

/// The leader of a hand-over asks the target to start its election now.
async fn elect(State(ctx): State<Ctx>, Path(group): Path<u64>) -> Bin<Result<(), GroupError>> {
    Bin(ctx.dispatcher.groups().elect_here(group).await)
}

/// One hand-over attempt on this node, which must lead the group (see `Groups::campaign`).
async fn hand_over(
    State(ctx): State<Ctx>,
    Path(group): Path<u64>,
    Bin(req): Bin<HandOverRequest>,
) -> Bin<Result<Leadership, TransferError>> {
    // The caller's budget, capped so a forged request cannot pause proposals for long.
    let budget = std::time::Duration::from_millis(req.budget_ms.min(10_000));
    let deadline = tokio::time::Instant::now() + budget;
    Bin(ctx
        .dispatcher
        .groups()
        .hand_over(group, req.target, deadline)
        .await)
}

/// A split forwarded by another node: executed here only if this node leads the owning group
/// (`NotLeader` otherwise, so the sender retries), with the route resolved from this node's
/// catalog.
async fn split(
    State(ctx): State<Ctx>,
    Bin(req): Bin<SplitRequest>,
) -> Bin<Result<Result<u64, String>, GroupError>> {
    Bin(ctx
        .dispatcher
        .split_as_leader(&req.at)
        .await
        .map_err(to_wire))
}

async fn status(State(ctx): State<Ctx>) -> Json<NodeStatus> {
    let d = &ctx.dispatcher;
    Json(NodeStatus {
        node_id: d.node_id(),
        groups: d.groups().status(),
        routes: d.catalog().routes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::Notify;

    use super::*;

    /// A server with short limits, one request at a time; `/slow` waits for `release`.
    async fn server(
        limits: HttpLimits,
    ) -> (std::net::SocketAddr, Arc<Notify>, watch::Sender<bool>) {
        let release = Arc::new(Notify::new());
        let r2 = release.clone();
        let router = Router::new()
            .route(
                "/slow",
                get(move || {
                    let r = r2.clone();
                    async move {
                        r.notified().await;
                        "done"
                    }
                }),
            )
            .route("/echo", post(|body: bytes::Bytes| async move { body }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(false);
        tokio::spawn(serve(listener, router, limits, None, rx));
        (addr, release, tx)
    }

    fn short() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_millis(300),
            body_stall_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_secs(5),
            max_concurrent: 1,
        }
    }

    /// Reads until the peer closes; returns what arrived and how long it took.
    async fn read_until_closed(s: &mut TcpStream) -> (String, Duration) {
        let t = Instant::now();
        let mut out = Vec::new();
        let res = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(res.is_ok(), "connection still open after 5 s");
        (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
    }

    #[tokio::test]
    async fn idle_and_half_sent_requests_are_closed_after_the_timeout() {
        let (addr, _release, _stop) = server(short()).await;

        let mut idle = TcpStream::connect(addr).await.expect("connect");
        let (_, took) = read_until_closed(&mut idle).await;
        assert!(
            took >= Duration::from_millis(250),
            "closed too early: {took:?}"
        );

        let mut half_head = TcpStream::connect(addr).await.expect("connect");
        half_head
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        read_until_closed(&mut half_head).await;

        let mut half_body = TcpStream::connect(addr).await.expect("connect");
        half_body
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .expect("write");
        let (answer, _) = read_until_closed(&mut half_body).await;
        assert!(
            !answer.contains("200 OK"),
            "a half-sent body was served: {answer}"
        );

        // A keep-alive connection that went idle after a request is closed too.
        let mut kept = TcpStream::connect(addr).await.expect("connect");
        kept.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
            .await
            .expect("write");
        let (answer, _) = read_until_closed(&mut kept).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn requests_beyond_the_concurrency_limit_get_503() {
        let (addr, release, _stop) = server(short()).await;
        let mut first = TcpStream::connect(addr).await.expect("connect");
        first
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        // The first request holds the only slot until released; poll until the second one
        // is shed (the first may take a moment to reach its handler).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut second = TcpStream::connect(addr).await.expect("connect");
            second
                .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .expect("write");
            let mut buf = vec![0u8; 64];
            let n = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
            if let Ok(Ok(n)) = n
                && String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no 503 while the only slot was busy"
            );
        }
        release.notify_waiters();
        let (answer, _) = read_until_closed(&mut first).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
