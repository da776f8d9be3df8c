//! Integration tests of the `keyviz` binary: real `keyviz node` processes on 127.0.0.1,
//! driven with `redis-cli`, `redis-benchmark`, a raw RESP client and the admin HTTP API.

mod big_values;
mod cli;
mod counting;
mod failover;
mod internal_transport;
mod resp;
mod split;
mod util;
