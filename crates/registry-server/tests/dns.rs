//! The DNS interface end to end: a daemon with `--dns-listen` on a free loopback port,
//! instances on 127.x addresses, and real clients: hickory's resolver, raw packets, and
//! `dig` when it is installed (these tests fail without it under `CI=true`).

mod common;

use common::{wait_until, Daemon};
use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use serde_json::json;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// Long enough for any "eventually" here, even on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(15);

/// A daemon answering DNS on a free loopback port, with a TTL of 0 so that nothing in
/// front of it keeps an answer.
async fn dns_daemon(adjust: impl FnOnce(&mut registry_server::Config)) -> (Daemon, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.dns_listen = Some("127.0.0.1:0".parse().unwrap());
    config.dns_ttl = Duration::ZERO;
    adjust(&mut config);
    let d = Daemon::start_with(config, dir).await;
    let addr = d.server.as_ref().unwrap().dns_addr().expect("DNS is on");
    (d, addr)
}

/// hickory's resolver pointed at the daemon alone (UDP, then TCP when an answer is
/// truncated), with no cache and no hosts file.
fn resolver(addr: SocketAddr) -> TokioResolver {
    let servers = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
    let config = ResolverConfig::from_parts(None, vec![], servers);
    let mut options = ResolverOpts::default();
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.timeout = Duration::from_secs(2);
    options.edns0 = false;
    Resolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(options)
        .build()
}

/// The IPv4 addresses `name` resolves to (empty for no records or no such name).
async fn addresses(resolver: &TokioResolver, name: &str) -> BTreeSet<Ipv4Addr> {
    match resolver.ipv4_lookup(name).await {
        Ok(found) => found.iter().map(|a| a.0).collect(),
        Err(e) if e.is_no_records_found() => BTreeSet::new(),
        Err(e) => panic!("{name}: {e}"),
    }
}

/// A query for `name`/`qtype`, with EDNS offering `edns` bytes when given.
fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut message = Message::new();
    message
        .set_id(rand_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    let mut query = Query::query(Name::from_ascii(name).unwrap(), qtype);
    query.set_query_class(DNSClass::IN);
    message.add_query(query);
    if let Some(size) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(size);
        message.set_edns(opt);
    }
    message
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        & 0xffff) as u16
}

/// Sends `packet` over UDP and returns the raw answer (`None` after a second of silence).
async fn exchange_udp(addr: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(packet, addr).await.unwrap();
    let mut buffer = vec![0; 65_535];
    let len = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buffer))
        .await
        .ok()?
        .unwrap();
    buffer.truncate(len);
    Some(buffer)
}

/// Asks `message` over UDP; fails the test if no answer comes (after a few tries).
async fn ask_udp(addr: SocketAddr, message: &Message) -> (Message, usize) {
    let packet = message.to_vec().unwrap();
    for _ in 0..3 {
        if let Some(answer) = exchange_udp(addr, &packet).await {
            let decoded = Message::from_vec(&answer).expect("the answer decodes");
            assert_eq!(decoded.id(), message.id());
            return (decoded, answer.len());
        }
    }
    panic!("no UDP answer to {message:?}");
}

/// Asks `message` over a new TCP connection.
async fn ask_tcp(addr: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let packet = message.to_vec().unwrap();
    stream
        .write_all(&(packet.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&packet).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut answer = vec![0; usize::from(len)];
    stream.read_exact(&mut answer).await.unwrap();
    Message::from_vec(&answer).unwrap()
}

fn a_records(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn has_soa(records: &[hickory_resolver::proto::rr::Record]) -> bool {
    records.iter().any(|r| r.record_type() == RecordType::SOA)
}

/// A toy HTTP service on `ip`: answers every request `200 OK` (after `delay`). Stopping
/// it closes its port; starting it again binds the same port.
struct Toy {
    addr: SocketAddr,
    delay: Duration,
    task: Option<JoinHandle<()>>,
}

impl Toy {
    async fn start(ip: &str) -> Toy {
        Toy::start_slow(ip, Duration::ZERO).await
    }

    async fn start_slow(ip: &str, delay: Duration) -> Toy {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let mut toy = Toy {
            addr: listener.local_addr().unwrap(),
            delay,
            task: None,
        };
        toy.serve(listener);
        toy
    }

    fn serve(&mut self, listener: TcpListener) {
        let delay = self.delay;
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0; 1024];
                    let _ = stream.read(&mut request).await;
                    tokio::time::sleep(delay).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        }));
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens on the same port again, retrying while the port is not free yet.
    async fn restart(&mut self) {
        let end = std::time::Instant::now() + DEADLINE;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if std::time::Instant::now() > end => panic!("{}: {e}", self.addr),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.serve(listener);
    }
}

