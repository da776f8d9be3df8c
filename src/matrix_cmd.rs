//! `keyviz matrix`: one cluster-wide matrix query printed for scripts (JSON, CSV) or
//! people (a table), optionally compared with a baseline window (`--baseline FROM..TO`).
//!
//! The exit codes are [`crate::admin_client`]'s (docs/ADMIN.md, "CLI exit codes"): a
//! degraded answer (a node did not answer) is printed and then exits 7 unless
//! `--allow-degraded` is given.

use std::io::Write as _;
use std::process::ExitCode;

use base64::Engine as _;
use clap::{Args, ValueEnum};
use keyviz::{Matrix, MatrixRow, format_rfc3339_ms, key_preview};
use serde::Serialize;

use crate::admin_client::{
    ClientError, EXIT_DEGRADED, EXIT_USAGE, MatrixAnswer, RangeQuery, sanitize,
};
use crate::query_args::{Invalid, QueryArgs, parse_window};
use crate::top::snapshot::{NodesSummary, safe_label};

/// Version of the JSON document's shape.
const MATRIX_DOC_VERSION: u32 = 1;

/// Output of `keyviz matrix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One JSON document (docs/ADMIN.md, "keyviz matrix").
    Json,
    /// One line per row, one column per time step (RFC 4180).
    Csv,
    /// A table of rows in key order with totals, shares and peaks.
    Table,
}

/// Flags of `keyviz matrix`.
#[derive(Debug, Args)]
pub(crate) struct MatrixArgs {
    #[command(flatten)]
    pub(crate) query: QueryArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Compare with this window, `FROM..TO` (e.g. `-2h..-1h`, or two RFC 3339 instants):
    /// every row gets its baseline (scaled to the window's length), delta and ratio.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) baseline: Option<String>,
}

/// Prints `keyviz <cmd>: msg` and returns the code.
pub(crate) fn fail_with(cmd: &str, msg: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("keyviz {cmd}: {msg}");
    ExitCode::from(code)
}

/// Maps [`Invalid`] to its message and exit code.
pub(crate) fn invalid(cmd: &str, e: Invalid) -> ExitCode {
    match e {
        Invalid::Usage(m) => fail_with(cmd, m, EXIT_USAGE),
        Invalid::Client(c) => fail_with(cmd, &c, c.exit_code()),
    }
}

/// The one-line message of a degraded answer.
pub(crate) fn degraded_message(n: &NodesSummary) -> String {
    let names: Vec<&str> = n.unreachable.iter().map(|u| u.node.as_str()).collect();
    format!(
        "degraded answer: {}/{} nodes answered{}{} (pass --allow-degraded to accept it)",
        n.responded,
        n.expected,
        if names.is_empty() {
            ""
        } else {
            "; unreachable: "
        },
        names.join(", ")
    )
}

/// The query as run, for the output (so a saved document says what made it).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QueryEcho {
    /// The series.
    pub(crate) series: keyviz::Series,
    /// Window start, unix ms (`null` = the oldest history).
    pub(crate) from_unix_ms: Option<i64>,
    /// Window end, unix ms (`null` = now).
    pub(crate) to_unix_ms: Option<i64>,
    /// Row budget asked.
    pub(crate) rows: usize,
    /// Key range start, base64 (`null` = the first key).
    pub(crate) key_start: Option<String>,
    /// Key range end, base64 (`null` = unbounded).
    pub(crate) key_end: Option<String>,
    /// Baseline window start, unix ms, when comparing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) baseline_from_unix_ms: Option<i64>,
    /// Baseline window end, unix ms, when comparing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) baseline_to_unix_ms: Option<i64>,
}

impl QueryEcho {
    pub(crate) fn new(
        series: keyviz::Series,
        range: &RangeQuery,
        rows: usize,
        baseline: Option<(i64, i64)>,
    ) -> QueryEcho {
        let b64 = |k: &Vec<u8>| base64::engine::general_purpose::STANDARD.encode(k);
        QueryEcho {
            series,
            from_unix_ms: range.from_unix_ms,
            to_unix_ms: range.to_unix_ms,
            rows,
            key_start: range.key_start.as_ref().map(b64),
            key_end: range.key_end.as_ref().map(b64),
            baseline_from_unix_ms: baseline.map(|b| b.0),
            baseline_to_unix_ms: baseline.map(|b| b.1),
        }
    }
}

