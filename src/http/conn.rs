//! The connection loop: reads into one growing buffer, frames every complete (pipelined) request in it,
//! handles them in order and answers them all with one write. Keep-alive by default on HTTP/1.1, close on
//! HTTP/1.0 unless asked; `Expect: 100-continue` is answered as soon as a head with an incomplete body is
//! seen. A framing error answers its status and closes (the stream position is then unknown).

use std::ops::Range;
use std::time::Instant;

use futures::channel::oneshot;
use futures::future::{select, Either, Shared};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use glommio::net::TcpStream;

use crate::http::deadline::Phase;
use crate::http::parse::{self, Body, Head, HttpError, Method};
use crate::http::response;
use crate::http::service::{Limits, Reply, Request, Served, Service, Stream};
use crate::query::render;

/// Resolves when the engine stops: connections finish what they are handling and close.
pub type Stop = Shared<oneshot::Receiver<()>>;

/// Largest request head accepted (431 above).
pub const HEAD_BYTES_MAX: usize = 16 << 10;
const READ_BYTES: usize = 64 << 10;
/// A deadline far enough away to mean "none" while a connection is handling requests.
const BUSY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Inflates a `Content-Encoding: gzip` body, at most `max` bytes of it (413 past that, 400 if corrupt).
pub fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, (u16, String)> {
    use std::io::Read;
    let mut out = Vec::with_capacity(body.len() * 4);
    let mut d = flate2::read::MultiGzDecoder::new(body).take(max as u64 + 1);
    d.read_to_end(&mut out)
        .map_err(|e| (400, format!("bad gzip body: {e}")))?;
    if out.len() > max {
        return Err((
            413,
            format!("gzip body inflates past the limit of {max} bytes"),
        ));
    }
    Ok(out)
}

fn error_body(reason: &str, position: Option<(&str, usize)>) -> Vec<u8> {
    let mut b = Vec::with_capacity(reason.len() + 32);
    render::error(&mut b, reason, position);
    b
}

enum Next {
    KeepAlive,
    Close,
}

/// One connection's state between reads.
struct Conn<S> {
    svc: S,
    stream: TcpStream,
    stop: Stop,
    limits: Limits,
    /// `buf[..filled]` holds unread bytes; the buffer is zeroed once and only grows for large bodies.
    buf: Vec<u8>,
    filled: usize,
    out: Vec<u8>,
    /// The de-chunked body of the request at the front of `buf`, and how far earlier passes decoded it.
    body: Vec<u8>,
    chunked: parse::ChunkedProgress,
    /// Where a `100 Continue` was last sent (once per request).
    continued_at: Option<usize>,
    /// When the request at the front of the buffer started arriving (for the header timeout).
    request_since: Option<Instant>,
}

/// How a pass over the buffer ended.
struct Pass {
    /// Bytes of `buf` answered.
    start: usize,
    close: bool,
    /// A write of this pass was shed: the connection is not read for `--shed-pause`, what a client that
    /// honors Retry-After does anyway, enforced on one that resends at once (its resends would keep the
    /// core busy refusing them while the disk idles: benches/RESULTS.md).
    shed: bool,
    /// What the bytes left after this pass are waiting for.
    pending: Phase,
}

/// A request framed at the front of `buf[start..]`.
enum Framed {
    Whole {
        head: Head,
        /// The body's place in `buf`, or `None`: it was chunked, and is in `Conn::body`.
        body: Option<Range<usize>>,
        consumed: usize,
    },
    Incomplete(Phase),
    Failed(HttpError),
}

