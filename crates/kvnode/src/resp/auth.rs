//! Who a RESP connection is, and what it may run: `requirepass`, `AUTH`, and the role needed
//! for `KEYVIZ.*` commands.
//!
//! Without a password every connection starts as the `default` user and may run data
//! commands; with one, everything but `AUTH` and `QUIT` gets `-NOAUTH` until `AUTH` succeeds.
//! `KEYVIZ.*` and `HOTKEYS` commands follow [`KeyvizCommands`]. `AUTH <user> <password>` checks the admin
//! operators (argon2 or plain secrets); at most [`HASHING_PERMITS`] such checks run at once,
//! on blocking threads, so password guessing cannot take every core.

use std::sync::Arc;

use bytes::Bytes;
use keyviz_admin::{CredentialCheck, CredentialStore, Role};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::command::Command;
use crate::config::KeyvizCommands;

/// Most operator password checks (argon2 is CPU heavy) running at once on this node.
pub const HASHING_PERMITS: usize = 2;

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
    hashing: Semaphore,
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
    /// the `KEYVIZ.*` policy.
    pub fn new(
        requirepass: Option<&str>,
        operators: Option<Arc<dyn CredentialStore>>,
        keyviz: KeyvizCommands,
    ) -> Self {
        Self {
            requirepass: requirepass.map(|p| digest(p.as_bytes())),
            operators,
            keyviz,
            hashing: Semaphore::new(HASHING_PERMITS),
        }
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

    /// Checks `AUTH [user] password`. `Ok` is the new session; `Err` the full reply text (the
    /// old session stays, as in Redis). Operator checks wait for one of [`HASHING_PERMITS`]
    /// and run on a blocking thread.
    pub async fn authenticate(
        &self,
        user: Option<&Bytes>,
        password: &Bytes,
    ) -> Result<Session, String> {
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
                let _permit = self
                    .hashing
                    .acquire()
                    .await
                    .map_err(|_| "ERR server is shutting down".to_string())?;
                let (n, s) = (name.to_owned(), secret.to_owned());
                let check = tokio::task::spawn_blocking(move || ops.check(&n, &s))
                    .await
                    .unwrap_or(CredentialCheck::Invalid);
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
        let a = Auth::new(Some("s3cret"), ops(), KeyvizCommands::Auth);
        let s = a.new_session();
        assert_eq!(a.gate(&s, Ok(Command::DbSize)), Err(NOAUTH.into()));
        assert_eq!(
            a.gate(&s, Err("ERR unknown command".into())),
            Err(NOAUTH.into())
        );
        assert_eq!(a.gate(&s, Ok(Command::Quit)), Ok(Command::Quit));
        let wrong = a.authenticate(None, &Bytes::from("nope")).await;
        assert_eq!(wrong, Err(WRONGPASS.into()));
        let ok = a
            .authenticate(None, &Bytes::from("s3cret"))
            .await
            .expect("auth");
        assert!(ok.authenticated && ok.full);
        assert_eq!(a.gate(&ok, split()), split());
        let named = a
            .authenticate(Some(&Bytes::from("default")), &Bytes::from("s3cret"))
            .await;
        assert_eq!(named, Ok(ok));
    }

    #[tokio::test]
    async fn keyviz_commands_need_the_full_role() {
        let a = Auth::new(None, ops(), KeyvizCommands::Auth);
        let anon = a.new_session();
        assert_eq!(a.gate(&anon, Ok(Command::DbSize)), Ok(Command::DbSize));
        assert!(
            a.gate(&anon, split())
                .is_err_and(|e| e.starts_with("NOAUTH"))
        );
        let viewer = a
            .authenticate(Some(&Bytes::from("viewer")), &Bytes::from("viewpw"))
            .await
            .expect("viewer");
        assert!(
            a.gate(&viewer, split())
                .is_err_and(|e| e.starts_with("NOPERM User viewer"))
        );
        let root = a
            .authenticate(Some(&Bytes::from("root")), &Bytes::from("rootpw"))
            .await
            .expect("root");
        assert_eq!(a.gate(&root, split()), split());
        assert_eq!(
            a.authenticate(Some(&Bytes::from("root")), &Bytes::from("x"))
                .await,
            Err(WRONGPASS.into())
        );
        assert!(
            a.authenticate(None, &Bytes::from("x"))
                .await
                .is_err_and(|e| e.contains("without any password"))
        );
        let off = Auth::new(None, ops(), KeyvizCommands::Off);
        assert!(off.gate(&root, split()).is_err());
        let open = Auth::new(None, None, KeyvizCommands::Open);
        assert_eq!(open.gate(&open.new_session(), split()), split());
    }

    #[tokio::test]
    async fn hotkeys_is_gated_like_keyviz_commands() {
        use crate::resp::hotkeys::HotkeysCmd;
        let get = || Ok(Command::Hotkeys(HotkeysCmd::Get));
        let a = Auth::new(None, ops(), KeyvizCommands::Auth);
        assert!(
            a.gate(&a.new_session(), get())
                .is_err_and(|e| e.starts_with("NOAUTH") && e.contains("HOTKEYS"))
        );
        let viewer = a
            .authenticate(Some(&Bytes::from("viewer")), &Bytes::from("viewpw"))
            .await
            .expect("viewer");
        assert_eq!(
            a.gate(&viewer, get()),
            Err("NOPERM User viewer has no permissions to run the 'hotkeys|get' command".into())
        );
        let root = a
            .authenticate(Some(&Bytes::from("root")), &Bytes::from("rootpw"))
            .await
            .expect("root");
        assert_eq!(a.gate(&root, get()), get());
        let off = Auth::new(None, ops(), KeyvizCommands::Off);
        assert!(
            off.gate(&root, get())
                .is_err_and(|e| e.contains("disabled"))
        );
    }
}
