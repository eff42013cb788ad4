//! One connection: the protocol check and TLS handshake, hyper's HTTP/1 connection, and
//! the watchdog that closes it when a time limit passes.
//!
//! The watchdog follows the connection's [`Activity`]: the requests in flight (a request
//! is in flight from its headers until its response body ends, so an event stream or a
//! parked blocking query keeps its connection busy), when the connection went idle, and
//! when the next request's first byte arrived. hyper's own `header_read_timeout` is not
//! used: it starts as soon as a keep-alive connection goes idle, so it would cap idle time
//! and header time with one figure.

use super::{answers, Admitted, Api, Limits, Tls};
use crate::api::max_body_bytes;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

/// Largest request head (request line and headers) read; a larger one is answered 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// No time recorded, in [`Activity::head_started`].
const NEVER: u64 = u64::MAX;

/// What the watchdog and the connection cap know of a connection.
pub(crate) struct Activity {
    opened: Instant,
    /// Requests whose response has not ended.
    in_flight: AtomicU32,
    /// Requests handed to the API so far.
    dispatched: AtomicU64,
    /// Milliseconds from `opened` to when the last request in flight ended.
    idle_since: AtomicU64,
    /// Milliseconds from `opened` to the first byte of the request being read, or NEVER
    /// between requests. A new connection starts with 0: its request is due from the accept.
    head_started: AtomicU64,
    /// The body of the request in flight did not arrive in time.
    body_timed_out: AtomicBool,
    /// Wakes the watchdog to look at the deadlines again.
    changed: Notify,
    /// The cap asks this connection to close.
    evicted: Notify,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            dispatched: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            body_timed_out: AtomicBool::new(false),
            changed: Notify::new(),
            evicted: Notify::new(),
        }
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn evict(&self) {
        self.evicted.notify_one();
    }

    fn millis_now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn at(&self, millis: u64) -> Instant {
        self.opened + Duration::from_millis(millis)
    }

    /// When the connection must close if nothing changes; `None` while a request is in flight.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.is_busy() {
            return None;
        }
        match self.head_started.load(Ordering::Relaxed) {
            NEVER => Some(self.at(self.idle_since.load(Ordering::Relaxed)) + limits.idle_timeout),
            started => Some(self.at(started) + limits.header_timeout),
        }
    }

    /// Bytes arrived: between requests they are the next request's first.
    fn on_read(&self) {
        if !self.is_busy()
            && self.head_started.load(Ordering::Relaxed) == NEVER
            && self
                .head_started
                .compare_exchange(
                    NEVER,
                    self.millis_now(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.changed.notify_one();
        }
    }
}

/// A request in flight, until dropped.
pub(crate) struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.dispatched.fetch_add(1, Ordering::Relaxed);
        activity.head_started.store(NEVER, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0
                .idle_since
                .store(self.0.millis_now(), Ordering::Relaxed);
        }
    }
}

/// Serves one accepted connection until it closes, a time limit passes, the cap evicts it,
/// or (after its requests in flight end) the daemon shuts down.
pub(super) async fn serve<S>(
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    api: S,
    tls: Option<Arc<Tls>>,
    limits: Limits,
    shutdown: CancellationToken,
) where
    S: Api,
{
    let activity = admitted.activity.clone();
    let opened = tokio::select! {
        opened = open(stream, tls.as_deref()) => opened,
        _ = tokio::time::sleep_until(activity.opened + limits.header_timeout) => None,
        _ = activity.evicted.notified() => None,
        _ = shutdown.cancelled() => None,
    };
    let service = ConnectionService {
        api,
        peer,
        secure: tls.is_some(),
        activity: activity.clone(),
        body_timeout: limits.body_timeout,
    };
    match opened {
        Some(Opened::Plain(stream)) => run(stream, service, limits, shutdown).await,
        Some(Opened::Tls(stream)) => run(*stream, service, limits, shutdown).await,
        None => {}
    }
    drop(admitted);
}

enum Opened {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Looks at the first byte: a TLS record on the plain port, or plain text on the TLS port,
/// is answered with a JSON error saying what the port speaks; a TLS connection is
/// handshaken.
async fn open(stream: TcpStream, tls: Option<&Tls>) -> Option<Opened> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await.ok()? == 0 {
        return None;
    }
    // 0x16 starts a TLS handshake record (the ClientHello).
    let looks_like_tls = first[0] == 0x16;
    match tls {
        None if looks_like_tls => {
            answers::write_and_close(stream, &answers::tls_on_plain_port()).await;
            None
        }
        None => Some(Opened::Plain(stream)),
        Some(_) if !looks_like_tls => {
            answers::write_and_close(stream, &answers::plain_on_tls_port()).await;
            None
        }
        Some(tls) => match tls.accept(stream).await {
            Ok(stream) => Some(Opened::Tls(Box::new(stream))),
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
        },
    }
}

