//! Builds the web client into the server binary: compiles `web-client` for wasm32 with a nested
//! cargo (in its own target folder, so it never waits on the outer build's lock) and runs
//! wasm-bindgen as a library. `src/web.rs` embeds the results from `OUT_DIR/web-client`.

use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env("OUT_DIR"));
    for path in [
        "web-client/src",
        "web-client/Cargo.toml",
        "signaling/src",
        "signaling/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }

    let target_dir = cargo_target_dir(&out_dir).join("web-client");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&manifest_dir)
        .args(["build", "--release", "--package", "jinke-web-client"])
        .args(["--target", WASM_TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings are for the host binary, not for the wasm client.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        build.env_remove(var);
    }
    let status = build
        .status()
        .expect("running cargo to build the web client");
    if !status.success() {
        panic!(
            "building the web client for {WASM_TARGET} failed; if the target is missing, run \
             `rustup target add {WASM_TARGET}` (see README)"
        );
    }

    let wasm = target_dir
        .join(WASM_TARGET)
        .join("release")
        .join("jinke_web_client.wasm");
    let bindgen_out = out_dir.join("web-client");
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .web(true)
        .expect("wasm-bindgen web target")
        .typescript(false)
        .generate(&bindgen_out)
        .unwrap_or_else(|e| panic!("running wasm-bindgen on {}: {e:#}", wasm.display()));
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// The outer build's target folder: the ancestor of OUT_DIR that cargo marked with CACHEDIR.TAG.
fn cargo_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("wasm-build"))
}
