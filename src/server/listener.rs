//! The listening sockets, built by hand (socket2) because glommio's own bind always sets SO_REUSEPORT and
//! hard-codes a backlog of 1024: two engines on one port would then silently share its connections.
//!
//! Three steps, each for one failure a user meets:
//! 1. A guard socket with SO_REUSEADDR but no SO_REUSEPORT binds the address (for port 0 it picks the port).
//!    It fails while anything *listens* there (another server, another engine: Linux refuses SO_REUSEADDR
//!    over a listening socket) but not over connections a crashed engine left in TIME_WAIT or FIN_WAIT,
//!    so a restart right after `kill -9` or SIGTERM with clients connected works at once. An engine killed
//!    a moment ago still holds its listening sockets for some milliseconds after it is reaped (io_uring
//!    releases its files asynchronously; 7-14 ms measured here), so a bind refused with EADDRINUSE is
//!    retried for up to [`BIND_RETRY`] before the engine gives up.
//! 2. A port lock: an abstract Unix socket named after the port. The kernel lets one process bind a name,
//!    frees it when the process ends however it ends (`kill -9` included), and keeps it per network
//!    namespace like the port itself (host-network containers share it). It closes the window where two
//!    engines started at the same moment both pass step 1 before either listens. It is keyed by the port
//!    alone, not the address: 0.0.0.0:P, 127.0.0.1:P, [::]:P and [::ffff:127.0.0.1]:P overlap, so one engine
//!    per port and network namespace.
//! 3. Every core binds its own SO_REUSEPORT socket to the address while the guard still holds it (a guard
//!    that is not listening does not conflict with them); the guard is dropped after.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

fn socket_for(addr: SocketAddr) -> io::Result<Socket> {
    Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
}

/// The listening sockets of one engine and the lock that keeps a second engine off their port; the lock must
/// live as long as the sockets.
pub struct Bound {
    pub addr: SocketAddr,
    pub listeners: Vec<StdListener>,
    pub lock: PortLock,
}

/// Held for the process's lifetime: while it exists no other engine in this network namespace binds the
/// port.
pub struct PortLock {
    _socket: UnixListener,
}

/// How long a bind refused with EADDRINUSE is retried: an engine killed a moment ago still holds its sockets
/// for milliseconds; a live one holds them for good, and is reported after this.
pub const BIND_RETRY: Duration = Duration::from_secs(1);

/// The abstract socket name that stands for `port`.
fn lock_name(port: u16) -> String {
    format!("tickcore-listen-port-{port}")
}

fn lock_port(addr: SocketAddr) -> io::Result<PortLock> {
    let name = lock_name(addr.port());
    let unix = UnixAddr::from_abstract_name(name.as_bytes())?;
    match retry_in_use(|| UnixListener::bind_addr(&unix)) {
        Ok(s) => Ok(PortLock { _socket: s }),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {addr}: another tickcore is starting or running on port {} \
                 (lock @{name})",
                addr.port()
            ),
        )),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot take the port lock @{name}: {e}"),
        )),
    }
}

/// Runs `bind` until it succeeds, fails with anything but EADDRINUSE, or [`BIND_RETRY`] has passed.
fn retry_in_use<T>(mut bind: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let deadline = Instant::now() + BIND_RETRY;
    loop {
        match bind() {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Returns one listening socket per core, all bound to the same (resolved) address.
pub fn bind_all(addr: SocketAddr, cores: usize, backlog: i32) -> io::Result<Bound> {
    assert!(cores > 0, "an engine has at least one core");
    let guard = socket_for(addr)?;
    guard.set_reuse_address(true)?;
    retry_in_use(|| guard.bind(&addr.into())).map_err(|e| {
        let why = if e.kind() == io::ErrorKind::AddrInUse {
            format!(
                ", still after {} ms (is another server, or another tickcore, using it?)",
                BIND_RETRY.as_millis()
            )
        } else {
            String::new()
        };
        io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}{why}"))
    })?;
    let real = guard
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("non-IP local address"))?;
    let lock = lock_port(real)?;
    let mut listeners = Vec::with_capacity(cores);
    for _ in 0..cores {
        let s = socket_for(real)?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nodelay(true)?;
        s.bind(&real.into())
            .map_err(|e| io::Error::new(e.kind(), format!("binding {real}: {e}")))?;
        s.listen(backlog)?;
        s.set_nonblocking(true)?;
        listeners.push(s.into());
    }
    drop(guard);
    Ok(Bound {
        addr: real,
        listeners,
        lock,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    fn local(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_second_bind_of_a_live_address_is_refused_and_the_lock_frees_on_drop() {
        let first = bind_all(local(0), 2, 16).unwrap();
        assert_eq!(first.listeners.len(), 2);
        let err = bind_all(first.addr, 1, 16).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        let port = first.addr.port();
        drop(first);
        let again = bind_all(local(port), 1, 16).unwrap();
        assert_eq!(again.addr.port(), port);
    }

    #[test]
    fn the_lock_alone_refuses_a_second_engine_on_any_address_of_the_port() {
        // The window step 2 closes: another engine holds the lock but listens on nothing yet, here on the
        // wildcard address; a start on 127.0.0.1 with the same port overlaps it.
        let probe = StdListener::bind(local(0)).unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let _held = lock_port(SocketAddr::from(([0, 0, 0, 0], port))).unwrap();
        let started = Instant::now();
        let err = bind_all(local(port), 1, 16).err().expect("refused");
        assert!(err.to_string().contains("another tickcore"), "{err}");
        assert!(
            started.elapsed() >= BIND_RETRY,
            "refused only after the retry"
        );
    }

    #[test]
    fn a_bind_is_retried_while_the_address_is_freed() {
        // A dying engine's listener, closed a little later, as io_uring does after kill -9.
        let dying = StdListener::bind(local(0)).unwrap();
        let addr = dying.local_addr().unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(dying);
        });
        let bound = bind_all(addr, 2, 16).unwrap();
        assert_eq!(bound.addr, addr);
        closer.join().unwrap();
    }

    #[test]
    fn a_connection_left_by_a_closed_engine_does_not_block_a_rebind() {
        let first = bind_all(local(0), 1, 16).unwrap();
        let addr = first.addr;
        let client = TcpStream::connect(addr).unwrap();
        // Accept, then close the server side first: the server's end goes to FIN_WAIT / TIME_WAIT.
        first.listeners[0].set_nonblocking(false).unwrap();
        let (server_side, _) = first.listeners[0].accept().unwrap();
        drop(server_side);
        drop(first);
        drop(client);
        let again = bind_all(addr, 2, 16).unwrap();
        assert_eq!(again.addr, addr);
    }

    #[test]
    fn a_plain_listener_on_the_address_is_refused() {
        let other = StdListener::bind(local(0)).unwrap();
        let err = bind_all(other.local_addr().unwrap(), 1, 16)
            .err()
            .expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    }
}
