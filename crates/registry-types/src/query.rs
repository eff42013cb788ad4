//! Query strings, each parameter declared once: a table per part of a query (an instance
//! filter here; a page, a blocking query or the event stream's selection in the server)
//! gives each parameter's name, how its value is read and how the API document describes
//! it. [`parse`] and [`read_parts`] read a query string once against those tables; the
//! server builds its OpenAPI parameters from the same tables, so the document cannot
//! drift from what is parsed.
//!
//! As the API has always answered: a parameter no table takes is ignored; a repeated one
//! is read each time (the last value counts, a list parameter collects them); a bad value
//! is an error naming its parameter. An instance filter given an empty value filters on
//! nothing, as the original reads it.
//!
//! ```
//! use registry_types::{query, InstanceFilter, InstanceStatus};
//!
//! let filter: InstanceFilter = query::parse("slug=billing&status=Healthy&tag=eu").unwrap();
//! assert_eq!(filter.status, Some(InstanceStatus::Healthy));
//! assert_eq!(query::parse::<InstanceFilter>("status=Sleepy").unwrap_err().field, "status");
//! ```

use crate::{FieldError, InstanceFilter, InstanceStatus};
use serde_json::{json, Value};

/// One query parameter of a part `Q`.
pub struct Param<Q> {
    /// The parameter's name in the query string.
    pub name: &'static str,
    /// Reads one value of the parameter into the part.
    pub read: fn(&mut Q, &str) -> Result<(), FieldError>,
    /// How the API document describes the parameter, given the name of what the endpoint
    /// lists (`instances`).
    pub document: fn(&str) -> ParamDoc,
}

impl<Q> Param<Q> {
    /// A parameter `name`, read by `read`, described by `document`.
    pub const fn new(
        name: &'static str,
        read: fn(&mut Q, &str) -> Result<(), FieldError>,
        document: fn(&str) -> ParamDoc,
    ) -> Self {
        Param {
            name,
            read,
            document,
        }
    }
}

/// A parameter as the API document describes it.
pub struct ParamDoc {
    /// What the parameter does, when its schema does not say it all.
    pub description: Option<String>,
    /// Its JSON Schema, with the range its reading enforces.
    pub schema: Value,
}

impl ParamDoc {
    /// A parameter whose schema says all there is to say.
    pub fn schema(schema: Value) -> Self {
        ParamDoc {
            description: None,
            schema,
        }
    }

    /// A parameter with a description beside its schema.
    pub fn described(description: impl Into<String>, schema: Value) -> Self {
        ParamDoc {
            description: Some(description.into()),
            schema,
        }
    }
}

/// A part of a query: the parameters it takes, in the order the API document lists them.
pub trait Params: Default + 'static {
    /// The parameters, each with how it is read and described.
    const PARAMS: &'static [Param<Self>];
}

/// A part that takes no parameters, for an endpoint without filters or pages.
impl Params for () {
    const PARAMS: &'static [Param<()>] = &[];
}

/// A part as [`read_parts`] sees it: one value of one parameter at a time.
pub trait Part {
    /// Reads `value` when the part takes a parameter `name`; `None` when it does not.
    fn read(&mut self, name: &str, value: &str) -> Option<Result<(), FieldError>>;
}

impl<Q: Params> Part for Q {
    fn read(&mut self, name: &str, value: &str) -> Option<Result<(), FieldError>> {
        let param = Q::PARAMS.iter().find(|p| p.name == name)?;
        Some((param.read)(self, value))
    }
}

/// Reads `query` (without its `?`), once, into `parts`. When values are bad in several
/// parts, the error is from the earliest part (within it, the first bad value), so that
/// an endpoint answers as when each part read the whole query in turn.
pub fn read_parts(query: &str, parts: &mut [&mut dyn Part]) -> Result<(), FieldError> {
    let mut refused: Option<(usize, FieldError)> = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let read = parts
            .iter_mut()
            .enumerate()
            .find_map(|(rank, part)| Some((rank, part.read(&name, &value)?)));
        if let Some((rank, Err(e))) = read {
            if refused
                .as_ref()
                .is_none_or(|(earliest, _)| rank < *earliest)
            {
                refused = Some((rank, e));
            }
        }
    }
    refused.map_or(Ok(()), |(_, e)| Err(e))
}

/// Reads a query of one part.
pub fn parse<Q: Params>(query: &str) -> Result<Q, FieldError> {
    let mut part = Q::default();
    read_parts(query, &mut [&mut part])?;
    Ok(part)
}

/// `a, b or c`: the values a parameter takes, for its description.
pub fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, others)) => format!("{} or {last}", others.join(", ")),
        None => String::new(),
    }
}

/// Sets a text filter. An empty value filters on nothing, as OpenOrch reads it (a
/// generated client sends `slug=` for an empty string).
fn set(field: &mut Option<String>, value: &str) -> Result<(), FieldError> {
    *field = (!value.is_empty()).then(|| value.to_owned());
    Ok(())
}

fn text(_: &str) -> ParamDoc {
    ParamDoc::schema(json!({"type": "string"}))
}

impl Params for InstanceFilter {
    const PARAMS: &'static [Param<Self>] = &[
        Param::new("id", |f, v| set(&mut f.id, v), text),
        Param::new("slug", |f, v| set(&mut f.slug, v), text),
        Param::new("host", |f, v| set(&mut f.host, v), text),
        Param::new("ip", |f, v| set(&mut f.ip, v), text),
        Param::new("scheme", |f, v| set(&mut f.scheme, v), text),
        Param::new("path", |f, v| set(&mut f.path, v), text),
        Param::new("deploymentId", |f, v| set(&mut f.deployment_id, v), text),
        Param::new("nodeUrl", |f, v| set(&mut f.node_url, v), text),
        Param::new(
            "status",
            |f, v| {
                f.status = match v {
                    "" => None,
                    v => Some(v.parse().map_err(|e| FieldError::new("status", e))?),
                };
                Ok(())
            },
            |_| {
                let names: Vec<&str> = InstanceStatus::ALL.iter().map(|s| s.as_str()).collect();
                ParamDoc::described(one_of(&names), json!({"type": "string", "enum": names}))
            },
        ),
        Param::new(
            "tag",
            |f, v| {
                if !v.is_empty() {
                    f.tags.push(v.to_owned());
                }
                Ok(())
            },
            |_| {
                ParamDoc::described(
                    "Repeatable; all must match",
                    json!({"type": "array", "items": {"type": "string"}}),
                )
            },
        ),
    ];
}
