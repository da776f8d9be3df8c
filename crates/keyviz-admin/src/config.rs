//! Tunables of the admin surface with their defaults, and parsing of the
//! `--keyvizFanoutNodes` list.

use std::net::IpAddr;
use std::time::Duration;

/// Default per-call fan-out deadline (`--keyvizFanoutTimeout`).
pub const DEFAULT_FANOUT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default cap on one peer's response body, enforced while streaming.
pub const DEFAULT_FANOUT_BODY_CAP: usize = 64 * 1024 * 1024;
/// Rows a peer is asked for: peers answer their local view with at most this many rows (the
/// caller's row budget is applied only to the cluster-wide merge).
pub const DEFAULT_PEER_ROW_CAP: usize = 16_384;
/// Default bound on the bytes of peer bodies held at once by all fan-outs of a node.
pub const DEFAULT_FANOUT_BYTES_IN_FLIGHT: usize = 96 * 1024 * 1024;
/// Default number of fan-outs running at once.
pub const DEFAULT_MAX_CONCURRENT_FANOUTS: usize = 128;
/// The largest row budget a browser may ask for; larger, zero or negative values become this.
pub const MAX_BROWSER_ROWS: usize = 1024;

/// Errors found while validating an [`AdminConfig`] or a fan-out node list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A size or count that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroSize(&'static str),
    /// Fan-out results may be reused for at most one second.
    #[error("result reuse must be at most 1 s, got {0:?}")]
    ResultReuse(Duration),
    /// Peer tokens may live at most 30 s.
    #[error("peer token lifetime must be between 1 and 30 seconds, got {0:?}")]
    PeerTokenTtl(Duration),
    /// A trusted-proxy entry is neither an IP address nor a CIDR block.
    #[error("invalid trusted proxy {0:?}: expected an IP address or CIDR block")]
    TrustedProxy(String),
    /// The cluster secret is too short to sign tokens safely.
    #[error("cluster secret must be at least {min} bytes, got {got}")]
    SecretTooShort {
        /// Minimum accepted length in bytes.
        min: usize,
        /// Length that was supplied.
        got: usize,
    },
    /// The node id is empty.
    #[error("node id must not be empty")]
    EmptyNodeId,
    /// The `/metrics` bearer token is too short or not a valid header value.
    #[error("metrics token must be {min} to 4096 visible ASCII characters without spaces")]
    MetricsToken {
        /// Minimum accepted length.
        min: usize,
    },
    /// The OS refused a resource while building the state (random source, a thread).
    #[error("OS resource unavailable: {0}")]
    Resources(String),
}

/// Shortest `/metrics` bearer token accepted.
pub const MIN_METRICS_TOKEN_LEN: usize = 16;

/// The bearer token that protects `GET /metrics`. Its `Debug` output is redacted and its
/// comparison is constant-time, so it can sit in a config struct that gets logged.
#[derive(Clone)]
pub struct MetricsToken(String);

impl MetricsToken {
    /// Checks and wraps a token: [`MIN_METRICS_TOKEN_LEN`] to 4096 visible ASCII characters
    /// (what fits in an `Authorization: Bearer` header). Surrounding whitespace (a file's
    /// trailing newline) is trimmed first.
    ///
    /// # Errors
    /// [`ConfigError::MetricsToken`] for a short, long or non-printable token.
    pub fn new(token: &str) -> Result<Self, ConfigError> {
        let t = token.trim();
        if t.len() < MIN_METRICS_TOKEN_LEN
            || t.len() > 4096
            || !t.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::MetricsToken {
                min: MIN_METRICS_TOKEN_LEN,
            });
        }
        Ok(MetricsToken(t.to_string()))
    }

    /// Whether `presented` is the token. Compares SHA-256 digests in constant time, so
    /// neither the content nor the length leaks through timing.
    #[must_use]
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let want = Sha256::digest(self.0.as_bytes());
        let got = Sha256::digest(presented.as_bytes());
        bool::from(want.ct_eq(&got))
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(<redacted>)")
    }
}

