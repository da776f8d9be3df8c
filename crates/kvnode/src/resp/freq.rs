//! `OBJECT FREQ key`: how often a key was accessed lately, across the whole cluster.
//!
//! Redis answers from a per-key LFU counter (a logarithmic 0..255 value kept only under an
//! LFU eviction policy); `redis-cli --hotkeys` SCANs the keyspace, asks `OBJECT FREQ` of
//! every key and lists the largest. This store keeps no per-key counter; it keeps the
//! cluster's hot keys per history column. So the answer here is a **count**: the key's reads
//! plus writes over the last minute of closed history columns (the window is whole columns:
//! [`WINDOW_MS`] rounded up to the step, ending at the start of the column still filling),
//! summed over every node through the same fan-out as `HOTKEYS GET`. The count is the
//! capture's *lower bound* (operations certainly of that key), so a key is never reported
//! hotter than it was; a key the capture did not keep among the window's hottest answers 0.
//!
//! Cost: a `redis-cli --hotkeys` run asks about every key. The node computes the window's
//! table once (one cluster fan-out of reads and writes, [`MAX_HOT_KEYS_K`] keys each) and
//! answers every further question about the same window from it; concurrent questions wait
//! for the one fan-out in flight (single flight, a tokio mutex). A failed fan-out is kept for
//! its window too, so a broken cluster gets one error per window, not one per key.

use std::collections::HashMap;
use std::sync::Arc;

use keyviz::Series;
use keyviz::hotkeys::{HotKeyMode, HotKeyQuery, KeyRedactor, MAX_HOT_KEYS_K};

use super::hotkeys::HotKeysSource;

/// How much recent history a frequency covers (rounded up to whole columns).
pub const WINDOW_MS: i64 = 60_000;

/// Reply when the node keeps no hot keys because KeyViz sampling is off.
pub const UNTRACKED_DISABLED: &str =
    "ERR access frequency is not tracked: KeyViz sampling is disabled on this node";

/// Reply when hot-key capture is off (`--hot-keys=off`).
pub const UNTRACKED_OFF: &str =
    "ERR access frequency is not tracked: hot-key capture is off on this node (hot_keys = off)";

/// Per-key access counts of one window, or why they could not be had.
#[derive(Debug)]
struct Table {
    window: (i64, i64),
    counts: Result<HashMap<Vec<u8>, u64>, String>,
}

/// The node's `OBJECT FREQ` answers: a source of cluster hot keys, the capture's key form and
/// the history step. Shared by every connection.
pub struct Frequencies {
    source: Option<Arc<dyn HotKeysSource>>,
    redactor: KeyRedactor,
    step_ms: i64,
    table: tokio::sync::Mutex<Option<Table>>,
}

impl std::fmt::Debug for Frequencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frequencies")
            .field("source", &self.source.is_some())
            .field("mode", &self.redactor.mode())
            .field("step_ms", &self.step_ms)
            .finish()
    }
}

impl Frequencies {
    /// Frequencies from `source` (`None`: KeyViz is off), looked up in the form `redactor`
    /// captures keys in (the sampler's own), over history columns of `step_ms`.
    pub fn new(
        source: Option<Arc<dyn HotKeysSource>>,
        redactor: KeyRedactor,
        step_ms: u64,
    ) -> Self {
        Self {
            source,
            redactor,
            step_ms: i64::try_from(step_ms.max(1)).unwrap_or(i64::MAX),
            table: tokio::sync::Mutex::new(None),
        }
    }

    /// The window `[from, to)` a question at `now` is answered for: whole columns, the last
    /// one ending where the column still filling starts.
    pub fn window(&self, now_unix_ms: i64) -> (i64, i64) {
        let step = self.step_ms;
        let to = now_unix_ms - now_unix_ms.rem_euclid(step);
        let columns = (WINDOW_MS + step - 1) / step;
        (to.saturating_sub(columns.saturating_mul(step)), to)
    }

