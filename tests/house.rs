//! The house rules, checked: no source file over 500 lines and no function over 70 (test
//! modules aside) in leaderrun, its guard or kube-emulator, no circle among src/'s modules, and
//! the guard crate on std and nix alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 500;
const MAX_FN_LINES: usize = 70;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every .rs file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn sources() -> Vec<PathBuf> {
    ["src", "guard/src", "emulator/src"]
        .iter()
        .flat_map(|d| rust_files(&root().join(d)))
        .collect()
}

/// The text before a file's `#[cfg(test)] mod tests` (the code the rules are about).
fn code_part(text: &str) -> &str {
    let lines: Vec<&str> = text.lines().collect();
    let mut offset = 0;
    for (i, line) in lines.iter().enumerate() {
        let next = lines.get(i + 1).map_or("", |l| l.trim_start());
        if line.trim() == "#[cfg(test)]" && next.starts_with("mod tests") {
            return &text[..offset];
        }
        offset += line.len() + 1;
    }
    text
}

/// (line, length, signature) of every function of `text` longer than `max` lines: from its
/// `fn` line to the closing brace at the same indentation.
fn long_functions(text: &str, max: usize) -> Vec<(usize, usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let words: Vec<&str> = body.split_whitespace().take(4).collect();
        let is_fn =
            words.iter().take_while(|w| **w != "fn").all(|w| {
                matches!(*w, "pub" | "async" | "const" | "unsafe") || w.starts_with("pub(")
            }) && words.contains(&"fn");
        if !is_fn || body.ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = lines[i + 1..].iter().position(|l| *l == close) {
            let len = end + 2;
            if len > max {
                found.push((i + 1, len, body.chars().take(60).collect()));
            }
        }
    }
    found
}

/// src/'s top-level modules and the others each names with `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a path").as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        let code = code_part(&text);
        let mut names = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                names.extend(inner.split(',').filter_map(|p| {
                    let p = p.trim();
                    p.split("::").next().map(str::to_string)
                }));
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
        names.retain(|n| !n.is_empty() && *n != module);
        graph.entry(module).or_default().extend(names);
    }
    graph
}

/// A circle in `graph`, as the path around it, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|k| visit(k, graph, &mut done, &mut Vec::new()))
}

#[test]
fn no_source_file_is_over_500_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f)
                .expect("readable")
                .lines()
                .count();
            (n > MAX_FILE_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_FILE_LINES} lines: {long:#?}");
}

#[test]
fn no_function_is_over_70_lines() {
    let mut long = Vec::new();
    for f in sources() {
        let text = std::fs::read_to_string(&f).expect("readable");
        for (line, len, sig) in long_functions(code_part(&text), MAX_FN_LINES) {
            long.push(format!("{}:{line}: {len} lines: {sig}", f.display()));
        }
    }
    assert!(long.is_empty(), "over {MAX_FN_LINES} lines: {long:#?}");
}

#[test]
fn the_checks_find_what_they_look_for() {
    let body = "    let x = 1;\n".repeat(3);
    let text = format!("pub(crate) async fn f() {{\n{body}}}\nfn g();\n");
    assert_eq!(
        long_functions(&text, 4).len(),
        1,
        "a 5-line function over 4"
    );
    assert!(long_functions(&text, 5).is_empty());
    assert_eq!(code_part("a\n#[cfg(test)]\nmod tests {}\n"), "a\n");
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert_eq!(
        circle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn no_module_of_src_reaches_back_to_itself() {
    let graph = module_graph();
    assert!(graph.contains_key("run") && graph["run"].contains("election"));
    assert_eq!(circle(&graph), None, "{graph:#?}");
}

#[test]
fn the_guard_crate_depends_on_nix_alone() {
    let manifest = std::fs::read_to_string(root().join("guard/Cargo.toml")).expect("readable");
    let deps: Vec<&str> = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] table")
        .lines()
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split('=').next().map(str::trim))
        .collect();
    assert_eq!(
        deps,
        ["nix"],
        "the guard must need no async runtime and no API client"
    );
    assert!(!manifest.contains("[build-dependencies]"));
}
