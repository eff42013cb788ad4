//! The DNS interface (`serve --dns-listen`): `<slug>.service.<domain>` answers with the
//! healthy instances of a slug, so programs that cannot link a client still find them.
//!
//! The wire format is hickory-proto's; sockets and limits are the daemon's own, so that
//! no client can hold the server up. UDP is answered by one thread per core, each on a
//! socket of its own bound to the one port (`SO_REUSEPORT`: the kernel spreads clients
//! over them) and blocking in `recvfrom`, which is cheaper per packet than going through
//! the async runtime; none waits on a client for long (an answer the socket cannot take
//! within a millisecond is dropped). TCP connections are tasks, capped and timed out.
//! Answers are read from the tables in memory (`zone.rs`) and kept encoded until the
//! instances change (`templates.rs`); anything outside the domain is `REFUSED`, as
//! forwarding is left to the resolver in front. The contract is docs/dns.md.

mod counters;
mod templates;
mod zone;

pub(crate) use counters::DnsCollector;
pub use counters::{DnsCounters, DnsQueryCount};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::net::UdpSocket as StdUdpSocket;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use templates::{Key, Templates};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zone::Zone;

use crate::rate_limit::{RateLimit, RateLimits};
use crate::state::Registry;

/// How the DNS server runs, from the `--dns-*` flags.
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    /// Lower case, ending in a dot.
    pub(crate) domain: String,
    /// Seconds.
    pub(crate) ttl: u32,
    pub(crate) include_degraded: bool,
    pub(crate) max_tcp_connections: u32,
    pub(crate) rate_limit_address: RateLimit,
}

/// The size of a UDP answer to a query without EDNS (RFC 1035).
const CLASSIC_UDP_SIZE: usize = 512;
/// The UDP size this server offers in its EDNS record: the size that avoids IP
/// fragmentation on common paths (DNS flag day 2020).
const OFFERED_UDP_SIZE: u16 = 1232;
/// The largest UDP answer sent, whatever size a client offers.
const MAX_UDP_SIZE: usize = 4096;
/// The largest UDP query read; a longer datagram is cut there and fails to decode.
const UDP_BUFFER: usize = 4096;
/// How often a UDP thread, blocked on its socket, looks whether the server is stopping.
const UDP_STOP_POLL: Duration = Duration::from_millis(200);
/// The longest a UDP thread waits for room in its socket's send buffer.
const UDP_SEND_TIMEOUT: Duration = Duration::from_millis(1);
/// How long a TCP connection may sit idle or take to send a query or read an answer.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// A DNS server bound to its UDP and TCP sockets, serving until shutdown.
pub(crate) struct DnsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    /// Binds UDP and TCP on `settings.listen` (the same port for both when it is 0) and
    /// starts answering.
    pub(crate) async fn start(
        settings: &Settings,
        registry: Arc<Registry>,
        counters: Arc<DnsCounters>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<DnsServer> {
        let zone = Zone::new(settings, registry).map_err(anyhow::Error::msg)?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
        let (udp, tcp) = bind(settings.listen, workers).await?;
        let addr = tcp.local_addr()?;
        let limits = RateLimits::new(RateLimit::Off, settings.rate_limit_address);
        let handler = Arc::new(Handler {
            zone,
            counters,
            limits,
            templates: Templates::default(),
        });
        let connections = Arc::new(Semaphore::new(settings.max_tcp_connections as usize));
        let task = tokio::spawn(run(udp, tcp, handler, connections, shutdown));
        Ok(DnsServer { addr, task })
    }

    /// The address both sockets are bound to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the server has stopped (after shutdown).
    pub(crate) async fn stopped(self) {
        self.task.await.ok();
    }

    pub(crate) fn abort_handle(&self) -> tokio::task::AbortHandle {
        self.task.abort_handle()
    }
}

/// Binds `count` UDP sockets on one port, then TCP on that port: with port 0 the kernel
/// picks a port free for UDP, which may be taken for TCP, so that case tries a few ports.
/// The TCP bind, which shares nothing, is also what stops a second daemon on the same
/// address from joining the first one's UDP sockets.
async fn bind(listen: SocketAddr, count: usize) -> io::Result<(Vec<StdUdpSocket>, TcpListener)> {
    let mut attempts = if listen.port() == 0 { 20 } else { 1 };
    loop {
        let first = bind_udp(listen)?;
        let addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..count {
            sockets.push(bind_udp(addr)?);
        }
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((sockets, tcp)),
            Err(e) if attempts > 1 && e.kind() == io::ErrorKind::AddrInUse => attempts -= 1,
            Err(e) => return Err(e),
        }
    }
}

