//! The one request-signing scheme of every node-to-node call (admin fan-out and kvnode's
//! internal transport): HMAC-SHA256 with the cluster secret over the method, the path and
//! query, the SHA-256 of the body, a timestamp, a fresh nonce, the issuer and the audience;
//! and the matching answer MAC over the request's nonce, both node ids, the status and a
//! digest of the answer body: BLAKE3 when the request offered it ([`HDR_ANSWER_DIGESTS`]),
//! else SHA-256 (what nodes before the offer existed send and expect).
//!
//! Why two answer digests: answers are the big bodies (a fan-out answer is megabytes, and
//! both ends hash it), and BLAKE3 hashes ≈ 4× faster than SHA-256 here (docs/perf-admin.md,
//! "Answer digest"). Requests keep SHA-256: a caller cannot know what an older peer accepts
//! before it asks, and request bodies are small.
//!
//! What it guarantees (see docs/SECURITY.md, "Peers"): a request verified by
//! [`verify_request`] was made by a holder of the cluster secret for this node (or, with
//! [`AUD_IDENTITY`], for an identity challenge only), for exactly this method, path, query and
//! body, within the accepted window, and was not seen before ([`ReplayCache`]). An answer
//! verified by [`verify_response`] was produced by a holder of the secret that calls itself
//! the named node, for exactly that request (its nonce), with exactly that status and body.
//! MACs are compared in constant time (`hmac`'s `verify_slice`).

use std::collections::{HashMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::host::ClusterSecret;

type HmacSha256 = Hmac<Sha256>;

/// Node id of the caller.
pub const HDR_ISSUER: HeaderName = HeaderName::from_static("x-keyviz-peer-iss");
/// Node id the request is for, or [`AUD_IDENTITY`].
pub const HDR_AUDIENCE: HeaderName = HeaderName::from_static("x-keyviz-peer-aud");
/// Unix milliseconds when the request was signed.
pub const HDR_TIMESTAMP: HeaderName = HeaderName::from_static("x-keyviz-peer-ts");
/// 16 random bytes, base64url: the challenge the answer's MAC is bound to.
pub const HDR_NONCE: HeaderName = HeaderName::from_static("x-keyviz-peer-nonce");
/// The request MAC, base64url.
pub const HDR_SIGNATURE: HeaderName = HeaderName::from_static("x-keyviz-peer-sig");
/// On an answer: the node id of the node that answered.
pub const HDR_RESPONDER: HeaderName = HeaderName::from_static("x-keyviz-peer-node");
/// On an answer: the answer MAC, base64url.
pub const HDR_RESPONSE_SIGNATURE: HeaderName = HeaderName::from_static("x-keyviz-peer-answer-sig");
/// On a request: the answer digests the caller verifies besides SHA-256, comma-separated
/// (today only `blake3`). Outside the request MAC on purpose: it only chooses how the answer
/// is bound to its body, and every choice is MACed under its own domain, so a party that
/// strips or adds it can make an answer fail to verify (which it could do by dropping it)
/// but never make a forged one pass.
pub const HDR_ANSWER_DIGESTS: HeaderName = HeaderName::from_static("x-keyviz-peer-answer-digests");
/// On an answer: the digest its MAC covers the body with, when it is not SHA-256.
pub const HDR_ANSWER_DIGEST: HeaderName = HeaderName::from_static("x-keyviz-peer-answer-digest");

/// The audience of an identity challenge, sent before the caller knows (has proven) who the
/// peer is. A request with this audience is accepted only on the identity endpoint, so it
/// grants nothing but a signed identity answer.
pub const AUD_IDENTITY: &str = "*identity";

const REQUEST_DOMAIN: &[u8] = b"keyviz-peer-request-v1";
const RESPONSE_DOMAIN: &[u8] = b"keyviz-peer-answer-v1";
/// Answers whose MAC covers the BLAKE3 of the body.
const RESPONSE_DOMAIN_BLAKE3: &[u8] = b"keyviz-peer-answer-v2-blake3";
/// The [`HDR_ANSWER_DIGESTS`] / [`HDR_ANSWER_DIGEST`] name of BLAKE3.
const BLAKE3_NAME: &str = "blake3";
/// How long an [`HDR_ANSWER_DIGESTS`] list may be before it is ignored (bounds the parse).
const MAX_DIGEST_LIST_LEN: usize = 64;

/// The digest an answer's MAC binds its body with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerDigest {
    /// SHA-256 under the `v1` answer domain: understood by every node.
    #[default]
    Sha256,
    /// BLAKE3 under its own answer domain: used when the request offered it.
    Blake3,
}

