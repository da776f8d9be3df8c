//! Accept loop and per-connection task, with Redis-like client limits.
//!
//! * `maxclients`: a connection past it gets `-ERR max number of clients reached` and is
//!   closed at once (no task is spawned for it).
//! * Per-client query buffer: the codec refuses an incomplete request larger than
//!   [`Limits::max_request_bytes`], and a read never takes more than one byte past it.
//! * All clients' buffers together: every read first reserves its size in a shared counter;
//!   a read that would push the total past `maxmemory_clients` closes *that* client with an
//!   error (Redis evicts the biggest client instead; closing the one asking for more needs no
//!   cross-connection bookkeeping and still bounds the total). Reads wait for readability
//!   before reserving, so idle connections hold no reservation.
//! * A request whose first byte arrived more than `request_timeout` ago and is still
//!   incomplete closes the connection; an idle `timeout` closes quiet clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncBufRead;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{Decoder, Encoder};

use super::auth::{Auth, Session};
use super::codec::{CodecError, Limits, Reply, RespCodec};
use super::command::{self, Command, ObjectCmd};
use super::hotkeys::Hotkeys;
use crate::dispatch::{ClientSession, Dispatcher, now_unix_ms};

/// Client limits of the RESP server (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Codec limits; `max_request_bytes` is the per-client query buffer limit.
    pub codec: Limits,
    /// Most connections at once.
    pub maxclients: usize,
    /// Most bytes buffered by all connections together.
    pub maxmemory_clients: usize,
    /// Deadline for completing a request once its first byte arrived (`None` = none).
    pub request_timeout: Option<Duration>,
    /// Close a connection that sent nothing for this long (`None` = never).
    pub idle_timeout: Option<Duration>,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            codec: Limits::default(),
            maxclients: 10_000,
            maxmemory_clients: 512 << 20,
            request_timeout: Some(Duration::from_secs(30)),
            idle_timeout: None,
        }
    }
}

/// Reply to a client past `maxclients`.
pub const MAX_CLIENTS: &[u8] = b"-ERR max number of clients reached\r\n";
/// Reply to a client whose read would push all buffers past `maxmemory_clients`.
const MAX_MEMORY_CLIENTS: &str =
    "ERR maxmemory-clients reached: all clients' query buffers are full, closing this connection";

/// Most bytes taken from the socket per read.
const READ_CHUNK: usize = 64 * 1024;
/// A buffer left with more capacity than this after its requests were consumed is dropped,
/// so a client that once sent a 16 MiB value does not keep 16 MiB allocated while idle.
const KEEP_CAPACITY: usize = 256 * 1024;
/// Replies are written once this many bytes are pending, even mid-pipeline.
const WRITE_AT: usize = 1 << 20;
/// Most requests taken from one read of the socket and executed as one pipeline.
const MAX_PIPELINE: usize = 256;

/// State shared by the accept loop and every connection.
struct Shared {
    dispatcher: Arc<Dispatcher>,
    auth: Arc<Auth>,
    hotkeys: Arc<Hotkeys>,
    limits: ClientLimits,
    clients: AtomicUsize,
    buffered: AtomicUsize,
}

impl Shared {
    /// Reserves `n` buffered bytes unless that would pass `maxmemory_clients`.
    fn reserve(&self, n: usize) -> bool {
        self.buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                b.checked_add(n)
                    .filter(|t| *t <= self.limits.maxmemory_clients)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.buffered.fetch_sub(n, Ordering::AcqRel);
    }
}

/// One connection's slot in `clients` and its share of `buffered`, given back on drop.
struct Slot {
    shared: Arc<Shared>,
    buffered: usize,
}