/// The JSON document of `keyviz matrix --format json`.
#[derive(Serialize)]
struct MatrixDoc<'a> {
    version: u32,
    admin: String,
    query: &'a QueryEcho,
    degraded: bool,
    nodes: &'a NodesSummary,
    matrix: &'a Matrix,
    #[serde(skip_serializing_if = "Option::is_none")]
    fanout: Option<&'a keyviz_admin::FanoutStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compare: Option<&'a keyviz::compare::Comparison>,
}

/// The fan-out status of an answer, the baseline's failed nodes folded in.
pub(crate) fn nodes_of(a: &MatrixAnswer) -> NodesSummary {
    let mut n = NodesSummary::of(a.fanout.as_ref());
    if let Some(b) = &a.baseline_fanout {
        let b = NodesSummary::of(Some(b));
        n.responded = n.responded.min(b.responded);
        n.expected = n.expected.max(b.expected);
        for u in b.unreachable {
            if !n.unreachable.iter().any(|v| v.node == u.node) {
                n.unreachable.push(u);
            }
        }
    }
    n
}

/// Runs `keyviz matrix`.
pub(crate) async fn run(args: MatrixArgs) -> anyhow::Result<ExitCode> {
    const CMD: &str = "matrix";
    let r = match args.query.resolve() {
        Ok(r) => r,
        Err(e) => return Ok(invalid(CMD, e)),
    };
    let baseline = match args
        .baseline
        .as_deref()
        .map(|b| parse_window(b, r.now_unix_ms))
    {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => return Ok(fail_with(CMD, e, EXIT_USAGE)),
    };
    let rows = usize::try_from(args.query.rows.unwrap_or(1024)).unwrap_or(1024);
    let answer = r
        .client
        .matrix_against(r.series, &r.range, rows, baseline)
        .await;
    r.client.logout().await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return Ok(fail_with(CMD, &e, e.exit_code())),
    };
    let echo = QueryEcho::new(r.series, &r.range, rows, baseline);
    let nodes = nodes_of(&answer);
    let degraded = nodes.degraded();
    let text = match args.format {
        Format::Json => {
            let doc = MatrixDoc {
                version: MATRIX_DOC_VERSION,
                admin: r.client.base(),
                query: &echo,
                degraded,
                nodes: &nodes,
                matrix: &answer.matrix,
                fanout: answer.fanout.as_ref(),
                compare: answer.compare.as_ref(),
            };
            let mut v = serde_json::to_vec_pretty(&doc)?;
            v.push(b'\n');
            v
        }
        Format::Csv => csv(&answer.matrix, answer.compare.as_ref()).into_bytes(),
        Format::Table => table(&r.client.base(), &echo, &answer, &nodes).into_bytes(),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&text)?;
    out.flush()?;
    if degraded && !args.query.allow_degraded {
        return Ok(fail_with(CMD, degraded_message(&nodes), EXIT_DEGRADED));
    }
    Ok(ExitCode::SUCCESS)
}

/// One RFC 4180 field.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn b64(k: Option<&[u8]>) -> String {
    k.map(|k| base64::engine::general_purpose::STANDARD.encode(k))
        .unwrap_or_default()
}

/// What to call a row: its first observed key when known, else its start (printable).
pub(crate) fn row_label(r: &MatrixRow) -> String {
    let key = match &r.first_key {
        Some(k) if !k.is_empty() => k.as_slice(),
        _ => r.start.as_deref().unwrap_or_default(),
    };
    safe_label(&key_preview(key))
}

