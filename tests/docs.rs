//! The committed completions and man pages are what the CLI definition generates.

#[test]
fn completions_and_man_pages_are_up_to_date() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (path, want) in leaderrun::docs::generated() {
        if std::fs::read(root.join(&path)).ok().as_deref() != Some(want.as_slice()) {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files {stale:?}: run `cargo run --example generate-docs` and commit them"
    );
}

#[test]
fn the_man_page_documents_every_subcommand_and_the_exit_codes() {
    let files = leaderrun::docs::generated();
    let page = |name: &str| {
        String::from_utf8(files.iter().find(|(p, _)| p == name).unwrap().1.clone()).unwrap()
    };
    let main = page("man/leaderrun.1");
    for sub in ["run", "inspect", "force\\-release"] {
        assert!(main.contains(sub), "leaderrun.1 lists {sub}");
    }
    assert!(
        main.contains("121") && main.contains("leadership lost"),
        "exit codes in the man page"
    );
    assert!(page("man/leaderrun-run.1").contains("renew\\-deadline"));
}

/// The README's exit-code table and the lines below it say what `exit::TABLE` and
/// `exit::OTHERS` say (the one table they are copies of), word for word.
#[test]
fn the_readme_lists_the_exit_codes_of_exit_rs() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let section = readme
        .split("## Exit codes")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("an Exit codes section");
    let rows: Vec<String> = section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| code |"))
        .map(String::from)
        .collect();
    let want: Vec<String> = leaderrun::exit::TABLE
        .iter()
        .map(|(code, meaning)| format!("| {code} | {meaning} |"))
        .collect();
    assert_eq!(rows, want, "README's table differs from exit::TABLE");
    for (cmd, codes) in leaderrun::exit::OTHERS {
        let line = format!("`{cmd}`: {codes}.");
        assert!(
            section.lines().any(|l| l == line),
            "README lacks the line {line:?}"
        );
    }
}
