//! The RESP front door under hostile or careless clients: size limits, client limits,
//! deadlines, protocol errors and AUTH, against real `keyviz node` processes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::{
    ADMIN_PASSWORD, ADMIN_USER, Cluster, Opts, Reply, Resp, benchmark_rows, login, redis_benchmark,
    redis_cli, require_redis_tools,
};

/// Reads until the server closes the connection (or resets it); returns what arrived and
/// how long it took. Panics if the connection is still open after `within`.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    s.set_read_timeout(Some(within)).expect("read timeout");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return (got, start.elapsed()),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (got, start.elapsed());
            }
            Err(e) => panic!("connection still open after {within:?} ({e}); got {got:?}"),
        }
    }
}

/// The log without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("connect")
}

fn is_error(r: &Reply, prefix: &str) -> bool {
    matches!(r, Reply::Error(e) if e.starts_with(prefix))
}

#[test]
fn oversized_keys_and_values_get_errors_and_the_cluster_keeps_serving() {
    let c = Cluster::start(Opts::default());
    let p = c.nodes[1].resp;
    let mut r = Resp::connect(p).expect("connect");
    let long_key = "k".repeat(70_000);
    let too_long = "ERR key is too long";
    assert!(is_error(
        &r.call(&["SET", &long_key, "v"]).expect("set"),
        too_long
    ));
    assert!(is_error(
        &r.call(&["GET", &long_key]).expect("get"),
        too_long
    ));
    assert!(is_error(
        &r.call(&["MGET", "a", &long_key]).expect("mget"),
        too_long
    ));
    assert!(is_error(
        &r.call(&["APPEND", &long_key, "x"]).expect("append"),
        too_long
    ));
    assert!(is_error(
        &r.call(&["INCR", &long_key]).expect("incr"),
        too_long
    ));
    assert!(is_error(
        &r.call(&["MSET", "a", "1", &long_key, "2"]).expect("mset"),
        too_long
    ));
    let max_key = "m".repeat(65_535);
    assert_eq!(
        r.call(&["SET", &max_key, "edge"]).expect("max key"),
        Reply::Simple("OK".into())
    );
    let big = "v".repeat(16 * 1024 * 1024 + 1);
    assert!(is_error(
        &r.call(&["SET", "bigvalue", &big]).expect("big value"),
        "ERR string exceeds maximum allowed size"
    ));
    // The same connection, and every node, still serve.
    assert_eq!(
        r.call(&["SET", "after", "ok"]).expect("set"),
        Reply::Simple("OK".into())
    );
    for n in &c.nodes {
        let mut other = Resp::connect(n.resp).expect("connect");
        assert_eq!(
            other.call(&["GET", "after"]).expect("get"),
            Reply::Bulk(Some(b"ok".to_vec()))
        );
        assert_eq!(
            other.call(&["GET", &max_key]).expect("get max key"),
            Reply::Bulk(Some(b"edge".to_vec()))
        );
    }
    for i in 0..c.nodes.len() {
        assert!(
            !c.log(i).contains("panicked"),
            "node {i} panicked:\n{}",
            c.log(i)
        );
    }
}

