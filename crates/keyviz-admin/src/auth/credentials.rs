//! Operator credentials: access key → secret (argon2 PHC hash or plain text) and role,
//! loadable from a TOML file (format in docs/ADMIN.md).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What an operator may do. Both roles read KeyViz; `full` is reserved for state-changing
/// endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May read every KeyViz endpoint.
    ReadOnly,
    /// May also call state-changing endpoints.
    Full,
}

impl Role {
    /// The wire name: `read_only` or `full`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read_only",
            Role::Full => "full",
        }
    }
}

/// Outcome of a login check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialCheck {
    /// Key and secret match and the key has a role.
    Granted(Role),
    /// Key and secret match but the key has no admin role (403).
    NotAuthorized,
    /// Unknown key or wrong secret (401; the two are indistinguishable to the caller).
    Invalid,
}

/// The host's operator store. `check` may be slow (argon2): the login handler calls it on
/// the bounded login pool's worker threads ([`crate::AdminConfig::login_workers`]), never
/// on an async worker; implementations must take the same time for unknown keys as for
/// wrong secrets.
pub trait CredentialStore: Send + Sync + 'static {
    /// Checks one login attempt.
    fn check(&self, access_key: &str, secret: &str) -> CredentialCheck;
}

/// Problems loading a credentials file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("read credentials file {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The text is not valid TOML of the expected shape.
    #[error("parse credentials: {0}")]
    Parse(String),
    /// An entry breaks a rule (empty key, duplicate key, no or two secrets, bad hash).
    #[error("credentials entry {index} ({access_key:?}): {reason}")]
    Entry {
        /// Zero-based entry index.
        index: usize,
        /// The entry's access key.
        access_key: String,
        /// What is wrong.
        reason: String,
    },
    /// The file lists no operators.
    #[error("credentials file lists no operators")]
    Empty,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    operators: Vec<FileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    access_key: String,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_argon2: Option<String>,
}

#[derive(Clone)]
enum Secret {
    /// SHA-256 of the plain secret: compared in constant time at a fixed length.
    Plain([u8; 32]),
    /// An argon2 PHC string.
    Argon2(String),
}

#[derive(Clone)]
struct Operator {
    secret: Secret,
    role: Option<Role>,
}

/// An in-memory [`CredentialStore`], built in code or from a TOML file.
#[derive(Clone, Default)]
pub struct StaticCredentials {
    operators: HashMap<String, Operator>,
    /// Some argon2 hash from the store, verified (result ignored) for unknown keys so they
    /// cost as much as known ones.
    decoy_hash: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<&String> = self.operators.keys().collect();
        keys.sort();
        f.debug_struct("StaticCredentials")
            .field("access_keys", &keys)
            .finish()
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

thread_local! {
    /// This thread's argon2 working memory, reused by every check on the thread. The
    /// argon2 crate allocates (64-byte aligned, zeroed) and frees the whole block array on
    /// each verification, and the allocator does not reliably reuse such freed chunks:
    /// measured, RSS grew by the full memory cost (19 MiB by default) on every sequential
    /// check. Reusing one buffer per thread keeps a check's memory at one buffer per
    /// thread that ever checked (the login pool's fixed workers).
    static ARGON2_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Verifies `secret` against a PHC string the way `argon2`'s `verify_password` does
/// (algorithm, version and parameters from the string; constant-time compare of the
/// output), computing in this thread's reused working memory.
fn argon2_matches(secret: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let blocks = params.block_count();
    let expected = expected.as_bytes();
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    let hashed = ARGON2_MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        argon.hash_password_into_with_memory(secret, salt.as_ref(), out, &mut memory[..blocks])
    });
    hashed.is_ok() && bool::from(out.ct_eq(expected))
}

impl StaticCredentials {
    /// An empty store (every login fails with 401).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an operator with a plain secret; `role: None` authenticates but is refused
    /// admin access (403). Replaces an existing entry with the same key.
    #[must_use = "builder methods return the updated store"]
    pub fn with_plain(mut self, access_key: &str, secret: &str, role: Option<Role>) -> Self {
        self.operators.insert(
            access_key.to_string(),
            Operator {
                secret: Secret::Plain(digest(secret)),
                role,
            },
        );
        self
    }

