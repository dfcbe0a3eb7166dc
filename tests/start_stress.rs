//! Engines started at the same moment, two cores each, on fresh data directories: every one prints its
//! ready line within seconds. glommio 0.9.0's executors could park with a runnable task (the patched copy
//! in `vendor/glommio` fixes it; `tests/executor_wakeup.rs` shows the race alone): 15 of 90 such starts
//! never got ready here before the fix. `START_STRESS_ROUNDS` (10) sets the rounds of 6 starts;
//! `benches/start_stress.sh` runs the long version.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const AT_ONCE: usize = 6;
const READY_WITHIN: Duration = Duration::from_secs(20);

#[test]
fn engines_started_at_once_are_all_ready_within_seconds() {
    let rounds: usize = std::env::var("START_STRESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut slowest = Duration::ZERO;
    for round in 0..rounds {
        let dirs: Vec<_> = (0..AT_ONCE).map(|_| tempfile::tempdir().unwrap()).collect();
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        let mut children = Vec::new();
        for (i, d) in dirs.iter().enumerate() {
            let mut child = Command::new(env!("CARGO_BIN_EXE_tickcore"))
                .args(["--listen", "127.0.0.1:0", "--cpus", "0,1"])
                .args(["--report-interval", "0", "--data-dir"])
                .arg(d.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if line.starts_with("ready: ") {
                        let _ = tx.send(i);
                    }
                }
            });
            children.push(child);
        }
        drop(tx);
        let mut ready = vec![false; AT_ONCE];
        while ready.iter().any(|r| !r) {
            let left = READY_WITHIN.saturating_sub(started.elapsed());
            match rx.recv_timeout(left) {
                Ok(i) => ready[i] = true,
                Err(_) => break,
            }
        }
        slowest = slowest.max(started.elapsed());
        let hung: Vec<u32> = children
            .iter()
            .zip(&ready)
            .filter(|(_, r)| !**r)
            .map(|(c, _)| c.id())
            .collect();
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(
            hung.is_empty(),
            "round {round}: {} of {AT_ONCE} engines (pids {hung:?}) printed no ready line within {} s",
            hung.len(),
            READY_WITHIN.as_secs()
        );
    }
    eprintln!(
        "{} starts, {AT_ONCE} at a time: all ready, the slowest round in {slowest:?}",
        rounds * AT_ONCE
    );
}
