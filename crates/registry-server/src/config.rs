//! Flags and environment of `registry-svc serve`; each flag has an environment twin.

use crate::check_allow::AllowedNetworks;
use crate::cors::CorsOrigins;
use crate::rate_limit::RateLimit;
use registry_types::limits::{self, DurationRange};
use std::path::PathBuf;
use std::time::Duration;

/// The default of both rate limits: above what one daemon answers on a small machine,
/// so that no legitimate caller (nor `registry-bench`, which saturates the daemon from
/// one address with one token) is throttled unless an operator chooses lower limits.
pub(crate) const DEFAULT_RATE_LIMIT: &str = "500000";

/// No `Debug`: it holds secrets (the admin token, the database password), and nothing
/// should print it.
#[derive(Clone, clap::Args)]
pub struct Config {
    /// HTTP listen address (port 0 picks a free port).
    #[arg(long, env = "REGISTRY_LISTEN", default_value = registry_types::constants::DEFAULT_LISTEN)]
    pub listen: String,

    /// Directory of the embedded store, the node id and the bootstrap admin token.
    #[arg(long, env = registry_types::constants::DATA_DIR_ENV, default_value = registry_types::constants::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// `postgres://…` selects the shared PostgreSQL store; unset means embedded SQLite.
    /// Its value is never shown in `--help`: it may hold a password.
    #[arg(long, env = "REGISTRY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// This node's URL as other nodes reach it [default: http(s)://HOSTNAME:PORT].
    #[arg(long, env = "REGISTRY_SELF_URL")]
    pub self_url: Option<String>,

    /// This node's id [default: generated once, then kept in the data dir].
    #[arg(long, env = "REGISTRY_NODE_ID")]
    pub node_id: Option<String>,

    /// Region reported for this node.
    #[arg(long, env = "REGISTRY_REGION", default_value = "")]
    pub region: String,

    /// Availability zone reported for this node.
    #[arg(long, env = "REGISTRY_AVAILABILITY_ZONE", default_value = "")]
    pub availability_zone: String,

    /// How often this node heartbeats (e.g. `10s`); published with its node record, the
    /// other nodes call it Offline after three of these without a heartbeat.
    #[arg(long, env = "REGISTRY_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = parse_interval)]
    pub heartbeat_interval: Duration,