    /// Adds an operator whose secret is an argon2 PHC string (`$argon2id$v=19$...`).
    ///
    /// # Errors
    /// [`CredentialsError::Entry`] when the hash does not parse.
    pub fn with_argon2(
        mut self,
        access_key: &str,
        phc_hash: &str,
        role: Option<Role>,
    ) -> Result<Self, CredentialsError> {
        if argon2::password_hash::phc::PasswordHash::new(phc_hash).is_err() {
            return Err(CredentialsError::Entry {
                index: self.operators.len(),
                access_key: access_key.to_string(),
                reason: "secret_argon2 is not a valid PHC string".into(),
            });
        }
        if self.decoy_hash.is_none() {
            self.decoy_hash = Some(phc_hash.to_string());
        }
        self.operators.insert(
            access_key.to_string(),
            Operator {
                secret: Secret::Argon2(phc_hash.to_string()),
                role,
            },
        );
        Ok(self)
    }

    /// Parses the TOML format documented in docs/ADMIN.md.
    ///
    /// # Errors
    /// [`CredentialsError`] for syntax errors, unknown fields, empty or duplicate keys, an
    /// entry with zero or two secrets, an invalid hash, or no operators at all.
    pub fn from_toml(text: &str) -> Result<Self, CredentialsError> {
        let file: FileFormat =
            toml::from_str(text).map_err(|e| CredentialsError::Parse(e.to_string()))?;
        if file.operators.is_empty() {
            return Err(CredentialsError::Empty);
        }
        let mut store = StaticCredentials::new();
        for (index, e) in file.operators.into_iter().enumerate() {
            let bad = |reason: &str| CredentialsError::Entry {
                index,
                access_key: e.access_key.clone(),
                reason: reason.to_string(),
            };
            let key = e.access_key.trim();
            if key.is_empty() {
                return Err(bad("access_key is empty"));
            }
            if store.operators.contains_key(key) {
                return Err(bad("duplicate access_key"));
            }
            store = match (&e.secret, &e.secret_argon2) {
                (Some(s), None) if !s.is_empty() => store.with_plain(key, s, e.role),
                (None, Some(h)) => store
                    .with_argon2(key, h, e.role)
                    .map_err(|_| bad("secret_argon2 is not a valid PHC string"))?,
                (Some(_), Some(_)) => return Err(bad("set exactly one of secret, secret_argon2")),
                _ => return Err(bad("set a non-empty secret or secret_argon2")),
            };
        }
        Ok(store)
    }

    /// Reads and parses a credentials file.
    ///
    /// # Errors
    /// [`CredentialsError::Io`] when unreadable, else as [`StaticCredentials::from_toml`].
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Number of operators.
    #[must_use]
    pub fn len(&self) -> usize {
        self.operators.len()
    }

    /// Whether the store has no operators.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }
}