/// An HTTP-checked registration of `toy` under `slug`, checked every second.
fn checked(toy: &Toy, slug: &str, tags: &[&str]) -> serde_json::Value {
    json!({
        "url": toy.url(),
        "slug": slug,
        "tags": tags,
        "healthCheck": {"type": "http", "path": "/healthz", "interval": "1s", "timeout": "500ms",
            "unhealthyThreshold": 1},
    })
}

#[tokio::test]
async fn a_slug_resolves_to_its_healthy_instances_and_follows_their_health() {
    let (d, addr) = dns_daemon(|_| {}).await;
    let resolver = resolver(addr);
    let one = Toy::start("127.0.0.1").await;
    let mut two = Toy::start("127.0.0.2").await;
    d.register(checked(&one, "echo", &["blue"])).await;
    d.register(checked(&two, "echo", &["green"])).await;
    let both: BTreeSet<Ipv4Addr> = ["127.0.0.1", "127.0.0.2"]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .collect();

    // Both pass their first check; the names are case-insensitive.
    assert!(
        wait_until(DEADLINE, || async {
            addresses(&resolver, "EcHo.service.registry.").await == both
        })
        .await,
        "never both addresses"
    );
    // A kept answer comes back with the question as asked, capitals included.
    for asked in ["echo.service.registry.", "ECHO.service.REGISTRY."] {
        let (answer, _) = ask_udp(addr, &query(asked, RecordType::A, None)).await;
        assert_eq!(answer.queries()[0].name().to_ascii(), asked);
        assert_eq!(a_records(&answer).len(), 2);
    }
    let blue = addresses(&resolver, "blue.echo.service.registry.").await;
    assert_eq!(blue, BTreeSet::from([Ipv4Addr::new(127, 0, 0, 1)]));

    // SRV: the ports, and targets whose addresses come as glue.
    let srv = resolver
        .srv_lookup("_echo._tcp.service.registry.")
        .await
        .unwrap();
    let ports: BTreeSet<u16> = srv.iter().map(|s| s.port()).collect();
    assert_eq!(ports, BTreeSet::from([one.addr.port(), two.addr.port()]));
    for target in srv.iter().map(|s| s.target().to_ascii()) {
        assert!(target.ends_with(".addr.registry."), "{target}");
        let glue = addresses(&resolver, &target).await;
        assert_eq!(glue.len(), 1, "{target} resolves to one address");
    }
    let (raw, _) = ask_udp(
        addr,
        &query("_echo._tcp.service.registry.", RecordType::SRV, Some(1232)),
    )
    .await;
    let glued: BTreeSet<Name> = raw.additionals().iter().map(|r| r.name().clone()).collect();
    let targets: BTreeSet<Name> = srv.iter().map(|s| s.target().clone()).collect();
    assert_eq!(glued, targets, "glue for every target");

    // The second one fails its checks: it leaves the answer, and comes back.
    two.stop().await;
    let only_one = BTreeSet::from([Ipv4Addr::new(127, 0, 0, 1)]);
    assert!(
        wait_until(DEADLINE, || async {
            addresses(&resolver, "echo.service.registry.").await == only_one
        })
        .await,
        "the failing instance stays in the answer"
    );
    two.restart().await;
    assert!(
        wait_until(DEADLINE, || async {
            addresses(&resolver, "echo.service.registry.").await == both
        })
        .await,
        "the recovered instance never comes back"
    );

    // A known slug with no healthy instance: no records, and the name exists.
    d.register(json!({"url": "http://127.0.0.1:1", "slug": "down"}))
        .await;
    let (answer, _) = ask_udp(addr, &query("down.service.registry.", RecordType::A, None)).await;
    assert_eq!(answer.response_code(), ResponseCode::NoError);
    assert!(answer.answers().is_empty());
    assert!(has_soa(answer.name_servers()), "{answer:?}");
    let counted: u64 = d
        .server
        .as_ref()
        .unwrap()
        .dns_counters()
        .queries()
        .filter(|q| q.qtype == "A" && q.rcode == "NOERROR")
        .map(|q| q.count)
        .sum();
    assert!(counted > 0);
}