impl Slot {
    /// Records that the connection now buffers `len` bytes (never more than it reserved).
    fn set_buffered(&mut self, len: usize) {
        if len < self.buffered {
            self.shared.release(self.buffered - len);
            self.buffered = len;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.release(self.buffered);
        self.shared.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves RESP on `listener` (and, with `tls`, RESP over TLS on a second listener, like
/// Redis's `tls-port`) until `shutdown` turns true; each admitted connection gets its own
/// task. Both listeners share the client limits (`maxclients`, `maxmemory_clients`). A TLS
/// connection completes its handshake within [`TLS_HANDSHAKE_TIMEOUT`] or is closed (a
/// plain-RESP client on the TLS port gets no answer and is closed); over the limit it is
/// closed without the `-ERR max number of clients` line (it would not be TLS). Accept errors (such as running out of file descriptors) are logged at `warn`
/// at most once a second and followed by a short pause; the loop never exits on them.
/// `HOTKEYS` commands of every connection share `hotkeys` (the node's one session).
pub async fn serve(
    listener: TcpListener,
    tls: Option<(TcpListener, TlsAcceptor)>,
    dispatcher: Arc<Dispatcher>,
    limits: ClientLimits,
    auth: Arc<Auth>,
    hotkeys: Arc<Hotkeys>,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        dispatcher,
        auth,
        hotkeys,
        limits,
        clients: AtomicUsize::new(0),
        buffered: AtomicUsize::new(0),
    });
    let mut last_warn: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = crate::node::stopped(&mut shutdown) => return,
            a = listener.accept() => a.map(|(s, _)| (s, None)),
            (a, acc) = accept_tls(tls.as_ref()) => a.map(|(s, _)| (s, Some(acc))),
        };
        {
            match accepted {
                Ok((stream, acc)) => admit(&shared, stream, acc, &shutdown),
                Err(e) => {
                    if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, suppressed, "resp accept failed; backing off");
                        last_warn = Some(Instant::now());
                        suppressed = 0;
                    } else {
                        suppressed += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Accepts on the TLS listener, or never resolves without one.
async fn accept_tls(
    tls: Option<&(TcpListener, TlsAcceptor)>,
) -> (
    std::io::Result<(TcpStream, std::net::SocketAddr)>,
    TlsAcceptor,
) {
    match tls {
        Some((l, a)) => (l.accept().await, a.clone()),
        None => std::future::pending().await,
    }
}

/// Longest a RESP TLS client may take to complete its handshake.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn admit(
    shared: &Arc<Shared>,
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    shutdown: &watch::Receiver<bool>,
) {
    let admitted = shared
        .clients
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
            (c < shared.limits.maxclients).then_some(c + 1)
        })
        .is_ok();
    if !admitted {
        // A fresh socket's send buffer always has room for one line; never wait on it.
        if tls.is_none() {
            let _ = stream.try_write(MAX_CLIENTS);
        }
        return;
    }
    let _ = stream.set_nodelay(true);
    let slot = Slot {
        shared: shared.clone(),
        buffered: 0,
    };
    let shutdown = shutdown.clone();
    match tls {
        None => {
            tokio::spawn(connection(Stream::Plain(stream), slot, shutdown));
        }
        Some(acceptor) => {
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let s = tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, s);
                        connection(Stream::Tls(Box::new(s)), slot, shutdown).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "resp TLS handshake failed"),
                    Err(_) => tracing::debug!("resp TLS handshake timed out"),
                }
            });
        }
    }
}

/// Plaintext a TLS connection holds outside the `maxmemory_clients` accounting: one TLS
/// record (rustls keeps its own record buffers too, about as much again).
const TLS_READ_BUFFER: usize = 16 * 1024;

/// A client connection: plain TCP, or TLS with a small plaintext buffer in front so the
/// read path can wait for data without reserving memory first (as `readable` does for TCP).
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio::io::BufReader<tokio_rustls::server::TlsStream<TcpStream>>>),
}

impl Stream {
    /// The client's address (the TCP peer under TLS too).
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            Stream::Plain(s) => s.peer_addr(),
            Stream::Tls(s) => s.get_ref().get_ref().0.peer_addr(),
        }
    }

    /// Waits until a read will not block (data, EOF or an error is there). Cancel safe.
    async fn readable(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncBufReadExt;
        match self {
            Stream::Plain(s) => s.readable().await,
            Stream::Tls(s) => s.fill_buf().await.map(|_| ()),
        }
    }

    /// Reads what is there without waiting (`WouldBlock` when nothing is, `Ok(0)` at EOF).
    fn try_read_buf<B: BufMut>(&mut self, buf: &mut B) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.try_read_buf(buf),
            Stream::Tls(s) => {
                let n = {
                    let avail = s.buffer();
                    let n = avail.len().min(buf.remaining_mut());
                    buf.put_slice(&avail[..n]);
                    n
                };
                if n == 0 && !s.buffer().is_empty() {
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                std::pin::Pin::new(&mut **s).consume(n);
                Ok(n)
            }
        }
    }
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// Why a connection task ended early.
enum Close {
    /// Socket closed or failed, QUIT, shutdown: nothing more to say.
    Quietly,
    /// Send this error line first.
    With(String),
}

struct Conn {
    stream: Stream,
    slot: Slot,
    codec: RespCodec,
    session: Session,
    /// One client session per connection: its writes apply at most once, even when retried.
    client: ClientSession,
    buf: BytesMut,
    out: BytesMut,
}

