//! The web console at `/ui`: hand-written HTML, CSS and JavaScript modules, embedded in
//! the binary, so the console needs no build step and loads nothing from anywhere else.
//!
//! The pages and their assets need no token: they hold no data. The console asks the user
//! for a token and calls the API with it like any other client, so every data call is
//! authenticated and authorized as usual.

use crate::error::Error;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// Where the console lives.
pub(crate) const PATH: &str = "/ui";

/// Scripts, styles and data only from the daemon itself: no inline script or style, no
/// other origin, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file and what it is served as.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Embeds `assets/<name>`, served as `content_type`.
macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console; `index.html` is the page at `/ui`, the others are under
/// `/ui/assets/`.
const ASSETS: [Asset; 10] = [
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("live.js", JS),
    asset!("dom.js", JS),
    asset!("overview.js", JS),
    asset!("instances.js", JS),
    asset!("resources.js", JS),
];

/// Each asset's strong validator, a hash of its bytes: a browser revalidates (the answer
/// says `no-cache`) and gets a bodiless 304 while the file is unchanged, and the new file
/// as soon as the daemon is upgraded.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.body);
            let etag = format!("\"{}\"", hex::encode(&digest[..12]));
            HeaderValue::from_str(&etag).expect("hex is a header value")
        })
        .collect()
});

/// The console's route templates: the page (with and without its slash) and its assets.
pub(crate) fn templates() -> [String; 3] {
    [
        PATH.to_string(),
        format!("{PATH}/"),
        format!("{PATH}/assets/{{name}}"),
    ]
}

/// The console's routes, for any router state.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let [page_path, page_slash, asset] = templates();
    Router::new()
        .route(&page_path, get(page))
        .route(&page_slash, get(page))
        .route(&asset, get(named))
}

async fn page(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

async fn named(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS
        .iter()
        .position(|asset| asset.name == name && asset.name != "index.html")
    {
        Some(index) => serve(index, &headers),
        None => Error::NotFound(format!("no console asset {name:?}")).into_response(),
    }
}

/// The asset at `index`, or 304 when the browser's copy is current.
fn serve(index: usize, request: &HeaderMap) -> Response {
    let (asset, etag) = (&ASSETS[index], &ETAGS[index]);
    let current = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim().trim_start_matches("W/") == etag);
    let headers = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    if current {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_and_scripts_name_is_embedded() {
        let names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        let mut named = 0;
        for asset in &ASSETS {
            let text = std::str::from_utf8(asset.body).expect("assets are text");
            // `/ui/assets/x` in the page, `./x.js` in imports.
            for reference in text
                .split(['"', '\''])
                .filter_map(|s| s.strip_prefix("/ui/assets/").or(s.strip_prefix("./")))
                .filter(|s| s.ends_with(".js") || s.ends_with(".css") || s.ends_with(".svg"))
            {
                assert!(
                    names.contains(&reference),
                    "{} names {reference}, which is not embedded",
                    asset.name
                );
                named += 1;
            }
        }
        // The page names its style, icon and script, the scripts import one another.
        assert!(named >= ASSETS.len(), "only {named} references found");
    }
}
