//! The node's only door to the KeyViz sampler.
//!
//! Dispatch and the state machines call these methods; nothing else in the crate names
//! `keyviz::Sampler`. When sampling is disabled (`--keyviz-disabled`, used to measure its
//! overhead) every method is a no-op.

use std::sync::Arc;

use keyviz::{ReadRole, Sampler};

use crate::routing::Route;

/// Optional shared sampler; cheap to clone.
#[derive(Clone, Default)]
pub struct Sampling {
    sampler: Option<Arc<Sampler>>,
}

impl Sampling {
    /// Sampling into `sampler`.
    pub fn enabled(sampler: Arc<Sampler>) -> Self {
        Self {
            sampler: Some(sampler),
        }
    }

    /// No sampling at all.
    pub fn disabled() -> Self {
        Self { sampler: None }
    }

    /// The sampler, if enabled.
    pub fn sampler(&self) -> Option<&Arc<Sampler>> {
        self.sampler.as_ref()
    }

    pub(crate) fn register(&self, route: &Route) {
        if let Some(s) = &self.sampler
            && let Err(e) = s.register_route(route.spec())
        {
            tracing::warn!(route = route.id, error = %e, "keyviz: route registration refused");
        }
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Some(s) = &self.sampler {
            // Removing an unknown route is harmless here (it happens on first registration).
            let _ = s.remove_route(id);
        }
    }

    pub(crate) fn split(&self, id: u64, at: &[u8], right_id: u64) {
        if let Some(s) = &self.sampler
            && let Err(e) = s.split_route(id, at, right_id)
        {
            tracing::warn!(route = id, right_id, error = %e, "keyviz: split refused");
        }
    }

    /// One committed write, observed by the leader that proposed it, with the term of the log
    /// entry that carried it.
    #[inline]
    pub(crate) fn observe_write(
        &self,
        route: u64,
        key: &[u8],
        value_len: usize,
        group: u64,
        term: u64,
    ) {
        if let Some(s) = &self.sampler {
            s.observe_write(route, key, value_len, group, term);
        }
    }

    /// One read served by this node.
    #[inline]
    pub(crate) fn observe_read(&self, route: u64, key: &[u8], value_len: usize, leader: bool) {
        if let Some(s) = &self.sampler {
            let role = if leader {
                ReadRole::Leader
            } else {
                ReadRole::Follower
            };
            s.observe_read(route, key, value_len, role);
        }
    }

    /// Closes the current step (called at each step boundary and once at shutdown).
    pub(crate) fn flush(&self, now_unix_ms: i64) {
        if let Some(s) = &self.sampler
            && let Some(e) = s.flush(now_unix_ms).persist_error
        {
            tracing::warn!(error = %e, "keyviz: history persistence failed");
        }
    }

    /// The next step boundary after `now_unix_ms`, or `None` when disabled.
    pub(crate) fn next_flush_unix_ms(&self, now_unix_ms: i64) -> Option<i64> {
        self.sampler
            .as_ref()
            .map(|s| s.next_flush_unix_ms(now_unix_ms))
    }
}