async fn connection(stream: Stream, slot: Slot, shutdown: watch::Receiver<bool>) {
    let auth = slot.shared.auth.clone();
    let mut codec = RespCodec::new(slot.shared.limits.codec);
    let session = auth.new_session();
    let client = slot.shared.dispatcher.new_session();
    codec.set_restricted(!session.authenticated);
    let mut c = Conn {
        stream,
        slot,
        codec,
        session,
        client,
        buf: BytesMut::new(),
        out: BytesMut::new(),
    };
    if let Close::With(text) = c.run(shutdown).await {
        c.encode(Reply::Error(text));
        if let Ok(Ok(())) = tokio::time::timeout(LINGER, c.write_out()).await {
            c.linger().await;
        }
        return;
    }
    let _ = c.write_out().await;
}

/// How long a connection closed with an error keeps discarding what the client still sends,
/// so the kernel does not reset the connection (which would drop the error line unread).
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes discarded while lingering.
const LINGER_BYTES: usize = 4 << 20;

impl Conn {
    fn encode(&mut self, r: Reply) {
        let _ = self.codec.encode(r, &mut self.out);
    }

    async fn write_out(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            // TLS may keep encrypted records buffered after accepting the plaintext.
            self.stream.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Half-closes the connection and discards input for at most [`LINGER`] /
    /// [`LINGER_BYTES`], until the client closes too.
    async fn linger(&mut self) {
        use tokio::io::AsyncReadExt;
        let _ = self.stream.shutdown().await;
        self.buf = BytesMut::new();
        self.slot.set_buffered(0);
        let mut scratch = vec![0u8; 16 * 1024];
        let mut discarded = 0;
        let _ = tokio::time::timeout(LINGER, async {
            while discarded < LINGER_BYTES {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => discarded += n,
                }
            }
        })
        .await;
    }

