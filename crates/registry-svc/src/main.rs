//! `registry-svc`: the Registry Svc daemon (`serve`) and its command-line client in one binary.
//!
//! The client subcommands talk HTTP to `--addr` through `registry-client`; see `--help`.

mod cli;
mod commands;
mod connection;
mod output;
mod serve;
mod watch;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    one_malloc_arena();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime")
        .block_on(run())
}

/// glibc gives each thread that allocates its own arena and rarely hands freed arena
/// memory back. The daemon builds its tables on one thread from rows read on another,
/// so with one arena per thread, loading 100,000 instances left the rows' memory
/// resident after they were freed (115 MB instead of 72 MB); with one arena the tables
/// reuse it. See docs/benchmarks.md.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

async fn run() -> ExitCode {
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
            eprintln!("error: {}", format!("{err:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
