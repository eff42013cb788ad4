//! The queries of the list endpoints and of the event stream, built of parts declared
//! once (see [`registry_types::query`]): the instance filters, a page (`limit`, `after`),
//! a blocking query (`index`, `wait`) and the event stream's selection (`since`, `kind`).
//! Each request's query is read once, against its endpoint's parts, and the same parts
//! give the endpoint's OpenAPI parameters (its [`IntoParams`]), ranges included.

use super::page::Page;
use super::ranges;
use crate::feed::{parse_revision, Blocking, StreamQuery};
use registry_store::Kind;
use registry_types::limits;
use registry_types::query::{one_of, read_parts, Param, ParamDoc, Params};
use registry_types::{FieldError, InstanceFilter};
use serde_json::{json, Value};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{RefOr, Required, Schema};
use utoipa::IntoParams;

/// What a list endpoint lists, and so which parts its query has.
pub(super) trait List {
    /// The list's name in the API document: `instances`.
    const NAME: &'static str;
    type Filter: Params;
    /// [`Page`] where the list comes in pages, `()` where it comes whole.
    type Page: Params;
}

/// `GET /instances`: filtered, paged.
pub(super) struct Instances;
/// `GET /definitions`: paged.
pub(super) struct Definitions;
/// `POST /nodes`: whole (its body selects by id).
pub(super) struct Nodes;

impl List for Instances {
    const NAME: &'static str = "instances";
    type Filter = InstanceFilter;
    type Page = Page;
}

impl List for Definitions {
    const NAME: &'static str = "definitions";
    type Filter = ();
    type Page = Page;
}

impl List for Nodes {
    const NAME: &'static str = "nodes";
    type Filter = ();
    type Page = ();
}

/// The query of a list endpoint: its filters, its page and its blocking parameters.
pub(super) struct ListQuery<L: List> {
    pub(super) filter: L::Filter,
    pub(super) page: L::Page,
    pub(super) blocking: Blocking,
}

impl<L: List> ListQuery<L> {
    /// Reads `query` once. A bad filter is reported before a bad page, and a bad page
    /// before a bad blocking parameter.
    pub(super) fn parse(query: &str) -> Result<Self, FieldError> {
        let mut filter = L::Filter::default();
        let mut page = L::Page::default();
        let mut blocking = Blocking::default();
        read_parts(query, &mut [&mut filter, &mut page, &mut blocking])?;
        Ok(ListQuery {
            filter,
            page,
            blocking,
        })
    }
}

impl<L: List> IntoParams for ListQuery<L> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut all = parameters::<L::Filter>(L::NAME);
        all.extend(parameters::<L::Page>(L::NAME));
        all.extend(parameters::<Blocking>(L::NAME));
        all
    }
}

impl IntoParams for StreamQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        parameters::<StreamQuery>("changes")
    }
}

/// `slug` and `tag` of `GET /registry-svc/prometheus/targets`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TargetsQuery {
    pub(super) slug: Option<String>,
    pub(super) tags: Vec<String>,
}

impl IntoParams for TargetsQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        parameters::<TargetsQuery>("targets")
    }
}

impl Params for TargetsQuery {
    const PARAMS: &'static [Param<Self>] = &[
        Param::new(
            "slug",
            |targets, value| {
                // Empty: no filter, as an empty filter reads elsewhere.
                if !value.is_empty() {
                    registry_types::validate_slug("slug", value)?;
                    targets.slug = Some(value.to_owned());
                }
                Ok(())
            },
            |_| {
                ParamDoc::described(
                    "Only the instances of this slug",
                    json!({"type": "string", "maxLength": limits::MAX_ID_LEN,
                        "pattern": ranges::OPTIONAL_ID_PATTERN}),
                )
            },
        ),
        Param::new(
            "tag",
            |targets, value| {
                if !value.is_empty() {
                    registry_types::validate_tag("tag", value)?;
                    if targets.tags.len() == limits::MAX_TAGS {
                        return Err(FieldError::new(
                            "tag",
                            format!("at most {} tags may be asked for", limits::MAX_TAGS),
                        ));
                    }
                    targets.tags.push(value.to_owned());
                }
                Ok(())
            },
            |_| {
                ParamDoc::described(
                    "Only the instances with this tag; repeatable, all must match",
                    json!({"type": "array", "maxItems": limits::MAX_TAGS, "items": {
                        "type": "string", "maxLength": limits::MAX_ID_LEN,
                        "pattern": registry_types::TEXT_PATTERN}}),
                )
            },
        ),
    ];
}

/// The OpenAPI parameters of part `Q` of the query of an endpoint listing `list`.
fn parameters<Q: Params>(list: &str) -> Vec<Parameter> {
    Q::PARAMS
        .iter()
        .map(|param| {
            let ParamDoc {
                description,
                schema,
            } = (param.document)(list);
            ParameterBuilder::new()
                .name(param.name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(description)
                .schema(Some(
                    serde_json::from_value::<RefOr<Schema>>(schema)
                        .expect("a parameter's schema is a JSON Schema"),
                ))
                .build()
        })
        .collect()
}

/// The kinds the event stream sends; token changes carry secrets' hashes, never sent.
const STREAMED: [Kind; 3] = [Kind::Definition, Kind::Instance, Kind::Node];

fn streamed_names() -> Vec<&'static str> {
    STREAMED.iter().map(|k| k.as_str()).collect()
}

