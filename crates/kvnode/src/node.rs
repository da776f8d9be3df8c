//! [`start`] wires one node: storage, sampler, catalog, Raft groups, the internal transport,
//! the RESP server, the admin server and the flush task. [`Node::shutdown`] stops them in
//! reverse order and flushes KeyViz one last time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::NodeConfig;
use crate::counting::CountFence;
use crate::dispatch::{Dispatcher, now_unix_ms};
use crate::raft::{Groups, StartError};
use crate::resp::hotkeys::{ClusterSource, LocalSource};
use crate::resp::{Auth, ClientLimits, HotKeysSource, Hotkeys, Limits};
use crate::routing::Catalog;
use crate::routing::split::SharedCatalog;
use crate::sampling::Sampling;
use crate::store::{Store, StoreError};
use crate::transport::PeerClient;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory could not be opened.
    #[error("data dir {dir}: {source}")]
    Store {
        /// Directory.
        dir: String,
        /// Cause.
        source: StoreError,
    },
    /// A listener could not be bound.
    #[error("bind {what} {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Raft groups failed to start.
    #[error(transparent)]
    Raft(#[from] StartError),
    /// The KeyViz sampler rejected its configuration.
    #[error("keyviz: {0}")]
    Sampler(String),
    /// The admin server could not be set up (credentials, secret).
    #[error("admin: {0}")]
    Admin(String),
    /// TLS could not be set up (files, keys, CA, the node identity in the certificate).
    #[error("tls: {0}")]
    Tls(String),
}

/// A running node.
pub struct Node {
    dispatcher: Arc<Dispatcher>,
    sampling: Sampling,
    resp_addr: SocketAddr,
    raft_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    resp_tls_addr: Option<SocketAddr>,
    tls: Option<keyviz_admin::tls::NodeTls>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Loads the node's TLS material when `tls_cert`/`tls_key` are set; under mutual TLS the
/// certificate must name this node (`keyviz-node-<id>`), since peers check exactly that.
fn load_tls(cfg: &NodeConfig) -> Result<Option<keyviz_admin::tls::NodeTls>, NodeError> {
    let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) else {
        return Ok(None);
    };
    let files = keyviz_admin::tls::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        ca: cfg.tls_ca.clone(),
        client_auth: cfg.tls_client_auth,
    };
    let tls =
        keyviz_admin::tls::NodeTls::load(&files).map_err(|e| NodeError::Tls(e.to_string()))?;
    if cfg.tls_client_auth != keyviz_admin::tls::ClientAuth::Off && !tls.names_node(cfg.node_id) {
        return Err(NodeError::Tls(format!(
            "with tls_client_auth the certificate {} must name this node: DNS name {}",
            cert.display(),
            keyviz_admin::tls::node_dns_name(cfg.node_id)
        )));
    }
    Ok(Some(tls))
}

/// The TLS acceptor of `listener`, if TLS is on.
fn acceptor(
    tls: Option<&keyviz_admin::tls::NodeTls>,
    listener: keyviz_admin::tls::Listener,
) -> Result<Option<tokio_rustls::TlsAcceptor>, NodeError> {
    tls.map(|t| {
        t.server_config(listener)
            .map(tokio_rustls::TlsAcceptor::from)
            .map_err(|e| NodeError::Tls(e.to_string()))
    })
    .transpose()
}

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind {
            what,
            addr: addr.to_string(),
            source,
        })
}

fn local(l: &TcpListener, what: &'static str, addr: &str) -> Result<SocketAddr, NodeError> {
    l.local_addr().map_err(|source| NodeError::Bind {
        what,
        addr: addr.to_string(),
        source,
    })
}

/// Reads the cluster secret from the config (inline or file).
fn cluster_secret(cfg: &NodeConfig) -> Result<Option<Vec<u8>>, NodeError> {
    if let Some(s) = &cfg.cluster_secret {
        return Ok(Some(s.trim().as_bytes().to_vec()));
    }
    if let Some(p) = &cfg.cluster_secret_file {
        let text = std::fs::read_to_string(p)
            .map_err(|e| NodeError::Admin(format!("cluster secret file {}: {e}", p.display())))?;
        return Ok(Some(text.trim().as_bytes().to_vec()));
    }
    Ok(None)
}

