//! `registry-svc`: the Registry Svc daemon (`serve`) and its command-line client in one binary.
//!
//! `serve` runs the daemon (the `registry-server` crate). The other subcommands talk HTTP
//! to `--addr` (`REGISTRY_ADDR`, by default the daemon's default address on this machine)
//! through `registry-client`, with `--token` (`REGISTRY_TOKEN`) or, for a daemon on this
//! machine, the admin token it wrote to its data dir. Listings print as a table, or as
//! JSON with `-o json`; see `--help` for every flag.
//!
//! ```text
//! registry-svc serve &                              # the daemon, data in ./registry-data
//! registry-svc instances register --url http://127.0.0.1:8080/api --slug web --tag blue
//! registry-svc instances ls --slug web --status healthy
//! registry-svc instances ls --watch                 # redraws on every change, until Ctrl-C
//! registry-svc resolve web                          # the URL of one healthy instance
//! registry-svc tokens create --slug web --role user # a token for that service
//! ```

mod backup;
mod cli;
mod commands;
mod connection;
mod output;
mod serve;
mod watch;

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            eprintln!("{}", cli::one_line(&err));
            return ExitCode::FAILURE;
        }
    };
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", output::printable(&format!("{err:#}")));
            ExitCode::FAILURE
        }
    }
}
