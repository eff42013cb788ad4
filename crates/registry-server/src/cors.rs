//! Which browser origins may call the API (`--cors-origins`), and the CORS answers that
//! follow from it.
//!
//! Callers authenticate with a bearer token they set themselves, never with cookies, so
//! credentials are not allowed: a page can only use a token it holds. Every `OPTIONS`
//! request is answered here, before authentication, since a browser's preflight carries
//! no token.

use axum::http::{header, HeaderName, Method};
use registry_types::constants::INDEX_HEADER;
use std::fmt;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Most origins in one list.
const MAX_ORIGINS: usize = 256;

/// Longest origin accepted.
const MAX_ORIGIN_LEN: usize = registry_types::limits::MAX_URL_LEN;

/// How long a browser may reuse a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The methods of the API.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
];

/// The request headers a page may send: those the API reads, and those the originals'
/// clients send. A header the API starts reading from browsers belongs here.
const REQUEST_HEADERS: [HeaderName; 9] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::CONTENT_LENGTH,
    HeaderName::from_static("last-event-id"),
    HeaderName::from_static("x-csrf-token"),
    HeaderName::from_static("x-content-encrypted"),
    // Asks for this registry's extensions; see `api::shape`.
    HeaderName::from_static(registry_types::constants::EXTENSIONS_HEADER),
];

/// The response headers a page's script may read besides the always readable ones.
const EXPOSED_HEADERS: [HeaderName; 2] =
    [HeaderName::from_static(INDEX_HEADER), header::RETRY_AFTER];

/// The origins of `--cors-origins`: any (`*`, the default, as the originals allow every
/// origin), or a list of `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Pages from any origin may call the API.
    Any,
    /// Only pages from these origins, each as a browser sends it in `Origin`.
    Only(Vec<String>),
}

impl CorsOrigins {
    /// Parses `*` or a comma-separated list of origins (`https://app.example.com`,
    /// `http://127.0.0.1:8080`).
    pub fn parse(text: &str) -> Result<CorsOrigins, String> {
        if text.trim() == "*" {
            return Ok(CorsOrigins::Any);
        }
        let mut origins = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(format!(
                    "{text:?} has an empty entry; expected `*` or origins like \
                     https://app.example.com, separated by commas"
                ));
            }
            origins.push(parse_origin(part)?);
        }
        if origins.len() > MAX_ORIGINS {
            return Err(format!(
                "lists {} origins, at most {MAX_ORIGINS} allowed",
                origins.len()
            ));
        }
        Ok(CorsOrigins::Only(origins))
    }

    /// The layer answering preflights and adding the CORS headers to every answer.
    pub(crate) fn layer(&self) -> CorsLayer {
        let allow_origin = match self {
            CorsOrigins::Any => AllowOrigin::any(),
            CorsOrigins::Only(origins) => AllowOrigin::list(
                origins
                    .iter()
                    .map(|o| o.parse().expect("a parsed origin is a header value")),
            ),
        };
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(METHODS)
            .allow_headers(REQUEST_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(PREFLIGHT_MAX_AGE)
    }
}

/// One origin, as a browser would send it (`HTTP://Example.com:80/` is
/// `http://example.com`).
fn parse_origin(text: &str) -> Result<String, String> {
    if text.len() > MAX_ORIGIN_LEN {
        return Err(format!(
            "an origin of {} characters is too long; at most {MAX_ORIGIN_LEN}",
            text.len()
        ));
    }
    if text == "*" {
        return Err("`*` stands alone: it allows every origin".into());
    }
    let url = url::Url::parse(text)
        .map_err(|e| format!("{text:?} is not an origin ({e}); expected scheme://host[:port]"))?;
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !bare {
        return Err(format!(
            "{text:?} is not an origin; expected http(s)://host[:port] with nothing after it"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

impl fmt::Display for CorsOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorsOrigins::Any => f.write_str("*"),
            CorsOrigins::Only(origins) => f.write_str(&origins.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_or_a_list_of_origins_as_browsers_send_them() {
        assert_eq!(CorsOrigins::parse("*"), Ok(CorsOrigins::Any));
        assert_eq!(
            CorsOrigins::parse("https://App.example.com, http://127.0.0.1:8080,HTTP://a.b:80/"),
            Ok(CorsOrigins::Only(vec![
                "https://app.example.com".into(),
                "http://127.0.0.1:8080".into(),
                "http://a.b".into(),
            ]))
        );
    }

    #[test]
    fn anything_else_is_refused_naming_the_problem() {
        for (text, problem) in [
            ("", "empty entry"),
            ("https://a.example,", "empty entry"),
            ("https://a.example,*", "stands alone"),
            ("a.example", "not an origin"),
            ("https://a.example/app", "nothing after it"),
            ("https://a.example?x=1", "nothing after it"),
            ("https://user@a.example", "nothing after it"),
            ("ftp://a.example", "nothing after it"),
            ("null", "not an origin"),
        ] {
            let error = CorsOrigins::parse(text).unwrap_err();
            assert!(error.contains(problem), "{text:?}: {error}");
        }
        let long = format!("https://{}.example", "a".repeat(MAX_ORIGIN_LEN));
        assert!(CorsOrigins::parse(&long).unwrap_err().contains("too long"));
        let many = vec!["http://127.0.0.1:1"; MAX_ORIGINS + 1].join(",");
        assert!(CorsOrigins::parse(&many).unwrap_err().contains("at most"));
    }
}
