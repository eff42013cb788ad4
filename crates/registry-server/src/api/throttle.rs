//! The rate limit per source address, counted before routing so that every request
//! counts, authenticated or not; and the 429 every operation may answer, in the API
//! document. (The limit per token is counted where a token is verified, in
//! [`crate::auth::Caller`].)

use super::ApiState;
use crate::Error;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::{ready, Either, Ready};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use tower::{Layer, Service};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, Ref, ResponseBuilder};

#[derive(Clone)]
pub(super) struct PerAddressLayer(pub(super) ApiState);

impl<S> Layer<S> for PerAddressLayer {
    type Service = PerAddress<S>;

    fn layer(&self, inner: S) -> PerAddress<S> {
        PerAddress {
            app: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub(super) struct PerAddress<S> {
    app: ApiState,
    inner: S,
}

impl<S> Service<Request> for PerAddress<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    // No boxed future: a request under the limit costs only the count.
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // A server that does not record peers' addresses leaves nothing to count by.
        if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
            if let Err(limited) = self.app.auth.rate_limits.admit_address(peer.ip()) {
                tracing::debug!(%peer, "over the rate limit per source address");
                return Either::Left(ready(Ok(Error::from(limited).into_response())));
            }
        }
        Either::Right(self.inner.call(request))
    }
}

/// Adds the 429 answer, with its `Retry-After` header, to every operation.
pub(super) fn document(openapi: &mut utoipa::openapi::OpenApi) {
    let seconds = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1));
    let response = ResponseBuilder::new()
        .description("Over the rate limit per token or per source address; the error names which")
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(seconds)
                .description(Some("Whole seconds to wait before trying again"))
                .build(),
        )
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build();
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .insert("429".into(), response.clone().into());
        }
    }
}