    /// Account slugs allowed to register and remove instances of any slug.
    #[arg(
        long,
        env = "REGISTRY_TRUSTED_SLUGS",
        default_value = "deploy-svc",
        value_delimiter = ','
    )]
    pub trusted_slugs: Vec<String>,

    /// PEM file of the platform User Svc's RSA public key: the JWTs that key signs are
    /// accepted beside this registry's own tokens. Read at start.
    #[arg(
        long,
        env = "REGISTRY_USER_SVC_PUBLIC_KEY",
        conflicts_with = "user_svc_url"
    )]
    pub user_svc_public_key: Option<PathBuf>,

    /// The platform's User Svc (e.g. `http://127.0.0.1:58231`): its public key is fetched
    /// from `GET <URL>/user-svc/public-key` in the background, and the JWTs it signs are
    /// accepted beside this registry's own tokens.
    #[arg(long, env = "REGISTRY_USER_SVC_URL", value_parser = parse_user_svc_url)]
    pub user_svc_url: Option<url::Url>,

    /// How often the public key is fetched again from `--user-svc-url`; a token whose
    /// signature fails also fetches it again, at most once every few seconds.
    #[arg(long, env = "REGISTRY_USER_SVC_KEY_REFRESH", default_value = "5m",
        value_parser = parse_key_refresh)]
    pub user_svc_key_refresh: Duration,

    /// The `nvidia-smi` program used to detect GPUs.
    #[arg(long, env = "REGISTRY_NVIDIA_SMI", default_value = "nvidia-smi")]
    pub nvidia_smi: PathBuf,

    /// Requests a second one token may make, `RATE[:BURST]` (the burst defaults to one
    /// second's worth); `off` or `0` for no limit.
    #[arg(long, env = "REGISTRY_RATE_LIMIT_TOKEN", default_value = DEFAULT_RATE_LIMIT,
        value_parser = RateLimit::parse)]
    pub rate_limit_token: RateLimit,

    /// Requests a second one source address (an IPv6 /64) may make, `RATE[:BURST]`;
    /// `off` or `0` for no limit.
    #[arg(long, env = "REGISTRY_RATE_LIMIT_ADDRESS", default_value = DEFAULT_RATE_LIMIT,
        value_parser = RateLimit::parse)]
    pub rate_limit_address: RateLimit,

    /// Networks health checks may dial, comma-separated (`127.0.0.0/8,10.0.0.0/8`,
    /// single addresses too) [default: any address].
    #[arg(long, env = "REGISTRY_CHECK_ALLOW", value_parser = AllowedNetworks::parse)]
    pub check_allow: Option<AllowedNetworks>,

    /// Origins of the browser pages that may call the API, comma-separated
    /// (`https://app.example.com,http://127.0.0.1:8080`), or `*` for any.
    #[arg(long, env = "REGISTRY_CORS_ORIGINS", default_value = "*", value_parser = CorsOrigins::parse)]
    pub cors_origins: CorsOrigins,

    /// Bootstrap admin token. Read only from the environment (`REGISTRY_ADMIN_TOKEN`) so
    /// it never shows in a process listing.
    #[arg(skip = std::env::var(registry_types::constants::ADMIN_TOKEN_ENV).ok().filter(|t| !t.is_empty()))]
    pub admin_token: Option<String>,

    /// Time a connection has to send a request's headers, counted from its first byte (from
    /// the accept for a new connection, TLS handshake included); a slower one is closed.
    #[arg(long, env = "REGISTRY_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_header_timeout)]
    pub header_timeout: Duration,

    /// Time a request has to send its whole body once its headers are in; a slower one is
    /// answered 408 and its connection closed.
    #[arg(long, env = "REGISTRY_BODY_TIMEOUT", default_value = "30s", value_parser = parse_body_timeout)]
    pub body_timeout: Duration,

    /// How long a keep-alive connection with no request in flight stays open. A connection
    /// holding an event stream or a blocking query is not idle.
    #[arg(long, env = "REGISTRY_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_idle_timeout)]
    pub idle_timeout: Duration,

    /// Most connections open at once [default: three quarters of the open-file limit]. At
    /// the cap a new connection closes the oldest one with no request in flight; when every
    /// connection is busy it is answered 503.
    #[arg(long, env = "REGISTRY_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,

    /// PEM certificate chain: serve HTTPS instead of HTTP (with `--tls-key`). Reloaded
    /// when the file changes.
    #[arg(long, env = "REGISTRY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`. Reloaded when the file changes.
    #[arg(long, env = "REGISTRY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificates: clients must present a certificate signed by one of them.
    /// Reloaded when the file changes.
    #[arg(long, env = "REGISTRY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Whose schema answers follow when the caller does not ask for extensions: the
    /// project this daemon stands in for. Input takes both projects' spellings.
    #[arg(long, env = "REGISTRY_DIALECT", value_enum, default_value_t = Dialect::OpenOrch)]
    pub dialect: Dialect,

    /// Also answer DNS, over UDP and TCP, on this address (e.g. `127.0.0.1:8600`; port 0
    /// picks a free port): `<slug>.service.<domain>` resolves to the healthy instances.
    #[arg(long, env = "REGISTRY_DNS_LISTEN")]
    pub dns_listen: Option<std::net::SocketAddr>,

    /// The DNS domain served; every name outside it is refused.
    #[arg(long, env = "REGISTRY_DNS_DOMAIN", default_value = "registry.", value_parser = parse_dns_domain)]
    pub dns_domain: String,

    /// The TTL of DNS answers, in whole seconds (e.g. `1s`; `0s` for none).
    #[arg(long, env = "REGISTRY_DNS_TTL", default_value = "1s", value_parser = parse_dns_ttl)]
    pub dns_ttl: Duration,

    /// DNS answers include Degraded instances beside the Healthy ones.
    #[arg(long, env = "REGISTRY_DNS_INCLUDE_DEGRADED")]
    pub dns_include_degraded: bool,

    /// Most DNS TCP connections open at once; one more is closed at once.
    #[arg(long, env = "REGISTRY_DNS_MAX_TCP_CONNECTIONS", default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub dns_max_tcp_connections: u32,

    /// DNS queries a second one source address (an IPv6 /64) may make, `RATE[:BURST]`;
    /// `off` or `0` for no limit. Queries over it are dropped unanswered.
    #[arg(long, env = "REGISTRY_DNS_RATE_LIMIT_ADDRESS", default_value = DEFAULT_RATE_LIMIT,
        value_parser = RateLimit::parse)]
    pub dns_rate_limit_address: RateLimit,

    /// A bearer token `/metrics` then needs (Prometheus sends it with `authorization`);
    /// unset, `/metrics` needs none. Its value is never shown in `--help`.
    #[arg(long, env = "REGISTRY_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Slugs whose instances `/metrics` counts apart (those with the most instances);
    /// the rest are summed under `slug="_other"`.
    #[arg(long, env = "REGISTRY_METRICS_MAX_SLUGS", default_value_t = 500,
        value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub metrics_max_slugs: u32,
}

