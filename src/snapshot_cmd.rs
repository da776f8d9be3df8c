//! `keyviz snapshot`: one self-contained HTML file of one cluster-wide query, for an
//! incident document — the heatmap as drawn (an inline PNG), its key and time axes, the
//! legend and scale, the series, time and key range, the hottest ranges and keys, the
//! per-node status and the query that made it.
//!
//! Self-contained means it opens without any network: CSS is inline, the image is a
//! `data:` URL, there is no script, and a Content-Security-Policy (`default-src 'none'`)
//! makes a browser refuse any fetch anyway. Everything quoted from the server is
//! HTML-escaped.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use clap::Args;
use keyviz::hotkeys::MAX_HOT_KEYS_K;
use keyviz::{Matrix, Series, format_rfc3339_ms, key_preview};

use crate::admin_client::{ClientError, EXIT_DEGRADED, HotKeysAnswer, MatrixAnswer};
use crate::heatmap::{EMPTY_RGB, grid, ramp, scale};
use crate::matrix_cmd::{
    QueryEcho, client_fail, degraded_message, fail_with, invalid, nodes_of, row_label,
};
use crate::query_args::QueryArgs;
use crate::top::snapshot::{NodesSummary, SeriesInput, SeriesSnapshot, series_snapshot};

/// Most grid rows drawn in the image (the row budget asked is at most this).
const MAX_IMAGE_ROWS: usize = 512;
/// Most grid columns drawn (more columns are summed in groups).
const MAX_IMAGE_COLS: usize = 1200;
/// Key labels along the key axis.
const KEY_TICKS: usize = 12;

/// Flags of `keyviz snapshot`.
#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    #[command(flatten)]
    pub(crate) query: QueryArgs,
    /// Where to write the HTML (`-` for stdout). Default:
    /// `keyviz-snapshot-<series>-<UTC time>.html` in the current directory.
    #[arg(short = 'o', long)]
    pub(crate) output: Option<PathBuf>,
    /// Entries in the hottest ranges and hottest keys lists.
    #[arg(short = 'k', long = "top", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=MAX_HOT_KEYS_K as u64))]
    pub(crate) k: u64,
}

/// Everything one snapshot shows.
pub(crate) struct SnapshotInput<'a> {
    /// The admin API asked.
    pub(crate) admin: &'a str,
    /// The command line, credentials left out.
    pub(crate) command: &'a str,
    /// The query as run.
    pub(crate) echo: &'a QueryEcho,
    /// When it was taken (client clock), unix ms.
    pub(crate) taken_unix_ms: i64,
    /// The matrix.
    pub(crate) matrix: &'a Matrix,
    /// Fan-out status of the answers.
    pub(crate) nodes: &'a NodesSummary,
    /// Per-node status rows of the matrix answer.
    pub(crate) node_rows: &'a [keyviz_admin::NodeStatus],
    /// Hottest ranges and keys.
    pub(crate) series: &'a SeriesSnapshot,
}

/// HTML-escapes text for element content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(kind);
    h.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&h.finalize().to_be_bytes());
}

/// Encodes an RGB image (`pixels` row-major, `width * height` entries) as PNG.
///
/// # Errors
/// Only if the in-memory compressor fails.
pub(crate) fn encode_png(
    width: usize,
    height: usize,
    pixels: &[(u8, u8, u8)],
) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(height * (width * 3 + 1));
    for y in 0..height {
        raw.push(0); // filter: none
        for p in &pixels[y * width..(y + 1) * width] {
            raw.extend_from_slice(&[p.0, p.1, p.2]);
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)?;
    let idat = z.finish()?;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&u32::try_from(width).unwrap_or(u32::MAX).to_be_bytes());
    ihdr.extend_from_slice(&u32::try_from(height).unwrap_or(u32::MAX).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &idat);
    png_chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d1d24;background:#fff}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}\
