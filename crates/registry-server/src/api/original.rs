//! Where `/openapi.json` follows the original's document beyond what the types derive, so
//! that a client generated from it reads like one generated from OpenOrch's or 1Backend's:
//! every property described (utoipa puts the description of an optional reference inside
//! its `oneOf`; it is lifted to the property), the answer fields the original marks
//! required, and a repository's ports spelled as the deployment's [`Dialect`] spells them
//! in answers that ask for no extensions.

use crate::config::Dialect;
use serde_json::Value;

/// `(schema, fields)`: fields of answers the original's schema requires. This registry
/// always writes them; the derived schemas leave out those that have a default.
const REQUIRED: &[(&str, &[&str])] = &[
    ("Instance", &["id", "status", "url"]),
    ("ImageSpec", &["internalPorts", "name"]),
    ("RepositorySpec", &["internalPorts", "url"]),
];

/// Brings `document` (with its ranges published) in line with the original's.
pub(super) fn follow(document: &mut Value, dialect: Dialect) {
    let Some(Value::Object(schemas)) = document.pointer_mut("/components/schemas") else {
        return;
    };
    for schema in schemas.values_mut() {
        if let Some(Value::Object(properties)) = schema.get_mut("properties") {
            properties.values_mut().for_each(lift_description);
        }
    }
    for (name, fields) in REQUIRED {
        let schema = &mut schemas[*name];
        let derived = schema["required"].as_array().cloned().unwrap_or_default();
        let mut names: Vec<Value> = fields.iter().map(|f| Value::from(*f)).collect();
        for name in derived {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        schema["required"] = Value::Array(names);
    }
    if dialect == Dialect::OpenOrch {
        rename_property(&mut schemas["RepositorySpec"], "internalPorts", "ports");
    }
}

/// `{"oneOf": [{"type": "null"}, {"$ref": …, "description": d}]}` gets `"description": d`.
fn lift_description(property: &mut Value) {
    if property.get("description").is_some() {
        return;
    }
    let described = property["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|choice| choice.get("description").cloned());
    if let (Some(description), Value::Object(property)) = (described, property) {
        property.insert("description".into(), description);
    }
}

fn rename_property(schema: &mut Value, from: &str, to: &str) {
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        if let Some(property) = properties.remove(from) {
            properties.insert(to.into(), property);
        }
    }
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        for name in required.iter_mut().filter(|n| *n == from) {
            *name = Value::from(to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document() -> Value {
        json!({"components": {"schemas": {
            "Instance": {"properties": {"id": {"description": "i"}}, "required": ["id", "url"]},
            "ImageSpec": {"properties": {}, "required": ["name"]},
            "RepositorySpec": {
                "properties": {"internalPorts": {"maxItems": 256}, "url": {}},
                "required": ["url"]
            },
            "Definition": {"properties": {"image": {"oneOf": [
                {"type": "null"}, {"$ref": "#/components/schemas/ImageSpec", "description": "d"}
            ]}}}
        }}})
    }

    #[test]
    fn marks_the_originals_required_fields_and_spells_ports_per_dialect() {
        let mut open_orch = document();
        follow(&mut open_orch, Dialect::OpenOrch);
        let schemas = &open_orch["components"]["schemas"];
        assert_eq!(
            schemas["Instance"]["required"],
            json!(["id", "status", "url"])
        );
        assert_eq!(
            schemas["RepositorySpec"]["required"],
            json!(["ports", "url"])
        );
        assert_eq!(
            schemas["RepositorySpec"]["properties"]["ports"]["maxItems"],
            256
        );
        assert_eq!(
            schemas["Definition"]["properties"]["image"]["description"],
            "d"
        );
        let mut one_backend = document();
        follow(&mut one_backend, Dialect::OneBackend);
        let repository = &one_backend["components"]["schemas"]["RepositorySpec"];
        assert_eq!(repository["required"], json!(["internalPorts", "url"]));
        assert!(repository["properties"].get("ports").is_none());
    }
}
