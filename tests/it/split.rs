//! Splitting a route at runtime, under load.

use std::time::{Duration, Instant};

use crate::util::{
    Cluster, Opts, http, login, redis_benchmark, redis_cli, require_redis_tools, wait_matrix_total,
};

#[test]
fn split_under_load_keeps_totals_exact_and_registers_the_new_route() {
    require_redis_tools();
    let c = Cluster::start(Opts {
        groups: 2,
        ..Opts::default()
    });
    let port = c.nodes[1].resp;
    let n: u64 = 3000;
    // redis-benchmark keys are `key:NNNNNNNNNNNN`; the split lands in the middle of them.
    let bench = std::thread::spawn(move || {
        redis_benchmark(
            port,
            &["-t", "set", "-n", &n.to_string(), "-r", "100000", "-c", "4"],
        )
    });
    std::thread::sleep(Duration::from_millis(800));
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

    // Every node's catalog has the new route.
    for node in &c.nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = redis_cli(node.resp, &["INFO"]);
            if info.contains("routes:3") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not apply the split: {info}",
                node.id
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let admin = c.nodes[0].admin_addr();
    let cookie = login(&admin);
    let m = wait_matrix_total(&admin, &cookie, "writes", n, Duration::from_secs(20));
    // Rows are named `route:<id>#<sub-bucket>` (and list member routes when aggregated).
    let has_new_route = m["rows"].as_array().into_iter().flatten().any(|r| {
        let named = r["bucket_id"]
            .as_str()
            .is_some_and(|b| b.starts_with(&format!("route:{right_id}#")));
        named
            || r["route_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|id| id.as_u64() == Some(right_id))
    });
    assert!(
        has_new_route,
        "no row carries the new route {right_id}: {m}"
    );

    // The HTTP API needs the full role and splits too.
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
