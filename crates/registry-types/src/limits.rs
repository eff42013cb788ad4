//! The range of every value a caller may send, in one place.
//!
//! Validation reads these constants, and so does the daemon's OpenAPI document, so that a
//! client generated from `/openapi.json` learns the same bounds the server enforces.
//! Durations are bounded on both sides: a floor keeps one registration from turning the
//! health checker into an amplifier aimed at some address, and a ceiling keeps every
//! timer the daemon sets for it within what its clocks can hold.

use crate::FieldError;
use std::time::Duration;

/// Longest id, slug, tag or metadata key.
pub const MAX_ID_LEN: usize = 128;
/// Longest URL.
pub const MAX_URL_LEN: usize = 2048;
/// Longest free text: a metadata value, an image name, an environment variable.
pub const MAX_TEXT_LEN: usize = 4096;
/// Most tags on one instance.
pub const MAX_TAGS: usize = 64;
/// Most metadata keys on one instance or API spec.
pub const MAX_METADATA: usize = 64;
/// Most entries in each list of a definition (ports, environment, API specs, clients).
pub const MAX_LIST_LEN: usize = 256;
/// Most ids in one `POST /nodes` body.
pub const MAX_IDS: usize = 1000;
/// Check thresholds: how many results in a row change a status.
pub const THRESHOLD: (u32, u32) = (1, 100);
/// Page sizes of the list endpoints.
pub const PAGE_LIMIT: (usize, usize) = (1, 10_000);
/// Highest revision: the stores keep revisions as signed 64-bit integers.
pub const MAX_REVISION: u64 = i64::MAX as u64;

/// Longest User Svc token (a JWT) the daemon reads; a token that size already holds far more
/// roles than any account has.
pub const MAX_USER_SVC_TOKEN_LEN: usize = 16 * 1024;
/// Clock skew allowed when reading a User Svc token's `exp` and `nbf`, in seconds.
pub const USER_SVC_TOKEN_LEEWAY_SECS: u64 = 60;

/// The durations a field accepts, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    /// The shortest duration accepted.
    pub min: Duration,
    /// The longest duration accepted.
    pub max: Duration,
}

const fn range(min: Duration, max: Duration) -> DurationRange {
    DurationRange { min, max }
}

const SECOND: Duration = Duration::from_secs(1);
const MILLISECOND: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// `healthCheck.interval`.
pub const CHECK_INTERVAL: DurationRange = range(SECOND, DAY);
/// `healthCheck.timeout` (a check never outlasts its interval either).
pub const CHECK_TIMEOUT: DurationRange = range(MILLISECOND, HOUR);
/// `healthCheck.degradedLatency`.
pub const DEGRADED_LATENCY: DurationRange = range(MILLISECOND, HOUR);
/// `ttl`: how long an instance that heartbeats itself may stay silent.
pub const TTL: DurationRange = range(SECOND, Duration::from_secs(7 * 86_400));
/// `deregisterAfter`: how long an unreachable instance is kept.
pub const DEREGISTER_AFTER: DurationRange = range(SECOND, Duration::from_secs(30 * 86_400));
/// `wait` of a blocking query.
pub const BLOCKING_WAIT: DurationRange = range(Duration::ZERO, Duration::from_secs(600));
/// A node's heartbeat interval (`serve --heartbeat-interval`).
pub const HEARTBEAT_INTERVAL: DurationRange = range(SECOND, HOUR);
/// `serve --header-timeout`: time to send a request's headers.
pub const HEADER_TIMEOUT: DurationRange =
    range(Duration::from_millis(50), Duration::from_secs(300));
/// `serve --body-timeout`: time to send a request's body.
pub const BODY_TIMEOUT: DurationRange = range(Duration::from_millis(50), HOUR);
/// `serve --idle-timeout`: how long a keep-alive connection may wait for a request.
pub const IDLE_TIMEOUT: DurationRange = range(Duration::from_millis(50), HOUR);

/// `serve --user-svc-key-refresh`: how often the User Svc's public key is fetched again.
pub const USER_SVC_KEY_REFRESH: DurationRange = range(SECOND, DAY);