/// The range of `--dns-ttl`: resolvers in front should come back soon, as the answers
/// follow health checks.
const DNS_TTL: DurationRange = DurationRange {
    min: Duration::ZERO,
    max: Duration::from_secs(3600),
};

fn parse_dns_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_flag("dns-ttl", text, DNS_TTL)?;
    if ttl.subsec_nanos() != 0 {
        return Err(format!("{text:?} is not a whole number of seconds"));
    }
    Ok(ttl)
}

/// A domain name of letters, digits, `-` and `_`, in lower case and ending in a dot:
/// `registry`, `registry.internal.`.
fn parse_dns_domain(text: &str) -> Result<String, String> {
    let domain = text.trim_end_matches('.').to_ascii_lowercase();
    let labels_ok = !domain.is_empty()
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    // Room left for `<63-byte label>.service.` in a name of at most 253 bytes.
    if !labels_ok || domain.len() > 180 {
        return Err(format!(
            "{text:?} is not a domain name: dot-separated labels of 1 to 63 letters, digits, \
             '-' or '_', at most 180 bytes in all"
        ));
    }
    Ok(format!("{domain}."))
}

/// The project whose Registry Svc this daemon stands in for. The two spell one field
/// differently: a definition's `repository.ports` (OpenOrch) is `repository.internalPorts`
/// in 1Backend, each project's schema requiring its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// OpenOrch.
    #[value(name = "openorch")]
    OpenOrch,
    /// 1Backend, OpenOrch's later name.
    #[value(name = "1backend")]
    OneBackend,
}

/// A duration flag, read as flags are (`90s`, `1m30s`), within `range`.
fn parse_flag(name: &str, text: &str, range: DurationRange) -> Result<Duration, String> {
    let duration = registry_types::parse_duration(name, text).map_err(|e| e.problem)?;
    if range.contains(duration) {
        Ok(duration)
    } else {
        Err(format!("{text:?} is out of range; {}", range.describe()))
    }
}

fn parse_header_timeout(text: &str) -> Result<Duration, String> {
    parse_flag("header-timeout", text, limits::HEADER_TIMEOUT)
}

fn parse_body_timeout(text: &str) -> Result<Duration, String> {
    parse_flag("body-timeout", text, limits::BODY_TIMEOUT)
}

fn parse_idle_timeout(text: &str) -> Result<Duration, String> {
    parse_flag("idle-timeout", text, limits::IDLE_TIMEOUT)
}

