//! Writes completions/ and man/ from the CLI definition:
//!
//!     cargo run --example generate-docs

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (path, bytes) in leaderrun::docs::generated() {
        let p = root.join(&path);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&p, bytes)?;
        println!("wrote {path}");
    }
    Ok(())
}
