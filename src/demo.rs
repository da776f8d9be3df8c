//! `keyviz demo`: a local cluster of real nodes (child processes of this binary, real TCP on
//! 127.0.0.1), a built-in workload, optional chaos, and a clean shutdown on Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use kvnode::workload::{self, Client, WorkloadConfig, WorkloadStats};
use tokio::sync::watch;

use crate::parse_duration;

/// Flags of `keyviz demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Number of nodes (every Raft group is replicated on all of them).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Number of Raft groups.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
    groups: u64,
    /// Redis protocol port of node 1 (node i uses this + i - 1).
    #[arg(long, default_value_t = 6380)]
    resp_port: u16,
    /// Admin (UI) port of node 1.
    #[arg(long, default_value_t = 8080)]
    admin_port: u16,
    /// Internal (Raft) port of node 1.
    #[arg(long, default_value_t = 7380)]
    raft_port: u16,
    /// KeyViz step: short so the heatmap fills quickly (production default is 60s).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    step: Duration,
    /// Do not run the built-in workload.
    #[arg(long)]
    no_workload: bool,
    /// Now and then transfer a group's leadership or restart (kill -9) a node.
    #[arg(long)]
    chaos: bool,
    /// Time between chaos events.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    chaos_every: Duration,
    /// Serve reads on followers (observed as follower reads).
    #[arg(long)]
    follower_reads: bool,
    /// Keep data here instead of a temporary directory (removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TLS on every listener: a throwaway CA and node certificates, mutual TLS between
    /// nodes, HTTPS admin ports and a RESP TLS port per node.
    #[arg(long)]
    tls: bool,
    /// First RESP TLS port with --tls (node i listens on this + i - 1).
    #[arg(long, default_value_t = 6390)]
    resp_tls_port: u16,
}

struct NodeProc {
    id: u64,
    args: Vec<String>,
    child: Option<Child>,
    resp: SocketAddr,
}

