//! A minimal glommio no-op HTTP server: the same sockets (socket2, SO_REUSEPORT), the same read/frame/write
//! loop shape and the same framing code as tickcore, but every request is answered `204` without decoding
//! or storing anything. It is the "what glommio costs" column beside nginx and tickcore in
//! `benches/save_compare.sh`. Usage: `noop-glommio ADDR:PORT CPU`.

use std::os::fd::IntoRawFd;
use std::os::unix::io::FromRawFd;

use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use tickcore::http::parse::{self, Body};

async fn serve(mut s: TcpStream) {
    // `buf[..filled]` holds unread bytes; zeroed once and grown only for large bodies, as in tickcore.
    let mut buf = vec![0u8; 64 << 10];
    let mut filled = 0;
    let mut out = Vec::with_capacity(64 << 10);
    let mut body = Vec::new();
    loop {
        let mut start = 0;
        while start < filled {
            let inbuf = &buf[start..filled];
            let Ok(Some(h)) = parse::parse_head(inbuf, 16 << 10, 16 << 20) else {
                break;
            };
            let consumed = match h.body {
                Body::None => h.len,
                Body::Length(n) if inbuf.len() - h.len >= n => h.len + n,
                Body::Length(_) => break,
                Body::Chunked => {
                    match parse::decode_chunked(
                        &inbuf[h.len..],
                        16 << 20,
                        &mut body,
                        &mut Default::default(),
                    ) {
                        Ok(Some(n)) => h.len + n,
                        _ => break,
                    }
                }
            };
            out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
            start += consumed;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = s.read(&mut buf[filled..]).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        filled += n;
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:18090".into())
        .parse()
        .expect("ADDR:PORT");
    let cpu: usize = args
        .next()
        .unwrap_or_else(|| "1".into())
        .parse()
        .expect("CPU");
    let mut bound = tickcore::server::listener::bind_all(addr, 1, 4096).expect("bind");
    let sock = bound.listeners.pop().expect("one socket");
    println!("noop-glommio listening on {}, cpu {cpu}", bound.addr);
    let _port_lock = bound.lock;
    LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .io_memory(1 << 20)
        .spawn(move || async move {
            // SAFETY: a listening socket we own, handed over whole.
            let l = unsafe { TcpListener::from_raw_fd(sock.into_raw_fd()) };
            while let Ok(s) = l.accept().await {
                glommio::spawn_local(serve(s)).detach();
            }
        })
        .expect("executor")
        .join()
        .expect("join");
}
