//! What to check for one instance, with every default filled in.

use registry_types::limits::{self, DurationRange};
use registry_types::{parse_duration, HealthCheckType, Instance};
use std::time::Duration;

pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const DEFAULT_HEALTHY_THRESHOLD: u32 = 1;
pub(crate) const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 2;
pub(crate) const DEFAULT_DEGRADED_LATENCY: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_HTTP_PATH: &str = "/healthz";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Dial `host:port`.
    Tcp { target: String },
    /// `GET url`; 2xx is success.
    Http { url: String },
    /// The instance heartbeats itself; silence longer than this is Unreachable.
    Ttl(Duration),
    /// Nobody checks; the status stays as it is.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckPlan {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub degraded_latency: Duration,
    pub deregister_after: Option<Duration>,
}

/// Durations were validated at registration, but a store can hold one written under
/// older rules or by hand: one that no longer parses falls back to the default, and one
/// out of today's range is brought into it, rather than stopping the checks.
fn duration(text: Option<&String>, default: Duration, range: DurationRange) -> Duration {
    let parsed = text.and_then(|t| parse_duration("", t).ok());
    range.clamp(parsed.unwrap_or(default))
}

fn threshold(given: Option<u32>, default: u32) -> u32 {
    let (least, most) = limits::THRESHOLD;
    given.unwrap_or(default).clamp(least, most)
}

impl CheckPlan {
    /// How often the instance is looked at: its TTL, or its check interval.
    pub(crate) fn period(&self) -> Duration {
        match self.probe {
            Probe::Ttl(ttl) => ttl,
            _ => self.interval,
        }
    }

    /// An instance with a `ttl` is checked by its own heartbeats only; otherwise by the
    /// registry, with a TCP dial unless its `healthCheck` says otherwise.
    pub(crate) fn for_instance(instance: &Instance) -> CheckPlan {
        let check = instance.health_check.clone().unwrap_or_default();
        let interval = duration(
            check.interval.as_ref(),
            DEFAULT_INTERVAL,
            limits::CHECK_INTERVAL,
        );
        let probe = match (&instance.ttl, check.check_type.unwrap_or_default()) {
            (Some(ttl), _) => Probe::Ttl(duration(Some(ttl), DEFAULT_INTERVAL, limits::TTL)),
            (None, HealthCheckType::None) => Probe::None,
            (None, HealthCheckType::Tcp) => {
                let host = if instance.ip.is_empty() {
                    &instance.host
                } else {
                    &instance.ip
                };
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                Probe::Tcp {
                    target: format!("{host}:{}", instance.port),
                }
            }
            (None, HealthCheckType::Http) => {
                let path = check
                    .path
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or(DEFAULT_HTTP_PATH);
                Probe::Http {
                    url: format!("{}{path}", instance.url.trim_end_matches('/')),
                }
            }
        };
        CheckPlan {
            probe,
            interval,
            // A check may not outlast its interval, or checks of one instance would overlap.
            timeout: duration(
                check.timeout.as_ref(),
                DEFAULT_TIMEOUT,
                limits::CHECK_TIMEOUT,
            )
            .min(interval),
            healthy_threshold: threshold(check.healthy_threshold, DEFAULT_HEALTHY_THRESHOLD),
            unhealthy_threshold: threshold(check.unhealthy_threshold, DEFAULT_UNHEALTHY_THRESHOLD),
            degraded_latency: duration(
                check.degraded_latency.as_ref(),
                DEFAULT_DEGRADED_LATENCY,
                limits::DEGRADED_LATENCY,
            ),
            deregister_after: instance
                .deregister_after
                .as_ref()
                .and_then(|t| parse_duration("", t).ok())
                .map(|after| limits::DEREGISTER_AFTER.clamp(after)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_types::HealthCheck;

    fn instance(url: &str, ip: &str, port: u16) -> Instance {
        Instance {
            url: url.into(),
            host: "localhost".into(),
            ip: ip.into(),
            port,
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_a_tcp_dial_every_ten_seconds() {
        let plan = CheckPlan::for_instance(&instance("http://localhost:8080", "", 8080));
        assert_eq!(
            plan.probe,
            Probe::Tcp {
                target: "localhost:8080".into()
            }
        );
        assert_eq!(plan.interval, DEFAULT_INTERVAL);
        assert_eq!(plan.timeout, DEFAULT_TIMEOUT);
        assert_eq!((plan.healthy_threshold, plan.unhealthy_threshold), (1, 2));
        assert_eq!(plan.deregister_after, None);
    }

    #[test]
    fn stored_values_out_of_todays_range_are_brought_into_it() {
        let mut i = instance("http://127.0.0.1:1", "127.0.0.1", 1);
        i.health_check = Some(HealthCheck {
            interval: Some("1ns".into()),
            timeout: Some("300000h".into()),
            unhealthy_threshold: Some(u32::MAX),
            ..Default::default()
        });
        i.deregister_after = Some("300000h".into());
        let plan = CheckPlan::for_instance(&i);
        assert_eq!(plan.interval, limits::CHECK_INTERVAL.min);
        assert_eq!(plan.timeout, plan.interval);
        assert_eq!(plan.unhealthy_threshold, limits::THRESHOLD.1);
        assert_eq!(plan.deregister_after, Some(limits::DEREGISTER_AFTER.max));
        i.ttl = Some("300000h".into());
        assert_eq!(
            CheckPlan::for_instance(&i).probe,
            Probe::Ttl(limits::TTL.max)
        );
    }

    #[test]
    fn tcp_prefers_the_ip_and_brackets_v6() {
        let plan = CheckPlan::for_instance(&instance("http://localhost:1", "127.0.0.2", 1));
        assert_eq!(
            plan.probe,
            Probe::Tcp {
                target: "127.0.0.2:1".into()
            }
        );
        let plan = CheckPlan::for_instance(&instance("http://[::1]:1", "::1", 1));
        assert_eq!(
            plan.probe,
            Probe::Tcp {
                target: "[::1]:1".into()
            }
        );
    }

    #[test]
    fn http_joins_url_and_path_and_ttl_wins() {
        let mut i = instance("http://127.0.0.1:9/api/", "127.0.0.1", 9);
        i.health_check = Some(HealthCheck {
            check_type: Some(HealthCheckType::Http),
            interval: Some("1s".into()),
            timeout: Some("5s".into()),
            ..Default::default()
        });
        let plan = CheckPlan::for_instance(&i);
        assert_eq!(
            plan.probe,
            Probe::Http {
                url: "http://127.0.0.1:9/api/healthz".into()
            }
        );
        assert_eq!(
            plan.timeout,
            std::time::Duration::from_secs(1),
            "capped at the interval"
        );
        i.ttl = Some("30s".into());
        i.deregister_after = Some("10m".into());
        let plan = CheckPlan::for_instance(&i);
        assert_eq!(plan.probe, Probe::Ttl(std::time::Duration::from_secs(30)));
        assert_eq!(
            plan.deregister_after,
            Some(std::time::Duration::from_secs(600))
        );
    }
}
