//! Several PostgreSQL servers in one URL, and finding the one that takes writes.
//!
//! A URL may name a primary and its standbys, as libpq's do:
//! `postgres://app@db1:5432,db2:5432/registry?target_session_attrs=read-write`. The store
//! asks them all at once and connects to the one that answers as a primary (not in
//! recovery, not read-only), and when that one goes away or turns read-only it asks
//! again, in the background, until one of them is a primary again: after an operator (or
//! a tool such as Patroni) promoted a standby, the store moves to it by itself. It never
//! promotes anything.
//!
//! A URL that names one host and no `target_session_attrs` is left alone: the store
//! connects to it exactly as to any single database.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The query parameter, as libpq spells it, that asks for a server taking writes.
const SESSION_ATTRS: &str = "target_session_attrs";
/// The values of [`SESSION_ATTRS`] the store accepts: it writes, so it needs a primary.
const WRITABLE_ATTRS: [&str; 2] = ["read-write", "primary"];
const DEFAULT_PORT: u16 = 5432;

/// Longest one host may take to answer whether it is a primary.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between rounds of looking for a primary when none answered.
const SEARCH_RETRY_MIN: Duration = Duration::from_millis(100);
const SEARCH_RETRY_MAX: Duration = Duration::from_secs(1);

/// One server the URL names: `host:port` for messages, and a URL naming it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate {
    /// `host:port`, without credentials.
    pub label: String,
    /// The URL with this host alone and without `target_session_attrs`.
    pub url: String,
}

