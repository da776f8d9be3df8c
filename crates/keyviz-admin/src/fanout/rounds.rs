//! The two-round cluster fan-out: row totals first, then every node's matrix on row
//! boundaries shared by the whole cluster (`keyviz::boundaries`), folded one answer at a
//! time. The cost of a query follows the row budget: each peer sends at most `rows` coarse
//! rows, however many routes it has, and the aggregator holds one accumulator of
//! `rows × columns` cells, however many nodes answer.
//!
//! Round 1 asks `GET <matrix>?...&round=totals` with `Accept: row-totals`; round 2 asks
//! `GET <matrix>?...&boundaries=<base64url>` with `Accept: matrix-boundary-v2` (`KVMB2`;
//! `matrix-boundary`, `KVMB1`, from older peers); answers are folded three at a time. A
//! peer of an older version ignores both parameters and answers its plain local view (compact or
//! JSON) in round 1: that answer is kept, coarsened here onto the boundaries and folded like
//! the others, so mixed-version clusters stay exact (they only cost what they cost before).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use keyviz::boundaries::{
    Boundaries, ClusterFold, FoldInput, PackedBoundaryMatrix, RowTotal, RunBoundaryMatrix,
    coarsen_onto_runs,
};
use keyviz::merge::MAX_LISTED_ROUTE_IDS;
use keyviz::{Matrix, MatrixQuery};

use super::assemble::Assembly;
use super::client::PeerError;
use super::compact::{
    self, BOUNDARY_CONTENT_TYPE, BOUNDARY_V2_CONTENT_TYPE, NodeTotals, TOTALS_CONTENT_TYPE,
    decode_boundaries, decode_boundary_packed, encode_boundaries,
};
use super::membership::{PeerTarget, matrix_url};
use super::status::NodeWarning;
use super::{
    FanoutStatus, PeerAnswer, PeerReply, call_peers, check_answer_id, core_query, decode,
    elapsed_ms, keep_requested_keys, peer_get, source_error, warning_code,
};
use crate::api::accept::accepts;
use crate::api::{ApiError, MatrixParams};
use crate::clock;
use crate::state::Inner;

/// `round=totals` selects the first round on a peer.
const ROUND_TOTALS: &str = "round=totals";
/// The query parameter carrying the boundaries of the second round.
const BOUNDARIES_PARAM: &str = "boundaries";
/// `Accept` of round 1: totals, or (older peers) the plain local view.
const TOTALS_ACCEPT: &str = "application/vnd.keyviz.row-totals, \
     application/vnd.keyviz.matrix-compact;q=0.8, application/json;q=0.5";
/// `Accept` of round 2: the matrix on boundaries (`KVMB2`, else `KVMB1` from older peers),
/// or the plain view.
const BOUNDARY_ACCEPT: &str = "application/vnd.keyviz.matrix-boundary-v2, \
     application/vnd.keyviz.matrix-boundary;q=0.9, \
     application/vnd.keyviz.matrix-compact;q=0.8, application/json;q=0.5";
/// Longest round-2 URL sent; beyond it the peer is asked for its plain view instead and
/// coarsened here (keys near the 4 KiB limit could make the boundary list that long).
const MAX_ROUND2_URL: usize = 60 * 1024;
/// Share of `fanout_timeout` round 1 may take; round 2 gets the rest (at least the other
/// quarter), so a peer's whole contribution fits in the one deadline.
const ROUND1_SHARE: f64 = 0.75;
/// Peer answers decoded, waiting for the fold or being folded at once per fan-out: each
/// holds a packed answer of at most `boundaries × columns × 8` bytes plus its identity runs
/// (a decode buffer, reused for the next answer once folded). A full batch plus one being
/// decoded, so decoding goes on while a batch is folded.
const DECODES_AT_ONCE: usize = FOLD_BATCH + 1;
/// Answers folded together (`ClusterFold::add_batch`): each accumulator row is read and
/// written once per batch while it is in cache, instead of once per answer.
const FOLD_BATCH: usize = 3;

/// One answer ready for the fold.
enum Ready {
    /// A boundary answer, packed (the common case).
    Packed(PackedBoundaryMatrix),
    /// The local answer, or an older peer's plain view coarsened here: identities as runs.
    Coarse(RunBoundaryMatrix),
}

