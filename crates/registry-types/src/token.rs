//! API tokens and the roles they carry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May look at definitions, instances and nodes, and manage its own slug's instances.
    #[default]
    User,
    /// May do everything: definitions, any slug's instances, nodes, tokens, backups.
    Admin,
}

impl Role {
    /// The role as the API writes it: `user` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            _ => Err(format!(
                "{s:?} is not a role; expected \"user\" or \"admin\""
            )),
        }
    }
}

/// Body of `POST /registry-svc/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateTokenRequest {
    /// The slug (service account) the token acts for.
    #[serde(default)]
    pub slug: String,
    /// Defaults to `user`.
    #[serde(default)]
    pub role: Option<Role>,
}

/// Answer to token creation: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    /// The token's id (`tok_…`), to revoke it by.
    pub id: String,
    /// The secret to send as `Authorization: Bearer <token>`; shown only in this answer.
    pub token: String,
    /// The slug the token acts for.
    pub slug: String,
    /// What the token may do.
    pub role: Role,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// The token's id (`tok_…`).
    pub id: String,
    /// The slug the token acts for.
    pub slug: String,
    /// What the token may do.
    pub role: Role,
    /// When the token was created.
    pub created_at: DateTime<Utc>,
}
