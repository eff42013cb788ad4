//! A typed async client for the Registry Svc HTTP API, with service discovery, client-side
//! load balancing and self-registration.
//!
//! - [`RegistryClient`] wraps one registry daemon's address and, optionally, an API token. It
//!   has one method per endpoint: definitions (service templates), instances (running,
//!   callable copies of a service), nodes (the machines running a registry daemon) and
//!   tokens, plus blocking queries ([`list_instances_blocking`]) that wait for a change.
//! - [`InstanceWatch`] follows the instances a filter matches with those blocking queries,
//!   one answer per [`next`](InstanceWatch::next), retrying with a [`Backoff`] after a
//!   failure.
//!   Requests and answers use the wire types of [`registry_types`], re-exported as [`types`].
//! - [`Discovery`] keeps a live, in-memory set of one service's healthy instances, refreshed
//!   by blocking queries in a background task, and [`pick`](Discovery::pick)s one with a
//!   [`Balancer`]: round-robin, random, power of two choices, or zone affinity.
//! - [`register_self`] registers the caller's own instance with a TTL and keeps it alive
//!   with heartbeats until [`Registration::deregister`].
//!
//! Every client method returns [`Error`]: [`Error::Api`] when the registry answered with an
//! error status (it carries the status and the registry's message), [`Error::Transport`] when
//! it could not be reached, and [`Error::Decode`] when an answer was not what the API
//! promises.
//!
//! [`list_instances_blocking`]: RegistryClient::list_instances_blocking
//!
//! # Listing instances
//!
//! ```no_run
//! use registry_client::{types::InstanceFilter, RegistryClient};
//!
//! # async fn example() -> Result<(), registry_client::Error> {
//! let client = RegistryClient::new("http://127.0.0.1:58231", Some("my-token".to_string()));
//! let filter = InstanceFilter {
//!     slug: Some("user-svc".to_string()),
//!     ..Default::default()
//! };
//! for instance in client.list_instances(&filter).await? {
//!     println!("{} {} {}", instance.id, instance.url, instance.status);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Watching for changes
//!
//! Each list answer carries the registry's index (`X-Registry-Index`); passing it back makes
//! the next request wait until something changes. [`InstanceWatch`] does that in a loop,
//! pacing itself and retrying after failures:
//!
//! ```no_run
//! use registry_client::{types::InstanceFilter, InstanceWatch, RegistryClient};
//!
//! # async fn example(client: RegistryClient) {
//! let mut watch = InstanceWatch::new(client, InstanceFilter::default());
//! loop {
//!     match watch.next().await {
//!         Ok(list) if list.changed => {
//!             println!("{} instances at index {}", list.instances.len(), list.index)
//!         }
//!         Ok(_) => {} // the wait ended with no change
//!         Err(failure) => eprintln!("{failure}"),
//!     }
//! }
//! # }
//! ```
//!
//! [`list_instances_indexed`](RegistryClient::list_instances_indexed) and
//! [`list_instances_blocking`] make the same requests one at a time.
//!
//! # Discovering and calling a service
//!
//! [`Discovery::pick`] never touches the network: it chooses from the set in memory, which
//! stays in service (the last known set) while the registry is unreachable.
//!
//! ```no_run
//! use registry_client::{Balancer, Discovery, DiscoveryOptions, RegistryClient};
//! use std::time::Duration;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = RegistryClient::new("http://127.0.0.1:58231", Some("my-token".to_string()));
//! let options = DiscoveryOptions {
//!     balancer: Balancer::zone_affinity("eu-west-1a"),
//!     ..Default::default()
//! };
//! let orders = Discovery::start(client, "order-svc", options);
//! orders.wait_ready(Duration::from_secs(5)).await?;
//!
//! let instance = orders.pick()?;
//! let reply = reqwest::get(format!("{}/orders", instance.url())).await?;
//! println!("{} answered {}", instance.id, reply.status());
//! # Ok(())
//! # }
//! ```
//!
//! # Registering yourself
//!
//! ```no_run
//! use registry_client::{register_self, types::RegisterInstanceRequest, RegistryClient};
//!
//! # async fn example() -> Result<(), registry_client::Error> {
//! let client = RegistryClient::new("http://127.0.0.1:58231", Some("order-svc-token".into()));
//! let request = RegisterInstanceRequest {
//!     url: "http://127.0.0.1:8080".to_string(),
//!     ttl: Some("30s".to_string()),
//!     ..Default::default()
//! };
//! let registration = register_self(client, request).await?; // heartbeats every 10 s
//! // ... serve ...
//! registration.deregister().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The `hello_service` example puts the three together.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use registry_types::responses::{
    ListDefinitionsResponse, ListInstancesResponse, ListNodesResponse, ListTokensResponse,
    NodeSelfResponse, RegisterInstanceResponse,
};
use registry_types::{
    CreateTokenRequest, CreatedToken, Definition, ErrorBody, Instance, InstanceFilter,
    ListNodesRequest, Node, RegisterInstanceRequest, RestoreSummary, Role, TokenInfo, API_PREFIX,
};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

