//! The JSON API under `/admin/api/v1/`: error envelope, query parsing and one file per
//! endpoint.

pub(crate) mod accept;
pub(crate) mod compare;
mod error;
pub(crate) mod hotkeys;
pub(crate) mod identity;
pub(crate) mod matrix;
pub(crate) mod nodes;
mod query;

pub use error::ApiError;
pub(crate) use error::json_ok;
pub use query::{MAX_KEY_BYTES, MatrixParams, parse_hot_keys_query, parse_matrix_query};

/// Path of the matrix endpoint.
pub const MATRIX_PATH: &str = "/admin/api/v1/keyviz/matrix";
/// Path of the hot-keys endpoint.
pub const HOT_KEYS_PATH: &str = "/admin/api/v1/keyviz/hotkeys";
/// Path of the cluster-view endpoint.
pub const NODES_PATH: &str = "/admin/api/v1/keyviz/nodes";
/// Path of the (unauthenticated) node identity endpoint used by peers.
pub const IDENTITY_PATH: &str = "/admin/api/v1/keyviz/identity";
/// Path of the login endpoint.
pub const LOGIN_PATH: &str = "/admin/api/v1/auth/login";
/// Path of the logout endpoint.
pub const LOGOUT_PATH: &str = "/admin/api/v1/auth/logout";
/// Request bodies above this many bytes are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;
