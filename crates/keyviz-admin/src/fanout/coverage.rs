//! Per-node coverage of a merged matrix: for every node that answered, the runs of merged
//! columns its own answer lacked. A node that was down (killed, restarting) flushed no column
//! for those steps, so its history has a gap there; the merged heatmap alone cannot show it
//! (the other replicas' writes fill the cells), so the browser marks these runs per node
//! under the time axis. Added to the operator's matrix response as `coverage` (omitted when
//! no node has a gap); peers never get it.
//!
//! Only gaps *inside* a node's own span are reported: columns before its first one (a node
//! that joined later, or keeps a shorter history) and after its last one (a peer that has not
//! flushed the newest step yet — peers flush at slightly different moments) are not outages.

use bytes::Bytes;
use keyviz::Matrix;
use serde::Serialize;

use super::status::FanoutStatus;
use crate::api::ApiError;
use crate::host::TermLeader;

/// Most gap runs reported per node (the rest are counted in `truncated`): a flapping node
/// over a week of columns must not grow the response without bound.
pub const MAX_GAPS_PER_NODE: usize = 256;

/// The gaps of one node that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeCoverage {
    /// The node's name, as in `fanout.nodes[].node`.
    pub node: String,
    /// Its id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Runs of merged columns missing from its answer: `[from, to)` unix ms, `to` being the
    /// end of the last missing step. Ascending, at most [`MAX_GAPS_PER_NODE`].
    pub missing: Vec<[i64; 2]>,
    /// Runs left out beyond [`MAX_GAPS_PER_NODE`].
    #[serde(skip_serializing_if = "is_zero")]
    pub truncated: usize,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The columns one node answered with, kept while its answer is merged (timestamps only, so
/// a fan-out that folds answers one at a time can record them without holding the matrices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeColumns {
    /// Index of the node in `FanoutStatus::nodes`.
    pub node: usize,
    /// The node's step; an answer on another step than the merge is not judged.
    pub step_ms: u64,
    /// Its column starts, ascending (as on the wire).
    pub columns: Vec<i64>,
    /// The id the answer carried, used when the status has none.
    pub node_id: Option<String>,
}

impl NodeColumns {
    /// Records the columns of `answer`, the contribution of `status.nodes[node]`.
    #[must_use = "the record is the result"]
    pub fn of(node: usize, answer: &Matrix) -> NodeColumns {
        NodeColumns {
            node,
            step_ms: answer.step_ms,
            columns: answer.column_unix_ms.clone(),
            node_id: answer.node_id.clone(),
        }
    }
}

/// The gap runs of every input against `merged`. `input_node[i]` is the index in
/// `status.nodes` of input `i`. Pure; takes no lock.
#[must_use = "the coverage is the result"]
pub fn gaps(
    merged: &Matrix,
    inputs: &[Matrix],
    input_node: &[usize],
    status: &FanoutStatus,
) -> Vec<NodeCoverage> {
    gaps_of(merged, &record(inputs, input_node), status)
}

/// The columns of every input, `input_node[i]` being the status index of input `i`.
fn record(inputs: &[Matrix], input_node: &[usize]) -> Vec<NodeColumns> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, m)| NodeColumns::of(input_node.get(i).copied().unwrap_or(usize::MAX), m))
        .collect()
}

