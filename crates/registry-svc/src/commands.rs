//! Runs each client subcommand: reads input, calls the registry, prints the result.

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use rand::seq::SliceRandom;
use registry_client::RegistryClient;
use registry_types::{
    Definition, DefinitionInput, HealthCheck, HealthCheckType, InstanceFilter, InstanceStatus,
    RegisterInstanceRequest,
};
use serde::Serialize;
use serde_json::json;
use std::io::{Read, Write};

use crate::cli::{
    CheckKind, Cli, Command, DefinitionsCommand, InstanceFilterArgs, InstancesCommand,
    NodesCommand, OutputFormat, RegisterArgs, ResolveArgs, TokensCommand,
};
use crate::{backup, connection, output, serve, watch};

pub(crate) async fn run(cli: Cli) -> Result<()> {
    if let Command::Serve(config) = cli.command {
        return serve::run(*config).await;
    }
    let client = connection::client(&cli.global)?;
    let format = cli.global.output;
    match cli.command {
        Command::Definitions { command } => definitions(&client, format, command).await,
        Command::Instances { command } => instances(&client, format, command).await,
        Command::Nodes { command } => nodes(&client, format, command).await,
        Command::Tokens { command } => tokens(&client, format, command).await,
        Command::Resolve(args) => resolve(&client, format, args).await,
        Command::Backup { file } => backup::save(&client, format, &file).await,
        Command::Restore { file } => backup::restore(&client, format, &file).await,
        Command::Serve(_) => unreachable!("handled above"),
    }
}

async fn definitions(
    client: &RegistryClient,
    format: OutputFormat,
    command: DefinitionsCommand,
) -> Result<()> {
    match command {
        DefinitionsCommand::Save { file } => {
            let definition = read_definition(&file)?;
            client.save_definition(&definition).await?;
            match format {
                OutputFormat::Table => emit(&format!("saved definition {}\n", definition.id)),
                OutputFormat::Json => emit(&output::json(&definition)?),
            }
        }
        DefinitionsCommand::Ls => {
            let list = client.list_definitions().await?;
            show(format, &list, |list| output::definitions(list))
        }
        DefinitionsCommand::Rm { id } => {
            client.delete_definition(&id).await?;
            confirm(format, "removed definition", &id)
        }
    }
}

async fn instances(
    client: &RegistryClient,
    format: OutputFormat,
    command: InstancesCommand,
) -> Result<()> {
    match command {
        InstancesCommand::Register(args) => {
            let request = register_request(args);
            let id = client.register_instance(&request).await?;
            match format {
                OutputFormat::Table => {
                    emit(&format!("registered instance {id} ({})\n", request.url))
                }
                OutputFormat::Json => {
                    let filter = InstanceFilter {
                        id: Some(id.clone()),
                        ..Default::default()
                    };
                    let registered = client.list_instances(&filter).await?;
                    let instance = registered
                        .first()
                        .ok_or_else(|| anyhow!("instance {id} vanished right after registering"))?;
                    emit(&output::json(instance)?)
                }
            }
        }
        InstancesCommand::Ls(args) if args.watch => {
            watch::instances(client, format, &instance_filter(args.filter)).await
        }
        InstancesCommand::Ls(args) => {
            let list = client.list_instances(&instance_filter(args.filter)).await?;
            show(format, &list, |list| output::instances(list, Utc::now()))
        }
        InstancesCommand::Rm { id } => {
            client.delete_instance(&id).await?;
            confirm(format, "removed instance", &id)
        }
        InstancesCommand::Heartbeat { id } => {
            client.heartbeat_instance(&id).await?;
            match format {
                OutputFormat::Table => emit(&format!("heartbeat sent for {id}\n")),
                OutputFormat::Json => {
                    emit(&output::json(&json!({ "id": id, "result": "heartbeat" }))?)
                }
            }
        }
    }
}

async fn nodes(client: &RegistryClient, format: OutputFormat, command: NodesCommand) -> Result<()> {
    match command {
        NodesCommand::Ls => {
            let list = client.list_nodes(&[]).await?;
            show(format, &list, |list| output::nodes(list, Utc::now()))
        }
        NodesCommand::Current => {
            let node = client.node_self().await?;
            show(format, &node, |node| output::node(node, Utc::now()))
        }
        NodesCommand::Rm { url } => {
            client.delete_node(&url).await?;
            confirm(format, "removed node", &url)
        }
    }
}

