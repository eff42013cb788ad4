//! One health check over a real socket: a TCP dial or an HTTP GET.

use super::plan::CheckPlan;
use crate::check_allow::AllowedNetworks;
use registry_types::InstanceStatus;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What one check saw: the status it suggests, and in words why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    pub status: InstanceStatus,
    pub details: String,
}

/// The HTTP client for checks: no connection reuse (each check proves the service
/// accepts connections now, and 10,000 idle pooled sockets would be a leak), no proxy,
/// no redirects followed (nor can one lead outside the allowed networks). With allowed
/// networks, a hostname resolves only to the addresses among them.
pub(super) fn http_client(allowed: Option<Arc<AllowedNetworks>>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("registry-svc-health/", env!("CARGO_PKG_VERSION")));
    if let Some(allowed) = allowed {
        builder = builder.dns_resolver(Arc::new(AllowedResolver(allowed)));
    }
    builder
        .build()
        .expect("the health-check HTTP client builds")
}

/// Why nothing was dialled: every address of the target is outside the allowed networks.
#[derive(Debug)]
struct NotAllowed(String);

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotAllowed {}

/// The addresses `target` resolved to that checks may dial (all of them with no list).
fn only_allowed(
    target: &str,
    addresses: Vec<SocketAddr>,
    allowed: Option<&AllowedNetworks>,
) -> Result<Vec<SocketAddr>, NotAllowed> {
    let Some(allowed) = allowed else {
        return Ok(addresses);
    };
    let (kept, refused): (Vec<_>, Vec<_>) = addresses
        .into_iter()
        .partition(|address| allowed.admits(address.ip()));
    if !kept.is_empty() || refused.is_empty() {
        return Ok(kept);
    }
    let refused: Vec<String> = refused.iter().map(|a| a.ip().to_string()).collect();
    let outside = format!("outside the networks health checks may dial (--check-allow {allowed})");
    Err(NotAllowed(if target.parse::<SocketAddr>().is_ok() {
        format!("not dialled: {} is {outside}", refused.join(", "))
    } else {
        format!(
            "not dialled: {target} resolves only to addresses {outside}: {}",
            refused.join(", ")
        )
    }))
}

fn not_allowed(refusal: &NotAllowed) -> Outcome {
    Outcome {
        status: InstanceStatus::Error,
        details: refusal.to_string(),
    }
}

/// Resolves hostnames for the HTTP checks, keeping only the allowed addresses.
struct AllowedResolver(Arc<AllowedNetworks>);

