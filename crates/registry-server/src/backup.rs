//! Backup and restore: the registry's contents as one NDJSON file, and back.
//!
//! A backup is taken from the in-memory tables, not from the store: under the read lock
//! it copies one reference per object (the tables hold each instance as its JSON text
//! already), which is far quicker than serializing them, so writers wait no longer than
//! for any list. The copy is one revision of the tables, which is one revision of the
//! store's log, and it includes the latest health details the checker keeps in memory.
//! The file is written out after the lock is released, as the answer streams.
//!
//! A restore reads and checks the whole file before it changes anything, so a malformed
//! or truncated file changes nothing. It then commits through the writer in parts of
//! [`RESTORE_PART`] objects, each one transaction, so the registry keeps taking other
//! writes between them; the first part checks, in the writer, that the registry is empty.
//! The restore is answered once its last part is durable.
//!
//! Node records are written to a backup (a record of the cluster) but not restored:
//! every daemon registers itself, and another daemon's record would only show it Offline.

use crate::auth::{Actor, StoredToken};
use crate::state::Record;
use crate::state::{Command, Registry, StoredInstance, Writer};
use crate::Error;
use axum::body::Bytes;
use chrono::Utc;
use registry_types::{
    validate_id, validate_slug, BackupHeader, Definition, DefinitionInput, FieldError, Instance,
    InstanceFilter, Node, RegisterInstanceRequest, RestoreSummary, BACKUP_FORMAT, BACKUP_VERSION,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// Largest backup `POST /registry-svc/restore` reads: room for about half a million
/// instances.
pub(crate) const MAX_RESTORE_BYTES: usize = 256 * 1024 * 1024;

/// Objects committed per transaction of a restore.
const RESTORE_PART: usize = 2000;

/// Longest node URL or path a restored token may name as where its secret was written.
const WRITTEN_TO_MAX: usize = 4096;
/// About how many bytes of a backup are written at a time.
const WRITE_CHUNK: usize = 64 * 1024;

/// One line after the header, borrowed for writing.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Line<'a> {
    Definition(&'a Definition),
    Token(&'a StoredToken),
    Node(&'a Node),
    Instance(&'a StoredInstance),
}

/// One line after the header, as read.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Entry {
    Definition(Definition),
    Token(StoredToken),
    /// Read to check it is a node, then skipped.
    Node(#[allow(dead_code)] Node),
    Instance(Instance),
}

/// Every object of the tables at one revision: shared references, not copies.
pub(crate) struct Contents {
    header: BackupHeader,
    definitions: Vec<Arc<Definition>>,
    tokens: Vec<Arc<StoredToken>>,
    nodes: Vec<Arc<Node>>,
    instances: Vec<StoredInstance>,
}

impl Contents {
    /// Everything in `state` now; `node` is the URL of the daemon taking it.
    pub(crate) fn take(registry: &Registry, node: &str) -> Contents {
        let tables = registry.read();
        let definitions: Vec<_> = tables.definitions(None).cloned().collect();
        let tokens: Vec<_> = tables.tokens().cloned().collect();
        let nodes: Vec<_> = tables.nodes().cloned().collect();
        let instances: Vec<_> = tables
            .instances(&InstanceFilter::default(), None)
            .map(|(_, instance)| instance.clone())
            .collect();
        let revision = tables.revision();
        drop(tables);
        let count = |n: usize| n as u64;
        Contents {
            header: BackupHeader {
                format: BACKUP_FORMAT.into(),
                version: BACKUP_VERSION,
                revision,
                taken_at: Utc::now(),
                node: node.into(),
                definitions: count(definitions.len()),
                instances: count(instances.len()),
                nodes: count(nodes.len()),
                tokens: count(tokens.len()),
            },
            definitions,
            tokens,
            nodes,
            instances,
        }
    }

    pub(crate) fn revision(&self) -> u64 {
        self.header.revision
    }

    /// The backup file, in chunks of about [`WRITE_CHUNK`] bytes, made as they are read.
    pub(crate) fn into_chunks(self) -> impl Iterator<Item = Bytes> + Send + 'static {
        let mut next = 0;
        let mut header = Some(self.header.clone());
        std::iter::from_fn(move || {
            let mut chunk = Vec::with_capacity(WRITE_CHUNK + 4096);
            if let Some(header) = header.take() {
                write_line(&mut chunk, &header);
            }
            while chunk.len() < WRITE_CHUNK {
                let Some(line) = self.line(next) else { break };
                write_line(&mut chunk, &line);
                next += 1;
            }
            (!chunk.is_empty()).then(|| Bytes::from(chunk))
        })
    }

    /// Line `n` after the header: definitions, tokens, nodes, then instances.
    fn line(&self, n: usize) -> Option<Line<'_>> {
        let mut n = n;
        if let Some(d) = self.definitions.get(n) {
            return Some(Line::Definition(d));
        }
        n -= self.definitions.len();
        if let Some(t) = self.tokens.get(n) {
            return Some(Line::Token(t));
        }
        n -= self.tokens.len();
        if let Some(node) = self.nodes.get(n) {
            return Some(Line::Node(node));
        }
        n -= self.nodes.len();
        self.instances.get(n).map(Line::Instance)
    }
}

fn write_line(out: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(&mut *out, value).expect("backup lines always serialize");
    out.push(b'\n');
}

/// A backup read and checked, ready to restore.
pub(crate) struct Backup {
    header: BackupHeader,
    /// Definitions and tokens first, so that old tokens work as soon as the instances
    /// start coming back.
    records: Vec<Record>,
    nodes_skipped: u64,
}

/// `problem` on line `line` of a backup, as a 400.
fn bad_line(line: usize, problem: impl std::fmt::Display) -> Error {
    Error::BadRequest(format!("backup line {line}: {problem}"))
}

impl Backup {
    /// Reads a whole backup file; fails with a 400 naming the line and the problem.
    pub(crate) fn parse(text: &[u8]) -> Result<Backup, Error> {
        let mut lines = text
            .split(|b| *b == b'\n')
            .enumerate()
            .map(|(i, line)| (i + 1, line))
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace));
        let Some((first, header)) = lines.next() else {
            return Err(Error::BadRequest(
                "the backup is empty; expected the NDJSON of GET /registry-svc/backup".into(),
            ));
        };
        let header: BackupHeader = serde_json::from_slice(header)
            .map_err(|e| bad_line(first, format!("not a registry-svc backup header ({e})")))?;
        if header.format != BACKUP_FORMAT {
            return Err(bad_line(
                first,
                format!("format {:?} is not {BACKUP_FORMAT:?}", header.format),
            ));
        }
        if header.version != BACKUP_VERSION {
            return Err(bad_line(
                first,
                format!(
                    "backup format version {} cannot be read; this registry reads version {BACKUP_VERSION}",
                    header.version
                ),
            ));
        }
        let mut counts = RestoreSummary::default();
        let mut seen = HashSet::new();
        let (mut leading, mut instances) = (Vec::new(), Vec::new());
        for (number, line) in lines {
            let entry: Entry = serde_json::from_slice(line).map_err(|e| bad_line(number, e))?;
            let record = match entry {
                Entry::Node(_) => {
                    counts.nodes_skipped += 1;
                    continue;
                }
                Entry::Definition(d) => {
                    counts.definitions += 1;
                    Record::Definition(checked_definition(d).map_err(|e| bad_line(number, e))?)
                }
                Entry::Token(t) => {
                    counts.tokens += 1;
                    Record::Token(checked_token(t).map_err(|e| bad_line(number, e))?)
                }
                Entry::Instance(i) => {
                    counts.instances += 1;
                    Record::Instance(checked_instance(i).map_err(|e| bad_line(number, e))?)
                }
            };
            if !seen.insert((record.kind(), record.key().to_string())) {
                return Err(bad_line(
                    number,
                    format!(
                        "{} {:?} appears twice",
                        record.kind().as_str(),
                        record.key()
                    ),
                ));
            }
            match record {
                Record::Instance(_) => instances.push(record),
                _ => leading.push(record),
            }
        }
        for (kind, promised, found) in [
            ("definitions", header.definitions, counts.definitions),
            ("instances", header.instances, counts.instances),
            ("nodes", header.nodes, counts.nodes_skipped),
            ("tokens", header.tokens, counts.tokens),
        ] {
            if promised != found {
                return Err(Error::BadRequest(format!(
                    "the backup is truncated or altered: its header promises {promised} {kind}, \
                     it holds {found}"
                )));
            }
        }
        leading.append(&mut instances);
        Ok(Backup {
            header,
            records: leading,
            nodes_skipped: counts.nodes_skipped,
        })
    }

    /// Commits the backup through `writer`, in parts, the first only into an empty
    /// registry (409 otherwise); answers once all of it is durable.
    pub(crate) async fn restore(
        self,
        writer: &Writer,
        by: &Actor,
    ) -> Result<RestoreSummary, Error> {
        let mut summary = RestoreSummary {
            nodes_skipped: self.nodes_skipped,
            backup_revision: self.header.revision,
            ..Default::default()
        };
        let total = self.records.len();
        let mut restored = 0;
        let mut records = self.records.into_iter().peekable();
        // An empty backup still goes through once, to be refused by a registry that is
        // not empty like any other.
        let mut into_empty = true;
        loop {
            let part: Vec<Record> = records.by_ref().take(RESTORE_PART).collect();
            let size = part.len();
            let applied = writer
                .submit(
                    by,
                    Command::Restore {
                        records: part,
                        into_empty,
                    },
                )
                .await
                .map_err(|e| match e {
                    e if into_empty => e,
                    e => Error::RestoreStopped {
                        restored,
                        total,
                        source: Box::new(e),
                    },
                })?;
            summary.revision = applied.revision;
            restored += size;
            into_empty = false;
            if records.peek().is_none() {
                break;
            }
        }
        summary.definitions = self.header.definitions;
        summary.instances = self.header.instances;
        summary.tokens = self.header.tokens;
        Ok(summary)
    }
}

