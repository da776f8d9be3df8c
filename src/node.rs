//! `keyviz node`: one store node. Configuration precedence: defaults < TOML file (`--config`)
//! < `KEYVIZ_*` environment < flags, resolved in [`Config::load`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use kvnode::config::{KeyvizCommands, NodeConfig, PeerConfig};

use crate::parse_duration;

/// Flags of `keyviz node`. Every flag also reads `KEYVIZ_<NAME>`; a flag beats the
/// environment, which beats the config file.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// TOML config file (keys as in docs/STORE.md).
    #[arg(long, env = "KEYVIZ_CONFIG")]
    config: Option<PathBuf>,
    /// Node id (> 0, stable across restarts).
    #[arg(long, env = "KEYVIZ_NODE_ID")]
    node_id: Option<u64>,
    /// Redis protocol listen address.
    #[arg(long, env = "KEYVIZ_RESP_ADDR")]
    resp_addr: Option<String>,
    /// Internal (Raft) listen address; peers must reach it.
    #[arg(long, env = "KEYVIZ_RAFT_ADDR")]
    raft_addr: Option<String>,
    /// Admin HTTP listen address (KeyViz UI and API).
    #[arg(long, env = "KEYVIZ_ADMIN_ADDR")]
    admin_addr: Option<String>,
    /// A cluster member: `ID=RAFT_ADDR/RESP_ADDR[/ADMIN_ADDR]`; repeat or comma-separate.
    #[arg(long = "peer", env = "KEYVIZ_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// Data directory.
    #[arg(long, env = "KEYVIZ_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Number of Raft groups (same on every node).
    #[arg(long, env = "KEYVIZ_GROUPS")]
    groups: Option<u64>,
    /// Initial route boundaries, comma-separated (same on every node).
    #[arg(long, env = "KEYVIZ_SPLIT_KEYS", value_delimiter = ',')]
    split_keys: Vec<String>,
    /// KeyViz step (column width): `2s`, `1m`, ...
    #[arg(long, env = "KEYVIZ_STEP", value_parser = parse_duration)]
    step: Option<Duration>,
    /// KeyViz history tiers, finest first: `STEP:KEEP[,STEP:KEEP...]`, e.g.
    /// `60s:24h,10m:7d,1h:30d` (the default for a 60 s step). The first STEP must equal
    /// `--step`; each further STEP is a larger multiple of the previous one and keeps longer.
    #[arg(long, env = "KEYVIZ_HISTORY_TIERS")]
    history_tiers: Option<String>,
    /// KeyViz sub-range buckets per route (1..=256).
    #[arg(long, env = "KEYVIZ_KEY_BUCKETS")]
    key_buckets: Option<u32>,
    /// Serve reads on followers from local state.
    #[arg(long, env = "KEYVIZ_FOLLOWER_READS", num_args = 0..=1, default_missing_value = "true")]
    follower_reads: Option<bool>,
    /// Turn KeyViz sampling off (to measure its overhead).
    #[arg(long, env = "KEYVIZ_DISABLED", num_args = 0..=1, default_missing_value = "true")]
    keyviz_disabled: Option<bool>,
    /// fsync the Raft log on every append.
    #[arg(long, env = "KEYVIZ_FSYNC", num_args = 0..=1, default_missing_value = "true")]
    fsync: Option<bool>,
    /// Operators file (TOML `[[operators]]`).
    #[arg(long, env = "KEYVIZ_CREDENTIALS_FILE")]
    credentials_file: Option<PathBuf>,
    /// Operator with the `full` role (alternative to a credentials file).
    #[arg(long, env = "KEYVIZ_ADMIN_USER")]
    admin_user: Option<String>,
    /// Secret of `--admin-user` (prefer the environment variable).
    #[arg(long, env = "KEYVIZ_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Cluster secret (>= 32 bytes; prefer the environment variable or a file).
    #[arg(long, env = "KEYVIZ_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    /// File holding the cluster secret.
    #[arg(long, env = "KEYVIZ_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Extra fan-out peers (admin addresses), comma-separated, on top of cluster membership.
    #[arg(
        long = "keyvizFanoutNodes",
        env = "KEYVIZ_FANOUT_NODES",
        value_delimiter = ','
    )]
    fanout_nodes: Vec<String>,
    /// Fan-out timeout per peer (`2s`).
    #[arg(long = "keyvizFanoutTimeout", env = "KEYVIZ_FANOUT_TIMEOUT", value_parser = parse_duration)]
    fanout_timeout: Option<Duration>,
    /// Raft heartbeat interval, also the AppendEntries deadline (`250ms`).
    #[arg(long, env = "KEYVIZ_HEARTBEAT", value_parser = parse_duration)]
    heartbeat: Option<Duration>,
    /// Raft election timeout lower bound (`1s`; the upper bound is twice this).
    #[arg(long, env = "KEYVIZ_ELECTION_TIMEOUT", value_parser = parse_duration)]
    election_timeout: Option<Duration>,
    /// Most RESP clients at once (Redis `maxclients`, default 10000; lowered at start to
    /// what the open-file limit allows).
    #[arg(long, env = "KEYVIZ_MAXCLIENTS")]
    maxclients: Option<u64>,
    /// Most bytes one RESP client may buffer (`64mb`; Redis `client-query-buffer-limit`).
    #[arg(long, env = "KEYVIZ_CLIENT_QUERY_BUFFER_LIMIT", value_parser = parse_size)]
    client_query_buffer_limit: Option<u64>,
    /// Most bytes all RESP clients together may buffer (`512mb`; like `maxmemory-clients`).
    #[arg(long, env = "KEYVIZ_MAXMEMORY_CLIENTS", value_parser = parse_size)]
    maxmemory_clients: Option<u64>,
    /// Deadline for completing a RESP request once its first byte arrived (`30s`; `0` = none).
    #[arg(long, env = "KEYVIZ_CLIENT_REQUEST_TIMEOUT", value_parser = parse_duration)]
    client_request_timeout: Option<Duration>,
    /// Close RESP clients idle this many seconds (Redis `timeout`; 0 = never, the default).
    #[arg(long = "timeout", env = "KEYVIZ_CLIENT_TIMEOUT")]
    client_timeout: Option<u64>,
    /// RESP password of the `default` user (Redis `requirepass`; prefer the environment
    /// variable or `--requirepass-file`).
    #[arg(long, env = "KEYVIZ_REQUIREPASS", hide_env_values = true)]
    requirepass: Option<String>,
    /// File holding the RESP password.
    #[arg(long, env = "KEYVIZ_REQUIREPASS_FILE")]
    requirepass_file: Option<PathBuf>,
    /// Who may run KEYVIZ.SPLIT / KEYVIZ.CAMPAIGN over RESP: `off`, `auth` (full role, the
    /// default) or `open`.
    #[arg(long, env = "KEYVIZ_KEYVIZ_COMMANDS")]
    keyviz_commands: Option<KeyvizCommands>,
    /// How hot-key names are captured: `raw` (the default), `hashed` (keyed hash with the
    /// cluster secret, plus the prefix up to `--hot-keys-separator`) or `off`.
    #[arg(long, env = "KEYVIZ_HOT_KEYS")]
    hot_keys: Option<keyviz::hotkeys::HotKeyMode>,
    /// The character ending the prefix `--hot-keys=hashed` keeps in clear (default `:`;
    /// empty = no prefix).
    #[arg(long, env = "KEYVIZ_HOT_KEYS_SEPARATOR")]
    hot_keys_separator: Option<String>,
    /// Bearer token `GET /metrics` requires (16+ visible ASCII characters; prefer the
    /// environment variable or `--metrics-token-file`). Without one `/metrics` is open.
    #[arg(long, env = "KEYVIZ_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// File holding the `/metrics` bearer token.
    #[arg(long, env = "KEYVIZ_METRICS_TOKEN_FILE")]
    metrics_token_file: Option<PathBuf>,
    /// RESP over TLS listen address (like Redis `tls-port`); needs --tls-cert/--tls-key.
    #[arg(long, env = "KEYVIZ_RESP_TLS_ADDR")]
    resp_tls_addr: Option<String>,
    /// PEM certificate chain: the admin and internal listeners serve TLS only, peers are
    /// called over HTTPS.
    #[arg(long, env = "KEYVIZ_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "KEYVIZ_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates peers' (and with mTLS clients') certificates must chain to.
    #[arg(long, env = "KEYVIZ_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Mutual TLS: off, peers (internal transport) or all (also admin and RESP TLS).
    #[arg(long, env = "KEYVIZ_TLS_CLIENT_AUTH")]
    tls_client_auth: Option<keyviz_admin::tls::ClientAuth>,
}

