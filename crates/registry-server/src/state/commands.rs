//! Commands: the requests to change state, and how each becomes store mutations.
//!
//! A command is planned against the current tables *plus* the commands planned before it
//! in the same batch (the [`Overlay`]), so two registrations of one URL in one group commit
//! still resolve to one instance. Identity, ownership and existence are decided here, in
//! the single writer, which is what makes them race-free.

use super::Tables;
use crate::auth::{Caller, StoredToken};
use crate::store::{Kind, Mutation, Record};
use crate::Error;
use chrono::{DateTime, Utc};
use registry_types::{Definition, Instance, InstanceStatus, Node, RegisterInstanceRequest};
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone)]
pub enum Command {
    PutDefinition(Definition),
    DeleteDefinition(String),
    RegisterInstance {
        caller: Caller,
        request: RegisterInstanceRequest,
    },
    DeleteInstance {
        caller: Caller,
        id: String,
    },
    PutNode(Node),
    DeleteNode(String),
    PutToken(StoredToken),
    DeleteToken(String),
    /// A health status change seen by the checker (or a TTL heartbeat). Applies only if
    /// the instance is still registered at `url`.
    SetHealth {
        id: String,
        url: String,
        status: InstanceStatus,
        details: String,
        last_heartbeat: Option<DateTime<Utc>>,
    },
    /// Makes the in-memory health details and heartbeats of these instances durable.
    FlushHealth(Vec<String>),
    /// Removes an instance that is still at `url` and still Unreachable.
    Deregister {
        id: String,
        url: String,
    },
}

/// The tables as they will be once the mutations planned so far are committed.
pub(super) struct Overlay<'a> {
    tables: &'a Tables,
    /// A batch still committing, planned on as if it were applied.
    before: &'a [Mutation],
    /// The latest pending mutation of each object, by where it is (not a copy of it:
    /// records are found in the batches, so planning clones none).
    pending: HashMap<(Kind, String), Slot>,
    pending_urls: HashMap<String, BTreeSet<String>>,
    pub(super) mutations: Vec<Mutation>,
}

/// Where a pending mutation is: in the batch before, or in this plan.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Before(usize),
    Planned(usize),
}

impl<'a> Overlay<'a> {
    /// Plans on `tables` as `before` (a batch still committing) will leave them.
    pub(super) fn new(tables: &'a Tables, before: &'a [Mutation]) -> Self {
        let mut overlay = Overlay {
            tables,
            before,
            pending: HashMap::new(),
            pending_urls: HashMap::new(),
            mutations: Vec::new(),
        };
        for (at, mutation) in before.iter().enumerate() {
            overlay.note(mutation, Slot::Before(at));
        }
        overlay
    }

    fn push(&mut self, mutation: Mutation) {
        self.note(&mutation, Slot::Planned(self.mutations.len()));
        self.mutations.push(mutation);
    }

    /// Records that the latest pending mutation of its object is at `slot`.
    fn note(&mut self, mutation: &Mutation, slot: Slot) {
        if let Mutation::Put(Record::Instance(i)) = mutation {
            self.pending_urls
                .entry(i.url.clone())
                .or_default()
                .insert(i.id.clone());
        }
        self.pending
            .insert((mutation.kind(), mutation.key().to_string()), slot);
    }

    /// The pending state of an object: `None` when nothing is pending for it,
    /// `Some(None)` when it is pending deletion.
    fn pending(&self, kind: Kind, key: &str) -> Option<Option<&Record>> {
        let slot = self.pending.get(&(kind, key.to_string()))?;
        let mutation = match *slot {
            Slot::Before(at) => &self.before[at],
            Slot::Planned(at) => &self.mutations[at],
        };
        Some(match mutation {
            Mutation::Put(record) => Some(record),
            Mutation::Delete { .. } => None,
        })
    }

    /// Whether an object of `kind` with `key` exists, pending changes included.
    fn exists(&self, kind: Kind, key: &str) -> bool {
        if let Some(pending) = self.pending(kind, key) {
            return pending.is_some();
        }
        match kind {
            Kind::Definition => self.tables.definition(key).is_some(),
            Kind::Instance => self.tables.has_instance(key),
            Kind::Node => self.tables.node(key).is_some(),
            Kind::Token => self.tables.token(key).is_some(),
        }
    }

