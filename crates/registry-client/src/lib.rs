//! A typed async client for the Registry Svc HTTP API.
//!
//! [`RegistryClient`] wraps one registry daemon's address and, optionally, an API token. It
//! has one method per endpoint: definitions (service templates), instances (running, callable
//! copies of a service), nodes (the machines running a registry daemon) and tokens. Requests
//! and answers use the wire types of [`registry_types`], re-exported here as [`types`].
//!
//! Every method returns [`Error`]: [`Error::Api`] when the registry answered with an error
//! status (it carries the status and the registry's message), [`Error::Transport`] when it
//! could not be reached, and [`Error::Decode`] when an answer was not what the API promises.
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

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use registry_types::responses::{
    ListDefinitionsResponse, ListInstancesResponse, ListNodesResponse, ListTokensResponse,
    NodeSelfResponse, RegisterInstanceResponse,
};
use registry_types::{
    CreateTokenRequest, CreatedToken, Definition, ErrorBody, Instance, InstanceFilter,
    ListNodesRequest, Node, RegisterInstanceRequest, Role, TokenInfo, API_PREFIX,
};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use registry_types as types;
pub use reqwest::StatusCode;

/// What can go wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry answered with an error status; `message` is its `{"error": ...}` text,
    /// or the raw body when that was not JSON.
    #[error("{message} (HTTP {status})")]
    Api { status: StatusCode, message: String },
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
        Self {
            http: reqwest::Client::new(),
            base_url: base_url.into().trim_end_matches('/').to_string(),
            token,
        }
    }

    /// The same client, authenticating with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
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

    /// A request to `path` under the API prefix, with the token if there is one.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = format!("{}{API_PREFIX}{path}", self.base_url);
        let request = self.http.request(method, url);
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

    /// Sends `request` and reads the JSON answer as `T`.
    async fn send_json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, Error> {
        let body = self.send(request).await?.bytes().await?;
        Ok(serde_json::from_slice(&body)?)
    }
}

/// `text` percent-encoded to stand as one path segment.
fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

#[cfg(test)]
mod tests;