mod backoff;
mod balancer;
mod discovery;
mod registration;
mod snapshot;
mod watch;

pub use backoff::Backoff;
pub use balancer::{Balancer, Picked};
pub use discovery::{Discovery, DiscoveryError, DiscoveryOptions};
pub use registration::{register_self, Registration, DEFAULT_TTL};
pub use snapshot::Snapshot;
pub use watch::{InstanceList, InstanceWatch, WatchError};

pub use registry_types as types;
pub use reqwest::StatusCode;

pub use registry_types::constants::{EXTENSIONS_HEADER, INDEX_HEADER};

/// What can go wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry answered with an error status; `message` is its `{"error": ...}` text,
    /// or the raw body when that was not JSON.
    #[error("{message} (HTTP {status})")]
    Api {
        /// The HTTP status, e.g. 404.
        status: StatusCode,
        /// What went wrong, in the registry's words.
        message: String,
    },
    /// The request could not be sent or its answer not read (connection refused, timeout, ...).
    #[error("request to the registry failed")]
    Transport(#[from] reqwest::Error),
    /// The registry answered with success but with a body that is not the expected JSON.
    #[error("unexpected answer from the registry")]
    Decode(#[from] serde_json::Error),
}

impl Error {
    /// The HTTP status of an [`Error::Api`], `None` for the other kinds.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Path-segment encoding: everything but RFC 3986 unreserved characters, so `/` and `:` too.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Whether `base_url` is plain `http://` to a host other than this machine's loopback.
pub fn sends_in_clear_off_this_machine(base_url: &str) -> bool {
    let Ok(url) = url::Url::parse(base_url) else {
        return false;
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => true,
    };
    url.scheme() == "http" && !loopback
}

/// A client for one registry daemon. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base_url: String,
    token: Option<String>,
}

impl RegistryClient {
    /// A client for the daemon at `base_url` (e.g. `http://127.0.0.1:58231`), sending `token`
    /// as `Authorization: Bearer <token>` when given.
    pub fn new(base_url: impl Into<String>, token: Option<String>) -> Self {
        let client = Self {
            http: reqwest::Client::new(),
            base_url: base_url.into().trim_end_matches('/').to_string(),
            token,
        };
        client.warn_if_token_in_clear();
        client
    }

    /// The same client, authenticating with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self.warn_if_token_in_clear();
        self
    }

    /// The same client, speaking https to a daemon whose certificate is signed by one of the
    /// CA certificates in `ca_pem` (PEM; the system's usual roots are trusted as well), and
    /// presenting the client certificate and private key in `identity_pem` (PEM, both in
    /// one buffer) when the daemon asks for one. Replaces a client set with
    /// [`with_http_client`](Self::with_http_client).
    pub fn with_tls(
        self,
        ca_pem: Option<&[u8]>,
        identity_pem: Option<&[u8]>,
    ) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            for ca in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(ca);
            }
        }
        if let Some(pem) = identity_pem {
            builder = builder.identity(reqwest::Identity::from_pem(pem)?);
        }
        Ok(self.with_http_client(builder.build()?))
    }

    /// Logs a warning when the token would cross plain HTTP to another machine, where
    /// anyone on the path can read it.
    fn warn_if_token_in_clear(&self) {
        if self.token.is_some() && sends_in_clear_off_this_machine(&self.base_url) {
            tracing::warn!(
                url = %self.base_url,
                "sending a registry token over plain HTTP to another machine; use an https:// address"
            );
        }
    }

    /// The same client, sending through `http` (to set timeouts, proxies, TLS roots, ...).
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// The daemon's address, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `PUT /registry-svc/definition`: creates or replaces the definition with its `id`.
    pub async fn save_definition(&self, definition: &Definition) -> Result<(), Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            definition: &'a Definition,
        }
        let request = self
            .request(Method::PUT, "/definition")
            .json(&Body { definition });
        self.send(request).await.map(drop)
    }

    /// `GET /registry-svc/definitions`.
    pub async fn list_definitions(&self) -> Result<Vec<Definition>, Error> {
        let answer: ListDefinitionsResponse = self
            .send_json(self.request(Method::GET, "/definitions"))
            .await?;
        Ok(answer.definitions)
    }

    /// `DELETE /registry-svc/definition/{id}`.
    pub async fn delete_definition(&self, id: &str) -> Result<(), Error> {
        let path = format!("/definition/{}", segment(id));
        self.send(self.request(Method::DELETE, &path))
            .await
            .map(drop)
    }

    /// `PUT /registry-svc/instance`: registers an instance, or updates it in place.
    pub async fn register_instance(
        &self,
        request: &RegisterInstanceRequest,
    ) -> Result<String, Error> {
        let request = self.request(Method::PUT, "/instance").json(request);
        let answer: RegisterInstanceResponse = self.send_json(request).await?;
        Ok(answer.id)
    }

    /// `GET /registry-svc/instances`, narrowed by `filter` (an empty filter lists all).
    pub async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>, Error> {
        let query = filter.to_query();
        let path = if query.is_empty() {
            "/instances".to_string()
        } else {
            format!("/instances?{query}")
        };
        let answer: ListInstancesResponse =
            self.send_json(self.request(Method::GET, &path)).await?;
        Ok(answer.instances)
    }

    /// One page of `GET /registry-svc/instances` (an extension of this registry): at most
    /// `limit` instances matching `filter` whose ids sort after `after`, in id order, and
    /// the `after` of the next page when there are more.
    pub async fn list_instances_page(
        &self,
        filter: &InstanceFilter,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<Instance>, Option<String>), Error> {
        let mut query = url::form_urlencoded::Serializer::new(filter.to_query());
        query.append_pair("limit", &limit.to_string());
        if let Some(after) = after {
            query.append_pair("after", after);
        }
        let path = format!("/instances?{}", query.finish());
        let answer: ListInstancesResponse =
            self.send_json(self.request(Method::GET, &path)).await?;
        Ok((answer.instances, answer.next))
    }

    /// `GET /registry-svc/instances`, also returning the `X-Registry-Index` of the answer: the
    /// revision of the latest instance change, to pass to [`list_instances_blocking`]
    /// (0 when the registry sent none).
    ///
    /// [`list_instances_blocking`]: RegistryClient::list_instances_blocking
    pub async fn list_instances_indexed(
        &self,
        filter: &InstanceFilter,
    ) -> Result<(Vec<Instance>, u64), Error> {
        self.instances_at(filter, None).await
    }

    /// A blocking query: `GET /registry-svc/instances?index=N&wait=W`. The registry holds the
    /// request until an instance change passes revision `index` (with a slug in `filter`, a
    /// change of that slug's instances; else of any instance, not only those `filter`
    /// matches) or `wait` ends (it caps the wait at 10 minutes), then answers with
    /// the list and its new index. An unchanged index means the wait ended with no change.
    ///
    /// The request's own timeout is set a little above `wait`, whatever timeout the
    /// underlying HTTP client has.
    pub async fn list_instances_blocking(
        &self,
        filter: &InstanceFilter,
        index: u64,
        wait: Duration,
    ) -> Result<(Vec<Instance>, u64), Error> {
        self.instances_at(filter, Some((index, wait))).await
    }

    async fn instances_at(
        &self,
        filter: &InstanceFilter,
        blocking: Option<(u64, Duration)>,
    ) -> Result<(Vec<Instance>, u64), Error> {
        let mut query = filter.to_query();
        if let Some((index, wait)) = blocking {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&blocking_query(index, wait));
        }
        let path = if query.is_empty() {
            "/instances".to_string()
        } else {
            format!("/instances?{query}")
        };
        let request = with_wait(self.request(Method::GET, &path), blocking);
        let (answer, index): (ListInstancesResponse, u64) = self.send_indexed(request).await?;
        Ok((answer.instances, index))
    }

    /// `DELETE /registry-svc/instance/{id}`.
    pub async fn delete_instance(&self, id: &str) -> Result<(), Error> {
        let path = format!("/instance/{}", segment(id));
        self.send(self.request(Method::DELETE, &path))
            .await
            .map(drop)
    }

    /// `PUT /registry-svc/instance/{id}/heartbeat`: tells the registry the instance is alive.
    /// For an instance registered with a `ttl` this keeps it (or makes it again) Healthy.
    pub async fn heartbeat_instance(&self, id: &str) -> Result<(), Error> {
        let path = format!("/instance/{}/heartbeat", segment(id));
        self.send(self.request(Method::PUT, &path)).await.map(drop)
    }

    /// `POST /registry-svc/nodes`: the nodes with these ids, or every node when `ids` is empty.
    pub async fn list_nodes(&self, ids: &[String]) -> Result<Vec<Node>, Error> {
        let body = ListNodesRequest { ids: ids.to_vec() };
        let request = self.request(Method::POST, "/nodes").json(&body);
        let answer: ListNodesResponse = self.send_json(request).await?;
        Ok(answer.nodes)
    }

    /// `POST /registry-svc/nodes` like [`list_nodes`](RegistryClient::list_nodes), also
    /// returning the `X-Registry-Index` of the answer (0 when the registry sent none).
    pub async fn list_nodes_indexed(&self, ids: &[String]) -> Result<(Vec<Node>, u64), Error> {
        self.nodes_at(ids, None).await
    }

    /// A blocking query on nodes: `POST /registry-svc/nodes?index=N&wait=W`, answered once a
    /// node change passes revision `index` or `wait` ends. Node heartbeats are changes, so
    /// with several daemons this wakes about once per heartbeat interval.
    pub async fn list_nodes_blocking(
        &self,
        ids: &[String],
        index: u64,
        wait: Duration,
    ) -> Result<(Vec<Node>, u64), Error> {
        self.nodes_at(ids, Some((index, wait))).await
    }

    async fn nodes_at(
        &self,
        ids: &[String],
        blocking: Option<(u64, Duration)>,
    ) -> Result<(Vec<Node>, u64), Error> {
        let path = match blocking {
            Some((index, wait)) => format!("/nodes?{}", blocking_query(index, wait)),
            None => "/nodes".to_string(),
        };
        let body = ListNodesRequest { ids: ids.to_vec() };
        let request = with_wait(self.request(Method::POST, &path).json(&body), blocking);
        let (answer, index): (ListNodesResponse, u64) = self.send_indexed(request).await?;
        Ok((answer.nodes, index))
    }

    /// `GET /registry-svc/node/self`: the node of the daemon answering.
    pub async fn node_self(&self) -> Result<Node, Error> {
        let answer: NodeSelfResponse = self
            .send_json(self.request(Method::GET, "/node/self"))
            .await?;
        Ok(answer.node)
    }

    /// `DELETE /registry-svc/node/{url}`, the node URL sent as one percent-encoded segment.
    pub async fn delete_node(&self, url: &str) -> Result<(), Error> {
        let path = format!("/node/{}", segment(url));
        self.send(self.request(Method::DELETE, &path))
            .await
            .map(drop)
    }

    /// `POST /registry-svc/tokens` (admin only): the answer holds the secret, shown only once.
    pub async fn create_token(&self, slug: &str, role: Role) -> Result<CreatedToken, Error> {
        let body = CreateTokenRequest {
            slug: slug.to_string(),
            role: Some(role),
        };
        self.send_json(self.request(Method::POST, "/tokens").json(&body))
            .await
    }

    /// `GET /registry-svc/tokens` (admin only); never the secrets.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let answer: ListTokensResponse =
            self.send_json(self.request(Method::GET, "/tokens")).await?;
        Ok(answer.tokens)
    }

    /// `DELETE /registry-svc/token/{id}` (admin only).
    pub async fn revoke_token(&self, id: &str) -> Result<(), Error> {
        let path = format!("/token/{}", segment(id));
        self.send(self.request(Method::DELETE, &path))
            .await
            .map(drop)
    }

    /// `GET /registry-svc/backup` (admin only): a backup of the whole registry at one
    /// revision, read piece by piece with [`BackupDownload::chunk`].
    pub async fn backup(&self) -> Result<BackupDownload, Error> {
        let response = self.send(self.request(Method::GET, "/backup")).await?;
        Ok(BackupDownload { response })
    }

    /// `POST /registry-svc/restore` (admin only): loads a backup, as [`backup`] wrote it,
    /// into an empty registry; answered once it is durable.
    ///
    /// [`backup`]: RegistryClient::backup
    pub async fn restore(&self, backup: Vec<u8>) -> Result<RestoreSummary, Error> {
        let request = self
            .request(Method::POST, "/restore")
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(backup);
        self.send_json(request).await
    }

    /// A request to `path` under the API prefix, with the token if there is one. It asks
    /// for the registry's extensions: this client reads the whole model (health settings,
    /// metadata, node status, a page's `next`, a registration's id), not only the fields
    /// of the original's schema.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = format!("{}{API_PREFIX}{path}", self.base_url);
        let request = self
            .http
            .request(method, url)
            .header(EXTENSIONS_HEADER, "true");
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request`; an error status becomes [`Error::Api`] with the registry's message.
    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, Error> {
        let response = request.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await?;
        let message = match serde_json::from_str::<ErrorBody>(&body) {
            Ok(parsed) => parsed.error,
            Err(_) if !body.trim().is_empty() => body.trim().to_string(),
            Err(_) => status
                .canonical_reason()
                .unwrap_or("no error message")
                .to_string(),
        };
        Err(Error::Api { status, message })
    }

    /// Sends `request` and reads the JSON answer as `T`, with the answer's `X-Registry-Index`.
    async fn send_indexed<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<(T, u64), Error> {
        let response = self.send(request).await?;
        let index = index_of(response.headers());
        let body = response.bytes().await?;
        Ok((serde_json::from_slice(&body)?, index))
    }

    /// Sends `request` and reads the JSON answer as `T`.
    async fn send_json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, Error> {
        let body = self.send(request).await?.bytes().await?;
        Ok(serde_json::from_slice(&body)?)
    }
}

/// A backup being downloaded ([`RegistryClient::backup`]).
#[derive(Debug)]
pub struct BackupDownload {
    response: reqwest::Response,
}

impl BackupDownload {
    /// The revision the backup was taken at.
    pub fn revision(&self) -> u64 {
        index_of(self.response.headers())
    }

    /// The next piece of the backup file, `None` after the last.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.response.chunk().await?.map(|bytes| bytes.to_vec()))
    }
}

/// `index=N&wait=W` of a blocking query, the wait in whole milliseconds (at least 1 ms).
fn blocking_query(index: u64, wait: Duration) -> String {
    if wait.as_secs() > 0 && wait.subsec_millis() == 0 {
        format!("index={index}&wait={}s", wait.as_secs())
    } else {
        format!("index={index}&wait={}ms", wait.as_millis().max(1))
    }
}

/// `request` with a timeout that outlasts a blocking query's `wait`: the registry may add up
/// to 1/16 of the wait at random, and the answer takes time to arrive.
fn with_wait(request: RequestBuilder, blocking: Option<(u64, Duration)>) -> RequestBuilder {
    match blocking {
        Some((_, wait)) => request.timeout(wait + wait / 8 + Duration::from_secs(10)),
        None => request,
    }
}

/// The `X-Registry-Index` header as a number; missing or malformed reads as 0.
fn index_of(headers: &HeaderMap) -> u64 {
    headers
        .get(INDEX_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// `err` with its chain of causes, e.g. `request to the registry failed: error sending
/// request for url (...): ... Connection refused`.
pub(crate) fn describe(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `text` percent-encoded to stand as one path segment.
fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

#[cfg(test)]
mod tests;
