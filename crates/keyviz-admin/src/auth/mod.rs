//! Operator authentication (login, session cookies, CSRF, rate limit, credentials) and
//! what a verified peer request grants.

pub(crate) mod cookies;
mod credentials;
pub(crate) mod login;
pub mod peer_token;
pub(crate) mod pool;
mod principal;
mod rate_limit;
pub(crate) mod registry;
mod session;
mod token;

pub use cookies::{CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE};
pub use credentials::{
    CredentialCheck, CredentialStore, CredentialsError, Role, StaticCredentials,
};
pub use login::LoginResponse;
pub use pool::{LoginPool, MAX_DEFAULT_LOGIN_WORKERS, PoolError, default_workers};
pub use principal::{Principal, check_csrf};
pub use rate_limit::{RateDecision, RateLimiter, client_ip};
pub use session::SessionClaims;
pub use token::TokenError;
