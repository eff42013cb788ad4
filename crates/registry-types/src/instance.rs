//! Instances: running, callable copies of a service, and how they are registered and filtered.

use crate::address::AddressPart;
use crate::definition::null_as_default;
use crate::limits::{self, MAX_ID_LEN, MAX_METADATA, MAX_TAGS, MAX_TEXT_LEN, MAX_URL_LEN};
use crate::number::optional_whole;
use crate::object::optional_object;
use crate::validate::{
    validate_free_text, validate_id, validate_slug, validate_tag, validate_text,
};
use crate::FieldError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// What the registry last found out about an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum InstanceStatus {
    /// Not judged yet, or never: nothing checks it.
    #[default]
    Unknown,
    /// Answers its checks (or heartbeats within its TTL): callable.
    Healthy,
    /// Answers its checks, slower than its `degradedLatency`.
    Degraded,
    /// Refuses connections, times out, or missed its TTL.
    Unreachable,
    /// Answers its HTTP check with a status other than 2xx.
    Error,
}

impl InstanceStatus {
    /// Every status, in the order above.
    pub const ALL: [InstanceStatus; 5] = [
        InstanceStatus::Unknown,
        InstanceStatus::Healthy,
        InstanceStatus::Degraded,
        InstanceStatus::Unreachable,
        InstanceStatus::Error,
    ];

    /// The status as the API writes it, e.g. `Healthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Unknown => "Unknown",
            InstanceStatus::Healthy => "Healthy",
            InstanceStatus::Degraded => "Degraded",
            InstanceStatus::Unreachable => "Unreachable",
            InstanceStatus::Error => "Error",
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InstanceStatus {
    type Err = String;

    /// Case-insensitive, so `--status healthy` works on the command line.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("{s:?} is not a status; expected one of Unknown, Healthy, Degraded, Unreachable, Error")
            })
    }
}

/// How the registry checks an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckType {
    /// Opens a TCP connection to the instance's address and port.
    #[default]
    Tcp,
    /// Sends `GET` to the instance's URL plus the check's `path`.
    Http,
    /// No checks; an instance with a `ttl` is judged by its heartbeats whatever the type.
    None,
}

/// How the registry checks an instance. Every field is optional; absent ones take defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// How to check; `tcp` by default.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub check_type: Option<HealthCheckType>,
    /// Path of an HTTP check, appended to the instance's URL; `/healthz` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between checks, e.g. `10s` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Longest a check may take, at most the interval; `2s` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Successes in a row before the status becomes Healthy (or Degraded); 1 by default.
    #[serde(
        default,
        deserialize_with = "optional_whole",
        skip_serializing_if = "Option::is_none"
    )]
    pub healthy_threshold: Option<u32>,
    /// Failures in a row before the status becomes Unreachable or Error; 2 by default.
    #[serde(
        default,
        deserialize_with = "optional_whole",
        skip_serializing_if = "Option::is_none"
    )]
    pub unhealthy_threshold: Option<u32>,
    /// A success slower than this is Degraded; `1s` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded_latency: Option<String>,
}

impl HealthCheck {
    fn validate(&self) -> Result<(), FieldError> {
        for (name, value, range) in [
            ("interval", &self.interval, limits::CHECK_INTERVAL),
            ("timeout", &self.timeout, limits::CHECK_TIMEOUT),
            (
                "degradedLatency",
                &self.degraded_latency,
                limits::DEGRADED_LATENCY,
            ),
        ] {
            if let Some(text) = value {
                range.parse(name, text)?;
            }
        }
        let (least, most) = limits::THRESHOLD;
        for (name, value) in [
            ("healthyThreshold", self.healthy_threshold),
            ("unhealthyThreshold", self.unhealthy_threshold),
        ] {
            if value.is_some_and(|v| !(least..=most).contains(&v)) {
                return Err(FieldError::new(
                    name,
                    format!("must be from {least} to {most}"),
                ));
            }
        }
        if let Some(path) = &self.path {
            if !path.is_empty() && !path.starts_with('/') {
                return Err(FieldError::new("path", "must start with '/'"));
            }
            validate_text("path", path, limits::MAX_URL_LEN)?;
        }
        Ok(())
    }
}

