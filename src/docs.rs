//! Shell completions and man pages, generated from the clap definition in
//! `cli.rs`. `cargo run --example generate-docs` writes them to `completions/`
//! and `man/`; `tests/docs.rs` fails when the committed files are stale.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Every generated file: its path in the repository and its contents.
pub fn generated() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for (shell, file) in [
        (Shell::Bash, "completions/leaderrun.bash"),
        (Shell::Zsh, "completions/_leaderrun"),
        (Shell::Fish, "completions/leaderrun.fish"),
        (Shell::PowerShell, "completions/_leaderrun.ps1"),
        (Shell::Elvish, "completions/leaderrun.elv"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "leaderrun", &mut buf);
        files.push((file.to_string(), buf));
    }
    let cmd = Cli::command();
    let mut main = Vec::new();
    // Rendering into a Vec cannot fail.
    let _ = clap_mangen::Man::new(cmd.clone()).render(&mut main);
    files.push(("man/leaderrun.1".to_string(), main));
    for sub in cmd.get_subcommands() {
        let name = format!("leaderrun-{}", sub.get_name());
        let mut page = Vec::new();
        let _ = clap_mangen::Man::new(sub.clone().name(name.clone())).render(&mut page);
        files.push((format!("man/{name}.1"), page));
    }
    files
}