    /// The accesses of `key` (reads + writes, cluster-wide) in the window of `now_unix_ms`.
    /// `Err` is the full error text for the client.
    ///
    /// Blocks (asynchronously) on the table's tokio mutex, held across the window's one
    /// fan-out, which the source bounds by the admin fan-out timeout.
    pub async fn freq(&self, key: &[u8], now_unix_ms: i64) -> Result<u64, String> {
        let Some(source) = self.source.clone() else {
            return Err(UNTRACKED_DISABLED.into());
        };
        let mut form = Vec::new();
        if self.redactor.apply(key, &mut form).is_none() {
            return Err(UNTRACKED_OFF.into());
        }
        let window = self.window(now_unix_ms);
        let mut table = self.table.lock().await;
        if table.as_ref().is_none_or(|t| t.window != window) {
            let counts = fetch(source.as_ref(), window, now_unix_ms).await;
            *table = Some(Table { window, counts });
        }
        match table.as_ref().map(|t| &t.counts) {
            Some(Ok(counts)) => Ok(counts.get(&form).copied().unwrap_or(0)),
            Some(Err(e)) => Err(format!("ERR access frequency: {e}")),
            None => Err("ERR internal: no frequency table".into()),
        }
    }

    /// Whether keys are captured at all (`false` with KeyViz or hot-key capture off).
    pub fn tracked(&self) -> bool {
        self.source.is_some() && self.redactor.mode() != HotKeyMode::Off
    }
}

/// The window's per-key lower bounds of reads plus writes, from one fan-out per series.
async fn fetch(
    source: &dyn HotKeysSource,
    (from, to): (i64, i64),
    now_unix_ms: i64,
) -> Result<HashMap<Vec<u8>, u64>, String> {
    let query = |series| HotKeyQuery {
        series,
        from_unix_ms: Some(from),
        to_unix_ms: Some(to),
        k: MAX_HOT_KEYS_K,
        ..HotKeyQuery::default()
    };
    let (reads, writes) = futures::join!(
        source.hot_keys(query(Series::Reads), now_unix_ms),
        source.hot_keys(query(Series::Writes), now_unix_ms)
    );
    let mut counts = HashMap::new();
    for answer in [reads?, writes?] {
        for e in answer.hot.keys {
            *counts.entry(e.key).or_insert(0u64) += e.lower;
        }
    }
    Ok(counts)
}