/// A running, callable copy of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// The instance's id (`inst_…` unless the registration chose one).
    pub id: String,
    /// Where the instance is called, e.g. `http://10.0.0.5:8080/api`.
    pub url: String,
    /// The service this instance serves; also the account that owns it.
    #[serde(default)]
    pub slug: String,
    /// The deployment that started the instance, if one did.
    #[serde(default)]
    pub deployment_id: String,
    /// The URL of the node (registry daemon) the instance runs beside, if known.
    #[serde(default)]
    pub node_url: String,
    /// The scheme of `url`, e.g. `http`.
    #[serde(default)]
    pub scheme: String,
    /// The host of `url`: a name or an address.
    #[serde(default)]
    pub host: String,
    /// The instance's IP address, when it is known.
    #[serde(default)]
    pub ip: String,
    /// The port of `url`.
    #[serde(default)]
    pub port: u16,
    /// The path of `url`.
    #[serde(default)]
    pub path: String,
    /// What the latest checks (or heartbeats) found.
    #[serde(default)]
    pub status: InstanceStatus,
    /// What the latest check saw, e.g. `HTTP 503` or `connection refused`.
    #[serde(default)]
    pub details: String,
    /// The time of the latest successful check or heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Labels to filter by, e.g. `v2` or `canary`.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub tags: Vec<String>,
    /// Anything else about the instance, as key and value.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub metadata: BTreeMap<String, String>,
    /// How the registry checks the instance; absent for the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// When set, the instance heartbeats itself at least this often instead of being checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Remove the instance once it has been Unreachable this long; absent for never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregister_after: Option<String>,
}

impl Instance {
    /// Checks a stored instance against today's rules for registering it. A store can
    /// hold one written under older rules or by hand; the daemon reports it rather than
    /// refusing to start.
    pub fn check(&self) -> Result<(), FieldError> {
        let request = RegisterInstanceRequest {
            id: self.id.clone(),
            url: self.url.clone(),
            slug: self.slug.clone(),
            deployment_id: self.deployment_id.clone(),
            node_url: self.node_url.clone(),
            tags: self.tags.clone(),
            metadata: self.metadata.clone(),
            health_check: self.health_check.clone(),
            ttl: self.ttl.clone(),
            deregister_after: self.deregister_after.clone(),
            ..Default::default()
        };
        request.validate()?;
        request.address().map(drop)
    }
}

/// Body of `PUT /registry-svc/instance`. Either `url`, or `scheme` + (`host` or `ip`) + `port`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterInstanceRequest {
    /// The instance to register or update; empty for the one with the same `url`, else a new one.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub id: String,
    /// The deployment that started the instance, if one did.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub deployment_id: String,
    /// Where the instance is called; else give `scheme`, `host` (or `ip`) and `port`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub url: String,
    /// The scheme, when `url` is not given.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub scheme: String,
    /// The host name, when `url` is not given.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub host: String,
    /// The IP address, when `url` is not given and there is no `host`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub ip: String,
    /// The port, when `url` is not given.
    #[serde(
        default,
        deserialize_with = "optional_whole",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<u16>,
    /// The path, when `url` is not given.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub path: String,
    /// The service the instance serves; the caller's own slug when empty.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub slug: String,
    /// The URL of the node (registry daemon) the instance runs beside.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub node_url: String,
    /// Labels to filter by, e.g. `v2` or `canary`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub tags: Vec<String>,
    /// Anything else about the instance, as key and value.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub metadata: BTreeMap<String, String>,
    /// How the registry checks the instance; absent for the defaults.
    #[serde(
        default,
        deserialize_with = "optional_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_check: Option<HealthCheck>,
    /// When set, the instance heartbeats itself at least this often instead of being checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Remove the instance once it has been Unreachable this long; absent for never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregister_after: Option<String>,
}

/// An instance address, split into the parts the API reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub url: String,
    pub scheme: String,
    pub host: String,
    pub ip: String,
    pub port: u16,
    pub path: String,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Checks `text` against the address grammar of `part`; `field` names it in errors.
fn check_part(field: &str, part: AddressPart, text: &str) -> Result<(), FieldError> {
    if part.admits(text) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{text:?} is not {}", part.describe()),
        ))
    }
}

/// Checks a URL a caller gave against the address grammar, then splits it.
fn split_url(field: &str, text: &str) -> Result<Address, FieldError> {
    validate_text(field, text, MAX_URL_LEN)?;
    check_part(field, AddressPart::Url, text)?;
    split_checked_url(field, text)
}

