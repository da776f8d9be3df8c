//! `keyviz top`: the real binary against a real 3-node cluster (hottest range and key,
//! wrong password, rate limit, degraded answers, the full-screen view under tmux), and
//! against addresses and fake servers that fail in every way a network can (refused,
//! silent, malformed, oversized) — always a clear one-line message and a documented exit
//! code, never a panic or a hang.
//!
//! The admin API allows 5 logins per client address per minute on each node, and every
//! `keyviz top` run logs in once: the cluster test spreads its runs over the three nodes
//! (node 1: 4 runs; node 2: the helper's login, the wrong password and the tmux run;
//! node 3: the rate-limit check).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::util::{
    ADMIN_PASSWORD, ADMIN_USER, Cluster, Opts, Resp, free_port, http, login, wait_matrix_total,
    wait_until,
};

/// Exit codes of `keyviz top` (docs/ADMIN.md, "keyviz top").
const EXIT_USAGE: i32 = 2;
const EXIT_UNREACHABLE: i32 = 3;
const EXIT_AUTH: i32 = 4;
const EXIT_RATE_LIMITED: i32 = 5;
const EXIT_SERVER: i32 = 6;
const EXIT_DEGRADED: i32 = 7;

/// Runs `keyviz top` with `args` and the given credentials (none from the environment
/// otherwise), with a hard deadline so a hang fails the test instead of stalling it.
fn top(args: &[&str], user: Option<&str>, password: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyviz"));
    cmd.arg("top")
        .args(args)
        .env_remove("KEYVIZ_ADMIN_USER")
        .env_remove("KEYVIZ_ADMIN_PASSWORD")
        .env_remove("KEYVIZ_ADMIN_URL")
        .env("KEYVIZ_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(u) = user {
        cmd.env("KEYVIZ_ADMIN_USER", u);
    }
    if let Some(p) = password {
        cmd.env("KEYVIZ_ADMIN_PASSWORD", p);
    }
    let mut child = cmd.spawn().expect("spawn keyviz top");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait keyviz top").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("keyviz top {args:?} did not exit within 60s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("keyviz top output")
}

fn operator_top(args: &[&str]) -> Output {
    top(args, Some(ADMIN_USER), Some(ADMIN_PASSWORD))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The failure contract: the expected code and one line on stderr that says `needle`.
fn assert_fails(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "exit code; stderr: {err}");
    assert!(err.contains(needle), "stderr should say {needle:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("keyviz top: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            stderr(o)
        )
    })
}

fn b64(v: &serde_json::Value) -> Option<Vec<u8>> {
    v.as_str().map(|s| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("base64 key")
    })
}

/// Sends `n` SETs of `key` (and one GET each) through node `port`.
fn hammer(port: u16, key: &str, n: usize) {
    let mut r = Resp::connect(port).expect("connect resp");
    for i in 0..n {
        r.call(&["SET", key, &i.to_string()]).expect("SET");
        r.call(&["GET", key]).expect("GET");
    }
}

