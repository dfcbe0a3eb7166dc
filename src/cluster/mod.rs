//! Cluster mode on NATS JetStream (docs/cluster.md): every core's group commit is published as one replicated
//! batch to a JetStream stream, and every node applies every stream's batches to its own tag files.
//!
//! Built so far: the batch codec ([`batch`]) and the link to NATS with stream failover ([`link`]).

pub mod batch;
pub mod link;
