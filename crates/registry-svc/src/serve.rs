//! `registry-svc serve`: runs the daemon; the server crate does the work.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Runs the registry daemon until SIGINT or SIGTERM. Logs go to stderr, filtered by
/// `RUST_LOG` (default `info`).
pub(crate) async fn run(config: registry_server::Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    registry_server::serve(config).await
}
