//! The set-up scripts' own logic, without network: which Debian mirror the Kubernetes build
//! takes its source package from (tests/real-apiserver/apt-sources), on sample sources files
//! in both of apt's formats. A fresh machine's sources.list.d carries comment lines with
//! another mirror's URL above each real `URIs:` line; that comment was once taken for the mirror.

use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real-apiserver/apt-sources")
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/real-apiserver/testdata")
        .join(name)
}

/// `apt-sources mirror bookworm FILES...`, or with no files given, `/nonexistent` (so the
/// machine's own sources are never read by a test).
fn mirror(files: &[&str]) -> String {
    let mut cmd = Command::new(script());
    cmd.args(["mirror", "bookworm"]);
    if files.is_empty() {
        cmd.arg("/nonexistent/sources.list");
    }
    cmd.args(files.iter().map(|f| sample(f)));
    let out = cmd.output().expect("run apt-sources");
    assert!(
        out.status.success(),
        "apt-sources failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

fn has_deb_src(suite: &str, files: &[&str]) -> bool {
    let status = Command::new(script())
        .args(["has-deb-src", suite, "main"])
        .args(files.iter().map(|f| sample(f)))
        .status()
        .expect("run apt-sources");
    match status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("apt-sources has-deb-src exited {other:?}"),
    }
}

#[test]
fn deb822_takes_the_uris_field_never_the_comment_above_it() {
    assert_eq!(
        mirror(&["deb822-comments.sources"]),
        "http://mirror-a.example.net/debian"
    );
}

#[test]
fn one_line_format_skips_comments_and_options() {
    assert_eq!(
        mirror(&["one-line.list"]),
        "https://mirror-b.example.net/debian/"
    );
}

#[test]
fn both_formats_the_first_bookworm_deb_entry_wins() {
    assert_eq!(
        mirror(&["one-line.list", "deb822-comments.sources"]),
        "https://mirror-b.example.net/debian/"
    );
    assert_eq!(
        mirror(&["deb822-comments.sources", "one-line.list"]),
        "http://mirror-a.example.net/debian"
    );
}

#[test]
fn disabled_stanzas_are_skipped_and_continuation_lines_read() {
    assert_eq!(
        mirror(&["disabled-then-enabled.sources"]),
        "http://mirror-c.example.net/debian"
    );
}

#[test]
fn no_bookworm_mirror_means_the_default_one() {
    // Another suite (cloud-sdk-bookworm) and a non-http URI do not count.
    assert_eq!(mirror(&["other-repo.list"]), "http://deb.debian.org/debian");
    assert_eq!(mirror(&[]), "http://deb.debian.org/debian");
}

#[test]
fn an_existing_deb_src_entry_for_bookworm_main_is_found() {
    assert!(has_deb_src("bookworm", &["disabled-then-enabled.sources"]));
    // A deb-src for another suite, and deb lines, are not one.
    assert!(!has_deb_src("bookworm", &["one-line.list"]));
    assert!(has_deb_src("bullseye", &["one-line.list"]));
    assert!(!has_deb_src("bookworm", &["deb822-comments.sources"]));
}

/// The Kubernetes build stops at the first step that fails, naming it and showing its own
/// error, rather than going on to confusing errors in later steps. Run with stand-ins for
/// apt (a source package that exists, a download that fails) and an empty cache, so no
/// network and nothing of the machine's is touched.
#[test]
fn the_kubernetes_build_stops_at_the_first_failing_step_with_its_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let tool = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write a stand-in");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    tool(
        "apt-cache",
        "echo 'Package: kubernetes'; echo 'Version: 1.0-1'",
    );
    tool(
        "apt-get",
        "echo \"E: simulated: cannot fetch the source package ($*)\" >&2; exit 100",
    );
    for present in ["go", "dpkg-source", "rsync", "make", "gcc"] {
        tool(present, "echo \"$0 should not have run\" >&2; exit 3");
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real-apiserver/build"))
            .arg("kube-apiserver")
            .env("PATH", path)
            .env("LEADERRUN_APISERVER_CACHE", dir.path().join("cache"))
            .output()
            .expect("run the build");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the build failed: {err}");
    assert!(
        err.contains("apt-get source kubernetes=1.0-1 failed"),
        "names the step: {err}"
    );
    assert!(
        err.contains("E: simulated: cannot fetch the source package"),
        "shows the step's own error: {err}"
    );
    assert!(
        !err.contains("dpkg-source -x") && !err.contains("should not have run"),
        "no later step ran: {err}"
    );
}
