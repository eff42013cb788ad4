//! What a name under the domain means, and the records that answer it, read from the
//! in-memory tables (never the store).
//!
//! Names, relative to the domain `D` (labels compared ignoring ASCII case):
//!
//! ```text
//! D                              SOA
//! <slug>.service.D               A, AAAA, SRV of the slug's healthy instances
//! <tag>.<slug>.service.D         the same, only instances with that tag
//! _<slug>._tcp.service.D         the same as <slug>.service.D (RFC 2782 form for SRV)
//! <hex address>.addr.D           A or AAAA: the address the label spells (SRV targets)
//! <node id>.node.D               A or AAAA: the node's address, when its URL names one
//! service.D, node.D, addr.D,
//! _tcp.service.D                 exist, with no records
//! ```

use super::Settings;
use crate::state::{Registry, StoredInstance};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;
use registry_store::Kind;
use registry_types::InstanceStatus;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// SOA timers (refresh, retry, expire): nothing transfers this zone, so they only have
/// to be sane.
const SOA_TIMERS: (i32, i32, i32) = (3600, 600, 86_400);

/// The answer to one question inside the domain.
#[derive(Debug, Default)]
pub(super) struct Answer {
    pub(super) rcode: ResponseCode,
    pub(super) answers: Vec<Record>,
    /// The SOA, on a negative answer (no such name, or no records of the type).
    pub(super) authority: Vec<Record>,
    /// Glue: the addresses of SRV targets in the domain.
    pub(super) additionals: Vec<Record>,
    /// Records of a service name, which may be kept encoded until the instances change.
    pub(super) keepable: bool,
}

/// One instance as DNS shows it.
#[derive(Debug)]
struct Endpoint {
    status: InstanceStatus,
    ip: Option<IpAddr>,
    /// The SRV target: `<hex address>.addr.D` for an address, else the host name.
    target: Name,
    port: u16,
    /// Lower case.
    tags: Box<[Box<str>]>,
}

/// The instances of one slug (all spellings), as of one revision of the instances.
#[derive(Debug)]
struct SlugView {
    revision: u64,
    endpoints: Vec<Endpoint>,
}

/// The zone: its names, and the tables they are read from.
pub(super) struct Zone {
    domain: Name,
    soa_mname: Name,
    soa_rname: Name,
    ttl: u32,
    include_degraded: bool,
    registry: Arc<Registry>,
    /// Views by lower-case slug, made again when the instances' revision moves on. Only
    /// slugs with instances get one, so it is bounded by the tables.
    views: RwLock<HashMap<Box<str>, Arc<SlugView>>>,
}

/// What a name inside the domain asks for.
enum Question<'a> {
    Apex,
    /// A name that exists only as a parent of others.
    Empty,
    Service {
        slug: String,
        tag: Option<String>,
    },
    Addr(IpAddr),
    Node(&'a [u8]),
    Unknown,
}

impl Zone {
    pub(super) fn new(settings: &Settings, registry: Arc<Registry>) -> Result<Zone, String> {
        let domain = Name::from_ascii(&settings.domain)
            .map_err(|e| format!("{:?} is not a domain name: {e}", settings.domain))?
            .to_lowercase();
        let child = |label: &str| {
            domain
                .prepend_label(label)
                .map_err(|e| format!("{label}.{domain}: {e}"))
        };
        Ok(Zone {
            soa_mname: child("ns")?,
            soa_rname: child("hostmaster")?,
            domain,
            ttl: settings.ttl,
            include_degraded: settings.include_degraded,
            registry,
            views: RwLock::default(),
        })
    }

    /// The revision of the instances: answers change only when it does.
    pub(super) fn revision(&self) -> u64 {
        self.registry.read().kind_revision(Kind::Instance)
    }

    /// Whether `name` is the domain or under it.
    pub(super) fn contains(&self, name: &Name) -> bool {
        self.relative_labels(name).is_some()
    }

