//! Self-registration: a service registers its own instance with a TTL and keeps it alive with
//! heartbeats until it deregisters (or is dropped).

use crate::backoff::Backoff;
use crate::{Error, RegistryClient, StatusCode};
use registry_types::{parse_duration, RegisterInstanceRequest};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The TTL set when the request gives none.
pub const DEFAULT_TTL: &str = "30s";

/// Registers `request` as an instance with a TTL (30 s unless `request.ttl` says otherwise)
/// and keeps it alive: one heartbeat at once, so it is Healthy on return, then one every
/// third of the TTL from a background task. A heartbeat answered 404 (the instance was
/// removed, e.g. deregistered by an admin or expired) registers it again under the same id;
/// other failures are retried with backoff, well within the TTL.
///
/// The returned [`Registration`] stops the heartbeats and removes the instance on
/// [`deregister`](Registration::deregister). Dropping it stops the heartbeats and, inside a
/// Tokio runtime, removes the instance in a spawned task (best effort).
///
/// ```no_run
/// use registry_client::{register_self, types::RegisterInstanceRequest, RegistryClient};
///
/// # async fn example() -> Result<(), registry_client::Error> {
/// let client = RegistryClient::new("http://127.0.0.1:58231", Some("user-svc-token".into()));
/// let registration = register_self(
///     client,
///     RegisterInstanceRequest {
///         url: "http://127.0.0.1:8080".into(),
///         ttl: Some("15s".into()),
///         ..Default::default()
///     },
/// )
/// .await?;
/// println!("registered as {}", registration.id());
/// // ... serve until asked to stop ...
/// registration.deregister().await?;
/// # Ok(())
/// # }
/// ```
///
/// # Panics
///
/// Outside a Tokio runtime, as [`tokio::spawn`] does.
pub async fn register_self(
    client: RegistryClient,
    mut request: RegisterInstanceRequest,
) -> Result<Registration, Error> {
    if request
        .ttl
        .as_deref()
        .is_none_or(|ttl| ttl.trim().is_empty())
    {
        request.ttl = Some(DEFAULT_TTL.to_string());
    }
    let id = client.register_instance(&request).await?;
    request.id = id.clone();
    if let Err(err) = client.heartbeat_instance(&id).await {
        let _ = client.delete_instance(&id).await;
        return Err(err);
    }
    // The registry accepted the TTL, so it parses; the fallback is only belt and braces.
    let ttl = request
        .ttl
        .as_deref()
        .and_then(|ttl| parse_duration("ttl", ttl).ok())
        .unwrap_or(Duration::from_secs(30));
    let period = (ttl / 3).max(Duration::from_millis(10));
    let task = tokio::spawn(keep_alive(client.clone(), request, period));
    Ok(Registration {
        id,
        client,
        period,
        task: Some(task),
    })
}

/// Heartbeats every `period`; re-registers on 404; retries failures sooner, with backoff.
async fn keep_alive(client: RegistryClient, request: RegisterInstanceRequest, period: Duration) {
    let mut backoff = Backoff::new(Duration::from_millis(100), period);
    let mut next = period;
    loop {
        tokio::time::sleep(next).await;
        let result = match client.heartbeat_instance(&request.id).await {
            Err(err) if err.status() == Some(StatusCode::NOT_FOUND) => {
                match client.register_instance(&request).await {
                    Ok(_) => client.heartbeat_instance(&request.id).await,
                    Err(err) => Err(err),
                }
            }
            other => other,
        };
        next = match result {
            Ok(()) => {
                backoff.reset();
                period
            }
            Err(_) => backoff.next_delay().min(period),
        };
    }
}

/// A registered instance kept alive by heartbeats; see [`register_self`].
#[derive(Debug)]
pub struct Registration {
    id: String,
    client: RegistryClient,
    period: Duration,
    task: Option<JoinHandle<()>>,
}

impl Registration {
    /// The instance's id in the registry.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Time between heartbeats: a third of the TTL.
    pub fn heartbeat_period(&self) -> Duration {
        self.period
    }

    /// Stops the heartbeats, then removes the instance (`DELETE /registry-svc/instance/{id}`).
    /// An instance already gone counts as removed.
    pub async fn deregister(mut self) -> Result<(), Error> {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await; // no heartbeat or re-registration after this point
        }
        match self.client.delete_instance(&self.id).await {
            Err(err) if err.status() != Some(StatusCode::NOT_FOUND) => Err(err),
            _ => Ok(()),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return; // deregistered
        };
        task.abort();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let id = std::mem::take(&mut self.id);
            runtime.spawn(async move {
                let _ = task.await;
                let _ = client.delete_instance(&id).await;
            });
        }
    }
}
