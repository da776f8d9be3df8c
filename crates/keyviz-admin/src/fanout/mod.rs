//! The cluster fan-out: local view + every peer's local view (parallel, capped, timed),
//! merged with `keyviz::merge`, with a per-node status block. The peer request path
//! (`peer_get`, `call_peers`, `check_answer_id`) and the status assembly are shared with
//! the hot-key fan-out (`crate::hotkeys`).

pub(crate) mod assemble;
pub mod client;
pub mod compact;
pub mod coverage;
pub mod decode;
mod fast_json;
pub mod membership;
pub mod single_flight;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION};
use keyviz::merge::{MergeOptions, merge};
use keyviz::{Matrix, MatrixQuery, Series};
use serde::Serialize;

use self::assemble::Assembly;
use self::client::PeerError;
use self::membership::{PeerBase, PeerTarget, identity_url, matrix_url, parse_base, peer_targets};
use self::status::{FanoutStatus, NodeWarning};
use crate::api::{ApiError, MatrixParams};
use crate::auth::peer_token::{self, AUTH_SCHEME};
use crate::clock;
use crate::host::SourceError;
use crate::state::Inner;

/// Identity of a coalescible matrix request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FlightKey {
    series: Series,
    from_unix_ms: Option<i64>,
    to_unix_ms: Option<i64>,
    rows: usize,
    key_start: Option<Vec<u8>>,
    key_end: Option<Vec<u8>>,
}

impl From<&MatrixParams> for FlightKey {
    fn from(p: &MatrixParams) -> Self {
        FlightKey {
            series: p.series,
            from_unix_ms: p.from_unix_ms,
            to_unix_ms: p.to_unix_ms,
            rows: p.rows,
            key_start: p.key_start.clone(),
            key_end: p.key_end.clone(),
        }
    }
}

/// The core query for `params` with row budget `rows`.
fn core_query(params: &MatrixParams, rows: usize) -> MatrixQuery {
    MatrixQuery {
        series: params.series,
        from_unix_ms: params.from_unix_ms,
        to_unix_ms: params.to_unix_ms,
        row_budget: Some(rows),
        key_start: params.key_start.clone(),
        key_end: params.key_end.clone(),
    }
}

/// Drops the rows of a peer's matrix outside the requested key range. Peers get the range
/// in their URL, but one that ignores it (an older or reference node) must not widen the
/// view; its coarsened rows that straddle a bound stay, as they do locally.
fn keep_requested_keys(matrix: &mut Matrix, params: &MatrixParams) {
    if params.key_start.is_none() && params.key_end.is_none() {
        return;
    }
    let query = core_query(params, params.rows);
    matrix
        .rows
        .retain(|r| query.overlaps(r.start.as_deref().unwrap_or_default(), r.end.as_deref()));
}

/// A matrix response: the matrix fields, plus `fanout` when a fan-out ran.
#[derive(Serialize)]
pub(crate) struct MatrixResponse<'a> {
    #[serde(flatten)]
    pub(crate) matrix: &'a Matrix,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fanout: Option<&'a FanoutStatus>,
}

/// Serialises a response body (with trailing newline).
pub(crate) fn encode_response(
    matrix: &Matrix,
    fanout: Option<&FanoutStatus>,
) -> Result<Bytes, ApiError> {
    let mut body = serde_json::to_vec(&MatrixResponse { matrix, fanout })
        .map_err(|e| ApiError::internal(format!("encode matrix: {e}")))?;
    body.push(b'\n');
    Ok(Bytes::from(body))
}

pub(crate) fn source_error(e: SourceError) -> ApiError {
    match e {
        SourceError::Disabled => ApiError::keyviz_disabled(),
        SourceError::Failed(detail) => ApiError::internal(detail),
    }
}

/// This node's local view: `rows` is the budget, the result carries our node id.
pub(crate) async fn local_matrix(
    inner: &Arc<Inner>,
    params: &MatrixParams,
    rows: usize,
) -> Result<Matrix, ApiError> {
    let query = core_query(params, rows);
    let inner2 = inner.clone();
    let mut m =
        tokio::task::spawn_blocking(move || inner2.source.matrix(&query, clock::now_unix_ms()))
            .await
            .map_err(ApiError::internal)?
            .map_err(source_error)?;
    m.node_id = Some(inner.identity.node_id().to_string());
    Ok(m)
}

/// `Accept` of peer matrix calls: the compact encoding, JSON for peers without it.
const PEER_ACCEPT: &str = "application/vnd.keyviz.matrix-compact, application/json;q=0.5";

/// What one peer call produced.
pub(crate) enum PeerAnswer<T> {
    /// A validated contribution of the node `node_id`.
    Answer {
        value: T,
        node_id: String,
        /// The answer did not say which node it came from.
        missing_id: bool,
        /// The node's own timestamp of the answer, when it has one.
        generated_at: Option<String>,
    },
    /// The entry is this node under another name: nothing to merge.
    SelfAlias,
}