async fn tokens(
    client: &RegistryClient,
    format: OutputFormat,
    command: TokensCommand,
) -> Result<()> {
    match command {
        TokensCommand::Create { slug, role } => {
            let created = client.create_token(&slug, role).await?;
            match format {
                OutputFormat::Json => emit(&output::json(&created)?),
                OutputFormat::Table => {
                    // The secret alone on stdout, so `$(registry-svc tokens create ...)` is it.
                    eprintln!(
                        "created {} token {} for {}; the token below is shown only once:",
                        created.role,
                        output::printable(&created.id),
                        output::printable(&created.slug)
                    );
                    emit(&format!("{}\n", output::printable(&created.token)))
                }
            }
        }
        TokensCommand::Ls => {
            let list = client.list_tokens().await?;
            show(format, &list, |list| output::tokens(list))
        }
        TokensCommand::Revoke { id } => {
            client.revoke_token(&id).await?;
            confirm(format, "revoked token", &id)
        }
    }
}

/// Prints one healthy instance of the slug, picked at random, or all of them.
async fn resolve(client: &RegistryClient, format: OutputFormat, args: ResolveArgs) -> Result<()> {
    let filter = InstanceFilter {
        slug: Some(args.slug.clone()),
        status: Some(InstanceStatus::Healthy),
        ..Default::default()
    };
    let mut healthy = client.list_instances(&filter).await?;
    healthy.retain(|i| i.slug == args.slug && i.status == InstanceStatus::Healthy);
    if healthy.is_empty() {
        bail!("no healthy instance of {:?}", args.slug);
    }
    if !args.all {
        let pick = healthy
            .choose(&mut rand::thread_rng())
            .cloned()
            .expect("not empty");
        healthy = vec![pick];
    }
    match (format, args.all) {
        (OutputFormat::Json, true) => emit(&output::json(&healthy)?),
        (OutputFormat::Json, false) => emit(&output::json(&healthy[0])?),
        (OutputFormat::Table, _) => {
            let urls: String = healthy
                .iter()
                .map(|i| format!("{}\n", output::printable(&i.url)))
                .collect();
            emit(&urls)
        }
    }
}

/// Reads one definition from a YAML or JSON file ('-': stdin) and checks it, so a bad file
/// fails here with the field's name rather than at the registry.
fn read_definition(file: &str) -> Result<Definition> {
    let text = if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the definition from stdin")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?
    };
    let name = if file == "-" { "stdin" } else { file };
    parse_definition(&text).with_context(|| format!("{name} is not a valid definition"))
}

fn parse_definition(text: &str) -> Result<Definition> {
    // JSON is YAML too, but serde_json reads every JSON file and says where it went wrong.
    let input: DefinitionInput = if text.trim_start().starts_with('{') {
        serde_json::from_str(text)?
    } else {
        serde_yaml_ng::from_str(text)?
    };
    input.into_definition().map_err(|e| anyhow!(e))
}

fn register_request(args: RegisterArgs) -> RegisterInstanceRequest {
    let checks_set = args.check.is_some()
        || args.check_path.is_some()
        || args.interval.is_some()
        || args.timeout.is_some();
    let health_check = checks_set.then(|| HealthCheck {
        check_type: args.check.map(|kind| match kind {
            CheckKind::Tcp => HealthCheckType::Tcp,
            CheckKind::Http => HealthCheckType::Http,
            CheckKind::None => HealthCheckType::None,
        }),
        path: args.check_path,
        interval: args.interval,
        timeout: args.timeout,
        ..Default::default()
    });
    RegisterInstanceRequest {
        url: args.url,
        id: args.id.unwrap_or_default(),
        slug: args.slug.unwrap_or_default(),
        deployment_id: args.deployment_id.unwrap_or_default(),
        node_url: args.node_url.unwrap_or_default(),
        tags: args.tags,
        metadata: args.metadata.into_iter().collect(),
        health_check,
        ttl: args.ttl,
        deregister_after: args.deregister_after,
        ..Default::default()
    }
}

fn instance_filter(args: InstanceFilterArgs) -> InstanceFilter {
    InstanceFilter {
        id: args.id,
        slug: args.slug,
        host: args.host,
        ip: args.ip,
        scheme: args.scheme,
        path: args.path,
        deployment_id: args.deployment_id,
        node_url: args.node_url,
        status: args.status,
        tags: args.tags,
    }
}

