//! `HOTKEYS START / GET / STOP / RESET` (Redis 8.6), answered for the whole cluster.
//!
//! Redis tracks hot keys per server, in a sketch that exists only while a session runs. Here
//! hot-key capture is always on (the KeyViz sampler keeps a top-keys summary per row and
//! column), so a session is only a *time window* kept on the node that received `START`:
//! `GET` asks the cluster ([`HotKeysSource`], normally the admin fan-out) for the hot keys of
//! that window and answers in Redis's reply shape. Any node may be asked, including one that
//! served none of the traffic.
//!
//! What the metrics mean here (see `docs/STORE.md`, "HOTKEYS over RESP"):
//! * `CPU`: per-key CPU time is not measured. `by-cpu-time-us` lists **operations** (reads +
//!   writes, writes counted once per raft group and term) and `all-commands-all-slots-us` is
//!   the operation total, so each key's share is right; `keyviz-cpu-unit` says so in the reply.
//!   `total-cpu-time-user-ms` / `total-cpu-time-sys-ms` are left out (not measured cluster-wide).
//! * `NET`: `by-net-bytes` lists key + value bytes of reads and writes (`read_bytes` +
//!   `write_bytes`), not socket bytes.
//! * `SAMPLE` is accepted and reported; the capture runs anyway, so it changes nothing.
//! * `SLOTS` is refused: this store partitions keys by range and has no hash slots.
//!
//! The history is made of columns of one step each: the window is widened to whole columns
//! (from the start of the column holding `START`, up to the end of the column holding `STOP`
//! or now), and a column's keys appear once it is sealed, at its step boundary.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use keyviz::Series;
use keyviz::hotkeys::{
    HotItem, HotKeyMode, HotKeyQuery, HotKeys, HotSummary, MAX_HOT_KEYS_K, merge_hot_keys,
};
use keyviz_admin::FanoutStatus;
use parking_lot::Mutex;

use super::codec::Reply;

/// Most keys `COUNT` may ask for (Redis's limit).
pub const MAX_COUNT: usize = 64;
/// Keys listed when `START` gives no `COUNT` (Redis's default).
pub const DEFAULT_COUNT: usize = 10;
/// Longest `DURATION`, seconds (Redis's limit).
pub const MAX_DURATION_S: u64 = 1_000_000;
/// Keys asked per series before reads and writes are added up, per key listed: a key just
/// outside the top `k` of both series can still be in the top `k` of their sum.
const OVERFETCH: usize = 4;

/// A parsed `HOTKEYS` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotkeysCmd {
    /// `HOTKEYS START ...`.
    Start(StartOpts),
    /// `HOTKEYS GET`.
    Get,
    /// `HOTKEYS STOP`.
    Stop,
    /// `HOTKEYS RESET`.
    Reset,
    /// `HOTKEYS HELP`.
    Help,
}

impl HotkeysCmd {
    /// The Redis name of the subcommand (`hotkeys|get`, ...), for `-NOPERM` texts.
    pub fn name(&self) -> &'static str {
        match self {
            HotkeysCmd::Start(_) => "hotkeys|start",
            HotkeysCmd::Get => "hotkeys|get",
            HotkeysCmd::Stop => "hotkeys|stop",
            HotkeysCmd::Reset => "hotkeys|reset",
            HotkeysCmd::Help => "hotkeys|help",
        }
    }
}

/// The arguments of `HOTKEYS START`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartOpts {
    /// `METRICS ... CPU`: list keys by operations (see the module docs).
    pub cpu: bool,
    /// `METRICS ... NET`: list keys by key + value bytes.
    pub net: bool,
    /// `COUNT k`, 1 ..= [`MAX_COUNT`].
    pub count: usize,
    /// `DURATION seconds`: the session stops by itself this long after `START`.
    pub duration_s: Option<u64>,
    /// `SAMPLE ratio` as given (reported only; the capture does not change with it).
    pub sample_ratio: u64,
}

fn lower(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

/// A whole-number argument in `lo..=hi`, or `err` (Redis answers its own text for both a
/// non-number and a number out of range).
fn ranged(b: &[u8], lo: u64, hi: u64, err: &str) -> Result<u64, String> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| (lo..=hi).contains(v))
        .ok_or_else(|| format!("ERR {err}"))
}

/// Parses the arguments after `HOTKEYS` (at least one). Errors are Redis's texts where Redis
/// has one; an unknown metric name is refused outright (Redis skips it silently when another
/// metric is valid), and `SLOTS` is refused as this store has no hash slots.
pub fn parse(args: &[Bytes]) -> Result<HotkeysCmd, String> {
    let Some(sub) = args.first() else {
        return Err("ERR wrong number of arguments for 'hotkeys' command".into());
    };
    let sub = lower(sub);
    let fixed = |cmd: HotkeysCmd| {
        if args.len() == 1 {
            Ok(cmd)
        } else {
            Err(format!(
                "ERR wrong number of arguments for '{}' command",
                cmd.name()
            ))
        }
    };
    match sub.as_str() {
        "get" => fixed(HotkeysCmd::Get),
        "stop" => fixed(HotkeysCmd::Stop),
        "reset" => fixed(HotkeysCmd::Reset),
        "help" => fixed(HotkeysCmd::Help),
        "start" => parse_start(&args[1..]).map(HotkeysCmd::Start),
        _ => {
            let shown = String::from_utf8_lossy(&args[0][..args[0].len().min(128)]).into_owned();
            Err(format!(
                "ERR unknown subcommand '{shown}'. Try HOTKEYS HELP."
            ))
        }
    }
}

