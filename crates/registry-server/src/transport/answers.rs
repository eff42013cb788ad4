//! Answers the transport gives itself, all with a JSON `{"error": ...}` body: protocol
//! errors, the wrong protocol on a port, too many connections, a body too large or too slow.
//!
//! hyper answers a request it cannot parse (a malformed request line or header: 400, a
//! head over the size limit: 431, a URI too long: 414) with an empty body of its own, and
//! offers no hook to change it. [`JsonProtocolErrors`] sits between hyper and the socket
//! and swaps that answer for a JSON one. It recognises it without parsing anything: a
//! response head is written once per request hyper handed to the API, so a head written
//! beyond that count is hyper's own error answer. hyper closes the connection after it.

use super::connection::{self, Activity};
use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A JSON error response that closes the connection after it.
pub(super) fn closing(status: StatusCode, message: String) -> Response<Body> {
    let mut response = crate::api::json_error(status, message);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A whole HTTP/1.1 response with a JSON error, written straight to a socket.
fn raw(status: StatusCode, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": message }).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

pub(super) fn tls_on_plain_port() -> Vec<u8> {
    raw(
        StatusCode::BAD_REQUEST,
        "this port speaks plain HTTP, not TLS: use an http:// URL",
    )
}

pub(super) fn plain_on_tls_port() -> Vec<u8> {
    raw(
        StatusCode::BAD_REQUEST,
        "this port speaks HTTPS: use an https:// URL",
    )
}

/// The JSON answer for the parse error hyper answered with `status`.
fn protocol_error(status: &[u8]) -> Vec<u8> {
    match status {
        b"431" => raw(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request line and headers are too large",
        ),
        b"414" => raw(StatusCode::URI_TOO_LONG, "the request URI is too long"),
        _ => raw(
            StatusCode::BAD_REQUEST,
            "malformed HTTP request: the request line or a header cannot be parsed",
        ),
    }
}

/// Writes `answer`, closes the sending side and waits briefly for the peer to close, so
/// that the request it already sent does not turn the close into a reset that loses the
/// answer.
pub(super) async fn write_and_close(mut stream: TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}

/// Answers a connection past the cap when every open one is busy. A TLS client cannot
/// read a plain answer, so it is only closed.
pub(super) async fn refuse_busy(stream: TcpStream, tls: bool) {
    if tls {
        return;
    }
    let answer = raw(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many connections with requests in flight; try again shortly",
    );
    write_and_close(stream, &answer).await;
}

/// How every HTTP/1 response head begins: `HTTP/1.x 200 ...`.
const HEAD_START: &[u8] = b"HTTP/1.";

/// The IO under hyper: notes reads for the watchdog and swaps hyper's empty error answers
/// for JSON ones (see the module docs).
pub(super) struct JsonProtocolErrors<I> {
    io: I,
    activity: Arc<Activity>,
    heads_written: u64,
    swap: Option<Swap>,
}

/// hyper's error answer being replaced: the JSON one, how much of it is written, and what
/// hyper is told was written.
struct Swap {
    answer: Vec<u8>,
    written: usize,
}

impl<I> JsonProtocolErrors<I> {
    pub(super) fn new(io: I, activity: Arc<Activity>) -> Self {
        JsonProtocolErrors {
            io,
            activity,
            heads_written: 0,
            swap: None,
        }
    }

    /// Whether `chunk` begins a response head, and if so whether it is hyper's own
    /// error answer (a head beyond the requests handed to the API).
    fn classify(&self, chunk: &[u8]) -> Head {
        let is_head = chunk.len() > 12 && chunk.starts_with(HEAD_START) && chunk[8] == b' ';
        if !is_head || chunk[9] == b'1' {
            // Not a head, or a 100 Continue, which precedes the real head.
            return Head::None;
        }
        if self.heads_written < connection::dispatched(&self.activity) {
            Head::Api
        } else {
            Head::ProtocolError
        }
    }
}

enum Head {
    None,
    Api,
    ProtocolError,
}

impl<I: AsyncWrite + Unpin> JsonProtocolErrors<I> {
    /// Writes the JSON answer; once it is out, everything hyper writes is dropped, as the
    /// connection is closing.
    fn poll_swap(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<usize>> {
        let swap = self.swap.as_mut().expect("swapping");
        while swap.written < swap.answer.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &swap.answer[swap.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            swap.written += n;
        }
        Poll::Ready(Ok(len))
    }

    fn start(&mut self, head: Head, chunk: &[u8]) {
        match head {
            Head::None => {}
            Head::Api => self.heads_written += 1,
            Head::ProtocolError => {
                self.swap = Some(Swap {
                    answer: protocol_error(&chunk[9..12]),
                    written: 0,
                })
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for JsonProtocolErrors<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        connection::note_read(&self.activity, buf, before);
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for JsonProtocolErrors<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.swap.is_some() {
            return self.poll_swap(cx, buf.len());
        }
        let head = self.classify(buf);
        if matches!(head, Head::ProtocolError) {
            self.start(head, buf);
            return self.poll_swap(cx, buf.len());
        }
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
        if n > 0 {
            self.start(head, buf);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.swap.is_some() {
            return self.poll_swap(cx, len);
        }
        let first: &[u8] = bufs.iter().find(|b| !b.is_empty()).map_or(&[], |b| b);
        let head = self.classify(first);
        if matches!(head, Head::ProtocolError) {
            self.start(head, first);
            return self.poll_swap(cx, len);
        }
        let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        if n > 0 {
            self.start(head, first);
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
