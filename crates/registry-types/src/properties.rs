//! Property tests of every parser of caller input in this crate, through the public
//! functions the server, the client and the CLI call: durations, instance addresses
//! (from a URL or from its parts), instance filters in query strings, and definitions in
//! JSON and YAML. Each parser must answer any input with a value or a [`FieldError`],
//! never a panic, and what one side writes the other must read back unchanged.
//!
//! The case counts are fixed so that the whole set stays within seconds in a debug build.

use crate::{
    parse_duration, ApiSpec, Client, Definition, DefinitionInput, EnvVar, ImageSpec,
    InstanceFilter, InstanceStatus, PortMapping, RegisterInstanceRequest, RepositorySpec,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Text biased towards what breaks parsers: separators, escapes, digits, units,
/// non-ASCII, control characters; or anything at all.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-z &=%+#?/:;.,\\[\\]@~\\\\\"' \t\r\nµé😀\u{0}-]{0,24}",
        "[0-9]{1,30}(ns|us|µs|ms|s|m|h|d|w|M|y|x)?( [0-9]{1,20}(s|m|h|d|y))?",
    ]
}

mod durations {
    use super::*;

    proptest! {
        #![proptest_config(config())]

        /// Whatever it reads back from humantime's writing is what it read first;
        /// whatever it refuses names the field.
        #[test]
        fn any_text_is_read_consistently_or_refused_naming_the_field(text in hostile_text()) {
            match parse_duration("ttl", &text) {
                Ok(duration) => {
                    let written = humantime::format_duration(duration).to_string();
                    prop_assert_eq!(parse_duration("ttl", &written).ok(), Some(duration));
                }
                Err(e) => prop_assert_eq!(e.field, "ttl"),
            }
        }

        #[test]
        fn written_durations_read_back_exactly(
            seconds in 0u64..=86_400,
            nanos in 0u32..1_000_000_000,
        ) {
            let duration = Duration::new(seconds, nanos);
            let written = humantime::format_duration(duration).to_string();
            prop_assert_eq!(parse_duration("interval", &written).ok(), Some(duration), "{}", written);
        }

        #[test]
        fn a_bare_number_is_refused_naming_the_field(
            number in "[0-9]{1,40}",
            pad in "[ \t]{0,2}",
        ) {
            let err = parse_duration("deregisterAfter", &format!("{pad}{number}{pad}")).unwrap_err();
            prop_assert_eq!(&err.field, "deregisterAfter");
            prop_assert!(err.problem.contains("no unit"), "{}", err.problem);
        }
    }
}

mod addresses {
    use super::*;

