//! The server half of the peer scheme: an axum middleware that verifies signed requests
//! ([`signing::verify_request`], replay cache included) before any handler runs, hands the
//! handler the [`VerifiedRequest`] as a request extension, and signs the answer
//! ([`signing::sign_response`]) bound to the request's nonce. Shared by the admin router
//! (signed requests optional: operators use sessions) and kvnode's internal port (signed
//! requests required when a secret is set).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::signing::{self, Acceptance, PeerKeys, ReplayCache, VerifiedRequest};
use crate::tls::PeerCertificate;

/// Builds the refusal a host answers with (status, stable code, text).
pub type Refusal = fn(StatusCode, &'static str, String) -> Response;

/// The verifier one server shares across its requests.
pub struct PeerGuard {
    keys: PeerKeys,
    self_id: String,
    max_age_ms: i64,
    max_skew_ms: i64,
    age_bytes_per_sec: Option<u64>,
    replay: ReplayCache,
    request_cap: usize,
    identity_path: Option<String>,
    required: bool,
    bind_certificate: bool,
    refuse: Refusal,
    now_ms: fn() -> i64,
}

impl std::fmt::Debug for PeerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerGuard")
            .field("self_id", &self.self_id)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`PeerGuard`].
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// This node's id: the audience accepted.
    pub self_id: String,
    /// How old a signature may be.
    pub max_age: Duration,
    /// Accepted clock skew (both directions).
    pub max_skew: Duration,
    /// When set, a signed request may also be as old as its body takes to move at this
    /// many bytes per second (large Raft entries travel for seconds before they are
    /// verified).
    pub age_bytes_per_sec: Option<u64>,
    /// Live nonces remembered at most (see [`ReplayCache`]).
    pub replay_capacity: usize,
    /// Largest signed request body read (413 beyond).
    pub request_cap: usize,
    /// The one path where identity challenges ([`signing::AUD_IDENTITY`]) are accepted.
    pub identity_path: Option<String>,
    /// Refuse unsigned requests (kvnode's internal port) instead of passing them on.
    pub required: bool,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PeerGuard {
    /// A guard with `keys` and `config`; `refuse` renders refusals in the host's error
    /// format, `now_ms` is the wall clock (unix ms).
    #[must_use]
    pub fn new(keys: PeerKeys, config: GuardConfig, refuse: Refusal, now_ms: fn() -> i64) -> Self {
        PeerGuard {
            keys,
            self_id: config.self_id,
            max_age_ms: ms(config.max_age),
            max_skew_ms: ms(config.max_skew),
            age_bytes_per_sec: config.age_bytes_per_sec,
            replay: ReplayCache::new(config.replay_capacity),
            request_cap: config.request_cap,
            identity_path: config.identity_path,
            required: config.required,
            bind_certificate: false,
            refuse,
            now_ms,
        }
    }

    /// With `on`, a verified signed request must also have come over a connection whose
    /// client certificate ([`PeerCertificate`], inserted by the TLS accept loop) names its
    /// signed issuer (`node-<id>` → `keyviz-node-<id>`, [`PeerCertificate::names_peer`]):
    /// 403 `peer_certificate_required` without a client certificate, 403
    /// `peer_certificate_mismatch` when it names another node. Unsigned requests
    /// (operators) are unaffected. For hosts under mutual TLS (`--tls-client-auth`
    /// `peers`/`all`), where every node's certificate names its node.
    #[must_use]
    pub fn with_certificate_binding(mut self, on: bool) -> Self {
        self.bind_certificate = on;
        self
    }

    /// The keys it verifies with (and signs answers with).
    #[must_use]
    pub fn keys(&self) -> &PeerKeys {
        &self.keys
    }

    /// Live nonces held by its replay cache.
    #[must_use]
    pub fn replay_len(&self) -> usize {
        self.replay.len()
    }
}

