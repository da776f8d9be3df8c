//! Redis protocol behaviour through real clients.

use std::time::Duration;

use crate::util::{
    Cluster, Opts, Reply, Resp, benchmark_rows, redis_benchmark, redis_cli, require_redis_tools,
};

#[test]
fn redis_cli_round_trips_every_supported_command() {
    require_redis_tools();
    let c = Cluster::start(Opts::default());
    let p = c.nodes[1].resp; // a follower for most groups: writes are forwarded
    let cli = |args: &[&str]| redis_cli(p, args);
    assert_eq!(cli(&["PING"]), "PONG");
    assert_eq!(cli(&["PING", "hi"]), "hi");
    assert_eq!(cli(&["ECHO", "hello world"]), "hello world");
    assert_eq!(cli(&["SET", "alpha", "1"]), "OK");
    assert_eq!(cli(&["GET", "alpha"]), "1");
    assert_eq!(cli(&["GET", "missing"]), "");
    assert_eq!(cli(&["SET", "alpha", "2", "NX"]), "");
    assert_eq!(cli(&["GET", "alpha"]), "1");
    assert_eq!(cli(&["SET", "beta", "x", "XX"]), "");
    assert_eq!(cli(&["EXISTS", "beta"]), "0");
    assert_eq!(cli(&["SET", "alpha", "3", "XX"]), "OK");
    assert_eq!(cli(&["SET", "ttl", "v", "PX", "300"]), "OK");
    assert_eq!(cli(&["SET", "ttl2", "v", "EX", "100"]), "OK");
    assert_eq!(cli(&["EXISTS", "ttl", "ttl2", "alpha", "nope"]), "3");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(cli(&["GET", "ttl"]), "", "PX expiry must hide the value");
    assert_eq!(cli(&["GET", "ttl2"]), "v");
    let ttl: i64 = cli(&["TTL", "ttl2"]).parse().expect("TTL is an integer");
    assert!((99..=100).contains(&ttl), "TTL of EX 100: {ttl}");
    let pttl: i64 = cli(&["PTTL", "ttl2"]).parse().expect("PTTL is an integer");
    assert!((90_000..=100_000).contains(&pttl), "PTTL of EX 100: {pttl}");
    assert_eq!(cli(&["TTL", "alpha"]), "-1", "no expiry");
    assert_eq!(cli(&["PTTL", "ttl"]), "-2", "expired reads as missing");
    assert_eq!(cli(&["TTL", "nope"]), "-2");
    assert_eq!(cli(&["EXPIRE", "alpha", "50"]), "1");
    let ttl: i64 = cli(&["TTL", "alpha"]).parse().expect("TTL is an integer");
    assert!((49..=50).contains(&ttl), "TTL after EXPIRE 50: {ttl}");
    assert_eq!(
        cli(&["EXPIRE", "alpha", "100", "LT"]),
        "0",
        "LT refuses a later expiry"
    );
    assert_eq!(
        cli(&["EXPIRE", "alpha", "100", "NX"]),
        "0",
        "NX: it has one"
    );
    assert_eq!(cli(&["PERSIST", "alpha"]), "1");
    assert_eq!(cli(&["TTL", "alpha"]), "-1");
    assert_eq!(cli(&["PERSIST", "alpha"]), "0");
    assert_eq!(cli(&["EXPIRE", "nope", "10"]), "0", "no key, no expiry");
    assert_eq!(cli(&["SET", "gone", "x"]), "OK");
    assert_eq!(
        cli(&["PEXPIRE", "gone", "-1"]),
        "1",
        "a past instant deletes"
    );
    assert_eq!(cli(&["EXISTS", "gone"]), "0");
    assert_eq!(
        cli(&["EXPIRE", "alpha", "1", "NX", "XX"]),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(cli(&["INCR", "n"]), "1");
    assert_eq!(cli(&["INCRBY", "n", "41"]), "42");
    assert_eq!(cli(&["DECR", "n"]), "41");
    assert_eq!(cli(&["DECRBY", "n", "40"]), "1");
    assert_eq!(cli(&["MSET", "a1", "x", "zz9", "y", "Q", "z"]), "OK");
    assert_eq!(cli(&["MGET", "a1", "nope", "zz9", "Q"]), "x\n\ny\nz");
    assert_eq!(cli(&["APPEND", "a1", "yz"]), "3");
    assert_eq!(cli(&["STRLEN", "a1"]), "3");
    assert_eq!(cli(&["STRLEN", "nope"]), "0");
    assert_eq!(cli(&["DEL", "a1", "zz9", "nope"]), "2");
    let mut raw = Resp::connect(p).expect("connect");
    assert_eq!(
        raw.call(&["MGET", "a1", "zz9"]).expect("mget"),
        Reply::Array(vec![Reply::Bulk(None), Reply::Bulk(None)])
    );
    // alpha, ttl2, n, Q: DBSIZE counts this node's replica of every group.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cli(&["DBSIZE"]) != "4" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cli(&["DBSIZE"]), "4");
    let scanned = cli(&["--scan"]);
    let mut keys: Vec<&str> = scanned.lines().collect();
    keys.sort();
    assert_eq!(keys, vec!["Q", "alpha", "n", "ttl2"]);
    assert_eq!(
        cli(&["SCAN", "0", "MATCH", "a*", "COUNT", "100"]),
        "0\nalpha"
    );
    assert!(cli(&["INFO"]).contains("group_1:role="));
    assert_eq!(cli(&["CONFIG", "GET", "save"]), "");
    assert_eq!(cli(&["CLIENT", "SETNAME", "x"]), "OK");
    assert_eq!(cli(&["QUIT"]), "OK");
    // Errors: unknown command, arity, not an integer, syntax.
    assert!(cli(&["FLUSHALL"]).starts_with("ERR unknown command 'FLUSHALL'"));
    assert_eq!(
        cli(&["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(cli(&["INCR", "alpha2"]), "1");
    assert_eq!(cli(&["SET", "word", "abc"]), "OK");
    assert_eq!(
        cli(&["INCR", "word"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(cli(&["SET", "k", "v", "EX"]), "ERR syntax error");
}

#[test]
fn pipelining_and_malformed_protocol_close_only_that_connection() {
    let c = Cluster::start(Opts {
        nodes: 1,
        groups: 2,
        ..Opts::default()
    });
    let port = c.nodes[0].resp;
    let mut conn = Resp::connect(port).expect("connect");
    // Three pipelined requests in one write: replies come back in order.
    conn.send_raw(
        b"*3\r\n$3\r\nSET\r\n$1\r\np\r\n$1\r\n1\r\n*2\r\n$4\r\nINCR\r\n$1\r\np\r\nGET p\r\n",
    )
    .expect("send");
    assert_eq!(conn.read().expect("r1"), Reply::Simple("OK".into()));
    assert_eq!(conn.read().expect("r2"), Reply::Int(2));
    assert_eq!(conn.read().expect("r3"), Reply::Bulk(Some(b"2".to_vec())));

    // Batched runs keep pipeline order: writes, then reads of what they wrote, then writes.
    conn.send_raw(b"SET q a\r\nAPPEND q b\r\nSET r 1\r\nGET q\r\nGET r\r\nSET q z\r\nINCR r\r\nGET q\r\nGET r\r\n")
        .expect("send");
    let want = [
        Reply::Simple("OK".into()),
        Reply::Int(2),
        Reply::Simple("OK".into()),
        Reply::Bulk(Some(b"ab".to_vec())),
        Reply::Bulk(Some(b"1".to_vec())),
        Reply::Simple("OK".into()),
        Reply::Int(2),
        Reply::Bulk(Some(b"z".to_vec())),
        Reply::Bulk(Some(b"2".to_vec())),
    ];
    for w in want {
        assert_eq!(conn.read().expect("pipelined reply"), w);
    }

    let mut other = Resp::connect(port).expect("connect");
    let mut bad = Resp::connect(port).expect("connect");
    bad.send_raw(b"*1\r\n$99999999999\r\n").expect("send");
    match bad.read().expect("protocol error reply") {
        Reply::Error(e) => assert!(e.starts_with("ERR Protocol error"), "{e}"),
        r => panic!("expected a protocol error, got {r:?}"),
    }
    assert!(
        bad.read().is_err(),
        "the malformed connection must be closed"
    );
    assert_eq!(
        other.call(&["GET", "p"]).expect("other connection"),
        Reply::Bulk(Some(b"2".to_vec()))
    );
}

#[test]
fn redis_benchmark_runs_without_errors_against_every_node() {
    require_redis_tools();
    let c = Cluster::start(Opts::default());
    for n in &c.nodes {
        let (ok, out, err) = redis_benchmark(
            n.resp,
            &[
                "-t",
                "set,get,incr,mset",
                "-P",
                "16",
                "-n",
                "2000",
                "-r",
                "1000",
                "-c",
                "8",
            ],
        );
        assert!(ok, "redis-benchmark failed against node {}: {err}", n.id);
        assert!(
            !err.contains("ERR") && !out.contains("ERR"),
            "error replies from node {}: {err}{out}",
            n.id
        );
        let rows = benchmark_rows(&out);
        let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        for t in ["SET", "GET", "INCR", "MSET (10 keys)"] {
            assert!(names.contains(&t), "missing {t} in {names:?}");
        }
        assert!(rows.iter().all(|(_, rps)| *rps > 0.0), "{rows:?}");
    }
}

#[test]
fn a_scan_that_deletes_each_page_still_returns_every_key_and_stale_cursors_are_refused() {
    let c = Cluster::start(Opts {
        nodes: 1,
        groups: 2,
        ..Opts::default()
    });
    let mut conn = Resp::connect(c.nodes[0].resp).expect("connect");
    let keys: Vec<String> = (0..90).map(|i| format!("aaa:{i:03}")).collect();
    let mut mset = vec!["MSET".to_string()];
    for k in &keys {
        mset.extend([k.clone(), "v".into()]);
    }
    mset.extend(["zzz:other".into(), "v".into()]);
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(conn.call(&mset).expect("mset"), Reply::Simple("OK".into()));

    let (mut cursor, mut seen, mut pages) = ("0".to_string(), Vec::new(), 0);
    let mut first_cursor = None;
    loop {
        let reply = conn
            .call(&["SCAN", &cursor, "MATCH", "aaa:*", "COUNT", "20"])
            .expect("scan");
        let Reply::Array(parts) = reply else {
            panic!("SCAN answered {reply:?}");
        };
        let [Reply::Bulk(Some(next)), Reply::Array(page)] = parts.as_slice() else {
            panic!("SCAN answered {parts:?}");
        };
        let page: Vec<String> = page
            .iter()
            .map(|r| match r {
                Reply::Bulk(Some(k)) => String::from_utf8(k.clone()).expect("utf-8 key"),
                other => panic!("SCAN key {other:?}"),
            })
            .collect();
        if !page.is_empty() {
            let mut del = vec!["DEL"];
            del.extend(page.iter().map(String::as_str));
            assert_eq!(conn.call(&del).expect("del"), Reply::Int(page.len() as i64));
        }
        seen.extend(page);
        pages += 1;
        cursor = String::from_utf8(next.clone()).expect("cursor");
        first_cursor.get_or_insert_with(|| cursor.clone());
        if cursor == "0" {
            break;
        }
        assert!(pages < 100, "SCAN never finished");
    }
    seen.sort();
    assert_eq!(
        seen, keys,
        "deleting returned pages must not make SCAN skip keys"
    );
    assert_eq!(
        conn.call(&["SCAN", "12345", "COUNT", "5"]).expect("scan"),
        Reply::Error("ERR invalid cursor".into())
    );
    assert_eq!(
        conn.call(&["SCAN", "-1"]).expect("scan"),
        Reply::Error("ERR invalid cursor".into())
    );
    // A cursor already handed out can be resumed again (a retried page).
    let first = first_cursor.expect("at least one page");
    assert!(matches!(
        conn.call(&["SCAN", &first]).expect("scan"),
        Reply::Array(_)
    ));
}