    /// Schemes the URL parser treats specially (default ports, normalized hosts) and
    /// others it keeps as written; never `file`, whose URLs have no port.
    fn scheme() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("http".to_string()),
            Just("https".to_string()),
            Just("ws".to_string()),
            "[a-z][a-z0-9+.-]{0,8}".prop_filter("file URLs have no port", |s| s != "file"),
        ]
    }

    /// A host as a caller writes it, and as the address reports it: a lower-case DNS
    /// name (no `xn--` label, no numeric last label), an IPv4 or an IPv6 address.
    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,5})?(\\.[a-z][a-z0-9]{0,10}){0,3}",
            any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
            any::<Ipv6Addr>().prop_map(|ip| ip.to_string()),
        ]
    }

    /// Path segments of unreserved characters, never `.` or `..`.
    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec("[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,8}", 0..4)
            .prop_map(|segments| segments.join("/"))
    }

    fn percent_decoded(text: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut rest = text.as_bytes();
        while let Some((&first, tail)) = rest.split_first() {
            let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(byte) if first == b'%' => {
                    bytes.push(byte);
                    rest = &tail[2..];
                }
                _ => {
                    bytes.push(first);
                    rest = tail;
                }
            }
        }
        bytes
    }

    pub(super) fn from_parts(
        scheme: &str,
        host: &str,
        port: u16,
        path: &str,
    ) -> RegisterInstanceRequest {
        RegisterInstanceRequest {
            scheme: scheme.to_string(),
            host: host.to_string(),
            port: Some(port),
            path: path.to_string(),
            ..Default::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// Parts build a URL that splits back into the same parts, IPv6 hosts bracketed
        /// in it; the URL given as `url` gives the same address again.
        #[test]
        fn parts_make_a_url_that_splits_back_into_them(
            scheme in scheme(),
            host in host(),
            port in 1u16..,
            path in path(),
            leading_slash in any::<bool>(),
        ) {
            let given_path = if leading_slash { format!("/{path}") } else { path.clone() };
            let address = from_parts(&scheme, &host, port, &given_path).address()
                .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
            let is_v6 = host.parse::<Ipv6Addr>().is_ok();
            let host_in_url = if is_v6 { format!("[{host}]") } else { host.clone() };
            let expected_path = if path.is_empty() { String::new() } else { format!("/{path}") };
            prop_assert_eq!(&address.url, &format!("{scheme}://{host_in_url}:{port}{expected_path}"));
            prop_assert_eq!(&address.scheme, &scheme);
            prop_assert_eq!(&address.host, &host);
            prop_assert_eq!(address.port, port);
            prop_assert_eq!(&address.path, &expected_path);
            let is_ip = is_v6 || host.parse::<Ipv4Addr>().is_ok();
            prop_assert_eq!(&address.ip, if is_ip { &host } else { "" });

            let again = RegisterInstanceRequest { url: address.url.clone(), ..Default::default() }
                .address()
                .map_err(|e| TestCaseError::fail(format!("its own URL refused: {e}")))?;
            prop_assert_eq!(again, address);
        }

        /// Parts it accepts are the parts it reports: no scheme, host or path that the
        /// URL parser would read as another host, port, user, query or fragment.
        #[test]
        fn accepted_parts_are_the_parts_reported(
            scheme in prop_oneof![scheme(), hostile_text()],
            host in prop_oneof![
                host(),
                hostile_text(),
                (host(), "[/?#@\\\\%:\t]", host()).prop_map(|(a, d, b)| format!("{a}{d}{b}")),
            ],
            port in 1u16..,
            path in prop_oneof![path(), hostile_text()],
        ) {
            if let Ok(address) = from_parts(&scheme, &host, port, &path).address() {
                prop_assert!(address.scheme.eq_ignore_ascii_case(&scheme), "{:?}", address);
                prop_assert_eq!(address.port, port, "{:?}", &address);
                let normalized = url::Host::parse(&host).ok().map(|h| match h {
                    url::Host::Ipv6(ip) => ip.to_string(),
                    h => h.to_string(),
                });
                prop_assert!(
                    address.host.eq_ignore_ascii_case(&host)
                        || normalized.as_deref() == Some(address.host.as_str())
                        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_string() == address.host)
                        // An opaque host (not http and the like) is percent-encoded.
                        || percent_decoded(&address.host) == host.as_bytes(),
                    "{:?} reported for host {:?}", address, host
                );
                let url = url::Url::parse(&address.url).unwrap();
                prop_assert_eq!(url.username(), "");
                prop_assert_eq!((url.query(), url.fragment()), (None, None));
            }
        }

        /// A host given only as `ip` is the host, and the address's `ip`.
        #[test]
        fn an_ip_alone_is_the_host(ip in prop_oneof![
            any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
            any::<Ipv6Addr>().prop_map(|ip| ip.to_string()),
        ], port in 1u16..) {
            let request = RegisterInstanceRequest {
                scheme: "http".into(),
                ip: ip.clone(),
                port: Some(port),
                ..Default::default()
            };
            let address = request.address().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&address.host, &ip);
            prop_assert_eq!(&address.ip, &ip);
        }

        /// Any fields give an address or an error; an address accepted once is accepted
        /// again from its own URL, with the same parts.
        #[test]
        fn any_fields_give_a_stable_address_or_an_error(
            url in prop_oneof![Just(String::new()), hostile_text(), "[a-z]{1,5}://\\PC{0,30}"],
            scheme in prop_oneof![Just(String::new()), Just("http".to_string()), hostile_text()],
            host in prop_oneof![Just(String::new()), host(), hostile_text()],
            ip in prop_oneof![Just(String::new()), hostile_text()],
            port in any::<Option<u16>>(),
            path in hostile_text(),
        ) {
            let request = RegisterInstanceRequest { url, scheme, host, ip, port, path, ..Default::default() };
            if let Ok(address) = request.address() {
                let again = RegisterInstanceRequest { url: address.url.clone(), ..Default::default() }
                    .address()
                    .map_err(|e| TestCaseError::fail(format!("{:?} refused: {e}", address.url)))?;
                prop_assert_eq!(
                    (&again.scheme, &again.host, again.port, &again.path),
                    (&address.scheme, &address.host, address.port, &address.path)
                );
            }
        }
    }
}

/// The published address grammar ([`AddressPart`]) against the parsers it stands for: what
/// a pattern generates is accepted, and for IP addresses the grammar and the standard
/// library's parser agree on every string.
mod address_grammar {
    use super::addresses::from_parts;
    use super::*;
    use crate::AddressPart;
    use std::net::IpAddr;

    /// Strings of `part`'s grammar, not empty.
    fn of(part: AddressPart) -> impl Strategy<Value = String> {
        let anchored = part.pattern();
        let body = &anchored[1..anchored.len() - 1];
        proptest::string::string_regex(body)
            .expect("the grammar is a regular expression")
            .prop_filter("not given, or too long", |text| {
                !text.is_empty() && text.len() <= crate::limits::MAX_URL_LEN
            })
    }

