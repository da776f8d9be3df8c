//! `leaders` in the operator's matrix answer over real HTTP: the entry node names, from its
//! own source, the leader of every write identity the answer's cells carry — alone, with a
//! peer, and in diff mode (which also keeps the per-node coverage).

use std::sync::Arc;

use http::StatusCode;
use keyviz::Series::{Reads, Writes};
use keyviz::{Matrix, MatrixQuery};
use keyviz_admin::{MatrixSource, SourceError, TermLeader};

use crate::util::*;

const MATRIX: &str = "/admin/api/v1/keyviz/matrix";

/// A fixed source that also knows who led which term.
struct Led {
    inner: Arc<FixedSource>,
    table: Vec<TermLeader>,
}

impl MatrixSource for Led {
    fn matrix(&self, query: &MatrixQuery, now: i64) -> Result<Matrix, SourceError> {
        self.inner.matrix(query, now)
    }

    fn term_leaders(&self, wanted: &[(u64, u64)]) -> Vec<TermLeader> {
        self.table
            .iter()
            .filter(|l| wanted.contains(&(l.group, l.term)))
            .cloned()
            .collect()
    }
}

fn led(group: u64, term: u64, node: &str) -> TermLeader {
    TermLeader {
        group,
        term,
        node_id: node.to_string(),
    }
}

/// The answer's leaders as (group, term, node) triples, in order.
fn leaders(v: &serde_json::Value) -> Vec<(u64, u64, String)> {
    v["leaders"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["group"].as_u64().unwrap_or(0),
                l["term"].as_u64().unwrap_or(0),
                l["node_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

async fn get(s: &Server, sess: &Session, q: &str) -> serde_json::Value {
    let r = get_with(&s.url(&format!("{MATRIX}{q}")), &sess.headers()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

/// `m` on a 1 s step (coverage is judged only on a known step).
fn stepped(mut m: Matrix) -> Matrix {
    m.step_ms = 1000;
    m
}

fn table() -> Vec<TermLeader> {
    vec![
        led(7, 42, "n1"),
        led(7, 43, "n2"),
        led(8, 5, "n3"),
        led(9, 1, "n1"), // a term no cell carries
    ]
}

#[tokio::test]
async fn a_single_node_names_the_leaders_of_its_cells_terms_only() {
    let local = mx(
        Writes,
        &[1000, 2000],
        &[
            ("route:1", &[3, 4], &[7, 7], &[42, 43]),
            ("route:2", &[1, 0], &[8, 0], &[5, 0]),
            ("route:3", &[1, 1], &[8, 8], &[6, 6]), // term 6: nobody known
        ],
    );
    let source = Arc::new(Led {
        inner: FixedSource::new(vec![local]),
        table: table(),
    });
    let s = start_node("n1", bind().await, source, fanout_config(&[])).await;
    let sess = login(&s, "bob", "bob-secret").await;
    let v = get(&s, &sess, "").await;
    assert_eq!(
        leaders(&v),
        vec![
            (7, 42, "n1".into()),
            (7, 43, "n2".into()),
            (8, 5, "n3".into())
        ],
        "{v}"
    );
    // Reads carry no term: no leaders, and the field is left out.
    let reads = get(&s, &sess, "?series=reads").await;
    assert!(reads.get("leaders").is_none(), "{reads}");
}

#[tokio::test]
async fn a_cluster_answer_names_the_terms_a_peer_contributed_and_diff_mode_keeps_them() {
    // The peer (an older node: its answer has no leaders) carries term 43, the entry node 42.
    let (p, _) = fake_peer(
        "n2",
        Behaviour::Body(peer_body(
            // It has no column 2000 (it was restarting): a coverage gap.
            stepped(mx(
                Writes,
                &[1000, 3000],
                &[("route:1", &[0, 9], &[7, 7], &[43, 43])],
            )),
            "n2",
        )),
    )
    .await;
    let local = stepped(mx(
        Writes,
        &[1000, 2000, 3000],
        &[("route:1", &[5, 1, 0], &[7, 7, 7], &[42, 42, 42])],
    ));
    let source = Arc::new(Led {
        inner: FixedSource::new(vec![local, mx(Reads, &[1000], &[])]),
        table: table(),
    });
    let s = start_node(
        "n1",
        bind().await,
        source,
        fanout_config(&[p.addr.to_string()]),
    )
    .await;
    let sess = login(&s, "bob", "bob-secret").await;
    let v = get(&s, &sess, "").await;
    assert_eq!(v["fanout"]["responded"], 2, "{v}");
    assert_eq!(row_values(&v, "route:1"), vec![5, 1, 9]);
    assert_eq!(v["coverage"][0]["node_id"], "n2", "{v}");
    assert_eq!(
        leaders(&v),
        vec![(7, 42, "n1".into()), (7, 43, "n2".into())],
        "{v}"
    );
    let diff = get(
        &s,
        &sess,
        "?baseline_from_unix_ms=1&baseline_to_unix_ms=1000",
    )
    .await;
    assert!(diff.get("compare").is_some(), "{diff}");
    assert_eq!(leaders(&diff), leaders(&v), "diff mode names them too");
    assert_eq!(
        diff["coverage"], v["coverage"],
        "and keeps the outage lanes"
    );
}
