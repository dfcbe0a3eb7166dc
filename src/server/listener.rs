//! The listening sockets, built by hand (socket2) because glommio's own bind always sets SO_REUSEPORT and
//! hard-codes a backlog of 1024: two engines on one port would then silently share its connections.
//! We first check the address is free with a plain socket (no SO_REUSEPORT), and for port 0 let that
//! socket pick the port; then every core binds its own SO_REUSEPORT socket to the same address.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};

use socket2::{Domain, Protocol, Socket, Type};

fn socket_for(addr: SocketAddr) -> io::Result<Socket> {
    Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
}

/// Returns one listening socket per core, all bound to the same (resolved) address.
pub fn bind_all(
    addr: SocketAddr,
    cores: usize,
    backlog: i32,
) -> io::Result<(SocketAddr, Vec<StdListener>)> {
    let guard = socket_for(addr)?;
    guard.bind(&addr.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {addr}: {e} (is another server, or another tickcore, using it?)"
            ),
        )
    })?;
    let real = guard
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("non-IP local address"))?;
    drop(guard);
    let mut out = Vec::with_capacity(cores);
    for _ in 0..cores {
        let s = socket_for(real)?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nodelay(true)?;
        s.bind(&real.into())
            .map_err(|e| io::Error::new(e.kind(), format!("binding {real}: {e}")))?;
        s.listen(backlog)?;
        s.set_nonblocking(true)?;
        out.push(s.into());
    }
    Ok((real, out))
}
