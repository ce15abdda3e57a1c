//! The stage in the page: a student's invitation prompt, going on stage (camera and microphone,
//! through a second, publish-only connection when the first one only receives) and leaving it.

use std::rc::Rc;

use jinke_signaling::{ClientMessage, Role};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::RtcPeerConnectionState;

use super::{Layers, Room, apply_answer, local_offer, sendonly_connection};
use crate::dom::{append, button, el, set_hidden};

impl Room {
    /// Shows the invitation with its two answers.
    pub(super) fn show_stage_invite(self: &Rc<Self>, by: &str) {
        let t = self.t;
        self.stage_prompt.set_inner_html("");
        let text = if by.is_empty() {
            t.stage_invited_school.to_owned()
        } else {
            format!("{by} {}", t.stage_invited)
        };
        let box_ = el("div", "notice", Some(&text));
        crate::dom::set_data(&box_, "testid", "stage-invite");
        let answer = |accept: bool| {
            let room = self.clone();
            move || {
                room.send(&ClientMessage::StageReply { accept });
                set_hidden(&room.stage_prompt, true);
            }
        };
        append(
            &box_,
            &button(t.stage_accept, "primary", "accept-stage", answer(true)),
        );
        append(
            &box_,
            &button(t.stage_decline, "", "decline-stage", answer(false)),
        );
        append(&self.stage_prompt, &box_);
        set_hidden(&self.stage_prompt, false);
    }

    /// Follows the stage list: this student going on (camera, microphone, publishing) or off
    /// (everything local stops), and the moderators' roster.
    pub(super) async fn follow_stage(self: &Rc<Self>, identities: Vec<String>) {
        let me = self.me.borrow().clone();
        let was = self.stage_list.borrow().contains(&me);
        let now = identities.contains(&me);
        *self.stage_list.borrow_mut() = identities;
        self.show_roster();
        if self.role != Role::Student || was == now {
            return;
        }
        if now {
            self.notice("on_stage", self.t.on_stage_now);
            if !self.main_publishes.get()
                && let Err(e) = self.go_on_stage().await
            {
                self.fail_with(&e);
            }
        } else {
            if let Some(pc) = self.publish_pc.borrow_mut().take() {
                pc.close();
            }
            self.stop_local();
            self.main_publishes.set(false);
            self.show_media_toggles(false);
            self.notice("off_stage", self.t.off_stage_now);
        }
    }

    /// Captures camera and microphone and offers them on a publish-only connection.
    async fn go_on_stage(self: &Rc<Self>) -> Result<(), JsValue> {
        self.capture().await;
        let Some(stream) = self.local.borrow().clone() else {
            return Ok(()); // Refused: the capture already said so.
        };
        self.show_media_toggles(true);
        let pc = sendonly_connection(&stream, "jinkeStagePc", Layers::Simulcast)?;
        let room = self.clone();
        let watched = pc.clone();
        let onstate = Closure::<dyn FnMut()>::new(move || {
            if watched.connection_state() == RtcPeerConnectionState::Failed && !room.ended.get() {
                room.notice("connection_lost", room.t.connection_lost);
            }
        });
        pc.set_onconnectionstatechange(Some(onstate.as_ref().unchecked_ref()));
        onstate.forget();
        *self.publish_pc.borrow_mut() = Some(pc.clone());
        let sdp = local_offer(&pc).await?;
        self.send(&ClientMessage::PublishOffer { sdp });
        Ok(())
    }

    /// Applies the server's answer to the publish-only connection.
    pub(super) async fn publish_answered(&self, sdp: &str) -> Result<(), JsValue> {
        let pc = self.publish_pc.borrow().clone();
        apply_answer(pc, sdp).await
    }

    /// Shows or removes the microphone and camera switches (and, for a student on stage, the
    /// button to leave it).
    pub(super) fn show_media_toggles(self: &Rc<Self>, on: bool) {
        let t = self.t;
        self.media_toggles.set_inner_html("");
        if !on {
            return;
        }
        for (label, kind, testid) in [
            (t.microphone, "audio", "toggle-mic"),
            (t.camera, "video", "toggle-camera"),
        ] {
            let room = self.clone();
            let b = button(label, "toggle", testid, || {});
            let _ = b.set_attribute("aria-pressed", "true");
            let b2 = b.clone();
            let cb = Closure::<dyn FnMut()>::new(move || {
                let on = room.toggle(kind);
                let _ = b2.set_attribute("aria-pressed", if on { "true" } else { "false" });
            });
            let _ = b
                .dyn_ref::<web_sys::HtmlElement>()
                .map(|h| h.set_onclick(Some(cb.as_ref().unchecked_ref())));
            cb.forget();
            if kind == "audio" && self.muted.borrow().contains(&self.me.borrow()) {
                let _ = b.set_attribute("aria-pressed", "false");
                let _ = b.set_attribute("disabled", "");
            }
            append(&self.media_toggles, &b);
        }
        if self.role == Role::Student && self.stage_list.borrow().contains(&self.me.borrow()) {
            let room = self.clone();
            append(
                &self.media_toggles,
                &button(t.leave_stage, "", "leave-stage", move || {
                    room.send(&ClientMessage::SetStage {
                        identity: room.me.borrow().clone(),
                        on: false,
                    });
                }),
            );
        }
    }
}
