//! Drawing a [`Snapshot`] as text: the plain table of `--once --format table` and the frames
//! of the full-screen mode. Pure: no I/O, so every layout is unit-tested.
//!
//! Lines are built from styled segments and cut to the frame's width *before* colour codes
//! are added, so a frame never wraps, whatever the terminal; the frame is cut to the
//! terminal's height, with the per-series lists shortened first so every series stays
//! visible.

use std::fmt::Write as _;
use std::time::Duration;

use keyviz::Series;

use super::snapshot::{HotKeysSnapshot, RangeEntry, SeriesSnapshot, Snapshot};

/// How to draw.
#[derive(Debug, Clone, Default)]
pub(crate) struct RenderOpts {
    /// Columns available; `None` = do not cut lines (pipes, files).
    pub(crate) width: Option<usize>,
    /// Lines available; `None` = do not cut the frame.
    pub(crate) height: Option<usize>,
    /// Emit ANSI colours (only on a terminal, never with `NO_COLOR`).
    pub(crate) color: bool,
    /// Refresh interval, shown in the header and footer of the live view.
    pub(crate) interval: Option<Duration>,
    /// A refresh failed: shown in red under the header (the live view keeps the last
    /// good snapshot on screen).
    pub(crate) error: Option<String>,
    /// Draw the key help line at the bottom (live view).
    pub(crate) footer: bool,
}

/// Below this width the ranges and keys are stacked instead of side by side.
const SIDE_BY_SIDE_MIN: usize = 120;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tone {
    Plain,
    Bold,
    Dim,
    Title,
    Good,
    Warn,
    Bad,
}

impl Tone {
    fn sgr(self) -> &'static str {
        match self {
            Tone::Plain => "",
            Tone::Bold => "\x1b[1m",
            Tone::Dim => "\x1b[2m",
            Tone::Title => "\x1b[1;36m",
            Tone::Good => "\x1b[32m",
            Tone::Warn => "\x1b[33m",
            Tone::Bad => "\x1b[1;31m",
        }
    }
}

#[derive(Clone, Default)]
struct Line(Vec<(String, Tone)>);

impl Line {
    fn new() -> Line {
        Line(Vec::new())
    }
    fn push(mut self, text: impl Into<String>, tone: Tone) -> Line {
        self.0.push((text.into(), tone));
        self
    }
    fn plain(self, text: impl Into<String>) -> Line {
        self.push(text, Tone::Plain)
    }
    fn width(&self) -> usize {
        self.0.iter().map(|(t, _)| t.chars().count()).sum()
    }
    /// Cut to `width` characters.
    fn cut(mut self, width: usize) -> Line {
        let mut left = width;
        let mut out = Vec::new();
        for (text, tone) in self.0.drain(..) {
            if left == 0 {
                break;
            }
            let n = text.chars().count();
            if n <= left {
                left -= n;
                out.push((text, tone));
            } else {
                out.push((text.chars().take(left).collect(), tone));
                left = 0;
            }
        }
        Line(out)
    }
    /// Pads with spaces to `width` (after cutting to it).
    fn pad(self, width: usize) -> Line {
        let l = self.cut(width);
        let w = l.width();
        l.plain(" ".repeat(width - w))
    }
    fn append(mut self, other: Line) -> Line {
        self.0.extend(other.0);
        self
    }
    fn encode(&self, color: bool, out: &mut String) {
        for (text, tone) in &self.0 {
            if color && *tone != Tone::Plain {
                out.push_str(tone.sgr());
                out.push_str(text);
                out.push_str("\x1b[0m");
            } else {
                out.push_str(text);
            }
        }
    }
}

