//! Definitions: deployable service templates. Input accepts the older short form
//! (`image.port`, top-level `hostPort`); the model and every response use the long form.

use crate::instance::validate_metadata;
use crate::limits::{MAX_ID_LEN, MAX_LIST_LEN, MAX_TEXT_LEN, MAX_URL_LEN};
use crate::number::{optional_whole, whole, whole_list};
use crate::object::{objects, optional_object};
use crate::validate::{validate_free_text, validate_id, validate_text};
use crate::FieldError;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// A deployable service template. It cannot be called; instances can.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    /// The definition's id, unique in the registry.
    pub id: String,
    /// The container image to run, when it is ready-built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// The repository to build the container from, when it is not ready-built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositorySpec>,
    /// The APIs the service offers.
    #[serde(default)]
    pub api_specs: Vec<ApiSpec>,
    /// Client libraries for the service.
    #[serde(default)]
    pub clients: Vec<Client>,
    /// Environment variables the container is given.
    #[serde(default)]
    pub envars: Vec<EnvVar>,
    /// Host ports mapped to the container's ports.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
}

/// A ready-built container image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// The image's name, e.g. `nginx:1.27`.
    pub name: String,
    /// The ports the container listens on.
    #[serde(default)]
    pub internal_ports: Vec<u16>,
}

/// A source repository the container is built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RepositorySpec {
    /// The repository's URL.
    pub url: String,
    /// The version (branch, tag or commit) to build; empty for the default branch.
    #[serde(default)]
    pub version: String,
    /// The directory the build runs in, relative to the repository's root.
    #[serde(default)]
    pub build_context: String,
    /// The container file (Dockerfile) to build with, relative to the build context.
    #[serde(default)]
    pub container_file: String,
    /// The ports the built container listens on.
    #[serde(default)]
    pub internal_ports: Vec<u16>,
}

/// An API the service offers, e.g. an OpenAPI document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// Where the API's specification is.
    #[serde(default)]
    pub url: String,
    /// The kind of API, e.g. `OpenAPI`.
    #[serde(default)]
    pub protocol_type: String,
    /// The API's version.
    #[serde(default)]
    pub version: String,
    /// Anything else about the API, as key and value.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub metadata: BTreeMap<String, String>,
}

/// A client library for the service in some language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Client {
    /// The library's language, one of [`Client::LANGUAGES`], e.g. `Go`.
    #[serde(default)]
    pub language: String,
    /// Where the library is.
    pub url: String,
}

impl Client {
    /// The languages a client library may be in: the originals' list, which their generated
    /// clients check when they read a definition.
    pub const LANGUAGES: [&'static str; 19] = [
        "JavaScript",
        "Python",
        "Java",
        "C#",
        "C++",
        "Ruby",
        "Go",
        "Swift",
        "PHP",
        "TypeScript",
        "Kotlin",
        "Scala",
        "Perl",
        "Rust",
        "Haskell",
        "Clojure",
        "Elixir",
        "Objective-C",
        "F#",
    ];
}

/// An environment variable of the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvVar {
    /// The variable's name.
    #[serde(default)]
    pub key: String,
    /// Its value.
    pub value: String,
}

/// A port of the container published on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortMapping {
    /// The port inside the container.
    #[serde(deserialize_with = "whole")]
    pub internal: u16,
    /// The port on the host.
    #[serde(default, deserialize_with = "whole")]
    pub host: u16,
}

/// Body of `PUT /registry-svc/definition`.
#[derive(Debug, Clone, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SaveDefinitionRequest {
    /// The definition to save; required.
    #[serde(default, deserialize_with = "optional_object")]
    pub definition: Option<DefinitionInput>,
}

/// A definition as a person or an older client writes it: long or short form.
#[derive(Debug, Clone, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DefinitionInput {
    /// The definition's id, unique in the registry.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// The container image to run, when it is ready-built.
    #[serde(default, deserialize_with = "optional_object")]
    pub image: Option<ImageInput>,
    /// The repository to build the container from, when it is not ready-built.
    #[serde(default, deserialize_with = "optional_object")]
    pub repository: Option<RepositoryInput>,
    /// The APIs the service offers.
    #[serde(default, deserialize_with = "objects")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub api_specs: Vec<ApiSpec>,
    /// Client libraries for the service.
    #[serde(default, deserialize_with = "objects")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub clients: Vec<Client>,
    /// Environment variables the container is given.
    #[serde(default, deserialize_with = "objects")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub envars: Vec<EnvVar>,
    /// Host ports mapped to the container's ports (long form).
    #[serde(default, deserialize_with = "objects")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub ports: Vec<PortMapping>,
    /// Short form: one host port, mapped to the first internal port.
    #[serde(default, deserialize_with = "optional_whole")]
    pub host_port: Option<u16>,
}

/// A ready-built image as written: long or short form.
#[derive(Debug, Clone, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImageInput {
    /// The image's name, e.g. `nginx:1.27`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// The ports the container listens on.
    #[serde(default, deserialize_with = "whole_list")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub internal_ports: Vec<u16>,
    /// Short form of `internalPorts: [port]`.
    #[serde(default, deserialize_with = "optional_whole")]
    pub port: Option<u16>,
}

