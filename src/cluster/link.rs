//! The link to NATS JetStream (docs/cluster.md): one thread of its own running a tokio runtime (the official
//! client, `async-nats`, needs one), reached from the glommio cores through a channel; each publish answers on
//! a oneshot the core awaits (a foreign wake, which glommio supports).
//!
//! A publish goes to the caller's preferred stream first. Without a PubAck within the failover deadline it is
//! sent to the next stream, through the other connection, and so on round the streams, until the attempts
//! run out: an election on one stream (4-9 s in NATS, not configurable) or a paused server does not stop
//! writes. A batch that timed out may still land, so it can be stored in two streams; its records are
//! identical, and duplicate admission stores them once on every node. Within one stream the batch id
//! (`Nats-Msg-Id`) makes a retry a duplicate, which JetStream acknowledges without storing it again.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;
use futures::channel::oneshot;

use super::follow::Follow;

/// What the link needs to know.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// NATS servers' URLs; each of the two connections starts at a different one.
    pub urls: Vec<String>,
    /// Streams `tickcore-wal-0..streams`.
    pub streams: usize,
    /// Replicas of each stream (3 in production: a majority survives one machine).
    pub replicas: usize,
    /// How long a stream keeps batches: the catch-up window.
    pub max_age: Duration,
    /// How long a publish waits for its PubAck before it goes to the next stream.
    pub failover: Duration,
    /// Publish attempts (each on the next stream) before the batch fails.
    pub attempts: usize,
    /// How long the start waits for NATS (connections and streams).
    pub start_timeout: Duration,
}

impl LinkConfig {
    /// The defaults of docs/cluster.md for the servers in `urls` (comma-separated): 3 streams, R3, a 7-day
    /// catch-up window, a 250 ms failover deadline, 6 attempts (twice round the streams), 60 s to start.
    pub fn new(urls: &str) -> LinkConfig {
        LinkConfig {
            urls: urls.split(',').map(|u| u.trim().to_string()).collect(),
            streams: 3,
            replicas: 3,
            max_age: Duration::from_secs(7 * 24 * 3600),
            failover: Duration::from_millis(250),
            attempts: 6,
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// Where a batch was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub stream: usize,
    pub seq: u64,
    /// JetStream had this batch id already (an earlier attempt landed): stored once, at `seq`.
    pub duplicate: bool,
    /// Streams tried before this one acknowledged.
    pub failovers: usize,
}

pub fn stream_name(k: usize) -> String {
    format!("tickcore-wal-{k}")
}

/// A random id for stream `k`, never 0 (0 means "no id").
fn new_stream_id(k: usize) -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new()
        .hash_one((k, crate::clock::now_ns()))
        .max(1)
}

pub fn subject(k: usize) -> String {
    format!("tickcore.wal.{k}")
}

struct Publish {
    prefer: usize,
    id: String,
    payload: Bytes,
    reply: oneshot::Sender<Result<Acked, String>>,
}

/// The cores' handle on the link thread; cheap to clone.
#[derive(Clone)]
pub struct Link {
    tx: tokio::sync::mpsc::UnboundedSender<Publish>,
    streams: usize,
    /// The largest message the servers take (`max_payload`, the smallest the two connections saw), less room
    /// for the headers: what a batch may hold.
    max_batch: usize,
}

/// NATS's default `max_payload`, assumed while no connection has told its own.
const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// Bytes of a message's `max_payload` left for its headers (`Nats-Msg-Id` and the protocol's own).
const HEADER_ROOM: usize = 1024;

impl Link {
    /// Starts the link thread: two connections, and every stream created (or checked, when it exists) before
    /// this returns; an error says what NATS refused or did not answer. With `follow`, the thread also
    /// consumes every stream and applies it on this node's cores (`cluster/follow.rs`).
    pub fn start(cfg: LinkConfig, follow: Option<Follow>) -> Result<Link, String> {
        if cfg.urls.is_empty() || cfg.streams == 0 || cfg.attempts == 0 {
            return Err("the NATS link needs a server, a stream and an attempt".into());
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let streams = cfg.streams;
        std::thread::Builder::new()
            .name("nats-link".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("the NATS link's runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let timeout = cfg.start_timeout;
                    let (contexts, max_payload) = match tokio::time::timeout(timeout, connect(&cfg)).await {
                        Ok(Ok(c)) => c,
                        Ok(Err(e)) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                        Err(_) => {
                            let _ = ready_tx.send(Err(format!(
                                "NATS at {} did not answer within {timeout:?} (connections and streams)",
                                cfg.urls.join(",")
                            )));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(max_payload));
                    if let Some(follow) = follow {
                        tokio::spawn(super::follow::run(follow, contexts.clone()));
                    }
                    serve(cfg, contexts, rx).await;
                });
            })
            .map_err(|e| format!("starting the NATS link thread: {e}"))?;
        let max_payload = ready_rx
            .recv()
            .map_err(|_| "the NATS link thread ended at start".to_string())??;
        Ok(Link {
            tx,
            streams,
            max_batch: max_payload.saturating_sub(HEADER_ROOM),
        })
    }

