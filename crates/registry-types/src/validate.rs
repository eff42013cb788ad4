//! Small validation rules shared by several resources.

use crate::FieldError;

/// Longest id, slug, tag or metadata key accepted.
pub const MAX_ID_LEN: usize = 128;

/// Ids of definitions, instances and tokens: 1–128 characters of `[A-Za-z0-9._-]`.
/// The rule keeps ids safe to put in a URL path segment unescaped.
pub fn validate_id(field: &str, id: &str) -> Result<(), FieldError> {
    if id.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(FieldError::new(
            field,
            format!(
                "is {} characters long, at most {MAX_ID_LEN} allowed",
                id.len()
            ),
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(FieldError::new(
            field,
            format!("contains {bad:?}; only A-Z, a-z, 0-9, '.', '_' and '-' are allowed"),
        ));
    }
    Ok(())
}

/// Account slugs follow the id rule.
pub fn validate_slug(field: &str, slug: &str) -> Result<(), FieldError> {
    validate_id(field, slug)
}

/// A free-text field with an upper bound, so one request cannot bloat every listing.
pub(crate) fn validate_len(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.len() > max {
        return Err(FieldError::new(
            field,
            format!("is {} characters long, at most {max} allowed", value.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_alphabet() {
        assert!(validate_id("id", "user-svc_v1.2").is_ok());
        assert!(validate_id("id", &"a".repeat(128)).is_ok());
    }

    #[test]
    fn ids_reject_empty_long_and_odd_characters() {
        assert_eq!(validate_id("id", "").unwrap_err().problem, "is required");
        assert!(validate_id("id", &"a".repeat(129)).is_err());
        let err = validate_id("definition.id", "a/b").unwrap_err();
        assert_eq!(err.field, "definition.id");
        assert!(err.problem.contains("'/'"), "{}", err.problem);
        assert!(validate_id("id", "a b").is_err());
        assert!(validate_id("id", "é").is_err());
    }
}
