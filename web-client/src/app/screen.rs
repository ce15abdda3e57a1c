//! Screen sharing for teachers and assistants: the screen (`getDisplayMedia`) goes out on its
//! own send-only connection and everyone sees it large on the stage.

use std::rc::Rc;

use jinke_signaling::ClientMessage;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{MediaStream, MediaStreamTrack};

use super::{Layers, Room, apply_answer, local_offer, sendonly_connection};

impl Room {
    /// Starts sharing, or stops if sharing.
    pub(super) async fn toggle_screen(self: &Rc<Self>) {
        if self.screen_pc.borrow().is_some() {
            return self.stop_screen();
        }
        if let Err(e) = self.share_screen().await {
            self.stop_screen();
            self.fail_with(&e);
        }
    }

    async fn share_screen(self: &Rc<Self>) -> Result<(), JsValue> {
        let devices = web_sys::window()
            .ok_or("no window")?
            .navigator()
            .media_devices()?;
        let stream: MediaStream = JsFuture::from(devices.get_display_media()?)
            .await?
            .dyn_into()?;
        // The browser's own "stop sharing" button ends the track: stop here too.
        for track in stream.get_video_tracks().iter() {
            let room = self.clone();
            let ended = Closure::<dyn FnMut()>::new(move || room.stop_screen());
            track
                .unchecked_into::<MediaStreamTrack>()
                .set_onended(Some(ended.as_ref().unchecked_ref()));
            ended.forget();
        }
        let pc = sendonly_connection(&stream, "jinkeScreenPc", Layers::Single)?;
        *self.screen_pc.borrow_mut() = Some(pc.clone());
        self.set_share_button(true);
        let sdp = local_offer(&pc).await?;
        self.send(&ClientMessage::ShareScreen { sdp });
        Ok(())
    }

    /// Applies the server's answer to the screen's connection.
    pub(super) async fn screen_answered(&self, sdp: &str) -> Result<(), JsValue> {
        let pc = self.screen_pc.borrow().clone();
        apply_answer(pc, sdp).await
    }

    /// Stops sharing: tells the server, closes the connection, releases the screen.
    fn stop_screen(&self) {
        let Some(pc) = self.screen_pc.borrow_mut().take() else {
            return;
        };
        self.send(&ClientMessage::StopScreen);
        for sender in pc.get_senders().iter() {
            if let Some(track) = sender.unchecked_into::<web_sys::RtcRtpSender>().track() {
                track.stop();
            }
        }
        pc.close();
        self.set_share_button(false);
    }

    fn set_share_button(&self, sharing: bool) {
        if let Ok(Some(b)) = crate::dom::document().query_selector("[data-testid=share-screen]") {
            b.set_text_content(Some(if sharing {
                self.t.stop_screen
            } else {
                self.t.share_screen
            }));
            let _ = b.set_attribute("aria-pressed", if sharing { "true" } else { "false" });
        }
    }
}
