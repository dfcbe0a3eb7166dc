//! The real image in the real Docker engine, as a user runs it: `docker/build.sh` builds `tickcore:latest`
//! (a debootstrap base image where nothing can be pulled, the release binaries built here), and
//! `docker-compose.yml` starts the engine with the repository's seccomp profile and ulimits on host network.
//! A record posted to the container is read back, and again after `compose stop` / `start` (SIGTERM, a clean
//! shutdown, the data volume kept); then the `load` profile runs the producer and the query-client services
//! for a short run, and both must exit 0 with every SLO verdict PASS.
//!
//! Needs a running Docker daemon, root (debootstrap) and Compose: `docker compose` (v2) where it exists, else
//! Debian's `docker-compose` 1.29 (COMPOSE="docker-compose" chooses). CI runs `docker/build.sh` before the
//! suite, so the call here only checks the image is current.
mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The engine listens here, not on 0.0.0.0: the whole loopback range reaches it, no other interface does.
const HOST: &str = "127.0.0.2";

/// The compose command: `COMPOSE` if set, `docker compose` if the plugin answers, else `docker-compose`.
fn compose_command() -> Vec<String> {
    if let Ok(c) = std::env::var("COMPOSE") {
        return c.split_whitespace().map(String::from).collect();
    }
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// One compose project on its own port, taken down (with its volume) when dropped.
struct Project {
    compose: Vec<String>,
    name: String,
    env: Vec<(String, String)>,
    port: u16,
    /// The profile `down` names, so that its services are taken down too.
    profile: &'static str,
}

impl Project {
    fn new(port: u16) -> Project {
        // Not the default address: the health check and the load services must follow TICKCORE_HOST.
        let mut env = vec![
            ("TICKCORE_HOST".to_string(), HOST.to_string()),
            ("TICKCORE_PORT".to_string(), port.to_string()),
            ("LOAD_DURATION".to_string(), "20s".to_string()),
        ];
        // A container cannot get more than the Docker daemon's own hard limits without CAP_SYS_RESOURCE
        // (runc: "error setting rlimit type 8: operation not permitted"): where they are finite, ask for
        // exactly them, as docs/operations.md tells users to.
        if let Some(memlock) = daemon_hard_limit("Max locked memory") {
            env.push(("TICKCORE_MEMLOCK".into(), memlock.to_string()));
        }
        if let Some(nofile) = daemon_hard_limit("Max open files") {
            env.push(("TICKCORE_NOFILE".into(), nofile.min(1_048_576).to_string()));
        }
        Project {
            compose: compose_command(),
            name: format!("tickcore-test-{}", std::process::id()),
            env,
            port,
            profile: "load",
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let (prog, pre) = self.compose.split_first().expect("a compose command");
        let out = Command::new(prog)
            .args(pre)
            .args(["-f", "docker-compose.yml", "-p", &self.name])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(ROOT)
            .output()
            .unwrap_or_else(|e| panic!("{:?}: {e}", self.compose));
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "compose {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn logs(&self, service: &str) -> String {
        let out = self.run(&["logs", "--no-color", service]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn container(&self, service: &str) -> String {
        let id = self.ok(&["ps", "-q", service]).trim().to_string();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// Waits until the engine answers `GET /health` with 200.
    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(mut c) = connect_to(&self.addr()) {
                if c.request("GET", "/health", &[], b"").status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the engine container never answered /health; its log:\n{}",
                self.logs("engine")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn get(&self, target: &str) -> Response {
        connect_to(&self.addr())
            .unwrap()
            .request("GET", target, &[], b"")
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        // The engines' logs, on a failure or when TICKCORE_CONTAINER_LOGS is set.
        if std::thread::panicking() || std::env::var_os("TICKCORE_CONTAINER_LOGS").is_some() {
            for service in ["engine", "node-1", "node-2", "node-3"] {
                eprintln!("{service} log:\n{}", self.logs(service));
            }
        }
        let _ = self.run(&["--profile", self.profile, "down", "-v", "--timeout", "30"]);
    }
}

/// The Docker daemon's hard limit named `name` in /proc/PID/limits (None when unlimited); the daemon must run
/// on this machine, as the test's host-network containers assume.
fn daemon_hard_limit(name: &str) -> Option<u64> {
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "dockerd")
        })
        .expect("a dockerd process on this machine")
        .path();
    let limits = std::fs::read_to_string(pid.join("limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in {limits}"));
    let hard = line[name.len()..].split_whitespace().nth(1).unwrap();
    (hard != "unlimited").then(|| hard.parse().unwrap())
}

fn inspect(container: &str, format: &str) -> String {
    run_ok(Command::new("docker").args(["inspect", "-f", format, container]))
        .trim()
        .to_string()
}

#[test]
fn the_image_runs_under_compose_keeps_data_and_passes_a_short_load() {
    run_ok(Command::new("bash").arg(Path::new(ROOT).join("docker/build.sh")));

    let p = Project::new(free_port());
    // docker-compose 1.29 with a newer engine can fail to recreate a container (KeyError: 'ContainerConfig'):
    // always down before up.
    let _ = p.run(&["--profile", "load", "down", "-v"]);
    p.ok(&["up", "-d", "engine"]);
    p.wait_healthy();
    // Docker's own health check (the load services wait for it) finds the engine where it listens.
    let engine = p.container("engine");
    let deadline = Instant::now() + Duration::from_secs(60);
    while inspect(&engine, "{{.State.Health.Status}}") != "healthy" {
        assert!(
            Instant::now() < deadline,
            "docker never saw the engine healthy: {}",
            inspect(&engine, "{{json .State.Health}}")
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The container runs with the repository's seccomp profile (its text, as the daemon got it) and the
    // ulimits the compose file sets.
    let security = inspect(&engine, "{{json .HostConfig.SecurityOpt}}");
    assert!(
        security.contains("seccomp=") && security.contains("io_uring_setup"),
        "the seccomp profile is not applied: {security}"
    );
    let ulimits = inspect(&engine, "{{json .HostConfig.Ulimits}}");
    assert!(ulimits.contains("\"Name\":\"memlock\""), "{ulimits}");
    let logs = p.logs("engine");
    let ready = format!("ready: listening on http://{}", p.addr());
    assert!(logs.contains(&ready), "{logs}");

    // A record posted to the container is read back as it was written.
    let t = now_ns() - 60_000_000_000;
    let body = msg("in-a-container", t, 1.5);
    let r = connect_to(&p.addr())
        .unwrap()
        .request("POST", "/save", &[], body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    let read_back = |p: &Project| {
        let r = p.get(&format!(
            "/export?tag=in-a-container&start={}&end={}",
            i64::MIN,
            i64::MAX
        ));
        assert_eq!(r.status, 200, "{}", r.text());
        let lines: Vec<serde_json::Value> = r
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{}", r.text());
        assert_eq!(lines[0]["time"], t);
        let values: Vec<f64> = lines[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(values, (0..10).map(|i| 1.5 + i as f64).collect::<Vec<_>>());
    };
    read_back(&p);

    // SIGTERM (compose stop) is a clean shutdown; the data volume outlives the process.
    p.ok(&["stop", "engine"]);
    assert_eq!(
        inspect(&engine, "{{.State.ExitCode}}"),
        "0",
        "{}",
        p.logs("engine")
    );
    p.ok(&["start", "engine"]);
    p.wait_healthy();
    read_back(&p);

    // The load profile: the producer and the query clients as two services, a short run, their verdicts.
    p.ok(&["--profile", "load", "up", "-d", "producer", "queries"]);
    for service in ["producer", "queries"] {
        let id = p.container(service);
        let status = Command::new("docker")
            .args(["wait", &id])
            .output()
            .expect("docker wait");
        let code = String::from_utf8_lossy(&status.stdout).trim().to_string();
        let logs = p.logs(service);
        let verdicts: Vec<&str> = logs.lines().filter(|l| l.contains("SLO ")).collect();
        let passed =
            !verdicts.is_empty() && verdicts.iter().all(|l| l.trim_end().ends_with("PASS"));
        if code != "0" || !passed {
            // Why the engine refused or delayed work, for whoever reads the failure.
            let metrics = p.get("/metrics").text();
            let reasons: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("tickcore_admission_rejections_total"))
                .collect();
            panic!(
                "{service} exited {code}: {verdicts:#?}\n{reasons:#?}\n{logs}\nengine:\n{}",
                p.logs("engine")
            );
        }
        eprintln!("{service}: {verdicts:#?}");
    }
    // The producer's records are in the engine that served them.
    let tags = p.get("/tags?limit=1").json();
    assert!(tags["total"].as_i64().unwrap() > 100, "{tags}");
}

/// Waits until the engine at `addr` answers `GET /health` with 200.
fn wait_answering(addr: &str, p: &Project, service: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut c) = connect_to(addr) {
            if c.request("GET", "/health", &[], b"").status == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{service} never answered /health at {addr}; its log:\n{}",
            p.logs(service)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// POSTs `body` to `addr` until it is acknowledged (a 503 while the cluster elects is retried); the position.
fn post_acked(addr: &str, body: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = connect_to(addr) {
            let r = c.request("POST", "/save", &[], body.as_bytes());
            if r.status == 204 {
                return r
                    .header("x-tickcore-position")
                    .expect("a position")
                    .to_string();
            }
            assert!(r.status == 503, "{addr}: {} {}", r.status, r.text());
        }
        assert!(
            Instant::now() < deadline,
            "{addr} never acknowledged the write"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_cluster_profile_keeps_every_write_when_an_engine_and_a_nats_container_are_killed() {
    run_ok(Command::new("bash").arg(Path::new(ROOT).join("docker/build.sh")));
    let mut p = Project::new(free_port());
    p.name = format!("tickcore-cluster-{}", std::process::id());
    p.profile = "cluster";
    let _ = p.run(&["--profile", "cluster", "down", "-v"]);
    let services = ["nats-1", "nats-2", "nats-3", "node-1", "node-2", "node-3"];
    let mut up = vec!["--profile", "cluster", "up", "-d"];
    up.extend_from_slice(&services);
    let began = Instant::now();
    p.ok(&up);
    let node = |i: u16| format!("{HOST}:{}", 8080 + i);
    for i in 1..=3 {
        wait_answering(&node(i), &p, &format!("node-{i}"));
    }
    let t0 = now_ns() - 60_000_000_000;
    let body = |from: i64| -> String {
        (0..100)
            .map(|i| msg(&format!("c{}", i % 4), from + i, (from + i) as f64))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // A write on node 1, read on node 2 with its position.
    eprintln!("{:?}: the cluster answers", began.elapsed());
    let pos = post_acked(&node(1), &body(t0));
    eprintln!("{:?}: node 1 acknowledged at {pos}", began.elapsed());
    let header = format!("X-Tickcore-Position: {pos}");
    let q = format!("/api?tag=c0&start={}&end={}", t0 - 1, t0 + 1000);
    let r = connect_to(&node(2))
        .unwrap()
        .request("GET", &q, &[header.as_str()], b"");
    assert_eq!(r.status, 200, "{}", r.text());

    // kill -9 of node 1's engine and of NATS server 2: writes go on through node 2 and are read on node 3.
    run_ok(Command::new("docker").args(["kill", "-s", "KILL", &p.container("node-1")]));
    run_ok(Command::new("docker").args(["kill", "-s", "KILL", &p.container("nats-2")]));
    eprintln!(
        "{:?}: read on node 2; node 1 and NATS 2 killed",
        began.elapsed()
    );
    let pos = post_acked(&node(2), &body(t0 + 1000));
    eprintln!("{:?}: node 2 acknowledged at {pos}", began.elapsed());
    let header = format!("X-Tickcore-Position: {pos}");
    let r = connect_to(&node(3))
        .unwrap()
        .request("GET", &q, &[header.as_str()], b"");
    assert_eq!(r.status, 200, "{}", r.text());

    // Both back: node 1 catches up from the streams and holds every record once.
    p.ok(&["--profile", "cluster", "start", "nats-2", "node-1"]);
    wait_answering(&node(1), &p, "node-1");
    eprintln!("{:?}: node 1 answers again", began.elapsed());
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 1..=3u16 {
        for tag in ["c0", "c1", "c2", "c3"] {
            loop {
                let r = connect_to(&node(i)).unwrap().request(
                    "GET",
                    &format!("/export?tag={tag}&start={}&end={}", t0 - 1, t0 + 3000),
                    &[],
                    b"",
                );
                let lines = if r.status == 200 {
                    r.text().lines().count()
                } else {
                    0
                };
                if lines == 50 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {i} holds {lines} of the 50 records of {tag}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    eprintln!("{:?}: every node holds every record once", began.elapsed());
}
