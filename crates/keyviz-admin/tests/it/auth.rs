//! Login, cookies, sessions, CSRF, logout, rate limiting and credentials files.

use std::sync::Arc;

use http::{Method, StatusCode};
use keyviz_admin::auth::SessionClaims;
use keyviz_admin::config::IpNet;
use keyviz_admin::{AdminConfig, ClusterSecret, Role, StaticCredentials};

use crate::util::*;

const MATRIX: &str = "/admin/api/v1/keyviz/matrix";
const LOGOUT: &str = "/admin/api/v1/auth/logout";
const LOGIN: &str = "/admin/api/v1/auth/login";

async fn node_with(config: AdminConfig) -> Server {
    start_node("n1", bind().await, FixedSource::new(vec![]), config).await
}

async fn node() -> Server {
    node_with(AdminConfig::default()).await
}

fn cookie<'a>(cookies: &'a [String], name: &str) -> &'a str {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
}

#[tokio::test]
async fn login_sets_session_and_csrf_cookies_and_session_verifies() {
    let s = node_with(AdminConfig {
        secure_cookies: true,
        ..AdminConfig::default()
    })
    .await;
    let r = login_resp(&s, "alice", "alice-secret").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["cache-control"], "no-store");
    let v = r.json();
    assert_eq!(v["role"], "full");
    assert!(v["expires_at"].as_str().is_some_and(|e| e.ends_with('Z')));
    assert!(v.get("csrf").is_none());
    let cookies = r.set_cookies();
    assert_eq!(cookies.len(), 2);
    let session = cookie(&cookies, "admin_session");
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/admin",
        "Max-Age=3600",
    ] {
        assert!(
            session.contains(attr),
            "session cookie lacks {attr}: {session}"
        );
    }
    let csrf = cookie(&cookies, "admin_csrf");
    assert!(!csrf.contains("HttpOnly"));
    for attr in ["Secure", "SameSite=Strict", "Path=/admin"] {
        assert!(csrf.contains(attr), "csrf cookie lacks {attr}: {csrf}");
    }
    let token = session
        .trim_start_matches("admin_session=")
        .split(';')
        .next()
        .unwrap_or_default();
    let claims = SessionClaims::verify(&secret(), token, chrono_now_s(), 30).expect("verifies");
    assert_eq!((claims.sub.as_str(), claims.role), ("alice", Role::Full));

    let ro = login_resp(&s, "bob", "bob-secret").await;
    assert_eq!(ro.json()["role"], "read_only");
    // Without the TLS option no cookie is Secure.
    let plain = node().await;
    let r = login_resp(&plain, "alice", "alice-secret").await;
    assert!(r.set_cookies().iter().all(|c| !c.contains("Secure")));
}

