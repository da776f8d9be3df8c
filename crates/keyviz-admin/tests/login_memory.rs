//! Bounded login work, measured: 128 concurrent unknown-key logins against a store with a
//! real (default-cost) argon2 hash keep this process's peak RSS at or under 256 MB.
//!
//! Its own test binary so that the process's high-water mark (`VmHWM` in
//! `/proc/self/status`) belongs to this one test: the process hosts the router, the
//! clients and nothing else.

#[allow(dead_code)]
#[path = "it/util.rs"]
mod util;

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, Params};
use http::{Method, StatusCode};
use keyviz_admin::auth::MAX_DEFAULT_LOGIN_WORKERS;
use keyviz_admin::config::IpNet;
use keyviz_admin::{AdminConfig, AdminState, NodeIdentity, Role, StaticCredentials};

use util::{FixedSource, bind, secret, send, serve_on};

/// Peak resident set of this process in KiB, from `/proc/self/status`.
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_key_logins_with_an_argon2_store_stay_under_256_mb() {
    if vm_hwm_kib().is_none() {
        eprintln!("no /proc/self/status VmHWM on this platform; nothing to measure");
        return;
    }
    // The default argon2id cost (19 MiB, 2 passes): what `argon2` tools produce.
    let hash = Argon2::from(Params::default())
        .hash_password(b"the operator's password")
        .expect("hash")
        .to_string();
    let creds = StaticCredentials::new()
        .with_argon2("operator", &hash, Some(Role::Full))
        .expect("store");
    let listener = bind().await;
    let addr = listener.local_addr().expect("addr").to_string();
    let state = AdminState::builder(NodeIdentity::new("n1", addr).expect("id"), secret())
        .config(AdminConfig {
            // The largest pool the default ever picks, whatever this machine's cores.
            login_workers: MAX_DEFAULT_LOGIN_WORKERS,
            trusted_proxies: vec![IpNet::parse("127.0.0.1").expect("net")],
            ..AdminConfig::default()
        })
        .matrix_source(FixedSource::new(vec![]))
        .credentials(Arc::new(creds))
        .build()
        .expect("state");
    let server = Arc::new(serve_on(listener, keyviz_admin::router(state)).await);
    let before = vm_hwm_kib().unwrap_or_default();
    // 128 attackers, each from its own address (so the per-address limiter lets each
    // through), each trying an unknown key: every one costs a decoy argon2 verification.
    let tasks: Vec<_> = (0..128)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move {
                let body =
                    serde_json::json!({"access_key": format!("nobody{i}"), "secret_key": "guess"});
                let url = server.url("/admin/api/v1/auth/login");
                let r = send(
                    Method::POST,
                    &url,
                    &[
                        ("content-type", "application/json".into()),
                        ("x-forwarded-for", format!("198.18.{}.{}", i / 256, i % 256)),
                    ],
                    Some(body.to_string().into_bytes()),
                )
                .await;
                (r.status, r.headers.get("retry-after").cloned())
            })
        })
        .collect();
    let mut invalid = 0;
    let mut busy = 0;
    for t in tasks {
        let (status, retry_after) = tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("login answered within 120 s")
            .expect("join");
        match status {
            StatusCode::UNAUTHORIZED => invalid += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
                busy += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let peak = vm_hwm_kib().unwrap_or_default();
    eprintln!(
        "128 logins: {invalid} checked (401), {busy} refused (503); VmHWM {before} KiB before, {peak} KiB after"
    );
    assert_eq!(invalid + busy, 128);
    assert!(
        invalid >= MAX_DEFAULT_LOGIN_WORKERS,
        "the pool worked: {invalid}"
    );
    assert!(busy > 0, "the excess was refused");
    assert!(
        peak <= 256 * 1024,
        "peak RSS {peak} KiB is over 256 MB (was {before} KiB before the logins)"
    );
}
