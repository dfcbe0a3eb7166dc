//! Command-line flags and their `TICKCORE_*` environment stand-ins (flag > environment > default).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Largest size flag in MiB (a PiB): its byte count (`<< 20`) cannot overflow.
const MIB_MAX: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    /// A 204 means the records are on stable storage (an O_DSYNC write-ahead log write, group commit).
    Sync,
    /// A 204 means the records are in memory and visible; they reach the disk within milliseconds
    /// (bounded by one log commit, at most ~1 s under overload); a crash can lose that window.
    Async,
}

/// tickcore: a thread-per-core time-series ingest and as-of query engine.
#[derive(Debug, Clone, Parser)]
#[command(version, about, long_about = None)]
pub struct Config {
    /// Address to listen on (every core gets its own SO_REUSEPORT socket on it). Port 0 picks a free port.
    #[arg(long, env = "TICKCORE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Data directory (created if missing; locked while the engine runs).
    #[arg(long, env = "TICKCORE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// CPUs that get a pinned executor, e.g. `1`, `0,1` or `0-3`; `all` (the default): every online CPU.
    #[arg(long, env = "TICKCORE_CPUS", value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// What a 204 promises: `sync` (durable) or `async` (visible, durable moments later).
    #[arg(long, env = "TICKCORE_DURABILITY", value_enum, default_value = "sync")]
    pub durability: Durability,
    /// Largest request body accepted, in bytes (413 above); at most 4 GiB.
    #[arg(long, env = "TICKCORE_MAX_BODY", default_value_t = 16 << 20,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1 << 32))]
    pub max_body: usize,
    /// Keep records whose time is within this long of now (e.g. `30d`, `12h`); older segments are deleted.
    #[arg(long, env = "TICKCORE_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub retention: Duration,
    /// Time span of one segment file, fixed when the data directory is created. Default: 1 day, or
    /// retention/8 when that is shorter (so retention can drop data in steps of at most 1/8).
    #[arg(long, env = "TICKCORE_SEGMENT", value_parser = parse_duration)]
    pub segment: Option<Duration>,
    /// How often each core prints its console line (`0` = never).
    #[arg(long, env = "TICKCORE_REPORT_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub report_interval: Duration,
    /// Longest wait for the rest of a request head once it has started (408 after it).
    #[arg(long, env = "TICKCORE_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Longest wait for more bytes of an incomplete request body (408 after it).
    #[arg(long, env = "TICKCORE_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Longest a keep-alive connection may stay idle between requests (closed after it).
    #[arg(long, env = "TICKCORE_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Open connections per core; past it, new connections get 503 with Retry-After and are closed.
    #[arg(long, env = "TICKCORE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Longest time committed records stay only in the write-ahead log before a checkpoint copies them
    /// into the tag files (a checkpoint also starts whenever a core's log reaches 64 MiB).
    #[arg(long, env = "TICKCORE_CHECKPOINT_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
    /// How long a checkpoint writes tag files (those waiting 4 log generations first, oldest first, then the
    /// segments with the most records waiting; at least 1024 files) before it leaves the rest, their records
    /// in memory and their log generations held, for a later checkpoint: its time stays bounded however many
    /// tags were written, at the cost of memory and log, which --max-log-mib bounds (docs/operations.md).
    /// `auto` (the default): half of --checkpoint-interval; `off`: every checkpoint writes every dirty
    /// file. Shutdown writes everything.
    #[arg(long, env = "TICKCORE_CHECKPOINT_BUDGET", default_value = "auto", value_parser = parse_budget)]
    pub checkpoint_budget: Budget,
    /// Testing aid: tag files a checkpoint takes in one step (pre-images logged in one commit, then
    /// written); the budget is checked between steps. Small values let tests defer with few tags.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536), hide = true)]
    pub checkpoint_chunk_files: u32,
    /// Tag files all cores together keep memory-mapped for reads (each core its share; past it a core drops
    /// its mappings and maps again what it reads). Mappings are bounded per process (`vm.max_map_count`,
    /// 65530 by default): keep this well under it.
    #[arg(long, env = "TICKCORE_MAX_MAPPED_FILES", default_value_t = 49152, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_mapped_files: u32,
    /// Listen backlog of each core's socket (raise net.core.somaxconn with it).
    #[arg(long, env = "TICKCORE_BACKLOG", default_value_t = 4096)]
    pub backlog: i32,
    /// Locked memory for io_uring buffers per executor, in KiB (needs RLIMIT_MEMLOCK to cover all cores).
    #[arg(long, env = "TICKCORE_IO_MEMORY_KIB", default_value_t = 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1 << 24))]
    pub io_memory_kib: usize,
    /// Check the data directory offline (every tag file and log, read only) and exit: 0 when consistent,
    /// 1 when something is not as the format says (each finding names the file and offset).
    #[arg(long)]
    pub verify: bool,
    /// How queries read tag files: `mmap` (page cache; a cold page stalls the core while it faults in) or
    /// `dma` (O_DIRECT block reads through a per-core cache of --read-cache-mib; the core keeps serving while a
    /// read is in flight). Segments whose records arrived out of time order are read through mmap either way.
    #[arg(long, env = "TICKCORE_READS", value_enum, default_value = "mmap")]
    pub reads: Reads,
    /// Per-core cache of tag-file blocks for `--reads dma`, in MiB.
    #[arg(long, env = "TICKCORE_READ_CACHE_MIB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=MIB_MAX))]
    pub read_cache_mib: u64,
    /// Testing aid: each core writes every change it makes to the data directory to FILE.c<core>, for the
    /// power-loss model (tests/power_loss.rs). Slows every write; not for production.
    #[arg(long, value_name = "FILE")]
    pub trace_io: Option<PathBuf>,
    /// Shed new writes (503, Retry-After: 1) while a core's tasks wait longer than this for their turn
    /// (the core is saturated); 0 never sheds.
    #[arg(long, env = "TICKCORE_SHED_LAG", default_value = "20ms", value_parser = parse_duration)]
    pub shed_lag: Duration,
    /// After answering a shed write (503 with Retry-After), the connection is not read for this long:
    /// what a client honoring Retry-After does anyway, enforced on one that resends at once; 0: read on.
    #[arg(long, env = "TICKCORE_SHED_PAUSE", default_value = "1s", value_parser = parse_duration)]
    pub shed_pause: Duration,
    /// Records a core may hold between acceptance and the end of their log commit; past it, new writes
    /// get 503 with Retry-After (the disk is not keeping up).
    #[arg(long, env = "TICKCORE_MAX_PENDING_RECORDS", default_value_t = 262_144,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_pending_records: usize,
    /// Write requests a core may have waiting for their log commit (`--durability sync`); past it, new
    /// writes get 503 with Retry-After. Bounds the work in service, so under overload commits stay small
    /// and admitted writes keep a short latency (benches/RESULTS.md); 0 = no bound. 64 keeps the service
    /// time near its unloaded figure under 5x overload on a virtio disk and sheds nothing at the
    /// specification's bursts (200k msg/s for a second, in NDJSON bodies of 10); 32 shed there.
    #[arg(long, env = "TICKCORE_MAX_PENDING_WRITES", default_value_t = 64)]
    pub max_pending_writes: usize,
    /// Largest write-ahead log a core keeps, in MiB: every generation whose records are not all in tag files
    /// yet (the live one and those a running, deferring or failing checkpoint still holds, each counted at
    /// its 64 MiB preallocation at least). Past it, writes get 503 with Retry-After until a checkpoint
    /// (started within a second of the bound, whatever the interval) retires a generation; the files on disk
    /// can pass it by the writes in flight when shedding starts and one checkpoint's pre-images (the partial
    /// last block of every tag file it writes, up to 4 KiB each: about 400 MiB for 100k files). Default: 32 generations' preallocation (with 100k tags written at 100k msg/s
    /// and checkpoints deferring files, the log held up to 1.3 GB: every checkpoint also logs the partial
    /// last block of each file it writes, ~2 KiB a file). Below 128 any held generation sheds writes.
    #[arg(long, env = "TICKCORE_MAX_LOG_MIB", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=MIB_MAX))]
    pub max_log_mib: u64,
    /// Tokens (one per line) that `POST /save` and `/write` need, as `Authorization: Bearer T` (or
    /// `Token T`); reloaded on SIGHUP. Without it writes are open.
    #[arg(long, env = "TICKCORE_WRITE_TOKEN_FILE", value_name = "FILE")]
    pub write_token_file: Option<PathBuf>,
    /// Tokens that `/api`, `/export`, `/tags` and `/metrics` need; reloaded on SIGHUP. Without it reads are
    /// open. `/health` and the page's files are always open.
    #[arg(long, env = "TICKCORE_READ_TOKEN_FILE", value_name = "FILE")]
    pub read_token_file: Option<PathBuf>,
    /// InfluxDB line protocol (`POST /write`, `/api/v2/write`): the tag key whose value is a point's tag.
    #[arg(long, env = "TICKCORE_LP_TAG_KEY", default_value = "tag")]
    pub lp_tag_key: String,
    /// InfluxDB line protocol: the 10 field names that hold values 0..9, comma-separated.
    #[arg(
        long,
        env = "TICKCORE_LP_FIELDS",
        value_delimiter = ',',
        default_value = "v0,v1,v2,v3,v4,v5,v6,v7,v8,v9"
    )]
    pub lp_fields: Vec<String>,
    /// Testing aid: while FILE exists, the storage operations it names fail: `ENOSPC|EIO [op ...]`, ops
    /// among `log-write log-sync tag-write sidecar syncfs rename dirs open remove` (`*-sync`: the
    /// data is written, then the operation reports failure); no op: every write that takes space. See
    /// `src/store/device/faulty.rs`.
    #[arg(long, value_name = "FILE")]
    pub fault_file: Option<PathBuf>,
    /// Cluster mode (docs/cluster.md): the NATS JetStream servers, comma-separated (`nats://a:4222,...`; name
    /// at least two). A write is answered 204 once JetStream stored it on a majority of its servers and this
    /// node stored it; every node applies every node's writes. Without it the engine is a single node.
    #[arg(long, env = "TICKCORE_NATS", value_name = "URLS")]
    pub nats: Option<String>,
    /// Cluster mode: this node's number, carried in its batch ids and shown in reports.
    #[arg(long, env = "TICKCORE_NODE_ID", default_value_t = 0)]
    pub node_id: u32,
    /// Cluster mode: JetStream streams the writes are spread over (`tickcore-wal-0..K-1`); a publish that
    /// gets no acknowledgement within --cluster-failover goes to the next one. Every node must use the same.
    #[arg(long, env = "TICKCORE_CLUSTER_STREAMS", default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub cluster_streams: u16,
    /// Cluster mode: replicas of each stream (3: a majority survives the loss of any one machine).
    #[arg(long, env = "TICKCORE_CLUSTER_REPLICAS", default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(1..=5))]
    pub cluster_replicas: u16,
    /// Cluster mode: how long a publish waits for JetStream's acknowledgement before it is sent to the
    /// next stream (1 ms to 60 s).
    #[arg(long, env = "TICKCORE_CLUSTER_FAILOVER", default_value = "250ms", value_parser = parse_duration)]
    pub cluster_failover: Duration,
    /// Cluster mode: how long the streams keep batches (their max_age): how long a node may be away and
    /// still catch up from the streams alone.
    #[arg(long, env = "TICKCORE_CLUSTER_CATCH_UP", default_value = "7d", value_parser = parse_duration)]
    pub cluster_catch_up: Duration,
    /// Cluster mode: how long a read carrying `X-Tickcore-Position` waits for this node to apply it before
    /// answering 504 (at most 1 hour).
    #[arg(long, env = "TICKCORE_POSITION_WAIT", default_value = "5s", value_parser = parse_duration)]
    pub position_wait: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Reads {
    Mmap,
    Dma,
}

