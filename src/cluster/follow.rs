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

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy},
};
use futures::channel::{mpsc, oneshot};
use futures::stream::FuturesOrdered;
use futures::{SinkExt, StreamExt};

use super::batch::{self, Batch};
use super::link::stream_name;
use super::own::Own;
use super::positions::{self, Applied};
use crate::message::Message;

/// Batches of one stream applied at once.
pub const WINDOW: usize = 64;

/// How often the applied positions are persisted (when they moved).
const PERSIST_EVERY: Duration = Duration::from_millis(200);

/// One core's part of a batch to append; `done` answers with the append's error, if any.
pub struct ApplyJob {
    pub msgs: Vec<Message>,
    /// The accepting node's clock when it took the batch: the retention cutoff is judged from it, so every
    /// node keeps or drops the same records.
    pub clock: i64,
    pub done: oneshot::Sender<Result<(), ApplyError>>,
}

/// Why a core did not append its part of a batch.
#[derive(Debug)]
pub enum ApplyError {
    /// Shedding, a failing disk, a stopped core: asked again until it is appended.
    Retry(String),
    /// A damaged tag file, which refuses writes until it is repaired: the part is set aside.
    Damaged(String),
}

/// What the link thread needs to follow the streams.
pub struct Follow {
    /// One sender per core, in core order (the owner of a tag is `tag::owner(hash, cores.len())`).
    pub cores: Vec<mpsc::Sender<ApplyJob>>,
    pub applied: Arc<Applied>,
    /// This process's batches its cores stored themselves.
    pub own: Arc<Own>,
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
    let mut stored = follow.applied.persisted();
    loop {
        tokio::time::sleep(PERSIST_EVERY).await;
        let now = follow.applied.persisted();
        if now == stored {
            continue;
        }
        let (path, p) = (follow.positions_file.clone(), now.clone());
        match tokio::task::spawn_blocking(move || positions::store(&path, &p)).await {
            Ok(Ok(())) => stored = now,
            Ok(Err(e)) => eprintln!(
                "cluster: persisting applied positions to {}: {e} (retrying)",
                follow.positions_file.display()
            ),
            Err(e) => eprintln!("cluster: persisting applied positions: {e}"),
        }
    }
}

