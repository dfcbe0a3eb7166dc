//! Cluster mode on NATS JetStream (docs/cluster.md): every write a core accepts is published as replicated
//! batches to a JetStream stream before it is stored, and every node applies every stream's batches to its
//! own store, so each node is a full replica.
//!
//! - [`batch`]: the replicated batch codec;
//! - [`link`]: the NATS connections, streams and publish with stream failover (a tokio thread of its own);
//! - [`follow`]: consuming every stream on that thread and routing the batches to their cores;
//! - [`apply`]: a core appending its part of a batch (duplicate admission, log commit);
//! - [`member`]: a core publishing what it accepts, and reads waiting for an applied position;
//! - [`positions`]: the applied positions, shared and persisted;
//! - [`own`]: this process's batches the follower need not apply again.

pub mod apply;
pub mod batch;
pub mod follow;
pub mod link;
pub mod member;
pub mod own;
pub mod positions;