#[derive(serde::Deserialize)]
struct IdentityBody {
    node_id: String,
}

/// Learns a peer's node id: from the target, the cache, or `GET .../keyviz/identity`.
async fn resolve_node_id(inner: &Inner, target: &PeerTarget) -> Result<String, PeerError> {
    if let Some(id) = &target.node_id {
        return Ok(id.clone());
    }
    if let Some(id) = inner.peers.cached_node_id(&target.name) {
        return Ok(id);
    }
    let base = parse_base(&target.name).map_err(PeerError::Address)?;
    let (body, _) = inner
        .client
        .get(
            &identity_url(&base),
            &[(ACCEPT, "application/json".to_string())],
            4096,
        )
        .await?;
    let id: IdentityBody = serde_json::from_slice(&body)
        .map_err(|e| PeerError::Identity(format!("bad identity answer: {e}")))?;
    if id.node_id.is_empty() {
        return Err(PeerError::Identity("peer reported an empty node id".into()));
    }
    Ok(id.node_id)
}

/// The raw outcome of one authenticated peer GET.
pub(crate) enum PeerReply {
    /// A 200 body (at most `fanout_body_cap` bytes) from the node `node_id`.
    Body {
        body: Bytes,
        content_type: Option<String>,
        node_id: String,
    },
    /// The entry is this node under another name: no call was made.
    SelfAlias,
}

/// The one peer request path of every fan-out: resolves the peer's node id (self aliases
/// stop here), mints a peer token for it, and GETs `url(base)` with `accept` under the
/// shared client and `fanout_body_cap`. No deadline here: [`call_peers`] wraps each call.
/// A 401 makes the peer's cached node id be learnt again next time.
pub(crate) async fn peer_get(
    inner: &Inner,
    target: &PeerTarget,
    url: impl FnOnce(&PeerBase) -> String,
    accept: &str,
) -> Result<PeerReply, PeerError> {
    let base = parse_base(&target.name).map_err(PeerError::Address)?;
    let node_id = resolve_node_id(inner, target).await?;
    inner
        .peers
        .record(&target.name, |r| r.node_id = Some(node_id.clone()));
    if node_id == inner.identity.node_id() {
        return Ok(PeerReply::SelfAlias);
    }
    let ttl_ms = i64::try_from(inner.config.peer_token_ttl.as_millis()).unwrap_or(30_000);
    let token = peer_token::mint(
        &inner.secret,
        inner.identity.node_id(),
        &node_id,
        clock::now_unix_ms(),
        ttl_ms,
    )
    .map_err(|e| PeerError::Identity(e.to_string()))?;
    let url = url(&base);
    inner.metrics.peer_call();
    let (body, content_type) = inner
        .client
        .get(
            &url,
            &[
                (AUTHORIZATION, format!("{AUTH_SCHEME} {token}")),
                (ACCEPT, accept.to_string()),
            ],
            inner.config.fanout_body_cap,
        )
        .await
        .inspect_err(|e| {
            if matches!(e, PeerError::Status { status: 401, .. }) {
                // The address may now host another node: learn its id again next time.
                inner.peers.forget_node_id(&target.name);
            }
        })?;
    Ok(PeerReply::Body {
        body,
        content_type,
        node_id,
    })
}

/// Checks the node id an answer carries against the one addressed: this node's id makes the
/// entry a self alias, another id is an identity error, none is accepted (`missing_id`).
pub(crate) fn check_answer_id<T>(
    inner: &Inner,
    addressed: String,
    answered: Option<&str>,
    value: T,
    generated_at: Option<String>,
) -> Result<PeerAnswer<T>, PeerError> {
    match answered {
        Some(id) if id == inner.identity.node_id() => Ok(PeerAnswer::SelfAlias),
        Some(id) if id != addressed => Err(PeerError::Identity(format!(
            "addressed node {addressed:?} but {id:?} answered"
        ))),
        _ => Ok(PeerAnswer::Answer {
            value,
            node_id: addressed,
            missing_id: answered.is_none(),
            generated_at,
        }),
    }
}

/// Calls every target in parallel, each under `fanout_timeout` (connect to decoded answer),
/// and returns the outcomes with their wall time in ms, in target order.
pub(crate) async fn call_peers<T, F, Fut>(
    inner: &Arc<Inner>,
    targets: &[PeerTarget],
    call: F,
) -> Vec<(Result<T, PeerError>, u64)>
where
    F: Fn(Arc<Inner>, PeerTarget) -> Fut,
    Fut: Future<Output = Result<T, PeerError>>,
{
    let timeout = inner.config.fanout_timeout;
    let calls = targets.iter().map(|t| {
        let fut = call(inner.clone(), t.clone());
        async move {
            let t0 = Instant::now();
            let res = match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(PeerError::Timeout(timeout)),
            };
            (res, elapsed_ms(t0))
        }
    });
    futures::future::join_all(calls).await
}

