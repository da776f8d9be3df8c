//! Prometheus metrics of the admin surface, served as OpenMetrics text at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// The admin surface's metrics. Cheap to update from any thread.
pub(crate) struct Metrics {
    registry: Registry,
    fanout_seconds: Histogram,
    peer_failures: Family<ReasonLabel, Counter>,
    peer_calls: Counter,
    login_failures: Family<ReasonLabel, Counter>,
    matrix_requests: Family<OutcomeLabel, Counter>,
    hot_keys_requests: Family<OutcomeLabel, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        // 1 ms .. ~16 s: covers loopback calls up to timeouts far above the 2 s default.
        let fanout_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let peer_failures = Family::<ReasonLabel, Counter>::default();
        let peer_calls = Counter::default();
        let login_failures = Family::<ReasonLabel, Counter>::default();
        let matrix_requests = Family::<OutcomeLabel, Counter>::default();
        let hot_keys_requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "keyviz_fanout_duration_seconds",
            "Wall time of one cluster fan-out (local view, peer calls and merge)",
            fanout_seconds.clone(),
        );
        registry.register(
            "keyviz_fanout_peer_failures",
            "Failed peer calls by reason (connect, timeout, status, body_cap, decode, invalid, identity, hot_keys_unavailable)",
            peer_failures.clone(),
        );
        registry.register(
            "keyviz_fanout_peer_calls",
            "Peer calls attempted (matrix and hot keys)",
            peer_calls.clone(),
        );
        registry.register(
            "keyviz_admin_login_failures",
            "Failed operator logins by reason",
            login_failures.clone(),
        );
        registry.register(
            "keyviz_matrix_requests",
            "Matrix requests by how they were served (fanout, shared, reused, local, peer)",
            matrix_requests.clone(),
        );
        registry.register(
            "keyviz_hot_keys_requests",
            "Hot-key requests by how they were served (fanout, shared, reused, peer)",
            hot_keys_requests.clone(),
        );
        Metrics {
            registry,
            hot_keys_requests,
            fanout_seconds,
            peer_failures,
            peer_calls,
            login_failures,
            matrix_requests,
        }
    }

    pub(crate) fn observe_fanout(&self, seconds: f64) {
        self.fanout_seconds.observe(seconds);
    }

    pub(crate) fn peer_call(&self) {
        self.peer_calls.inc();
    }

    pub(crate) fn peer_failure(&self, reason: &str) {
        self.peer_failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub(crate) fn login_failure(&self, reason: &str) {
        self.login_failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub(crate) fn matrix_request(&self, outcome: &str) {
        self.matrix_requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub(crate) fn hot_keys_request(&self, outcome: &str) {
        self.hot_keys_requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// OpenMetrics text of every metric.
    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_contains_updated_series() {
        let m = Metrics::new();
        m.login_failure("invalid_credentials");
        m.peer_failure("timeout");
        m.peer_failure("timeout");
        m.observe_fanout(0.01);
        let text = m.render().unwrap_or_default();
        assert!(
            text.contains("keyviz_admin_login_failures_total{reason=\"invalid_credentials\"} 1")
        );
        assert!(text.contains("keyviz_fanout_peer_failures_total{reason=\"timeout\"} 2"));
        assert!(text.contains("keyviz_fanout_duration_seconds_count 1"));
    }
}