/// Splits a URL of the address grammar into the parts the API reports.
fn split_checked_url(field: &str, text: &str) -> Result<Address, FieldError> {
    // The grammar admits only URLs this parser reads (a property test holds it to that);
    // an error here is still an answer, not a panic.
    let parsed = url::Url::parse(text)
        .map_err(|e| FieldError::new(field, format!("{text:?} is not an absolute URL ({e})")))?;
    let host = match parsed.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => return Err(FieldError::new(field, format!("{text:?} has no host"))),
    };
    let port = parsed
        .port_or_known_default()
        .or_else(|| default_port(parsed.scheme()))
        .ok_or_else(|| FieldError::new(field, format!("{text:?} has no port")))?;
    let path = match parsed.path() {
        "/" if !text.ends_with('/') => String::new(),
        path => path.to_string(),
    };
    let ip = host
        .parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    Ok(Address {
        url: text.to_string(),
        scheme: parsed.scheme().to_string(),
        host,
        ip,
        port,
        path,
    })
}

impl RegisterInstanceRequest {
    /// The instance's address: from `url`, or built from the parts when `url` is empty.
    pub fn address(&self) -> Result<Address, FieldError> {
        // Each part given is checked, with a URL or without.
        for (name, part, value) in [
            ("scheme", AddressPart::Scheme, &self.scheme),
            ("host", AddressPart::Host, &self.host),
            ("ip", AddressPart::Ip, &self.ip),
            ("path", AddressPart::Path, &self.path),
        ] {
            check_part(name, part, value)?;
        }
        let mut address = if !self.url.is_empty() {
            let mut address = split_url("url", &self.url)?;
            // Parts given beside the URL are kept as given, as the original keeps them.
            for (given, part) in [
                (&self.scheme, &mut address.scheme),
                (&self.host, &mut address.host),
                (&self.path, &mut address.path),
            ] {
                if !given.is_empty() {
                    part.clone_from(given);
                }
            }
            if let Some(port) = self.port.filter(|p| *p != 0) {
                address.port = port;
            }
            address
        } else {
            if self.scheme.is_empty() {
                return Err(FieldError::new(
                    "url",
                    "is required (or give scheme, host or ip, and port)",
                ));
            }
            let host = if !self.host.is_empty() {
                &self.host
            } else {
                &self.ip
            };
            if host.is_empty() {
                return Err(FieldError::new(
                    "host",
                    "is required when url is not given (or give ip)",
                ));
            }
            let port = match self.port {
                Some(port) if port != 0 => port,
                _ => {
                    return Err(FieldError::new(
                        "port",
                        "is required when url is not given (1–65535)",
                    ))
                }
            };
            let host_part = match host.parse::<IpAddr>() {
                Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
                _ => host.clone(),
            };
            let path = self.path.trim_start_matches('/');
            let built = if path.is_empty() {
                format!("{}://{host_part}:{port}", self.scheme)
            } else {
                format!("{}://{host_part}:{port}/{path}", self.scheme)
            };
            // Parts of the grammar always make a URL of it; its length is the parts' sum.
            split_checked_url("scheme", &built)?
        };
        if !self.ip.is_empty() {
            let ip = self.ip.parse::<IpAddr>().map_err(|_| {
                FieldError::new("ip", format!("{:?} is not an IP address", self.ip))
            })?;
            address.ip = ip.to_string();
        }
        Ok(address)
    }

    /// Checks every field but the address (see [`RegisterInstanceRequest::address`]).
    pub fn validate(&self) -> Result<(), FieldError> {
        if !self.id.is_empty() {
            validate_id("id", &self.id)?;
        }
        if !self.slug.is_empty() {
            validate_slug("slug", &self.slug)?;
        }
        validate_text("deploymentId", &self.deployment_id, MAX_ID_LEN)?;
        if !self.node_url.is_empty() {
            split_url("nodeUrl", &self.node_url)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(FieldError::new(
                "tags",
                format!("has {} tags, at most {MAX_TAGS} allowed", self.tags.len()),
            ));
        }
        for (i, tag) in self.tags.iter().enumerate() {
            validate_tag(&format!("tags[{i}]"), tag)?;
        }
        validate_metadata("metadata", &self.metadata)?;
        if let Some(check) = &self.health_check {
            check.validate().map_err(|e| e.within("healthCheck"))?;
        }
        for (name, value, range) in [
            ("ttl", &self.ttl, limits::TTL),
            (
                "deregisterAfter",
                &self.deregister_after,
                limits::DEREGISTER_AFTER,
            ),
        ] {
            if let Some(text) = value {
                range.parse(name, text)?;
            }
        }
        if self.port == Some(0) {
            return Err(FieldError::new("port", "must be 1–65535"));
        }
        // The address parts as given; `address()` checks what they make together.
        for (name, value) in [
            ("scheme", &self.scheme),
            ("host", &self.host),
            ("ip", &self.ip),
            ("path", &self.path),
        ] {
            validate_text(name, value, MAX_URL_LEN)?;
        }
        Ok(())
    }
}