/// Consumes stream `k` for good: an ephemeral pull consumer from the next sequence to apply, fetched in
/// short batches as the window has room, and created again (through the other connection) whenever it
/// fails, skips a sequence the stream still holds, or stays empty while the stream holds more. Each fetch
/// is one request with its own expiry, so a consumer lost with its server (consumers of this kind live on
/// one server) costs at most one expiry and a question to the stream, not the client's heartbeat timeouts.
async fn consume(f: Arc<Follow>, contexts: Vec<jetstream::Context>, k: usize) {
    let mut next = f.applied.get(k).saturating_add(1);
    let mut inflight = FuturesOrdered::new();
    let mut quiet = Quiet::default();
    for attempt in 0usize.. {
        let js = &contexts[attempt % contexts.len()];
        let other = &contexts[(attempt + 1) % contexts.len()];
        // The stream as its leader sees it now: a stream that holds less than this node applied was
        // recreated (or the positions file is not this cluster's): everything it holds is applied again from
        // its first message (duplicate admission stores nothing twice), never skipped. Only a leader's
        // answer counts: a leaderless stream is described by the meta leader with an empty state.
        let stream =
            match tokio::time::timeout(Duration::from_secs(2), js.get_stream(stream_name(k))).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    quiet.say(k, &format!("{e}"));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                Err(_) => {
                    quiet.say(k, "the stream's description did not come within 2s");
                    continue;
                }
            };
        let info = stream.cached_info();
        let Some(state) = led(info) else {
            quiet.say(k, "the stream has no leader (an election is on)");
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        // A stream with another id than the one this node's position counts in was deleted and created
        // again: its sequences started over, so the position means nothing in it, even where the new
        // stream has grown past it. Applied from its first message (duplicate admission stores nothing
        // twice); the position is reset before the new id is taken (`cluster/positions.rs`).
        if let Some(id) = super::link::stream_id(&info.config) {
            let had = f.applied.stream_id(k);
            if had != 0 && had != id {
                eprintln!(
                    "cluster: {} is not the stream this node followed (its id {id:x}, this node's position \
                     {} counted in {had:x}): it was deleted and created again; applying it from its first \
                     message",
                    stream_name(k),
                    next - 1
                );
                next = start_over(&f, k, &mut inflight, state.first_sequence).await;
            }
            if had == 0 && next > 1 {
                eprintln!(
                    "cluster: {}: CLUSTER-POSITIONS names no stream id for position {} (written by an earlier \
                     version): taking this stream's ({id:x}) as its own; if the stream was deleted and created \
                     again since, stop this node, delete CLUSTER-POSITIONS and start it to apply every stream \
                     again",
                    stream_name(k),
                    next - 1
                );
            }
            f.applied.set_stream_id(k, id);
        }
        if state.last_sequence + 1 < next {
            eprintln!(
                "cluster: {} holds sequences {}..={} but this node applied up to {}: the stream was recreated \
                 or CLUSTER-POSITIONS is not this cluster's; applying the stream again from its first message",
                stream_name(k),
                state.first_sequence,
                state.last_sequence,
                next - 1
            );
            next = start_over(&f, k, &mut inflight, state.first_sequence).await;
        }
        let created = async {
            stream
                .create_consumer(pull::Config {
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: next,
                    },
                    ack_policy: AckPolicy::None,
                    inactive_threshold: Duration::from_secs(30),
                    memory_storage: true,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())
        };
        let consumer = match tokio::time::timeout(Duration::from_secs(2), created).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                quiet.say(k, &e);
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            Err(_) => {
                quiet.say(k, "creating a consumer did not answer within 2s");
                continue;
            }
        };
        // Empty fetches in a row whose stream could not be asked how much it holds.
        let mut unanswered = 0;
        'fetching: loop {
            while inflight.len() >= WINDOW {
                if let Some(done) = inflight.next().await {
                    f.applied.advance(k, done);
                }
            }
            let fetch = consumer
                .batch()
                .max_messages(WINDOW - inflight.len())
                .expires(FETCH_EXPIRES)
                .messages();
            let mut batch = match tokio::time::timeout(Duration::from_secs(2), fetch).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    quiet.say(k, &format!("fetching: {e}"));
                    break 'fetching;
                }
                Err(_) => {
                    quiet.say(k, "a fetch request did not answer within 2s");
                    break 'fetching;
                }
            };
            let mut got = 0;
            // A fetch whose server went away may never end by itself.
            let deadline = tokio::time::sleep(FETCH_EXPIRES * 2);
            tokio::pin!(deadline);
            // Polls the fetch again now and then: the client's batch stream can return Pending without a
            // wake-up registered (it does so for a heartbeat), and nothing else would poll it.
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    Some(done) = inflight.next(), if !inflight.is_empty() => f.applied.advance(k, done),
                    () = &mut deadline => {
                        eprintln!(
                            "cluster: following {}: a fetch did not end within {:?}; consuming again from {next}",
                            stream_name(k),
                            FETCH_EXPIRES * 2
                        );
                        break 'fetching;
                    }
                    m = batch.next() => {
                        let msg = match m {
                            None => break,
                            Some(Ok(msg)) => msg,
                            Some(Err(e)) => {
                                eprintln!("cluster: following {}: {e} (consuming again from {next})", stream_name(k));
                                break 'fetching;
                            }
                        };
                        // The sequence, and when the stream stored the batch (its leader's clock, ns).
                        let Ok((seq, stored)) = msg
                            .info()
                            .map(|i| (i.stream_sequence, i.published.unix_timestamp_nanos() as i64))
                        else {
                            break 'fetching;
                        };
                        if seq < next {
                            continue;
                        }
                        if seq > next && !past_retention(other, k, next).await {
                            eprintln!(
                                "cluster: following {}: got {seq} while {next} is next; consuming again from {next}",
                                stream_name(k)
                            );
                            break 'fetching;
                        }
                        next = seq + 1;
                        got += 1;
                        let f = Arc::clone(&f);
                        let payload = msg.payload.clone();
                        inflight.push_back(async move { apply(&f, k, (seq, stored), &payload).await });
                    }
                }
            }
            // An empty fetch: the stream is idle, or the consumer is gone with its server (or never
            // delivers for another reason): asked through the other connection, then this one.
            if got > 0 {
                unanswered = 0;
                continue;
            }
            let last = match last_sequence(other, k).await {
                Some(last) => Some(last),
                None => last_sequence(js, k).await,
            };
            match last {
                Some(last) if last >= next => {
                    eprintln!(
                        "cluster: following {}: a fetch got nothing while the stream holds {next}..={last}; \
                         consuming again through the other connection",
                        stream_name(k)
                    );
                    break 'fetching;
                }
                Some(_) => unanswered = 0,
                None => {
                    unanswered += 1;
                    if unanswered >= UNANSWERED_LIMIT {
                        eprintln!(
                            "cluster: following {}: {unanswered} empty fetches in a row and the stream's leader \
                             does not say how much it holds; consuming again from {next}",
                            stream_name(k)
                        );
                        break 'fetching;
                    }
                }
            }
        }
    }
}