/// Parses a byte size the way Redis reads its config: `1024`, `1k` (1000), `1kb` (1024),
/// `64mb`, `1gb`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let bad = || format!("invalid size '{text}' (use 1048576, 64mb, 1gb)");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mul).ok_or_else(bad)
}

/// The layered configuration of one node.
pub(crate) struct Config;

impl Config {
    /// defaults < file < environment < flags (clap already resolved environment vs flags).
    pub(crate) fn load(args: &NodeArgs) -> anyhow::Result<NodeConfig> {
        let mut c = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                NodeConfig::from_toml(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => NodeConfig::default(),
        };
        fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *dst = v.clone();
            }
        }
        set(&mut c.node_id, &args.node_id);
        set(&mut c.resp_addr, &args.resp_addr);
        set(&mut c.raft_addr, &args.raft_addr);
        if args.admin_addr.is_some() {
            c.admin_addr = args.admin_addr.clone();
        }
        if !args.peers.is_empty() {
            c.peers = args
                .peers
                .iter()
                .map(|p| PeerConfig::parse(p))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?;
        }
        set(&mut c.data_dir, &args.data_dir);
        set(&mut c.groups, &args.groups);
        if !args.split_keys.is_empty() {
            c.split_keys = args.split_keys.clone();
        }
        if let Some(s) = args.step {
            c.step_ms = s.as_millis() as u64;
        }
        if args.history_tiers.is_some() {
            c.history_tiers = args.history_tiers.clone();
        }
        set(&mut c.key_buckets_per_route, &args.key_buckets);
        set(&mut c.follower_reads, &args.follower_reads);
        if let Some(off) = args.keyviz_disabled {
            c.keyviz_enabled = !off;
        }
        set(&mut c.fsync, &args.fsync);
        set(&mut c.hot_keys, &args.hot_keys);
        set(&mut c.hot_keys_separator, &args.hot_keys_separator);
        for (dst, v) in [
            (&mut c.credentials_file, &args.credentials_file),
            (&mut c.cluster_secret_file, &args.cluster_secret_file),
        ] {
            if v.is_some() {
                *dst = v.clone();
            }
        }
        for (dst, v) in [
            (&mut c.admin_user, &args.admin_user),
            (&mut c.admin_password, &args.admin_password),
            (&mut c.cluster_secret, &args.cluster_secret),
        ] {
            if v.is_some() {
                *dst = v.clone();
            }
        }
        if !args.fanout_nodes.is_empty() {
            c.fanout_nodes = args.fanout_nodes.clone();
        }
        if let Some(t) = args.fanout_timeout {
            c.fanout_timeout_ms = t.as_millis() as u64;
        }
        if let Some(t) = args.heartbeat {
            c.heartbeat_ms = t.as_millis() as u64;
        }
        if let Some(t) = args.election_timeout {
            c.election_timeout_ms = t.as_millis() as u64;
        }
        set(&mut c.maxclients, &args.maxclients);
        set(
            &mut c.client_query_buffer_limit,
            &args.client_query_buffer_limit,
        );
        set(&mut c.maxmemory_clients, &args.maxmemory_clients);
        if let Some(t) = args.client_request_timeout {
            c.client_request_timeout_ms = t.as_millis() as u64;
        }
        set(&mut c.client_timeout_s, &args.client_timeout);
        if args.requirepass.is_some() {
            c.requirepass = args.requirepass.clone();
            c.requirepass_file = None;
        }
        if args.requirepass_file.is_some() {
            c.requirepass_file = args.requirepass_file.clone();
            c.requirepass = None;
        }
        set(&mut c.keyviz_commands, &args.keyviz_commands);
        if args.metrics_token.is_some() {
            c.metrics_token = args.metrics_token.clone();
            c.metrics_token_file = None;
        }
        if args.metrics_token_file.is_some() {
            c.metrics_token_file = args.metrics_token_file.clone();
            c.metrics_token = None;
        }
        for (dst, v) in [
            (&mut c.tls_cert, &args.tls_cert),
            (&mut c.tls_key, &args.tls_key),
            (&mut c.tls_ca, &args.tls_ca),
        ] {
            if v.is_some() {
                *dst = v.clone();
            }
        }
        if args.resp_tls_addr.is_some() {
            c.resp_tls_addr = args.resp_tls_addr.clone();
        }
        set(&mut c.tls_client_auth, &args.tls_client_auth);
        c.validate().context("invalid node configuration")?;
        Ok(c)
    }
}