pub async fn serve<S: Service>(svc: S, stream: TcpStream, stop: Stop) {
    let limits = svc.limits();
    let (watch, mut kicked) = svc.watches().register(Instant::now() + limits.idle_timeout);
    let mut c = Conn {
        svc,
        stream,
        stop,
        limits,
        buf: vec![0; READ_BYTES],
        filled: 0,
        out: Vec::with_capacity(READ_BYTES),
        body: Vec::new(),
        chunked: parse::ChunkedProgress::default(),
        continued_at: None,
        request_since: None,
    };
    loop {
        let Some(pass) = c.pass().await else {
            return;
        };
        if pass.close {
            // Responses went out without `Connection: close`; the peer sees the FIN after them.
            return c.finish().await;
        }
        if !c.settle(pass.start, pass.shed).await {
            return;
        }
        // A request waits whole in `buf`: its head, its body and, for a chunked body, the chunks' size lines
        // and CRLFs (at most an eighth of chunks of 64 bytes or more). Past that, a 413, never a silent close.
        let max_body = c.limits.max_body;
        let wire_max = HEAD_BYTES_MAX + max_body + max_body / 8 + 64;
        if c.filled > wire_max {
            fail(&c.svc, &mut c.out, &HttpError::FramingTooLarge(wire_max));
            return c.finish().await;
        }
        if c.filled == c.buf.len() {
            c.buf.resize(c.buf.len() * 2, 0);
        }
        let now = Instant::now();
        let l = c.limits;
        match (c.filled, pass.pending) {
            (0, _) => watch.set(Phase::Idle, now + l.idle_timeout),
            (_, Phase::Body) => watch.set(Phase::Body, now + l.body_timeout),
            _ => watch.set(
                Phase::Head,
                c.request_since.unwrap_or(now) + l.header_timeout,
            ),
        }
        let mut eof = false;
        let n = match select(
            c.stream.read(&mut c.buf[c.filled..]),
            select(c.stop.clone(), &mut kicked),
        )
        .await
        {
            Either::Left((Ok(0), _)) => {
                eof = true;
                0
            }
            Either::Left((Ok(n), _)) => n,
            Either::Right((Either::Right((Ok(phase), _)), _)) if phase != Phase::Idle => {
                let what = match phase {
                    Phase::Head => "request head",
                    _ => "request body",
                };
                fail(&c.svc, &mut c.out, &HttpError::Timeout(what));
                return c.finish().await;
            }
            Either::Left((Err(_), _)) | Either::Right(_) => 0,
        };
        // The client half-closed with a request begun: tell it so (it may still be reading). Bare line ends
        // between requests (some clients add one after a body) begin nothing.
        if eof
            && c.buf[..c.filled]
                .iter()
                .any(|b| !matches!(b, b'\r' | b'\n'))
        {
            let what = match pass.pending {
                Phase::Body => "request body ended before its Content-Length or last chunk",
                _ => "request head ended before its blank line",
            };
            fail(&c.svc, &mut c.out, &HttpError::Bad(what.into()));
            return c.finish().await;
        }
        // Handling what arrived (a long /export included) is not a wait on the client: no deadline until the
        // next read sets one.
        watch.set(Phase::Idle, now + BUSY);
        if c.filled == 0 && n > 0 {
            c.request_since = Some(Instant::now());
        }
        c.filled += n;
        if n == 0 {
            return;
        }
    }
}

impl<S: Service> Conn<S> {
    /// Frames and answers every complete (pipelined) request in the buffer. `None`: the connection is gone.
    async fn pass(&mut self) -> Option<Pass> {
        let mut p = Pass {
            start: 0,
            close: false,
            shed: false,
            pending: Phase::Head,
        };
        while p.start < self.filled {
            let (head, body, consumed) = match self.frame(p.start) {
                Framed::Whole {
                    head,
                    body,
                    consumed,
                } => (head, body, consumed),
                Framed::Incomplete(phase) => {
                    p.pending = phase;
                    break;
                }
                Framed::Failed(e) => {
                    fail(&self.svc, &mut self.out, &e);
                    p.close = true;
                    break;
                }
            };
            let (next, shed) = self.answer(p.start, &head, body).await?;
            p.shed |= shed;
            p.start += consumed;
            self.continued_at = None;
            if matches!(next, Next::Close) || !head.keep_alive {
                p.close = true;
                break;
            }
        }
        Some(p)
    }

    /// Frames the request at `buf[start..]`: its head and, when it is all there, its body.
    fn frame(&mut self, start: usize) -> Framed {
        let inbuf = &self.buf[start..self.filled];
        let head = match parse::parse_head(inbuf, HEAD_BYTES_MAX, self.limits.max_body) {
            Ok(Some(h)) => h,
            Ok(None) => return Framed::Incomplete(Phase::Head),
            Err(e) => return Framed::Failed(e),
        };
        let at = head.len;
        let (body, consumed) = match head.body {
            Body::None => (Some(start + at..start + at), head.len),
            Body::Length(n) if inbuf.len() - at >= n => {
                (Some(start + at..start + at + n), head.len + n)
            }
            Body::Length(_) => return self.incomplete(&head, start),
            Body::Chunked => {
                let max = self.limits.max_body;
                match parse::decode_chunked(&inbuf[at..], max, &mut self.body, &mut self.chunked) {
                    Ok(Some(n)) => (None, head.len + n),
                    Ok(None) => return self.incomplete(&head, start),
                    Err(e) => return Framed::Failed(e),
                }
            }
        };
        Framed::Whole {
            head,
            body,
            consumed,
        }
    }

