//! `keyviz matrix`, `keyviz heatmap` and `keyviz snapshot`: the real binary against a real
//! 3-node cluster — the numbers it prints match the traffic sent, every format, the key
//! and time filters, the baseline comparison, the terminal drawing, and clear failures
//! (wrong password, bad flags, nothing listening, a node down) with documented exit codes.
//!
//! The admin API allows 5 logins per client address per minute on each node and every
//! run logs in once, so the runs are spread over the three nodes (see the comments).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::util::{
    ADMIN_PASSWORD, ADMIN_USER, Cluster, Opts, Resp, StopOnDrop, free_port, http, login, unix_ms,
    wait_matrix_total, wait_until,
};

const EXIT_USAGE: i32 = 2;
const EXIT_UNREACHABLE: i32 = 3;
const EXIT_AUTH: i32 = 4;
const EXIT_DEGRADED: i32 = 7;

/// Runs `keyviz <args>` with the operator's credentials in the environment (or the given
/// password), under a hard deadline.
fn run(args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyviz"));
    cmd.args(args)
        .env_remove("KEYVIZ_ADMIN_URL")
        .env("KEYVIZ_ADMIN_USER", ADMIN_USER)
        .env("KEYVIZ_ADMIN_PASSWORD", password.unwrap_or(ADMIN_PASSWORD))
        .env("KEYVIZ_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn keyviz");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait keyviz").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("keyviz {args:?} did not exit within 60s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("keyviz output")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    stdout(o)
}

fn assert_fails(o: &Output, cmd: &str, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "exit code; stderr: {err}");
    assert!(err.contains(needle), "stderr should say {needle:?}: {err}");
    assert!(err.starts_with(&format!("keyviz {cmd}: ")), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

fn b64(v: &serde_json::Value) -> Option<Vec<u8>> {
    v.as_str().map(|s| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("base64")
    })
}

fn set_n(port: u16, key: &str, n: usize) {
    let mut r = Resp::connect(port).expect("connect resp");
    for i in 0..n {
        r.call(&["SET", key, &i.to_string()]).expect("SET");
    }
}

/// The value of `name{series="<series>"}` (or of `name` when `series` is empty) in an
/// exposition text; panics when absent.
fn gauge(text: &str, name: &str, series: &str) -> f64 {
    let prefix = if series.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{series=\"{series}\"}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{prefix}missing:\n{text}"))
}

fn row_total(r: &serde_json::Value) -> u64 {
    r["values"]
        .as_array()
        .map_or(0, |v| v.iter().filter_map(serde_json::Value::as_u64).sum())
}

/// The row of `m` (a matrix JSON) whose range holds `key`.
fn row_of<'a>(m: &'a serde_json::Value, key: &[u8]) -> &'a serde_json::Value {
    m["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| {
            let start = b64(&r["start"]).unwrap_or_default();
            let end = b64(&r["end"]);
            start.as_slice() <= key && end.is_none_or(|e| key < e.as_slice())
        })
        .unwrap_or_else(|| panic!("no row holds {key:?}: {m}"))
}

