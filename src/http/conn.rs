//! The connection loop: reads into one growing buffer, frames every complete (pipelined) request in it,
//! handles them in order and answers them all with one write. Keep-alive by default on HTTP/1.1, close on
//! HTTP/1.0 unless asked; `Expect: 100-continue` is answered as soon as a head with an incomplete body is
//! seen. A framing error answers its status and closes (the stream position is then unknown).

use std::time::Instant;

use futures::channel::oneshot;
use futures::future::{select, Either, Shared};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use glommio::net::TcpStream;

use crate::http::deadline::Phase;
use crate::http::parse::{self, Body, Head, HttpError};
use crate::http::response;
use crate::http::service::{Reply, Request, Served, Service, Stream};
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

pub async fn serve<S: Service>(svc: S, mut stream: TcpStream, stop: Stop) {
    // `buf[..filled]` holds unread bytes; the buffer is zeroed once and only grows for large bodies.
    let mut buf: Vec<u8> = vec![0; READ_BYTES];
    let mut filled = 0;
    let mut out: Vec<u8> = Vec::with_capacity(READ_BYTES);
    let mut body: Vec<u8> = Vec::new();
    // How far the chunked body of the request at the front of `buf` was decoded by earlier passes.
    let mut chunked = parse::ChunkedProgress::default();
    let mut continued_at: Option<usize> = None;
    let limits = svc.limits();
    let max_body = limits.max_body;
    let (header_t, body_t, idle_t) = (
        limits.header_timeout,
        limits.body_timeout,
        limits.idle_timeout,
    );
    let (watch, mut kicked) = svc.watches().register(Instant::now() + idle_t);
    // When the request at the front of the buffer started arriving (for the header timeout).
    let mut request_since: Option<Instant> = None;
    loop {
        let mut start = 0;
        let mut close = false;
        // A write of this pass was shed: the connection is not read for `--shed-pause`, what a client that
        // honors Retry-After does anyway, enforced on one that resends at once (its resends would keep the
        // core busy refusing them while the disk idles: benches/RESULTS.md).
        let mut shed = false;
        // What the bytes left after this pass are waiting for.
        let mut pending = Phase::Head;
        // Frame and handle every complete request in the buffer.
        let inbuf = &buf[..filled];
        while start < inbuf.len() {
            let head = match parse::parse_head(&inbuf[start..], HEAD_BYTES_MAX, max_body) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    pending = Phase::Head;
                    break;
                }
                Err(e) => {
                    fail(&svc, &mut out, &e);
                    close = true;
                    break;
                }
            };
            let at = start + head.len;
            let (body_range, consumed) = match head.body {
                Body::None => (at..at, head.len),
                Body::Length(n) if inbuf.len() - at >= n => (at..at + n, head.len + n),
                Body::Length(_) => {
                    expect_continue(&head, start, &mut continued_at, &mut out);
                    pending = Phase::Body;
                    break;
                }
                Body::Chunked => {
                    match parse::decode_chunked(&inbuf[at..], max_body, &mut body, &mut chunked) {
                        Ok(Some(n)) => (usize::MAX..usize::MAX, head.len + n),
                        Ok(None) => {
                            expect_continue(&head, start, &mut continued_at, &mut out);
                            pending = Phase::Body;
                            break;
                        }
                        Err(e) => {
                            fail(&svc, &mut out, &e);
                            close = true;
                            break;
                        }
                    }
                }
            };
            let began = Instant::now();
            let req_body: &[u8] = if body_range.start == usize::MAX {
                &body
            } else {
                &inbuf[body_range]
            };
            // Borrowed from the read buffer, which is not touched until this request is answered.
            let query =
                std::str::from_utf8(&inbuf[start..][head.query.clone()]).unwrap_or("\u{fffd}");
            let keep = head.keep_alive;
            let auth = head.auth.clone().map(|r| &inbuf[start..][r]);
            let req = Request {
                head: &head,
                query,
                body: req_body,
                auth,
            };
            let (next, status, records, console) = match svc.handle(req).await {
                Reply::Answer(a) => {
                    a.write(&mut out, !keep);
                    shed |= a.shed && a.status == 503;
                    let next = if keep { Next::KeepAlive } else { Next::Close };
                    (next, a.status, a.records, a.console)
                }
                Reply::Stream(body) => {
                    // Everything before it goes out first.
                    if !out.is_empty() && stream.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    (stream_out(&mut stream, body, &head).await, 200, 0, false)
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
            start += consumed;
            continued_at = None;
            if matches!(next, Next::Close) || !keep {
                close = true;
                break;
            }
        }
        if close {
            // `handle` wrote responses without `Connection: close`; the peer sees the FIN after them.
            let _ = stream.write_all(&out).await;
            let _ = stream.close().await;
            return;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if filled == 0 {
            request_since = None;
        } else if start > 0 {
            // A request was answered and the next one has begun.
            request_since = Some(Instant::now());
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if shed && !limits.shed_pause.is_zero() {
            let pause = glommio::timer::sleep(limits.shed_pause);
            if let Either::Right(_) = select(Box::pin(pause), stop.clone()).await {
                return;
            }
        }
        // A request waits whole in `buf`: its head, its body and, for a chunked body, the chunks' size lines
        // and CRLFs (at most an eighth of chunks of 64 bytes or more). Past that, a 413, never a silent close.
        let wire_max = HEAD_BYTES_MAX + max_body + max_body / 8 + 64;
        if filled > wire_max {
            fail(&svc, &mut out, &HttpError::FramingTooLarge(wire_max));
            let _ = stream.write_all(&out).await;
            let _ = stream.close().await;
            return;
        }
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let now = Instant::now();
        match (filled, pending) {
            (0, _) => watch.set(Phase::Idle, now + idle_t),
            (_, Phase::Body) => watch.set(Phase::Body, now + body_t),
            _ => watch.set(Phase::Head, request_since.unwrap_or(now) + header_t),
        }
        let n = match select(
            stream.read(&mut buf[filled..]),
            select(stop.clone(), &mut kicked),
        )
        .await
        {
            Either::Left((Ok(n), _)) => n,
            Either::Right((Either::Right((Ok(phase), _)), _)) if phase != Phase::Idle => {
                let what = if phase == Phase::Head {
                    "request head"
                } else {
                    "request body"
                };
                fail(&svc, &mut out, &HttpError::Timeout(what));
                let _ = stream.write_all(&out).await;
                let _ = stream.close().await;
                return;
            }
            Either::Left((Err(_), _)) | Either::Right(_) => 0,
        };
        // Handling what arrived (a long /export included) is not a wait on the client: no deadline until the
        // next read sets one.
        watch.set(Phase::Idle, now + BUSY);
        if filled == 0 && n > 0 {
            request_since = Some(Instant::now());
        }
        filled += n;
        if n == 0 {
            return;
        }
    }
}

fn expect_continue(head: &Head, start: usize, continued_at: &mut Option<usize>, out: &mut Vec<u8>) {
    if head.expect_continue && *continued_at != Some(start) {
        out.extend_from_slice(response::CONTINUE);
        *continued_at = Some(start);
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
