//! Prometheus metrics of the admin surface, served as OpenMetrics text at `GET /metrics`,
//! plus the hotspot signals ([`refresh_hotspots`], docs/ADMIN.md "Hotspot metrics").

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use keyviz::{Matrix, Series};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeriesLabel {
    series: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The series the hotspot signals are computed for (two fan-outs per refresh).
pub(crate) const HOTSPOT_SERIES: [Series; 2] = [Series::Writes, Series::Reads];
/// Length of the matrix window the signals look at (the 10-minute "hot for" signal
/// needs at least 10 minutes).
pub(crate) const HOTSPOT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Row budget of the hotspot query: hot ranges stay apart under the coarsening, and the
/// merge stays small.
pub(crate) const HOTSPOT_ROWS: usize = 64;
/// Least time between two refreshes; the step, when longer, is the bound (data changes
/// once per step).
pub(crate) const HOTSPOT_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Longest a scrape waits for a refresh before it serves the previous values.
pub(crate) const HOTSPOT_SCRAPE_WAIT: Duration = Duration::from_secs(5);

/// The hotspot gauges, one sample per series each.
struct HotspotGauges {
    hottest_share: Family<SeriesLabel, FloatGauge>,
    group_imbalance: Family<SeriesLabel, FloatGauge>,
    node_imbalance: Family<SeriesLabel, FloatGauge>,
    zscore: Family<SeriesLabel, FloatGauge>,
    hot_seconds: Family<SeriesLabel, FloatGauge>,
    sustained: Family<SeriesLabel, Gauge>,
    nodes_responded: Gauge,
    nodes_expected: Gauge,
    age_seconds: FloatGauge,
    refresh_failures: Counter,
}

/// When the view was last computed, and the step it saw.
#[derive(Default)]
struct HotspotState {
    refreshed: Option<Instant>,
    step: Duration,
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
    hotspot: HotspotGauges,
    /// Held across one refresh (so concurrent scrapes refresh once); nothing else takes it.
    hotspot_state: tokio::sync::Mutex<HotspotState>,
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
        let hotspot = HotspotGauges {
            hottest_share: Family::default(),
            group_imbalance: Family::default(),
            node_imbalance: Family::default(),
            zscore: Family::default(),
            hot_seconds: Family::default(),
            sustained: Family::default(),
            nodes_responded: Gauge::default(),
            nodes_expected: Gauge::default(),
            age_seconds: FloatGauge::default(),
            refresh_failures: Counter::default(),
        };
        registry.register(
            "keyviz_hottest_range_share",
            "Share (0..1) of the cluster's traffic over the last 5 steps taken by its hottest key range (cluster view, 64-row budget)",
            hotspot.hottest_share.clone(),
        );
        registry.register(
            "keyviz_group_load_imbalance_ratio",
            "Max over mean of the raft groups' traffic over the last 5 steps (1 = even; 0 = no traffic)",
            hotspot.group_imbalance.clone(),
        );
        registry.register(
            "keyviz_node_load_imbalance_ratio",
            "Max over mean of the nodes' traffic over the last 5 steps, over the nodes that answered (0 = no traffic)",
            hotspot.node_imbalance.clone(),
        );
        registry.register(
            "keyviz_hottest_range_zscore",
            "z-score of the hottest range's recent traffic per step against its own older steps in the 15-minute window (capped at +-100)",
            hotspot.zscore.clone(),
        );
        registry.register(
            "keyviz_hottest_range_hot_seconds",
            "How long the hottest range has taken at least 25% of every step's traffic, up to the 15-minute window",
            hotspot.hot_seconds.clone(),
        );
        registry.register(
            "keyviz_hotspot_sustained",
            "1 when the hottest range has been hot (>= 25% of the traffic) for at least 10 minutes",
            hotspot.sustained.clone(),
        );
        registry.register(
            "keyviz_hotspot_view_nodes_responded",
            "Nodes whose answer is in the hotspot view",
            hotspot.nodes_responded.clone(),
        );
        registry.register(
            "keyviz_hotspot_view_nodes_expected",
            "Nodes the hotspot view expected",
            hotspot.nodes_expected.clone(),
        );
        registry.register(
            "keyviz_hotspot_view_age_seconds",
            "Age of the hotspot view served (it is refreshed at most once per max(10s, step))",
            hotspot.age_seconds.clone(),
        );
        registry.register(
            "keyviz_hotspot_refresh_failures",
            "Hotspot view refreshes that failed (the previous values stay)",
            hotspot.refresh_failures.clone(),
        );
        Metrics {
            hotspot,
            hotspot_state: tokio::sync::Mutex::new(HotspotState::default()),
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

    /// Stores one series' signals.
    fn set_signals(&self, series: Series, s: &crate::hotspot::Signals, node_imbalance: f64) {
        let l = SeriesLabel {
            series: series.as_str().to_string(),
        };
        let h = &self.hotspot;
        h.hottest_share.get_or_create(&l).set(s.hottest_share);
        h.group_imbalance.get_or_create(&l).set(s.group_imbalance);
        h.node_imbalance.get_or_create(&l).set(node_imbalance);
        h.zscore.get_or_create(&l).set(s.hottest_zscore);
        h.hot_seconds.get_or_create(&l).set(s.hot_seconds);
        h.sustained
            .get_or_create(&l)
            .set(i64::from(s.hot_seconds >= 600.0));
    }

    /// OpenMetrics text of every metric.
    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// A fan-out body decoded back into its matrix and status.
#[derive(serde::Deserialize)]
struct Decoded {
    #[serde(flatten)]
    matrix: Matrix,
    #[serde(default)]
    fanout: Option<crate::FanoutStatus>,
}

/// Recent traffic of every node that answers: this node's local view and each peer's,
/// over the last [`crate::hotspot::RECENT_COLUMNS`] steps (one small query per node, all
/// in parallel under the fan-out timeout). A node's local view counts what it did itself:
/// the reads it served, and the writes it applied (every replica applies a write, so for
/// writes this measures replica placement, not leadership).
async fn node_loads(inner: &Arc<crate::state::Inner>, series: Series, step: Duration) -> Vec<u64> {
    use crate::fanout::{PeerAnswer, call_peer, call_peers, local_matrix};
    let recent_ms = i64::try_from(step.as_millis())
        .unwrap_or(i64::MAX)
        .saturating_mul(i64::try_from(crate::hotspot::RECENT_COLUMNS).unwrap_or(1));
    let params = crate::api::MatrixParams {
        series,
        from_unix_ms: Some(crate::clock::now_unix_ms().saturating_sub(recent_ms)),
        to_unix_ms: None,
        rows: 1,
        key_start: None,
        key_end: None,
    };
    let members = inner.membership.members();
    let targets = crate::fanout::membership::peer_targets(
        &inner.identity,
        &inner.config.fanout_nodes,
        &members,
    );
    let p = params.clone();
    let (local, peers) = tokio::join!(
        local_matrix(inner, &params, 1),
        call_peers(inner, &targets, move |i, t| call_peer(i, t, p.clone()))
    );
    let mut loads = Vec::with_capacity(targets.len() + 1);
    if let Ok(m) = local {
        loads.push(m.total());
    }
    for (res, _) in peers {
        if let Ok(PeerAnswer::Answer { value, .. }) = res {
            loads.push(value.total());
        }
    }
    loads
}

/// Recomputes the hotspot gauges from a cached cluster view when it is older than
/// max(10 s, step), then sets `keyviz_hotspot_view_age_seconds`. Called by `GET /metrics`
/// before rendering. A scrape waits at most 5 s for a refresh (running or its own); past
/// that it serves the previous values. Cost per scrape is bounded: at most one refresh per
/// interval whatever the scrape rate, and a refresh is, per series, one 64-row cluster
/// fan-out of the last 15 minutes plus one 1-row query per node. Locks: the hotspot state
/// mutex (async, held across the refresh; nothing else takes it).
pub(crate) async fn refresh_hotspots(inner: &Arc<crate::state::Inner>) {
    let metrics = &inner.metrics;
    if !inner.source.is_enabled() {
        return;
    }
    let work = async {
        let mut st = metrics.hotspot_state.lock().await;
        let interval = st.step.max(HOTSPOT_MIN_INTERVAL);
        if st.refreshed.is_some_and(|t| t.elapsed() < interval) {
            return st.refreshed;
        }
        let window_ms = i64::try_from(HOTSPOT_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let mut ok = true;
        for series in HOTSPOT_SERIES {
            let params = crate::api::MatrixParams {
                series,
                from_unix_ms: Some(crate::clock::now_unix_ms().saturating_sub(window_ms)),
                to_unix_ms: None,
                rows: HOTSPOT_ROWS,
                key_start: None,
                key_end: None,
            };
            let decoded = crate::fanout::run(inner.clone(), params)
                .await
                .ok()
                .and_then(|body| serde_json::from_slice::<Decoded>(&body).ok());
            let Some(d) = decoded else {
                ok = false;
                continue;
            };
            if d.matrix.step_ms > 0 {
                st.step = Duration::from_millis(d.matrix.step_ms);
            }
            if let Some(f) = &d.fanout {
                metrics
                    .hotspot
                    .nodes_responded
                    .set(i64::try_from(f.responded).unwrap_or(i64::MAX));
                metrics
                    .hotspot
                    .nodes_expected
                    .set(i64::try_from(f.expected).unwrap_or(i64::MAX));
            }
            let signals = crate::hotspot::signals(&d.matrix);
            let step = if st.step.is_zero() {
                HOTSPOT_MIN_INTERVAL
            } else {
                st.step
            };
            let nodes = crate::hotspot::imbalance(&node_loads(inner, series, step).await);
            metrics.set_signals(series, &signals, nodes);
        }
        if ok {
            st.refreshed = Some(Instant::now());
        } else {
            metrics.hotspot.refresh_failures.inc();
        }
        st.refreshed
    };
    let refreshed = tokio::time::timeout(HOTSPOT_SCRAPE_WAIT, work)
        .await
        .ok()
        .flatten();
    if let Some(t) = refreshed {
        metrics.hotspot.age_seconds.set(t.elapsed().as_secs_f64());
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

    #[test]
    fn hotspot_gauges_carry_one_series_label_and_the_computed_values() {
        let m = Metrics::new();
        let s = crate::hotspot::Signals {
            hottest_share: 0.75,
            group_imbalance: 2.5,
            hottest_zscore: 12.0,
            hot_seconds: 660.0,
            recent_total: 100,
        };
        m.set_signals(Series::Writes, &s, 1.5);
        m.set_signals(Series::Reads, &crate::hotspot::Signals::default(), 0.0);
        let text = m.render().unwrap_or_default();
        for line in [
            "keyviz_hottest_range_share{series=\"writes\"} 0.75",
            "keyviz_group_load_imbalance_ratio{series=\"writes\"} 2.5",
            "keyviz_node_load_imbalance_ratio{series=\"writes\"} 1.5",
            "keyviz_hottest_range_zscore{series=\"writes\"} 12.0",
            "keyviz_hottest_range_hot_seconds{series=\"writes\"} 660.0",
            "keyviz_hotspot_sustained{series=\"writes\"} 1",
            "keyviz_hotspot_sustained{series=\"reads\"} 0",
            "keyviz_hottest_range_share{series=\"reads\"} 0.0",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        // Bounded labels: every hotspot sample has exactly one label, `series`.
        for l in text
            .lines()
            .filter(|l| l.starts_with("keyviz_hot") && l.contains('{'))
        {
            let labels = &l[l.find('{').unwrap_or(0)..l.find('}').unwrap_or(0)];
            assert_eq!(labels.matches('=').count(), 1, "{l}");
            assert!(labels.starts_with("{series="), "{l}");
        }
    }
}
