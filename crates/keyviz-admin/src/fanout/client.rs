//! What one fan-out peer call can fail with. The HTTP client itself is the shared peer
//! transport ([`crate::peer::transport`]); this is the fan-out's view of its errors.

use std::time::Duration;

use crate::peer::TransportError;
pub use crate::peer::chain;

/// Why one peer call failed. Every variant becomes `ok:false` with its text; the fan-out
/// itself never fails because of a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The configured entry is not a usable peer address.
    #[error("invalid peer address: {0}")]
    Address(String),
    /// Connection or protocol failure before a response arrived.
    #[error("peer request failed: {0}")]
    Connect(String),
    /// No complete answer within the fan-out timeout.
    #[error("peer did not answer within {0:?}")]
    Timeout(Duration),
    /// The peer answered with a non-200 status.
    #[error("peer returned status {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Up to 512 bytes of the body, lossily decoded.
        body: String,
    },
    /// The body exceeded the cap; reading stopped there.
    #[error("peer response exceeds the {cap}-byte cap")]
    BodyCap {
        /// The cap in bytes.
        cap: usize,
    },
    /// The body is not a matrix (syntax, types).
    #[error("decode peer response: {0}")]
    Decode(String),
    /// The matrix decoded but breaks an invariant (lengths, order).
    #[error("invalid peer matrix: {0}")]
    Invalid(String),
    /// The peer is not the node it was addressed as (or did not say who it is).
    #[error("peer identity: {0}")]
    Identity(String),
    /// The peer did not prove that it holds the cluster secret when challenged for its
    /// identity: an impostor, a node with another secret, or an older node. It got no
    /// request it could use elsewhere and nothing of it is merged.
    #[error("peer identity unproven: {0}")]
    IdentityUnproven(String),
    /// A proven peer's answer failed its MAC (tampered, replayed, or for another request).
    #[error("peer answer not authenticated: {0}")]
    Unauthenticated(String),
    /// The hot-key answer decoded but breaks an invariant (bounds, order, limits, series).
    #[error("invalid peer hot keys: {0}")]
    InvalidHotKeys(String),
    /// The peer keeps no hot keys: an older node without the endpoint (404), KeyViz off
    /// there (503 `keyviz_disabled`), or capture mode `off`.
    #[error("peer has no hot keys: {0}")]
    HotKeysUnavailable(String),
}

impl PeerError {
    /// Short stable label used as the metrics `reason`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            PeerError::Address(_) => "address",
            PeerError::Connect(_) => "connect",
            PeerError::Timeout(_) => "timeout",
            PeerError::Status { .. } => "status",
            PeerError::BodyCap { .. } => "body_cap",
            PeerError::Decode(_) => "decode",
            PeerError::Invalid(_) => "invalid",
            PeerError::Identity(_) => "identity",
            PeerError::IdentityUnproven(_) => "peer_identity_unproven",
            PeerError::Unauthenticated(_) => "peer_answer_unauthenticated",
            PeerError::InvalidHotKeys(_) => "invalid",
            PeerError::HotKeysUnavailable(_) => "hot_keys_unavailable",
        }
    }
}

impl From<TransportError> for PeerError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Address(a) => PeerError::Address(a),
            TransportError::Connect { detail, .. } => PeerError::Connect(detail),
            TransportError::Timeout(d) => PeerError::Timeout(d),
            TransportError::BodyCap { cap } => PeerError::BodyCap { cap },
            TransportError::Sign(e) => PeerError::Identity(e.to_string()),
            TransportError::Unauthenticated(e) => PeerError::Unauthenticated(e.to_string()),
        }
    }
}
