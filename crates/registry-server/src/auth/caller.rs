//! The `Caller` extractor: the account behind a request's bearer token.
//!
//! The extractor needs only [`AuthState`], which it gets from the router's state through
//! axum's `FromRef`, so auth never knows the API's state; and it looks tokens up through
//! [`TokenTable`], so it never knows the registry's tables either.

use super::{hash_token, user_svc, Actor, Permission, StoredToken, UserSvcKey, ENV_ADMIN_TOKEN_ID};
use crate::cache::VersionedCache;
use crate::rate_limit::RateLimits;
use crate::Error;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use registry_types::Role;
use std::sync::Arc;

/// Where the [`Caller`] extractor looks tokens up: the registry's tables, which sit in
/// the layer above auth and implement this.
pub(crate) trait TokenTable: Send + Sync {
    /// Revision of the latest change to the tokens. A caller verified under it stays
    /// verified until it moves: any creation or revocation moves it.
    fn tokens_revision(&self) -> u64;

    /// The stored token whose secret hashes to `hash`, with the revision of the tokens
    /// it was read at.
    fn token_by_hash(&self, hash: &str) -> (u64, Option<Arc<StoredToken>>);
}

/// What authenticating a request takes: the substate of the router's state that the
/// [`Caller`] extractor reaches through `FromRef`.
pub(crate) struct AuthState {
    pub(crate) tokens: Arc<dyn TokenTable>,
    /// Hash of `REGISTRY_ADMIN_TOKEN`, when set.
    pub(crate) admin_token_hash: Option<String>,
    pub(crate) trusted_slugs: Arc<[String]>,
    /// The User Svc's public key, when its JWTs are accepted.
    pub(crate) user_svc: Option<Arc<UserSvcKey>>,
    /// Callers by token secret, for one revision of the tokens.
    pub(crate) verified_tokens: VersionedCache<Caller, u64>,
    /// Requests counted per token and per source address.
    pub(crate) rate_limits: RateLimits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The token and its account's slug; the changes this caller makes carry it.
    pub actor: Actor,
    pub role: Role,
    /// A trusted slug (e.g. `deploy-svc`) manages instances of every slug, and deletes
    /// definitions and nodes.
    pub trusted: bool,
}

impl Caller {
    pub(crate) fn slug(&self) -> &str {
        self.actor.slug()
    }

    pub(crate) fn require(&self, permission: Permission) -> Result<(), Error> {
        if permission.granted(self.role, self.trusted) {
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
    pub(crate) fn may_manage(&self, slug: &str) -> bool {
        self.role == Role::Admin || self.trusted || self.slug() == slug
    }

    /// 403 unless this caller may change instance `id`, owned by `owner`.
    pub(crate) fn ensure_manages(&self, id: &str, owner: &str) -> Result<(), Error> {
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

/// The secret of a request's `Authorization: Bearer <token>` header (the scheme word in
/// any case); 401 when it is missing or not of that form.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, Error> {
    let header = headers.get(AUTHORIZATION).ok_or_else(|| {
        Error::Unauthorized("missing token: send the header `Authorization: Bearer <token>`".into())
    })?;
    header
        .to_str()
        .ok()
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            Error::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<AuthState>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<AuthState>::from_ref(state);
        let secret = bearer_token(&parts.headers)?;
        // A token verified under the current revision of the tokens is still valid:
        // any creation or revocation moves the revision on, and with it every entry.
        let revision = auth.tokens.tokens_revision();
        if let Some(caller) = auth.verified_tokens.get(secret, revision) {
            auth.rate_limits.admit_token(secret)?;
            return Ok(caller);
        }
        let hash = hash_token(secret);
        let (actor, role, revision) = if auth.admin_token_hash.as_deref() == Some(hash.as_str()) {
            let actor = Actor::token(ENV_ADMIN_TOKEN_ID, "admin");
            (actor, Role::Admin, revision)
        } else {
            // The token and the revision it is cached under are read together.
            let (revision, token) = auth.tokens.token_by_hash(&hash);
            match token {
                Some(token) => (Actor::token(&token.id, &token.slug), token.role, revision),
                // A User Svc token is verified on every request (it may expire, and its
                // key may rotate), so it is never cached.
                None if user_svc::is_jwt(secret) => {
                    let (actor, role) = user_svc::verify(auth.user_svc.as_deref(), secret)?;
                    auth.rate_limits.admit_token(secret)?;
                    return Ok(auth.caller(actor, role));
                }
                None => return Err(Error::Unauthorized("unknown or revoked token".into())),
            }
        };
        let caller = auth.caller(actor, role);
        auth.verified_tokens.put(secret, revision, caller.clone());
        auth.rate_limits.admit_token(secret)?;
        Ok(caller)
    }
}

impl AuthState {
    fn caller(&self, actor: Actor, role: Role) -> Caller {
        let trusted = self.trusted_slugs.iter().any(|s| s == actor.slug());
        Caller {
            actor,
            role,
            trusted,
        }
    }
}
