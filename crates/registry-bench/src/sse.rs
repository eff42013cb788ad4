//! The subscribers of `registry-bench watch --sse`: each holds one Server-Sent Events
//! stream `GET /registry-svc/events?kind=instance` (see `watch.rs` for the workload and
//! what is timed).
//!
//! A subscriber is as cheap as a blocking watcher: one HTTP/1.1 connection written and
//! read by hand on the watchers' single-threaded runtime. The stream's chunked encoding
//! is undone as the bytes come in, the body is cut into events at their blank line, and
//! an event is not parsed as JSON, only searched: for the quoted tag of the instance the
//! driver waits to see appear (the daemon's event carries the whole instance, tags
//! included, so the id need not be known before the 201), or for
//! `"op":"delete","id":"<id>"` of the one it waits to see go. Its `id:` line (the
//! revision) is kept, so that a subscriber whose connection fails resumes with
//! `since=<last revision>` and misses nothing.

use crate::follower::{find, tag, Follower, Seen, NO_CHANGE};
use anyhow::{bail, Context, Result};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One subscriber: an event stream, opened again (from the last revision it saw) after
/// it fails. Counts itself in `ready` once its first stream has answered 200 (the daemon
/// subscribes it before answering, so no later change can be missed). Reports each
/// expectation once, when the first event meeting it is in.
pub(crate) async fn subscriber(follower: Follower) {
    tokio::time::sleep(follower.delay).await;
    let mut last_revision: Option<u64> = None;
    let mut counted = false;
    let (mut reported_appear, mut reported_gone) = (NO_CHANGE, NO_CHANGE);
    let mut appear_text = String::new();
    let mut gone_text = String::new();
    loop {
        follower.connects.fetch_add(1, Ordering::Relaxed);
        let Ok(mut stream) =
            EventStream::open(&follower.address, &follower.token, last_revision).await
        else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if !counted {
            counted = true;
            follower.ready.fetch_add(1, Ordering::SeqCst);
        }
        while stream.read().await.is_ok() {
            let at = Instant::now();
            while let Some(range) = stream.next_event() {
                let event = &stream.decoded[range];
                if let Some(revision) = event_id(event) {
                    last_revision = Some(revision);
                }
                let appear = follower.expect.appear.load(Ordering::SeqCst);
                if appear != NO_CHANGE && appear != reported_appear {
                    appear_text.clear();
                    appear_text.push_str(&format!("\"{}\"", tag(appear)));
                    if find(event, appear_text.as_bytes()).is_some() {
                        reported_appear = appear;
                        if follower
                            .seen
                            .send((Seen::Appeared(appear), at, event.len()))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                let gone = follower.expect.gone.load(Ordering::SeqCst);
                if gone != NO_CHANGE && gone != reported_gone {
                    {
                        let (number, id) = &*follower.expect.gone_id.lock().expect("not poisoned");
                        gone_text.clear();
                        if *number == gone {
                            gone_text.push_str(&format!("\"op\":\"delete\",\"id\":\"{id}\""));
                        }
                    }
                    if !gone_text.is_empty() && find(event, gone_text.as_bytes()).is_some() {
                        reported_gone = gone;
                        if follower
                            .seen
                            .send((Seen::Gone(gone), at, event.len()))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            stream.compact();
        }
        // The stream failed or ended: do not spin.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The revision in an event's `id:` line.
fn event_id(event: &[u8]) -> Option<u64> {
    let start = if event.starts_with(b"id:") {
        3
    } else {
        find(event, b"\nid:")? + 4
    };
    let rest = &event[start..];
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.trim().parse().ok()
}

/// An open event stream: its raw bytes, and the body decoded from them.
pub(crate) struct EventStream {
    stream: TcpStream,
    /// Bytes read and not yet decoded.
    raw: Vec<u8>,
    /// `Transfer-Encoding: chunked`: bytes left of the current chunk, its CRLF
    /// included (0: a size line comes next).
    chunked: Option<usize>,
    /// The decoded body; `decoded[..events_end]` has been handed out as events.
    pub decoded: Vec<u8>,
    events_end: usize,
}

impl EventStream {
    /// Connects and asks for the instance events (after `since`, when given); returns
    /// once the answer's head is in, failing unless it is a 200.
    pub(crate) async fn open(
        address: &str,
        token: &str,
        since: Option<u64>,
    ) -> Result<EventStream> {
        let mut stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let since = since.map_or(String::new(), |s| format!("&since={s}"));
        let request = format!(
            "GET /registry-svc/events?kind=instance{since} HTTP/1.1\r\nHost: {address}\r\n\
             Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::with_capacity(16 * 1024);
        let head_end = loop {
            if let Some(at) = find(&raw, b"\r\n\r\n") {
                break at + 4;
            }
            if raw.len() > 64 * 1024 {
                bail!("an answer head over 64 KiB");
            }
            if stream.read_buf(&mut raw).await? == 0 {
                bail!("connection closed before the answer's head");
            }
        };
        let head = std::str::from_utf8(&raw[..head_end]).context("a non-UTF-8 head")?;
        if !head.starts_with("HTTP/1.1 200 ") {
            bail!("answered {head}");
        }
        let chunked = head.split("\r\n").any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                name.eq_ignore_ascii_case("transfer-encoding")
                    && value.trim().eq_ignore_ascii_case("chunked")
            })
        });
        raw.drain(..head_end);
        let mut stream = EventStream {
            stream,
            raw,
            chunked: chunked.then_some(0),
            decoded: Vec::with_capacity(16 * 1024),
            events_end: 0,
        };
        stream.decode()?;
        Ok(stream)
    }

    /// Reads what has come and decodes it; an error at the end of the stream.
    pub(crate) async fn read(&mut self) -> Result<()> {
        if self.raw.capacity() - self.raw.len() < 8 * 1024 {
            self.raw.reserve(16 * 1024);
        }
        if self.stream.read_buf(&mut self.raw).await? == 0 {
            bail!("the event stream ended");
        }
        self.decode()
    }

    /// Moves the body bytes of `raw` to `decoded`, undoing the chunked encoding.
    fn decode(&mut self) -> Result<()> {
        let Some(mut left) = self.chunked else {
            self.decoded.extend_from_slice(&self.raw);
            self.raw.clear();
            return Ok(());
        };
        let mut at = 0;
        loop {
            if left == 0 {
                // A size line, `<hex>[;ext]\r\n`.
                let Some(end) = find(&self.raw[at..], b"\r\n") else {
                    break;
                };
                let line = std::str::from_utf8(&self.raw[at..at + end])?;
                let size_text = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size_text, 16)
                    .with_context(|| format!("bad chunk size {size_text:?}"))?;
                if size == 0 {
                    bail!("the event stream ended");
                }
                at += end + 2;
                left = size + 2;
            }
            let available = (self.raw.len() - at).min(left);
            if available == 0 {
                break;
            }
            // The chunk's data, without its closing CRLF.
            let data = available.min(left.saturating_sub(2));
            self.decoded.extend_from_slice(&self.raw[at..at + data]);
            at += available;
            left -= available;
        }
        self.raw.drain(..at);
        self.chunked = Some(left);
        Ok(())
    }

    /// The next complete event of `decoded` (up to, not including, its blank line).
    pub(crate) fn next_event(&mut self) -> Option<std::ops::Range<usize>> {
        let end = self.events_end + find(&self.decoded[self.events_end..], b"\n\n")?;
        let range = self.events_end..end;
        self.events_end = end + 2;
        Some(range)
    }

    /// Drops the events handed out.
    pub(crate) fn compact(&mut self) {
        self.decoded.drain(..self.events_end);
        self.events_end = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::serve;

    async fn events(stream: &mut EventStream, count: usize) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            while let Some(range) = stream.next_event() {
                out.push(String::from_utf8(stream.decoded[range].to_vec()).unwrap());
            }
            stream.compact();
            if out.len() >= count {
                return out;
            }
            stream.read().await.unwrap();
        }
    }

    #[tokio::test]
    async fn decodes_chunked_events_split_anywhere() {
        let address = serve(vec![vec![
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            // One event over two chunks, split in a chunk's CRLF and a size line.
            "e\r\nevent: change\n\r",
            "\n1",
            "5\r\nid: 7\ndata: {\"a\":1}\n\n\r\n",
            // A keep-alive comment and an event in one chunk, cut mid-data.
            "20\r\n:\n\nid: 8\ndata: {\"op\":\"dele",
            "te\"}\n\n\r\n",
        ]])
        .await;
        let mut stream = EventStream::open(&address, "t", None).await.unwrap();
        let got = events(&mut stream, 3).await;
        assert_eq!(
            got,
            [
                "event: change\nid: 7\ndata: {\"a\":1}",
                ":",
                "id: 8\ndata: {\"op\":\"delete\"}"
            ]
        );
        assert_eq!(event_id(got[0].as_bytes()), Some(7));
        assert_eq!(event_id(got[1].as_bytes()), None);
        assert_eq!(event_id(got[2].as_bytes()), Some(8));
        assert!(stream.read().await.is_err(), "the connection closed");
    }

    #[tokio::test]
    async fn refuses_an_answer_other_than_200() {
        let address = serve(vec![vec![
            "HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}",
        ]])
        .await;
        assert!(EventStream::open(&address, "t", Some(3)).await.is_err());
    }
}