/// The hot-key capture of `--hot-keys`: hashed mode is keyed with the cluster secret, so
/// every node hashes a key alike (the cluster merge adds them up) and nobody without the
/// secret can test a guessed key against the hash.
fn hot_key_redactor(
    cfg: &NodeConfig,
    secret: Option<&[u8]>,
) -> Result<keyviz::hotkeys::KeyRedactor, NodeError> {
    use keyviz::hotkeys::{HotKeyMode, KeyRedactor};
    let separator = cfg.hot_keys_separator_byte()?;
    Ok(match cfg.hot_keys {
        HotKeyMode::Off => KeyRedactor::off(),
        HotKeyMode::Raw => KeyRedactor::raw(),
        HotKeyMode::Hashed => match secret {
            Some(secret) if !secret.is_empty() => KeyRedactor::hashed(secret, separator),
            _ => {
                return Err(NodeError::Config(crate::config::ConfigError::Invalid {
                    field: "hot_keys",
                    reason: "hashed needs a cluster secret (cluster_secret, \
                             cluster_secret_file or KEYVIZ_CLUSTER_SECRET) to key the hash"
                        .into(),
                }));
            }
        },
    })
}

/// Descriptors kept back from RESP clients for Raft, admin and storage: a fixed part (fjall's
/// files, the listeners, logs) plus some per cluster member (inbound and outbound Raft and
/// forwarding connections, admin fan-out).
fn reserved_fds(members: usize) -> u64 {
    160 + 16 * members as u64
}

/// Raises the soft open-file limit as far as the hard limit allows, and caps `wanted`
/// clients to what it leaves after [`reserved_fds`], like Redis does with `maxclients`.
/// Logs the raise at `info` and a cap at `warn`.
fn allowed_clients(wanted: u64, members: usize) -> u64 {
    let reserve = reserved_fds(members);
    let before = rlimit::Resource::NOFILE.get().map(|(soft, _)| soft).ok();
    // Raising can fail past the kernel's own ceiling (nr_open); then the current limit holds.
    let raised = rlimit::increase_nofile_limit(wanted.saturating_add(reserve))
        .or_else(|_| rlimit::Resource::NOFILE.get().map(|(soft, _)| soft));
    let soft = match raised {
        Ok(soft) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit; keeping maxclients");
            return wanted;
        }
    };
    if before.is_some_and(|b| b < soft) {
        tracing::info!(from = before, to = soft, "raised the open-file limit");
    }
    let fit = soft.saturating_sub(reserve).max(1);
    if fit < wanted {
        tracing::warn!(
            maxclients = wanted,
            adjusted = fit,
            open_file_limit = soft,
            reserved = reserve,
            "maxclients lowered to fit the open-file limit (raise it with ulimit -n)"
        );
        return fit;
    }
    wanted
}

/// The RESP client limits from the config, with `maxclients` capped by the open-file limit.
fn client_limits(cfg: &NodeConfig) -> ClientLimits {
    let members = cfg.members().len();
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let millis = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
    ClientLimits {
        codec: Limits::for_query_buffer(size(cfg.client_query_buffer_limit)),
        maxclients: size(allowed_clients(cfg.maxclients, members)),
        maxmemory_clients: size(cfg.maxmemory_clients),
        request_timeout: millis(cfg.client_request_timeout_ms),
        idle_timeout: millis(cfg.client_timeout_s.saturating_mul(1000)),
    }
}

/// RESP authentication from `requirepass` (inline or file) and the admin operators.
fn resp_auth(cfg: &NodeConfig) -> Result<Auth, NodeError> {
    let pass = match (&cfg.requirepass, &cfg.requirepass_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                NodeError::Config(crate::config::ConfigError::Invalid {
                    field: "requirepass_file",
                    reason: format!("{}: {e}", path.display()),
                })
            })?;
            let text = text.trim_end_matches(['\r', '\n']).to_owned();
            if text.is_empty() {
                return Err(NodeError::Config(crate::config::ConfigError::Invalid {
                    field: "requirepass_file",
                    reason: format!("{} is empty", path.display()),
                }));
            }
            Some(text)
        }
        (None, None) => None,
    };
    let has_operators = cfg.credentials_file.is_some()
        || (cfg.admin_user.as_deref().is_some_and(|u| !u.is_empty())
            && cfg.admin_password.as_deref().is_some_and(|p| !p.is_empty()));
    let operators = if has_operators {
        Some(crate::admin::credentials(cfg)?)
    } else {
        None
    };
    Auth::new(pass.as_deref(), operators, cfg.keyviz_commands)
        .map_err(|e| NodeError::Admin(format!("start RESP AUTH workers: {e}")))
}

