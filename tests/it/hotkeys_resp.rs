//! `HOTKEYS` over RESP through real clients (redis-rs's `HotkeysCommands` and redis-cli) on
//! one 3-node cluster: gating, argument errors, the session state machine, and the cluster's
//! hot key named by a node that served none of its traffic.

use std::time::{Duration, Instant};

use redis::{HotkeysCommands, HotkeysOptions, HotkeysResponse};

use crate::util::{
    ADMIN_PASSWORD, ADMIN_USER, Cluster, Opts, Reply, Resp, redis_cli, require_redis_tools,
};

const HOT: &str = "hot:counter";

/// redis-cli as the full-role operator (`--keyviz-commands=auth` gates HOTKEYS).
fn cli(port: u16, args: &[&str]) -> String {
    let mut all = vec![
        "--no-auth-warning",
        "--user",
        ADMIN_USER,
        "--pass",
        ADMIN_PASSWORD,
    ];
    all.extend_from_slice(args);
    redis_cli(port, &all)
}

fn operator(port: u16) -> Resp {
    let mut r = Resp::connect(port).expect("connect");
    assert_eq!(
        r.call(&["AUTH", ADMIN_USER, ADMIN_PASSWORD]).expect("auth"),
        Reply::Simple("OK".into())
    );
    r
}

fn redis_rs(port: u16) -> redis::Connection {
    let url = format!("redis://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{port}/");
    let client = redis::Client::open(url).expect("redis-rs client");
    let con = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .expect("redis-rs connects");
    con.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    con
}

/// The field/value pairs of a raw `HOTKEYS GET` reply (one session, wrapped as Redis does).
fn fields(r: Reply) -> Vec<(String, Reply)> {
    let Reply::Array(outer) = r else {
        panic!("HOTKEYS GET answers an array, got {r:?}")
    };
    let [Reply::Array(flat)] = outer.as_slice() else {
        panic!("HOTKEYS GET wraps one session, got {outer:?}")
    };
    flat.chunks(2)
        .map(|p| match &p[0] {
            Reply::Bulk(Some(n)) => (String::from_utf8_lossy(n).into_owned(), p[1].clone()),
            other => panic!("field name expected, got {other:?}"),
        })
        .collect()
}

fn field<'a>(f: &'a [(String, Reply)], name: &str) -> &'a Reply {
    &f.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("HOTKEYS GET has no {name}: {f:?}"))
        .1
}

