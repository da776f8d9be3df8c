//! The cluster's hot keys: this node's answer plus every peer's node-local answer, merged
//! with [`keyviz::hotkeys::merge_hot_keys`], with the matrix fan-out's per-node status.
//!
//! ```text
//!  cluster_hot_keys ──► single flight (same query) ──► fan-out slot
//!      ├─ local  MatrixSource::hot_keys (blocking pool)
//!      └─ peers  GET /admin/api/v1/keyviz/hotkeys (peer token; shared client, timeout, cap)
//!                 ──► decode ──► NodeHotKeys::validate, series, node id, mode
//!  ──► drop unavailable / other-mode inputs (reported per node) ──► merge_hot_keys ──► k
//! ```
//!
//! The HTTP endpoint and kvnode's RESP `HOTKEYS` both answer through [`cluster_hot_keys`].

use std::sync::Arc;
use std::time::Instant;

use keyviz::Series;
use keyviz::hotkeys::{
    HotKeyMode, HotKeyQuery, HotKeys, HotPart, MAX_HOT_KEYS_K, MAX_HOT_PARTS, NodeHotKeys,
    merge_hot_keys,
};
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::clock;
use crate::fanout::assemble::Assembly;
use crate::fanout::client::PeerError;
use crate::fanout::membership::{PeerTarget, hot_keys_url, peer_targets};
use crate::fanout::single_flight::Joined;
use crate::fanout::status::FanoutStatus;
use crate::fanout::{
    PeerAnswer, PeerReply, call_peers, check_answer_id, elapsed_ms, peer_get, source_error,
};
use crate::host::SourceError;
use crate::state::{AdminState, Inner};

/// Reason of a node that keeps no hot keys (older node, KeyViz or capture off).
pub const REASON_HOT_KEYS_UNAVAILABLE: &str = "hot_keys_unavailable";
/// Reason of a node whose capture mode differs from the cluster answer's (e.g. `hashed`
/// while the others are `raw`): its keys cannot be compared, so it is not merged.
pub const REASON_MODE_MISMATCH: &str = "hot_keys_mode_mismatch";

/// Keys each node is asked for when the cluster wants `k`: more than `k` (4×, at least 64,
/// at most [`MAX_HOT_KEYS_K`]), so a key that is second on every node but first in the
/// cluster is listed with tight bounds instead of being folded into each node's floor.
#[must_use = "pure function"]
pub fn node_k(k: usize) -> usize {
    k.saturating_mul(4).clamp(64, MAX_HOT_KEYS_K)
}

/// The cluster's hot keys for one query: the merged answer plus the fan-out status.
///
/// Serialises as the body of `GET /admin/api/v1/keyviz/hotkeys`:
/// `{"series","mode","keys":[...],"total","floor","sampled","warnings"?,"from_unix_ms",
/// "to_unix_ms","fanout"}` (the `hot` fields flattened; `from_unix_ms`/`to_unix_ms` echo
/// the query, `null` = unbounded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterHotKeys {
    /// The merged hot keys, hottest first, at most `k`; `share` is relative to `total`, the
    /// exact count of the selected range and window (writes once per raft group and term).
    #[serde(flatten)]
    pub hot: HotKeys,
    /// Inclusive lower bound of the window asked for (`None` = unbounded).
    pub from_unix_ms: Option<i64>,
    /// Exclusive upper bound of the window asked for (`None` = unbounded).
    pub to_unix_ms: Option<i64>,
    /// Per-node outcomes, self first, as in the matrix's `fanout` block. A node without hot
    /// keys has `ok: false` and `reason: "hot_keys_unavailable"`.
    pub fanout: FanoutStatus,
}

/// Identity of a coalescible hot-keys request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct HotFlightKey {
    series: Series,
    from_unix_ms: Option<i64>,
    to_unix_ms: Option<i64>,
    key_start: Option<Vec<u8>>,
    key_end: Option<Vec<u8>>,
    k: usize,
}

impl From<&HotKeyQuery> for HotFlightKey {
    fn from(q: &HotKeyQuery) -> Self {
        HotFlightKey {
            series: q.series,
            from_unix_ms: q.from_unix_ms,
            to_unix_ms: q.to_unix_ms,
            key_start: q.key_start.clone(),
            key_end: q.key_end.clone(),
            k: q.k,
        }
    }
}

