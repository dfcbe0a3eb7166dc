//! Request framing: the head (via httparse) and the body (Content-Length or chunked). Pure functions over
//! the connection's read buffer; they never block and never allocate for a head. Every way a request can
//! be malformed maps to one [`HttpError`] carrying the status to answer with.

use std::ops::Range;

/// Most headers a request may carry; more is a 431.
pub const HEADERS_MAX: usize = 64;
/// Longest request target (path and query); longer is a 414 (nginx's default buffer for it is 8 KiB too).
pub const URI_MAX: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Head,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Save,
    Api,
    Export,
    Health,
    Metrics,
    Tags,
    /// InfluxDB line protocol: `/write` (1.x) and `/api/v2/write` (2.x).
    Write,
    /// A file of the built-in page: its index in `web::ASSETS` (0 is the page at `/`).
    Asset(u8),
    Other,
}

/// Every route the engine answers: its path, and the one method it takes (any other method gets 405).
/// docs/openapi.json describes exactly these (`tests/openapi.rs` holds the two together).
pub const ROUTES: [(&str, Path, Method); 9] = [
    ("/save", Path::Save, Method::Post),
    ("/write", Path::Write, Method::Post),
    ("/api/v2/write", Path::Write, Method::Post),
    ("/api", Path::Api, Method::Get),
    ("/export", Path::Export, Method::Get),
    ("/health", Path::Health, Method::Get),
    ("/metrics", Path::Metrics, Method::Get),
    ("/tags", Path::Tags, Method::Get),
    ("/", Path::Asset(0), Method::Get),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(usize),
    Chunked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    pub path: Path,
    /// The query string (after `?`) as a range of the buffer the head was parsed from.
    pub query: Range<usize>,
    /// The `Authorization` header's value, as a range of the buffer (`server/tokens.rs` reads it).
    pub auth: Option<Range<usize>>,
    /// The `X-Tickcore-Position` header's value (cluster mode: a read waits until this node applied it).
    pub position: Option<Range<usize>>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub body: Body,
    pub expect_continue: bool,
    pub keep_alive: bool,
    /// `Content-Encoding: gzip`: the body is to be decompressed.
    pub gzip: bool,
    /// Bytes of the head, including the blank line.
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Bad(String),
    #[error("a POST needs Content-Length or Transfer-Encoding: chunked")]
    LengthRequired,
    #[error("body of {got} bytes exceeds the limit of {max} bytes")]
    TooLarge { got: usize, max: usize },
    #[error("chunked body's framing too large: the request passed {0} bytes on the wire (send chunks of 64 bytes or more)")]
    FramingTooLarge(usize),
    #[error("request header block too large (more than {0} bytes or 64 headers)")]
    HeadTooLarge(usize),
    #[error("transfer-encoding {0:?} is not supported (only chunked)")]
    Unsupported(String),
    #[error("only HTTP/1.0 and HTTP/1.1 are supported")]
    Version,
    #[error("expectation {0:?} is not supported (only 100-continue)")]
    Expectation(String),
    #[error("request not received in time: the {0} took longer than its timeout")]
    Timeout(&'static str),
    #[error("request target longer than {0} bytes")]
    UriTooLong(usize),
    #[error("content-encoding {0:?} is not supported (only gzip and identity)")]
    Encoding(String),
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Bad(_) => 400,
            HttpError::LengthRequired => 411,
            HttpError::TooLarge { .. } | HttpError::FramingTooLarge(_) => 413,
            HttpError::HeadTooLarge(_) => 431,
            HttpError::Unsupported(_) => 501,
            HttpError::Version => 505,
            HttpError::Expectation(_) => 417,
            HttpError::Timeout(_) => 408,
            HttpError::UriTooLong(_) => 414,
            HttpError::Encoding(_) => 415,
        }
    }
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// True when `buf` starts like a request line whose version is not HTTP/1.x (e.g. the HTTP/2 preface).
fn wrong_version(buf: &[u8]) -> bool {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = buf[..line_end].trim_ascii_end();
    line.rsplit(|&b| b == b' ')
        .next()
        .is_some_and(|v| v.starts_with(b"HTTP/") && !v.starts_with(b"HTTP/1."))
        || line.ends_with(b"HTTP/1.2")
}