impl PartialEq for MetricsToken {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

/// Settings of the admin surface. `Default` gives the documented defaults; validate with
/// [`AdminConfig::validate`] (done by [`crate::AdminState::builder`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Static fan-out peers (`--keyvizFanoutNodes`): `host:port` or `http://host:port`,
    /// self may be included. Combined with the host's membership without duplicates.
    pub fanout_nodes: Vec<String>,
    /// Deadline of one peer call, connect to last body byte (default 2 s).
    pub fanout_timeout: Duration,
    /// Cap on one peer response body in bytes (default 64 MiB), checked while streaming.
    pub fanout_body_cap: usize,
    /// Rows a peer answers with at most (default 16 384).
    pub peer_row_cap: usize,
    /// Fan-outs running at once (default 128); more wait for a slot. Memory is bounded by
    /// `fanout_bytes_in_flight`, not by this: a slot is cheap, so a peer that never answers
    /// delays each fan-out by at most its deadline instead of queueing the others behind it.
    pub max_concurrent_fanouts: usize,
    /// Bytes of peer bodies buffered at once by all fan-outs of this node together
    /// (default 96 MiB), enforced while streaming: a call waits for budget (within its
    /// deadline) when it is spent, and a body larger than the whole budget is refused like
    /// one over `fanout_body_cap`.
    pub fanout_bytes_in_flight: usize,
    /// How long a finished fan-out result is reused for identical requests (default 1 s,
    /// at most 1 s; zero disables reuse but keeps single-flight).
    pub result_reuse: Duration,
    /// How old a signed peer request may be when it arrives (default 10 s, at most 30 s),
    /// on top of `clock_skew`; its nonce is remembered that long to refuse replays.
    pub peer_token_ttl: Duration,
    /// Lifetime of an operator session (default 1 h); also the cookies' Max-Age.
    pub session_ttl: Duration,
    /// Accepted clock skew for a token's `iat` in the future (default 30 s).
    pub clock_skew: Duration,
    /// Mark cookies `Secure`; set it when the admin listener is served over TLS
    /// (default false: the node serves plain HTTP on loopback by default).
    pub secure_cookies: bool,
    /// Login attempts allowed per client IP per window (default 5).
    pub login_rate_limit: u32,
    /// Login rate-limit window (default 60 s); also the `Retry-After` value.
    pub login_rate_window: Duration,
    /// Distinct client IPs tracked by the login limiter (default 1024); when full, expired
    /// entries are swept and then the oldest entry is evicted, so a new IP is never refused
    /// just because the table is full.
    pub login_rate_max_clients: usize,
    /// Credential checks (argon2) running at once; 0 (the default) means the number of
    /// cores, at most [`crate::auth::MAX_DEFAULT_LOGIN_WORKERS`]. Peak memory of logins is
    /// about this many times the argon2 memory cost of the stored hashes.
    pub login_workers: usize,
    /// Logins that may wait for a free worker (default 16); any more get 503 `login_busy`
    /// with `Retry-After: 1` at once.
    pub login_queue: usize,
    /// When set, `GET /metrics` needs `Authorization: Bearer <token>` (401 otherwise);
    /// when `None` (the default) `/metrics` is open, as before.
    pub metrics_token: Option<MetricsToken>,
    /// Proxies whose `X-Forwarded-For` is believed when finding a client IP (default none).
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            fanout_nodes: Vec::new(),
            fanout_timeout: DEFAULT_FANOUT_TIMEOUT,
            fanout_body_cap: DEFAULT_FANOUT_BODY_CAP,
            peer_row_cap: DEFAULT_PEER_ROW_CAP,
            max_concurrent_fanouts: DEFAULT_MAX_CONCURRENT_FANOUTS,
            fanout_bytes_in_flight: DEFAULT_FANOUT_BYTES_IN_FLIGHT,
            result_reuse: Duration::from_secs(1),
            peer_token_ttl: Duration::from_secs(10),
            session_ttl: Duration::from_secs(3600),
            clock_skew: Duration::from_secs(30),
            secure_cookies: false,
            login_rate_limit: 5,
            login_rate_window: Duration::from_secs(60),
            login_rate_max_clients: 1024,
            login_workers: 0,
            login_queue: 16,
            metrics_token: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl AdminConfig {
    /// Checks every field; the first problem is returned.
    ///
    /// # Errors
    /// [`ConfigError`] naming the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.fanout_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("fanout_timeout"));
        }
        if self.session_ttl.is_zero() {
            return Err(ConfigError::ZeroDuration("session_ttl"));
        }
        if self.login_rate_window.is_zero() {
            return Err(ConfigError::ZeroDuration("login_rate_window"));
        }
        if self.fanout_body_cap == 0 {
            return Err(ConfigError::ZeroSize("fanout_body_cap"));
        }
        if self.peer_row_cap == 0 {
            return Err(ConfigError::ZeroSize("peer_row_cap"));
        }
        if self.max_concurrent_fanouts == 0 {
            return Err(ConfigError::ZeroSize("max_concurrent_fanouts"));
        }
        if self.fanout_bytes_in_flight == 0 {
            return Err(ConfigError::ZeroSize("fanout_bytes_in_flight"));
        }
        if self.login_rate_limit == 0 {
            return Err(ConfigError::ZeroSize("login_rate_limit"));
        }
        if self.login_rate_max_clients == 0 {
            return Err(ConfigError::ZeroSize("login_rate_max_clients"));
        }
        if self.result_reuse > Duration::from_secs(1) {
            return Err(ConfigError::ResultReuse(self.result_reuse));
        }
        if self.peer_token_ttl.is_zero() || self.peer_token_ttl > Duration::from_secs(30) {
            return Err(ConfigError::PeerTokenTtl(self.peer_token_ttl));
        }
        Ok(())
    }
}

