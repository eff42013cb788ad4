//! The domain vocabulary of a change: what a stored object is ([`Record`]), what a
//! command does to one ([`Mutation`]), and how both become the opaque [`Change`] a store
//! writes, and back. The store below knows kinds, keys and JSON text only; the shapes
//! are known from here up.

use crate::auth::StoredToken;
use registry_store::{Change, Kind, StoreError, StoredObject};
use registry_types::{Definition, Instance, Node};

/// One stored object, typed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Definition(Definition),
    Instance(Instance),
    /// Nodes are keyed by URL: a daemon is the address it is reached at.
    Node(Node),
    Token(StoredToken),
}

impl Record {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Record::Definition(_) => Kind::Definition,
            Record::Instance(_) => Kind::Instance,
            Record::Node(_) => Kind::Node,
            Record::Token(_) => Kind::Token,
        }
    }

    pub(crate) fn key(&self) -> &str {
        match self {
            Record::Definition(d) => &d.id,
            Record::Instance(i) => &i.id,
            Record::Node(n) => &n.url,
            Record::Token(t) => &t.id,
        }
    }

    fn to_json(&self) -> String {
        let json = match self {
            Record::Definition(d) => serde_json::to_string(d),
            Record::Instance(i) => serde_json::to_string(i),
            Record::Node(n) => serde_json::to_string(n),
            Record::Token(t) => serde_json::to_string(t),
        };
        json.expect("model types always serialize")
    }

    fn from_json(kind: Kind, body: &str) -> serde_json::Result<Record> {
        Ok(match kind {
            Kind::Definition => Record::Definition(serde_json::from_str(body)?),
            Kind::Instance => Record::Instance(serde_json::from_str(body)?),
            Kind::Node => Record::Node(serde_json::from_str(body)?),
            Kind::Token => Record::Token(serde_json::from_str(body)?),
        })
    }
}

/// A change to apply: put (insert or replace) an object, or delete one.
// Puts are the common case; boxing the record would add an allocation to each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mutation {
    Put(Record),
    Delete { kind: Kind, key: String },
}

impl Mutation {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Mutation::Put(record) => record.kind(),
            Mutation::Delete { kind, .. } => *kind,
        }
    }

    pub(crate) fn key(&self) -> &str {
        match self {
            Mutation::Put(record) => record.key(),
            Mutation::Delete { key, .. } => key,
        }
    }

    /// The untyped form a store writes, made by `by` (the JSON of an actor), if known.
    pub(crate) fn encode(&self, by: Option<&arcstr::ArcStr>) -> Change {
        Change {
            kind: self.kind(),
            key: self.key().to_string(),
            body: match self {
                Mutation::Put(record) => Some(record.to_json().into()),
                Mutation::Delete { .. } => None,
            },
            // An instance's URL is taken by one instance at a time: registrations find
            // instances by it.
            claim: match self {
                Mutation::Put(Record::Instance(i)) => Some(i.url.as_str().into()),
                _ => None,
            },
            by: by.cloned(),
        }
    }
}

impl Record {
    /// A record as a store wrote it; a body that does not read is named by kind and key.
    pub(crate) fn decode(kind: Kind, key: &str, body: &str) -> Result<Record, StoreError> {
        Record::from_json(kind, body).map_err(|e| StoreError::corrupt(kind.as_str(), key, e))
    }

    /// An object of a loaded snapshot, decoded.
    pub(crate) fn from_stored(object: StoredObject<'_>) -> Result<Record, StoreError> {
        Record::decode(object.kind, object.key, object.body)
    }
}

impl Mutation {
    /// The typed mutation a change records.
    pub(crate) fn decode(change: &Change) -> Result<Mutation, StoreError> {
        match &change.body {
            Some(body) => Record::decode(change.kind, &change.key, body).map(Mutation::Put),
            None => Ok(Mutation::Delete {
                kind: change.kind,
                key: change.key.clone(),
            }),
        }
    }
}
