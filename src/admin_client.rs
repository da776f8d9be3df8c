//! A small client of one node's admin HTTP API, for the CLI commands that read KeyViz
//! (`keyviz top`, and later `keyviz matrix` / `keyviz heatmap`).
//!
//! It logs in with an operator's access key and secret (`POST /admin/api/v1/auth/login`),
//! keeps the two session cookies, sends them on every GET, logs in again once when a
//! session expires (401 on a GET), and logs out on request. Every call has a deadline, and
//! every response body is read under a cap while it streams, so a hostile or broken server
//! can make a call fail but never hang the CLI or grow its memory without bound. Decoded
//! answers are validated before they are returned.
//!
//! Plain HTTP only: the admin listener serves no TLS (put it behind an SSH tunnel or a
//! TLS-terminating proxy on the same host).

use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use keyviz::Matrix;
use keyviz::Series;
use keyviz::hotkeys::{HotKeys, MAX_HOT_KEYS_K};
use keyviz_admin::FanoutStatus;
use serde::Deserialize;

/// Largest matrix body accepted: the admin API's own peer body cap.
pub(crate) const MATRIX_BODY_CAP: usize = 64 << 20;
/// Largest hot-keys body accepted (1000 keys of 256 bytes are ~0.5 MiB of JSON).
pub(crate) const HOT_KEYS_BODY_CAP: usize = 8 << 20;
/// Largest login / error body read.
const SMALL_BODY_CAP: usize = 64 << 10;
/// Longest wait for a logout on exit.
const LOGOUT_WAIT: Duration = Duration::from_secs(2);
/// Characters of a server message kept in an error.
const MESSAGE_CHARS: usize = 200;

const SESSION_COOKIE: &str = "admin_session";
const CSRF_COOKIE: &str = "admin_csrf";

/// Why a call failed, grouped so that every CLI command maps it to the same documented
/// exit code ([`ClientError::exit_code`]). Messages are one line and free of control
/// characters (server text is sanitised).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClientError {
    /// The `--admin` value is not a usable `http://host:port` URL.
    #[error("invalid admin URL '{url}': {reason}")]
    BadUrl {
        /// The URL as given (sanitised).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No credentials, or unreadable ones.
    #[error("{0}")]
    Credentials(String),
    /// TCP connect or HTTP exchange failed (refused, reset, DNS).
    #[error("cannot reach the admin API at {url}: {detail}")]
    Connect {
        /// Base URL of the admin API.
        url: String,
        /// The transport's error chain.
        detail: String,
    },
    /// No complete answer within the deadline.
    #[error("the admin API at {url} did not answer {what} within {after:?}")]
    Timeout {
        /// Base URL of the admin API.
        url: String,
        /// The request (`login`, `GET /admin/...`).
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// 401: wrong access key or secret, or a session the server no longer accepts.
    #[error("authentication failed ({code}): {message}")]
    Unauthorized {
        /// The API's error code (`invalid_credentials`, `unauthenticated`).
        code: String,
        /// The API's message.
        message: String,
    },
    /// 403: authenticated but not allowed.
    #[error("access denied ({code}): {message}")]
    Forbidden {
        /// The API's error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// 429: too many login attempts from this address.
    #[error("rate limited by the admin API: retry in {retry_after_s}s")]
    RateLimited {
        /// `Retry-After` in seconds (0 when absent).
        retry_after_s: u64,
    },
    /// 404 on a KeyViz endpoint: the node does not serve it (an older version).
    #[error("the node does not serve {path} (404 {code})")]
    NotServed {
        /// The path asked for.
        path: String,
        /// The API's error code.
        code: String,
    },
    /// 503 `keyviz_disabled`: the node runs without KeyViz.
    #[error("KeyViz is disabled on this node: {0}")]
    Disabled(String),
    /// Any other non-success status.
    #[error("the admin API answered {status} ({code}): {message}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The API's error code, or `-` when the body was not an API error.
        code: String,
        /// The API's message or the start of the body.
        message: String,
    },
    /// The body is larger than the cap; reading stopped there.
    #[error("the admin API's answer to {path} exceeds the {cap}-byte cap")]
    TooLarge {
        /// The path asked for.
        path: String,
        /// The cap in bytes.
        cap: usize,
    },
    /// The body is not the documented JSON, or breaks an invariant.
    #[error("malformed answer to {path}: {detail}")]
    Malformed {
        /// The path asked for.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

/// Exit code: usage errors (bad flags, bad URL, missing credentials); clap uses it too.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code: the admin API cannot be reached (refused, DNS, timeout).
pub(crate) const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: authentication or authorisation failed (401, 403).
pub(crate) const EXIT_AUTH: u8 = 4;
/// Exit code: rate limited (429).
pub(crate) const EXIT_RATE_LIMITED: u8 = 5;
/// Exit code: the server failed or answered something unusable (5xx, 404, malformed, too large).
pub(crate) const EXIT_SERVER: u8 = 6;
/// Exit code: the answer is degraded (a node did not answer) and degraded answers were not
/// accepted.
pub(crate) const EXIT_DEGRADED: u8 = 7;

impl ClientError {
    /// The CLI's documented exit code for this error (README, docs/ADMIN.md).
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            ClientError::BadUrl { .. } | ClientError::Credentials(_) => EXIT_USAGE,
            ClientError::Connect { .. } | ClientError::Timeout { .. } => EXIT_UNREACHABLE,
            ClientError::Unauthorized { .. } | ClientError::Forbidden { .. } => EXIT_AUTH,
            ClientError::RateLimited { .. } => EXIT_RATE_LIMITED,
            ClientError::NotServed { .. }
            | ClientError::Disabled(_)
            | ClientError::Status { .. }
            | ClientError::TooLarge { .. }
            | ClientError::Malformed { .. } => EXIT_SERVER,
        }
    }
}

/// Replaces control characters (terminal escapes from a hostile server) and cuts `text` to
/// `max` characters, so anything quoted from the network is safe to print on one line.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// A parsed `--admin` value: scheme `http`, host and port; a path (such as the UI's
/// `/admin/`) is ignored so the UI's URL can be pasted as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdminUrl {
    authority: String,
}