/// Listens for SIGTERM and SIGINT (Ctrl-C) from the moment it is called, and returns a future
/// that resolves at the first of them.
///
/// Registering here, not when the future is first polled, is the point: a signal delivered
/// between this call and the first `.await` is kept, so a SIGTERM that lands while the node
/// is still starting, or just as it turns ready, stops it cleanly instead of being lost (an
/// `async fn` registered only once polled, and the node used to build a second listener after
/// the first was dropped, so a SIGTERM in that gap left it running). Needs a tokio runtime.
pub(crate) fn termination() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (Ok(mut term), Err(_)) => {
                    let _ = term.recv().await;
                }
                (Err(_), Ok(mut int)) => {
                    let _ = int.recv().await;
                }
                (Err(_), Err(_)) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Re-reads the TLS certificate and key on every `SIGHUP` (docs/SECURITY.md, TLS); a bad
/// file is reported and the previous pair stays in use.
async fn reload_on_sighup(node: std::sync::Arc<kvnode::node::Node>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match node.reload_tls() {
                Ok(true) => println!("keyviz: TLS certificate reloaded"),
                Ok(false) => eprintln!("keyviz: SIGHUP ignored: TLS is off"),
                Err(e) => eprintln!("keyviz: TLS reload failed, keeping the old certificate: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = node;
        std::future::pending::<()>().await;
    }
}

pub(crate) async fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&args)?;
    let id = cfg.node_id;
    // Listening before the node starts: a SIGTERM during start-up stops it once started.
    let stop = termination();
    tokio::pin!(stop);
    let node = kvnode::node::start(cfg)
        .await
        .with_context(|| format!("starting node {id}"))?;
    let admin = node.admin_addr().map_or("-".to_string(), |a| a.to_string());
    let resp_tls = node
        .resp_tls_addr()
        .map_or(String::new(), |a| format!(" resp_tls={a}"));
    println!(
        "keyviz node {id} listening resp={} raft={} admin={admin}{resp_tls}",
        node.resp_addr(),
        node.raft_addr()
    );
    let node = std::sync::Arc::new(node);
    let reloader = tokio::spawn(reload_on_sighup(node.clone()));
    tokio::select! {
        ready = node.wait_ready(Duration::from_secs(60)) => {
            if ready {
                println!("keyviz node {id} ready");
            } else {
                eprintln!("keyviz node {id}: some raft groups have no leader yet (are the peers up?)");
            }
            (&mut stop).await;
        }
        _ = &mut stop => {}
    }
    reloader.abort();
    let _ = reloader.await;
    let Ok(node) = std::sync::Arc::try_unwrap(node) else {
        anyhow::bail!("node {id}: still in use at shutdown");
    };
    println!("keyviz node {id} shutting down");
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: NodeArgs,
    }

    fn load(argv: &[&str]) -> anyhow::Result<NodeConfig> {
        let w = Wrapper::try_parse_from(std::iter::once("node").chain(argv.iter().copied()))?;
        Config::load(&w.args)
    }

    #[tokio::test]
    async fn a_sigterm_sent_before_the_wait_begins_is_not_lost() {
        let stop = termination();
        // Delivered before the future is first polled, as when the node turns ready (or is
        // still starting) at the moment the signal arrives.
        let pid = std::process::id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}: {sent:?}");
        tokio::time::timeout(Duration::from_secs(10), stop)
            .await
            .expect("the SIGTERM sent before the wait began stops it");
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "node_id = 5\ngroups = 4\nstep_ms = 5000\n").expect("write config");
        let p = path.to_str().expect("utf-8 path");
        let c = load(&["--config", p, "--groups", "7", "--step", "2s"]).expect("load");
        assert_eq!(c.node_id, 5, "from the file");
        assert_eq!(c.groups, 7, "flag beats file");
        assert_eq!(c.step_ms, 2_000, "flag beats file");
        assert_eq!(c.resp_addr, NodeConfig::default().resp_addr, "default kept");
        let c = load(&["--config", p, "--keyviz-disabled", "--peer", "2=a:1/a:2"]).expect("load");
        assert!(!c.keyviz_enabled);
        assert_eq!(c.peers.len(), 1);
    }

    #[test]
    fn history_tiers_flag_reaches_the_config_and_bad_values_name_the_flag() {
        let c = load(&["--history-tiers", "60s:48h,10m:30d"]).expect("load");
        let tiers = c.history_tiers().expect("valid");
        assert_eq!(tiers.len(), 2);
        assert_eq!(tiers[0].keep_ms, 48 * 3_600_000);
        let err = load(&["--step", "2s", "--history-tiers", "60s:48h"])
            .expect_err("the first step must equal --step");
        let text = format!("{err:#}");
        assert!(
            text.contains("history_tiers") && text.contains("--step"),
            "{text}"
        );
        let err = load(&["--history-tiers", "60s:24h,90s:48h"]).expect_err("not a multiple");
        assert!(format!("{err:#}").contains("multiple"), "{err:#}");
    }

    #[test]
    fn bad_config_is_an_error_with_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "groups = 0\n").expect("write config");
        let err = load(&["--config", path.to_str().expect("utf-8 path")]).expect_err("invalid");
        assert!(format!("{err:#}").contains("groups"), "{err:#}");
        let err = load(&["--config", "/nonexistent/keyviz.toml"]).expect_err("missing file");
        assert!(
            format!("{err:#}").contains("reading config file"),
            "{err:#}"
        );
        assert!(load(&["--peer", "garbage"]).is_err());
    }

    #[test]
    fn client_limit_flags_parse_redis_sizes_and_reach_the_config() {
        let c = load(&[
            "--maxclients=50",
            "--client-query-buffer-limit=2mb",
            "--maxmemory-clients=1gb",
            "--client-request-timeout=2s",
            "--timeout=7",
            "--requirepass=pw",
            "--keyviz-commands=off",
        ])
        .expect("load");
        assert_eq!(c.maxclients, 50);
        assert_eq!(c.client_query_buffer_limit, 2 << 20);
        assert_eq!(c.maxmemory_clients, 1 << 30);
        assert_eq!(c.client_request_timeout_ms, 2_000);
        assert_eq!(c.client_timeout_s, 7);
        assert_eq!(c.requirepass.as_deref(), Some("pw"));
        assert_eq!(c.keyviz_commands, KeyvizCommands::Off);
        assert_eq!(parse_size("1k"), Ok(1_000));
        assert_eq!(parse_size("1KB"), Ok(1_024));
        assert!(parse_size("12xb").is_err());
        assert!(
            load(&["--client-query-buffer-limit=1kb"]).is_err(),
            "below 1 MiB"
        );
        assert!(load(&["--keyviz-commands=maybe"]).is_err());
    }
}
