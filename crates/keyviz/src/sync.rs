//! The atomics shim.
//!
//! Every atomic in this crate is imported from here, so a model checker (loom,
//! under `cfg(loom)`) can replace them without touching the code that uses them.
//! Orderings are justified where each atomic is used (`// Ordering:` comments).

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
