//! The networks health checks may dial (`--check-allow`), so that nobody can aim the
//! checker at any host: literal addresses are refused at registration, and every
//! address a hostname resolves to is checked again just before a dial.

use crate::Error;
use ipnet::IpNet;
use registry_types::RegisterInstanceRequest;
use std::fmt;
use std::net::IpAddr;

/// Most networks in one list.
const MAX_NETWORKS: usize = 256;

/// The networks of `--check-allow`: health checks dial only addresses in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedNetworks(Vec<IpNet>);

impl AllowedNetworks {
    /// Parses a comma-separated list of networks (`10.0.0.0/8`) and single addresses
    /// (`127.0.0.1`, `::1`).
    pub fn parse(text: &str) -> Result<AllowedNetworks, String> {
        let mut networks = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(format!(
                    "{text:?} has an empty entry; expected networks like 10.0.0.0/8 or \
                     addresses like 127.0.0.1, separated by commas"
                ));
            }
            let network = match part.parse::<IpNet>() {
                Ok(network) => network.trunc(),
                Err(_) => part.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                    format!("{part:?} is neither a network (10.0.0.0/8) nor an IP address")
                })?,
            };
            networks.push(network);
        }
        if networks.len() > MAX_NETWORKS {
            return Err(format!(
                "lists {} networks, at most {MAX_NETWORKS} allowed",
                networks.len()
            ));
        }
        Ok(AllowedNetworks(networks))
    }

    /// Whether checks may dial `address` (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn admits(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|network| network.contains(&address))
    }

    /// 400 naming the field when a registration gives a literal address outside the
    /// list. Hostnames pass: the checker resolves them when it checks. An address
    /// that does not parse is left for the registration's own validation to report.
    pub fn admit_registration(&self, request: &RegisterInstanceRequest) -> Result<(), Error> {
        let Ok(address) = request.address() else {
            return Ok(());
        };
        let host_field = if !request.url.is_empty() {
            "url"
        } else if !request.host.is_empty() {
            "host"
        } else {
            "ip"
        };
        let literals = [
            (host_field, address.host.as_str()),
            ("ip", request.ip.as_str()),
        ];
        for (field, text) in literals {
            match text.parse::<IpAddr>() {
                Ok(ip) if !self.admits(ip) => {
                    return Err(Error::BadRequest(format!(
                        "invalid field `{field}`: {ip} is outside the networks health checks \
                         may dial ({self})"
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl fmt::Display for AllowedNetworks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, network) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{network}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_single_addresses() {
        let allowed = AllowedNetworks::parse("127.0.0.0/8, 10.1.2.3, ::1, fd00::/8").unwrap();
        assert_eq!(
            allowed.to_string(),
            "127.0.0.0/8,10.1.2.3/32,::1/128,fd00::/8"
        );
        for yes in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "::1",
            "fd12::5",
            "::ffff:127.0.0.1",
        ] {
            assert!(allowed.admits(ip(yes)), "{yes}");
        }
        for no in ["128.0.0.1", "10.1.2.4", "::2", "fe80::1", "::ffff:10.1.2.4"] {
            assert!(!allowed.admits(ip(no)), "{no}");
        }
        // Host bits are dropped, as in most tools.
        let allowed = AllowedNetworks::parse("10.9.9.9/8").unwrap();
        assert_eq!(allowed.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn refuses_what_is_not_a_network() {
        for bad in [
            "",
            "127.0.0.0/8,",
            "localhost",
            "10.0.0.0/33",
            "1.2.3",
            "::1/129",
        ] {
            assert!(AllowedNetworks::parse(bad).is_err(), "{bad:?}");
        }
        let many = vec!["127.0.0.1"; MAX_NETWORKS + 1].join(",");
        assert!(AllowedNetworks::parse(&many)
            .unwrap_err()
            .contains("at most"));
    }

    #[test]
    fn registrations_name_the_field_with_the_address_outside() {
        let allowed = AllowedNetworks::parse("127.0.0.0/8").unwrap();
        let check = |request: serde_json::Value| {
            let request: RegisterInstanceRequest = serde_json::from_value(request).unwrap();
            allowed
                .admit_registration(&request)
                .map_err(|e| e.to_string())
        };
        assert_eq!(check(json!({"url": "http://127.0.0.5:80"})), Ok(()));
        assert_eq!(check(json!({"url": "http://localhost:80"})), Ok(()));
        assert!(check(json!({"url": "http://10.0.0.1:80"}))
            .unwrap_err()
            .contains("invalid field `url`: 10.0.0.1 is outside"));
        assert!(check(json!({"url": "http://[::1]:80"}))
            .unwrap_err()
            .contains("`url`"));
        assert!(
            check(json!({"scheme": "http", "host": "10.0.0.1", "port": 80}))
                .unwrap_err()
                .contains("`host`")
        );
        assert!(
            check(json!({"scheme": "http", "ip": "10.0.0.1", "port": 80}))
                .unwrap_err()
                .contains("`ip`")
        );
        assert!(
            check(json!({"url": "http://localhost:80", "ip": "10.0.0.1"}))
                .unwrap_err()
                .contains("`ip`")
        );
    }
}
