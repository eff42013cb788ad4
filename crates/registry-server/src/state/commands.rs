//! Commands: the requests to change state, and how each becomes store mutations.
//!
//! A command is planned against the current tables *plus* the commands planned before it
//! in the same batch (the [`Overlay`]), so two registrations of one URL in one group commit
//! still resolve to one instance. Identity, ownership and existence are decided here, in
//! the single writer, which is what makes them race-free among this daemon's writes.
//! Against other daemons sharing the store, the overlay notes every read of the tables
//! ([`Overlay::reads`]): the store commits the plan only if none of it changed since.

use super::Tables;
use super::{Mutation, Record};
use crate::auth::{Caller, StoredToken};
use crate::{ids, Error};
use chrono::{DateTime, Utc};
use hashbrown::HashTable;
use registry_store::{Kind, Read};
use registry_types::{Definition, Instance, InstanceStatus, Node, RegisterInstanceRequest, Role};
use std::cell::RefCell;
use std::hash::{BuildHasher, RandomState};

#[derive(Debug, Clone)]
pub(crate) enum Command {
    PutDefinition(Definition),
    DeleteDefinition(String),
    RegisterInstance {
        caller: Caller,
        registration: Registration,
    },
    DeleteInstance {
        caller: Caller,
        id: String,
    },
    PutNode(Node),
    DeleteNode(String),
    PutToken(StoredToken),
    /// Stores the registry's first token, only if it holds no token yet: of daemons
    /// starting together on one empty store, the first to commit makes it, and the others
    /// are told (a 409) once they have seen that commit.
    BootstrapToken(StoredToken),
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
    /// Removes an instance that is still at `url` and still Unreachable.
    Deregister {
        id: String,
        url: String,
    },
    /// Puts objects of a backup back as they were. With `into_empty`, only into a
    /// registry that holds nothing yet (see `Tables::restore_obstacle`): a restore's
    /// first part checks that here, in the one writer, so no write can slip in between.
    Restore {
        records: Vec<Record>,
        into_empty: bool,
    },
}

/// A registration request whose fields are checked and whose address is parsed, into
/// its own fields (`url`, `scheme`, `host`, `ip`, `path`, and `port`, kept here). The
/// request's own task does this before queueing it, so bad input is refused without
/// waiting for a commit, and the one writer, which every write waits on, is left with
/// only what needs the tables: identity and ownership.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    request: RegisterInstanceRequest,
    port: u16,
}

impl Registration {
    pub(crate) fn new(mut request: RegisterInstanceRequest) -> Result<Registration, Error> {
        request.validate()?;
        let address = request.address()?;
        request.url = address.url;
        request.scheme = address.scheme;
        request.host = address.host;
        request.ip = address.ip;
        request.path = address.path;
        Ok(Registration {
            request,
            port: address.port,
        })
    }
}

/// The tables as they will be once the mutations planned so far are committed.
pub(super) struct Overlay<'a> {
    tables: &'a Tables,
    /// A batch still committing, planned on as if it were applied.
    before: &'a [Mutation],
    /// Where the latest pending mutation of each object is, by the hash of its kind and
    /// key. Records are not copied, and neither are keys: a slot's key is read from the
    /// mutation it points at, so noting a mutation allocates nothing (in the one writer,
    /// whose every allocation each write waits for).
    pending: HashTable<(u64, Slot)>,
    /// The pending puts of instances, by the hash of their URL.
    pending_urls: HashTable<(u64, Slot)>,
    hasher: RandomState,
    pub(super) mutations: Vec<Mutation>,
    /// What the plans read from the tables (not from pending mutations): what the
    /// store must find unchanged to commit them. Noted only when other daemons share the
    /// store ([`Overlay::noting_reads`]): alone, nothing can change under a plan.
    reads: Option<RefCell<Vec<Read>>>,
}

/// Where a pending mutation is: in the batch before, or in this plan.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Before(usize),
    Planned(usize),
}