/// Metadata of an instance or an API spec: a bounded number of named, bounded values.
pub(crate) fn validate_metadata(
    field: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<(), FieldError> {
    if metadata.len() > MAX_METADATA {
        return Err(FieldError::new(
            field,
            format!(
                "has {} keys, at most {MAX_METADATA} allowed",
                metadata.len()
            ),
        ));
    }
    for (key, value) in metadata {
        if key.is_empty() {
            return Err(FieldError::new(field, "has an empty key"));
        }
        // The key names the field only once it is known to be printable.
        validate_text(field, key, MAX_ID_LEN)
            .map_err(|e| FieldError::new(field, format!("key {key:?}: {}", e.problem)))?;
        validate_free_text(&format!("{field}.{key}"), value, MAX_TEXT_LEN)?;
    }
    Ok(())
}

/// The query filters of `GET /registry-svc/instances`, combined with AND.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceFilter {
    /// Only the instance with this id.
    pub id: Option<String>,
    /// Only instances of this slug.
    pub slug: Option<String>,
    /// Only instances on this host name.
    pub host: Option<String>,
    /// Only instances at this IP address.
    pub ip: Option<String>,
    /// Only instances with this scheme.
    pub scheme: Option<String>,
    /// Only instances with this path.
    pub path: Option<String>,
    /// Only instances of this deployment.
    pub deployment_id: Option<String>,
    /// Only instances beside this node.
    pub node_url: Option<String>,
    /// Only instances with this status.
    pub status: Option<InstanceStatus>,
    /// Every tag listed must be on the instance.
    pub tags: Vec<String>,
}

impl InstanceFilter {
    /// The query string this filter reads back from (without a leading `?`) by
    /// [`crate::query::parse`].
    pub fn to_query(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let pairs = [
            ("id", &self.id),
            ("slug", &self.slug),
            ("host", &self.host),
            ("ip", &self.ip),
            ("scheme", &self.scheme),
            ("path", &self.path),
            ("deploymentId", &self.deployment_id),
            ("nodeUrl", &self.node_url),
        ];
        for (key, value) in pairs {
            if let Some(value) = value {
                query.append_pair(key, value);
            }
        }
        if let Some(status) = self.status {
            query.append_pair("status", status.as_str());
        }
        for tag in &self.tags {
            query.append_pair("tag", tag);
        }
        query.finish()
    }

    /// Whether it filters on nothing but id, slug and status.
    pub fn only_id_slug_status(&self) -> bool {
        let InstanceFilter {
            id: _,
            slug: _,
            status: _,
            host,
            ip,
            scheme,
            path,
            deployment_id,
            node_url,
            tags,
        } = self;
        [host, ip, scheme, path, deployment_id, node_url]
            .iter()
            .all(|f| f.is_none())
            && tags.is_empty()
    }