impl Config {
    pub fn segment_ns(&self) -> i64 {
        let seg = self
            .segment
            .unwrap_or_else(|| Duration::from_secs(86_400).min(self.retention / 8));
        (seg.as_nanos() as i64).max(1_000_000)
    }
    pub fn retention_ns(&self) -> i64 {
        i64::try_from(self.retention.as_nanos()).unwrap_or(i64::MAX)
    }
    /// The time a periodic checkpoint may spend writing tag files, `None` for no limit.
    pub fn checkpoint_budget(&self) -> Option<Duration> {
        match self.checkpoint_budget {
            Budget::Auto => Some(self.checkpoint_interval / 2),
            Budget::Off => None,
            Budget::Fixed(d) => Some(d),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A CPU list; empty means every online CPU (`all`).
pub struct CpuList(pub Vec<usize>);

pub fn parse_cpus(s: &str) -> Result<CpuList, String> {
    if s.trim() == "all" {
        return Ok(CpuList(Vec::new()));
    }
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad CPU number {x:?} in {s:?}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("bad CPU range {part:?}"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    if cpus.is_empty() {
        return Err("empty CPU list".into());
    }
    Ok(CpuList(cpus))
}

/// `--checkpoint-budget`: see [`Config::checkpoint_budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Half of the checkpoint interval.
    Auto,
    /// No budget: a checkpoint writes every dirty file.
    Off,
    Fixed(Duration),
}

fn parse_budget(s: &str) -> Result<Budget, String> {
    match s.trim() {
        "auto" => Ok(Budget::Auto),
        "off" => Ok(Budget::Off),
        d => parse_duration(d)
            .map(Budget::Fixed)
            .map_err(|e| format!("{e} (or auto, or off)")),
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("bad duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_durations() {
        assert_eq!(parse_cpus("1").unwrap().0, vec![1]);
        assert_eq!(parse_cpus("0,1").unwrap().0, vec![0, 1]);
        assert_eq!(parse_cpus("0-3,2").unwrap().0, vec![0, 1, 2, 3]);
        assert!(
            parse_cpus("all").unwrap().0.is_empty(),
            "all = every online CPU"
        );
        assert!(parse_cpus("3-1").is_err() && parse_cpus("x").is_err() && parse_cpus("").is_err());
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_budget("auto"), Ok(Budget::Auto));
        assert_eq!(parse_budget("off"), Ok(Budget::Off));
        assert_eq!(
            parse_budget("2s"),
            Ok(Budget::Fixed(Duration::from_secs(2)))
        );
        assert!(parse_budget("soon").unwrap_err().contains("auto, or off"));
        let c = Config::parse_from(["tickcore", "--retention", "8s"]);
        assert_eq!(c.segment_ns(), 1_000_000_000);
        assert_eq!(
            Config::parse_from(["tickcore"]).segment_ns(),
            86_400_000_000_000
        );
    }

    #[test]
    fn bounds_of_records_are_at_least_one() {
        // 0 would mean "no records" to one bound and "no bound" to another: refused, naming the flag.
        let e = Config::try_parse_from(["tickcore", "--max-pending-records", "0"]).unwrap_err();
        assert!(e.to_string().contains("--max-pending-records"), "{e}");
        let c = Config::try_parse_from(["tickcore", "--max-pending-records", "1"]).unwrap();
        assert_eq!(c.max_pending_records, 1);
    }
}
