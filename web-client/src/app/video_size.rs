//! Tells the server the size each received video is shown at: of a teacher's video sent in
//! several sizes (simulcast), it then forwards the one that fits. A phone's small tile gets the
//! small layer (less data on a weak link), a hall's big screen the large one.

use std::cell::RefCell;
use std::collections::HashMap;

use jinke_signaling::ClientMessage;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{HtmlVideoElement, ResizeObserver, ResizeObserverEntry, WebSocket};

/// Sizes are rounded to this many pixels, so that small layout shifts say nothing.
const STEP: f64 = 16.0;

/// Watches the video elements of received tracks and reports their size when it changes.
pub(super) struct ViewSizes {
    observer: ResizeObserver,
    /// Kept alive as long as the observer calls it.
    _callback: Closure<dyn FnMut(js_sys::Array)>,
}

impl ViewSizes {
    /// Reports through `ws`.
    pub fn new(ws: WebSocket) -> Option<ViewSizes> {
        let sent: RefCell<HashMap<String, (u16, u16)>> = RefCell::default();
        let callback = Closure::<dyn FnMut(js_sys::Array)>::new(move |entries: js_sys::Array| {
            for entry in entries.iter() {
                let entry: ResizeObserverEntry = entry.unchecked_into();
                let Some(track_id) = entry.target().get_attribute("data-track") else {
                    continue;
                };
                let rect = entry.content_rect();
                // CSS pixels, not device pixels: a phone's sharp screen would otherwise ask for
                // the large layer, and its link is the one least able to carry it.
                let px = |css: f64| ((css / STEP).round() * STEP).clamp(0.0, 16_384.0) as u16;
                let size = (px(rect.width()), px(rect.height()));
                if sent.borrow().get(&track_id) == Some(&size) {
                    continue;
                }
                sent.borrow_mut().insert(track_id.clone(), size);
                let msg = ClientMessage::VideoSize {
                    track_id,
                    width: size.0,
                    height: size.1,
                };
                let _ = ws.send_with_str(&msg.to_json());
            }
        });
        let observer = ResizeObserver::new(callback.as_ref().unchecked_ref()).ok()?;
        Some(ViewSizes {
            observer,
            _callback: callback,
        })
    }

    /// Reports the size `video` shows `track_id` at, now and whenever it changes.
    pub fn observe(&self, video: &HtmlVideoElement, track_id: &str) {
        let _ = video.set_attribute("data-track", track_id);
        self.observer.unobserve(video);
        self.observer.observe(video);
    }
}
