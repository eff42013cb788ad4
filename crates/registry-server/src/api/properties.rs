//! Property tests of the queries of the list and feed endpoints: pages (`limit`,
//! `after`), blocking queries (`index`, `wait`), the event stream (`since`, `kind`,
//! `Last-Event-ID`) and an instance list's whole query. Any query gives a value or an
//! error naming the parameter, never a panic; what a client writes reads back as it
//! meant it.

use super::page::Page;
use super::query::{Instances, ListQuery};
use crate::feed::{Blocking, StreamQuery};
use registry_types::limits::PAGE_LIMIT;
use registry_types::query::parse;
use registry_types::{InstanceFilter, InstanceStatus};

use proptest::prelude::*;
use registry_store::Kind;
use std::time::Duration;
use url::form_urlencoded::Serializer;

const MAX_LIMIT: usize = PAGE_LIMIT.1;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Queries biased towards the parameters these parsers read, with hostile values.
fn hostile_query() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        any::<String>(),
        "[0-9]{0,25}",
        "-?[0-9]{1,3}(\\.[0-9])?(ms|s|m|h|d)?",
        "[%&=+#;é😀 \\x00-]{0,8}",
    ];
    let key = prop_oneof![
        prop::sample::select(vec!["limit", "after", "index", "wait", "since", "kind"])
            .prop_map(String::from),
        any::<String>(),
    ];
    prop_oneof![
        any::<String>(),
        prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
            let mut query = Serializer::new(String::new());
            query.extend_pairs(pairs);
            query.finish()
        }),
        "[a-z]{1,6}=[%0-9a-zA-Z&=]{0,10}(&[a-z]{1,6}=[%0-9a-zA-Z]{0,10}){0,2}",
    ]
}

