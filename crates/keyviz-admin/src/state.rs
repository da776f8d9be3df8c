//! The shared state behind the router: host services, configuration and the runtime parts
//! (limiter, revocations, fan-out machinery, metrics).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::api::ApiError;
use crate::auth::pool::LoginPool;
use crate::auth::registry::SessionRegistry;
use crate::auth::{CredentialStore, RateLimiter, Role, SessionClaims, StaticCredentials};
use crate::config::{AdminConfig, ConfigError};
use crate::fanout::FlightKey;
use crate::fanout::single_flight::SingleFlight;
use crate::fanout::status::PeerTable;
use crate::host::{
    ClusterSecret, DisabledSource, MatrixSource, Membership, NoMembership, NodeIdentity,
};
use crate::hotkeys::{ClusterHotKeys, HotFlightKey};
use crate::metrics::Metrics;
use crate::peer::{GuardConfig, PeerGuard, PeerKeys, PeerTransport, TransportConfig};

/// Everything the handlers share. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AdminState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: AdminConfig,
    pub(crate) identity: NodeIdentity,
    pub(crate) secret: ClusterSecret,
    pub(crate) source: Arc<dyn MatrixSource>,
    pub(crate) credentials: Arc<dyn CredentialStore>,
    pub(crate) membership: Arc<dyn Membership>,
    pub(crate) limiter: RateLimiter,
    /// Where credential checks run (bounded workers and queue).
    pub(crate) login_pool: LoginPool,
    /// This node's session generation and revocations.
    pub(crate) sessions: SessionRegistry,
    pub(crate) metrics: Metrics,
    /// The peer client of every fan-out (signed requests, verified answers).
    pub(crate) client: PeerTransport,
    /// The cluster secret as peer signing keys.
    pub(crate) peer_keys: PeerKeys,
    /// Verifies signed peer requests to this node and signs their answers.
    pub(crate) peer_guard: Arc<PeerGuard>,
    /// Peer identities are bound to TLS certificates (mutual TLS on): signed requests to
    /// this node need a client certificate naming their issuer, and every `https://` peer
    /// answer must come over a connection whose server certificate names the proven node.
    pub(crate) certificate_binding: bool,
    pub(crate) flights: SingleFlight<FlightKey, Arc<Result<Bytes, ApiError>>>,
    /// Hot-key fan-outs in flight or just finished (same rules as `flights`).
    pub(crate) hot_flights: SingleFlight<HotFlightKey, Arc<Result<ClusterHotKeys, ApiError>>>,
    pub(crate) peers: PeerTable,
    pub(crate) fanout_slots: tokio::sync::Semaphore,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("identity", &self.inner.identity)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// Starts a builder for a node with `identity` and the cluster `secret`. Unset services
    /// default to: KeyViz disabled (503), no operators (every login 401), no membership.
    #[must_use = "call build() to get the state"]
    pub fn builder(identity: NodeIdentity, secret: ClusterSecret) -> AdminStateBuilder {
        AdminStateBuilder {
            identity,
            secret,
            config: AdminConfig::default(),
            source: Arc::new(DisabledSource),
            credentials: Arc::new(StaticCredentials::new()),
            membership: Arc::new(NoMembership),
            peer_tls: None,
            certificate_binding: false,
        }
    }

    /// This node's identity.
    #[must_use]
    pub fn identity(&self) -> &NodeIdentity {
        &self.inner.identity
    }

    /// Bytes of the peer body budget (`fanout_bytes_in_flight`) free right now: the whole
    /// budget when no fan-out holds a peer body. Lock-free read; for tests and monitoring.
    #[must_use]
    pub fn peer_body_budget_free(&self) -> usize {
        self.inner.client.body_budget_available().unwrap_or(0)
    }

    /// The effective configuration.
    #[must_use]
    pub fn config(&self) -> &AdminConfig {
        &self.inner.config
    }

    /// Mints an operator session of this node exactly as a successful login does, without
    /// checking any credential: for hosts that authenticate operators themselves, and for
    /// tests and benchmarks. (Whoever holds the state holds the cluster secret anyway.)
    /// Takes the session-registry mutex briefly.
    ///
    /// # Errors
    /// 500 `internal` when the OS random source fails.
    pub fn issue_session(&self, access_key: &str, role: Role) -> Result<IssuedSession, ApiError> {
        let inner = &self.inner;
        let ttl_s = i64::try_from(inner.config.session_ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = SessionClaims::issue(
            access_key,
            role,
            inner.identity.node_id(),
            &inner.sessions.generation(),
            crate::clock::now_unix_s(),
            ttl_s,
        )
        .map_err(ApiError::internal)?;
        let cookie_value = claims.sign(&inner.secret).map_err(ApiError::internal)?;
        let csrf = claims.csrf_token(&inner.secret);
        Ok(IssuedSession {
            claims,
            cookie_value,
            csrf,
        })
    }

    /// Ends every operator session of this node at once (a new session generation starts;
    /// cookies of the old one get 401). A host whose [`CredentialStore`] changes while the
    /// node runs (a password change, a removed operator) calls this after the change. Takes
    /// the session-registry mutex briefly; never blocks on I/O.
    pub fn end_all_sessions(&self) {
        self.inner.sessions.end_all();
        tracing::info!("admin_audit all sessions of this node ended");
    }
}

/// A freshly minted operator session (see [`AdminState::issue_session`]).
#[derive(Debug, Clone)]
pub struct IssuedSession {
    /// What the session says.
    pub claims: SessionClaims,
    /// The value of the `admin_session` cookie.
    pub cookie_value: String,
    /// The session's CSRF token: the value of the `admin_csrf` cookie and of the
    /// `X-Admin-CSRF` header on writes.
    pub csrf: String,
}

