//! Configuration of one node, as read from TOML (`keyviz node --config`), the environment and
//! flags. The binary layers them (defaults < file < `KEYVIZ_*` environment < flags); this module
//! owns the shape, the defaults and the validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::dispatch::PeerAddrs;
use crate::raft::RaftTiming;
use crate::routing::Layout;

/// One cluster member as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Node id (unique, > 0).
    pub id: u64,
    /// Internal transport address.
    pub raft_addr: String,
    /// Redis protocol address.
    pub resp_addr: String,
    /// Admin HTTP address, if the peer serves one.
    #[serde(default)]
    pub admin_addr: Option<String>,
}

impl PeerConfig {
    /// Parses `ID=RAFT_ADDR/RESP_ADDR[/ADMIN_ADDR]` (the `--peer` flag format).
    ///
    /// # Errors
    /// A message naming what is missing.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (id, rest) = spec
            .split_once('=')
            .ok_or_else(|| format!("peer '{spec}': expected ID=RAFT/RESP[/ADMIN]"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("peer '{spec}': id is not a number"))?;
        let mut parts = rest.split('/').map(str::trim);
        let raft_addr = parts
            .next()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("peer '{spec}': missing raft address"))?;
        let resp_addr = parts
            .next()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("peer '{spec}': missing resp address"))?;
        let admin_addr = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
        if parts.next().is_some() {
            return Err(format!("peer '{spec}': too many '/' parts"));
        }
        Ok(Self {
            id,
            raft_addr: raft_addr.into(),
            resp_addr: resp_addr.into(),
            admin_addr,
        })
    }
}