    /// The labels of `name` left of the domain, if it is the domain or under it.
    fn relative_labels<'n>(&self, name: &'n Name) -> Option<Vec<&'n [u8]>> {
        let labels: Vec<&[u8]> = name.iter().collect();
        let own = self.domain.num_labels() as usize;
        let split = labels.len().checked_sub(own)?;
        let suffix_matches = labels[split..]
            .iter()
            .zip(self.domain.iter())
            .all(|(a, b)| a.eq_ignore_ascii_case(b));
        suffix_matches.then(|| labels[..split].to_vec())
    }

    /// The answer to `name`/`qtype`; `name` must be in the domain ([`Zone::contains`]).
    pub(super) fn answer(&self, name: &Name, qtype: RecordType) -> Answer {
        let labels = self.relative_labels(name).unwrap_or_default();
        let mut answer = Answer::default();
        let exists = match classify(&labels) {
            Question::Apex => {
                if qtype == RecordType::SOA {
                    answer.answers.push(self.soa());
                }
                true
            }
            Question::Empty => true,
            Question::Service { slug, tag } => {
                self.answer_service(name, qtype, &slug, tag.as_deref(), &mut answer)
            }
            Question::Addr(ip) => {
                answer.answers.extend(self.address(name, ip, qtype));
                true
            }
            Question::Node(id) => self.answer_node(name, id, qtype, &mut answer),
            Question::Unknown => false,
        };
        if !exists {
            answer.rcode = ResponseCode::NXDomain;
        }
        if answer.answers.is_empty() {
            answer.authority.push(self.soa());
        }
        answer
    }

    /// Fills in the records of a service name; false if no instance has the slug.
    fn answer_service(
        &self,
        name: &Name,
        qtype: RecordType,
        slug: &str,
        tag: Option<&str>,
        answer: &mut Answer,
    ) -> bool {
        let Some(view) = self.view(slug) else {
            return false;
        };
        let mut chosen: Vec<&Endpoint> = view
            .endpoints
            .iter()
            .filter(|e| {
                e.status == InstanceStatus::Healthy
                    || (self.include_degraded && e.status == InstanceStatus::Degraded)
            })
            .filter(|e| tag.is_none_or(|tag| e.tags.iter().any(|t| **t == *tag)))
            .collect();
        // Plain resolvers take the first address: a new order per answer spreads load.
        chosen.shuffle(&mut rand::thread_rng());
        match qtype {
            RecordType::A | RecordType::AAAA => {
                let mut seen = Vec::with_capacity(chosen.len());
                for ip in chosen.iter().filter_map(|e| e.ip) {
                    // An RRset holds each address once, whatever the ports.
                    if !seen.contains(&ip) {
                        seen.push(ip);
                        answer.answers.extend(self.address(name, ip, qtype));
                    }
                }
            }
            RecordType::SRV => {
                let mut glued = Vec::new();
                for e in chosen {
                    let srv = SRV::new(1, 1, e.port, e.target.clone());
                    let record = Record::from_rdata(name.clone(), self.ttl, RData::SRV(srv));
                    answer.answers.push(record);
                    if let Some(ip) = e.ip.filter(|ip| !glued.contains(ip)) {
                        glued.push(ip);
                        answer
                            .additionals
                            .extend(self.address(&e.target, ip, address_type(ip)));
                    }
                }
            }
            _ => {}
        }
        answer.keepable = !answer.answers.is_empty();
        true
    }

    fn answer_node(&self, name: &Name, id: &[u8], qtype: RecordType, answer: &mut Answer) -> bool {
        let tables = self.registry.read();
        let Some(node) = tables
            .nodes()
            .find(|node| node.id.as_bytes().eq_ignore_ascii_case(id))
        else {
            return false;
        };
        let ip = url::Url::parse(&node.url)
            .ok()
            .and_then(|url| match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            });
        answer
            .answers
            .extend(ip.and_then(|ip| self.address(name, ip, qtype)));
        true
    }

    /// The A or AAAA record of `ip` at `name`, if `qtype` asks for that family.
    fn address(&self, name: &Name, ip: IpAddr, qtype: RecordType) -> Option<Record> {
        let rdata = match (ip, qtype) {
            (IpAddr::V4(ip), RecordType::A) => RData::A(A(ip)),
            (IpAddr::V6(ip), RecordType::AAAA) => RData::AAAA(AAAA(ip)),
            _ => return None,
        };
        Some(Record::from_rdata(name.clone(), self.ttl, rdata))
    }

    fn soa(&self) -> Record {
        let serial = self.registry.read().kind_revision(Kind::Instance) as u32;
        let (refresh, retry, expire) = SOA_TIMERS;
        let soa = SOA::new(
            self.soa_mname.clone(),
            self.soa_rname.clone(),
            serial,
            refresh,
            retry,
            expire,
            // The TTL of negative answers: a slug with no instance yet may get one now.
            self.ttl,
        );
        Record::from_rdata(self.domain.clone(), self.ttl, RData::SOA(soa))
    }

    /// The instances of `slug` (lower case), made again if the instances changed since
    /// the kept view; `None` if no instance has the slug.
    fn view(&self, slug: &str) -> Option<Arc<SlugView>> {
        let tables = self.registry.read();
        let revision = tables.kind_revision(Kind::Instance);
        let kept = self
            .views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(slug)
            .filter(|view| view.revision == revision)
            .cloned();
        if kept.is_some() {
            return kept;
        }
        let endpoints: Vec<Endpoint> = tables
            .instances_of_slug_ignoring_case(slug)
            .map(|stored| self.endpoint(stored))
            .collect();
        drop(tables);
        let mut views = self.views.write().unwrap_or_else(|p| p.into_inner());
        if endpoints.is_empty() {
            views.remove(slug);
            return None;
        }
        let view = Arc::new(SlugView {
            revision,
            endpoints,
        });
        views.insert(slug.into(), view.clone());
        Some(view)
    }

    fn endpoint(&self, stored: &StoredInstance) -> Endpoint {
        let instance = stored.decode();
        let ip = [&instance.ip, &instance.host]
            .into_iter()
            .find_map(|text| text.parse::<IpAddr>().ok());
        let target = match ip {
            Some(ip) => self
                .domain
                .prepend_label("addr")
                .and_then(|addr| addr.prepend_label(hex_label(ip))),
            None => Name::from_ascii(&instance.host).map(|mut name| {
                name.set_fqdn(true);
                name
            }),
        };
        Endpoint {
            status: instance.status,
            ip,
            // A host the address grammar admitted is a name; a failure would leave the
            // instance without an SRV target, so it answers at the root, which
            // resolves to nothing.
            target: target.unwrap_or_else(|_| Name::root()),
            port: instance.port,
            tags: instance
                .tags
                .iter()
                .map(|tag| tag.to_ascii_lowercase().into())
                .collect(),
        }
    }
}

