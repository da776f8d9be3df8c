//! The demo's built-in workload: four traffic shapes that are easy to recognise on a heatmap.
//!
//! - **Sequential insert** (`seq:000000000123`): an ever-increasing key, a diagonal line.
//! - **Hot key** (`hot:counter`): one key hammered with `INCR`, a bright horizontal line.
//! - **Zipf reads** (`user:NNNNN`): `GET`s skewed toward low ids, a gradient band.
//! - **Range scan**: every `scan_every`, one `MGET` of 200 consecutive `user:` keys, a periodic
//!   vertical stripe.
//!
//! Each shape runs in its own task against the node addresses round-robin, so writes land on
//! followers too and exercise forwarding. Connection errors (a node restarting under `--chaos`)
//! are counted and retried against the next node.

mod client;
mod rng;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

pub use client::{Client, ClientError, Value};
use rng::{Rng, Zipf};

/// The first bytes of each shape's keys, so a layout can give each shape its own routes.
pub const KEY_PREFIXES: [&str; 3] = ["hot", "seq", "user"];

/// A route layout that makes the shapes readable on a heatmap: one route per shape prefix,
/// the sequential-insert space cut every 1 500 keys (≈10 s of inserts at the default rate, for
/// ≈45 minutes) so the inserts walk down the rows as a diagonal, and the `user:` space cut every
/// 250 ids so the zipf skew shows as a gradient. Sorted, as the catalog requires.
pub fn demo_split_keys(cfg: &WorkloadConfig) -> Vec<String> {
    let mut keys = vec!["hot".to_string(), "seq".to_string()];
    let seq_keys = u64::from(cfg.seq_per_sec.max(1)) * 45 * 60;
    keys.extend((1..=seq_keys / 1_500).map(|i| format!("seq:{:012}", i * 1_500)));
    keys.push("user".to_string());
    keys.extend((1..cfg.users.div_ceil(250)).map(|i| format!("user:{:05}", i * 250)));
    keys
}

/// Rates and sizes of the workload.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Sequential inserts per second.
    pub seq_per_sec: u32,
    /// Hot-key increments per second.
    pub hot_per_sec: u32,
    /// Zipf reads per second.
    pub zipf_per_sec: u32,
    /// Number of `user:` keys (preloaded, then read with a zipf skew).
    pub users: u32,
    /// Zipf exponent.
    pub zipf_s: f64,
    /// Period of the range scan.
    pub scan_every: Duration,
    /// RESP password (`AUTH <password>` on every connection), if the nodes require one.
    pub password: Option<String>,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            seq_per_sec: 150,
            hot_per_sec: 200,
            zipf_per_sec: 300,
            users: 5_000,
            zipf_s: 1.1,
            scan_every: Duration::from_secs(8),
            password: None,
        }
    }
}

/// Operation counters of a running workload (monotonic, relaxed: only displayed).
#[derive(Debug, Default)]
pub struct WorkloadStats {
    /// Successful commands.
    pub ok: AtomicU64,
    /// Commands answered with an error reply.
    pub err_replies: AtomicU64,
    /// Connection failures (node down).
    pub conn_errors: AtomicU64,
}

struct Pool {
    targets: Vec<SocketAddr>,
    next: usize,
    conn: Option<Client>,
    stats: Arc<WorkloadStats>,
    password: Option<String>,
}

