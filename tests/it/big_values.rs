//! Values at the 16 MiB limit replicate: a pipeline of them succeeds, every replica stores
//! them byte for byte, leadership does not move, and a small client meanwhile only waits;
//! and when every node has a single tokio worker, big entries of one group move no other
//! group's leader (a big entry's work on the worker would starve their heartbeats and
//! election timers).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::{Cluster, Opts, Reply, Resp};

const VALUE_BYTES: usize = 16 * 1024 * 1024;
const VALUES: usize = 20;
/// 16 MiB SETs each node receives in the single-worker test.
const SETS_PER_NODE: usize = 4;

/// Pseudo-random bytes (xorshift seeded by `seed`) with a run of 0xC8, the byte whose JSON
/// form (`200,`) used to quadruple an entry past the transport cap.
fn value(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<u8> = (0..VALUE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    v[1024..1024 + 65_536].fill(0xC8);
    v
}

/// Keys on several routes (and so several groups): the first byte picks the route.
fn key(i: usize) -> String {
    let first = ["1", "B", "K", "T", "c", "m", "w"][i % 7];
    format!("{first}big:{i:02}")
}

/// The applied index of every group on node `i` (INFO), in group order.
fn applied(c: &Cluster, i: usize) -> Vec<u64> {
    let Ok(Reply::Bulk(Some(info))) =
        Resp::connect(c.nodes[i].resp).and_then(|mut r| r.call(&["INFO"]))
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&info)
        .lines()
        .filter(|l| l.starts_with("group_"))
        .filter_map(|l| l.trim_end().rsplit_once("applied=")?.1.parse().ok())
        .collect()
}

/// Every node's `(leader, term)` of each of the `groups` groups, once every node knows them
/// and all agree (a node may report the leader before a balancing hand-over for a moment);
/// polls, and panics after 30 s without agreement.
fn agreed_leaders(c: &Cluster, groups: u64) -> Vec<Vec<Option<(u64, u64)>>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l: Vec<_> = (0..c.nodes.len())
            .map(|i| c.leaders_and_terms(i, groups))
            .collect();
        if l.iter().flatten().all(Option::is_some) && l.iter().all(|n| *n == l[0]) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes do not agree on the groups' leaders and terms: {l:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls until every node has applied the same index in each of the `groups` groups (the
