//! Small validation rules shared by several resources.

use crate::limits::MAX_ID_LEN;
use crate::FieldError;

/// Ids of definitions, instances and tokens: 1–128 characters of `[A-Za-z0-9._-]`.
/// The rule keeps ids safe to put in a URL path segment unescaped.
pub fn validate_id(field: &str, id: &str) -> Result<(), FieldError> {
    if id.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    validate_length(field, id, MAX_ID_LEN)?;
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

/// The pattern [`validate_id`] enforces, for the OpenAPI document.
pub const ID_PATTERN: &str = "^[A-Za-z0-9._-]{1,128}$";

/// Account slugs follow the id rule.
pub fn validate_slug(field: &str, slug: &str) -> Result<(), FieldError> {
    validate_id(field, slug)
}

/// A tag (of an instance, or asked for in a filter): one-line text of 1–128 bytes.
pub fn validate_tag(field: &str, tag: &str) -> Result<(), FieldError> {
    if tag.is_empty() {
        return Err(FieldError::new(field, "is empty"));
    }
    validate_text(field, tag, MAX_ID_LEN)
}

/// A one-line text field (a name, a tag, a URL): at most `max` bytes and no control
/// characters, which have no place in a name and can rewrite a terminal that prints it.
pub(crate) fn validate_text(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    validate_length(field, value, max)?;
    refuse_control(field, value, |_| false)
}

/// Free text (a metadata or environment value): as [`validate_text`], but tabs and line
/// breaks are allowed.
pub(crate) fn validate_free_text(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    validate_length(field, value, max)?;
    refuse_control(field, value, |c| matches!(c, '\t' | '\n' | '\r'))
}

/// The pattern of a one-line text field, for the OpenAPI document.
pub const TEXT_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*$";

fn validate_length(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.len() > max {
        return Err(FieldError::new(
            field,
            format!("is {} bytes long, at most {max} allowed", value.len()),
        ));
    }
    Ok(())
}

fn refuse_control(
    field: &str,
    value: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), FieldError> {
    match value.chars().find(|c| c.is_control() && !allowed(*c)) {
        Some(bad) => Err(FieldError::new(
            field,
            format!("contains the control character {bad:?}"),
        )),
        None => Ok(()),
    }
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

    #[test]
    fn text_refuses_control_characters_free_text_keeps_line_breaks() {
        assert!(validate_text("tags[0]", "blue-é", 128).is_ok());
        for bad in ["a\u{1b}[2J", "a\nb", "\u{7f}", "\u{9b}31m"] {
            let err = validate_text("tags[0]", bad, 128).unwrap_err();
            assert_eq!(err.field, "tags[0]");
            assert!(err.problem.contains("control character"), "{}", err.problem);
        }
        assert!(validate_free_text("v", "line 1\nline 2\tx\r\n", 128).is_ok());
        assert!(validate_free_text("v", "\u{1b}[2J", 128).is_err());
        assert!(validate_text("t", &"a".repeat(129), 128).is_err());
    }

    #[test]
    fn published_patterns_agree_with_the_rules() {
        let id = regex::Regex::new(ID_PATTERN).unwrap();
        let text = regex::Regex::new(TEXT_PATTERN).unwrap();
        for sample in [
            "a",
            "user-svc_v1.2",
            "",
            "a/b",
            "a b",
            "é",
            "a\u{1b}",
            "x\u{85}",
        ] {
            assert_eq!(
                id.is_match(sample),
                validate_id("f", sample).is_ok(),
                "{sample:?}"
            );
            assert_eq!(
                text.is_match(sample),
                validate_text("f", sample, 128).is_ok(),
                "{sample:?}"
            );
        }
    }
}
