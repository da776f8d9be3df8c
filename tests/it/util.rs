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
    child: Option<Child>,
    log: PathBuf,
}

/// A running cluster; kills its nodes and removes its data on drop.
pub struct Cluster {
    pub nodes: Vec<NodeProc>,
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
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            nodes: 3,
            groups: 3,
            step: "1s",
            follower_reads: false,
            split_keys: "",
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
        let child = Command::new(env!("CARGO_BIN_EXE_keyviz"))
            .args(&self.args)
            .env("KEYVIZ_CLUSTER_SECRET", SECRET)
            .env("KEYVIZ_ADMIN_USER", ADMIN_USER)
            .env("KEYVIZ_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("KEYVIZ_LOG", "warn,openraft=off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn keyviz node");
        self.child = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
    pub fn start(opts: Opts) -> Cluster {
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
            if !opts.split_keys.is_empty() {
                args.push(format!("--split-keys={}", opts.split_keys));
            }
            let log = dir.path().join(format!("n{id}.log"));
            let mut n = NodeProc {
                id,
                resp,
                raft,
                admin,
                args,
                child: None,
                log,
            };
            n.spawn();
            nodes.push(n);
        }
        let c = Cluster {
            nodes,
            _dir: dir,
            _serial: serial,
        };
        for i in 0..c.nodes.len() {
            c.wait_node_ready(i, Duration::from_secs(60));
        }
        c.wait_balanced(opts.groups, Duration::from_secs(10));
        c
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

    /// Waits until node `i` answers INFO and knows a leader for every group.
    pub fn wait_node_ready(&self, i: usize, timeout: Duration) {
        let n = &self.nodes[i];
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Reply::Bulk(Some(info))) =
                Resp::connect(n.resp).and_then(|mut c| c.call(&["INFO"]))
            {
                let info = String::from_utf8_lossy(&info).to_string();
                let groups: Vec<&str> = info.lines().filter(|l| l.starts_with("group_")).collect();
                if !groups.is_empty() && groups.iter().all(|l| !l.contains("leader=none")) {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "node {} not ready in {timeout:?}; log:\n{}",
                    n.id,
                    self.log(i)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
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

    /// Leader of `group` as reported by node `i`'s INFO.
    pub fn leader_of(&self, i: usize, group: u64) -> Option<u64> {
        let Ok(Reply::Bulk(Some(info))) =
            Resp::connect(self.nodes[i].resp).and_then(|mut c| c.call(&["INFO"]))
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
