//! The cluster fan-out: local view + every peer's local view (parallel, capped, timed),
//! merged with `keyviz::merge`, with a per-node status block. The peer request path
//! (`peer_get`, `call_peers`, `check_answer_id`) and the status assembly are shared with
//! the hot-key fan-out (`crate::hotkeys`).

pub(crate) mod assemble;
pub mod bounds;
pub mod client;
pub mod compact;
pub mod coverage;
pub mod decode;
pub mod membership;
pub(crate) mod rounds;
pub mod single_flight;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::ACCEPT;
use keyviz::{Matrix, MatrixQuery, Series};
use serde::Serialize;

use self::client::PeerError;
use self::membership::{PeerBase, PeerTarget, identity_url, parse_base, peer_targets};
use self::status::FanoutStatus;
use crate::api::{ApiError, MatrixParams};
use crate::clock;
use crate::host::SourceError;
use crate::peer::signing::AUD_IDENTITY;
use crate::peer::{Signing, TransportError};
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

/// A matrix response: the matrix fields, plus `fanout` when a fan-out ran, plus the
/// operator's `leaders` (never sent to peers).
#[derive(Serialize)]
pub(crate) struct MatrixResponse<'a> {
    #[serde(flatten)]
    pub(crate) matrix: &'a Matrix,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fanout: Option<&'a FanoutStatus>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(crate) leaders: &'a [crate::host::TermLeader],
}

/// Serialises a response body (with trailing newline).
pub(crate) fn encode_response(
    matrix: &Matrix,
    fanout: Option<&FanoutStatus>,
) -> Result<Bytes, ApiError> {
    encode_with_leaders(matrix, fanout, &[])
}