    /// IPv6 addresses in every way of writing them: groups with or without leading zeros,
    /// any run of groups (zero or not) cut out as `::`, an IPv4 tail.
    fn ipv6_written() -> impl Strategy<Value = String> {
        (
            any::<[u16; 8]>(),
            any::<[bool; 8]>(),
            0usize..=8,
            0usize..=8,
            any::<bool>(),
        )
            .prop_map(|(groups, padded, from, to, ipv4_tail)| {
                let mut written: Vec<String> = groups
                    .iter()
                    .zip(padded)
                    .map(|(g, pad)| {
                        if pad {
                            format!("{g:04x}")
                        } else {
                            format!("{g:x}")
                        }
                    })
                    .collect();
                if ipv4_tail {
                    let [a, b] = groups[6].to_be_bytes();
                    let [c, d] = groups[7].to_be_bytes();
                    written.truncate(6);
                    written.push(format!("{a}.{b}.{c}.{d}"));
                }
                let (from, to) = (
                    from.min(to).min(written.len()),
                    from.max(to).min(written.len()),
                );
                if from == to {
                    written.join(":")
                } else {
                    format!("{}::{}", written[..from].join(":"), written[to..].join(":"))
                }
            })
    }

    proptest! {
        #![proptest_config(config())]

        /// Every URL of the grammar is accepted as `url`, and again from the URL it reports.
        #[test]
        fn every_url_of_the_grammar_is_accepted(url in of(AddressPart::Url)) {
            let request = RegisterInstanceRequest { url: url.clone(), ..Default::default() };
            let address = request.address().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&address.url, &url);
            prop_assert!(address.port >= 1);
        }

        /// Every scheme, host and path of the grammar, with a port, make an address.
        #[test]
        fn every_set_of_parts_of_the_grammar_is_accepted(
            scheme in of(AddressPart::Scheme),
            host in of(AddressPart::Host),
            path in prop_oneof![Just(String::new()), of(AddressPart::Path)],
            port in 1u16..,
        ) {
            let request = from_parts(&scheme, &host, port, &path);
            request.validate().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let address = request.address().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(address.port, port);
            prop_assert!(AddressPart::Url.admits(&address.url), "{}", address.url);
        }

        /// The grammar of IP addresses is exactly what the standard library reads.
        #[test]
        fn the_ip_grammar_is_what_the_standard_library_reads(text in prop_oneof![
            of(AddressPart::Ip),
            ipv6_written(),
            any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
            "[0-9a-fA-F:.]{1,40}",
            "[0-9]{1,4}(\\.[0-9]{1,4}){0,4}",
        ]) {
            prop_assert_eq!(
                AddressPart::Ip.admits(&text),
                text.parse::<IpAddr>().is_ok(),
                "{:?}", text
            );
        }

        /// Anything else given as a URL is refused, naming `url`.
        #[test]
        fn what_the_grammar_refuses_is_refused(url in hostile_text()) {
            let request = RegisterInstanceRequest { url: url.clone(), ..Default::default() };
            if !url.is_empty() && !AddressPart::Url.admits(&url) {
                let error = request.address().unwrap_err();
                prop_assert_eq!(error.field, "url");
            }
        }
    }
}

mod filters {
    use super::*;
    use crate::query::parse;

    /// A value a filter holds: never empty, as an empty value in a query filters on nothing.
    fn text() -> impl Strategy<Value = String> {
        hostile_text().prop_filter("an empty value is no filter", |t| !t.is_empty())
    }

    fn value() -> impl Strategy<Value = Option<String>> {
        prop::option::of(text())
    }

    prop_compose! {
        fn filter()(
            id in value(), slug in value(), host in value(), ip in value(),
            scheme in value(), path in value(), deployment_id in value(), node_url in value(),
            status in prop::option::of(prop::sample::select(InstanceStatus::ALL.to_vec())),
            tags in prop::collection::vec(text(), 0..4),
        ) -> InstanceFilter {
            InstanceFilter { id, slug, host, ip, scheme, path, deployment_id, node_url, status, tags }
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn a_filter_reads_back_from_its_query(filter in filter()) {
            let query = filter.to_query();
            prop_assert_eq!(parse::<InstanceFilter>(&query).ok(), Some(filter), "{}", query);
        }

        /// Any query gives a filter or an error naming `status`, the one checked value;
        /// a filter read from any query writes a query that reads back the same.
        #[test]
        fn any_query_gives_a_stable_filter_or_a_status_error(query in hostile_text()) {
            match parse::<InstanceFilter>(&query) {
                Ok(filter) => prop_assert_eq!(
                    parse::<InstanceFilter>(&filter.to_query()).ok(),
                    Some(filter)
                ),
                Err(e) => prop_assert_eq!(e.field, "status"),
            }
        }
    }
}

mod definitions {
    use super::*;