impl AdminUrl {
    /// Parses `http://host:port[/path]` or `host:port`.
    ///
    /// # Errors
    /// [`ClientError::BadUrl`] for other schemes (https included: no TLS here), a missing
    /// host, user info, or text that is not a URI.
    pub(crate) fn parse(text: &str) -> Result<AdminUrl, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: sanitize(text, 100),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(bad("empty"));
        }
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("http://{trimmed}")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported (the admin listener serves plain HTTP; use an SSH tunnel)",
                ));
            }
            _ => return Err(bad("the scheme must be http")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported (use --user)"));
        }
        if authority.host().is_empty() {
            return Err(bad("no host"));
        }
        let authority = match authority.port_u16() {
            Some(_) => authority.as_str().to_string(),
            None => format!("{}:80", authority.as_str()),
        };
        Ok(AdminUrl { authority })
    }

    /// `http://host:port`, for messages.
    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.authority)
    }

    fn uri(&self, path_and_query: &str) -> Result<Uri, ClientError> {
        format!("http://{}{path_and_query}", self.authority)
            .parse()
            .map_err(|e: http::uri::InvalidUri| ClientError::BadUrl {
                url: self.base(),
                reason: e.to_string(),
            })
    }
}

/// An operator's access key and secret.
#[derive(Clone)]
pub(crate) struct Credentials {
    /// The access key (`--user`, `KEYVIZ_ADMIN_USER`).
    pub(crate) user: String,
    /// The secret (`--password`, `KEYVIZ_ADMIN_PASSWORD`, `--password-file`).
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Longest password file read.
const PASSWORD_FILE_CAP: u64 = 64 << 10;

/// The credentials of every admin-API command: the access key from `user` (`--user` /
/// `KEYVIZ_ADMIN_USER`), the secret from the first line of `password_file` when given
/// (it wins: a node's own environment may set `KEYVIZ_ADMIN_PASSWORD`), else `password`.
/// Reads at most 64 KiB of the file.
///
/// # Errors
/// A one-line message naming the missing flag or the unreadable file.
pub(crate) fn resolve_credentials(
    user: Option<&str>,
    password: Option<&str>,
    password_file: Option<&std::path::Path>,
) -> Result<Credentials, String> {
    let user = user
        .filter(|u| !u.trim().is_empty())
        .ok_or("no access key: pass --user or set KEYVIZ_ADMIN_USER")?;
    let password = match (password_file, password) {
        (Some(path), _) => {
            use std::io::Read as _;
            let mut text = String::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(PASSWORD_FILE_CAP).read_to_string(&mut text))
                .map_err(|e| format!("cannot read --password-file {}: {e}", path.display()))?;
            text.lines()
                .next()
                .unwrap_or("")
                .trim_end_matches('\r')
                .to_string()
        }
        (None, Some(p)) => p.to_string(),
        (None, None) => String::new(),
    };
    if password.is_empty() {
        return Err(
            "no secret: pass --password, --password-file or set KEYVIZ_ADMIN_PASSWORD".into(),
        );
    }
    Ok(Credentials {
        user: user.trim().to_string(),
        password,
    })
}