/// A blocking UDP socket on `addr` that shares the port with the server's others.
fn bind_udp(addr: SocketAddr) -> io::Result<StdUdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    let socket = StdUdpSocket::from(socket);
    socket.set_read_timeout(Some(UDP_STOP_POLL))?;
    socket.set_write_timeout(Some(UDP_SEND_TIMEOUT))?;
    Ok(socket)
}

async fn run(
    udp: Vec<StdUdpSocket>,
    tcp: TcpListener,
    handler: Arc<Handler>,
    connections: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    // The threads stop with this token, which is also cancelled when this task is
    // aborted (a daemon stopped as by a crash).
    let stop = shutdown.child_token();
    let _stop_on_abort = stop.clone().drop_guard();
    let mut threads = Vec::new();
    for socket in udp {
        let (handler, stop) = (handler.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("dns-udp".into())
            .spawn(move || serve_udp(&socket, &handler, &stop));
        match thread {
            Ok(thread) => threads.push(thread),
            Err(e) => tracing::error!(error = %e, "cannot start a DNS UDP thread"),
        }
    }
    let tracker = TaskTracker::new();
    let mut loops = JoinSet::new();
    loops.spawn(accept_tcp(
        tcp,
        handler.clone(),
        connections,
        tracker.clone(),
        shutdown.clone(),
    ));
    shutdown.cancelled().await;
    // The loops hold no state between packets: stopping them loses nothing. Connections
    // finish the query in hand.
    loops.shutdown().await;
    tracker.close();
    tracker.wait().await;
    let joined = tokio::task::spawn_blocking(move || {
        for thread in threads {
            thread.join().ok();
        }
    });
    joined.await.ok();
    tracing::info!("DNS server stopped");
}

fn serve_udp(socket: &StdUdpSocket, handler: &Handler, stop: &CancellationToken) {
    let mut buffer = vec![0; UDP_BUFFER];
    while !stop.is_cancelled() {
        let (len, peer) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            // The read timeout (time to look at `stop`), or an ICMP error of an earlier
            // answer reported on this socket.
            Err(e) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                }
                continue;
            }
        };
        let Some(answer) = handler.handle(&buffer[..len], peer, Transport::Udp) else {
            continue;
        };
        // Hardly wait for room: a client that floods fills the buffer for itself only.
        if let Err(e) = socket.send_to(&answer, peer) {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                handler.counters.count_udp_dropped();
            } else {
                tracing::debug!(error = %e, %peer, "DNS UDP send failed");
            }
        }
    }
}

async fn accept_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    connections: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut accept_errors = crate::accept::AcceptErrors::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_errors.failed("dns", &e).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // At the cap: closed at once, so a flood of connections costs an accept each.
            handler.counters.count_tcp(false);
            drop(stream);
            continue;
        };
        handler.counters.count_tcp(true);
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        tracker.spawn(async move {
            if let Err(e) = serve_tcp(stream, peer, &handler, &shutdown).await {
                tracing::debug!(error = %e, %peer, "DNS TCP connection ended");
            }
            drop(permit);
        });
    }
}

