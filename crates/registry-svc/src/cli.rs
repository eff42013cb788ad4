//! The command line: global flags, subcommands and their arguments (clap derive).

use clap::{Args, Parser, Subcommand, ValueEnum};
use registry_types::constants;
use registry_types::{InstanceStatus, Role};
use std::path::PathBuf;

/// A service registry: keeps definitions, instances and nodes, and checks instance health.
// No `Debug`: the daemon's configuration holds secrets, and nothing should print it.
#[derive(Parser)]
#[command(name = "registry-svc", version)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags of every client subcommand, accepted before or after it.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Address of the registry daemon.
    #[arg(
        long,
        env = constants::ADDR_ENV,
        default_value = constants::DEFAULT_URL,
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub addr: String,
    /// API token; for a local daemon it defaults to the one in the data dir's admin.token.
    #[arg(
        long,
        env = constants::TOKEN_ENV,
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub token: Option<String>,
    /// PEM CA certificate(s) that sign an https daemon's certificate.
    #[arg(
        long,
        env = "REGISTRY_CA_CERT",
        global = true,
        help_heading = "Global options"
    )]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for a daemon that requires one (with `--client-key`).
    #[arg(
        long,
        env = "REGISTRY_CLIENT_CERT",
        requires = "client_key",
        global = true,
        help_heading = "Global options"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `--client-cert`.
    #[arg(
        long,
        env = "REGISTRY_CLIENT_KEY",
        requires = "client_cert",
        global = true,
        help_heading = "Global options"
    )]
    pub client_key: Option<PathBuf>,
    /// Output format of listings.
    #[arg(
        short,
        long,
        value_enum,
        default_value_t = OutputFormat::Table,
        global = true,
        help_heading = "Global options"
    )]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned columns, for a person.
    Table,
    /// Pretty-printed JSON, for scripts.
    Json,
}

// Parsed once per run: boxing the larger variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Service templates: save, list, remove.
    #[command(visible_alias = "def", alias = "definition")]
    Definitions {
        #[command(subcommand)]
        command: DefinitionsCommand,
    },
    /// Running, callable copies of services: register, list, remove.
    #[command(visible_alias = "i", alias = "instance")]
    Instances {
        #[command(subcommand)]
        command: InstancesCommand,
    },
    /// Machines running a registry daemon.
    #[command(visible_alias = "n", alias = "node")]
    Nodes {
        #[command(subcommand)]
        command: NodesCommand,
    },
    /// API tokens (admin only).
    #[command(alias = "token")]
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Print the URL of a healthy instance of a service (client-side load balancing).
    Resolve(ResolveArgs),
    /// Write a backup of the whole registry to FILE (admin only; '-' writes stdout). The
    /// file holds token hashes: it is created with mode 0600.
    Backup { file: String },
    /// Load a backup from FILE into an empty registry (admin only; '-' reads stdin).
    Restore { file: String },
    /// Run the registry daemon.
    Serve(Box<registry_server::Config>),
}

