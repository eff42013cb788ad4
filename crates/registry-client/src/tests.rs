//! Tests against a one-shot fake HTTP server on the loopback address.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the fake server saw: the request line, the headers (lowercased names) and the body.
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one request with `status` and `body`, and hands back what it received.
async fn serve_once(status: &'static str, answer: &'static str) -> (String, JoinHandle<Seen>) {
    serve_once_with(status, "", answer).await
}

/// [`serve_once`] with `extra` header lines (each ending in `\r\n`) in the answer.
async fn serve_once_with(
    status: &'static str,
    extra: &'static str,
    answer: &'static str,
) -> (String, JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed before sending a full request");
            data.extend_from_slice(&buf[..n]);
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        while data.len() < head_end + length {
            let n = socket.read(&mut buf).await.unwrap();
            data.extend_from_slice(&buf[..n]);
        }
        let body = String::from_utf8(data[head_end..head_end + length].to_vec()).unwrap();
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        Seen {
            request_line,
            headers,
            body,
        }
    });
    (base, handle)
}

#[tokio::test]
async fn sends_bearer_token_and_reads_list() {
    let (base, server) = serve_once(
        "200 OK",
        r#"{"definitions":[{"id":"test-a","image":{"name":"hashicorp/http-echo","internalPorts":[8080]}}]}"#,
    )
    .await;
    let client = RegistryClient::new(format!("{base}/"), None).with_token("secret");
    let definitions = client.list_definitions().await.unwrap();
    assert_eq!(definitions.len(), 1);
    assert_eq!(definitions[0].id, "test-a");
    let seen = server.await.unwrap();
    assert_eq!(seen.request_line, "GET /registry-svc/definitions HTTP/1.1");
    assert_eq!(seen.header("authorization"), Some("Bearer secret"));
}

#[tokio::test]
async fn no_token_sends_no_authorization() {
    let (base, server) = serve_once("200 OK", r#"{"tokens":[]}"#).await;
    let tokens = RegistryClient::new(base, None).list_tokens().await.unwrap();
    assert!(tokens.is_empty());
    assert_eq!(server.await.unwrap().header("authorization"), None);
}

#[tokio::test]
async fn save_definition_wraps_the_body() {
    let (base, server) = serve_once("201 Created", "{}").await;
    let definition = Definition {
        id: "bare".into(),
        image: None,
        repository: None,
        api_specs: vec![],
        clients: vec![],
        envars: vec![],
        ports: vec![],
    };
    RegistryClient::new(base, None)
        .save_definition(&definition)
        .await
        .unwrap();
    let seen = server.await.unwrap();
    assert_eq!(seen.request_line, "PUT /registry-svc/definition HTTP/1.1");
    let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(body["definition"]["id"], "bare");
}

#[tokio::test]
async fn node_url_is_one_encoded_segment() {
    let (base, server) = serve_once("204 No Content", "").await;
    RegistryClient::new(base, None)
        .delete_node("http://10.0.0.7:58231/x")
        .await
        .unwrap();
    assert_eq!(
        server.await.unwrap().request_line,
        "DELETE /registry-svc/node/http%3A%2F%2F10.0.0.7%3A58231%2Fx HTTP/1.1"
    );
}

#[tokio::test]
async fn heartbeat_puts_to_the_encoded_instance_id() {
    let (base, server) = serve_once("204 No Content", "").await;
    RegistryClient::new(base, None)
        .with_token("secret")
        .heartbeat_instance("inst/a b")
        .await
        .unwrap();
    let seen = server.await.unwrap();
    assert_eq!(
        seen.request_line,
        "PUT /registry-svc/instance/inst%2Fa%20b/heartbeat HTTP/1.1"
    );
    assert_eq!(seen.header("authorization"), Some("Bearer secret"));
}

#[tokio::test]
async fn heartbeat_on_an_unknown_instance_is_a_404() {
    let (base, _server) = serve_once(
        "404 Not Found",
        r#"{"error":"instance \"inst_x\" not found"}"#,
    )
    .await;
    let err = RegistryClient::new(base, None)
        .heartbeat_instance("inst_x")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert!(err.to_string().contains("not found"), "{err}");
}

#[tokio::test]
async fn filter_goes_in_the_query() {
    let (base, server) = serve_once("200 OK", r#"{"instances":[]}"#).await;
    let filter = InstanceFilter {
        slug: Some("user-svc".into()),
        status: Some(registry_types::InstanceStatus::Healthy),
        tags: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    RegistryClient::new(base, None)
        .list_instances(&filter)
        .await
        .unwrap();
    assert_eq!(
        server.await.unwrap().request_line,
        "GET /registry-svc/instances?slug=user-svc&status=Healthy&tag=a&tag=b HTTP/1.1"
    );
}

#[tokio::test]
async fn create_token_posts_slug_and_role() {
    let (base, server) = serve_once(
        "201 Created",
        r#"{"id":"tok_1","token":"s3cret","slug":"user-svc","role":"admin"}"#,
    )
    .await;
    let created = RegistryClient::new(base, None)
        .create_token("user-svc", Role::Admin)
        .await
        .unwrap();
    assert_eq!(created.token, "s3cret");
    let seen = server.await.unwrap();
    assert_eq!(seen.request_line, "POST /registry-svc/tokens HTTP/1.1");
    let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"slug": "user-svc", "role": "admin"})
    );
}