/// `HOTKEYS` of this node: cluster-wide through the admin fan-out when the node serves the
/// admin API, this node's own hot keys otherwise, unavailable with KeyViz off.
fn hotkeys(
    cfg: &NodeConfig,
    sampling: &Sampling,
    admin: Option<keyviz_admin::AdminState>,
    redactor: keyviz::hotkeys::KeyRedactor,
) -> Hotkeys {
    let source: Option<Arc<dyn HotKeysSource>> = match (sampling.sampler(), admin) {
        (None, _) => None,
        (Some(_), Some(state)) => Some(Arc::new(ClusterSource::new(state))),
        (Some(s), None) => Some(Arc::new(LocalSource::new(
            s.clone(),
            crate::admin::node_name(cfg.node_id),
        ))),
    };
    Hotkeys::new(source, redactor, cfg.step_ms)
}

/// Starts a node. Returns once every listener is bound and the Raft groups run (leaders may
/// still be electing: use [`Node::wait_ready`]).
///
/// # Errors
/// [`NodeError`] for bad configuration, storage, bind, Raft, sampler or admin problems.
pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
    cfg.validate()?;
    let secret = cluster_secret(&cfg)?;
    let store_err = |source| NodeError::Store {
        dir: cfg.data_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        store_err(StoreError::Corrupt {
            what: "data dir",
            detail: e.to_string(),
        })
    })?;
    let store = Store::open(&cfg.data_dir, cfg.fsync).map_err(store_err)?;
    // Apply-side write counting vs the flush's drain (see `counting`).
    let fence = Arc::new(CountFence::new(1..=cfg.groups));

    // One redactor for the sampler and `OBJECT FREQ` (clones share its seal-form cache), so
    // the asked key is looked up in exactly the form the capture keeps.
    // With KeyViz off nothing is captured (and a hashed mode needs no secret).
    let redactor = if cfg.keyviz_enabled {
        hot_key_redactor(&cfg, secret.as_deref())?
    } else {
        keyviz::hotkeys::KeyRedactor::off()
    };
    let sampling = if cfg.keyviz_enabled {
        let tiers = cfg.history_tiers()?;
        let sc = keyviz::SamplerConfig {
            step_ms: cfg.step_ms,
            retention_ms: tiers.first().map_or(cfg.retention_ms, |t| t.keep_ms),
            coarser_tiers: tiers.get(1..).unwrap_or_default().to_vec(),
            key_buckets_per_route: cfg.key_buckets_per_route,
            hot_keys: redactor.clone(),
            ..keyviz::SamplerConfig::default()
        };
        // History survives restarts: it is reloaded from, and appended to, the database.
        let history = Arc::new(crate::history::FjallHistory::new(
            store.clone(),
            cfg.step_ms,
        ));
        let sampler = keyviz::Sampler::with_store(sc, now_unix_ms() as i64, history.clone())
            .map_err(|e| NodeError::Sampler(e.to_string()))?;
        // Columns are persisted by the flush loop's persistence thread, not by the sampler.
        Sampling::persisted(Arc::new(sampler), history)
    } else {
        Sampling::disabled()
    };

    let catalog = match crate::raft::state_machine::load_catalog(&store).map_err(store_err)? {
        Some(c) => c,
        None => Catalog::from_layout(&cfg.layout()).map_err(|e| {
            crate::config::ConfigError::Invalid {
                field: "split_keys",
                reason: e.to_string(),
            }
        })?,
    };
    let catalog = Arc::new(SharedCatalog::new(catalog, sampling.clone()));
    let tls = load_tls(&cfg)?;
    let client_tls = match &tls {
        Some(t) if cfg.tls_ca.is_some() => Some(
            t.client_config()
                .map_err(|e| NodeError::Tls(e.to_string()))?,
        ),
        _ => None,
    };
    let client = PeerClient::new(
        secret.as_deref(),
        cfg.node_id,
        cfg.members().into_iter().map(|(id, a)| (id, a.raft)),
        &keyviz_admin::peer::TransportConfig {
            tls: client_tls.clone(),
            ..PeerClient::transport_config()
        },
    );

    let resp_auth = Arc::new(resp_auth(&cfg)?);
    let client_limits = client_limits(&cfg);

    // Bind everything before starting Raft so a bad address fails fast.
    let raft_listener = bind("raft", &cfg.raft_addr).await?;
    let resp_listener = bind("resp", &cfg.resp_addr).await?;
    let admin_listener = match &cfg.admin_addr {
        Some(a) => Some(bind("admin", a).await?),
        None => None,
    };
    let resp_tls_listener = match &cfg.resp_tls_addr {
        Some(a) => Some(bind("resp tls", a).await?),
        None => None,
    };
    let resp_tls_addr = match &resp_tls_listener {
        Some(l) => Some(local(
            l,
            "resp tls",
            cfg.resp_tls_addr.as_deref().unwrap_or_default(),
        )?),
        None => None,
    };
    let raft_addr = local(&raft_listener, "raft", &cfg.raft_addr)?;
    let resp_addr = local(&resp_listener, "resp", &cfg.resp_addr)?;
    let admin_addr = match &admin_listener {
        Some(l) => Some(local(
            l,
            "admin",
            cfg.admin_addr.as_deref().unwrap_or_default(),
        )?),
        None => None,
    };

    let groups = Arc::new(
        Groups::start(
            cfg.node_id,
            1..=cfg.groups,
            &store,
            catalog.clone(),
            client.clone(),
            cfg.timing(),
            sampling.clone(),
            fence.clone(),
        )
        .await?,
    );
    let members = cfg.members();
    let dispatcher = Arc::new(Dispatcher::new(
        cfg.node_id,
        groups.clone(),
        catalog,
        sampling.clone(),
        store,
        members.clone(),
        client,
        cfg.follower_reads,
    ));

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    use keyviz_admin::tls::{ClientAuth, Listener};
    let mtls_members = (tls.is_some() && cfg.tls_client_auth != ClientAuth::Off)
        .then(|| members.keys().copied().collect());
    let internal = crate::internal::router(
        dispatcher.clone(),
        secret.as_deref(),
        cfg.node_id,
        mtls_members,
    );
    tasks.push(tokio::spawn(crate::internal::serve(
        raft_listener,
        internal,
        crate::internal::HttpLimits::internal(),
        acceptor(tls.as_ref(), Listener::Internal)?,
        shutdown_rx.clone(),
    )));

    let mut admin_state = None;
    if let Some(listener) = admin_listener {
        let Some(secret) = &secret else {
            return Err(NodeError::Admin("admin_addr needs a cluster secret (cluster_secret, cluster_secret_file or KEYVIZ_CLUSTER_SECRET)".into()));
        };
        let addr = admin_addr.map(|a| a.to_string()).unwrap_or_default();
        let (app, state) = crate::admin::router(
            &cfg,
            secret,
            &sampling,
            dispatcher.clone(),
            &addr,
            client_tls.clone(),
        )?;
        admin_state = Some(state);
        tasks.push(tokio::spawn(crate::internal::serve(
            listener,
            app,
            crate::internal::HttpLimits::admin(),
            acceptor(tls.as_ref(), Listener::Admin)?,
            shutdown_rx.clone(),
        )));
    }

    let hotkeys = Arc::new(hotkeys(&cfg, &sampling, admin_state, redactor));
    let resp_tls = match resp_tls_listener {
        Some(l) => acceptor(tls.as_ref(), Listener::Resp)?.map(|a| (l, a)),
        None => None,
    };
    tasks.push(tokio::spawn(crate::resp::serve(
        resp_listener,
        resp_tls,
        dispatcher.clone(),
        client_limits,
        resp_auth,
        hotkeys,
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(flush_loop(
        sampling.clone(),
        fence,
        shutdown_rx.clone(),
    )));

    // The lowest id bootstraps the groups (a no-op on restart); every node then campaigns once
    // for the groups it prefers, so leaders spread over the cluster.
    let raft_members = members
        .iter()
        .map(|(id, p)| (*id, p.raft.clone()))
        .collect();
    let lowest = members.keys().next().copied() == Some(cfg.node_id);
    let preferred: Vec<u64> = {
        let ids: Vec<u64> = members.keys().copied().collect();
        (1..=cfg.groups)
            .filter(|g| ids[((g - 1) as usize) % ids.len()] == cfg.node_id)
            .collect()
    };
    let g2 = groups.clone();
    tasks.push(tokio::spawn(async move {
        if lowest && let Err(e) = g2.bootstrap(&raft_members).await {
            tracing::error!(error = %e, "bootstrap failed");
        }
        g2.wait_for_leaders(Duration::from_secs(30)).await;
        for g in preferred {
            if !g2.is_leader(g)
                && let Err(e) = g2.campaign(g, g2.node_id()).await
            {
                tracing::info!(group = g, error = %e, "start-up leadership transfer");
            }
        }
    }));

    Ok(Node {
        dispatcher,
        sampling,
        resp_addr,
        raft_addr,
        admin_addr,
        resp_tls_addr,
        tls,
        shutdown,
        tasks,
    })
}

/// Resolves once `rx` turns true (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Closes the sampler's step at every step boundary, and once more at shutdown.
///
/// Seal (under every group's count fence) and publish run here (no I/O; see
/// [`Sampling::close_step`]); the records and the watermarks they cover go to a dedicated
/// persistence thread, in order. At shutdown the last step is closed and the loop waits (off
/// the async workers) until the thread has written everything.
async fn flush_loop(
    sampling: Sampling,
    fence: Arc<CountFence>,
    mut shutdown: watch::Receiver<bool>,
) {
    let persister = match sampling.persister() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "keyviz: no history persistence thread; history stays in memory");
            None
        }
    };
    loop {
        let now = now_unix_ms() as i64;
        let Some(next) = sampling.next_flush_unix_ms(now) else {
            return;
        };
        let wait = Duration::from_millis((next - now).max(1) as u64);
        tokio::select! {
            _ = crate::node::stopped(&mut shutdown) => {
                sampling.close_step(now_unix_ms() as i64, &fence, persister.as_ref());
                if let Some(p) = persister
                    && tokio::task::spawn_blocking(move || p.finish()).await.is_err()
                {
                    tracing::error!("keyviz: final history persistence did not complete");
                }
                return;
            }
            _ = tokio::time::sleep(wait) => {
                sampling.close_step(now_unix_ms() as i64, &fence, persister.as_ref());
            }
        }
    }
}