/// `12,345`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count of `series`: operations with separators, bytes in binary units.
fn amount(series: Series, n: u64) -> String {
    if !matches!(series, Series::ReadBytes | Series::WriteBytes) {
        return thousands(n);
    }
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n;
    let mut unit = 0;
    let mut frac = 0u64;
    while v >= 1024 && unit + 1 < UNITS.len() {
        frac = (v % 1024) * 10 / 1024;
        v /= 1024;
        unit += 1;
    }
    if unit == 0 {
        format!("{v} B")
    } else {
        format!("{v}.{frac} {}", UNITS[unit])
    }
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn share_tone(share: f64) -> Tone {
    if share >= 0.5 {
        Tone::Bad
    } else if share >= 0.2 {
        Tone::Warn
    } else {
        Tone::Plain
    }
}

/// `1h`, `5m`, `90s`, `1500ms`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn range_lines(s: &SeriesSnapshot, n: usize, compact: bool) -> Vec<Line> {
    let mut lines = Vec::new();
    if !compact {
        lines.push(Line::new().push("Hottest key ranges", Tone::Bold));
        lines.push(Line::new().push(
            format!("{:>3} {:>6} {:>11}  range", "#", "share", "count"),
            Tone::Dim,
        ));
    }
    if s.ranges.is_empty() {
        lines.push(Line::new().push("    no traffic in the window", Tone::Dim));
    }
    for r in s.ranges.iter().take(n) {
        let tag = Line::new().push(if compact { "range " } else { "" }, Tone::Dim);
        lines.push(tag.append(range_line(s.series, r)));
    }
    lines
}

fn range_line(series: Series, r: &RangeEntry) -> Line {
    let bounds = format!(
        "  [{}, {})",
        r.start_preview,
        r.end_preview.as_deref().unwrap_or("∞")
    );
    let mut line = Line::new()
        .plain(format!("{:>3} ", r.rank))
        .push(format!("{:>6}", percent(r.share)), share_tone(r.share))
        .plain(format!(" {:>11}  ", amount(series, r.total)))
        .push(r.label.clone(), Tone::Bold);
    if r.label != r.start_preview || r.end_preview.is_some() {
        line = line.push(bounds, Tone::Dim);
    }
    if r.aggregate {
        line = line.push(format!(" ({} routes)", r.route_count), Tone::Dim);
    }
    line
}

fn key_lines(s: &SeriesSnapshot, n: usize, compact: bool) -> Vec<Line> {
    let mut title = Line::new().push("Hottest keys", Tone::Bold);
    match (&s.hot_keys, &s.hot_keys_error) {
        (Some(h), _) => {
            title = title.push(key_summary(s.series, h), Tone::Dim);
            let mut lines = Vec::new();
            if !compact {
                lines.push(title);
                lines.push(Line::new().push(
                    format!(
                        "{:>3} {:>6} {:>11}  {:<25} key",
                        "#", "share", "estimate", "bounds"
                    ),
                    Tone::Dim,
                ));
            }
            if h.keys.is_empty() {
                let why = if h.mode == "off" {
                    "    key capture is off on the nodes (--hot-keys=off)"
                } else {
                    "    no keys in the window"
                };
                lines.push(Line::new().push(why, Tone::Dim));
            }
            for k in h.keys.iter().take(n) {
                let bounds = if k.lower == k.upper {
                    "exact".to_string()
                } else {
                    format!(
                        "{}..{}",
                        amount(s.series, k.lower),
                        amount(s.series, k.upper)
                    )
                };
                let mut line = Line::new()
                    .push(if compact { "key   " } else { "" }, Tone::Dim)
                    .plain(format!("{:>3} ", k.rank))
                    .push(format!("{:>6}", percent(k.share)), share_tone(k.share))
                    .plain(format!(
                        " {:>11}  {bounds:<25} ",
                        amount(s.series, k.estimate)
                    ))
                    .push(k.preview.clone(), Tone::Bold);
                if k.truncated {
                    line = line.push(" (cut)", Tone::Dim);
                }
                lines.push(line);
            }
            lines
        }
        (None, err) => vec![
            if compact { Line::new() } else { title },
            Line::new().push(
                format!("    unavailable: {}", err.as_deref().unwrap_or("no answer")),
                Tone::Warn,
            ),
        ],
    }
}

fn key_summary(series: Series, h: &HotKeysSnapshot) -> String {
    let mut s = format!("  (capture {}", h.mode);
    if h.sampled {
        s.push_str(", sampled");
    }
    if h.floor > 0 {
        let _ = write!(s, ", any other key ≤ {}", amount(series, h.floor));
    }
    if !h.warnings.is_empty() {
        let _ = write!(s, ", {} warning(s)", h.warnings.len());
    }
    s.push(')');
    s
}

fn series_title(s: &SeriesSnapshot, window: &str) -> Line {
    let mut l = Line::new()
        .push(s.series.as_str().to_ascii_uppercase(), Tone::Title)
        .plain(format!(
            "  {} in the last {window}",
            amount(s.series, s.total)
        ));
    if s.fanout.matrix.degraded() || s.fanout.hot_keys.as_ref().is_some_and(|h| h.degraded()) {
        l = l.push("  (partial)", Tone::Bad);
    }
    l
}