/// Builder of [`AdminState`].
#[must_use = "call build() to get the state"]
pub struct AdminStateBuilder {
    identity: NodeIdentity,
    secret: ClusterSecret,
    config: AdminConfig,
    source: Arc<dyn MatrixSource>,
    credentials: Arc<dyn CredentialStore>,
    membership: Arc<dyn Membership>,
    peer_tls: Option<Arc<rustls::ClientConfig>>,
    certificate_binding: bool,
}

/// Live nonces of signed peer requests remembered at most (see
/// [`crate::peer::signing::ReplayCache`]): fan-outs are a few per second per peer, so this
/// is far above any honest rate within the acceptance window; about 4 MiB when full.
pub(crate) const PEER_REPLAY_CAPACITY: usize = 65_536;

/// Largest body of a signed request to the admin port (peers only send GETs).
const PEER_REQUEST_CAP: usize = 64 * 1024;

fn refuse(
    status: http::StatusCode,
    code: &'static str,
    message: String,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    ApiError::new(status, code, message).into_response()
}

impl AdminStateBuilder {
    /// TLS client settings of the fan-out (roots, client certificate for mTLS); without it
    /// (the default) `https://` peers are refused.
    pub fn peer_tls(mut self, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.peer_tls = tls;
        self
    }

    /// Binds peer identities to TLS certificates (`false` by default); for hosts under
    /// mutual TLS whose node certificates name `keyviz-node-<id>` and whose peer ids are
    /// `node-<id>` (kvnode under `--tls-client-auth=peers|all`). Server side: a signed
    /// peer request must come with a client certificate naming its issuer (403
    /// `peer_certificate_required` / `peer_certificate_mismatch`,
    /// [`PeerGuard::with_certificate_binding`]). Client side: after an `https://` peer
    /// proved node id X, each of its answers must have come over a connection whose server
    /// certificate names X, else the peer is `peer_identity_unproven`. Plain `http://`
    /// peers carry no certificate and are not bound.
    pub fn certificate_binding(mut self, on: bool) -> Self {
        self.certificate_binding = on;
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: AdminConfig) -> Self {
        self.config = config;
        self
    }

    /// Where local matrices come from (e.g. `Arc<keyviz::Sampler>`).
    pub fn matrix_source(mut self, source: Arc<dyn MatrixSource>) -> Self {
        self.source = source;
        self
    }

    /// The operator store (e.g. [`StaticCredentials::load`]).
    pub fn credentials(mut self, credentials: Arc<dyn CredentialStore>) -> Self {
        self.credentials = credentials;
        self
    }

    /// The live cluster membership, combined with `config.fanout_nodes`.
    pub fn membership(mut self, membership: Arc<dyn Membership>) -> Self {
        self.membership = membership;
        self
    }

    /// Validates the configuration and assembles the state. Does not touch the network and
    /// needs no runtime (the router needs a tokio runtime when it serves); starts the login
    /// worker threads, which exit when the state is dropped.
    ///
    /// # Errors
    /// [`ConfigError`] from [`AdminConfig::validate`]; [`ConfigError::Resources`] when the OS
    /// random source or thread creation fails.
    pub fn build(self) -> Result<AdminState, ConfigError> {
        self.config.validate()?;
        let c = &self.config;
        let limiter = RateLimiter::new(
            c.login_rate_limit,
            c.login_rate_window,
            c.login_rate_max_clients,
        );
        let connect_timeout = c.fanout_timeout.min(Duration::from_secs(1));
        let sessions = SessionRegistry::new().map_err(|e| ConfigError::Resources(e.to_string()))?;
        let login_pool = LoginPool::new(c.login_workers, c.login_queue)
            .map_err(|e| ConfigError::Resources(format!("start login workers: {e}")))?;
        let inner = Inner {
            limiter,
            login_pool,
            sessions,
            metrics: Metrics::new(),
            client: PeerTransport::new(&TransportConfig {
                connect_timeout,
                pool_idle_timeout: Duration::from_secs(30),
                pool_max_idle_per_host: 8,
                tls: self.peer_tls,
            })
            .with_body_budget(c.fanout_bytes_in_flight),
            peer_keys: PeerKeys::from_secret(&self.secret),
            peer_guard: Arc::new(
                PeerGuard::new(
                    PeerKeys::from_secret(&self.secret),
                    GuardConfig {
                        self_id: self.identity.node_id().to_string(),
                        max_age: c.peer_token_ttl,
                        max_skew: c.clock_skew,
                        age_bytes_per_sec: None,
                        replay_capacity: PEER_REPLAY_CAPACITY,
                        request_cap: PEER_REQUEST_CAP,
                        identity_path: Some(crate::api::IDENTITY_PATH.to_string()),
                        required: false,
                    },
                    refuse,
                    crate::clock::now_unix_ms,
                )
                .with_certificate_binding(self.certificate_binding),
            ),
            certificate_binding: self.certificate_binding,
            flights: SingleFlight::new(c.result_reuse),
            hot_flights: SingleFlight::new(c.result_reuse),
            peers: PeerTable::default(),
            fanout_slots: tokio::sync::Semaphore::new(c.max_concurrent_fanouts),
            config: self.config,
            identity: self.identity,
            secret: self.secret,
            source: self.source,
            credentials: self.credentials,
            membership: self.membership,
        };
        Ok(AdminState {
            inner: Arc::new(inner),
        })
    }
}
