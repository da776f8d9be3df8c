//! `keyviz`: run a KeyViz-enabled multi-Raft KV node (`keyviz node`), a local demo cluster
//! (`keyviz demo`), watch a cluster's hottest ranges and keys (`keyviz top`), or query it
//! from a shell (`keyviz matrix`, `keyviz heatmap`, `keyviz snapshot`).
//!
//! `main` owns the exit code: subcommands return `anyhow::Result`, and an error is printed
//! once with its whole context chain.

mod admin_client;
mod demo;
mod heatmap;
mod matrix_cmd;
mod node;
mod query_args;
mod snapshot_cmd;
mod top;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// KeyViz: a key visualizer for a multi-Raft store.
#[derive(Debug, Parser)]
#[command(name = "keyviz", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one store node (Redis protocol + Raft + KeyViz admin).
    Node(Box<node::NodeArgs>),
    /// Start a local cluster on 127.0.0.1 with a built-in workload and print the UI URL.
    Demo(demo::DemoArgs),
    /// Show the cluster's hottest key ranges and keys, refreshed (or once with --once).
    Top(top::TopArgs),
    /// Print one cluster-wide matrix query as a table, CSV or JSON (with --baseline: the
    /// change of every row against another window).
    Matrix(matrix_cmd::MatrixArgs),
    /// Draw one cluster-wide matrix query in the terminal (keys down, time across).
    Heatmap(heatmap::HeatmapArgs),
    /// Save one cluster-wide query as a self-contained HTML file (heatmap, legend, hottest
    /// ranges and keys, node status, the query) for an incident document.
    Snapshot(snapshot_cmd::SnapshotArgs),
}

/// Parses `500ms`, `2s`, `1m` or a bare number of milliseconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "ms"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration '{text}' (use 500ms, 2s, 1m)"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("invalid duration '{text}' (use 500ms, 2s, 1m)"))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYVIZ_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openraft=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyviz: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Node(args) => node::run(*args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Top(args) => top::run(args).await,
            Command::Matrix(args) => matrix_cmd::run(args).await,
            Command::Heatmap(args) => heatmap::run(args).await,
            Command::Snapshot(args) => snapshot_cmd::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("keyviz: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_bare_millis() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1500"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("2 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
