//! One `keyviz top` refresh as data: the hottest key ranges and keys per series and the
//! fan-out status, built from the admin API's answers. This is also the documented
//! `--once --format json` document (docs/ADMIN.md, "keyviz top"): fields are only ever
//! added, never renamed or removed, and `version` changes if that rule must be broken.

use base64::Engine as _;
use keyviz::Series;
use keyviz::{MatrixRow, key_preview};
use keyviz_admin::FanoutStatus;
use serde::Serialize;

use crate::admin_client::{HotKeysAnswer, MatrixAnswer, sanitize};

/// Version of the JSON document.
pub(crate) const SNAPSHOT_VERSION: u32 = 1;
/// Longest label kept from a server-provided preview.
const LABEL_CHARS: usize = 64;

/// The whole refresh.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    /// Version of this document's shape.
    pub(crate) version: u32,
    /// The admin API asked (`http://host:port`).
    pub(crate) admin: String,
    /// When the snapshot was taken (client clock), RFC 3339 UTC.
    pub(crate) generated_at: String,
    /// The same instant in unix milliseconds.
    pub(crate) generated_at_unix_ms: i64,
    /// Length of the window summarised.
    pub(crate) window_ms: u64,
    /// Start of the window (`generated_at_unix_ms - window_ms`); columns starting at or
    /// after it are counted.
    pub(crate) from_unix_ms: i64,
    /// True when any answer left a node out (see `nodes`).
    pub(crate) degraded: bool,
    /// The fan-out status over every answer of this snapshot.
    pub(crate) nodes: NodesSummary,
    /// One entry per series asked, in the order asked.
    pub(crate) series: Vec<SeriesSnapshot>,
}

/// Fan-out status summarised. For one answer: its counts and failed nodes. For the whole
/// snapshot: the fewest nodes that answered any one request (nodes that answered without
/// hot keys count as answering) and the most expected, and every node that failed in any
/// answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct NodesSummary {
    /// Distinct nodes merged (self included); for the whole snapshot, the fewest that
    /// answered any one request.
    pub(crate) responded: usize,
    /// Distinct nodes expected (self included).
    pub(crate) expected: usize,
    /// Nodes that did not answer (or answered something unusable), by name.
    pub(crate) unreachable: Vec<Unreachable>,
    /// Nodes that answered but keep no hot keys (an older version, `--hot-keys=off`) or
    /// capture them in another mode: reachable, yet missing from the hot-key merge.
    pub(crate) without_hot_keys: Vec<Unreachable>,
}

/// `reason`s of nodes that answered but could not contribute hot keys.
const NO_HOT_KEY_REASONS: [&str; 2] = [
    keyviz_admin::hotkeys::REASON_HOT_KEYS_UNAVAILABLE,
    keyviz_admin::hotkeys::REASON_MODE_MISMATCH,
];

/// One node left out of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Unreachable {
    /// The node's name as the entry node knows it (admin address).
    pub(crate) node: String,
    /// Its node id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) node_id: Option<String>,
    /// Why (the entry node's text, sanitised).
    pub(crate) error: String,
}

impl NodesSummary {
    /// The status of one answer; `None` (no `fanout` block) counts as one node that answered.
    pub(crate) fn of(f: Option<&FanoutStatus>) -> NodesSummary {
        let Some(f) = f else {
            return NodesSummary {
                responded: 1,
                expected: 1,
                unreachable: Vec::new(),
                without_hot_keys: Vec::new(),
            };
        };
        let mut out = NodesSummary {
            responded: f.responded,
            expected: f.expected,
            ..NodesSummary::default()
        };
        for n in f.nodes.iter().filter(|n| !n.ok) {
            let entry = Unreachable {
                node: sanitize(&n.node, LABEL_CHARS),
                node_id: n.node_id.as_deref().map(|id| sanitize(id, LABEL_CHARS)),
                error: sanitize(n.error.as_deref().unwrap_or("no answer"), 200),
            };
            if n.reason
                .as_deref()
                .is_some_and(|r| NO_HOT_KEY_REASONS.contains(&r))
            {
                out.without_hot_keys.push(entry);
            } else {
                out.unreachable.push(entry);
            }
        }
        out
    }