fn address_type(ip: IpAddr) -> RecordType {
    match ip {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::AAAA,
    }
}

/// What the labels left of the domain ask for.
fn classify<'a>(labels: &[&'a [u8]]) -> Question<'a> {
    let text = |label: &[u8]| -> Option<String> {
        std::str::from_utf8(label)
            .ok()
            .map(|s| s.to_ascii_lowercase())
    };
    let is = |label: &[u8], word: &str| label.eq_ignore_ascii_case(word.as_bytes());
    match labels {
        [] => Question::Apex,
        [one] if is(one, "service") || is(one, "node") || is(one, "addr") => Question::Empty,
        [tcp, service] if is(tcp, "_tcp") && is(service, "service") => Question::Empty,
        [srv, tcp, service] if is(tcp, "_tcp") && is(service, "service") => {
            match srv.strip_prefix(b"_").and_then(text) {
                Some(slug) => Question::Service { slug, tag: None },
                None => Question::Unknown,
            }
        }
        [slug, service] if is(service, "service") => match text(slug) {
            Some(slug) => Question::Service { slug, tag: None },
            None => Question::Unknown,
        },
        [tag, slug, service] if is(service, "service") => match (text(tag), text(slug)) {
            (Some(tag), Some(slug)) => Question::Service {
                slug,
                tag: Some(tag),
            },
            _ => Question::Unknown,
        },
        [hex, addr] if is(addr, "addr") => {
            parse_hex_label(hex).map_or(Question::Unknown, Question::Addr)
        }
        [id, node] if is(node, "node") => Question::Node(id),
        _ => Question::Unknown,
    }
}

/// An address as one label: its bytes in hex (8 digits for IPv4, 32 for IPv6).
fn hex_label(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => hex::encode(ip.octets()),
        IpAddr::V6(ip) => hex::encode(ip.octets()),
    }
}

fn parse_hex_label(label: &[u8]) -> Option<IpAddr> {
    let bytes = hex::decode(label).ok()?;
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_label_reads_back() {
        for ip in ["127.0.0.1", "::1", "fe80::1:2"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(parse_hex_label(hex_label(ip).as_bytes()), Some(ip));
        }
        for bad in ["7f00001", "zz000001", "", "7f0000017f000001"] {
            assert_eq!(parse_hex_label(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn names_are_classified() {
        let labels = |name: &str| -> Vec<Vec<u8>> {
            name.split('.')
                .filter(|l| !l.is_empty())
                .map(|l| l.as_bytes().to_vec())
                .collect()
        };
        let class = |name: &str| {
            let owned = labels(name);
            let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            match classify(&refs) {
                Question::Apex => "apex".to_string(),
                Question::Empty => "empty".to_string(),
                Question::Service { slug, tag } => format!("service {slug} {tag:?}"),
                Question::Addr(ip) => format!("addr {ip}"),
                Question::Node(id) => format!("node {}", String::from_utf8_lossy(id)),
                Question::Unknown => "unknown".to_string(),
            }
        };
        assert_eq!(class(""), "apex");
        assert_eq!(class("Web.Service"), "service web None");
        assert_eq!(class("Blue.web.service"), "service web Some(\"blue\")");
        assert_eq!(class("_web._TCP.service"), "service web None");
        assert_eq!(class("_tcp.service"), "empty");
        assert_eq!(class("7f000001.addr"), "addr 127.0.0.1");
        assert_eq!(class("n1.node"), "node n1");
        assert_eq!(class("x.y.z.service"), "unknown");
        assert_eq!(class("web"), "unknown");
    }
}