impl NodeProc {
    fn spawn(&mut self, exe: &Path) -> anyhow::Result<()> {
        let child = Command::new(exe)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting node {}", self.id))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

async fn wait_for_resp(addr: SocketAddr, password: &str, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if let Ok(mut c) = Client::connect_auth(addr, Some(password)).await
            && c.call(&[b"SET", b"hot:demo-ready", b"1"])
                .await
                .is_ok_and(|v| v == workload::Value::Ok)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the keyviz binary")?;
    let tmp;
    let data_root = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("keyviz-demo-")
                .tempdir()
                .context("creating a temporary data directory")?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&data_root)
        .with_context(|| format!("creating {}", data_root.display()))?;
    let password = random_hex(12)?;
    let resp_password = random_hex(12)?;
    let requirepass_file = data_root.join("requirepass");
    write_private(&requirepass_file, &resp_password)?;
    let secret_file = data_root.join("cluster-secret");
    write_private(&secret_file, &random_hex(32)?)?;
    let creds_file = data_root.join("operators.toml");
    write_private(
        &creds_file,
        &format!(
            "[[operators]]\naccess_key = \"admin\"\nsecret = \"{password}\"\nrole = \"full\"\n"
        ),
    )?;

    let port = |base: u16, i: u64| -> anyhow::Result<u16> {
        u16::try_from(u64::from(base) + i - 1).context("port out of range")
    };
    let mut peers = Vec::new();
    for i in 1..=args.nodes {
        peers.push(format!(
            "{i}=127.0.0.1:{}/127.0.0.1:{}/127.0.0.1:{}",
            port(args.raft_port, i)?,
            port(args.resp_port, i)?,
            port(args.admin_port, i)?
        ));
    }
    let pki = if args.tls {
        Some(crate::demo_tls::make(&data_root.join("tls"), args.nodes)?)
    } else {
        None
    };
    let split_keys = workload::demo_split_keys(&WorkloadConfig::default()).join(",");
    let mut procs = Vec::new();
    for i in 1..=args.nodes {
        let dir = data_root.join(format!("node-{i}"));
        let mut a = vec![
            "node".to_string(),
            format!("--node-id={i}"),
            format!("--resp-addr=127.0.0.1:{}", port(args.resp_port, i)?),
            format!("--raft-addr=127.0.0.1:{}", port(args.raft_port, i)?),
            format!("--admin-addr=127.0.0.1:{}", port(args.admin_port, i)?),
            format!("--peer={}", peers.join(",")),
            format!("--data-dir={}", dir.display()),
            format!("--groups={}", args.groups),
            format!("--split-keys={split_keys}"),
            format!("--step={}ms", args.step.as_millis()),
            "--key-buckets=4".to_string(),
            format!("--follower-reads={}", args.follower_reads),
            "--fsync=false".to_string(),
            format!("--credentials-file={}", creds_file.display()),
            format!("--cluster-secret-file={}", secret_file.display()),
            format!("--requirepass-file={}", requirepass_file.display()),
        ];
        if let Some(pki) = &pki {
            a.extend([
                format!("--tls-cert={}", pki.cert(i).display()),
                format!("--tls-key={}", pki.key(i).display()),
                format!("--tls-ca={}", pki.ca.display()),
                "--tls-client-auth=peers".to_string(),
                format!("--resp-tls-addr=127.0.0.1:{}", port(args.resp_tls_port, i)?),
            ]);
        }
        let resp: SocketAddr = format!("127.0.0.1:{}", port(args.resp_port, i)?)
            .parse()
            .context("resp address")?;
        procs.push(NodeProc {
            id: i,
            args: a,
            child: None,
            resp,
        });
    }
    for p in &mut procs {
        p.spawn(&exe)?;
    }
    let mut ready = true;
    for p in &procs {
        ready &= wait_for_resp(p.resp, &resp_password, Duration::from_secs(30)).await;
    }
    if !ready {
        for p in &mut procs {
            p.stop(Duration::from_secs(3));
        }
        bail!(
            "the demo cluster did not become ready within 30s (ports in use? see the node errors above)"
        );
    }

    println!(
        "KeyViz demo: {} nodes, {} raft groups, data in {}",
        args.nodes,
        args.groups,
        data_root.display()
    );
    println!(
        "Step {} ms (short so the heatmap fills quickly; `keyviz node` defaults to 60 s).",
        args.step.as_millis()
    );
    let scheme = if pki.is_some() { "https" } else { "http" };
    for p in &procs {
        let tls_port = match &pki {
            Some(_) => format!("  redis TLS 127.0.0.1:{}", port(args.resp_tls_port, p.id)?),
            None => String::new(),
        };
        println!(
            "  node {}: redis {}{tls_port}  admin {scheme}://127.0.0.1:{}/admin",
            p.id,
            p.resp,
            port(args.admin_port, p.id)?
        );
    }
    println!("UI:     {scheme}://127.0.0.1:{}/admin", args.admin_port);
    if let Some(pki) = &pki {
        let ca = pki.ca.display();
        println!(
            "TLS:    throwaway CA {ca}; every admin and internal port is TLS only, nodes authenticate each other with certificates (mutual TLS)"
        );
        println!(
            "        browser: trust {ca} (or accept the warning) and open https://127.0.0.1:{}/admin",
            args.admin_port
        );
        println!(
            "        curl --cacert {ca} https://127.0.0.1:{}/admin/healthz",
            args.admin_port
        );
        println!(
            "        redis-cli --tls --cacert {ca} -p {} -a {resp_password} --no-auth-warning ping",
            args.resp_tls_port
        );
        println!("        (the built-in workload uses the plain RESP ports on loopback)");
    }
    println!("Login:  access key `admin`, secret `{password}`");
    println!(
        "Redis:  password `{resp_password}` (redis-cli -p {} -a {resp_password} --no-auth-warning)",
        args.resp_port
    );
    if args.no_workload {
        println!(
            "Workload: off (--no-workload); try `redis-cli -p {} -a {resp_password} set hello world`",
            args.resp_port
        );
    } else {
        println!(
            "Workload: sequential inserts (seq:*), hot key (hot:counter), zipf reads (user:*), range scan (MGET of 200 user: keys) every 8 s"
        );
    }
    if args.chaos {
        println!(
            "Chaos: every {} s a leadership transfer or a node restart (kill -9)",
            args.chaos_every.as_secs()
        );
    }
    println!("Press Ctrl-C to stop.");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stats = Arc::new(WorkloadStats::default());
    let targets: Vec<SocketAddr> = procs.iter().map(|p| p.resp).collect();
    let workload_task = (!args.no_workload).then(|| {
        tokio::spawn(workload::run(
            targets.clone(),
            WorkloadConfig {
                password: Some(resp_password.clone()),
                ..WorkloadConfig::default()
            },
            stats.clone(),
            stop_rx.clone(),
        ))
    });

    let mut chaos_tick = tokio::time::interval(args.chaos_every);
    chaos_tick.tick().await;
    let mut report_tick = tokio::time::interval(Duration::from_secs(10));
    report_tick.tick().await;
    let mut round = 0u64;
    let shutdown = crate::node::termination();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = report_tick.tick(), if !args.no_workload => {
                println!(
                    "workload: {} ok, {} error replies, {} connection errors",
                    stats.ok.load(Ordering::Relaxed),
                    stats.err_replies.load(Ordering::Relaxed),
                    stats.conn_errors.load(Ordering::Relaxed)
                );
            }
            _ = chaos_tick.tick(), if args.chaos => {
                round += 1;
                let n = procs.len() as u64;
                if round % 2 == 1 || n < 3 {
                    let g = (round / 2) % args.groups + 1;
                    let target = &procs[(round % n) as usize];
                    let outcome = match Client::connect_auth(target.resp, Some(&resp_password)).await {
                        Ok(mut c) => c.call(&[b"KEYVIZ.CAMPAIGN", g.to_string().as_bytes()]).await.map(|v| format!("{v:?}")).unwrap_or_else(|e| e.to_string()),
                        Err(e) => e.to_string(),
                    };
                    println!("chaos: node {} campaigns for group {g} ({outcome})", target.id);
                } else {
                    let idx = ((round / 2) % n) as usize;
                    let p = &mut procs[idx];
                    println!("chaos: kill -9 node {}, restarting in 3 s", p.id);
                    p.kill_hard();
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    p.spawn(&exe)?;
                }
            }
        }
    }
    println!("stopping...");
    let _ = stop_tx.send(true);
    if let Some(t) = workload_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    tokio::task::spawn_blocking(move || {
        for p in &mut procs {
            p.stop(Duration::from_secs(10));
        }
    })
    .await
    .context("stopping the nodes")?;
    println!("demo stopped");
    Ok(ExitCode::SUCCESS)
}