fn fmt_f64(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The CSV of a matrix: a header `bucket_id,start,end,label,total[,baseline,delta,ratio],`
/// then one RFC 3339 column per step; keys in base64 (empty = unbounded), one line per row.
pub(crate) fn csv(m: &Matrix, compare: Option<&keyviz::compare::Comparison>) -> String {
    let mut out = String::from("bucket_id,start,end,label,total");
    if compare.is_some() {
        out.push_str(",baseline,delta,ratio");
    }
    for t in &m.column_unix_ms {
        out.push(',');
        out.push_str(&format_rfc3339_ms(*t));
    }
    out.push('\n');
    for (i, r) in m.rows.iter().enumerate() {
        out.push_str(&csv_field(&sanitize(&r.bucket_id, 200)));
        out.push(',');
        out.push_str(&b64(r.start.as_deref()));
        out.push(',');
        out.push_str(&b64(r.end.as_deref()));
        out.push(',');
        out.push_str(&csv_field(&row_label(r)));
        out.push(',');
        out.push_str(&r.total().to_string());
        if let Some(c) = compare.and_then(|c| c.rows.get(i)) {
            out.push_str(&format!(
                ",{},{},{}",
                fmt_f64(c.baseline),
                fmt_f64(c.delta),
                c.ratio.map(fmt_f64).unwrap_or_default()
            ));
        }
        for v in &r.values {
            out.push(',');
            out.push_str(&v.to_string());
        }
        out.push('\n');
    }
    out
}

fn window_text(echo: &QueryEcho, m: &Matrix) -> String {
    let from = echo
        .from_unix_ms
        .or(m.column_unix_ms.first().copied())
        .map_or("-".to_string(), format_rfc3339_ms);
    let to = echo
        .to_unix_ms
        .or(m
            .column_unix_ms
            .last()
            .map(|t| t.saturating_add(i64::try_from(m.step_ms).unwrap_or(0))))
        .map_or("now".to_string(), format_rfc3339_ms);
    format!("{from} .. {to}")
}

/// The table of `--format table`: a header, then every row in key order.
pub(crate) fn table(
    admin: &str,
    echo: &QueryEcho,
    a: &MatrixAnswer,
    nodes: &NodesSummary,
) -> String {
    let m = &a.matrix;
    let total = m.total();
    let mut out = format!(
        "{}  {}  {}  {} columns of {} ms  {}/{} nodes answered\n",
        m.series.as_str().to_uppercase(),
        admin,
        window_text(echo, m),
        m.column_unix_ms.len(),
        m.step_ms,
        nodes.responded,
        nodes.expected
    );
    if let Some(c) = &a.compare {
        out.push_str(&format!(
            "baseline {} .. {} scaled x{:.3} to this window (baseline total {}, unmatched {})\n",
            format_rfc3339_ms(c.baseline_from_unix_ms),
            format_rfc3339_ms(c.baseline_to_unix_ms),
            c.scale,
            c.baseline_total,
            fmt_f64(c.baseline_unmatched)
        ));
    }
    for u in &nodes.unreachable {
        out.push_str(&format!("unreachable: {}  {}\n", u.node, u.error));
    }
    let mut header = format!(
        "{:>4}  {:<24} {:<24} {:>6} {:>12} {:>7} {:>10}",
        "#", "START", "END", "ROUTES", "TOTAL", "SHARE", "PEAK"
    );
    if a.compare.is_some() {
        header.push_str(&format!(
            " {:>12} {:>12} {:>8}",
            "BASELINE", "DELTA", "RATIO"
        ));
    }
    out.push_str(header.trim_end());
    out.push('\n');
    let cut = |s: String| -> String {
        if s.chars().count() > 24 {
            s.chars().take(23).chain(std::iter::once('…')).collect()
        } else {
            s
        }
    };
    for (i, r) in m.rows.iter().enumerate() {
        let t = r.total();
        #[allow(clippy::cast_precision_loss)]
        let share = if total == 0 {
            0.0
        } else {
            t as f64 / total as f64 * 100.0
        };
        let start = cut(safe_label(&key_preview(
            r.start.as_deref().unwrap_or_default(),
        )));
        let end = cut(r
            .end
            .as_deref()
            .map_or("(end)".to_string(), |e| safe_label(&key_preview(e))));
        let peak = r.values.iter().copied().max().unwrap_or(0);
        let mut line = format!(
            "{:>4}  {:<24} {:<24} {:>6} {:>12} {:>6.1}% {:>10}",
            i + 1,
            start,
            end,
            r.route_count,
            t,
            share,
            peak
        );
        if let Some(c) = a.compare.as_ref().and_then(|c| c.rows.get(i)) {
            line.push_str(&format!(
                " {:>12} {:>12} {:>8}",
                fmt_f64(c.baseline),
                format!("{:+.0}", c.delta),
                c.ratio.map_or("new".to_string(), |r| format!("{r:.2}x"))
            ));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("total {total}\n"));
    out
}

/// The message of a failed call, for callers that print it.
pub(crate) fn client_fail(cmd: &str, e: &ClientError) -> ExitCode {
    fail_with(cmd, e, e.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, start: &[u8], end: Option<&[u8]>, values: Vec<u64>) -> MatrixRow {
        MatrixRow {
            bucket_id: id.into(),
            start: (!start.is_empty()).then(|| start.to_vec()),
            end: end.map(<[u8]>::to_vec),
            values,
            route_count: 1,
            ..MatrixRow::default()
        }
    }

    fn answer() -> MatrixAnswer {
        MatrixAnswer {
            matrix: Matrix {
                column_unix_ms: vec![1_700_000_000_000, 1_700_000_001_000],
                rows: vec![
                    row("route:1", b"", Some(b"m"), vec![1, 2]),
                    row("route:2", b"m,\"x", None, vec![30, 0]),
                ],
                series: keyviz::Series::Writes,
                generated_at: String::new(),
                step_ms: 1_000,
                node_id: None,
            },
            fanout: None,
            compare: None,
            baseline_fanout: None,
        }
    }

    #[test]
    fn csv_has_one_line_per_row_one_column_per_step_and_quotes_labels() {
        let a = answer();
        let text = csv(&a.matrix, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "bucket_id,start,end,label,total,2023-11-14T22:13:20Z,2023-11-14T22:13:21Z"
        );
        assert_eq!(lines[1], "route:1,,bQ==,(empty),3,1,2");
        assert_eq!(lines[2], "route:2,bSwieA==,,\"m,\"\"x\",30,30,0");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn csv_and_table_carry_the_comparison() {
        let mut a = answer();
        let base = a.matrix.clone();
        a.matrix.rows[1].values = vec![60, 0];
        a.compare = Some(keyviz::compare::compare(
            &a.matrix,
            &base,
            (0, 2_000),
            2_000,
        ));
        let text = csv(&a.matrix, a.compare.as_ref());
        assert!(text.starts_with("bucket_id,start,end,label,total,baseline,delta,ratio,"));
        assert!(text.contains(",60,30,30,2,60,0\n"), "{text}");
        let echo = QueryEcho::new(
            keyviz::Series::Writes,
            &RangeQuery::default(),
            16,
            Some((0, 2_000)),
        );
        let nodes = NodesSummary::of(None);
        let t = table("http://a:1", &echo, &a, &nodes);
        assert!(t.contains("BASELINE"), "{t}");
        assert!(t.contains("2.00x"), "{t}");
        assert!(t.contains("+30"), "{t}");
        assert!(t.contains("1/1 nodes answered"), "{t}");
    }

    #[test]
    fn table_lists_rows_in_key_order_with_shares() {
        let a = answer();
        let echo = QueryEcho::new(keyviz::Series::Writes, &RangeQuery::default(), 16, None);
        let t = table("http://a:1", &echo, &a, &NodesSummary::of(None));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("WRITES  http://a:1"), "{t}");
        assert!(
            lines[2].contains("(empty)") && lines[2].contains("9.1%"),
            "{t}"
        );
        assert!(lines[3].contains("90.9%"), "{t}");
        assert_eq!(lines.last().copied(), Some("total 33"));
        assert!(!t.contains('\x1b'));
    }
}