    /// True when a node is missing for another reason than keeping no hot keys.
    pub(crate) fn degraded(&self) -> bool {
        !self.unreachable.is_empty() || self.responded + self.without_hot_keys.len() < self.expected
    }

    /// Nodes that answered, counting those that answered without hot keys.
    fn reachable(&self) -> usize {
        self.responded.saturating_add(self.without_hot_keys.len())
    }

    /// Folds in one answer: the fewest reachable nodes and the most expected over the
    /// answers, failed nodes from every answer (union by name).
    fn absorb(&mut self, other: &NodesSummary, first: bool) {
        if first {
            self.responded = other.reachable();
            self.expected = other.expected;
        } else {
            self.responded = self.responded.min(other.reachable());
            self.expected = self.expected.max(other.expected);
        }
        for (mine, theirs) in [
            (&mut self.unreachable, &other.unreachable),
            (&mut self.without_hot_keys, &other.without_hot_keys),
        ] {
            for u in theirs {
                if !mine.iter().any(|v| v.node == u.node) {
                    mine.push(u.clone());
                }
            }
        }
    }
}

/// Fan-out status of the two answers of one series.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SeriesFanout {
    /// Of the matrix answer.
    pub(crate) matrix: NodesSummary,
    /// Of the hot-keys answer; `null` when there was none.
    pub(crate) hot_keys: Option<NodesSummary>,
}

/// One series: its hottest ranges and keys.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SeriesSnapshot {
    /// The series (`writes`, `reads`, `write_bytes`, `read_bytes`).
    pub(crate) series: Series,
    /// Exact total of the series over the window (sum of the matrix's cells).
    pub(crate) total: u64,
    /// Column width of the matrix, ms (0 when the server did not say).
    pub(crate) step_ms: u64,
    /// Columns counted.
    pub(crate) columns: usize,
    /// Hottest key ranges first (rows with traffic only), at most `k`.
    pub(crate) ranges: Vec<RangeEntry>,
    /// The hot keys; `null` when the node could not answer them (see `hot_keys_error`).
    pub(crate) hot_keys: Option<HotKeysSnapshot>,
    /// Why `hot_keys` is `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hot_keys_error: Option<String>,
    /// Fan-out status of the two answers.
    pub(crate) fanout: SeriesFanout,
}

/// One key range (matrix row) ranked by its total over the window.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RangeEntry {
    /// 1 = hottest.
    pub(crate) rank: usize,
    /// The row's stable id (`route:<id>`, `route:<id>#<sub>`, `virtual:...`).
    pub(crate) bucket_id: String,
    /// Start key, base64; `null` = the empty key.
    pub(crate) start: Option<String>,
    /// End key (exclusive), base64; `null` = unbounded.
    pub(crate) end: Option<String>,
    /// Printable start key.
    pub(crate) start_preview: String,
    /// Printable end key; `null` = unbounded.
    pub(crate) end_preview: Option<String>,
    /// Smallest key observed in the row, base64, when the node reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_key: Option<String>,
    /// Largest key observed in the row, base64, when the node reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_key: Option<String>,
    /// What to call the row: the preview of its first observed key when known (a real
    /// key), else of its start.
    pub(crate) label: String,
    /// Sum of the row over the window.
    pub(crate) total: u64,
    /// `total` / the series' total (0 when that is 0).
    pub(crate) share: f64,
    /// Routes the row stands for.
    pub(crate) route_count: u64,
    /// True for a row standing for several routes.
    pub(crate) aggregate: bool,
}

