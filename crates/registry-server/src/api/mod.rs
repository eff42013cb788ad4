//! The HTTP API: one small file per resource, one router, one OpenAPI document.
//!
//! Handlers are a few lines each: extractors do the parsing ([`JsonBody`]) and
//! authentication ([`crate::auth::Caller`]), [`crate::Error`] does the error responses,
//! reads come from the in-memory tables and writes go through the [`Writer`].

mod backup;
mod definitions;
mod echo;
mod errors;
mod events;
mod extract;
mod instances;
mod measure;
mod nodes;
mod ops;
mod original;
mod page;
mod prometheus;
#[cfg(test)]
mod properties;
mod query;
mod ranges;
mod shape;
mod throttle;
mod tokens;

pub(crate) use errors::json_error;
pub(crate) use extract::{JsonBody, OptionalJsonBody, MAX_BODY_BYTES};

/// The largest request body a request to `path` may declare: a restore carries a whole
/// registry, every other request at most [`MAX_BODY_BYTES`].
pub(crate) fn max_body_bytes(path: &str) -> usize {
    if path == backup::RESTORE_PATH {
        crate::backup::MAX_RESTORE_BYTES
    } else {
        MAX_BODY_BYTES
    }
}

use crate::auth::AuthState;
use crate::cache::VersionedCache;
use crate::check_allow::AllowedNetworks;
use crate::cors::CorsOrigins;
use crate::feed::Feed;
use crate::nodes::ThisNode;
use crate::state::{Registry, Writer};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use registry_store::Store;
use std::convert::Infallible;
use std::sync::Arc;
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::map_response_body::MapResponseBodyLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Everything a handler may need. Cloned by every extractor of every request, so it is
/// one reference count, not one per field.
#[derive(Clone)]
pub struct ApiState(Arc<ApiParts>);

impl ApiState {
    pub fn new(parts: ApiParts) -> Self {
        ApiState(Arc::new(parts))
    }
}

impl std::ops::Deref for ApiState {
    type Target = ApiParts;
    fn deref(&self) -> &ApiParts {
        &self.0
    }
}

/// The substate that authenticates requests, for the `Caller` extractor.
impl FromRef<ApiState> for Arc<AuthState> {
    fn from_ref(app: &ApiState) -> Arc<AuthState> {
        app.auth.clone()
    }
}

/// What [`ApiState`] shares.
pub struct ApiParts {
    pub(crate) registry: Arc<Registry>,
    pub(crate) writer: Writer,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) this_node: Arc<ThisNode>,
    /// What the `Caller` extractor needs; see [`AuthState`].
    pub(crate) auth: Arc<AuthState>,
    /// Serialized whole instance lists, by canonical filter, for one version of the
    /// instances: shared by watchers however they spell their queries.
    pub(crate) instance_lists: VersionedCache<Bytes, (u64, u64)>,
    /// The same answers by query string as sent, so a repeated query is answered without
    /// parsing. Apart from `instance_lists`, so that clients sending ever-new query
    /// strings (a cache-busting parameter) only ever push out each other's entries.
    pub(crate) instance_queries: VersionedCache<Bytes, (u64, u64)>,
    /// The background tasks, for `/readyz`.
    pub(crate) tasks: Arc<crate::supervisor::Tasks>,
    /// The networks health checks may dial: registrations at other addresses are refused.
    pub(crate) check_allow: Option<AllowedNetworks>,
    /// Blocking queries and event streams.
    pub(crate) feed: Arc<Feed>,
    /// Whose schema answers follow when no extensions are asked for (see [`shape`]).
    pub(crate) dialect: crate::config::Dialect,
    /// What `/metrics` serves; the API adds its request counts to it.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Hash of `--metrics-token`: when set, `/metrics` needs it.
    pub(crate) metrics_token_hash: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Registry Svc",
        description = "Service registry: definitions, instances with health, and nodes. \
                       Wire-compatible with the Registry Svc of OpenOrch."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "definitions", description = "Deployable service templates"),
        (name = "instances", description = "Running, callable service instances"),
        (name = "nodes", description = "Machines running a registry daemon"),
        (name = "tokens", description = "API tokens (admin only)"),
        (name = "backup", description = "Backup and restore of the whole registry (admin only)"),
        (name = "feed", description = "Change feed: every change with its revision"),
        (name = "echo", description = "Echoes a request back, for trying a client"),
        (name = "operations", description = "Liveness, readiness and this document")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and the OpenAPI document describing exactly those routes.
fn routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    let (routes, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(definitions::save))
        .routes(routes!(definitions::list))
        .routes(routes!(definitions::delete))
        .routes(routes!(instances::register))
        .routes(routes!(instances::list))
        .routes(routes!(instances::delete))
        .routes(routes!(instances::heartbeat))
        .routes(routes!(nodes::list))
        .routes(routes!(nodes::this_node))
        .routes(routes!(nodes::delete))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::revoke))
        .routes(routes!(events::events))
        .routes(routes!(backup::backup))
        .routes(routes!(backup::restore))
        .routes(routes!(echo::get, echo::post, echo::put))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(prometheus::metrics))
        .routes(routes!(prometheus::targets))
        .split_for_parts();
    throttle::document(&mut openapi);
    (routes, openapi)
}

fn document(
    openapi: utoipa::openapi::OpenApi,
    dialect: crate::config::Dialect,
) -> serde_json::Value {
    let mut document = serde_json::to_value(openapi).expect("the OpenAPI document serializes");
    ranges::publish(&mut document);
    original::follow(&mut document, dialect);
    document
}

/// The API as one service. The middleware wraps the router once instead of each route
/// (which is what `Router::layer` does), so a request clones one boxed service, not one
/// per layer: fewer allocations on every request.
pub(crate) fn service(
    app: ApiState,
    cors: &CorsOrigins,
) -> impl Service<Request<Body>, Response = Response, Error = Infallible, Future: Send + 'static>
       + Clone
       + Send
       + Sync
       + 'static {
    let (routes, openapi) = routes();
    // Every route the router serves: the documented ones, the two below and the console's.
    let templates = openapi
        .paths
        .paths
        .keys()
        .cloned()
        .chain(["/openapi.json".to_string(), "/docs".to_string()])
        .chain(crate::ui::templates());
    let measure = measure::MeasureLayer(measure::HttpMetrics::register(templates, &app.metrics));
    let openapi = Arc::new(
        serde_json::to_string_pretty(&document(openapi, app.dialect))
            .expect("the OpenAPI document serializes"),
    );
    let routes = routes
        .route(
            "/openapi.json",
            axum::routing::get(move || ops::openapi_json(openapi.clone())),
        )
        .route("/docs", axum::routing::get(ops::docs_page))
        .merge(crate::ui::routes())
        .fallback(errors::no_route);
    ServiceBuilder::new()
        // axum serves its own body type; the layers below wrap it in theirs.
        .layer(MapResponseBodyLayer::new(Body::new))
        // Outside the rest, so that it counts every answer as it is sent.
        .layer(measure)
        .layer(TraceLayer::new_for_http())
        // Outside the rest, so that preflights are answered before authentication and
        // every answer, errors included, carries the CORS headers.
        .layer(cors.layer())
        .layer(CatchPanicLayer::custom(errors::panic_response))
        .map_response(errors::json_errors)
        .layer(throttle::PerAddressLayer(app.clone()))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .service(routes.with_state(app))
}

fn json_response(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