/// The middleware: unsigned requests pass unchanged (or get 401 when signatures are
/// required); a signed request is read (at most `request_cap` bytes, 413 beyond), verified
/// (401 `peer_unauthenticated` on any failure, 503 when the replay cache is full), run with
/// its [`VerifiedRequest`] extension, and its whole answer is buffered and signed. Takes the
/// replay cache's mutex briefly; never across an await. Verifying a big request and signing a
/// big answer run off the tokio worker ([`super::offload::off_worker`]).
pub async fn guard(State(g): State<Arc<PeerGuard>>, req: Request, next: Next) -> Response {
    if !signing::is_signed(req.headers()) {
        if g.required {
            return (g.refuse)(
                StatusCode::UNAUTHORIZED,
                "peer_unauthenticated",
                "missing peer signature".into(),
            );
        }
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, g.request_cap).await {
        Ok(b) => b,
        Err(e) => {
            return (g.refuse)(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "signed request body unreadable or over {} bytes: {e}",
                    g.request_cap
                ),
            );
        }
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .to_string();
    let accept = Acceptance {
        self_id: &g.self_id,
        identity_challenge: g
            .identity_path
            .as_deref()
            .is_some_and(|p| p == parts.uri.path()),
        max_age_ms: g
            .max_age_ms
            .saturating_add(g.age_bytes_per_sec.map_or(0, |rate| {
                i64::try_from((body.len() as u64).saturating_mul(1000) / rate.max(1))
                    .unwrap_or(i64::MAX)
            })),
        max_skew_ms: g.max_skew_ms,
    };
    // Hashing a big body takes long enough to starve the worker's other tasks.
    let verified = match super::offload::off_worker(body.len(), || {
        signing::verify_request(
            &g.keys,
            &parts.method,
            &path_and_query,
            &parts.headers,
            &body,
            &accept,
            (g.now_ms)(),
            &g.replay,
        )
    }) {
        Ok(v) => v,
        Err(signing::SignatureError::ReplayCacheFull) => {
            tracing::warn!("peer replay cache full; refusing signed request");
            return (g.refuse)(
                StatusCode::SERVICE_UNAVAILABLE,
                "peer_busy",
                "too many signed requests in the window; retry later".into(),
            );
        }
        Err(e) => {
            tracing::debug!(error = %e, path = %parts.uri.path(), "peer request refused");
            return (g.refuse)(
                StatusCode::UNAUTHORIZED,
                "peer_unauthenticated",
                "peer request not authenticated".into(),
            );
        }
    };
    if g.bind_certificate
        && let Err((code, why)) =
            check_certificate(parts.extensions.get::<PeerCertificate>(), &verified.issuer)
    {
        tracing::debug!(issuer = %verified.issuer, path = %parts.uri.path(), why, "peer certificate refused");
        return (g.refuse)(StatusCode::FORBIDDEN, code, why);
    }
    parts.extensions.insert(verified.clone());
    let resp = next.run(Request::from_parts(parts, Body::from(body))).await;
    sign_answer(&g, &verified, resp).await
}

/// Whether `cert` (the connection's verified client certificate) binds `issuer`; the
/// refusal code and text otherwise. Pure.
fn check_certificate(
    cert: Option<&PeerCertificate>,
    issuer: &str,
) -> Result<(), (&'static str, String)> {
    let Some(cert) = cert else {
        return Err((
            "peer_certificate_required",
            format!(
                "mutual TLS: a signed peer request (issuer {issuer:?}) must come with the \
                 calling node's client certificate"
            ),
        ));
    };
    if cert.names_peer(issuer) {
        return Ok(());
    }
    let expected = crate::tls::peer_node_id(issuer).map_or_else(
        || "no node certificate name (the issuer is not node-<id>)".to_string(),
        crate::tls::node_dns_name,
    );
    Err((
        "peer_certificate_mismatch",
        format!(
            "mutual TLS: the request is signed by {issuer:?} but the client certificate does \
             not name {expected}"
        ),
    ))
}

async fn sign_answer(g: &PeerGuard, req: &VerifiedRequest, resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("answer body: {e}"),
            )
                .into_response();
        }
    };
    let signed = super::offload::off_worker(body.len(), || {
        signing::sign_response(&g.keys, req, &g.self_id, parts.status.as_u16(), &body)
    });
    match signed {
        Ok(headers) => {
            for (name, value) in headers {
                parts.headers.insert(name, value);
            }
        }
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    }
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_naming(names: &[&str]) -> PeerCertificate {
        let names: Vec<String> = names.iter().map(|s| (*s).to_string()).collect();
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(names)
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        PeerCertificate(Arc::new(cert.der().clone()))
    }

    #[test]
    fn signed_issuer_must_be_named_by_the_client_certificate() {
        let node2 = cert_naming(&["keyviz-node-2", "127.0.0.1"]);
        assert!(check_certificate(Some(&node2), "node-2").is_ok());
        let (code, why) = check_certificate(Some(&node2), "node-3").expect_err("other node");
        assert_eq!(code, "peer_certificate_mismatch");
        assert!(
            why.contains("keyviz-node-3") && why.contains("\"node-3\""),
            "{why}"
        );
        let (code, _) = check_certificate(Some(&node2), "gateway").expect_err("no node id");
        assert_eq!(code, "peer_certificate_mismatch");
        let (code, _) = check_certificate(None, "node-2").expect_err("no certificate");
        assert_eq!(code, "peer_certificate_required");
    }
}
