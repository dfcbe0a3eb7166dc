//! One core's part in the cluster: publishing the writes it accepts (each request's records as replicated
//! batches, `cluster/batch.rs`, through the link) before they are stored here, and waiting for this node's
//! applied positions for reads that name one (read-your-writes across nodes).

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batch::Batcher;
use super::link::Link;
use super::own::{Own, OwnId};
use super::positions::Applied;
use crate::message::Message;

pub struct Member {
    link: Link,
    batcher: RefCell<Batcher>,
    /// The stream this core publishes to first ((node + core) mod streams: the cores of the nodes spread over
    /// the streams).
    prefer: usize,
    pub applied: Arc<Applied>,
    own: Arc<Own>,
    /// Reads waiting for a position now.
    waiting: Rc<Cell<usize>>,
    /// Records of this core's writes waiting for their PubAck now, and how many may (`--max-pending-records`,
    /// the bound of the records waiting for the local commit after it).
    publishing: Rc<Cell<usize>>,
    max_publishing: usize,
    /// Writes refused for that bound (`tickcore_admission_rejections_total{reason="replication_pending"}`).
    pub refused: Cell<u64>,
}

/// A write's batches, acknowledged: where they are, and their ids for [`Member::stored`].
pub struct Published {
    pub at: Positions,
    ids: Vec<OwnId>,
}

/// The most streams a cluster has (`--cluster-streams`).
const MAX_STREAMS: usize = 256;

/// Reads a core lets wait for a position at once; past it they are refused (503), so that waiting reads
/// cannot hold a core's memory and timers without bound.
const MAX_WAITING: usize = 1024;

/// Where a write's batches were stored: the greatest sequence per stream, as `k:seq,k:seq`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Positions(pub Vec<(usize, u64)>);

impl Positions {
    fn add(&mut self, stream: usize, seq: u64) {
        match self.0.iter_mut().find(|(k, _)| *k == stream) {
            Some((_, s)) => *s = (*s).max(seq),
            None => self.0.push((stream, seq)),
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for (i, (k, seq)) in self.0.iter().enumerate() {
            let _ = write!(s, "{}{k}:{seq}", if i > 0 { "," } else { "" });
        }
        s
    }

    /// Parses `k:seq[,k:seq...]` (what a write's answer carried).
    pub fn parse(s: &str) -> Result<Positions, String> {
        let mut p = Positions::default();
        for (i, part) in s
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .enumerate()
        {
            if i >= MAX_STREAMS {
                return Err(format!("a position names at most {MAX_STREAMS} streams"));
            }
            let bad = || {
                format!(
                    "bad position {part:?}: expected STREAM:SEQ, as a write's X-Tickcore-Position"
                )
            };
            let (k, seq) = part.split_once(':').ok_or_else(bad)?;
            let k: usize = k.parse().map_err(|_| bad())?;
            let seq: u64 = seq.parse().map_err(|_| bad())?;
            if k >= MAX_STREAMS {
                return Err(bad());
            }
            p.add(k, seq);
        }
        if p.0.is_empty() {
            return Err("empty position".into());
        }
        Ok(p)
    }
}

impl Member {
    pub fn new(
        link: Link,
        batcher: Batcher,
        (node, core): (u32, usize),
        (applied, own): (Arc<Applied>, Arc<Own>),
        max_publishing: usize,
    ) -> Member {
        let prefer = (node as usize + core) % link.streams();
        Member {
            link,
            batcher: RefCell::new(batcher),
            prefer,
            applied,
            own,
            waiting: Rc::default(),
            publishing: Rc::default(),
            max_publishing,
            refused: Cell::new(0),
        }
    }

    /// Lets a write of `n` records wait for its PubAck, counted while the guard lives; refused while
    /// records of other writes fill the bound (an election, a stalled server: writes would pile up in
    /// memory, each holding its records, bounded only by connections). A write alone always goes.
    pub fn admit(&self, n: usize) -> Result<crate::gauge::Held, String> {
        let now = self.publishing.get();
        if now > 0 && now + n > self.max_publishing {
            self.refused.set(self.refused.get() + 1);
            return Err(format!(
                "{now} records of this core's writes are waiting for the replicated log to confirm them \
                 (--max-pending-records {}); retry later",
                self.max_publishing
            ));
        }
        Ok(crate::gauge::Held::enter_n(&self.publishing, n))
    }

    /// The write `p` published is stored here: the follower need not apply its batches.
    pub fn stored(&self, p: &Published) {
        for &id in &p.ids {
            self.own.stored(id);
        }
    }

    /// The write `p` published failed to be stored here: the follower applies its batches.
    pub fn not_stored(&self, p: &Published) {
        for &id in &p.ids {
            self.own.failed(id);
        }
    }

    /// Publishes `msgs` (already validated) and resolves once every batch holding them is acknowledged by
    /// JetStream (stored on a majority of its servers), with where; the error says why not.
    pub async fn publish(&self, msgs: &[Message]) -> Result<Published, String> {
        let batches = self.batcher.borrow_mut().encode(
            crate::clock::now_ns(),
            msgs.iter().map(|m| (m.tag.as_str(), &m.record)),
        );
        let ids = batches
            .iter()
            .map(|(id, _)| (id.core, id.counter))
            .collect();
        let acks = futures::future::join_all(
            batches
                .into_iter()
                .map(|(id, bytes)| self.link.publish(self.prefer, id.msg_id(), bytes)),
        )
        .await;
        let mut at = Positions::default();
        for ack in acks {
            let ack = ack?;
            at.add(ack.stream, ack.seq);
        }
        Ok(Published { at, ids })
    }

    /// Waits until this node has applied every stream of `at` through its sequence, for at most `limit`;
    /// false when it has not by then.
    /// `Err` when too many reads wait already.
    pub async fn wait_applied(&self, at: &Positions, limit: Duration) -> Result<bool, String> {
        let applied = |m: &Member| at.0.iter().all(|&(k, seq)| m.applied.get(k) >= seq);
        if applied(self) {
            return Ok(true);
        }
        if self.waiting.get() >= MAX_WAITING {
            return Err(format!(
                "{MAX_WAITING} reads already wait on this core for a position to be applied"
            ));
        }
        let _waiting = crate::gauge::Held::enter(&self.waiting);
        let deadline = Instant::now() + limit;
        // Looked at again after 1 ms, then less and less often (at most every 32 ms).
        let mut every = Duration::from_millis(1);
        loop {
            if applied(self) {
                return Ok(true);
            }
            if at.0.iter().any(|&(k, _)| k >= self.applied.streams()) || Instant::now() >= deadline
            {
                return Ok(false);
            }
            glommio::timer::sleep(every).await;
            every = (every * 2).min(Duration::from_millis(32));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_render_and_parse() {
        let mut p = Positions::default();
        p.add(2, 7);
        p.add(0, 15);
        p.add(2, 9);
        assert_eq!(p.render(), "2:9,0:15");
        assert_eq!(Positions::parse("2:9, 0:15").unwrap(), p);
        let many = vec!["0:1"; 257].join(",");
        for bad in [
            "",
            "x",
            "1:",
            ":3",
            "1:2:3",
            "70000:1",
            "256:1",
            "-1:2",
            many.as_str(),
        ] {
            assert!(Positions::parse(bad).is_err(), "{bad:?}");
        }
    }
}
