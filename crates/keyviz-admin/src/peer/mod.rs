//! Node-to-node calls, one module for both kinds of peer traffic: the admin fan-out (matrix,
//! hot keys, identity) and kvnode's internal transport (Raft RPCs, forwarded operations).
//!
//! - [`transport`]: the pooled HTTP/1 client (plain or rustls), deadlines, body caps through
//!   `http_body_util::Limited`, signed requests and verified answers.
//! - [`signing`]: the request/answer MAC scheme and the replay cache.
//! - [`server`]: the axum middleware that verifies signed requests and signs their answers.
//! - [`offload`]: runs a big body's CPU and disk work off the tokio workers.
//!
//! docs/SECURITY.md ("Peers") says what this proves and what it does not.

pub mod offload;
pub mod server;
pub mod signing;
pub mod transport;

pub use offload::{OFF_WORKER_BYTES, off_worker};
pub use server::{GuardConfig, PeerGuard};
pub use signing::{PeerKeys, VerifiedRequest};
pub use transport::{PeerResponse, PeerTransport, Signing, TransportConfig, TransportError, chain};