fn parse_key_refresh(text: &str) -> Result<Duration, String> {
    parse_flag("user-svc-key-refresh", text, limits::USER_SVC_KEY_REFRESH)
}

/// An `http` or `https` URL with a host and nothing after the path: the public key's
/// path is added to it.
fn parse_user_svc_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(format!("{text:?} must be an http or https URL with a host"));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "{text:?} must have no user, query or fragment: the key's path is added to it"
        ));
    }
    Ok(url)
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    parse_flag("heartbeat-interval", text, limits::HEARTBEAT_INTERVAL)
}

impl Config {
    /// A configuration for an embedded daemon in `data_dir` on a free loopback port, with
    /// every other setting at its default. Tests and embedders start from this.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: "127.0.0.1:0".into(),
            data_dir: data_dir.into(),
            database_url: None,
            self_url: None,
            node_id: None,
            region: String::new(),
            availability_zone: String::new(),
            heartbeat_interval: Duration::from_secs(10),
            trusted_slugs: vec!["deploy-svc".into()],
            user_svc_public_key: None,
            user_svc_url: None,
            user_svc_key_refresh: Duration::from_secs(300),
            nvidia_smi: PathBuf::from("nvidia-smi"),
            rate_limit_token: RateLimit::parse(DEFAULT_RATE_LIMIT).expect("a valid default"),
            rate_limit_address: RateLimit::parse(DEFAULT_RATE_LIMIT).expect("a valid default"),
            check_allow: None,
            cors_origins: CorsOrigins::Any,
            admin_token: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            dialect: Dialect::OpenOrch,
            dns_listen: None,
            dns_domain: "registry.".into(),
            dns_ttl: Duration::from_secs(1),
            dns_include_degraded: false,
            dns_max_tcp_connections: 256,
            dns_rate_limit_address: RateLimit::parse(DEFAULT_RATE_LIMIT).expect("a valid default"),
            metrics_token: None,
            metrics_max_slugs: 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn the_user_svc_url_is_a_plain_http_address() {
        for good in ["http://127.0.0.1:58231", "https://user-svc.internal/api/"] {
            assert!(parse_user_svc_url(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:58231",
            "ftp://127.0.0.1",
            "http://user:pw@127.0.0.1",
            "http://127.0.0.1/?x=1",
            "http://127.0.0.1/#k",
            "unix:/run/user-svc.sock",
        ] {
            assert!(parse_user_svc_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_file_and_a_user_svc_url_exclude_each_other() {
        let both = Serve::try_parse_from([
            "serve",
            "--user-svc-public-key",
            "key.pem",
            "--user-svc-url",
            "http://127.0.0.1:1",
        ]);
        assert!(both.is_err());
        let refresh = |text: &str| {
            Serve::try_parse_from(["serve", "--user-svc-key-refresh", text])
                .map(|s| s.config.user_svc_key_refresh)
        };
        assert_eq!(refresh("30s").unwrap(), Duration::from_secs(30));
        assert!(refresh("0s").is_err());
        assert!(refresh("2d").is_err());
    }

    #[test]
    fn dns_flags_are_checked() {
        let parse = |args: &[&str]| {
            Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
                .map(|s| s.config)
        };
        let config = parse(&[
            "--dns-listen",
            "127.0.0.1:8600",
            "--dns-domain",
            "Reg.Internal",
        ])
        .unwrap();
        assert_eq!(config.dns_listen, Some("127.0.0.1:8600".parse().unwrap()));
        assert_eq!(config.dns_domain, "reg.internal.");
        assert_eq!(config.dns_ttl, Duration::from_secs(1));
        assert_eq!(parse(&["--dns-ttl", "0s"]).unwrap().dns_ttl, Duration::ZERO);
        for bad in [
            &["--dns-listen", "localhost:53"][..],
            &["--dns-domain", "."],
            &["--dns-domain", "a..b"],
            &["--dns-domain", "sp ace"],
            &["--dns-ttl", "2h"],
            &["--dns-ttl", "1500ms"],
            &["--dns-max-tcp-connections", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
