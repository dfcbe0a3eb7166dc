//! A minimal keep-alive HTTP/1.1 client: one request at a time per connection, responses framed by
//! Content-Length or chunked encoding (parsed with httparse).

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Conn {
    /// The servers, tried in turn: several are a cluster's nodes, any of which answers.
    addrs: Vec<String>,
    /// The one in use.
    at: usize,
    /// With several servers: how long a request waits for its answer before it goes to the next one.
    failover: std::time::Duration,
    /// Requests sent again to another server (no answer in time, or the connection failed).
    pub failovers: u64,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    req: Vec<u8>,
    /// The last response's `Retry-After` (delay in seconds), if it had one.
    pub retry_after: Option<std::time::Duration>,
}

/// Host and port of an `http://host:port` URL.
pub fn host_port(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported: {url}"))?;
    let hp = rest.split('/').next().unwrap_or(rest);
    Ok(if hp.contains(':') {
        hp.to_string()
    } else {
        format!("{hp}:80")
    })
}

impl Conn {
    /// A connection to one server; requests wait as long as they take.
    pub fn to(addr: &str) -> Self {
        Self::new(&[addr.to_string()], std::time::Duration::MAX)
    }

    /// A connection to `addrs[0]`, moving on to the next after `failover` without an answer (with one
    /// address, requests wait as long as they take).
    pub fn new(addrs: &[String], failover: std::time::Duration) -> Self {
        assert!(!addrs.is_empty(), "a connection needs a server");
        Conn {
            addrs: addrs.to_vec(),
            at: 0,
            failover,
            failovers: 0,
            stream: None,
            buf: Vec::with_capacity(64 << 10),
            req: Vec::with_capacity(64 << 10),
            retry_after: None,
        }
    }

    /// The same connection starting at `addrs[i mod n]`: a producer's connections spread over a cluster's
    /// nodes.
    pub fn starting_at(mut self, i: usize) -> Self {
        self.at = i % self.addrs.len();
        self
    }

    /// Sends one request and returns (status, body). On any error the connection is dropped and the next
    /// call reconnects.
    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        if self.addrs.len() == 1 {
            let r = self.try_request(method, target, body).await;
            if r.is_err() {
                self.stream = None;
            }
            return r;
        }
        // Round the servers twice at most; a request cut off mid-way is sent again whole (the cluster's
        // duplicate admission stores a repeated write once).
        let mut last = anyhow!("no server tried");
        for _ in 0..2 * self.addrs.len() {
            match tokio::time::timeout(self.failover, self.try_request(method, target, body)).await
            {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = anyhow!(
                        "no answer from {} within {:?}",
                        self.addrs[self.at],
                        self.failover
                    )
                }
            }
            self.stream = None;
            self.at = (self.at + 1) % self.addrs.len();
            self.failovers += 1;
        }
        Err(last)
    }

    async fn try_request(
        &mut self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            let addr = &self.addrs[self.at];
            let s = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connect {addr}"))?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| anyhow!("no connection"))?;
        self.req.clear();
        self.req.extend_from_slice(method.as_bytes());
        self.req.push(b' ');
        self.req.extend_from_slice(target.as_bytes());
        self.req
            .extend_from_slice(b" HTTP/1.1\r\nHost: loadgen\r\n");
        if method == "POST" {
            self.req
                .extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
            self.req
                .extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
            self.req.extend_from_slice(b"\r\n");
        }
        self.req.extend_from_slice(b"\r\n");
        self.req.extend_from_slice(body);
        stream.write_all(&self.req).await?;
        // Read the head.
        let (status, head_len, length, chunked, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = resp.parse(&self.buf)? {
                let status = resp.code.unwrap_or(0);
                let mut length = None;
                let mut chunked = false;
                let mut close = false;
                self.retry_after = None;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("retry-after") {
                        self.retry_after = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(std::time::Duration::from_secs);
                    }
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = true;
                    } else if h.name.eq_ignore_ascii_case("connection")
                        && h.value.eq_ignore_ascii_case(b"close")
                    {
                        close = true;
                    }
                }
                break (status, n, length, chunked, close);
            }
            self.fill().await?;
        };
        let body = if status == 204 || status == 304 {
            self.buf.drain(..head_len);
            Vec::new()
        } else if let Some(n) = length {
            while self.buf.len() < head_len + n {
                self.fill().await?;
            }
            let body = self.buf[head_len..head_len + n].to_vec();
            self.buf.drain(..head_len + n);
            body
        } else if chunked {
            self.buf.drain(..head_len);
            self.read_chunked().await?
        } else {
            bail!("response without length")
        };
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }

    async fn fill(&mut self) -> Result<()> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| anyhow!("no connection"))?;
        let mut tmp = [0u8; 16 << 10];
        let n = stream.read(&mut tmp).await?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let (start, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((n, size))) => break (n, size as usize),
                    Ok(httparse::Status::Partial) => self.fill().await?,
                    Err(_) => bail!("bad chunk size"),
                }
            };
            while self.buf.len() < start + size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[start..start + size]);
            self.buf.drain(..start + size + 2);
            if size == 0 {
                return Ok(body);
            }
        }
    }
}
