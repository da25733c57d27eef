//! A TCP proxy on loopback for cutting a link on purpose: plain std threads, no async runtime.
//!
//! ```text
//! client ──► Proxy (127.0.0.1:ephemeral) ──► target
//! ```
//!
//! - [`Proxy::cut`]: every open connection is closed now (both directions) and new ones are
//!   accepted then closed at once, until [`Proxy::restore`]. A client sees a reset link, as when
//!   a cellular modem drops.
//! - [`Proxy::cut_after_next_request`] / [`Proxy::cut_after_request_containing`]: the next
//!   matching client→server chunk reaches the server, the server's reply is swallowed, and that
//!   connection is then closed. The server applied the request; the client never learns it did.
//!   New connections are accepted normally afterwards.
//! - [`Proxy::drop_replies_then_cut`]: the same for every open connection for a short while, then
//!   all of them are closed.
//!
//! It forwards bytes without looking at them (beyond the match above), so it works for TLS too.
//! It does not rewrite addresses: a Redis Cluster behind it still announces its nodes' own ports.
//! Dropping the proxy closes every connection and joins every thread it started.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`Proxy::drop_replies_then_cut`] swallows replies before it closes the connections.
pub const DROP_REPLIES_FOR: Duration = Duration::from_millis(200);

/// After an armed cut forwarded its request: how long to let the server's reply drain (and be
/// swallowed) once its first byte came back, and how long to wait for that first byte at most.
const REPLY_SETTLE: Duration = Duration::from_millis(50);
const REPLY_WAIT_MAX: Duration = Duration::from_secs(2);

/// How often the accept loop looks at the shutdown flag.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// A running proxy; see the module docs.
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// Counters since the proxy started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted and forwarded (a connection to a target that is down counts too).
    pub accepted: u64,
    /// Connections accepted and closed at once while cut.
    pub refused: u64,
    /// Bytes forwarded client → server.
    pub to_server: u64,
    /// Bytes forwarded server → client.
    pub to_client: u64,
    /// Bytes from the server that were swallowed instead of forwarded.
    pub swallowed: u64,
    /// Armed cuts that fired (each closed one connection).
    pub cuts_fired: u64,
}

#[derive(Default)]
struct Shared {
    shutdown: AtomicBool,
    refusing: AtomicBool,
    /// Every server→client byte is swallowed while this is set (drop_replies_then_cut).
    swallow_all: AtomicBool,
    /// `Some(needle)`: the next client→server chunk containing `needle` (ASCII case-insensitive;
    /// empty: any chunk) fires a cut. Taken by the connection that fires it.
    armed: Mutex<Option<Vec<u8>>>,
    /// Where new connections go when set ([`Proxy::retarget`]); open ones stay where they are.
    retargeted: Mutex<Option<SocketAddr>>,
    conns: Mutex<Vec<Conn>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    to_server: AtomicU64,
    to_client: AtomicU64,
    swallowed: AtomicU64,
    cuts_fired: AtomicU64,
    /// The value of `cuts_fired` once the cut armed last has fired.
    cut_target: AtomicU64,
}

struct Conn {
    id: u64,
    client: TcpStream,
    server: TcpStream,
}

/// Per-connection state shared by its two pumps.
#[derive(Default)]
struct Link {
    swallow: AtomicBool,
    /// Set by the server→client pump when it swallowed a byte (the server replied).
    replied: AtomicBool,
}

impl Conn {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

impl Shared {
    fn spawn(self: &Arc<Self>, f: impl FnOnce() + Send + 'static) {
        let handle = std::thread::spawn(f);
        let mut threads = self.threads.lock().unwrap();
        threads.retain(|t| !t.is_finished());
        threads.push(handle);
    }

    fn close_all(&self) {
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.close();
        }
    }

    fn close(&self, id: u64) {
        let mut conns = self.conns.lock().unwrap();
        if let Some(i) = conns.iter().position(|c| c.id == id) {
            conns.swap_remove(i).close();
        }
    }
}

