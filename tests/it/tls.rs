//! TLS on every listener, checked with real TLS clients: curl against the HTTPS admin port
//! and the mutual-TLS internal port, `redis-cli --tls` against the RESP TLS port, and the
//! nodes' own peer client (a 3-node cluster whose internal transport is TLS only elects
//! leaders, forwards and fans out). One cluster serves every assertion.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{ADMIN_PASSWORD, ADMIN_USER, Cluster, Opts, SECRET, free_port};

/// A CA and the certificates a test needs, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("key");
        let ca = params.self_signed(&key).expect("self-sign");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca");
        Pki {
            dir,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Writes `<file>.pem` and `<file>-key.pem`: a leaf with common name `cn` and the
    /// identity `keyviz-node-<id>` plus the loopback names.
    fn node(&self, file: &str, id: u64, cn: &str) -> (PathBuf, PathBuf) {
        let names = vec![
            format!("keyviz-node-{id}"),
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ];
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (c, k) = self.paths(file);
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }

    fn paths(&self, file: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join(format!("{file}.pem")),
            self.dir.path().join(format!("{file}-key.pem")),
        )
    }
}

/// curl `-H` arguments of a signed `GET path` from `issuer` to node 1 (the peer signature
/// every internal request carries).
fn signed_get(path: &str, issuer: &str) -> Vec<String> {
    let keys = keyviz_admin::peer::PeerKeys::new(SECRET.as_bytes().to_vec(), None);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    keyviz_admin::peer::signing::sign_request(
        &keys,
        &http::Method::GET,
        path,
        b"",
        issuer,
        "node-1",
        now,
    )
    .expect("sign")
    .headers
    .into_iter()
    .flat_map(|(n, v)| {
        [
            "-H".to_string(),
            format!("{n}: {}", v.to_str().expect("ascii")),
        ]
    })
    .collect()
}

