//! Tokens issued by the platform's User Svc (OpenOrch, 1Backend): JWTs signed with the
//! User Svc's RSA key, naming an account's slug and its roles.
//!
//! The two platforms name the claims differently (OpenOrch `olu` and `ori`, 1Backend
//! `1sl` and `1ro`); either is read. The platform's admin role makes an admin here; every
//! other account is a user, which manages the instances of its own slug, and a slug in
//! `--trusted-slugs` has a trusted slug's rights (see [`super::Permission`]).

use super::{Actor, UserSvcKey};
use crate::Error;
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::{Algorithm, Validation};
use registry_types::{limits, validate_slug, Role};
use serde::Deserialize;
use std::sync::LazyLock;

/// The role the User Svc gives the platform's administrators.
pub(crate) const PLATFORM_ADMIN_ROLE: &str = "user-svc:admin";

/// The token id on the changes made with a User Svc token. Stored token ids start with
/// `tok_`, so no stored token has it.
pub(crate) const USER_SVC_TOKEN_ID: &str = "user-svc";

/// The User Svc signs with RS256; the platforms' own services accept any RSA PKCS#1
/// signature, and so does this. Never HMAC: a public key is no secret.
const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];

/// The checks besides the signature: `exp` and `nbf` when present (OpenOrch's tokens have
/// neither), with some clock skew allowed; no audience (neither platform sets one).
static VALIDATION: LazyLock<Validation> = LazyLock::new(|| {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.algorithms = ALGORITHMS.to_vec();
    validation.required_spec_claims.clear();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.leeway = limits::USER_SVC_TOKEN_LEEWAY_SECS;
    validation
});

/// What the daemon reads of a User Svc token; every other claim is ignored.
#[derive(Deserialize)]
struct Claims {
    /// OpenOrch's slug claim.
    #[serde(rename = "olu", default)]
    openorch_slug: Option<String>,
    /// 1Backend's slug claim.
    #[serde(rename = "1sl", default)]
    onebackend_slug: Option<String>,
    /// OpenOrch's role ids.
    #[serde(rename = "ori", default)]
    openorch_roles: Option<Vec<String>>,
    /// 1Backend's roles.
    #[serde(rename = "1ro", default)]
    onebackend_roles: Option<Vec<String>>,
}

/// Whether a bearer token is a JWT rather than one of this registry's secrets, which
/// are base62 and never hold a dot.
pub(crate) fn is_jwt(token: &str) -> bool {
    token.contains('.')
}

/// The account behind a User Svc token, verified against `key`: its actor and its role
/// here. A token that fails any check is a 401 naming the problem; a key not fetched yet
/// is a 503, as it is no fault of the caller's.
pub(crate) fn verify(key: Option<&UserSvcKey>, token: &str) -> Result<(Actor, Role), Error> {
    let key = key.ok_or_else(|| {
        Error::Unauthorized(
            "the token is a JWT, but this registry accepts no User Svc tokens (it was started \
             without --user-svc-public-key or --user-svc-url)"
                .into(),
        )
    })?;
    if token.len() > limits::MAX_USER_SVC_TOKEN_LEN {
        return Err(refused(format!(
            "it is {} bytes long; at most {} are read",
            token.len(),
            limits::MAX_USER_SVC_TOKEN_LEN
        )));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| refused(problem(&e, None)))?;
    let decoding_key = key.current().ok_or_else(|| {
        Error::Unavailable(format!(
            "the User Svc's public key has not been fetched yet from {}; try again shortly",
            key.origin()
        ))
    })?;
    let claims = jsonwebtoken::decode::<Claims>(token, &decoding_key, &VALIDATION)
        .map_err(|e| {
            if matches!(e.kind(), ErrorKind::InvalidSignature) {
                key.signature_failed();
            }
            refused(problem(&e, Some(header.alg)))
        })?
        .claims;
    let slug = match (claims.openorch_slug, claims.onebackend_slug) {
        (Some(openorch), Some(onebackend)) if openorch != onebackend => {
            return Err(refused(format!(
                "it names two slugs, {openorch:?} (`olu`) and {onebackend:?} (`1sl`)"
            )))
        }
        (Some(slug), _) | (None, Some(slug)) => slug,
        (None, None) => {
            return Err(refused(
                "it names no account: no `olu` (OpenOrch) or `1sl` (1Backend) slug claim".into(),
            ))
        }
    };
    validate_slug("slug", &slug).map_err(|e| refused(format!("its slug claim: {e}")))?;
    let admin = claims
        .openorch_roles
        .iter()
        .chain(&claims.onebackend_roles)
        .flatten()
        .any(|role| role == PLATFORM_ADMIN_ROLE);
    let role = if admin { Role::Admin } else { Role::User };
    Ok((Actor::token(USER_SVC_TOKEN_ID, &slug), role))
}

fn refused(problem: String) -> Error {
    Error::Unauthorized(format!("User Svc token refused: {problem}"))
}

/// What is wrong with a token, in words; `alg` is the header's, once it was read.
fn problem(error: &JwtError, alg: Option<Algorithm>) -> String {
    let leeway = limits::USER_SVC_TOKEN_LEEWAY_SECS;
    match error.kind() {
        ErrorKind::InvalidToken => {
            "malformed: a JWT is three base64url parts joined by dots".into()
        }
        ErrorKind::Base64(e) => format!("malformed: a part is not base64url ({e})"),
        ErrorKind::Utf8(e) => format!("malformed: a part is not UTF-8 ({e})"),
        ErrorKind::Json(e) if alg.is_none() => format!(
            "its header is not a JWT header with an accepted `alg` (RS256, RS384 or RS512): {e}"
        ),
        ErrorKind::Json(e) => format!("its claims are not the JSON object expected: {e}"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => format!(
            "algorithm {} is not accepted: the User Svc signs with RS256 (RS384 and RS512 are \
             accepted too)",
            alg.map_or_else(|| "?".into(), |alg| format!("{alg:?}"))
        ),
        ErrorKind::InvalidSignature => {
            "bad signature: it was not signed by the User Svc's key".into()
        }
        ErrorKind::ExpiredSignature => {
            format!("expired: its `exp` is past (by more than {leeway} s of clock skew)")
        }
        ErrorKind::ImmatureSignature => {
            format!("not valid yet: its `nbf` is ahead (by more than {leeway} s of clock skew)")
        }
        ErrorKind::InvalidClaimFormat(claim) => {
            format!("its `{claim}` is not a whole number of seconds")
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registry_secrets_lack_a_dot() {
        assert!(!is_jwt("rsv_0123456789abcdefghijABCDEFGHIJ01"));
        assert!(is_jwt("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"));
    }

    #[test]
    fn no_key_means_no_user_svc_tokens() {
        let error = verify(None, "a.b.c").unwrap_err();
        assert!(
            matches!(&error, Error::Unauthorized(m) if m.contains("--user-svc-url")),
            "{error}"
        );
    }
}
