//! Exactly-once INCR under faults: leaders move (KEYVIZ.CAMPAIGN), one node is killed (-9) and
//! restarted, and one leader is frozen (SIGSTOP) until it is replaced, while several clients
//! send 10 000 INCRs through random nodes.
//!
//! Every INCR is classified by what its client saw: acknowledged (an integer reply), failed
//! definitely (an error that guarantees no effect, see [`error_means_no_effect`]) or unknown
//! (timeout, connection lost, any other error). A client never resends a command, so the store
//! alone decides how often each one applies. What must hold per key, once the cluster settled:
//! acknowledged ≤ final ≤ acknowledged + unknown, no two acknowledged replies carry the same
//! value, and no acknowledged value exceeds the final value.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::{
    Cluster, Opts, Reply, Roamer, Sent, StopOnDrop, error_means_no_effect, read_int, wait_until,
    write_barrier,
};

/// INCRs sent in total (over all clients and keys).
const TOTAL: u64 = 10_000;
const CLIENTS: u64 = 8;
/// Keys and the group that owns each in the even 3-group layout (`[,I)`, `[I,b)`, `[b,)`).
const KEYS: [(&str, u64); 2] = [("A:incr", 1), ("x:incr", 3)];

/// What one key's INCRs came to.
#[derive(Debug, Default)]
struct Tally {
    acked: Vec<i64>,
    failed: u64,
    unknown: u64,
}

#[test]
fn incr_applies_exactly_once_through_leader_moves_and_a_kill_9() {
    let mut c = Cluster::start(Opts::default());
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.resp).collect();
    let issued = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());

    let workers: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (ports, issued, acked, stop) =
                (ports.clone(), issued.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut client = Roamer::new(ports, 1000 + id, Duration::from_secs(8));
                let mut tally: BTreeMap<&str, Tally> = BTreeMap::new();
                loop {
                    let n = issued.fetch_add(1, Ordering::SeqCst);
                    if n >= TOTAL || stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let key = KEYS[(n % KEYS.len() as u64) as usize].0;
                    if client.rng().below(16) == 0 {
                        client.hop();
                    }
                    // A refused connect sent nothing: retry on another node (all may be down
                    // for a moment during the kill).
                    let sent = loop {
                        match client.call(&["INCR", key]) {
                            Sent::Refused if !stop.load(Ordering::SeqCst) => {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            other => break other,
                        }
                    };
                    let t = tally.entry(key).or_default();
                    match sent {
                        Sent::Reply(Reply::Int(v)) => {
                            t.acked.push(v);
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        Sent::Reply(Reply::Error(e)) if error_means_no_effect(&e) => t.failed += 1,
                        Sent::Reply(_) | Sent::Lost(_) | Sent::Refused => {
                            t.unknown += 1;
                            client.hop();
                        }
                    }
                }
                tally
            })
        })
        .collect();

    // Faults, each gated on the clients' progress.
    let progress = |at: u64| {
        let acked = acked.clone();
        move || acked.load(Ordering::SeqCst) >= at
    };
    let mut moves = Vec::new();
    wait_until(
        "1 500 INCRs acknowledged",
        Duration::from_secs(60),
        progress(1500),
    );
    let g = KEYS[0].1;
    let from = c.wait_leader(g, Duration::from_secs(10));
    let to = (from.unwrap_or(0) + 1) % c.nodes.len();
    moves.push((g, from, to, c.move_leader(g, to, Duration::from_secs(6))));

    wait_until(
        "3 500 INCRs acknowledged",
        Duration::from_secs(60),
        progress(3500),
    );
    let g = KEYS[1].1;
    let victim = c
        .wait_leader(g, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no leader for group {g}"));
    c.nodes[victim].kill();
    let at_kill = acked.load(Ordering::SeqCst);
    wait_until(
        "1 500 more INCRs acknowledged by the two survivors",
        Duration::from_secs(60),
        progress(at_kill + 1500),
    );
    c.nodes[victim].restart();
    c.wait_node_ready(victim, Duration::from_secs(60));

    wait_until(
        "5 500 INCRs acknowledged",
        Duration::from_secs(60),
        progress(5500),
    );
    let freeze = c.freeze_leader_until_reelected(KEYS[0].1, Duration::from_secs(20));

    wait_until(
        "7 500 INCRs acknowledged",
        Duration::from_secs(60),
        progress(7500),
    );
    let from = c.wait_leader(g, Duration::from_secs(10));
    // To the restarted node (it must have caught up to win), unless it already leads.
    let to = if from == Some(victim) {
        (victim + 1) % c.nodes.len()
    } else {
        victim
    };
    moves.push((g, from, to, c.move_leader(g, to, Duration::from_secs(6))));

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for w in workers {
        wait_until("INCR clients finish", deadline - Instant::now(), || {
            w.is_finished()
        });
        for (k, t) in w.join().expect("client thread") {
            let all = tallies.entry(k).or_default();
            all.acked.extend(t.acked);
            all.failed += t.failed;
            all.unknown += t.unknown;
        }
    }

    c.wait_settled(Duration::from_secs(30));
    let mut report = String::new();
    let mut failures = Vec::new();
    let mut sent = 0u64;
    for (key, _) in KEYS {
        let t = tallies.remove(key).unwrap_or_default();
        write_barrier(&c, &format!("{key}:barrier"), Duration::from_secs(30));
        let fin = read_int(&c, key, Duration::from_secs(30)).unwrap_or(0);
        let n_acked = t.acked.len() as u64;
        sent += n_acked + t.failed + t.unknown;
        report.push_str(&format!(
            "{key}: final {fin}, acknowledged {n_acked}, failed {}, unknown {}\n",
            t.failed, t.unknown
        ));
        let mut values = t.acked.clone();
        values.sort_unstable();
        let dups: Vec<i64> = values
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        if !dups.is_empty() {
            failures.push(format!(
                "{key}: {} acknowledged INCR replies repeat a value (first: {:?})",
                dups.len(),
                &dups[..dups.len().min(10)]
            ));
        }
        if (fin as u64) < n_acked {
            failures.push(format!(
                "{key}: final {fin} < {n_acked} acknowledged INCRs (acknowledged writes lost)"
            ));
        }
        if fin as u64 > n_acked + t.unknown {
            failures.push(format!(
                "{key}: final {fin} > {n_acked} acknowledged + {} unknown (an INCR applied twice)",
                t.unknown
            ));
        }
        if let Some(max) = values.last().filter(|m| **m > fin) {
            failures.push(format!(
                "{key}: an acknowledged INCR answered {max} but the final value is {fin}"
            ));
        }
    }
    eprintln!(
        "exactly_once: {report}leader moves (group, from, to, moved): {moves:?}; \
         frozen leader (node index, successor): {freeze:?}"
    );
    assert_eq!(sent, TOTAL, "every INCR was sent once and classified");
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
    // Last, so the counting verdict above is reported first: the faults really happened.
    assert!(
        freeze.1.is_some(),
        "nobody took over from the frozen leader: {freeze:?}"
    );
    assert!(
        moves.iter().all(|m| m.3),
        "KEYVIZ.CAMPAIGN did not move leadership (group, from, to, moved): {moves:?}"
    );
}