/// A tmux server of its own (own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }
    fn pane(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .cmd()
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The full-screen view under tmux: it draws the ranges and the node status sized to the
/// pane, and `q` leaves the alternate screen and exits 0.
fn live_view_draws_and_quits_on_q(admin: &str, dir: &std::path::Path) {
    if !Tmux::available() {
        eprintln!(
            "SKIPPED live_view_draws_and_quits_on_q: tmux is not installed (scripts/install-test-deps.sh installs it)"
        );
        return;
    }
    let password_file = dir.join("secret");
    std::fs::write(&password_file, format!("{ADMIN_PASSWORD}\n")).expect("write secret");
    let tmux = Tmux {
        socket: format!("keyviz-it-top-{}", std::process::id()),
    };
    let command = format!(
        "KEYVIZ_LOG=off {} top --admin {admin} --user {ADMIN_USER} --password-file {} --interval 500ms --series writes,reads; echo top-exited-$?; sleep 120",
        env!("CARGO_BIN_EXE_keyviz"),
        password_file.display()
    );
    let ok = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "100",
            "-y",
            "30",
            &command,
        ])
        .status()
        .expect("tmux new-session");
    assert!(ok.success(), "tmux new-session failed");
    let mut screen = String::new();
    wait_until(
        "the live view draws the writes and the node status",
        Duration::from_secs(30),
        || {
            screen = tmux.pane();
            screen.contains("WRITES")
                && screen.contains("3/3 nodes answered")
                && screen.contains("q quit")
        },
    );
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines.len() <= 30, "{screen}");
    assert!(lines.iter().all(|l| l.chars().count() <= 100), "{screen}");
    assert!(screen.contains("READS"), "{screen}");
    let ok = tmux
        .cmd()
        .args(["send-keys", "-t", "top", "q"])
        .status()
        .expect("tmux send-keys");
    assert!(ok.success());
    wait_until("keyviz top exits after q", Duration::from_secs(15), || {
        screen = tmux.pane();
        screen.contains("top-exited-")
    });
    assert!(screen.contains("top-exited-0"), "exit 0 after q: {screen}");
    assert!(
        !screen.contains("q quit"),
        "the alternate screen is gone after exit: {screen}"
    );
}