/// Splits a `--keyvizFanoutNodes` value: comma separated, entries trimmed, empty entries
/// dropped, order kept, exact duplicates removed.
#[must_use = "the parsed list is the only output"]
pub fn parse_fanout_nodes(csv: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for entry in csv.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if !out.iter().any(|e| e == entry) {
            out.push(entry.to_string());
        }
    }
    out
}

/// An IP network (address plus prefix length), used for the trusted-proxy list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128 network).
    ///
    /// # Errors
    /// [`ConfigError::TrustedProxy`] when the text is not an address or the prefix is too long.
    pub fn parse(text: &str) -> Result<IpNet, ConfigError> {
        let bad = || ConfigError::TrustedProxy(text.to_string());
        let t = text.trim();
        let (addr_text, prefix_text) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(IpNet { addr, prefix })
    }

    /// Parses a comma-separated list; blank entries are skipped.
    ///
    /// # Errors
    /// The first entry that does not parse.
    pub fn parse_list(csv: &str) -> Result<Vec<IpNet>, ConfigError> {
        csv.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(IpNet::parse)
            .collect()
    }

    /// Whether `ip` lies inside this network (an IPv4 address never matches an IPv6 network).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_csv_is_trimmed_deduplicated_and_ordered() {
        assert_eq!(
            parse_fanout_nodes(" a:1, ,http://b:2,a:1 ,c:3,"),
            vec!["a:1", "http://b:2", "c:3"]
        );
        assert!(parse_fanout_nodes("").is_empty());
    }

    #[test]
    fn defaults_validate_and_bad_fields_are_named() {
        assert_eq!(AdminConfig::default().validate(), Ok(()));
        let c = AdminConfig {
            peer_token_ttl: Duration::from_secs(31),
            ..AdminConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::PeerTokenTtl(_))));
        let c = AdminConfig {
            result_reuse: Duration::from_millis(1001),
            ..AdminConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::ResultReuse(_))));
        let c = AdminConfig {
            fanout_timeout: Duration::ZERO,
            ..AdminConfig::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::ZeroDuration("fanout_timeout"))
        );
    }

    #[test]
    fn metrics_tokens_are_checked_redacted_and_compared_exactly() {
        assert!(MetricsToken::new("short").is_err());
        assert!(MetricsToken::new("has a space in the middle").is_err());
        assert!(MetricsToken::new(&"x".repeat(4097)).is_err());
        let t = MetricsToken::new("  0123456789abcdef-token\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(t.matches("0123456789abcdef-token"));
        assert!(!t.matches("0123456789abcdef-toke"));
        assert!(!t.matches(""));
        assert_eq!(format!("{t:?}"), "MetricsToken(<redacted>)");
        let c = AdminConfig {
            metrics_token: Some(t),
            ..AdminConfig::default()
        };
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn trusted_proxies_parse_cidr_and_bare_addresses() {
        let nets = IpNet::parse_list("10.0.0.0/8, ,192.168.1.7,::1").unwrap_or_default();
        assert_eq!(nets.len(), 3);
        assert!(nets[0].contains("10.200.3.4".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(!nets[0].contains("11.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(nets[1].contains(IpAddr::from([192, 168, 1, 7])));
        assert!(!nets[1].contains(IpAddr::from([192, 168, 1, 8])));
        assert!(nets[2].contains("::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(IpNet::parse_list("10.0.0.0/8,garbage").is_err());
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("0.0.0.0/0").is_ok_and(|n| n.contains(IpAddr::from([8, 8, 8, 8]))));
    }
}