fn parse_start(args: &[Bytes]) -> Result<StartOpts, String> {
    if args.len() < 2 || lower(&args[0]) != "metrics" {
        return Err("ERR METRICS parameter is required".into());
    }
    let n = ranged(&args[1], 1, 2, "METRICS count must be > 0 and <= 2")? as usize;
    let mut opts = StartOpts {
        cpu: false,
        net: false,
        count: DEFAULT_COUNT,
        duration_s: None,
        sample_ratio: 1,
    };
    let names = args.get(2..2 + n).ok_or_else(|| {
        "ERR METRICS count does not match number of metric types provided".to_string()
    })?;
    for name in names {
        let flag = match lower(name).as_str() {
            "cpu" => &mut opts.cpu,
            "net" => &mut opts.net,
            other => {
                return Err(format!(
                    "ERR METRICS unknown metric '{other}'. Supported: CPU|NET"
                ));
            }
        };
        if *flag {
            return Err(format!(
                "ERR METRICS {} defined more than once!",
                String::from_utf8_lossy(name).to_ascii_uppercase()
            ));
        }
        *flag = true;
    }
    let mut i = 2 + n;
    while i < args.len() {
        let value = args.get(i + 1);
        match (lower(&args[i]).as_str(), value) {
            ("count", Some(v)) => {
                opts.count =
                    ranged(v, 1, MAX_COUNT as u64, "COUNT must be between 1 and 64")? as usize;
            }
            ("duration", Some(v)) => {
                opts.duration_s = Some(ranged(
                    v,
                    1,
                    MAX_DURATION_S,
                    "DURATION must be between 1 and 1000000",
                )?);
            }
            ("sample", Some(v)) => {
                opts.sample_ratio = ranged(v, 1, i32::MAX as u64, "SAMPLE ratio must be positive")?;
            }
            ("slots", Some(_)) => {
                return Err("ERR SLOTS parameter cannot be used: this store has no hash slots (keys are partitioned by range), so every key is tracked".into());
            }
            _ => return Err("ERR syntax error".into()),
        }
        i += 2;
    }
    Ok(opts)
}

/// One series' answer from the cluster.
#[derive(Debug, Clone)]
pub struct ClusterAnswer {
    /// The merged hot keys.
    pub hot: HotKeys,
    /// Distinct nodes expected, this one included.
    pub expected: usize,
    /// Distinct nodes whose answer was merged, this one included.
    pub responded: usize,
    /// `"<node>: <why>"` for every node whose answer is missing from `hot`.
    pub failed: Vec<String>,
    /// `"<node>: <code>: <detail>"` for every warning about a node's contribution.
    pub notes: Vec<String>,
}

impl ClusterAnswer {
    /// The answer of the admin fan-out: `hot` merged from the nodes `fanout` reports.
    pub fn from_fanout(hot: HotKeys, fanout: &FanoutStatus) -> Self {
        let mut failed = Vec::new();
        let mut notes = Vec::new();
        for n in &fanout.nodes {
            let name = match &n.node_id {
                Some(id) if *id != n.node => format!("{id} ({})", n.node),
                _ => n.node.clone(),
            };
            if !n.ok {
                failed.push(format!(
                    "{name}: {}",
                    n.error.as_deref().unwrap_or("did not answer")
                ));
            }
            notes.extend(
                n.warnings
                    .iter()
                    .map(|w| format!("{name}: {}: {}", w.code, w.detail)),
            );
        }
        ClusterAnswer {
            hot,
            expected: fanout.expected,
            responded: fanout.responded,
            failed,
            notes,
        }
    }
}

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Where `HOTKEYS GET` gets the hot keys of a window.
pub trait HotKeysSource: Send + Sync {
    /// The hot keys of `query` for the cluster, as seen at `now_unix_ms`. The future must
    /// finish on its own (the admin fan-out bounds every peer call by its timeout). `Err` is
    /// the reason, shown to the client after `ERR`.
    fn hot_keys(
        &self,
        query: HotKeyQuery,
        now_unix_ms: i64,
    ) -> BoxFuture<Result<ClusterAnswer, String>>;
}

/// The cluster's hot keys through the admin fan-out
/// ([`keyviz_admin::hotkeys::cluster_hot_keys`]): this node's plus every peer's, merged,
/// with peers that did not answer (or keep no hot keys) listed as failed. A query waits for a
/// fan-out slot and for its peers, each bounded by the admin `fanout_timeout`.
pub struct ClusterSource {
    state: keyviz_admin::AdminState,
}

impl ClusterSource {
    /// Fans out with `state` (the node's admin state: peers, secret, timeouts).
    pub fn new(state: keyviz_admin::AdminState) -> Self {
        Self { state }
    }
}

