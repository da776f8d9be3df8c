//! Exact counting through the admin fan-out matrix.

use std::time::Duration;

use crate::util::{
    Cluster, Opts, login, matrix, matrix_total, redis_benchmark, require_redis_tools,
    wait_matrix_total,
};

/// Sends `requests` of redis-benchmark's `test` (e.g. `set`) to `port` over 4 connections
/// with 16-deep pipelines and random keys, failing the test if redis-benchmark fails.
fn bench_pipelined(port: u16, test: &str, requests: u64) {
    let (ok, _, err) = redis_benchmark(
        port,
        &[
            "-t",
            test,
            "-n",
            &requests.to_string(),
            "-r",
            "5000",
            "-P",
            "16",
            "-c",
            "4",
        ],
    );
    assert!(ok, "{err}");
}

/// Rows flagged as conflicting in a matrix answer.
fn conflicted(m: &serde_json::Value) -> usize {
    m["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["conflict"] == true)
        .count()
}

/// N SETs and M GETs sent through redis-benchmark, spread over all three nodes (so most are
/// forwarded), sum to exactly N writes and M reads in the fan-out matrix of any node. Every
/// replica counts a write when it applies it, so while the writes arrive the replicas
/// disagree about the newest windows by their apply lag; the fan-out must show that as no
/// conflict, in every answer polled during the load, not only once the load has stopped.
#[test]
fn fanout_matrix_counts_every_set_and_get_exactly_once() {
    require_redis_tools();
    let c = Cluster::start(Opts::default());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let admin = c.nodes[1].admin_addr();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let cookie = login(&admin);
            let (mut polls, mut flagged) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let m = matrix(&admin, &cookie, "writes");
                polls += 1;
                if conflicted(&m) > 0 {
                    flagged.push(m);
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            (polls, flagged)
        })
    };
    // Multiples of pipeline depth x connections: redis-benchmark issues whole pipelines.
    let (sets_per_node, gets_per_node) = (640u64, 448u64);
    for n in &c.nodes {
        bench_pipelined(n.resp, "set", sets_per_node);
        bench_pipelined(n.resp, "get", gets_per_node);
    }
    // Then a steady stream of single writes for a few seconds, as a live cluster sees: the
    // replicas' flushes cut it at different points.
    let steady = 1_200u64;
    let (ok, _, err) = redis_benchmark(
        c.nodes[0].resp,
        &[
            "-t",
            "set",
            "-n",
            &steady.to_string(),
            "-r",
            "5000",
            "-P",
            "1",
            "-c",
            "2",
        ],
    );
    assert!(ok, "{err}");
    let n_writes = sets_per_node * c.nodes.len() as u64 + steady;
    let n_reads = gets_per_node * c.nodes.len() as u64;
    for viewer in [0usize, 2] {
        let admin = c.nodes[viewer].admin_addr();
        let cookie = login(&admin);
        let writes =
            wait_matrix_total(&admin, &cookie, "writes", n_writes, Duration::from_secs(20));
        let reads = wait_matrix_total(&admin, &cookie, "reads", n_reads, Duration::from_secs(20));
        let fanout = &writes["fanout"];
        assert_eq!(
            fanout["responded"], fanout["expected"],
            "every node must answer: {fanout}"
        );
        assert_eq!(matrix_total(&writes), n_writes, "{writes}");
        assert_eq!(
            conflicted(&writes),
            0,
            "one (group, term) counted by every replica never conflicts: {writes}"
        );
        // Leader reads only: follower reads are off, so followers forward reads to the leader.
        assert_eq!(
            matrix_total(&matrix(&admin, &cookie, "leader_reads")),
            n_reads
        );
        assert_eq!(matrix_total(&matrix(&admin, &cookie, "follower_reads")), 0);
        assert_eq!(matrix_total(&reads), n_reads);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (polls, flagged) = poller.join().expect("poller thread");
    assert!(polls >= 3, "the poller saw the load: {polls} answers");
    assert!(
        flagged.is_empty(),
        "{} of {polls} answers polled under load flagged a conflict; the first: {}",
        flagged.len(),
        flagged[0]
    );
}

/// With follower reads on, a follower serves GETs itself (after catching up to the leader's
/// read index, so it sees the preceding SET) and they are counted as follower reads; totals
/// stay exact.
#[test]
fn follower_reads_are_counted_with_the_follower_role() {
    let c = Cluster::start(Opts {
        follower_reads: true,
        ..Opts::default()
    });
    let mut conn = crate::util::Resp::connect(c.nodes[0].resp).expect("connect");
    assert_eq!(
        conn.call(&["SET", "fr", "1"]).expect("set"),
        crate::util::Reply::Simple("OK".into())
    );
    // "fr" is in route 3, group 3 (even layout over three groups).
    let leader_before = c.leader_of(0, 3);
    let mut total = 0u64;
    for n in &c.nodes {
        let mut conn = crate::util::Resp::connect(n.resp).expect("connect");
        for _ in 0..10 {
            let r = conn.call(&["GET", "fr"]).expect("get");
            // Follower reads are linearizable (leader's read index): the SET is visible.
            assert_eq!(r, crate::util::Reply::Bulk(Some(b"1".to_vec())));
            total += 1;
        }
    }
    let admin = c.nodes[0].admin_addr();
    let cookie = login(&admin);
    wait_matrix_total(&admin, &cookie, "reads", total, Duration::from_secs(20));
    let leader = matrix_total(&matrix(&admin, &cookie, "leader_reads"));
    let follower = matrix_total(&matrix(&admin, &cookie, "follower_reads"));
    assert_eq!(leader + follower, total);
    assert!(
        leader > 0 && follower > 0,
        "both roles served reads: {leader} / {follower}"
    );
    if leader_before.is_some() && leader_before == c.leader_of(0, 3) {
        // Leadership did not move during the reads: one node served its 10 as leader.
        assert_eq!(leader, 10, "exactly one node leads the group of `fr`");
        assert_eq!(follower, 20);
    }
}