impl Node {
    /// Bound Redis protocol address.
    pub fn resp_addr(&self) -> SocketAddr {
        self.resp_addr
    }

    /// Bound internal transport address.
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    /// Bound admin address, if serving.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Bound RESP TLS address, if serving one.
    pub fn resp_tls_addr(&self) -> Option<SocketAddr> {
        self.resp_tls_addr
    }

    /// Re-reads the TLS certificate and key (the CA is read only at start); every listener
    /// and the peer client use the new pair from their next handshake. `Ok(false)` when TLS
    /// is off. Blocks on two file reads.
    ///
    /// # Errors
    /// The file or key problem; the previous pair stays in use.
    pub fn reload_tls(&self) -> Result<bool, NodeError> {
        match &self.tls {
            Some(t) => t
                .reload()
                .map(|()| true)
                .map_err(|e| NodeError::Tls(e.to_string())),
            None => Ok(false),
        }
    }

    /// The dispatcher (for in-process callers such as the demo workload).
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// The sampling handle.
    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    /// Waits until every group has a known leader; returns false on timeout.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        self.dispatcher
            .groups()
            .wait_for_leaders(timeout)
            .await
            .is_empty()
    }

    /// Stops the servers, the Raft groups and the flush task (which flushes once more).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        self.dispatcher.groups().shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyviz::hotkeys::HotKeyMode;

    #[test]
    fn hashed_hot_keys_need_the_cluster_secret_and_use_it() {
        let cfg = NodeConfig {
            hot_keys: HotKeyMode::Hashed,
            ..NodeConfig::default()
        };
        let err = hot_key_redactor(&cfg, None)
            .expect_err("no secret")
            .to_string();
        assert!(err.contains("cluster secret"), "{err}");
        let secret = [7u8; 32];
        let r = hot_key_redactor(&cfg, Some(&secret)).expect("keyed");
        assert_eq!(r.mode(), HotKeyMode::Hashed);
        let mut a = Vec::new();
        r.apply(b"user:42", &mut a).expect("captured");
        assert!(a.starts_with(b"user:"), "the prefix up to ':' is kept");
        assert!(!a.ends_with(b"42"));
        let other = hot_key_redactor(&cfg, Some(&[8u8; 32])).expect("keyed");
        let mut b = Vec::new();
        other.apply(b"user:42", &mut b).expect("captured");
        assert_ne!(a, b, "the hash is keyed with the secret");
        let raw = hot_key_redactor(&NodeConfig::default(), None).expect("raw");
        assert_eq!(raw.mode(), HotKeyMode::Raw);
    }
}
