//! Embeds the source tree's `control/scanrules` (qmail-scan's default rules) when it
//! exists, as `SCANRULES: Option<&str>`; qmail-install writes it once, when missing.

fn main() {
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let rules = dir.join("../../control/scanrules");
    println!("cargo:rerun-if-changed=../../control");
    let text = match std::fs::canonicalize(&rules) {
        Ok(p) if p.is_file() => format!(
            "pub const SCANRULES: Option<&str> = Some(include_str!({:?}));\n",
            p.display().to_string()
        ),
        _ => "pub const SCANRULES: Option<&str> = None;\n".to_string(),
    };
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out.join("scanrules.rs"), text) {
        panic!("unable to write scanrules.rs: {e}");
    }
}