    /// A head whose body is still arriving: `100 Continue` once, if asked.
    fn incomplete(&mut self, head: &Head, start: usize) -> Framed {
        if head.expect_continue && self.continued_at != Some(start) {
            self.out.extend_from_slice(response::CONTINUE);
            self.continued_at = Some(start);
        }
        Framed::Incomplete(Phase::Body)
    }

    /// Hands one framed request to the service and answers it (into `out`, or streamed). Returns whether the
    /// connection goes on and whether the answer shed a write; `None`: the connection is gone.
    async fn answer(
        &mut self,
        start: usize,
        head: &Head,
        body: Option<Range<usize>>,
    ) -> Option<(Next, bool)> {
        let began = Instant::now();
        let Conn {
            svc,
            stream,
            buf,
            out,
            body: decoded,
            ..
        } = self;
        let req_body: &[u8] = match body {
            Some(r) => &buf[r],
            None => decoded,
        };
        // Borrowed from the read buffer, which is not touched until this request is answered.
        let at = &buf[start..];
        let query = std::str::from_utf8(&at[head.query.clone()]).unwrap_or("\u{fffd}");
        let auth = head.auth.clone().map(|r| &at[r]);
        let position = head.position.clone().map(|r| &at[r]);
        let keep = head.keep_alive;
        let req = Request {
            head,
            query,
            body: req_body,
            auth,
            position,
        };
        let (next, status, records, console, shed) = match svc.handle(req).await {
            Reply::Answer(a) => {
                a.write(out, !keep);
                if head.method == Method::Head {
                    // The head of the answer only, its Content-Length included (RFC 9110 9.3.2).
                    out.truncate(out.len() - a.body.len());
                }
                let next = if keep { Next::KeepAlive } else { Next::Close };
                (
                    next,
                    a.status,
                    a.records,
                    a.console,
                    a.shed && a.status == 503,
                )
            }
            Reply::Stream(s) => {
                // Everything before it goes out first.
                if !out.is_empty() && stream.write_all(out).await.is_err() {
                    return None;
                }
                out.clear();
                (stream_out(stream, s, head).await, 200, 0, false, false)
            }
        };
        svc.served(Served {
            path: Some(head.path),
            status,
            ns: began.elapsed().as_nanos() as u64,
            records,
            body_bytes: req_body.len() as u64,
            console,
        });
        Some((next, shed))
    }

    /// After a pass: drops the answered bytes, sends the answers and, after a shed write, pauses.
    /// False: the connection is gone (or the engine stops).
    async fn settle(&mut self, start: usize, shed: bool) -> bool {
        self.buf.copy_within(start..self.filled, 0);
        self.filled -= start;
        if self.filled == 0 {
            self.request_since = None;
        } else if start > 0 {
            // A request was answered and the next one has begun.
            self.request_since = Some(Instant::now());
        }
        if !self.out.is_empty() {
            if self.stream.write_all(&self.out).await.is_err() {
                return false;
            }
            self.out.clear();
        }
        let pause = self.limits.shed_pause;
        if shed && !pause.is_zero() {
            let sleep = glommio::timer::sleep(pause);
            if let Either::Right(_) = select(Box::pin(sleep), self.stop.clone()).await {
                return false;
            }
        }
        true
    }

    /// Sends what is answered and closes.
    async fn finish(mut self) {
        let _ = self.stream.write_all(&self.out).await;
        let _ = self.stream.close().await;
    }
}

/// Answers a request refused while framing (the connection closes after it).
fn fail<S: Service>(svc: &S, out: &mut Vec<u8>, e: &HttpError) {
    response::json(out, e.status(), &error_body(&e.to_string(), None), true, "");
    svc.served(Served {
        path: None,
        status: e.status(),
        ns: 0,
        records: 0,
        body_bytes: 0,
        console: true,
    });
}

/// Streams a body straight to the socket, chunked on HTTP/1.1 and close-delimited on HTTP/1.0.
async fn stream_out(stream: &mut TcpStream, mut body: Stream, head: &Head) -> Next {
    let close = !head.keep_alive;
    let mut out = Vec::with_capacity(70 << 10);
    let chunked = head.minor == 1;
    response::stream_head(&mut out, body.content_type, chunked, !chunked || close);
    while let Some(chunk) = body.chunks.next().await {
        // A mid-stream failure cuts the response short.
        let Ok(data) = chunk else {
            return Next::Close;
        };
        if chunked {
            response::chunk(&mut out, &data);
        } else {
            out.extend_from_slice(&data);
        }
        if stream.write_all(&out).await.is_err() {
            return Next::Close;
        }
        out.clear();
    }
    if chunked {
        response::last_chunk(&mut out);
    }
    if stream.write_all(&out).await.is_err() || !chunked {
        return Next::Close;
    }
    Next::KeepAlive
}
