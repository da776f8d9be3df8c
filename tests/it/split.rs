//! Splitting a route at runtime: under load, and the truth of every cell's key range (each
//! write stays in a row whose range held its key when it was counted, before and after).

use std::time::{Duration, Instant};

use keyviz::{Matrix, MatrixRow, bucket_base, parse_route_bucket_id};

use crate::util::{
    Cluster, Opts, Reply, Resp, http, login, matrix, redis_benchmark, redis_cli,
    require_redis_tools, wait_matrix_total,
};

/// Waits until every node's INFO lists `routes` routes (the split is applied everywhere).
fn wait_routes(c: &Cluster, routes: usize) {
    for node in &c.nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = redis_cli(node.resp, &["INFO"]);
            if info.contains(&format!("routes:{routes}")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not apply the split: {info}",
                node.id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The fan-out matrix of writes once its total is `want`, typed, after checking that every
/// node answered and none reported a catalog divergence.
fn settled_matrix(c: &Cluster, want: u64) -> Matrix {
    let admin = c.nodes[0].admin_addr();
    let cookie = login(&admin);
    wait_matrix_total(&admin, &cookie, "writes", want, Duration::from_secs(20));
    // Every node has flushed every column of the total; ask once more for the fan-out
    // status of a complete answer.
    let json = matrix(&admin, &cookie, "writes");
    let fanout = &json["fanout"];
    assert_eq!(
        fanout["responded"].as_u64(),
        Some(c.nodes.len() as u64),
        "{fanout}"
    );
    for node in fanout["nodes"].as_array().into_iter().flatten() {
        for w in node["warnings"].as_array().into_iter().flatten() {
            assert_ne!(
                w["code"].as_str(),
                Some("catalog_divergence"),
                "incarnations of one route are not a divergence: {w}"
            );
        }
    }
    let m: Matrix = serde_json::from_value(json).expect("matrix JSON");
    m.validate().expect("valid fan-out matrix");
    assert_eq!(m.total(), want);
    m
}

/// (old incarnation, start, end, total) of a row.
type RowShape = (bool, Vec<u8>, Option<Vec<u8>>, u64);

fn start(r: &MatrixRow) -> &[u8] {
    r.start.as_deref().unwrap_or(&[])
}

fn contains(r: &MatrixRow, key: &[u8]) -> bool {
    key >= start(r) && r.end.as_deref().is_none_or(|e| key < e)
}

/// Rows counted before the catalog change carry an incarnation suffix; current rows do not.
fn is_old(r: &MatrixRow) -> bool {
    bucket_base(&r.bucket_id) != r.bucket_id
}

fn route_of(r: &MatrixRow) -> Option<u64> {
    parse_route_bucket_id(&r.bucket_id).map(|(route, _)| route)
}

/// Column positions with traffic in any of `rows`.
fn busy_columns<'a>(rows: impl Iterator<Item = &'a MatrixRow>) -> Vec<usize> {
    let mut cols: Vec<usize> = rows
        .flat_map(|r| r.values.iter().enumerate().filter(|(_, v)| **v > 0))
        .map(|(j, _)| j)
        .collect();
    cols.sort_unstable();
    cols.dedup();
    cols
}

/// SETs every key through `port`, one at a time; panics unless each is acknowledged.
fn set_all(port: u16, keys: &[String]) {
    let mut conn = Resp::connect(port).expect("connect RESP");
    for k in keys {
        let reply = conn.call(&["SET", k, "v"]).expect("SET");
        assert_eq!(reply, Reply::Simple("OK".into()), "SET {k}");
    }
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

fn dbsize(port: u16) -> u64 {
    match Resp::connect(port).and_then(|mut c| c.call(&["DBSIZE"])) {
        Ok(Reply::Int(n)) => u64::try_from(n).unwrap_or(0),
        _ => 0,
    }
}

/// Writes on both sides of the split key before and after `KEYVIZ.SPLIT`, then checks the
/// cluster matrix per key range: every write before the split is in an old-incarnation row
/// whose range holds its key, every write after in a current row whose range holds its key,
/// nothing anywhere else, and old columns precede new ones.
fn split_truth(key_buckets: u32) {
    require_redis_tools();
    // Two groups: the second route, ["U", ∞), holds both `a…` and `x…` keys.
    let c = Cluster::start(Opts {
        groups: 2,
        key_buckets: Some(key_buckets),
        ..Opts::default()
    });
    let (left_before, right_before) = (keys("a:before:", 30), keys("x:before:", 50));
    let (left_after, right_after) = (keys("a:after:", 20), keys("x:after:", 40));
    set_all(c.nodes[0].resp, &left_before);
    set_all(c.nodes[1].resp, &right_before);
    // Let the pre-split writes reach the matrix, so some columns hold only them.
    {
        let admin = c.nodes[0].admin_addr();
        let cookie = login(&admin);
        wait_matrix_total(&admin, &cookie, "writes", 80, Duration::from_secs(20));
    }
    let right = redis_cli(c.nodes[2].resp, &["KEYVIZ.SPLIT", "m"]);
    let right_id: u64 = right
        .parse()
        .unwrap_or_else(|_| panic!("split answered {right:?}"));
    wait_routes(&c, 3);
    set_all(c.nodes[2].resp, &left_after);
    set_all(c.nodes[0].resp, &right_after);
    let m = settled_matrix(&c, 140);

    let before: Vec<&String> = left_before.iter().chain(&right_before).collect();
    let after: Vec<&String> = left_after.iter().chain(&right_after).collect();
    let (old, new): (Vec<&MatrixRow>, Vec<&MatrixRow>) = m.rows.iter().partition(|r| is_old(r));
    for (phase, rows, written) in [("before", &old, &before), ("after", &new, &after)] {
        // Rows of one catalog never overlap, so each write has one row to be in.
        for w in rows.windows(2) {
            assert!(
                w[0].end.as_deref().is_some_and(|e| e <= start(w[1])),
                "{phase}: {} and {} overlap",
                w[0].bucket_id,
                w[1].bucket_id
            );
        }
        for r in rows {
            let want = written.iter().filter(|k| contains(r, k.as_bytes())).count() as u64;
            assert_eq!(
                r.total(),
                want,
                "{phase} the split, row {} [{:?}, {:?}) holds {} writes, its keys got {want}",
                r.bucket_id,
                r.start,
                r.end,
                r.total()
            );
        }
        let total: u64 = rows.iter().map(|r| r.total()).sum();
        assert_eq!(total, written.len() as u64, "{phase} the split");
    }
    // After the split no current row straddles the split key, and the right side is the new
    // route's.
    for r in &new {
        let left_of = r.end.as_deref().is_some_and(|e| e <= b"m".as_slice());
        assert!(
            left_of || start(r) >= b"m".as_slice(),
            "{} straddles m",
            r.bucket_id
        );
        if !left_of {
            assert_eq!(route_of(r), Some(right_id), "{}", r.bucket_id);
        }
    }
    if key_buckets == 1 {
        // The issue's case, exactly: one old row for the whole route, one per half after.
        let shape: Vec<RowShape> = m
            .rows
            .iter()
            .map(|r| (is_old(r), start(r).to_vec(), r.end.clone(), r.total()))
            .collect();
        assert_eq!(
            shape,
            [
                (false, b"U".to_vec(), Some(b"m".to_vec()), 20),
                (true, b"U".to_vec(), None, 80),
                (false, b"m".to_vec(), None, 40),
            ]
        );
    }
    let (old_cols, new_cols) = (busy_columns(old.into_iter()), busy_columns(new.into_iter()));
    assert!(
        old_cols.last() < new_cols.first(),
        "old columns {old_cols:?} precede new ones {new_cols:?}"
    );
}

#[test]
fn split_keeps_every_write_at_its_key_range_with_one_key_bucket() {
    split_truth(1);
}

#[test]
fn split_keeps_every_write_at_its_key_range_with_eight_key_buckets() {
    split_truth(8);
}

#[test]
fn split_under_load_keeps_totals_exact_and_registers_the_new_route() {
    require_redis_tools();
    let c = Cluster::start(Opts {
        groups: 2,
        ..Opts::default()
    });
    let port = c.nodes[1].resp;
    let n: u64 = 6000;
    // redis-benchmark keys are `key:NNNNNNNNNNNN`; the split lands in the middle of them.
    let bench = std::thread::spawn(move || {
        redis_benchmark(
            port,
            &["-t", "set", "-n", &n.to_string(), "-r", "100000", "-c", "4"],
        )
    });
    // Split once the load is visibly running (keys are being written), not after a guess.
    let deadline = Instant::now() + Duration::from_secs(30);
    while dbsize(port) < 200 {
        assert!(
            !bench.is_finished(),
            "the benchmark ended before any progress was seen"
        );
        assert!(Instant::now() < deadline, "no writes applied in 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let right = redis_cli(c.nodes[2].resp, &["KEYVIZ.SPLIT", "key:000000050000"]);
    let right_id: u64 = right
        .parse()
        .unwrap_or_else(|_| panic!("split answered {right:?}"));
    assert!(
        right_id > u64::from(u32::MAX),
        "split route ids come from the log position"
    );
    // Splitting again at the same key is refused: it is now a route start.
    assert!(redis_cli(c.nodes[0].resp, &["KEYVIZ.SPLIT", "key:000000050000"]).starts_with("ERR"));
    let (ok, _, err) = bench.join().expect("benchmark thread");
    assert!(ok, "{err}");
    wait_routes(&c, 3);
    let m = settled_matrix(&c, n);

    // The split landed under load: writes were counted before it (old incarnation rows) and
    // after it, on both of its sides (current rows of both routes).
    let (old, new): (Vec<&MatrixRow>, Vec<&MatrixRow>) = m
        .rows
        .iter()
        .filter(|r| r.total() > 0)
        .partition(|r| is_old(r));
    assert!(
        !old.is_empty(),
        "no write was counted before the split: {m:?}"
    );
    let split = b"key:000000050000".as_slice();
    let left: u64 = new
        .iter()
        .filter(|r| r.end.as_deref().is_some_and(|e| e <= split))
        .map(|r| r.total())
        .sum();
    let right: u64 = new
        .iter()
        .filter(|r| start(r) >= split)
        .map(|r| r.total())
        .sum();
    assert!(
        left > 0 && right > 0,
        "writes after the split on both sides: {left} left, {right} right"
    );
    assert_eq!(
        left + right,
        new.iter().map(|r| r.total()).sum::<u64>(),
        "no current row straddles the split key"
    );
    assert!(
        new.iter()
            .filter(|r| start(r) >= split)
            .all(|r| route_of(r) == Some(right_id)),
        "the right side is the new route {right_id}"
    );
    let (old_cols, new_cols) = (busy_columns(old.into_iter()), busy_columns(new.into_iter()));
    assert!(
        old_cols.last() <= new_cols.first(),
        "old columns {old_cols:?} end where new ones {new_cols:?} begin"
    );

    // The HTTP API needs the full role and splits too.
    let admin = c.nodes[0].admin_addr();
    let cookie = login(&admin);
    let csrf = cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("admin_csrf="))
        .unwrap_or_default()
        .to_string();
    let (status, _, body) = http(
        &admin,
        "POST",
        "/admin/api/v1/kvnode/split",
        &[
            ("Cookie", &cookie),
            ("X-Admin-CSRF", &csrf),
            ("Content-Type", "application/json"),
        ],
        r#"{"at":"key:000000090000"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("right_route_id"), "{body}");
    let (status, _, _) = http(
        &admin,
        "POST",
        "/admin/api/v1/kvnode/split",
        &[("Content-Type", "application/json")],
        r#"{"at":"zz"}"#,
    );
    assert_eq!(status, 401, "splitting without a session is refused");
}