impl AnswerDigest {
    fn domain(self) -> &'static [u8] {
        match self {
            AnswerDigest::Sha256 => RESPONSE_DOMAIN,
            AnswerDigest::Blake3 => RESPONSE_DOMAIN_BLAKE3,
        }
    }

    fn of(self, body: &[u8]) -> [u8; 32] {
        match self {
            AnswerDigest::Sha256 => body_digest(body),
            AnswerDigest::Blake3 => *blake3::hash(body).as_bytes(),
        }
    }

    /// The digest a request asks its answer for: BLAKE3 when its [`HDR_ANSWER_DIGESTS`]
    /// lists it, else SHA-256. An absent, overlong or unreadable list means SHA-256.
    fn offered(headers: &HeaderMap) -> AnswerDigest {
        let listed = headers
            .get(&HDR_ANSWER_DIGESTS)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= MAX_DIGEST_LIST_LEN)
            .is_some_and(|v| v.split(',').any(|d| d.trim() == BLAKE3_NAME));
        if listed {
            AnswerDigest::Blake3
        } else {
            AnswerDigest::Sha256
        }
    }

    /// The digest an answer says it used ([`HDR_ANSWER_DIGEST`]; absent = SHA-256).
    fn claimed(headers: &HeaderMap) -> Result<AnswerDigest, SignatureError> {
        match headers.get(&HDR_ANSWER_DIGEST) {
            None => Ok(AnswerDigest::Sha256),
            Some(v) if v.as_bytes() == BLAKE3_NAME.as_bytes() => Ok(AnswerDigest::Blake3),
            Some(_) => Err(SignatureError::Malformed("answer digest")),
        }
    }
}
const NONCE_LEN: usize = 16;
/// Longest node id or audience accepted in a header (bounds work on hostile input).
const MAX_ID_LEN: usize = 256;

/// The keys peers sign with: the current one signs and verifies; a previous one (during a
/// rotation) only verifies. Any length is accepted here; hosts enforce their minimum.
#[derive(Clone)]
pub struct PeerKeys {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for PeerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKeys(<redacted>)")
    }
}

impl PeerKeys {
    /// Keys from raw bytes (kvnode's internal secret).
    #[must_use]
    pub fn new(current: Vec<u8>, previous: Option<Vec<u8>>) -> Self {
        PeerKeys { current, previous }
    }

    /// The keys of the admin's cluster secret.
    #[must_use]
    pub fn from_secret(secret: &ClusterSecret) -> Self {
        let mut keys = secret.verify_keys();
        let current = keys.next().unwrap_or_default().to_vec();
        PeerKeys {
            current,
            previous: keys.next().map(<[u8]>::to_vec),
        }
    }

    fn verify_keys(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.current.as_slice()).chain(self.previous.as_deref())
    }
}

/// Why a signature could not be made or was refused. Servers answer every refusal with one
/// 401 and log the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A required header is absent (or not text).
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header is present but malformed (length, encoding, number).
    #[error("malformed {0} header")]
    Malformed(&'static str),
    /// The timestamp is outside the accepted window.
    #[error("signed at {ts_ms}, outside the accepted window around {now_ms}")]
    Stale {
        /// Signing time claimed.
        ts_ms: i64,
        /// This node's clock.
        now_ms: i64,
    },
    /// The request is for another node (or an identity challenge outside the identity call).
    #[error("audience {0:?} is not this node")]
    Audience(String),
    /// No key produced the MAC.
    #[error("bad signature")]
    BadSignature,
    /// The nonce was seen before within the window.
    #[error("replayed request")]
    Replayed,
    /// The replay cache is full of live nonces; the request is refused rather than
    /// accepted unchecked.
    #[error("replay cache full")]
    ReplayCacheFull,
    /// The answer came from another node than the one addressed.
    #[error("answer signed by {answered:?}, expected {expected:?}")]
    Responder {
        /// Node that was addressed.
        expected: String,
        /// Node the answer says it is from.
        answered: String,
    },
    /// A value cannot be carried in a header (non-visible-ASCII node id).
    #[error("cannot sign: {0}")]
    Unsignable(String),
    /// No randomness for the nonce.
    #[error("no randomness for a nonce: {0}")]
    Random(String),
}

