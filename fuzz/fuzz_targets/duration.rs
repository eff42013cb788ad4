//! Any text is a duration or an error naming the field; a duration read back from
//! humantime's writing of it is the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_types::parse_duration;

fuzz_target!(|text: &str| {
    match parse_duration("ttl", text) {
        Ok(duration) => {
            let written = humantime::format_duration(duration).to_string();
            assert_eq!(parse_duration("ttl", &written).ok(), Some(duration));
        }
        Err(e) => assert_eq!(e.field, "ttl"),
    }
});