#[tokio::test]
async fn names_outside_and_unknown_names_are_answered_by_the_rules() {
    let (d, addr) = dns_daemon(|config| {
        config.self_url = Some("http://127.0.0.3:40003".into());
    })
    .await;
    let ask = |name: &str, qtype| {
        let message = query(name, qtype, Some(1232));
        async move { ask_udp(addr, &message).await.0 }
    };

    let unknown = ask("nothing.service.registry.", RecordType::A).await;
    assert_eq!(unknown.response_code(), ResponseCode::NXDomain);
    assert!(unknown.authoritative());
    assert!(has_soa(unknown.name_servers()), "{unknown:?}");
    assert!(unknown.extensions().is_some(), "EDNS answered with EDNS");

    let outside = ask("example.com.", RecordType::A).await;
    assert_eq!(outside.response_code(), ResponseCode::Refused);
    assert!(outside.answers().is_empty());

    let apex = ask("REGISTRY.", RecordType::SOA).await;
    assert_eq!(apex.response_code(), ResponseCode::NoError);
    assert!(has_soa(apex.answers()));

    // A type not served on a known name: no records, with the SOA.
    d.register(json!({"url": "http://127.0.0.1:1", "slug": "web"}))
        .await;
    let txt = ask("web.service.registry.", RecordType::TXT).await;
    assert_eq!(txt.response_code(), ResponseCode::NoError);
    assert!(txt.answers().is_empty() && has_soa(txt.name_servers()));

    let transfer = ask("registry.", RecordType::AXFR).await;
    assert_eq!(transfer.response_code(), ResponseCode::Refused);

    let mut notify = query("registry.", RecordType::SOA, None);
    notify.set_op_code(OpCode::Notify);
    assert_eq!(
        ask_udp(addr, &notify).await.0.response_code(),
        ResponseCode::NotImp
    );

    // This node by its id.
    let node_id = d.self_node().await["id"].as_str().unwrap().to_string();
    let node = ask(&format!("{node_id}.node.registry."), RecordType::A).await;
    assert_eq!(a_records(&node), [Ipv4Addr::new(127, 0, 0, 3)]);
    let addr_name = ask("7f000009.addr.registry.", RecordType::A).await;
    assert_eq!(a_records(&addr_name), [Ipv4Addr::new(127, 0, 0, 9)]);
}

/// `count` healthy instances of `slug`, each on its own 127.0.1.x address (a TCP check
/// against a listener there).
async fn many_healthy(d: &Daemon, slug: &str, count: u8) -> Vec<TcpListener> {
    let mut listeners = Vec::new();
    for i in 1..=count {
        let listener = TcpListener::bind((format!("127.0.1.{i}").as_str(), 0))
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        d.register(json!({"url": url, "slug": slug})).await;
        listeners.push(listener);
    }
    listeners
}

#[tokio::test]
async fn an_answer_too_long_for_udp_is_truncated_and_whole_over_tcp() {
    let (d, addr) = dns_daemon(|_| {}).await;
    let _listeners = many_healthy(&d, "wide", 40).await;
    let name = "wide.service.registry.";
    assert!(
        wait_until(DEADLINE, || async {
            ask_tcp(addr, &query(name, RecordType::A, None))
                .await
                .answers()
                .len()
                == 40
        })
        .await,
        "never 40 healthy instances"
    );

    // Without EDNS, 512 bytes: truncated, whole records only.
    let (udp, len) = ask_udp(addr, &query(name, RecordType::A, None)).await;
    assert!(udp.truncated(), "{udp:?}");
    assert!(len <= 512, "{len} bytes");
    assert!(!udp.answers().is_empty() && udp.answers().len() < 40);
    // With EDNS and room enough: all of it over UDP.
    let (udp, len) = ask_udp(addr, &query(name, RecordType::A, Some(4096))).await;
    assert!(!udp.truncated() && udp.answers().len() == 40, "{len} bytes");
    // SRV with glue is longer still: over TCP it is whole, glue included.
    let srv = ask_tcp(addr, &query(name, RecordType::SRV, None)).await;
    assert_eq!(srv.answers().len(), 40);
    assert_eq!(srv.additionals().len(), 40);
    assert!(d.server.as_ref().unwrap().dns_counters().truncated() > 0);

    // A resolver that gets the truncated answer (it sends no EDNS) asks again over TCP.
    let found = addresses(&resolver(addr), name).await;
    assert_eq!(found.len(), 40);

    if let Some(dig) = dig() {
        // dig retries over TCP by itself.
        let out = dig.run(addr, &["+noedns", name, "A"]).await;
        assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
        let records = out
            .lines()
            .filter(|l| l.starts_with(name) && l.contains("\tA\t"))
            .count();
        assert_eq!(records, 40, "{out}");
    }
}