fn mac_init(key: &[u8], domain: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length: new_from_slice cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    field(&mut mac, domain);
    mac
}

/// Length-prefixed, so no two field lists produce the same MAC input.
fn field(mac: &mut HmacSha256, bytes: &[u8]) {
    mac.update(&(bytes.len() as u64).to_be_bytes());
    mac.update(bytes);
}

/// SHA-256 of a body.
#[must_use]
pub fn body_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

#[allow(clippy::too_many_arguments)]
fn request_mac(
    key: &[u8],
    method: &str,
    path_and_query: &str,
    digest: &[u8; 32],
    ts: &str,
    nonce: &str,
    issuer: &str,
    audience: &str,
) -> HmacSha256 {
    let mut mac = mac_init(key, REQUEST_DOMAIN);
    for f in [
        method.as_bytes(),
        path_and_query.as_bytes(),
        digest,
        ts.as_bytes(),
        nonce.as_bytes(),
        issuer.as_bytes(),
        audience.as_bytes(),
    ] {
        field(&mut mac, f);
    }
    mac
}

fn response_mac(
    key: &[u8],
    kind: AnswerDigest,
    nonce: &str,
    requester: &str,
    responder: &str,
    status: u16,
    digest: &[u8; 32],
) -> HmacSha256 {
    let mut mac = mac_init(key, kind.domain());
    for f in [
        nonce.as_bytes(),
        requester.as_bytes(),
        responder.as_bytes(),
        status.to_string().as_bytes(),
        digest,
    ] {
        field(&mut mac, f);
    }
    mac
}

fn header_value(v: &str) -> Result<HeaderValue, SignatureError> {
    if v.len() > MAX_ID_LEN {
        return Err(SignatureError::Unsignable(format!(
            "{} bytes exceed {MAX_ID_LEN}",
            v.len()
        )));
    }
    HeaderValue::from_str(v).map_err(|e| SignatureError::Unsignable(format!("{v:?}: {e}")))
}

fn get<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    label: &'static str,
) -> Result<&'h str, SignatureError> {
    let v = headers
        .get(name)
        .ok_or(SignatureError::Missing(label))?
        .to_str()
        .map_err(|_| SignatureError::Malformed(label))?;
    if v.is_empty() || v.len() > MAX_ID_LEN {
        return Err(SignatureError::Malformed(label));
    }
    Ok(v)
}

/// The signature headers of one request, and the nonce its answer must be bound to.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// Headers to add to the request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The fresh nonce (also in the headers).
    pub nonce: String,
}

/// Signs a request from `issuer` to `audience` at `now_ms` with a fresh OS-random nonce.
/// `path_and_query` is exactly what goes on the request line (`/path?query`).
///
/// # Errors
/// [`SignatureError::Unsignable`] for ids that cannot be headers,
/// [`SignatureError::Random`] without OS randomness.
pub fn sign_request(
    keys: &PeerKeys,
    method: &http::Method,
    path_and_query: &str,
    body: &[u8],
    issuer: &str,
    audience: &str,
    now_ms: i64,
) -> Result<SignedRequest, SignatureError> {
    let mut raw = [0u8; NONCE_LEN];
    getrandom::fill(&mut raw).map_err(|e| SignatureError::Random(e.to_string()))?;
    let nonce = URL_SAFE_NO_PAD.encode(raw);
    let ts = now_ms.to_string();
    let mac = request_mac(
        &keys.current,
        method.as_str(),
        path_and_query,
        &body_digest(body),
        &ts,
        &nonce,
        issuer,
        audience,
    );
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(SignedRequest {
        headers: vec![
            (HDR_ISSUER, header_value(issuer)?),
            (HDR_AUDIENCE, header_value(audience)?),
            (HDR_TIMESTAMP, header_value(&ts)?),
            (HDR_NONCE, header_value(&nonce)?),
            (HDR_SIGNATURE, header_value(&sig)?),
            (HDR_ANSWER_DIGESTS, HeaderValue::from_static(BLAKE3_NAME)),
        ],
        nonce,
    })
}

