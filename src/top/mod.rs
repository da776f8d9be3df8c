//! `keyviz top`: the cluster's hottest key ranges and keys, per series, from any node's
//! admin API — a full-screen view refreshed in a terminal, one plain table or one JSON
//! document with `--once`.
//!
//! The HTTP and login side is [`crate::admin_client`], the data of one refresh is
//! [`snapshot`], its drawing is [`render`]; this module only wires flags, refreshes and
//! exit codes (documented in docs/ADMIN.md, "keyviz top").

pub(crate) mod render;
pub(crate) mod snapshot;
#[cfg(unix)]
pub(crate) mod term;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use keyviz::Series;
use keyviz::hotkeys::MAX_HOT_KEYS_K;
use tokio::task::JoinSet;

use crate::admin_client::{
    AdminClient, AdminUrl, ClientError, Credentials, EXIT_DEGRADED, EXIT_USAGE, RangeQuery,
};
use crate::parse_duration;
use render::RenderOpts;
use snapshot::{SeriesInput, Snapshot};

/// The series `keyviz top` can show (those with hot keys), in display order.
const TOP_SERIES: [Series; 4] = [
    Series::Writes,
    Series::Reads,
    Series::WriteBytes,
    Series::ReadBytes,
];

/// Output format of `--once`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A plain table (colours only on a terminal without `NO_COLOR`).
    Table,
    /// One JSON document (docs/ADMIN.md, "keyviz top").
    Json,
}

/// Flags of `keyviz top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Admin API of any node: `http://host:port` or `host:port` (the UI's URL works too).
    #[arg(long, env = "KEYVIZ_ADMIN_URL")]
    admin: String,
    /// Operator access key.
    #[arg(long, env = "KEYVIZ_ADMIN_USER")]
    user: Option<String>,
    /// Operator secret (visible to other local users in `ps`: prefer the environment
    /// variable or --password-file).
    #[arg(long, env = "KEYVIZ_ADMIN_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Read the secret from the first line of this file (wins over --password and
    /// KEYVIZ_ADMIN_PASSWORD, which a node's own environment may set).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// `writes`, `reads`, `write_bytes`, `read_bytes`, a comma list of them, or `all`.
    #[arg(long, default_value = "all")]
    series: String,
    /// How far back to count (`30s`, `5m`, `1h`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    window: Duration,
    /// Time between refreshes of the live view (at least 200ms).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    interval: Duration,
    /// Entries per list (ranges and keys).
    #[arg(short = 'k', long = "top", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=MAX_HOT_KEYS_K as u64))]
    k: u64,
    /// Row budget asked of the matrix (finer rows name narrower hot ranges).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1024))]
    rows: u64,
    /// Deadline of one HTTP request (connect, answer and body).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print one snapshot and exit.
    #[arg(long)]
    once: bool,
    /// Output of `--once` (and of the repeated tables when stdout is not a terminal).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Exit 0 even when a node did not answer (the snapshot says so).
    #[arg(long)]
    allow_degraded: bool,
}

/// Everything a refresh needs, shared by the modes.
struct Ctx {
    client: Arc<AdminClient>,
    series: Vec<Series>,
    window: Duration,
    k: usize,
    rows: usize,
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("keyviz top: {msg}");
    ExitCode::from(EXIT_USAGE)
}

fn fail(e: &ClientError) -> ExitCode {
    eprintln!("keyviz top: {e}");
    ExitCode::from(e.exit_code())
}

fn parse_series(text: &str) -> Result<Vec<Series>, String> {
    if text.trim() == "all" {
        return Ok(TOP_SERIES.to_vec());
    }
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        let s = TOP_SERIES
            .into_iter()
            .find(|s| s.as_str() == part)
            .ok_or_else(|| {
                format!(
                    "invalid --series '{}': use writes, reads, write_bytes, read_bytes, a comma list of them, or all",
                    crate::admin_client::sanitize(part, 40)
                )
            })?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

fn credentials(args: &TopArgs) -> Result<Credentials, String> {
    crate::admin_client::resolve_credentials(
        args.user.as_deref(),
        args.password.as_deref(),
        args.password_file.as_deref(),
    )
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One refresh: every series' matrix and hot keys, fetched concurrently.
///
/// # Errors
/// The first failed matrix call, or a failed hot-keys call other than "the node does not
/// serve hot keys" / "disabled" (those become a per-series note).
async fn fetch(ctx: &Ctx) -> Result<Snapshot, ClientError> {
    let now = now_unix_ms();
    let window_ms = u64::try_from(ctx.window.as_millis()).unwrap_or(u64::MAX);
    let range = RangeQuery {
        from_unix_ms: Some(now.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX))),
        ..RangeQuery::default()
    };
    let mut tasks = JoinSet::new();
    for (i, &series) in ctx.series.iter().enumerate() {
        let (client, range, k, rows) = (ctx.client.clone(), range.clone(), ctx.k, ctx.rows);
        tasks.spawn(async move {
            let (m, h) = tokio::join!(
                client.matrix(series, &range, rows),
                client.hot_keys(series, &range, k)
            );
            (i, series, m, h)
        });
    }
    let mut parts = Vec::with_capacity(ctx.series.len());
    while let Some(joined) = tasks.join_next().await {
        let Ok((i, series, m, h)) = joined else {
            // A task can only fail by panicking; report it as a client-side failure.
            return Err(ClientError::Malformed {
                path: "(refresh)".into(),
                detail: "a refresh task failed".into(),
            });
        };
        let matrix = m?;
        let hot_keys = match h {
            Ok(a) => Ok(a),
            Err(e @ (ClientError::NotServed { .. } | ClientError::Disabled(_))) => {
                Err(format!("{e}"))
            }
            Err(e) => return Err(e),
        };
        parts.push((
            i,
            snapshot::series_snapshot(
                SeriesInput {
                    series,
                    matrix,
                    hot_keys,
                },
                ctx.k,
            ),
        ));
    }
    parts.sort_by_key(|(i, _)| *i);
    Ok(snapshot::snapshot(
        ctx.client.base(),
        now,
        window_ms,
        parts.into_iter().map(|(_, s)| s).collect(),
    ))
}

fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Runs `keyviz top`; the exit code is documented in docs/ADMIN.md.
pub(crate) async fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    let url = match AdminUrl::parse(&args.admin) {
        Ok(u) => u,
        Err(e) => return Ok(fail(&e)),
    };
    let creds = match credentials(&args) {
        Ok(c) => c,
        Err(e) => return Ok(usage(e)),
    };
    let series = match parse_series(&args.series) {
        Ok(s) => s,
        Err(e) => return Ok(usage(e)),
    };
    if args.window.is_zero() {
        return Ok(usage("--window must be longer than 0"));
    }
    if args.interval < Duration::from_millis(200) {
        return Ok(usage("--interval must be at least 200ms"));
    }
    if args.timeout.is_zero() {
        return Ok(usage("--timeout must be longer than 0"));
    }
    let ctx = Ctx {
        client: Arc::new(AdminClient::new(url, creds, args.timeout)),
        series,
        window: args.window,
        k: usize::try_from(args.k).unwrap_or(MAX_HOT_KEYS_K),
        rows: usize::try_from(args.rows).unwrap_or(1024),
    };
    if let Err(e) = ctx.client.login().await {
        return Ok(fail(&e));
    }
    let code = if args.once {
        once(&ctx, args.format, args.allow_degraded).await?
    } else if std::io::stdout().is_terminal() {
        live(&ctx, args.interval).await?
    } else {
        batch(&ctx, args.interval, args.format).await?
    };
    ctx.client.logout().await;
    Ok(code)
}

