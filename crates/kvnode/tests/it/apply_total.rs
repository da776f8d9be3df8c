//! Applying never panics: an entry the store cannot hold is refused on apply, and a node whose
//! log holds such an entry restarts and serves.

use std::net::TcpListener;
use std::time::Duration;

use bytes::Bytes;
use kvnode::config::NodeConfig;
use kvnode::dispatch::now_unix_ms;
use kvnode::raft::{KvOp, KvRequest, KvResponse, RequestId, SessionId, SetCond};
use kvnode::resp::{Command, Reply};

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").to_string()
}

fn set(key: Vec<u8>, value: &[u8]) -> KvOp {
    KvOp::Set {
        key,
        value: value.to_vec(),
        expire_at_unix_ms: 0,
        cond: SetCond::Always,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_key_in_the_log_is_rejected_and_the_node_restarts_and_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = NodeConfig {
        node_id: 1,
        resp_addr: free_addr(),
        raft_addr: free_addr(),
        data_dir: dir.path().to_path_buf(),
        groups: 1,
        step_ms: 1_000,
        fsync: false,
        ..NodeConfig::default()
    };
    let node = kvnode::node::start(cfg.clone()).await.expect("start");
    assert!(node.wait_ready(Duration::from_secs(20)).await);
    let groups = node.dispatcher().groups().clone();
    let big = vec![b'k'; 70_000];
    // Straight into the log, past every front-door check.
    let req = KvRequest {
        now_unix_ms: now_unix_ms(),
        op: set(big.clone(), b"v"),
        request: None,
    };
    let committed = groups.propose(1, req).await.expect("propose");
    assert!(
        matches!(committed.response, KvResponse::Rejected(ref t) if t.contains("key")),
        "{:?}",
        committed.response
    );
    let d = node.dispatcher().clone();
    let get_big = Command::Get(Bytes::from(big.clone()));
    assert_eq!(
        d.run(get_big.clone()).await,
        Reply::Bulk(None),
        "read of an oversized key"
    );
    let ok = Command::Set {
        key: Bytes::from("after"),
        value: Bytes::from("v"),
        ttl_ms: None,
        cond: SetCond::Always,
    };
    assert_eq!(
        d.run(ok).await,
        Reply::Simple("OK"),
        "the group still takes writes"
    );
    drop((d, groups));
    node.shutdown().await;

    let node = kvnode::node::start(cfg)
        .await
        .expect("restart on the same log");
    assert!(
        node.wait_ready(Duration::from_secs(20)).await,
        "no crash loop"
    );
    let d = node.dispatcher().clone();
    assert_eq!(
        d.run(Command::Get(Bytes::from("after"))).await,
        Reply::Bulk(Some(b"v".to_vec()))
    );
    assert_eq!(d.run(get_big).await, Reply::Bulk(None));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_repeated_with_its_request_id_applies_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = NodeConfig {
        node_id: 1,
        resp_addr: free_addr(),
        raft_addr: free_addr(),
        data_dir: dir.path().to_path_buf(),
        groups: 1,
        fsync: false,
        ..NodeConfig::default()
    };
    let node = kvnode::node::start(cfg).await.expect("start");
    assert!(node.wait_ready(Duration::from_secs(20)).await);
    let groups = node.dispatcher().groups().clone();
    let id = RequestId {
        session: SessionId {
            node: 9,
            epoch: 1,
            conn: 1,
        },
        seq: 1,
    };
    let incr = KvRequest {
        now_unix_ms: now_unix_ms(),
        op: KvOp::IncrBy {
            key: b"n".to_vec(),
            delta: 5,
        },
        request: Some(id),
    };
    let first = groups.propose(1, incr.clone()).await.expect("propose");
    let retry = groups.propose(1, incr).await.expect("propose again");
    assert_eq!(first.response, KvResponse::Int(5));
    assert_eq!(retry.response, KvResponse::Int(5), "the cached answer");
    let d = node.dispatcher().clone();
    assert_eq!(
        d.run(Command::Get(Bytes::from("n"))).await,
        Reply::Bulk(Some(b"5".to_vec())),
        "applied once"
    );
    drop((d, groups));
    node.shutdown().await;
}