/// Answers the queries of one TCP connection in turn (each framed by its length, RFC
/// 7766) until it closes, idles past [`TCP_TIMEOUT`] or the server shuts down.
async fn serve_tcp(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: &Handler,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut query = Vec::new();
    loop {
        let len = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            len = tokio::time::timeout(TCP_TIMEOUT, stream.read_u16()) => len??,
        };
        query.resize(usize::from(len), 0);
        tokio::time::timeout(TCP_TIMEOUT, stream.read_exact(&mut query)).await??;
        let Some(answer) = handler.handle(&query, peer, Transport::Tcp) else {
            // Not a query at all, or over the rate: nothing more for this connection.
            return Ok(());
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&(answer.len() as u16).to_be_bytes());
        framed.extend_from_slice(&answer);
        tokio::time::timeout(TCP_TIMEOUT, stream.write_all(&framed)).await??;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

struct Handler {
    zone: Zone,
    counters: Arc<DnsCounters>,
    /// Per source address only: DNS has no tokens.
    limits: RateLimits,
    templates: Templates,
}

impl Handler {
    /// The answer to one packet from `peer`, encoded; `None` for a packet not worth an
    /// answer, or over the source's rate.
    fn handle(&self, packet: &[u8], peer: SocketAddr, transport: Transport) -> Option<Vec<u8>> {
        if self.limits.admit_address(peer.ip()).is_err() {
            self.counters.count_rate_limited();
            return None;
        }
        // The parser is hickory's and the rest is ours; whichever panics, one bad packet
        // must not take a serving loop down with it.
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.answer(packet, transport))) {
            Ok(answer) => answer,
            Err(_) => {
                tracing::error!("answering a DNS packet panicked; dropped it");
                self.counters.count_malformed();
                None
            }
        }
    }

    fn answer(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let request = match Message::from_vec(packet) {
            Ok(request) if request.message_type() == MessageType::Query => request,
            // An answer (a reflection attempt, or a loop) gets no answer.
            Ok(_) => {
                self.counters.count_malformed();
                return None;
            }
            Err(_) => {
                self.counters.count_malformed();
                return format_error(packet);
            }
        };
        let mut response = Message::new();
        response
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(request.op_code())
            .set_recursion_desired(request.recursion_desired());
        if let Some(edns) = request.extensions() {
            let mut offered = Edns::new();
            offered.set_max_payload(OFFERED_UDP_SIZE).set_version(0);
            response.set_edns(offered);
            if edns.version() > 0 {
                return self.finish(request.query(), response, ResponseCode::BADVERS, None);
            }
        }
        let query = match request.queries() {
            [query] => query,
            _ => return self.finish(None, response, ResponseCode::FormErr, None),
        };
        response.add_query(query.clone());
        if request.op_code() != OpCode::Query {
            return self.finish(Some(query), response, ResponseCode::NotImp, None);
        }
        // Outside the domain, another class, or a zone transfer: not served here.
        if query.query_class() != DNSClass::IN
            || !self.zone.contains(query.name())
            || matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR)
        {
            return self.finish(Some(query), response, ResponseCode::Refused, None);
        }
        let limit = match transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => request
                .extensions()
                .as_ref()
                .map_or(CLASSIC_UDP_SIZE, |edns| usize::from(edns.max_payload()))
                .clamp(CLASSIC_UDP_SIZE, MAX_UDP_SIZE),
        };
        let revision = self.zone.revision();
        let key = Key::of(packet, query, request.extensions().is_some());
        if let Some(key) = &key {
            if let Some(kept) = self.templates.answer(revision, key, packet, limit) {
                self.counters
                    .count_query(query.query_type(), ResponseCode::NoError);
                return Some(kept);
            }
        }
        let answer = self.zone.answer(query.name(), query.query_type());
        response.set_authoritative(true);
        response.set_response_code(answer.rcode);
        response.insert_answers(answer.answers);
        response.insert_name_servers(answer.authority);
        response.insert_additionals(answer.additionals);
        if let Some(key) = key.filter(|_| answer.keepable) {
            self.templates.keep(revision, &key, response.clone());
        }
        self.finish(Some(query), response, answer.rcode, Some(limit))
    }

    /// Sets the code, counts the answer and encodes it within `limit` bytes.
    fn finish(
        &self,
        query: Option<&Query>,
        mut response: Message,
        rcode: ResponseCode,
        limit: Option<usize>,
    ) -> Option<Vec<u8>> {
        response.set_response_code(rcode);
        let qtype = query.map_or(RecordType::Unknown(0), Query::query_type);
        self.counters.count_query(qtype, rcode);
        let (bytes, truncated) = encode_within(response, limit.unwrap_or(CLASSIC_UDP_SIZE))?;
        if truncated {
            self.counters.count_truncated();
        }
        Some(bytes)
    }
}

/// The answer to a packet that does not decode: `FORMERR` with its id, if it has a
/// whole header and is not itself an answer.
fn format_error(packet: &[u8]) -> Option<Vec<u8>> {
    let header: &[u8; 12] = packet.get(..12)?.try_into().ok()?;
    let is_answer = header[2] & 0x80 != 0;
    if is_answer {
        return None;
    }
    let mut response = Message::error_msg(
        u16::from_be_bytes([header[0], header[1]]),
        OpCode::Query,
        ResponseCode::FormErr,
    );
    response.set_message_type(MessageType::Response);
    response.to_vec().ok()
}

/// `response` encoded in at most `limit` bytes, and whether it had to be truncated.
///
/// When the whole answer does not fit, the glue goes first (RFC 2181 §9: a resolver can
/// ask for it); when the answers alone do not fit either, as many whole records as fit
/// are sent with the TC bit, and the client asks again over TCP.
fn encode_within(mut response: Message, limit: usize) -> Option<(Vec<u8>, bool)> {
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some((bytes, false));
    }
    response.take_additionals();
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some((bytes, false));
    }
    response.take_name_servers();
    response.set_truncated(true);
    let answers = response.take_answers();
    // The most answers that fit, by halving: at most a handful of encodings.
    let (mut fits, mut too_many) = (0, answers.len());
    let mut best = response.to_vec().ok()?;
    while too_many - fits > 1 {
        let middle = (fits + too_many) / 2;
        *response.answers_mut() = answers[..middle].to_vec();
        let bytes = response.to_vec().ok()?;
        if bytes.len() <= limit {
            fits = middle;
            best = bytes;
        } else {
            too_many = middle;
        }
    }
    Some((best, true))
}
