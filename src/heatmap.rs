//! `keyviz heatmap`: one cluster-wide matrix query drawn in the terminal — key ranges down
//! (a key axis on the left), time across (a time axis below), the colour of a cell its
//! traffic on a log scale, a legend saying what a cell and the scale mean.
//!
//! On a colour terminal each character cell shows two heatmap rows (`▀`, foreground the
//! upper row, background the lower one) in truecolor when `COLORTERM` says so, else in
//! the 256-colour cube. Into a pipe, a file or with `NO_COLOR`, it prints plain text: one
//! ASCII shade character (` .:-=+*#%@`) per cell. The drawing fits `--width` × `--height`
//! (default: the terminal's size, or 100×30 when there is no terminal).

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use keyviz::{Matrix, format_rfc3339_ms};

use crate::admin_client::EXIT_DEGRADED;
use crate::matrix_cmd::{
    QueryEcho, client_fail, degraded_message, fail_with, invalid, nodes_of, row_label,
};
use crate::query_args::QueryArgs;
use crate::top::snapshot::NodesSummary;

/// Colour mode of the drawing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorMode {
    /// Truecolor or 256 colours on a terminal (per `COLORTERM`), plain text otherwise or
    /// with `NO_COLOR`.
    Auto,
    /// 24-bit colour escapes.
    Truecolor,
    /// The xterm 256-colour cube.
    #[value(name = "256")]
    Ansi256,
    /// Plain ASCII shades, no escapes.
    Never,
}

/// Flags of `keyviz heatmap`.
#[derive(Debug, Args)]
pub(crate) struct HeatmapArgs {
    #[command(flatten)]
    pub(crate) query: QueryArgs,
    /// Characters per line (default: the terminal's width, else 100).
    #[arg(long, value_parser = clap::value_parser!(u16).range(40..))]
    pub(crate) width: Option<u16>,
    /// Lines (default: the terminal's height, else 30).
    #[arg(long, value_parser = clap::value_parser!(u16).range(10..))]
    pub(crate) height: Option<u16>,
    /// Colours.
    #[arg(long, value_enum, default_value_t = ColorMode::Auto)]
    pub(crate) color: ColorMode,
}

/// How to draw: the size and the colour mode (never `Auto`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DrawOpts {
    /// Characters per line.
    pub(crate) width: usize,
    /// Lines.
    pub(crate) height: usize,
    /// `Truecolor`, `Ansi256` or `Never`.
    pub(crate) color: ColorMode,
}

/// Lines around the plot: title, nodes, axis, time labels, legend.
const CHROME_LINES: usize = 5;
/// Widest key label.
const MAX_LABEL: usize = 24;
/// Plain-text shades, lightest first.
const SHADES: &[u8] = b" .:-=+*#%@";
/// Colour of an empty cell.
pub(crate) const EMPTY_RGB: (u8, u8, u8) = (24, 24, 32);
/// The heat ramp, cold to hot (dark blue, purple, red, orange, pale yellow): ordered in
/// lightness, so it reads in greyscale too.
const RAMP: [(f64, (u8, u8, u8)); 5] = [
    (0.0, (40, 30, 110)),
    (0.3, (130, 40, 150)),
    (0.55, (215, 50, 70)),
    (0.8, (250, 150, 40)),
    (1.0, (255, 245, 170)),
];

/// The ramp's colour at `t` in `0..=1`.
pub(crate) fn ramp(t: f64) -> (u8, u8, u8) {
    let t = t.clamp(0.0, 1.0);
    for w in RAMP.windows(2) {
        let ((t0, a), (t1, b)) = (w[0], w[1]);
        if t <= t1 {
            let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 0.0 };
            let mix = |x: u8, y: u8| {
                let v = f64::from(x) + (f64::from(y) - f64::from(x)) * f;
                // In 0..=255 by construction.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let v = v.round().clamp(0.0, 255.0) as u8;
                v
            };
            return (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2));
        }
    }
    RAMP[RAMP.len() - 1].1
}

/// Position of `v` on the log scale of `0..=max`: 0 for 0, 1 for `max`.
pub(crate) fn scale(v: u64, max: u64) -> f64 {
    if v == 0 || max == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let t = (1.0 + v as f64).ln() / (1.0 + max as f64).ln();
    t.clamp(0.0, 1.0)
}

