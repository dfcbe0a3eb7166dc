//! Ingest: turning request bodies into validated records.
pub mod decode;
pub mod depth;
pub mod lineproto;
