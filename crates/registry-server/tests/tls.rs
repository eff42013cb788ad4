//! HTTPS against a real daemon, with a CA and certificates made in the test: a round trip,
//! plain HTTP on the TLS port, a certificate reloaded when its files change, and client
//! certificates.

mod common;

use common::Daemon;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use reqwest::StatusCode;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A certificate authority made for one test.
struct Authority {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        Authority { certificate, key }
    }

    fn pem(&self) -> String {
        self.certificate.pem()
    }

    /// A certificate for 127.0.0.1 and its key, as PEM, for a server or (with `client`) a
    /// client.
    fn issue(&self, client: bool) -> (String, String) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "registry test");
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .unwrap();
        (certificate.pem(), key.serialize_pem())
    }
}

/// Writes a server certificate from `authority` into `dir`; returns (cert, key) paths.
fn write_server_pair(dir: &Path, authority: &Authority) -> (PathBuf, PathBuf) {
    let (cert, key) = authority.issue(false);
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert_path, key_path)
}

async fn tls_daemon(authority: &Authority, client_ca: Option<&Authority>) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    let (cert, key) = write_server_pair(dir.path(), authority);
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    if let Some(ca) = client_ca {
        let path = dir.path().join("client-ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        config.tls_client_ca = Some(path);
    }
    Daemon::start_with(config, dir).await
}

/// A client that trusts `authority` only, with a fresh connection per request (so each
/// request makes a new handshake), presenting `identity` (PEM cert and key) when given.
fn client(authority: &Authority, identity: Option<(String, String)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(authority.pem().as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5));
    if let Some((cert, key)) = identity {
        builder = builder
            .identity(reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

async fn healthz(client: &reqwest::Client, d: &Daemon) -> Result<StatusCode, reqwest::Error> {
    Ok(client.get(d.url("/healthz")).send().await?.status())
}

#[tokio::test]
async fn https_round_trip_with_a_custom_ca() {
    let authority = Authority::new("test CA");
    let d = tls_daemon(&authority, None).await;
    assert!(d.url("").starts_with("https://127.0.0.1:"), "{}", d.url(""));
    let https = client(&authority, None);
    assert_eq!(healthz(&https, &d).await.unwrap(), StatusCode::OK);
    let node = https
        .get(d.url("/registry-svc/node/self"))
        .bearer_auth(&d.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(node.status(), StatusCode::OK);
    let node: serde_json::Value = node.json().await.unwrap();
    let url = node["node"]["url"].as_str().unwrap();
    assert!(url.starts_with("https://"), "the node's own URL is {url}");

    let stranger = client(&Authority::new("another CA"), None);
    assert!(
        healthz(&stranger, &d).await.is_err(),
        "a client that does not trust the CA must refuse the daemon"
    );
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_json_error() {
    let authority = Authority::new("test CA");
    let d = tls_daemon(&authority, None).await;
    let plain = d.url("/healthz").replacen("https://", "http://", 1);
    let reply = common::Reply::read(reqwest::get(plain).await.unwrap()).await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        Some("HTTPS"),
        "plain HTTP on the TLS port",
    );
}

#[tokio::test]
async fn a_changed_certificate_is_served_to_new_connections_and_a_bad_one_is_ignored() {
    let first = Authority::new("first CA");
    let d = tls_daemon(&first, None).await;
    let second = Authority::new("second CA");
    let trusts_second = client(&second, None);
    assert!(healthz(&trusts_second, &d).await.is_err());

    write_server_pair(d.dir.path(), &second);
    let reloaded = common::wait_until(Duration::from_secs(10), || async {
        healthz(&trusts_second, &d).await.is_ok()
    })
    .await;
    assert!(reloaded, "new connections never got the new certificate");

    // A broken certificate file: the daemon keeps serving the good one it has.
    std::fs::write(d.dir.path().join("server.pem"), "not a certificate").unwrap();
    // Long enough for the watcher to have seen the change (it looks every second).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(healthz(&trusts_second, &d).await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn a_required_client_certificate_is_checked() {
    let server_ca = Authority::new("server CA");
    let client_ca = Authority::new("client CA");
    let d = tls_daemon(&server_ca, Some(&client_ca)).await;

    let anonymous = client(&server_ca, None);
    assert!(
        healthz(&anonymous, &d).await.is_err(),
        "a client without a certificate must be refused"
    );
    let wrong = client(&server_ca, Some(Authority::new("other CA").issue(true)));
    assert!(
        healthz(&wrong, &d).await.is_err(),
        "a certificate from another CA must be refused"
    );
    let known = client(&server_ca, Some(client_ca.issue(true)));
    assert_eq!(healthz(&known, &d).await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn a_changed_client_ca_checks_new_handshakes_and_a_bad_one_is_ignored() {
    let server_ca = Authority::new("server CA");
    let first = Authority::new("first client CA");
    let d = tls_daemon(&server_ca, Some(&first)).await;
    let of_first = client(&server_ca, Some(first.issue(true)));
    assert_eq!(healthz(&of_first, &d).await.unwrap(), StatusCode::OK);

    let second = Authority::new("second client CA");
    let of_second = client(&server_ca, Some(second.issue(true)));
    let ca_file = d.dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, second.pem()).unwrap();
    let reloaded = common::wait_until(Duration::from_secs(10), || async {
        healthz(&of_second, &d).await.is_ok()
    })
    .await;
    assert!(
        reloaded,
        "a certificate of the new client CA was never accepted"
    );
    assert!(
        healthz(&of_first, &d).await.is_err(),
        "a certificate of the replaced CA is still accepted"
    );

    // A broken CA file: the daemon keeps checking clients with the good one it has.
    std::fs::write(&ca_file, "not a certificate").unwrap();
    // Long enough for the watcher to have seen the change (it looks every second).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(healthz(&of_second, &d).await.unwrap(), StatusCode::OK);
    assert!(healthz(&of_first, &d).await.is_err());
}

#[tokio::test]
async fn a_mismatched_key_stops_the_start() {
    let authority = Authority::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    let (cert, _) = write_server_pair(dir.path(), &authority);
    let (_, other_key) = authority.issue(false);
    let key = dir.path().join("other.key");
    std::fs::write(&key, other_key).unwrap();
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    let error = registry_server::start(config).await.err().expect("refused");
    assert!(
        format!("{error:#}").contains("does not hold the key"),
        "{error:#}"
    );
}
