//! Integration tests of the `keyviz` binary: real `keyviz node` processes on 127.0.0.1,
//! driven with `redis-cli`, `redis-benchmark`, a raw RESP client and the admin HTTP API.

mod admin_security;
mod alerts;
mod big_values;
mod cli;
mod counting;
mod crash_counts;
mod exactly_once;
mod failover;
mod hotkeys_resp;
mod internal_transport;
mod limits;
mod lincheck;
mod linearizable;
mod ops_cli;
mod resp;
mod split;
mod split_anywhere;
mod top;
mod truth;
mod util;