/// The cookies of one login.
#[derive(Debug, Clone)]
struct Session {
    session: String,
    csrf: Option<String>,
}

impl Session {
    fn cookie_header(&self) -> String {
        match &self.csrf {
            Some(c) => format!("{SESSION_COOKIE}={}; {CSRF_COOKIE}={c}", self.session),
            None => format!("{SESSION_COOKIE}={}", self.session),
        }
    }
}

/// A matrix answer: the cluster merge and its fan-out status.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MatrixAnswer {
    /// The matrix, validated with [`Matrix::validate`].
    #[serde(flatten)]
    pub(crate) matrix: Matrix,
    /// Per-node outcome; absent when the node did not fan out (an older node).
    #[serde(default)]
    pub(crate) fanout: Option<FanoutStatus>,
    /// The change against a baseline window, when one was asked for.
    #[serde(default)]
    pub(crate) compare: Option<keyviz::compare::Comparison>,
    /// The baseline's fan-out status, when a baseline was asked for.
    #[serde(default)]
    pub(crate) baseline_fanout: Option<FanoutStatus>,
}

/// A hot-keys answer: the cluster's hot keys and the fan-out status.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct HotKeysAnswer {
    /// The merged hot keys.
    #[serde(flatten)]
    pub(crate) hot: HotKeys,
    /// Per-node outcome; absent when the node did not fan out.
    #[serde(default)]
    pub(crate) fanout: Option<FanoutStatus>,
}

/// The part of a query shared by the matrix and hot-keys endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RangeQuery {
    /// Inclusive lower bound on column window start (unix ms); `None` = unbounded.
    pub(crate) from_unix_ms: Option<i64>,
    /// Exclusive upper bound (unix ms); `None` = unbounded.
    pub(crate) to_unix_ms: Option<i64>,
    /// Inclusive start key; `None` = the first key.
    pub(crate) key_start: Option<Vec<u8>>,
    /// Exclusive end key; `None` = unbounded.
    pub(crate) key_end: Option<Vec<u8>>,
}

impl RangeQuery {
    fn push(&self, q: &mut String) {
        use base64::Engine as _;
        if let Some(f) = self.from_unix_ms {
            q.push_str(&format!("&from_unix_ms={f}"));
        }
        if let Some(t) = self.to_unix_ms {
            q.push_str(&format!("&to_unix_ms={t}"));
        }
        // URL-safe unpadded base64 needs no percent-encoding; the API accepts it.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if let Some(k) = &self.key_start {
            q.push_str(&format!("&key_start={}", b64.encode(k)));
        }
        if let Some(k) = &self.key_end {
            q.push_str(&format!("&key_end={}", b64.encode(k)));
        }
    }
}