impl HotKeysSource for ClusterSource {
    fn hot_keys(
        &self,
        query: HotKeyQuery,
        now_unix_ms: i64,
    ) -> BoxFuture<Result<ClusterAnswer, String>> {
        let state = self.state.clone();
        Box::pin(async move {
            keyviz_admin::hotkeys::cluster_hot_keys(&state, query, now_unix_ms)
                .await
                .map(|c| ClusterAnswer::from_fanout(c.hot, &c.fanout))
                .map_err(|e| {
                    if e.message.is_empty() {
                        e.code.to_string()
                    } else {
                        e.message
                    }
                })
        })
    }
}

/// This node's hot keys only, for a node that serves no admin API (and so cannot ask its
/// peers); every answer carries a warning saying so. Each query runs on tokio's blocking pool
/// and takes the sampler's history read lock.
pub struct LocalSource {
    sampler: Arc<keyviz::Sampler>,
    node: String,
}

impl LocalSource {
    /// Answers from `sampler`, naming this node `node` in the fan-out status.
    pub fn new(sampler: Arc<keyviz::Sampler>, node: String) -> Self {
        Self { sampler, node }
    }
}

/// Warning of [`LocalSource`] answers.
pub const LOCAL_ONLY: &str =
    "this node serves no admin API (admin_addr unset): the answer covers this node only";

impl HotKeysSource for LocalSource {
    fn hot_keys(
        &self,
        query: HotKeyQuery,
        now_unix_ms: i64,
    ) -> BoxFuture<Result<ClusterAnswer, String>> {
        let (sampler, node) = (self.sampler.clone(), self.node.clone());
        Box::pin(async move {
            // Summing a long window walks many columns under the history read lock: keep it
            // off the async workers, as the admin fan-out does for its local query.
            let work = move || {
                let mut local = sampler
                    .hot_keys(&query, now_unix_ms)
                    .map_err(|e| e.to_string())?;
                local.node_id.get_or_insert_with(|| node.clone());
                let mut hot = merge_hot_keys(std::slice::from_ref(&local), query.k);
                hot.warnings.push(LOCAL_ONLY.into());
                Ok(ClusterAnswer {
                    hot,
                    expected: 1,
                    responded: 1,
                    failed: Vec::new(),
                    notes: Vec::new(),
                })
            };
            tokio::task::spawn_blocking(work)
                .await
                .map_err(|e| format!("local hot-key query failed: {e}"))?
        })
    }
}

/// The node's tracking session: a time window, nothing else.
#[derive(Debug, Clone, Copy)]
struct Session {
    opts: StartOpts,
    start_unix_ms: i64,
    /// Set by `STOP` (or by `DURATION` running out, applied when next looked at).
    stop_unix_ms: Option<i64>,
}

impl Session {
    /// When the session ended by `now`, if it did.
    fn end(&self, now: i64) -> Option<i64> {
        self.stop_unix_ms.or_else(|| {
            let d = self.opts.duration_s? as i64 * 1000;
            let at = self.start_unix_ms.saturating_add(d);
            (now >= at).then_some(at)
        })
    }
}

/// `HOTKEYS` for one node: its session, the source of hot keys and the history step.
pub struct Hotkeys {
    source: Option<Arc<dyn HotKeysSource>>,
    step_ms: i64,
    session: Mutex<Option<Session>>,
    freq: super::freq::Frequencies,
}

impl std::fmt::Debug for Hotkeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hotkeys")
            .field("source", &self.source.is_some())
            .field("step_ms", &self.step_ms)
            .finish()
    }
}

/// Reply to `GET` / `START` on a node that keeps no hot keys.
pub const UNAVAILABLE: &str =
    "ERR hot-key tracking is unavailable: KeyViz sampling is disabled on this node";

/// The `HOTKEYS HELP` lines.
const HELP: &[&str] = &[
    "HOTKEYS <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "START METRICS count [CPU] [NET] [COUNT k] [DURATION seconds] [SAMPLE ratio]",
    "    Start a session on this node: a time window over the cluster's always-on capture.",
    "    CPU lists keys by operations (reads + writes): per-key CPU time is not measured.",
    "    NET lists keys by key + value bytes of reads and writes.",
    "    COUNT k: keys listed, 1..64 (default 10). DURATION: stop after that many seconds.",
    "    SAMPLE is accepted and reported; SLOTS is refused (no hash slots here).",
    "GET",
    "    The cluster's hot keys for the session window (whole history columns).",
    "STOP",
    "    Freeze the window; GET keeps answering for it.",
    "RESET",
    "    Forget a stopped session.",
    "HELP",
    "    Print this help.",
];