/// Whether a request carries a peer signature (it then must verify; it is never treated as
/// an operator request).
#[must_use]
pub fn is_signed(headers: &HeaderMap) -> bool {
    headers.contains_key(HDR_SIGNATURE)
}

/// A request that passed [`verify_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    /// The calling node.
    pub issuer: String,
    /// The audience it signed (this node's id, or [`AUD_IDENTITY`]).
    pub audience: String,
    /// Its nonce: the answer MAC is bound to it.
    pub nonce: String,
    /// When it was signed (unix ms).
    pub ts_ms: i64,
    /// The digest its answer's MAC binds the body with (what the request offered).
    pub answer_digest: AnswerDigest,
}

/// What [`verify_request`] accepts.
#[derive(Debug, Clone, Copy)]
pub struct Acceptance<'a> {
    /// This node's id: the only audience accepted (besides the identity one).
    pub self_id: &'a str,
    /// Whether [`AUD_IDENTITY`] is accepted (only on the identity endpoint).
    pub identity_challenge: bool,
    /// How old a signature may be, in ms.
    pub max_age_ms: i64,
    /// How far in the future a signature may be (clock skew), in ms.
    pub max_skew_ms: i64,
}

/// Verifies a request's signature: headers present and well formed, timestamp within
/// `[now − max_age − skew, now + skew]`, audience, MAC (constant time, current then previous
/// key) and finally the nonce against `replay` (only a request that passed every other
/// check is remembered, so a caller without the secret cannot fill the cache). Takes the
/// replay cache's mutex briefly.
///
/// # Errors
/// [`SignatureError`] for the first failed check.
// Every input is part of what is verified; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn verify_request(
    keys: &PeerKeys,
    method: &http::Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    accept: &Acceptance<'_>,
    now_ms: i64,
    replay: &ReplayCache,
) -> Result<VerifiedRequest, SignatureError> {
    let issuer = get(headers, &HDR_ISSUER, "issuer")?;
    let audience = get(headers, &HDR_AUDIENCE, "audience")?;
    let ts = get(headers, &HDR_TIMESTAMP, "timestamp")?;
    let nonce = get(headers, &HDR_NONCE, "nonce")?;
    let sig = get(headers, &HDR_SIGNATURE, "signature")?;
    let ts_ms: i64 = ts
        .parse()
        .map_err(|_| SignatureError::Malformed("timestamp"))?;
    let nonce_raw = decode_nonce(nonce)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| SignatureError::Malformed("signature"))?;
    let oldest = now_ms
        .saturating_sub(accept.max_age_ms)
        .saturating_sub(accept.max_skew_ms);
    if ts_ms < oldest || ts_ms > now_ms.saturating_add(accept.max_skew_ms) {
        return Err(SignatureError::Stale { ts_ms, now_ms });
    }
    let audience_ok =
        audience == accept.self_id || (accept.identity_challenge && audience == AUD_IDENTITY);
    if !audience_ok {
        return Err(SignatureError::Audience(audience.to_string()));
    }
    let digest = body_digest(body);
    let ok = keys.verify_keys().any(|key| {
        request_mac(
            key,
            method.as_str(),
            path_and_query,
            &digest,
            ts,
            nonce,
            issuer,
            audience,
        )
        .verify_slice(&sig)
        .is_ok()
    });
    if !ok {
        return Err(SignatureError::BadSignature);
    }
    let expires = ts_ms.saturating_add(
        accept
            .max_age_ms
            .saturating_add(accept.max_skew_ms.saturating_mul(2)),
    );
    replay.check_and_remember(nonce_raw, expires, now_ms)?;
    Ok(VerifiedRequest {
        issuer: issuer.to_string(),
        audience: audience.to_string(),
        nonce: nonce.to_string(),
        ts_ms,
        answer_digest: AnswerDigest::offered(headers),
    })
}

