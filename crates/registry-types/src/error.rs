use serde::{Deserialize, Serialize};
use std::fmt;

/// The body of every error response: `{"error": "..."}`, written for a person.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub error: String,
}

/// A request field that failed validation, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `definition.image.name`.
    pub field: String,
    /// Why the value was refused, e.g. `must start with '/'`.
    pub problem: String,
}

impl FieldError {
    /// An error naming `field` (its JSON path) and the `problem` with it.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The same error, reported under an enclosing object (`definition` + `id` → `definition.id`).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid field `{}`: {}", self.field, self.problem)
    }
}

impl std::error::Error for FieldError {}
