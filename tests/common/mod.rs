//! Test harness: starts the real `tickcore` binary on a free port with a temporary data directory and
//! speaks raw HTTP/1.1 to it over std sockets (so framing edge cases are exactly what a test writes).
#![allow(dead_code)]

pub mod machines;
pub mod nats;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct Engine {
    pub child: Child,
    pub addr: String,
    pub dir: PathBuf,
    pub stdout: Vec<String>,
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Starts an engine on `dir` with `--cpus cpus` and extra flags; waits for its ready line.
pub fn start(dir: &Path, cpus: &str, extra: &[&str]) -> Engine {
    try_start(dir, cpus, extra).unwrap_or_else(|e| panic!("engine did not start: {e}"))
}

pub fn try_start(dir: &Path, cpus: &str, extra: &[&str]) -> Result<Engine, String> {
    try_start_via(&[], dir, cpus, extra)
}

/// As [`try_start`], with the engine run by `launcher` (a command and its arguments, the engine's path and
/// flags appended), e.g. a seccomp wrapper.
pub fn try_start_via(
    launcher: &[&str],
    dir: &Path,
    cpus: &str,
    extra: &[&str],
) -> Result<Engine, String> {
    try_start_at(launcher, "127.0.0.1:0", dir, cpus, extra)
}

/// As [`try_start_via`], listening on `listen` (e.g. a fixed port a restart must get back).
pub fn try_start_at(
    launcher: &[&str],
    listen: &str,
    dir: &Path,
    cpus: &str,
    extra: &[&str],
) -> Result<Engine, String> {
    let bin = env!("CARGO_BIN_EXE_tickcore");
    let mut cmd = match launcher.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(["--listen", listen, "--data-dir"])
        .arg(dir)
        .args(["--cpus", cpus, "--report-interval", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                stdout.push(line.clone());
                if let Some(rest) = line.strip_prefix("ready: listening on http://") {
                    let addr = rest.split_whitespace().next().unwrap().to_string();
                    // Keep draining stdout so the engine never blocks on a full pipe.
                    std::thread::spawn(move || for _ in lines {});
                    return Ok(Engine {
                        child,
                        addr,
                        dir: dir.to_path_buf(),
                        stdout,
                    });
                }
            }
            _ => {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                let _ = child.wait();
                return Err(err);
            }
        }
    }
}

/// Runs `cmd` to its end and returns its standard output; panics with both outputs unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port that was free a moment ago on 127.0.0.1 (for tests that need to know it before the engine starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A connection to any server at `addr` (an engine this harness did not start, e.g. in a container).
pub fn connect_to(addr: &str) -> std::io::Result<Conn> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.set_nodelay(true)?;
    Ok(Conn {
        reader: BufReader::new(s.try_clone()?),
        stream: s,
    })
}

impl Engine {
    pub fn connect(&self) -> Conn {
        connect_to(&self.addr).unwrap()
    }

    /// The engine's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends a signal (e.g. 1, SIGHUP) without waiting.
    pub fn signal(&self, sig: i32) {
        unsafe { libc_kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM and wait; returns the exit code and everything the engine wrote to stderr.
    pub fn terminate_with_stderr(mut self) -> (i32, String) {
        let mut err = String::new();
        let stderr = self.child.stderr.take();
        let code = self.terminate();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut err);
        }
        (code, err)
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> i32 {
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                if st.code().is_none() {
                    // Killed by a signal: show what the engine said before it died.
                    let mut err = String::new();
                    if let Some(mut e) = self.child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    eprintln!("engine ended by {st}; its stderr:\n{err}");
                }
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "engine did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn post(&self, body: &str) -> Response {
        self.connect()
            .request("POST", "/save", &[], body.as_bytes())
    }

    pub fn get(&self, target: &str) -> Response {
        self.connect().request("GET", target, &[], b"")
    }

    /// Every record of `tag` via /export, as (time, values).
    pub fn export(&self, tag: &str) -> Vec<(i64, Vec<f64>)> {
        let r = self.get(&format!(
            "/export?tag={}&start={}&end={}",
            enc(tag),
            i64::MIN,
            i64::MAX
        ));
        if r.status == 404 {
            return Vec::new();
        }
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["time"].as_i64().unwrap(),
                    v["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect(),
                )
            })
            .collect()
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// The sum over cores of the `/metrics` samples named `name` whose labels contain `label`, e.g.
/// `tickcore_admission_rejections_total` with `reason="saturated"`.
pub fn metric_sum(e: &Engine, name: &str, label: &str) -> f64 {
    let r = e.get("/metrics");
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// CPU time (user + system) the process `pid` has used so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn msg(tag: &str, time: i64, v: f64) -> String {
    let vals: Vec<String> = (0..10).map(|i| format!("{}", v + i as f64)).collect();
    format!(
        r#"{{"time":{time},"tag":{},"values":[{}]}}"#,
        serde_json::to_string(tag).unwrap(),
        vals.join(",")
    )
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Conn {
    pub stream: TcpStream,
    pub reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).unwrap();
    }

    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[&str],
        body: &[u8],
    ) -> Response {
        let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n");
        for h in headers {
            raw.push_str(h);
            raw.push_str("\r\n");
        }
        if method == "POST"
            && !headers
                .iter()
                .any(|h| h.to_ascii_lowercase().starts_with("transfer-encoding"))
        {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes);
        self.read_response()
    }

    pub fn read_response(&mut self) -> Response {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("bad status line {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if status == 100 || status == 204 {
            return r;
        }
        if let Some(n) = r.header("content-length") {
            let mut body = vec![0; n.parse().unwrap()];
            self.reader.read_exact(&mut body).unwrap();
            r.body = body;
        } else if r.header("transfer-encoding").is_some() {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                r.body.extend_from_slice(&chunk[..n]);
            }
        } else {
            self.reader.read_to_end(&mut r.body).unwrap();
        }
        r
    }

    /// True when the server closed the connection (a read returns EOF).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0))
    }
}

impl Drop for Engine {
    /// An engine a test forgets is killed, never left running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `p`, recursively (none when `p` does not exist).
pub fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// `tickcore --verify` on a stopped engine's directory: (exit code, output).
pub fn verify_dir(dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tickcore"))
        .arg("--verify")
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