impl Slot {
    fn in_batches<'m>(self, before: &'m [Mutation], planned: &'m [Mutation]) -> &'m Mutation {
        match self {
            Slot::Before(at) => &before[at],
            Slot::Planned(at) => &planned[at],
        }
    }
}

/// Whether an entry of [`Overlay::pending`] is the one of the object `kind`/`key`, whose
/// hash is `hash`: the key is read from the mutation the entry points at.
fn is_object<'m>(
    (before, planned): (&'m [Mutation], &'m [Mutation]),
    hash: u64,
    kind: Kind,
    key: &'m str,
) -> impl Fn(&(u64, Slot)) -> bool + 'm {
    move |(h, slot)| {
        *h == hash && {
            let noted = slot.in_batches(before, planned);
            noted.kind() == kind && noted.key() == key
        }
    }
}

impl<'a> Overlay<'a> {
    /// Plans on `tables` as `before` (a batch still committing) will leave them.
    pub(super) fn new(tables: &'a Tables, before: &'a [Mutation]) -> Self {
        let mut overlay = Overlay {
            tables,
            before,
            pending: HashTable::with_capacity(before.len()),
            pending_urls: HashTable::with_capacity(before.len()),
            hasher: RandomState::new(),
            mutations: Vec::new(),
            reads: None,
        };
        for (at, mutation) in before.iter().enumerate() {
            overlay.note(mutation, Slot::Before(at));
        }
        overlay
    }

    /// Notes what the plans read from the tables, for [`Overlay::reads`].
    pub(super) fn noting_reads(mut self) -> Self {
        self.reads = Some(RefCell::default());
        self
    }

    /// What the plans so far read from the tables, if noted.
    pub(super) fn reads(&mut self) -> Vec<Read> {
        self.reads
            .as_mut()
            .map(|reads| std::mem::take(reads.get_mut()))
            .unwrap_or_default()
    }

    fn read(&self, read: impl FnOnce() -> Read) {
        if let Some(reads) = &self.reads {
            reads.borrow_mut().push(read());
        }
    }

    fn push(&mut self, mutation: Mutation) {
        self.note(&mutation, Slot::Planned(self.mutations.len()));
        self.mutations.push(mutation);
    }

    /// Records that the latest pending mutation of its object is at `slot`.
    fn note(&mut self, mutation: &Mutation, slot: Slot) {
        let (before, planned) = (self.before, &self.mutations);
        let (kind, key) = (mutation.kind(), mutation.key());
        let hash = self.hasher.hash_one((kind, key));
        let same_object = is_object((before, planned), hash, kind, key);
        let previous = match self.pending.find_mut(hash, same_object) {
            Some(noted) => Some(std::mem::replace(&mut noted.1, slot)),
            None => {
                self.pending
                    .insert_unique(hash, (hash, slot), |(hash, _)| *hash);
                None
            }
        };
        if let Mutation::Put(Record::Instance(i)) = mutation {
            // An instance put again at the same URL is found there already (by its first
            // put; its latest state is read when asked): one entry, however many puts.
            let found_here = previous.is_some_and(|at| {
                matches!(at.in_batches(before, planned),
                    Mutation::Put(Record::Instance(p)) if p.url == i.url)
            });
            if !found_here {
                let hash = self.hasher.hash_one(&i.url);
                self.pending_urls
                    .insert_unique(hash, (hash, slot), |(hash, _)| *hash);
            }
        }
    }

    /// The pending state of an object: `None` when nothing is pending for it,
    /// `Some(None)` when it is pending deletion.
    fn pending(&self, kind: Kind, key: &str) -> Option<Option<&Record>> {
        let hash = self.hasher.hash_one((kind, key));
        let batches = (self.before, self.mutations.as_slice());
        let (_, slot) = self
            .pending
            .find(hash, is_object(batches, hash, kind, key))?;
        Some(match slot.in_batches(batches.0, batches.1) {
            Mutation::Put(record) => Some(record),
            Mutation::Delete { .. } => None,
        })
    }

