//! The connection loop: reads into one growing buffer, frames every complete (pipelined) request in it,
//! handles them in order and answers them all with one write. Keep-alive by default on HTTP/1.1, close on
//! HTTP/1.0 unless asked; `Expect: 100-continue` is answered as soon as a head with an incomplete body is
//! seen. A framing error answers its status and closes (the stream position is then unknown).

use std::rc::Rc;
use std::time::Instant;

use futures::future::{select, Either};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use glommio::net::TcpStream;

use crate::http::deadline::Phase;
use crate::http::parse::{self, Body, Head, HttpError, Method, Path};
use crate::http::response;
use crate::ingest::decode::{self, Position};
use crate::query::{params, render};
use crate::server::core::{Core, Stop};
use crate::server::metrics;
use crate::server::tokens;
use crate::store::shard::read::ExportError;

/// Largest request head accepted (431 above).
pub const HEAD_BYTES_MAX: usize = 16 << 10;
const READ_BYTES: usize = 64 << 10;
/// A deadline far enough away to mean "none" while a connection is handling requests.
const BUSY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Inflates a `Content-Encoding: gzip` body, at most `max` bytes of it (413 past that, 400 if corrupt).
fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, (u16, String)> {
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

/// `/write` and `/api/v2/write`: the parameters Influx clients send (only `precision` matters) and the
/// line-protocol body. The error is the whole 400 body, in Influx's shape (`code`, `message`) as well as
/// ours (`error`, `line`).
fn decode_line_protocol(
    core: &Core,
    query: &str,
    body: &[u8],
    msgs: &mut Vec<crate::message::Message>,
) -> Result<(), Vec<u8>> {
    use crate::ingest::lineproto::{self, Precision};
    let invalid = |message: &str, line: Option<usize>| {
        let mut b = Vec::with_capacity(message.len() * 2 + 64);
        b.extend_from_slice(b"{\"code\":\"invalid\",\"message\":");
        render::json_string(&mut b, message);
        b.extend_from_slice(b",\"error\":");
        render::json_string(&mut b, message);
        if let Some(n) = line {
            b.extend_from_slice(b",\"line\":");
            render::int(&mut b, n as i64);
        }
        b.push(b'}');
        b
    };
    let mut precision = Precision::Ns;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "precision" => {
                precision = Precision::parse(v).ok_or_else(|| {
                    invalid(
                        &format!("unknown precision {v:?} (ns, us, ms, s; 1.x: n, u, m, h)"),
                        None,
                    )
                })?
            }
            // Database, bucket and credentials name nothing here: one store, tokens checked elsewhere.
            "db" | "rp" | "u" | "p" | "consistency" | "org" | "orgID" | "bucket" => {}
            _ => return Err(invalid(&format!("unknown parameter {k:?}"), None)),
        }
    }
    let now = crate::clock::now_ns();
    lineproto::decode(body, &core.lp, precision, now, msgs)
        .map_err(|e| invalid(&format!("line {}: {}", e.line, e.reason), Some(e.line)))
}

