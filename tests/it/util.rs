//! Shared helpers: start real `keyviz node` processes on free 127.0.0.1 ports, talk to them
//! with a tiny RESP client, `redis-cli`/`redis-benchmark` and raw HTTP, and clean up on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Cluster tests run one at a time: on a 2-core machine, several 3-node clusters at once
/// starve each other's Raft timers.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the cluster-test lock for a test that starts nodes without [`Cluster`] (the demo).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

pub const SECRET: &str = "it-cluster-secret-0123456789abcdef0123";
pub const ADMIN_USER: &str = "operator";
pub const ADMIN_PASSWORD: &str = "it-password";

/// Fails the test when redis-tools are missing (ci.sh installs them).
pub fn require_redis_tools() {
    for tool in ["redis-cli", "redis-benchmark"] {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "{tool} not found on PATH: install redis-tools (apt-get install -y redis-tools)"
        );
    }
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// One node's ports and process.
pub struct NodeProc {
    pub id: u64,
    pub resp: u16,
    pub raft: u16,
    pub admin: u16,
    args: Vec<String>,
    nofile: Option<u64>,
    env: &'static [(&'static str, &'static str)],
    child: Option<Child>,
    log: PathBuf,
    /// True between [`NodeProc::freeze`] and [`NodeProc::thaw`].
    frozen: bool,
}

/// A running cluster; kills its nodes and removes its data on drop.
pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    /// The nodes' RESP password, if any.
    pub password: Option<&'static str>,
    _dir: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

/// Options of a test cluster.
pub struct Opts {
    pub nodes: u64,
    pub groups: u64,
    pub step: &'static str,
    pub follower_reads: bool,
    pub split_keys: &'static str,
    /// `--key-buckets`; `None` keeps the node's default.
    pub key_buckets: Option<u32>,
    /// `--requirepass` of every node (the helpers then AUTH with it).
    pub requirepass: Option<&'static str>,
    /// `--keyviz-commands` of every node: `open` by default so tests can split and campaign
    /// without AUTH; tests of the policy itself set `auth`.
    pub keyviz_commands: &'static str,
    /// More `keyviz node` flags for every node.
    pub extra_args: &'static [&'static str],
    /// Run every node under `prlimit --nofile=N:N` (its open-file limit).
    pub nofile: Option<u64>,
    /// More flags for node `id` alone (certificates, per-node ports).
    pub node_args: Option<Box<dyn Fn(u64) -> Vec<String>>>,
    /// More environment variables of every node process (`TOKIO_WORKER_THREADS`, ...); also
    /// on restarts.
    pub env: &'static [(&'static str, &'static str)],
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            nodes: 3,
            groups: 3,
            step: "1s",
            follower_reads: false,
            split_keys: "",
            key_buckets: None,
            requirepass: None,
            keyviz_commands: "open",
            extra_args: &[],
            nofile: None,
            node_args: None,
            env: &[],
        }
    }
}

