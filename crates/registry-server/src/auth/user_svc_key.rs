//! The User Svc's public key: read from a PEM file at start, or fetched from the User Svc
//! in the background and fetched again periodically and after a signature failure.
//!
//! Requests never wait on the network: they verify against the key held now, and a
//! signature failure only asks the fetcher to look again (a rotated key shows up that way).

use crate::config::Config;
use anyhow::Context;
use jsonwebtoken::DecodingKey;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The User Svc's path of its public key (`{"publicKey": "<PEM>"}`), in both platforms.
const PUBLIC_KEY_PATH: &str = "user-svc/public-key";
/// The least time between two fetches that signature failures ask for, so that a stream
/// of badly signed tokens cannot turn the registry against the User Svc.
const REFETCH_GAP: Duration = Duration::from_secs(2);
/// The first pause before fetching again after a failed fetch; doubled after each
/// failure in a row, up to the refresh interval.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Time one fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the key endpoint; a PEM RSA key is a few kilobytes.
const MAX_ANSWER_LEN: usize = 64 * 1024;

/// The key User Svc tokens are verified with, and where it comes from.
pub(crate) struct UserSvcKey {
    key: RwLock<Option<Arc<DecodingKey>>>,
    /// Wakes the fetcher early: a signature failed, so the key may have rotated.
    stale: Notify,
    /// The file or the URL the key comes from, for messages.
    origin: String,
    fetch: Option<Fetch>,
}

/// Where and how often the key is fetched.
struct Fetch {
    url: url::Url,
    refresh: Duration,
    http: reqwest::Client,
}

impl UserSvcKey {
    /// The key the configuration names, or `None` when User Svc tokens are not accepted.
    /// A key file is read now, and a bad one fails the start; a URL is fetched later, by
    /// [`UserSvcKey::keep_fetched`].
    pub(crate) fn from_config(config: &Config) -> anyhow::Result<Option<Arc<UserSvcKey>>> {
        if let Some(path) = &config.user_svc_public_key {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --user-svc-public-key {}", path.display()))?;
            let key = DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "--user-svc-public-key {}: not a PEM RSA public key ({e})",
                    path.display()
                )
            })?;
            return Ok(Some(Arc::new(UserSvcKey {
                key: RwLock::new(Some(Arc::new(key))),
                stale: Notify::new(),
                origin: path.display().to_string(),
                fetch: None,
            })));
        }
        let Some(base) = &config.user_svc_url else {
            return Ok(None);
        };
        let mut url = base.clone();
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let url = url.join(PUBLIC_KEY_PATH).context("--user-svc-url")?;
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the User Svc client")?;
        Ok(Some(Arc::new(UserSvcKey {
            key: RwLock::new(None),
            stale: Notify::new(),
            origin: url.to_string(),
            fetch: Some(Fetch {
                url,
                refresh: config.user_svc_key_refresh,
                http,
            }),
        })))
    }

    /// The key held now; `None` until the first fetch succeeds.
    pub(crate) fn current(&self) -> Option<Arc<DecodingKey>> {
        self.key.read().expect("never poisoned").clone()
    }

    /// The file or URL the key comes from.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// A token's signature did not verify: the key may have rotated, so the fetcher looks
    /// again (no sooner than [`REFETCH_GAP`] after its last fetch). Never waits.
    pub(crate) fn signature_failed(&self) {
        if self.fetch.is_some() {
            self.stale.notify_one();
        }
    }

    /// Fetches the key until `shutdown`: at once, then every refresh interval, sooner
    /// after a signature failure, and with a growing pause while fetches fail. Returns at
    /// once for a key read from a file.
    pub(crate) async fn keep_fetched(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(fetch) = &self.fetch else {
            return;
        };
        let mut retry = FIRST_RETRY;
        loop {
            let fetched_at = Instant::now();
            let pause = match fetch.key().await {
                Ok(key) => {
                    if self.current().is_none() {
                        tracing::info!(url = %fetch.url, "fetched the User Svc's public key");
                    }
                    *self.key.write().expect("never poisoned") = Some(Arc::new(key));
                    retry = FIRST_RETRY;
                    fetch.refresh
                }
                Err(e) => {
                    tracing::warn!(url = %fetch.url, error = %format!("{e:#}"),
                        "cannot fetch the User Svc's public key; keeping the one held, if any");
                    let pause = retry.min(fetch.refresh);
                    retry = (retry * 2).min(fetch.refresh);
                    pause
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
                _ = self.stale.notified() => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep_until(fetched_at + REFETCH_GAP) => {}
                    }
                }
            }
        }
    }
}

impl Fetch {
    /// One fetch of the key: a 200 answer of at most [`MAX_ANSWER_LEN`] bytes holding
    /// `{"publicKey": "<PEM RSA public key>"}`.
    async fn key(&self) -> anyhow::Result<DecodingKey> {
        let mut response = self.http.get(self.url.clone()).send().await?;
        let status = response.status();
        anyhow::ensure!(status == reqwest::StatusCode::OK, "answered {status}");
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            anyhow::ensure!(
                body.len() <= MAX_ANSWER_LEN,
                "the answer is longer than {MAX_ANSWER_LEN} bytes"
            );
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            public_key: String,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .context("the answer is not JSON of the form {\"publicKey\": \"<PEM>\"}")?;
        DecodingKey::from_rsa_pem(answer.public_key.as_bytes())
            .map_err(|e| anyhow::anyhow!("`publicKey` is not a PEM RSA public key ({e})"))
    }
}