/// Runs hyper's HTTP/1 connection over `io` under the watchdog.
async fn run<I, S>(
    io: I,
    service: ConnectionService<S>,
    limits: Limits,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Api,
{
    let activity = service.activity.clone();
    let io = TokioIo::new(answers::JsonProtocolErrors::new(io, activity.clone()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .max_header_size(MAX_HEAD_BYTES)
        .header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let watchdog = tokio::time::sleep_until(activity.opened + limits.header_timeout);
    tokio::pin!(watchdog);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = activity.evicted.notified() => return,
            _ = activity.changed.notified() => {}
            _ = watchdog.as_mut() => {}
        }
        // Something changed or a deadline came: close, or wait for the next deadline.
        let now = Instant::now();
        match activity.deadline(&limits) {
            Some(deadline) if deadline <= now => return,
            Some(deadline) => watchdog.as_mut().reset(deadline),
            // Busy: look again later; the deadline counts from when it goes idle.
            None => watchdog
                .as_mut()
                .reset(now + limits.idle_timeout.min(limits.header_timeout)),
        }
    }
}

/// The API as hyper calls it on one connection.
struct ConnectionService<S> {
    api: S,
    peer: SocketAddr,
    secure: bool,
    activity: Arc<Activity>,
    body_timeout: Duration,
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnectionService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Responding<Oneshot<S, Request<Body>>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(&self.activity);
        let most = max_body_bytes(request.uri().path());
        let declared_too_large = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|length| length > most as u64);
        if declared_too_large {
            // Answered before a byte of the body is read (nor a 100 Continue sent).
            return Responding::Ready {
                response: Some(answers::closing(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body is larger than {most} bytes"),
                )),
                in_flight: Some(in_flight),
            };
        }
        if !self.secure
            && !self.peer.ip().is_loopback()
            && request.headers().contains_key(header::AUTHORIZATION)
        {
            super::warn_token_over_plain_http(self.peer.ip());
        }
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer));
        let body = if http_body::Body::is_end_stream(&body) {
            Body::empty()
        } else {
            Body::new(TimedBody {
                inner: body,
                deadline: Instant::now() + self.body_timeout,
                timer: None,
                activity: self.activity.clone(),
            })
        };
        Responding::Api {
            inner: self.api.clone().oneshot(Request::from_parts(parts, body)),
            in_flight: Some(in_flight),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response to one request, its body tracked until it ends.
    #[project = RespondingProjection]
    pub(crate) enum Responding<F> {
        Api { #[pin] inner: F, in_flight: Option<InFlight> },
        Ready { response: Option<Response<Body>>, in_flight: Option<InFlight> },
    }
}

impl<F> Future for Responding<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (response, in_flight) = match self.project() {
            RespondingProjection::Api { inner, in_flight } => {
                let Ok(mut response) = ready!(inner.poll(cx));
                let in_flight = in_flight.take().expect("polled after completion");
                if in_flight.0.body_timed_out.load(Ordering::Relaxed) {
                    // Whatever the handler made of the cut body, the caller was too slow.
                    response =
                        answers::closing(StatusCode::REQUEST_TIMEOUT, BodyTimedOut.to_string());
                }
                (response, in_flight)
            }
            RespondingProjection::Ready {
                response,
                in_flight,
            } => (
                response.take().expect("polled after completion"),
                in_flight.take().expect("polled after completion"),
            ),
        };
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            in_flight: Some(in_flight),
        })))
    }
}

/// A response body that keeps its request in flight until it ends.
pub(crate) struct TrackedBody {
    inner: Body,
    in_flight: Option<InFlight>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() {
            self.in_flight = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that must arrive by a deadline.
struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    /// Made on the first wait only: a body that is already here needs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    activity: Arc<Activity>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        self.activity.body_timed_out.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(BodyTimedOut.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Reports reads to the connection's [`Activity`].
pub(super) fn note_read(activity: &Activity, buf: &ReadBuf<'_>, filled_before: usize) {
    if buf.filled().len() > filled_before {
        activity.on_read();
    }
}

/// How many requests the API was handed on this connection.
pub(super) fn dispatched(activity: &Activity) -> u64 {
    activity.dispatched.load(Ordering::Relaxed)
}
