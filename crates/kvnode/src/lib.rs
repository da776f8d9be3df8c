//! The KeyViz reference store: a multi-Raft key-value node that speaks the Redis protocol and
//! feeds every operation to a KeyViz sampler.
//!
//! # Overview
//! - [`raft`]: openraft 0.9 groups over one fjall database (the only module that names openraft).
//! - [`routing`]: key → route → group catalog and runtime splits.
//! - [`dispatch`]: executes one operation on the right group: forwards writes to the leader
//!   (with a request id, so a retry applies once) and serves and observes reads.
//! - [`counting`]: write counts on apply, on every replica, fenced against the KeyViz flush.
//! - [`resp`]: the Redis protocol server.
//! - [`node`]: [`node::start`] wires everything for one process.
//! - [`workload`]: the demo's traffic generator.
//!
//! # Example
//!
//! A single-node cluster (it is its own only member) with KeyViz sampling on:
//!
//! ```no_run
//! # async fn run() -> Result<(), kvnode::node::NodeError> {
//! use kvnode::config::NodeConfig;
//!
//! let cfg = NodeConfig {
//!     node_id: 1,
//!     resp_addr: "127.0.0.1:6380".into(),
//!     raft_addr: "127.0.0.1:7380".into(),
//!     data_dir: "/tmp/kvnode-example".into(),
//!     step_ms: 2_000,
//!     ..NodeConfig::default()
//! };
//! let node = kvnode::node::start(cfg).await?;
//! node.wait_ready(std::time::Duration::from_secs(10)).await;
//! // ... serve `redis-cli -p 6380` until told to stop, then:
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod admin;
pub mod config;
pub mod counting;
pub mod dispatch;
mod history;
mod internal;
pub mod leaders;
pub mod limits;
pub mod node;
pub mod raft;
pub mod resp;
pub mod routing;
pub mod sampling;
pub mod store;
pub mod transport;
pub mod workload;
