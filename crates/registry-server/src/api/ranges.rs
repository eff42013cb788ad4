//! Publishes the ranges of [`registry_types::limits`] in the OpenAPI document.
//!
//! The schemas derived from the wire types say what type each field has; the ranges the
//! validation enforces live in `registry_types::limits` (and the patterns beside its
//! rules), and are written into the document here, from those same constants, so a
//! client generated from `/openapi.json` learns every bound the server checks and no
//! bound is written down twice. Query parameters carry theirs from their declaration in
//! [`super::query`].

use registry_types::limits::{self, DurationRange};
use registry_types::{AddressPart, ID_PATTERN, TEXT_PATTERN};
use serde_json::{json, Value};

/// A text field that may be empty (meaning "not given") or a valid id.
pub(super) const OPTIONAL_ID_PATTERN: &str = "^[A-Za-z0-9._-]{0,128}$";
/// Free text: tabs and line breaks allowed, other control characters not.
const FREE_TEXT_PATTERN: &str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";
/// Required text: one-line text with at least one character that is not a space.
const REQUIRED_TEXT_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";

fn text(max: usize) -> Value {
    json!({"maxLength": max, "pattern": TEXT_PATTERN})
}

fn id() -> Value {
    json!({"minLength": 1, "maxLength": limits::MAX_ID_LEN, "pattern": ID_PATTERN})
}

fn port(least: u16) -> Value {
    json!({"minimum": least, "maximum": u16::MAX})
}

pub(super) fn duration(range: DurationRange, what: &str) -> Value {
    json!({
        "pattern": range.pattern(),
        "description": format!("{what}: a whole number and one unit of ms, s, m, h or d (e.g. \"10s\"), {}", range.describe()),
    })
}

/// A part of an instance's address: its grammar, exactly as enforced.
fn address(part: AddressPart) -> Value {
    json!({"maxLength": limits::MAX_URL_LEN, "pattern": part.pattern()})
}

fn threshold() -> Value {
    let (least, most) = limits::THRESHOLD;
    json!({"minimum": least, "maximum": most})
}

fn list(max: usize, items: Value) -> Value {
    json!({"maxItems": max, "items": items})
}

fn metadata() -> Value {
    json!({
        "maxProperties": limits::MAX_METADATA,
        "propertyNames": {"minLength": 1, "maxLength": limits::MAX_ID_LEN, "pattern": TEXT_PATTERN},
        "additionalProperties": {"maxLength": limits::MAX_TEXT_LEN, "pattern": FREE_TEXT_PATTERN},
    })
}

/// `(schema, property, constraints)`: merged into `components.schemas.<schema>.properties.<property>`.
fn schema_ranges() -> Vec<(&'static str, &'static str, Value)> {
    use limits::{MAX_ID_LEN, MAX_LIST_LEN, MAX_TEXT_LEN, MAX_URL_LEN};
    let mut ranges = vec![
        (
            "HealthCheck",
            "interval",
            duration(limits::CHECK_INTERVAL, "Time between checks"),
        ),
        (
            "HealthCheck",
            "timeout",
            duration(
                limits::CHECK_TIMEOUT,
                "Longest a check may take (at most the interval)",
            ),
        ),
        (
            "HealthCheck",
            "degradedLatency",
            duration(limits::DEGRADED_LATENCY, "A slower answer is Degraded"),
        ),
        ("HealthCheck", "healthyThreshold", threshold()),
        ("HealthCheck", "unhealthyThreshold", threshold()),
        (
            "HealthCheck",
            "path",
            json!({"maxLength": MAX_URL_LEN, "pattern": r"^(/[^\u0000-\u001f\u007f-\u009f]*)?$"}),
        ),
        (
            "RegisterInstanceRequest",
            "id",
            json!({"maxLength": MAX_ID_LEN, "pattern": OPTIONAL_ID_PATTERN}),
        ),
        (
            "RegisterInstanceRequest",
            "slug",
            json!({"maxLength": MAX_ID_LEN, "pattern": OPTIONAL_ID_PATTERN}),
        ),
        ("RegisterInstanceRequest", "deploymentId", text(MAX_ID_LEN)),
        ("RegisterInstanceRequest", "url", address(AddressPart::Url)),
        (
            "RegisterInstanceRequest",
            "nodeUrl",
            address(AddressPart::Url),
        ),
        ("RegisterInstanceRequest", "port", port(1)),
        (
            "RegisterInstanceRequest",
            "tags",
            list(
                limits::MAX_TAGS,
                json!({"minLength": 1, "maxLength": MAX_ID_LEN, "pattern": TEXT_PATTERN}),
            ),
        ),
        ("RegisterInstanceRequest", "metadata", metadata()),
        (
            "RegisterInstanceRequest",
            "ttl",
            duration(
                limits::TTL,
                "The instance heartbeats itself; silence longer than this is Unreachable",
            ),
        ),
        (
            "RegisterInstanceRequest",
            "deregisterAfter",
            duration(
                limits::DEREGISTER_AFTER,
                "An instance Unreachable this long is removed",
            ),
        ),
        ("DefinitionInput", "id", id()),
        ("DefinitionInput", "hostPort", port(1)),
        (
            "ImageInput",
            "name",
            json!({"minLength": 1, "maxLength": MAX_TEXT_LEN, "pattern": REQUIRED_TEXT_PATTERN}),
        ),
        ("ImageInput", "port", port(1)),
        ("ImageInput", "internalPorts", list(MAX_LIST_LEN, port(1))),
        (
            "RepositoryInput",
            "url",
            json!({"minLength": 1, "maxLength": MAX_TEXT_LEN, "pattern": REQUIRED_TEXT_PATTERN}),
        ),
        ("RepositoryInput", "port", port(1)),
        (
            "RepositoryInput",
            "internalPorts",
            list(MAX_LIST_LEN, port(1)),
        ),
        ("ApiSpec", "url", text(MAX_URL_LEN)),
        ("ApiSpec", "protocolType", text(MAX_ID_LEN)),
        ("ApiSpec", "version", text(MAX_ID_LEN)),
        ("ApiSpec", "metadata", metadata()),
        (
            "Client",
            "language",
            json!({"enum": registry_types::Client::LANGUAGES}),
        ),
        ("Client", "url", text(MAX_URL_LEN)),
        (
            "EnvVar",
            "key",
            json!({"minLength": 1, "maxLength": MAX_ID_LEN, "pattern": TEXT_PATTERN}),
        ),
        (
            "EnvVar",
            "value",
            json!({"maxLength": MAX_TEXT_LEN, "pattern": FREE_TEXT_PATTERN}),
        ),
        ("PortMapping", "host", port(1)),
        ("PortMapping", "internal", port(0)),
        ("CreateTokenRequest", "slug", id()),
        ("ListNodesRequest", "ids", list(limits::MAX_IDS, json!({}))),
    ];
    for (field, part) in [
        ("scheme", AddressPart::Scheme),
        ("host", AddressPart::Host),
        ("ip", AddressPart::Ip),
        ("path", AddressPart::Path),
    ] {
        ranges.push(("RegisterInstanceRequest", field, address(part)));
    }
    for field in ["version", "buildContext", "containerFile"] {
        ranges.push(("RepositoryInput", field, text(MAX_TEXT_LEN)));
    }
    for field in ["apiSpecs", "clients", "envars", "ports"] {
        ranges.push(("DefinitionInput", field, json!({"maxItems": MAX_LIST_LEN})));
    }
    ranges
}

