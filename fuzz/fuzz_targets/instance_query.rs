//! Any query string is an instance filter or an error naming `status`; a filter read
//! once reads back equal from the query it writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_types::{query, InstanceFilter};

fuzz_target!(|query: &str| {
    match query::parse::<InstanceFilter>(query) {
        Ok(filter) => assert_eq!(
            query::parse::<InstanceFilter>(&filter.to_query()).ok(),
            Some(filter)
        ),
        Err(e) => assert_eq!(e.field, "status"),
    }
});