#[tokio::test]
async fn error_status_carries_the_registry_message() {
    let (base, _server) =
        serve_once("404 Not Found", r#"{"error":"definition x not found"}"#).await;
    let err = RegistryClient::new(base, None)
        .delete_definition("x")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(
        err.to_string(),
        "definition x not found (HTTP 404 Not Found)"
    );
}

#[tokio::test]
async fn non_json_error_body_is_kept_as_text() {
    let (base, _server) = serve_once("502 Bad Gateway", "upstream down\n").await;
    let err = RegistryClient::new(base, None)
        .node_self()
        .await
        .unwrap_err();
    match err {
        Error::Api { status, message } => {
            assert_eq!(status, StatusCode::BAD_GATEWAY);
            assert_eq!(message, "upstream down");
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_success_body_is_a_decode_error() {
    let (base, _server) = serve_once("200 OK", "not json").await;
    let err = RegistryClient::new(base, None)
        .list_definitions()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err:?}");
}

#[tokio::test]
async fn unreachable_registry_is_a_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = RegistryClient::new(base, None)
        .list_tokens()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert_eq!(err.status(), None);
}

#[test]
fn segment_encodes_reserved_characters() {
    assert_eq!(segment("inst_AbC-1.2~"), "inst_AbC-1.2~");
    assert_eq!(segment("a/b:c d?"), "a%2Fb%3Ac%20d%3F");
}

#[tokio::test]
async fn indexed_list_reads_the_index_header() {
    let (base, server) = serve_once_with(
        "200 OK",
        "X-Registry-Index: 42\r\n",
        r#"{"instances":[{"id":"inst_1","url":"http://127.0.0.1:9"}]}"#,
    )
    .await;
    let filter = InstanceFilter {
        slug: Some("svc".into()),
        ..Default::default()
    };
    let (list, index) = RegistryClient::new(base, None)
        .list_instances_indexed(&filter)
        .await
        .unwrap();
    assert_eq!((list.len(), index), (1, 42));
    assert_eq!(
        server.await.unwrap().request_line,
        "GET /registry-svc/instances?slug=svc HTTP/1.1"
    );
}

#[tokio::test]
async fn missing_or_bad_index_reads_as_zero() {
    for extra in ["", "X-Registry-Index: soon\r\n"] {
        let (base, _server) = serve_once_with("200 OK", extra, r#"{"nodes":[]}"#).await;
        let (nodes, index) = RegistryClient::new(base, None)
            .list_nodes_indexed(&[])
            .await
            .unwrap();
        assert!(nodes.is_empty());
        assert_eq!(index, 0, "{extra:?}");
    }
}

#[tokio::test]
async fn blocking_queries_send_index_and_wait() {
    let (base, server) =
        serve_once_with("200 OK", "x-registry-index: 8\r\n", r#"{"instances":[]}"#).await;
    let filter = InstanceFilter {
        slug: Some("svc".into()),
        ..Default::default()
    };
    let (_, index) = RegistryClient::new(base, None)
        .list_instances_blocking(&filter, 7, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(index, 8);
    assert_eq!(
        server.await.unwrap().request_line,
        "GET /registry-svc/instances?slug=svc&index=7&wait=30s HTTP/1.1"
    );

    let (base, server) = serve_once_with("200 OK", "", r#"{"nodes":[]}"#).await;
    RegistryClient::new(base, None)
        .list_nodes_blocking(&[], 3, Duration::from_millis(1500))
        .await
        .unwrap();
    let seen = server.await.unwrap();
    assert_eq!(
        seen.request_line,
        "POST /registry-svc/nodes?index=3&wait=1500ms HTTP/1.1"
    );
    assert_eq!(seen.body, r#"{"ids":[]}"#);
}

#[tokio::test]
async fn blocking_queries_outlast_a_shorter_client_timeout() {
    // The answer comes after 300 ms; the HTTP client gives up after 100 ms on its own.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = socket.read(&mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let body = r#"{"instances":[]}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\nX-Registry-Index: 5\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let client = RegistryClient::new(base, None).with_http_client(http);
    let (_, index) = client
        .list_instances_blocking(&InstanceFilter::default(), 4, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(index, 5);
}

#[test]
fn describe_walks_the_causes() {
    let err = Error::Decode(serde_json::from_str::<u8>("x").unwrap_err());
    let text = describe(&err);
    assert!(
        text.starts_with("unexpected answer from the registry: "),
        "{text}"
    );
}

#[test]
fn a_token_in_clear_is_flagged_only_off_this_machine_over_http() {
    use crate::sends_in_clear_off_this_machine as in_clear;
    assert!(in_clear("http://registry.example:58231"));
    assert!(in_clear("http://10.1.2.3:58231"));
    for safe in [
        "https://registry.example:58231",
        "http://127.0.0.1:58231",
        "http://localhost:58231",
        "http://[::1]:58231",
    ] {
        assert!(!in_clear(safe), "{safe}");
    }
}
