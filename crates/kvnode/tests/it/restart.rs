//! A single-node cluster restarted on the same data directory keeps its data, its split
//! routes and its KeyViz history.

use std::net::TcpListener;
use std::time::Duration;

use bytes::Bytes;
use keyviz::{MatrixQuery, Series};
use kvnode::config::NodeConfig;
use kvnode::dispatch::now_unix_ms;
use kvnode::resp::{Command, Reply};

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").to_string()
}

fn writes_total(node: &kvnode::node::Node) -> u64 {
    let sampler = node.sampling().sampler().expect("sampling on");
    let q = MatrixQuery {
        series: Series::Writes,
        ..MatrixQuery::default()
    };
    let m = sampler.matrix(&q, now_unix_ms() as i64);
    m.rows.iter().flat_map(|r| r.values.iter()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_routes_and_keyviz_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = NodeConfig {
        node_id: 1,
        resp_addr: free_addr(),
        raft_addr: free_addr(),
        data_dir: dir.path().to_path_buf(),
        groups: 2,
        step_ms: 1_000,
        fsync: false,
        ..NodeConfig::default()
    };
    let node = kvnode::node::start(cfg.clone()).await.expect("start");
    assert!(
        node.wait_ready(Duration::from_secs(20)).await,
        "single node elects itself"
    );
    let d = node.dispatcher().clone();
    for i in 0..5 {
        let set = Command::Set {
            key: Bytes::from(format!("k{i}")),
            value: Bytes::from("v"),
            ttl_ms: None,
            cond: kvnode::raft::SetCond::Always,
        };
        assert_eq!(d.run(set).await, Reply::Simple("OK"));
    }
    let right = d.run(Command::Split(Bytes::from("k3"))).await;
    let Reply::Int(right_id) = right else {
        panic!("split answered {right:?}")
    };
    let routes_before = d.catalog().routes().len();
    drop(d);
    // Shutdown flushes the open KeyViz column, which goes to the database.
    node.shutdown().await;

    let node = kvnode::node::start(cfg).await.expect("restart");
    assert!(node.wait_ready(Duration::from_secs(20)).await);
    let d = node.dispatcher().clone();
    assert_eq!(
        d.run(Command::Get(Bytes::from("k4"))).await,
        Reply::Bulk(Some(b"v".to_vec()))
    );
    assert_eq!(
        d.catalog().routes().len(),
        routes_before,
        "the split survived"
    );
    assert!(d.catalog().route(right_id as u64).is_some());
    assert_eq!(
        writes_total(&node),
        5,
        "the five SETs are in the reloaded history"
    );
    node.shutdown().await;
}