/// slower follower is not needed for a write's quorum and may still be applying); panics
/// after two minutes without convergence.
fn wait_replicas_converged(c: &Cluster, groups: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let applied: Vec<Vec<u64>> = (0..c.nodes.len()).map(|i| applied(c, i)).collect();
        if applied
            .iter()
            .all(|a| a.len() == groups as usize && *a == applied[0])
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {applied:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn set_command(key: &str, value: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
        key.len(),
        value.len()
    )
    .into_bytes();
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn twenty_pipelined_16_mib_sets_replicate_without_a_leader_change() {
    let groups = 3;
    let c = Cluster::start(Opts {
        follower_reads: true,
        ..Opts::default()
    });
    let before = agreed_leaders(&c, groups);

    // A small client on another node keeps writing meanwhile; it may only see latency.
    let stop = Arc::new(AtomicBool::new(false));
    let small_ok = Arc::new(AtomicU64::new(0));
    let small = {
        let (stop, ok, port) = (stop.clone(), small_ok.clone(), c.nodes[1].resp);
        std::thread::spawn(move || -> Result<(), String> {
            let mut conn = Resp::connect(port).map_err(|e| e.to_string())?;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("small:{}", i % 50);
                match conn.call(&["SET", &k, "v"]) {
                    Ok(Reply::Simple(s)) if s == "OK" => {}
                    other => return Err(format!("small SET {k}: {other:?}")),
                }
                ok.fetch_add(1, Ordering::Relaxed);
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        })
    };

    // 20 SETs written back to back on one connection, replies read afterwards.
    let values: Vec<Vec<u8>> = (0..VALUES).map(|i| value(i as u64 + 1)).collect();
    let mut conn = Resp::connect(c.nodes[0].resp).expect("connect");
    let started = Instant::now();
    {
        let writer = conn.writer();
        for (i, v) in values.iter().enumerate() {
            writer
                .write_all(&set_command(&key(i), v))
                .expect("send SET");
        }
        writer.flush().expect("flush");
    }
    for i in 0..VALUES {
        let r = conn.read_slow(Duration::from_secs(120)).expect("SET reply");
        assert_eq!(r, Reply::Simple("OK".into()), "SET {} ({i})", key(i));
    }
    let write_time = started.elapsed();

    stop.store(true, Ordering::Relaxed);
    let small_result = small.join().expect("small client thread");
    assert_eq!(small_result, Ok(()), "the small client saw an error");
    assert!(
        small_ok.load(Ordering::Relaxed) > 0,
        "the small client made progress"
    );

    // Every replica has applied as far as the leader before anything is read (the slower
    // follower is not needed for the writes' quorum and may still be applying).
    wait_replicas_converged(&c, groups);

    // Follower reads: each node answers from its own replica (after catching up to the
    // leader's read index), so equality here means every replica stores the bytes.
    for n in 0..c.nodes.len() {
        let mut conn = Resp::connect(c.nodes[n].resp).expect("connect");
        for (i, v) in values.iter().enumerate() {
            let got = conn
                .call_slow(&["GET", &key(i)], Duration::from_secs(60))
                .expect("GET");
            match got {
                Reply::Bulk(Some(b)) => assert!(
                    b == *v,
                    "node {} holds {} bytes for {} that differ from the {} written",
                    n + 1,
                    b.len(),
                    key(i),
                    v.len()
                ),
                other => panic!("node {} GET {}: {other:?}", n + 1, key(i)),
            }
        }
    }

    let after: Vec<_> = (0..c.nodes.len())
        .map(|i| c.leaders_and_terms(i, groups))
        .collect();
    assert_eq!(
        before,
        after,
        "leaders and terms moved while writing (writes took {write_time:?}); node 1 log:\n{}",
        c.log(0)
    );
}

/// Keys of group 1 only: the first route of the even 3-group layout is `[.., "I")`.
fn group_1_key(i: usize) -> String {
    format!("{}big:{i:02}", ["1", "B"][i % 2])
}

#[test]
fn big_sets_on_one_group_move_no_other_groups_leader_on_single_worker_runtimes() {
    // Three groups per node on one tokio worker each: any big entry's encode, append, sign,
    // verify, decode or apply that runs on the worker stops the other groups' heartbeats
    // (200 ms) for longer than their election timeout (800 ms) on a debug build. The big
    // entries all go to group 1, whose own Raft core does wait for each append (openraft
    // 0.9 awaits the log write in the core), so only the other groups are held to it.
    let groups = 3;
    let c = Cluster::start(Opts {
        groups,
        env: &[("TOKIO_WORKER_THREADS", "1")],
        ..Opts::default()
    });
    let leaders = |c: &Cluster| -> Vec<_> {
        (0..c.nodes.len())
            .map(|i| c.leaders_and_terms(i, groups))
            .collect()
    };
    let before = agreed_leaders(&c, groups);

    // On every node at once, a client SETs one big value at a time (each answered before
    // the next): each node appends, replicates and applies several big entries at once.
    let writers: Vec<_> = (0..c.nodes.len())
        .map(|n| {
            let port = c.nodes[n].resp;
            std::thread::spawn(move || -> Result<(), String> {
                let mut conn = Resp::connect(port).map_err(|e| e.to_string())?;
                for i in (0..SETS_PER_NODE).map(|j| n * SETS_PER_NODE + j) {
                    let k = group_1_key(i);
                    let writer = conn.writer();
                    writer
                        .write_all(&set_command(&k, &value(100 + i as u64)))
                        .and_then(|()| writer.flush())
                        .map_err(|e| format!("send SET {k}: {e}"))?;
                    match conn.read_slow(Duration::from_secs(120)) {
                        Ok(Reply::Simple(s)) if s == "OK" => {}
                        other => return Err(format!("SET {k} via node {}: {other:?}", n + 1)),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in writers {
        assert_eq!(w.join().expect("writer thread"), Ok(()));
    }
    wait_replicas_converged(&c, groups);

    // Groups 2 and 3 (index 1 and 2) carried no big entry.
    let others = |l: &[Vec<Option<(u64, u64)>>]| -> Vec<Vec<Option<(u64, u64)>>> {
        l.iter().map(|node| node[1..].to_vec()).collect()
    };
    let after = leaders(&c);
    assert_eq!(
        others(&before),
        others(&after),
        "the other groups' leaders and terms moved during {SETS_PER_NODE} 16 MiB SETs per node \
         on group 1 of single-worker nodes (all groups before {before:?}, after {after:?}); \
         node 1 log:\n{}\nnode 2 log:\n{}\nnode 3 log:\n{}",
        c.log(0),
        c.log(1),
        c.log(2)
    );
}