#[test]
fn malformed_headers_get_a_protocol_error_and_close_the_connection() {
    let c = Cluster::start(Opts {
        nodes: 1,
        groups: 1,
        ..Opts::default()
    });
    let p = c.nodes[0].resp;
    for bad in [
        &b"*-5\r\n"[..],
        b"*1\r\n$-2\r\n",
        b"*x\r\n",
        b"*1\r\n$99999999999999999999\r\n",
    ] {
        let mut s = connect(p);
        s.write_all(bad).expect("send");
        let (got, _) = read_until_closed(&mut s, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("-ERR Protocol error: "),
            "{bad:?} got {text:?}"
        );
    }
    // `*0` and `*-1` are skipped; what follows is answered.
    let mut s = Resp::connect(p).expect("connect");
    s.send_raw(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n")
        .expect("send");
    assert_eq!(s.read().expect("pong"), Reply::Simple("PONG".into()));
}

#[test]
fn maxclients_refuses_the_excess_client_while_raft_and_admin_answer() {
    let c = Cluster::start(Opts {
        extra_args: &["--maxclients=4"],
        ..Opts::default()
    });
    let p = c.nodes[0].resp;
    // The start-up readiness probes may still hold slots for a moment: retry until admitted.
    let admitted = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut r = Resp::connect(p).expect("connect");
            match r.call(&["PING"]) {
                Ok(Reply::Simple(s)) if s == "PONG" => return r,
                other => assert!(Instant::now() < deadline, "not admitted: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut held: Vec<Resp> = (0..4).map(|_| admitted()).collect();
    let mut extra = connect(p);
    let (got, _) = read_until_closed(&mut extra, Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR max number of clients reached\r\n"
    );
    // Raft (writes led by node 1, sent through node 2) and the admin server still work.
    let mut other = Resp::connect(c.nodes[1].resp).expect("connect node 2");
    for k in ["a1", "m1", "z1"] {
        assert_eq!(
            other.call(&["SET", k, "v"]).expect("set"),
            Reply::Simple("OK".into())
        );
    }
    assert!(!login(&c.nodes[0].admin_addr()).is_empty());
    assert_eq!(
        held[0].call(&["GET", "z1"]).expect("get"),
        Reply::Bulk(Some(b"v".to_vec()))
    );
    // A freed slot is reused.
    held.pop();
    admitted();
}

#[test]
fn a_low_open_file_limit_caps_maxclients_and_keeps_the_admin_port_answering() {
    let c = Cluster::start(Opts {
        nodes: 1,
        groups: 1,
        nofile: Some(320),
        ..Opts::default()
    });
    let p = c.nodes[0].resp;
    let log = strip_ansi(&c.log(0));
    let adjusted: usize = log
        .split("adjusted=")
        .nth(1)
        .and_then(|rest| rest.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no maxclients adjustment in the log:\n{log}"));
    assert!(
        adjusted < 320,
        "maxclients {adjusted} must leave descriptors in reserve"
    );
    let admitted = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut r = Resp::connect(p).expect("connect");
            match r.call(&["PING"]) {
                Ok(Reply::Simple(s)) if s == "PONG" => return r,
                other => assert!(Instant::now() < deadline, "not admitted: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let held: Vec<Resp> = (0..adjusted).map(|_| admitted()).collect();
    // More clients than the node has descriptors: each is refused, none starves the node.
    for i in 0..400 {
        let mut extra = connect(p);
        extra
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut got = Vec::new();
        let res = extra.read_to_end(&mut got);
        assert!(
            res.is_ok() && got == b"-ERR max number of clients reached\r\n",
            "extra client {i}: {res:?} {:?}; log:\n{}",
            String::from_utf8_lossy(&got),
            c.log(0)
        );
    }
    assert!(!login(&c.nodes[0].admin_addr()).is_empty());
    drop(held);
    let mut r = admitted();
    assert_eq!(
        r.call(&["SET", "k", "v"]).expect("set"),
        Reply::Simple("OK".into())
    );
}

/// Sends `*3 MSET k <bulk of n>` without the value's last byte: a request that stays
/// incomplete while holding about `n` bytes in the server.
fn send_partial_mset(port: u16, n: usize) -> TcpStream {
    let mut s = connect(port);
    let head = format!("*3\r\n$4\r\nMSET\r\n$1\r\nk\r\n${n}\r\n");
    let mut req = head.into_bytes();
    req.resize(req.len() + n - 1, b'x');
    let _ = s.write_all(&req);
    s
}

#[test]
fn query_buffer_and_total_buffer_caps_close_only_the_offending_client() {
    let c = Cluster::start(Opts {
        nodes: 1,
        groups: 1,
        extra_args: &["--client-query-buffer-limit=1mb", "--maxmemory-clients=2mb"],
        ..Opts::default()
    });
    let p = c.nodes[0].resp;
    // One request larger than the per-client limit.
    let mut s = connect(p);
    let mut req = b"*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$600000\r\n".to_vec();
    req.resize(req.len() + 600_000, b'x');
    req.extend_from_slice(b"\r\n$1\r\nb\r\n$600000\r\n");
    req.resize(req.len() + 599_999, b'y');
    let _ = s.write_all(&req);
    let (got, _) = read_until_closed(&mut s, Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&got).starts_with("-ERR Protocol error: request too large"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // Three clients of 900 kB each cannot all fit 2 MiB: one is closed, the others finish.
    let mut clients: Vec<TcpStream> = (0..3).map(|_| send_partial_mset(p, 900_000)).collect();
    // Nothing is complete yet, so the server reads all three until one is refused.
    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = 'found: loop {
        for (i, s) in clients.iter_mut().enumerate() {
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            let mut line = [0u8; 256];
            match s.read(&mut line) {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Ok(n) => {
                    let text = String::from_utf8_lossy(&line[..n]).into_owned();
                    assert!(
                        n == 0 || text.starts_with("-ERR maxmemory-clients reached"),
                        "unexpected reply {text:?}"
                    );
                    break 'found i;
                }
                Err(_) => break 'found i,
            }
        }
        assert!(Instant::now() < deadline, "no client was refused");
    };
    for (i, mut s) in clients.into_iter().enumerate() {
        if i == refused {
            continue;
        }
        s.write_all(b"x\r\n").expect("finish the request");
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut line = [0u8; 5];
        s.read_exact(&mut line).expect("reply");
        assert_eq!(&line, b"+OK\r\n", "client {i} must finish");
    }
    let mut r = Resp::connect(p).expect("connect");
    assert_eq!(
        r.call(&["STRLEN", "k"]).expect("strlen"),
        Reply::Int(900_000)
    );
}

#[test]
fn half_sent_requests_and_idle_clients_are_closed_after_their_deadlines() {
    let c = Cluster::start(Opts {
        nodes: 1,
        groups: 1,
        extra_args: &[
            "--client-request-timeout=600ms",
            "--timeout=2",
            "--maxclients=100000000",
        ],
        ..Opts::default()
    });
    let p = c.nodes[0].resp;
    assert!(
        c.log(0).contains("maxclients lowered"),
        "log:\n{}",
        c.log(0)
    );
    let mut partial = connect(p);
    partial
        .write_all(b"*2\r\n$3\r\nGET\r\n$5\r\nab")
        .expect("send");
    let (got, took) = read_until_closed(&mut partial, Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR Protocol error: request not completed within 600 ms\r\n"
    );
    assert!(
        took >= Duration::from_millis(500),
        "closed too early: {took:?}"
    );
    // An idle client is served until the idle timeout, then closed without a reply.
    let mut idle = Resp::connect(p).expect("connect");
    assert_eq!(
        idle.call(&["PING"]).expect("ping"),
        Reply::Simple("PONG".into())
    );
    let mut raw = connect(p);
    raw.write_all(b"PING\r\n").expect("ping");
    let (got, took) = read_until_closed(&mut raw, Duration::from_secs(10));
    assert_eq!(String::from_utf8_lossy(&got), "+PONG\r\n");
    assert!(
        took >= Duration::from_millis(1_500),
        "idle client closed after {took:?}"
    );
}

#[test]
fn auth_gates_commands_and_redis_tools_work_with_a_password() {
    require_redis_tools();
    let c = Cluster::start(Opts {
        nodes: 1,
        groups: 2,
        requirepass: Some("s3cret-pw"),
        keyviz_commands: "auth",
        ..Opts::default()
    });
    let p = c.nodes[0].resp;
    let mut r = Resp::connect(p).expect("connect");
    let noauth = Reply::Error("NOAUTH Authentication required.".into());
    assert_eq!(r.call(&["PING"]).expect("ping"), noauth);
    assert_eq!(r.call(&["GET", "k"]).expect("get"), noauth);
    assert_eq!(r.call(&["NOSUCH"]).expect("unknown"), noauth);
    assert_eq!(r.call(&["KEYVIZ.SPLIT", "m"]).expect("split"), noauth);
    assert_eq!(
        r.call(&["AUTH", "wrong"]).expect("auth"),
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    assert_eq!(r.call(&["PING"]).expect("ping"), noauth);
    assert_eq!(
        r.call(&["AUTH", "s3cret-pw"]).expect("auth"),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        r.call(&["PING"]).expect("ping"),
        Reply::Simple("PONG".into())
    );
    assert_eq!(
        r.call(&["CONFIG", "GET", "save"]).expect("config"),
        Reply::Array(vec![])
    );
    assert_eq!(
        r.call(&["CLIENT", "SETNAME", "t"]).expect("client"),
        Reply::Simple("OK".into())
    );
    // The default user of requirepass holds the full role.
    assert!(matches!(
        r.call(&["KEYVIZ.SPLIT", "m-split-1"]).expect("split"),
        Reply::Int(_)
    ));
    let mut named = Resp::connect(p).expect("connect");
    assert_eq!(
        named.call(&["AUTH", "default", "s3cret-pw"]).expect("auth"),
        Reply::Simple("OK".into())
    );
    let mut op = Resp::connect(p).expect("connect");
    assert_eq!(
        op.call(&["AUTH", ADMIN_USER, ADMIN_PASSWORD])
            .expect("operator auth"),
        Reply::Simple("OK".into())
    );
    assert!(matches!(
        op.call(&["KEYVIZ.SPLIT", "t-split-2"]).expect("split"),
        Reply::Int(_)
    ));
    // A pipeline: AUTH applies to what follows it, not to what precedes it.
    let mut pipe = Resp::connect(p).expect("connect");
    pipe.send_raw(b"GET k\r\nAUTH s3cret-pw\r\nSET k v\r\n")
        .expect("send");
    assert_eq!(pipe.read().expect("get"), noauth);
    assert_eq!(pipe.read().expect("auth"), Reply::Simple("OK".into()));
    assert_eq!(pipe.read().expect("set"), Reply::Simple("OK".into()));

    let cli = |args: &[&str]| {
        let mut all = vec!["-a", "s3cret-pw", "--no-auth-warning"];
        all.extend_from_slice(args);
        redis_cli(p, &all)
    };
    assert_eq!(cli(&["SET", "cli", "yes"]), "OK");
    assert_eq!(cli(&["GET", "cli"]), "yes");
    assert_eq!(
        redis_cli(p, &["GET", "cli"]),
        "NOAUTH Authentication required."
    );
    let (ok, out, err) = redis_benchmark(
        p,
        &[
            "-a",
            "s3cret-pw",
            "-t",
            "set,get",
            "-n",
            "2000",
            "-c",
            "10",
            "-P",
            "8",
        ],
    );
    assert!(ok, "redis-benchmark failed: {err}");
    let rows = benchmark_rows(&out);
    assert!(
        rows.iter().any(|(t, rps)| t == "SET" && *rps > 0.0)
            && rows.iter().any(|(t, rps)| t == "GET" && *rps > 0.0),
        "rows: {rows:?}\n{out}\n{err}"
    );
}

#[test]
fn keyviz_commands_without_a_password_need_an_operator_with_the_full_role() {
    let c = Cluster::start(Opts {
        nodes: 1,
        groups: 1,
        keyviz_commands: "auth",
        ..Opts::default()
    });
    let p = c.nodes[0].resp;
    let mut r = Resp::connect(p).expect("connect");
    // Data commands are open, as in Redis without requirepass.
    assert_eq!(
        r.call(&["SET", "k", "v"]).expect("set"),
        Reply::Simple("OK".into())
    );
    for cmd in [&["KEYVIZ.SPLIT", "m"][..], &["KEYVIZ.CAMPAIGN", "1"]] {
        assert!(
            is_error(&r.call(cmd).expect("keyviz"), "NOAUTH"),
            "{cmd:?} must need AUTH"
        );
    }
    assert!(is_error(
        &r.call(&["AUTH", ADMIN_USER, "wrong"]).expect("auth"),
        "WRONGPASS"
    ));
    assert!(is_error(
        &r.call(&["AUTH", "pw-only"]).expect("auth"),
        "ERR AUTH <password> called"
    ));
    assert_eq!(
        r.call(&["AUTH", ADMIN_USER, ADMIN_PASSWORD]).expect("auth"),
        Reply::Simple("OK".into())
    );
    assert!(matches!(
        r.call(&["KEYVIZ.SPLIT", "m-split"]).expect("split"),
        Reply::Int(_)
    ));
    let campaign = r.call(&["KEYVIZ.CAMPAIGN", "1"]).expect("campaign");
    assert!(
        !is_error(&campaign, "NOAUTH") && !is_error(&campaign, "NOPERM"),
        "{campaign:?}"
    );
}
