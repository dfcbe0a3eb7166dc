//! The engine's routes: what a framed request means (`http/service.rs` hands it over) and the typed answer
//! to it. Statuses are chosen here, from typed failures ([`StoreError`], [`ExportError`]); `Core` routes a
//! tag to its owner and the store answers in records, never in HTTP.

use std::rc::Rc;

use futures::StreamExt;

use crate::http::deadline::Watches;
use crate::http::parse::{Method, Path};
use crate::http::service::{Answer, Limits, Reply, Request, Served, Service, Stream};
use crate::ingest::decode::{self, Position};
use crate::message::Message;
use crate::query::{params, render};
use crate::server::core::Core;
use crate::server::{metrics, tokens};
use crate::store::shard::read::ExportError;
use crate::store::StoreError;

/// The answer to a failed storage operation: 507 for a full disk, 500 for a damaged tag file, 503
/// otherwise, shed (with `Retry-After`)
/// when the core is overloaded.
pub fn store_failure(e: &StoreError) -> Answer {
    let status = match e {
        StoreError::NoSpace(_) => 507,
        StoreError::Corrupt(_) => 500,
        StoreError::Io(_) | StoreError::Unavailable(_) | StoreError::Overloaded(_) => 503,
    };
    let a = Answer::error(status, &e.to_string(), None);
    match e {
        StoreError::Overloaded(_) => a.shed(),
        _ => a,
    }
}

impl Service for Rc<Core> {
    fn limits(&self) -> Limits {
        let c = &self.config;
        Limits {
            max_body: c.max_body,
            header_timeout: c.header_timeout,
            body_timeout: c.body_timeout,
            idle_timeout: c.idle_timeout,
            shed_pause: c.shed_pause,
        }
    }

    fn watches(&self) -> &Watches {
        &self.watches
    }

    async fn handle<'a>(&'a self, req: Request<'a>) -> Reply {
        let need = tokens::need(req.head.path, req.head.method);
        if !self.tokens.borrow().allows(need, req.auth) {
            return Reply::Answer(unauthorized(need));
        }
        if let (Some(p), Method::Get | Method::Head) = (req.position, req.head.method) {
            if let Err(a) = wait_position(self, p).await {
                return Reply::Answer(a);
            }
        }
        if (req.head.path, req.head.method) == (Path::Export, Method::Get) {
            return export(self, req.query).await;
        }
        // The saturation probe runs while any request is in service (`server/overload.rs`).
        let _serving = self.overload.enter();
        Reply::Answer(route(self, &req).await)
    }

    fn served(&self, s: Served) {
        if s.console {
            let failed = s.status >= 400;
            self.stats.borrow_mut().record(s.ns, s.records, failed);
        }
        let mut m = self.metrics.borrow_mut();
        let route = s.path.map_or("other", metrics::route);
        *m.requests.entry((route, s.status)).or_default() += 1;
        if s.path.is_some() {
            m.service.observe_ns(s.ns);
        }
        if s.records > 0 {
            m.records_in += s.records;
            m.bytes_in += s.body_bytes;
        }
    }
}

/// `401` with `WWW-Authenticate`: the route needs a token this request did not give.
fn unauthorized(need: tokens::Need) -> Answer {
    let what = if need == tokens::Need::Write {
        "write"
    } else {
        "read"
    };
    let reason = format!(
        "this route needs a {what} token: Authorization: Bearer <token> (or Token <token>)"
    );
    let a = Answer::error(401, &reason, None)
        .with_headers("WWW-Authenticate: Bearer realm=\"tickcore\"\r\n");
    Answer {
        console: false,
        ..a
    }
}

fn not_allowed(allowed: &'static str) -> Answer {
    Answer::error(405, &format!("method not allowed; use {allowed}"), None)
        .with_headers(format!("Allow: {allowed}\r\n"))
}