    /// Whether `instance` passes every filter set.
    pub fn matches(&self, instance: &Instance) -> bool {
        fn eq(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|want| want == have)
        }
        eq(&self.id, &instance.id)
            && eq(&self.slug, &instance.slug)
            && eq(&self.host, &instance.host)
            && eq(&self.ip, &instance.ip)
            && eq(&self.scheme, &instance.scheme)
            && eq(&self.path, &instance.path)
            && eq(&self.deployment_id, &instance.deployment_id)
            && eq(&self.node_url, &instance.node_url)
            && self.status.is_none_or(|s| s == instance.status)
            && self.tags.iter().all(|t| instance.tags.contains(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> RegisterInstanceRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn url_is_split_into_parts() {
        let a = request(r#"{"url":"http://127.0.0.1:8080/api"}"#)
            .address()
            .unwrap();
        assert_eq!(
            (
                a.scheme.as_str(),
                a.host.as_str(),
                a.ip.as_str(),
                a.port,
                a.path.as_str()
            ),
            ("http", "127.0.0.1", "127.0.0.1", 8080, "/api")
        );
        let a = request(r#"{"url":"https://example.com"}"#)
            .address()
            .unwrap();
        assert_eq!((a.port, a.ip.as_str(), a.path.as_str()), (443, "", ""));
        // A container's name, as Docker Compose makes them.
        let a = request(r#"{"url":"http://shop_billing_1:8080"}"#)
            .address()
            .unwrap();
        assert_eq!((a.host.as_str(), a.port), ("shop_billing_1", 8080));
    }

    #[test]
    fn parts_build_the_url() {
        let a = request(r#"{"scheme":"http","host":"localhost","port":9000,"path":"api"}"#)
            .address()
            .unwrap();
        assert_eq!(a.url, "http://localhost:9000/api");
        let a = request(r#"{"scheme":"http","ip":"127.0.0.2","port":9000}"#)
            .address()
            .unwrap();
        assert_eq!(
            (a.url.as_str(), a.ip.as_str()),
            ("http://127.0.0.2:9000", "127.0.0.2")
        );
    }

    #[test]
    fn parts_beside_the_url_are_kept_as_given() {
        let a = request(
            r#"{"url":"http://127.0.0.1:8080/api","scheme":"https","host":"localhost","port":9000,"path":"/v2"}"#,
        )
        .address()
        .unwrap();
        assert_eq!(
            (
                a.url.as_str(),
                a.scheme.as_str(),
                a.host.as_str(),
                a.port,
                a.path.as_str()
            ),
            (
                "http://127.0.0.1:8080/api",
                "https",
                "localhost",
                9000,
                "/v2"
            )
        );
        let only_path = request(r#"{"url":"http://127.0.0.1:8080","path":"/x"}"#)
            .address()
            .unwrap();
        assert_eq!(
            (only_path.host.as_str(), only_path.port),
            ("127.0.0.1", 8080)
        );
        assert_eq!(only_path.path, "/x");
        let bad = request(r#"{"url":"http://127.0.0.1:8080","path":"/a?b"}"#);
        assert_eq!(bad.address().unwrap_err().field, "path");
    }

    #[test]
    fn missing_or_bad_address_names_the_field() {
        assert_eq!(request("{}").address().unwrap_err().field, "url");
        assert_eq!(
            request(r#"{"url":"not a url"}"#)
                .address()
                .unwrap_err()
                .field,
            "url"
        );
        assert_eq!(
            request(r#"{"url":"mailto:a@b"}"#)
                .address()
                .unwrap_err()
                .field,
            "url"
        );
        assert_eq!(
            request(r#"{"scheme":"http","port":1}"#)
                .address()
                .unwrap_err()
                .field,
            "host"
        );
        assert_eq!(
            request(r#"{"scheme":"http","host":"h"}"#)
                .address()
                .unwrap_err()
                .field,
            "port"
        );
        assert_eq!(
            request(r#"{"url":"grpc://h"}"#)
                .address()
                .unwrap_err()
                .field,
            "url"
        );
        assert_eq!(
            request(r#"{"url":"http://h:1","ip":"nope"}"#)
                .address()
                .unwrap_err()
                .field,
            "ip"
        );
    }

    #[test]
    fn durations_and_ids_are_checked() {
        assert_eq!(
            request(r#"{"ttl":"30"}"#).validate().unwrap_err().field,
            "ttl"
        );
        assert_eq!(
            request(r#"{"healthCheck":{"interval":"fast"}}"#)
                .validate()
                .unwrap_err()
                .field,
            "healthCheck.interval"
        );
        assert_eq!(
            request(r#"{"id":"a b"}"#).validate().unwrap_err().field,
            "id"
        );
        assert!(request(r#"{"ttl":"30s","deregisterAfter":"10m","healthCheck":{"type":"http","path":"/healthz"}}"#)
            .validate()
            .is_ok());
    }

    #[test]
    fn filter_round_trips_and_matches() {
        let filter: InstanceFilter =
            crate::query::parse("slug=a&status=healthy&tag=x&tag=y&other=1").unwrap();
        assert_eq!(filter.status, Some(InstanceStatus::Healthy));
        assert_eq!(filter.tags, vec!["x", "y"]);
        assert_eq!(
            crate::query::parse::<InstanceFilter>(&filter.to_query()).unwrap(),
            filter
        );
        let mut instance = Instance {
            slug: "a".into(),
            status: InstanceStatus::Healthy,
            tags: vec!["x".into(), "y".into(), "z".into()],
            ..Default::default()
        };
        assert!(filter.matches(&instance));
        instance.tags.pop();
        instance.tags.pop();
        assert!(!filter.matches(&instance));
        assert_eq!(
            crate::query::parse::<InstanceFilter>("status=Sleepy")
                .unwrap_err()
                .field,
            "status"
        );
    }
}
