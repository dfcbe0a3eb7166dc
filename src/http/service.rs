//! The narrow interface between the connection loop (`conn.rs`: framing, timeouts, writing) and what the
//! engine does with a request (`server/routes.rs`): a framed [`Request`] in, a typed [`Reply`] out, and a
//! [`Served`] note after each request for the figures. HTTP's bytes stay on this side: a handler never
//! writes a status line or a header block, and the loop never parses its own responses back.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use futures::stream::LocalBoxStream;

use crate::http::deadline::Watches;
use crate::http::parse::{Head, Path};
use crate::http::response;

/// One framed request; every part is borrowed from the connection's read buffer.
pub struct Request<'a> {
    pub head: &'a Head,
    pub query: &'a str,
    /// The body, de-chunked (still gzip-compressed when `head.gzip`).
    pub body: &'a [u8],
    /// The `Authorization` header's value.
    pub auth: Option<&'a [u8]>,
    /// The `X-Tickcore-Position` header's value.
    pub position: Option<&'a [u8]>,
}

/// A complete answer.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Cow<'static, [u8]>,
    /// Header lines besides the standard ones, each ending in CRLF (`Allow: GET\r\n`).
    pub headers: Cow<'static, str>,
    /// Shed: the client is to come back later. Sent with `Retry-After: 1`; the connection is not read
    /// for `--shed-pause`, what a client that honors Retry-After does anyway.
    pub shed: bool,
    /// Records stored by the request.
    pub records: u64,
    /// Counted in the console's figures (false for a request refused before it was served).
    pub console: bool,
}

impl Answer {
    pub fn json(status: u16, body: impl Into<Cow<'static, [u8]>>) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            body: body.into(),
            headers: Cow::Borrowed(""),
            shed: false,
            records: 0,
            console: true,
        }
    }

    /// `{"error": reason}` (with the position of the offending line or element, when there is one).
    pub fn error(status: u16, reason: &str, position: Option<(&str, usize)>) -> Answer {
        let mut b = Vec::with_capacity(reason.len() + 32);
        crate::query::render::error(&mut b, reason, position);
        Answer::json(status, b)
    }

    /// `204 No Content`: `records` were stored.
    pub fn stored(records: u64) -> Answer {
        Answer {
            records,
            ..Answer::json(204, Vec::new())
        }
    }

    pub fn with_headers(mut self, headers: impl Into<Cow<'static, str>>) -> Answer {
        self.headers = headers.into();
        self
    }

    pub fn shed(mut self) -> Answer {
        self.shed = true;
        self
    }

    /// Writes the answer into `out`, with `Connection: close` when `close`.
    pub fn write(&self, out: &mut Vec<u8>, close: bool) {
        if self.status == 204 {
            return response::no_content(out, close, &self.headers);
        }
        let headers: Cow<str> = if self.shed {
            Cow::Owned(format!("{}Retry-After: 1\r\n", self.headers))
        } else {
            Cow::Borrowed(&self.headers)
        };
        response::with_type(
            out,
            self.status,
            self.content_type,
            &self.body,
            close,
            &headers,
        );
    }
}

/// A body streamed as it is produced (`/export`): chunked on HTTP/1.1, close-delimited on HTTP/1.0. An
/// `Err` item cuts the response short (the client sees an incomplete body).
pub struct Stream {
    pub content_type: &'static str,
    pub chunks: LocalBoxStream<'static, Result<Vec<u8>, ()>>,
}

pub enum Reply {
    Answer(Answer),
    Stream(Stream),
}

/// What the loop reports after each request (for `/metrics` and the console).
pub struct Served {
    /// `None`: refused while framing (the request never reached a handler).
    pub path: Option<Path>,
    pub status: u16,
    /// Service time: from the request being whole in the buffer to its answer being written.
    pub ns: u64,
    pub records: u64,
    pub body_bytes: u64,
    pub console: bool,
}

/// The connection loop's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub shed_pause: Duration,
}

/// What the connection loop serves.
pub trait Service {
    fn limits(&self) -> Limits;
    /// The timeouts of this core's connections, swept by the service's timer.
    fn watches(&self) -> &Watches;
    fn handle<'a>(&'a self, req: Request<'a>) -> impl Future<Output = Reply> + 'a;
    fn served(&self, s: Served);
}