impl Ready {
    fn header(&self) -> &Matrix {
        match self {
            Ready::Packed(p) => &p.header,
            Ready::Coarse(b) => b.header(),
        }
    }
}

/// Most cells a decode buffer may hold to be kept for later fan-outs (8 MiB of values): a
/// buffer grown by a rare huge answer is freed instead of being kept for good.
const KEPT_BUFFER_CELLS: usize = 1 << 20;

/// Decode buffers kept between fan-outs, at most `DECODES_AT_ONCE` of at most
/// `KEPT_BUFFER_CELLS` cells each (≤ 32 MiB of values for the node, ≈ 20 MB for 1 024 ×
/// 600): a fan-out then neither allocates nor faults in its value buffers again. The lock
/// is held for a push or a pop only.
static KEPT_BUFFERS: std::sync::Mutex<Vec<PackedBoundaryMatrix>> =
    std::sync::Mutex::new(Vec::new());

/// The decode side of one fan-out's round 2: `DECODES_AT_ONCE` permits (an answer holds
/// one from its decode until the fold has taken it) and the decode buffers, handed back by
/// the fold so the next answer (of this fan-out or a later one) reuses their memory
/// (`KEPT_BUFFERS`; its lock is held for a push or a pop only).
struct Decoders {
    permits: Arc<tokio::sync::Semaphore>,
}

impl Decoders {
    fn new() -> Self {
        Decoders {
            permits: Arc::new(tokio::sync::Semaphore::new(DECODES_AT_ONCE)),
        }
    }

    fn take(&self) -> PackedBoundaryMatrix {
        KEPT_BUFFERS
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default()
    }

    fn give(&self, b: PackedBoundaryMatrix) {
        if b.values.capacity() > KEPT_BUFFER_CELLS {
            return;
        }
        if let Ok(mut v) = KEPT_BUFFERS.lock()
            && v.len() < DECODES_AT_ONCE
        {
            v.push(b);
        }
    }
}

fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn binary_ok(body: Vec<u8>, media: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Answers a peer's round-1 or round-2 request, or `None` when the request is neither
/// (a plain peer matrix request). Blocks a blocking-pool thread on the local query.
pub(crate) async fn answer_peer_round(
    inner: &Arc<Inner>,
    params: &MatrixParams,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Option<Result<Response, ApiError>> {
    let q = query.unwrap_or("");
    let totals = q.split('&').any(|p| p == ROUND_TOTALS) && accepts(headers, TOTALS_CONTENT_TYPE);
    // An aggregator of this version asks for `KVMB2`; an older one knows only `KVMB1`.
    let v2 = accepts(headers, BOUNDARY_V2_CONTENT_TYPE);
    let bounds =
        query_value(q, BOUNDARIES_PARAM).filter(|_| v2 || accepts(headers, BOUNDARY_CONTENT_TYPE));
    if !totals && bounds.is_none() {
        return None;
    }
    let query = core_query(params, params.rows);
    let node_id = inner.identity.node_id().to_string();
    let inner2 = inner.clone();
    if totals {
        let work = move || {
            let now = clock::now_unix_ms();
            let t = inner2
                .source
                .row_totals(&query, now)
                .map_err(source_error)?;
            let body = NodeTotals {
                node_id: Some(node_id),
                generated_at: keyviz::format_rfc3339_ms(now),
                totals: t,
            };
            compact::encode_totals(&body).map_err(ApiError::internal)
        };
        return Some(
            run_blocking(work)
                .await
                .map(|b| binary_ok(b, TOTALS_CONTENT_TYPE)),
        );
    }
    let b = match decode_boundaries(bounds.unwrap_or_default()) {
        Ok(b) => b,
        Err(e) => return Some(Err(ApiError::invalid_query(e))),
    };
    let work = move || {
        let now = clock::now_unix_ms();
        let mut m = inner2
            .source
            .matrix_on_boundaries(&query, &b, now)
            .map_err(source_error)?;
        m.set_node_id(Some(node_id));
        if v2 {
            compact::encode_boundary_runs_v2(&m)
        } else {
            compact::encode_boundary_runs(&m)
        }
        .map_err(ApiError::internal)
    };
    let media = if v2 {
        BOUNDARY_V2_CONTENT_TYPE
    } else {
        BOUNDARY_CONTENT_TYPE
    };
    Some(run_blocking(work).await.map(|b| binary_ok(b, media)))
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// What one node contributed in round 1.
pub(crate) enum First {
    /// Per-row totals: round 2 will ask for the matrix on the boundaries.
    Totals(Vec<RowTotal>),
    /// An older peer's plain view: coarsened here, no second call.
    Legacy(Matrix),
}

impl First {
    pub(crate) fn totals(&self) -> std::borrow::Cow<'_, [RowTotal]> {
        match self {
            First::Totals(t) => std::borrow::Cow::Borrowed(t),
            First::Legacy(m) => std::borrow::Cow::Owned(keyviz::boundaries::row_totals(m)),
        }
    }
}

fn peer_matrix_url(
    inner: &Inner,
    base: &super::membership::PeerBase,
    params: &MatrixParams,
) -> String {
    matrix_url(
        base,
        params.series.as_str(),
        inner.config.peer_row_cap,
        params.from_unix_ms,
        params.to_unix_ms,
        params.key_start.as_deref(),
        params.key_end.as_deref(),
    )
}

/// Decodes an older peer's plain view (compact or JSON), validated, limited to the keys
/// asked for.
fn decode_plain(
    body: &[u8],
    compact_body: bool,
    params: &MatrixParams,
) -> Result<Matrix, PeerError> {
    let mut m = if compact_body {
        decode::decode_compact_matrix(body)
    } else {
        decode::decode_matrix(body)
    }?;
    super::bounds::check_counts(&m)?;
    keep_requested_keys(&mut m, params);
    Ok(m)
}

fn is_media(content_type: Option<&str>, media: &str) -> bool {
    content_type.is_some_and(|ct| ct.starts_with(media))
}

pub(crate) async fn call_totals(
    inner: Arc<Inner>,
    target: PeerTarget,
    params: MatrixParams,
) -> Result<PeerAnswer<First>, PeerError> {
    let reply = peer_get(
        &inner,
        &target,
        |base| format!("{}&{ROUND_TOTALS}", peer_matrix_url(&inner, base, &params)),
        TOTALS_ACCEPT,
    )
    .await?;
    let PeerReply::Body {
        body,
        content_type,
        node_id,
    } = reply
    else {
        return Ok(PeerAnswer::SelfAlias);
    };
    let ct = content_type.as_deref();
    if is_media(ct, TOTALS_CONTENT_TYPE) {
        let t = tokio::task::spawn_blocking(move || compact::decode_totals(&body))
            .await
            .map_err(|e| PeerError::Decode(e.to_string()))??;
        let answered = t.node_id.clone();
        return check_answer_id(
            &inner,
            node_id,
            answered.as_deref(),
            First::Totals(t.totals),
            Some(t.generated_at),
        );
    }
    let compact_body = is_media(ct, compact::CONTENT_TYPE);
    let m = tokio::task::spawn_blocking(move || decode_plain(&body, compact_body, &params))
        .await
        .map_err(|e| PeerError::Decode(e.to_string()))??;
    let answered = m.node_id.clone();
    let generated_at = Some(m.generated_at.clone());
    check_answer_id(
        &inner,
        node_id,
        answered.as_deref(),
        First::Legacy(m),
        generated_at,
    )
}

/// Round 2 for one peer: its matrix on the boundaries (or, when the boundary list is too
/// long for a URL, its plain view coarsened here), decoded and validated.
async fn call_boundary(
    inner: &Arc<Inner>,
    target: &PeerTarget,
    params: &MatrixParams,
    boundaries: &Arc<Boundaries>,
    encoded: &str,
    deadline: Duration,
    decoders: &Arc<Decoders>,
) -> Result<(Ready, tokio::sync::OwnedSemaphorePermit), PeerError> {
    let fetch = peer_get(
        inner,
        target,
        |base| {
            let url = peer_matrix_url(inner, base, params);
            if url.len() + encoded.len() + 16 > MAX_ROUND2_URL {
                // The peer answers its plain view; it is coarsened here.
                return url;
            }
            format!("{url}&{BOUNDARIES_PARAM}={encoded}")
        },
        BOUNDARY_ACCEPT,
    );
    let reply = match tokio::time::timeout(deadline, fetch).await {
        Ok(r) => r?,
        Err(_) => return Err(PeerError::Timeout(deadline)),
    };
    let PeerReply::Body {
        body,
        content_type,
        node_id,
    } = reply
    else {
        return Err(PeerError::Identity(
            "peer became this node between the rounds".into(),
        ));
    };
    // Held until the fold has folded the answer: at most `DECODES_AT_ONCE` decoded answers
    // exist per fan-out, the one being folded included.
    let permit = decoders
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| PeerError::Decode(e.to_string()))?;
    let ct = content_type.clone();
    let params2 = params.clone();
    let b = boundaries.clone();
    let bufs = decoders.clone();
    let ready = tokio::task::spawn_blocking(move || {
        // A prefix match: `KVMB1` and `KVMB2` (told apart by their magic).
        if is_media(ct.as_deref(), BOUNDARY_CONTENT_TYPE) {
            // Straight into a reused flat buffer: no matrix of the answer is built.
            let mut p = bufs.take();
            let checked =
                decode_boundary_packed(&body, &mut p, b.len(), super::bounds::MAX_COLUMN_TOTAL);
            drop(body);
            match checked {
                Ok(()) => Ok::<_, PeerError>(Ready::Packed(p)),
                Err(e) => {
                    bufs.give(p);
                    Err(e)
                }
            }
        } else {
            let compact_body = is_media(ct.as_deref(), compact::CONTENT_TYPE);
            let m = decode_plain(&body, compact_body, &params2)?;
            Ok(Ready::Coarse(coarsen_onto_runs(
                m,
                &b,
                MAX_LISTED_ROUTE_IDS,
            )))
        }
    })
    .await
    .map_err(|e| PeerError::Decode(e.to_string()))??;
    let answered = ready.header().node_id.clone();
    let verdict = check_answer_id(inner, node_id, answered.as_deref(), (), None);
    if !matches!(verdict, Ok(PeerAnswer::Answer { .. }))
        && let Ready::Packed(p) = ready
    {
        decoders.give(p);
        return Err(verdict.err().unwrap_or_else(|| {
            PeerError::Identity("peer answered as this node in the second round".into())
        }));
    }
    match verdict? {
        PeerAnswer::Answer { .. } => Ok((ready, permit)),
        PeerAnswer::SelfAlias => Err(PeerError::Identity(
            "peer answered as this node in the second round".into(),
        )),
    }
}

fn local_query(params: &MatrixParams, inner: &Inner) -> MatrixQuery {
    core_query(params, inner.config.peer_row_cap.max(params.rows))
}

/// One complete two-round fan-out over `targets` (not empty); returns the encoded body.
pub(crate) async fn run_rounds(
    inner: Arc<Inner>,
    params: MatrixParams,
    targets: Vec<PeerTarget>,
    attempted_ms: i64,
) -> Result<Bytes, ApiError> {
    let timeout = inner.config.fanout_timeout;
    let round1_started = Instant::now();
    // Round 1: everyone's totals (the local ones computed while the peers work).
    let local_started = Instant::now();
    let inner_l = inner.clone();
    let lq = local_query(&params, &inner);
    let local_fut = async move {
        let r = tokio::task::spawn_blocking(move || {
            inner_l.source.row_totals(&lq, clock::now_unix_ms())
        })
        .await
        .map_err(ApiError::internal)
        .and_then(|r| r.map_err(source_error));
        (r, elapsed_ms(local_started))
    };
    let round1_deadline = timeout.mul_f64(ROUND1_SHARE);
    let calls = call_peers(&inner, &targets, round1_deadline, |inner, t| {
        call_totals(inner, t, params.clone())
    });
    let ((local, local_elapsed), answers) = tokio::join!(local_fut, calls);
    let local = local?;
    let mut acc = Assembly::new(&inner, First::Totals(local), None, local_elapsed);
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
    let budget = params.rows;
    let (inputs, boundaries) = tokio::task::spawn_blocking(move || {
        let totals: Vec<_> = inputs.iter().map(First::totals).collect();
        let b = Boundaries::plan(totals.iter().map(|t| t.as_ref()), budget);
        drop(totals);
        // The totals have served: round 2 needs only which kind each input was, so the
        // N × routes entries do not live on through round 2.
        let inputs: Vec<First> = inputs
            .into_iter()
            .map(|f| match f {
                First::Totals(_) => First::Totals(Vec::new()),
                legacy @ First::Legacy(_) => legacy,
            })
            .collect();
        (inputs, b)
    })
    .await
    .map_err(ApiError::internal)?;
    let round2_deadline = timeout
        .saturating_sub(round1_started.elapsed())
        .max(timeout.mul_f64(1.0 - ROUND1_SHARE));
    if !boundaries.is_coarse() {
        // Every distinct start fits the budget: merge the fine rows (this keeps rows sharing
        // a start, like two incarnations of a split route, apart). The cost is bounded by
        // the budget too: no node has more rows than the cluster has distinct starts.
        let round = Round2 {
            nodes,
            inputs,
            input_node,
            expected,
        };
        return run_fine(inner, params, targets, round, attempted_ms, round2_deadline).await;
    }
    let boundaries = Arc::new(boundaries);
    let encoded = Arc::new(encode_boundaries(&boundaries));

    // Round 2: matrices on the boundaries, folded in batches as they arrive.
    // A message carries its decode permit: it is returned once the fold has folded the
    // answer, so at most `DECODES_AT_ONCE` answers are decoded, queued or being folded.
    type Msg = (usize, Ready, tokio::sync::OwnedSemaphorePermit);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(DECODES_AT_ONCE);
    let decoders = Arc::new(Decoders::new());
    let mut tasks = Vec::new();
    for (i, input) in inputs.into_iter().enumerate().skip(1) {
        let tx = tx.clone();
        let target_idx = input_node[i] - 1;
        let target = targets[target_idx].clone();
        let inner = inner.clone();
        let params = params.clone();
        let boundaries = boundaries.clone();
        let encoded = encoded.clone();
        let decoders = decoders.clone();
        tasks.push((
            i,
            tokio::spawn(async move {
                let t0 = Instant::now();
                let bm = match input {
                    First::Legacy(m) => {
                        let b = boundaries.clone();
                        match decoders.permits.clone().acquire_owned().await {
                            Ok(permit) => tokio::task::spawn_blocking(move || {
                                Ready::Coarse(coarsen_onto_runs(m, &b, MAX_LISTED_ROUTE_IDS))
                            })
                            .await
                            .map(|bm| (bm, permit))
                            .map_err(|e| PeerError::Decode(e.to_string())),
                            Err(e) => Err(PeerError::Decode(e.to_string())),
                        }
                    }
                    First::Totals(_) => {
                        call_boundary(
                            &inner,
                            &target,
                            &params,
                            &boundaries,
                            &encoded,
                            round2_deadline,
                            &decoders,
                        )
                        .await
                    }
                };
                let elapsed = elapsed_ms(t0);
                match bm {
                    Ok((bm, permit)) => {
                        // The fold outlives every sender, so this only fails if it panicked.
                        let _ = tx.send((i, bm, permit)).await;
                        (Ok(()), elapsed)
                    }
                    Err(e) => (Err(e), elapsed),
                }
            }),
        ));
    }
    drop(tx);
    let local_started = Instant::now();
    let inner_l = inner.clone();
    let lq = local_query(&params, &inner);
    let b_local = boundaries.clone();
    let local = tokio::task::spawn_blocking(move || {
        inner_l
            .source
            .matrix_on_boundaries(&lq, &b_local, clock::now_unix_ms())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(source_error)?;
    if let Some(n) = nodes.first_mut() {
        n.elapsed_ms += elapsed_ms(local_started);
        n.generated_at = Some(local.header().generated_at.clone());
    }
    let series = params.series;
    let b_fold = (*boundaries).clone();
    let fold = tokio::task::spawn_blocking(move || {
        let step_ms = local.header().step_ms;
        let mut fold = ClusterFold::new(series, step_ms, b_fold, MAX_LISTED_ROUTE_IDS);
        // Replicas count writes on apply: the newest windows may still differ by lag.
        fold.set_settling_from(Some(keyviz::merge::settling_from_unix_ms(
            clock::now_unix_ms(),
            step_ms,
        )));
        // Each answer's columns, for the per-node outage runs (`coverage`); input indices
        // until the fold is done, node indices after.
        let mut columns = Vec::new();
        let mut order = Vec::new();
        // The local answer leads the first batch (input 0 names the result).
        let mut batch: Vec<(usize, Ready, Option<tokio::sync::OwnedSemaphorePermit>)> =
            vec![(0, Ready::Coarse(local), None)];
        loop {
            // A batch waits for `FOLD_BATCH` answers (or the last ones): the fold costs
            // one pass over the accumulator per batch, not per answer.
            let mut closed = false;
            while batch.len() < FOLD_BATCH {
                match rx.blocking_recv() {
                    Some((i, ready, permit)) => batch.push((i, ready, Some(permit))),
                    None => {
                        closed = true;
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                let inputs: Vec<FoldInput<'_>> = batch
                    .iter()
                    .map(|(i, ready, _)| {
                        columns.push(super::coverage::NodeColumns::of(*i, ready.header()));
                        order.push(*i);
                        match ready {
                            Ready::Packed(p) => FoldInput::Packed(p),
                            Ready::Coarse(b) => FoldInput::Runs(b),
                        }
                    })
                    .collect();
                fold.add_batch(&inputs);
                drop(inputs);
                for (_, ready, permit) in batch.drain(..) {
                    if let Ready::Packed(p) = ready {
                        decoders.give(p);
                    }
                    drop(permit);
                }
            }
            if closed {
                break;
            }
        }
        (fold.finish(), order, columns)
    });
    let mut failed = 0usize;
    for (i, task) in tasks {
        let node_idx = input_node[i];
        let (res, elapsed) = match task.await {
            Ok(r) => r,
            Err(e) => (
                Err(PeerError::Decode(format!("round 2 task failed: {e}"))),
                0,
            ),
        };
        let Some(st) = nodes.get_mut(node_idx) else {
            continue;
        };
        st.elapsed_ms += elapsed;
        if let Err(e) = res {
            failed += 1;
            record_failure(&inner, st, &e, attempted_ms);
        }
    }
    let (merged, order, mut columns) = fold.await.map_err(ApiError::internal)?;
    for c in &mut columns {
        c.node = input_node.get(c.node).copied().unwrap_or(usize::MAX);
    }
    let responded = input_node.len() - failed;
    let self_id = inner.identity.node_id().to_string();
    let generated_at = nodes.first().and_then(|n| n.generated_at.clone());
    let source = inner.source.clone();
    tokio::task::spawn_blocking(move || {
        attach_warnings(&mut nodes, merged.warnings, &order, &input_node);
        let mut matrix = merged.matrix;
        matrix.node_id = Some(self_id);
        if let Some(g) = generated_at {
            matrix.generated_at = g;
        }
        let status = FanoutStatus {
            nodes,
            responded,
            expected,
        };
        let leaders = crate::leaders::leaders_of(source.as_ref(), &matrix);
        super::coverage::encode_with(&matrix, &status, &columns, &leaders)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Marks a node that answered round 1 but failed round 2.
fn record_failure(
    inner: &Inner,
    st: &mut super::status::NodeStatus,
    e: &PeerError,
    attempted_ms: i64,
) {
    inner.metrics.peer_failure(e.reason());
    let text = e.to_string();
    tracing::warn!(peer = %st.node, error = %text, "keyviz fan-out peer failed in round 2");
    inner.peers.record(&st.node, |r| {
        if r.last_attempt_unix_ms.is_some_and(|t| t > attempted_ms) {
            return;
        }
        r.reachable = Some(false);
        r.last_error = Some(text.clone());
    });
    st.ok = false;
    st.reason = Some(e.reason().to_string());
    st.error = Some(text);
}

/// What round 1 left for round 2.
struct Round2 {
    nodes: Vec<super::status::NodeStatus>,
    inputs: Vec<First>,
    input_node: Vec<usize>,
    expected: usize,
}

/// Round 2 when the cluster's rows fit the budget: every node's plain view, merged by
/// `keyviz::merge` with the budget (as the one-round fan-out did).
async fn run_fine(
    inner: Arc<Inner>,
    params: MatrixParams,
    targets: Vec<PeerTarget>,
    round: Round2,
    attempted_ms: i64,
    deadline: Duration,
) -> Result<Bytes, ApiError> {
    let Round2 {
        mut nodes,
        inputs,
        input_node,
        expected,
    } = round;
    let mut calls = Vec::new();
    for (i, input) in inputs.into_iter().enumerate().skip(1) {
        let target = targets[input_node[i] - 1].clone();
        let inner = inner.clone();
        let params = params.clone();
        calls.push(async move {
            let t0 = Instant::now();
            let m = match input {
                First::Legacy(m) => Ok(m),
                First::Totals(_) => {
                    let fetch = async {
                        let reply = peer_get(
                            &inner,
                            &target,
                            |base| peer_matrix_url(&inner, base, &params),
                            "application/vnd.keyviz.matrix-compact, application/json;q=0.5",
                        )
                        .await?;
                        let PeerReply::Body {
                            body,
                            content_type,
                            node_id,
                        } = reply
                        else {
                            return Err(PeerError::Identity(
                                "peer became this node between the rounds".into(),
                            ));
                        };
                        let compact_body = is_media(content_type.as_deref(), compact::CONTENT_TYPE);
                        let p2 = params.clone();
                        let m = tokio::task::spawn_blocking(move || {
                            decode_plain(&body, compact_body, &p2)
                        })
                        .await
                        .map_err(|e| PeerError::Decode(e.to_string()))??;
                        match check_answer_id(&inner, node_id, m.node_id.as_deref(), (), None)? {
                            PeerAnswer::Answer { .. } => Ok(m),
                            PeerAnswer::SelfAlias => Err(PeerError::Identity(
                                "peer answered as this node in the second round".into(),
                            )),
                        }
                    };
                    match tokio::time::timeout(deadline, fetch).await {
                        Ok(r) => r,
                        Err(_) => Err(PeerError::Timeout(deadline)),
                    }
                }
            };
            (i, m, elapsed_ms(t0))
        });
    }
    let local_started = Instant::now();
    let local_fut =
        super::local_matrix(&inner, &params, inner.config.peer_row_cap.max(params.rows));
    let (local, answers) = tokio::join!(local_fut, futures::future::join_all(calls));
    let local = local?;
    if let Some(n) = nodes.first_mut() {
        n.elapsed_ms += elapsed_ms(local_started);
        n.generated_at = Some(local.generated_at.clone());
    }
    let mut all = vec![local];
    let mut order = vec![0usize];
    for (i, m, elapsed) in answers {
        let Some(st) = nodes.get_mut(input_node[i]) else {
            continue;
        };
        st.elapsed_ms += elapsed;
        match m {
            Ok(m) => {
                all.push(m);
                order.push(i);
            }
            Err(e) => record_failure(&inner, st, &e, attempted_ms),
        }
    }
    let responded = all.len();
    let options = keyviz::merge::MergeOptions {
        series: params.series,
        step_ms: all[0].step_ms,
        row_budget: Some(params.rows),
        // Replicas count writes on apply: the newest windows may still differ by lag.
        settling_from_unix_ms: Some(keyviz::merge::settling_from_unix_ms(
            clock::now_unix_ms(),
            all[0].step_ms,
        )),
    };
    let self_id = inner.identity.node_id().to_string();
    let source = inner.source.clone();
    tokio::task::spawn_blocking(move || {
        // Each answer's columns, for the per-node outage runs (`coverage`).
        let columns: Vec<super::coverage::NodeColumns> = all
            .iter()
            .zip(&order)
            .map(|(m, &i)| {
                super::coverage::NodeColumns::of(
                    input_node.get(i).copied().unwrap_or(usize::MAX),
                    m,
                )
            })
            .collect();
        let merged = keyviz::merge::merge(&all, &options);
        drop(all);
        attach_warnings(&mut nodes, merged.warnings, &order, &input_node);
        let mut matrix = merged.matrix;
        matrix.node_id = Some(self_id);
        let status = FanoutStatus {
            nodes,
            responded,
            expected,
        };
        let leaders = crate::leaders::leaders_of(source.as_ref(), &matrix);
        super::coverage::encode_with(&matrix, &status, &columns, &leaders)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Hangs each merge warning on the status of the node whose input caused it: `order[i]` is
/// the input index of merge input `i`, `input_node[j]` the status index of input `j`.
fn attach_warnings(
    nodes: &mut [super::status::NodeStatus],
    warnings: Vec<keyviz::merge::MergeWarning>,
    order: &[usize],
    input_node: &[usize],
) {
    for w in warnings {
        let idx = order
            .get(w.input)
            .and_then(|&i| input_node.get(i))
            .copied()
            .unwrap_or(0);
        if let Some(n) = nodes.get_mut(idx) {
            n.warnings.push(NodeWarning {
                code: warning_code(w.code),
                bucket_id: w.bucket_id,
                detail: w.detail,
            });
        }
    }
}