impl CredentialStore for StaticCredentials {
    fn check(&self, access_key: &str, secret: &str) -> CredentialCheck {
        let Some(op) = self.operators.get(access_key) else {
            // Equalise timing with a real comparison of the same kind.
            match &self.decoy_hash {
                Some(h) => {
                    let _ = argon2_matches(secret.as_bytes(), h);
                }
                None => {
                    let _ = digest(secret).ct_eq(&[0u8; 32]);
                }
            }
            return CredentialCheck::Invalid;
        };
        let matched = match &op.secret {
            Secret::Plain(expected) => bool::from(digest(secret).ct_eq(expected)),
            Secret::Argon2(h) => argon2_matches(secret.as_bytes(), h),
        };
        match (matched, op.role) {
            (false, _) => CredentialCheck::Invalid,
            (true, Some(role)) => CredentialCheck::Granted(role),
            (true, None) => CredentialCheck::NotAuthorized,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{Params, PasswordHasher};

    /// A cheap argon2id hash so tests stay fast.
    pub(crate) fn cheap_hash(pw: &str) -> String {
        let params = match Params::new(256, 1, 1, None) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        match Argon2::from(params).hash_password(pw.as_bytes()) {
            Ok(h) => h.to_string(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn plain_and_argon2_secrets_grant_their_roles() {
        let toml = format!(
            r#"
[[operators]]
access_key = "alice"
role = "full"
secret = "s3cret"

[[operators]]
access_key = "bob"
role = "read_only"
secret_argon2 = "{}"

[[operators]]
access_key = "carol"
secret = "norole"
"#,
            cheap_hash("hunter2")
        );
        let store = match StaticCredentials::from_toml(&toml) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(store.len(), 3);
        assert_eq!(
            store.check("alice", "s3cret"),
            CredentialCheck::Granted(Role::Full)
        );
        assert_eq!(store.check("alice", "s3cret "), CredentialCheck::Invalid);
        assert_eq!(
            store.check("bob", "hunter2"),
            CredentialCheck::Granted(Role::ReadOnly)
        );
        assert_eq!(store.check("bob", "hunter3"), CredentialCheck::Invalid);
        assert_eq!(
            store.check("carol", "norole"),
            CredentialCheck::NotAuthorized
        );
        assert_eq!(store.check("mallory", "hunter2"), CredentialCheck::Invalid);
    }

    #[test]
    fn bad_files_are_rejected_with_the_entry_named() {
        let cases = [
            ("", "no operators"),
            ("[[operators]]\naccess_key = \"a\"\n", "secret"),
            (
                "[[operators]]\naccess_key = \" \"\nsecret = \"x\"\n",
                "empty",
            ),
            (
                "[[operators]]\naccess_key = \"a\"\nsecret = \"x\"\nsecret_argon2 = \"y\"\n",
                "exactly one",
            ),
            (
                "[[operators]]\naccess_key = \"a\"\nsecret_argon2 = \"nope\"\n",
                "PHC",
            ),
            (
                "[[operators]]\naccess_key = \"a\"\nsecret = \"x\"\n[[operators]]\naccess_key = \"a\"\nsecret = \"y\"\n",
                "duplicate",
            ),
            (
                "[[operators]]\naccess_key = \"a\"\nsecret = \"x\"\nrole = \"admin\"\n",
                "parse",
            ),
            (
                "[[operators]]\naccess_key = \"a\"\nsecret = \"x\"\ncolour = 1\n",
                "parse",
            ),
        ];
        for (text, want) in cases {
            match StaticCredentials::from_toml(text) {
                Ok(_) => panic!("accepted {text:?}"),
                Err(e) => assert!(e.to_string().contains(want), "{e} lacks {want:?}"),
            }
        }
    }

    #[test]
    fn reused_argon2_memory_verifies_like_the_argon2_crate() {
        use argon2::PasswordVerifier;
        let small = cheap_hash("pw-one");
        let params = match Params::new(1024, 2, 2, Some(24)) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let argon2i = match Argon2::new(Algorithm::Argon2i, Version::V0x10, params)
            .hash_password(b"pw-two")
        {
            Ok(h) => h.to_string(),
            Err(e) => panic!("{e}"),
        };
        // Alternate hashes, sizes and outcomes so each check runs in memory the previous
        // one dirtied.
        for _ in 0..3 {
            for (hash, right, wrong) in
                [(&small, "pw-one", "pw-two"), (&argon2i, "pw-two", "pw-one")]
            {
                assert!(argon2_matches(right.as_bytes(), hash), "{hash}");
                assert!(!argon2_matches(wrong.as_bytes(), hash), "{hash}");
                assert!(
                    Argon2::default()
                        .verify_password(right.as_bytes(), hash.as_str())
                        .is_ok()
                );
            }
        }
        assert!(!argon2_matches(b"pw", "$argon2id$v=19$m=256,t=1,p=1$bad"));
        assert!(!argon2_matches(b"pw", "not a hash"));
    }

    #[test]
    fn load_reports_missing_file() {
        let e = StaticCredentials::load(Path::new("/nonexistent/keyviz-creds.toml"));
        assert!(matches!(e, Err(CredentialsError::Io { .. })));
    }
}
