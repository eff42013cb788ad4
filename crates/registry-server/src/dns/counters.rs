//! What the DNS server counts: plain atomics, cheap to bump on every packet and read by
//! whatever exports them (`/metrics`, tests).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The query types counted by name; every other type counts as `OTHER`.
const TYPES: [&str; 7] = ["A", "AAAA", "SRV", "SOA", "NS", "ANY", "OTHER"];
/// The response codes the server answers with.
const RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS",
];

/// Counters of the DNS server, for export as Prometheus metrics (the names beside each
/// reader are the ones proposed for `/metrics`).
#[derive(Debug, Default)]
pub struct DnsCounters {
    queries: [[AtomicU64; RCODES.len()]; TYPES.len()],
    malformed: AtomicU64,
    truncated: AtomicU64,
    tcp_accepted: AtomicU64,
    tcp_refused: AtomicU64,
    udp_send_dropped: AtomicU64,
    rate_limited: AtomicU64,
}

/// One cell of [`DnsCounters::queries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsQueryCount {
    /// The query type: `A`, `AAAA`, `SRV`, `SOA`, `NS`, `ANY` or `OTHER`.
    pub qtype: &'static str,
    /// The response code answered, e.g. `NOERROR` or `NXDOMAIN`.
    pub rcode: &'static str,
    /// How many queries of that type were answered with that code.
    pub count: u64,
}

impl DnsCounters {
    /// `registry_dns_queries_total{type,rcode}`: queries answered, by query type and
    /// response code; only the cells counted at least once.
    pub fn queries(&self) -> impl Iterator<Item = DnsQueryCount> + '_ {
        TYPES.iter().enumerate().flat_map(move |(t, qtype)| {
            RCODES.iter().enumerate().filter_map(move |(r, rcode)| {
                let count = self.queries[t][r].load(Ordering::Relaxed);
                (count > 0).then_some(DnsQueryCount {
                    qtype,
                    rcode,
                    count,
                })
            })
        })
    }

    /// `registry_dns_malformed_total`: packets that are not a DNS query (they do not
    /// decode, or are answers); those with a readable header are answered `FORMERR`.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// `registry_dns_truncated_total`: answers sent over UDP with the TC bit, as they did
    /// not fit the client's size.
    pub fn truncated(&self) -> u64 {
        self.truncated.load(Ordering::Relaxed)
    }

    /// `registry_dns_tcp_connections_total`: TCP connections accepted.
    pub fn tcp_accepted(&self) -> u64 {
        self.tcp_accepted.load(Ordering::Relaxed)
    }

    /// `registry_dns_tcp_refused_total`: TCP connections closed at once because as many as
    /// `--dns-max-tcp-connections` were open.
    pub fn tcp_refused(&self) -> u64 {
        self.tcp_refused.load(Ordering::Relaxed)
    }

    /// `registry_dns_udp_dropped_total`: UDP answers dropped because the socket's send
    /// buffer was full (the server never waits on one client).
    pub fn udp_send_dropped(&self) -> u64 {
        self.udp_send_dropped.load(Ordering::Relaxed)
    }

    /// `registry_dns_rate_limited_total`: queries dropped unanswered as their source
    /// address was over `--dns-rate-limit-address`.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    pub(super) fn count_query(&self, qtype: RecordType, rcode: ResponseCode) {
        let t = match qtype {
            RecordType::A => 0,
            RecordType::AAAA => 1,
            RecordType::SRV => 2,
            RecordType::SOA => 3,
            RecordType::NS => 4,
            RecordType::ANY => 5,
            _ => 6,
        };
        let r = match rcode {
            ResponseCode::NoError => 0,
            ResponseCode::FormErr => 1,
            ResponseCode::NXDomain => 3,
            ResponseCode::NotImp => 4,
            ResponseCode::Refused => 5,
            ResponseCode::BADVERS => 6,
            _ => 2,
        };
        self.queries[t][r].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_truncated(&self) {
        self.truncated.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_tcp(&self, accepted: bool) {
        let counter = if accepted {
            &self.tcp_accepted
        } else {
            &self.tcp_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_udp_dropped(&self) {
        self.udp_send_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The DNS server's counters as `/metrics` families, read at each scrape.
#[derive(Debug)]
pub(crate) struct DnsCollector(pub(crate) Arc<DnsCounters>);

impl prometheus_client::collector::Collector for DnsCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        use crate::metrics::encode_counters;
        let counters = &self.0;
        encode_counters(
            &mut encoder,
            "dns_queries",
            "DNS queries answered, by query type and response code",
            counters
                .queries()
                .map(|q| ([("type", q.qtype), ("rcode", q.rcode)], q.count)),
        )?;
        let single: [(&str, &str, u64); 6] = [
            (
                "dns_malformed",
                "DNS packets that are not a query",
                counters.malformed(),
            ),
            (
                "dns_truncated",
                "DNS answers sent over UDP with the TC bit",
                counters.truncated(),
            ),
            (
                "dns_tcp_connections",
                "DNS TCP connections accepted",
                counters.tcp_accepted(),
            ),
            (
                "dns_tcp_refused",
                "DNS TCP connections closed at once, at --dns-max-tcp-connections",
                counters.tcp_refused(),
            ),
            (
                "dns_udp_dropped",
                "DNS answers dropped as the UDP send buffer was full",
                counters.udp_send_dropped(),
            ),
            (
                "dns_rate_limited",
                "DNS queries dropped unanswered, over --dns-rate-limit-address",
                counters.rate_limited(),
            ),
        ];
        for (name, help, value) in single {
            encode_counters(&mut encoder, name, help, [(NO_LABELS, value)])?;
        }
        Ok(())
    }
}

/// The labels of a counter that has none.
const NO_LABELS: [(&str, &str); 0] = [];
