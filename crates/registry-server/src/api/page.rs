//! Long lists: `?limit=N&after=ID` pages (an extension to the OpenOrch API), and a
//! streamed body for a long list asked for whole, so that 100,000 instances never sit in
//! one buffer.
//!
//! Lists are in id order. A page that stops short of the end says where the next one
//! starts, to a caller that asked for extensions: `"next": "<id of its last item>"`, to
//! send back as `after`. Without `limit` and `after` the answer is exactly the OpenOrch one.

use super::json_response;
use super::shape::{Model, Shape, Shaped};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;

/// Lists longer than this are streamed, this many items a chunk, instead of serialized
/// into one buffer first.
pub(super) const STREAM_CHUNK: usize = 512;

/// `limit` and `after` of a list request, read as [`super::query`] declares them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Page {
    pub limit: Option<usize>,
    pub after: Option<String>,
}

impl Page {
    /// Whether this asks for part of a list rather than all of it.
    pub(super) fn is_partial(&self) -> bool {
        self.limit.is_some() || self.after.is_some()
    }

    /// Takes this page from `items` (already past `after`): at most `limit` of them, and
    /// the key to continue after when more are left.
    pub(super) fn take<T>(
        &self,
        items: impl Iterator<Item = T>,
        key: impl Fn(&T) -> &str,
    ) -> (Vec<T>, Option<String>) {
        let Some(limit) = self.limit else {
            return (items.collect(), None);
        };
        let mut items = items.peekable();
        let page: Vec<T> = items.by_ref().take(limit).collect();
        let next = match (items.peek(), page.last()) {
            (Some(_), Some(last)) => Some(key(last).to_string()),
            _ => None,
        };
        (page, next)
    }
}

/// `{"<field>": [items]}` in `shape` (plus `"next"` when given and extensions were asked
/// for) without copying the items out of their `Arc`s.
pub(super) fn list_body<T: Model>(
    field: &str,
    items: &[T],
    next: Option<&str>,
    shape: Shape,
) -> Bytes {
    let mut body = Vec::with_capacity(64 + items.len() * 256);
    body.extend_from_slice(b"{\"");
    body.extend_from_slice(field.as_bytes());
    body.extend_from_slice(b"\":[");
    write_items(&mut body, items, 0, shape);
    body.push(b']');
    push_next(&mut body, next, shape);
    body.push(b'}');
    body.into()
}

/// `items`, comma-separated, the first of them preceded by a comma unless it is item 0.
fn write_items<T: Model>(body: &mut Vec<u8>, items: &[T], first: usize, shape: Shape) {
    for (n, item) in items.iter().enumerate() {
        if first + n > 0 {
            body.push(b',');
        }
        serde_json::to_writer(&mut *body, &Shaped(item, shape))
            .expect("model types always serialize");
    }
}

fn push_next(body: &mut Vec<u8>, next: Option<&str>, shape: Shape) {
    if let Some(next) = next.filter(|_| shape.extended()) {
        body.extend_from_slice(b",\"next\":");
        serde_json::to_writer(&mut *body, next).expect("a string serializes");
    }
}

/// The list as a response: one buffer when short, else a stream that serializes
/// [`STREAM_CHUNK`] items at a time as the client reads.
pub(super) fn list_response<T>(
    field: &'static str,
    items: Vec<T>,
    next: Option<String>,
    shape: Shape,
) -> Response
where
    T: Model + Send + Sync + 'static,
{
    if items.len() <= STREAM_CHUNK {
        return json_response(list_body(field, &items, next.as_deref(), shape));
    }
    let items: Arc<[T]> = items.into();
    let chunks = items.len().div_ceil(STREAM_CHUNK);
    let open = Bytes::from(format!("{{\"{field}\":["));
    let body = (0..chunks).map(move |chunk| {
        let start = chunk * STREAM_CHUNK;
        let end = (start + STREAM_CHUNK).min(items.len());
        let mut bytes = Vec::with_capacity((end - start) * 512);
        write_items(&mut bytes, &items[start..end], start, shape);
        if end == items.len() {
            bytes.push(b']');
            push_next(&mut bytes, next.as_deref(), shape);
            bytes.push(b'}');
        }
        Ok::<_, Infallible>(Bytes::from(bytes))
    });
    let stream = futures_util::stream::iter(std::iter::once(Ok(open)).chain(body));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_types::query::parse;

    #[test]
    fn reads_limit_and_after() {
        let page: Page = parse("slug=a&limit=2&after=inst_1").unwrap();
        assert_eq!(page.limit, Some(2));
        assert_eq!(page.after.as_deref(), Some("inst_1"));
        assert!(page.is_partial());
        assert!(!parse::<Page>("slug=a&after=").unwrap().is_partial());
        for bad in ["limit=0", "limit=-1", "limit=ten", "limit=10001"] {
            let err = parse::<Page>(bad).unwrap_err();
            assert_eq!(err.field, "limit", "{bad}");
        }
    }

    #[test]
    fn a_page_says_where_the_next_starts_only_when_items_are_left() {
        let items = ["a", "b", "c"];
        fn key<'a>(item: &'a &str) -> &'a str {
            item
        }
        let two = Page {
            limit: Some(2),
            after: None,
        };
        let (page, next) = two.take(items.into_iter(), key);
        assert_eq!(page, ["a", "b"]);
        assert_eq!(next.as_deref(), Some("b"));
        let (page, next) = two.take(items[2..].iter().copied(), key);
        assert_eq!(page, ["c"]);
        assert_eq!(next, None);
        let three = Page {
            limit: Some(3),
            after: None,
        };
        assert_eq!(
            three.take(items.into_iter(), key).1,
            None,
            "exactly the rest"
        );
    }
}