pub(crate) async fn call_peer(
    inner: Arc<Inner>,
    target: PeerTarget,
    params: MatrixParams,
) -> Result<PeerAnswer<Matrix>, PeerError> {
    let reply = peer_get(
        &inner,
        &target,
        |base| {
            matrix_url(
                base,
                params.series.as_str(),
                inner.config.peer_row_cap,
                params.from_unix_ms,
                params.to_unix_ms,
                params.key_start.as_deref(),
                params.key_end.as_deref(),
            )
        },
        PEER_ACCEPT,
    )
    .await?;
    let (body, content_type, node_id) = match reply {
        PeerReply::SelfAlias => return Ok(PeerAnswer::SelfAlias),
        PeerReply::Body {
            body,
            content_type,
            node_id,
        } => (body, content_type, node_id),
    };
    // Decoding tens of MB is CPU work: keep it off the async workers.
    let compact_body = content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with(compact::CONTENT_TYPE));
    let matrix = tokio::task::spawn_blocking(move || {
        let mut m = if compact_body {
            decode::decode_compact_matrix(&body)
        } else {
            decode::decode_matrix(&body)
        }?;
        keep_requested_keys(&mut m, &params);
        Ok::<_, PeerError>(m)
    })
    .await
    .map_err(|e| PeerError::Decode(e.to_string()))??;
    let answered = matrix.node_id.clone();
    let generated_at = Some(matrix.generated_at.clone());
    check_answer_id(&inner, node_id, answered.as_deref(), matrix, generated_at)
}

pub(crate) fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs one complete fan-out and returns the encoded response body.
pub(crate) async fn run(inner: Arc<Inner>, params: MatrixParams) -> Result<Bytes, ApiError> {
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
    let local_started = Instant::now();
    // With peers, the local view is fetched untrimmed (up to the peer cap) so the budget
    // applies to the cluster-wide merge, not to each node.
    let local_rows = if targets.is_empty() {
        params.rows
    } else {
        inner.config.peer_row_cap.max(params.rows)
    };
    let calls = call_peers(&inner, &targets, |inner, t| {
        call_peer(inner, t, params.clone())
    });
    let params = &params;
    // The local view is computed while the peers work.
    let local_fut = async {
        let r = local_matrix(&inner, params, local_rows).await;
        (r, elapsed_ms(local_started))
    };
    let ((local, local_elapsed), answers) = tokio::join!(local_fut, calls);
    let local = local?;
    let generated_at = Some(local.generated_at.clone());
    let mut acc = Assembly::new(&inner, local, generated_at, local_elapsed);
    for (target, (res, elapsed)) in targets.iter().zip(answers) {
        acc.add(&inner, target, res, elapsed, attempted_ms);
    }
    let Assembly {
        nodes,
        mut inputs,
        input_node,
        expected,
        ..
    } = acc;
    let responded = inputs.len();
    let options = MergeOptions {
        series: params.series,
        step_ms: inputs[0].step_ms,
        row_budget: Some(params.rows),
    };
    let self_id = inner.identity.node_id().to_string();
    let status_nodes = nodes;
    let budget = params.rows;
    let body = tokio::task::spawn_blocking(move || {
        let mut nodes = status_nodes;
        let merged = if inputs.len() == 1 && inputs[0].rows.len() <= budget {
            // A lone local view within the budget is already final: skip the merge pass.
            keyviz::merge::Merged {
                matrix: inputs.swap_remove(0),
                warnings: Vec::new(),
            }
        } else {
            merge(&inputs, &options)
        };
        for w in merged.warnings {
            let idx = input_node.get(w.input).copied().unwrap_or(0);
            if let Some(n) = nodes.get_mut(idx) {
                n.warnings.push(NodeWarning {
                    code: warning_code(w.code),
                    bucket_id: w.bucket_id,
                    detail: w.detail,
                });
            }
        }
        let mut matrix = merged.matrix;
        matrix.node_id = Some(self_id);
        let status = FanoutStatus {
            nodes,
            responded,
            expected,
        };
        coverage::encode(&matrix, &status, &inputs, &input_node)
    })
    .await
    .map_err(ApiError::internal)?;
    inner
        .metrics
        .observe_fanout(started.elapsed().as_secs_f64());
    body
}

/// The wire name of a merge warning code (its serde name, e.g. `catalog_divergence`).
fn warning_code(code: keyviz::merge::WarningCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "merge".to_string())
}
