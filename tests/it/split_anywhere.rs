//! Splits sent to any node, including nodes that do not lead the owning group.

use std::collections::BTreeSet;

use crate::util::{Cluster, Opts, Reply, Resp};

/// 300 strictly increasing split keys, sent round-robin to every node (so two of every three
/// reach a node that does not lead the owning group, often with a catalog that has not yet
/// applied the previous split): every split succeeds with a new route id, and a key that is
/// already a boundary is refused.
#[test]
fn splits_sent_to_any_node_all_succeed_and_only_boundaries_are_refused() {
    let c = Cluster::start(Opts {
        groups: 1,
        ..Opts::default()
    });
    let leader = c.leader_of(0, 1).expect("group 1 has a leader");
    let mut conns: Vec<Resp> = c
        .nodes
        .iter()
        .map(|n| Resp::connect(n.resp).expect("connect"))
        .collect();
    let mut ids = BTreeSet::new();
    let mut to_followers = 0;
    for i in 0..300u64 {
        let node = (i % 3) as usize;
        if node as u64 + 1 != leader {
            to_followers += 1;
        }
        let key = format!("sk:{i:05}");
        match conns[node].call(&["KEYVIZ.SPLIT", &key]) {
            Ok(Reply::Int(id)) => assert!(ids.insert(id), "route id {id} returned twice"),
            other => panic!("split {i} at {key} sent to node {}: {other:?}", node + 1),
        }
    }
    assert_eq!(ids.len(), 300);
    assert!(
        to_followers >= 200,
        "{to_followers} splits went to followers"
    );
    for (node, conn) in conns.iter_mut().enumerate() {
        match conn.call(&["KEYVIZ.SPLIT", "sk:00150"]) {
            Ok(Reply::Error(e)) => assert!(e.contains("already the start of route"), "{e}"),
            other => panic!("re-split at a boundary via node {}: {other:?}", node + 1),
        }
    }
}
