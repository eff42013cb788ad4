//! The `Caller` extractor: the account behind a request's bearer token.

use super::{hash_token, Actor, Permission, ENV_ADMIN_TOKEN_ID};
use crate::api::ApiState;
use crate::Error;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use registry_store::Kind;
use registry_types::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token and its account's slug; the changes this caller makes carry it.
    pub actor: Actor,
    pub role: Role,
    /// A trusted slug (e.g. `deploy-svc`) manages instances of every slug.
    pub trusted: bool,
}

impl Caller {
    pub fn slug(&self) -> &str {
        self.actor.slug()
    }

    pub fn require(&self, permission: Permission) -> Result<(), Error> {
        if permission.granted_to(self.role) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "account {:?} ({}) lacks permission {}",
                self.slug(),
                self.role,
                permission.name()
            )))
        }
    }

    /// Whether this caller may register, change or remove instances owned by `slug`.
    pub fn may_manage(&self, slug: &str) -> bool {
        self.role == Role::Admin || self.trusted || self.slug() == slug
    }

    /// 403 unless this caller may change instance `id`, owned by `owner`.
    pub fn ensure_manages(&self, id: &str, owner: &str) -> Result<(), Error> {
        if self.may_manage(owner) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "instance {id:?} belongs to {owner:?}; account {:?} may not change it",
                self.slug()
            )))
        }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            Error::Unauthorized(
                "missing token: send the header `Authorization: Bearer <token>`".into(),
            )
        })?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        // A token verified under the current revision of the tokens is still valid:
        // any creation or revocation moves the revision on, and with it every entry.
        let tables = app.registry.read();
        let revision = tables.kind_revision(Kind::Token);
        if let Some(caller) = app.verified_tokens.get(secret, revision) {
            app.rate_limits.admit_token(secret)?;
            return Ok(caller);
        }
        let hash = hash_token(secret);
        let (actor, role) = if app.admin_token_hash.as_deref() == Some(hash.as_str()) {
            (Actor::token(ENV_ADMIN_TOKEN_ID, "admin"), Role::Admin)
        } else {
            let token = tables
                .token_by_hash(&hash)
                .ok_or_else(|| Error::Unauthorized("unknown or revoked token".into()))?;
            (Actor::token(&token.id, &token.slug), token.role)
        };
        drop(tables);
        let trusted = app.trusted_slugs.iter().any(|s| s == actor.slug());
        let caller = Caller {
            actor,
            role,
            trusted,
        };
        app.verified_tokens.put(secret, revision, caller.clone());
        app.rate_limits.admit_token(secret)?;
        Ok(caller)
    }
}