    pub fn streams(&self) -> usize {
        self.streams
    }

    /// The largest batch a message may carry on these servers.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Publishes one batch (`id` is its `Nats-Msg-Id`), its preferred stream first; resolves once a stream
    /// acknowledged it, or with why none did.
    pub fn publish(
        &self,
        prefer: usize,
        id: String,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Acked, String>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(Publish {
            prefer: prefer % self.streams,
            id,
            payload: Bytes::from(payload),
            reply,
        });
        async move {
            sent.map_err(|_| "the NATS link has stopped".to_string())?;
            rx.await
                .map_err(|_| "the NATS link has stopped".to_string())?
        }
    }
}

/// Two connections (starting at different servers) and the streams, created or checked; with the smallest
/// `max_payload` the connections were told.
async fn connect(cfg: &LinkConfig) -> Result<(Vec<jetstream::Context>, usize), String> {
    let mut contexts = Vec::new();
    let mut clients = Vec::new();
    let n = cfg.urls.len();
    for first in 0..2 {
        let order: Vec<String> = (0..n).map(|i| cfg.urls[(first + i) % n].clone()).collect();
        let addrs = order
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("NATS server URL in {}: {e}", order.join(",")))?;
        let client = async_nats::ConnectOptions::new()
            .retain_servers_order()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .ping_interval(Duration::from_secs(2))
            .max_reconnects(None)
            .connect(addrs)
            .await
            .map_err(|e| format!("connecting to NATS at {}: {e}", order.join(",")))?;
        clients.push(client.clone());
        contexts.push(jetstream::new(client));
    }
    for k in 0..cfg.streams {
        ensure_stream(&contexts[0], cfg, k).await?;
    }
    refuse_stream_past(&contexts[0], cfg.streams).await?;
    spread_leaders(&contexts[0], cfg).await;
    // Known once a connection has its server's INFO (the streams' requests above went through one).
    let max_payload = clients
        .iter()
        .map(|c| c.server_info().max_payload)
        .filter(|&m| m > 0)
        .min()
        .unwrap_or(DEFAULT_MAX_PAYLOAD);
    Ok((contexts, max_payload))
}

/// How often the link checks that the streams' leaders are still spread (an election after a fault may put
/// two on one server).
const SPREAD_EVERY: Duration = Duration::from_secs(10);

