//! In-process tests of `kvnode::node::start`: a real node on 127.0.0.1 with its own data dir.

mod apply_total;
mod restart;