/// The hot keys of one series.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HotKeysSnapshot {
    /// Capture mode of the nodes (`off`, `hashed`, `raw`).
    pub(crate) mode: String,
    /// Exact total of the window the shares are relative to.
    pub(crate) total: u64,
    /// Upper bound on the count of any key not listed.
    pub(crate) floor: u64,
    /// True when a bound is statistical (sampled capture).
    pub(crate) sampled: bool,
    /// Hottest first, at most `k`.
    pub(crate) keys: Vec<HotKeyRow>,
    /// Why a node's input was left out of the merge.
    pub(crate) warnings: Vec<String>,
}

/// One hot key.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HotKeyRow {
    /// 1 = hottest.
    pub(crate) rank: usize,
    /// The key, base64.
    pub(crate) key: String,
    /// Printable key.
    pub(crate) preview: String,
    /// Best estimate of its count.
    pub(crate) estimate: u64,
    /// Lower bound of its count.
    pub(crate) lower: u64,
    /// Upper bound of its count.
    pub(crate) upper: u64,
    /// `estimate / total`.
    pub(crate) share: f64,
    /// The key was cut at 256 bytes.
    pub(crate) truncated: bool,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A server-provided label made safe for a terminal: printable ASCII and `…` only.
pub(crate) fn safe_label(text: &str) -> String {
    sanitize(text, LABEL_CHARS)
        .chars()
        .map(|c| {
            if c == '…' || (' '..='~').contains(&c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn share(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        // Precision loss only beyond 2^53 operations in one window.
        #[allow(clippy::cast_precision_loss)]
        let s = part as f64 / total as f64;
        s.clamp(0.0, 1.0)
    }
}

/// Ranks the matrix's rows by their total (ties: lower start key first) and keeps the
/// `k` hottest with traffic.
pub(crate) fn hottest_ranges(rows: &[MatrixRow], total: u64, k: usize) -> Vec<RangeEntry> {
    let mut ranked: Vec<(u64, &MatrixRow)> = rows
        .iter()
        .map(|r| (r.total(), r))
        .filter(|(t, _)| *t > 0)
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.start.cmp(&b.1.start)));
    ranked
        .into_iter()
        .take(k)
        .enumerate()
        .map(|(i, (t, r))| {
            let start = r.start.as_deref().unwrap_or_default();
            let label = match &r.first_key {
                Some(fk) if !fk.is_empty() => key_preview(fk),
                _ => key_preview(start),
            };
            RangeEntry {
                rank: i + 1,
                bucket_id: sanitize(&r.bucket_id, LABEL_CHARS),
                start: r.start.as_deref().filter(|s| !s.is_empty()).map(b64),
                end: r.end.as_deref().map(b64),
                start_preview: key_preview(start),
                end_preview: r.end.as_deref().map(key_preview),
                first_key: r.first_key.as_deref().map(b64),
                last_key: r.last_key.as_deref().map(b64),
                label,
                total: t,
                share: share(t, total),
                route_count: r.route_count,
                aggregate: r.aggregate,
            }
        })
        .collect()
}

/// What one series' refresh produced: the matrix (required) and the hot keys (optional).
pub(crate) struct SeriesInput {
    /// The series.
    pub(crate) series: Series,
    /// The matrix answer.
    pub(crate) matrix: MatrixAnswer,
    /// The hot-keys answer, or why there is none.
    pub(crate) hot_keys: Result<HotKeysAnswer, String>,
}

/// Builds one series' part of the snapshot.
pub(crate) fn series_snapshot(input: SeriesInput, k: usize) -> SeriesSnapshot {
    let m = &input.matrix.matrix;
    let total = m.total();
    let ranges = hottest_ranges(&m.rows, total, k);
    let (hot_keys, hot_keys_error, hot_fanout) = match input.hot_keys {
        Ok(a) => {
            let keys = a
                .hot
                .keys
                .iter()
                .take(k)
                .enumerate()
                .map(|(i, e)| {
                    let preview = if e.preview.is_empty() {
                        key_preview(&e.key)
                    } else {
                        safe_label(&e.preview)
                    };
                    HotKeyRow {
                        rank: i + 1,
                        key: b64(&e.key),
                        preview,
                        estimate: e.estimate,
                        lower: e.lower,
                        upper: e.upper,
                        share: e.share.clamp(0.0, 1.0),
                        truncated: e.truncated,
                    }
                })
                .collect();
            let snap = HotKeysSnapshot {
                mode: a.hot.mode.as_str().to_string(),
                total: a.hot.total,
                floor: a.hot.floor,
                sampled: a.hot.sampled,
                keys,
                warnings: a
                    .hot
                    .warnings
                    .iter()
                    .take(32)
                    .map(|w| sanitize(w, 200))
                    .collect(),
            };
            (Some(snap), None, Some(NodesSummary::of(a.fanout.as_ref())))
        }
        Err(e) => (None, Some(e), None),
    };
    SeriesSnapshot {
        series: input.series,
        total,
        step_ms: m.step_ms,
        columns: m.column_unix_ms.len(),
        ranges,
        hot_keys,
        hot_keys_error,
        fanout: SeriesFanout {
            matrix: NodesSummary::of(input.matrix.fanout.as_ref()),
            hot_keys: hot_fanout,
        },
    }
}

/// Puts the series together and summarises the fan-out over all of them.
pub(crate) fn snapshot(
    admin: String,
    now_unix_ms: i64,
    window_ms: u64,
    series: Vec<SeriesSnapshot>,
) -> Snapshot {
    let mut nodes = NodesSummary::default();
    let answers = series
        .iter()
        .flat_map(|s| std::iter::once(&s.fanout.matrix).chain(s.fanout.hot_keys.as_ref()));
    for (i, a) in answers.enumerate() {
        nodes.absorb(a, i == 0);
    }
    // A node missing from a hot-key answer only is reported, not counted as degraded.
    nodes
        .without_hot_keys
        .retain(|w| !nodes.unreachable.iter().any(|u| u.node == w.node));
    let degraded = nodes.degraded()
        || series.iter().any(|s| {
            s.fanout.matrix.degraded()
                || s.fanout
                    .hot_keys
                    .as_ref()
                    .is_some_and(NodesSummary::degraded)
        });
    Snapshot {
        version: SNAPSHOT_VERSION,
        admin,
        generated_at: keyviz::format_rfc3339_ms(now_unix_ms),
        generated_at_unix_ms: now_unix_ms,
        window_ms,
        from_unix_ms: now_unix_ms.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX)),
        degraded,
        nodes,
        series,
    }
}