/// Nearest colour of the xterm 256-colour cube.
fn xterm256((r, g, b): (u8, u8, u8)) -> u8 {
    let q = |c: u8| -> u8 {
        // The cube's levels are 0, 95, 135, 175, 215, 255.
        if c < 48 {
            0
        } else if c < 115 {
            1
        } else {
            (c - 35) / 40
        }
    };
    16 + 36 * q(r) + 6 * q(g) + q(b)
}

fn sgr(color: ColorMode, rgb: (u8, u8, u8), background: bool) -> String {
    let layer = if background { 48 } else { 38 };
    match color {
        ColorMode::Truecolor => format!("\x1b[{layer};2;{};{};{}m", rgb.0, rgb.1, rgb.2),
        ColorMode::Ansi256 => format!("\x1b[{layer};5;{}m", xterm256(rgb)),
        ColorMode::Auto | ColorMode::Never => String::new(),
    }
}

/// `n` source items shown in `slots` slots: the half-open source span of each slot. With
/// fewer items than slots, items are stretched (a slot shows one item); with more, each
/// slot sums a contiguous group.
fn spans(n: usize, slots: usize) -> Vec<(usize, usize)> {
    if n == 0 || slots == 0 {
        return Vec::new();
    }
    if n <= slots {
        (0..slots)
            .map(|s| {
                let i = s * n / slots;
                (i, i + 1)
            })
            .collect()
    } else {
        (0..slots)
            .map(|s| (s * n / slots, ((s + 1) * n / slots).max(s * n / slots + 1)))
            .collect()
    }
}

/// The grid actually drawn: `cells[y][x]`, the source rows and columns each cell sums,
/// and the largest cell.
pub(crate) struct Grid {
    /// Cell sums, `cells[y][x]`.
    pub(crate) cells: Vec<Vec<u64>>,
    /// Half-open source row span of each grid row.
    pub(crate) row_spans: Vec<(usize, usize)>,
    /// Half-open source column span of each grid column.
    pub(crate) col_spans: Vec<(usize, usize)>,
    /// Largest cell.
    pub(crate) max: u64,
}

/// Resamples `m` to at most `pixel_rows` × `plot_cols` cells (stretching when smaller,
/// summing contiguous groups when larger: no traffic is dropped).
pub(crate) fn grid(m: &Matrix, pixel_rows: usize, plot_cols: usize) -> Grid {
    let row_spans = spans(
        m.rows.len(),
        pixel_rows.min(m.rows.len().max(1) * pixel_rows),
    );
    let col_spans = spans(m.column_unix_ms.len(), plot_cols);
    let mut max = 0;
    let cells: Vec<Vec<u64>> = row_spans
        .iter()
        .map(|&(r0, r1)| {
            col_spans
                .iter()
                .map(|&(c0, c1)| {
                    let v = m.rows[r0..r1]
                        .iter()
                        .flat_map(|r| r.values.get(c0..c1).unwrap_or_default())
                        .fold(0u64, |a, v| a.saturating_add(*v));
                    max = max.max(v);
                    v
                })
                .collect()
        })
        .collect();
    Grid {
        cells,
        row_spans,
        col_spans,
        max,
    }
}

fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n >= w {
        s.chars().take(w).collect()
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}

fn hms(t: i64) -> String {
    // "2026-12-01T16:50:12.000Z" -> "16:50:12"
    format_rfc3339_ms(t).get(11..19).unwrap_or("").to_string()
}