/// A source repository as written: long or short form.
#[derive(Debug, Clone, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RepositoryInput {
    /// The repository's URL.
    #[serde(default, deserialize_with = "null_as_default")]
    pub url: String,
    /// The version (branch, tag or commit) to build; empty for the default branch.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub version: String,
    /// The directory the build runs in, relative to the repository's root.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub build_context: String,
    /// The container file (Dockerfile) to build with, relative to the build context.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub container_file: String,
    /// 1Backend spells this `ports`; both are read.
    #[serde(default, alias = "ports", deserialize_with = "whole_list")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub internal_ports: Vec<u16>,
    /// Short form of `internalPorts: [port]`.
    #[serde(default, deserialize_with = "optional_whole")]
    pub port: Option<u16>,
}

/// Go clients send `null` for empty slices and maps; read it as empty.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `internalPorts` plus the short-form `port`, in order and without repeats.
fn merge_ports(
    field: &str,
    mut ports: Vec<u16>,
    short: Option<u16>,
) -> Result<Vec<u16>, FieldError> {
    if let Some(port) = short {
        if port == 0 {
            return Err(FieldError::new(format!("{field}.port"), "must be 1–65535"));
        }
        if !ports.contains(&port) {
            ports.insert(0, port);
        }
    }
    if let Some(i) = ports.iter().position(|p| *p == 0) {
        return Err(FieldError::new(
            format!("{field}.internalPorts[{i}]"),
            "must be 1–65535",
        ));
    }
    Ok(ports)
}

impl DefinitionInput {
    /// Checks every field and turns the input into the long-form model. Field names in errors
    /// are relative to the definition (`id`, `image.name`); callers add their own prefix.
    pub fn into_definition(self) -> Result<Definition, FieldError> {
        validate_id("id", &self.id)?;
        self.validate_lists()?;
        if self.image.is_some() && self.repository.is_some() {
            return Err(FieldError::new(
                "image",
                "a definition has either an image or a repository, not both",
            ));
        }
        let image = match self.image {
            None => None,
            Some(image) => {
                if image.name.trim().is_empty() {
                    return Err(FieldError::new("image.name", "is required"));
                }
                validate_text("image.name", &image.name, MAX_TEXT_LEN)?;
                Some(ImageSpec {
                    internal_ports: merge_ports("image", image.internal_ports, image.port)?,
                    name: image.name,
                })
            }
        };
        let repository = match self.repository {
            None => None,
            Some(repo) => {
                if repo.url.trim().is_empty() {
                    return Err(FieldError::new("repository.url", "is required"));
                }
                for (name, value) in [
                    ("repository.url", &repo.url),
                    ("repository.version", &repo.version),
                    ("repository.buildContext", &repo.build_context),
                    ("repository.containerFile", &repo.container_file),
                ] {
                    validate_text(name, value, MAX_TEXT_LEN)?;
                }
                Some(RepositorySpec {
                    internal_ports: merge_ports("repository", repo.internal_ports, repo.port)?,
                    url: repo.url,
                    version: repo.version,
                    build_context: repo.build_context,
                    container_file: repo.container_file,
                })
            }
        };
        let mut ports = self.ports;
        if let Some(i) = ports.iter().position(|p| p.host == 0) {
            return Err(FieldError::new(
                format!("ports[{i}].host"),
                "must be 1–65535",
            ));
        }
        if let Some(host) = self.host_port {
            if host == 0 {
                return Err(FieldError::new("hostPort", "must be 1–65535"));
            }
            let internal = image
                .as_ref()
                .map(|i| &i.internal_ports)
                .or(repository.as_ref().map(|r| &r.internal_ports))
                .and_then(|p| p.first().copied())
                .unwrap_or(0);
            let mapping = PortMapping { internal, host };
            if !ports.contains(&mapping) {
                ports.push(mapping);
            }
        }
        Ok(Definition {
            id: self.id,
            image,
            repository,
            api_specs: self.api_specs,
            clients: self.clients,
            envars: self.envars,
            ports,
        })
    }
}

