//! The truth suite: redis-benchmark and a counting client against a 3-node cluster through
//! faults; the cluster-merged matrix must match what clients were told, in total, per key range
//! and per time window.
//!
//! Layout (`--split-keys=t0,t1,t2,t3`, three groups, route `i` in group `i % 3 + 1`):
//! `[,t0)` group 1 (redis-benchmark's `key:*`/`counter:*`), `[t0,t1)` group 2, `[t1,t2)`
//! group 3, `[t2,t3)` group 1. The fault hits the leader of group 3, which only the counting
//! client's `t1:` keys use; redis-benchmark runs against the other nodes on group 1, so its
//! own count of completed requests is an honest acknowledged count. Counting-client writes
//! whose outcome is unknown (lost connection, timeout, ambiguous error) widen the bound by one
//! each, never more.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::{
    Cluster, Opts, Reply, Roamer, Sent, StopOnDrop, error_means_no_effect, login, matrix,
    matrix_columns, matrix_range, matrix_total, redis_benchmark, require_redis_tools, unix_ms,
    wait_until,
};

const SPLIT_KEYS: &str = "t0,t1,t2,t3";
/// The group hit by the fault, and the key prefix (route `[t1,t2)`) only it serves.
const VICTIM_GROUP: u64 = 3;

/// One counting-client write: when it was sent and answered (unix ms) and whether it was
/// acknowledged (`false`: outcome unknown).
#[derive(Debug, Clone, Copy)]
struct Write {
    sent_ms: i64,
    answered_ms: i64,
    acked: bool,
}

/// A counting client: writes (SET and INCR alternately) keys `<prefix>:<n>` through the node
/// whose index is in `via` at the time of each write, until `stop`; returns every write with
/// its outcome. Definitely-failed writes are not returned (they have no effect).
fn counting_client(
    ports: Vec<u16>,
    prefix: &'static str,
    via: Arc<AtomicUsize>,
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> std::thread::JoinHandle<Vec<Write>> {
    std::thread::spawn(move || {
        let mut writes = Vec::new();
        let mut at = usize::MAX;
        let mut client = Roamer::new(Vec::new(), seed, Duration::from_secs(3));
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let target = via.load(Ordering::SeqCst);
            if target != at {
                at = target;
                client = Roamer::new(vec![ports[target]], seed + n, Duration::from_secs(3));
            }
            n += 1;
            let key = format!("{prefix}:{:06}", n % 500);
            let value = n.to_string();
            let args: Vec<&str> = if n.is_multiple_of(2) {
                vec!["SET", &key, &value]
            } else {
                vec!["INCR", &key]
            };
            let sent_ms = unix_ms();
            let sent = client.call(&args);
            let answered_ms = unix_ms();
            let acked_now = match sent {
                Sent::Refused => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Sent::Reply(Reply::Simple(_) | Reply::Int(_)) => true,
                Sent::Reply(Reply::Error(e)) if error_means_no_effect(&e) => continue,
                Sent::Reply(_) | Sent::Lost(_) => {
                    client.hop();
                    false
                }
            };
            if acked_now {
                acked.fetch_add(1, Ordering::SeqCst);
            }
            writes.push(Write {
                sent_ms,
                answered_ms,
                acked: acked_now,
            });
        }
        writes
    })
}

/// (acknowledged, unknown) of `writes`.
fn tally(writes: &[Write]) -> (u64, u64) {
    let acked = writes.iter().filter(|w| w.acked).count() as u64;
    (acked, writes.len() as u64 - acked)
}

/// Total writes the merged matrix shows for `[start, end)`.
fn range_total(admin: &str, cookie: &str, start: &str, end: &str) -> u64 {
    matrix_total(&matrix_range(
        admin,
        cookie,
        "writes",
        start.as_bytes(),
        Some(end.as_bytes()),
    ))
}

