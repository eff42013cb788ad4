//! Slow, idle, hostile and malformed connections against a real daemon: each is cut or
//! answered with a JSON error, and a legitimate client stays served throughout.

mod common;

use common::{Daemon, EventStream};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A daemon with short time limits, so the tests run in well under a second each.
async fn daemon_with(adjust: impl FnOnce(&mut registry_server::Config)) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.header_timeout = Duration::from_millis(400);
    config.body_timeout = Duration::from_millis(400);
    config.idle_timeout = Duration::from_millis(400);
    adjust(&mut config);
    Daemon::start_with(config, dir).await
}

fn addr(d: &Daemon) -> SocketAddr {
    d.server.as_ref().unwrap().addr()
}

/// Reads until the daemon closes the connection (or `within` passes: a failure).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the connection is still open after {within:?}"));
    received
}

/// An HTTP answer read off a raw socket: status, headers (lower-cased names), JSON body.
struct RawReply {
    status: u16,
    head: String,
    body: Value,
}

impl RawReply {
    fn parse(bytes: &[u8]) -> RawReply {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete answer in {text:?}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        RawReply {
            status,
            head: head.to_ascii_lowercase(),
            body: serde_json::from_str(body).unwrap_or(Value::Null),
        }
    }

    /// Asserts `status`, a JSON content type and an `error` that contains `says`.
    fn assert_json_error(&self, status: u16, says: &str) {
        assert_eq!(self.status, status, "{} {}", self.head, self.body);
        assert!(
            self.head.contains("content-type: application/json"),
            "not JSON: {}",
            self.head
        );
        let error = self.body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(says),
            "error {:?} should say {says:?}",
            self.body
        );
    }
}

/// Sends `request` on a new connection and reads the answer until the daemon closes.
async fn exchange(d: &Daemon, request: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(addr(d)).await.unwrap();
    stream.write_all(request).await.unwrap();
    RawReply::parse(&read_until_closed(&mut stream, Duration::from_secs(5)).await)
}