/// Draws the heatmap of `m`. Every line has at most `opts.width` visible characters and
/// there are at most `opts.height` lines. The header names the series, admin URL, window,
/// node status and total; the legend names the scale's maximum and what a cell sums.
pub(crate) fn render(
    m: &Matrix,
    admin: &str,
    echo: &QueryEcho,
    nodes: &NodesSummary,
    opts: &DrawOpts,
) -> String {
    let color = opts.color != ColorMode::Never && opts.color != ColorMode::Auto;
    let width = opts.width.max(40);
    let plot_lines = opts.height.saturating_sub(CHROME_LINES).max(2);
    let label_w = (width / 4).clamp(8, MAX_LABEL);
    let plot_cols = width - label_w - 1;
    let pixel_rows = if color { plot_lines * 2 } else { plot_lines };
    let g = grid(m, pixel_rows, plot_cols);
    let mut out = String::new();
    let step = m.step_ms;
    let first = m.column_unix_ms.first().copied();
    let end = m
        .column_unix_ms
        .last()
        .map(|t| t.saturating_add(i64::try_from(step).unwrap_or(0)));
    let title = format!(
        "{} {}  {} .. {}  total {}",
        m.series.as_str().to_uppercase(),
        admin,
        echo.from_unix_ms
            .or(first)
            .map_or("-".into(), format_rfc3339_ms),
        echo.to_unix_ms
            .or(end)
            .map_or("now".into(), format_rfc3339_ms),
        m.total()
    );
    out.push_str(pad(&title, width).trim_end());
    out.push('\n');
    let mut status = format!(
        "{}/{} nodes answered  {} rows x {} columns of {} ms",
        nodes.responded,
        nodes.expected,
        m.rows.len(),
        m.column_unix_ms.len(),
        step
    );
    if !nodes.unreachable.is_empty() {
        let names: Vec<&str> = nodes.unreachable.iter().map(|u| u.node.as_str()).collect();
        status.push_str(&format!("  DEGRADED: {} did not answer", names.join(", ")));
    }
    out.push_str(pad(&status, width).trim_end());
    out.push('\n');
    if g.cells.is_empty() || g.col_spans.is_empty() {
        out.push_str("(no traffic recorded in this window)\n");
        return out;
    }
    // Key labels: a row's start where a new source row begins.
    let label_for = |y: usize| -> Option<String> {
        let (r0, _) = *g.row_spans.get(y)?;
        let prev = y
            .checked_sub(1)
            .and_then(|p| g.row_spans.get(p))
            .map(|s| s.0);
        (prev != Some(r0)).then(|| row_label(&m.rows[r0]))
    };
    let lines = if color {
        g.cells.len().div_ceil(2)
    } else {
        g.cells.len()
    };
    for line in 0..lines {
        let y = if color { line * 2 } else { line };
        let label = label_for(y)
            .or_else(|| if color { label_for(y + 1) } else { None })
            .unwrap_or_default();
        out.push_str(&pad(&label, label_w));
        out.push('│');
        for x in 0..g.col_spans.len() {
            if color {
                let top = g.cells[y][x];
                let bottom = g.cells.get(y + 1).map(|r| r[x]);
                let rgb = |v: u64| {
                    if v == 0 {
                        EMPTY_RGB
                    } else {
                        ramp(scale(v, g.max))
                    }
                };
                out.push_str(&sgr(opts.color, rgb(top), false));
                out.push_str(&sgr(opts.color, bottom.map_or((0, 0, 0), rgb), true));
                out.push('▀');
            } else {
                let v = g.cells[y][x];
                let i = if v == 0 {
                    0
                } else {
                    #[allow(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        clippy::cast_precision_loss
                    )]
                    let i = (scale(v, g.max) * (SHADES.len() - 1) as f64).ceil() as usize;
                    i.clamp(1, SHADES.len() - 1)
                };
                out.push(char::from(SHADES[i]));
            }
        }
        if color {
            out.push_str("\x1b[0m");
        }
        out.push('\n');
    }
    // Time axis: ticks under the plot, then start, middle and end times.
    let n = g.col_spans.len();
    out.push_str(&" ".repeat(label_w));
    out.push('└');
    for x in 0..n {
        out.push(if x == 0 || x == n / 2 || x + 1 == n {
            '┬'
        } else {
            '─'
        });
    }
    out.push('\n');
    let t_at = |x: usize| m.column_unix_ms[g.col_spans[x].0];
    let (a, b, c) = (
        hms(t_at(0)),
        hms(t_at(n / 2)),
        format!("{} UTC", hms(t_at(n - 1))),
    );
    let mut axis = vec![' '; n + 1 + 16];
    let mut put = |at: usize, s: &str| {
        for (i, ch) in s.chars().enumerate() {
            if let Some(slot) = axis.get_mut(at + i) {
                *slot = ch;
            }
        }
    };
    put(0, &a);
    let end_at = (n + 1).saturating_sub(c.len());
    let mid_at = (n / 2).saturating_sub(4).max(a.len() + 1);
    if mid_at + b.len() < end_at {
        put(mid_at, &b);
    }
    put(end_at.max(a.len() + 1), &c);
    axis.truncate(width - label_w);
    out.push_str(&" ".repeat(label_w));
    out.push_str(axis.iter().collect::<String>().trim_end());
    out.push('\n');
    // Legend.
    let rows_per = g.row_spans.iter().map(|s| s.1 - s.0).max().unwrap_or(1);
    let cols_per = g.col_spans.iter().map(|s| s.1 - s.0).max().unwrap_or(1);
    let mut legend = String::from("scale (log): 0 ");
    let mut visible = legend.chars().count();
    if color {
        legend.push_str(&sgr(opts.color, EMPTY_RGB, true));
        legend.push(' ');
        for i in 0..=9 {
            legend.push_str(&sgr(opts.color, ramp(f64::from(i) / 9.0), true));
            legend.push(' ');
        }
        legend.push_str("\x1b[0m");
        visible += 11;
    } else {
        legend.push_str(std::str::from_utf8(SHADES).unwrap_or(""));
        visible += SHADES.len();
    }
    let suffix = format!(
        " {}  per cell: {} {} x {} step{} ({} ms)",
        g.max,
        m.series.as_str(),
        if rows_per == 1 {
            "1 row".to_string()
        } else {
            format!("≤{rows_per} rows")
        },
        cols_per,
        if cols_per == 1 { "" } else { "s" },
        step.saturating_mul(cols_per as u64)
    );
    legend.push_str(pad(&suffix, width.saturating_sub(visible)).trim_end());
    out.push_str(&legend);
    out.push('\n');
    out
}