    fn instance(&self, id: &str) -> Option<Instance> {
        match self.pending(Kind::Instance, id) {
            Some(Some(Record::Instance(i))) => Some(i.clone()),
            Some(_) => None,
            None => self.tables.instance(id),
        }
    }

    /// The instance registered at `url` (the lowest id if several are).
    fn instance_by_url(&self, url: &str) -> Option<Instance> {
        self.tables
            .instance_ids_by_url(url)
            .chain(
                self.pending_urls
                    .get(url)
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            )
            .filter_map(|id| self.instance(id))
            .filter(|i| i.url == url)
            .min_by(|a, b| a.id.cmp(&b.id))
    }

    /// Plans one command; on success returns the id of the object it touched.
    pub(super) fn plan(&mut self, command: Command) -> Result<String, Error> {
        match command {
            Command::PutDefinition(definition) => {
                let id = definition.id.clone();
                self.push(Mutation::Put(Record::Definition(definition)));
                Ok(id)
            }
            Command::DeleteDefinition(id) => self.delete(Kind::Definition, id, "definition"),
            Command::RegisterInstance { caller, request } => {
                let instance = self.register(&caller, request)?;
                let id = instance.id.clone();
                self.push(Mutation::Put(Record::Instance(instance)));
                Ok(id)
            }
            Command::DeleteInstance { caller, id } => {
                let owner = self
                    .instance(&id)
                    .map(|i| i.slug.clone())
                    .ok_or_else(|| Error::NotFound(format!("instance {id:?} not found")))?;
                caller.ensure_manages(&id, &owner)?;
                self.delete(Kind::Instance, id, "instance")
            }
            Command::PutNode(node) => {
                let url = node.url.clone();
                self.push(Mutation::Put(Record::Node(node)));
                Ok(url)
            }
            Command::DeleteNode(url) => self.delete(Kind::Node, url, "node"),
            Command::PutToken(token) => {
                let id = token.id.clone();
                self.push(Mutation::Put(Record::Token(token)));
                Ok(id)
            }
            Command::DeleteToken(id) => self.delete(Kind::Token, id, "token"),
            Command::SetHealth {
                id,
                url,
                status,
                details,
                last_heartbeat,
            } => {
                if let Some(current) = self.instance(&id).filter(|i| i.url == url) {
                    let updated = Instance {
                        status,
                        details,
                        last_heartbeat: current.last_heartbeat.max(last_heartbeat),
                        ..current.clone()
                    };
                    self.push(Mutation::Put(Record::Instance(updated)));
                }
                Ok(id)
            }
            Command::FlushHealth(ids) => {
                for id in &ids {
                    if let Some(current) = self.instance(id) {
                        self.push(Mutation::Put(Record::Instance(current)));
                    }
                }
                Ok(format!("{} instances", ids.len()))
            }
            Command::Deregister { id, url } => {
                let still_down = self
                    .instance(&id)
                    .is_some_and(|i| i.url == url && i.status == InstanceStatus::Unreachable);
                if still_down {
                    self.push(Mutation::Delete {
                        kind: Kind::Instance,
                        key: id.clone(),
                    });
                }
                Ok(id)
            }
        }
    }

    fn delete(&mut self, kind: Kind, key: String, noun: &str) -> Result<String, Error> {
        if !self.exists(kind, &key) {
            return Err(Error::NotFound(format!("{noun} {key:?} not found")));
        }
        self.push(Mutation::Delete {
            kind,
            key: key.clone(),
        });
        Ok(key)
    }

