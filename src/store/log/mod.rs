//! The durable log: the seam between a core's commit loop (`store/shard/commit.rs`) and whatever makes a batch
//! of records durable before it is acknowledged. Today's only implementation is the local `O_DIRECT|O_DSYNC`
//! log ([`local::LocalLog`]); a replicated log (the HA design: a JetStream stream per group of cores) is meant
//! to be a second one, so the trait speaks of batches, positions and generations, never of files.
//!
//! # The contract every implementation keeps
//!
//! 1. **Order.** Batches are durable in the order [`DurableLog::append`] was called. Each acknowledgement
//!    resolves only after every earlier one, and a failed batch fails every later batch of its generation
//!    (nothing after a failure is acknowledged, so acknowledged batches are always a prefix of what was
//!    appended).
//! 2. **Durability on acknowledgement.** `Ok(position)` means the batch survives a crash, `kill -9` or power
//!    loss of this machine (and, for a replicated log, of any one machine). `Err` means the batch may or may
//!    not have landed: it was not acknowledged, and it must never be replayed (see 4).
//! 3. **Positions order batches.** A later batch has a larger [`Position`]; positions never repeat within a
//!    data directory's life, across generations and restarts.
//! 4. **Rotation and retirement.** [`DurableLog::prepare`] readies the next generation off the commit loop;
//!    [`DurableLog::rotate`] (called by the commit loop only when no append is in flight) switches to it and
//!    returns the old generation. [`DurableLog::seal`] makes sure no batch of a retired generation past its
//!    last acknowledged one can ever be replayed (a failed write may still have landed). The shard calls
//!    [`DurableLog::retire`] only once every record of that generation is durable in tag files; after it, the
//!    generation is never replayed.
//! 5. **Replay.** What start-up replays is exactly the acknowledged batches of generations not retired, plus
//!    possibly unacknowledged batches that landed *after* them in a generation that was not sealed (a crash
//!    between a write and its acknowledgement): each record carries its slot, so a replay is idempotent.
//!    For the local log, replay is `store/recovery.rs`, run before any executor starts.
//! 6. **One writer.** Only the owning core appends; every method runs on that core's executor and no
//!    implementation holds a `RefCell` borrow across an `.await`.

pub mod local;

use futures::future::LocalBoxFuture;

use crate::store::StoreError;

/// Where a batch ends in the log: later batches have larger positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub generation: u64,
    /// Bytes (the local log) or sequence (a replicated one) within the generation, just past the batch.
    pub end: u64,
}

/// A batch's acknowledgement: its position once durable, or why it is not.
pub type Ack = LocalBoxFuture<'static, Result<Position, StoreError>>;

/// A generation the log no longer appends to; its records go to the tag files at the next checkpoint.
#[derive(Debug, Clone)]
pub struct Retired {
    pub generation: u64,
    /// Set when a batch of it failed: batches past `acked` may have landed and are not to be replayed.
    pub broken: Option<StoreError>,
    /// The end of its last acknowledged batch.
    pub acked: Position,
    /// What it holds on the device until retired: the bytes appended to it, or more (the local log counts
    /// each file's preallocation at least), so a bound on held generations bounds the space they take.
    pub bytes: u64,
    /// True once [`DurableLog::seal`] made batches past `acked` unreplayable (always true when not broken).
    pub sealed: bool,
}

pub trait DurableLog {
    /// Appends one batch (`store/wal.rs` entries) after every batch appended before it.
    fn append(&self, batch: &[u8]) -> Ack;
    /// Bytes appended to the live generation since it began (what triggers a checkpoint).
    fn bytes(&self) -> u64;
    /// True when a batch of the live generation failed: the next checkpoint moves to a new one soon.
    fn broken(&self) -> bool;
    /// Makes the next generation ready, off the commit loop, so [`DurableLog::rotate`] is quick.
    fn prepare(&self) -> LocalBoxFuture<'_, Result<(), StoreError>>;
    /// Switches to the prepared generation and returns the old one. Called with no append in flight.
    fn rotate(&self) -> LocalBoxFuture<'_, Result<Retired, StoreError>>;
    /// Makes the batches of `old` past its last acknowledged one unreplayable (a no-op when none failed).
    fn seal<'a>(&'a self, old: &'a mut Retired) -> LocalBoxFuture<'a, Result<(), StoreError>>;
    /// Forgets `old`: every record of it is durable in the tag files.
    fn retire(&self, old: Retired) -> LocalBoxFuture<'_, Result<(), StoreError>>;
    /// Closes the log at shutdown; `drop_live`: every record is in the tag files, so the live generation
    /// is removed too (else it stays, and the next start replays it).
    fn close(&self, drop_live: bool) -> LocalBoxFuture<'_, ()>;
}