/// A logged-in (or logging-in) client of one node's admin API. Cheap to share behind an
/// `Arc`: calls take `&self` and run concurrently over one connection pool. Locks: the
/// session cookies (a short `std::sync::Mutex`, never held across an await) and, only
/// after a 401, an async gate held across one re-login so concurrent calls log in once.
pub(crate) struct AdminClient {
    url: AdminUrl,
    credentials: Credentials,
    timeout: Duration,
    http: Client<HttpConnector, Full<Bytes>>,
    session: Mutex<Option<Session>>,
    /// Serialises re-logins after a 401 (held across the login request; nothing else
    /// takes it).
    login_gate: tokio::sync::Mutex<()>,
}

struct RawResponse {
    status: StatusCode,
    retry_after: Option<u64>,
    set_cookies: Vec<String>,
    body: Bytes,
}

impl AdminClient {
    /// A client of `url` that will log in as `credentials`. Each request (connect, send,
    /// whole body) must finish within `timeout`. Makes no request yet.
    pub(crate) fn new(url: AdminUrl, credentials: Credentials, timeout: Duration) -> AdminClient {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(timeout));
        conn.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(conn);
        AdminClient {
            url,
            credentials,
            timeout,
            http,
            session: Mutex::new(None),
            login_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// Base URL, for messages.
    pub(crate) fn base(&self) -> String {
        self.url.base()
    }

    fn current_session(&self) -> Option<Session> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_session(&self, s: Option<Session>) {
        *self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = s;
    }

    /// One request under the deadline, body read under `cap`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: Vec<(header::HeaderName, String)>,
        body: Option<String>,
        cap: usize,
    ) -> Result<RawResponse, ClientError> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let call = self.send_inner(method, path, headers, body, cap);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                url: self.base(),
                what,
                after: self.timeout,
            }),
        }
    }

    async fn send_inner(
        &self,
        method: Method,
        path: &str,
        headers: Vec<(header::HeaderName, String)>,
        body: Option<String>,
        cap: usize,
    ) -> Result<RawResponse, ClientError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(self.url.uri(path)?)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("keyviz/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Credentials(format!("cannot build the request: {e}")))?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| ClientError::Connect {
                url: self.base(),
                detail: sanitize(&keyviz_admin::fanout::client::chain(&e), 300),
            })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let set_cookies = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .take(16)
            .map(str::to_string)
            .collect();
        // Error bodies are only quoted: read a small prefix of them.
        let cap = if status.is_success() {
            cap
        } else {
            SMALL_BODY_CAP
        };
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = || ClientError::TooLarge {
            path: path.split('?').next().unwrap_or(path).to_string(),
            cap,
        };
        if status.is_success() && declared.is_some_and(|n| n > cap as u64) {
            return Err(too_large());
        }
        let mut stream = resp.into_body();
        let initial = declared.map_or(16 * 1024, |n| usize::try_from(n).unwrap_or(cap));
        let mut buf = BytesMut::with_capacity(initial.min(cap));
        while let Some(frame) = stream.frame().await {
            let frame = frame.map_err(|e| ClientError::Connect {
                url: self.base(),
                detail: sanitize(&keyviz_admin::fanout::client::chain(&e), 300),
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len().saturating_add(data.len()) > cap {
                    if status.is_success() {
                        return Err(too_large());
                    }
                    let room = cap - buf.len();
                    buf.extend_from_slice(&data[..room]);
                    break;
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(RawResponse {
            status,
            retry_after,
            set_cookies,
            body: buf.freeze(),
        })
    }

    /// Logs in and keeps the session cookies (replacing any previous session).
    ///
    /// # Errors
    /// [`ClientError::Unauthorized`] for wrong credentials, [`ClientError::RateLimited`],
    /// transport errors, or [`ClientError::Malformed`] when the answer carries no session
    /// cookie.
    pub(crate) async fn login(&self) -> Result<(), ClientError> {
        let path = "/admin/api/v1/auth/login";
        let body = serde_json::json!({
            "access_key": self.credentials.user,
            "secret_key": self.credentials.password,
        })
        .to_string();
        let resp = self
            .send(
                Method::POST,
                path,
                vec![(header::CONTENT_TYPE, "application/json".to_string())],
                Some(body),
                SMALL_BODY_CAP,
            )
            .await?;
        if !resp.status.is_success() {
            return Err(status_error(path, &resp));
        }
        let cookie = |name: &str| {
            resp.set_cookies.iter().find_map(|c| {
                let pair = c.split(';').next()?;
                let (k, v) = pair.split_once('=')?;
                (k.trim() == name && !v.trim().is_empty()).then(|| v.trim().to_string())
            })
        };
        let session = cookie(SESSION_COOKIE).ok_or_else(|| ClientError::Malformed {
            path: path.to_string(),
            detail: format!("the login answer set no {SESSION_COOKIE} cookie"),
        })?;
        // Cookie values go back into a header: refuse anything a header cannot carry.
        if http::HeaderValue::from_str(&session).is_err() {
            return Err(ClientError::Malformed {
                path: path.to_string(),
                detail: "the session cookie is not a valid header value".to_string(),
            });
        }
        let csrf = cookie(CSRF_COOKIE).filter(|c| http::HeaderValue::from_str(c).is_ok());
        self.set_session(Some(Session { session, csrf }));
        Ok(())
    }

    /// Ends the session on the node (best effort: errors are ignored) and forgets it. Waits
    /// at most 2 s (or the request deadline, if shorter), so quitting never hangs on a node
    /// that went away.
    pub(crate) async fn logout(&self) {
        let _ = tokio::time::timeout(self.timeout.min(LOGOUT_WAIT), self.logout_inner()).await;
    }

    async fn logout_inner(&self) {
        let Some(s) = self.current_session() else {
            return;
        };
        self.set_session(None);
        let mut headers = vec![(header::COOKIE, s.cookie_header())];
        if let Some(csrf) = &s.csrf {
            headers.push((
                header::HeaderName::from_static("x-admin-csrf"),
                csrf.clone(),
            ));
        }
        let _ = self
            .send(
                Method::POST,
                "/admin/api/v1/auth/logout",
                headers,
                None,
                SMALL_BODY_CAP,
            )
            .await;
    }

    /// GETs `path` with the session (logging in first when there is none), logging in
    /// again once if the server answers 401; returns the 200 body.
    async fn get(&self, path: &str, cap: usize) -> Result<Bytes, ClientError> {
        let mut relogged = false;
        if self.current_session().is_none() {
            self.login().await?;
            relogged = true;
        }
        loop {
            let Some(s) = self.current_session() else {
                return Err(ClientError::Unauthorized {
                    code: "unauthenticated".into(),
                    message: "no session".into(),
                });
            };
            let resp = self
                .send(
                    Method::GET,
                    path,
                    vec![(header::COOKIE, s.cookie_header())],
                    None,
                    cap,
                )
                .await?;
            if resp.status == StatusCode::UNAUTHORIZED && !relogged {
                // The session expired or the node restarted with another secret. Concurrent
                // calls that see it together log in once: the first through the gate logs
                // in, the others find a new session and retry with it.
                relogged = true;
                let _gate = self.login_gate.lock().await;
                let renewed = self
                    .current_session()
                    .is_some_and(|now| now.session != s.session);
                if !renewed {
                    self.login().await?;
                }
                continue;
            }
            if resp.status != StatusCode::OK {
                return Err(status_error(path, &resp));
            }
            return Ok(resp.body);
        }
    }

    /// The cluster matrix of `series` over `range`, at most `rows` rows (the server's
    /// budget, 1..=1024).
    ///
    /// # Errors
    /// Any [`ClientError`]; [`ClientError::Malformed`] when the JSON does not decode or
    /// breaks a matrix invariant.
    pub(crate) async fn matrix(
        &self,
        series: Series,
        range: &RangeQuery,
        rows: usize,
    ) -> Result<MatrixAnswer, ClientError> {
        self.matrix_against(series, range, rows, None).await
    }

    /// [`AdminClient::matrix`] compared with the baseline window `baseline` (`[from, to)`
    /// in unix ms) when given: the answer then carries `compare`, one change per row.
    ///
    /// # Errors
    /// As [`AdminClient::matrix`]; [`ClientError::Malformed`] also when a comparison was
    /// asked for and the answer has none (a node without the compare API) or its rows do
    /// not match the matrix's.
    pub(crate) async fn matrix_against(
        &self,
        series: Series,
        range: &RangeQuery,
        rows: usize,
        baseline: Option<(i64, i64)>,
    ) -> Result<MatrixAnswer, ClientError> {
        let mut path = format!("/admin/api/v1/keyviz/matrix?series={series}&rows={rows}");
        range.push(&mut path);
        if let Some((from, to)) = baseline {
            path.push_str(&format!(
                "&baseline_from_unix_ms={from}&baseline_to_unix_ms={to}"
            ));
        }
        let body = self.get(&path, MATRIX_BODY_CAP).await?;
        let answer: MatrixAnswer = decode(&path, &body)?;
        answer
            .matrix
            .validate()
            .map_err(|e| ClientError::Malformed {
                path: base_path(&path),
                detail: e.to_string(),
            })?;
        validate_fanout(&path, answer.fanout.as_ref())?;
        validate_fanout(&path, answer.baseline_fanout.as_ref())?;
        if baseline.is_some() {
            let bad = |detail: &str| ClientError::Malformed {
                path: base_path(&path),
                detail: detail.to_string(),
            };
            let c = answer.compare.as_ref().ok_or_else(|| {
                bad("no comparison in the answer (does the node serve baselines?)")
            })?;
            if c.rows.len() != answer.matrix.rows.len()
                || c.rows
                    .iter()
                    .zip(&answer.matrix.rows)
                    .any(|(a, b)| a.bucket_id != b.bucket_id)
            {
                return Err(bad("the comparison's rows do not match the matrix rows"));
            }
        }
        Ok(answer)
    }

    /// The cluster's `k` hottest keys of `series` over `range`.
    ///
    /// # Errors
    /// Any [`ClientError`]; [`ClientError::NotServed`] when the node has no hot-keys
    /// endpoint; [`ClientError::Malformed`] when the JSON does not decode, lists more than
    /// 1000 keys, or carries impossible bounds.
    pub(crate) async fn hot_keys(
        &self,
        series: Series,
        range: &RangeQuery,
        k: usize,
    ) -> Result<HotKeysAnswer, ClientError> {
        let mut path = format!("/admin/api/v1/keyviz/hotkeys?series={series}&k={k}");
        range.push(&mut path);
        let body = self.get(&path, HOT_KEYS_BODY_CAP).await?;
        let answer: HotKeysAnswer = decode(&path, &body)?;
        let bad = |detail: String| ClientError::Malformed {
            path: base_path(&path),
            detail,
        };
        if answer.hot.keys.len() > MAX_HOT_KEYS_K {
            return Err(bad(format!(
                "{} keys listed, at most {MAX_HOT_KEYS_K} expected",
                answer.hot.keys.len()
            )));
        }
        if let Some(e) = answer
            .hot
            .keys
            .iter()
            .find(|e| !(e.lower <= e.estimate && e.estimate <= e.upper && e.share.is_finite()))
        {
            return Err(bad(format!(
                "key {} has inconsistent bounds (lower {}, estimate {}, upper {}, share {})",
                sanitize(&e.preview, 40),
                e.lower,
                e.estimate,
                e.upper,
                e.share
            )));
        }
        validate_fanout(&path, answer.fanout.as_ref())?;
        Ok(answer)
    }
}

/// Most per-node entries accepted in a fan-out block.
const MAX_FANOUT_NODES: usize = 4096;

fn validate_fanout(path: &str, f: Option<&FanoutStatus>) -> Result<(), ClientError> {
    match f {
        Some(f) if f.nodes.len() > MAX_FANOUT_NODES => Err(ClientError::Malformed {
            path: base_path(path),
            detail: format!("{} fan-out entries", f.nodes.len()),
        }),
        _ => Ok(()),
    }
}

fn base_path(path: &str) -> String {
    path.split('?').next().unwrap_or(path).to_string()
}

fn decode<T: serde::de::DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Malformed {
        path: base_path(path),
        detail: sanitize(&e.to_string(), MESSAGE_CHARS),
    })
}