fn decode_nonce(nonce: &str) -> Result<[u8; NONCE_LEN], SignatureError> {
    let raw = URL_SAFE_NO_PAD
        .decode(nonce)
        .map_err(|_| SignatureError::Malformed("nonce"))?;
    raw.try_into()
        .map_err(|_| SignatureError::Malformed("nonce"))
}

/// The headers that authenticate an answer to `req`, from `responder` (this node's id),
/// binding `body` with the digest the request offered ([`VerifiedRequest::answer_digest`]).
/// Hashes the whole body once; takes no lock.
///
/// # Errors
/// [`SignatureError::Unsignable`] for an id that cannot be a header.
pub fn sign_response(
    keys: &PeerKeys,
    req: &VerifiedRequest,
    responder: &str,
    status: u16,
    body: &[u8],
) -> Result<Vec<(HeaderName, HeaderValue)>, SignatureError> {
    let kind = req.answer_digest;
    let mac = response_mac(
        &keys.current,
        kind,
        &req.nonce,
        &req.issuer,
        responder,
        status,
        &kind.of(body),
    );
    let mut headers = vec![
        (HDR_RESPONDER, header_value(responder)?),
        (
            HDR_RESPONSE_SIGNATURE,
            header_value(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))?,
        ),
    ];
    if kind == AnswerDigest::Blake3 {
        headers.push((HDR_ANSWER_DIGEST, HeaderValue::from_static(BLAKE3_NAME)));
    }
    Ok(headers)
}

/// Verifies an answer to the request signed with `nonce` by `requester` (this node): the
/// MAC over the nonce, both ids, `status` and `body` (constant time), and, when `expected`
/// is given, that the responder is that node. Returns the responder's node id, which is then
/// proven to hold the cluster secret. The body is hashed once, with the digest the answer
/// names ([`HDR_ANSWER_DIGEST`]; SHA-256 when absent, as older nodes answer); each digest
/// has its own MAC domain, so renaming it only makes the answer fail. Takes no lock.
///
/// # Errors
/// [`SignatureError::Missing`] for an unsigned answer, [`SignatureError::BadSignature`] for a
/// tampered one, [`SignatureError::Malformed`] for an unknown answer digest,
/// [`SignatureError::Responder`] for one from another node.
pub fn verify_response(
    keys: &PeerKeys,
    nonce: &str,
    requester: &str,
    expected: Option<&str>,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, SignatureError> {
    let responder = get(headers, &HDR_RESPONDER, "answer node")?;
    let sig = get(headers, &HDR_RESPONSE_SIGNATURE, "answer signature")?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| SignatureError::Malformed("answer signature"))?;
    let kind = AnswerDigest::claimed(headers)?;
    let digest = kind.of(body);
    let ok = keys.verify_keys().any(|key| {
        response_mac(key, kind, nonce, requester, responder, status, &digest)
            .verify_slice(&sig)
            .is_ok()
    });
    if !ok {
        return Err(SignatureError::BadSignature);
    }
    if let Some(e) = expected
        && e != responder
    {
        return Err(SignatureError::Responder {
            expected: e.to_string(),
            answered: responder.to_string(),
        });
    }
    Ok(responder.to_string())
}

/// Nonces of verified requests until their signatures expire, so each signed request is
/// accepted once. Bounded: when `capacity` live nonces are held, new requests are refused
/// ([`SignatureError::ReplayCacheFull`]) instead of being accepted unchecked; only requests
/// with a valid MAC are remembered, so only holders of the secret can fill it. Memory is
/// about 64 bytes per entry. One `parking_lot` mutex, held for a hash insert plus the
/// removal of expired entries (amortised O(1)).
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<ReplayInner>,
}

#[derive(Debug, Default)]
struct ReplayInner {
    seen: HashMap<[u8; NONCE_LEN], i64>,
    /// Insertion order with expiry; expiries are nearly monotonic (they follow signing
    /// times), so pruning from the front frees entries within a window of their expiry.
    order: VecDeque<([u8; NONCE_LEN], i64)>,
}