fn query(pairs: &[(&str, String)]) -> String {
    let mut query = Serializer::new(String::new());
    query.extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    query.finish()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_page_reads_back(limit in prop::option::of(1..=MAX_LIMIT), after in prop::option::of(any::<String>())) {
        let mut pairs = Vec::new();
        if let Some(limit) = limit {
            pairs.push(("limit", limit.to_string()));
        }
        if let Some(after) = &after {
            pairs.push(("after", after.clone()));
        }
        let page: Page = parse(&query(&pairs)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // An empty `after` means the start, as no `after` does.
        prop_assert_eq!(page, Page { limit, after: after.filter(|a| !a.is_empty()) });
    }

    #[test]
    fn a_limit_out_of_range_is_refused_naming_it(limit in prop_oneof![
        Just("0".to_string()),
        (MAX_LIMIT as u128 + 1..).prop_map(|n| n.to_string()),
        any::<i64>().prop_filter("negative", |n| *n < 0).prop_map(|n| n.to_string()),
        "[^0-9]\\PC{0,5}",
    ]) {
        let err = parse::<Page>(&query(&[("limit", limit)])).unwrap_err();
        prop_assert_eq!(err.field, "limit");
    }

    #[test]
    fn any_query_gives_a_page_or_a_limit_error(text in hostile_query()) {
        match parse::<Page>(&text) {
            Ok(page) => prop_assert!(page.limit.is_none_or(|l| (1..=MAX_LIMIT).contains(&l))),
            Err(e) => prop_assert_eq!(e.field, "limit"),
        }
    }

    #[test]
    fn a_blocking_query_reads_back(
        index in prop::option::of(0..=i64::MAX as u64),
        wait_ms in prop::option::of(0u64..=600_000),
    ) {
        let wait = wait_ms.map(Duration::from_millis);
        let mut pairs = Vec::new();
        if let Some(index) = index {
            pairs.push(("index", index.to_string()));
        }
        if let Some(ms) = wait_ms {
            pairs.push(("wait", format!("{ms}ms")));
        }
        let blocking: Blocking = parse(&query(&pairs)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(blocking, Blocking { index, wait });
    }

    #[test]
    fn any_query_gives_a_blocking_query_or_an_index_or_wait_error(text in hostile_query()) {
        if let Err(e) = parse::<Blocking>(&text) {
            prop_assert!(["index", "wait"].contains(&e.field.as_str()), "{}", e);
        }
    }

    #[test]
    fn an_event_stream_query_reads_back(
        since in prop::option::of(0..=i64::MAX as u64),
        kinds in prop::collection::vec(
            prop::sample::select(vec![Kind::Definition, Kind::Instance, Kind::Node]),
            0..4,
        ),
    ) {
        let mut pairs: Vec<(&str, String)> = since.iter().map(|s| ("since", s.to_string())).collect();
        pairs.extend(kinds.iter().map(|k| ("kind", k.as_str().to_string())));
        let stream: StreamQuery = parse(&query(&pairs)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(stream, StreamQuery { since, kinds });
    }

    #[test]
    fn a_since_that_is_no_revision_is_refused_naming_it(since in prop_oneof![
        (u64::MAX as u128 + 1..).prop_map(|n| n.to_string()),
        any::<i64>().prop_filter("negative", |n| *n < 0).prop_map(|n| n.to_string()),
        "[^0-9+]\\PC{0,5}",
        Just(String::new()),
    ]) {
        let err = parse::<StreamQuery>(&query(&[("since", since)])).unwrap_err();
        prop_assert_eq!(err.field, "since");
    }

    #[test]
    fn any_query_gives_a_stream_or_a_since_or_kind_error(text in hostile_query()) {
        match parse::<StreamQuery>(&text) {
            Ok(stream) => prop_assert!(!stream.kinds.contains(&Kind::Token)),
            Err(e) => prop_assert!(["since", "kind"].contains(&e.field.as_str()), "{}", e),
        }
    }

    /// A reconnecting EventSource's `Last-Event-ID` is the revision it carries (one the
    /// stores can hold); any other header value is ignored rather than refused.
    #[test]
    fn last_event_id_is_the_revision_it_carries(
        value in prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| format!(" {n}\t")),
            "\\PC{0,12}",
        ],
    ) {
        let mut headers = axum::http::HeaderMap::new();
        if let Ok(header) = axum::http::HeaderValue::from_str(&value) {
            headers.insert("last-event-id", header);
            let revision = value.trim().parse::<u64>().ok().filter(|r| *r <= i64::MAX as u64);
            prop_assert_eq!(crate::feed::last_event_id(&headers), revision);
        }
    }

    /// An instance list's query reads as its three parts each read alone; a bad value is
    /// reported from the filters first, then the page, then the blocking parameters.
    #[test]
    fn an_instance_list_query_reads_as_its_parts(text in hostile_query_with_filters()) {
        let parts = (parse::<InstanceFilter>(&text), parse::<Page>(&text), parse::<Blocking>(&text));
        match (ListQuery::<Instances>::parse(&text), parts) {
            (Ok(list), (Ok(filter), Ok(page), Ok(blocking))) => {
                prop_assert_eq!(list.filter, filter);
                prop_assert_eq!(list.page, page);
                prop_assert_eq!(list.blocking, blocking);
            }
            (Err(e), (Err(first), _, _) | (Ok(_), Err(first), _) | (Ok(_), Ok(_), Err(first))) => {
                prop_assert_eq!(e, first);
            }
            (list, parts) => prop_assert!(false, "{:?} but {:?}", list.map(|_| ()), parts),
        }
    }
}

/// [`hostile_query`], with the instance filters among the keys.
fn hostile_query_with_filters() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "status", "slug", "tag", "limit", "after", "index", "wait", "other",
    ]);
    let value = prop_oneof![
        prop::sample::select(InstanceStatus::ALL.map(|s| s.as_str().to_string()).to_vec()),
        "[0-9]{0,6}(ms|s|m)?",
        any::<String>(),
    ];
    prop_oneof![
        hostile_query(),
        prop::collection::vec((key, value), 0..5).prop_map(|pairs| {
            let mut query = Serializer::new(String::new());
            query.extend_pairs(pairs);
            query.finish()
        }),
    ]
}
