//! The DNS interface (`serve --dns-listen`): `<slug>.service.<domain>` answers with the
//! healthy instances of a slug, so programs that cannot link a client still find them.
//!
//! The wire format is hickory-proto's; sockets and limits are the daemon's own, so that
//! no client can hold the server up: UDP packets are answered by a few tasks that never
//! wait on a client (an answer the socket cannot take at once is dropped), and TCP
//! connections are capped and timed out. Answers are read from the tables in memory
//! (`zone.rs`); anything outside the domain is `REFUSED`, as forwarding is left to the
//! resolver in front. The contract is docs/dns.md.

mod counters;
mod zone;

pub use counters::{DnsCounters, DnsQueryCount};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
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
/// How long a TCP connection may sit idle or take to send a query or read an answer.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
        let (udp, tcp) = bind(settings.listen).await?;
        let addr = udp.local_addr()?;
        let limits = RateLimits::new(RateLimit::Off, settings.rate_limit_address);
        let handler = Arc::new(Handler {
            zone,
            counters,
            limits,
        });
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
        let connections = Arc::new(Semaphore::new(settings.max_tcp_connections as usize));
        let task = tokio::spawn(run(udp, tcp, workers, handler, connections, shutdown));
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

/// Binds UDP first, then TCP on the port UDP got: with port 0 the kernel picks a port
/// free for UDP, which may be taken for TCP, so that case tries a few ports.
async fn bind(listen: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut attempts = if listen.port() == 0 { 20 } else { 1 };
    loop {
        let udp = UdpSocket::bind(listen).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if attempts > 1 && e.kind() == io::ErrorKind::AddrInUse => attempts -= 1,
            Err(e) => return Err(e),
        }
    }
}

async fn run(
    udp: UdpSocket,
    tcp: TcpListener,
    workers: usize,
    handler: Arc<Handler>,
    connections: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    let udp = Arc::new(udp);
    let mut loops = JoinSet::new();
    for _ in 0..workers {
        loops.spawn(serve_udp(udp.clone(), handler.clone()));
    }
    let tracker = TaskTracker::new();
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
    tracing::info!("DNS server stopped");
}

async fn serve_udp(socket: Arc<UdpSocket>, handler: Arc<Handler>) {
    let mut buffer = vec![0; UDP_BUFFER];
    loop {
        let (len, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            // An ICMP error of an earlier answer, reported on this socket: not ours.
            Err(e) => {
                tracing::debug!(error = %e, "DNS UDP receive failed");
                continue;
            }
        };
        let Some(answer) = handler.handle(&buffer[..len], peer, Transport::Udp) else {
            continue;
        };
        // Never wait for room: a client that floods fills the buffer for itself only.
        if let Err(e) = socket.try_send_to(&answer, peer) {
            if e.kind() == io::ErrorKind::WouldBlock {
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
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "DNS TCP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
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
        let answer = self.zone.answer(query.name(), query.query_type());
        response.set_authoritative(true);
        response.insert_answers(answer.answers);
        response.insert_name_servers(answer.authority);
        response.insert_additionals(answer.additionals);
        let limit = match transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => request
                .extensions()
                .as_ref()
                .map_or(CLASSIC_UDP_SIZE, |edns| usize::from(edns.max_payload()))
                .clamp(CLASSIC_UDP_SIZE, MAX_UDP_SIZE),
        };
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