/// The gap runs of every recorded answer against `merged` (see the module doc for what
/// counts as a gap). Pure; takes no lock.
#[must_use = "the coverage is the result"]
pub fn gaps_of(
    merged: &Matrix,
    answers: &[NodeColumns],
    status: &FanoutStatus,
) -> Vec<NodeCoverage> {
    let step = i64::try_from(merged.step_ms).unwrap_or(0);
    let mut out = Vec::new();
    if step <= 0 || merged.column_unix_ms.is_empty() {
        return out;
    }
    for (i, answer) in answers.iter().enumerate() {
        if answer.step_ms != merged.step_ms {
            continue;
        }
        let (Some(&first), Some(&last)) = (answer.columns.first(), answer.columns.last()) else {
            continue;
        };
        let mut missing = Vec::new();
        let mut truncated = 0;
        let mut run: Option<[i64; 2]> = None;
        let mut theirs = answer.columns.iter().peekable();
        for &t in merged
            .column_unix_ms
            .iter()
            .filter(|&&t| t > first && t < last)
        {
            while theirs.next_if(|&&c| c < t).is_some() {}
            if theirs.peek() == Some(&&t) {
                if let Some(r) = run.take() {
                    push_run(&mut missing, &mut truncated, r);
                }
                continue;
            }
            run = Some(match run {
                Some([from, _]) => [from, t + step],
                None => [t, t + step],
            });
        }
        if let Some(r) = run {
            push_run(&mut missing, &mut truncated, r);
        }
        if missing.is_empty() {
            continue;
        }
        let node = status.nodes.get(answer.node);
        out.push(NodeCoverage {
            node: node.map_or_else(|| format!("input {i}"), |n| n.node.clone()),
            node_id: node
                .and_then(|n| n.node_id.clone())
                .or(answer.node_id.clone()),
            missing,
            truncated,
        });
    }
    out
}

fn push_run(missing: &mut Vec<[i64; 2]>, truncated: &mut usize, run: [i64; 2]) {
    if missing.len() < MAX_GAPS_PER_NODE {
        missing.push(run);
    } else {
        *truncated += 1;
    }
}

#[derive(Serialize)]
struct Response<'a> {
    #[serde(flatten)]
    matrix: &'a Matrix,
    fanout: &'a FanoutStatus,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    coverage: &'a [NodeCoverage],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    leaders: &'a [TermLeader],
}

