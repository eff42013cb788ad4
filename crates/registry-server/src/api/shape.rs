//! The shape of an answer, chosen once per request: exactly the original's schema by
//! default, this registry's whole model when the caller asks for its extensions.
//!
//! Clients generated from OpenOrch's or 1Backend's OpenAPI document refuse fields their
//! schema lacks, and the two projects spell one field differently, so an answer nobody
//! asked extensions for carries only the original's fields, spelled as the deployment's
//! [`Dialect`] spells them. `X-Registry-Extensions: true` (what this registry's own client
//! and CLI send) answers with the model as it is. Handlers take a [`Shape`] and write
//! their models through [`Shaped`]; what each model adds is declared once, in its
//! [`Model`] implementation.

use super::ApiState;
use crate::config::Dialect;
use crate::state::StoredInstance;
use crate::Error;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use registry_types::constants::EXTENSIONS_HEADER;
use registry_types::responses::RegisterInstanceResponse;
use registry_types::{Definition, Instance, Node};
use serde::ser::Error as _;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// How the answer to one request is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// This registry's whole model: the caller asked for extensions.
    Extended,
    /// Exactly the original's schema, in the deployment's spelling.
    Original(Dialect),
}

impl Shape {
    /// The shape asked for by the value of [`EXTENSIONS_HEADER`], if sent.
    fn asked(value: Option<&[u8]>, dialect: Dialect) -> Result<Shape, Error> {
        match value {
            None => Ok(Shape::Original(dialect)),
            Some(v) if v.eq_ignore_ascii_case(b"true") => Ok(Shape::Extended),
            Some(v) if v.eq_ignore_ascii_case(b"false") => Ok(Shape::Original(dialect)),
            Some(v) => Err(Error::BadRequest(format!(
                "header {EXTENSIONS_HEADER}: {:?} is neither true nor false",
                String::from_utf8_lossy(v)
            ))),
        }
    }

    /// Whether extensions are written (a page's `next`, for one).
    pub(crate) fn extended(self) -> bool {
        self == Shape::Extended
    }

    /// A name for the shape, to keep answers of different shapes apart in caches.
    pub(crate) fn cache_key(self) -> &'static str {
        match self {
            Shape::Extended => "extended",
            Shape::Original(Dialect::OpenOrch) => "openorch",
            Shape::Original(Dialect::OneBackend) => "1backend",
        }
    }
}

impl FromRequestParts<ApiState> for Shape {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &ApiState) -> Result<Self, Error> {
        let value = parts.headers.get(EXTENSIONS_HEADER).map(|v| v.as_bytes());
        Shape::asked(value, app.dialect)
    }
}

/// A model this registry answers with, and what it has beyond the original's schema.
pub(crate) trait Model: Serialize {
    /// Top-level fields the original's schema lacks.
    const EXTENSIONS: &'static [&'static str];

    /// Spells an object of the original's fields as `dialect` does.
    fn respell(_object: &mut Map<String, Value>, _dialect: Dialect) {}
}

impl Model for Instance {
    const EXTENSIONS: &'static [&'static str] =
        &["metadata", "healthCheck", "ttl", "deregisterAfter"];
}

impl Model for StoredInstance {
    const EXTENSIONS: &'static [&'static str] = Instance::EXTENSIONS;
}

impl Model for Node {
    const EXTENSIONS: &'static [&'static str] = &["status", "heartbeatInterval"];
}

impl Model for Definition {
    const EXTENSIONS: &'static [&'static str] = &[];

    /// OpenOrch's `RepositorySpec` calls the container's ports `ports`, and requires them.
    fn respell(object: &mut Map<String, Value>, dialect: Dialect) {
        if dialect != Dialect::OpenOrch {
            return;
        }
        if let Some(Value::Object(repository)) = object.get_mut("repository") {
            if let Some(ports) = repository.remove("internalPorts") {
                repository.insert("ports".into(), ports);
            }
        }
    }
}

/// The original answers a registration with `{}`; the id is this registry's addition.
impl Model for RegisterInstanceResponse {
    const EXTENSIONS: &'static [&'static str] = &["id"];
}

impl<T: Model> Model for std::sync::Arc<T> {
    const EXTENSIONS: &'static [&'static str] = T::EXTENSIONS;

    fn respell(object: &mut Map<String, Value>, dialect: Dialect) {
        T::respell(object, dialect);
    }
}

/// A model serialized in a shape.
pub(crate) struct Shaped<'a, T>(pub &'a T, pub Shape);

impl<T: Model> Serialize for Shaped<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Shaped(model, shape) = *self;
        let Shape::Original(dialect) = shape else {
            return model.serialize(serializer);
        };
        let Value::Object(mut object) = serde_json::to_value(model).map_err(S::Error::custom)?
        else {
            return Err(S::Error::custom("a model serializes as a JSON object"));
        };
        for field in T::EXTENSIONS {
            object.remove(*field);
        }
        T::respell(&mut object, dialect);
        object.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_types::RepositorySpec;
    use serde_json::json;

    #[test]
    fn the_header_says_true_or_false_or_nothing() {
        let dialect = Dialect::OneBackend;
        assert_eq!(
            Shape::asked(None, dialect).unwrap(),
            Shape::Original(dialect)
        );
        assert_eq!(
            Shape::asked(Some(b"TRUE"), dialect).unwrap(),
            Shape::Extended
        );
        assert_eq!(
            Shape::asked(Some(b"false"), dialect).unwrap(),
            Shape::Original(dialect)
        );
        let refused = Shape::asked(Some(b"yes"), dialect).unwrap_err();
        assert!(refused.to_string().contains(EXTENSIONS_HEADER), "{refused}");
    }

    #[test]
    fn each_dialect_spells_a_repository_its_way() {
        let definition = Definition {
            id: "d".into(),
            image: None,
            repository: Some(RepositorySpec {
                url: "https://example.com/r.git".into(),
                version: String::new(),
                build_context: String::new(),
                container_file: String::new(),
                internal_ports: vec![8080],
            }),
            api_specs: vec![],
            clients: vec![],
            envars: vec![],
            ports: vec![],
        };
        let written = |shape| serde_json::to_value(Shaped(&definition, shape)).unwrap();
        let open_orch = written(Shape::Original(Dialect::OpenOrch));
        assert_eq!(open_orch["repository"]["ports"], json!([8080]));
        assert!(open_orch["repository"].get("internalPorts").is_none());
        let one_backend = written(Shape::Original(Dialect::OneBackend));
        assert_eq!(one_backend["repository"]["internalPorts"], json!([8080]));
        assert!(one_backend["repository"].get("ports").is_none());
        assert_eq!(written(Shape::Extended), one_backend);
    }

    #[test]
    fn an_instance_loses_its_extensions_unless_asked() {
        let instance = Instance {
            id: "i".into(),
            url: "http://127.0.0.1:1".into(),
            ttl: Some("30s".into()),
            ..Default::default()
        };
        let original =
            serde_json::to_value(Shaped(&instance, Shape::Original(Dialect::OpenOrch))).unwrap();
        for field in Instance::EXTENSIONS {
            assert!(original.get(field).is_none(), "{field} in {original}");
        }
        assert_eq!(original["url"], "http://127.0.0.1:1");
        let extended = serde_json::to_value(Shaped(&instance, Shape::Extended)).unwrap();
        assert_eq!(extended["ttl"], "30s");
        assert_eq!(extended["metadata"], json!({}));
    }
}
