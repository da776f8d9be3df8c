//! Node failure and leadership changes under traffic.

use std::time::{Duration, Instant};

use crate::util::{
    Cluster, Opts, Reply, Resp, login, matrix, redis_benchmark, require_redis_tools,
    wait_matrix_total,
};

/// SET `key` through `port`, retrying on errors (elections) until `deadline`; true when
/// acknowledged.
fn set_acked(port: u16, key: &str, value: &str, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        let reply = Resp::connect(port).and_then(|mut c| c.call(&["SET", key, value]));
        if matches!(reply, Ok(Reply::Simple(ref ok)) if ok == "OK") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn get(port: u16, key: &str) -> Option<Vec<u8>> {
    match Resp::connect(port).and_then(|mut c| c.call(&["GET", key])) {
        Ok(Reply::Bulk(v)) => v,
        other => panic!("GET {key} on {port}: {other:?}"),
    }
}

#[test]
fn kill_9_of_one_node_keeps_serving_and_it_rejoins_after_restart() {
    let mut c = Cluster::start(Opts::default());
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..60 {
        let key = format!("k{i:04}");
        let port = c.nodes[i % 3].resp;
        assert!(
            set_acked(port, &key, &format!("v{i}"), deadline),
            "write {key} before the crash"
        );
        acked.push((key, format!("v{i}")));
    }
    c.nodes[2].kill();
    // Writes and reads continue through the two survivors (after re-election where node 3 led).
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 60..120 {
        let key = format!("k{i:04}");
        let port = c.nodes[i % 2].resp;
        if set_acked(port, &key, &format!("v{i}"), deadline) {
            acked.push((key, format!("v{i}")));
        }
    }
    assert!(
        acked.len() >= 110,
        "only {} writes acknowledged with one node down",
        acked.len()
    );
    for (k, v) in &acked {
        assert_eq!(
            get(c.nodes[0].resp, k).as_deref(),
            Some(v.as_bytes()),
            "acknowledged {k} lost"
        );
    }
    // The fan-out reports the dead node.
    let admin = c.nodes[0].admin_addr();
    let cookie = login(&admin);
    let m = matrix(&admin, &cookie, "writes");
    let nodes = m["fanout"]["nodes"].as_array().cloned().unwrap_or_default();
    let dead = format!("127.0.0.1:{}", c.nodes[2].admin);
    let entry = nodes
        .iter()
        .find(|n| n["node"].as_str() == Some(dead.as_str()));
    assert!(
        entry.is_some_and(|e| e["ok"] == false),
        "node 3 must be reported ok:false: {}",
        m["fanout"]
    );

    // Restart: node 3 catches up from the log and serves again.
    c.nodes[2].restart();
    c.wait_node_ready(2, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = crate::util::redis_cli(c.nodes[2].resp, &["DBSIZE"]);
        if n == acked.len().to_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 replica has {n} keys, want {}",
            acked.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (k, v) in acked.iter().take(10) {
        assert_eq!(get(c.nodes[2].resp, k).as_deref(), Some(v.as_bytes()));
    }
    assert!(set_acked(
        c.nodes[2].resp,
        "after-restart",
        "ok",
        Instant::now() + Duration::from_secs(20)
    ));
    // The fan-out sees the node again (its first call may still hit a connection the old
    // process left behind, so allow a few attempts).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = matrix(&admin, &cookie, "writes");
        let nodes = m["fanout"]["nodes"].as_array().cloned().unwrap_or_default();
        if nodes.len() == 3 && nodes.iter().all(|n| n["ok"] == true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after restart every node answers: {}",
            m["fanout"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Leadership moves between nodes while redis-benchmark writes; the cluster-wide write total
/// is still exactly the number of SETs, with no (group, term) conflict.
#[test]
fn leadership_transfer_during_writes_keeps_totals_exact() {
    require_redis_tools();
    let c = Cluster::start(Opts {
        groups: 1,
        ..Opts::default()
    });
    let port = c.nodes[0].resp;
    let n: u64 = 6000;
    let bench = std::thread::spawn(move || {
        redis_benchmark(
            port,
            &["-t", "set", "-n", &n.to_string(), "-r", "10000", "-c", "4"],
        )
    });
    let mut transfers = 0;
    let start = Instant::now();
    let mut target = 1usize;
    while !bench.is_finished() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(400));
        let leader = c.leader_of(0, 1);
        target = (target + 1) % 3;
        if leader == Some(target as u64 + 1) {
            target = (target + 1) % 3;
        }
        if let Ok(Reply::Simple(_)) =
            Resp::connect(c.nodes[target].resp).and_then(|mut s| s.call(&["KEYVIZ.CAMPAIGN", "1"]))
        {
            transfers += 1;
        }
    }
    let (ok, _out, err) = bench.join().expect("benchmark thread");
    assert!(ok, "{err}");
    assert!(
        transfers >= 2,
        "only {transfers} leadership transfers happened during the benchmark"
    );
    let admin = c.nodes[1].admin_addr();
    let cookie = login(&admin);
    let m = wait_matrix_total(&admin, &cookie, "writes", n, Duration::from_secs(20));
    let conflicts = m["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["conflict"] == true)
        .count();
    assert_eq!(conflicts, 0, "{m}");
    let terms: std::collections::BTreeSet<u64> = m["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["leader_terms"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_u64())
        .filter(|t| *t > 0)
        .collect();
    assert!(
        terms.len() >= 2,
        "writes were committed under several leader terms, got {terms:?}: {m}"
    );
}