/// The `OBJECT HELP` lines.
pub const HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "FREQ <key>",
    "    The key's reads + writes across the cluster over the last minute of KeyViz",
    "    history (a count, not Redis's logarithmic LFU counter; 0 when the key was not",
    "    among the window's hottest). Nil when the key does not exist.",
    "HELP",
    "    Print this help.",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::hotkeys::tests::hot;
    use crate::resp::hotkeys::{BoxFuture, ClusterAnswer};
    use parking_lot::Mutex;

    /// A source that answers every query with fixed keys per series and records the queries.
    struct Fake {
        reads: Vec<(&'static str, u64)>,
        writes: Vec<(&'static str, u64)>,
        fail: bool,
        asked: Mutex<Vec<HotKeyQuery>>,
    }

    impl HotKeysSource for Fake {
        fn hot_keys(&self, q: HotKeyQuery, _now: i64) -> BoxFuture<Result<ClusterAnswer, String>> {
            self.asked.lock().push(q.clone());
            let keys = match q.series {
                Series::Reads => self.reads.clone(),
                _ => self.writes.clone(),
            };
            let fail = self.fail;
            Box::pin(async move {
                if fail {
                    return Err("node 2 did not answer".into());
                }
                Ok(ClusterAnswer {
                    hot: hot(q.series, 0, 0, &keys),
                    expected: 3,
                    responded: 3,
                    failed: Vec::new(),
                    notes: Vec::new(),
                })
            })
        }
    }

    fn fake(fail: bool) -> Arc<Fake> {
        Arc::new(Fake {
            reads: vec![("hot", 900), ("warm", 40)],
            writes: vec![("hot", 100), ("written", 7)],
            fail,
            asked: Mutex::new(Vec::new()),
        })
    }

    #[tokio::test]
    async fn freq_adds_the_lower_bounds_of_reads_and_writes_and_unlisted_keys_are_zero() {
        let src = fake(false);
        let f = Frequencies::new(Some(src.clone()), KeyRedactor::raw(), 1_000);
        let now = 1_000_000_500;
        assert_eq!(f.freq(b"hot", now).await, Ok(1_000));
        assert_eq!(f.freq(b"warm", now).await, Ok(40));
        assert_eq!(f.freq(b"written", now).await, Ok(7));
        assert_eq!(f.freq(b"cold", now).await, Ok(0));
        let asked = src.asked.lock().clone();
        assert_eq!(
            asked.len(),
            2,
            "one fan-out per series for the whole window"
        );
        for q in &asked {
            assert_eq!(q.k, MAX_HOT_KEYS_K);
            assert_eq!(q.from_unix_ms, Some(1_000_000_000 - 60_000));
            assert_eq!(
                q.to_unix_ms,
                Some(1_000_000_000),
                "the filling column is left out"
            );
            assert_eq!((q.key_start.clone(), q.key_end.clone()), (None, None));
        }
    }

    #[tokio::test]
    async fn a_new_window_asks_again_and_a_failure_is_remembered_for_its_window() {
        let src = fake(true);
        let f = Frequencies::new(Some(src.clone()), KeyRedactor::raw(), 1_000);
        let e = f.freq(b"hot", 5_000).await.expect_err("fan-out failed");
        assert_eq!(e, "ERR access frequency: node 2 did not answer");
        assert!(f.freq(b"warm", 5_999).await.is_err());
        assert_eq!(
            src.asked.lock().len(),
            2,
            "the failure is kept for its window"
        );
        assert!(f.freq(b"warm", 6_000).await.is_err());
        assert_eq!(
            src.asked.lock().len(),
            4,
            "the next column's window asks again"
        );
    }

    #[tokio::test]
    async fn the_window_is_a_minute_rounded_up_to_whole_columns() {
        let f = Frequencies::new(None, KeyRedactor::raw(), 7_000);
        // 60 s is 8.6 columns of 7 s: nine columns, ending at the filling column's start.
        assert_eq!(f.window(70_001), (70_000 - 63_000, 70_000));
        let minute = Frequencies::new(None, KeyRedactor::raw(), 60_000);
        assert_eq!(minute.window(130_000), (60_000, 120_000));
    }

    #[tokio::test]
    async fn untracked_nodes_say_why() {
        let off = Frequencies::new(None, KeyRedactor::raw(), 1_000);
        assert_eq!(off.freq(b"k", 1).await, Err(UNTRACKED_DISABLED.into()));
        assert!(!off.tracked());
        let no_capture = Frequencies::new(Some(fake(false)), KeyRedactor::off(), 1_000);
        assert_eq!(no_capture.freq(b"k", 1).await, Err(UNTRACKED_OFF.into()));
        assert!(!no_capture.tracked());
    }

    #[tokio::test]
    async fn hashed_capture_is_looked_up_by_the_hash_of_the_asked_key() {
        let redactor = KeyRedactor::hashed(&[7u8; 32], Some(b':'));
        let mut hashed = Vec::new();
        redactor.apply(b"user:42", &mut hashed).expect("hashed");
        let form: &'static str = Box::leak(
            String::from_utf8(hashed)
                .expect("hashed form is ascii")
                .into_boxed_str(),
        );
        let src = Arc::new(Fake {
            reads: vec![(form, 12)],
            writes: vec![],
            fail: false,
            asked: Mutex::new(Vec::new()),
        });
        let f = Frequencies::new(Some(src), redactor, 1_000);
        assert_eq!(f.freq(b"user:42", 10_000).await, Ok(12));
        assert_eq!(f.freq(b"user:43", 10_000).await, Ok(0));
    }
}