/// Spreads the streams' leaders over the servers: a publish fails over only to a stream led by another
/// server, and elections may put several leaders on one. A stream whose leader leads more than its share
/// is asked to step down to the least-loaded server among its replicas (named, so that one request moves
/// it where it should go, and the engines, which all look at once, ask for the same move), until none
/// does or after a bounded number of tries (best effort: writes work either way, with less room to fail
/// over, which it reports).
async fn spread_leaders(js: &jetstream::Context, cfg: &LinkConfig) {
    let servers = cfg.urls.len().min(cfg.replicas).max(1);
    let share = cfg.streams.div_ceil(servers);
    for _ in 0..20 {
        let mut groups = Vec::with_capacity(cfg.streams);
        for k in 0..cfg.streams {
            let group = match js.get_stream(stream_name(k)).await {
                Ok(mut s) => s.info().await.ok().and_then(|i| i.cluster.clone()),
                Err(_) => None,
            };
            match group {
                Some(g) if has_leader(&g) => groups.push(g),
                // A stream without a leader (an election is on): looked at again in a moment.
                _ => break,
            }
        }
        if groups.len() == cfg.streams {
            match overloaded(&groups, share) {
                None => return,
                Some((k, to)) => {
                    let subject = format!("STREAM.LEADER.STEPDOWN.{}", stream_name(k));
                    let ask = serde_json::json!({ "placement": { "preferred": to } });
                    let _: Result<serde_json::Value, _> = js.request(subject, &ask).await;
                }
            }
        }
        // An election takes a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!(
        "nats link: the leaders of streams {} are not spread over the servers yet; a publish fails over \
         only to a stream led elsewhere",
        (0..cfg.streams).map(stream_name).collect::<Vec<_>>().join(", ")
    );
}

/// Whether a stream's group has a leader (an empty name while an election is on).
pub fn has_leader(group: &stream::ClusterInfo) -> bool {
    group.leader.as_deref().is_some_and(|l| !l.is_empty())
}

/// The stream to move and where: the last stream whose leader leads more than `share` streams, to the
/// replica (current, online) leading the fewest (ties by name), when it leads fewer than `share`. Every
/// engine that sees the same leaders picks the same move.
fn overloaded(groups: &[stream::ClusterInfo], share: usize) -> Option<(usize, String)> {
    let leader = |g: &stream::ClusterInfo| g.leader.clone().unwrap_or_default();
    let leads = |name: &str| groups.iter().filter(|g| leader(g) == name).count();
    let k = (0..groups.len())
        .rev()
        .find(|&k| leads(&leader(&groups[k])) > share)?;
    let to = groups[k]
        .replicas
        .iter()
        .filter(|p| p.current && !p.offline)
        .map(|p| (leads(&p.name), p.name.clone()))
        .filter(|(n, _)| *n < share)
        .min()?;
    Some((k, to.1))
}

/// The stream metadata key holding how many streams the cluster has (`--cluster-streams` of the engine
/// that created the stream): every node must follow all of them, so all must have the same count.
const STREAMS_KEY: &str = "tickcore-streams";

/// The stream metadata key holding the stream's random id, drawn by the engine that created it: a stream
/// deleted and created again gets another (`cluster/positions.rs`).
const ID_KEY: &str = "tickcore-stream-id";

/// The id in a stream's configuration, when the engine that created it drew one.
pub fn stream_id(config: &stream::Config) -> Option<u64> {
    config
        .metadata
        .get(ID_KEY)
        .and_then(|id| u64::from_str_radix(id, 16).ok())
        .filter(|&id| id != 0)
}

/// Refuses a cluster whose NATS holds stream `streams` (one past this engine's last): a node started with
/// more `--cluster-streams` created it and may have written to it, and this engine would never follow it,
/// so it would silently miss those writes.
async fn refuse_stream_past(js: &jetstream::Context, streams: usize) -> Result<(), String> {
    let name = stream_name(streams);
    match tokio::time::timeout(Duration::from_secs(2), js.get_stream(&name)).await {
        Ok(Ok(_)) => Err(format!(
            "stream {name} exists, but this engine follows {streams} streams (--cluster-streams {streams}): a \
             node with more streams wrote there, and this one would miss those writes; start every node with \
             the same --cluster-streams (docs/cluster.md)"
        )),
        // Not found (or not answered: the per-stream metadata check still catches a mismatch in count).
        _ => Ok(()),
    }
}