async fn route(core: &Core, req: &Request<'_>) -> Answer {
    // HEAD is GET whose body the connection leaves out (RFC 9110 9.3.2).
    let method = match req.head.method {
        Method::Head => Method::Get,
        m => m,
    };
    match (req.head.path, method) {
        (Path::Health, Method::Get) => Answer::json(200, &b"{\"status\":\"ok\"}"[..]),
        (Path::Save | Path::Write, Method::Post) => save(core, req).await,
        (Path::Api, Method::Get) => api(core, req.query).await,
        (Path::Save | Path::Write, _) => not_allowed("POST"),
        (Path::Metrics, Method::Get) => Answer {
            content_type: "text/plain; version=0.0.4",
            ..Answer::json(200, core.metrics_text().await.into_bytes())
        },
        (Path::Tags, Method::Get) => match params::parse_tags_limit(req.query) {
            Ok(limit) => {
                let (tags, total) = core.tags(limit).await;
                let mut b = Vec::with_capacity(tags.len() * 40 + 64);
                render::tags(&mut b, &tags, total);
                Answer::json(200, b)
            }
            Err(e) => Answer::error(400, &e, None),
        },
        (Path::Asset(i), Method::Get) => {
            let a = &crate::web::ASSETS[usize::from(i)];
            Answer {
                content_type: a.content_type,
                ..Answer::json(200, a.body).with_headers(crate::web::HEADERS)
            }
        }
        (Path::Api | Path::Export | Path::Health | Path::Metrics | Path::Tags | Path::Asset(_), _) => {
            not_allowed("GET")
        }
        (Path::Other, _) => Answer::error(
            404,
            "not found: the API is POST /save, GET /api, GET /export, GET /tags, GET /health, GET /metrics; the page is GET /",
            None,
        ),
    }
}

/// `POST /save` (JSON) and `/write` (line protocol).
async fn save(core: &Core, req: &Request<'_>) -> Answer {
    // A saturated core sheds new writes before decoding them (`server/overload.rs`).
    if let Err(e) = core.admit_write() {
        return store_failure(&e);
    }
    let inflated;
    let body = if req.head.gzip {
        match crate::http::conn::gunzip(req.body, core.config.max_body) {
            Ok(b) => {
                inflated = b;
                &inflated[..]
            }
            Err((status, reason)) => return Answer::error(status, &reason, None),
        }
    } else {
        req.body
    };
    let mut msgs = Vec::new();
    if req.head.path == Path::Write {
        if let Err(b) = decode_line_protocol(core, req.query, body, &mut msgs) {
            return Answer::json(400, b);
        }
    } else if let Err(e) = decode::decode_body(body, &mut msgs) {
        let pos = match e.position {
            Position::Whole => None,
            Position::Line(n) => Some(("line", n)),
            Position::Index(n) => Some(("index", n)),
        };
        return Answer::error(400, &e.reason, pos);
    }
    let cutoff = core.shard.retention_cutoff();
    if let Some(i) = msgs.iter().position(|m| m.record.time < cutoff) {
        let pos = (msgs.len() > 1).then_some(("index", i));
        let reason = format!(
            "time {} is older than the retention window (cutoff {cutoff})",
            msgs[i].record.time
        );
        return Answer::error(400, &reason, pos);
    }
    let n = msgs.len() as u64;
    // Cluster mode: stored on a majority of the NATS servers first, then here (docs/cluster.md).
    let mut replicated = None;
    if let Some(member) = &core.member {
        let _publishing = match member.admit(msgs.len()) {
            Ok(held) => held,
            Err(reason) => return Answer::error(503, &reason, None).shed(),
        };
        match member.publish(&msgs).await {
            Ok(at) => replicated = Some(at),
            Err(e) => {
                // A publish that timed out may still land: the write is not acknowledged, not known to be
                // lost; sent again it is stored once (duplicate admission on every node).
                let reason = format!(
                    "not acknowledged: the replicated log did not confirm the write ({e}); it may still be \
                     stored, and sending it again is safe (it is stored once)"
                );
                return Answer::error(503, &reason, None).shed();
            }
        }
    }
    match core.save(msgs).await {
        Ok(()) => match (replicated, &core.member) {
            (Some(p), Some(member)) => {
                member.stored(&p);
                Answer::stored(n)
                    .with_headers(format!("X-Tickcore-Position: {}\r\n", p.at.render()))
            }
            _ => Answer::stored(n),
        },
        // Replicated but not stored here: every node (this one included, through its consumer) applies it
        // anyway; the client may retry, and duplicate admission stores it once.
        Err(e) => {
            if let (Some(p), Some(member)) = (&replicated, &core.member) {
                member.not_stored(p);
            }
            store_failure(&e)
        }
    }
}

