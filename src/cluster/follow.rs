//! The apply path's link-thread half: one ordered consumer per stream, from this node's applied position on,
//! each batch decoded and its entries routed to their owning cores (`cluster/apply.rs` appends them there,
//! through the same duplicate admission and log commit as a client's write), and the applied positions
//! advanced and persisted (`cluster/positions.rs`).
//!
//! Up to [`WINDOW`] batches of a stream are applied at once; a position advances only over a prefix of
//! batches all applied (in stream order), so the persisted position never passes a gap. A batch a core
//! refuses (shedding, a failing disk) is retried until it is applied: a stream never skips a batch. A batch
//! that does not decode (not ours, or damaged) is reported and skipped: it can never apply.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, consumer::DeliverPolicy};
use futures::channel::{mpsc, oneshot};
use futures::stream::FuturesOrdered;
use futures::{SinkExt, StreamExt};

use super::batch::{self, Batch};
use super::link::stream_name;
use super::positions::{self, Applied};
use crate::message::Message;

/// Batches of one stream applied at once.
pub const WINDOW: usize = 64;

/// How often the applied positions are persisted (when they moved).
const PERSIST_EVERY: Duration = Duration::from_millis(200);

/// One core's part of a batch to append; `done` answers with the append's error, if any.
pub struct ApplyJob {
    pub msgs: Vec<Message>,
    pub done: oneshot::Sender<Result<(), String>>,
}

/// What the link thread needs to follow the streams.
pub struct Follow {
    /// One sender per core, in core order (the owner of a tag is `tag::owner(hash, cores.len())`).
    pub cores: Vec<mpsc::Sender<ApplyJob>>,
    pub applied: Arc<Applied>,
    pub positions_file: PathBuf,
    /// This process's batch ids (node, incarnation): its own batches count for no replication lag.
    pub me: (u32, u64),
}

/// Follows every stream until the runtime stops.
pub async fn run(follow: Follow, contexts: Vec<jetstream::Context>) {
    let follow = Arc::new(follow);
    for k in 0..follow.applied.streams() {
        let (f, contexts) = (Arc::clone(&follow), contexts.clone());
        tokio::spawn(async move { consume(f, contexts, k).await });
    }
    let mut stored = follow.applied.all();
    loop {
        tokio::time::sleep(PERSIST_EVERY).await;
        let now = follow.applied.all();
        if now == stored {
            continue;
        }
        let (path, seqs) = (follow.positions_file.clone(), now.clone());
        match tokio::task::spawn_blocking(move || positions::store(&path, &seqs)).await {
            Ok(Ok(())) => stored = now,
            Ok(Err(e)) => eprintln!(
                "cluster: persisting applied positions to {}: {e} (retrying)",
                follow.positions_file.display()
            ),
            Err(e) => eprintln!("cluster: persisting applied positions: {e}"),
        }
    }
}

/// Consumes stream `k` for good: an ordered consumer from the applied position, created again (through the
/// other connection) whenever it fails.
async fn consume(f: Arc<Follow>, contexts: Vec<jetstream::Context>, k: usize) {
    let mut next = f.applied.get(k) + 1;
    let mut inflight = FuturesOrdered::new();
    for attempt in 0usize.. {
        let js = &contexts[attempt % contexts.len()];
        let messages = async {
            let stream = js
                .get_stream(stream_name(k))
                .await
                .map_err(|e| e.to_string())?;
            let consumer = stream
                .create_consumer(OrderedConfig {
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: next,
                    },
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            consumer.messages().await.map_err(|e| e.to_string())
        };
        let mut messages = match tokio::time::timeout(Duration::from_secs(5), messages).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                eprintln!("cluster: following {}: {e} (retrying)", stream_name(k));
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            Err(_) => continue,
        };
        loop {
            tokio::select! {
                Some(done) = inflight.next(), if !inflight.is_empty() => {
                    f.applied.advance(k, done);
                }
                got = messages.next(), if inflight.len() < WINDOW => {
                    let msg = match got {
                        Some(Ok(msg)) => msg,
                        Some(Err(e)) => {
                            eprintln!("cluster: following {}: {e} (consuming again from {next})", stream_name(k));
                            break;
                        }
                        None => break,
                    };
                    let seq = match msg.info() {
                        Ok(info) => info.stream_sequence,
                        Err(e) => {
                            eprintln!("cluster: a message of {} without its sequence: {e}", stream_name(k));
                            break;
                        }
                    };
                    if seq < next {
                        continue;
                    }
                    if seq > next {
                        // Retention removed what this node had not applied: it is behind the catch-up window.
                        eprintln!(
                            "cluster: {} resumes at {seq}, but this node had applied only up to {}: batches \
                             {next}..{} are past the stream's retention and missing here (docs/cluster.md, \
                             Catch-up: start this node from a peer's data directory)",
                            stream_name(k), next - 1, seq - 1
                        );
                    }
                    next = seq + 1;
                    let f = Arc::clone(&f);
                    let payload = msg.payload.clone();
                    inflight.push_back(async move { apply(&f, k, seq, &payload).await });
                }
            }
        }
    }
}

/// Applies one batch on every core it touches, retrying until each has it; resolves to its sequence.
async fn apply(f: &Follow, k: usize, seq: u64, payload: &[u8]) -> u64 {
    let batch = match batch::decode(payload) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "cluster: {} message {seq} is not a batch this engine can apply ({e}); skipped",
                stream_name(k)
            );
            return seq;
        }
    };
    let Batch { id, clock, entries } = batch;
    let cores = f.cores.len();
    let mut parts: Vec<Vec<Message>> = vec![Vec::new(); cores];
    for (tag, record) in entries {
        let owner = crate::tag::owner(crate::tag::hash(&tag), cores);
        parts[owner].push(Message { tag, record });
    }
    let mut delay = Duration::from_millis(20);
    let mut warned = false;
    loop {
        let mut waits = Vec::new();
        for (core, part) in parts.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            let (done, rx) = oneshot::channel();
            let job = ApplyJob {
                msgs: part.clone(),
                done,
            };
            let mut tx = f.cores[core].clone();
            waits.push(async move {
                tx.send(job)
                    .await
                    .map_err(|_| format!("core {core} stopped"))?;
                rx.await.map_err(|_| format!("core {core} stopped"))?
            });
        }
        let failed: Vec<String> = futures::future::join_all(waits)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if failed.is_empty() {
            break;
        }
        if !warned {
            eprintln!(
                "cluster: applying {} batch {seq}: {} (retrying until applied)",
                stream_name(k),
                failed.join("; ")
            );
            warned = true;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    if (id.node, id.incarnation) != f.me {
        f.applied
            .record_lag(crate::clock::now_ns().saturating_sub(clock));
    }
    seq
}