/// One cluster for every check that needs real nodes.
#[test]
fn top_names_the_hottest_range_and_fails_clearly_on_auth_rate_limit_and_degraded_answers() {
    let mut c = Cluster::start(Opts::default());
    let (a1, a2, a3) = (
        c.nodes[0].admin_addr(),
        c.nodes[1].admin_addr(),
        c.nodes[2].admin_addr(),
    );
    let hot_key = "hot:top-counter";
    let hot_n = 300usize;
    hammer(c.nodes[0].resp, hot_key, hot_n);
    let colds = 20usize;
    for i in 0..colds {
        hammer(c.nodes[1].resp, &format!("cold:{i:03}"), 1);
    }
    let cookie = login(&a2);
    wait_matrix_total(
        &a2,
        &cookie,
        "writes",
        (hot_n + colds) as u64,
        Duration::from_secs(30),
    );

    // --once --format json names the hottest range, with its share and the node status.
    let out = operator_top(&[
        "--admin",
        &a1,
        "--once",
        "--format",
        "json",
        "--series",
        "writes,reads",
        "-k",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let snap = json(&out);
    assert_eq!(snap["version"], 1);
    assert_eq!(snap["degraded"], false, "{snap}");
    assert_eq!(snap["nodes"]["responded"], 3, "{snap}");
    assert_eq!(snap["nodes"]["expected"], 3, "{snap}");
    assert_eq!(snap["admin"], format!("http://{a1}"));
    let writes = &snap["series"][0];
    assert_eq!(writes["series"], "writes");
    assert_eq!(snap["series"][1]["series"], "reads");
    assert_eq!(writes["total"], (hot_n + colds) as u64, "{writes}");
    let top_range = &writes["ranges"][0];
    let start = b64(&top_range["start"]).unwrap_or_default();
    let end = b64(&top_range["end"]);
    assert!(
        start.as_slice() <= hot_key.as_bytes()
            && end.as_deref().is_none_or(|e| hot_key.as_bytes() < e),
        "the hottest range must hold {hot_key}: {top_range}"
    );
    let range_total = top_range["total"].as_u64().expect("total");
    assert!(range_total >= hot_n as u64, "{top_range}");
    let share = top_range["share"].as_f64().expect("share");
    assert!(
        (share - range_total as f64 / (hot_n + colds) as f64).abs() < 1e-9,
        "{top_range}"
    );
    assert!(writes["ranges"].as_array().expect("ranges").len() <= 3);
    // The hottest key, with bounds around the true count, in both series.
    for (i, series) in [(0, "writes"), (1, "reads")] {
        let hot = &snap["series"][i]["hot_keys"];
        let k = &hot["keys"][0];
        assert_eq!(
            b64(&k["key"]).as_deref(),
            Some(hot_key.as_bytes()),
            "{series}: {hot}"
        );
        assert_eq!(k["preview"], hot_key, "{series}: {hot}");
        assert!(k["lower"].as_u64() <= Some(hot_n as u64), "{series}: {k}");
        assert!(k["upper"].as_u64() >= Some(hot_n as u64), "{series}: {k}");
        assert!(
            k["share"].as_f64().is_some_and(|s| s > 0.5),
            "{series}: {k}"
        );
        assert!(hot["keys"].as_array().expect("keys").len() <= 3, "{hot}");
        assert_eq!(hot["mode"], "raw", "{hot}");
    }

    // --once --format table: the same data as a plain table (no colour into a pipe).
    let out = operator_top(&["--admin", &a1, "--once", "--series", "writes", "-k", "3"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!table.contains('\x1b'), "no escapes into a pipe: {table}");
    let label = top_range["label"].as_str().expect("label");
    for needle in [
        "WRITES",
        "Hottest key ranges",
        "Hottest keys",
        "3/3 nodes answered",
        label,
        hot_key,
    ] {
        assert!(table.contains(needle), "{needle:?} missing:\n{table}");
    }

    // Wrong password: exit 4, the API's reason.
    let out = top(
        &["--admin", &a2, "--once"],
        Some(ADMIN_USER),
        Some("not-the-password"),
    );
    assert_fails(&out, EXIT_AUTH, "invalid_credentials");

    // The full-screen view under tmux (node 2's third login).
    let dir = tempfile::tempdir().expect("tempdir");
    live_view_draws_and_quits_on_q(&a2, dir.path());

    // Rate limit: node 3's five logins a minute used up, the sixth is refused with 429.
    for _ in 0..5 {
        let body = r#"{"access_key":"nobody","secret_key":"wrong"}"#;
        let (status, _, _) = http(
            &a3,
            "POST",
            "/admin/api/v1/auth/login",
            &[("Content-Type", "application/json")],
            body,
        );
        assert!(status == 401 || status == 429, "login status {status}");
    }
    let out = operator_top(&["--admin", &a3, "--once"]);
    assert_fails(&out, EXIT_RATE_LIMITED, "rate limited");

    // Degraded: node 3 down. Its name is given, the snapshot is still printed, and the
    // exit code is 7 unless --allow-degraded.
    c.nodes[2].kill();
    let out = operator_top(&[
        "--admin", &a1, "--once", "--format", "json", "--series", "reads",
    ]);
    assert_fails(&out, EXIT_DEGRADED, &format!("unreachable: {a3}"));
    assert!(
        stderr(&out).contains("2/3 nodes answered"),
        "{}",
        stderr(&out)
    );
    assert_eq!(json(&out)["degraded"], true);
    let out = operator_top(&[
        "--admin",
        &a1,
        "--once",
        "--format",
        "json",
        "--series",
        "reads",
        "--allow-degraded",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let snap = json(&out);
    assert_eq!(snap["degraded"], true);
    assert_eq!(snap["nodes"]["responded"], 2, "{snap}");
    let unreachable = snap["nodes"]["unreachable"]
        .as_array()
        .expect("unreachable");
    assert_eq!(unreachable.len(), 1, "{snap}");
    assert_eq!(unreachable[0]["node"], a3.as_str(), "{snap}");
    assert!(
        unreachable[0]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
}

#[test]
fn top_exits_3_with_a_clear_message_when_nothing_listens() {
    let port = free_port();
    let out = operator_top(&["--admin", &format!("127.0.0.1:{port}"), "--once"]);
    assert_fails(
        &out,
        EXIT_UNREACHABLE,
        &format!("cannot reach the admin API at http://127.0.0.1:{port}"),
    );
}

#[test]
fn top_refuses_bad_urls_and_missing_credentials_with_usage_errors() {
    let out = operator_top(&["--admin", "https://127.0.0.1:1", "--once"]);
    assert_fails(&out, EXIT_USAGE, "needs --tls-ca");
    let out = operator_top(&["--admin", "ftp://127.0.0.1:1", "--once"]);
    assert_fails(&out, EXIT_USAGE, "the scheme must be http or https");
    let out = operator_top(&["--admin", "http://exa mple:1", "--once"]);
    assert_fails(&out, EXIT_USAGE, "invalid admin URL");
    let out = top(
        &["--admin", "127.0.0.1:1", "--once"],
        Some(ADMIN_USER),
        None,
    );
    assert_fails(&out, EXIT_USAGE, "no secret");
    let out = top(&["--admin", "127.0.0.1:1", "--once"], None, Some("x"));
    assert_fails(&out, EXIT_USAGE, "no access key");
    let out = operator_top(&[
        "--admin",
        "127.0.0.1:1",
        "--once",
        "--series",
        "follower_reads",
    ]);
    assert_fails(&out, EXIT_USAGE, "invalid --series");
}

/// What the fake admin server answers on the KeyViz endpoints.
#[derive(Clone, Copy)]
enum Fake {
    /// Accepts connections and never answers.
    Silent,
    /// Matrix: JSON with a terminal escape in a broken document.
    Malformed,
    /// Matrix: a declared body far beyond the cap.
    Oversized,
    /// Matrix: an endless body without a length, streamed until the client hangs up.
    Endless,
    /// Hot keys: 500 with an HTML page; the matrix is fine.
    HotKeys500,
    /// The first session is refused (401) as if it expired; later logins get a session
    /// that works. Counts logins in the given counter.
    ExpiredOnce(&'static AtomicUsize),
}

/// A fake admin API on a free port; serves until the test process ends (each connection
/// on a thread of its own, all bounded by the client's behaviour under test).
fn fake_admin(kind: Fake) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake admin");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_fake(stream, kind));
        }
    });
    addr
}

fn serve_fake(stream: TcpStream, kind: Fake) {
    if let Fake::Silent = kind {
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut content_length = 0usize;
    let mut cookie = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("cookie")
        {
            cookie = v.trim().to_string();
        }
    }
    let mut body = vec![0u8; content_length.min(1 << 16)];
    let _ = reader.read_exact(&mut body);
    let mut s = reader.into_inner();
    let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
    let respond = |s: &mut TcpStream, status: &str, extra: &str, body: &str| {
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        );
    };
    let empty_matrix =
        r#"{"column_unix_ms":[],"rows":[],"series":"writes","generated_at":"","step_ms":1000}"#;
    if let Fake::ExpiredOnce(logins) = kind {
        if path.starts_with("/admin/api/v1/auth/login") {
            let n = logins.fetch_add(1, Ordering::SeqCst) + 1;
            respond(
                &mut s,
                "200 OK",
                &format!("Set-Cookie: admin_session=s{n}; Path=/admin; HttpOnly\r\n"),
                r#"{"role":"full","expires_at":"2099-01-01T00:00:00Z"}"#,
            );
        } else if cookie.contains("admin_session=s1") {
            respond(
                &mut s,
                "401 Unauthorized",
                "",
                r#"{"error":"unauthenticated","message":"session expired"}"#,
            );
        } else if path.starts_with("/admin/api/v1/keyviz/matrix") {
            respond(&mut s, "200 OK", "", empty_matrix);
        } else {
            respond(
                &mut s,
                "404 Not Found",
                "",
                r#"{"error":"unknown_endpoint","message":"x"}"#,
            );
        }
        return;
    }
    if path.starts_with("/admin/api/v1/auth/login") {
        respond(
            &mut s,
            "200 OK",
            "Set-Cookie: admin_session=fake; Path=/admin; HttpOnly\r\nSet-Cookie: admin_csrf=c; Path=/admin\r\n",
            r#"{"role":"full","expires_at":"2099-01-01T00:00:00Z"}"#,
        );
    } else if path.starts_with("/admin/api/v1/keyviz/matrix") {
        match kind {
            Fake::Malformed => respond(
                &mut s,
                "200 OK",
                "",
                "{\"rows\": [{\"bucket_id\": \"\x1b]0;pwned\x07\", \"values\": \"x\"",
            ),
            Fake::Oversized => {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
                    1u64 << 40
                );
            }
            Fake::Endless => {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                let chunk = vec![b' '; 1 << 20];
                // 200 MiB at most: far past the client's cap, bounded if it never hangs up.
                for _ in 0..200 {
                    if write!(s, "{:x}\r\n", chunk.len()).is_err()
                        || s.write_all(&chunk).is_err()
                        || s.write_all(b"\r\n").is_err()
                    {
                        return;
                    }
                }
            }
            _ => respond(&mut s, "200 OK", "", empty_matrix),
        }
    } else if path.starts_with("/admin/api/v1/keyviz/hotkeys") {
        respond(
            &mut s,
            "500 Internal Server Error",
            "",
            "<html>\x1b[2J boom</html>",
        );
    } else if path.starts_with("/admin/api/v1/auth/logout") {
        respond(&mut s, "204 No Content", "", "");
    } else {
        respond(
            &mut s,
            "404 Not Found",
            "",
            r#"{"error":"not_found","message":"x"}"#,
        );
    }
}

#[test]
fn top_survives_hostile_and_broken_servers_with_clear_exit_codes() {
    let addr = fake_admin(Fake::Silent);
    let started = Instant::now();
    let out = operator_top(&["--admin", &addr, "--once", "--timeout", "1s"]);
    assert_fails(
        &out,
        EXIT_UNREACHABLE,
        "did not answer POST /admin/api/v1/auth/login within 1s",
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    let addr = fake_admin(Fake::Malformed);
    let out = operator_top(&["--admin", &addr, "--once", "--series", "writes"]);
    assert_fails(
        &out,
        EXIT_SERVER,
        "malformed answer to /admin/api/v1/keyviz/matrix",
    );
    assert!(
        !stderr(&out).contains('\x1b'),
        "server text is sanitised: {:?}",
        stderr(&out)
    );

    let addr = fake_admin(Fake::Oversized);
    let out = operator_top(&["--admin", &addr, "--once", "--series", "writes"]);
    assert_fails(&out, EXIT_SERVER, "exceeds the 67108864-byte cap");

    let addr = fake_admin(Fake::Endless);
    let out = operator_top(&["--admin", &addr, "--once", "--series", "writes"]);
    assert_fails(&out, EXIT_SERVER, "exceeds the 67108864-byte cap");

    let addr = fake_admin(Fake::HotKeys500);
    let out = operator_top(&["--admin", &addr, "--once", "--series", "writes"]);
    assert_fails(&out, EXIT_SERVER, "answered 500");
    assert!(!stderr(&out).contains('\x1b'), "{:?}", stderr(&out));

    static LOGINS: AtomicUsize = AtomicUsize::new(0);
    let addr = fake_admin(Fake::ExpiredOnce(&LOGINS));
    let out = operator_top(&[
        "--admin", &addr, "--once", "--format", "json", "--series", "writes",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "an expired session is renewed: {}",
        stderr(&out)
    );
    assert_eq!(
        LOGINS.load(Ordering::SeqCst),
        2,
        "the matrix and hot-keys calls that both saw the 401 log in again once"
    );
    let snap = json(&out);
    assert!(
        snap["series"][0]["hot_keys_error"]
            .as_str()
            .is_some_and(|e| e.contains("does not serve")),
        "{snap}"
    );
}