/// Everything one node needs. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's id (> 0, unique, stable across restarts).
    pub node_id: u64,
    /// Redis protocol listen address.
    pub resp_addr: String,
    /// Internal transport listen address (Raft RPCs, forwarding); peers must reach it.
    pub raft_addr: String,
    /// Admin HTTP listen address (KeyViz API and UI); `None` = no admin server.
    pub admin_addr: Option<String>,
    /// The other members (this node may be listed too; it is recognised by id).
    pub peers: Vec<PeerConfig>,
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// Number of Raft groups (ids `1..=groups`); must be the same on every node.
    pub groups: u64,
    /// Initial route boundaries (UTF-8 keys); empty = evenly over `'0'..'z'`. Same on every node.
    pub split_keys: Vec<String>,
    /// KeyViz step (column width) in ms.
    pub step_ms: u64,
    /// KeyViz sub-range buckets per route (1..=256).
    pub key_buckets_per_route: u32,
    /// KeyViz retention in ms (of the finest tier; the first KEEP of `history_tiers` wins).
    pub retention_ms: u64,
    /// KeyViz history tiers, `STEP:KEEP[,STEP:KEEP...]` finest first (durations such as
    /// `60s`, `10m`, `1h`, `7d`): the first STEP must equal `step_ms`, each further STEP a
    /// larger multiple of the previous one, each KEEP longer than the previous one. `None`
    /// derives the default, see [`NodeConfig::history_tiers`].
    pub history_tiers: Option<String>,
    /// Serve reads on followers from local state, after catching up to the leader's read
    /// index (linearizable; observed as follower reads), instead of forwarding them.
    pub follower_reads: bool,
    /// Sample traffic into KeyViz (off only to measure the overhead).
    pub keyviz_enabled: bool,
    /// fsync the Raft log on every append.
    pub fsync: bool,
    /// Operators file (TOML `[[operators]]`, see docs/ADMIN.md).
    pub credentials_file: Option<PathBuf>,
    /// Operator access key granted the `full` role (alternative to `credentials_file`).
    pub admin_user: Option<String>,
    /// Secret of `admin_user`.
    pub admin_password: Option<String>,
    /// Shared secret (>= 32 bytes) for sessions, peer tokens and the internal transport.
    pub cluster_secret: Option<String>,
    /// File holding the cluster secret (alternative to `cluster_secret`).
    pub cluster_secret_file: Option<PathBuf>,
    /// Extra fan-out peers' admin addresses (`--keyvizFanoutNodes`), on top of membership.
    pub fanout_nodes: Vec<String>,
    /// Fan-out timeout per peer, ms.
    pub fanout_timeout_ms: u64,
    /// Raft heartbeat, ms.
    pub heartbeat_ms: u64,
    /// Raft election timeout lower bound, ms (upper bound is twice this).
    pub election_timeout_ms: u64,
    /// Most RESP clients at once (Redis `maxclients`); capped at start to what the open-file
    /// limit allows after a reserve for Raft, admin and storage. Excess clients get
    /// `-ERR max number of clients reached`.
    pub maxclients: u64,
    /// Most bytes one RESP client may have buffered (Redis `client-query-buffer-limit`); also
    /// the largest bulk string accepted. A client past it is closed.
    pub client_query_buffer_limit: u64,
    /// Most bytes all RESP clients together may have buffered (like Redis
    /// `maxmemory-clients`); the client whose read would pass it is closed.
    pub maxmemory_clients: u64,
    /// A request whose first byte arrived this long ago and is still incomplete closes the
    /// connection, ms (0 = no deadline).
    pub client_request_timeout_ms: u64,
    /// Close a RESP client idle this long, seconds (Redis `timeout`; 0 = never).
    pub client_timeout_s: u64,
    /// RESP password of the `default` user (Redis `requirepass`); `None` = no password.
    pub requirepass: Option<String>,
    /// File holding the RESP password (alternative to `requirepass`).
    pub requirepass_file: Option<PathBuf>,
    /// Who may run `KEYVIZ.SPLIT` / `KEYVIZ.CAMPAIGN` over RESP.
    pub keyviz_commands: KeyvizCommands,
    /// How KeyViz captures hot-key names (`--hot-keys`): `raw` (the default: key names as
    /// written, as Redis `HOTKEYS` shows them), `hashed` (a keyed hash with the cluster
    /// secret plus the prefix up to `hot_keys_separator`; needs a cluster secret) or `off`.
    pub hot_keys: keyviz::hotkeys::HotKeyMode,
    /// The byte ending the prefix `hashed` mode keeps in clear (`--hot-keys-separator`):
    /// one ASCII character, default `:`; empty = keep no prefix.
    pub hot_keys_separator: String,
    /// Bearer token that `GET /metrics` on the admin listener requires (16+ visible ASCII
    /// characters); `None` with no `metrics_token_file` = `/metrics` is open.
    pub metrics_token: Option<String>,
    /// File holding the `/metrics` bearer token (alternative to `metrics_token`).
    pub metrics_token_file: Option<PathBuf>,
    /// RESP over TLS listen address (Redis `tls-port`), next to the plain `resp_addr`; needs
    /// `tls_cert`. `None` = no RESP TLS port.
    pub resp_tls_addr: Option<String>,
    /// PEM certificate chain (leaf first). With `tls_key`, the admin listener and the
    /// internal transport serve TLS only, and peers are called over HTTPS (docs/SECURITY.md).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates that peers' certificates (and, with mTLS, clients') must chain
    /// to; needed whenever TLS is on and there are peers or client authentication.
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS: `off`, `peers` (the internal transport requires a client certificate
    /// naming the calling node, `keyviz-node-<id>`) or `all` (the admin and RESP TLS ports
    /// require a client certificate too).
    pub tls_client_auth: keyviz_admin::tls::ClientAuth,
}

/// Who may run the `KEYVIZ.*` RESP commands (they split routes and move leaders).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyvizCommands {
    /// Refused on every connection.
    Off,
    /// Only connections authenticated with the full role: `AUTH <password>` (the `default`
    /// user of `requirepass`) or `AUTH <user> <password>` of an operator with role `full`.
    #[default]
    Auth,
    /// Any connection that may run commands at all.
    Open,
}