/// Polls the merged matrix until every `(what, observed, low, high)` check returned by
/// `checks` has `low <= observed` or `timeout` passes; fails at once when an observed total
/// exceeds its `high` (a count that appears twice never goes away). Returns the failures.
fn wait_bounds(
    timeout: Duration,
    mut checks: impl FnMut() -> Vec<(String, u64, u64, u64)>,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let results = checks();
        let over: Vec<String> = results
            .iter()
            .filter(|(_, seen, _, high)| seen > high)
            .map(|(what, seen, low, high)| {
                format!("{what}: {seen} counted, more than possible ({low}..={high})")
            })
            .collect();
        if !over.is_empty() {
            return over;
        }
        let under: Vec<String> = results
            .iter()
            .filter(|(_, seen, low, _)| seen < low)
            .map(|(what, seen, low, high)| {
                format!("{what}: {seen} counted, fewer than acknowledged ({low}..={high})")
            })
            .collect();
        if under.is_empty() || Instant::now() > deadline {
            return under;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

type Bench = std::thread::JoinHandle<(bool, String, String)>;

/// Starts redis-benchmark (SET and INCR, 16-deep pipelines over 4 connections, so `requests`
/// is a multiple of 64) on each node of `on`; returns the runs and the writes they will
/// acknowledge when they succeed.
fn start_benches(c: &Cluster, on: &[usize], requests: u64) -> (Vec<Bench>, u64) {
    let runs = on
        .iter()
        .map(|i| {
            let port = c.nodes[*i].resp;
            std::thread::spawn(move || {
                redis_benchmark(
                    port,
                    &[
                        "-t",
                        "set,incr",
                        "-n",
                        &requests.to_string(),
                        "-r",
                        "5000",
                        "-P",
                        "16",
                        "-c",
                        "4",
                    ],
                )
            })
        })
        .collect();
    (runs, 2 * requests * on.len() as u64)
}

/// Waits for the runs; the output of each that failed (redis-benchmark stops at the first
/// error reply, so a failed run's count is not an acknowledged count).
fn join_benches(runs: Vec<Bench>) -> Vec<String> {
    runs.into_iter()
        .filter_map(|b| {
            let (ok, out, err) = b.join().expect("benchmark thread");
            (!ok || out.contains("rror") || err.contains("rror")).then(|| format!("{err}{out}"))
        })
        .collect()
}

/// Starts the suite's cluster and returns it with the index of group 3's leader (the victim),
/// after making sure the victim does not also lead group 1 (redis-benchmark's group).
fn start_cluster() -> (Cluster, usize) {
    let c = Cluster::start(Opts {
        split_keys: SPLIT_KEYS,
        ..Opts::default()
    });
    let victim = c
        .wait_leader(VICTIM_GROUP, Duration::from_secs(10))
        .expect("group 3 has a leader");
    if c.leader_index(1) == Some(victim) {
        let other = (victim + 1) % c.nodes.len();
        assert!(
            c.move_leader(1, other, Duration::from_secs(20)),
            "group 1 must be led by a node that is not the victim"
        );
    }
    (c, victim)
}

/// (a) kill -9 of the leader of group 3 in the middle of a run, then restart.
#[test]
fn kill_9_of_a_leader_mid_run_keeps_cluster_and_range_totals_true() {
    require_redis_tools();
    let (mut c, victim) = start_cluster();
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.resp).collect();
    let others: Vec<usize> = (0..c.nodes.len()).filter(|i| *i != victim).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());

    let (benches, bench_writes) = start_benches(&c, &others, 6400);

    // The counting client: `t0:` and `t2:` through the survivors only (exact), `t1:` (the
    // victim's group) through the victim until it dies, then through the survivors.
    let acked_victim = Arc::new(AtomicU64::new(0));
    let unused = Arc::new(AtomicU64::new(0));
    let via_victim = Arc::new(AtomicUsize::new(victim));
    let t1 = counting_client(
        ports.clone(),
        "t1",
        via_victim.clone(),
        acked_victim.clone(),
        stop.clone(),
        31,
    );
    let t0 = counting_client(
        ports.clone(),
        "t0",
        Arc::new(AtomicUsize::new(others[0])),
        unused.clone(),
        stop.clone(),
        32,
    );
    let t2 = counting_client(
        ports.clone(),
        "t2",
        Arc::new(AtomicUsize::new(others[1])),
        unused.clone(),
        stop.clone(),
        33,
    );

    let progress = |at: u64| {
        let a = acked_victim.clone();
        move || a.load(Ordering::SeqCst) >= at
    };
    wait_until(
        "300 t1: writes acknowledged by the victim",
        Duration::from_secs(60),
        progress(300),
    );
    let bench_running_at_kill = benches.iter().any(|b| !b.is_finished());
    c.nodes[victim].kill();
    via_victim.store(others[0], Ordering::SeqCst);
    let at_kill = acked_victim.load(Ordering::SeqCst);
    wait_until(
        "300 more t1: writes acknowledged after the kill",
        Duration::from_secs(60),
        progress(at_kill + 300),
    );
    c.nodes[victim].restart();
    c.wait_node_ready(victim, Duration::from_secs(60));
    via_victim.store(victim, Ordering::SeqCst);
    let at_restart = acked_victim.load(Ordering::SeqCst);
    wait_until(
        "300 more t1: writes acknowledged after the restart",
        Duration::from_secs(60),
        progress(at_restart + 300),
    );
    let bench_errors = join_benches(benches);
    stop.store(true, Ordering::SeqCst);
    let mut ranges: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (name, h) in [("t0", t0), ("t1", t1), ("t2", t2)] {
        ranges.insert(name, tally(&h.join().expect("counting client")));
    }
    assert!(
        bench_errors.is_empty(),
        "redis-benchmark saw errors, so its count is not an acknowledged count: {bench_errors:?}"
    );

    let admin = c.nodes[others[0]].admin_addr();
    let cookie = login(&admin);
    let (acked, unknown) = ranges
        .values()
        .fold((0, 0), |(a, u), (ra, ru)| (a + ra, u + ru));
    let failures = wait_bounds(Duration::from_secs(20), || {
        let mut checks = vec![
            (
                "cluster write total".to_string(),
                matrix_total(&matrix(&admin, &cookie, "writes")),
                bench_writes + acked,
                bench_writes + acked + unknown,
            ),
            (
                "redis-benchmark range [,t0)".to_string(),
                range_total(&admin, &cookie, "", "t0"),
                bench_writes,
                bench_writes,
            ),
        ];
        for (name, end) in [("t0", "t1"), ("t1", "t2"), ("t2", "t3")] {
            let (a, u) = ranges[name];
            checks.push((
                format!("range [{name},{end})"),
                range_total(&admin, &cookie, name, end),
                a,
                a + u,
            ));
        }
        checks
    });
    eprintln!(
        "truth (a): victim node {}, redis-benchmark {bench_writes} writes (running at kill: \
         {bench_running_at_kill}), counting client (acked, unknown) per range {ranges:?}",
        c.nodes[victim].id
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// (c) SIGSTOP of the leader of group 3 until the group re-elected and three more steps passed,
/// then SIGCONT: writes it acknowledged just before the freeze are counted in the window they
/// were served in (within one step), and totals are exact.
#[test]
fn sigstop_of_a_leader_for_three_steps_keeps_counts_in_their_windows() {
    let (mut c, victim) = start_cluster();
    let step_ms: i64 = 1000;
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.resp).collect();
    let survivor = (victim + 1) % c.nodes.len();
    let others: Vec<usize> = (0..c.nodes.len()).filter(|i| *i != victim).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let acked = Arc::new(AtomicU64::new(0));
    let via = Arc::new(AtomicUsize::new(victim));
    let (benches, bench_writes) = start_benches(&c, &others, 3200);
    let writer = counting_client(ports, "t1", via.clone(), acked.clone(), stop.clone(), 41);
    let progress = |at: u64| {
        let a = acked.clone();
        move || a.load(Ordering::SeqCst) >= at
    };

    wait_until(
        "200 writes acknowledged by the leader",
        Duration::from_secs(60),
        progress(200),
    );
    c.nodes[victim].freeze();
    let freeze_ms = unix_ms();
    let frozen_at = Instant::now();
    via.store(survivor, Ordering::SeqCst);
    // The fault is the freeze itself: the group re-elects, then serves three steps without
    // the old leader, whose unflushed counts wait all that time (a flush many steps late).
    let reelected = c.wait_leader(VICTIM_GROUP, Duration::from_secs(20));
    let reelect_after = frozen_at.elapsed();
    let hold = reelect_after + Duration::from_millis(3 * step_ms as u64);
    wait_until(
        "three steps of freeze after the re-election",
        hold + Duration::from_secs(5),
        || frozen_at.elapsed() >= hold,
    );
    c.nodes[victim].thaw();
    let thaw_ms = unix_ms();
    via.store(victim, Ordering::SeqCst);
    let at_thaw = acked.load(Ordering::SeqCst);
    wait_until(
        "200 more writes acknowledged after SIGCONT",
        Duration::from_secs(60),
        progress(at_thaw + 200),
    );
    stop.store(true, Ordering::SeqCst);
    let writes = writer.join().expect("counting client");
    let (n_acked, n_unknown) = tally(&writes);
    let bench_errors = join_benches(benches);
    assert!(
        bench_errors.is_empty(),
        "redis-benchmark saw errors, so its count is not an acknowledged count: {bench_errors:?}"
    );
    let before_freeze = writes
        .iter()
        .filter(|w| w.acked && w.answered_ms <= freeze_ms)
        .count();

    let admin = c.nodes[survivor].admin_addr();
    let cookie = login(&admin);
    let mut failures = wait_bounds(Duration::from_secs(20), || {
        vec![
            (
                "range [t1,t2)".to_string(),
                range_total(&admin, &cookie, "t1", "t2"),
                n_acked,
                n_acked + n_unknown,
            ),
            (
                "redis-benchmark range [,t0)".to_string(),
                range_total(&admin, &cookie, "", "t0"),
                bench_writes,
                bench_writes,
            ),
        ]
    });
    // Windows: a write served at s (sent_ms <= s <= answered_ms) belongs to the column
    // starting at floor(s / step) * step; one step early or late is tolerated. So every column
    // boundary T must have, in the columns starting before T, at least the writes answered
    // before T - step and at most the writes sent before T + 2 steps.
    let cols = matrix_columns(&matrix_range(&admin, &cookie, "writes", b"t1", Some(b"t2")));
    let mut cumulative = 0u64;
    for (start, value) in &cols {
        cumulative += value;
        let t = start + step_ms;
        let must = writes
            .iter()
            .filter(|w| w.acked && w.answered_ms + step_ms < t)
            .count() as u64;
        let may = writes
            .iter()
            .filter(|w| w.sent_ms - 2 * step_ms < t)
            .count() as u64;
        if cumulative < must || cumulative > may {
            failures.push(format!(
                "columns before {t} (freeze at {freeze_ms}, SIGCONT at {thaw_ms}) hold \
                 {cumulative} writes; the writes served by then allow {must}..={may}"
            ));
            break;
        }
    }
    eprintln!(
        "truth (c): victim node {}, {before_freeze} writes acknowledged before the freeze at \
         {freeze_ms}, SIGCONT at {thaw_ms}; {n_acked} acknowledged, {n_unknown} unknown in all; \
         re-elected {reelected:?} after {reelect_after:?}; columns {cols:?}",
        c.nodes[victim].id
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
