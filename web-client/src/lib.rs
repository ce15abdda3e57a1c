//! Jinke's browser client, compiled to WebAssembly and embedded in the `jinke` binary.
//!
//! Students open a join link (`/join/{lesson}?token=…`, or `/embed/{lesson}?token=…` inside a
//! school's iframe) and take part with no install. The page is
//! deliberately simple: one obvious action per screen, large type, Chinese first (`lang=en` for
//! English), and a clear message instead of a blank page whenever something goes wrong.

mod app;
mod dom;
mod embed;
pub mod i18n;
pub mod token;

use wasm_bindgen::prelude::*;

/// Runs when the module loads.
#[wasm_bindgen(start)]
pub fn main() {
    app::start();
}
