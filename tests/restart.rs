//! Restarts on a fixed port, as a supervisor (systemd, docker's restart policy) does them: right after
//! `kill -9` or SIGTERM while clients hold connections, the engine gets its port back at once and has every
//! acknowledged record; while an engine lives, a second one on its port is refused, also when both start
//! at the same moment.
mod common;
use common::*;

use std::time::Duration;

const S: i64 = 1_000_000_000;

/// Connections in every state a crash leaves behind: keep-alive ones that stay open across the kill
/// (their server ends go to FIN_WAIT), and HTTP/1.0 ones the server closed first (TIME_WAIT).
fn hold_connections(e: &Engine) -> Vec<Conn> {
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = e.connect();
        assert_eq!(c.request("GET", "/health", &[], b"").status, 200);
        held.push(c);
    }
    for _ in 0..4 {
        let mut c = e.connect();
        c.send(b"GET /health HTTP/1.0\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 200);
    }
    held
}

#[test]
fn the_same_port_is_back_at_once_after_kill9_and_sigterm_with_clients_connected() {
    let d = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let t0 = now_ns() - 3600 * S;
    let mut written = 0;
    let mut e = try_start_at(&[], &listen, d.path(), "0,1", &[]).unwrap();
    for round in 0..6 {
        for _ in 0..5 {
            let r = e.post(&msg("restart", t0 + written * S, written as f64));
            assert_eq!(r.status, 204);
            written += 1;
        }
        let held = hold_connections(&e);
        // Alternate the two ways an engine ends; the clients keep their connections through it.
        if round % 2 == 0 {
            e.kill9();
        } else {
            assert_eq!(e.terminate(), 0);
        }
        e = try_start_at(&[], &listen, d.path(), "0,1", &[]).unwrap_or_else(|err| {
            panic!("round {round}: the restart on {listen} was refused: {err}")
        });
        assert_eq!(e.addr, listen);
        drop(held);
        let got = e.export("restart");
        assert_eq!(got.len(), written as usize, "round {round}");
    }
}

#[test]
fn a_new_engine_gets_the_port_of_one_killed_a_moment_ago() {
    // An empty data directory starts in milliseconds, while the killed engine's listening sockets live on
    // for some milliseconds after it is reaped (io_uring closes its files asynchronously).
    let listen = format!("127.0.0.1:{}", free_port());
    let mut dirs = vec![tempfile::tempdir().unwrap()];
    let mut e = try_start_at(&[], &listen, dirs[0].path(), "0,1", &[]).unwrap();
    for round in 0..8 {
        let held = hold_connections(&e);
        e.kill9();
        dirs.push(tempfile::tempdir().unwrap());
        let dir = dirs.last().unwrap().path();
        e = try_start_at(&[], &listen, dir, "0,1", &[]).unwrap_or_else(|err| {
            panic!("round {round}: the start on {listen} after a kill -9 was refused: {err}")
        });
        drop(held);
        assert_eq!(e.get("/health").status, 200);
    }
}

#[test]
fn a_second_engine_on_a_live_port_is_refused_and_the_first_keeps_serving() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let first = try_start_at(&[], &listen, d1.path(), "0", &[]).unwrap();
    for cpus in ["0", "0,1"] {
        let err = try_start_at(&[], &listen, d2.path(), cpus, &[])
            .err()
            .expect("a second engine on a live port must be refused");
        assert!(err.contains("cannot listen on"), "{err}");
    }
    let t = now_ns() - S;
    assert_eq!(first.post(&msg("first", t, 1.0)).status, 204);
    assert_eq!(first.export("first").len(), 1);
}

#[test]
fn of_engines_started_at_the_same_moment_on_one_port_exactly_one_listens() {
    // Half of them on the wildcard address: 0.0.0.0:P and 127.0.0.1:P overlap, so they compete too.
    let port = free_port();
    let addresses = [
        format!("127.0.0.1:{port}"),
        format!("0.0.0.0:{port}"),
        format!("127.0.0.1:{port}"),
        format!("0.0.0.0:{port}"),
    ];
    for round in 0..5 {
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(dirs.len()));
        let results: Vec<Result<Engine, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = dirs
                .iter()
                .zip(&addresses)
                .map(|(d, listen)| {
                    let barrier = barrier.clone();
                    s.spawn(move || {
                        barrier.wait();
                        try_start_at(&[], listen, d.path(), "0,1", &[])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let (up, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
        assert_eq!(
            up.len(),
            1,
            "round {round}: {} engines listen on port {port}",
            up.len()
        );
        for r in refused {
            let err = r.err().unwrap();
            assert!(err.contains("cannot listen on"), "round {round}: {err}");
        }
        // The winner answers, and its port is free again for the next round once it stopped.
        let winner = up.into_iter().next().unwrap().unwrap();
        assert_eq!(winner.get("/health").status, 200);
        winner.kill9();
        std::thread::sleep(Duration::from_millis(10));
    }
}
