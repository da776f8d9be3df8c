//! The Redis protocol (RESP2) server.
//!
//! One task per connection; requests are decoded by [`codec::RespCodec`], executed one after
//! another (so a pipeline sees its own writes), and replies are flushed only when no further
//! request is already buffered, which keeps pipelining cheap. A malformed request gets
//! `-ERR Protocol error: ...` and closes that connection only. Client limits
//! ([`ClientLimits`]) and authentication ([`Auth`]) are enforced per connection.

pub mod auth;
pub mod codec;
pub mod command;
mod dispatch;
pub mod freq;
pub mod hotkeys;
pub mod scan;
mod server;

pub use auth::Auth;
pub use codec::{Limits, Reply, RespCodec};
pub use command::Command;
pub use hotkeys::{HotKeysSource, Hotkeys};
pub use server::{ClientLimits, MAX_CLIENTS, serve};