    /// Whether an object of `kind` with `key` exists, pending changes included.
    fn exists(&self, kind: Kind, key: &str) -> bool {
        if let Some(pending) = self.pending(kind, key) {
            return pending.is_some();
        }
        self.read(|| Read::Object(kind, key.to_string()));
        match kind {
            Kind::Definition => self.tables.definition(key).is_some(),
            Kind::Instance => self.tables.has_instance(key),
            Kind::Node => self.tables.node(key).is_some(),
            Kind::Token => self.tables.token(key).is_some(),
        }
    }

    /// Whether `id` is an admin token and no other admin token would be left. Admin
    /// tokens created earlier in the same batch are not counted: the answer errs on the
    /// side of keeping a way in.
    fn is_last_admin_token(&self, id: &str) -> bool {
        self.read(|| Read::Kind(Kind::Token));
        let is_admin = |token_id: &str| {
            self.exists(Kind::Token, token_id)
                && self
                    .tables
                    .token(token_id)
                    .is_some_and(|t| t.role == Role::Admin)
        };
        is_admin(id) && !self.tables.tokens().any(|t| t.id != id && is_admin(&t.id))
    }

    /// Whether any token exists, pending changes included.
    fn has_tokens(&self) -> bool {
        self.read(|| Read::Kind(Kind::Token));
        let pending_put = self
            .before
            .iter()
            .chain(&self.mutations)
            .any(|m| matches!(m, Mutation::Put(Record::Token(_))));
        pending_put
            || self
                .tables
                .tokens()
                .any(|t| self.exists(Kind::Token, &t.id))
    }

    fn instance(&self, id: &str) -> Option<Instance> {
        match self.pending(Kind::Instance, id) {
            Some(Some(Record::Instance(i))) => Some(i.clone()),
            Some(_) => None,
            None => {
                self.read(|| Read::Object(Kind::Instance, id.to_string()));
                self.tables.instance(id)
            }
        }
    }

    /// The instance registered at `url` (the lowest id if several are).
    fn instance_by_url(&self, url: &str) -> Option<Instance> {
        self.read(|| Read::Claim(url.to_string()));
        self.tables
            .instance_ids_by_url(url)
            .chain(self.pending_ids_at(url))
            .filter_map(|id| self.instance(id))
            .filter(|i| i.url == url)
            .min_by(|a, b| a.id.cmp(&b.id))
    }