/// Follows stream `k` again from `first` (its first message): the batches in flight are let finish, then
/// the position is reset to just before it. Returns the next sequence to apply.
async fn start_over<S>(f: &Follow, k: usize, inflight: &mut S, first: u64) -> u64
where
    S: futures::Stream<Item = u64> + Unpin,
{
    while let Some(done) = inflight.next().await {
        f.applied.advance(k, done);
    }
    f.applied.reset(k, first.saturating_sub(1));
    first.max(1)
}

/// Empty fetches in a row, with the stream's leader silent about what it holds, after which the consumer is
/// created again (a consumer that never delivers looks the same as an idle stream otherwise).
const UNANSWERED_LIMIT: u32 = 4;

/// Reports why following a stream is retrying, at most every 10 s per stream (an election retries every
/// 250 ms), so that a follower that stalls says why and a long election does not flood the log.
#[derive(Default)]
struct Quiet {
    last: Option<std::time::Instant>,
    held: u32,
}

impl Quiet {
    fn say(&mut self, k: usize, why: &str) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
        {
            self.held += 1;
            return;
        }
        let more = match self.held {
            0 => String::new(),
            n => format!(" ({n} more retries since the last report)"),
        };
        eprintln!(
            "cluster: following {}: {why}; retrying{more}",
            stream_name(k)
        );
        self.last = Some(std::time::Instant::now());
        self.held = 0;
    }
}

/// The stream's state when a leader gave it; `None` while the stream has no leader (the meta leader then
/// answers with the configuration and an empty state). A server outside a cluster has no cluster part and
/// is its streams' leader.
fn led(info: &jetstream::stream::Info) -> Option<&jetstream::stream::State> {
    info.cluster
        .as_ref()
        .is_none_or(super::link::has_leader)
        .then_some(&info.state)
}

/// A core's answer to a part of a batch. Looked at again every [`LOOK_AGAIN`] as well as on its wake-up,
/// so that a wake-up lost between the threads costs that much, not the stream's progress for good; a
/// part unanswered for long (a core far behind, or stuck) is reported once.
async fn answer(
    core: usize,
    rx: oneshot::Receiver<Result<(), ApplyError>>,
) -> Result<(), ApplyError> {
    let began = std::time::Instant::now();
    let mut reported = false;
    tokio::pin!(rx);
    loop {
        tokio::select! {
            r = &mut rx => {
                return r.map_err(|_| ApplyError::Retry(format!("core {core} stopped")))?;
            }
            () = tokio::time::sleep(LOOK_AGAIN) => {
                if !reported && began.elapsed() >= SLOW_ANSWER {
                    eprintln!("cluster: core {core} has not answered a part of a batch for {SLOW_ANSWER:?} (still waiting)");
                    reported = true;
                }
            }
        }
    }
}

/// How often a core's pending answer is looked at without a wake-up.
const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// A core's answer taking this long is reported (appends wait behind group commits and checkpoints; far
/// behind that, something is wrong).
const SLOW_ANSWER: Duration = Duration::from_secs(30);

