//! Linearizability under faults: clients record a concurrent history of SET/GET/INCR on three
//! keys (one per group) through every node while leaders move (KEYVIZ.CAMPAIGN), one node is
//! killed (-9) and restarted and one leader is frozen (SIGSTOP) until it is replaced;
//! [`crate::lincheck`] then checks it.
//!
//! Times come from one monotonic clock shared by all clients (`Instant` since the start), so
//! invocation and return are ordered across threads. A write whose outcome is unknown (lost
//! connection, timeout, an error that does not guarantee "no effect") stays pending forever; a
//! read with an unknown outcome is dropped. Each client stops writing after a few unknown
//! outcomes (it keeps reading) so that the search stays small.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::lincheck::{Event, Op, Outcome, Verdict, check};
use crate::util::{
    Cluster, Opts, Reply, Roamer, Sent, StopOnDrop, error_means_no_effect, wait_until,
};

/// Operations recorded in total (about 300 per key).
const TOTAL: u64 = 900;
const CLIENTS: u64 = 6;
/// Unknown writes a client may leave behind before it only reads.
const MAX_UNKNOWN_WRITES: u32 = 3;
/// One key per group of the even 3-group layout (`[,I)`, `[I,b)`, `[b,)`).
const KEYS: [(&str, u64); 3] = [("A:lin", 1), ("Q:lin", 2), ("x:lin", 3)];

/// Runs one operation and turns the reply into an [`Outcome`] (`None`: the command was
/// refused with an error that guarantees no effect, so it is not part of the history).
fn outcome(op: Op, sent: Sent) -> Option<Outcome> {
    match (op, sent) {
        (Op::Set(_), Sent::Reply(Reply::Simple(ok))) if ok == "OK" => Some(Outcome::Ok),
        (Op::Get, Sent::Reply(Reply::Bulk(v))) => {
            let text = v.map(|b| String::from_utf8_lossy(&b).to_string());
            match text.map(|t| t.parse::<i64>()) {
                None => Some(Outcome::Value(None)),
                Some(Ok(n)) => Some(Outcome::Value(Some(n))),
                // Not an integer: only these clients write these keys, so it is a wrong value
                // the checker must see (no state of the model matches it).
                Some(Err(_)) => Some(Outcome::Value(Some(i64::MIN))),
            }
        }
        (Op::Incr, Sent::Reply(Reply::Int(n))) => Some(Outcome::Int(n)),
        (_, Sent::Reply(Reply::Error(e))) if error_means_no_effect(&e) => None,
        _ => Some(Outcome::Unknown),
    }
}

