//! HTTPS: rustls with a certificate reloaded when its files change, and optional client
//! certificates.
//!
//! The certificate and key are read again when either file's modification time or size
//! changes (looked at every second), so a renewed certificate is served without a
//! restart: handshakes from then on use it. A new pair that does not load (half written,
//! mismatched) is logged and the one in use is kept. The client CA file is watched the
//! same way: a changed one that loads checks the client certificates of new handshakes.

use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How often the certificate files are looked at.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// The TLS side of the listener.
pub(crate) struct Tls {
    /// Made anew when the client CA changes; each handshake takes the one current then.
    acceptor: RwLock<TlsAcceptor>,
    certificate: Arc<ReloadingCertificate>,
    client_ca: Option<ClientCa>,
}

/// The client CA file and what it was when last read.
struct ClientCa {
    path: PathBuf,
    stamp: RwLock<Stamp>,
}

impl Tls {
    /// Loads the certificate, key and (when given) client CA; fails on any that does not load.
    pub(crate) fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<Tls> {
        let provider = Arc::new(ring::default_provider());
        let certificate = Arc::new(ReloadingCertificate {
            current: RwLock::new(Arc::new(load_pair(&provider, cert, key)?)),
            stamp: RwLock::new(stamp(&[cert, key])),
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
        });
        let acceptor = RwLock::new(acceptor(&certificate, client_ca)?);
        Ok(Tls {
            acceptor,
            client_ca: client_ca.map(|path| ClientCa {
                stamp: RwLock::new(stamp(&[path])),
                path: path.to_owned(),
            }),
            certificate,
        })
    }

    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        let acceptor = self
            .acceptor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        acceptor.accept(stream).await
    }

    /// Makes a new acceptor when the client CA file changed and loads; keeps the one in use
    /// (and says why) when it does not.
    fn reload_client_ca_if_changed(&self) {
        let Some(ca) = &self.client_ca else {
            return;
        };
        let now = stamp(&[&ca.path]);
        if now.is_none() || *ca.stamp.read().unwrap_or_else(|e| e.into_inner()) == now {
            return;
        }
        *ca.stamp.write().unwrap_or_else(|e| e.into_inner()) = now;
        match acceptor(&self.certificate, Some(&ca.path)) {
            Ok(acceptor) => {
                *self.acceptor.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
                tracing::info!(client_ca = %ca.path.display(), "reloaded the TLS client CA");
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "the changed TLS client CA does not load; still checking clients with the previous one"
            ),
        }
    }

    /// Reloads the certificate whenever its files change, until `shutdown`.
    pub(crate) async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(RELOAD_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    self.certificate.reload_if_changed();
                    self.reload_client_ca_if_changed();
                }
            }
        }
    }
}

/// The files' modification times and sizes: a change in any means new contents.
type Stamp = Option<Vec<(SystemTime, u64)>>;

fn stamp(paths: &[&Path]) -> Stamp {
    paths
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

/// A TLS acceptor serving `certificate`, checking client certificates against the CAs in
/// `client_ca` when given.
fn acceptor(
    certificate: &Arc<ReloadingCertificate>,
    client_ca: Option<&Path>,
) -> anyhow::Result<TlsAcceptor> {
    let provider = certificate.provider.clone();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certificates(path)? {
                roots
                    .add(ca)
                    .with_context(|| format!("{}: not a usable CA", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("{}: not a usable client CA", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(certificate.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The server certificate handed to each handshake.
#[derive(Debug)]
struct ReloadingCertificate {
    current: RwLock<Arc<CertifiedKey>>,
    stamp: RwLock<Stamp>,
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
}

impl ReloadingCertificate {
    fn reload_if_changed(&self) {
        let now = stamp(&[&self.cert, &self.key]);
        if now.is_none() || *self.stamp.read().unwrap_or_else(|e| e.into_inner()) == now {
            return;
        }
        // Remembered whether the new files load or not: a bad pair is reported once.
        *self.stamp.write().unwrap_or_else(|e| e.into_inner()) = now;
        match load_pair(&self.provider, &self.cert, &self.key) {
            Ok(pair) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
                tracing::info!(cert = %self.cert.display(), "reloaded the TLS certificate");
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "the changed TLS certificate does not load; still serving the previous one"
            ),
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    anyhow::ensure!(
        !certificates.is_empty(),
        "{}: holds no certificate",
        path.display()
    );
    Ok(certificates)
}

/// Loads a certificate chain and its private key, checking that they belong together.
fn load_pair(provider: &CryptoProvider, cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain = read_certificates(cert)?;
    let pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem)
        .with_context(|| format!("{}: not a PEM private key", key.display()))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .with_context(|| format!("{}: unsupported private key", key.display()))?;
    let pair = CertifiedKey::new(chain, signing_key);
    pair.keys_match().with_context(|| {
        format!(
            "{} does not hold the key of {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(pair)
}