/// Prints `value` as JSON, or as `table` renders it.
fn show<T: Serialize + ?Sized>(
    format: OutputFormat,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> Result<()> {
    match format {
        OutputFormat::Table => emit(&table(value)),
        OutputFormat::Json => emit(&output::json(value)?),
    }
}

/// The confirmation of a removal: a line for a person, `{"id": ..., "result": ...}` for scripts.
fn confirm(format: OutputFormat, done: &str, id: &str) -> Result<()> {
    match format {
        OutputFormat::Table => emit(&format!("{done} {}\n", output::printable(id))),
        OutputFormat::Json => emit(&output::json(&json!({ "id": id, "result": done }))?),
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub(crate) fn emit(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_types::PortMapping;

    #[test]
    fn short_form_yaml_and_long_form_json_both_load() {
        let yaml = parse_definition(
            "id: test-a\nimage:\n  name: hashicorp/http-echo\n  port: 8080\nhostPort: 8887\n",
        )
        .unwrap();
        let json = parse_definition(
            "{\n\t\"id\": \"test-a\",\n\t\"image\": {\"name\": \"hashicorp/http-echo\", \"internalPorts\": [8080]},\n\t\"ports\": [{\"internal\": 8080, \"host\": 8887}]\n}",
        )
        .unwrap();
        assert_eq!(yaml, json);
        assert_eq!(
            yaml.ports,
            [PortMapping {
                internal: 8080,
                host: 8887
            }]
        );
    }

    mod definition_properties {
        use super::*;
        use proptest::prelude::*;

        /// A definition file as a person writes it: short or long form, YAML or JSON,
        /// with values YAML would misread if a writer did not quote them.
        fn definition_file() -> impl Strategy<Value = String> {
            let text = prop_oneof![
                "\\PC{0,12}",
                prop::sample::select(vec!["~", "null", "yes", "1e3", "- x", "a: b"])
                    .prop_map(String::from)
            ];
            (
                "[A-Za-z0-9._-]{1,20}",
                text.clone().prop_filter("named", |n| !n.trim().is_empty()),
                prop::option::of(1u16..),
                prop::option::of(1u16..),
                any::<bool>(),
            )
                .prop_map(|(id, name, port, host_port, json)| {
                    let mut file = serde_json::json!({"id": id, "image": {"name": name}});
                    if let Some(port) = port {
                        file["image"]["port"] = port.into();
                    }
                    if let Some(host_port) = host_port {
                        file["hostPort"] = host_port.into();
                    }
                    if json {
                        serde_json::to_string_pretty(&file).unwrap()
                    } else {
                        serde_yaml_ng::to_string(&file).unwrap()
                    }
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any file is read or refused; a definition read once reads back equal from
            /// the JSON and the YAML the CLI would write for it.
            #[test]
            fn a_definition_file_reads_back_from_json_and_yaml(
                file in prop_oneof![definition_file(), any::<String>(), "[{}\\[\\]:,\"a-z0-9 \n-]{0,30}"],
            ) {
                if let Ok(definition) = parse_definition(&file) {
                    let json = serde_json::to_string_pretty(&definition).unwrap();
                    let from_json = parse_definition(&json).ok();
                    prop_assert_eq!(from_json.as_ref(), Some(&definition), "{}", json);
                    let yaml = serde_yaml_ng::to_string(&definition).unwrap();
                    let from_yaml = parse_definition(&yaml).ok();
                    prop_assert_eq!(from_yaml.as_ref(), Some(&definition), "{}", yaml);
                }
            }

            #[test]
            fn a_written_definition_file_is_read(file in definition_file()) {
                prop_assert!(parse_definition(&file).is_ok(), "{}", file);
            }
        }
    }

    #[test]
    fn bad_definition_names_the_field() {
        let err = parse_definition("id: x\nimage:\n  port: 80\n").unwrap_err();
        assert!(format!("{err:#}").contains("image.name"), "{err:#}");
        assert!(parse_definition("{\"id\": ").is_err());
    }

    #[test]
    fn health_flags_fill_the_health_check() {
        let args = RegisterArgs {
            url: "http://127.0.0.1:9000".into(),
            id: None,
            slug: Some("svc".into()),
            deployment_id: None,
            node_url: None,
            tags: vec!["a".into()],
            metadata: vec![("k".into(), "v".into())],
            check: Some(CheckKind::Http),
            check_path: Some("/healthz".into()),
            interval: None,
            timeout: Some("2s".into()),
            ttl: Some("30s".into()),
            deregister_after: None,
        };
        let request = register_request(args);
        let check = request.health_check.as_ref().unwrap();
        assert_eq!(check.check_type, Some(HealthCheckType::Http));
        assert_eq!(check.path.as_deref(), Some("/healthz"));
        assert_eq!(check.interval, None);
        assert_eq!(request.ttl.as_deref(), Some("30s"));
        assert_eq!(request.metadata["k"], "v");
        assert!(request.validate().is_ok());
    }
}