/// The units a duration field accepts, with their length; a duration is one whole
/// number and one unit (`500ms`, `10s`, `90m`), which a pattern can check exactly.
const UNITS: [(&str, Duration); 5] = [
    ("ms", MILLISECOND),
    ("s", SECOND),
    ("m", Duration::from_secs(60)),
    ("h", HOUR),
    ("d", DAY),
];

impl DurationRange {
    /// Parses `text` as a duration in this range; errors name `field`. Exactly the texts
    /// [`DurationRange::pattern`] matches are accepted.
    pub fn parse(&self, field: &str, text: &str) -> Result<Duration, FieldError> {
        let duration = parse_whole_duration(text).ok_or_else(|| {
            FieldError::new(
                field,
                format!(
                    "{text:?} is not a duration; write a whole number and one unit of ms, s, m, h or d (e.g. \"500ms\", \"10s\", \"90m\"), {}",
                    self.describe()
                ),
            )
        })?;
        if self.contains(duration) {
            Ok(duration)
        } else {
            Err(FieldError::new(
                field,
                format!("{text:?} is out of range; {}", self.describe()),
            ))
        }
    }

    /// Whether `duration` is within the range.
    pub fn contains(&self, duration: Duration) -> bool {
        (self.min..=self.max).contains(&duration)
    }

    /// The nearest duration in range: how a stored value written under older rules is
    /// read, so that it cannot stop the checks.
    pub fn clamp(&self, duration: Duration) -> Duration {
        duration.clamp(self.min, self.max)
    }

    /// `from 1s to 1d`, for errors and the API document.
    pub fn describe(&self) -> String {
        format!(
            "from {} to {}",
            format_duration(self.min),
            format_duration(self.max)
        )
    }

    /// A regular expression matching exactly the durations in this range, in every unit
    /// that can express one, for the API document.
    pub fn pattern(&self) -> String {
        let per_unit: Vec<String> = UNITS
            .iter()
            .filter_map(|(name, unit)| {
                let unit = unit.as_millis();
                let least = self.min.as_millis().div_ceil(unit);
                let most = self.max.as_millis() / unit;
                (least <= most).then(|| format!("(?:{}){name}", number_pattern(least, most)))
            })
            .collect();
        format!("^(?:{})$", per_unit.join("|"))
    }
}

/// One whole number (no sign, no leading zero) and one unit of [`UNITS`].
fn parse_whole_duration(text: &str) -> Option<Duration> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() || (number.len() > 1 && number.starts_with('0')) {
        return None;
    }
    let (_, unit) = UNITS.iter().find(|(name, _)| *name == unit)?;
    let count: u32 = number.parse().ok()?;
    unit.checked_mul(count)
}

/// A duration in the largest unit (ms, s, m, h or d) that holds it whole: `1d`, `90m`,
/// `1500ms`.
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".into();
    }
    let (name, unit) = UNITS
        .iter()
        .rev()
        .find(|(_, unit)| duration.as_millis().is_multiple_of(unit.as_millis()))
        .unwrap_or(&UNITS[0]);
    format!("{}{name}", duration.as_millis() / unit.as_millis())
}

/// A regular expression matching exactly the whole numbers from `least` to `most`,
/// written without leading zeros.
fn number_pattern(least: u128, most: u128) -> String {
    let mut alternatives = Vec::new();
    let digits = |n: u128| n.to_string().len() as u32;
    for width in digits(least)..=digits(most) {
        let low = if width == 1 { 0 } else { 10u128.pow(width - 1) };
        let high = 10u128.pow(width) - 1;
        let (from, to) = (least.max(low), most.min(high));
        if from <= to {
            alternatives.push(same_width(&from.to_string(), &to.to_string()));
        }
    }
    alternatives.join("|")
}