#[test]
fn set_get_incr_history_is_linearizable_through_leader_moves_and_a_kill_9() {
    let mut c = Cluster::start(Opts::default());
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.resp).collect();
    let epoch = Instant::now();
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());

    let workers: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (ports, issued, done, stop) =
                (ports.clone(), issued.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut client = Roamer::new(ports, 2000 + id, Duration::from_secs(8));
                let mut history = Vec::new();
                let mut unknown_writes = 0;
                let mut seq = 0i64;
                while issued.fetch_add(1, Ordering::SeqCst) < TOTAL && !stop.load(Ordering::SeqCst)
                {
                    let key = KEYS[client.rng().below(KEYS.len() as u64) as usize].0;
                    let roll = client.rng().below(10);
                    let op = if roll < 4 || unknown_writes >= MAX_UNKNOWN_WRITES {
                        Op::Get
                    } else if roll < 7 {
                        seq += 1;
                        // Unique per client and operation, so reads tell writes apart.
                        Op::Set(id as i64 * 1_000_000 + seq * 1000)
                    } else {
                        Op::Incr
                    };
                    if client.rng().below(8) == 0 {
                        client.hop();
                    }
                    let value;
                    let args: Vec<&str> = match op {
                        Op::Set(v) => {
                            value = v.to_string();
                            vec!["SET", key, &value]
                        }
                        Op::Get => vec!["GET", key],
                        Op::Incr => vec!["INCR", key],
                    };
                    let (call, sent) = loop {
                        let call = epoch.elapsed().as_nanos() as u64;
                        match client.call(&args) {
                            Sent::Refused if !stop.load(Ordering::SeqCst) => {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            other => break (call, other),
                        }
                    };
                    let ret = epoch.elapsed().as_nanos() as u64;
                    let Some(outcome) = outcome(op, sent) else {
                        continue;
                    };
                    if outcome == Outcome::Unknown {
                        client.hop();
                        if op != Op::Get {
                            unknown_writes += 1;
                        }
                    }
                    history.push(Event {
                        client: id as usize,
                        key: key.to_string(),
                        op,
                        outcome,
                        call,
                        ret,
                    });
                    done.fetch_add(1, Ordering::SeqCst);
                }
                history
            })
        })
        .collect();

    let progress = |at: u64| {
        let done = done.clone();
        move || done.load(Ordering::SeqCst) >= at
    };
    let mut moves = Vec::new();
    wait_until(
        "150 operations done",
        Duration::from_secs(60),
        progress(150),
    );
    let g = KEYS[0].1;
    let from = c.wait_leader(g, Duration::from_secs(10));
    let to = (from.unwrap_or(0) + 1) % c.nodes.len();
    moves.push((g, from, to, c.move_leader(g, to, Duration::from_secs(6))));

    wait_until(
        "350 operations done",
        Duration::from_secs(60),
        progress(350),
    );
    let g = KEYS[1].1;
    let victim = c
        .wait_leader(g, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no leader for group {g}"));
    c.nodes[victim].kill();
    wait_until(
        "500 operations done",
        Duration::from_secs(60),
        progress(500),
    );
    c.nodes[victim].restart();
    c.wait_node_ready(victim, Duration::from_secs(60));

    wait_until(
        "550 operations done",
        Duration::from_secs(60),
        progress(550),
    );
    let freeze = c.freeze_leader_until_reelected(KEYS[0].1, Duration::from_secs(20));

    wait_until(
        "650 operations done",
        Duration::from_secs(60),
        progress(650),
    );
    let g = KEYS[2].1;
    let from = c.wait_leader(g, Duration::from_secs(10));
    // To the restarted node (it must have caught up to win), unless it already leads.
    let to = if from == Some(victim) {
        (victim + 1) % c.nodes.len()
    } else {
        victim
    };
    moves.push((g, from, to, c.move_leader(g, to, Duration::from_secs(6))));

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut history = Vec::new();
    for w in workers {
        wait_until("clients finish", deadline - Instant::now(), || {
            w.is_finished()
        });
        history.extend(w.join().expect("client thread"));
    }
    let unknown = history
        .iter()
        .filter(|e| e.outcome == Outcome::Unknown)
        .count();
    eprintln!(
        "linearizable: {} operations ({unknown} unknown), leader moves (group, from, to, \
         moved): {moves:?}, frozen leader (node index, successor): {freeze:?}",
        history.len()
    );
    assert!(
        history.len() as u64 >= TOTAL * 9 / 10,
        "only {} of {TOTAL} operations were recorded",
        history.len()
    );
    let started = Instant::now();
    match check(&history) {
        Ok(()) => {}
        Err(Verdict::NotLinearizable { key, detail }) => {
            panic!("the history of {key} is not linearizable: {detail}")
        }
        Err(other) => panic!("checker could not decide: {other:?}"),
    }
    eprintln!("linearizable: checked in {:?}", started.elapsed());
    assert!(
        freeze.1.is_some(),
        "nobody took over from the frozen leader: {freeze:?}"
    );
    assert!(
        moves.iter().all(|m| m.3),
        "KEYVIZ.CAMPAIGN did not move leadership (group, from, to, moved): {moves:?}"
    );
}
