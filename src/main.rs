//! Parse, set up logging, run one subcommand, exit with its code. In guard mode (an
//! internal first argument, not in `--help`) the process is the guard of a job instead.

use std::process::ExitCode;

use leaderrun::cli::{Cli, Command};
use leaderrun::{exit, force_release, guard, inspect, logging, run, stepdown};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == guard::wire::GUARD_ARG) {
        let code = match guard::wire::GuardArgs::parse(&args[1..]) {
            Some(g) => guard::main(g),
            None => exit::USAGE as i32,
        };
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let cli = match leaderrun::cli::parse(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    ExitCode::from(try_main(cli))
}

/// One function per subcommand; errors become their text and exit code here, and only here.
fn try_main(cli: Cli) -> u8 {
    // One thread: the guard's parent-death checks and the terminal handling follow the
    // thread that forks, and this one lives as long as the process.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("leaderrun: cannot start the runtime: {e}");
            return exit::OS;
        }
    };
    runtime.block_on(async {
        let _log = logging::init(cli.command.log().into());
        let result = match cli.command {
            Command::Run(args) => run::run(args).await.map_err(failure),
            Command::Inspect(args) => inspect::inspect(args).await.map_err(failure),
            Command::StepDown(args) => stepdown::step_down(args).await.map_err(failure),
            Command::ForceRelease(args) => {
                force_release::force_release(args).await.map_err(failure)
            }
        };
        result.unwrap_or_else(|(message, code)| {
            tracing::error!("{message}");
            code
        })
    })
}

/// An error as the user sees it: its text, and the exit code it stands for.
fn failure<E: exit::Failure>(e: E) -> (String, u8) {
    (e.to_string(), e.exit_code())
}