/// Runs curl with a 10 s cap; returns (success, stdout, stderr).
fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl (install it: scripts/install-test-deps.sh)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Runs redis-cli, killed after 15 s; returns (success, stdout + stderr).
fn redis_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new("timeout")
        .args(["15", "redis-cli"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Sends `request` over plain TCP and returns whatever comes back before the server closes
/// (a TLS alert, nothing, or a reset: all fine) within 10 s.
fn plain_exchange(addr: &str, request: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(request);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn tls_cluster_serves_https_resp_tls_and_mutual_tls_between_nodes() {
    crate::util::require_redis_tools();
    let help = redis_cli(&["--help"]).1;
    assert!(
        help.contains("--tls"),
        "redis-cli was built without TLS support:\n{help}"
    );

    let pki = Pki::new("keyviz test CA");
    for id in 1..=3 {
        pki.node(&format!("node-{id}"), id, &format!("keyviz-node-{id}"));
    }
    let tls_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    // A stranger holding the cluster secret and a CA-signed certificate of *node 3*, serving
    // as node 4 (mTLS off, so it starts): node 1 lists it as a static fan-out entry. It
    // proves "node-4" by the identity challenge, but its certificate does not name
    // keyviz-node-4, so node 1 must report it unproven (what a relaying peer looks like).
    let stranger = Stranger::start(&pki);
    let dir = pki.dir.path().to_path_buf();
    let ports = tls_ports.clone();
    let stranger_url = stranger.url.clone();
    let c = Cluster::start(Opts {
        node_args: Some(Box::new(move |id| {
            let d = dir.display();
            let mut args = vec![
                format!("--tls-cert={d}/node-{id}.pem"),
                format!("--tls-key={d}/node-{id}-key.pem"),
                format!("--tls-ca={d}/ca.pem"),
                "--tls-client-auth=peers".to_string(),
                format!("--resp-tls-addr=127.0.0.1:{}", ports[(id - 1) as usize]),
            ];
            if id == 1 {
                args.push(format!("--keyvizFanoutNodes={stranger_url}"));
            }
            args
        })),
        ..Opts::default()
    });
    // Cluster::start returned: every group has a leader, which needs Raft RPCs between the
    // nodes, and the internal port speaks only mutual TLS.
    let ca = pki.ca();
    let ca = path(&ca);
    let admin = format!("https://127.0.0.1:{}", c.nodes[0].admin);

    // The admin port over HTTPS: login sets Secure cookies, every answer carries HSTS.
    let jar = pki.dir.path().join("cookies");
    let body = format!("{{\"access_key\":\"{ADMIN_USER}\",\"secret_key\":\"{ADMIN_PASSWORD}\"}}");
    let (ok, head, err) = curl(&[
        "--cacert",
        ca,
        "--dump-header",
        "-",
        "--output",
        "/dev/null",
        "--cookie-jar",
        path(&jar),
        "-H",
        "Content-Type: application/json",
        "--data",
        &body,
        &format!("{admin}/admin/api/v1/auth/login"),
    ]);
    assert!(ok, "curl login: {err}");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let cookies: Vec<&str> = head
        .lines()
        .filter(|l| l.starts_with("set-cookie:"))
        .collect();
    assert_eq!(cookies.len(), 2, "{head}");
    for cookie in cookies {
        assert!(
            cookie.contains("; secure"),
            "cookie without Secure: {cookie}"
        );
    }
    assert!(
        head.contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );

    // The fan-out reaches both peers over https (membership entries become https://), each
    // answer over a connection whose certificate names the node proven there; the stranger
    // proves node-4 with a certificate naming node 3 and is refused.
    stranger.wait_ready(ca);
    let (ok, out, err) = curl(&[
        "--cacert",
        ca,
        "--cookie",
        path(&jar),
        &format!("{admin}/admin/api/v1/keyviz/matrix?series=writes"),
    ]);
    assert!(ok, "curl matrix: {err}");
    let m: serde_json::Value = serde_json::from_str(&out).expect("matrix json");
    assert_eq!(m["fanout"]["responded"], 3, "{}", m["fanout"]);
    let nodes = m["fanout"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4, "{}", m["fanout"]);
    for n in nodes {
        if n["node"].as_str() == Some(stranger.url.as_str()) {
            assert_eq!(n["ok"], false, "{n}");
            assert_eq!(n["reason"], "peer_identity_unproven", "{n}");
            let error = n["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("names another node") && error.contains("keyviz-node-4"),
                "{n}"
            );
        } else {
            assert_eq!(n["ok"], true, "{n}");
        }
    }
    drop(stranger);

    // Without the CA the server is not trusted; plain HTTP to the TLS port gets no answer.
    let (ok, _, err) = curl(&[&format!("{admin}/admin/healthz")]);
    assert!(!ok, "an untrusted certificate must be refused by curl");
    assert!(err.to_ascii_lowercase().contains("certificate"), "{err}");
    let started = Instant::now();
    let answer = plain_exchange(
        &c.nodes[0].admin_addr(),
        b"GET /admin/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP answered on the TLS port"
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    // RESP over TLS with redis-cli: a write on node 1, read back on node 3 (forwarded over
    // the internal TLS transport to the group leader).
    let p1 = tls_ports[0].to_string();
    let p3 = tls_ports[2].to_string();
    let (ok, out) = redis_cli(&[
        "--tls", "--cacert", ca, "-p", &p1, "SET", "tls:key", "over-tls",
    ]);
    assert!(ok && out.trim() == "OK", "{out}");
    let (ok, out) = redis_cli(&["--tls", "--cacert", ca, "-p", &p3, "GET", "tls:key"]);
    assert!(ok && out.trim() == "over-tls", "{out}");
    // A plain RESP client on the TLS port fails cleanly and fast; the node keeps serving.
    let started = Instant::now();
    let (_, out) = redis_cli(&["-p", &p1, "PING"]);
    assert!(
        !out.contains("PONG"),
        "plain RESP answered on the TLS port: {out}"
    );
    assert!(started.elapsed() < Duration::from_secs(12));
    let (ok, out) = redis_cli(&["--tls", "--cacert", ca, "-p", &p1, "PING"]);
    assert!(ok && out.trim() == "PONG", "{out}");

    // The internal port under mutual TLS, with curl as the peer.
    let internal = format!("https://127.0.0.1:{}/status", c.nodes[0].raft);
    let (n2_cert, n2_key) = pki.paths("node-2");
    let as_node2 = |claim: &str| {
        curl(&[
            "--cacert",
            ca,
            "--cert",
            path(&n2_cert),
            "--key",
            path(&n2_key),
            "-H",
            &format!("x-kvnode-node: {claim}"),
            "--write-out",
            "\n%{http_code}",
            &internal,
        ])
    };
    // Node 2's certificate claiming node 2 passes mutual TLS and reaches the next check, the
    // request signature (curl cannot sign: 401).
    let (ok, out, err) = as_node2("2");
    assert!(
        ok && out.ends_with("\n401"),
        "node 2's certificate as node 2: {out} {err}"
    );
    assert!(out.contains("signature"), "{out}");
    // Signed as node 2 (a secret holder), with node 2's certificate: served. Signed as node 3
    // with node 2's certificate: refused, the certificate and the signature disagree.
    let signed_as = |issuer: &str| {
        let mut args: Vec<String> = [
            "--cacert",
            ca,
            "--cert",
            path(&n2_cert),
            "--key",
            path(&n2_key),
            "-H",
            "x-kvnode-node: 2",
            "--write-out",
            "\n%{http_code}",
        ]
        .iter()
        .map(|a| (*a).to_string())
        .collect();
        args.extend(signed_get("/status", issuer));
        args.push(internal.clone());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&refs)
    };
    let (ok, out, err) = signed_as("node-2");
    assert!(
        ok && out.ends_with("\n200"),
        "signed as node 2: {out} {err}"
    );
    let (ok, out, err) = signed_as("node-3");
    assert!(
        ok && out.ends_with("\n403"),
        "signed as node 3: {out} {err}"
    );
    assert!(out.contains("signed by node-3 but claims node 2"), "{out}");
    // The admin port binds a signed peer request to the client certificate the same way:
    // node 2's certificate with a request signed as node 2 is served, signed as node 3 it
    // is refused, and without a client certificate a signed request is refused too.
    let identity = format!("{admin}/admin/api/v1/keyviz/identity");
    let admin_signed = |issuer: &str, with_cert: bool| {
        let mut args: Vec<String> = ["--cacert", ca, "--write-out", "\n%{http_code}"]
            .iter()
            .map(|a| (*a).to_string())
            .collect();
        if with_cert {
            args.extend(["--cert", path(&n2_cert), "--key", path(&n2_key)].map(str::to_string));
        }
        args.extend(signed_get("/admin/api/v1/keyviz/identity", issuer));
        args.push(identity.clone());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&refs)
    };
    let (ok, out, err) = admin_signed("node-2", true);
    assert!(
        ok && out.ends_with("\n200"),
        "admin, signed as node 2: {out} {err}"
    );
    let (ok, out, err) = admin_signed("node-3", true);
    assert!(
        ok && out.ends_with("\n403"),
        "admin, signed as node 3: {out} {err}"
    );
    assert!(
        out.contains("peer_certificate_mismatch") && out.contains("keyviz-node-3"),
        "{out}"
    );
    let (ok, out, err) = admin_signed("node-2", false);
    assert!(
        ok && out.ends_with("\n403"),
        "admin, no certificate: {out} {err}"
    );
    assert!(out.contains("peer_certificate_required"), "{out}");
    // Operators (unsigned) still reach the admin port without a client certificate.
    let (ok, out, err) = curl(&["--cacert", ca, "--write-out", "\n%{http_code}", &identity]);
    assert!(
        ok && out.ends_with("\n200"),
        "unsigned identity: {out} {err}"
    );

    let (ok, out, err) = as_node2("3");
    assert!(
        ok && out.ends_with("\n403"),
        "node 2's certificate claiming node 3: {out} {err}"
    );
    assert!(out.contains("does not name keyviz-node-3"), "{out}");
    let (ok, out, err) = curl(&["--cacert", ca, "-H", "x-kvnode-node: 2", &internal]);
    assert!(!ok, "no client certificate must fail the handshake: {out}");
    assert!(!err.is_empty());
    let rogue = Pki::new("rogue CA");
    let (rc, rk) = rogue.node("node-3", 3, "keyviz-node-3");
    let (ok, out, _) = curl(&[
        "--cacert",
        ca,
        "--cert",
        path(&rc),
        "--key",
        path(&rk),
        "-H",
        "x-kvnode-node: 3",
        &internal,
    ]);
    assert!(
        !ok,
        "a certificate from another CA must fail the handshake: {out}"
    );

    // A node whose certificate names another node refuses to start under mTLS.
    let data = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_keyviz"))
        .args([
            "node",
            "--node-id=3",
            &format!("--data-dir={}", data.path().display()),
            "--resp-addr=127.0.0.1:0",
            "--raft-addr=127.0.0.1:0",
            &format!("--tls-cert={}", path(&n2_cert)),
            &format!("--tls-key={}", path(&n2_key)),
            &format!("--tls-ca={ca}"),
            "--tls-client-auth=peers",
        ])
        .env("KEYVIZ_CLUSTER_SECRET", SECRET)
        .output()
        .expect("run keyviz node");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must name this node") && err.contains("keyviz-node-3"),
        "{err}"
    );

    // SIGHUP reloads the certificate without a restart.
    let subject = || {
        let (_, _, err) = curl(&[
            "--verbose",
            "--cacert",
            ca,
            "--output",
            "/dev/null",
            &format!("{admin}/admin/healthz"),
        ]);
        err.lines()
            .find(|l| l.contains("subject:"))
            .unwrap_or_default()
            .to_string()
    };
    assert!(subject().contains("CN=keyviz-node-1"), "{}", subject());
    pki.node("node-1", 1, "keyviz-node-1 renewed");
    c.nodes[0].signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !subject().contains("renewed") {
        assert!(
            Instant::now() < deadline,
            "no reload: {}\n{}",
            subject(),
            c.log(0)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Node 1 still talks to its peers with the new pair (it is its client certificate too).
    let (ok, out) = redis_cli(&[
        "--tls",
        "--cacert",
        ca,
        "-p",
        &p1,
        "SET",
        "tls:after",
        "reload",
    ]);
    assert!(ok && out.trim() == "OK", "{out}");
    let (ok, out) = redis_cli(&["--tls", "--cacert", ca, "-p", &p3, "GET", "tls:after"]);
    assert!(ok && out.trim() == "reload", "{out}");
}

/// A single `keyviz node` outside the cluster (node id 4) serving node 3's certificate on
/// its HTTPS admin port, with the cluster secret; killed on drop.
struct Stranger {
    child: std::process::Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Stranger {
    fn start(pki: &Pki) -> Stranger {
        let (cert, key) = pki.node("stranger", 3, "stranger with node 3's name");
        let data = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_keyviz"))
            .args([
                "node".to_string(),
                "--node-id=4".to_string(),
                format!("--data-dir={}", data.path().display()),
                "--resp-addr=127.0.0.1:0".to_string(),
                "--raft-addr=127.0.0.1:0".to_string(),
                format!("--admin-addr=127.0.0.1:{port}"),
                format!("--tls-cert={}", path(&cert)),
                format!("--tls-key={}", path(&key)),
                format!("--tls-ca={}", path(&pki.ca())),
                "--tls-client-auth=off".to_string(),
                "--fsync=false".to_string(),
            ])
            .env("KEYVIZ_CLUSTER_SECRET", SECRET)
            .env("KEYVIZ_ADMIN_USER", ADMIN_USER)
            .env("KEYVIZ_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("KEYVIZ_LOG", "warn,openraft=off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the stranger node");
        Stranger {
            child,
            url: format!("https://127.0.0.1:{port}"),
            _data: data,
        }
    }

    /// Waits (30 s at most) until its admin port answers over HTTPS.
    fn wait_ready(&self, ca: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let health = format!("{}/admin/healthz", self.url);
        while !curl(&["--cacert", ca, "--fail", &health]).0 {
            assert!(Instant::now() < deadline, "the stranger node never served");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A base port such that `base..base + n` are all free on 127.0.0.1 now.
fn free_run(n: u16) -> u16 {
    loop {
        let base = free_port();
        if base > u16::MAX - n {
            continue;
        }
        let held: Vec<_> = (base..base + n)
            .map_while(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return base;
        }
    }
}

#[test]
fn demo_with_tls_prints_curl_and_redis_cli_lines_that_work() {
    use std::io::BufRead;
    crate::util::require_redis_tools();
    let _serial = crate::util::serial();
    let ports: Vec<String> = (0..4).map(|_| free_run(3).to_string()).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyviz"))
        .args([
            "demo",
            "--tls",
            "--no-workload",
            "--resp-port",
            &ports[0],
            "--admin-port",
            &ports[1],
            "--raft-port",
            &ports[2],
            "--resp-tls-port",
            &ports[3],
        ])
        .env("KEYVIZ_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn keyviz demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("Press Ctrl-C")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("demo not ready in 60 s:\n{}", lines.join("\n"));
            }
        }
    }
    let text = lines.join("\n");
    let command = |prefix: &str| -> Vec<String> {
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert!(
        text.contains(&format!("UI:     https://127.0.0.1:{}/admin", ports[1])),
        "{text}"
    );
    let curl_args = command("curl ");
    let refs: Vec<&str> = curl_args.iter().map(String::as_str).collect();
    let (ok, out, err) = curl(&refs);
    assert!(
        ok && out.contains("ok"),
        "printed curl line: {out} {err}\n{text}"
    );
    let cli_args = command("redis-cli ");
    let refs: Vec<&str> = cli_args.iter().map(String::as_str).collect();
    let (ok, out) = redis_cli(&refs);
    assert!(
        ok && out.trim() == "PONG",
        "printed redis-cli line: {out}\n{text}"
    );

    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -INT the demo");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait demo") {
            assert!(status.success(), "demo exit: {status}");
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("demo did not stop within 30 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = reader.join();
}

#[test]
fn client_auth_all_requires_a_ca_certificate_on_the_admin_and_resp_tls_ports() {
    crate::util::require_redis_tools();
    let pki = Pki::new("keyviz test CA");
    let (cert, key) = pki.node("node-1", 1, "keyviz-node-1");
    let tls_port = free_port();
    let (c1, k1) = (cert.clone(), key.clone());
    let ca_path = pki.ca();
    let c = Cluster::start(Opts {
        nodes: 1,
        groups: 1,
        node_args: Some(Box::new(move |_| {
            vec![
                format!("--tls-cert={}", c1.display()),
                format!("--tls-key={}", k1.display()),
                format!("--tls-ca={}", ca_path.display()),
                "--tls-client-auth=all".to_string(),
                format!("--resp-tls-addr=127.0.0.1:{tls_port}"),
            ]
        })),
        ..Opts::default()
    });
    let ca = pki.ca();
    let ca = path(&ca);
    let health = format!("https://127.0.0.1:{}/admin/healthz", c.nodes[0].admin);
    let (ok, _, err) = curl(&["--cacert", ca, &health]);
    assert!(!ok, "no client certificate must fail under `all`");
    assert!(!err.is_empty());
    let (ok, out, err) = curl(&[
        "--cacert",
        ca,
        "--cert",
        path(&cert),
        "--key",
        path(&key),
        &health,
    ]);
    assert!(
        ok && out.contains("ok"),
        "with a CA certificate: {out} {err}"
    );

    let port = tls_port.to_string();
    let (_, out) = redis_cli(&["--tls", "--cacert", ca, "-p", &port, "PING"]);
    assert!(
        !out.contains("PONG"),
        "RESP TLS without a client certificate: {out}"
    );
    let (ok, out) = redis_cli(&[
        "--tls",
        "--cacert",
        ca,
        "--cert",
        path(&cert),
        "--key",
        path(&key),
        "-p",
        &port,
        "PING",
    ]);
    assert!(ok && out.trim() == "PONG", "{out}");
}

#[test]
fn keyviz_top_watches_a_tls_node_with_the_ca_and_refuses_without_it() {
    let pki = Pki::new("keyviz test CA");
    let (cert, key) = pki.node("node-1", 1, "keyviz-node-1");
    let ca_path = pki.ca();
    let c = Cluster::start(Opts {
        nodes: 1,
        groups: 1,
        node_args: Some(Box::new(move |_| {
            vec![
                format!("--tls-cert={}", cert.display()),
                format!("--tls-key={}", key.display()),
                format!("--tls-ca={}", ca_path.display()),
            ]
        })),
        ..Opts::default()
    });
    let ca = pki.ca();
    let url = format!("https://127.0.0.1:{}", c.nodes[0].admin);
    let top = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keyviz"))
            .args(["top", "--admin", &url, "--once", "--format", "json"])
            .args(extra)
            .env("KEYVIZ_ADMIN_USER", ADMIN_USER)
            .env("KEYVIZ_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env_remove("KEYVIZ_TLS_CA")
            .output()
            .expect("run keyviz top")
    };
    let out = top(&["--tls-ca", path(&ca)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("top json");
    assert!(v.is_object(), "{v}");
    let out = top(&[]);
    assert_eq!(out.status.code(), Some(2), "usage error without --tls-ca");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --tls-ca"));
    // A CA the node's certificate does not chain to: refused, not trusted.
    let other = Pki::new("other CA");
    let out = top(&["--tls-ca", path(&other.ca())]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin API at https://"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