    /// Ids of the instances a pending put leaves at `url` (or left there, before a later
    /// change; callers check the URL), in no particular order.
    fn pending_ids_at<'s>(&'s self, url: &'s str) -> impl Iterator<Item = &'s str> + 's {
        let hash = self.hasher.hash_one(url);
        self.pending_urls
            .iter_hash(hash)
            .filter_map(
                move |(_, slot)| match slot.in_batches(self.before, &self.mutations) {
                    Mutation::Put(Record::Instance(i)) if i.url == url => Some(i.id.as_str()),
                    _ => None,
                },
            )
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
            Command::RegisterInstance {
                caller,
                registration,
            } => {
                let instance = self.register(&caller, registration)?;
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
            Command::BootstrapToken(token) => {
                if self.has_tokens() {
                    return Err(Error::Conflict(
                        "the registry holds tokens already; its first token was made before".into(),
                    ));
                }
                let id = token.id.clone();
                self.push(Mutation::Put(Record::Token(token)));
                Ok(id)
            }
            Command::DeleteToken(id) => {
                if self.is_last_admin_token(&id) {
                    return Err(Error::Conflict(format!(
                        "token {id:?} is the last admin token; revoking it would lock every admin out, so create another admin token first"
                    )));
                }
                self.delete(Kind::Token, id, "token")
            }
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
            Command::Restore {
                records,
                into_empty,
            } => {
                if into_empty {
                    self.ensure_empty()?;
                }
                let count = records.len();
                for record in records {
                    self.push(Mutation::Put(record));
                }
                Ok(format!("{count} objects"))
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

    /// 409 unless the registry is empty enough to restore into, pending writes included.
    fn ensure_empty(&self) -> Result<(), Error> {
        for kind in [Kind::Definition, Kind::Instance, Kind::Token] {
            self.read(|| Read::Kind(kind));
        }
        if let Some(obstacle) = self.tables.restore_obstacle() {
            return Err(Error::Conflict(obstacle));
        }
        let pending_put = self
            .before
            .iter()
            .chain(&self.mutations)
            .any(|m| matches!(m, Mutation::Put(record) if record.kind() != Kind::Node));
        if pending_put {
            return Err(Error::Conflict(
                "the registry is not empty: other writes are being committed".into(),
            ));
        }
        Ok(())
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
        Registration { request, port }: Registration,
    ) -> Result<Instance, Error> {
        let existing = if !request.id.is_empty() {
            self.instance(&request.id)
        } else {
            self.instance_by_url(&request.url)
        };
        let existing = existing.as_ref();
        if let Some(existing) = existing {
            caller.ensure_manages(&existing.id, &existing.slug)?;
        }
        let slug = match (request.slug.is_empty(), existing) {
            (false, _) => request.slug.clone(),
            (true, Some(existing)) => existing.slug.clone(),
            (true, None) => caller.slug().to_string(),
        };
        if !caller.may_manage(&slug) {
            return Err(Error::Forbidden(format!(
                "account {:?} may not register instances for slug {slug:?}; only admins and trusted slugs may",
                caller.slug()
            )));
        }
        let id = match existing {
            Some(existing) => existing.id.clone(),
            None if !request.id.is_empty() => request.id.clone(),
            None => self.new_instance_id(),
        };
        // The health state describes an address; a new address starts over.
        let (status, details, last_heartbeat) = match existing {
            Some(e) if e.url == request.url => (e.status, e.details.clone(), e.last_heartbeat),
            _ => (InstanceStatus::Unknown, String::new(), None),
        };
        Ok(Instance {
            id,
            url: request.url,
            slug,
            deployment_id: request.deployment_id,
            node_url: request.node_url,
            scheme: request.scheme,
            host: request.host,
            ip: request.ip,
            port,
            path: request.path,
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
            let id = ids::instance_id(Utc::now());
            if !self.exists(Kind::Instance, &id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_types::Role;

    fn caller(slug: &str, role: Role) -> Caller {
        Caller {
            actor: crate::auth::Actor::token("tok_test", slug),
            role,
            trusted: false,
        }
    }

    fn register(url: &str, id: &str, slug: &str) -> Registration {
        Registration::new(RegisterInstanceRequest {
            url: url.into(),
            id: id.into(),
            slug: slug.into(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn same_url_in_one_batch_is_one_instance() {
        let tables = Tables::default();
        let mut overlay = Overlay::new(&tables, &[]);
        let user = caller("svc-a", Role::User);
        let first = overlay
            .plan(Command::RegisterInstance {
                caller: user.clone(),
                registration: register("http://127.0.0.1:9", "", ""),
            })
            .unwrap();
        let second = overlay
            .plan(Command::RegisterInstance {
                caller: user,
                registration: register("http://127.0.0.1:9", "", ""),
            })
            .unwrap();
        assert_eq!(first, second);
        assert!(first.starts_with("inst_") && first.len() == 15);
        assert_eq!(
            overlay.pending_urls.len(),
            1,
            "puts again at one URL add no entries for the writer to look through"
        );

        let moved = overlay
            .plan(Command::RegisterInstance {
                caller: caller("svc-a", Role::User),
                registration: register("http://127.0.0.1:8", &first, ""),
            })
            .unwrap();
        assert_eq!(moved, first);
        assert!(overlay.instance_by_url("http://127.0.0.1:9").is_none());
        assert_eq!(
            overlay.instance_by_url("http://127.0.0.1:8").unwrap().id,
            first
        );
    }

    #[test]
    fn a_plan_notes_what_it_read_of_the_tables() {
        let mut tables = Tables::default();
        tables.apply(
            Mutation::Put(Record::Instance(Instance {
                id: "stored".into(),
                url: "http://127.0.0.1:7".into(),
                slug: "svc-a".into(),
                ..Default::default()
            })),
            1,
        );
        let admin = caller("admin", Role::Admin);
        let mut overlay = Overlay::new(&tables, &[]).noting_reads();
        let id = overlay
            .plan(Command::RegisterInstance {
                caller: admin.clone(),
                registration: register("http://127.0.0.1:7", "", ""),
            })
            .unwrap();
        assert_eq!(id, "stored");
        overlay
            .plan(Command::DeleteToken("tok_x".into()))
            .unwrap_err();
        let reads = overlay.reads();
        for read in [
            Read::Claim("http://127.0.0.1:7".into()),
            Read::Object(Kind::Instance, "stored".into()),
            Read::Kind(Kind::Token),
        ] {
            assert!(reads.contains(&read), "{read:?} not in {reads:?}");
        }
        let mut alone = Overlay::new(&tables, &[]);
        alone
            .plan(Command::DeleteInstance {
                caller: admin,
                id: "stored".into(),
            })
            .unwrap();
        assert!(alone.reads().is_empty(), "not noted unless asked");
    }

    #[test]
    fn a_plan_sees_the_batch_still_committing_before_it() {
        let tables = Tables::default();
        let user = caller("svc-a", Role::User);
        let registration = |url: &str| Command::RegisterInstance {
            caller: user.clone(),
            registration: register(url, "", ""),
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
                registration: register("http://127.0.0.1:9", "x", ""),
            })
            .unwrap();
        let intruder = caller("svc-b", Role::User);
        let err = overlay
            .plan(Command::RegisterInstance {
                caller: intruder.clone(),
                registration: register("http://127.0.0.1:9", "", ""),
            })
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
        let err = overlay
            .plan(Command::RegisterInstance {
                caller: intruder.clone(),
                registration: register("http://127.0.0.1:8", "", "svc-a"),
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
    fn a_restore_starts_only_in_an_empty_registry() {
        let token = |id: &str, slug: &str, role: Role| StoredToken {
            id: id.into(),
            hash: format!("{id:0>64}"),
            slug: slug.into(),
            role,
            created_at: Utc::now(),
            written_to: None,
        };
        let restore = |into_empty| Command::Restore {
            records: vec![Record::Instance(Instance {
                id: "restored".into(),
                ..Default::default()
            })],
            into_empty,
        };
        let mut tables = Tables::default();
        tables.apply(
            Mutation::Put(Record::Token(token("boot", "admin", Role::Admin))),
            1,
        );
        tables.apply(Mutation::Put(Record::Node(Node::default())), 2);
        let mut overlay = Overlay::new(&tables, &[]);
        overlay
            .plan(restore(true))
            .expect("its own node and first admin token only");
        let err = overlay.plan(restore(true)).unwrap_err();
        assert!(
            matches!(err, Error::Conflict(_)),
            "a pending restore: {err:?}"
        );
        overlay
            .plan(restore(false))
            .expect("a later part does not ask");

        tables.apply(
            Mutation::Put(Record::Token(token("user", "svc-a", Role::User))),
            3,
        );
        let err = Overlay::new(&tables, &[]).plan(restore(true)).unwrap_err();
        assert!(
            matches!(&err, Error::Conflict(m) if m.contains("2 tokens")),
            "{err:?}"
        );
    }

    #[test]
    fn only_the_first_token_of_a_registry_is_a_bootstrap() {
        let bootstrap = || Command::BootstrapToken(crate::auth::new_token("admin", Role::Admin).1);
        let mut tables = Tables::default();
        let mut overlay = Overlay::new(&tables, &[]);
        overlay.plan(bootstrap()).expect("an empty registry");
        let err = overlay.plan(bootstrap()).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "one pending: {err:?}");
        let before = overlay.mutations;
        let err = Overlay::new(&tables, &before)
            .plan(bootstrap())
            .unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "one committing: {err:?}");

        let (_, token) = crate::auth::new_token("svc-a", Role::User);
        tables.apply(Mutation::Put(Record::Token(token)), 1);
        let err = Overlay::new(&tables, &[]).plan(bootstrap()).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "one stored: {err:?}");
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