/// Parses a request head at the start of `buf`. `Ok(None)`: incomplete, read more.
pub fn parse_head(buf: &[u8], head_max: usize, body_max: usize) -> Result<Option<Head>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let Some(len) = complete(&mut req, buf, head_max)? else {
        return Ok(None);
    };
    if req.path.is_some_and(|p| p.len() > URI_MAX) {
        return Err(HttpError::UriTooLong(URI_MAX));
    }
    let minor = req.version.unwrap_or(1);
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let (path, query) = target(buf, req.path.unwrap_or("/"));
    let f = Fields::read(req.headers, buf, minor)?;
    let body = f.body(minor, method, body_max)?;
    Ok(Some(Head {
        method,
        path,
        query,
        auth: f.auth,
        position: f.position,
        minor,
        body,
        expect_continue: f.expect_continue,
        keep_alive: f.keep_alive,
        gzip: f.gzip,
        len,
    }))
}

/// Parses the head into `req`: `Some(len)` once it is complete and well-formed, `None` while it may still
/// become so.
fn complete<'h, 'b>(
    req: &mut httparse::Request<'h, 'b>,
    buf: &'b [u8],
    head_max: usize,
) -> Result<Option<usize>, HttpError> {
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if !buf.contains(&b'\n') && buf.len() > URI_MAX + 32 {
                return Err(HttpError::UriTooLong(URI_MAX));
            }
            if buf.len() > head_max {
                return Err(HttpError::HeadTooLarge(head_max));
            }
            // A request line announcing another HTTP version gets a 505 before the head completes.
            if buf.contains(&b'\n') && wrong_version(buf) {
                return Err(HttpError::Version);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge(head_max)),
        Err(httparse::Error::Version) => return Err(HttpError::Version),
        Err(e) => {
            if wrong_version(buf) {
                return Err(HttpError::Version);
            }
            return Err(HttpError::Bad(format!("malformed request head: {e}")));
        }
    };
    if len > head_max {
        return Err(HttpError::HeadTooLarge(head_max));
    }
    // RFC 9112 lets a server accept a bare LF as a line end; a proxy in front may not, and two parsers
    // that disagree on where a header ends are how requests are smuggled.
    if buf[..len]
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || buf[i - 1] != b'\r'))
    {
        return Err(HttpError::Bad(
            "bare LF in the request head: lines end in CRLF".into(),
        ));
    }
    Ok(Some(len))
}

/// The route of a request target and its query string's range in `buf`.
fn target(buf: &[u8], target: &str) -> (Path, Range<usize>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = if query.is_empty() {
        0..0
    } else {
        let at = query.as_ptr() as usize - buf.as_ptr() as usize;
        at..at + query.len()
    };
    let path = ROUTES
        .iter()
        .find(|r| r.0 == path)
        .map(|r| r.1)
        .or_else(|| crate::web::find(path).map(Path::Asset))
        .unwrap_or(Path::Other);
    (path, query)
}

/// What the header fields say.
struct Fields {
    content_length: Option<usize>,
    chunked: bool,
    expect_continue: bool,
    gzip: bool,
    auth: Option<Range<usize>>,
    position: Option<Range<usize>>,
    keep_alive: bool,
    hosts: usize,
}

impl Fields {
    fn read(headers: &[httparse::Header], buf: &[u8], minor: u8) -> Result<Fields, HttpError> {
        let mut f = Fields {
            content_length: None,
            chunked: false,
            expect_continue: false,
            gzip: false,
            auth: None,
            position: None,
            keep_alive: minor == 1,
            hosts: 0,
        };
        for h in headers {
            f.field(h.name, h.value, buf)?;
        }
        // RFC 9112 3.2: an HTTP/1.1 request has exactly one Host.
        match (f.hosts, minor) {
            (0, 1) => Err(HttpError::Bad(
                "an HTTP/1.1 request needs a Host header".into(),
            )),
            (n, _) if n > 1 => Err(HttpError::Bad("more than one Host header".into())),
            _ => Ok(f),
        }
    }