impl DefinitionInput {
    /// The lists a definition carries: bounded in length, their text in range.
    fn validate_lists(&self) -> Result<(), FieldError> {
        for (name, len) in [
            ("apiSpecs", self.api_specs.len()),
            ("clients", self.clients.len()),
            ("envars", self.envars.len()),
            ("ports", self.ports.len()),
            (
                "image.internalPorts",
                self.image.as_ref().map_or(0, |i| i.internal_ports.len()),
            ),
            (
                "repository.internalPorts",
                self.repository
                    .as_ref()
                    .map_or(0, |r| r.internal_ports.len()),
            ),
        ] {
            if len > MAX_LIST_LEN {
                return Err(FieldError::new(
                    name,
                    format!("has {len} entries, at most {MAX_LIST_LEN} allowed"),
                ));
            }
        }
        for (i, spec) in self.api_specs.iter().enumerate() {
            let field = format!("apiSpecs[{i}]");
            validate_text(&format!("{field}.url"), &spec.url, MAX_URL_LEN)?;
            validate_text(
                &format!("{field}.protocolType"),
                &spec.protocol_type,
                MAX_ID_LEN,
            )?;
            validate_text(&format!("{field}.version"), &spec.version, MAX_ID_LEN)?;
            validate_metadata(&format!("{field}.metadata"), &spec.metadata)?;
        }
        for (i, client) in self.clients.iter().enumerate() {
            if !Client::LANGUAGES.contains(&client.language.as_str()) {
                return Err(FieldError::new(
                    format!("clients[{i}].language"),
                    format!(
                        "{:?} is not one of {}",
                        client.language,
                        Client::LANGUAGES.join(", ")
                    ),
                ));
            }
            validate_text(&format!("clients[{i}].url"), &client.url, MAX_URL_LEN)?;
        }
        for (i, envar) in self.envars.iter().enumerate() {
            if envar.key.is_empty() {
                return Err(FieldError::new(format!("envars[{i}].key"), "is required"));
            }
            validate_text(&format!("envars[{i}].key"), &envar.key, MAX_ID_LEN)?;
            validate_free_text(&format!("envars[{i}].value"), &envar.value, MAX_TEXT_LEN)?;
        }
        Ok(())
    }
}

impl From<Definition> for DefinitionInput {
    fn from(d: Definition) -> Self {
        DefinitionInput {
            id: d.id,
            image: d.image.map(|i| ImageInput {
                name: i.name,
                internal_ports: i.internal_ports,
                port: None,
            }),
            repository: d.repository.map(|r| RepositoryInput {
                url: r.url,
                version: r.version,
                build_context: r.build_context,
                container_file: r.container_file,
                internal_ports: r.internal_ports,
                port: None,
            }),
            api_specs: d.api_specs,
            clients: d.clients,
            envars: d.envars,
            ports: d.ports,
            host_port: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_yaml(text: &str) -> Result<Definition, FieldError> {
        serde_yaml_ng::from_str::<DefinitionInput>(text)
            .unwrap()
            .into_definition()
    }

    #[test]
    fn short_image_form_becomes_long_form() {
        let def = from_yaml(
            "id: test-a\nimage:\n  name: hashicorp/http-echo\n  port: 8080\nhostPort: 8887\n",
        )
        .unwrap();
        assert_eq!(
            def.image,
            Some(ImageSpec {
                name: "hashicorp/http-echo".into(),
                internal_ports: vec![8080]
            })
        );
        assert_eq!(
            def.ports,
            vec![PortMapping {
                internal: 8080,
                host: 8887
            }]
        );
        let json = serde_json::to_value(&def).unwrap();
        assert_eq!(json["image"]["internalPorts"], serde_json::json!([8080]));
        assert!(json["image"].get("port").is_none());
        assert!(json.get("hostPort").is_none());
    }

    #[test]
    fn host_port_without_known_internal_port_maps_from_zero() {
        let def = from_yaml(
            "id: test-b\nrepository:\n  url: https://example.com/r.git\nhostPort: 9998\n",
        )
        .unwrap();
        assert_eq!(
            def.ports,
            vec![PortMapping {
                internal: 0,
                host: 9998
            }]
        );
        assert_eq!(def.repository.unwrap().url, "https://example.com/r.git");
    }

    #[test]
    fn repository_ports_alias_is_read() {
        let def: DefinitionInput =
            serde_json::from_str(r#"{"id":"x","repository":{"url":"u","ports":[80]}}"#).unwrap();
        assert_eq!(
            def.into_definition()
                .unwrap()
                .repository
                .unwrap()
                .internal_ports,
            vec![80]
        );
    }

    #[test]
    fn neither_image_nor_repository_is_valid() {
        assert!(from_yaml("id: bare\n").is_ok());
    }

    #[test]
    fn both_image_and_repository_is_rejected() {
        let err = from_yaml("id: x\nimage: {name: a}\nrepository: {url: b}\n").unwrap_err();
        assert_eq!(err.field, "image");
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(from_yaml("image: {name: a}\n").unwrap_err().field, "id");
        assert_eq!(
            from_yaml("id: x\nimage: {port: 80}\n").unwrap_err().field,
            "image.name"
        );
        assert_eq!(
            from_yaml("id: x\nimage: {name: a, internalPorts: [0]}\n")
                .unwrap_err()
                .field,
            "image.internalPorts[0]"
        );
        assert_eq!(
            from_yaml("id: x\nenvars: [{value: v}]\n")
                .unwrap_err()
                .field,
            "envars[0].key"
        );
    }

    #[test]
    fn null_collections_read_as_empty() {
        let def: DefinitionInput =
            serde_json::from_str(r#"{"id":"x","apiSpecs":null,"envars":null,"ports":null}"#)
                .unwrap();
        let def = def.into_definition().unwrap();
        assert!(def.api_specs.is_empty() && def.envars.is_empty() && def.ports.is_empty());
    }
}
