//! Property tests of the query parsers of the list and feed endpoints: pages (`limit`,
//! `after`), blocking queries (`index`, `wait`) and the event stream (`since`, `kind`,
//! `Last-Event-ID`). Any query gives a value or a 400 naming the parameter, never a
//! panic; what a client writes reads back as it meant it.

use super::page::Page;
use crate::feed::{Blocking, StreamQuery};
use registry_types::limits::PAGE_LIMIT;

const MAX_LIMIT: usize = PAGE_LIMIT.1;
use crate::error::Error;
use proptest::prelude::*;
use registry_store::Kind;
use std::time::Duration;
use url::form_urlencoded::Serializer;

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

/// The parameter a 400 names.
fn field(error: &Error) -> &str {
    match error {
        Error::BadRequest(message) => message
            .strip_prefix("invalid field `")
            .and_then(|rest| rest.split_once('`'))
            .map_or("", |(field, _)| field),
        _ => "",
    }
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
        let page = Page::from_query(&query(&pairs)).map_err(|e| TestCaseError::fail(e.to_string()))?;
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
        let err = Page::from_query(&query(&[("limit", limit)])).unwrap_err();
        prop_assert_eq!(err.field, "limit");
    }

    #[test]
    fn any_query_gives_a_page_or_a_limit_error(text in hostile_query()) {
        match Page::from_query(&text) {
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
        let blocking = Blocking::from_query(&query(&pairs)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(blocking, Blocking { index, wait });
    }

    #[test]
    fn any_query_gives_a_blocking_query_or_an_index_or_wait_error(text in hostile_query()) {
        if let Err(e) = Blocking::from_query(&text) {
            prop_assert!(["index", "wait"].contains(&field(&e)), "{}", e);
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
        let stream = StreamQuery::from_query(&query(&pairs)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(stream, StreamQuery { since, kinds });
    }

    #[test]
    fn a_since_that_is_no_revision_is_refused_naming_it(since in prop_oneof![
        (u64::MAX as u128 + 1..).prop_map(|n| n.to_string()),
        any::<i64>().prop_filter("negative", |n| *n < 0).prop_map(|n| n.to_string()),
        "[^0-9+]\\PC{0,5}",
        Just(String::new()),
    ]) {
        let err = StreamQuery::from_query(&query(&[("since", since)])).unwrap_err();
        prop_assert_eq!(field(&err), "since");
    }

    #[test]
    fn any_query_gives_a_stream_or_a_since_or_kind_error(text in hostile_query()) {
        match StreamQuery::from_query(&text) {
            Ok(stream) => prop_assert!(!stream.kinds.contains(&Kind::Token)),
            Err(e) => prop_assert!(["since", "kind"].contains(&field(&e)), "{}", e),
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
}
