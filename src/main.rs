//! Parse, set up logging, run one subcommand, exit with its code.

use std::process::ExitCode;

use clap::Parser;
use leaderrun::cli::{Cli, Command};
use leaderrun::{exit, inspect, logging, run};

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(leaderrun::cli::with_default_subcommand(
        std::env::args_os().collect(),
    )) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    // One thread: the child's parent-death signal follows the thread that
    // forked it, and this one lives as long as the process.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("leaderrun: cannot start the runtime: {e}");
            return ExitCode::from(exit::API);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                logging::init(&args.log);
                run::run(args).await.unwrap_or_else(|e| {
                    tracing::error!("{e}");
                    e.exit_code()
                })
            }
            Command::Inspect(args) => {
                logging::init(&args.log);
                inspect::inspect(args).await.unwrap_or_else(|e| {
                    tracing::error!("{e}");
                    e.exit_code()
                })
            }
            Command::ForceRelease(args) => {
                logging::init(&args.log);
                inspect::force_release(args).await.unwrap_or_else(|e| {
                    tracing::error!("{e}");
                    e.exit_code()
                })
            }
        }
    });
    ExitCode::from(code)
}