/// The servers `url` names, one URL each, or `None` for a URL naming one host and asking
/// nothing about sessions, which the caller uses as it is. Errors say what is wrong
/// without repeating the URL (it may hold a password).
pub(super) fn candidates(url: &str) -> Result<Option<Vec<Candidate>>, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(None);
    };
    // As in any URL: the authority ends at the first `/`, `?` or `#`, and the
    // credentials at its last `@`.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (credentials, host_list) = match authority.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };

    // `host` and `port` may also come as query parameters, in lists (`host=a,b&port=1,2`).
    let mut kept = Vec::new();
    let mut attrs = None;
    let (mut query_hosts, mut query_ports) = (None, None);
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some((SESSION_ATTRS, value)) => attrs = Some(value),
            Some(("host", value)) => query_hosts = Some(value),
            Some(("port", value)) => query_ports = Some(value),
            _ => kept.push(pair),
        }
    }
    let listed = [Some(host_list), query_hosts, query_ports]
        .iter()
        .any(|list| list.is_some_and(|l| l.contains(',')));
    if !listed && attrs.is_none() {
        return Ok(None);
    }
    if let Some(attrs) = attrs {
        if !WRITABLE_ATTRS.contains(&attrs) {
            return Err(format!(
                "{SESSION_ATTRS}={attrs} is not supported: registry-svc writes, so it needs \
                 read-write (or primary)"
            ));
        }
    }
    let (host_list, from_query) = match query_hosts {
        Some(hosts) if host_list.is_empty() => (hosts, true),
        Some(_) => {
            return Err("hosts are named both before the path and in a host parameter".into())
        }
        None => (host_list, false),
    };

    // Ports: one per host, or one for all (the `port` parameter, else 5432).
    let ports: Vec<u16> = match query_ports {
        Some(list) => list
            .split(',')
            .map(|p| parse_port(p.trim()))
            .collect::<Result<_, _>>()?,
        None => vec![],
    };
    let mut hosts: Vec<(String, Option<u16>)> = host_list
        .split(',')
        .map(|entry| split_host(entry, from_query))
        .collect::<Result<_, _>>()?;
    match ports.len() {
        0 => {}
        1 => hosts.iter_mut().for_each(|h| h.1 = h.1.or(Some(ports[0]))),
        n if n == hosts.len() => {
            for (host, port) in hosts.iter_mut().zip(&ports) {
                host.1 = host.1.or(Some(*port));
            }
        }
        n => {
            return Err(format!(
                "{} hosts but {n} ports: name one port, or one per host",
                hosts.len()
            ))
        }
    }

    let query: String = kept.join("&");
    let candidates = hosts
        .into_iter()
        .map(|(host, port)| {
            let port = port.unwrap_or(DEFAULT_PORT);
            let address = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let mut one = format!("{scheme}://");
            if let Some(credentials) = credentials {
                one.push_str(credentials);
                one.push('@');
            }
            one.push_str(&address);
            one.push_str(path);
            if !query.is_empty() {
                one.push('?');
                one.push_str(&query);
            }
            Candidate {
                label: address,
                url: one,
            }
        })
        .collect();
    Ok(Some(candidates))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` (a bare host only, in a `host` parameter).
/// Errors quote nothing of the entry: in a mistyped URL it may be part of a password.
fn split_host(entry: &str, bare: bool) -> Result<(String, Option<u16>), String> {
    let entry = entry.trim();
    let (host, port) = if bare {
        (entry, None)
    } else if let Some(v6) = entry.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("a host in the list has an unclosed [")?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(parse_port(port)?)),
            None if after.is_empty() => (host, None),
            None => return Err("a host in the list has text after its ]".into()),
        }
    } else {
        match entry.rsplit_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (entry, None),
        }
    };
    if host.is_empty() {
        return Err("a host in the list is empty".into());
    }
    Ok((host.to_string(), port))
}

fn parse_port(port: &str) -> Result<u16, String> {
    port.parse()
        .map_err(|_| "a port in the list is not a number from 0 to 65535".into())
}

/// Whether `error` may mean the primary went away or is no longer one, so that another
/// host may have become the primary: a lost or refused connection, a server shutting
/// down or in recovery, a read-only transaction.
pub(super) fn suggests_failover(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // read_only_sql_transaction, operator intervention (shutdown, cannot connect
            // now) and connection exceptions.
            code == "25006" || code.starts_with("57P") || code.starts_with("08")
        }),
        _ => false,
    }
}

/// The servers of a multi-host URL and which of them the store uses now.
pub(super) struct Failover {
    /// Each server: `host:port` and how to connect to it.
    servers: Vec<(String, PgConnectOptions)>,
    /// Index in `servers` of the one in use.
    current: AtomicUsize,
    /// Counts switches to another server; listeners follow it.
    switches: watch::Sender<u64>,
    /// When the store last switched: pooled connections older than that are dropped.
    switched_at: Mutex<Option<Instant>>,
    /// Whether a search for the primary is under way.
    searching: AtomicBool,
    /// Counts the times a search was asked for.
    requests: AtomicU64,
}

impl Failover {
    pub(super) fn new(servers: Vec<(String, PgConnectOptions)>) -> Failover {
        Failover {
            servers,
            current: AtomicUsize::new(0),
            switches: watch::Sender::new(0),
            switched_at: Mutex::new(None),
            searching: AtomicBool::new(false),
            requests: AtomicU64::new(0),
        }
    }

    /// How to connect to the server in use.
    pub(super) fn current(&self) -> PgConnectOptions {
        self.servers[self.current.load(Ordering::Acquire)].1.clone()
    }

    /// Changes when the store switches to another server.
    pub(super) fn switches(&self) -> watch::Receiver<u64> {
        self.switches.subscribe()
    }

    /// The server that answers first as a primary now, with a connection to it; makes it
    /// the one in use. Otherwise why each one is not, in the URL's order. The servers are
    /// asked all at once, so one that does not answer (a machine gone) delays nothing.
    pub(super) async fn find(&self) -> Result<PgConnection, String> {
        let mut probes = tokio::task::JoinSet::new();
        for (index, (_, options)) in self.servers.iter().enumerate() {
            let options = options.clone();
            probes.spawn(async move { (index, probe(&options).await) });
        }
        let mut why = vec![String::new(); self.servers.len()];
        while let Some(done) = probes.join_next().await {
            match done {
                Ok((index, Ok(conn))) => {
                    self.current.store(index, Ordering::Release);
                    // The other probes are dropped with the set.
                    return Ok(conn);
                }
                Ok((index, Err(e))) => why[index] = e,
                Err(e) => tracing::warn!(error = %e, "a probe of a PostgreSQL server failed"),
            }
        }
        let why: Vec<String> = self
            .servers
            .iter()
            .zip(why)
            .map(|((label, _), why)| format!("{label}: {why}"))
            .collect();
        Err(why.join("; "))
    }

    /// Pool settings for a pool of this store: new connections must be to a primary,
    /// and connections opened before a switch are not handed out after it.
    pub(super) fn pool_options(self: &Arc<Self>, pool: PgPoolOptions) -> PgPoolOptions {
        let failover = Arc::clone(self);
        pool.after_connect(|conn, _| Box::pin(async move { writable(conn).await }))
            .before_acquire(move |_, meta| {
                let switched_at = *failover
                    .switched_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let keep = switched_at.is_none_or(|at| meta.age < at.elapsed());
                Box::pin(async move { Ok(keep) })
            })
    }

    /// Looks for the primary in the background, until one answers, and points `pool` at
    /// it. Asked while a search is under way, that search looks once more when it is
    /// done: what made the caller ask may have happened after it probed the primary.
    pub(super) fn search(self: &Arc<Self>, pool: &sqlx::PgPool, target: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.requests.fetch_add(1, Ordering::AcqRel);
        if self.searching.swap(true, Ordering::AcqRel) {
            return;
        }
        let (failover, pool, target) = (Arc::clone(self), pool.clone(), target.to_string());
        runtime.spawn(async move {
            loop {
                let asked = failover.requests.load(Ordering::Acquire);
                failover.look(&pool, &target).await;
                failover.searching.store(false, Ordering::Release);
                if pool.is_closed() || failover.requests.load(Ordering::Acquire) == asked {
                    return;
                }
                // Asked again meanwhile: look again (unless another search took over),
                // after a pause, so errors in a burst cost one probe, not one each.
                if failover.searching.swap(true, Ordering::AcqRel) {
                    return;
                }
                tokio::time::sleep(SEARCH_RETRY_MIN).await;
            }
        });
    }

    /// Probes the servers until one is a primary, and points `pool` at it.
    async fn look(&self, pool: &sqlx::PgPool, target: &str) {
        let before = self.current.load(Ordering::Acquire);
        let mut backoff = SEARCH_RETRY_MIN;
        let mut warned = false;
        while !pool.is_closed() {
            match self.find().await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    let now = self.current.load(Ordering::Acquire);
                    if now != before {
                        pool.set_connect_options(self.current());
                        *self.switched_at.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(Instant::now());
                        self.switches.send_modify(|n| *n += 1);
                        tracing::warn!(
                            database = %target,
                            primary = %self.servers[now].0,
                            previous = %self.servers[before].0,
                            "switched to another PostgreSQL primary"
                        );
                    } else if warned {
                        tracing::info!(
                            database = %target,
                            primary = %self.servers[now].0,
                            "the PostgreSQL primary answers again"
                        );
                    }
                    return;
                }
                Err(why) => {
                    if !warned {
                        tracing::warn!(
                            database = %target,
                            %why,
                            "no PostgreSQL primary answers; looking until one does"
                        );
                        warned = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(SEARCH_RETRY_MAX);
                }
            }
        }
    }
}

/// A connection to the server `options` names, if it is a primary.
async fn probe(options: &PgConnectOptions) -> Result<PgConnection, String> {
    let mut conn = tokio::time::timeout(PROBE_TIMEOUT, options.connect())
        .await
        .map_err(|_| format!("no answer within {}s", PROBE_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    match not_primary(&mut conn).await {
        Ok(None) => Ok(conn),
        Ok(Some(why)) => {
            let _ = conn.close().await;
            Err(why.into())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `None` when the server of `conn` takes writes, else why not: it is in recovery (a
/// standby) or read-only.
async fn not_primary(conn: &mut PgConnection) -> Result<Option<&'static str>, sqlx::Error> {
    let (recovery, read_only): (bool, String) =
        sqlx::query_as("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
            .fetch_one(&mut *conn)
            .await?;
    Ok(if recovery {
        Some("a standby (in recovery), not a primary")
    } else if read_only != "off" {
        Some("read-only (default_transaction_read_only), not a primary")
    } else {
        None
    })
}

/// `Ok` when the server of `conn` takes writes, for new pooled connections.
async fn writable(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    match not_primary(conn).await? {
        None => Ok(()),
        Some(why) => Err(sqlx::Error::Protocol(format!("the server is {why}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::{candidates, Candidate};

    fn urls(url: &str) -> Vec<(String, String)> {
        candidates(url)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .unwrap_or_else(|| panic!("{url}: one host"))
            .into_iter()
            .map(|Candidate { label, url }| (label, url))
            .collect()
    }

    fn pair(label: &str, url: &str) -> (String, String) {
        (label.to_string(), url.to_string())
    }

    #[test]
    fn one_host_is_left_alone() {
        for url in [
            "postgres://app:s3cret@db:5432/registry",
            "postgres://db/registry?sslmode=require&host=other",
            "postgresql://[::1]:5433/registry",
            "postgres:///registry?host=/var/run/postgresql",
            "not a url",
        ] {
            assert_eq!(candidates(url), Ok(None), "{url}");
        }
    }

    #[test]
    fn each_host_gets_a_url_of_its_own() {
        assert_eq!(
            urls("postgres://app:p%40ss@db1:5432,db2:5433/registry?target_session_attrs=read-write&sslmode=require"),
            vec![
                pair("db1:5432", "postgres://app:p%40ss@db1:5432/registry?sslmode=require"),
                pair("db2:5433", "postgres://app:p%40ss@db2:5433/registry?sslmode=require"),
            ]
        );
        // Hosts without a port get the default, or the `port` parameter.
        assert_eq!(
            urls("postgresql://db1,db2:6000"),
            vec![
                pair("db1:5432", "postgresql://db1:5432"),
                pair("db2:6000", "postgresql://db2:6000"),
            ]
        );
        assert_eq!(
            urls("postgres://app@db1,db2/r?port=6543"),
            vec![
                pair("db1:6543", "postgres://app@db1:6543/r"),
                pair("db2:6543", "postgres://app@db2:6543/r"),
            ]
        );
        assert_eq!(
            urls("postgres://[::1]:5432,[fd00::2]/r?target_session_attrs=primary"),
            vec![
                pair("[::1]:5432", "postgres://[::1]:5432/r"),
                pair("[fd00::2]:5432", "postgres://[fd00::2]:5432/r"),
            ]
        );
    }

    #[test]
    fn hosts_and_ports_may_be_parameters() {
        assert_eq!(
            urls(
                "postgres://app@/registry?host=127.0.0.1,127.0.0.2&port=5432,5433&sslmode=disable"
            ),
            vec![
                pair(
                    "127.0.0.1:5432",
                    "postgres://app@127.0.0.1:5432/registry?sslmode=disable"
                ),
                pair(
                    "127.0.0.2:5433",
                    "postgres://app@127.0.0.2:5433/registry?sslmode=disable"
                ),
            ]
        );
    }

    #[test]
    fn one_host_asking_for_a_primary_is_checked_too() {
        assert_eq!(
            urls("postgres://db/r?target_session_attrs=read-write"),
            vec![pair("db:5432", "postgres://db:5432/r")]
        );
    }

    #[test]
    fn mistakes_are_named_without_the_url() {
        for (url, message) in [
            (
                "postgres://app:s3cret@db1,db2/r?target_session_attrs=standby",
                "target_session_attrs=standby is not supported",
            ),
            ("postgres://app:s3cret@db1,,db2/r", "empty"),
            ("postgres://app:s3cret@db1:x,db2/r", "not a number"),
            // A password with an unescaped `/` ends the authority early.
            (
                "postgres://app:s3/cret@db1,db2/r?target_session_attrs=read-write",
                "not a number",
            ),
            ("postgres://[::1]x,db2/r", "after its ]"),
            ("postgres://db1,[::1/r", "unclosed ["),
            ("postgres://db1,db2,db3/r?port=1,2", "3 hosts but 2 ports"),
            ("postgres://db1/r?host=a,b", "both"),
        ] {
            let error = candidates(url).expect_err(url);
            assert!(error.contains(message), "{url}: {error}");
            assert!(!error.contains("s3"), "{url}: {error}");
        }
    }
}