/// The API's `{"error","message"}` body, when it is one.
#[derive(Deserialize)]
struct ApiErrorBody {
    error: String,
    #[serde(default)]
    message: String,
}

fn status_error(path: &str, resp: &RawResponse) -> ClientError {
    let (code, message) = match serde_json::from_slice::<ApiErrorBody>(&resp.body) {
        Ok(b) => (sanitize(&b.error, 60), sanitize(&b.message, MESSAGE_CHARS)),
        Err(_) => (
            "-".to_string(),
            sanitize(String::from_utf8_lossy(&resp.body).trim(), MESSAGE_CHARS),
        ),
    };
    match resp.status {
        StatusCode::UNAUTHORIZED => ClientError::Unauthorized { code, message },
        StatusCode::FORBIDDEN => ClientError::Forbidden { code, message },
        StatusCode::TOO_MANY_REQUESTS => ClientError::RateLimited {
            retry_after_s: resp.retry_after.unwrap_or(0),
        },
        StatusCode::NOT_FOUND => ClientError::NotServed {
            path: base_path(path),
            code,
        },
        StatusCode::SERVICE_UNAVAILABLE if code == "keyviz_disabled" => {
            ClientError::Disabled(message)
        }
        s => ClientError::Status {
            status: s.as_u16(),
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_accept_host_port_and_the_ui_url_and_refuse_https() {
        let u = AdminUrl::parse("127.0.0.1:8080").expect("host:port");
        assert_eq!(u.base(), "http://127.0.0.1:8080");
        let u = AdminUrl::parse("http://node-a:9000/admin/").expect("UI URL");
        assert_eq!(u.base(), "http://node-a:9000");
        let u = AdminUrl::parse("http://node-a").expect("default port");
        assert_eq!(u.base(), "http://node-a:80");
        for bad in [
            "",
            "https://a:1",
            "ftp://a:1",
            "http://u:p@a:1",
            "http://:80",
            "a b",
        ] {
            let e = AdminUrl::parse(bad).expect_err(bad);
            assert_eq!(e.exit_code(), EXIT_USAGE, "{bad}: {e}");
        }
    }

    #[test]
    fn sanitize_removes_terminal_escapes_and_bounds_length() {
        assert_eq!(sanitize("a\x1b[2Jb\n", 10), "a?[2Jb?");
        assert_eq!(sanitize("abcdef", 3), "abc…");
    }

    #[test]
    fn api_error_bodies_map_to_typed_errors_and_exit_codes() {
        let resp = |status: u16, body: &str, retry: Option<u64>| RawResponse {
            status: StatusCode::from_u16(status).expect("status"),
            retry_after: retry,
            set_cookies: vec![],
            body: Bytes::from(body.to_string()),
        };
        let e = status_error(
            "/x",
            &resp(
                401,
                r#"{"error":"invalid_credentials","message":"bad"}"#,
                None,
            ),
        );
        assert_eq!(e.exit_code(), EXIT_AUTH);
        assert!(e.to_string().contains("invalid_credentials"), "{e}");
        let e = status_error("/x", &resp(429, "{}", Some(60)));
        assert_eq!(e, ClientError::RateLimited { retry_after_s: 60 });
        assert_eq!(e.exit_code(), EXIT_RATE_LIMITED);
        let e = status_error("/x?y", &resp(502, "<html>\x1b]0;pwned\x07", None));
        assert_eq!(e.exit_code(), EXIT_SERVER);
        assert!(!e.to_string().contains('\x1b'), "{e}");
        let e = status_error(
            "/admin/api/v1/keyviz/hotkeys?k=1",
            &resp(404, r#"{"error":"unknown_endpoint","message":"x"}"#, None),
        );
        assert!(
            matches!(e, ClientError::NotServed { ref path, .. } if path == "/admin/api/v1/keyviz/hotkeys")
        );
    }

    #[test]
    fn range_queries_use_url_safe_base64_needing_no_escapes() {
        let mut q = String::new();
        RangeQuery {
            from_unix_ms: Some(5),
            to_unix_ms: None,
            key_start: Some(vec![0xfb, 0xff]),
            key_end: Some(b"z".to_vec()),
        }
        .push(&mut q);
        assert_eq!(q, "&from_unix_ms=5&key_start=-_8&key_end=eg");
    }
}