/// The cluster's hot keys for `query`, as an operator sees them: this node's
/// [`MatrixSource::hot_keys`](crate::MatrixSource::hot_keys) plus every peer's node-local
/// answer (peers as for the matrix: static list and membership, self aliases and duplicates
/// skipped), merged with [`merge_hot_keys`] and cut to `query.k`.
///
/// Guarantees: never fails because of a peer — a peer that is down, slow, answers garbage or
/// a hostile summary (bounds beyond its total, too many parts, another series) is that
/// node's `ok: false` entry in `fanout` and is never merged; a peer or this node without hot
/// keys (older node answering 404, KeyViz off, `--hot-keys=off`) is reported with reason
/// [`REASON_HOT_KEYS_UNAVAILABLE`], never silently missing. Identical concurrent queries
/// share one fan-out, and a finished result is reused for `result_reuse` (then `now_unix_ms`
/// of the first caller applies).
///
/// Blocks on (asynchronously): a fan-out slot (`max_concurrent_fanouts`, shared with the
/// matrix), the local query on tokio's blocking pool (not bounded by the timeout; it takes
/// whatever locks the source takes — for `keyviz::Sampler`, its history read lock), and the
/// peer calls, each bounded by `fanout_timeout` (connect to decoded answer), run in parallel.
/// So it returns within about `fanout_timeout` plus the local query and merge time. Locks:
/// only brief `parking_lot` mutexes (single-flight table, peer table), never held across an
/// await. Peer tokens are minted from the wall clock; `now_unix_ms` is the local query's
/// "now". Needs a tokio runtime (it spawns the shared computation).
///
/// # Errors
/// 400 `invalid_query` when `query` fails [`HotKeyQuery::validate`]; 503 `keyviz_disabled`
/// when KeyViz is off on this node; 500 `internal` when the local source fails.
pub async fn cluster_hot_keys(
    state: &AdminState,
    query: HotKeyQuery,
    now_unix_ms: i64,
) -> Result<ClusterHotKeys, ApiError> {
    cluster_hot_keys_joined(&state.inner, query, now_unix_ms)
        .await
        .map(|(hot, _)| hot)
}

/// [`cluster_hot_keys`] plus how the caller was served (for metrics).
pub(crate) async fn cluster_hot_keys_joined(
    inner: &Arc<Inner>,
    query: HotKeyQuery,
    now_unix_ms: i64,
) -> Result<(ClusterHotKeys, Joined), ApiError> {
    query
        .validate()
        .map_err(|e| ApiError::invalid_query(e.to_string()))?;
    if !inner.source.is_enabled() {
        return Err(ApiError::keyviz_disabled());
    }
    let key = HotFlightKey::from(&query);
    let work = inner.clone();
    let (out, joined) = inner
        .hot_flights
        .run(
            key,
            move || async move { Arc::new(run(work, query, now_unix_ms).await) },
            || Arc::new(Err(ApiError::internal("hot-keys fan-out task panicked"))),
        )
        .await;
    inner.metrics.hot_keys_request(match joined {
        Joined::Leader => "fanout",
        Joined::Shared => "shared",
        Joined::Reused => "reused",
    });
    match out.as_ref() {
        Ok(hot) => Ok((hot.clone(), joined)),
        Err(e) => Err(e.clone()),
    }
}

/// This node's hot keys for `query` (already validated), with our node id; `Ok(Err(why))`
/// when this node keeps none (source without hot keys, or capture mode off).
pub(crate) async fn local_hot_keys(
    inner: &Arc<Inner>,
    query: &HotKeyQuery,
    now_unix_ms: i64,
) -> Result<Result<NodeHotKeys, String>, ApiError> {
    let q = query.clone();
    let work = inner.clone();
    let res = tokio::task::spawn_blocking(move || work.source.hot_keys(&q, now_unix_ms))
        .await
        .map_err(ApiError::internal)?;
    match res {
        Ok(hot) if hot.mode == HotKeyMode::Off => Ok(Err(
            "this node captures no key names (--hot-keys=off)".to_string(),
        )),
        Ok(mut hot) => {
            hot.node_id = Some(inner.identity.node_id().to_string());
            bound_items(&mut hot, query.k);
            Ok(Ok(hot))
        }
        Err(SourceError::Disabled) => Ok(Err("this node keeps no hot keys".to_string())),
        Err(e) => Err(source_error(e)),
    }
}

