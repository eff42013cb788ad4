//! Who made a change: the token behind a request, or the daemon itself.
//!
//! Every change is committed with its actor, so the change log and the event stream can
//! answer "who removed my instance?". The actor travels to the store as JSON text made
//! once per token (or once per daemon), and every change it makes shares that text.

use arcstr::ArcStr;
use serde::Serialize;
use std::sync::Arc;

/// The token id given to the `REGISTRY_ADMIN_TOKEN` admin, which has no stored token.
/// Stored token ids start with `tok_`, so it cannot be taken by one.
pub(crate) const ENV_ADMIN_TOKEN_ID: &str = "env-admin";

/// The slug of the changes the daemon makes itself (health, TTL expiry,
/// `deregisterAfter`, node heartbeats, the bootstrap token).
pub(crate) const REGISTRY_SLUG: &str = "registry";

/// Who made a change. Cheap to clone: one reference count, shared by every change of a
/// request and every request of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Actor(Arc<Parts>);

#[derive(Debug, PartialEq, Eq)]
struct Parts {
    /// The stored token's id (`tok_…`, or [`ENV_ADMIN_TOKEN_ID`]); `None` for the daemon.
    token_id: Option<String>,
    slug: String,
    /// The node id of the daemon that made a change itself.
    node: Option<String>,
    /// `{"tokenId":…,"slug":…}` or `{"slug":"registry","node":…}`, as kept beside each
    /// change in the store and shown on the event stream.
    json: ArcStr,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    token_id: Option<&'a str>,
    slug: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
}

impl Actor {
    fn new(token_id: Option<String>, slug: String, node: Option<String>) -> Actor {
        let wire = Wire {
            token_id: token_id.as_deref(),
            slug: &slug,
            node: node.as_deref(),
        };
        let json = serde_json::to_string(&wire).expect("strings serialize");
        Actor(Arc::new(Parts {
            json: json.into(),
            token_id,
            slug,
            node,
        }))
    }

    /// A caller holding the token `token_id` of account `slug`.
    pub(crate) fn token(token_id: &str, slug: &str) -> Actor {
        Actor::new(Some(token_id.to_string()), slug.to_string(), None)
    }

    /// The daemon itself, running as node `node_id`.
    pub(crate) fn registry(node_id: &str) -> Actor {
        Actor::new(None, REGISTRY_SLUG.to_string(), Some(node_id.to_string()))
    }

    /// The token's id; `None` when the daemon made the change itself.
    pub(crate) fn token_id(&self) -> Option<&str> {
        self.0.token_id.as_deref()
    }

    pub(crate) fn slug(&self) -> &str {
        &self.0.slug
    }

    /// The node id, for a change the daemon made itself.
    pub(crate) fn node(&self) -> Option<&str> {
        self.0.node.as_deref()
    }

    /// The actor as JSON, as the store keeps it.
    pub(crate) fn json(&self) -> &ArcStr {
        &self.0.json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_and_the_daemon_read_apart() {
        let token = Actor::token("tok_abc", "user-svc");
        assert_eq!(token.json(), r#"{"tokenId":"tok_abc","slug":"user-svc"}"#);
        assert_eq!(
            (token.token_id(), token.slug(), token.node()),
            (Some("tok_abc"), "user-svc", None)
        );
        let daemon = Actor::registry("node-1");
        assert_eq!(daemon.json(), r#"{"slug":"registry","node":"node-1"}"#);
        assert_eq!(daemon.token_id(), None);
        assert_eq!(daemon.node(), Some("node-1"));
    }
}