    /// The instance a registration creates or updates, after the identity and ownership
    /// rules: the given id, else the instance at the same URL, else a new one.
    fn register(
        &self,
        caller: &Caller,
        request: RegisterInstanceRequest,
    ) -> Result<Instance, Error> {
        request.validate()?;
        let address = request.address()?;
        let existing = if !request.id.is_empty() {
            self.instance(&request.id)
        } else {
            self.instance_by_url(&address.url)
        };
        let existing = existing.as_ref();
        if let Some(existing) = existing {
            caller.ensure_manages(&existing.id, &existing.slug)?;
        }
        let slug = match (request.slug.is_empty(), existing) {
            (false, _) => request.slug.clone(),
            (true, Some(existing)) => existing.slug.clone(),
            (true, None) => caller.slug.clone(),
        };
        if !caller.may_manage(&slug) {
            return Err(Error::Forbidden(format!(
                "account {:?} may not register instances for slug {slug:?}; only admins and trusted slugs may",
                caller.slug
            )));
        }
        let id = match existing {
            Some(existing) => existing.id.clone(),
            None if !request.id.is_empty() => request.id.clone(),
            None => self.new_instance_id(),
        };
        // The health state describes an address; a new address starts over.
        let (status, details, last_heartbeat) = match existing {
            Some(e) if e.url == address.url => (e.status, e.details.clone(), e.last_heartbeat),
            _ => (InstanceStatus::Unknown, String::new(), None),
        };
        Ok(Instance {
            id,
            url: address.url,
            slug,
            deployment_id: request.deployment_id,
            node_url: request.node_url,
            scheme: address.scheme,
            host: address.host,
            ip: address.ip,
            port: address.port,
            path: address.path,
            status,
            details,
            last_heartbeat,
            tags: request.tags,
            metadata: request.metadata,
            health_check: request.health_check,
            ttl: request.ttl,
            deregister_after: request.deregister_after,
        })
    }

    fn new_instance_id(&self) -> String {
        loop {
            let id = format!("inst_{}", time_ordered_base62(Utc::now()));
            if !self.exists(Kind::Instance, &id) {
                return id;
            }
        }
    }
}