/// Counts of node names, for tests and messages: how many answers left each node out.
#[cfg(test)]
fn unreachable_names(s: &Snapshot) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for u in &s.nodes.unreachable {
        *m.entry(u.node.clone()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyviz::Matrix;
    use keyviz_admin::NodeStatus;

    fn row(id: &str, start: &str, end: Option<&str>, values: Vec<u64>) -> MatrixRow {
        MatrixRow {
            bucket_id: id.into(),
            start: Some(start.as_bytes().to_vec()),
            end: end.map(|e| e.as_bytes().to_vec()),
            route_count: 1,
            values,
            ..MatrixRow::default()
        }
    }

    fn status(node: &str, ok: bool) -> NodeStatus {
        NodeStatus {
            node: node.into(),
            node_id: None,
            ok,
            error: (!ok).then(|| "peer request failed: connection refused\x1b[2J".into()),
            reason: (!ok).then(|| "connect".into()),
            generated_at: None,
            elapsed_ms: 1,
            warnings: vec![],
        }
    }

    #[test]
    fn ranges_rank_by_window_total_with_shares_and_real_key_labels() {
        let mut hot = row("route:2", "h", Some("i"), vec![5, 10]);
        hot.first_key = Some(b"hot:counter".to_vec());
        let rows = vec![
            row("route:1", "a", Some("h"), vec![1, 2]),
            hot,
            row("route:3", "i", None, vec![0, 0]),
            row("route:4", "j", None, vec![3, 0]),
        ];
        let r = hottest_ranges(&rows, 21, 10);
        assert_eq!(r.len(), 3, "rows without traffic are left out");
        assert_eq!(r[0].bucket_id, "route:2");
        assert_eq!(r[0].label, "hot:counter");
        assert_eq!(r[0].total, 15);
        assert!((r[0].share - 15.0 / 21.0).abs() < 1e-9);
        // Tie on 3: the lower start key ranks first.
        assert_eq!(
            (r[1].bucket_id.as_str(), r[1].label.as_str()),
            ("route:1", "a")
        );
        assert_eq!(r[2].end_preview, None);
        assert_eq!(hottest_ranges(&rows, 21, 1).len(), 1, "k bounds the list");
    }

    #[test]
    fn fanout_summary_takes_the_worst_answer_and_names_unreachable_nodes_once() {
        let matrix = |ok3: bool| MatrixAnswer {
            matrix: Matrix::empty(Series::Writes, 1000, String::new()),
            fanout: Some(FanoutStatus {
                nodes: vec![status("n1", true), status("n2", true), status("n3", ok3)],
                responded: if ok3 { 3 } else { 2 },
                expected: 3,
            }),
            compare: None,
            baseline_fanout: None,
        };
        let series = vec![
            series_snapshot(
                SeriesInput {
                    series: Series::Writes,
                    matrix: matrix(false),
                    hot_keys: Err("not served".into()),
                },
                5,
            ),
            series_snapshot(
                SeriesInput {
                    series: Series::Reads,
                    matrix: matrix(false),
                    hot_keys: Err("not served".into()),
                },
                5,
            ),
        ];
        let s = snapshot("http://x:1".into(), 10_000, 5_000, series);
        assert!(s.degraded);
        assert_eq!((s.nodes.responded, s.nodes.expected), (2, 3));
        assert_eq!(
            unreachable_names(&s).into_iter().collect::<Vec<_>>(),
            vec![("n3".to_string(), 1)]
        );
        assert!(!s.nodes.unreachable[0].error.contains('\x1b'));
        assert_eq!(s.from_unix_ms, 5_000);
        let healthy = snapshot(
            "http://x:1".into(),
            0,
            1,
            vec![series_snapshot(
                SeriesInput {
                    series: Series::Writes,
                    matrix: matrix(true),
                    hot_keys: Err("x".into()),
                },
                5,
            )],
        );
        assert!(!healthy.degraded);
    }

    #[test]
    fn nodes_without_hot_keys_are_named_but_do_not_make_the_answer_degraded() {
        let fanout = |third: NodeStatus, responded: usize| FanoutStatus {
            nodes: vec![status("n1", true), status("n2", true), third],
            responded,
            expected: 3,
        };
        let mut old = status("n3", false);
        old.reason = Some("hot_keys_unavailable".into());
        let hot = HotKeysAnswer {
            hot: keyviz::hotkeys::HotKeys {
                series: Series::Writes,
                mode: keyviz::hotkeys::HotKeyMode::Raw,
                keys: vec![],
                total: 0,
                floor: 0,
                sampled: false,
                warnings: vec![],
            },
            fanout: Some(fanout(old, 2)),
        };
        let s = snapshot(
            "http://x:1".into(),
            0,
            1,
            vec![series_snapshot(
                SeriesInput {
                    series: Series::Writes,
                    matrix: MatrixAnswer {
                        matrix: Matrix::empty(Series::Writes, 1000, String::new()),
                        fanout: Some(fanout(status("n3", true), 3)),
                        compare: None,
                        baseline_fanout: None,
                    },
                    hot_keys: Ok(hot),
                },
                5,
            )],
        );
        assert!(!s.degraded, "{s:?}");
        assert_eq!((s.nodes.responded, s.nodes.expected), (3, 3));
        assert_eq!(s.nodes.without_hot_keys.len(), 1);
        assert_eq!(s.nodes.without_hot_keys[0].node, "n3");
        assert!(s.nodes.unreachable.is_empty());
    }

    #[test]
    fn labels_from_the_server_are_printable_ascii() {
        assert_eq!(safe_label("a\u{1b}[31mb\u{4e16}…"), "a?[31mb?…");
    }
}
