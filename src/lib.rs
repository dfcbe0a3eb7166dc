//! tickcore: a thread-per-core time-series ingest and as-of query engine.
//!
//! The crate is split so that everything that can be pure is pure: `record`, `tag`, `http::parse`,
//! `ingest::decode`, `query::*` and `store::wal` are plain functions over slices and are tested without
//! a runtime. `store::shard`, `http::conn` and `server` are the thin glommio edges that read sockets and
//! files and call them. See ARCHITECTURE.md for the path of a write and of a query.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod clock;
pub mod cluster;
pub mod config;
#[cfg(any(test, feature = "testing"))]
pub mod fuzzcheck;
pub mod gauge;
pub mod hist;
pub mod http;
pub mod ingest;
pub mod message;
pub mod query;
pub mod record;
pub mod server;
pub mod store;
pub mod tag;
pub mod web;