/// Lines of one series with at most `n` entries per list, side by side when `width`
/// allows it.
fn series_block(
    s: &SeriesSnapshot,
    n: usize,
    width: Option<usize>,
    window: &str,
    compact: bool,
) -> Vec<Line> {
    let mut out = vec![series_title(s, window)];
    let left = range_lines(s, n, compact);
    let mut right = key_lines(s, n, compact);
    right.retain(|l| !(compact && l.0.is_empty()));
    match width {
        Some(w) if w >= SIDE_BY_SIDE_MIN => {
            let half = w / 2;
            let rows = left.len().max(right.len());
            for i in 0..rows {
                let l = left.get(i).cloned().unwrap_or_default().pad(half - 1);
                let r = right.get(i).cloned().unwrap_or_default();
                out.push(l.plain(" ").append(r));
            }
        }
        _ => {
            out.extend(left);
            out.extend(right);
        }
    }
    out
}

/// Fixed lines of a series block besides its entries (title + two list headers, per list).
fn block_overhead(side_by_side: bool) -> usize {
    if side_by_side { 3 } else { 5 }
}

/// Draws `snap`. The result ends with a newline; every line is at most `opts.width`
/// characters (without the colour codes) and there are at most `opts.height` lines.
pub(crate) fn render(snap: &Snapshot, k: usize, opts: &RenderOpts) -> String {
    let window = human_duration(Duration::from_millis(snap.window_ms));
    let mut head = Line::new()
        .push("keyviz top", Tone::Bold)
        .plain(format!("  {}  window {window}", snap.admin));
    if let Some(i) = opts.interval {
        head = head.plain(format!("  every {}", human_duration(i)));
    }
    head = head.push(format!("  {}", snap.generated_at), Tone::Dim);
    let mut lines = vec![head];
    let n = &snap.nodes;
    if snap.degraded {
        let mut l = Line::new().push(
            format!("DEGRADED: {}/{} nodes answered", n.responded, n.expected),
            Tone::Bad,
        );
        if !n.unreachable.is_empty() {
            let names: Vec<String> = n
                .unreachable
                .iter()
                .map(|u| match &u.node_id {
                    Some(id) => format!("{} (node {id}): {}", u.node, u.error),
                    None => format!("{}: {}", u.node, u.error),
                })
                .collect();
            l = l.push(format!("  unreachable: {}", names.join("; ")), Tone::Bad);
        }
        lines.push(l);
    } else {
        lines.push(Line::new().push(
            format!("{}/{} nodes answered", n.responded, n.expected),
            Tone::Good,
        ));
    }
    if !n.without_hot_keys.is_empty() {
        let names: Vec<&str> = n.without_hot_keys.iter().map(|u| u.node.as_str()).collect();
        lines.push(Line::new().push(
            format!(
                "no hot keys from: {} (older version or --hot-keys=off)",
                names.join(", ")
            ),
            Tone::Warn,
        ));
    }
    if let Some(e) = &opts.error {
        lines.push(Line::new().push(format!("refresh failed: {e}"), Tone::Bad));
    }
    let side = opts.width.is_some_and(|w| w >= SIDE_BY_SIDE_MIN);
    let lists_per_block = if side { 1 } else { 2 };
    let footer = usize::from(opts.footer);
    // Entries per list, and whether the list headers must go to keep every series on
    // screen (one blank line separates blocks).
    let (per_series, compact) = match opts.height {
        Some(h) if !snap.series.is_empty() => {
            let fixed = lines.len() + footer;
            let room = h.saturating_sub(fixed) / snap.series.len();
            let full = block_overhead(side) + 1;
            if room >= full + lists_per_block {
                (((room - full) / lists_per_block).clamp(1, k.max(1)), false)
            } else {
                ((room.saturating_sub(2) / 2).clamp(1, k.max(1)), true)
            }
        }
        _ => (k, false),
    };
    for s in &snap.series {
        lines.push(Line::new());
        lines.extend(series_block(s, per_series, opts.width, &window, compact));
    }
    if let Some(h) = opts.height {
        lines.truncate(h.saturating_sub(footer));
        if opts.footer {
            while lines.len() + 1 < h {
                lines.push(Line::new());
            }
        }
    }
    if opts.footer {
        lines.push(Line::new().push("q quit  r refresh now", Tone::Dim));
    }
    let mut out = String::new();
    for l in lines {
        let l = match opts.width {
            Some(w) => l.cut(w),
            None => l,
        };
        l.encode(opts.color, &mut out);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::snapshot::{HotKeyRow, NodesSummary, SeriesFanout, Unreachable, snapshot};

    fn series(series: Series, degraded: bool) -> SeriesSnapshot {
        let ranges = (1..=10)
            .map(|i| RangeEntry {
                rank: i,
                bucket_id: format!("route:{i}"),
                start: None,
                end: None,
                start_preview: format!("k{i}"),
                end_preview: Some(format!("k{}", i + 1)),
                first_key: None,
                last_key: None,
                label: format!("k{i}:first"),
                total: 1000 / i as u64,
                share: 0.5 / i as f64,
                route_count: 1,
                aggregate: false,
            })
            .collect();
        let keys = (1..=10)
            .map(|i| HotKeyRow {
                rank: i,
                key: String::new(),
                preview: format!("hot:{i}"),
                estimate: 900 / i as u64,
                lower: 890 / i as u64,
                upper: 900 / i as u64,
                share: 0.45 / i as f64,
                truncated: false,
            })
            .collect();
        let nodes = NodesSummary {
            responded: if degraded { 2 } else { 3 },
            expected: 3,
            unreachable: if degraded {
                vec![Unreachable {
                    node: "127.0.0.1:9".into(),
                    node_id: Some("3".into()),
                    error: "peer request failed".into(),
                }]
            } else {
                vec![]
            },
            without_hot_keys: vec![],
        };
        SeriesSnapshot {
            series,
            total: 2000,
            step_ms: 1000,
            columns: 300,
            ranges,
            hot_keys: Some(HotKeysSnapshot {
                mode: "raw".into(),
                total: 2000,
                floor: 3,
                sampled: false,
                keys,
                warnings: vec![],
            }),
            hot_keys_error: None,
            fanout: SeriesFanout {
                matrix: nodes.clone(),
                hot_keys: Some(nodes),
            },
        }
    }

    fn snap(degraded: bool) -> Snapshot {
        snapshot(
            "http://127.0.0.1:8080".into(),
            1_700_000_000_000,
            300_000,
            vec![
                series(Series::Writes, degraded),
                series(Series::Reads, degraded),
                series(Series::WriteBytes, degraded),
                series(Series::ReadBytes, degraded),
            ],
        )
    }

    #[test]
    fn plain_table_lists_every_range_and_key_without_escapes() {
        let out = render(&snap(false), 10, &RenderOpts::default());
        assert!(!out.contains('\x1b'));
        for needle in [
            "WRITES",
            "READ_BYTES",
            "k1:first",
            "hot:10",
            "50.0%",
            "3/3 nodes answered",
            "890..900",
        ] {
            assert!(out.contains(needle), "{needle} missing:\n{out}");
        }
        assert!(out.contains("1000 B"), "bytes series in units:\n{out}");
    }

    #[test]
    fn frames_fit_the_terminal_in_both_layouts_and_keep_every_series() {
        for (w, h) in [(80, 24), (200, 50), (120, 30), (40, 10)] {
            let opts = RenderOpts {
                width: Some(w),
                height: Some(h),
                color: true,
                interval: Some(Duration::from_secs(2)),
                error: Some("cannot reach".into()),
                footer: true,
            };
            let out = render(&snap(true), 10, &opts);
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines.len(), h, "{w}x{h}:\n{out}");
            for l in &lines {
                let visible = strip_sgr(l);
                assert!(
                    visible.chars().count() <= w,
                    "{w}x{h} line too wide: {visible}"
                );
            }
            assert!(lines[h - 1].contains("q quit"), "footer on the last line");
            if h >= 24 {
                for name in ["WRITES", "READS", "WRITE_BYTES", "READ_BYTES"] {
                    assert!(out.contains(name), "{name} visible at {w}x{h}:\n{out}");
                }
            }
            assert!(out.contains("DEGRADED"), "{out}");
        }
    }

    #[test]
    fn amounts_use_separators_and_binary_units() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(amount(Series::ReadBytes, 1536), "1.5 KiB");
        assert_eq!(amount(Series::Reads, 1536), "1,536");
        assert_eq!(human_duration(Duration::from_secs(300)), "5m");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1500ms");
    }

    fn strip_sgr(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
