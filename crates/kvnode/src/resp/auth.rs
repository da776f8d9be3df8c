//! Who a RESP connection is, and what it may run: `requirepass`, `AUTH`, and the role needed
//! for `KEYVIZ.*` commands.
//!
//! Without a password every connection starts as the `default` user and may run data
//! commands; with one, everything but `AUTH` and `QUIT` gets `-NOAUTH` until `AUTH` succeeds.
//! `KEYVIZ.*` and `HOTKEYS` commands follow [`KeyvizCommands`]. `AUTH <user> <password>` checks the admin
//! operators (argon2 or plain secrets) on the admin's bounded login pool
//! (`keyviz_admin::auth::LoginPool`): [`HASHING_PERMITS`] worker threads and a queue of
//! [`AUTH_QUEUE`]; an attempt finding both full is refused at once ([`AUTH_BUSY`]), so
//! password guessing can neither take every core nor grow memory (each running argon2 check
//! holds its memory cost; nothing else is held per waiting attempt). Failed attempts are
//! rate limited per client IP with the admin login limiter's defaults ([`AUTH_RATE_LIMITED`]).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use keyviz_admin::auth::{LoginPool, PoolError, RateDecision, RateLimiter};
use keyviz_admin::{AdminConfig, CredentialCheck, CredentialStore, Role};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::command::Command;
use crate::config::KeyvizCommands;

/// Most operator password checks (argon2 is CPU and memory heavy) running at once for RESP
/// on this node (the admin login pool has its own, `AdminConfig::login_workers`).
pub const HASHING_PERMITS: usize = 2;

/// RESP `AUTH` attempts that may wait for a free check worker; more are refused at once.
pub const AUTH_QUEUE: usize = 8;

/// Reply to an operator `AUTH` when every check worker is busy and the queue is full.
pub const AUTH_BUSY: &str =
    "ERR AUTH refused: too many password checks in progress on this node, retry shortly";

/// Start of the reply to an `AUTH` from an address with too many recent failures.
pub const AUTH_RATE_LIMITED: &str = "ERR AUTH refused: too many failed attempts from this address";

/// `-NOAUTH` reply text.
pub const NOAUTH: &str = "NOAUTH Authentication required.";
/// `-WRONGPASS` reply text.
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// The node's RESP authentication settings, shared by every connection.
pub struct Auth {
    /// SHA-256 of the `default` user's password: compared in constant time at a fixed length.
    requirepass: Option<[u8; 32]>,
    operators: Option<Arc<dyn CredentialStore>>,
    keyviz: KeyvizCommands,
    /// Operator checks; only started when there are operators.
    pool: Option<LoginPool>,
    /// Failed attempts per client IP (only failures are counted).
    failures: RateLimiter,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("requirepass", &self.requirepass.is_some())
            .field("operators", &self.operators.is_some())
            .field("keyviz", &self.keyviz)
            .finish()
    }
}