#[tokio::test]
async fn headers_trickled_slower_than_the_header_timeout_are_cut() {
    let d = daemon_with(|_| {}).await;
    let mut stream = TcpStream::connect(addr(&d)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let trickle = async {
        // One header line every 100 ms, for ever: never a complete head.
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stream
                .write_all(format!("x-slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), trickle).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(3),
        "the slow client was held for {elapsed:?}"
    );
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(1))
            .await
            .is_empty(),
        "a cut slow client gets no answer"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let d = daemon_with(|c| c.idle_timeout = Duration::from_secs(60)).await;
    let mut stream = TcpStream::connect(addr(&d)).await.unwrap();
    let started = Instant::now();
    read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_trickled_body_is_answered_408_in_json_and_closed() {
    let d = daemon_with(|_| {}).await;
    let mut stream = TcpStream::connect(addr(&d)).await.unwrap();
    let head = format!(
        "PUT /registry-svc/instance HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 200\r\n\r\n{{",
        d.admin
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(5) {
        tokio::select! {
            read = stream.read(&mut chunk) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                let _ = stream.write_all(b" ").await;
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(3), "held too long");
    let reply = RawReply::parse(&answer);
    reply.assert_json_error(408, "did not arrive in time");
    assert!(reply.head.contains("connection: close"), "{}", reply.head);
}

#[tokio::test]
async fn a_declared_body_over_the_cap_is_refused_before_it_is_sent() {
    let d = daemon_with(|_| {}).await;
    for expect in ["", "expect: 100-continue\r\n"] {
        let request = format!(
            "PUT /registry-svc/instance HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 10000000000\r\n{expect}\r\n",
            d.admin
        );
        let started = Instant::now();
        let reply = exchange(&d, request.as_bytes()).await;
        reply.assert_json_error(413, "larger than");
        assert!(!reply.head.contains("100 continue"), "{}", reply.head);
        assert!(started.elapsed() < Duration::from_secs(1), "{expect}");
    }
}

#[tokio::test]
async fn protocol_errors_are_answered_in_json() {
    let d = daemon_with(|_| {}).await;
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    exchange(&d, huge_header.as_bytes())
        .await
        .assert_json_error(431, "too large");
    exchange(&d, b"NOT AN HTTP REQUEST\r\n\r\n")
        .await
        .assert_json_error(400, "malformed");
    exchange(&d, b"GET /healthz HTTP/1.1\r\nbad header\r\n\r\n")
        .await
        .assert_json_error(400, "malformed");
    // The start of a TLS ClientHello: a handshake record, TLS 1.0 record version.
    exchange(&d, &[0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1])
        .await
        .assert_json_error(400, "plain HTTP");
}

#[tokio::test]
async fn a_protocol_error_after_a_good_request_on_the_same_connection_is_json_too() {
    let d = daemon_with(|_| {}).await;
    let mut stream = TcpStream::connect(addr(&d)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /x HTTP/1.1\r\nbad header\r\n\r\n")
        .await
        .unwrap();
    let all = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let all = String::from_utf8_lossy(&all);
    assert!(all.starts_with("HTTP/1.1 200"), "{all:?}");
    let second = all
        .match_indices("HTTP/1.1 ")
        .nth(1)
        .map(|(at, _)| &all[at..])
        .unwrap_or_else(|| panic!("one answer only: {all:?}"));
    RawReply::parse(second.as_bytes()).assert_json_error(400, "malformed");
}

#[tokio::test]
async fn idle_keep_alive_connections_close_but_an_event_stream_outlives_the_idle_timeout() {
    let d = daemon_with(|_| {}).await;
    let events = d.events_request("kind=instance").send().await.unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let mut events = EventStream::new(events);

    let mut idle = TcpStream::connect(addr(&d)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let went_idle = Instant::now();
    read_until_closed(&mut idle, Duration::from_secs(3)).await;
    assert!(
        went_idle.elapsed() >= Duration::from_millis(300),
        "closed before the idle timeout"
    );

    // Well past the idle timeout, the event stream still delivers.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let id = d
        .register(json!({"url": "http://127.0.0.1:1", "healthCheck": {"type": "none"}}))
        .await;
    let (_, event) = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("the event stream is still open");
    assert!(event.to_string().contains(&id), "{event}");
}

#[tokio::test]
async fn a_blocking_query_outlives_the_idle_timeout() {
    let d = daemon_with(|_| {}).await;
    let index = d.index_of(Method::GET, "/registry-svc/instances").await;
    let parked = d.spawn_get(&format!("/registry-svc/instances?index={index}&wait=2s"));
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!parked.is_finished(), "the parked query ended early");
    let reply = parked.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn a_flood_of_idle_connections_past_the_cap_leaves_a_legitimate_client_served() {
    const HOSTILE: usize = 3000;
    let d = daemon_with(|c| {
        c.header_timeout = Duration::from_secs(60);
        c.idle_timeout = Duration::from_secs(60);
        c.max_connections = Some(1000);
    })
    .await;
    let target = addr(&d);
    let mut hostile = Vec::with_capacity(HOSTILE);
    for i in 0..HOSTILE {
        let mut stream = TcpStream::connect(target).await.unwrap();
        // Half say nothing, half start a request and stop.
        if i % 2 == 0 {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\n")
                .await
                .unwrap();
        }
        hostile.push(stream);
    }

    let legitimate = reqwest::Client::new();
    for path in ["/healthz", "/registry-svc/instances"] {
        let started = Instant::now();
        let response = legitimate
            .get(d.url(path))
            .bearer_auth(&d.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.bytes().await.unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
    }

    // The flood pushed out its own oldest members: no more than the cap stay open.
    let closed = common::wait_until(Duration::from_secs(10), || {
        let closed = hostile
            .iter()
            .filter(|s| match s.try_read(&mut [0u8; 1]) {
                Ok(n) => n == 0,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            })
            .count();
        async move { closed >= HOSTILE - 1000 }
    })
    .await;
    assert!(closed, "the cap did not close the oldest idle connections");
}

#[tokio::test]
async fn at_the_cap_with_every_connection_busy_a_new_one_is_answered_503_in_json() {
    let d = daemon_with(|c| c.max_connections = Some(2)).await;
    // Two event streams: requests in flight for as long as they stay open.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let response = d.events_request("kind=instance").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        busy.push(response);
    }
    let reply = exchange(&d, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    reply.assert_json_error(503, "connection");

    // Once one of them leaves, a new connection is served again.
    drop(busy.pop());
    let served = common::wait_until(Duration::from_secs(5), || async {
        let reply = exchange(
            &d,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        reply.status == 200
    })
    .await;
    assert!(served, "a connection freed at the cap was not reused");
}