#[tokio::test]
async fn bad_packets_and_floods_never_stop_the_server() {
    let (d, addr) = dns_daemon(|config| config.dns_max_tcp_connections = 4).await;
    let counters = d.server.as_ref().unwrap().dns_counters();
    let good = query("registry.", RecordType::SOA, None);

    // Garbage of every kind: nothing, noise, a header claiming questions it lacks, an
    // answer instead of a question, a datagram longer than any query.
    let mut claims = good.to_vec().unwrap();
    claims.truncate(12);
    claims[5] = 3;
    let mut answer = good.to_vec().unwrap();
    answer[2] |= 0x80;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 3],
        (0..200u8).map(|b| b.wrapping_mul(37)).collect(),
        claims,
        answer,
        vec![0x41; 9000],
    ];
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for packet in &garbage {
        socket.send_to(packet, addr).await.unwrap();
    }
    // A header that reads gets FORMERR with its id.
    let header_only = exchange_udp(addr, &garbage[3]).await.expect("an answer");
    let header_only = Message::from_vec(&header_only).unwrap();
    assert_eq!(header_only.response_code(), ResponseCode::FormErr);
    assert!(wait_until(DEADLINE, || async { counters.malformed() >= 5 }).await);

    // A flood from one source that never reads its answers.
    let flood = good.to_vec().unwrap();
    for _ in 0..5000 {
        let _ = socket.send_to(&flood, addr).await;
    }
    let (after, _) = ask_udp(addr, &good).await;
    assert_eq!(after.response_code(), ResponseCode::NoError);

    // TCP: idle connections up to the cap; one more is closed at once.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    assert!(
        wait_until(DEADLINE, || async {
            let mut extra = TcpStream::connect(addr).await.unwrap();
            let mut byte = [0; 1];
            matches!(
                tokio::time::timeout(Duration::from_secs(1), extra.read(&mut byte)).await,
                Ok(Ok(0) | Err(_))
            )
        })
        .await
    );
    assert!(counters.tcp_refused() > 0);
    // A connection that sends half a query and stops; a length with nothing after it.
    idle[0].write_all(&[0]).await.unwrap();
    idle[1].write_all(&[0, 200, 1, 2]).await.unwrap();
    drop(idle);
    assert!(
        wait_until(DEADLINE, || async {
            match tokio::time::timeout(Duration::from_secs(1), ask_tcp(addr, &good)).await {
                Ok(answer) => answer.response_code() == ResponseCode::NoError,
                Err(_) => false,
            }
        })
        .await,
        "TCP never served again"
    );
}

/// `dig` from bind9-dnsutils: `None` (the test part skipped) when it is not installed,
/// a failed test under `CI=true`.
struct Dig;

fn dig() -> Option<Dig> {
    let found = std::process::Command::new("dig").arg("-v").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dig is not installed (apt-get install bind9-dnsutils), and CI needs it"
        );
        eprintln!("skipped: no dig (apt-get install bind9-dnsutils)");
        return None;
    }
    Some(Dig)
}

impl Dig {
    /// Runs dig in a child process (the daemon shares this test's thread, so it is
    /// awaited, never waited for).
    fn run(&self, addr: SocketAddr, args: &[&str]) -> impl Future<Output = String> + 'static {
        let mut dig = tokio::process::Command::new("dig");
        dig.arg(format!("@{}", addr.ip()))
            .args(["-p", &addr.port().to_string(), "+tries=2", "+time=2"])
            .args(args);
        async move {
            let output = dig.output().await.unwrap();
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
    }
}

