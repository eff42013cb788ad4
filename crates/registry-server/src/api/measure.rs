//! Counts every request by route, method and status, and times it by route and method,
//! for `/metrics`.
//!
//! The route is the template the router matched (`/registry-svc/instance/{id}`), never
//! the raw path, so the series stay few whatever callers send. It is found with the same
//! router axum uses, built once from the routes' templates; each (route, method) has a
//! slot whose counter and histogram handles are resolved on first use, so a request costs
//! a route lookup, two clock reads and a few atomic operations, and allocates nothing.

use crate::metrics::{self, Counter, Family, Histogram, Metrics};
use axum::http::{Method, Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service};

/// The `route` of a path that matches no route.
const UNMATCHED: &str = "unmatched";

/// The methods with a label of their own; any other is `other`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other",
];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::OPTIONS => 5,
        Method::PATCH => 6,
        _ => 7,
    }
}

/// The statuses the daemon answers with, each with a pre-resolved counter per slot; any
/// other status is counted through the family, a slower path.
const STATUSES: [u16; 17] = [
    200, 201, 204, 400, 401, 403, 404, 405, 408, 409, 413, 414, 415, 429, 431, 500, 503,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

/// One route and method: its handles, resolved on first use.
#[derive(Default)]
struct Slot {
    duration: OnceLock<Histogram>,
    statuses: [OnceLock<Counter>; STATUSES.len()],
}

/// The request metrics of one API.
pub(super) struct HttpMetrics {
    /// Route templates to their index in `routes`.
    router: matchit::Router<usize>,
    /// The templates, then [`UNMATCHED`].
    routes: Box<[String]>,
    /// `routes.len() × METHODS.len()` slots.
    slots: Box<[Slot]>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    /// The metrics of an API serving `templates`, registered with `metrics`.
    pub(super) fn register(
        templates: impl IntoIterator<Item = String>,
        metrics: &Metrics,
    ) -> Arc<HttpMetrics> {
        let mut router = matchit::Router::new();
        let mut routes: Vec<String> = Vec::new();
        for template in templates {
            router
                .insert(template.as_str(), routes.len())
                .expect("route templates are valid and distinct");
            routes.push(template);
        }
        routes.push(UNMATCHED.to_string());
        let slots = (0..routes.len() * METHODS.len())
            .map(|_| Slot::default())
            .collect();
        let http = HttpMetrics {
            router,
            routes: routes.into(),
            slots,
            requests: metrics.register(
                "http_requests",
                "HTTP requests answered, by route template, method and status",
                Family::default(),
            ),
            durations: metrics.register_seconds(
                "http_request_duration",
                "Time to answer an HTTP request (to its headers; a blocking query's wait \
                 included), by route template and method",
                Family::new_with_constructor(metrics::latency_histogram as fn() -> Histogram),
            ),
        };
        Arc::new(http)
    }

    /// The slot of a request.
    fn slot(&self, method: &Method, path: &str) -> usize {
        let route = self
            .router
            .at(path)
            .map_or(self.routes.len() - 1, |found| *found.value);
        route * METHODS.len() + method_index(method)
    }

    /// Counts an answer. Labels are made only the first time a slot sees a status.
    fn record(&self, slot: usize, status: u16, started: Instant) {
        let labels = || RouteLabels {
            route: self.routes[slot / METHODS.len()].clone(),
            method: METHODS[slot % METHODS.len()],
        };
        let handles = &self.slots[slot];
        handles
            .duration
            .get_or_init(|| self.durations.get_or_create(&labels()).clone())
            .observe(started.elapsed().as_secs_f64());
        let request = |labels: RouteLabels| RequestLabels {
            route: labels.route,
            method: labels.method,
            status,
        };
        match STATUSES.iter().position(|s| *s == status) {
            Some(known) => handles.statuses[known]
                .get_or_init(|| self.requests.get_or_create(&request(labels())).clone())
                .inc(),
            None => self.requests.get_or_create(&request(labels())).inc(),
        };
    }
}

/// Wraps a service to count its requests.
#[derive(Clone)]
pub(super) struct MeasureLayer(pub(super) Arc<HttpMetrics>);

impl<S> Layer<S> for MeasureLayer {
    type Service = Measure<S>;

    fn layer(&self, inner: S) -> Measure<S> {
        Measure {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(super) struct Measure<S> {
    inner: S,
    metrics: Arc<HttpMetrics>,
}

impl<S, B, R> Service<Request<B>> for Measure<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Measured<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Measured<S::Future> {
        let started = Instant::now();
        let slot = self.metrics.slot(request.method(), request.uri().path());
        Measured {
            inner: self.inner.call(request),
            metrics: self.metrics.clone(),
            slot,
            started,
        }
    }
}

pin_project! {
    /// A request's answer, counted when it is ready.
    pub(super) struct Measured<F> {
        #[pin]
        inner: F,
        metrics: Arc<HttpMetrics>,
        slot: usize,
        started: Instant,
    }
}

impl<F, R, E> Future for Measured<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &answer {
            this.metrics
                .record(*this.slot, response.status().as_u16(), *this.started);
        }
        Poll::Ready(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_template_not_by_path() {
        let metrics = Metrics::new();
        let http = HttpMetrics::register(
            [
                "/registry-svc/instance/{id}".to_string(),
                "/healthz".to_string(),
            ],
            &metrics,
        );
        let started = Instant::now();
        for id in ["inst_a", "inst_b"] {
            let slot = http.slot(&Method::DELETE, &format!("/registry-svc/instance/{id}"));
            http.record(slot, 204, started);
        }
        http.record(http.slot(&Method::GET, "/nowhere"), 404, started);
        http.record(
            http.slot(&Method::from_bytes(b"BREW").unwrap(), "/healthz"),
            418,
            started,
        );
        let text = metrics.encode();
        for line in [
            "registry_http_requests_total{route=\"/registry-svc/instance/{id}\",method=\"DELETE\",status=\"204\"} 2\n",
            "registry_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n",
            "registry_http_requests_total{route=\"/healthz\",method=\"other\",status=\"418\"} 1\n",
            "registry_http_request_duration_seconds_count{route=\"/registry-svc/instance/{id}\",method=\"DELETE\"} 2\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("inst_a"), "{text}");
    }
}