/// Creates stream `k`, or checks that an existing one is configured as the cluster needs.
async fn ensure_stream(js: &jetstream::Context, cfg: &LinkConfig, k: usize) -> Result<(), String> {
    let want = stream::Config {
        name: stream_name(k),
        subjects: vec![subject(k)],
        num_replicas: cfg.replicas,
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: cfg.max_age,
        duplicate_window: Duration::from_secs(120),
        metadata: [
            (STREAMS_KEY.to_string(), cfg.streams.to_string()),
            (ID_KEY.to_string(), format!("{:x}", new_stream_id(k))),
        ]
        .into(),
        ..Default::default()
    };
    loop {
        match js.get_or_create_stream(want.clone()).await {
            Ok(mut s) => {
                // A stream another engine created a moment ago may not be described yet ("stream not
                // found"): asked again, like its creation, until the start's timeout.
                let Ok(info) = s.info().await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let have = &info.config;
                let differs = [
                    ("replicas", have.num_replicas != want.num_replicas),
                    ("storage", have.storage != want.storage),
                    ("subjects", have.subjects != want.subjects),
                    ("retention", have.retention != want.retention),
                ];
                if let Some((field, _)) = differs.iter().find(|(_, d)| *d) {
                    return Err(format!(
                        "stream {} exists with another {field} than this engine needs (docs/cluster.md)",
                        want.name
                    ));
                }
                // Streams created before the count was recorded carry none: nothing to compare.
                if let Some(count) = have.metadata.get(STREAMS_KEY) {
                    if *count != cfg.streams.to_string() {
                        return Err(format!(
                            "stream {} belongs to a cluster of {count} streams, but this engine has \
                             --cluster-streams {}: every node must follow every stream, so all must have the \
                             same count (docs/cluster.md)",
                            want.name, cfg.streams
                        ));
                    }
                }
                return Ok(());
            }
            // The meta leader may still be electing right after the servers start: retry until the
            // start's timeout.
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn serve(
    cfg: LinkConfig,
    contexts: Vec<jetstream::Context>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Publish>,
) {
    let spreader = {
        let (cfg, js) = (cfg.clone(), contexts[0].clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SPREAD_EVERY).await;
                spread_leaders(&js, &cfg).await;
            }
        })
    };
    let suspects = Arc::new(Suspects::new(cfg.streams, contexts.len()));
    while let Some(p) = rx.recv().await {
        let (cfg, contexts, suspects) = (cfg.clone(), contexts.clone(), Arc::clone(&suspects));
        tokio::spawn(async move {
            let r = publish(&cfg, &contexts, &suspects, p.prefer, &p.id, p.payload).await;
            let _ = p.reply.send(r);
        });
    }
    spreader.abort();
}

/// How long a stream or connection that missed a deadline is tried only after the others: long enough that
/// publishes stop paying the failover deadline during an election (4-9 s), short enough to come back soon.
const SUSPECT_FOR: Duration = Duration::from_secs(3);

/// Streams and connections that recently missed the failover deadline or failed, until when (milliseconds
/// since the link started; 0: not suspect). A timeout cannot tell a stream without a leader from a paused
/// server behind the connection, so both are suspected; a success clears both.
struct Suspects {
    epoch: std::time::Instant,
    streams: Vec<AtomicU64>,
    connections: Vec<AtomicU64>,
    /// Recent acknowledgement latency, microseconds (an exponentially weighted mean of successes).
    ack_us: AtomicU64,
}

/// How many times the recent acknowledgement latency a publish waits before it fails over, when that is
/// more than the configured deadline: under saturation every stream answers slowly, and sending a batch
/// again elsewhere would only add work; a stream without a leader stands out against the others.
const SLOW_FACTOR: u64 = 4;
/// The deadline never grows past this many times the configured one.
const SLOW_CAP: u32 = 8;

impl Suspects {
    fn new(streams: usize, connections: usize) -> Suspects {
        Suspects {
            epoch: std::time::Instant::now(),
            streams: (0..streams).map(|_| AtomicU64::new(0)).collect(),
            connections: (0..connections).map(|_| AtomicU64::new(0)).collect(),
            ack_us: AtomicU64::new(0),
        }
    }

    fn acked_in(&self, took: Duration) {
        let us = took.as_micros() as u64;
        let old = self.ack_us.load(Ordering::Relaxed);
        self.ack_us
            .store(old - old / 16 + us / 16, Ordering::Relaxed);
    }

