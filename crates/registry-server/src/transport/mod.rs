//! The daemon's HTTP transport: its own accept loop over hyper's HTTP/1 server, so that no
//! caller can hold the daemon with slow or idle connections.
//!
//! - Every connection runs under a watchdog ([`connection`]): its request headers must
//!   arrive within the header timeout (counted from the accept for a new connection, TLS
//!   handshake included, and from the first byte of each later request), a request body
//!   within the body timeout (else a 408), and a connection with no request in flight is
//!   closed after the idle timeout. Event streams and parked blocking queries are requests
//!   in flight, so they are never idle.
//! - At most `max_connections` are open ([`Connections`]). At the cap a new connection
//!   closes the oldest one that has no request in flight: a flood of idle or half-open
//!   connections then pushes out its own members, and a legitimate client that arrives
//!   during it is still served at once (refusing or queueing new connections instead would
//!   lock it out until the flood's connections time out). Only when every connection has a
//!   request in flight is the new one answered 503.
//! - Protocol errors get JSON bodies ([`answers`]).
//! - TLS is optional ([`tls`]).

mod answers;
mod connection;
mod tls;

pub(crate) use tls::Tls;

use axum::body::Body;
use axum::http::{Request, Response};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

/// The time limits and the connection cap, from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// The limits `config` asks for; the connection cap defaults to three quarters of
    /// `open_files`, leaving descriptors for the store, health checks and peers.
    pub(crate) fn new(config: &crate::Config, open_files: u64) -> Limits {
        let default_cap = (open_files / 4 * 3).clamp(16, 1_000_000) as usize;
        let max_connections = config.max_connections.map_or(default_cap, |n| n as usize);
        if max_connections as u64 > open_files {
            tracing::warn!(
                max_connections,
                open_files,
                "--max-connections is above the open-file limit; a flood can exhaust descriptors"
            );
        }
        Limits {
            header_timeout: config.header_timeout,
            body_timeout: config.body_timeout,
            idle_timeout: config.idle_timeout,
            max_connections,
        }
    }
}

/// Raises the soft open-file limit to the hard limit where the system allows it; returns
/// the soft limit in force afterwards.
pub(crate) fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// Connections the kernel holds for the accept loop: tokio's default (1,024) overflows
/// under a flood of new connections, and an overflowed SYN is retried a second later, a
/// second a legitimate client waits. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `listen` (an address, or a name and port) with [`LISTEN_BACKLOG`], trying each
/// address it resolves to in turn, as `TcpListener::bind` does.
pub(crate) async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "resolves to no address")
    }))
}

/// What a connection serves: the API as one service, cloned for each connection.
pub(crate) trait Api:
    Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> Api for S where
    S: Service<
            Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Accepts connections on `listener` and serves `api` on each until `shutdown`; then
/// waits for the requests in flight to finish.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    api: S,
    tls: Option<Arc<Tls>>,
    limits: Limits,
    shutdown: CancellationToken,
) where
    S: Api + Sync,
{
    let connections = Arc::new(Connections::new(limits.max_connections));
    let tracker = TaskTracker::new();
    let mut accept_errors = crate::accept::AcceptErrors::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_errors.failed("http", &e).await;
                    continue;
                }
            },
        };
        // No Nagle delay: an event written while the one before is still unacknowledged
        // leaves at once, instead of waiting for the subscriber's ACK, which Linux may
        // delay by up to 40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let Some(admitted) = connections.admit() else {
            tracker.spawn(answers::refuse_busy(stream, tls.is_some()));
            continue;
        };
        tracker.spawn(connection::serve(
            stream,
            peer,
            admitted,
            api.clone(),
            tls.clone(),
            limits,
            shutdown.clone(),
        ));
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// The open connections, oldest first, for the cap.
struct Connections {
    limit: usize,
    open: AtomicUsize,
    /// Every admitted connection in accept order; entries of closed ones are skipped and
    /// swept out lazily.
    by_age: Mutex<VecDeque<Weak<connection::Activity>>>,
}

impl Connections {
    fn new(limit: usize) -> Connections {
        Connections {
            limit,
            open: AtomicUsize::new(0),
            by_age: Mutex::new(VecDeque::new()),
        }
    }