/// Prints one snapshot: JSON pretty-printed for `--once`; for the repeated output one line
/// per snapshot (JSON Lines) or tables separated by a blank line. A closed stdout is an
/// error (never a panic), which `main` turns into a quiet exit.
fn print(snap: &Snapshot, k: usize, format: Format, repeated: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            // Serialise first: a write error then stays an io::Error (a closed pipe is
            // recognised by `main`), which serde_json's own error would hide.
            let mut doc = if repeated {
                serde_json::to_vec(snap)?
            } else {
                serde_json::to_vec_pretty(snap)?
            };
            doc.push(b'\n');
            out.write_all(&doc)?;
        }
        Format::Table => {
            let opts = RenderOpts {
                color: use_color(),
                ..RenderOpts::default()
            };
            out.write_all(render::render(snap, k, &opts).as_bytes())?;
            if repeated {
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn degraded_message(snap: &Snapshot) -> String {
    let names: Vec<&str> = snap
        .nodes
        .unreachable
        .iter()
        .map(|u| u.node.as_str())
        .collect();
    format!(
        "degraded answer: {}/{} nodes answered{}{} (pass --allow-degraded to accept it)",
        snap.nodes.responded,
        snap.nodes.expected,
        if names.is_empty() {
            ""
        } else {
            "; unreachable: "
        },
        names.join(", ")
    )
}

/// `--once`: one snapshot on stdout, then the exit code.
async fn once(ctx: &Ctx, format: Format, allow_degraded: bool) -> anyhow::Result<ExitCode> {
    let snap = match fetch(ctx).await {
        Ok(s) => s,
        Err(e) => return Ok(fail(&e)),
    };
    print(&snap, ctx.k, format, false)?;
    if snap.degraded && !allow_degraded {
        eprintln!("keyviz top: {}", degraded_message(&snap));
        return Ok(ExitCode::from(EXIT_DEGRADED));
    }
    Ok(ExitCode::SUCCESS)
}

/// Errors the refresh loops cannot recover from by retrying: the credentials stopped
/// working (the client already logged in again once).
fn fatal(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Unauthorized { .. } | ClientError::Forbidden { .. }
    )
}

/// Resolves on Ctrl-C, SIGTERM or SIGHUP (the SSH session went away).
async fn quit_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Stdout is not a terminal and no `--once`: a snapshot per interval, like `top -b`.
async fn batch(ctx: &Ctx, interval: Duration, format: Format) -> anyhow::Result<ExitCode> {
    let quit = quit_signal();
    tokio::pin!(quit);
    loop {
        tokio::select! {
            r = fetch(ctx) => match r {
                Ok(s) => {
                    print(&s, ctx.k, format, true)?;
                }
                Err(e) if fatal(&e) => return Ok(fail(&e)),
                Err(e) => eprintln!("keyviz top: {e} (retrying)"),
            },
            () = &mut quit => return Ok(ExitCode::SUCCESS),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut quit => return Ok(ExitCode::SUCCESS),
        }
    }
}

#[cfg(not(unix))]
async fn live(ctx: &Ctx, interval: Duration) -> anyhow::Result<ExitCode> {
    batch(ctx, interval, Format::Table).await
}

/// The full-screen view: redraws after every refresh and on resize; `q` (or Ctrl-C,
/// SIGTERM, SIGHUP) restores the terminal and exits 0; `r` refreshes at once. A failed
/// refresh keeps the last snapshot on screen under a red error line and is retried at the
/// next interval; only credentials that stopped working end the view (exit 4).
#[cfg(unix)]
async fn live(ctx: &Ctx, interval: Duration) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use tokio::signal::unix::{SignalKind, signal};

    enum Wake {
        Quit,
        Refresh,
        Redraw,
        Nothing,
    }

    let mut screen = term::Screen::enter().context("cannot switch the terminal to full screen")?;
    let mut keys = screen.reads_keys().then(term::spawn_key_reader);
    let mut winch = signal(SignalKind::window_change()).context("SIGWINCH handler")?;
    let quit = quit_signal();
    tokio::pin!(quit);
    let mut last: Option<Snapshot> = None;
    let mut error: Option<String> = None;
    let frame = |last: &Option<Snapshot>, error: &Option<String>| -> String {
        let (w, h) = term::Screen::size();
        let opts = RenderOpts {
            width: Some(w),
            height: Some(h),
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            interval: Some(interval),
            error: error.clone(),
            footer: true,
        };
        match last {
            Some(s) => render::render(s, ctx.k, &opts),
            None => format!(
                "keyviz top  {}  loading…\n{}\n",
                ctx.client.base(),
                error
                    .as_deref()
                    .map(|e| format!("refresh failed: {e}"))
                    .unwrap_or_default()
            ),
        }
    };
    screen.draw(&frame(&last, &error))?;
    // What a key, a signal or a resize means, shared by both waits below.
    let on_key = |k: Option<u8>, keys: &mut Option<tokio::sync::mpsc::Receiver<u8>>| match k {
        Some(b'q' | b'Q') => Wake::Quit,
        Some(b'r' | b'R') => Wake::Refresh,
        Some(_) => Wake::Nothing,
        None => {
            // Stdin closed: stop listening (a closed channel is always ready).
            *keys = None;
            Wake::Nothing
        }
    };
    loop {
        let refresh = fetch(ctx);
        tokio::pin!(refresh);
        let result = loop {
            let wake = tokio::select! {
                r = &mut refresh => break r,
                k = async { keys.as_mut()?.recv().await }, if keys.is_some() => on_key(k, &mut keys),
                _ = winch.recv() => Wake::Redraw,
                () = &mut quit => Wake::Quit,
            };
            match wake {
                Wake::Quit => return Ok(ExitCode::SUCCESS),
                Wake::Redraw => screen.draw(&frame(&last, &error))?,
                Wake::Refresh | Wake::Nothing => {}
            }
        };
        match result {
            Ok(s) => {
                last = Some(s);
                error = None;
            }
            Err(e) if fatal(&e) => {
                drop(screen);
                return Ok(fail(&e));
            }
            Err(e) => error = Some(e.to_string()),
        }
        screen.draw(&frame(&last, &error))?;
        let sleep = tokio::time::sleep(interval);
        tokio::pin!(sleep);
        loop {
            let wake = tokio::select! {
                () = &mut sleep => Wake::Refresh,
                k = async { keys.as_mut()?.recv().await }, if keys.is_some() => on_key(k, &mut keys),
                _ = winch.recv() => Wake::Redraw,
                () = &mut quit => Wake::Quit,
            };
            match wake {
                Wake::Quit => return Ok(ExitCode::SUCCESS),
                Wake::Refresh => break,
                Wake::Redraw => screen.draw(&frame(&last, &error))?,
                Wake::Nothing => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_lists_accept_all_and_comma_lists_and_refuse_other_names() {
        assert_eq!(parse_series("all"), Ok(TOP_SERIES.to_vec()));
        assert_eq!(
            parse_series("reads, writes,reads"),
            Ok(vec![Series::Reads, Series::Writes])
        );
        assert!(parse_series("leader_reads").is_err());
        assert!(parse_series("").is_err());
    }
}
