//! Integration tests of the admin surface over real HTTP on 127.0.0.1.

mod api;
mod auth;
mod fanout;
mod hotkeys;
mod leaders;
mod peer_identity;
mod security;
mod ui;
mod util;
