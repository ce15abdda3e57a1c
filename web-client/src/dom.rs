//! Small helpers over web-sys for building the page.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Document, Element, HtmlButtonElement, HtmlElement, HtmlVideoElement};

/// The page's document.
pub fn document() -> Document {
    web_sys::window()
        .and_then(|w| w.document())
        .expect("the client runs in a page")
}

/// The `#app` container everything is drawn into.
pub fn app_root() -> Element {
    document()
        .get_element_by_id("app")
        .expect("index.html has #app")
}

/// Creates `<tag class=…>` with optional text.
pub fn el(tag: &str, class: &str, text: Option<&str>) -> Element {
    let e = document().create_element(tag).expect("valid tag");
    if !class.is_empty() {
        e.set_class_name(class);
    }
    if let Some(t) = text {
        e.set_text_content(Some(t));
    }
    e
}

/// Appends `child` to `parent`.
pub fn append(parent: &Element, child: &Element) {
    let _ = parent.append_child(child);
}

/// Sets a `data-*` attribute (`data-testid`, `data-identity`, `data-code`, …).
pub fn set_data(e: &Element, name: &str, value: &str) {
    let _ = e.set_attribute(&format!("data-{name}"), value);
}

/// A button with a click handler (the handler lives as long as the page).
pub fn button(label: &str, class: &str, testid: &str, on_click: impl FnMut() + 'static) -> Element {
    let b: HtmlButtonElement = el("button", class, Some(label)).unchecked_into();
    b.set_type("button");
    set_data(&b, "testid", testid);
    let cb = Closure::<dyn FnMut()>::new(on_click);
    b.set_onclick(Some(cb.as_ref().unchecked_ref()));
    cb.forget();
    b.into()
}

/// A `<video autoplay playsinline>` element.
pub fn video(muted: bool) -> HtmlVideoElement {
    let v: HtmlVideoElement = el("video", "", None).unchecked_into();
    v.set_autoplay(true);
    let _ = v.set_attribute("playsinline", "");
    v.set_muted(muted);
    v
}

/// Replaces everything in `#app` with `children`.
pub fn show(children: &[Element]) {
    let root = app_root();
    root.set_inner_html("");
    for c in children {
        append(&root, c);
    }
}

/// A status line (`data-testid="status"`).
pub fn status(text: &str) -> Element {
    let p = el("p", "status", Some(text));
    set_data(&p, "testid", "status");
    let _ = p.set_attribute("role", "status");
    p
}

/// An error box with a machine-readable `data-code` for tests.
pub fn error_box(code: &str, text: &str) -> Element {
    crate::embed::post("error", &[("code", code)]);
    let p = el("p", "error", Some(text));
    set_data(&p, "testid", "error");
    set_data(&p, "code", code);
    let _ = p.set_attribute("role", "alert");
    p
}

/// Shows or hides an element.
pub fn set_hidden(e: &Element, hidden: bool) {
    if let Some(h) = e.dyn_ref::<HtmlElement>() {
        h.set_hidden(hidden);
    }
}
