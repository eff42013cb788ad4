use crate::FieldError;
use std::time::Duration;

/// Parses a duration string with a unit (`500ms`, `10s`, `5m`, `1h`), as used by `healthCheck`,
/// `ttl` and `deregisterAfter`. A bare number or an unknown unit is an error naming `field`.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, FieldError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(FieldError::new(
            field,
            "is empty; expected a duration like \"10s\"",
        ));
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return Err(FieldError::new(
            field,
            format!("{text:?} has no unit; write e.g. \"{text}s\" or \"{text}ms\""),
        ));
    }
    humantime::parse_duration(text).map_err(|e| {
        FieldError::new(
            field,
            format!("{text:?} is not a duration ({e}); expected e.g. \"500ms\", \"10s\", \"5m\""),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_units() {
        assert_eq!(
            parse_duration("d", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("d", "10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("d", "5m").unwrap(), Duration::from_secs(300));
    }

    #[test]
    fn rejects_missing_unit_and_garbage() {
        let err = parse_duration("ttl", "30").unwrap_err();
        assert_eq!(err.field, "ttl");
        assert!(err.problem.contains("no unit"));
        assert!(parse_duration("ttl", "soon").is_err());
        assert!(parse_duration("ttl", "").is_err());
    }
}