/// Maps the statuses that mean "no hot keys there" to [`PeerError::HotKeysUnavailable`].
fn unavailable(e: PeerError) -> PeerError {
    match e {
        PeerError::Status { status: 404, body } => PeerError::HotKeysUnavailable(format!(
            "peer answered 404 (an older node without the hot-keys endpoint?): {body}"
        )),
        PeerError::Status { status: 503, body } if body.contains("keyviz_disabled") => {
            PeerError::HotKeysUnavailable(format!("KeyViz is off on that node: {body}"))
        }
        other => other,
    }
}

/// [`NodeHotKeys`] as a peer sends it, decoded with the part count bounded while parsing, so
/// a hostile body cannot make us build more than [`MAX_HOT_PARTS`] parts.
#[derive(Deserialize)]
struct WireNodeHotKeys {
    series: Series,
    mode: HotKeyMode,
    #[serde(default)]
    node_id: Option<String>,
    #[serde(default, deserialize_with = "bounded_parts")]
    parts: Vec<HotPart>,
}

fn bounded_parts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<HotPart>, D::Error> {
    struct Parts;
    impl<'de> serde::de::Visitor<'de> for Parts {
        type Value = Vec<HotPart>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "at most {MAX_HOT_PARTS} hot-key parts")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(part) = seq.next_element::<HotPart>()? {
                if parts.len() == MAX_HOT_PARTS {
                    return Err(serde::de::Error::custom(TOO_MANY_PARTS));
                }
                parts.push(part);
            }
            Ok(parts)
        }
    }
    d.deserialize_seq(Parts)
}

const TOO_MANY_PARTS: &str = "more than 65536 parts";
const _: () = assert!(MAX_HOT_PARTS == 65_536, "keep TOO_MANY_PARTS in step");

/// Decodes and checks one peer's hot-key body: a `NodeHotKeys` of at most `MAX_HOT_PARTS`
/// parts (counted while parsing) that passes `NodeHotKeys::validate` and answers the series
/// asked for. Parts are trimmed to `k` (and all parts together to [`MAX_NODE_HOT_ITEMS`]) so
/// a peer listing more cannot make the merge costlier than asked.
///
/// # Errors
/// [`PeerError::Decode`] for syntax/types, [`PeerError::InvalidHotKeys`] for invariants and
/// limits.
pub fn decode_node_hot_keys(
    body: &[u8],
    series: Series,
    k: usize,
) -> Result<NodeHotKeys, PeerError> {
    let wire: WireNodeHotKeys = serde_json::from_slice(body).map_err(|e| {
        if e.to_string().contains(TOO_MANY_PARTS) {
            PeerError::InvalidHotKeys(e.to_string())
        } else {
            PeerError::Decode(e.to_string())
        }
    })?;
    // No `..`: a field added to NodeHotKeys must be decoded here too.
    let mut hot = NodeHotKeys {
        series: wire.series,
        mode: wire.mode,
        node_id: wire.node_id,
        parts: wire.parts,
    };
    hot.validate()
        .map_err(|e| PeerError::InvalidHotKeys(e.to_string()))?;
    crate::fanout::bounds::check_hot_total(&hot)?;
    if hot.series != series {
        return Err(PeerError::InvalidHotKeys(format!(
            "answered series {} instead of {series}",
            hot.series
        )));
    }
    bound_items(&mut hot, k);
    Ok(hot)
}

/// Most keys one node's answer contributes to a merge, over all its parts.
pub const MAX_NODE_HOT_ITEMS: usize = 131_072;

/// Trims every part to `k` keys, and further (evenly) when the parts together list more
/// than [`MAX_NODE_HOT_ITEMS`], so the merge's work per node is bounded whatever a node
/// sends. Trimming is honest: a dropped key's upper bound joins the part's floor, so the
/// merged bounds still hold, only less tightly.
fn bound_items(hot: &mut NodeHotKeys, k: usize) {
    let listed: usize = hot.parts.iter().map(|p| p.summary.items.len().min(k)).sum();
    let keep = if listed > MAX_NODE_HOT_ITEMS {
        (MAX_NODE_HOT_ITEMS / hot.parts.len().max(1)).max(1)
    } else {
        k
    };
    for part in &mut hot.parts {
        part.summary.trim(keep);
    }
}