/// Encodes the operator's matrix response (as `encode_response`, with trailing newline)
/// plus the `coverage` of the answers recorded with [`NodeColumns::of`] while they were
/// folded, and the `leaders` of its write identities (see [`crate::leaders`]).
///
/// # Errors
/// 500 `internal` if serialisation fails.
pub(crate) fn encode_with(
    matrix: &Matrix,
    status: &FanoutStatus,
    answers: &[NodeColumns],
    leaders: &[TermLeader],
) -> Result<Bytes, ApiError> {
    let coverage = gaps_of(matrix, answers, status);
    // Grown by doubling, not reserved in one piece: a ~13 MB reservation made glibc keep
    // ~50 MB more of freed memory over a run of 32-peer queries (docs/perf-admin.md).
    let mut body = Vec::new();
    serde_json::to_writer(
        &mut body,
        &Response {
            matrix,
            fanout: status,
            coverage: &coverage,
            leaders,
        },
    )
    .map_err(|e| ApiError::internal(format!("encode matrix: {e}")))?;
    body.push(b'\n');
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::status::NodeStatus;
    use keyviz::Series;

    const STEP: i64 = 5_000;

    fn m(cols: &[i64], node: &str) -> Matrix {
        let mut m = Matrix::empty(Series::Writes, 5_000, String::new());
        m.column_unix_ms = cols.iter().map(|c| c * STEP).collect();
        m.node_id = Some(node.to_string());
        m
    }

    fn status(n: usize) -> FanoutStatus {
        FanoutStatus {
            nodes: (0..n)
                .map(|i| NodeStatus {
                    node: format!("h{i}"),
                    node_id: Some(format!("n{i}")),
                    ok: true,
                    error: None,
                    reason: None,
                    generated_at: None,
                    elapsed_ms: 0,
                    warnings: Vec::new(),
                })
                .collect(),
            responded: n,
            expected: n,
        }
    }

    #[test]
    fn a_node_that_was_down_has_its_missing_columns_reported_as_one_run() {
        let merged = m(&[0, 1, 2, 3, 4, 5, 6, 7], "n0");
        let whole = m(&[0, 1, 2, 3, 4, 5, 6, 7], "n0");
        let restarted = m(&[0, 1, 5, 6, 7], "n1");
        let g = gaps(&merged, &[whole, restarted], &[0, 1], &status(2));
        assert_eq!(g.len(), 1, "only the restarted node has a gap: {g:?}");
        assert_eq!(g[0].node, "h1");
        assert_eq!(g[0].node_id.as_deref(), Some("n1"));
        assert_eq!(g[0].missing, vec![[2 * STEP, 5 * STEP]]);
        assert_eq!(g[0].truncated, 0);
    }

    #[test]
    fn columns_before_a_nodes_first_and_after_its_last_are_not_gaps() {
        // n1 joined at column 3 and has not flushed column 7 yet: neither is an outage.
        let merged = m(&[0, 1, 2, 3, 4, 5, 6, 7], "n0");
        let late = m(&[3, 4, 6], "n1");
        let g = gaps(&merged, &[merged.clone(), late], &[0, 1], &status(2));
        assert_eq!(g.len(), 1);
        assert_eq!(
            g[0].missing,
            vec![[5 * STEP, 6 * STEP]],
            "only the interior hole"
        );
    }

    #[test]
    fn another_step_is_skipped_and_runs_are_capped() {
        let merged = m(&(0..2_000).collect::<Vec<_>>(), "n0");
        let mut other_step = m(&[0, 10], "n1");
        other_step.step_ms = 10_000;
        // Every other column missing: 999 runs, capped.
        let flapping = m(&(0..2_000).step_by(2).collect::<Vec<_>>(), "n2");
        let g = gaps(&merged, &[other_step, flapping], &[1, 2], &status(3));
        assert_eq!(g.len(), 1, "the node on another step is not judged");
        assert_eq!(g[0].missing.len(), MAX_GAPS_PER_NODE);
        assert_eq!(g[0].missing.len() + g[0].truncated, 999);
        assert!(
            g[0].missing.windows(2).all(|w| w[0][1] <= w[1][0]),
            "ascending, disjoint"
        );
    }

    #[test]
    fn recorded_columns_give_the_same_gaps_as_the_matrices() {
        let merged = m(&[0, 1, 2, 3, 4, 5], "n0");
        let restarted = m(&[0, 3, 5], "n1");
        let st = status(2);
        let from_inputs = gaps(&merged, &[merged.clone(), restarted.clone()], &[0, 1], &st);
        let recorded = [NodeColumns::of(0, &merged), NodeColumns::of(1, &restarted)];
        assert_eq!(gaps_of(&merged, &recorded, &st), from_inputs);
        assert_eq!(
            from_inputs[0].missing,
            vec![[STEP, 3 * STEP], [4 * STEP, 5 * STEP]]
        );
        let body = encode_with(&merged, &st, &recorded, &[]).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["coverage"][0]["node"], "h1");
    }

    #[test]
    fn the_response_carries_coverage_only_when_a_node_has_a_gap() {
        let merged = m(&[0, 1, 2, 3], "n0");
        let st = status(2);
        let with_gap = encode_with(
            &merged,
            &st,
            &record(&[merged.clone(), m(&[0, 3], "n1")], &[0, 1]),
            &[],
        )
        .expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&with_gap).expect("json");
        assert_eq!(v["coverage"][0]["node_id"], "n1");
        assert_eq!(
            v["coverage"][0]["missing"],
            serde_json::json!([[STEP, 3 * STEP]])
        );
        assert_eq!(v["fanout"]["responded"], 2);
        assert_eq!(v["column_unix_ms"].as_array().map(Vec::len), Some(4));
        let none = encode_with(
            &merged,
            &st,
            &record(&[merged.clone(), merged.clone()], &[0, 1]),
            &[],
        )
        .expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&none).expect("json");
        assert!(v.get("coverage").is_none(), "omitted without gaps: {v}");
        // Without gaps the body is byte-for-byte the plain response.
        assert_eq!(
            none,
            super::super::encode_response(&merged, Some(&st)).expect("encode")
        );
    }
}