/// Sends `args` until the reply is `want` (at most 30 s); returns how many tries failed.
fn until(r: &mut Resp, args: &[&str], want: &Reply) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failed = 0;
    loop {
        let got = r.call(args).expect("the node answers");
        if &got == want {
            return failed;
        }
        assert!(
            matches!(got, Reply::Error(_)) && Instant::now() < deadline,
            "{args:?} answered {got:?}"
        );
        failed += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hotkeys_over_resp_answers_for_the_cluster_with_redis_clients() {
    require_redis_tools();
    let mut c = Cluster::start(Opts {
        groups: 1,
        keyviz_commands: "auth",
        ..Opts::default()
    });
    hotkeys_needs_the_full_role(&c);
    bad_arguments_get_redis_errors(&c);
    redis_cli_runs_a_session(&c);
    let earlier_hot_ops = redis_rs_names_the_hot_key_on_a_node_that_served_none_of_it(&mut c);
    redis_cli_hotkeys_bigkeys_and_memkeys_scan_the_keyspace(&c, earlier_hot_ops);
}

fn hotkeys_needs_the_full_role(c: &Cluster) {
    let p = c.nodes[0].resp;
    let anon = redis_cli(p, &["HOTKEYS", "GET"]);
    assert!(
        anon.starts_with("NOAUTH") && anon.contains("full role"),
        "anonymous HOTKEYS is refused: {anon}"
    );
    assert_eq!(cli(p, &["HOTKEYS", "GET"]), "", "no session yet: nil");
}

fn bad_arguments_get_redis_errors(c: &Cluster) {
    let p = c.nodes[0].resp;
    let start = |extra: &[&str]| {
        let mut a = vec!["HOTKEYS", "START"];
        a.extend_from_slice(extra);
        cli(p, &a)
    };
    assert_eq!(
        start(&["METRICS", "1", "CPU", "COUNT", "0"]),
        "ERR COUNT must be between 1 and 64"
    );
    assert_eq!(
        start(&["METRICS", "1", "CPU", "COUNT", "1000"]),
        "ERR COUNT must be between 1 and 64"
    );
    assert!(
        start(&["METRICS", "1", "MEM"]).starts_with("ERR METRICS unknown metric 'mem'"),
        "unknown metric"
    );
    assert_eq!(start(&["COUNT", "5"]), "ERR METRICS parameter is required");
    assert!(start(&["METRICS", "1", "NET", "SLOTS", "1", "0"]).contains("no hash slots"));
    assert_eq!(
        cli(p, &["HOTKEYS", "STOP", "now"]),
        "ERR wrong number of arguments for 'hotkeys|stop' command"
    );
    assert_eq!(
        cli(p, &["HOTKEYS", "FROB"]),
        "ERR unknown subcommand 'FROB'. Try HOTKEYS HELP."
    );
    // Refused STARTs opened nothing: GET and STOP still have no session.
    assert_eq!(cli(p, &["HOTKEYS", "GET"]), "");
    assert_eq!(cli(p, &["HOTKEYS", "STOP"]), "");
}

fn redis_cli_runs_a_session(c: &Cluster) {
    let p = c.nodes[1].resp;
    assert_eq!(
        cli(
            p,
            &[
                "HOTKEYS", "START", "METRICS", "2", "CPU", "NET", "COUNT", "5"
            ]
        ),
        "OK"
    );
    assert_eq!(
        cli(p, &["HOTKEYS", "START", "METRICS", "1", "NET"]),
        "ERR hotkey tracking session already in progress"
    );
    assert_eq!(
        cli(p, &["HOTKEYS", "RESET"]),
        "ERR hotkey tracking session in progress, stop tracking first"
    );
    let live = cli(p, &["HOTKEYS", "GET"]);
    let lines: Vec<&str> = live.lines().collect();
    let after = |name: &str| {
        let i = lines
            .iter()
            .position(|l| *l == name)
            .unwrap_or_else(|| panic!("{name} missing from HOTKEYS GET:\n{live}"));
        lines.get(i + 1).copied().unwrap_or_default()
    };
    assert_eq!(after("tracking-active"), "1", "{live}");
    assert_eq!(after("sample-ratio"), "1", "{live}");
    assert_eq!(after("keyviz-nodes-expected"), "3", "{live}");
    assert_eq!(after("keyviz-nodes-responded"), "3", "{live}");
    for name in [
        "all-commands-all-slots-us",
        "net-bytes-all-commands-all-slots",
        "collection-start-time-unix-ms",
        "collection-duration-ms",
        "total-net-bytes",
        "by-cpu-time-us",
        "by-net-bytes",
        "keyviz-cpu-unit",
    ] {
        assert!(lines.contains(&name), "{name} missing:\n{live}");
    }
    assert_eq!(cli(p, &["HOTKEYS", "STOP"]), "OK");
    assert_eq!(
        cli(p, &["HOTKEYS", "STOP"]),
        "",
        "nothing left to stop: nil"
    );
    let stopped = cli(p, &["HOTKEYS", "GET"]);
    let lines: Vec<&str> = stopped.lines().collect();
    let i = lines
        .iter()
        .position(|l| *l == "tracking-active")
        .expect("tracking-active");
    assert_eq!(lines[i + 1], "0", "STOP froze the session:\n{stopped}");
    assert_eq!(cli(p, &["HOTKEYS", "RESET"]), "OK");
    assert_eq!(cli(p, &["HOTKEYS", "GET"]), "", "RESET forgot the session");
}

/// Returns how many accesses of the hot key it made (retries included).
fn redis_rs_names_the_hot_key_on_a_node_that_served_none_of_it(c: &mut Cluster) -> i64 {
    // Reads are observed by the group's leader only; the client talks to another node and
    // the question goes to the third one, so that node neither received nor served a read.
    let leader = c
        .wait_leader(1, Duration::from_secs(10))
        .expect("group 1 has a leader");
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (client_node, asked_node) = (others[0], others[1]);
    let mut asked = redis_rs(c.nodes[asked_node].resp);
    let opts = HotkeysOptions::new_with_cpu()
        .and_net()
        .with_count(5)
        .expect("COUNT 5 is valid");
    asked.hotkeys_start(opts).expect("HOTKEYS START");
    assert!(
        asked.hotkeys_start(HotkeysOptions::new_with_net()).is_err(),
        "a second START while one runs is an error"
    );

    // A request refused under load (e.g. a quorum check that timed out) is retried; the
    // refused tries may or may not have been counted, so they widen what the checks accept.
    let mut traffic = Resp::connect(c.nodes[client_node].resp).expect("connect");
    let (mut hot_retries, mut retries) = (0i64, 0i64);
    let ok = Reply::Simple("OK".into());
    let zero = Reply::Bulk(Some(b"0".to_vec()));
    let x = Reply::Bulk(Some(b"x".to_vec()));
    hot_retries += until(&mut traffic, &["SET", HOT, "0"], &ok);
    for i in 0..40 {
        retries += until(&mut traffic, &["SET", &format!("cold:{i}"), "x"], &ok);
    }
    for i in 0..400 {
        hot_retries += until(&mut traffic, &["GET", HOT], &zero);
        if i % 10 == 0 {
            retries += until(&mut traffic, &["GET", &format!("cold:{}", i / 10)], &x);
        }
    }
    retries += hot_retries;

    // The traffic's columns are sealed at the next 1 s step boundary, then merged.
    let deadline = Instant::now() + Duration::from_secs(30);
    let got: HotkeysResponse = loop {
        let r = asked
            .hotkeys_get()
            .expect("HOTKEYS GET parses")
            .expect("a session is running");
        let top = r.by_cpu_time_us.as_ref().and_then(|v| v.first());
        // 41 SETs and 440 GETs, once every column of the traffic is sealed.
        if top.is_some_and(|e| e.key == HOT) && r.all_commands_all_slots_us >= 481 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster's hot key was never named by node {}: {r:?}",
            asked_node + 1
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(got.tracking_active);
    assert_eq!(got.sample_ratio, 1);
    let by_ops = got.by_cpu_time_us.as_ref().expect("CPU list");
    assert!(by_ops.len() <= 5, "COUNT 5 caps the list: {by_ops:?}");
    assert!(
        (481..=481 + retries as u64).contains(&got.all_commands_all_slots_us),
        "every operation counted once in the cluster total ({retries} retried): {}",
        got.all_commands_all_slots_us
    );
    // A quiet row captures every op of a counter's first 32 in a window, then one per block
    // of 64 (escalation, docs/ARCHITECTURE.md "Hot keys"): a cold key that a sampled capture
    // happens to hit is estimated at that capture's weight (64) although it had one or two
    // operations, and the hot key's estimate drops by as much. So "stands out" is by a
    // sampled capture's margin, not by the exact 200x of the traffic: with 400 hot reads in
    // ≈ 6 sampled blocks, it takes four of them on cold keys to break 3x.
    assert!(
        by_ops.iter().skip(1).all(|e| e.value * 3 < by_ops[0].value),
        "the hot key stands out: {by_ops:?}"
    );
    let by_bytes = got.by_net_bytes.as_ref().expect("NET list");
    assert!(
        by_bytes.iter().any(|e| e.key == HOT),
        "the hot key carries bytes too: {by_bytes:?}"
    );
    assert!(got.total_net_bytes.is_some_and(|b| b > 0));
    assert!(got.collection_start_time_unix_ms > 0);

    // redis-cli shows the same list.
    let shown = cli(c.nodes[asked_node].resp, &["HOTKEYS", "GET"]);
    let lines: Vec<&str> = shown.lines().collect();
    let i = lines
        .iter()
        .position(|l| *l == "by-cpu-time-us")
        .unwrap_or_else(|| panic!("by-cpu-time-us missing:\n{shown}"));
    assert_eq!(lines.get(i + 1).copied(), Some(HOT), "{shown}");

    // The bounds hold the hot key's true count: 400 reads and one write.
    let mut raw = operator(c.nodes[asked_node].resp);
    let f = fields(raw.call(&["HOTKEYS", "GET"]).expect("HOTKEYS GET"));
    let Reply::Array(bounds) = field(&f, "keyviz-by-cpu-time-us-bounds") else {
        panic!("bounds are a list")
    };
    let Some(Reply::Array(hot)) = bounds.first() else {
        panic!("the hot key has bounds: {bounds:?}")
    };
    let [Reply::Bulk(Some(key)), Reply::Int(lower), Reply::Int(upper)] = hot.as_slice() else {
        panic!("[key, lower, upper] expected, got {hot:?}")
    };
    assert_eq!(key.as_slice(), HOT.as_bytes());
    assert!(
        *lower <= 401 + hot_retries && 401 <= *upper,
        "the true count 401 (+ up to {hot_retries} retried) is within [{lower}, {upper}]"
    );

    // A peer that does not answer is named, and the rest still answers. A fan-out result
    // may be reused for up to 1 s, so ask until an answer made after the freeze comes back.
    let (name, addr) = (
        format!("node-{}", client_node + 1),
        c.nodes[client_node].admin_addr(),
    );
    let names_it = |n: &Reply| {
        matches!(n, Reply::Bulk(Some(b))
            if String::from_utf8_lossy(b).contains(&name) || String::from_utf8_lossy(b).contains(&addr))
    };
    c.nodes[client_node].freeze();
    let deadline = Instant::now() + Duration::from_secs(30);
    let f = loop {
        let f = fields(
            raw.call_slow(&["HOTKEYS", "GET"], Duration::from_secs(30))
                .expect("HOTKEYS GET with a frozen peer"),
        );
        let Reply::Array(failed) = field(&f, "keyviz-nodes-failed") else {
            panic!("failed nodes are a list")
        };
        if failed.iter().any(names_it) || Instant::now() >= deadline {
            break f;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    c.nodes[client_node].thaw();
    let failed = field(&f, "keyviz-nodes-failed");
    assert!(
        matches!(failed, Reply::Array(v) if v.iter().any(names_it)),
        "{name} ({addr}) is reported as not answering: {failed:?}"
    );
    assert_eq!(field(&f, "keyviz-nodes-responded"), &Reply::Int(2));
    let Reply::Array(listed) = field(&f, "by-cpu-time-us") else {
        panic!("the CPU list is a list")
    };
    assert_eq!(
        listed.first(),
        Some(&Reply::Bulk(Some(HOT.as_bytes().to_vec()))),
        "the hot key is still named without the frozen node (it served no read)"
    );

    assert!(
        asked.hotkeys_stop().expect("STOP"),
        "STOP of a running session"
    );
    assert!(!asked.hotkeys_stop().expect("STOP"), "nothing left to stop");
    let frozen = asked
        .hotkeys_get()
        .expect("GET parses")
        .expect("a stopped session still answers");
    assert!(!frozen.tracking_active);
    asked.hotkeys_reset().expect("RESET");
    assert!(asked.hotkeys_get().expect("GET parses").is_none());
    401 + hot_retries
}

/// `redis-cli --hotkeys` (SCAN + `OBJECT FREQ` of every key), `--bigkeys` (SCAN + `TYPE` +
/// `STRLEN`) and `--memkeys` (SCAN + `TYPE` + `MEMORY USAGE`) run to the end and name the
/// right keys: the hot key of fresh traffic, and a 1 MiB value. `earlier_hot_ops` is how
/// many accesses of the hot key the earlier steps made (still possibly in the window).
fn redis_cli_hotkeys_bigkeys_and_memkeys_scan_the_keyspace(c: &Cluster, earlier_hot_ops: i64) {
    let p = c.nodes[2].resp;
    let mut r = operator(p);
    let big = "b".repeat(1 << 20);
    assert_eq!(
        r.call(&["SET", "big:one", &big]).expect("SET 1 MiB"),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        r.call(&["TYPE", "big:one"]).expect("TYPE"),
        Reply::Simple("string".into())
    );
    assert_eq!(
        r.call(&["TYPE", "missing"]).expect("TYPE"),
        Reply::Simple("none".into())
    );
    assert_eq!(
        r.call(&["OBJECT", "FREQ", "missing"]).expect("OBJECT FREQ"),
        Reply::Bulk(None)
    );
    assert_eq!(
        r.call(&["MEMORY", "USAGE", "big:one"])
            .expect("MEMORY USAGE"),
        Reply::Int((7 + 8 + (1 << 20)) as i64)
    );

    // Fresh traffic (the previous step's may already be more than a minute old on a slow
    // machine): 300 reads of the hot key, a few of cold ones, then wait for a sealed column.
    let (ok_zero, ok_x) = (
        Reply::Bulk(Some(b"0".to_vec())),
        Reply::Bulk(Some(b"x".to_vec())),
    );
    let mut hot_ops = 300i64;
    for i in 0..300 {
        hot_ops += until(&mut r, &["GET", HOT], &ok_zero);
        if i % 30 == 0 {
            until(&mut r, &["GET", &format!("cold:{}", i / 30)], &ok_x);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.call(&["OBJECT", "FREQ", HOT]).expect("OBJECT FREQ") == Reply::Int(0) {
        assert!(
            Instant::now() < deadline,
            "the reads never reached OBJECT FREQ"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let hot = cli(p, &["--hotkeys"]);
    let summary = hot
        .split("-------- summary -------")
        .nth(1)
        .unwrap_or_else(|| panic!("--hotkeys printed no summary:\n{hot}"));
    let first = summary
        .lines()
        .find(|l| l.starts_with("hot key found with counter:"))
        .unwrap_or_else(|| panic!("--hotkeys found no hot key:\n{hot}"));
    assert!(
        first.ends_with(&format!("keyname: \"{HOT}\"")),
        "the hottest key first: {first}\n{hot}"
    );
    let counter: u64 = first
        .trim_start_matches("hot key found with counter:")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a counter: {first}"));
    // A lower bound of the minute's reads + writes of the key: at most every access made in
    // this test (the previous step's 401 and its retries may still be in the window).
    assert!(
        counter > 0 && counter as i64 <= hot_ops + earlier_hot_ops,
        "at most the key's {} accesses: {first}",
        hot_ops + earlier_hot_ops
    );

    let bigkeys = cli(p, &["--bigkeys"]);
    assert!(
        bigkeys.contains("Biggest string found '\"big:one\"' has 1048576 bytes"),
        "--bigkeys names the 1 MiB value:\n{bigkeys}"
    );
    let memkeys = cli(p, &["--memkeys"]);
    assert!(
        memkeys.contains(&format!(
            "Biggest string found '\"big:one\"' has {} bytes",
            7 + 8 + (1 << 20)
        )),
        "--memkeys names the 1 MiB value:\n{memkeys}"
    );
    assert!(!memkeys.contains("failed"), "{memkeys}");
}