    /// Admits a new connection, closing the oldest idle one when at the cap; `None` when
    /// the cap is reached and every open connection has a request in flight.
    fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut by_age = self.by_age.lock().unwrap_or_else(|e| e.into_inner());
        if self.open.load(Ordering::Relaxed) >= self.limit && !Self::evict_oldest_idle(&mut by_age)
        {
            return None;
        }
        if by_age.len() > 2 * self.limit + 64 {
            by_age.retain(|c| c.strong_count() > 0);
        }
        let activity = Arc::new(connection::Activity::new());
        by_age.push_back(Arc::downgrade(&activity));
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            activity,
            connections: self.clone(),
        })
    }

    /// Asks the oldest connection without a request in flight to close; false if none.
    fn evict_oldest_idle(by_age: &mut VecDeque<Weak<connection::Activity>>) -> bool {
        let mut busy = Vec::new();
        let mut evicted = false;
        while let Some(entry) = by_age.pop_front() {
            let Some(activity) = entry.upgrade() else {
                continue;
            };
            if activity.is_busy() {
                busy.push(entry);
            } else {
                activity.evict();
                evicted = true;
                break;
            }
        }
        // The busy ones keep their place at the front, in order.
        for entry in busy.into_iter().rev() {
            by_age.push_front(entry);
        }
        evicted
    }
}

/// A connection counted against the cap until it is dropped.
pub(crate) struct Admitted {
    pub activity: Arc<connection::Activity>,
    connections: Arc<Connections>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often the plain-HTTP warning is repeated for one peer address.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Most peer addresses remembered before those not warned of lately are forgotten.
const WARNED_PEERS: usize = 4096;

/// Which peers were warned of, and when: at most one warning a minute per address, in
/// bounded memory whatever the number of peers.
#[derive(Default)]
struct Warned(hashbrown::HashMap<IpAddr, Instant>);

impl Warned {
    /// Whether to warn of `peer` now, noting it if so.
    fn due(&mut self, peer: IpAddr, now: Instant) -> bool {
        if self
            .0
            .get(&peer)
            .is_some_and(|last| now.duration_since(*last) < WARN_EVERY)
        {
            return false;
        }
        if self.0.len() >= WARNED_PEERS {
            self.0
                .retain(|_, last| now.duration_since(*last) < WARN_EVERY);
            // So many peers in one minute: the log has said it often enough.
            if self.0.len() >= WARNED_PEERS {
                return false;
            }
        }
        self.0.insert(peer, now);
        true
    }
}

/// Warns, at most once a minute per peer address, that a token arrived over plain HTTP
/// from another machine, where anyone on the path can read it.
pub(crate) fn warn_token_over_plain_http(peer: IpAddr) {
    static WARNED: Mutex<Option<Warned>> = Mutex::new(None);
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned
        .get_or_insert_with(Warned::default)
        .due(peer, Instant::now())
    {
        tracing::warn!(
            %peer,
            "a request carried a token over plain HTTP from another machine; serve HTTPS (--tls-cert) so tokens cannot be read on the way"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_http_warning_comes_once_a_minute_per_peer_in_bounded_memory() {
        let mut warned = Warned::default();
        let start = Instant::now();
        let peer: IpAddr = "10.0.0.7".parse().unwrap();
        assert!(warned.due(peer, start));
        assert!(!warned.due(peer, start + Duration::from_secs(59)));
        assert!(warned.due("10.0.0.8".parse().unwrap(), start));
        assert!(warned.due(peer, start + WARN_EVERY));
        // A flood of peers within a minute: warnings stop at the bound, and so does memory.
        let warnings = (0..WARNED_PEERS as u32 * 2)
            .filter(|i| warned.due(IpAddr::from(i.to_be_bytes()), start + WARN_EVERY * 3))
            .count();
        assert_eq!(warned.0.len(), WARNED_PEERS);
        assert!(warnings <= WARNED_PEERS, "{warnings}");
        // A minute later those are forgotten and a new peer is warned of again.
        assert!(warned.due("10.0.0.9".parse().unwrap(), start + WARN_EVERY * 5));
        assert_eq!(warned.0.len(), 1);
    }

    #[tokio::test]
    async fn bind_listens_on_a_free_port_and_refuses_a_taken_one_or_no_port() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback() && addr.port() != 0);
        let taken = bind(&addr.to_string()).await.unwrap_err();
        assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);
        assert!(
            bind("127.0.0.1").await.is_err(),
            "an address without a port"
        );
    }
}