/// `401` with `WWW-Authenticate`: the route needs a token this request did not give.
fn unauthorized(out: &mut Vec<u8>, need: tokens::Need, close: bool) {
    let what = if need == tokens::Need::Write {
        "write"
    } else {
        "read"
    };
    let b = error_body(
        &format!(
            "this route needs a {what} token: Authorization: Bearer <token> (or Token <token>)"
        ),
        None,
    );
    response::json(
        out,
        401,
        &b,
        close,
        "WWW-Authenticate: Bearer realm=\"tickcore\"\r\n",
    );
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

pub async fn serve(core: Rc<Core>, mut stream: TcpStream, stop: Stop) {
    // `buf[..filled]` holds unread bytes; the buffer is zeroed once and only grows for large bodies.
    let mut buf: Vec<u8> = vec![0; READ_BYTES];
    let mut filled = 0;
    let mut out: Vec<u8> = Vec::with_capacity(READ_BYTES);
    let mut body: Vec<u8> = Vec::new();
    // How far the chunked body of the request at the front of `buf` was decoded by earlier passes.
    let mut chunked = parse::ChunkedProgress::default();
    let mut continued_at: Option<usize> = None;
    let max_body = core.config.max_body;
    let (header_t, body_t, idle_t) = (
        core.config.header_timeout,
        core.config.body_timeout,
        core.config.idle_timeout,
    );
    let (watch, mut kicked) = core.watches.register(Instant::now() + idle_t);
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
                    fail(&core, &mut out, &e);
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
                            fail(&core, &mut out, &e);
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
            let need = tokens::need(head.path, head.method);
            let auth = head.auth.clone().map(|r| &inbuf[start..][r]);
            // `handled`: Some(failed) for a request answered by `handle` (the console's figures count those).
            let (next, status, n, handled) = if !core.tokens.borrow().allows(need, auth) {
                unauthorized(&mut out, need, !keep);
                let next = if keep { Next::KeepAlive } else { Next::Close };
                (next, 401, 0, None)
            } else if head.path == Path::Export && head.method == Method::Get {
                // Streams: everything before it goes out first.
                if !out.is_empty() && stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
                let (next, status) = export(&core, &mut stream, query, &head).await;
                (next, status, 0, None)
            } else {
                let at = out.len();
                let (n, err) = handle(&core, &head, query, req_body, &mut out).await;
                let next = if keep { Next::KeepAlive } else { Next::Close };
                let status = response::status_of(&out[at..]);
                shed |= status == 503 && response::retry_after(&out[at..]);
                (next, status, n, Some(err))
            };
            let ns = began.elapsed().as_nanos() as u64;
            if let Some(err) = handled {
                core.stats.borrow_mut().record(ns, n, err);
            }
            {
                let mut m = core.metrics.borrow_mut();
                *m.requests
                    .entry((metrics::route(head.path), status))
                    .or_default() += 1;
                m.service.observe_ns(ns);
                if n > 0 {
                    m.records_in += n;
                    m.bytes_in += req_body.len() as u64;
                }
            }
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
        if shed && !core.config.shed_pause.is_zero() {
            let pause = glommio::timer::sleep(core.config.shed_pause);
            if let Either::Right(_) = select(Box::pin(pause), stop.clone()).await {
                return;
            }
        }
        // A request waits whole in `buf`: its head, its body and, for a chunked body, the chunks' size lines
        // and CRLFs (at most an eighth of chunks of 64 bytes or more). Past that, a 413, never a silent close.
        let wire_max = HEAD_BYTES_MAX + max_body + max_body / 8 + 64;
        if filled > wire_max {
            fail(&core, &mut out, &HttpError::FramingTooLarge(wire_max));
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
                fail(&core, &mut out, &HttpError::Timeout(what));
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

fn fail(core: &Core, out: &mut Vec<u8>, e: &HttpError) {
    response::json(out, e.status(), &error_body(&e.to_string(), None), true, "");
    core.stats.borrow_mut().record(0, 0, true);
    *core
        .metrics
        .borrow_mut()
        .requests
        .entry(("other", e.status()))
        .or_default() += 1;
}

/// Handles one framed request; returns (records stored, whether it failed).
async fn handle(
    core: &Core,
    head: &Head,
    query: &str,
    body: &[u8],
    out: &mut Vec<u8>,
) -> (u64, bool) {
    // The saturation probe runs while any request is in service (`server/overload.rs`).
    let _serving = core.overload.enter();
    let close = !head.keep_alive;
    let json = |out: &mut Vec<u8>, status: u16, b: &[u8]| response::json(out, status, b, close, "");
    let allow = |out: &mut Vec<u8>, allowed: &str| {
        let b = error_body(&format!("method not allowed; use {allowed}"), None);
        response::json(out, 405, &b, close, &format!("Allow: {allowed}\r\n"));
    };
    match (head.path, head.method) {
        (Path::Health, Method::Get) => {
            json(out, 200, b"{\"status\":\"ok\"}");
            (0, false)
        }
        (Path::Save | Path::Write, Method::Post) => {
            // A saturated core sheds new writes before decoding them (`server/overload.rs`).
            if let Err(e) = core.admit_write() {
                let b = error_body(&e.to_string(), None);
                response::json(out, e.status(), &b, close, e.headers());
                return (0, true);
            }
            let inflated;
            let body = if head.gzip {
                match gunzip(body, core.config.max_body) {
                    Ok(b) => {
                        inflated = b;
                        &inflated[..]
                    }
                    Err((status, reason)) => {
                        json(out, status, &error_body(&reason, None));
                        return (0, true);
                    }
                }
            } else {
                body
            };
            let mut msgs = Vec::new();
            if head.path == Path::Write {
                if let Err(b) = decode_line_protocol(core, query, body, &mut msgs) {
                    json(out, 400, &b);
                    return (0, true);
                }
            } else if let Err(e) = decode::decode_body(body, &mut msgs) {
                let pos = match e.position {
                    Position::Whole => None,
                    Position::Line(n) => Some(("line", n)),
                    Position::Index(n) => Some(("index", n)),
                };
                json(out, 400, &error_body(&e.reason, pos));
                return (0, true);
            }
            let cutoff = core.shard.retention_cutoff();
            if let Some(i) = msgs.iter().position(|m| m.record.time < cutoff) {
                let pos = if msgs.len() == 1 {
                    None
                } else {
                    Some(("index", i))
                };
                let b = error_body(
                    &format!(
                        "time {} is older than the retention window (cutoff {cutoff})",
                        msgs[i].record.time
                    ),
                    pos,
                );
                json(out, 400, &b);
                return (0, true);
            }
            let n = msgs.len() as u64;
            match core.save(msgs).await {
                Ok(()) => {
                    response::no_content(out, close);
                    (n, false)
                }
                Err(e) => {
                    let b = error_body(&e.to_string(), None);
                    response::json(out, e.status(), &b, close, e.headers());
                    (0, true)
                }
            }
        }
        (Path::Api, Method::Get) => {
            let w = match params::parse_window(query, true) {
                Ok(w) => w,
                Err(e) => {
                    json(out, 400, &error_body(&e, None));
                    return (0, true);
                }
            };
            let tag = w.tag.clone();
            match core.api(w).await {
                Ok(Some(b)) => {
                    json(out, 200, &b);
                    (0, false)
                }
                Ok(None) => {
                    json(
                        out,
                        404,
                        &error_body(&format!("tag {tag:?} has never been written"), None),
                    );
                    (0, true)
                }
                Err(e) => {
                    json(out, 503, &error_body(&e, None));
                    (0, true)
                }
            }
        }
        (Path::Save | Path::Write, _) => {
            allow(out, "POST");
            (0, true)
        }
        (Path::Metrics, Method::Get) => {
            let text = core.metrics_text().await;
            response::body(
                out,
                200,
                "text/plain; version=0.0.4",
                text.as_bytes(),
                close,
            );
            (0, false)
        }
        (Path::Tags, Method::Get) => match params::parse_tags_limit(query) {
            Ok(limit) => {
                let (tags, total) = core.tags(limit).await;
                let mut b = Vec::with_capacity(tags.len() * 40 + 64);
                render::tags(&mut b, &tags, total);
                json(out, 200, &b);
                (0, false)
            }
            Err(e) => {
                json(out, 400, &error_body(&e, None));
                (0, true)
            }
        },
        (Path::Asset(i), Method::Get) => {
            let a = &crate::web::ASSETS[usize::from(i)];
            response::with_type(out, 200, a.content_type, a.body, close, crate::web::HEADERS);
            (0, false)
        }
        (
            Path::Api | Path::Export | Path::Health | Path::Metrics | Path::Tags | Path::Asset(_),
            _,
        ) => {
            allow(out, "GET");
            (0, true)
        }
        (Path::Other, _) => {
            json(
                out,
                404,
                &error_body(
                    "not found: the API is POST /save, GET /api, GET /export, GET /tags, GET /health, GET /metrics; the page is GET /",
                    None,
                ),
            );
            (0, true)
        }
    }
}

/// Streams `/export` straight to the socket, chunked on HTTP/1.1 and close-delimited on HTTP/1.0.
async fn export(core: &Core, stream: &mut TcpStream, query: &str, head: &Head) -> (Next, u16) {
    let mut out = Vec::with_capacity(70 << 10);
    let close = !head.keep_alive;
    let w = match params::parse_window(query, false) {
        Ok(w) => w,
        Err(e) => {
            response::json(&mut out, 400, &error_body(&e, None), close, "");
            let next = if stream.write_all(&out).await.is_ok() && !close {
                Next::KeepAlive
            } else {
                Next::Close
            };
            return (next, 400);
        }
    };
    let tag = w.tag.clone();
    let mut rx = core.export(w).await;
    let first = rx.next().await;
    if let Some(Err(e)) = &first {
        let (status, reason) = match e {
            ExportError::UnknownTag => (404, format!("tag {tag:?} has never been written")),
            ExportError::Failed(e) => (503, e.to_string()),
        };
        response::json(&mut out, status, &error_body(&reason, None), close, "");
        let next = if stream.write_all(&out).await.is_ok() && !close {
            Next::KeepAlive
        } else {
            Next::Close
        };
        return (next, status);
    }
    let chunked = head.minor == 1;
    let mut lines = Vec::with_capacity(64 << 10);
    response::stream_head(&mut out, "application/x-ndjson", chunked, !chunked || close);
    let mut item = first;
    while let Some(chunk) = item {
        let Ok(records) = chunk else {
            return (Next::Close, 200);
        }; // mid-stream failure: cut the response short
        lines.clear();
        for r in &records {
            render::export_line(&mut lines, r);
        }
        if chunked {
            response::chunk(&mut out, &lines);
        } else {
            out.extend_from_slice(&lines);
        }
        if stream.write_all(&out).await.is_err() {
            return (Next::Close, 200);
        }
        out.clear();
        item = rx.next().await;
    }
    if chunked {
        response::last_chunk(&mut out);
    }
    if stream.write_all(&out).await.is_err() || !chunked {
        return (Next::Close, 200);
    }
    (Next::KeepAlive, 200)
}