    /// The failover deadline now: the configured one, or more while every stream is slow.
    fn deadline(&self, failover: Duration) -> Duration {
        let slow = Duration::from_micros(self.ack_us.load(Ordering::Relaxed) * SLOW_FACTOR);
        slow.clamp(failover, failover * SLOW_CAP)
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn suspect(&self, stream: usize, connection: usize) {
        let until = self.now() + SUSPECT_FOR.as_millis() as u64;
        self.streams[stream].store(until, Ordering::Relaxed);
        self.connections[connection].store(until, Ordering::Relaxed);
    }

    fn clear(&self, stream: usize, connection: usize) {
        self.streams[stream].store(0, Ordering::Relaxed);
        self.connections[connection].store(0, Ordering::Relaxed);
    }

    /// `0..n` starting at `first`, the ones not suspect first (each group in that order).
    fn order(&self, list: &[AtomicU64], first: usize) -> Vec<usize> {
        let now = self.now();
        let n = list.len();
        let mut v: Vec<usize> = (0..n).map(|i| (first + i) % n).collect();
        v.sort_by_key(|&i| list[i].load(Ordering::Relaxed) > now);
        v
    }
}

async fn publish(
    cfg: &LinkConfig,
    contexts: &[jetstream::Context],
    suspects: &Suspects,
    prefer: usize,
    id: &str,
    payload: Bytes,
) -> Result<Acked, String> {
    let streams = suspects.order(&suspects.streams, prefer);
    let connections = suspects.order(&suspects.connections, 0);
    let mut last = String::new();
    for attempt in 0..cfg.attempts {
        let k = streams[attempt % streams.len()];
        let c = connections[attempt % connections.len()];
        let js = &contexts[c];
        let msg = PublishMessage::build()
            .payload(payload.clone())
            .message_id(id);
        let once = async {
            let ack = js
                .send_publish(subject(k), msg)
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        };
        let deadline = suspects.deadline(cfg.failover);
        let sent = std::time::Instant::now();
        match tokio::time::timeout(deadline, once).await {
            Ok(Ok(ack)) => {
                suspects.clear(k, c);
                suspects.acked_in(sent.elapsed());
                return Ok(Acked {
                    stream: k,
                    seq: ack.sequence,
                    duplicate: ack.duplicate,
                    failovers: attempt,
                });
            }
            Ok(Err(e)) => last = format!("stream {}: {e}", stream_name(k)),
            Err(_) => {
                last = format!(
                    "stream {}: no acknowledgement within {deadline:?}",
                    stream_name(k)
                )
            }
        }
        suspects.suspect(k, c);
    }
    Err(format!(
        "no stream stored the batch in {} attempts (last: {last})",
        cfg.attempts
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stream groups led by `leaders`, each with the three servers a, b, c as replicas (the leader among
    /// them is listed too; `overloaded` only ever picks a server leading fewer than its share).
    fn groups(leaders: &[&str]) -> Vec<stream::ClusterInfo> {
        leaders
            .iter()
            .map(|l| stream::ClusterInfo {
                leader: Some(l.to_string()),
                replicas: ["a", "b", "c"]
                    .iter()
                    .filter(|p| *p != l)
                    .map(|p| stream::PeerInfo {
                        name: p.to_string(),
                        current: true,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn spread_leaders_need_no_move() {
        assert_eq!(overloaded(&groups(&["a", "b", "c"]), 1), None);
        assert_eq!(overloaded(&groups(&["a", "b", "c", "a"]), 2), None);
    }

    #[test]
    fn the_last_stream_of_a_crowded_leader_moves_to_the_idlest_replica() {
        assert_eq!(
            overloaded(&groups(&["a", "a", "b"]), 1),
            Some((1, "c".into()))
        );
        assert_eq!(
            overloaded(&groups(&["a", "a", "a"]), 1),
            Some((2, "b".into()))
        );
        // c is behind (not current) or offline in stream 1's group: b, the other replica, leads its
        // share already, so nothing moves.
        let mut g = groups(&["a", "a", "b"]);
        g[1].replicas
            .iter_mut()
            .for_each(|p| p.current = p.name != "c");
        assert_eq!(overloaded(&g, 1), None);
        let mut g = groups(&["a", "a", "b"]);
        g[1].replicas
            .iter_mut()
            .for_each(|p| p.offline = p.name == "c");
        assert_eq!(overloaded(&g, 1), None);
    }
}