fn int(v: u64) -> Reply {
    Reply::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn field(out: &mut Vec<Reply>, name: &str, value: Reply) {
    out.push(Reply::bulk(name));
    out.push(value);
}

fn summary(h: &HotKeys) -> HotSummary {
    HotSummary {
        total: h.total,
        floor: h.floor,
        sampled: h.sampled,
        unit_variance: 0,
        items: h
            .keys
            .iter()
            .map(|e| HotItem {
                key: e.key.clone(),
                estimate: e.estimate,
                lower: e.lower,
                upper: e.upper,
                truncated: e.truncated,
                seen: 0,
            })
            .collect(),
    }
}

/// Adds the answers of two series of disjoint operations (reads and writes) and keeps the
/// `k` hottest, with bounds that still hold ([`HotSummary::add_disjoint`]).
fn add(a: &HotKeys, b: &HotKeys, k: usize) -> HotSummary {
    let mut s = summary(a);
    s.add_disjoint(&summary(b));
    s.trim(k);
    s
}

/// What one `GET` learnt from the cluster, over all series it asked.
struct Gathered {
    ops: HotSummary,
    bytes: HotSummary,
    mode: HotKeyMode,
    warnings: Vec<String>,
    failed: Vec<String>,
    expected: usize,
    responded: usize,
}

fn gather(answers: &[ClusterAnswer; 4], k: usize) -> Gathered {
    let [reads, writes, read_bytes, write_bytes] = answers;
    let mut warnings: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let once = |into: &mut Vec<String>, line: &String| {
        if !into.contains(line) {
            into.push(line.clone());
        }
    };
    for a in answers {
        a.hot.warnings.iter().for_each(|w| once(&mut warnings, w));
        a.notes.iter().for_each(|w| once(&mut warnings, w));
        a.failed.iter().for_each(|w| once(&mut failed, w));
    }
    let mode = reads.hot.mode;
    if mode == HotKeyMode::Off {
        once(
            &mut warnings,
            &"hot-key capture is off (--hot-keys=off): no key is named".to_string(),
        );
    }
    Gathered {
        ops: add(&reads.hot, &writes.hot, k),
        bytes: add(&read_bytes.hot, &write_bytes.hot, k),
        mode,
        warnings,
        failed,
        expected: answers.iter().map(|a| a.expected).max().unwrap_or(0),
        responded: answers.iter().map(|a| a.responded).min().unwrap_or(0),
    }
}

fn keys_reply(s: &HotSummary) -> Reply {
    Reply::Array(
        s.items
            .iter()
            .flat_map(|i| [Reply::bulk(i.key.clone()), int(i.estimate)])
            .collect(),
    )
}

fn bounds_reply(s: &HotSummary) -> Reply {
    Reply::Array(
        s.items
            .iter()
            .map(|i| Reply::Array(vec![Reply::bulk(i.key.clone()), int(i.lower), int(i.upper)]))
            .collect(),
    )
}

impl Hotkeys {
    /// `HOTKEYS` (and `OBJECT FREQ`) on a node whose hot keys come from `source` (`None`:
    /// KeyViz is off, and `START`/`GET` say so), captured in `redactor`'s form, over a
    /// history of `step_ms` columns.
    pub fn new(
        source: Option<Arc<dyn HotKeysSource>>,
        redactor: keyviz::hotkeys::KeyRedactor,
        step_ms: u64,
    ) -> Self {
        Self {
            freq: super::freq::Frequencies::new(source.clone(), redactor, step_ms),
            source,
            step_ms: i64::try_from(step_ms.max(1)).unwrap_or(i64::MAX),
            session: Mutex::new(None),
        }
    }

    /// The node's `OBJECT FREQ` answers (same source and window step as `HOTKEYS`).
    pub fn frequencies(&self) -> &super::freq::Frequencies {
        &self.freq
    }

    /// Runs `cmd` at `now_unix_ms`. Takes the session lock briefly (never across the
    /// fan-out); `GET` waits for the cluster's answer, which the source bounds in time.
    pub async fn run(&self, cmd: HotkeysCmd, now_unix_ms: i64) -> Reply {
        match cmd {
            HotkeysCmd::Help => Reply::Array(HELP.iter().map(|l| Reply::Simple(l)).collect()),
            HotkeysCmd::Start(opts) => {
                if self.source.is_none() {
                    return Reply::Error(UNAVAILABLE.into());
                }
                let mut s = self.session.lock();
                if s.is_some_and(|s| s.end(now_unix_ms).is_none()) {
                    return Reply::err("hotkey tracking session already in progress");
                }
                *s = Some(Session {
                    opts,
                    start_unix_ms: now_unix_ms,
                    stop_unix_ms: None,
                });
                Reply::Simple("OK")
            }
            HotkeysCmd::Stop => {
                let mut s = self.session.lock();
                match s.as_mut() {
                    Some(s) if s.end(now_unix_ms).is_none() => {
                        s.stop_unix_ms = Some(now_unix_ms);
                        Reply::Simple("OK")
                    }
                    // Redis: nothing to stop is a null reply, not an error.
                    _ => Reply::Bulk(None),
                }
            }
            HotkeysCmd::Reset => {
                let mut s = self.session.lock();
                if s.is_some_and(|s| s.end(now_unix_ms).is_none()) {
                    return Reply::err("hotkey tracking session in progress, stop tracking first");
                }
                *s = None;
                Reply::Simple("OK")
            }
            HotkeysCmd::Get => {
                let Some(session) = *self.session.lock() else {
                    return Reply::Bulk(None);
                };
                self.get(session, now_unix_ms).await
            }
        }
    }

    /// The column-rounded window `[from, to)` of `session` at `now`, and whether it is
    /// still open. Queries take columns whose start is in `[from, to)`.
    fn window(&self, session: &Session, now: i64) -> (i64, i64, Option<i64>) {
        let step = self.step_ms;
        let from = session.start_unix_ms - session.start_unix_ms.rem_euclid(step);
        let end = session.end(now);
        let last = end.unwrap_or(now);
        // The column holding the last instant (an end on a boundary holds nothing of it).
        let edge = if end.is_some() { last - 1 } else { last };
        let to = (edge - edge.rem_euclid(step) + step).max(from + step);
        (from, to, end)
    }

    async fn get(&self, session: Session, now: i64) -> Reply {
        let Some(source) = self.source.clone() else {
            return Reply::Error(UNAVAILABLE.into());
        };
        let (from, to, end) = self.window(&session, now);
        let k = session.opts.count;
        let per_series = (k * OVERFETCH).min(MAX_HOT_KEYS_K);
        let query = |series| HotKeyQuery {
            series,
            from_unix_ms: Some(from),
            to_unix_ms: Some(to),
            key_start: None,
            key_end: None,
            k: per_series,
        };
        let asked = [
            Series::Reads,
            Series::Writes,
            Series::ReadBytes,
            Series::WriteBytes,
        ]
        .map(|s| source.hot_keys(query(s), now));
        let mut answers = Vec::with_capacity(4);
        for r in futures::future::join_all(asked).await {
            match r {
                Ok(a) => answers.push(a),
                Err(e) => return Reply::err(format!("hot keys: {e}")),
            }
        }
        let Ok(answers) = <[ClusterAnswer; 4]>::try_from(answers) else {
            return Reply::err("internal: missing hot-key answer");
        };
        let g = gather(&answers, k);
        Reply::Array(vec![self.reply(&session, now, end, (from, to), &g)])
    }

    /// The field/value array of one session, in Redis's field order, with the fields Redis
    /// does not have after its own (clients that do not know them skip them).
    fn reply(
        &self,
        session: &Session,
        now: i64,
        end: Option<i64>,
        (from, to): (i64, i64),
        g: &Gathered,
    ) -> Reply {
        let o = &session.opts;
        let mut f = Vec::with_capacity(48);
        field(
            &mut f,
            "tracking-active",
            Reply::Int(i64::from(end.is_none())),
        );
        field(&mut f, "sample-ratio", int(o.sample_ratio));
        field(&mut f, "selected-slots", Reply::Array(Vec::new()));
        field(&mut f, "all-commands-all-slots-us", int(g.ops.total));
        field(
            &mut f,
            "net-bytes-all-commands-all-slots",
            int(g.bytes.total),
        );
        field(
            &mut f,
            "collection-start-time-unix-ms",
            Reply::Int(session.start_unix_ms),
        );
        let duration = end.unwrap_or(now).saturating_sub(session.start_unix_ms);
        field(
            &mut f,
            "collection-duration-ms",
            Reply::Int(duration.max(0)),
        );
        if o.net {
            field(&mut f, "total-net-bytes", int(g.bytes.total));
        }
        if o.cpu {
            field(&mut f, "by-cpu-time-us", keys_reply(&g.ops));
        }
        if o.net {
            field(&mut f, "by-net-bytes", keys_reply(&g.bytes));
        }
        if o.cpu {
            field(
                &mut f,
                "keyviz-cpu-unit",
                Reply::bulk(
                    "operations (reads + writes), not microseconds: per-key CPU time is not measured; all-commands-all-slots-us is the operation total",
                ),
            );
            field(&mut f, "keyviz-by-cpu-time-us-bounds", bounds_reply(&g.ops));
            field(&mut f, "keyviz-by-cpu-time-us-floor", int(g.ops.floor));
        }
        if o.net {
            field(
                &mut f,
                "keyviz-net-unit",
                Reply::bulk("key + value bytes of reads and writes, not socket bytes"),
            );
            field(&mut f, "keyviz-by-net-bytes-bounds", bounds_reply(&g.bytes));
            field(&mut f, "keyviz-by-net-bytes-floor", int(g.bytes.floor));
        }
        field(
            &mut f,
            "keyviz-window-unix-ms",
            Reply::Array(vec![Reply::Int(from), Reply::Int(to)]),
        );
        field(&mut f, "keyviz-step-ms", Reply::Int(self.step_ms));
        field(&mut f, "keyviz-mode", Reply::bulk(g.mode.as_str()));
        field(
            &mut f,
            "keyviz-sampled",
            Reply::Int(i64::from(g.ops.sampled || g.bytes.sampled)),
        );
        field(&mut f, "keyviz-nodes-expected", int(g.expected as u64));
        field(&mut f, "keyviz-nodes-responded", int(g.responded as u64));
        field(
            &mut f,
            "keyviz-nodes-failed",
            Reply::Array(g.failed.iter().map(|s| Reply::bulk(s.clone())).collect()),
        );
        field(
            &mut f,
            "keyviz-warnings",
            Reply::Array(g.warnings.iter().map(|s| Reply::bulk(s.clone())).collect()),
        );
        Reply::Array(f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use keyviz::hotkeys::HotKeyEntry;

    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    /// A raw-mode answer listing `keys` with exact bounds (shared with `resp::freq`'s tests).
    pub(crate) fn hot(series: Series, total: u64, floor: u64, keys: &[(&str, u64)]) -> HotKeys {
        HotKeys {
            series,
            mode: HotKeyMode::Raw,
            keys: keys
                .iter()
                .map(|(k, n)| HotKeyEntry {
                    key: k.as_bytes().to_vec(),
                    preview: (*k).to_string(),
                    estimate: *n,
                    lower: *n,
                    upper: *n,
                    share: *n as f64 / total as f64,
                    truncated: false,
                })
                .collect(),
            total,
            floor,
            sampled: false,
            warnings: Vec::new(),
        }
    }

    /// Answers canned hot keys per series and records every query.
    struct Fake {
        asked: Mutex<Vec<HotKeyQuery>>,
        failed: Vec<String>,
    }

    impl HotKeysSource for Fake {
        fn hot_keys(&self, q: HotKeyQuery, _now: i64) -> BoxFuture<Result<ClusterAnswer, String>> {
            self.asked.lock().push(q.clone());
            let hot = match q.series {
                Series::Reads => hot(q.series, 100, 10, &[("hot", 60), ("warm", 30)]),
                Series::Writes => hot(q.series, 50, 5, &[("hot", 20), ("cold", 25)]),
                Series::ReadBytes => hot(q.series, 1000, 0, &[("warm", 900), ("hot", 100)]),
                _ => hot(q.series, 24, 0, &[("cold", 24)]),
            };
            Box::pin(std::future::ready(Ok(ClusterAnswer {
                hot,
                expected: 3,
                responded: 3 - self.failed.len(),
                failed: self.failed.clone(),
                notes: Vec::new(),
            })))
        }
    }

    fn service(failed: &[&str]) -> (Hotkeys, Arc<Fake>) {
        let fake = Arc::new(Fake {
            asked: Mutex::new(Vec::new()),
            failed: failed.iter().map(|s| s.to_string()).collect(),
        });
        (
            Hotkeys::new(
                Some(fake.clone()),
                keyviz::hotkeys::KeyRedactor::raw(),
                1_000,
            ),
            fake,
        )
    }

    fn start(s: &str) -> HotkeysCmd {
        parse(&args(s)).expect("valid HOTKEYS START")
    }

    /// The field/value pairs of a GET reply (which Redis wraps in a one-element array).
    fn fields(r: Reply) -> Vec<(String, Reply)> {
        let Reply::Array(outer) = r else {
            panic!("GET answers an array, got {r:?}")
        };
        let [Reply::Array(flat)] = outer.as_slice() else {
            panic!("GET wraps one session, got {outer:?}")
        };
        flat.chunks(2)
            .map(|p| match &p[0] {
                Reply::Bulk(Some(name)) => {
                    (String::from_utf8_lossy(name).into_owned(), p[1].clone())
                }
                other => panic!("field name {other:?}"),
            })
            .collect()
    }

    fn get<'a>(f: &'a [(String, Reply)], name: &str) -> Option<&'a Reply> {
        f.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn pairs(r: Option<&Reply>) -> Vec<(String, i64)> {
        let Some(Reply::Array(flat)) = r else {
            panic!("key list expected, got {r:?}")
        };
        flat.chunks(2)
            .map(|p| match (&p[0], &p[1]) {
                (Reply::Bulk(Some(k)), Reply::Int(n)) => {
                    (String::from_utf8_lossy(k).into_owned(), *n)
                }
                other => panic!("key/value pair expected, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn start_takes_redis_arguments_and_refuses_what_redis_refuses() {
        assert_eq!(
            parse(&args(
                "start METRICS 2 CPU NET COUNT 5 DURATION 30 SAMPLE 8"
            )),
            Ok(HotkeysCmd::Start(StartOpts {
                cpu: true,
                net: true,
                count: 5,
                duration_s: Some(30),
                sample_ratio: 8,
            }))
        );
        assert_eq!(
            parse(&args("START METRICS 1 net")),
            Ok(HotkeysCmd::Start(StartOpts {
                cpu: false,
                net: true,
                count: DEFAULT_COUNT,
                duration_s: None,
                sample_ratio: 1,
            }))
        );
        let err = |s: &str| parse(&args(s)).expect_err(s);
        let count = "ERR COUNT must be between 1 and 64";
        assert_eq!(err("START METRICS 1 CPU COUNT 0"), count);
        assert_eq!(err("START METRICS 1 CPU COUNT 65"), count);
        assert_eq!(err("START METRICS 1 CPU COUNT 1000"), count);
        assert_eq!(err("START METRICS 1 CPU COUNT x"), count);
        assert_eq!(err("START"), "ERR METRICS parameter is required");
        assert_eq!(err("START COUNT 5"), "ERR METRICS parameter is required");
        assert_eq!(
            err("START METRICS 3 CPU NET MEM"),
            "ERR METRICS count must be > 0 and <= 2"
        );
        assert_eq!(
            err("START METRICS 2 CPU"),
            "ERR METRICS count does not match number of metric types provided"
        );
        assert_eq!(
            err("START METRICS 2 CPU cpu"),
            "ERR METRICS CPU defined more than once!"
        );
        assert!(err("START METRICS 1 MEM").starts_with("ERR METRICS unknown metric 'mem'"));
        assert_eq!(
            err("START METRICS 1 CPU DURATION 0"),
            "ERR DURATION must be between 1 and 1000000"
        );
        assert_eq!(
            err("START METRICS 1 CPU SAMPLE 0"),
            "ERR SAMPLE ratio must be positive"
        );
        assert!(err("START METRICS 1 CPU SLOTS 1 0").contains("no hash slots"));
        assert_eq!(err("START METRICS 1 CPU COUNT"), "ERR syntax error");
        assert_eq!(err("START METRICS 1 CPU BOGUS 1"), "ERR syntax error");
        assert_eq!(
            err("GET now"),
            "ERR wrong number of arguments for 'hotkeys|get' command"
        );
        assert_eq!(
            err("FROB"),
            "ERR unknown subcommand 'FROB'. Try HOTKEYS HELP."
        );
    }

    #[tokio::test]
    async fn session_follows_redis_state_machine() {
        let (h, _) = service(&[]);
        assert_eq!(h.run(HotkeysCmd::Get, 1_000).await, Reply::Bulk(None));
        assert_eq!(h.run(HotkeysCmd::Stop, 1_000).await, Reply::Bulk(None));
        assert_eq!(h.run(HotkeysCmd::Reset, 1_000).await, Reply::Simple("OK"));
        let cpu = start("START METRICS 1 CPU");
        assert_eq!(h.run(cpu.clone(), 1_000).await, Reply::Simple("OK"));
        assert_eq!(
            h.run(cpu.clone(), 1_100).await,
            Reply::err("hotkey tracking session already in progress")
        );
        assert_eq!(
            h.run(HotkeysCmd::Reset, 1_200).await,
            Reply::err("hotkey tracking session in progress, stop tracking first")
        );
        let live = fields(h.run(HotkeysCmd::Get, 1_500).await);
        assert_eq!(get(&live, "tracking-active"), Some(&Reply::Int(1)));
        assert_eq!(get(&live, "collection-duration-ms"), Some(&Reply::Int(500)));
        assert_eq!(h.run(HotkeysCmd::Stop, 2_000).await, Reply::Simple("OK"));
        assert_eq!(h.run(HotkeysCmd::Stop, 2_100).await, Reply::Bulk(None));
        let frozen = fields(h.run(HotkeysCmd::Get, 9_000).await);
        assert_eq!(get(&frozen, "tracking-active"), Some(&Reply::Int(0)));
        assert_eq!(
            get(&frozen, "collection-duration-ms"),
            Some(&Reply::Int(1_000))
        );
        assert_eq!(
            get(&frozen, "collection-start-time-unix-ms"),
            Some(&Reply::Int(1_000))
        );
        // A stopped session is replaced by a new START, and forgotten by RESET.
        assert_eq!(h.run(cpu, 9_000).await, Reply::Simple("OK"));
        assert_eq!(h.run(HotkeysCmd::Stop, 9_500).await, Reply::Simple("OK"));
        assert_eq!(h.run(HotkeysCmd::Reset, 9_600).await, Reply::Simple("OK"));
        assert_eq!(h.run(HotkeysCmd::Get, 9_700).await, Reply::Bulk(None));
    }

    #[tokio::test]
    async fn duration_stops_the_session_by_itself() {
        let (h, _) = service(&[]);
        let r = h.run(start("START METRICS 1 NET DURATION 5"), 10_000).await;
        assert_eq!(r, Reply::Simple("OK"));
        let before = fields(h.run(HotkeysCmd::Get, 14_999).await);
        assert_eq!(get(&before, "tracking-active"), Some(&Reply::Int(1)));
        let after = fields(h.run(HotkeysCmd::Get, 60_000).await);
        assert_eq!(get(&after, "tracking-active"), Some(&Reply::Int(0)));
        assert_eq!(
            get(&after, "collection-duration-ms"),
            Some(&Reply::Int(5_000))
        );
        assert_eq!(h.run(HotkeysCmd::Stop, 60_000).await, Reply::Bulk(None));
        assert_eq!(h.run(HotkeysCmd::Reset, 60_000).await, Reply::Simple("OK"));
    }

    #[tokio::test]
    async fn the_window_is_widened_to_whole_columns() {
        let (h, fake) = service(&[]);
        let window = |f: &[(String, Reply)]| get(f, "keyviz-window-unix-ms").cloned();
        h.run(start("START METRICS 1 CPU"), 1_500).await;
        let live = fields(h.run(HotkeysCmd::Get, 2_200).await);
        assert_eq!(
            window(&live),
            Some(Reply::Array(vec![Reply::Int(1_000), Reply::Int(3_000)]))
        );
        h.run(HotkeysCmd::Stop, 3_000).await;
        let stopped = fields(h.run(HotkeysCmd::Get, 5_000).await);
        assert_eq!(
            window(&stopped),
            Some(Reply::Array(vec![Reply::Int(1_000), Reply::Int(3_000)])),
            "a stop on a boundary takes nothing of the next column"
        );
        let asked = fake.asked.lock().clone();
        assert_eq!(asked.len(), 8, "four series per GET");
        assert!(asked.iter().all(|q| q.from_unix_ms == Some(1_000)));
        assert!(asked[4..].iter().all(|q| q.to_unix_ms == Some(3_000)));
        assert!(asked.iter().all(|q| q.k == DEFAULT_COUNT * OVERFETCH));
        h.run(HotkeysCmd::Reset, 5_000).await;
        h.run(start("START METRICS 1 CPU"), 5_000).await;
        h.run(HotkeysCmd::Stop, 5_001).await;
        let short = fields(h.run(HotkeysCmd::Get, 5_002).await);
        assert_eq!(
            window(&short),
            Some(Reply::Array(vec![Reply::Int(5_000), Reply::Int(6_000)]))
        );
    }

    #[tokio::test]
    async fn get_adds_reads_and_writes_and_reports_bounds_and_missing_nodes() {
        let (h, _) = service(&["node-3 (127.0.0.1:9): connect: refused"]);
        h.run(start("START METRICS 2 CPU NET COUNT 2"), 1_000).await;
        let f = fields(h.run(HotkeysCmd::Get, 1_500).await);
        // Redis's fields first, in Redis's order.
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            &names[..10],
            &[
                "tracking-active",
                "sample-ratio",
                "selected-slots",
                "all-commands-all-slots-us",
                "net-bytes-all-commands-all-slots",
                "collection-start-time-unix-ms",
                "collection-duration-ms",
                "total-net-bytes",
                "by-cpu-time-us",
                "by-net-bytes",
            ]
        );
        // hot: 60 reads + 20 writes; cold 25 writes (and at most 10 unlisted reads).
        assert_eq!(
            pairs(get(&f, "by-cpu-time-us")),
            vec![("hot".to_string(), 80), ("warm".to_string(), 30)]
        );
        assert_eq!(get(&f, "all-commands-all-slots-us"), Some(&Reply::Int(150)));
        assert_eq!(
            pairs(get(&f, "by-net-bytes")),
            vec![("warm".to_string(), 900), ("hot".to_string(), 100)]
        );
        assert_eq!(get(&f, "total-net-bytes"), Some(&Reply::Int(1_024)));
        let Some(Reply::Array(bounds)) = get(&f, "keyviz-by-cpu-time-us-bounds") else {
            panic!("bounds listed")
        };
        assert_eq!(
            bounds[1],
            Reply::Array(vec![Reply::bulk("warm"), Reply::Int(30), Reply::Int(35)]),
            "warm is unlisted in writes, so it may hold up to their floor more"
        );
        // cold (25 writes, up to 10 unlisted reads) was trimmed: it bounds every unlisted key.
        assert_eq!(
            get(&f, "keyviz-by-cpu-time-us-floor"),
            Some(&Reply::Int(35))
        );
        assert_eq!(get(&f, "keyviz-nodes-expected"), Some(&Reply::Int(3)));
        assert_eq!(get(&f, "keyviz-nodes-responded"), Some(&Reply::Int(2)));
        assert_eq!(
            get(&f, "keyviz-nodes-failed"),
            Some(&Reply::Array(vec![Reply::bulk(
                "node-3 (127.0.0.1:9): connect: refused"
            )]))
        );
        assert!(get(&f, "total-cpu-time-user-ms").is_none(), "not measured");
    }

    #[tokio::test]
    async fn a_node_without_keyviz_refuses_start() {
        let h = Hotkeys::new(None, keyviz::hotkeys::KeyRedactor::raw(), 1_000);
        assert_eq!(
            h.run(start("START METRICS 1 CPU"), 1).await,
            Reply::Error(UNAVAILABLE.into())
        );
        assert_eq!(h.run(HotkeysCmd::Get, 1).await, Reply::Bulk(None));
    }

    #[tokio::test]
    async fn a_node_without_admin_api_answers_its_own_hot_keys_and_says_so() {
        let step = 1_000u64;
        let t0 = 1_000_000i64;
        let sampler = Arc::new(
            keyviz::Sampler::new(
                keyviz::SamplerConfig {
                    step_ms: step,
                    ..keyviz::SamplerConfig::default()
                },
                t0,
            )
            .expect("valid sampler config"),
        );
        sampler
            .register_route(keyviz::RouteSpec {
                id: 1,
                start: Vec::new(),
                end: None,
                group: 1,
            })
            .expect("register route");
        for _ in 0..30 {
            sampler.observe_read(1, b"hot:counter", 4, keyviz::ReadRole::Leader, t0 + 10);
        }
        sampler.observe_read(1, b"cold", 4, keyviz::ReadRole::Leader, t0 + 10);
        let h = Hotkeys::new(
            Some(Arc::new(LocalSource::new(sampler.clone(), "node-1".into()))),
            keyviz::hotkeys::KeyRedactor::raw(),
            step,
        );
        h.run(start("START METRICS 1 CPU"), t0).await;
        let _ = sampler.publish(sampler.seal(t0 + step as i64));
        let f = fields(h.run(HotkeysCmd::Get, t0 + step as i64).await);
        assert_eq!(
            pairs(get(&f, "by-cpu-time-us")),
            vec![("hot:counter".to_string(), 30), ("cold".to_string(), 1)]
        );
        assert_eq!(get(&f, "keyviz-nodes-responded"), Some(&Reply::Int(1)));
        assert_eq!(
            get(&f, "keyviz-warnings"),
            Some(&Reply::Array(vec![Reply::bulk(LOCAL_ONLY)]))
        );
    }
}