/// A revision a caller sends: a whole number the stores can hold.
fn revision(what: &str) -> Value {
    json!({
        "type": "integer",
        "format": "int64",
        "minimum": 0,
        "maximum": limits::MAX_REVISION,
        "description": what,
    })
}

impl Params for Page {
    const PARAMS: &'static [Param<Self>] = &[
        Param::new(
            "limit",
            |page, value| {
                let (least, most) = limits::PAGE_LIMIT;
                let limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (least..=most).contains(n));
                page.limit = Some(limit.ok_or_else(|| {
                    FieldError::new(
                        "limit",
                        format!("{value:?} is not a whole number from {least} to {most}"),
                    )
                })?);
                Ok(())
            },
            |_| {
                let (least, most) = limits::PAGE_LIMIT;
                ParamDoc::described(
                    format!("Extension: at most this many ({least} to {most}); a `next` field in the answer says there are more"),
                    json!({"type": "integer", "minimum": least, "maximum": most}),
                )
            },
        ),
        Param::new(
            "after",
            |page, value| {
                // Empty: from the start, as no `after` is.
                if !value.is_empty() {
                    page.after = Some(value.to_owned());
                }
                Ok(())
            },
            |_| {
                ParamDoc::described(
                    "Extension: only ids after this one (the `next` of the previous page)",
                    json!({"type": "string"}),
                )
            },
        ),
    ];
}

impl Params for Blocking {
    const PARAMS: &'static [Param<Self>] = &[
        Param::new(
            "index",
            |blocking, value| {
                blocking.index = Some(parse_revision("index", value)?);
                Ok(())
            },
            |list| {
                ParamDoc::described(
                    format!("Block until a change of {list} passes this revision"),
                    revision("Block until a change passes this revision"),
                )
            },
        ),
        Param::new(
            "wait",
            |blocking, value| {
                blocking.wait = Some(limits::BLOCKING_WAIT.parse("wait", value)?);
                Ok(())
            },
            |_| {
                let mut schema = ranges::duration(limits::BLOCKING_WAIT, "Longest to block");
                schema["type"] = json!("string");
                ParamDoc::described(
                    format!(
                        "Longest to block, e.g. 30s (at most {})",
                        limits::format_duration(limits::BLOCKING_WAIT.max)
                    ),
                    schema,
                )
            },
        ),
    ];
}

impl Params for StreamQuery {
    const PARAMS: &'static [Param<Self>] = &[
        Param::new(
            "since",
            |stream, value| {
                stream.since = Some(parse_revision("since", value)?);
                Ok(())
            },
            |_| {
                let what = "Send the changes after this revision";
                ParamDoc::described(what, revision(what))
            },
        ),
        Param::new(
            "kind",
            |stream, value| {
                // An empty value asks for no narrowing, as an empty filter does elsewhere.
                if !value.is_empty() {
                    let kind = STREAMED.into_iter().find(|k| k.as_str() == value);
                    stream.kinds.push(kind.ok_or_else(|| {
                        FieldError::new(
                            "kind",
                            format!("{value:?} is not one of {}", streamed_names().join(", ")),
                        )
                    })?);
                }
                Ok(())
            },
            |_| {
                let names = streamed_names();
                ParamDoc::described(
                    format!("{}; repeatable", one_of(&names)),
                    json!({"type": "array", "items": {"type": "string", "enum": names}}),
                )
            },
        ),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every parameter of every endpoint, with the schema its declaration gives.
    fn declared() -> Vec<(&'static str, Vec<(&'static str, Value)>)> {
        fn part<Q: Params>(list: &str) -> Vec<(&'static str, Value)> {
            Q::PARAMS
                .iter()
                .map(|p| (p.name, (p.document)(list).schema))
                .collect()
        }
        fn list<L: List>() -> (&'static str, Vec<(&'static str, Value)>) {
            let mut all = part::<L::Filter>(L::NAME);
            all.extend(part::<L::Page>(L::NAME));
            all.extend(part::<Blocking>(L::NAME));
            (L::NAME, all)
        }
        vec![
            list::<Instances>(),
            list::<Definitions>(),
            list::<Nodes>(),
            ("events", part::<StreamQuery>("changes")),
            ("targets", part::<TargetsQuery>("targets")),
        ]
    }

    /// A value goes to the first part that takes its name: a name in two parts of one
    /// query would never reach the second.
    #[test]
    fn no_endpoint_takes_a_parameter_name_twice() {
        for (endpoint, params) in declared() {
            let mut names: Vec<_> = params.iter().map(|(name, _)| *name).collect();
            names.sort_unstable();
            let count = names.len();
            names.dedup();
            assert_eq!(names.len(), count, "{endpoint}: {names:?}");
        }
    }

    /// The document shows each schema as declared, nothing lost in utoipa's types.
    #[test]
    fn the_document_shows_each_schema_as_declared() {
        let documented = [
            ListQuery::<Instances>::into_params(|| None),
            ListQuery::<Definitions>::into_params(|| None),
            ListQuery::<Nodes>::into_params(|| None),
            StreamQuery::into_params(|| None),
            TargetsQuery::into_params(|| None),
        ];
        for ((endpoint, declared), documented) in declared().into_iter().zip(documented) {
            let documented = serde_json::to_value(documented).unwrap();
            let documented: Vec<_> = documented
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p["name"].as_str().unwrap(), p["schema"].clone()))
                .collect();
            assert_eq!(documented, declared, "{endpoint}");
        }
    }
}