/// A definition as the API would accept it.
fn checked_definition(definition: Definition) -> Result<Definition, FieldError> {
    DefinitionInput::from(definition)
        .into_definition()
        .map_err(|e| e.within("definition"))
}

/// A stored token with an id, an account and a hash that can match a secret.
fn checked_token(token: StoredToken) -> Result<StoredToken, FieldError> {
    let within = |e: FieldError| e.within("token");
    validate_id("id", &token.id).map_err(within)?;
    validate_slug("slug", &token.slug).map_err(within)?;
    let is_sha256 = token.hash.len() == 64
        && token
            .hash
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !is_sha256 {
        return Err(within(FieldError::new(
            "hash",
            "must be 64 lowercase hex digits (a SHA-256)",
        )));
    }
    // Where the first admin token's secret was written ends up in daemons' logs.
    if let Some(written_to) = &token.written_to {
        for (field, value) in [
            ("writtenTo.node", &written_to.node),
            ("writtenTo.path", &written_to.path),
        ] {
            if value.len() > WRITTEN_TO_MAX || value.chars().any(char::is_control) {
                return Err(within(FieldError::new(
                    field,
                    format!("must be at most {WRITTEN_TO_MAX} bytes, without control characters"),
                )));
            }
        }
    }
    Ok(token)
}

/// An instance as a registration would accept it, its address parts made from its URL.
fn checked_instance(mut instance: Instance) -> Result<Instance, FieldError> {
    let within = |e: FieldError| e.within("instance");
    validate_id("id", &instance.id).map_err(within)?;
    validate_slug("slug", &instance.slug).map_err(within)?;
    let request = RegisterInstanceRequest {
        id: instance.id.clone(),
        deployment_id: instance.deployment_id.clone(),
        url: instance.url.clone(),
        slug: instance.slug.clone(),
        node_url: instance.node_url.clone(),
        tags: instance.tags.clone(),
        metadata: instance.metadata.clone(),
        health_check: instance.health_check.clone(),
        ttl: instance.ttl.clone(),
        deregister_after: instance.deregister_after.clone(),
        ..Default::default()
    };
    request.validate().map_err(within)?;
    let address = request.address().map_err(within)?;
    instance.url = address.url;
    instance.scheme = address.scheme;
    instance.host = address.host;
    instance.ip = address.ip;
    instance.port = address.port;
    instance.path = address.path;
    Ok(instance)
}
