//! The shared state behind the router: host services, configuration and the runtime parts
//! (limiter, revocations, fan-out machinery, metrics).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::api::ApiError;
use crate::auth::{CredentialStore, RateLimiter, StaticCredentials};
use crate::config::{AdminConfig, ConfigError};
use crate::fanout::FlightKey;
use crate::fanout::client::PeerClient;
use crate::fanout::single_flight::SingleFlight;
use crate::fanout::status::PeerTable;
use crate::host::{
    ClusterSecret, DisabledSource, MatrixSource, Membership, NoMembership, NodeIdentity,
};
use crate::hotkeys::{ClusterHotKeys, HotFlightKey};
use crate::metrics::Metrics;

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
    /// Session ids revoked by logout on this node, with their expiry (unix s).
    pub(crate) revoked: Mutex<HashMap<String, i64>>,
    pub(crate) metrics: Metrics,
    pub(crate) client: PeerClient,
    pub(crate) flights: SingleFlight<FlightKey, Arc<Result<Bytes, ApiError>>>,
    /// Hot-key fan-outs in flight or just finished (same rules as `flights`).
    pub(crate) hot_flights: SingleFlight<HotFlightKey, Arc<Result<ClusterHotKeys, ApiError>>>,
    pub(crate) peers: PeerTable,
    pub(crate) fanout_slots: tokio::sync::Semaphore,
}

/// Most revocations kept; beyond it the oldest-expiring half is dropped (those sessions
/// then live until their natural expiry, as in the reference).
const MAX_REVOKED: usize = 100_000;

impl Inner {
    pub(crate) fn revoke(&self, sid: &str, exp: i64, now_s: i64) {
        let mut r = self.revoked.lock();
        r.retain(|_, e| *e > now_s);
        if r.len() >= MAX_REVOKED {
            let mut exps: Vec<i64> = r.values().copied().collect();
            exps.sort_unstable();
            let cut = exps[exps.len() / 2];
            r.retain(|_, e| *e > cut);
        }
        r.insert(sid.to_string(), exp);
    }

    pub(crate) fn is_revoked(&self, sid: &str) -> bool {
        self.revoked.lock().contains_key(sid)
    }
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
        }
    }

    /// This node's identity.
    #[must_use]
    pub fn identity(&self) -> &NodeIdentity {
        &self.inner.identity
    }

    /// The effective configuration.
    #[must_use]
    pub fn config(&self) -> &AdminConfig {
        &self.inner.config
    }
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
}

impl AdminStateBuilder {
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
    /// needs no runtime; the router needs a tokio runtime when it serves.
    ///
    /// # Errors
    /// [`ConfigError`] from [`AdminConfig::validate`].
    pub fn build(self) -> Result<AdminState, ConfigError> {
        self.config.validate()?;
        let c = &self.config;
        let limiter = RateLimiter::new(
            c.login_rate_limit,
            c.login_rate_window,
            c.login_rate_max_clients,
        );
        let connect_timeout = c.fanout_timeout.min(Duration::from_secs(1));
        let inner = Inner {
            limiter,
            revoked: Mutex::new(HashMap::new()),
            metrics: Metrics::new(),
            client: PeerClient::new(connect_timeout),
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
