//! Links the code a leader runs while it leads (the renew loop, the client's request path,
//! the guard's wait) together, ahead of the rest of the text. The kernel maps a binary's code
//! 64 KiB at a time around each fault, so code scattered over the binary keeps most of it
//! resident; gathered, a leader keeps a few hundred KiB. The list, `.cargo/hot-code.txt`,
//! comes from `examples/hot-code.sh`; a stale list costs memory, never correctness.

fn main() {
    println!("cargo:rerun-if-changed=.cargo/hot-code.txt");
    println!("cargo:rerun-if-changed=build.rs");
    // A linker chosen later must not get an option only rust-lld knows.
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    if std::env::var("PROFILE").as_deref() == Ok("release") && linker_is_lld() {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let list = std::path::Path::new(&dir).join(".cargo/hot-code.txt");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
            list.display()
        );
    }
}

/// Only rust-lld takes an ordering file, and rustc links with it by default only on
/// x86_64-unknown-linux-gnu since 1.90; a linker chosen by hand is left alone.
fn linker_is_lld() -> bool {
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let chosen = std::env::vars()
        .any(|(k, _)| k.starts_with("CARGO_TARGET_") && k.ends_with("_LINKER"))
        || ["linker", "fuse-ld"].iter().any(|f| flags.contains(f));
    target == "x86_64-unknown-linux-gnu" && !chosen && rustc_minor() >= Some(90)
}

fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var("RUSTC").ok()?;
    let out = std::process::Command::new(rustc).arg("-V").output().ok()?;
    let version = String::from_utf8(out.stdout).ok()?;
    // "rustc 1.95.0 (…)"
    version
        .split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}