/// What one connection has proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// May run commands other than `AUTH` and `QUIT`.
    pub authenticated: bool,
    /// Holds the full role (may run `KEYVIZ.*` under [`KeyvizCommands::Auth`]).
    pub full: bool,
    /// The user name, for `-NOPERM` texts.
    pub user: String,
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl Auth {
    /// Settings from the `requirepass` password (if any), the admin operators (if any) and
    /// the `KEYVIZ.*` policy. With operators, starts [`HASHING_PERMITS`] check threads
    /// (they exit when this is dropped).
    ///
    /// # Errors
    /// When the OS refuses to start a thread.
    pub fn new(
        requirepass: Option<&str>,
        operators: Option<Arc<dyn CredentialStore>>,
        keyviz: KeyvizCommands,
    ) -> std::io::Result<Self> {
        let pool = match operators {
            Some(_) => Some(LoginPool::new(HASHING_PERMITS, AUTH_QUEUE)?),
            None => None,
        };
        let d = AdminConfig::default();
        Ok(Self {
            requirepass: requirepass.map(|p| digest(p.as_bytes())),
            operators,
            keyviz,
            pool,
            failures: RateLimiter::new(
                d.login_rate_limit,
                d.login_rate_window,
                d.login_rate_max_clients,
            ),
        })
    }

    /// Whether connections start unauthenticated.
    pub fn required(&self) -> bool {
        self.requirepass.is_some()
    }

    /// The state of a new connection.
    pub fn new_session(&self) -> Session {
        Session {
            authenticated: !self.required(),
            full: false,
            user: "default".into(),
        }
    }

    /// Refuses `cmd` if `session` may not run it; `Err` is the full reply text. `AUTH` and
    /// `QUIT` always pass; parse errors are replaced by `NOAUTH` before authentication.
    pub fn gate(&self, session: &Session, cmd: Result<Command, String>) -> Result<Command, String> {
        if matches!(cmd, Ok(Command::Auth { .. } | Command::Quit)) {
            return cmd;
        }
        if !session.authenticated {
            return Err(NOAUTH.into());
        }
        let cmd = cmd?;
        if cmd.is_keyviz() {
            match self.keyviz {
                KeyvizCommands::Open => {}
                KeyvizCommands::Off => {
                    return Err(
                        "ERR KEYVIZ.* and HOTKEYS commands are disabled on this node (keyviz_commands = off)"
                            .into(),
                    );
                }
                KeyvizCommands::Auth if session.full => {}
                KeyvizCommands::Auth if !self.required() && session.user == "default" => {
                    return Err(format!(
                        "{NOAUTH} KEYVIZ.* and HOTKEYS commands need AUTH as a user with the full role"
                    ));
                }
                KeyvizCommands::Auth => {
                    return Err(format!(
                        "NOPERM User {} has no permissions to run the '{}' command",
                        session.user,
                        cmd.name()
                    ));
                }
            }
        }
        Ok(cmd)
    }

    /// Checks `AUTH [user] password` from `client` (its IP). `Ok` is the new session; `Err`
    /// the full reply text (the old session stays, as in Redis). An address with
    /// `login_rate_limit` failures within `login_rate_window` (the admin defaults: 5 per
    /// 60 s) is refused without a check until the window ends; successes are not counted.
    /// Operator checks run on the bounded pool ([`AUTH_BUSY`] at once when it is full).
    /// Takes the limiter's mutex briefly; never blocks the async worker.
    pub async fn authenticate(
        &self,
        user: Option<&Bytes>,
        password: &Bytes,
        client: &str,
    ) -> Result<Session, String> {
        if let RateDecision::Deny { retry_after_secs } = self.failures.peek(client, Instant::now())
        {
            return Err(format!(
                "{AUTH_RATE_LIMITED}, retry in {retry_after_secs} s"
            ));
        }
        let result = self.check(user, password).await;
        if result.as_ref().is_err_and(|e| e == WRONGPASS) {
            let _ = self.failures.check(client, Instant::now());
        }
        result
    }

    async fn check(&self, user: Option<&Bytes>, password: &Bytes) -> Result<Session, String> {
        let user = user.map(|u| String::from_utf8_lossy(u).into_owned());
        match user.as_deref() {
            None | Some("default") => match &self.requirepass {
                Some(want) => {
                    if bool::from(digest(password).ct_eq(want)) {
                        Ok(Session {
                            authenticated: true,
                            full: true,
                            user: "default".into(),
                        })
                    } else {
                        Err(WRONGPASS.into())
                    }
                }
                // Redis: the default user has no password, so any password is accepted...
                None if user.is_some() => Ok(self.new_session()),
                // ...but AUTH with only a password is refused as a likely misconfiguration.
                None => Err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into()),
            },
            Some(name) => {
                let Some(ops) = self.operators.clone() else {
                    return Err(WRONGPASS.into());
                };
                let Ok(secret) = std::str::from_utf8(password) else {
                    return Err(WRONGPASS.into());
                };
                let Some(pool) = &self.pool else {
                    return Err(WRONGPASS.into());
                };
                let (n, s) = (name.to_owned(), secret.to_owned());
                let check = match pool.run(move || ops.check(&n, &s)).await {
                    Ok(c) => c,
                    Err(PoolError::Busy) => return Err(AUTH_BUSY.into()),
                    Err(_) => CredentialCheck::Invalid,
                };
                match check {
                    CredentialCheck::Granted(role) => Ok(Session {
                        authenticated: true,
                        full: role == Role::Full,
                        user: name.to_owned(),
                    }),
                    _ => Err(WRONGPASS.into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use keyviz_admin::StaticCredentials;

    use super::*;

    fn split() -> Result<Command, String> {
        Ok(Command::Split(Bytes::from("k")))
    }

    fn ops() -> Option<Arc<dyn CredentialStore>> {
        Some(Arc::new(
            StaticCredentials::new()
                .with_plain("root", "rootpw", Some(Role::Full))
                .with_plain("viewer", "viewpw", Some(Role::ReadOnly)),
        ))
    }

    #[tokio::test]
    async fn requirepass_gates_everything_but_auth_and_quit() {
        let a = Auth::new(Some("s3cret"), ops(), KeyvizCommands::Auth).expect("auth");
        let s = a.new_session();
        assert_eq!(a.gate(&s, Ok(Command::DbSize)), Err(NOAUTH.into()));
        assert_eq!(
            a.gate(&s, Err("ERR unknown command".into())),
            Err(NOAUTH.into())
        );
        assert_eq!(a.gate(&s, Ok(Command::Quit)), Ok(Command::Quit));
        let wrong = a
            .authenticate(None, &Bytes::from("nope"), "192.0.2.1")
            .await;
        assert_eq!(wrong, Err(WRONGPASS.into()));
        let ok = a
            .authenticate(None, &Bytes::from("s3cret"), "192.0.2.1")
            .await
            .expect("auth");
        assert!(ok.authenticated && ok.full);
        assert_eq!(a.gate(&ok, split()), split());
        let named = a
            .authenticate(
                Some(&Bytes::from("default")),
                &Bytes::from("s3cret"),
                "192.0.2.1",
            )
            .await;
        assert_eq!(named, Ok(ok));
    }

    #[tokio::test]
    async fn keyviz_commands_need_the_full_role() {
        let a = Auth::new(None, ops(), KeyvizCommands::Auth).expect("auth");
        let anon = a.new_session();
        assert_eq!(a.gate(&anon, Ok(Command::DbSize)), Ok(Command::DbSize));
        assert!(
            a.gate(&anon, split())
                .is_err_and(|e| e.starts_with("NOAUTH"))
        );
        let viewer = a
            .authenticate(
                Some(&Bytes::from("viewer")),
                &Bytes::from("viewpw"),
                "192.0.2.1",
            )
            .await
            .expect("viewer");
        assert!(
            a.gate(&viewer, split())
                .is_err_and(|e| e.starts_with("NOPERM User viewer"))
        );
        let root = a
            .authenticate(
                Some(&Bytes::from("root")),
                &Bytes::from("rootpw"),
                "192.0.2.1",
            )
            .await
            .expect("root");
        assert_eq!(a.gate(&root, split()), split());
        assert_eq!(
            a.authenticate(Some(&Bytes::from("root")), &Bytes::from("x"), "192.0.2.1")
                .await,
            Err(WRONGPASS.into())
        );
        assert!(
            a.authenticate(None, &Bytes::from("x"), "192.0.2.1")
                .await
                .is_err_and(|e| e.contains("without any password"))
        );
        let off = Auth::new(None, ops(), KeyvizCommands::Off).expect("auth");
        assert!(off.gate(&root, split()).is_err());
        let open = Auth::new(None, None, KeyvizCommands::Open).expect("auth");
        assert_eq!(open.gate(&open.new_session(), split()), split());
    }

    #[tokio::test]
    async fn hotkeys_is_gated_like_keyviz_commands() {
        use crate::resp::hotkeys::HotkeysCmd;
        let get = || Ok(Command::Hotkeys(HotkeysCmd::Get));
        let a = Auth::new(None, ops(), KeyvizCommands::Auth).expect("auth");
        assert!(
            a.gate(&a.new_session(), get())
                .is_err_and(|e| e.starts_with("NOAUTH") && e.contains("HOTKEYS"))
        );
        let viewer = a
            .authenticate(
                Some(&Bytes::from("viewer")),
                &Bytes::from("viewpw"),
                "192.0.2.1",
            )
            .await
            .expect("viewer");
        assert_eq!(
            a.gate(&viewer, get()),
            Err("NOPERM User viewer has no permissions to run the 'hotkeys|get' command".into())
        );
        let root = a
            .authenticate(
                Some(&Bytes::from("root")),
                &Bytes::from("rootpw"),
                "192.0.2.1",
            )
            .await
            .expect("root");
        assert_eq!(a.gate(&root, get()), get());
        let off = Auth::new(None, ops(), KeyvizCommands::Off).expect("auth");
        assert!(
            off.gate(&root, get())
                .is_err_and(|e| e.contains("disabled"))
        );
    }

    /// A store whose checks take `hold` and which records how many run at once.
    struct SlowStore {
        hold: std::time::Duration,
        running: std::sync::atomic::AtomicUsize,
        peak: std::sync::atomic::AtomicUsize,
        checks: std::sync::atomic::AtomicUsize,
    }

    impl CredentialStore for SlowStore {
        fn check(&self, _key: &str, _secret: &str) -> CredentialCheck {
            use std::sync::atomic::Ordering::SeqCst;
            self.checks.fetch_add(1, SeqCst);
            let now = self.running.fetch_add(1, SeqCst) + 1;
            self.peak.fetch_max(now, SeqCst);
            std::thread::sleep(self.hold);
            self.running.fetch_sub(1, SeqCst);
            CredentialCheck::Invalid
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_operator_auths_run_on_the_bounded_pool_and_excess_is_refused_at_once() {
        use std::sync::atomic::Ordering::SeqCst;
        let store = Arc::new(SlowStore {
            hold: std::time::Duration::from_millis(200),
            running: Default::default(),
            peak: Default::default(),
            checks: Default::default(),
        });
        let a = Arc::new(Auth::new(None, Some(store.clone()), KeyvizCommands::Auth).expect("auth"));
        let attempts = 256;
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..attempts)
            .map(|i| {
                let a = a.clone();
                tokio::spawn(async move {
                    // Distinct addresses: the pool, not the per-address limiter, is under test.
                    let ip = format!("10.0.{}.{}", i / 256, i % 256);
                    let t0 = std::time::Instant::now();
                    let r = a
                        .authenticate(Some(&Bytes::from("ghost")), &Bytes::from("guess"), &ip)
                        .await;
                    (r, t0.elapsed())
                })
            })
            .collect();
        let mut busy = 0;
        let mut wrong = 0;
        for t in tasks {
            let (r, took) = t.await.expect("task");
            match r.as_ref().map_err(String::as_str) {
                Err(AUTH_BUSY) => {
                    busy += 1;
                    assert!(
                        took < std::time::Duration::from_millis(200),
                        "refused at once: {took:?}"
                    );
                }
                Err(WRONGPASS) => wrong += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            store.peak.load(SeqCst) <= HASHING_PERMITS,
            "checks at once: {}",
            store.peak.load(SeqCst)
        );
        assert_eq!(
            store.checks.load(SeqCst),
            wrong,
            "every non-refused attempt was checked"
        );
        assert!(
            wrong <= HASHING_PERMITS + AUTH_QUEUE + HASHING_PERMITS,
            "{wrong} checked"
        );
        assert!(wrong >= HASHING_PERMITS, "{wrong} checked");
        assert_eq!(busy + wrong, attempts);
        // Work is bounded: the checked attempts drain in (checked / workers) check times.
        let bound =
            store.hold * (1 + (wrong / HASHING_PERMITS) as u32) + std::time::Duration::from_secs(2);
        assert!(
            started.elapsed() < bound,
            "{:?} >= {bound:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn failed_auths_are_rate_limited_per_address_and_successes_are_not() {
        let a = Auth::new(Some("s3cret"), ops(), KeyvizCommands::Auth).expect("auth");
        // Many clients of one address authenticating correctly are never refused.
        for _ in 0..20 {
            assert!(
                a.authenticate(None, &Bytes::from("s3cret"), "192.0.2.7")
                    .await
                    .is_ok()
            );
        }
        let limit = AdminConfig::default().login_rate_limit;
        for _ in 0..limit {
            assert_eq!(
                a.authenticate(
                    Some(&Bytes::from("root")),
                    &Bytes::from("guess"),
                    "192.0.2.7"
                )
                .await,
                Err(WRONGPASS.into())
            );
        }
        // Now even the right password is refused from that address, without a check...
        let refused = a
            .authenticate(
                Some(&Bytes::from("root")),
                &Bytes::from("rootpw"),
                "192.0.2.7",
            )
            .await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.starts_with(AUTH_RATE_LIMITED)),
            "{refused:?}"
        );
        // ...while another address is unaffected.
        assert!(
            a.authenticate(
                Some(&Bytes::from("root")),
                &Bytes::from("rootpw"),
                "192.0.2.8"
            )
            .await
            .is_ok()
        );
    }
}