/// Base62 digits in ASCII order, so that ids compare as their numbers do.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Ten base62 characters: seven of milliseconds since 2020 (enough for 111 years), then
/// three random ones. New ids sort after older ones, so the store appends them to the end
/// of its key index instead of touching a random page of it per registration, which is
/// most of what a durable registration costs. Not a secret: ownership is checked by token.
fn time_ordered_base62(now: DateTime<Utc>) -> String {
    const EPOCH_2020_MS: i64 = 1_577_836_800_000;
    let mut millis = (now.timestamp_millis() - EPOCH_2020_MS).max(0) as u64;
    let mut digits = [0u8; 7];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(millis % 62) as usize];
        millis /= 62;
    }
    let mut id = String::from_utf8(digits.to_vec()).expect("base62 digits are ASCII");
    id.push_str(&crate::auth::random_base62(3));
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_types::Role;

    fn caller(slug: &str, role: Role) -> Caller {
        Caller {
            slug: slug.into(),
            role,
            trusted: false,
        }
    }

    fn register(url: &str, id: &str, slug: &str) -> RegisterInstanceRequest {
        RegisterInstanceRequest {
            url: url.into(),
            id: id.into(),
            slug: slug.into(),
            ..Default::default()
        }
    }

    #[test]
    fn generated_ids_sort_by_creation_time() {
        let earlier = time_ordered_base62("2026-11-30T08:00:00.000Z".parse().unwrap());
        let later = time_ordered_base62("2026-11-30T08:00:00.001Z".parse().unwrap());
        let much_later = time_ordered_base62("2090-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(earlier.len(), 10);
        assert!(earlier.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(earlier[..7] < later[..7], "{earlier} {later}");
        assert!(later < much_later, "{later} {much_later}");
    }

    #[test]
    fn same_url_in_one_batch_is_one_instance() {
        let tables = Tables::default();
        let mut overlay = Overlay::new(&tables, &[]);
        let user = caller("svc-a", Role::User);
        let first = overlay
            .plan(Command::RegisterInstance {
                caller: user.clone(),
                request: register("http://127.0.0.1:9", "", ""),
            })
            .unwrap();
        let second = overlay
            .plan(Command::RegisterInstance {
                caller: user,
                request: register("http://127.0.0.1:9", "", ""),
            })
            .unwrap();
        assert_eq!(first, second);
        assert!(first.starts_with("inst_") && first.len() == 15);
    }

    #[test]
    fn a_plan_sees_the_batch_still_committing_before_it() {
        let tables = Tables::default();
        let user = caller("svc-a", Role::User);
        let registration = |url: &str| Command::RegisterInstance {
            caller: user.clone(),
            request: register(url, "", ""),
        };
        let mut first = Overlay::new(&tables, &[]);
        let kept = first.plan(registration("http://127.0.0.1:9")).unwrap();
        let gone = first.plan(registration("http://127.0.0.1:8")).unwrap();
        let removal = Command::DeleteInstance {
            caller: user.clone(),
            id: gone.clone(),
        };
        first.plan(removal.clone()).unwrap();
        let before = first.mutations;

        let mut next = Overlay::new(&tables, &before);
        assert_eq!(
            next.plan(registration("http://127.0.0.1:9")).unwrap(),
            kept,
            "the same URL is the same instance"
        );
        let err = next.plan(removal).unwrap_err();
        assert!(
            matches!(err, Error::NotFound(_)),
            "already removed: {err:?}"
        );
        assert_ne!(
            next.plan(registration("http://127.0.0.1:8")).unwrap(),
            gone,
            "a removed instance's URL registers anew"
        );
    }

    #[test]
    fn other_accounts_cannot_take_over_or_impersonate() {
        let tables = Tables::default();
        let mut overlay = Overlay::new(&tables, &[]);
        overlay
            .plan(Command::RegisterInstance {
                caller: caller("svc-a", Role::User),
                request: register("http://127.0.0.1:9", "x", ""),
            })
            .unwrap();
        let intruder = caller("svc-b", Role::User);
        let err = overlay
            .plan(Command::RegisterInstance {
                caller: intruder.clone(),
                request: register("http://127.0.0.1:9", "", ""),
            })
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
        let err = overlay
            .plan(Command::RegisterInstance {
                caller: intruder.clone(),
                request: register("http://127.0.0.1:8", "", "svc-a"),
            })
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
        let err = overlay
            .plan(Command::DeleteInstance {
                caller: intruder,
                id: "x".into(),
            })
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
        let admin = caller("admin", Role::Admin);
        overlay
            .plan(Command::DeleteInstance {
                caller: admin.clone(),
                id: "x".into(),
            })
            .unwrap();
        let err = overlay
            .plan(Command::DeleteInstance {
                caller: admin,
                id: "x".into(),
            })
            .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    }

    #[test]
    fn health_reports_apply_only_to_the_instance_they_checked() {
        let mut tables = Tables::default();
        tables.apply(
            Mutation::Put(Record::Instance(Instance {
                id: "i".into(),
                url: "http://127.0.0.1:2".into(),
                status: InstanceStatus::Unreachable,
                ..Default::default()
            })),
            1,
        );
        let mut overlay = Overlay::new(&tables, &[]);
        let set = |id: &str, url: &str| Command::SetHealth {
            id: id.into(),
            url: url.into(),
            status: InstanceStatus::Healthy,
            details: "connected".into(),
            last_heartbeat: None,
        };
        overlay.plan(set("i", "http://127.0.0.1:1")).unwrap();
        overlay.plan(set("gone", "http://127.0.0.1:2")).unwrap();
        assert!(
            overlay.mutations.is_empty(),
            "a moved or removed instance is left alone"
        );
        overlay
            .plan(Command::Deregister {
                id: "i".into(),
                url: "http://127.0.0.1:1".into(),
            })
            .unwrap();
        assert!(
            overlay.mutations.is_empty(),
            "deregistration checks the URL too"
        );
        overlay.plan(set("i", "http://127.0.0.1:2")).unwrap();
        assert_eq!(
            overlay.instance("i").unwrap().status,
            InstanceStatus::Healthy
        );
        overlay
            .plan(Command::Deregister {
                id: "i".into(),
                url: "http://127.0.0.1:2".into(),
            })
            .unwrap();
        assert_eq!(
            overlay.mutations.len(),
            1,
            "a Healthy instance is not deregistered"
        );
    }
}