impl Proxy {
    /// Listens on 127.0.0.1:<ephemeral> and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("proxy-{}", addr.port()))
                .spawn(move || accept_loop(listener, target, shared))
                .unwrap()
        };
        Proxy { addr, target, shared, acceptor: Some(acceptor) }
    }

    /// As [`Proxy::start`], for a `host:port` string (e.g. `"127.0.0.1:6379"`).
    pub fn to(target: &str) -> Proxy {
        Proxy::start(target.parse().expect("target is ip:port"))
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Sends new connections to `target` from now on, as a virtual IP or DNS name moved by a
    /// failover would; connections already open stay with the old server.
    pub fn retarget(&self, target: SocketAddr) {
        *self.shared.retargeted.lock().unwrap() = Some(target);
    }

    /// `redis://127.0.0.1:<port>` (`scheme` other than "redis": e.g. "rediss").
    pub fn url(&self) -> String {
        self.url_with("redis")
    }

    /// `<scheme>://127.0.0.1:<port>`.
    pub fn url_with(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// Closes every open connection now and refuses new ones (accepts, then closes them) until
    /// [`Proxy::restore`]. Also disarms a pending [`Proxy::cut_after_next_request`].
    pub fn cut(&self) {
        self.shared.refusing.store(true, Ordering::SeqCst);
        self.shared.armed.lock().unwrap().take();
        self.shared.close_all();
    }

    /// Forwards new connections again after [`Proxy::cut`].
    pub fn restore(&self) {
        self.shared.refusing.store(false, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        self.shared.refusing.load(Ordering::SeqCst)
    }

    /// From now on, bytes from the server are swallowed on every connection (requests still
    /// reach the server); after [`DROP_REPLIES_FOR`] every connection is closed and replies flow
    /// again. New connections are accepted normally throughout (those opened within the window
    /// are swallowed and closed too). Returns at once.
    pub fn drop_replies_then_cut(&self) {
        self.drop_replies_then_cut_after(DROP_REPLIES_FOR);
    }

    /// As [`Proxy::drop_replies_then_cut`], swallowing for `window`.
    pub fn drop_replies_then_cut_after(&self, window: Duration) {
        self.shared.swallow_all.store(true, Ordering::SeqCst);
        let shared = self.shared.clone();
        self.shared.spawn(move || {
            let deadline = Instant::now() + window;
            while Instant::now() < deadline && !shared.shutdown.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            shared.close_all();
            shared.swallow_all.store(false, Ordering::SeqCst);
        });
    }

    /// Arms a cut: the next client→server chunk, on any connection, is forwarded; the server's
    /// reply to it is swallowed; then that connection is closed (the others are left alone).
    /// Later chunks on that connection before the close are forwarded too and their replies
    /// swallowed. New connections are accepted normally afterwards. Returns at once; see
    /// [`Proxy::wait_cut_fired`].
    pub fn cut_after_next_request(&self) {
        self.cut_after_request_containing(b"");
    }

    /// As [`Proxy::cut_after_next_request`], for the next chunk containing `needle` (ASCII
    /// case-insensitive, e.g. `b"FCALL"`), so a health-check PING does not fire it.
    pub fn cut_after_request_containing(&self, needle: &[u8]) {
        let mut armed = self.shared.armed.lock().unwrap();
        if armed.is_none() {
            self.shared.cut_target.store(self.shared.cuts_fired.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
        }
        *armed = Some(needle.to_ascii_uppercase());
    }

    /// Whether an armed cut is still waiting for its request.
    pub fn is_armed(&self) -> bool {
        self.shared.armed.lock().unwrap().is_some()
    }

    /// Waits until the cut armed last has fired and closed its connection; false after
    /// `timeout`.
    pub fn wait_cut_fired(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        let target = self.shared.cut_target.load(Ordering::SeqCst);
        while self.shared.cuts_fired.load(Ordering::SeqCst) < target {
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.conns.lock().unwrap().len()
    }

    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            accepted: s.accepted.load(Ordering::SeqCst),
            refused: s.refused.load(Ordering::SeqCst),
            to_server: s.to_server.load(Ordering::SeqCst),
            to_client: s.to_client.load(Ordering::SeqCst),
            swallowed: s.swallowed.load(Ordering::SeqCst),
            cuts_fired: s.cuts_fired.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.shared.close_all();
        // Pumps exit once their sockets are shut down; they may still register a connection
        // accepted just before the shutdown, hence the loop.
        loop {
            let threads: Vec<_> = self.shared.threads.lock().unwrap().drain(..).collect();
            if threads.is_empty() {
                break;
            }
            self.shared.close_all();
            for t in threads {
                let _ = t.join();
            }
        }
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(_) => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        if shared.refusing.load(Ordering::SeqCst) {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nonblocking(false);
        let _ = client.set_nodelay(true);
        // A target that is down: the client sees its connection closed, as it would directly.
        let target = shared.retargeted.lock().unwrap().unwrap_or(target);
        let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = server.set_nodelay(true);
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let link = Arc::new(Link::default());
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { continue };
        let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) else { continue };
        shared.conns.lock().unwrap().push(Conn { id, client: c3, server: s3 });
        // A cut that raced with this accept: it must not survive the cut.
        if shared.refusing.load(Ordering::SeqCst) {
            shared.close(id);
        }
        let (shared1, link1) = (shared.clone(), link.clone());
        shared.spawn(move || pump_to_server(id, client, server, &shared1, &link1));
        let shared2 = shared.clone();
        shared.spawn(move || pump_to_client(id, s2, c2, &shared2, &link));
    }
}

/// Client → server. Fires an armed cut on the first matching chunk.
fn pump_to_server(id: u64, mut from: TcpStream, mut to: TcpStream, shared: &Arc<Shared>, link: &Arc<Link>) {
    let mut buf = vec![0u8; 64 * 1024];
    // The end of the previous chunk, so a needle split over two reads still matches.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let fire = {
            let mut armed = shared.armed.lock().unwrap();
            let hit = match armed.as_deref() {
                Some(needle) if !link.swallow.load(Ordering::SeqCst) => {
                    let mut hay = std::mem::take(&mut tail);
                    hay.extend_from_slice(chunk);
                    hay.make_ascii_uppercase();
                    let hit = needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle);
                    let keep = needle.len().saturating_sub(1).min(hay.len());
                    tail = hay[hay.len() - keep..].to_vec();
                    hit
                }
                _ => false,
            };
            if hit {
                armed.take();
                // Before the request goes out, so no byte of its reply slips through.
                link.swallow.store(true, Ordering::SeqCst);
            }
            hit
        };
        if to.write_all(chunk).is_err() {
            break;
        }
        shared.to_server.fetch_add(n as u64, Ordering::SeqCst);
        if fire {
            let (shared2, link) = (shared.clone(), link.clone());
            shared.spawn(move || {
                let start = Instant::now();
                while !link.replied.load(Ordering::SeqCst)
                    && start.elapsed() < REPLY_WAIT_MAX
                    && !shared2.shutdown.load(Ordering::SeqCst)
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::thread::sleep(REPLY_SETTLE);
                shared2.close(id);
                shared2.cuts_fired.fetch_add(1, Ordering::SeqCst);
            });
        }
    }
    shared.close(id);
}

/// Server → client, swallowing while the link or the whole proxy says so.
fn pump_to_client(id: u64, mut from: TcpStream, mut to: TcpStream, shared: &Shared, link: &Link) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if link.swallow.load(Ordering::SeqCst) || shared.swallow_all.load(Ordering::SeqCst) {
            shared.swallowed.fetch_add(n as u64, Ordering::SeqCst);
            link.replied.store(true, Ordering::SeqCst);
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        shared.to_client.fetch_add(n as u64, Ordering::SeqCst);
    }
    shared.close(id);
}
