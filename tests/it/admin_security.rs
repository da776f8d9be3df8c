//! Issue 12 through a real `keyviz node` cluster: the session cookie is good only on the node
//! that issued it (kvnode's split route included), logout ends it, the hardening headers
//! cover the host's own route, and `--metrics-token` guards `/metrics`.

use std::time::{Duration, Instant};

use crate::util::{Cluster, Opts, http, login};

const TOKEN: &str = "it-metrics-token-0123456789";

fn csrf_of(cookie: &str) -> String {
    cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("admin_csrf="))
        .unwrap_or_default()
        .to_string()
}

fn split(admin: &str, cookie: &str, at: &str) -> (u16, String, String) {
    let csrf = csrf_of(cookie);
    http(
        admin,
        "POST",
        "/admin/api/v1/kvnode/split",
        &[
            ("Cookie", cookie),
            ("X-Admin-CSRF", &csrf),
            ("Content-Type", "application/json"),
        ],
        &format!(r#"{{"at":"{at}"}}"#),
    )
}

#[test]
fn node_sessions_stay_on_their_node_and_metrics_need_the_token() {
    let c = Cluster::start(Opts {
        extra_args: &["--metrics-token", TOKEN],
        ..Opts::default()
    });
    let admins: Vec<String> = c.nodes.iter().map(|n| n.admin_addr()).collect();
    let cookie = login(&admins[0]);
    // Another node refuses node 1's cookie on the split route and names node 1.
    for admin in &admins[1..] {
        let (status, head, body) = split(admin, &cookie, "k:wrong-node");
        assert_eq!(status, 401, "{body}");
        assert!(
            body.contains("session_wrong_node") && body.contains("node-1"),
            "{body}"
        );
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("content-security-policy: default-src 'self'"),
            "{head}"
        );
        assert!(head.contains("x-frame-options: deny"), "{head}");
    }
    let csrf = csrf_of(&cookie);
    let (status, _, body) = http(
        &admins[0],
        "POST",
        "/admin/api/v1/auth/logout",
        &[("Cookie", &cookie), ("X-Admin-CSRF", &csrf)],
        "",
    );
    assert_eq!(status, 204, "{body}");
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let refused = admins
            .iter()
            .all(|a| split(a, &cookie, "k:after-logout").0 == 401);
        if refused {
            break;
        }
        assert!(Instant::now() < deadline, "logged-out cookie still splits");
        std::thread::sleep(Duration::from_millis(20));
    }

    let (status, head, _) = http(&admins[1], "GET", "/metrics", &[], "");
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = http(
        &admins[1],
        "GET",
        "/metrics",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("keyviz_fanout_peer_calls"), "{body}");
}
