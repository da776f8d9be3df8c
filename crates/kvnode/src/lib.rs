//! The KeyViz reference store: a multi-Raft key-value node that speaks the Redis protocol and
//! feeds every operation to a KeyViz sampler.
//!
//! # Overview
//! - [`raft`]: openraft 0.9 groups over one fjall database (the only module that names openraft).
//! - [`routing`]: key → route → group catalog and runtime splits.
//! - [`dispatch`]: executes one operation on the right group: forwards writes to the leader,
//!   serves reads locally, and observes each operation exactly once.
//! - [`resp`]: the Redis protocol server.
//! - [`node`]: [`node::start`] wires everything for one process.
//! - [`workload`]: the demo's traffic generator.

mod admin;
pub mod config;
pub mod dispatch;
mod history;
mod internal;
pub mod node;
pub mod raft;
pub mod resp;
pub mod routing;
pub mod sampling;
pub mod store;
pub mod transport;
pub mod workload;