fn chrono_now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[tokio::test]
async fn login_failures_have_reference_codes_and_set_no_cookies() {
    let s = node_with(AdminConfig {
        login_rate_limit: 100,
        ..AdminConfig::default()
    })
    .await;
    let cases: Vec<(&str, &str, StatusCode, &str)> = vec![
        (
            "alice",
            "wrong",
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        ),
        (
            "mallory",
            "alice-secret",
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        ),
        ("carol", "carol-secret", StatusCode::FORBIDDEN, "forbidden"),
        ("", "x", StatusCode::BAD_REQUEST, "missing_fields"),
        ("alice", "", StatusCode::BAD_REQUEST, "missing_fields"),
        ("  ", "", StatusCode::BAD_REQUEST, "missing_fields"),
    ];
    for (key, secret, status, code) in cases {
        let r = login_resp(&s, key, secret).await;
        assert_eq!(r.status, status, "{key}/{secret}");
        assert_eq!(r.error_code(), code, "{key}/{secret}");
        assert!(r.set_cookies().is_empty(), "{key}: cookies set on failure");
    }
    let json = vec![("content-type", "application/json".to_string())];
    let r = send(Method::POST, &s.url(LOGIN), &json, Some(b"{nope".to_vec())).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_body")
    );
    let form = vec![(
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    )];
    let r = send(
        Method::POST,
        &s.url(LOGIN),
        &form,
        Some(b"access_key=alice".to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.error_code(), "unsupported_media_type");
    let r = get_with(&s.url(LOGIN), &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let big = vec![b' '; 70 * 1024];
    let r = send(Method::POST, &s.url(LOGIN), &json, Some(big)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "payload_too_large");
    let metrics = get_with(&s.url("/metrics"), &[]).await.text();
    assert!(
        metrics.contains("keyviz_admin_login_failures_total{reason=\"invalid_credentials\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn sixth_login_from_one_ip_is_429_other_ip_still_allowed() {
    let config = AdminConfig {
        trusted_proxies: vec![IpNet::parse("127.0.0.1").expect("net")],
        ..AdminConfig::default()
    };
    let s = node_with(config).await;
    let attempt = |ip: &'static str, secret: &'static str| {
        let url = s.url(LOGIN);
        async move {
            let body = serde_json::json!({"access_key": "alice", "secret_key": secret}).to_string();
            send(
                Method::POST,
                &url,
                &[
                    ("content-type", "application/json".into()),
                    ("x-forwarded-for", ip.into()),
                ],
                Some(body.into_bytes()),
            )
            .await
        }
    };
    for _ in 0..5 {
        assert_eq!(
            attempt("203.0.113.9", "wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = attempt("203.0.113.9", "alice-secret").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_code(), "rate_limited");
    // The window started with the first failure, a moment ago.
    let retry: u64 = r.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((59..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(
        attempt("198.51.100.7", "alice-secret").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn successful_logins_are_never_rate_limited_only_failures_count() {
    // A script that signs in on every run (keyviz matrix in a loop) must not lock itself out.
    let s = node().await;
    let login = |secret: &'static str| {
        let url = s.url(LOGIN);
        async move {
            let body = serde_json::json!({"access_key": "alice", "secret_key": secret}).to_string();
            send(
                Method::POST,
                &url,
                &[("content-type", "application/json".into())],
                Some(body.into_bytes()),
            )
            .await
        }
    };
    for i in 0..12 {
        assert_eq!(
            login("alice-secret").await.status,
            StatusCode::OK,
            "login {i}"
        );
    }
    for _ in 0..5 {
        assert_eq!(login("wrong").await.status, StatusCode::UNAUTHORIZED);
    }
    let r = login("alice-secret").await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "five failures lock the address"
    );
}

#[tokio::test]
async fn forwarded_for_is_ignored_without_trusted_proxies() {
    let s = node().await;
    for i in 0..5 {
        let body = serde_json::json!({"access_key": "alice", "secret_key": "no"}).to_string();
        let r = send(
            Method::POST,
            &s.url(LOGIN),
            &[
                ("content-type", "application/json".into()),
                ("x-forwarded-for", format!("10.9.9.{i}")),
            ],
            Some(body.into_bytes()),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = login_resp(&s, "alice", "alice-secret").await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "spoofed XFF must not reset the bucket"
    );
}

#[tokio::test]
async fn sessions_missing_garbage_expired_or_rotated() {
    let s = node().await;
    let r = get_with(&s.url(MATRIX), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["message"], "missing session cookie");
    let r = get_with(
        &s.url(MATRIX),
        &[("cookie", "admin_session=garbage".into())],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["message"], "invalid or expired session");
    let old = SessionClaims::issue("alice", Role::Full, "n1", "g", chrono_now_s() - 7200, 3600)
        .expect("claims");
    let expired = old.sign(&secret()).expect("sign");
    let r = get_with(
        &s.url(MATRIX),
        &[("cookie", format!("admin_session={expired}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A token signed by a key this node only knows as "previous" still works.
    let previous =
        ClusterSecret::new(b"the-previous-cluster-secret-0123456789".to_vec(), None).expect("s");
    let rotated = keyviz_admin::AdminState::builder(
        keyviz_admin::NodeIdentity::new("n9", "127.0.0.1:0").expect("id"),
        ClusterSecret::new(
            b"a-brand-new-cluster-secret-0123456789xx".to_vec(),
            Some(b"the-previous-cluster-secret-0123456789".to_vec()),
        )
        .expect("s"),
    )
    .matrix_source(FixedSource::new(vec![]))
    .build()
    .expect("state");
    let claims = rotated
        .issue_session("bob", Role::ReadOnly)
        .expect("session")
        .claims;
    let by_previous = claims.sign(&previous).expect("sign");
    let r = get_with(
        &s.url(MATRIX),
        &[("cookie", format!("admin_session={by_previous}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "unknown key rejected");
    let s2 = serve_on(bind().await, keyviz_admin::router(rotated)).await;
    let r = get_with(
        &s2.url(MATRIX),
        &[("cookie", format!("admin_session={by_previous}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn logout_needs_session_and_csrf_then_clears_and_revokes() {
    let s = node().await;
    let r = send(Method::POST, &s.url(LOGOUT), &[], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.set_cookies().is_empty());
    let sess = login(&s, "alice", "alice-secret").await;
    let r = send(Method::POST, &s.url(LOGOUT), &sess.headers(), None).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "csrf_missing")
    );
    let mut wrong = sess.headers();
    wrong.push(("x-admin-csrf", "not-the-token".into()));
    let r = send(Method::POST, &s.url(LOGOUT), &wrong, None).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "csrf_mismatch")
    );
    let r = get_with(&s.url(LOGOUT), &sess.headers()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = send(Method::POST, &s.url(LOGOUT), &sess.write_headers(), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let cleared = r.set_cookies();
    assert_eq!(cleared.len(), 2);
    for c in &cleared {
        assert!(
            c.contains("Max-Age=0") && c.contains("=; Path=/admin"),
            "{c}"
        );
    }
    let r = get_with(&s.url(MATRIX), &sess.headers()).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "logged-out session is revoked on this node"
    );
}

#[tokio::test]
async fn credentials_file_with_argon2_hash_logs_in() {
    use argon2::{Argon2, Params, PasswordHasher};
    let hash = Argon2::from(Params::new(256, 1, 1, None).expect("params"))
        .hash_password(b"dave-pass")
        .expect("hash")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("operators.toml");
    std::fs::write(
        &path,
        format!(
            "[[operators]]\naccess_key = \"dave\"\nrole = \"full\"\nsecret_argon2 = \"{hash}\"\n"
        ),
    )
    .expect("write");
    let store = StaticCredentials::load(&path).expect("load");
    let state = keyviz_admin::AdminState::builder(
        keyviz_admin::NodeIdentity::new("n1", "127.0.0.1:0").expect("id"),
        secret(),
    )
    .credentials(Arc::new(store))
    .matrix_source(FixedSource::new(vec![]))
    .build()
    .expect("state");
    let s = serve_on(bind().await, keyviz_admin::router(state)).await;
    assert_eq!(
        login_resp(&s, "dave", "wrong").await.status,
        StatusCode::UNAUTHORIZED
    );
    let sess = login(&s, "dave", "dave-pass").await;
    assert_eq!(
        get_with(&s.url(MATRIX), &sess.headers()).await.status,
        StatusCode::OK
    );
}