impl Pool {
    async fn call(&mut self, args: &[&[u8]]) {
        for _ in 0..self.targets.len() {
            if self.conn.is_none() {
                let addr = self.targets[self.next % self.targets.len()];
                self.next += 1;
                match Client::connect_auth(addr, self.password.as_deref()).await {
                    Ok(c) => self.conn = Some(c),
                    Err(_) => {
                        self.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            let Some(c) = self.conn.as_mut() else {
                continue;
            };
            match c.call(args).await {
                Ok(Value::Ok) => {
                    self.stats.ok.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(Value::Err(_)) => {
                    self.stats.err_replies.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(_) => {
                    self.stats.conn_errors.fetch_add(1, Ordering::Relaxed);
                    self.conn = None;
                }
            }
        }
    }

    /// Moves to the next node (spreads load over followers and leaders).
    fn rotate(&mut self) {
        self.conn = None;
    }
}

fn pool(
    targets: &[SocketAddr],
    start: usize,
    stats: &Arc<WorkloadStats>,
    cfg: &WorkloadConfig,
) -> Pool {
    Pool {
        targets: targets.to_vec(),
        next: start,
        conn: None,
        stats: stats.clone(),
        password: cfg.password.clone(),
    }
}

async fn paced(rate: u32, mut shutdown: watch::Receiver<bool>, mut step: impl AsyncFnMut(u64)) {
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut i = 0u64;
    loop {
        tokio::select! {
            _ = crate::node::stopped(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        step(i).await;
        i += 1;
    }
}

/// Runs the workload against `targets` until `shutdown` turns true.
pub async fn run(
    targets: Vec<SocketAddr>,
    cfg: WorkloadConfig,
    stats: Arc<WorkloadStats>,
    shutdown: watch::Receiver<bool>,
) {
    if targets.is_empty() {
        return;
    }
    // Preload the users so zipf reads and scans hit real values.
    let mut loader = pool(&targets, 0, &stats, &cfg);
    for chunk in (0..cfg.users).collect::<Vec<_>>().chunks(100) {
        let kv: Vec<(String, String)> = chunk
            .iter()
            .map(|i| (format!("user:{i:05}"), format!("profile-{i}")))
            .collect();
        let mut args: Vec<&[u8]> = vec![b"MSET"];
        for (k, v) in &kv {
            args.push(k.as_bytes());
            args.push(v.as_bytes());
        }
        loader.call(&args).await;
        if *shutdown.borrow() {
            return;
        }
    }

    let mut set = JoinSet::new();
    {
        let mut p = pool(&targets, 0, &stats, &cfg);
        set.spawn(paced(cfg.seq_per_sec, shutdown.clone(), async move |i| {
            let key = format!("seq:{i:012}");
            p.call(&[b"SET", key.as_bytes(), b"inserted"]).await;
            if i % 50 == 49 {
                p.rotate();
            }
        }));
    }
    {
        let mut p = pool(&targets, 1, &stats, &cfg);
        set.spawn(paced(cfg.hot_per_sec, shutdown.clone(), async move |i| {
            if i % 4 == 3 {
                p.call(&[b"GET", b"hot:counter"]).await;
            } else {
                p.call(&[b"INCR", b"hot:counter"]).await;
            }
            if i % 64 == 63 {
                p.rotate();
            }
        }));
    }
    {
        let mut p = pool(&targets, 2, &stats, &cfg);
        let zipf = Zipf::new(cfg.users.max(1), cfg.zipf_s);
        let mut rng = Rng::new(0x5eed_1234);
        set.spawn(paced(cfg.zipf_per_sec, shutdown.clone(), async move |i| {
            let key = format!("user:{:05}", zipf.sample(&mut rng));
            p.call(&[b"GET", key.as_bytes()]).await;
            if i % 40 == 39 {
                p.rotate();
            }
        }));
    }
    {
        let mut p = pool(&targets, 0, &stats, &cfg);
        let users = cfg.users.max(1);
        let per_sec = (1.0 / cfg.scan_every.as_secs_f64().max(0.1)).max(0.01);
        let mut rng = Rng::new(0xabcd);
        let rate_ms = (1000.0 / per_sec) as u64;
        let mut sd = shutdown.clone();
        set.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(rate_ms.max(100)));
            loop {
                tokio::select! {
                    _ = crate::node::stopped(&mut sd) => return,
                    _ = tick.tick() => {}
                }
                let start = (rng.next_u64() % u64::from(users)) as u32;
                let keys: Vec<String> = (start..(start + 200).min(users))
                    .map(|i| format!("user:{i:05}"))
                    .collect();
                let mut args: Vec<&[u8]> = vec![b"MGET"];
                args.extend(keys.iter().map(|k| k.as_bytes()));
                p.call(&args).await;
                p.rotate();
            }
        });
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{Catalog, Layout};

    #[test]
    fn demo_layout_is_a_valid_catalog_that_separates_the_shapes() {
        let keys = demo_split_keys(&WorkloadConfig::default());
        let layout = Layout {
            groups: 3,
            split_keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        };
        let c = Catalog::from_layout(&layout).expect("sorted split keys");
        let seq_a = c.route_for(b"seq:000000000010").id;
        let seq_b = c.route_for(b"seq:000000003010").id;
        assert_ne!(seq_a, seq_b, "inserts move to new rows as they progress");
        assert_ne!(c.route_for(b"hot:counter").id, seq_a);
        assert_ne!(c.route_for(b"user:00001").id, c.route_for(b"user:04000").id);
    }
}
