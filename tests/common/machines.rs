//! Test "machines" on one host: each a network namespace with its own address on a private bridge, so a
//! machine can be cut off (its link down) while its processes keep running, as a network partition does.
//! Each machine runs one `nats-server` and one engine; the test itself talks to them from the host's
//! namespace through the bridge. Needs root (`ip netns`, `ip link`, `iptables`); everything is removed on
//! drop, and the names carry the test process's id so concurrent tests do not collide.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::nats::NatsServer;

pub const NATS_PORT: u16 = 4222;
const ROUTE_PORT: u16 = 6222;
const MONITOR_PORT: u16 = 8222;
pub const ENGINE_PORT: u16 = 8080;

pub struct Machines {
    pub machines: Vec<Machine>,
    bridge: String,
    pub dir: tempfile::TempDir,
}

pub struct Machine {
    pub ns: String,
    /// The host side of the machine's link (down: the machine is cut off).
    veth: String,
    pub ip: String,
    pub nats: NatsServer,
    pub engine: Option<super::Engine>,
    pub data: PathBuf,
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Machines {
    /// `n` machines with a NATS server each (a JetStream cluster, `sync_interval: always`), every server
    /// healthy before this returns. No engine yet: [`Machines::start_engine`].
    pub fn start(n: usize) -> Result<Machines, String> {
        remove_stale();
        let id = std::process::id();
        let third = 100 + id % 150;
        let subnet = format!("10.213.{third}");
        let bridge = format!("tk{id}b");
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut m = Machines {
            machines: Vec::new(),
            bridge: bridge.clone(),
            dir,
        };
        sh(&["ip", "link", "add", "name", &bridge, "type", "bridge"])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{subnet}.1/24"),
            "dev",
            &bridge,
        ])?;
        sh(&["ip", "link", "set", &bridge, "up"])?;
        // Docker sets the FORWARD policy to DROP and has bridged frames pass iptables: let ours through.
        let _ = sh(&[
            "iptables", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
        ]);
        for i in 0..n {
            let ns = format!("tk{id}m{i}");
            let veth = format!("tk{id}v{i}");
            let peer = format!("tk{id}p{i}");
            let ip = format!("{subnet}.{}", 10 + i);
            sh(&["ip", "netns", "add", &ns])?;
            sh(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
            ])?;
            sh(&["ip", "link", "set", &peer, "netns", &ns])?;
            sh(&["ip", "link", "set", &veth, "master", &bridge])?;
            sh(&["ip", "link", "set", &veth, "up"])?;
            let inside = |args: &[&str]| {
                let mut a = vec!["ip", "netns", "exec", &ns];
                a.extend_from_slice(args);
                sh(&a)
            };
            inside(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &peer])?;
            inside(&["ip", "link", "set", &peer, "up"])?;
            inside(&["ip", "link", "set", "lo", "up"])?;
            let data = m.dir.path().join(format!("engine{i}"));
            std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
            let conf = m.dir.path().join(format!("nats{i}.conf"));
            let launcher = ["ip", "netns", "exec", ns.as_str()];
            let nats = NatsServer::new(
                &format!("m{i}"),
                &ip,
                (NATS_PORT, ROUTE_PORT, MONITOR_PORT),
                &conf,
                &launcher,
            );
            m.machines.push(Machine {
                ns,
                veth,
                ip,
                nats,
                engine: None,
                data,
            });
        }
        let ips: Vec<String> = m.machines.iter().map(|x| x.ip.clone()).collect();
        for (i, mach) in m.machines.iter_mut().enumerate() {
            let store = m.dir.path().join(format!("nats{i}"));
            write_conf(&mach.nats.conf_path(), i, &mach.ip, &store, &ips);
            mach.nats.start();
        }
        m.wait_nats_healthy(Duration::from_secs(60))?;
        Ok(m)
    }

    /// The NATS URLs as machine `i`'s engine takes them: its own server first.
    pub fn nats_urls(&self, i: usize) -> String {
        let n = self.machines.len();
        (0..n)
            .map(|k| format!("nats://{}:{NATS_PORT}", self.machines[(i + k) % n].ip))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every engine's address, `ip:port`.
    pub fn engine_addrs(&self) -> Vec<String> {
        self.machines
            .iter()
            .map(|m| format!("{}:{ENGINE_PORT}", m.ip))
            .collect()
    }

    /// Starts machine `i`'s engine (on its data directory) with `extra` flags.
    pub fn start_engine(&mut self, i: usize, cpus: &str, extra: &[&str]) -> Result<(), String> {
        let urls = self.nats_urls(i);
        let m = &mut self.machines[i];
        assert!(m.engine.is_none(), "engine {i} is running");
        let listen = format!("{}:{ENGINE_PORT}", m.ip);
        let node = i.to_string();
        let mut flags = vec![
            "--nats",
            urls.as_str(),
            "--node-id",
            node.as_str(),
            "--io-memory-kib",
            "512",
        ];
        flags.extend_from_slice(extra);
        let mut e = super::try_start_at(
            &["ip", "netns", "exec", &m.ns],
            &listen,
            &m.data,
            cpus,
            &flags,
        )?;
        // Kept in a file beside the data (and drained, so the engine never blocks on a full pipe).
        if let Some(mut err) = e.child.stderr.take() {
            // TICKCORE_FAULT_LOGS names a directory that outlives the test.
            let logs = std::env::var_os("TICKCORE_FAULT_LOGS")
                .map(PathBuf::from)
                .unwrap_or_else(|| self.dir.path().to_path_buf());
            let path = logs.join(format!("engine{i}.stderr"));
            std::thread::spawn(move || {
                let _ = std::fs::create_dir_all(&logs);
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path);
                // Drained whatever happens: an engine whose stderr pipe fills blocks in its next log line.
                let _ = match file {
                    Ok(mut f) => std::io::copy(&mut err, &mut f),
                    Err(e) => {
                        eprintln!("{}: {e}; the engine's log is dropped", path.display());
                        std::io::copy(&mut err, &mut std::io::sink())
                    }
                };
            });
        }
        m.engine = Some(e);
        Ok(())
    }

    pub fn wait_nats_healthy(&self, within: Duration) -> Result<(), String> {
        let t0 = Instant::now();
        for m in self.machines.iter().filter(|m| m.nats.running()) {
            while !m.nats.healthy() {
                if t0.elapsed() > within {
                    return Err(format!("nats on {} not healthy after {within:?}", m.ns));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }
}

impl Machine {
    pub fn kill9_engine(&mut self) {
        if let Some(e) = self.engine.take() {
            e.kill9();
        }
    }

    pub fn signal_engine(&self, sig: i32) {
        if let Some(e) = &self.engine {
            e.signal(sig);
        }
    }

    /// Cuts the machine off the network (`up = false`) or joins it again.
    pub fn link(&self, up: bool) {
        sh(&[
            "ip",
            "link",
            "set",
            &self.veth,
            if up { "up" } else { "down" },
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Removes what an earlier test process, killed before its drop ran (a time-out), left: namespaces,
/// links and the FORWARD rule of a process id that no longer runs.
fn remove_stale() {
    let out = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let links = String::from_utf8_lossy(&out).into_owned();
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let spaces = String::from_utf8_lossy(&out).into_owned();
    let names = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .chain(
            spaces
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string)),
        );
    for name in names.filter(|n| n.starts_with("tk")) {
        let digits: String = name[2..].chars().take_while(char::is_ascii_digit).collect();
        let Ok(pid) = digits.parse::<i32>() else {
            continue;
        };
        // SAFETY: kill with signal 0 only asks whether the process exists.
        if pid as u32 == std::process::id() || unsafe { libc::kill(pid, 0) } == 0 {
            continue;
        }
        if name.contains('m') {
            let _ = sh(&["ip", "netns", "del", &name]);
        } else {
            if name.ends_with('b') {
                let _ = sh(&[
                    "iptables", "-D", "FORWARD", "-i", &name, "-o", &name, "-j", "ACCEPT",
                ]);
            }
            let _ = sh(&["ip", "link", "del", &name]);
        }
    }
}

impl Drop for Machines {
    fn drop(&mut self) {
        for m in &mut self.machines {
            m.kill9_engine();
            m.nats.kill9();
            let _ = sh(&["ip", "netns", "del", &m.ns]);
            let _ = sh(&["ip", "link", "del", &m.veth]);
        }
        let _ = sh(&[
            "iptables",
            "-D",
            "FORWARD",
            "-i",
            &self.bridge,
            "-o",
            &self.bridge,
            "-j",
            "ACCEPT",
        ]);
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }
}

fn write_conf(conf: &Path, i: usize, ip: &str, store: &Path, all: &[String]) {
    let routes: Vec<String> = all
        .iter()
        .filter(|a| a.as_str() != ip)
        .map(|a| format!("nats://{a}:{ROUTE_PORT}"))
        .collect();
    let ports = (NATS_PORT, ROUTE_PORT, MONITOR_PORT);
    let text = super::nats::conf_text(&format!("m{i}"), ip, ports, store, &routes);
    std::fs::write(conf, text).unwrap();
}