/// Fields a request must carry, non-null, though the wire types read them with a default
/// (so that the error can name them instead of a parse error doing so).
const REQUIRED: [(&str, &str); 8] = [
    ("CreateTokenRequest", "slug"),
    ("SaveDefinitionRequest", "definition"),
    ("DefinitionInput", "id"),
    ("ImageInput", "name"),
    ("RepositoryInput", "url"),
    ("EnvVar", "key"),
    ("PortMapping", "host"),
    ("Client", "language"),
];

/// Writes every range into `document` (the OpenAPI document as JSON).
pub(super) fn publish(document: &mut Value) {
    for (schema, property) in REQUIRED {
        let schema = document
            .pointer_mut(&format!("/components/schemas/{schema}"))
            .unwrap_or_else(|| panic!("the API document has no schema {schema}"));
        let required = schema["required"].as_array_mut();
        match required {
            Some(required) => required.push(json!(property)),
            None => schema["required"] = json!([property]),
        }
        not_null(&mut schema["properties"][property]);
    }
    // An instance's address is a URL, or a scheme, a host (or an IP address) and a port.
    let given = json!({"type": "string", "minLength": 1});
    document["components"]["schemas"]["RegisterInstanceRequest"]["anyOf"] = json!([
        {"required": ["url"], "properties": {"url": given}},
        {"required": ["scheme", "host", "port"],
         "properties": {"scheme": given, "host": given, "port": {"type": "integer"}}},
        {"required": ["scheme", "ip", "port"],
         "properties": {"scheme": given, "ip": given, "port": {"type": "integer"}}},
    ]);
    // A definition has an image or a repository, not both.
    document["components"]["schemas"]["DefinitionInput"]["not"] = json!({
        "required": ["image", "repository"],
        "properties": {"image": {"type": "object"}, "repository": {"type": "object"}},
    });
    for (schema, property, constraints) in schema_ranges() {
        let pointer = format!("/components/schemas/{schema}/properties/{property}");
        let target = document
            .pointer_mut(&pointer)
            .unwrap_or_else(|| panic!("the API document has no {pointer}"));
        merge(target, constraints);
    }
}

/// Takes `null` out of what a property may be.
fn not_null(property: &mut Value) {
    if let Some(variants) = property.get_mut("oneOf").and_then(Value::as_array_mut) {
        variants.retain(|v| v.get("type") != Some(&json!("null")));
        if variants.len() == 1 {
            *property = variants.pop().expect("one variant");
        }
    } else if let Some(types) = property.get_mut("type").and_then(Value::as_array_mut) {
        types.retain(|t| t != "null");
    }
}

/// Adds `constraints` to a property's schema. A description is put beside the one the
/// code gives; constraints on items, values or keys are merged into what the code says of
/// them. A property that may be null is
/// described as `oneOf` or `type: [T, "null"]`; constraints go where the value is.
fn merge(target: &mut Value, constraints: Value) {
    let Value::Object(constraints) = constraints else {
        return;
    };
    if let Some(variants) = target.get_mut("oneOf").and_then(Value::as_array_mut) {
        for variant in variants
            .iter_mut()
            .filter(|v| v.get("type") != Some(&json!("null")))
        {
            merge(variant, Value::Object(constraints.clone()));
        }
        return;
    }
    for (key, value) in constraints {
        match key.as_str() {
            "items" | "additionalProperties" | "propertyNames" => {
                merge(&mut target[key.as_str()], value)
            }
            "description" => {
                let joined = match target.get("description").and_then(Value::as_str) {
                    Some(given) => format!("{given}. {}", value.as_str().unwrap_or_default()),
                    None => value.as_str().unwrap_or_default().to_string(),
                };
                target["description"] = Value::String(joined);
            }
            _ => {
                target[key.as_str()] = value;
            }
        }
    }
}