/// One cluster for every check that needs real nodes.
#[test]
fn matrix_heatmap_and_snapshot_report_the_traffic_sent_and_fail_clearly() {
    let mut c = Cluster::start(Opts::default());
    let (a1, a2, a3) = (
        c.nodes[0].admin_addr(),
        c.nodes[1].admin_addr(),
        c.nodes[2].admin_addr(),
    );
    // Baseline traffic, then the current traffic: the hot key grows 5x.
    let t0 = unix_ms();
    let (hot, base_n, cur_n, colds) = ("hot:ops", 40usize, 200usize, 10usize);
    set_n(c.nodes[0].resp, hot, base_n);
    let cookie = login(&a2); // a2: login 1
    wait_matrix_total(
        &a2,
        &cookie,
        "writes",
        base_n as u64,
        Duration::from_secs(30),
    );
    // Every baseline write is in a closed 1 s column; the current window starts at the
    // next column boundary.
    let t1 = (unix_ms() / 1_000 + 1) * 1_000;
    while unix_ms() < t1 + 20 {
        std::thread::sleep(Duration::from_millis(10));
    }
    set_n(c.nodes[0].resp, hot, cur_n);
    for i in 0..colds {
        set_n(c.nodes[1].resp, &format!("a:cold:{i:02}"), 1);
    }
    let total = (base_n + cur_n + colds) as u64;
    wait_matrix_total(&a2, &cookie, "writes", total, Duration::from_secs(30));

    // a1 run 1: JSON — the whole traffic, the hot key's row the hottest, 3/3 nodes.
    let out = run(
        &["matrix", "--admin", &a1, "-o", "json", "--rows", "64"],
        None,
    );
    let doc = json(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["degraded"], false, "{doc}");
    assert_eq!(doc["nodes"]["responded"], 3, "{doc}");
    assert_eq!(doc["query"]["series"], "writes");
    assert_eq!(doc["query"]["rows"], 64);
    let m = &doc["matrix"];
    let sum: u64 = m["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(row_total)
        .sum();
    assert_eq!(sum, total, "{m}");
    let hot_row = row_of(m, hot.as_bytes());
    assert_eq!(row_total(hot_row), (base_n + cur_n) as u64, "{hot_row}");

    // a1 run 2: CSV — one line per row, the values sum to the traffic, times in RFC 3339.
    let csv = ok(&run(&["matrix", "--admin", &a1, "--format", "csv"], None));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(
        &header[..5],
        ["bucket_id", "start", "end", "label", "total"]
    );
    assert!(header[5].ends_with('Z') && header[5].contains('T'), "{csv}");
    let mut csv_sum = 0;
    for line in lines {
        let fields: Vec<&str> = line.rsplit(',').collect();
        let values: u64 = fields[..header.len() - 5]
            .iter()
            .map(|v| v.parse::<u64>().expect("value"))
            .sum();
        assert_eq!(
            fields[header.len() - 5].parse::<u64>().ok(),
            Some(values),
            "{line}"
        );
        csv_sum += values;
    }
    assert_eq!(csv_sum, total, "{csv}");

    // a1 run 3: table with a key range — only the cold keys are counted.
    let table = ok(&run(
        &[
            "matrix",
            "--admin",
            &a1,
            "--key-start",
            "a:cold:",
            "--key-end",
            "a:cold;",
            "--from",
            "-10m",
            "--to",
            "now",
        ],
        None,
    ));
    assert!(table.starts_with("WRITES  http://"), "{table}");
    assert!(table.contains("3/3 nodes answered"), "{table}");
    assert!(
        table.trim_end().ends_with(&format!("total {colds}")),
        "{table}"
    );
    assert!(!table.contains('\x1b'));

    // a3 run 1: the baseline window (before t1) against the current one (from t2): the hot
    // key's row rose, and the ratio is its rate ratio.
    let out = run(
        &[
            "matrix",
            "--admin",
            &a3,
            "-o",
            "json",
            "--from",
            &t1.to_string(),
            "--baseline",
            &format!("{}..{}", t0 - 60_000, t1),
        ],
        None,
    );
    let doc = json(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cmp = &doc["compare"];
    assert_eq!(cmp["baseline_total"], base_n as u64, "{cmp}");
    assert_eq!(cmp["current_total"], (cur_n + colds) as u64, "{cmp}");
    let rows = doc["matrix"]["rows"].as_array().expect("rows");
    let changes = cmp["rows"].as_array().expect("compare rows");
    assert_eq!(rows.len(), changes.len());
    let i = rows
        .iter()
        .position(|r| std::ptr::eq(r, row_of(&doc["matrix"], hot.as_bytes())))
        .expect("hot row");
    let ch = &changes[i];
    assert_eq!(ch["bucket_id"], rows[i]["bucket_id"]);
    assert_eq!(ch["current"], cur_n as u64, "{ch}");
    let scale = cmp["scale"].as_f64().expect("scale");
    let want_base = base_n as f64 * scale;
    assert!(
        (ch["baseline"].as_f64().expect("baseline") - want_base).abs() < 1e-6,
        "{cmp}"
    );
    assert!(
        (ch["delta"].as_f64().expect("delta") - (cur_n as f64 - want_base)).abs() < 1e-6,
        "{ch}"
    );
    assert!(
        (ch["ratio"].as_f64().expect("ratio") - cur_n as f64 / want_base).abs() < 1e-6,
        "{ch}"
    );
    assert_eq!(doc["query"]["baseline_to_unix_ms"], t1);

    // a3 run 2: the incident snapshot — one HTML file that needs no network, with the
    // heatmap image, legend, hottest ranges and keys, node status and the query.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("incident.html");
    let file_s = file.to_str().expect("utf-8 path");
    let out = run(
        &[
            "snapshot", "--admin", &a3, "--from", "-10m", "-k", "3", "-o", file_s,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrote"), "{}", stderr(&out));
    let html = std::fs::read_to_string(&file).expect("snapshot file");
    check_snapshot(&html, hot, total);

    // a2 runs 2 and 3: the heatmap, plain into a pipe and in truecolor, sized as asked.
    let plain = ok(&run(
        &["heatmap", "--admin", &a2, "--width", "90", "--height", "24"],
        None,
    ));
    assert!(!plain.contains('\x1b'), "plain into a pipe: {plain}");
    let lines: Vec<&str> = plain.lines().collect();
    assert!(lines.len() <= 24, "{plain}");
    assert!(lines.iter().all(|l| l.chars().count() <= 90), "{plain}");
    for needle in [
        "WRITES",
        "3/3 nodes answered",
        "scale (log)",
        " UTC",
        "@",
        "hot:ops",
    ] {
        assert!(plain.contains(needle), "{needle:?} missing:\n{plain}");
    }
    let colored = ok(&run(
        &[
            "heatmap",
            "--admin",
            &a2,
            "--width",
            "90",
            "--height",
            "24",
            "--color",
            "truecolor",
        ],
        None,
    ));
    assert!(colored.contains("\x1b[38;2;"), "truecolor escapes");
    assert!(colored.contains('▀'));

    // a2 run 4: wrong password — exit 4 with the API's reason.
    let out = run(&["matrix", "--admin", &a2], Some("not-the-password"));
    assert_fails(&out, "matrix", EXIT_AUTH, "invalid_credentials");

    // Usage errors never log in.
    let out = run(&["matrix", "--admin", &a2, "--from", "yesterday"], None);
    assert_fails(&out, "matrix", EXIT_USAGE, "invalid time 'yesterday'");
    let out = run(&["matrix", "--admin", &a2, "--baseline", "-1h"], None);
    assert_fails(&out, "matrix", EXIT_USAGE, "use FROM..TO");
    let out = run(
        &[
            "heatmap",
            "--admin",
            &a2,
            "--key-start",
            "b",
            "--key-end",
            "a",
        ],
        None,
    );
    assert_fails(&out, "heatmap", EXIT_USAGE, "--key-end must be greater");

    // Hotspot metrics on a node's /metrics while one key takes nearly all the traffic:
    // the hottest range's share and the group imbalance say so, and for reads the node
    // imbalance.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let resp = c.nodes[0].resp;
    let writer = std::thread::spawn(move || {
        let mut r = Resp::connect(resp).expect("connect resp");
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = r.call(&["SET", "hot:metrics", "1"]);
            let _ = r.call(&["GET", "hot:metrics"]);
        }
    });
    let mut text = String::new();
    wait_until(
        "the hotspot gauges see the hot key",
        Duration::from_secs(40),
        || {
            let (status, _, body) = http(&a1, "GET", "/metrics", &[], "");
            assert_eq!(status, 200, "{body}");
            text = body;
            gauge(&text, "keyviz_hottest_range_share", "writes") > 0.5
                && gauge(&text, "keyviz_hottest_range_share", "reads") > 0.5
        },
    );
    // A real Prometheus scrapes node 1 and evaluates the shipped rules (their `for`
    // shortened to 1s in a copy, so the test does not wait 5 minutes): the hot-range
    // alert fires for writes, with its runbook.
    prometheus_fires_the_hot_range_alert(&a1);
    drop(_stop);
    writer.join().expect("writer");
    assert!(
        gauge(&text, "keyviz_group_load_imbalance_ratio", "writes") > 1.5,
        "{text}"
    );
    // Reads are served by the hot group's leader alone; writes are applied by every
    // replica (each of the 3 nodes holds every group), so they are even across nodes.
    assert!(
        gauge(&text, "keyviz_node_load_imbalance_ratio", "reads") > 1.5,
        "{text}"
    );
    let writes_nodes = gauge(&text, "keyviz_node_load_imbalance_ratio", "writes");
    assert!((1.0..1.2).contains(&writes_nodes), "{text}");
    assert!(
        gauge(&text, "keyviz_hottest_range_hot_seconds", "writes") > 0.0,
        "{text}"
    );
    assert_eq!(
        gauge(&text, "keyviz_hotspot_sustained", "writes"),
        0.0,
        "{text}"
    );
    assert_eq!(
        gauge(&text, "keyviz_hotspot_view_nodes_responded", ""),
        3.0,
        "{text}"
    );
    assert!(!text.contains("hot:metrics"), "no key in a label: {text}");

    // Degraded: node 3 down. a1 run 4: printed, named, exit 7; a2 run 5: accepted.
    c.nodes[2].kill();
    // (`reads`: a query no earlier run made, so no answer from before the kill is reused.)
    let out = run(
        &["matrix", "--admin", &a1, "-o", "json", "-s", "reads"],
        None,
    );
    assert_fails(&out, "matrix", EXIT_DEGRADED, &format!("unreachable: {a3}"));
    assert_eq!(json(&out)["degraded"], true);
    let out = run(
        &[
            "heatmap",
            "--admin",
            &a2,
            "--allow-degraded",
            "--width",
            "80",
            "--height",
            "20",
        ],
        None,
    );
    let text = ok(&out);
    assert!(text.contains("2/3 nodes answered"), "{text}");
    assert!(text.contains("DEGRADED"), "{text}");
}

/// A Prometheus server of its own, killed on drop.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prometheus_fires_the_hot_range_alert(admin: &str) {
    let Ok(bin) = which("prometheus") else {
        panic!("prometheus is not installed: scripts/install-test-deps.sh installs it");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/alerts/keyviz-rules.yml"),
    )
    .expect("rules");
    let fast: String = rules
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("for: ") {
                format!("{}for: 1s", &l[..l.len() - l.trim_start().len()])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("rules.yml"), fast).expect("write rules");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\nscrape_configs:\n  - job_name: keyviz\n    static_configs:\n      - targets: ['{admin}']\n"
        ),
    )
    .expect("write config");
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn prometheus");
    let _prom = Prometheus(child);
    let addr = format!("127.0.0.1:{port}");
    wait_until("prometheus listens", Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    wait_until(
        "KeyVizHotRange fires for writes in a real Prometheus",
        Duration::from_secs(60),
        || {
            let (status, _, body) = http(&addr, "GET", "/api/v1/alerts", &[], "");
            if status != 200 {
                // 503 until the server is ready.
                return false;
            }
            let v: serde_json::Value = serde_json::from_str(&body).expect("alerts JSON");
            v["data"]["alerts"].as_array().is_some_and(|alerts| {
                alerts.iter().any(|a| {
                    a["labels"]["alertname"] == "KeyVizHotRange"
                        && a["labels"]["series"] == "writes"
                        && a["state"] == "firing"
                        && a["annotations"]["runbook"]
                            .as_str()
                            .is_some_and(|r| r.contains("keyviz top"))
                })
            })
        },
    );
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

/// What a snapshot file must hold, checked on its text: no reference to anything outside
/// the file, a decodable PNG heatmap, the legend, the hottest range and key, three nodes
/// that answered, and the query.
fn check_snapshot(html: &str, hot: &str, total: u64) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains("default-src 'none'"),
        "a CSP forbids any fetch"
    );
    for external in ["src=\"http", "href=", "<script", "url(", "@import"] {
        assert!(
            !html.contains(external),
            "{external} in a self-contained file"
        );
    }
    let png_b64 = html
        .split("src=\"data:image/png;base64,")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("inline PNG");
    let png = base64::engine::general_purpose::STANDARD
        .decode(png_b64)
        .expect("PNG base64");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert!(width >= 1 && height >= 1, "{width}x{height}");
    let section = |id: &str| -> String {
        let start = html
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id}"));
        html[start..]
            .split("</table>")
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert!(
        section("hot-keys").contains(hot),
        "hot key listed: {}",
        section("hot-keys")
    );
    assert!(section("ranges").contains(">1<"), "{}", section("ranges"));
    assert!(
        html.contains("id=\"nodes-summary\">3/3 nodes answered"),
        "{html}"
    );
    assert_eq!(section("nodes").matches("class=\"ok\">ok<").count(), 3);
    assert!(html.contains("id=\"legend\""));
    assert!(html.contains("id=\"scale-max\">"));
    assert!(html.contains("id=\"time-axis\""));
    assert!(html.contains("id=\"key-axis\""));
    assert!(html.contains("keyviz snapshot --admin"), "the command line");
    assert!(!html.contains(ADMIN_PASSWORD), "no secret in the file");
    assert!(
        html.contains(&format!("Total {total} writes in the window")),
        "the window total"
    );
}

#[test]
fn matrix_heatmap_and_snapshot_exit_3_when_nothing_listens() {
    let addr = format!("127.0.0.1:{}", free_port());
    for cmd in ["matrix", "heatmap", "snapshot"] {
        let out = run(&[cmd, "--admin", &addr], None);
        assert_fails(
            &out,
            cmd,
            EXIT_UNREACHABLE,
            &format!("cannot reach the admin API at http://{addr}"),
        );
    }
}