    async fn run(&mut self, mut shutdown: watch::Receiver<bool>) -> Close {
        let limits = self.slot.shared.limits;
        let mut last_read = Instant::now();
        // When the first byte of the still incomplete request arrived.
        let mut partial_since: Option<Instant> = None;
        loop {
            // Everything already buffered, up to the first malformed request.
            let mut requests = Vec::new();
            let mut protocol_error = None;
            // Whether the decoder ran out of complete requests (rather than stopping early).
            let mut drained = false;
            while requests.len() < MAX_PIPELINE {
                match self.codec.decode(&mut self.buf) {
                    Ok(Some(args)) => {
                        requests.push(args);
                        // Before AUTH, decode one request at a time: AUTH lifts the
                        // codec's unauthenticated limits for what follows it.
                        if !self.session.authenticated {
                            break;
                        }
                    }
                    Ok(None) => {
                        drained = true;
                        break;
                    }
                    Err(CodecError::Protocol(msg)) => {
                        protocol_error = Some(msg);
                        break;
                    }
                    Err(CodecError::Io(_)) => return Close::Quietly,
                }
            }
            self.slot.set_buffered(self.buf.len());
            if self.buf.is_empty() {
                partial_since = None;
                if self.buf.capacity() > KEEP_CAPACITY {
                    self.buf = BytesMut::new();
                }
            }
            if !requests.is_empty() {
                if self.execute(requests).await {
                    return Close::Quietly;
                }
                // What is left starts a new request now (execution time does not count).
                partial_since = (!self.buf.is_empty()).then(Instant::now);
                if self.out.len() >= WRITE_AT && self.write_out().await.is_err() {
                    return Close::Quietly;
                }
            }
            if let Some(msg) = protocol_error {
                return Close::With(format!("ERR Protocol error: {msg}"));
            }
            if !drained {
                continue;
            }
            // Nothing complete is buffered: answer, then wait for more bytes.
            if self.write_out().await.is_err() {
                return Close::Quietly;
            }
            if !self.buf.is_empty() && partial_since.is_none() {
                partial_since = Some(Instant::now());
            }
            let partial_deadline = partial_since
                .zip(limits.request_timeout)
                .map(|(t, d)| t + d);
            let idle_deadline = limits.idle_timeout.map(|d| last_read + d);
            let deadline = match (partial_deadline, idle_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = crate::node::stopped(&mut shutdown) => return Close::Quietly,
                r = self.stream.readable() => if r.is_err() { return Close::Quietly },
                () = sleep => {
                    return match (partial_deadline, limits.request_timeout) {
                        (Some(d), Some(t)) if Instant::now() >= d => Close::With(format!(
                            "ERR Protocol error: request not completed within {} ms",
                            t.as_millis()
                        )),
                        // Idle timeout: Redis closes silently.
                        _ => Close::Quietly,
                    };
                }
            }
            // At most one byte past the query buffer limit, so an oversized request is seen.
            let want = READ_CHUNK.min(
                (limits.codec.max_request_bytes + 1)
                    .saturating_sub(self.buf.len())
                    .max(1),
            );
            if !self.slot.shared.reserve(want) {
                return Close::With(MAX_MEMORY_CLIENTS.into());
            }
            self.buf.reserve(want);
            let res = self.stream.try_read_buf(&mut (&mut self.buf).limit(want));
            let got = match res {
                Ok(0) => {
                    self.slot.shared.release(want);
                    return Close::Quietly;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                Err(_) => {
                    self.slot.shared.release(want);
                    return Close::Quietly;
                }
            };
            // The reservation becomes this connection's buffered bytes.
            self.slot.shared.release(want - got);
            self.slot.buffered += got;
            if got > 0 {
                last_read = Instant::now();
            }
        }
    }

    /// Runs `requests` in order; returns true when the connection must close (QUIT).
    async fn execute(&mut self, requests: Vec<Vec<Bytes>>) -> bool {
        let shared = self.slot.shared.clone();
        let mut segment: Vec<Result<Command, String>> = Vec::new();
        for args in requests {
            match shared.auth.gate(&self.session, command::parse(args)) {
                Ok(Command::Quit) => {
                    self.run_segment(&shared, &mut segment).await;
                    self.encode(Reply::Simple("OK"));
                    return true;
                }
                Ok(Command::Auth { user, password }) => {
                    // AUTH changes what the following requests may do: run those before it.
                    self.run_segment(&shared, &mut segment).await;
                    let client = self
                        .stream
                        .peer_addr()
                        .map_or_else(|_| "unknown".to_string(), |a| a.ip().to_string());
                    match shared
                        .auth
                        .authenticate(user.as_ref(), &password, &client)
                        .await
                    {
                        Ok(s) => {
                            self.session = s;
                            self.codec.set_restricted(!self.session.authenticated);
                            self.encode(Reply::Simple("OK"));
                        }
                        Err(text) => self.encode(Reply::Error(text)),
                    }
                }
                Ok(Command::Hotkeys(cmd)) => {
                    // The session is the node's, not the dispatcher's: run what came before
                    // first so replies stay in request order.
                    self.run_segment(&shared, &mut segment).await;
                    let now = i64::try_from(now_unix_ms()).unwrap_or(i64::MAX);
                    let reply = shared.hotkeys.run(cmd, now).await;
                    self.encode(reply);
                }
                Ok(Command::Object(cmd)) => {
                    self.run_segment(&shared, &mut segment).await;
                    let reply = object(&shared, cmd).await;
                    self.encode(reply);
                }
                other => segment.push(other),
            }
        }
        self.run_segment(&shared, &mut segment).await;
        false
    }

    async fn run_segment(&mut self, shared: &Shared, segment: &mut Vec<Result<Command, String>>) {
        if segment.is_empty() {
            return;
        }
        let cmds = std::mem::take(segment);
        let replies = shared
            .dispatcher
            .in_session(self.client.clone(), shared.dispatcher.run_pipeline(cmds))
            .await;
        for reply in replies {
            self.encode(reply);
        }
    }
}

/// `OBJECT FREQ` / `OBJECT HELP`. A key this node's replica does not hold is nil, as in
/// Redis (that existence check is a local read, not counted as traffic); otherwise the
/// key's cluster-wide accesses of the last minute ([`super::freq`]).
async fn object(shared: &Shared, cmd: ObjectCmd) -> Reply {
    match cmd {
        ObjectCmd::Help => {
            Reply::Array(super::freq::HELP.iter().map(|l| Reply::Simple(l)).collect())
        }
        ObjectCmd::Freq(key) => {
            let freq = shared.hotkeys.frequencies();
            // An untracked node says why whatever the key; a tracked one answers nil for a
            // key it does not hold, as Redis does.
            if freq.tracked() {
                match shared.dispatcher.store().get_value(&key, now_unix_ms()) {
                    Ok(None) => return Reply::Bulk(None),
                    Ok(Some(_)) => {}
                    Err(e) => return Reply::err(e),
                }
            }
            let now = i64::try_from(now_unix_ms()).unwrap_or(i64::MAX);
            match freq.freq(&key, now).await {
                Ok(n) => Reply::Int(i64::try_from(n).unwrap_or(i64::MAX)),
                Err(e) => Reply::Error(e),
            }
        }
    }
}
