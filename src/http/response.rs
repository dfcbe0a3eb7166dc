//! Writes responses into the connection's reused output buffer.

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

fn status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A `204 No Content` (the answer to a stored write); `extra` is inserted verbatim among the headers.
pub fn no_content(out: &mut Vec<u8>, close: bool, extra: &str) {
    out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n");
    out.extend_from_slice(extra.as_bytes());
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A complete response with a JSON body. `extra` is inserted verbatim among the headers.
pub fn json(out: &mut Vec<u8>, status: u16, body: &[u8], close: bool, extra: &str) {
    with_type(out, status, "application/json", body, close, extra);
}

/// A complete response with a body of any type.
pub fn body(out: &mut Vec<u8>, status: u16, content_type: &str, body: &[u8], close: bool) {
    with_type(out, status, content_type, body, close, "");
}

/// A complete response with a body of any type; `extra` is inserted verbatim among the headers.
pub fn with_type(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
    extra: &str,
) {
    status_line(out, status);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra.as_bytes());
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// The head of a streamed response: chunked for HTTP/1.1, close-delimited for HTTP/1.0.
pub fn stream_head(out: &mut Vec<u8>, content_type: &str, chunked: bool, close: bool) {
    status_line(out, 200);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\n");
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Frames `data` as one chunk (nothing for empty data: an empty chunk would end the body).
pub fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

pub fn last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_the_engine_sends_has_its_reason_phrase() {
        let sent = [
            100, 200, 204, 400, 401, 404, 405, 408, 411, 413, 414, 415, 417, 431, 500, 501, 503,
            505, 507,
        ];
        for s in sent {
            assert_ne!(reason(s), "Unknown", "{s}");
        }
        assert_eq!(reason(414), "URI Too Long");
    }
}
