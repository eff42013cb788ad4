//! `registry-svc`: the Registry Svc daemon (`serve`) and its command-line client in one binary.
//!
//! The client subcommands talk HTTP to `--addr` through `registry-client`; see `--help`.

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