async fn call_peer(
    inner: Arc<Inner>,
    target: PeerTarget,
    query: HotKeyQuery,
    k: usize,
) -> Result<PeerAnswer<Result<NodeHotKeys, String>>, PeerError> {
    let reply = peer_get(
        &inner,
        &target,
        |base| hot_keys_url(base, &query, k),
        "application/json",
    )
    .await
    .map_err(unavailable)?;
    let (body, node_id) = match reply {
        PeerReply::SelfAlias => return Ok(PeerAnswer::SelfAlias),
        PeerReply::Body { body, node_id, .. } => (body, node_id),
    };
    let series = query.series;
    // Up to `fanout_body_cap` of JSON: decode off the async workers.
    let hot = tokio::task::spawn_blocking(move || decode_node_hot_keys(&body, series, k))
        .await
        .map_err(|e| PeerError::Decode(e.to_string()))??;
    if hot.mode == HotKeyMode::Off {
        return Err(PeerError::HotKeysUnavailable(
            "that node captures no key names (--hot-keys=off)".to_string(),
        ));
    }
    let answered = hot.node_id.clone();
    check_answer_id(&inner, node_id, answered.as_deref(), Ok(hot), None)
}

/// Runs one complete hot-keys fan-out.
async fn run(
    inner: Arc<Inner>,
    query: HotKeyQuery,
    now_unix_ms: i64,
) -> Result<ClusterHotKeys, ApiError> {
    let _slot = inner
        .fanout_slots
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let started = Instant::now();
    // When the peers are asked: the peer table keeps the newest attempt, not the last to end.
    let attempted_ms = clock::now_unix_ms();
    let members = inner.membership.members();
    let targets = peer_targets(&inner.identity, &inner.config.fanout_nodes, &members);
    let k = node_k(query.k);
    let node_query = HotKeyQuery { k, ..query.clone() };
    let calls = call_peers(&inner, &targets, inner.config.fanout_timeout, |inner, t| {
        call_peer(inner, t, query.clone(), k)
    });
    let local_started = Instant::now();
    let local_fut = async {
        let r = local_hot_keys(&inner, &node_query, now_unix_ms).await;
        (r, elapsed_ms(local_started))
    };
    let ((local, local_elapsed), answers) = tokio::join!(local_fut, calls);
    let mut acc = Assembly::new(&inner, local?, None, local_elapsed);
    for (target, (res, elapsed)) in targets.iter().zip(answers) {
        acc.add(&inner, target, res, elapsed, attempted_ms);
    }
    let Assembly {
        mut nodes,
        inputs,
        input_node,
        expected,
        ..
    } = acc;
    // The cluster answer takes the mode of the first node with hot keys (this node first);
    // a node in another mode names keys differently, so it is reported, not merged.
    let mut mode = None;
    let mut merge_inputs = Vec::with_capacity(inputs.len());
    for (input, idx) in inputs.into_iter().zip(input_node) {
        let Some(st) = nodes.get_mut(idx) else {
            continue;
        };
        match input {
            Err(why) => {
                st.ok = false;
                st.reason = Some(REASON_HOT_KEYS_UNAVAILABLE.to_string());
                st.error = Some(why);
            }
            Ok(hot) if mode.is_some_and(|m| m != hot.mode) => {
                st.ok = false;
                st.reason = Some(REASON_MODE_MISMATCH.to_string());
                st.error = Some(format!(
                    "captures keys in mode {} but the cluster answer is in mode {}; not merged",
                    hot.mode,
                    mode.unwrap_or_default()
                ));
            }
            Ok(hot) => {
                mode = Some(hot.mode);
                merge_inputs.push(hot);
            }
        }
    }
    let responded = merge_inputs.len();
    let series = query.series;
    let want = query.k;
    let hot = tokio::task::spawn_blocking(move || {
        if merge_inputs.is_empty() {
            HotKeys {
                series,
                mode: HotKeyMode::Off,
                keys: Vec::new(),
                total: 0,
                floor: 0,
                sampled: false,
                warnings: Vec::new(),
            }
        } else {
            merge_hot_keys(&merge_inputs, want)
        }
    })
    .await
    .map_err(ApiError::internal)?;
    inner
        .metrics
        .observe_fanout(started.elapsed().as_secs_f64());
    Ok(ClusterHotKeys {
        hot,
        from_unix_ms: query.from_unix_ms,
        to_unix_ms: query.to_unix_ms,
        fanout: FanoutStatus {
            nodes,
            responded,
            expected,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyviz::hotkeys::{HotItem, HotSummary};

    fn body(hot: &NodeHotKeys) -> Vec<u8> {
        serde_json::to_vec(hot).unwrap_or_default()
    }

    fn node(series: Series, total: u64, upper: u64) -> NodeHotKeys {
        NodeHotKeys {
            series,
            mode: HotKeyMode::Raw,
            node_id: Some("n2".into()),
            parts: vec![HotPart {
                group: 0,
                term: 0,
                summary: HotSummary {
                    total,
                    floor: 0,
                    sampled: false,
                    unit_variance: 0,
                    items: vec![HotItem {
                        key: b"hot".to_vec(),
                        estimate: upper.min(total),
                        lower: 0,
                        upper,
                        truncated: false,
                        seen: 0,
                    }],
                },
                spans: Vec::new(),
            }],
        }
    }

    #[test]
    fn node_k_asks_more_than_k_within_the_limit() {
        assert_eq!(node_k(1), 64);
        assert_eq!(node_k(20), 80);
        assert_eq!(node_k(1000), MAX_HOT_KEYS_K);
    }

    #[test]
    fn peer_bodies_are_refused_for_bounds_series_and_syntax() {
        let good = node(Series::Reads, 10, 10);
        assert!(decode_node_hot_keys(&body(&good), Series::Reads, 5).is_ok());
        let beyond = node(Series::Reads, 10, 11);
        assert!(matches!(
            decode_node_hot_keys(&body(&beyond), Series::Reads, 5),
            Err(PeerError::InvalidHotKeys(_))
        ));
        assert!(
            decode_node_hot_keys(&body(&good), Series::Writes, 5)
                .is_err_and(|e| e.to_string().contains("series reads instead of writes"))
        );
        assert!(matches!(
            decode_node_hot_keys(b"{\"series\":", Series::Reads, 5),
            Err(PeerError::Decode(_))
        ));
    }

    #[test]
    fn peer_parts_are_trimmed_to_the_keys_asked_for() {
        let mut many = node(Series::Reads, 100, 10);
        many.parts[0].summary.items = (0..10u64)
            .map(|i| HotItem {
                key: format!("k{i}").into_bytes(),
                estimate: 10 - i,
                lower: 10 - i,
                upper: 10 - i,
                truncated: false,
                seen: 0,
            })
            .collect();
        let hot =
            decode_node_hot_keys(&body(&many), Series::Reads, 3).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hot.parts[0].summary.items.len(), 3);
        assert_eq!(hot.parts[0].summary.floor, 7);
    }

    #[test]
    fn a_node_listing_too_many_keys_overall_is_trimmed_evenly_and_honestly() {
        let part = node(Series::Writes, 1_000, 1).parts[0].clone();
        let mut wide = part.clone();
        wide.summary.items = (0..1_000u64)
            .map(|i| HotItem {
                key: format!("k{i:04}").into_bytes(),
                estimate: 1,
                lower: 1,
                upper: 1,
                truncated: false,
                seen: 0,
            })
            .collect();
        let mut hot = node(Series::Writes, 1_000, 1);
        hot.parts = (0..200u64)
            .map(|g| HotPart {
                group: g + 1,
                term: 1,
                ..wide.clone()
            })
            .collect();
        bound_items(&mut hot, 1_000);
        let listed: usize = hot.parts.iter().map(|p| p.summary.items.len()).sum();
        assert!(listed <= MAX_NODE_HOT_ITEMS, "{listed}");
        assert_eq!(hot.parts[0].summary.items.len(), MAX_NODE_HOT_ITEMS / 200);
        assert_eq!(
            hot.parts[0].summary.floor, 1,
            "dropped keys bound the floor"
        );
        hot.validate().unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn the_cluster_answer_round_trips_through_its_http_body() {
        let hot = merge_hot_keys(&[node(Series::Reads, 10, 10)], 5);
        let answer = ClusterHotKeys {
            hot,
            from_unix_ms: Some(1),
            to_unix_ms: None,
            fanout: FanoutStatus {
                nodes: Vec::new(),
                responded: 1,
                expected: 1,
            },
        };
        let v = serde_json::to_value(&answer).unwrap_or_default();
        assert_eq!(v["series"], "reads");
        assert_eq!(v["keys"][0]["key"], "aG90");
        assert_eq!(v["from_unix_ms"], 1);
        assert!(v.get("warnings").is_none(), "omitted when empty: {v}");
        let back: ClusterHotKeys = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, answer);
    }
}