/// How long one fetch waits for messages.
const FETCH_EXPIRES: Duration = Duration::from_millis(500);

/// True when stream `k` no longer holds sequence `next` (retention removed it before this node applied it:
/// it is behind the catch-up window), which is reported; false when it does or the stream does not answer.
async fn past_retention(js: &jetstream::Context, k: usize, next: u64) -> bool {
    let first = led_state(js, k).await.map(|(first, _)| first);
    let gone = first.is_some_and(|first| first > next);
    if gone {
        eprintln!(
            "cluster: {} starts at {} but this node had applied only up to {}: the batches between are past \
             the stream's retention and missing here (docs/cluster.md, Catch-up: start this node from a peer's \
             data directory)",
            stream_name(k),
            first.unwrap_or(0),
            next - 1
        );
    }
    gone
}

/// The last sequence stream `k` holds, when its leader answers within a second.
async fn last_sequence(js: &jetstream::Context, k: usize) -> Option<u64> {
    led_state(js, k).await.map(|(_, last)| last)
}

/// The first and last sequences stream `k` holds, asked now, when its leader answers within a second.
async fn led_state(js: &jetstream::Context, k: usize) -> Option<(u64, u64)> {
    let ask = async {
        let mut s = js.get_stream(stream_name(k)).await.ok()?;
        let info = s.info().await.ok()?;
        led(info).map(|state| (state.first_sequence, state.last_sequence))
    };
    tokio::time::timeout(Duration::from_secs(1), ask)
        .await
        .ok()
        .flatten()
}

/// Applies one batch (`seq`, stored by the stream at `stored`) on every core it touches, retrying until each
/// has it; resolves to its sequence.
async fn apply(f: &Follow, k: usize, (seq, stored): (u64, i64), payload: &[u8]) -> u64 {
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
    let mine = (id.node, id.incarnation) == f.me;
    if mine && f.own.skip((id.core, id.counter)) {
        return seq;
    }
    let cores = f.cores.len();
    let mut parts: Vec<Vec<Message>> = vec![Vec::new(); cores];
    for (tag, record) in entries {
        let owner = crate::tag::owner(crate::tag::hash(&tag), cores);
        parts[owner].push(Message { tag, record });
    }
    let mut delay = Duration::from_millis(20);
    let mut last_warned: Option<std::time::Instant> = None;
    loop {
        // Only the cores that do not have their part yet are asked (again).
        let mut waits = Vec::new();
        for (core, part) in parts.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            let (done, rx) = oneshot::channel();
            let job = ApplyJob {
                msgs: part.clone(),
                clock,
                done,
            };
            let mut tx = f.cores[core].clone();
            waits.push(async move {
                let r = async {
                    tx.send(job)
                        .await
                        .map_err(|_| ApplyError::Retry(format!("core {core} stopped")))?;
                    answer(core, rx).await
                }
                .await;
                (core, r)
            });
        }
        let mut failed = Vec::new();
        for (core, r) in futures::future::join_all(waits).await {
            match r {
                Ok(()) => parts[core].clear(),
                // A damaged tag file refuses every write to its tag, on a single node too: that part is
                // set aside, reported each time, so that the stream goes on for every other tag.
                Err(ApplyError::Damaged(e)) => {
                    eprintln!(
                        "cluster: {} batch {seq}: {} records for core {core} not applied: {e}",
                        stream_name(k),
                        parts[core].len()
                    );
                    f.applied.set_aside(parts[core].len());
                    parts[core].clear();
                }
                Err(ApplyError::Retry(e)) => failed.push(e),
            }
        }
        if failed.is_empty() {
            break;
        }
        if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            eprintln!(
                "cluster: applying {} batch {seq}: {} (retrying until applied)",
                stream_name(k),
                failed.join("; ")
            );
            last_warned = Some(std::time::Instant::now());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    if (id.node, id.incarnation) != f.me {
        f.applied
            .record_lag(crate::clock::now_ns().saturating_sub(stored));
    }
    seq
}