#[derive(Debug, Subcommand)]
pub(crate) enum DefinitionsCommand {
    /// Create or replace a definition from a YAML or JSON file ('-' reads stdin).
    Save { file: String },
    /// List definitions.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove a definition.
    #[command(visible_alias = "remove")]
    Rm { id: String },
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum InstancesCommand {
    /// Register an instance, or update the one with the same id or URL.
    Register(RegisterArgs),
    /// List instances; filters combine with AND.
    #[command(visible_alias = "list")]
    Ls(ListInstancesArgs),
    /// Remove an instance.
    #[command(visible_alias = "remove")]
    Rm { id: String },
    /// Tell the registry an instance is alive (keeps an instance with a TTL Healthy).
    Heartbeat { id: String },
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// Full address of the instance, e.g. http://127.0.0.1:8080/api.
    #[arg(long)]
    pub url: String,
    /// Instance id (default: the one registered with this URL, else a new one).
    #[arg(long)]
    pub id: Option<String>,
    /// Service the instance serves (default: the token's slug).
    #[arg(long)]
    pub slug: Option<String>,
    /// Deployment the instance belongs to.
    #[arg(long)]
    pub deployment_id: Option<String>,
    /// URL of the node the instance runs on.
    #[arg(long)]
    pub node_url: Option<String>,
    /// A tag; repeat for more.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// A metadata entry KEY=VALUE; repeat for more.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub metadata: Vec<(String, String)>,
    /// How the registry checks the instance's health (default tcp).
    #[arg(long, value_enum)]
    pub check: Option<CheckKind>,
    /// Path of the HTTP health check, e.g. /healthz.
    #[arg(long)]
    pub check_path: Option<String>,
    /// Time between health checks, e.g. 10s.
    #[arg(long)]
    pub interval: Option<String>,
    /// Time a health check may take, e.g. 2s.
    #[arg(long)]
    pub timeout: Option<String>,
    /// The instance must heartbeat within this time, e.g. 30s.
    #[arg(long)]
    pub ttl: Option<String>,
    /// Remove the instance once it has been unreachable this long, e.g. 10m.
    #[arg(long)]
    pub deregister_after: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CheckKind {
    Tcp,
    Http,
    None,
}

#[derive(Debug, Args)]
pub(crate) struct ListInstancesArgs {
    #[command(flatten)]
    pub filter: InstanceFilterArgs,
    /// Keep listing: redraw each time the registry reports a change, until Ctrl-C.
    #[arg(long, short)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InstanceFilterArgs {
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub slug: Option<String>,
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long)]
    pub scheme: Option<String>,
    #[arg(long)]
    pub path: Option<String>,
    #[arg(long)]
    pub deployment_id: Option<String>,
    #[arg(long)]
    pub node_url: Option<String>,
    /// Unknown, Healthy, Degraded, Unreachable or Error (any case).
    #[arg(long)]
    pub status: Option<InstanceStatus>,
    /// Only instances with this tag; repeat to require several.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum NodesCommand {
    /// List nodes.
    #[command(visible_alias = "list")]
    Ls,
    /// Show the node of the daemon answering.
    #[command(name = "self")]
    Current,
    /// Remove a node by its URL.
    #[command(visible_alias = "remove")]
    Rm { url: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Create a token; its secret is printed only this once.
    Create {
        /// Account the token belongs to, e.g. user-svc.
        #[arg(long)]
        slug: String,
        /// user or admin.
        #[arg(long, default_value = "user")]
        role: Role,
    },
    /// List tokens (never their secrets).
    #[command(visible_alias = "list")]
    Ls,
    /// Revoke a token by its id.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub(crate) struct ResolveArgs {
    /// Service slug.
    pub slug: String,
    /// Print every healthy instance's URL, not one picked at random.
    #[arg(long)]
    pub all: bool,
}

/// A usage error on one line: clap's message up to its first blank line (before the usage and
/// tips), its lines joined, e.g. `error: the following required arguments were not provided: --url <URL>`.
pub(crate) fn one_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let message = text.split("\n\n").next().unwrap_or_default();
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads `KEY=VALUE`.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("registry-svc").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = parse(&[
            "i",
            "ls",
            "--addr",
            "http://127.0.0.1:1",
            "-o",
            "json",
            "--token",
            "t",
        ]);
        assert_eq!(cli.global.addr, "http://127.0.0.1:1");
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.token.as_deref(), Some("t"));
        assert!(matches!(
            cli.command,
            Command::Instances {
                command: InstancesCommand::Ls(_)
            }
        ));
    }

    #[test]
    fn aliases_resolve() {
        for args in [["def", "list"], ["definition", "ls"], ["definitions", "ls"]] {
            assert!(matches!(
                parse(&args).command,
                Command::Definitions {
                    command: DefinitionsCommand::Ls
                }
            ));
        }
        assert!(matches!(
            parse(&["node", "self"]).command,
            Command::Nodes {
                command: NodesCommand::Current
            }
        ));
        assert!(matches!(
            parse(&["token", "revoke", "tok_1"]).command,
            Command::Tokens {
                command: TokensCommand::Revoke { .. }
            }
        ));
    }

    #[test]
    fn instances_ls_watches_with_filters() {
        let Command::Instances {
            command: InstancesCommand::Ls(args),
        } = parse(&["i", "ls", "--watch", "--slug", "svc", "--status", "healthy"]).command
        else {
            panic!("not an ls command");
        };
        assert!(args.watch);
        assert_eq!(args.filter.slug.as_deref(), Some("svc"));
        assert_eq!(args.filter.status, Some(InstanceStatus::Healthy));
        let Command::Instances {
            command: InstancesCommand::Ls(args),
        } = parse(&["i", "ls"]).command
        else {
            panic!("not an ls command");
        };
        assert!(!args.watch);
    }

    #[test]
    fn heartbeat_takes_an_instance_id() {
        let Command::Instances {
            command: InstancesCommand::Heartbeat { id },
        } = parse(&["i", "heartbeat", "inst_1"]).command
        else {
            panic!("not a heartbeat command");
        };
        assert_eq!(id, "inst_1");
        assert!(Cli::try_parse_from(["registry-svc", "instances", "heartbeat"]).is_err());
    }

    #[test]
    fn usage_errors_fit_on_one_line() {
        let err = Cli::try_parse_from(["registry-svc", "instances", "register"])
            .err()
            .expect("a register without --url is refused");
        let line = one_line(&err);
        assert!(line.starts_with("error: "), "{line}");
        assert!(line.contains("--url <URL>"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn register_reads_repeated_flags() {
        let cli = parse(&[
            "instances",
            "register",
            "--url",
            "http://127.0.0.1:9",
            "--tag",
            "a",
            "--tag",
            "b",
            "--metadata",
            "k=v=w",
            "--check",
            "http",
        ]);
        let Command::Instances {
            command: InstancesCommand::Register(args),
        } = cli.command
        else {
            panic!("not a register command");
        };
        assert_eq!(args.tags, ["a", "b"]);
        assert_eq!(args.metadata, [("k".to_string(), "v=w".to_string())]);
        assert_eq!(args.check, Some(CheckKind::Http));
    }

    #[test]
    fn bad_values_are_rejected() {
        let fails = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("registry-svc").chain(args.iter().copied()))
                .is_err()
        };
        assert!(fails(&["i", "ls", "--status", "sleepy"]));
        assert!(fails(&[
            "tokens", "create", "--slug", "s", "--role", "root"
        ]));
        assert!(fails(&[
            "i",
            "register",
            "--url",
            "u",
            "--metadata",
            "novalue"
        ]));
        assert!(fails(&["i", "register"]));
    }
}