.meta{color:#555}.warn{background:#fde8e8;border:1px solid #d33;padding:8px;margin:12px 0}\
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}code,.mono{font-family:ui-monospace,monospace}\
.map{display:grid;grid-template-columns:minmax(120px,220px) 1fr;gap:0 6px;max-width:1400px}\
.keys{position:relative;font:11px ui-monospace,monospace}\
.keys span{position:absolute;right:0;transform:translateY(-50%);white-space:nowrap;overflow:hidden;max-width:100%}\
.heat{width:100%;height:420px;image-rendering:pixelated;border:1px solid #888;display:block}\
.times{display:flex;justify-content:space-between;font:11px ui-monospace,monospace;grid-column:2}\
.legend{display:flex;align-items:center;gap:8px;margin-top:8px}\
.bar{width:240px;height:14px;border:1px solid #888}\
.ok{color:#176117}.bad{color:#b00}";

fn rgb_css((r, g, b): (u8, u8, u8)) -> String {
    format!("rgb({r},{g},{b})")
}

fn share_pct(s: f64) -> String {
    format!("{:.1}%", s * 100.0)
}

fn key_or(k: Option<&String>, none: &str) -> String {
    k.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map_or_else(|| none.to_string(), |k| key_preview(&k))
}

/// Renders the snapshot. Pure; never fails (an image that cannot be encoded is replaced
/// by a note).
pub(crate) fn render_html(s: &SnapshotInput<'_>) -> String {
    let m = s.matrix;
    let rows = m.rows.len().min(MAX_IMAGE_ROWS);
    let cols = m.column_unix_ms.len().min(MAX_IMAGE_COLS);
    let g = grid(m, rows, cols);
    let (w, h) = (g.col_spans.len(), g.cells.len());
    let mut pixels = Vec::with_capacity(w * h);
    for row in &g.cells {
        for &v in row {
            pixels.push(if v == 0 {
                EMPTY_RGB
            } else {
                ramp(scale(v, g.max))
            });
        }
    }
    let series = m.series.as_str();
    let step = m.step_ms;
    let first = m.column_unix_ms.first().copied();
    let end = m
        .column_unix_ms
        .last()
        .map(|t| t.saturating_add(i64::try_from(step).unwrap_or(0)));
    let from = s
        .echo
        .from_unix_ms
        .or(first)
        .map_or("(oldest history)".into(), format_rfc3339_ms);
    let to = s
        .echo
        .to_unix_ms
        .or(end)
        .map_or("(now)".into(), format_rfc3339_ms);
    let mut o = String::with_capacity(64 * 1024);
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    o.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n");
    o.push_str(&format!(
        "<title>KeyViz snapshot: {} {} .. {}</title>\n<style>{STYLE}</style></head><body>\n",
        esc(series),
        esc(&from),
        esc(&to)
    ));
    o.push_str(&format!(
        "<h1>KeyViz snapshot: <span id=\"series\">{}</span></h1>\n<p class=\"meta\">Cluster via <span class=\"mono\">{}</span>, taken {} (client clock). Window <span id=\"window\">{} .. {}</span>, {} columns of {} ms, {} rows. Keys <span id=\"keys\">{} .. {}</span>.</p>\n",
        esc(series),
        esc(s.admin),
        esc(&format_rfc3339_ms(s.taken_unix_ms)),
        esc(&from),
        esc(&to),
        m.column_unix_ms.len(),
        step,
        m.rows.len(),
        esc(&key_or(s.echo.key_start.as_ref(), "(first key)")),
        esc(&key_or(s.echo.key_end.as_ref(), "(end)"))
    ));
    if s.nodes.degraded() {
        let names: Vec<String> = s.nodes.unreachable.iter().map(|u| esc(&u.node)).collect();
        o.push_str(&format!(
            "<p class=\"warn\" id=\"degraded\">Degraded: {}/{} nodes answered; missing: {}. The numbers below leave their traffic out.</p>\n",
            s.nodes.responded,
            s.nodes.expected,
            names.join(", ")
        ));
    }
    // The heatmap with its axes.
    o.push_str("<h2>Heatmap</h2>\n");
    if w == 0 || h == 0 {
        o.push_str("<p id=\"empty\">No traffic recorded in this window.</p>\n");
    } else {
        o.push_str("<div class=\"map\"><div class=\"keys\" id=\"key-axis\">");
        let ticks = KEY_TICKS.min(h);
        for t in 0..ticks {
            let y = t * h / ticks;
            let (r0, _) = g.row_spans[y];
            #[allow(clippy::cast_precision_loss)]
            let pct = (y as f64 + 0.5) / h as f64 * 100.0;
            o.push_str(&format!(
                "<span style=\"top:{pct:.2}%\">{}</span>",
                esc(&row_label(&m.rows[r0]))
            ));
        }
        o.push_str("</div>");
        match encode_png(w, h, &pixels) {
            Ok(png) => o.push_str(&format!(
                "<img class=\"heat\" id=\"heatmap\" width=\"{w}\" height=\"{h}\" alt=\"heatmap of {} by key range (rows, top = first key) and time (columns, left = oldest)\" src=\"data:image/png;base64,{}\">",
                esc(series),
                base64::engine::general_purpose::STANDARD.encode(png)
            )),
            Err(e) => o.push_str(&format!("<p>(image unavailable: {})</p>", esc(&e.to_string()))),
        }
        o.push_str("<div class=\"times\" id=\"time-axis\">");
        let t_at = |x: usize| m.column_unix_ms[g.col_spans[x].0];
        for x in [0, w / 2, w - 1] {
            o.push_str(&format!(
                "<span>{}</span>",
                esc(&format_rfc3339_ms(t_at(x)))
            ));
        }
        o.push_str("</div></div>\n");
        let rows_per = g.row_spans.iter().map(|s| s.1 - s.0).max().unwrap_or(1);
        let cols_per = g.col_spans.iter().map(|s| s.1 - s.0).max().unwrap_or(1);
        let stops: Vec<String> = (0..=10)
            .map(|i| rgb_css(ramp(f64::from(i) / 10.0)))
            .collect();
        o.push_str(&format!(
            "<div class=\"legend\" id=\"legend\"><span>0</span><span style=\"display:inline-block;width:14px;height:14px;border:1px solid #888;background:{}\"></span><span class=\"bar\" style=\"background:linear-gradient(to right,{})\"></span><span id=\"scale-max\">{}</span><span>{} per cell (log scale; one cell = {} row{} x {} step{} of {} ms; dark = no traffic)</span></div>\n",
            rgb_css(EMPTY_RGB),
            stops.join(","),
            g.max,
            esc(series),
            rows_per,
            if rows_per == 1 { "" } else { "s" },
            cols_per,
            if cols_per == 1 { "" } else { "s" },
            step
        ));
        o.push_str(&format!(
            "<p class=\"meta\">Total {} {} in the window.</p>\n",
            m.total(),
            esc(series)
        ));
    }
    // Hottest ranges.
    o.push_str("<h2>Hottest key ranges</h2>\n<table id=\"ranges\"><tr><th class=\"n\">#</th><th>Range</th><th>Label</th><th class=\"n\">Total</th><th class=\"n\">Share</th><th class=\"n\">Routes</th></tr>\n");
    for r in &s.series.ranges {
        o.push_str(&format!(
            "<tr><td class=\"n\">{}</td><td class=\"mono\">{} .. {}</td><td class=\"mono\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
            r.rank,
            esc(&r.start_preview),
            esc(r.end_preview.as_deref().unwrap_or("(end)")),
            esc(&r.label),
            r.total,
            share_pct(r.share),
            r.route_count
        ));
    }
    o.push_str("</table>\n");
    // Hottest keys.
    o.push_str("<h2>Hottest keys</h2>\n");
    match (&s.series.hot_keys, &s.series.hot_keys_error) {
        (Some(hk), _) => {
            o.push_str(&format!(
                "<p class=\"meta\">Capture mode {}; any key not listed has at most {} {}{}.</p>\n<table id=\"hot-keys\"><tr><th class=\"n\">#</th><th>Key</th><th class=\"n\">Estimate</th><th class=\"n\">Bounds</th><th class=\"n\">Share</th></tr>\n",
                esc(&hk.mode),
                hk.floor,
                esc(series),
                if hk.sampled { " (sampled: bounds are statistical)" } else { "" }
            ));
            for k in &hk.keys {
                o.push_str(&format!(
                    "<tr><td class=\"n\">{}</td><td class=\"mono\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} .. {}</td><td class=\"n\">{}</td></tr>\n",
                    k.rank,
                    esc(&k.preview),
                    k.estimate,
                    k.lower,
                    k.upper,
                    share_pct(k.share)
                ));
            }
            o.push_str("</table>\n");
        }
        (None, Some(e)) => o.push_str(&format!(
            "<p id=\"hot-keys\">Hot keys unavailable: {}</p>\n",
            esc(e)
        )),
        (None, None) => {
            o.push_str("<p id=\"hot-keys\">Hot keys are not kept for this series.</p>\n")
        }
    }
    // Per-node status.
    o.push_str(&format!(
        "<h2>Nodes</h2>\n<p class=\"meta\" id=\"nodes-summary\">{}/{} nodes answered</p>\n<table id=\"nodes\"><tr><th>Node</th><th>Id</th><th>Status</th><th class=\"n\">Time (ms)</th><th>Warnings</th></tr>\n",
        s.nodes.responded, s.nodes.expected
    ));
    for n in s.node_rows {
        let status = if n.ok {
            "<span class=\"ok\">ok</span>".to_string()
        } else {
            format!(
                "<span class=\"bad\">{}</span>",
                esc(n.error.as_deref().unwrap_or("no answer"))
            )
        };
        let warnings: Vec<String> = n.warnings.iter().map(|w| esc(&w.code)).collect();
        o.push_str(&format!(
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>\n",
            esc(&n.node),
            esc(n.node_id.as_deref().unwrap_or("-")),
            status,
            n.elapsed_ms,
            warnings.join(", ")
        ));
    }
    o.push_str("</table>\n");
    // The query.
    let echo = serde_json::to_string_pretty(s.echo).unwrap_or_default();
    o.push_str(&format!(
        "<h2>Query</h2>\n<pre id=\"command\">{}</pre>\n<pre id=\"query\">{}</pre>\n<p class=\"meta\">Made by keyviz {}; this file needs no network to open.</p>\n</body></html>\n",
        esc(s.command),
        esc(&echo),
        env!("CARGO_PKG_VERSION")
    ));
    o
}

/// The command line with the secret left out (and the user kept), for the file.
fn command_line() -> String {
    let mut out = vec!["keyviz".to_string()];
    let mut skip = false;
    for a in std::env::args().skip(1) {
        if skip {
            skip = false;
            out.push("<redacted>".into());
            continue;
        }
        if a == "--password" {
            skip = true;
            out.push(a);
        } else if a.starts_with("--password=") {
            out.push("--password=<redacted>".into());
        } else {
            out.push(crate::admin_client::sanitize(&a, 200));
        }
    }
    out.join(" ")
}

/// Runs `keyviz snapshot`.
pub(crate) async fn run(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    const CMD: &str = "snapshot";
    let r = match args.query.resolve() {
        Ok(r) => r,
        Err(e) => return Ok(invalid(CMD, e)),
    };
    let k = usize::try_from(args.k).unwrap_or(10);
    let rows = args
        .query
        .rows
        .map_or(256, |r| usize::try_from(r).unwrap_or(256))
        .min(MAX_IMAGE_ROWS);
    let with_hot_keys = matches!(
        r.series,
        Series::Reads | Series::Writes | Series::ReadBytes | Series::WriteBytes
    );
    let (matrix, hot) = tokio::join!(r.client.matrix(r.series, &r.range, rows), async {
        if with_hot_keys {
            Some(r.client.hot_keys(r.series, &r.range, k).await)
        } else {
            None
        }
    });
    r.client.logout().await;
    let matrix: MatrixAnswer = match matrix {
        Ok(m) => m,
        Err(e) => return Ok(client_fail(CMD, &e)),
    };
    let hot: Result<HotKeysAnswer, String> = match hot {
        Some(Ok(h)) => Ok(h),
        Some(Err(e @ (ClientError::NotServed { .. } | ClientError::Disabled(_)))) => {
            Err(e.to_string())
        }
        Some(Err(e)) => return Ok(client_fail(CMD, &e)),
        None => Err(format!("hot keys are not kept for {}", r.series)),
    };
    let nodes = nodes_of(&matrix);
    let node_rows = matrix
        .fanout
        .as_ref()
        .map(|f| f.nodes.clone())
        .unwrap_or_default();
    let series = series_snapshot(
        SeriesInput {
            series: r.series,
            matrix: matrix.clone(),
            hot_keys: hot,
        },
        k,
    );
    let echo = QueryEcho::new(r.series, &r.range, rows, None);
    let command = command_line();
    let admin = r.client.base();
    let html = render_html(&SnapshotInput {
        admin: &admin,
        command: &command,
        echo: &echo,
        taken_unix_ms: r.now_unix_ms,
        matrix: &matrix.matrix,
        nodes: &nodes,
        node_rows: &node_rows,
        series: &series,
    });
    let target = args.output.unwrap_or_else(|| {
        let t = format_rfc3339_ms(r.now_unix_ms).replace([':', '-'], "");
        PathBuf::from(format!(
            "keyviz-snapshot-{}-{}.html",
            r.series,
            t.trim_end_matches('Z').split('.').next().unwrap_or("now")
        ))
    });
    if target.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(html.as_bytes())?;
        out.flush()?;
    } else {
        use anyhow::Context as _;
        std::fs::write(&target, html.as_bytes())
            .with_context(|| format!("cannot write {}", target.display()))?;
        eprintln!("keyviz snapshot: wrote {}", target.display());
    }
    if nodes.degraded() && !args.query.allow_degraded {
        return Ok(fail_with(CMD, degraded_message(&nodes), EXIT_DEGRADED));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyviz::MatrixRow;

    #[test]
    fn png_has_the_signature_size_and_valid_chunk_crcs() {
        let px = vec![(1, 2, 3); 6];
        let png = encode_png(3, 2, &px).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes([png[16], png[17], png[18], png[19]]), 3);
        assert_eq!(u32::from_be_bytes([png[20], png[21], png[22], png[23]]), 2);
        // Walk the chunks and check every CRC.
        let mut i = 8;
        let mut kinds = Vec::new();
        while i < png.len() {
            let len = u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]) as usize;
            let body = &png[i + 4..i + 8 + len];
            let crc = u32::from_be_bytes([
                png[i + 8 + len],
                png[i + 9 + len],
                png[i + 10 + len],
                png[i + 11 + len],
            ]);
            assert_eq!(crc32fast::hash(body), crc);
            kinds.push(String::from_utf8_lossy(&body[..4]).to_string());
            i += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
    }

    #[test]
    fn html_is_self_contained_escaped_and_names_the_query() {
        let m = Matrix {
            column_unix_ms: vec![1_700_000_000_000, 1_700_000_001_000],
            rows: vec![MatrixRow {
                bucket_id: "route:1".into(),
                first_key: Some(b"<script>".to_vec()),
                values: vec![3, 4],
                route_count: 1,
                ..MatrixRow::default()
            }],
            series: Series::Writes,
            generated_at: String::new(),
            step_ms: 1_000,
            node_id: None,
        };
        let answer = MatrixAnswer {
            matrix: m.clone(),
            fanout: None,
            compare: None,
            baseline_fanout: None,
        };
        let series = series_snapshot(
            SeriesInput {
                series: Series::Writes,
                matrix: answer,
                hot_keys: Err("no hot keys".into()),
            },
            5,
        );
        let echo = QueryEcho::new(Series::Writes, &Default::default(), 256, None);
        let html = render_html(&SnapshotInput {
            admin: "http://a:1",
            command: "keyviz snapshot --admin a:1",
            echo: &echo,
            taken_unix_ms: 1_700_000_005_000,
            matrix: &m,
            nodes: &NodesSummary::of(None),
            node_rows: &[],
            series: &series,
        });
        assert!(html.contains("data:image/png;base64,"));
        assert!(html.contains("default-src 'none'"));
        assert!(!html.contains("<script"), "escaped key: {html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("src=\"http") && !html.contains("href="));
        assert!(html.contains("keyviz snapshot --admin a:1"));
        assert!(html.contains("id=\"scale-max\">4<"), "{html}");
        assert!(html.contains("Hot keys unavailable: no hot keys"));
        assert!(html.contains("2023-11-14T22:13:20Z"));
    }
}
