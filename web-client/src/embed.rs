//! When the page runs inside a school's iframe (`/embed/{lesson}`), it tells the host page what
//! happens with `postMessage`: `{"source": "jinke", "type": "joined" | "left" | "hand-raised" |
//! "error", …}`. Messages go only to the embedding page's origin (which the server's
//! `frame-ancestors` has already limited to the school's allowed origins).

use wasm_bindgen::JsValue;

/// The embedding page's origin, when this page is framed.
fn host_origin() -> Option<String> {
    let window = web_sys::window()?;
    let parent = window.parent().ok()??;
    if js_sys::Object::is(&parent, &window) {
        return None; // Not framed.
    }
    let location = window.location();
    let ancestors = js_sys::Reflect::get(&location, &"ancestorOrigins".into()).ok();
    let first = ancestors
        .and_then(|a| js_sys::Reflect::get(&a, &0.into()).ok())
        .and_then(|o| o.as_string());
    first.or_else(|| {
        let referrer = window.document()?.referrer();
        let url = web_sys::Url::new(&referrer).ok()?;
        Some(url.origin())
    })
}

/// Posts `{"source": "jinke", "type": kind, …fields}` to the embedding page, if any.
pub fn post(kind: &str, fields: &[(&str, &str)]) {
    let Some(origin) = host_origin() else {
        return;
    };
    let Some(parent) = web_sys::window().and_then(|w| w.parent().ok().flatten()) else {
        return;
    };
    let msg = js_sys::Object::new();
    let set = |k: &str, v: &str| {
        let _ = js_sys::Reflect::set(&msg, &k.into(), &JsValue::from_str(v));
    };
    set("source", "jinke");
    set("type", kind);
    for (k, v) in fields {
        set(k, v);
    }
    let _ = parent.post_message(&msg, &origin);
}