impl std::str::FromStr for KeyvizCommands {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "auth" => Ok(Self::Auth),
            "open" => Ok(Self::Open),
            other => Err(format!("'{other}': expected off, auth or open")),
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            resp_addr: "127.0.0.1:6379".into(),
            raft_addr: "127.0.0.1:7379".into(),
            admin_addr: None,
            peers: Vec::new(),
            data_dir: PathBuf::from("kvnode-data"),
            groups: 3,
            split_keys: Vec::new(),
            step_ms: 60_000,
            key_buckets_per_route: 8,
            retention_ms: 24 * 3_600_000,
            history_tiers: None,
            follower_reads: false,
            keyviz_enabled: true,
            fsync: true,
            credentials_file: None,
            admin_user: None,
            admin_password: None,
            cluster_secret: None,
            cluster_secret_file: None,
            fanout_nodes: Vec::new(),
            fanout_timeout_ms: 2_000,
            heartbeat_ms: 250,
            election_timeout_ms: 1_000,
            maxclients: 10_000,
            client_query_buffer_limit: 64 << 20,
            maxmemory_clients: 512 << 20,
            client_request_timeout_ms: 30_000,
            client_timeout_s: 0,
            requirepass: None,
            requirepass_file: None,
            keyviz_commands: KeyvizCommands::Auth,
            hot_keys: keyviz::hotkeys::HotKeyMode::Raw,
            hot_keys_separator: ":".into(),
            metrics_token: None,
            metrics_token_file: None,
            resp_tls_addr: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            tls_client_auth: keyviz_admin::tls::ClientAuth::Off,
        }
    }
}

/// Whether `addr` (`host:port`) listens on loopback only: a loopback IP or `localhost`. An
/// unspecified address (`0.0.0.0`, `[::]`) or any other host name is reachable from outside.
fn is_loopback_only(addr: &str) -> bool {
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return sa.ip().is_loopback();
    }
    addr.rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has an invalid value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// TOML key.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Coarser tiers added after `step_ms:retention_ms` when `history_tiers` is not set, each kept
/// only if its step is a larger multiple of the previous tier's and it keeps longer: 10 min for
/// 7 days, then 1 h for 30 days (see docs/PERFORMANCE.md, "Tiered history", for the memory and
/// disk this costs at 10 000 routes).
pub const DEFAULT_COARSER_TIERS: [(u64, u64); 2] =
    [(600_000, 7 * 86_400_000), (3_600_000, 30 * 86_400_000)];