    fn field(&mut self, name: &str, v: &[u8], buf: &[u8]) -> Result<(), HttpError> {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("host") {
            self.hosts += 1;
        } else if is("content-length") {
            let n = std::str::from_utf8(v)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| HttpError::Bad("invalid Content-Length".into()))?;
            if self.content_length.is_some_and(|c| c != n) {
                return Err(HttpError::Bad("conflicting Content-Length headers".into()));
            }
            self.content_length = Some(n);
        } else if is("transfer-encoding") {
            if !v.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::Unsupported(
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
            self.chunked = true;
        } else if is("authorization") {
            if self.auth.is_some() {
                return Err(HttpError::Bad("more than one Authorization header".into()));
            }
            let at = v.as_ptr() as usize - buf.as_ptr() as usize;
            self.auth = Some(at..at + v.len());
        } else if is("x-tickcore-position") {
            if self.position.is_some() {
                return Err(HttpError::Bad(
                    "more than one X-Tickcore-Position header".into(),
                ));
            }
            let at = v.as_ptr() as usize - buf.as_ptr() as usize;
            self.position = Some(at..at + v.len());
        } else if is("content-encoding") {
            match v.trim_ascii().to_ascii_lowercase().as_slice() {
                b"gzip" | b"x-gzip" => self.gzip = true,
                b"identity" | b"" => {}
                _ => return Err(HttpError::Encoding(String::from_utf8_lossy(v).into_owned())),
            }
        } else if is("expect") {
            if !v.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                return Err(HttpError::Expectation(
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
            self.expect_continue = true;
        } else if is("connection") {
            if has_token(v, "close") {
                self.keep_alive = false;
            } else if has_token(v, "keep-alive") {
                self.keep_alive = true;
            }
        }
        Ok(())
    }

    /// How the body is framed.
    fn body(&self, minor: u8, method: Method, body_max: usize) -> Result<Body, HttpError> {
        match (self.content_length, self.chunked) {
            (Some(_), true) => Err(HttpError::Bad(
                "both Content-Length and Transfer-Encoding given".into(),
            )),
            (Some(n), false) if n > body_max => Err(HttpError::TooLarge {
                got: n,
                max: body_max,
            }),
            (Some(n), false) => Ok(Body::Length(n)),
            (None, true) if minor == 0 => {
                Err(HttpError::Bad("chunked encoding needs HTTP/1.1".into()))
            }
            (None, true) => Ok(Body::Chunked),
            (None, false) if method == Method::Post => Err(HttpError::LengthRequired),
            (None, false) => Ok(Body::None),
        }
    }
}

/// How far a chunked body was decoded by earlier calls while it arrived: the offset of the next chunk-size
/// line in the body's bytes and how many body bytes came before it. The connection keeps it while the body
/// is incomplete so that each byte is decoded once: decoding from the start on every read cost CPU time
/// quadratic in the body (2 MiB in 1-byte chunks sent 2 KiB at a time: 1.6 s of a core).
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedProgress {
    next: usize,
    decoded: usize,
}

/// Decodes a complete chunked body at the start of `buf` into `out`. `Ok(None)`: incomplete, read more and
/// call again with the same `buf` start, `out` and `progress`, which resume where this call stopped.
/// `Ok(Some(n))`: `n` bytes of `buf` were the body and trailers. A call with a fresh `progress` (or after
/// `Ok(Some)` or `Err`, which reset it) starts a new body and clears `out`.
pub fn decode_chunked(
    buf: &[u8],
    body_max: usize,
    out: &mut Vec<u8>,
    progress: &mut ChunkedProgress,
) -> Result<Option<usize>, HttpError> {
    if progress.next == 0 || out.len() != progress.decoded {
        out.clear();
        *progress = ChunkedProgress::default();
    }
    let result = decode_chunks(buf, body_max, out, progress);
    if !matches!(result, Ok(None)) {
        *progress = ChunkedProgress::default();
    }
    result
}

fn decode_chunks(
    buf: &[u8],
    body_max: usize,
    out: &mut Vec<u8>,
    progress: &mut ChunkedProgress,
) -> Result<Option<usize>, HttpError> {
    let mut pos = progress.next;
    loop {
        let (start, size) = match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete((n, size))) => (pos + n, size),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(HttpError::Bad("malformed chunk size line".into())),
        };
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > body_max.saturating_sub(out.len()) {
            return Err(HttpError::TooLarge {
                got: out.len().saturating_add(size),
                max: body_max,
            });
        }
        if size == 0 {
            // Trailer section: header lines until an empty line.
            let mut p = start;
            loop {
                let Some(nl) = buf[p..].iter().position(|&b| b == b'\n') else {
                    if buf.len() - start > 8192 {
                        return Err(HttpError::Bad("chunked trailers too long".into()));
                    }
                    return Ok(None);
                };
                let line = &buf[p..p + nl];
                p += nl + 1;
                if line.is_empty() || line == b"\r" {
                    return Ok(Some(p));
                }
            }
        }
        let end = start + size;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(HttpError::Bad("chunk data not followed by CRLF".into()));
        }
        out.extend_from_slice(&buf[start..end]);
        pos = end + 2;
        *progress = ChunkedProgress {
            next: pos,
            decoded: out.len(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(s: &str) -> Result<Option<Head>, HttpError> {
        parse_head(s.as_bytes(), 8192, 1000)
    }

    fn status(s: &str) -> u16 {
        head(s).expect_err(s).status()
    }

    #[test]
    fn heads() {
        let h = head("POST /save HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.method, h.path, h.body, h.keep_alive, h.minor),
            (Method::Post, Path::Save, Body::Length(5), true, 1)
        );
        assert_eq!(h.len, 51);
        let src = "GET /api?tag=a&start=1 HTTP/1.0\r\n\r\n";
        let h = head(src).unwrap().unwrap();
        assert_eq!(
            (h.path, &src[h.query.clone()], h.keep_alive),
            (Path::Api, "tag=a&start=1", false)
        );
        let h = head("GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive && h.path == Path::Other);
        let h = head("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = head(
            "POST /save HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(h.expect_continue && h.body == Body::Chunked);
        assert_eq!(head("GET /save HTTP/1.1\r\nHost: x\r\nHOSTX"), Ok(None));
    }

    #[test]
    fn head_errors() {
        assert_eq!(status("POST /save HTTP/1.1\r\nHost: x\r\n\r\n"), 411);
        assert_eq!(
            status("POST /save HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n"),
            413
        );
        assert_eq!(
            status("POST /save HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n"),
            400
        );
        assert_eq!(
            status(
                "POST /save HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status(
                "POST /save HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status("POST /save HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501
        );
        assert_eq!(
            status("POST /save HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 200-ok\r\n\r\n"),
            417
        );
        assert_eq!(status("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTP/1.2\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTP/3.0\r\n"), 505);
        assert_eq!(status("GARBAGE\r\n\r\n"), 400);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        );
        assert_eq!(status(&big), 431);
        assert_eq!(
            status(&format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX: {}",
                "a".repeat(9000)
            )),
            431
        );
        // Smuggling and framing (RFC 9112): each a 4xx.
        assert_eq!(status("GET /health HTTP/1.1\r\n\r\n"), 400, "no Host");
        assert_eq!(
            status("GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            400
        );
        assert!(
            head("GET /health HTTP/1.0\r\n\r\n").is_ok(),
            "1.0 needs no Host"
        );
        assert_eq!(
            status("GET /health HTTP/1.1\nHost: a\r\n\r\n"),
            400,
            "bare LF"
        );
        assert_eq!(
            status("GET /health HTTP/1.1\r\nHost: a\n\r\n"),
            400,
            "bare LF"
        );
        assert_eq!(
            status("GET /health HTTP/1.1\r\nHost : a\r\n\r\n"),
            400,
            "space before colon"
        );
        assert_eq!(
            status("GET /health HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded\r\n\r\n"),
            400,
            "obs-fold"
        );
        assert_eq!(
            status("GET /health HTTP/1.1\r\nHost: a\0b\r\n\r\n"),
            400,
            "NUL"
        );
        let long = format!(
            "GET /api?tag={} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(URI_MAX)
        );
        assert_eq!(
            parse_head(long.as_bytes(), 65536, 10).unwrap_err().status(),
            414
        );
        let cut = format!("GET /api?tag={}", "a".repeat(URI_MAX + 100));
        assert_eq!(
            parse_head(cut.as_bytes(), 65536, 10).unwrap_err().status(),
            414
        );
        let many: String = (0..70).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")),
            431
        );
    }

    fn chunked(s: &str, max: usize) -> Result<Option<(usize, Vec<u8>)>, HttpError> {
        let mut out = Vec::new();
        decode_chunked(s.as_bytes(), max, &mut out, &mut ChunkedProgress::default())
            .map(|r| r.map(|n| (n, out)))
    }

    #[test]
    fn chunked_bodies() {
        let s = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (n, body) = chunked(s, 100).unwrap().unwrap();
        assert_eq!((&s[n..], body.as_slice()), ("NEXT", &b"hello world"[..]));
        assert_eq!(chunked("5\r\nhel", 100), Ok(None));
        assert_eq!(chunked("5\r\nhello\r\n0\r\n", 100), Ok(None));
        assert_eq!(chunked("5\r\nhelloXX", 100).unwrap_err().status(), 400);
        assert_eq!(chunked("zz\r\n", 100).unwrap_err().status(), 400);
        assert_eq!(
            chunked("5\r\nhello\r\n5\r\nhello\r\n", 8)
                .unwrap_err()
                .status(),
            413
        );
        assert_eq!(
            chunked("ffffffffffffffff\r\n", 8).unwrap_err().status(),
            413
        );
    }

    proptest! {
        #[test]
        fn head_parser_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_head(&buf, 256, 100);
        }

        #[test]
        fn chunked_round_trips_at_every_split(body in proptest::collection::vec(any::<u8>(), 0..200), sizes in proptest::collection::vec(1usize..40, 1..10)) {
            let mut enc = Vec::new();
            let mut rest = &body[..];
            let mut k = 0;
            while !rest.is_empty() {
                let n = sizes[k % sizes.len()].min(rest.len());
                enc.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                enc.extend_from_slice(&rest[..n]);
                enc.extend_from_slice(b"\r\n");
                rest = &rest[n..];
                k += 1;
            }
            enc.extend_from_slice(b"0\r\n\r\n");
            let mut out = Vec::new();
            for cut in 0..enc.len() {
                prop_assert_eq!(decode_chunked(&enc[..cut], 1000, &mut out, &mut ChunkedProgress::default()), Ok(None));
            }
            prop_assert_eq!(decode_chunked(&enc, 1000, &mut out, &mut ChunkedProgress::default()), Ok(Some(enc.len())));
            prop_assert_eq!(&out, &body);
            // Resumed across reads of any sizes: the same body, and the progress is spent at the end.
            let mut progress = ChunkedProgress::default();
            let mut resumed = Vec::new();
            let mut cut = 0;
            let mut k = 0;
            while cut < enc.len() {
                prop_assert_eq!(decode_chunked(&enc[..cut], 1000, &mut resumed, &mut progress), Ok(None));
                cut += sizes[k % sizes.len()];
                k += 1;
            }
            prop_assert_eq!(decode_chunked(&enc, 1000, &mut resumed, &mut progress), Ok(Some(enc.len())));
            prop_assert_eq!(resumed, body);
            prop_assert_eq!(progress, ChunkedProgress::default());
        }
    }

    #[test]
    fn a_resumed_body_is_not_decoded_again_from_its_start() {
        let enc = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let mut out = Vec::new();
        let mut progress = ChunkedProgress::default();
        assert_eq!(
            decode_chunked(&enc[..14], 100, &mut out, &mut progress),
            Ok(None)
        );
        assert_eq!(out, b"hello");
        // The first chunk's bytes are not read again: garbage there does not matter any more.
        let mut later = enc.to_vec();
        later[..10].fill(b'x');
        assert_eq!(
            decode_chunked(&later, 100, &mut out, &mut progress),
            Ok(Some(enc.len()))
        );
        assert_eq!(out, b"hello world");
        // A fresh progress starts over (and finds the garbage).
        assert!(decode_chunked(&later, 100, &mut out, &mut ChunkedProgress::default()).is_err());
        // The limit counts what was decoded before the resume.
        let mut progress = ChunkedProgress::default();
        assert_eq!(
            decode_chunked(&enc[..10], 8, &mut out, &mut progress),
            Ok(None)
        );
        assert_eq!(out, b"hello");
        assert_eq!(
            decode_chunked(enc, 8, &mut out, &mut progress).map_err(|e| e.status()),
            Err(413)
        );
        assert_eq!(progress, ChunkedProgress::default());
    }
}
