//! One health check over a real socket: a TCP dial or an HTTP GET.

use super::plan::CheckPlan;
use registry_types::InstanceStatus;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What one check saw: the status it suggests, and in words why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: InstanceStatus,
    pub details: String,
}

/// The HTTP client for checks: no connection reuse (each check proves the service
/// accepts connections now, and 10,000 idle pooled sockets would be a leak), no proxy,
/// no redirects followed.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("registry-svc-health/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the health-check HTTP client builds")
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

pub async fn tcp(plan: &CheckPlan, target: &str) -> Outcome {
    let started = Instant::now();
    match tokio::time::timeout(plan.timeout, TcpStream::connect(target)).await {
        Err(_) => unreachable(format!("timed out after {}", format_latency(plan.timeout))),
        Ok(Err(e)) => unreachable(describe_io(&e)),
        Ok(Ok(stream)) => {
            let latency = started.elapsed();
            // Close with a reset rather than a FIN: at 1,000 checks a second, TIME_WAIT
            // sockets left behind by polite closes would use up the ephemeral ports.
            let _ = stream.set_zero_linger();
            drop(stream);
            answered(plan, latency, "connected")
        }
    }
}

pub async fn http(plan: &CheckPlan, client: &reqwest::Client, url: &str) -> Outcome {
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
        let outcome = tcp(&plan(), &open).await;
        assert_eq!(outcome.status, InstanceStatus::Healthy, "{outcome:?}");
        // Port 1 is privileged and unused here: nothing can start listening on it.
        let outcome = tcp(&plan(), "127.0.0.1:1").await;
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
