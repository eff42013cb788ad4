//! Watching a filter's instances: the first list, then one blocking query after another,
//! with a backoff after a failure. [`Discovery`](crate::Discovery) follows its slug with it,
//! and so does the `registry-svc instances ls --watch` command.

use crate::{Backoff, Error, RegistryClient};
use registry_types::{Instance, InstanceFilter};
use std::time::Duration;
use tokio::time::Instant;

/// How long each blocking query waits for a change unless told otherwise.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// The shortest time between two list requests that saw no change, so a registry that does
/// not block (an older one, without the change feed) is polled, not hammered.
pub(crate) const NO_CHANGE_PAUSE: Duration = Duration::from_secs(1);

/// A stream of the instances `filter` matches, one answer per call to
/// [`next`](InstanceWatch::next): first a plain list, then blocking queries that each
/// return once an instance changes (or their wait ends).
///
/// The watch paces itself: after a failure, the next request waits for the [`Backoff`]'s
/// delay, and after an answer that saw no change, for at least a second since the previous
/// request. A failure never ends the watch; the next call retries. Its blocking queries
/// wait 5 minutes each, and its backoff is [`Backoff::default`], unless set otherwise.
///
/// [`next`](InstanceWatch::next) is cancel-safe: dropping its future (in a
/// `tokio::select!`, say) loses no state, and the next call carries on where it stood.
///
/// ```no_run
/// use registry_client::{types::InstanceFilter, InstanceWatch, RegistryClient};
///
/// # async fn example() {
/// let client = RegistryClient::new("http://127.0.0.1:58231", Some("my-token".into()));
/// let filter = InstanceFilter {
///     slug: Some("user-svc".into()),
///     ..Default::default()
/// };
/// let mut watch = InstanceWatch::new(client, filter);
/// loop {
///     match watch.next().await {
///         Ok(list) if list.changed => println!("{} instances", list.instances.len()),
///         Ok(_) => {} // the wait ended with no change
///         Err(failure) => eprintln!("{failure}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct InstanceWatch {
    client: RegistryClient,
    filter: InstanceFilter,
    wait: Duration,
    backoff: Backoff,
    /// The index of the latest answer; `None` before the first.
    index: Option<u64>,
    /// When the next request may go out, after a failure or an answer without change.
    not_before: Option<Instant>,
}

/// One answer of an [`InstanceWatch`].
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceList {
    /// The instances the filter matches, as the registry listed them.
    pub instances: Vec<Instance>,
    /// The registry's index (`X-Registry-Index`) of this answer.
    pub index: u64,
    /// Whether the index moved since the previous answer; always true for the first. A
    /// blocking query whose wait ended with no change answers with `changed` false.
    pub changed: bool,
}

/// A failed request of an [`InstanceWatch`]: the watch goes on, and its next request waits
/// `retry_in` first.
#[derive(Debug, thiserror::Error)]
#[error("watching the registry's instances failed (retrying in {} ms)", .retry_in.as_millis())]
pub struct WatchError {
    /// Why the request failed.
    #[source]
    pub error: Error,
    /// How long the next call to [`InstanceWatch::next`] waits before its request.
    pub retry_in: Duration,
}

impl InstanceWatch {
    /// A watch of the instances `filter` matches, through `client`. Sends nothing until the
    /// first [`next`](InstanceWatch::next).
    pub fn new(client: RegistryClient, filter: InstanceFilter) -> Self {
        Self {
            client,
            filter,
            wait: DEFAULT_WAIT,
            backoff: Backoff::default(),
            index: None,
            not_before: None,
        }
    }

    /// The same watch, each blocking query waiting at most `wait` for a change (the registry
    /// caps it at 10 minutes).
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The same watch, retrying failed requests after `backoff`'s delays.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The filter watched.
    pub fn filter(&self) -> &InstanceFilter {
        &self.filter
    }

    /// The index of the latest answer; `None` until the registry has answered once.
    pub fn index(&self) -> Option<u64> {
        self.index
    }

    /// The next answer: the first list, or the answer of a blocking query from the latest
    /// index. Waits first when the previous call failed or saw no change.
    pub async fn next(&mut self) -> Result<InstanceList, WatchError> {
        if let Some(at) = self.not_before {
            tokio::time::sleep_until(at).await;
            self.not_before = None;
        }
        let started = Instant::now();
        let answer = match self.index {
            None => self.client.list_instances_indexed(&self.filter).await,
            Some(at) => {
                self.client
                    .list_instances_blocking(&self.filter, at, self.wait)
                    .await
            }
        };
        match answer {
            Ok((instances, index)) => {
                self.backoff.reset();
                let changed = self.index != Some(index);
                self.index = Some(index);
                if !changed {
                    self.not_before = Some(started + NO_CHANGE_PAUSE);
                }
                Ok(InstanceList {
                    instances,
                    index,
                    changed,
                })
            }
            Err(error) => {
                let retry_in = self.backoff.next_delay();
                self.not_before = Some(Instant::now() + retry_in);
                Err(WatchError { error, retry_in })
            }
        }
    }
}