impl ReplayCache {
    /// A cache holding at most `capacity` (at least 1) live nonces.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity: capacity.max(1),
            inner: Mutex::new(ReplayInner::default()),
        }
    }

    /// Live nonces held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.lock().seen.len()
    }

    /// Whether no nonce is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_and_remember(
        &self,
        nonce: [u8; NONCE_LEN],
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<(), SignatureError> {
        let mut g = self.inner.lock();
        while let Some(&(n, exp)) = g.order.front() {
            if exp > now_ms {
                break;
            }
            g.order.pop_front();
            if g.seen.get(&n) == Some(&exp) {
                g.seen.remove(&n);
            }
        }
        if g.seen.contains_key(&nonce) {
            return Err(SignatureError::Replayed);
        }
        if g.seen.len() >= self.capacity {
            return Err(SignatureError::ReplayCacheFull);
        }
        g.seen.insert(nonce, expires_ms);
        g.order.push_back((nonce, expires_ms));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    const NOW: i64 = 1_700_000_000_000;

    fn keys() -> PeerKeys {
        PeerKeys::new(vec![7; 32], None)
    }

    fn accept(self_id: &str) -> Acceptance<'_> {
        Acceptance {
            self_id,
            identity_challenge: false,
            max_age_ms: 10_000,
            max_skew_ms: 1_000,
        }
    }

    fn headers(s: &SignedRequest) -> HeaderMap {
        s.headers.iter().cloned().collect()
    }

    #[test]
    fn a_signed_request_verifies_once_for_its_audience_method_path_and_body() {
        let k = keys();
        let cache = ReplayCache::new(16);
        let s = sign_request(&k, &Method::POST, "/kv/1/exec", b"body", "n1", "n2", NOW)
            .unwrap_or_else(|e| panic!("{e}"));
        let h = headers(&s);
        let ok = verify_request(
            &k,
            &Method::POST,
            "/kv/1/exec",
            &h,
            b"body",
            &accept("n2"),
            NOW,
            &cache,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (ok.issuer.as_str(), ok.nonce.as_str()),
            ("n1", s.nonce.as_str())
        );
        assert_eq!(
            verify_request(
                &k,
                &Method::POST,
                "/kv/1/exec",
                &h,
                b"body",
                &accept("n2"),
                NOW,
                &cache
            ),
            Err(SignatureError::Replayed)
        );
        let fresh = ReplayCache::new(16);
        for (m, p, b, aud) in [
            (Method::GET, "/kv/1/exec", &b"body"[..], "n2"),
            (Method::POST, "/kv/2/exec", b"body", "n2"),
            (Method::POST, "/kv/1/exec", b"bodY", "n2"),
        ] {
            assert_eq!(
                verify_request(&k, &m, p, &h, b, &accept(aud), NOW, &fresh),
                Err(SignatureError::BadSignature)
            );
        }
        assert_eq!(
            verify_request(
                &k,
                &Method::POST,
                "/kv/1/exec",
                &h,
                b"body",
                &accept("n3"),
                NOW,
                &fresh
            ),
            Err(SignatureError::Audience("n2".into()))
        );
        let other = PeerKeys::new(vec![8; 32], None);
        assert_eq!(
            verify_request(
                &other,
                &Method::POST,
                "/kv/1/exec",
                &h,
                b"body",
                &accept("n2"),
                NOW,
                &fresh
            ),
            Err(SignatureError::BadSignature)
        );
        assert!(fresh.is_empty(), "refused requests are not remembered");
    }

    #[test]
    fn stale_and_future_signatures_are_refused() {
        let k = keys();
        let cache = ReplayCache::new(16);
        for ts in [NOW - 11_001, NOW + 1_001] {
            let s = sign_request(&k, &Method::GET, "/", b"", "n1", "n2", ts)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(
                verify_request(
                    &k,
                    &Method::GET,
                    "/",
                    &headers(&s),
                    b"",
                    &accept("n2"),
                    NOW,
                    &cache
                ),
                Err(SignatureError::Stale { .. })
            ));
        }
    }

    #[test]
    fn identity_audience_is_accepted_only_where_allowed() {
        let k = keys();
        let cache = ReplayCache::new(16);
        let s = sign_request(&k, &Method::GET, "/id", b"", "n1", AUD_IDENTITY, NOW)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            verify_request(
                &k,
                &Method::GET,
                "/id",
                &headers(&s),
                b"",
                &accept("n2"),
                NOW,
                &cache
            ),
            Err(SignatureError::Audience(_))
        ));
        let a = Acceptance {
            identity_challenge: true,
            ..accept("n2")
        };
        assert!(
            verify_request(&k, &Method::GET, "/id", &headers(&s), b"", &a, NOW, &cache).is_ok()
        );
    }

    #[test]
    fn answers_verify_only_for_their_nonce_node_status_and_body() {
        let k = keys();
        let req = VerifiedRequest {
            issuer: "n1".into(),
            audience: "n2".into(),
            nonce: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            ts_ms: NOW,
            answer_digest: AnswerDigest::Sha256,
        };
        let h: HeaderMap = sign_response(&k, &req, "n2", 200, b"rows")
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .collect();
        assert_eq!(
            verify_response(&k, &req.nonce, "n1", Some("n2"), 200, &h, b"rows").as_deref(),
            Ok("n2")
        );
        assert_eq!(
            verify_response(&k, &req.nonce, "n1", Some("n2"), 200, &h, b"rowz"),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            verify_response(
                &k,
                "BBBBBBBBBBBBBBBBBBBBBB",
                "n1",
                Some("n2"),
                200,
                &h,
                b"rows"
            ),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            verify_response(&k, &req.nonce, "n1", Some("n2"), 500, &h, b"rows"),
            Err(SignatureError::BadSignature)
        );
        assert!(matches!(
            verify_response(&k, &req.nonce, "n1", Some("n3"), 200, &h, b"rows"),
            Err(SignatureError::Responder { .. })
        ));
        assert_eq!(
            verify_response(&k, &req.nonce, "n1", None, 200, &HeaderMap::new(), b"rows"),
            Err(SignatureError::Missing("answer node"))
        );
    }

    /// A request signed here, verified by a peer, as the server middleware does it.
    fn verified(offer: bool) -> VerifiedRequest {
        let s = sign_request(&keys(), &Method::GET, "/m", b"", "n1", "n2", NOW)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut h = headers(&s);
        if !offer {
            // What a caller from before the offer sends.
            h.remove(&HDR_ANSWER_DIGESTS);
        }
        verify_request(
            &keys(),
            &Method::GET,
            "/m",
            &h,
            b"",
            &accept("n2"),
            NOW,
            &ReplayCache::new(4),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn answer(req: &VerifiedRequest, body: &[u8]) -> HeaderMap {
        sign_response(&keys(), req, "n2", 200, body)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .collect()
    }

    #[test]
    fn requests_offer_blake3_and_answers_to_them_are_bound_with_it() {
        let req = verified(true);
        assert_eq!(req.answer_digest, AnswerDigest::Blake3);
        let h = answer(&req, b"rows");
        assert_eq!(
            h.get(&HDR_ANSWER_DIGEST).map(HeaderValue::as_bytes),
            Some(&b"blake3"[..])
        );
        let check = |h: &HeaderMap, body: &[u8]| {
            verify_response(&keys(), &req.nonce, "n1", Some("n2"), 200, h, body)
        };
        assert_eq!(check(&h, b"rows").as_deref(), Ok("n2"));
        assert_eq!(check(&h, b"rowz"), Err(SignatureError::BadSignature));
    }

    #[test]
    fn an_older_caller_without_the_offer_gets_a_sha256_answer_it_can_verify() {
        let req = verified(false);
        assert_eq!(req.answer_digest, AnswerDigest::Sha256);
        let h = answer(&req, b"rows");
        assert!(!h.contains_key(&HDR_ANSWER_DIGEST), "{h:?}");
        // The v1 answer: HMAC-SHA256 over the nonce, ids, status and SHA-256 of the body,
        // computed here the way a node before the offer verifies it.
        let mut v1 = mac_init(&[7; 32], b"keyviz-peer-answer-v1");
        for f in [
            req.nonce.as_bytes(),
            b"n1",
            b"n2",
            b"200",
            &Sha256::digest(b"rows")[..],
        ] {
            field(&mut v1, f);
        }
        let sig = URL_SAFE_NO_PAD.encode(v1.finalize().into_bytes());
        assert_eq!(
            h.get(&HDR_RESPONSE_SIGNATURE).map(HeaderValue::as_bytes),
            Some(sig.as_bytes())
        );
        // And a caller of this version accepts what an older peer sends (no digest header).
        assert_eq!(
            verify_response(&keys(), &req.nonce, "n1", Some("n2"), 200, &h, b"rows").as_deref(),
            Ok("n2")
        );
    }

    #[test]
    fn renaming_or_stripping_the_answer_digest_makes_the_answer_fail() {
        let req = verified(true);
        let check =
            |h: &HeaderMap| verify_response(&keys(), &req.nonce, "n1", Some("n2"), 200, h, b"rows");
        let mut stripped = answer(&req, b"rows");
        stripped.remove(&HDR_ANSWER_DIGEST);
        assert_eq!(check(&stripped), Err(SignatureError::BadSignature));
        let mut renamed = answer(&req, b"rows");
        renamed.insert(&HDR_ANSWER_DIGEST, HeaderValue::from_static("md5"));
        assert_eq!(
            check(&renamed),
            Err(SignatureError::Malformed("answer digest"))
        );
        // A v1 answer relabelled as BLAKE3 fails too.
        let mut relabelled = answer(&verified(false), b"rows");
        relabelled.insert(&HDR_ANSWER_DIGEST, HeaderValue::from_static("blake3"));
        assert_eq!(
            verify_response(
                &keys(),
                &verified(false).nonce,
                "n1",
                Some("n2"),
                200,
                &relabelled,
                b"rows"
            ),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn an_overlong_or_unknown_offer_falls_back_to_sha256() {
        let mut h = HeaderMap::new();
        h.insert(&HDR_ANSWER_DIGESTS, HeaderValue::from_static("md5, sha1"));
        assert_eq!(AnswerDigest::offered(&h), AnswerDigest::Sha256);
        h.insert(&HDR_ANSWER_DIGESTS, HeaderValue::from_static("md5, blake3"));
        assert_eq!(AnswerDigest::offered(&h), AnswerDigest::Blake3);
        let long = format!("{}blake3", "x,".repeat(40));
        h.insert(
            &HDR_ANSWER_DIGESTS,
            HeaderValue::from_str(&long).unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(AnswerDigest::offered(&h), AnswerDigest::Sha256);
    }

    #[test]
    fn a_previous_key_still_verifies_during_rotation() {
        let old = keys();
        let rotated = PeerKeys::new(vec![9; 32], Some(vec![7; 32]));
        let cache = ReplayCache::new(16);
        let s = sign_request(&old, &Method::GET, "/", b"", "n1", "n2", NOW)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            verify_request(
                &rotated,
                &Method::GET,
                "/",
                &headers(&s),
                b"",
                &accept("n2"),
                NOW,
                &cache
            )
            .is_ok()
        );
    }

    #[test]
    fn replay_cache_is_bounded_and_forgets_expired_nonces() {
        let cache = ReplayCache::new(2);
        assert!(cache.check_and_remember([1; 16], NOW + 10, NOW).is_ok());
        assert!(cache.check_and_remember([2; 16], NOW + 20, NOW).is_ok());
        assert_eq!(
            cache.check_and_remember([3; 16], NOW + 20, NOW),
            Err(SignatureError::ReplayCacheFull)
        );
        assert!(
            cache
                .check_and_remember([3; 16], NOW + 30, NOW + 10)
                .is_ok()
        );
        assert_eq!(
            cache.check_and_remember([2; 16], NOW + 30, NOW + 10),
            Err(SignatureError::Replayed)
        );
        assert_eq!(cache.len(), 2);
    }
}