impl reqwest::dns::Resolve for AllowedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.0.clone();
        Box::pin(async move {
            let host = name.as_str();
            // The port is set by the caller.
            let found = tokio::net::lookup_host((host, 0)).await?.collect();
            let kept = only_allowed(host, found, Some(&allowed))?;
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn format_latency(latency: Duration) -> String {
    if latency >= Duration::from_secs(1) {
        format!("{:.1}s", latency.as_secs_f64())
    } else {
        format!("{}ms", latency.as_millis())
    }
}

/// An answer: Healthy, or Degraded when slower than the plan allows.
fn answered(plan: &CheckPlan, latency: Duration, what: &str) -> Outcome {
    if latency > plan.degraded_latency {
        Outcome {
            status: InstanceStatus::Degraded,
            details: format!("took {} ({what})", format_latency(latency)),
        }
    } else {
        Outcome {
            status: InstanceStatus::Healthy,
            details: format!("{what} in {}", format_latency(latency)),
        }
    }
}

fn unreachable(details: String) -> Outcome {
    Outcome {
        status: InstanceStatus::Unreachable,
        details,
    }
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

/// Dials `target` (`host:port`): each allowed address it resolves to, in turn.
pub(super) async fn tcp(
    plan: &CheckPlan,
    target: &str,
    allowed: Option<&AllowedNetworks>,
) -> Outcome {
    let started = Instant::now();
    let dial = async {
        let found = tokio::net::lookup_host(target)
            .await
            .map_err(|e| unreachable(describe_io(&e)))?
            .collect();
        let addresses = only_allowed(target, found, allowed).map_err(|e| not_allowed(&e))?;
        TcpStream::connect(&addresses[..])
            .await
            .map_err(|e| unreachable(describe_io(&e)))
    };
    match tokio::time::timeout(plan.timeout, dial).await {
        Err(_) => unreachable(format!("timed out after {}", format_latency(plan.timeout))),
        Ok(Err(outcome)) => outcome,
        Ok(Ok(stream)) => {
            let latency = started.elapsed();
            // Close with a reset rather than a FIN: at a high check rate, TIME_WAIT
            // sockets left behind by polite closes would use up the ephemeral ports.
            let _ = stream.set_zero_linger();
            drop(stream);
            answered(plan, latency, "connected")
        }
    }
}

/// `GET url` with `client` (made by [`http_client`] with the same `allowed`).
pub(super) async fn http(
    plan: &CheckPlan,
    client: &reqwest::Client,
    url: &str,
    allowed: Option<&AllowedNetworks>,
) -> Outcome {
    // The client's resolver keeps hostnames inside the allowed networks; a literal
    // address is dialled as it is, so it is checked here.
    let literal = reqwest::Url::parse(url)
        .ok()
        .and_then(|url| match url.host()? {
            url::Host::Ipv4(ip) => Some(SocketAddr::from((ip, 0))),
            url::Host::Ipv6(ip) => Some(SocketAddr::from((ip, 0))),
            url::Host::Domain(_) => None,
        });
    if let Some(address) = literal {
        if let Err(refusal) = only_allowed(&address.to_string(), vec![address], allowed) {
            return not_allowed(&refusal);
        }
    }
    let started = Instant::now();
    let response = client.get(url).timeout(plan.timeout).send().await;
    match response {
        Ok(response) if response.status().is_success() => answered(
            plan,
            started.elapsed(),
            &format!("HTTP {}", response.status().as_u16()),
        ),
        Ok(response) => Outcome {
            status: InstanceStatus::Error,
            details: format!("HTTP {}", response.status().as_u16()),
        },
        Err(e) if e.is_timeout() => {
            unreachable(format!("timed out after {}", format_latency(plan.timeout)))
        }
        Err(e) => {
            // The useful words are at the bottom of the error chain ("connection refused").
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut io = None;
            while let Some(err) = source {
                if let Some(refusal) = err.downcast_ref::<NotAllowed>() {
                    return not_allowed(refusal);
                }
                if let Some(found) = err.downcast_ref::<std::io::Error>() {
                    io = Some(describe_io(found));
                }
                source = err.source();
            }
            unreachable(io.unwrap_or_else(|| e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::plan::{CheckPlan, Probe};

    fn plan() -> CheckPlan {
        CheckPlan {
            probe: Probe::None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            degraded_latency: Duration::from_secs(1),
            deregister_after: None,
        }
    }

    #[tokio::test]
    async fn tcp_sees_an_open_and_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let outcome = tcp(&plan(), &open, None).await;
        assert_eq!(outcome.status, InstanceStatus::Healthy, "{outcome:?}");
        // Port 1 is privileged and unused here: nothing can start listening on it.
        let outcome = tcp(&plan(), "127.0.0.1:1", None).await;
        assert_eq!(outcome, unreachable("connection refused".into()));
    }

    #[test]
    fn slow_answers_are_degraded() {
        let outcome = answered(&plan(), Duration::from_millis(1400), "HTTP 200");
        assert_eq!(outcome.status, InstanceStatus::Degraded);
        assert_eq!(outcome.details, "took 1.4s (HTTP 200)");
        assert_eq!(
            answered(&plan(), Duration::from_millis(3), "connected").details,
            "connected in 3ms"
        );
    }
}
