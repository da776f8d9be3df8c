//! Fixed-window login rate limiting per client IP, with a bounded table, and the
//! client-IP rule (X-Forwarded-For only from trusted proxies).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::IpNet;

/// Outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// The attempt may proceed.
    Allow,
    /// Refused; retry after this many seconds.
    Deny {
        /// Seconds until a retry can succeed (at least 1).
        retry_after_secs: u64,
    },
}

struct Window {
    start: Instant,
    count: u32,
}

/// Per-key fixed-window counter: at most `limit` attempts per `window`; at most
/// `max_clients` keys are tracked. When the table is full, a new key first sweeps expired
/// entries and, if none expired, evicts the entry whose window started longest ago, so a
/// newcomer (the operator) is never locked out by a table full of other addresses. Evicting
/// forgets that address's count; the argon2 pool ([`crate::AdminConfig::login_workers`])
/// bounds the total work however many addresses an attacker cycles through. Thread-safe
/// (one mutex); O(1) per attempt except when full, where a newcomer costs one
/// O(max_clients) scan.
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    max_clients: usize,
    table: Mutex<HashMap<String, Window>>,
}

impl RateLimiter {
    /// A limiter allowing `limit` attempts per `window` per key.
    #[must_use]
    pub fn new(limit: u32, window: Duration, max_clients: usize) -> Self {
        RateLimiter {
            limit: limit.max(1),
            window,
            max_clients: max_clients.max(1),
            table: Mutex::new(HashMap::new()),
        }
    }

    fn retry_after(&self) -> u64 {
        self.window.as_secs().max(1)
    }

    /// Whether `key` is refused at `now`, without counting an attempt: for callers that
    /// count failures only ([`RateLimiter::check`] after a failed attempt), such as RESP
    /// `AUTH`, where every client connection authenticates once and only guessing must be
    /// slowed down. Takes the table mutex briefly.
    pub fn peek(&self, key: &str, now: Instant) -> RateDecision {
        let table = self.table.lock();
        match table.get(key) {
            Some(w)
                if now.saturating_duration_since(w.start) < self.window
                    && w.count >= self.limit =>
            {
                RateDecision::Deny {
                    retry_after_secs: self
                        .window
                        .saturating_sub(now.saturating_duration_since(w.start))
                        .as_secs()
                        .max(1),
                }
            }
            _ => RateDecision::Allow,
        }
    }

    /// Counts one attempt by `key` at `now`.
    pub fn check(&self, key: &str, now: Instant) -> RateDecision {
        let mut table = self.table.lock();
        if let Some(w) = table.get_mut(key) {
            if now.saturating_duration_since(w.start) >= self.window {
                w.start = now;
                w.count = 1;
                return RateDecision::Allow;
            }
            if w.count < self.limit {
                w.count += 1;
                return RateDecision::Allow;
            }
            return RateDecision::Deny {
                retry_after_secs: self.retry_after(),
            };
        }
        if table.len() >= self.max_clients {
            let window = self.window;
            table.retain(|_, w| now.saturating_duration_since(w.start) < window);
            if table.len() >= self.max_clients {
                let oldest = table
                    .iter()
                    .min_by_key(|(_, w)| w.start)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    table.remove(&k);
                }
            }
        }
        table.insert(
            key.to_string(),
            Window {
                start: now,
                count: 1,
            },
        );
        RateDecision::Allow
    }
}

/// The client IP of a request: the socket peer, or — only when the peer is a trusted
/// proxy — the rightmost `X-Forwarded-For` entry that is not itself trusted. Returns the
/// text `unknown` when the host did not provide connection info.
#[must_use]
pub fn client_ip(remote: Option<SocketAddr>, xff: Option<&str>, trusted: &[IpNet]) -> String {
    let Some(remote) = remote else {
        return "unknown".to_string();
    };
    let peer = remote.ip();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if let Some(xff) = xff.filter(|_| !trusted.is_empty() && is_trusted(peer)) {
        for entry in xff.rsplit(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.parse::<IpAddr>() {
                Ok(ip) if is_trusted(ip) => continue,
                Ok(ip) => return ip.to_string(),
                Err(_) => return entry.to_string(),
            }
        }
    }
    peer.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixth_attempt_in_window_is_refused_other_key_unaffected() {
        let l = RateLimiter::new(5, Duration::from_secs(60), 1024);
        let t = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.check("1.1.1.1", t), RateDecision::Allow);
        }
        assert_eq!(
            l.check("1.1.1.1", t),
            RateDecision::Deny {
                retry_after_secs: 60
            }
        );
        assert_eq!(l.check("2.2.2.2", t), RateDecision::Allow);
    }

    #[test]
    fn window_expiry_resets_the_count() {
        let l = RateLimiter::new(2, Duration::from_secs(60), 1024);
        let t = Instant::now();
        assert_eq!(l.check("a", t), RateDecision::Allow);
        assert_eq!(l.check("a", t), RateDecision::Allow);
        assert!(matches!(l.check("a", t), RateDecision::Deny { .. }));
        assert_eq!(
            l.check("a", t + Duration::from_secs(61)),
            RateDecision::Allow
        );
    }

    #[test]
    fn full_table_evicts_the_oldest_window_so_newcomers_get_in() {
        let l = RateLimiter::new(5, Duration::from_secs(60), 1024);
        let t = Instant::now();
        let key = |i: usize| format!("10.0.{}.{}", i / 256, i % 256);
        // Attackers fill the table, each at its limit; entry 0 is the oldest.
        for i in 0..1024 {
            let at = t + Duration::from_millis(i as u64);
            for _ in 0..5 {
                assert_eq!(l.check(&key(i), at), RateDecision::Allow);
            }
            assert!(matches!(l.check(&key(i), at), RateDecision::Deny { .. }));
        }
        let later = t + Duration::from_secs(2);
        assert_eq!(l.check("operator", later), RateDecision::Allow);
        assert_eq!(l.table.lock().len(), 1024, "the table stays bounded");
        // The oldest attacker entry made room; a recent one still holds its count.
        assert!(!l.table.lock().contains_key(&key(0)));
        assert!(matches!(
            l.check(&key(1023), later),
            RateDecision::Deny { .. }
        ));
        // Expired entries are swept before anything live is evicted.
        assert_eq!(
            l.check("new", t + Duration::from_secs(120)),
            RateDecision::Allow
        );
        assert_eq!(l.table.lock().len(), 1, "only the newcomer is left");
    }

    #[test]
    fn forwarded_for_is_honoured_only_from_trusted_proxies() {
        let proxy: SocketAddr = ([10, 0, 0, 1], 443).into();
        let direct: SocketAddr = ([8, 8, 8, 8], 5555).into();
        let trusted = IpNet::parse_list("10.0.0.0/8").unwrap_or_default();
        assert_eq!(
            client_ip(Some(proxy), Some("1.2.3.4, 10.0.0.9"), &trusted),
            "1.2.3.4"
        );
        assert_eq!(
            client_ip(Some(direct), Some("1.2.3.4"), &trusted),
            "8.8.8.8"
        );
        assert_eq!(client_ip(Some(proxy), Some("1.2.3.4"), &[]), "10.0.0.1");
        assert_eq!(client_ip(Some(proxy), None, &trusted), "10.0.0.1");
        let v6: SocketAddr = "[::1]:12345".parse().unwrap_or(direct);
        assert_eq!(client_ip(Some(v6), None, &[]), "::1");
        assert_eq!(client_ip(None, Some("1.2.3.4"), &trusted), "unknown");
    }
}