fn auto_color() -> ColorMode {
    if !std::io::stdout().is_terminal()
        || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
    {
        return ColorMode::Never;
    }
    let ct = std::env::var("COLORTERM").unwrap_or_default();
    if ct.contains("truecolor") || ct.contains("24bit") {
        ColorMode::Truecolor
    } else {
        ColorMode::Ansi256
    }
}

fn terminal_size() -> Option<(usize, usize)> {
    #[cfg(unix)]
    if std::io::stdout().is_terminal() {
        return Some(crate::top::term::Screen::size());
    }
    None
}

/// Runs `keyviz heatmap`.
pub(crate) async fn run(args: HeatmapArgs) -> anyhow::Result<ExitCode> {
    const CMD: &str = "heatmap";
    let r = match args.query.resolve() {
        Ok(r) => r,
        Err(e) => return Ok(invalid(CMD, e)),
    };
    let (tw, th) = terminal_size().unwrap_or((100, 30));
    let color = match args.color {
        ColorMode::Auto => auto_color(),
        c => c,
    };
    let opts = DrawOpts {
        width: args.width.map_or(tw, usize::from).max(40),
        height: args.height.map_or(th, usize::from).max(10),
        color,
    };
    // Ask for about as many rows as can be drawn, so the server's coarsening (which keeps
    // hot ranges apart) does the work rather than the client's.
    let lines = opts.height.saturating_sub(CHROME_LINES).max(2);
    let drawable = if color == ColorMode::Never {
        lines
    } else {
        lines * 2
    };
    let rows = args
        .query
        .rows
        .map_or(drawable.min(1024), |r| usize::try_from(r).unwrap_or(1024));
    let answer = r.client.matrix(r.series, &r.range, rows).await;
    r.client.logout().await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return Ok(client_fail(CMD, &e)),
    };
    let nodes = nodes_of(&answer);
    let echo = QueryEcho::new(r.series, &r.range, rows, None);
    let text = render(&answer.matrix, &r.client.base(), &echo, &nodes, &opts);
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    if nodes.degraded() && !args.query.allow_degraded {
        return Ok(fail_with(CMD, degraded_message(&nodes), EXIT_DEGRADED));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyviz::MatrixRow;

    fn matrix(rows: usize, cols: usize) -> Matrix {
        Matrix {
            column_unix_ms: (0..cols)
                .map(|i| 1_700_000_000_000 + 1_000 * i as i64)
                .collect(),
            rows: (0..rows)
                .map(|r| MatrixRow {
                    bucket_id: format!("route:{r}"),
                    start: (r > 0).then(|| format!("key:{r:03}").into_bytes()),
                    end: (r + 1 < rows).then(|| format!("key:{:03}", r + 1).into_bytes()),
                    values: (0..cols)
                        .map(|c| if r == 1 { 1_000 } else { (c % 3) as u64 })
                        .collect(),
                    ..MatrixRow::default()
                })
                .collect(),
            series: keyviz::Series::Writes,
            generated_at: String::new(),
            step_ms: 1_000,
            node_id: None,
        }
    }

    fn strip(s: &str) -> String {
        let mut out = String::new();
        let mut esc = false;
        for c in s.chars() {
            match (esc, c) {
                (false, '\x1b') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    }

    fn draw(m: &Matrix, w: usize, h: usize, color: ColorMode) -> String {
        let echo = QueryEcho::new(keyviz::Series::Writes, &Default::default(), 64, None);
        render(
            m,
            "http://a:1",
            &echo,
            &NodesSummary::of(None),
            &DrawOpts {
                width: w,
                height: h,
                color,
            },
        )
    }

    #[test]
    fn every_mode_fits_the_asked_size_and_has_axes_and_legend() {
        for (rows, cols) in [(3, 10), (200, 900), (1, 1)] {
            let m = matrix(rows, cols);
            for color in [ColorMode::Never, ColorMode::Truecolor, ColorMode::Ansi256] {
                for (w, h) in [(40, 10), (100, 30), (181, 57)] {
                    let text = draw(&m, w, h, color);
                    let plain = strip(&text);
                    let lines: Vec<&str> = plain.lines().collect();
                    assert!(
                        lines.len() <= h,
                        "{rows}x{cols} {color:?} {w}x{h}: {} lines\n{plain}",
                        lines.len()
                    );
                    assert!(
                        lines.iter().all(|l| l.chars().count() <= w),
                        "{rows}x{cols} {color:?} {w}x{h}\n{plain}"
                    );
                    assert!(plain.contains("scale (log)"), "{plain}");
                    assert!(plain.contains(" UTC"), "{plain}");
                    assert!(plain.contains("22:13:20"), "time axis: {plain}");
                    assert_eq!(color == ColorMode::Never, !text.contains('\x1b'));
                }
            }
        }
    }

    #[test]
    fn the_hot_row_is_drawn_darkest_and_labelled_on_the_key_axis() {
        let m = matrix(3, 10);
        let plain = draw(&m, 60, 12, ColorMode::Never);
        let hot: Vec<&str> = plain.lines().filter(|l| l.starts_with("key:001")).collect();
        assert_eq!(hot.len(), 1, "{plain}");
        assert!(hot[0].ends_with("@@@@@@@@@@"), "{plain}");
        assert!(plain.contains("(empty)"), "first row label: {plain}");
        assert!(
            plain.contains("1000  per cell: writes"),
            "legend max: {plain}"
        );
        let colored = draw(&m, 60, 12, ColorMode::Truecolor);
        let (r, g, b) = ramp(1.0);
        assert!(
            colored.contains(&format!("38;2;{r};{g};{b}m")),
            "hottest colour used"
        );
    }

    #[test]
    fn many_rows_and_columns_are_summed_into_cells_not_dropped() {
        let m = matrix(200, 900);
        let plain = draw(&m, 100, 30, ColorMode::Never);
        assert!(plain.contains("≤"), "legend says cells sum rows: {plain}");
        let g = grid(&m, 25, 75);
        let sum: u64 = g.cells.iter().flatten().sum();
        assert_eq!(sum, m.total());
    }

    #[test]
    fn ramp_and_scale_are_monotone_and_xterm_colours_are_in_the_cube() {
        assert_eq!(scale(0, 10), 0.0);
        assert_eq!(scale(10, 10), 1.0);
        assert!(scale(2, 10) < scale(3, 10));
        let lum = |(r, g, b): (u8, u8, u8)| {
            0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b)
        };
        for i in 0..20 {
            assert!(lum(ramp(f64::from(i) / 20.0)) < lum(ramp(f64::from(i + 1) / 20.0)));
        }
        assert_eq!(xterm256((0, 0, 0)), 16);
        assert_eq!(xterm256((255, 255, 255)), 231);
    }
}
