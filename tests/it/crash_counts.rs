//! Write counts survive kill -9: they are a function of the committed log, not of the memory
//! of the process that served them.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::util::{Cluster, Opts, Reply, Resp, login, wait_matrix_total};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One node, `--step=10s`: 100 acknowledged SETs, kill -9 before the column holding them is
/// flushed, restart on the same data dir: the matrix shows exactly 100 writes (re-counted from
/// the log above the flushed watermark), and later writes are still counted once.
#[test]
fn kill_9_before_a_flush_keeps_every_acknowledged_write_counted_once() {
    let mut c = Cluster::start(Opts {
        nodes: 1,
        groups: 2,
        step: "10s",
        ..Opts::default()
    });
    // Start early in a step so the writes and the kill happen before its flush (otherwise the
    // test still checks the total, but not the re-count).
    let deadline = Instant::now() + Duration::from_secs(15);
    while now_ms() % 10_000 > 3_000 {
        assert!(
            Instant::now() < deadline,
            "the clock never entered a step's start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let port = c.nodes[0].resp;
    let mut client = Resp::connect(port).expect("connect");
    for i in 0..100 {
        let key = format!("crash:{i:03}");
        assert_eq!(
            client.call(&["SET", &key, "v"]).expect("SET"),
            Reply::Simple("OK".into()),
            "SET {key} acknowledged"
        );
    }
    drop(client);
    c.nodes[0].kill();
    c.nodes[0].restart();
    c.wait_node_ready(0, Duration::from_secs(60));

    let admin = c.nodes[0].admin_addr();
    let cookie = login(&admin);
    // Panics if the total ever exceeds 100 (a double count) or never reaches it.
    wait_matrix_total(&admin, &cookie, "writes", 100, Duration::from_secs(40));
    let mut client = Resp::connect(port).expect("connect");
    for key in ["after:1", "after:2", "after:3"] {
        assert_eq!(
            client.call(&["SET", key, "v"]).expect("SET"),
            Reply::Simple("OK".into())
        );
    }
    wait_matrix_total(&admin, &cookie, "writes", 103, Duration::from_secs(40));
}