/// As [`encode_response`], with the term `leaders` of the matrix's write identities.
pub(crate) fn encode_with_leaders(
    matrix: &Matrix,
    fanout: Option<&FanoutStatus>,
    leaders: &[crate::host::TermLeader],
) -> Result<Bytes, ApiError> {
    let mut body = serde_json::to_vec(&MatrixResponse {
        matrix,
        fanout,
        leaders,
    })
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

/// Bytes of an identity answer read at most.
const IDENTITY_BODY_CAP: usize = 4096;

/// Learns a peer's node id from a proof: the proven-id cache, or an identity challenge
/// (`GET .../keyviz/identity` signed with the identity audience and a fresh nonce), whose
/// answer must carry a MAC bound to that nonce by a holder of the cluster secret naming the
/// node in its body. A membership-provided id is checked against the proof, never trusted
/// alone. Only a proven id is cached, and only a proven peer ever gets a request it could
/// use against another node (docs/SECURITY.md, "Peers").
async fn resolve_node_id(inner: &Inner, target: &PeerTarget) -> Result<String, PeerError> {
    if let Some(id) = inner.peers.cached_node_id(&target.name) {
        return Ok(id);
    }
    let base = parse_base(&target.name).map_err(PeerError::Address)?;
    let unproven = |why: String| PeerError::IdentityUnproven(why);
    let resp = inner
        .client
        .send(
            http::Method::GET,
            &identity_url(&base),
            &[(ACCEPT, http::HeaderValue::from_static("application/json"))],
            Bytes::new(),
            IDENTITY_BODY_CAP,
            inner.config.fanout_timeout,
            Some(Signing {
                keys: &inner.peer_keys,
                issuer: inner.identity.node_id(),
                audience: AUD_IDENTITY,
                now_ms: clock::now_unix_ms(),
            }),
        )
        .await
        .map_err(|e| match e {
            TransportError::Unauthenticated(e) => unproven(format!(
                "identity answer not signed with the cluster secret ({e})"
            )),
            other => PeerError::from(other),
        })?;
    if !resp.status.is_success() {
        return Err(unproven(format!(
            "identity challenge answered {}: {}",
            resp.status.as_u16(),
            resp.body_prefix()
        )));
    }
    let responder = resp
        .responder
        .ok_or_else(|| unproven("identity answer carries no proof".into()))?;
    let id: IdentityBody = serde_json::from_slice(&resp.body)
        .map_err(|e| PeerError::Identity(format!("bad identity answer: {e}")))?;
    if id.node_id.is_empty() || id.node_id != responder {
        return Err(unproven(format!(
            "identity answer names {:?} but was proven by {responder:?}",
            id.node_id
        )));
    }
    check_server_certificate(
        inner.certificate_binding,
        base.scheme == "https",
        &target.name,
        resp.server_certificate.as_ref(),
        &responder,
    )?;
    if let Some(claimed) = &target.node_id
        && *claimed != responder
    {
        return Err(PeerError::Identity(format!(
            "membership lists {claimed:?} at {} but {responder:?} proved itself there",
            target.name
        )));
    }
    Ok(responder)
}

/// Under certificate binding ([`crate::AdminStateBuilder::certificate_binding`]), an
/// answer proven (by its MAC) to come from `node_id` over `https://` must also have come over
/// a connection whose server certificate names that node (`node-<id>` → `keyviz-node-<id>`):
/// a listed peer relaying our challenge to the real node would otherwise be "proven" as it.
/// `peer_identity_unproven` otherwise. Plain `http://` entries carry no certificate and pass.
/// Pure.
fn check_server_certificate(
    binding: bool,
    https: bool,
    peer: &str,
    cert: Option<&crate::tls::PeerCertificate>,
    node_id: &str,
) -> Result<(), PeerError> {
    if !binding || !https {
        return Ok(());
    }
    let expected = crate::tls::peer_node_id(node_id).map(crate::tls::node_dns_name);
    match (cert, expected) {
        (Some(c), Some(_)) if c.names_peer(node_id) => Ok(()),
        (None, _) => Err(PeerError::IdentityUnproven(format!(
            "{node_id:?} proved itself at {peer} but the connection carried no server certificate"
        ))),
        (Some(_), Some(dns)) => Err(PeerError::IdentityUnproven(format!(
            "{node_id:?} proved itself at {peer} but its TLS certificate names another node \
             (not {dns}): a relay, or a certificate issued for another node"
        ))),
        (Some(_), None) => Err(PeerError::IdentityUnproven(format!(
            "{node_id:?} proved itself at {peer} but is not node-<id>, so no certificate can \
             bind it"
        ))),
    }
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

/// The one peer request path of every fan-out: proves the peer's node id (self aliases
/// stop here), then GETs `url(base)` with `accept`, signed for that node, through the
/// shared transport under `fanout_body_cap`, and accepts only a 200 answer whose MAC proves
/// it is that node's answer to this very request. Each call has `fanout_timeout` inside
/// and [`call_peers`] wraps the whole. A 401 makes the peer's id be proven again next time.
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
    let url = url(&base);
    let accept =
        http::HeaderValue::from_str(accept).map_err(|e| PeerError::Address(e.to_string()))?;
    inner.metrics.peer_call();
    let resp = inner
        .client
        .send(
            http::Method::GET,
            &url,
            &[(ACCEPT, accept)],
            Bytes::new(),
            inner.config.fanout_body_cap,
            inner.config.fanout_timeout,
            Some(Signing {
                keys: &inner.peer_keys,
                issuer: inner.identity.node_id(),
                audience: &node_id,
                now_ms: clock::now_unix_ms(),
            }),
        )
        .await
        .inspect_err(|e| {
            if matches!(e, TransportError::Unauthenticated(_)) {
                // The address may now host another node: prove its id again next time.
                inner.peers.forget_node_id(&target.name);
            }
        })?;
    if let Err(e) = check_server_certificate(
        inner.certificate_binding,
        base.scheme == "https",
        &target.name,
        resp.server_certificate.as_ref(),
        &node_id,
    ) {
        // Another server answers at this address now: prove it again next time.
        inner.peers.forget_node_id(&target.name);
        return Err(e);
    }
    if resp.status != http::StatusCode::OK {
        if resp.status == http::StatusCode::UNAUTHORIZED {
            inner.peers.forget_node_id(&target.name);
        }
        return Err(PeerError::Status {
            status: resp.status.as_u16(),
            body: resp.body_prefix(),
        });
    }
    let content_type = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(PeerReply::Body {
        body: resp.body,
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

/// Calls every target in parallel, each under `timeout` (connect to decoded answer),
/// and returns the outcomes with their wall time in ms, in target order.
pub(crate) async fn call_peers<T, F, Fut>(
    inner: &Arc<Inner>,
    targets: &[PeerTarget],
    timeout: std::time::Duration,
    call: F,
) -> Vec<(Result<T, PeerError>, u64)>
where
    F: Fn(Arc<Inner>, PeerTarget) -> Fut,
    Fut: Future<Output = Result<T, PeerError>>,
{
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
    let body = if targets.is_empty() {
        let local_started = Instant::now();
        let local = local_matrix(&inner, &params, params.rows).await?;
        let status = FanoutStatus {
            nodes: vec![status::NodeStatus {
                node: inner.identity.admin_addr().to_string(),
                node_id: Some(inner.identity.node_id().to_string()),
                ok: true,
                error: None,
                reason: None,
                generated_at: Some(local.generated_at.clone()),
                elapsed_ms: elapsed_ms(local_started),
                warnings: Vec::new(),
            }],
            responded: 1,
            expected: 1,
        };
        let source = inner.source.clone();
        tokio::task::spawn_blocking(move || {
            let leaders = crate::leaders::leaders_of(source.as_ref(), &local);
            encode_with_leaders(&local, Some(&status), &leaders)
        })
        .await
        .map_err(ApiError::internal)?
    } else {
        rounds::run_rounds(inner.clone(), params, targets, attempted_ms).await
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::PeerCertificate;

    fn cert_naming(name: &str) -> PeerCertificate {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        PeerCertificate(Arc::new(cert.der().clone()))
    }

    fn unproven(r: Result<(), PeerError>) -> String {
        match r {
            Err(PeerError::IdentityUnproven(why)) => why,
            other => panic!("expected peer_identity_unproven, got {other:?}"),
        }
    }

    #[test]
    fn https_peer_must_present_the_certificate_of_the_node_it_proved() {
        let node2 = cert_naming("keyviz-node-2");
        let peer = "https://10.0.0.2:8080";
        assert!(check_server_certificate(true, true, peer, Some(&node2), "node-2").is_ok());
        let why = unproven(check_server_certificate(
            true,
            true,
            peer,
            Some(&node2),
            "node-3",
        ));
        assert!(
            why.contains("names another node") && why.contains("keyviz-node-3"),
            "{why}"
        );
        let why = unproven(check_server_certificate(true, true, peer, None, "node-2"));
        assert!(why.contains("no server certificate"), "{why}");
        let why = unproven(check_server_certificate(
            true,
            true,
            peer,
            Some(&node2),
            "gateway",
        ));
        assert!(why.contains("node-<id>"), "{why}");
        // Not bound: binding off, or a plain-HTTP entry (no certificate to check).
        assert!(check_server_certificate(false, true, peer, Some(&node2), "node-3").is_ok());
        assert!(check_server_certificate(true, false, "http://h:1", None, "node-3").is_ok());
    }
}