#[tokio::test]
async fn dig_reads_the_zone() {
    let Some(dig) = dig() else { return };
    let (d, addr) = dns_daemon(|_| {}).await;
    let toy = Toy::start("127.0.0.4").await;
    d.register(checked(&toy, "Dug", &[])).await;
    let short = |name: &'static str, qtype: &'static str| dig.run(addr, &["+short", name, qtype]);
    assert!(
        wait_until(DEADLINE, || async {
            short("dug.service.registry.", "A").await.trim() == "127.0.0.4"
        })
        .await,
        "{}",
        short("dug.service.registry.", "A").await
    );
    let srv = short("_dug._tcp.service.registry.", "SRV").await;
    assert_eq!(
        srv.trim(),
        format!("1 1 {} 7f000004.addr.registry.", toy.addr.port())
    );
    let nx = dig.run(addr, &["nope.service.registry.", "A"]).await;
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(nx.contains("AUTHORITY: 1"), "{nx}");
    assert!(nx.contains("SOA"), "{nx}");
    let refused = dig.run(addr, &["example.com.", "A"]).await;
    assert!(refused.contains("status: REFUSED"), "{refused}");
}

#[tokio::test]
async fn a_source_over_its_rate_is_dropped_unanswered() {
    let (d, addr) = dns_daemon(|config| {
        config.dns_rate_limit_address = registry_server::RateLimit::parse("1:5").unwrap();
    })
    .await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let packet = query("registry.", RecordType::SOA, None).to_vec().unwrap();
    for _ in 0..50 {
        socket.send_to(&packet, addr).await.unwrap();
    }
    let counters = d.server.as_ref().unwrap().dns_counters();
    assert!(wait_until(DEADLINE, || async { counters.rate_limited() >= 40 }).await);
    let answered: u64 = counters.queries().map(|q| q.count).sum();
    assert!((1..=10).contains(&answered), "{answered} answered");
}

#[tokio::test]
async fn degraded_instances_are_answered_only_when_asked_for() {
    let slow = Toy::start_slow("127.0.0.5", Duration::from_millis(200)).await;
    let registration = json!({
        "url": slow.url(),
        "slug": "slow",
        "healthCheck": {"type": "http", "interval": "1s", "timeout": "1s", "degradedLatency": "50ms"},
    });
    for include in [true, false] {
        let (d, addr) = dns_daemon(|config| config.dns_include_degraded = include).await;
        let id = d.register(registration.clone()).await;
        d.wait_for_status(&id, "Degraded", DEADLINE).await;
        let found = addresses(&resolver(addr), "slow.service.registry.").await;
        let expected = if include {
            BTreeSet::from([Ipv4Addr::new(127, 0, 0, 5)])
        } else {
            BTreeSet::new()
        };
        assert_eq!(found, expected, "--dns-include-degraded {include}");
    }
}

/// The lines of `/metrics` that start with `prefix`.
async fn metric_lines(d: &Daemon, prefix: &str) -> Vec<String> {
    let r = d.send(reqwest::Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.text);
    r.text
        .lines()
        .filter(|line| line.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn what_the_dns_server_counts_is_in_metrics() {
    let (d, addr) = dns_daemon(|_| {}).await;
    let (answer, _) = ask_udp(
        addr,
        &query("nobody.service.registry.", RecordType::A, None),
    )
    .await;
    assert_eq!(answer.response_code(), ResponseCode::NXDomain);
    exchange_udp(addr, &[0xff; 3]).await;
    let counted = wait_until(Duration::from_secs(10), || async {
        let lines = metric_lines(&d, "registry_dns_").await;
        lines.contains(&r#"registry_dns_queries_total{type="A",rcode="NXDOMAIN"} 1"#.to_string())
            && lines.contains(&"registry_dns_malformed_total 1".to_string())
    })
    .await;
    assert!(counted, "{:#?}", metric_lines(&d, "registry_dns_").await);
    for family in [
        "truncated",
        "tcp_connections",
        "tcp_refused",
        "udp_dropped",
        "rate_limited",
    ] {
        let line = format!("registry_dns_{family}_total 0");
        assert!(metric_lines(&d, &line).await.len() == 1, "no {line}");
    }

    // Without DNS, no DNS families.
    let plain = Daemon::start().await;
    assert_eq!(
        metric_lines(&plain, "registry_dns_").await,
        Vec::<String>::new()
    );
}
