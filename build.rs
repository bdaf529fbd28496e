//! Embeds the demo site (`www/`) in the worker: its configuration, templates and static files
//! become `&'static` data in `$OUT_DIR/www.rs`, included by `src/app.rs`. A Worker has no file
//! system, and embedding keeps a render free of any fetch for its template.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                let name = rel.to_string_lossy().replace('\\', "/");
                if !name.starts_with('.') {
                    out.push((name, path));
                }
            }
        }
    }
    out.sort();
    out
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let www = root.join("www");
    println!("cargo:rerun-if-changed=www/site.json");
    println!("cargo:rerun-if-changed=www/templates");
    println!("cargo:rerun-if-changed=www/static");
    let mut code = String::new();
    let _ = writeln!(code, "/// `www/site.json`.\npub static SITE_JSON: &str = include_str!({:?});", www.join("site.json"));
    let _ = writeln!(code, "/// `www/templates/*`: (file name, source).\npub static TEMPLATES: &[(&str, &str)] = &[");
    for (name, path) in files(&www.join("templates")) {
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(code, "    ({name:?}, include_str!({path:?})),");
    }
    let _ = writeln!(code, "];\n/// `www/static/*`: (path below /static/, bytes).\npub static STATIC_FILES: &[(&str, &[u8])] = &[");
    for (name, path) in files(&www.join("static")) {
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(code, "    ({name:?}, include_bytes!({path:?})),");
    }
    let _ = writeln!(code, "];");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("www.rs");
    std::fs::write(out, code).expect("writing www.rs");
}