/// Numbers from `from` to `to`, both written with the same number of digits.
fn same_width(from: &str, to: &str) -> String {
    if from == to {
        return from.to_string();
    }
    let (first_from, rest_from) = from.split_at(1);
    let (first_to, rest_to) = to.split_at(1);
    if first_from == first_to {
        return format!("{first_from}(?:{})", same_width(rest_from, rest_to));
    }
    let (a, b) = (first_from.as_bytes()[0], first_to.as_bytes()[0]);
    let width = rest_from.len();
    let mut parts = vec![format!(
        "{first_from}(?:{})",
        same_width(rest_from, &"9".repeat(width))
    )];
    if b - a > 1 {
        let tail = if width == 0 {
            String::new()
        } else {
            format!("[0-9]{{{width}}}")
        };
        parts.push(format!("[{}-{}]{tail}", (a + 1) as char, (b - 1) as char));
    }
    parts.push(format!(
        "{first_to}(?:{})",
        same_width(&"0".repeat(width), rest_to)
    ));
    parts.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_refuse_both_ends_and_name_the_field() {
        assert_eq!(
            CHECK_INTERVAL.parse("interval", "10s").unwrap(),
            Duration::from_secs(10)
        );
        let err = CHECK_INTERVAL.parse("interval", "1ns").unwrap_err();
        assert_eq!(err.field, "interval");
        assert!(err.problem.contains("from 1s to 1d"), "{}", err.problem);
        let err = CHECK_INTERVAL.parse("interval", "300000h").unwrap_err();
        assert!(err.problem.contains("out of range"), "{}", err.problem);
        assert!(TTL.parse("ttl", "7d").is_ok());
        assert!(TTL.parse("ttl", "8d").is_err());
        assert!(BLOCKING_WAIT.parse("wait", "0s").is_ok());
        assert!(BLOCKING_WAIT.parse("wait", "11m").is_err());
        for odd in [
            "",
            "s",
            "10",
            "1.5s",
            "1h30m",
            "01s",
            " 1s",
            "1 s",
            "-1s",
            "1S",
            "99999999999999999999s",
        ] {
            assert!(TTL.parse("ttl", odd).is_err(), "{odd:?}");
        }
    }

    #[test]
    fn clamp_brings_old_values_into_range() {
        assert_eq!(CHECK_INTERVAL.clamp(Duration::from_nanos(1)), SECOND);
        assert_eq!(CHECK_INTERVAL.clamp(Duration::from_secs(u64::MAX)), DAY);
    }

    #[test]
    fn number_patterns_match_exactly_their_range() {
        for (least, most) in [
            (0, 0),
            (0, 9),
            (1, 24),
            (7, 1440),
            (1000, 86_400_000),
            (19, 201),
            (3, 3000),
        ] {
            let pattern =
                regex::Regex::new(&format!("^(?:{})$", number_pattern(least, most))).unwrap();
            for n in 0..=(most + 50).min(100_000) {
                assert_eq!(
                    pattern.is_match(&n.to_string()),
                    (least..=most).contains(&n),
                    "{n} in {least}..={most}"
                );
            }
            assert!(pattern.is_match(&most.to_string()));
            assert!(!pattern.is_match(&(most + 1).to_string()));
            assert!(!pattern.is_match(&format!("0{least}")), "leading zero");
        }
    }

    #[test]
    fn the_published_pattern_and_the_parser_agree() {
        let ranges = [
            CHECK_INTERVAL,
            CHECK_TIMEOUT,
            DEGRADED_LATENCY,
            TTL,
            DEREGISTER_AFTER,
            BLOCKING_WAIT,
        ];
        for range in ranges {
            let pattern = regex::Regex::new(&range.pattern()).unwrap();
            let mut samples: Vec<String> = ["", "1", "1.5s", "1h30m", "01s", "1 s", "1e3s", "10ns"]
                .map(String::from)
                .to_vec();
            for (name, unit) in UNITS {
                for edge in [range.min, range.max] {
                    let at = (edge.as_millis() / unit.as_millis()) as i64;
                    for n in (at - 2).max(0)..=at + 2 {
                        samples.push(format!("{n}{name}"));
                    }
                }
            }
            for text in samples {
                assert_eq!(
                    pattern.is_match(&text),
                    range.parse("f", &text).is_ok(),
                    "{text:?} for {range:?}: {}",
                    range.pattern()
                );
            }
        }
    }

    #[test]
    fn bounds_read_in_the_largest_whole_unit() {
        assert_eq!(CHECK_INTERVAL.describe(), "from 1s to 1d");
        assert_eq!(CHECK_TIMEOUT.describe(), "from 1ms to 1h");
        assert_eq!(BLOCKING_WAIT.describe(), "from 0s to 10m");
    }
}