impl NodeProc {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open node log");
        let mut cmd = match self.nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_keyviz"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_keyviz")),
        };
        let child = cmd
            .args(&self.args)
            .env("KEYVIZ_CLUSTER_SECRET", SECRET)
            .env("KEYVIZ_ADMIN_USER", ADMIN_USER)
            .env("KEYVIZ_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("KEYVIZ_LOG", "warn,openraft=off")
            .envs(self.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn keyviz node");
        self.child = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self) {
        // SIGKILL also ends a stopped process.
        self.frozen = false;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` (`STOP`, `CONT`, ...) to the running process with `kill -SIG`.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("node is running").id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid}");
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn admin_addr(&self) -> String {
        format!("127.0.0.1:{}", self.admin)
    }
}

impl Cluster {
    /// Starts the cluster and waits until every node is ready. Ports come from
    /// [`free_port`] (bound then released), so another process can take one before the node
    /// binds it: a start that fails only on "Address already in use" is retried on new ports.
    pub fn start(opts: Opts) -> Cluster {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match Self::try_start(&opts) {
                Ok(c) => return c,
                Err(log) if attempt < ATTEMPTS => {
                    eprintln!(
                        "cluster start hit a port clash (attempt {attempt}), retrying:\n{log}"
                    );
                }
                Err(log) => panic!("cluster start kept hitting port clashes:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn try_start(opts: &Opts) -> Result<Cluster, String> {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16, u16)> = (0..opts.nodes)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let peers: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (resp, raft, admin))| {
                format!(
                    "{}=127.0.0.1:{raft}/127.0.0.1:{resp}/127.0.0.1:{admin}",
                    i + 1
                )
            })
            .collect();
        let mut nodes = Vec::new();
        for (i, (resp, raft, admin)) in ports.into_iter().enumerate() {
            let id = i as u64 + 1;
            let mut args = vec![
                "node".to_string(),
                format!("--node-id={id}"),
                format!("--resp-addr=127.0.0.1:{resp}"),
                format!("--raft-addr=127.0.0.1:{raft}"),
                format!("--admin-addr=127.0.0.1:{admin}"),
                format!("--peer={}", peers.join(",")),
                format!("--data-dir={}", dir.path().join(format!("n{id}")).display()),
                format!("--groups={}", opts.groups),
                format!("--step={}", opts.step),
                format!("--follower-reads={}", opts.follower_reads),
                "--fsync=false".to_string(),
                "--heartbeat=200ms".to_string(),
                "--election-timeout=800ms".to_string(),
            ];
            if let Some(k) = opts.key_buckets {
                args.push(format!("--key-buckets={k}"));
            }
            if !opts.split_keys.is_empty() {
                args.push(format!("--split-keys={}", opts.split_keys));
            }
            args.push(format!("--keyviz-commands={}", opts.keyviz_commands));
            if let Some(p) = opts.requirepass {
                args.push(format!("--requirepass={p}"));
            }
            args.extend(opts.extra_args.iter().map(|a| a.to_string()));
            if let Some(f) = &opts.node_args {
                args.extend(f(id));
            }
            let log = dir.path().join(format!("n{id}.log"));
            let mut n = NodeProc {
                id,
                resp,
                raft,
                admin,
                args,
                nofile: opts.nofile,
                env: opts.env,
                child: None,
                log,
                frozen: false,
            };
            n.spawn();
            nodes.push(n);
        }
        let c = Cluster {
            nodes,
            password: opts.requirepass,
            _dir: dir,
            _serial: serial,
        };
        for i in 0..c.nodes.len() {
            if let Some(log) = c.port_clash(i, Duration::from_secs(60)) {
                return Err(log);
            }
        }
        c.wait_balanced(opts.groups, Duration::from_secs(10));
        Ok(c)
    }

    /// Waits until node `i` is ready ([`Cluster::wait_node_ready`]); returns its log instead
    /// when it failed to bind a port another process took first.
    fn port_clash(&self, i: usize, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log(i);
            if log.contains("Address already in use") {
                return Some(log);
            }
            let step =
                Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now()));
            if self.node_ready(i, step) {
                return None;
            }
            if Instant::now() >= deadline {
                self.wait_node_ready(i, Duration::ZERO);
                return None;
            }
        }
    }

    /// Whether node `i` becomes ready within `timeout` (no panic).
    fn node_ready(&self, i: usize, timeout: Duration) -> bool {
        let n = &self.nodes[i];
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Reply::Bulk(Some(info))) =
                Resp::connect_auth(n.resp, self.password).and_then(|mut c| c.call(&["INFO"]))
            {
                let info = String::from_utf8_lossy(&info).to_string();
                let groups: Vec<&str> = info.lines().filter(|l| l.starts_with("group_")).collect();
                if !groups.is_empty() && groups.iter().all(|l| !l.contains("leader=none")) {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Best effort: waits until each group is led by the node that campaigns for it after
    /// start-up (`(g - 1) % nodes + 1`), so tests start with settled leaders.
    pub fn wait_balanced(&self, groups: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let n = self.nodes.len() as u64;
        while Instant::now() < deadline {
            if (1..=groups).all(|g| self.leader_of(0, g) == Some((g - 1) % n + 1)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until node `i` answers INFO and knows a leader for every group; panics with its
    /// log after `timeout`.
    pub fn wait_node_ready(&self, i: usize, timeout: Duration) {
        if !self.node_ready(i, timeout) {
            panic!(
                "node {} not ready in {timeout:?}; log:\n{}",
                self.nodes[i].id,
                self.log(i)
            );
        }
    }

    /// The node's stderr so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// `(leader, term)` of every group `1..=groups` as reported by node `i`'s INFO (`None`
    /// where the node did not answer or names no leader).
    pub fn leaders_and_terms(&self, i: usize, groups: u64) -> Vec<Option<(u64, u64)>> {
        let info = match Resp::connect(self.nodes[i].resp).and_then(|mut c| c.call(&["INFO"])) {
            Ok(Reply::Bulk(Some(info))) => String::from_utf8_lossy(&info).to_string(),
            _ => String::new(),
        };
        (1..=groups)
            .map(|g| {
                let prefix = format!("group_{g}:");
                let line = info.lines().find(|l| l.starts_with(&prefix))?;
                let field = |name: &str| {
                    line.split(',')
                        .find_map(|kv| kv.split(':').next_back()?.strip_prefix(name))
                        .and_then(|v| v.parse::<u64>().ok())
                };
                Some((field("leader=")?, field("term=")?))
            })
            .collect()
    }

    /// `(role, leader, term)` of `group` as reported by node `i`'s INFO (`None` when the node
    /// does not answer).
    pub fn group_status(&self, i: usize, group: u64) -> Option<(String, Option<u64>, u64)> {
        let Ok(Reply::Bulk(Some(info))) =
            Resp::connect(self.nodes[i].resp).and_then(|mut c| c.call(&["INFO"]))
        else {
            return None;
        };
        let info = String::from_utf8_lossy(&info).to_string();
        let prefix = format!("group_{group}:");
        let line = info.lines().find(|l| l.starts_with(&prefix))?;
        let field = |name: &str| {
            line[prefix.len()..]
                .split(',')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some((
            field("role")?,
            field("leader")?.parse().ok(),
            field("term")?.parse().ok()?,
        ))
    }

    /// Leader of `group` as reported by node `i`'s INFO.
    pub fn leader_of(&self, i: usize, group: u64) -> Option<u64> {
        let Ok(Reply::Bulk(Some(info))) = Resp::connect_auth(self.nodes[i].resp, self.password)
            .and_then(|mut c| c.call(&["INFO"]))
        else {
            return None;
        };
        let info = String::from_utf8_lossy(&info).to_string();
        let prefix = format!("group_{group}:");
        let line = info.lines().find(|l| l.starts_with(&prefix))?;
        let leader = line.split(',').find_map(|kv| kv.strip_prefix("leader="))?;
        leader.parse().ok()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// A minimal blocking RESP client.
pub struct Resp {
    r: BufReader<TcpStream>,
}

impl Resp {
    pub fn connect(port: u16) -> std::io::Result<Resp> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        Ok(Resp {
            r: BufReader::new(s),
        })
    }

    /// Connects and, with a `password`, sends `AUTH <password>` (which must answer `+OK`).
    pub fn connect_auth(port: u16, password: Option<&str>) -> std::io::Result<Resp> {
        let mut r = Resp::connect(port)?;
        if let Some(p) = password {
            let reply = r.call(&["AUTH", p])?;
            if reply != Reply::Simple("OK".into()) {
                return Err(std::io::Error::other(format!("AUTH refused: {reply:?}")));
            }
        }
        Ok(r)
    }

    /// The socket, to write a large pipeline without building it in memory at once.
    pub fn writer(&mut self) -> &mut TcpStream {
        self.r.get_mut()
    }

    /// [`Resp::read`] with a longer read timeout (for replies that follow large writes).
    pub fn read_slow(&mut self, timeout: Duration) -> std::io::Result<Reply> {
        self.r.get_ref().set_read_timeout(Some(timeout))?;
        let r = self.read();
        self.r
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(15)))?;
        r
    }

    /// [`Resp::call`] with a longer read timeout.
    pub fn call_slow(&mut self, args: &[&str], timeout: Duration) -> std::io::Result<Reply> {
        self.r.get_ref().set_read_timeout(Some(timeout))?;
        let r = self.call(args);
        self.r
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(15)))?;
        r
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.r.get_mut().write_all(bytes)
    }

    pub fn call(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        self.send_raw(&buf)?;
        self.read()
    }

    pub fn read(&mut self) -> std::io::Result<Reply> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        let line = line.trim_end_matches("\r\n");
        let bad = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad line {line:?}"),
            )
        };
        let (tag, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        Ok(match tag {
            "+" => Reply::Simple(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut b = vec![0u8; n as usize + 2];
                    self.r.read_exact(&mut b)?;
                    b.truncate(n as usize);
                    Reply::Bulk(Some(b))
                }
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                let mut v = Vec::new();
                for _ in 0..n.max(0) {
                    v.push(self.read()?);
                }
                Reply::Array(v)
            }
            _ => return Err(bad()),
        })
    }
}

/// Runs redis-cli against `port` and returns its stdout (trimmed).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs redis-benchmark (`--csv`) and returns (exit ok, stdout, stderr).
pub fn redis_benchmark(port: u16, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("redis-benchmark")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .arg("--csv")
        .stdin(Stdio::null())
        .output()
        .expect("run redis-benchmark");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A one-shot HTTP/1.1 request; returns (status, headers, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Logs in as the test operator on `admin`; returns the Cookie header value.
pub fn login(admin: &str) -> String {
    let body = format!("{{\"access_key\":\"{ADMIN_USER}\",\"secret_key\":\"{ADMIN_PASSWORD}\"}}");
    let (status, head, text) = http(
        admin,
        "POST",
        "/admin/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(status, 200, "login failed: {head}\n{text}");
    let cookies: Vec<String> = head
        .lines()
        .filter_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
                .map(|(_, v)| v.trim().to_string())
        })
        .filter_map(|c| c.split(';').next().map(str::to_string))
        .collect();
    cookies.join("; ")
}

/// The fan-out matrix of `series` from node `admin`, as JSON.
pub fn matrix(admin: &str, cookie: &str, series: &str) -> serde_json::Value {
    let (status, head, body) = http(
        admin,
        "GET",
        &format!("/admin/api/v1/keyviz/matrix?series={series}"),
        &[("Cookie", cookie)],
        "",
    );
    assert_eq!(status, 200, "matrix failed: {head}\n{body}");
    serde_json::from_str(&body).expect("matrix JSON")
}

/// Sum of every cell of a matrix.
pub fn matrix_total(m: &serde_json::Value) -> u64 {
    m["rows"].as_array().map_or(0, |rows| {
        rows.iter()
            .flat_map(|r| r["values"].as_array().into_iter().flatten())
            .filter_map(|v| v.as_u64())
            .sum()
    })
}

/// Polls the fan-out matrix until its total equals `want` (columns close at step boundaries);
/// returns the last matrix. Panics with the last total on timeout.
pub fn wait_matrix_total(
    admin: &str,
    cookie: &str,
    series: &str,
    want: u64,
    timeout: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let m = matrix(admin, cookie, series);
        let total = matrix_total(&m);
        if total == want {
            return m;
        }
        assert!(
            total < want,
            "{series} total {total} exceeds the {want} operations sent: {m}"
        );
        if Instant::now() > deadline {
            panic!("{series} total stayed at {total}, want {want}: {m}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Parses redis-benchmark CSV into (test name, requests per second).
pub fn benchmark_rows(csv: &str) -> Vec<(String, f64)> {
    csv.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(',').map(|c| c.trim_matches('"')).collect();
            let rps = cols.get(1)?.parse::<f64>().ok()?;
            Some((cols[0].to_string(), rps))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Fault injection (exactly_once.rs, linearizable.rs, truth.rs): signals, leader lookup and moves,
// RESP clients with short deadlines, unix time, key-filtered matrices.
// ---------------------------------------------------------------------------------------------

impl NodeProc {
    /// Alive and not frozen: it can answer requests.
    pub fn is_serving(&self) -> bool {
        self.child.is_some() && !self.frozen
    }

    /// SIGSTOP: the process keeps its sockets (connects still succeed through the backlog) but
    /// answers nothing until [`NodeProc::thaw`].
    pub fn freeze(&mut self) {
        self.signal("STOP");
        self.frozen = true;
    }

    /// SIGCONT after [`NodeProc::freeze`].
    pub fn thaw(&mut self) {
        self.signal("CONT");
        self.frozen = false;
    }
}

impl Cluster {
    /// The node (index) that itself reports `role=leader` for `group`, asking only serving
    /// nodes; `None` while an election is running. Two nodes may briefly both claim it (the
    /// old leader has not heard of the new term yet): the one with the higher term wins.
    pub fn leader_index(&self, group: u64) -> Option<usize> {
        let prefix = format!("group_{group}:");
        let mut best: Option<(u64, usize)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.is_serving() {
                continue;
            }
            let Ok(Reply::Bulk(Some(info))) = Resp::connect_with(n.resp, Duration::from_secs(3))
                .and_then(|mut c| c.call(&["INFO"]))
            else {
                continue;
            };
            let info = String::from_utf8_lossy(&info).to_string();
            let Some(line) = info.lines().find(|l| l.starts_with(&prefix)) else {
                continue;
            };
            let field = |name: &str| {
                line.split([':', ','])
                    .find_map(|kv| kv.strip_prefix(name))
                    .map(str::to_string)
            };
            if field("role=").as_deref() != Some("leader") {
                continue;
            }
            let term: u64 = field("term=").and_then(|t| t.parse().ok()).unwrap_or(0);
            if best.is_none_or(|(t, _)| term > t) {
                best = Some((term, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Waits until some serving node leads `group`; its index, or `None` at the deadline.
    pub fn wait_leader(&self, group: u64, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader_index(group) {
                return Some(i);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Moves leadership of `group` to node index `target`: sends `KEYVIZ.CAMPAIGN group` to it
    /// and checks who leads, retrying until `timeout`. True only when `target` really leads
    /// afterwards (an OK reply alone proves nothing).
    pub fn move_leader(&self, group: u64, target: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let g = group.to_string();
        while Instant::now() < deadline {
            if self.leader_index(group) == Some(target) {
                return true;
            }
            // A campaign that waits for its outcome may take a while: give it the time left.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            let _ = Resp::connect_with(self.nodes[target].resp, left)
                .and_then(|mut c| c.call(&["KEYVIZ.CAMPAIGN", &g]));
            // An election takes a few heartbeats; look for the outcome before asking again.
            let look = Instant::now() + Duration::from_millis(1500);
            while Instant::now() < look.min(deadline) {
                if self.leader_index(group) == Some(target) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        false
    }

    /// Deposes the leader of `group` the hard way: SIGSTOP it, wait until another node leads
    /// (up to `timeout`), SIGCONT it. Proposals it held in flight resolve only after it wakes
    /// up deposed, which is where a retried write can apply twice. Returns (frozen node index,
    /// new leader index or `None` when nobody took over in time).
    pub fn freeze_leader_until_reelected(
        &mut self,
        group: u64,
        timeout: Duration,
    ) -> (usize, Option<usize>) {
        let old = self
            .wait_leader(group, timeout)
            .unwrap_or_else(|| panic!("group {group} has no leader to freeze"));
        self.nodes[old].freeze();
        let new = self.wait_leader(group, timeout);
        self.nodes[old].thaw();
        (old, new)
    }

    /// Waits until every serving node knows a leader for every group (after a restart).
    pub fn wait_settled(&self, timeout: Duration) {
        for (i, n) in self.nodes.iter().enumerate() {
            if n.is_serving() {
                self.wait_node_ready(i, timeout);
            }
        }
    }
}

impl Resp {
    /// Connects with `timeout` for the connect, every read and every write, so a dead or
    /// frozen node turns into an error instead of a hang.
    pub fn connect_with(port: u16, timeout: Duration) -> std::io::Result<Resp> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        Ok(Resp {
            r: BufReader::new(s),
        })
    }
}

/// Milliseconds since the unix epoch (the clock the nodes stamp columns with).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The fan-out matrix of `series` restricted to rows overlapping `[start, end)` (`end` = None:
/// unbounded), from node `admin`.
pub fn matrix_range(
    admin: &str,
    cookie: &str,
    series: &str,
    start: &[u8],
    end: Option<&[u8]>,
) -> serde_json::Value {
    use base64::Engine as _;
    let enc = |k: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k);
    let mut path = format!(
        "/admin/api/v1/keyviz/matrix?series={series}&rows=4096&key_start={}",
        enc(start)
    );
    if let Some(end) = end {
        path.push_str(&format!("&key_end={}", enc(end)));
    }
    let (status, head, body) = http(admin, "GET", &path, &[("Cookie", cookie)], "");
    assert_eq!(status, 200, "matrix {path} failed: {head}\n{body}");
    serde_json::from_str(&body).expect("matrix JSON")
}

/// Per-column sums of a matrix: `(column start unix ms, sum over rows)`, in column order.
pub fn matrix_columns(m: &serde_json::Value) -> Vec<(i64, u64)> {
    let times: Vec<i64> = m["column_unix_ms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_i64)
        .collect();
    let mut sums = vec![0u64; times.len()];
    for row in m["rows"].as_array().into_iter().flatten() {
        for (j, v) in row["values"].as_array().into_iter().flatten().enumerate() {
            if let Some(slot) = sums.get_mut(j) {
                *slot += v.as_u64().unwrap_or(0);
            }
        }
    }
    times.into_iter().zip(sums).collect()
}

/// A deterministic xorshift64* generator: tests choose nodes, keys and operations from a fixed
/// seed (timing still varies, the choices do not).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// True for error replies that guarantee the command had no effect: refused before anything
/// was proposed (parsing, arity, authentication, client limits) or answered by the state
/// machine without changing state (not an integer, overflow). Every other error (no leader,
/// timeout, forwarding failure, raft error, anything new) may hide a committed write, so
/// callers must treat it as an unknown outcome.
pub fn error_means_no_effect(text: &str) -> bool {
    const NO_EFFECT: [&str; 7] = [
        "ERR wrong number of arguments",
        "ERR unknown command",
        "ERR syntax error",
        "ERR value is not an integer",
        "ERR increment or decrement would overflow",
        "NOAUTH",
        "ERR max number of clients reached",
    ];
    NO_EFFECT.iter().any(|p| text.starts_with(p))
}

/// What became of one command sent by a [`Roamer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The server answered.
    Reply(Reply),
    /// No node accepted a connection: nothing was sent.
    Refused,
    /// Sent, but the connection broke or timed out before the answer: outcome unknown.
    Lost(String),
}

/// A client that talks to one node at a time and connects to a random node after
/// [`Roamer::hop`] or a broken connection. A command is sent at most once: a connection that
/// breaks after sending is reported as [`Sent::Lost`], never retried.
pub struct Roamer {
    ports: Vec<u16>,
    conn: Option<Resp>,
    rng: Rng,
    timeout: Duration,
}

impl Roamer {
    /// A client over `ports` choosing nodes from `seed`; `timeout` bounds connect, each write
    /// and each read.
    pub fn new(ports: Vec<u16>, seed: u64, timeout: Duration) -> Roamer {
        Roamer {
            ports,
            conn: None,
            rng: Rng::new(seed),
            timeout,
        }
    }

    /// Drops the connection; the next command goes to a random node.
    pub fn hop(&mut self) {
        self.conn = None;
    }

    /// The generator (shared so a test's choices follow one seed).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Sends `args` once. Connects first if needed, trying every node once from a random
    /// start (a refused connect sent nothing).
    pub fn call(&mut self, args: &[&str]) -> Sent {
        if self.conn.is_none() {
            let start = self.rng.below(self.ports.len() as u64) as usize;
            for k in 0..self.ports.len() {
                let i = (start + k) % self.ports.len();
                if let Ok(c) = Resp::connect_with(self.ports[i], self.timeout) {
                    self.conn = Some(c);
                    break;
                }
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Sent::Refused;
        };
        match conn.call(args) {
            Ok(r) => Sent::Reply(r),
            Err(e) => {
                self.conn = None;
                Sent::Lost(e.to_string())
            }
        }
    }
}

/// Sets a flag when dropped, so worker threads stop when the test ends early (a panic).
pub struct StopOnDrop(pub std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Waits until `cond()` holds, polling every 20 ms; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// GETs `key` as an integer through any serving node, retrying errors until `timeout`
/// (`None` = missing key).
pub fn read_int(c: &Cluster, key: &str, timeout: Duration) -> Option<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        for n in c.nodes.iter().filter(|n| n.is_serving()) {
            match Resp::connect_with(n.resp, Duration::from_secs(5))
                .and_then(|mut r| r.call(&["GET", key]))
            {
                Ok(Reply::Bulk(None)) => return None,
                Ok(Reply::Bulk(Some(v))) => {
                    let text = String::from_utf8_lossy(&v).to_string();
                    return Some(
                        text.parse()
                            .unwrap_or_else(|_| panic!("{key} holds {text:?}")),
                    );
                }
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "GET {key} failed on every node for {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SETs `key` through any serving node until one acknowledges (commits everything its group's
/// leader had before it: a barrier before the final reads).
pub fn write_barrier(c: &Cluster, key: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        for n in c.nodes.iter().filter(|n| n.is_serving()) {
            if let Ok(Reply::Simple(_)) = Resp::connect_with(n.resp, Duration::from_secs(5))
                .and_then(|mut r| r.call(&["SET", key, "barrier"]))
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "SET {key} failed on every node for {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