/// Parses a duration of `history_tiers`: digits then `ms`, `s`, `m`, `h` or `d`.
fn tier_duration(text: &str) -> Option<u64> {
    let t = text.trim();
    let i = t.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = t.split_at(i);
    let n: u64 = num.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

/// `ms` as the shortest exact duration text (`90s`, `10m`, `7d`).
pub fn format_tier_duration(ms: u64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

impl NodeConfig {
    /// The KeyViz history tiers, finest first, as `(step_ms, keep_ms)`.
    ///
    /// With `history_tiers` set: parsed and checked (the first STEP equals `step_ms`; the
    /// sampler's rules for coarser tiers, [`keyviz::SamplerConfig::coarser_tiers`]). Without:
    /// `step_ms:retention_ms`, then every [`DEFAULT_COARSER_TIERS`] entry that fits after the
    /// previous tier (for the default 60 s step: `60s:24h,10m:7d,1h:30d`; for `--step 2s`:
    /// `2s:24h,10m:7d,1h:30d`; for a step that divides neither 10 min nor 1 h, one tier).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for `history_tiers`, saying which entry and why.
    pub fn history_tiers(&self) -> Result<Vec<keyviz::HistoryTier>, ConfigError> {
        let field = "history_tiers";
        let tiers: Vec<keyviz::HistoryTier> = match &self.history_tiers {
            None => {
                let mut tiers = vec![keyviz::HistoryTier {
                    step_ms: self.step_ms,
                    keep_ms: self.retention_ms,
                }];
                for (step_ms, keep_ms) in DEFAULT_COARSER_TIERS {
                    let Some(prev) = tiers.last().copied() else {
                        break;
                    };
                    if step_ms > prev.step_ms
                        && step_ms.is_multiple_of(prev.step_ms)
                        && keep_ms > prev.keep_ms
                    {
                        tiers.push(keyviz::HistoryTier { step_ms, keep_ms });
                    }
                }
                tiers
            }
            Some(text) => {
                if text.trim().is_empty() {
                    return Err(invalid(
                        field,
                        "is empty; use STEP:KEEP[,STEP:KEEP...], e.g. 60s:24h,10m:7d",
                    ));
                }
                let mut tiers = Vec::new();
                for (i, entry) in text.split(',').enumerate() {
                    let parsed = entry.split_once(':').and_then(|(step, keep)| {
                        Some(keyviz::HistoryTier {
                            step_ms: tier_duration(step)?,
                            keep_ms: tier_duration(keep)?,
                        })
                    });
                    let Some(tier) = parsed else {
                        return Err(invalid(
                            field,
                            format!(
                                "entry {} '{}' is not STEP:KEEP with durations such as 60s, 10m, 1h, 7d",
                                i + 1,
                                entry.trim()
                            ),
                        ));
                    };
                    tiers.push(tier);
                }
                tiers
            }
        };
        let Some(first) = tiers.first().copied() else {
            return Err(invalid(field, "names no tier"));
        };
        if first.step_ms != self.step_ms {
            return Err(invalid(
                field,
                format!(
                    "the first tier's step ({}) must equal the KeyViz step (--step / step_ms = {})",
                    format_tier_duration(first.step_ms),
                    format_tier_duration(self.step_ms)
                ),
            ));
        }
        let check = keyviz::SamplerConfig {
            step_ms: first.step_ms,
            retention_ms: first.keep_ms,
            coarser_tiers: tiers[1..].to_vec(),
            ..keyviz::SamplerConfig::default()
        };
        check
            .validate()
            .map_err(|e| invalid(field, e.to_string()))?;
        Ok(tiers)
    }

    /// Parses TOML text (unknown keys are errors).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with the parser's message.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| invalid("config file", e.to_string()))
    }

    /// The separator byte of `hashed` hot keys (`None` when `hot_keys_separator` is empty).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when it is not a single ASCII character.
    pub fn hot_keys_separator_byte(&self) -> Result<Option<u8>, ConfigError> {
        match self.hot_keys_separator.as_bytes() {
            [] => Ok(None),
            [b] if b.is_ascii() => Ok(Some(*b)),
            _ => Err(invalid(
                "hot_keys_separator",
                format!(
                    "'{}': must be one ASCII character (or empty for no kept prefix)",
                    self.hot_keys_separator
                ),
            )),
        }
    }

    /// Checks values that cannot work (ids, counts, step, duplicate peers).
    ///
    /// # Errors
    /// The first [`ConfigError::Invalid`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be > 0"));
        }
        if self.groups == 0 || self.groups > 1024 {
            return Err(invalid("groups", "must be 1..=1024"));
        }
        if !(1_000..=3_600_000).contains(&self.step_ms) {
            return Err(invalid("step_ms", "must be 1000..=3600000"));
        }
        if !(1..=256).contains(&self.key_buckets_per_route) {
            return Err(invalid("key_buckets_per_route", "must be 1..=256"));
        }
        self.history_tiers()?;
        if self.heartbeat_ms == 0 || self.election_timeout_ms <= self.heartbeat_ms {
            return Err(invalid(
                "election_timeout_ms",
                "must be greater than heartbeat_ms (> 0)",
            ));
        }
        if self.maxclients == 0 {
            return Err(invalid("maxclients", "must be > 0"));
        }
        // Below 1 MiB even a largest key with its command would not fit.
        if self.client_query_buffer_limit < 1 << 20 {
            return Err(invalid(
                "client_query_buffer_limit",
                "must be at least 1 MiB (1048576 bytes)",
            ));
        }
        if self.maxmemory_clients < self.client_query_buffer_limit {
            return Err(invalid(
                "maxmemory_clients",
                "must be at least client_query_buffer_limit",
            ));
        }
        if self.requirepass.is_some() && self.requirepass_file.is_some() {
            return Err(invalid(
                "requirepass",
                "set requirepass or requirepass_file, not both",
            ));
        }
        if self.requirepass.as_deref() == Some("") {
            return Err(invalid("requirepass", "must not be empty"));
        }
        self.hot_keys_separator_byte()?;
        if self.metrics_token.is_some() && self.metrics_token_file.is_some() {
            return Err(invalid(
                "metrics_token",
                "set metrics_token or metrics_token_file, not both",
            ));
        }
        if let Some(t) = &self.metrics_token
            && let Err(e) = keyviz_admin::MetricsToken::new(t)
        {
            return Err(invalid("metrics_token", e.to_string()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.peers {
            if p.id == 0 || !seen.insert(p.id) {
                return Err(invalid(
                    "peers",
                    format!("peer id {} is zero or listed twice", p.id),
                ));
            }
        }
        crate::routing::Catalog::from_layout(&self.layout())
            .map_err(|e| invalid("split_keys", e.to_string()))?;
        self.validate_cluster_secret()?;
        self.validate_tls()?;
        Ok(())
    }

    /// Whether TLS is configured (`tls_cert` and `tls_key`).
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// TLS settings that cannot work: half a key pair, a TLS port or mTLS without TLS, a
    /// cluster without a CA to verify its peers with.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid(
                "tls_cert",
                "set both tls_cert and tls_key, or neither",
            ));
        }
        let on = self.tls_enabled();
        if !on && self.resp_tls_addr.is_some() {
            return Err(invalid("resp_tls_addr", "needs tls_cert and tls_key"));
        }
        if !on && self.tls_client_auth != keyviz_admin::tls::ClientAuth::Off {
            return Err(invalid("tls_client_auth", "needs tls_cert and tls_key"));
        }
        let has_peers = self.peers.iter().any(|p| p.id != self.node_id);
        if on && self.tls_ca.is_none() && (has_peers || !self.fanout_nodes.is_empty()) {
            return Err(invalid(
                "tls_ca",
                "a TLS node with peers needs tls_ca (the CA their certificates chain to)",
            ));
        }
        Ok(())
    }

    /// The internal port accepts Raft RPCs and writes, so anyone who can reach it can change
    /// the data: it needs a cluster secret unless it listens on loopback only.
    fn validate_cluster_secret(&self) -> Result<(), ConfigError> {
        if let Some(s) = &self.cluster_secret
            && s.trim().len() < 32
        {
            return Err(invalid("cluster_secret", "must be at least 32 bytes"));
        }
        let has_secret = self.cluster_secret.is_some() || self.cluster_secret_file.is_some();
        if !has_secret && !is_loopback_only(&self.raft_addr) {
            return Err(invalid(
                "cluster_secret",
                format!(
                    "raft_addr {} is reachable from other hosts: set cluster_secret, cluster_secret_file or KEYVIZ_CLUSTER_SECRET (>= 32 bytes, the same on every node), or listen on 127.0.0.1",
                    self.raft_addr
                ),
            ));
        }
        Ok(())
    }

    /// The initial route layout.
    pub fn layout(&self) -> Layout {
        if self.split_keys.is_empty() {
            Layout::even(self.groups)
        } else {
            Layout {
                groups: self.groups,
                split_keys: self
                    .split_keys
                    .iter()
                    .map(|k| k.as_bytes().to_vec())
                    .collect(),
            }
        }
    }

    /// Raft timing derived from the config.
    pub fn timing(&self) -> RaftTiming {
        RaftTiming {
            heartbeat_ms: self.heartbeat_ms,
            election_min_ms: self.election_timeout_ms,
            election_max_ms: self.election_timeout_ms * 2,
            ..RaftTiming::default()
        }
    }

    /// All members (peers plus this node) by id.
    pub fn members(&self) -> BTreeMap<u64, PeerAddrs> {
        let mut m: BTreeMap<u64, PeerAddrs> = self
            .peers
            .iter()
            .map(|p| {
                (
                    p.id,
                    PeerAddrs {
                        raft: p.raft_addr.clone(),
                        resp: p.resp_addr.clone(),
                        admin: p.admin_addr.clone(),
                    },
                )
            })
            .collect();
        m.insert(
            self.node_id,
            PeerAddrs {
                raft: self.raft_addr.clone(),
                resp: self.resp_addr.clone(),
                admin: self.admin_addr.clone(),
            },
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers_of(step_ms: u64, spec: Option<&str>) -> Result<Vec<(u64, u64)>, String> {
        NodeConfig {
            step_ms,
            history_tiers: spec.map(str::to_owned),
            ..NodeConfig::default()
        }
        .history_tiers()
        .map(|t| t.iter().map(|t| (t.step_ms, t.keep_ms)).collect())
        .map_err(|e| e.to_string())
    }

    #[test]
    fn history_tiers_parse_derive_a_default_and_refuse_bad_values_clearly() {
        const M: u64 = 60_000;
        const H: u64 = 3_600_000;
        const D: u64 = 86_400_000;
        assert_eq!(
            tiers_of(M, None),
            Ok(vec![(M, 24 * H), (10 * M, 7 * D), (H, 30 * D)]),
            "the default for a 60 s step"
        );
        assert_eq!(
            tiers_of(2_000, None),
            Ok(vec![(2_000, 24 * H), (10 * M, 7 * D), (H, 30 * D)]),
            "the demo's 2 s step gets the same coarser tiers"
        );
        assert_eq!(tiers_of(7_000, None), Ok(vec![(7_000, 24 * H)]));
        assert_eq!(
            tiers_of(M, Some("60s:48h, 10m:30d")),
            Ok(vec![(M, 48 * H), (10 * M, 30 * D)])
        );
        let cases = [
            (Some("2s:1h"), "must equal the KeyViz step"),
            (Some("60s:24h,90s:48h"), "multiple"),
            (Some("60s:24h,10m:12h"), "longer"),
            (Some("60s:24h,10m"), "entry 2 '10m' is not STEP:KEEP"),
            (Some("60s:24h,10x:7d"), "entry 2"),
            (Some(""), "is empty"),
            (Some("60s:24h,2d:800d"), "at most 1 day"),
        ];
        for (spec, needle) in cases {
            let err = tiers_of(M, spec).expect_err("refused");
            assert!(
                err.contains("history_tiers") && err.contains(needle),
                "{spec:?}: {err}"
            );
        }
        let c = NodeConfig::from_toml("history_tiers = \"60s:1h,1h:2d\"\n").expect("parses");
        assert_eq!(c.history_tiers().map(|t| t.len()), Ok(2));
        let bad = NodeConfig::from_toml("history_tiers = \"60s:1h,1h:30m\"\n").expect("parses");
        assert!(bad.validate().is_err(), "validate checks the tiers");
        assert_eq!(format_tier_duration(90_000), "90s");
        assert_eq!(format_tier_duration(7 * D), "7d");
    }

    #[test]
    fn hot_keys_mode_and_separator_parse_and_bad_separators_are_refused() {
        let c = NodeConfig::from_toml("hot_keys = \"hashed\"\nhot_keys_separator = \"/\"\n")
            .expect("parses");
        assert_eq!(c.hot_keys, keyviz::hotkeys::HotKeyMode::Hashed);
        assert_eq!(c.hot_keys_separator_byte(), Ok(Some(b'/')));
        let d = NodeConfig::default();
        assert_eq!(
            d.hot_keys,
            keyviz::hotkeys::HotKeyMode::Raw,
            "raw is the default"
        );
        assert_eq!(d.hot_keys_separator_byte(), Ok(Some(b':')));
        let none = NodeConfig {
            hot_keys_separator: String::new(),
            ..NodeConfig::default()
        };
        assert_eq!(none.hot_keys_separator_byte(), Ok(None));
        for bad in ["::", "é"] {
            let c = NodeConfig {
                hot_keys_separator: bad.into(),
                ..NodeConfig::default()
            };
            let err = c.validate().expect_err("refused").to_string();
            assert!(err.contains("hot_keys_separator"), "{err}");
        }
        let err = NodeConfig::from_toml("hot_keys = \"plain\"\n").expect_err("unknown mode");
        assert!(err.to_string().contains("hot_keys"), "{err}");
    }

    #[test]
    fn peer_spec_parses_and_rejects_garbage() {
        let p = PeerConfig::parse("2=127.0.0.1:7002/127.0.0.1:6380/127.0.0.1:8082").expect("peer");
        assert_eq!(p.id, 2);
        assert_eq!(p.admin_addr.as_deref(), Some("127.0.0.1:8082"));
        assert!(PeerConfig::parse("2=127.0.0.1:7002").is_err());
        assert!(PeerConfig::parse("x=a/b").is_err());
        assert!(PeerConfig::parse("nope").is_err());
    }

    #[test]
    fn toml_round_trip_and_unknown_keys_rejected() {
        let text = "node_id = 2\ngroups = 4\n[[peers]]\nid = 1\nraft_addr = \"a:1\"\nresp_addr = \"a:2\"\n";
        let c = NodeConfig::from_toml(text).expect("toml");
        assert_eq!((c.node_id, c.groups, c.peers.len()), (2, 4, 1));
        assert_eq!(c.step_ms, NodeConfig::default().step_ms);
        assert!(NodeConfig::from_toml("bogus = 1").is_err());
    }

    #[test]
    fn metrics_token_is_checked_and_exclusive_with_its_file() {
        let ok = NodeConfig {
            metrics_token: Some("a-metrics-token-0123456789".into()),
            ..NodeConfig::default()
        };
        assert!(ok.validate().is_ok());
        let short = NodeConfig {
            metrics_token: Some("short".into()),
            ..NodeConfig::default()
        };
        let err = short.validate().expect_err("short token accepted");
        assert!(err.to_string().contains("metrics_token"), "{err}");
        let both = NodeConfig {
            metrics_token_file: Some("/etc/keyviz/metrics-token".into()),
            ..ok
        };
        let err = both.validate().expect_err("token and file accepted");
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn a_non_loopback_raft_addr_needs_a_cluster_secret() {
        let ok = NodeConfig::default();
        assert!(is_loopback_only(&ok.raft_addr), "{}", ok.raft_addr);
        assert!(is_loopback_only("[::1]:7000") && is_loopback_only("localhost:7000"));
        assert!(!is_loopback_only("0.0.0.0:7000") && !is_loopback_only("node2.lan:7000"));
        let open = NodeConfig {
            raft_addr: "0.0.0.0:7380".into(),
            ..ok.clone()
        };
        let err = open.validate().expect_err("no secret on 0.0.0.0");
        assert!(err.to_string().contains("cluster_secret"), "{err}");
        let secret = "s".repeat(32);
        let with_secret = NodeConfig {
            cluster_secret: Some(secret),
            ..open.clone()
        };
        assert_eq!(with_secret.validate(), Ok(()));
        let with_file = NodeConfig {
            cluster_secret_file: Some("/etc/keyviz/secret".into()),
            ..open
        };
        assert_eq!(with_file.validate(), Ok(()));
        let short = NodeConfig {
            cluster_secret: Some("short".into()),
            ..ok
        };
        assert!(short.validate().is_err());
    }

    #[test]
    fn validation_catches_bad_values() {
        let ok = NodeConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        assert!(
            NodeConfig {
                node_id: 0,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            NodeConfig {
                step_ms: 10,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            NodeConfig {
                split_keys: vec!["b".into(), "a".into()],
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        let dup = PeerConfig {
            id: 2,
            raft_addr: "a".into(),
            resp_addr: "b".into(),
            admin_addr: None,
        };
        assert!(
            NodeConfig {
                peers: vec![dup.clone(), dup],
                ..ok
            }
            .validate()
            .is_err()
        );
    }
}
