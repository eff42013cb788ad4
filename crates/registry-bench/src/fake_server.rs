//! A one-connection HTTP server for the tests of the bench's hand-written clients.

use crate::follower::find;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one connection on a free loopback port, whose address it returns: answers each
/// request read with the next of `answers`, each written part by part, a little apart, so
/// that the client must read more than once. Closes the connection after the last.
pub(crate) async fn serve(answers: Vec<Vec<&'static str>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        for parts in answers {
            let end = loop {
                if let Some(at) = find(&buf, b"\r\n\r\n") {
                    break at + 4;
                }
                let mut chunk = [0u8; 1024];
                let n = stream.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            };
            buf.drain(..end);
            for (i, part) in parts.into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                stream.write_all(part.as_bytes()).await.unwrap();
            }
        }
    });
    address
}

/// `answer` in two parts, cut in the middle.
pub(crate) fn halves(answer: &'static str) -> Vec<&'static str> {
    let (head, tail) = answer.split_at(answer.len() / 2);
    vec![head, tail]
}
