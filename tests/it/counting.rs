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

/// N SETs and M GETs sent through redis-benchmark, spread over all three nodes (so most are
/// forwarded), sum to exactly N writes and M reads in the fan-out matrix of any node.
#[test]
fn fanout_matrix_counts_every_set_and_get_exactly_once() {
    require_redis_tools();
    let c = Cluster::start(Opts::default());
    // Multiples of pipeline depth x connections: redis-benchmark issues whole pipelines.
    let (sets_per_node, gets_per_node) = (640u64, 448u64);
    for n in &c.nodes {
        bench_pipelined(n.resp, "set", sets_per_node);
        bench_pipelined(n.resp, "get", gets_per_node);
    }
    let n_writes = sets_per_node * c.nodes.len() as u64;
    let n_reads = gets_per_node * c.nodes.len() as u64;
    for viewer in [0usize, 2] {
        let admin = c.nodes[viewer].admin_addr();
        let cookie = login(&admin);
        let mut writes =
            wait_matrix_total(&admin, &cookie, "writes", n_writes, Duration::from_secs(20));
        let reads = wait_matrix_total(&admin, &cookie, "reads", n_reads, Duration::from_secs(20));
        let fanout = &writes["fanout"];
        assert_eq!(
            fanout["responded"], fanout["expected"],
            "every node must answer: {fanout}"
        );
        // Replicas seal their open window at different instants, so while the newest column
        // is still open one replica may publish fewer of its writes than another: a real,
        // transient disagreement. Once every replica has sealed it, one leader per
        // (group, term) agrees everywhere.
        let conflicted = |m: &serde_json::Value| {
            m["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["conflict"] == true)
                .count()
        };
        let settle = std::time::Instant::now() + Duration::from_secs(20);
        while conflicted(&writes) > 0 && std::time::Instant::now() < settle {
            std::thread::sleep(Duration::from_millis(300));
            writes = matrix(&admin, &cookie, "writes");
        }
        assert_eq!(matrix_total(&writes), n_writes, "{writes}");
        assert_eq!(
            conflicted(&writes),
            0,
            "one leader per (group, term) never conflicts once sealed: {writes}"
        );
        // Leader reads only: follower reads are off, so followers forward reads to the leader.
        assert_eq!(
            matrix_total(&matrix(&admin, &cookie, "leader_reads")),
            n_reads
        );
        assert_eq!(matrix_total(&matrix(&admin, &cookie, "follower_reads")), 0);
        assert_eq!(matrix_total(&reads), n_reads);
    }
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