    /// Printable text: what a person puts in a definition's free-text fields.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,16}",
            // Words YAML would read as something other than a string if left unquoted.
            prop::sample::select(vec![
                "~", "null", "true", "no", "0x1F", "1e3", "- a", "a: b", "#c", "'", "\""
            ])
            .prop_map(String::from),
        ]
    }

    fn ports() -> impl Strategy<Value = Vec<u16>> {
        prop::collection::vec(1u16.., 0..3)
    }

    fn image() -> impl Strategy<Value = ImageSpec> {
        (
            text().prop_filter("an image has a name", |n| !n.trim().is_empty()),
            ports(),
        )
            .prop_map(|(name, internal_ports)| ImageSpec {
                name,
                internal_ports,
            })
    }

    fn repository() -> impl Strategy<Value = RepositorySpec> {
        (
            text().prop_filter("a repository has a URL", |u| !u.trim().is_empty()),
            text(),
            text(),
            text(),
            ports(),
        )
            .prop_map(
                |(url, version, build_context, container_file, internal_ports)| RepositorySpec {
                    url,
                    version,
                    build_context,
                    container_file,
                    internal_ports,
                },
            )
    }

    prop_compose! {
        fn definition()(
            id in "[A-Za-z0-9._-]{1,40}",
            source in prop_oneof![
                Just((None, None)),
                image().prop_map(|i| (Some(i), None)),
                repository().prop_map(|r| (None, Some(r))),
            ],
            api_specs in prop::collection::vec(
                (
                    text(),
                    text(),
                    text(),
                    prop::collection::btree_map(
                        text().prop_filter("a metadata key is named", |k| !k.is_empty()),
                        text(),
                        0..3,
                    ),
                )
                    .prop_map(|(url, protocol_type, version, metadata): (_, _, _, BTreeMap<_, _>)| {
                        ApiSpec { url, protocol_type, version, metadata }
                    }),
                0..3,
            ),
            clients in prop::collection::vec(
                (prop::sample::select(Client::LANGUAGES.to_vec()), text())
                    .prop_map(|(language, url)| Client { language: language.into(), url }),
                0..3,
            ),
            envars in prop::collection::vec(
                (text().prop_filter("a variable has a name", |k| !k.is_empty()), text())
                    .prop_map(|(key, value)| EnvVar { key, value }),
                0..3,
            ),
            ports in prop::collection::vec(
                (any::<u16>(), 1u16..).prop_map(|(internal, host)| PortMapping { internal, host }),
                0..3,
            ),
        ) -> Definition {
            let (image, repository) = source;
            Definition { id, image, repository, api_specs, clients, envars, ports }
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn a_definition_reads_back_from_json_and_yaml(definition in definition()) {
            let json = serde_json::to_string(&definition).unwrap();
            let from_json: DefinitionInput = serde_json::from_str(&json)
                .map_err(|e| TestCaseError::fail(format!("{json}: {e}")))?;
            let read = from_json.into_definition().ok();
            prop_assert_eq!(read.as_ref(), Some(&definition), "{}", json);

            let yaml = serde_yaml_ng::to_string(&definition).unwrap();
            let from_yaml: DefinitionInput = serde_yaml_ng::from_str(&yaml)
                .map_err(|e| TestCaseError::fail(format!("{yaml}: {e}")))?;
            let read = from_yaml.into_definition().ok();
            prop_assert_eq!(read.as_ref(), Some(&definition), "{}", yaml);
        }

        /// Any text is read as a definition or refused; one accepted is accepted again
        /// from its own JSON, unchanged.
        #[test]
        fn any_text_gives_a_stable_definition_or_an_error(
            text in prop_oneof![
                hostile_text(),
                // Near misses of real definitions.
                "\\{\"id\": ?\"[a-z.]{0,5}\", ?\"(image|repository|hostPort|ports)\": ?(null|1|\"x\"|\\{\\}|\\[0\\]|\\{\"port\": ?[0-9]{1,6}\\})\\}",
                "id: [a-z]{0,5}\n(image|repository|hostPort|envars): (~|1|x|\\[\\]|\\{port: [0-9]{1,6}\\}|\\{name: a, port: [0-9]{1,6}\\})\n",
            ],
        ) {
            for input in [
                serde_json::from_str::<DefinitionInput>(&text).ok(),
                serde_yaml_ng::from_str::<DefinitionInput>(&text).ok(),
            ]
            .into_iter()
            .flatten()
            {
                if let Ok(definition) = input.into_definition() {
                    let json = serde_json::to_string(&definition).unwrap();
                    let again = serde_json::from_str::<DefinitionInput>(&json).unwrap().into_definition();
                    let again = again.ok();
                    prop_assert_eq!(again.as_ref(), Some(&definition));
                }
            }
        }
    }
}