/// A read carrying `X-Tickcore-Position` waits until this node has applied it (read-your-writes across a
/// cluster's nodes); a single node has applied every write it acknowledged.
async fn wait_position(core: &Core, value: &[u8]) -> Result<(), Answer> {
    use crate::cluster::member::Positions;
    let text = std::str::from_utf8(value).unwrap_or("\u{fffd}");
    let at = Positions::parse(text).map_err(|e| Answer::error(400, &e, None))?;
    let Some(member) = &core.member else {
        return Ok(());
    };
    if at.0.iter().any(|&(k, _)| k >= member.applied.streams()) {
        let reason = format!("position {text:?} names a stream this cluster does not have");
        return Err(Answer::error(400, &reason, None));
    }
    let waited = member
        .wait_applied(&at, core.config.position_wait)
        .await
        .map_err(|e| Answer::error(503, &e, None).shed())?;
    if waited {
        Ok(())
    } else {
        let reason = format!(
            "this node has not applied position {text:?} within {:?} (applied: {:?})",
            core.config.position_wait,
            member.applied.all()
        );
        Err(Answer::error(504, &reason, None))
    }
}

/// `GET /api`.
async fn api(core: &Core, query: &str) -> Answer {
    let w = match params::parse_window(query, true) {
        Ok(w) => w,
        Err(e) => return Answer::error(400, &e, None),
    };
    let tag = w.tag.clone();
    match core.api(w).await {
        Ok(Some(b)) => Answer::json(200, b),
        Ok(None) => Answer::error(404, &format!("tag {tag:?} has never been written"), None),
        Err(e) => store_failure(&e),
    }
}

/// `GET /export`: NDJSON, streamed. A failure before the first records is an answer of its own.
async fn export(core: &Core, query: &str) -> Reply {
    let w = match params::parse_window(query, false) {
        Ok(w) => w,
        Err(e) => {
            return Reply::Answer(Answer {
                console: false,
                ..Answer::error(400, &e, None)
            })
        }
    };
    let tag = w.tag.clone();
    let mut rx = core.export(w).await;
    let first = rx.next().await;
    if let Some(Err(e)) = &first {
        let a = match e {
            ExportError::UnknownTag => {
                Answer::error(404, &format!("tag {tag:?} has never been written"), None)
            }
            ExportError::Failed(e) => store_failure(&e),
        };
        return Reply::Answer(Answer {
            console: false,
            ..a
        });
    }
    // Rendered here, as it streams; an empty piece marks the end, and a stream that ends without it was
    // cut short (its core failed): the reader sees an incomplete body, never a clean end.
    let pieces = futures::stream::iter(first).chain(rx);
    let chunks = futures::stream::unfold((pieces, false), |(mut pieces, ended)| async move {
        if ended {
            return None;
        }
        match pieces.next().await {
            Some(Ok(records)) if records.is_empty() => None,
            Some(Ok(records)) => {
                let mut out = Vec::with_capacity(records.len() * 256);
                for r in &records {
                    render::export_line(&mut out, r);
                }
                Some((Ok(out), (pieces, false)))
            }
            Some(Err(_)) | None => Some((Err(()), (pieces, true))),
        }
    })
    .boxed_local();
    Reply::Stream(Stream {
        content_type: "application/x-ndjson",
        chunks,
    })
}

/// `/write` and `/api/v2/write`: the parameters Influx clients send (only `precision` matters) and the
/// line-protocol body. The error is the whole 400 body, in Influx's shape (`code`, `message`) as well as
/// ours (`error`, `line`).
fn decode_line_protocol(
    core: &Core,
    query: &str,
    body: &[u8],
    msgs: &mut Vec<Message>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_failures_map_to_their_statuses_and_only_overload_is_shed() {
        let cases = [
            (StoreError::NoSpace("disk full".into()), 507, false),
            (StoreError::Io("EIO".into()), 503, false),
            (StoreError::Unavailable("core 1".into()), 503, false),
            (StoreError::Overloaded("core 1".into()), 503, true),
            (
                StoreError::Corrupt("corruption: a.rec at offset 0".into()),
                500,
                false,
            ),
        ];
        for (e, status, shed) in cases {
            let a = store_failure(&e);
            assert_eq!((a.status, a.shed), (status, shed), "{e:?}");
            let mut out = Vec::new();
            a.write(&mut out, false);
            let text = String::from_utf8(out).expect("utf-8");
            assert_eq!(text.contains("\r\nRetry-After: 1\r\n"), shed, "{text}");
            assert!(text.contains(&e.to_string()), "{text}");
        }
    }
}
