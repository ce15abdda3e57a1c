//! What teachers and assistants run the lesson with (the roster with stage, mute and remove,
//! lock, end lesson), and how every client follows those controls (muted, locked).

use jinke_signaling::{ClientMessage, Role};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::MediaStreamTrack;

use super::Room;
use crate::dom::{append, button, el, set_data, set_hidden};

impl Room {
    /// Adds the lock and end-lesson buttons to the control bar.
    pub(super) fn add_moderator_controls(self: &std::rc::Rc<Self>, controls: &web_sys::Element) {
        let t = self.t;
        let room = self.clone();
        let lock = button(
            if self.locked.get() { t.unlock } else { t.lock },
            "",
            "lock",
            move || {
                room.send(&ClientMessage::Lock {
                    locked: !room.locked.get(),
                })
            },
        );
        let _ = lock.set_attribute("aria-pressed", bool_attr(self.locked.get()));
        append(controls, &lock);
        if !self.live.get() {
            let room = self.clone();
            let start = button(t.start_lesson, "primary", "start-lesson", move || {
                room.send(&ClientMessage::StartLesson);
            });
            append(controls, &start);
        }
        let room = self.clone();
        let share = button(t.share_screen, "", "share-screen", move || {
            let room = room.clone();
            wasm_bindgen_futures::spawn_local(async move { room.toggle_screen().await });
        });
        let _ = share.set_attribute("aria-pressed", "false");
        append(controls, &share);
        let room = self.clone();
        append(
            controls,
            &button(t.end_lesson, "danger", "end-lesson", move || {
                if confirm(room.t.confirm_end) {
                    room.send(&ClientMessage::EndLesson);
                }
            }),
        );
    }

    /// The weak-link switch: camera videos off (audio and shared screens only), and back on.
    pub(super) fn add_audio_only_button(self: &std::rc::Rc<Self>, controls: &web_sys::Element) {
        let t = self.t;
        let off = std::rc::Rc::new(std::cell::Cell::new(false));
        let ws = self.ws.clone();
        let b = button(t.audio_only, "", "audio-only", || {});
        let b2 = b.clone();
        let cb = Closure::<dyn FnMut()>::new(move || {
            off.set(!off.get());
            let msg = ClientMessage::ReceiveVideo {
                enabled: !off.get(),
            };
            let _ = ws.send_with_str(&msg.to_json());
            b2.set_text_content(Some(if off.get() {
                t.video_back
            } else {
                t.audio_only
            }));
            let _ = b2.set_attribute("aria-pressed", bool_attr(off.get()));
        });
        let _ = b
            .dyn_ref::<web_sys::HtmlElement>()
            .map(|h| h.set_onclick(Some(cb.as_ref().unchecked_ref())));
        cb.forget();
        let _ = b.set_attribute("aria-pressed", "false");
        append(controls, &b);
    }

    /// Redraws the moderators' roster: everyone present but oneself, with mute and remove
    /// buttons (never for a teacher). Others see no roster.
    pub(super) fn show_roster(&self) {
        if !self.role.moderates() {
            return;
        }
        let t = self.t;
        let me = self.me.borrow().clone();
        self.roster.set_inner_html("");
        set_data(&self.roster, "testid", "roster");
        let people: Vec<_> = self
            .participants
            .borrow()
            .iter()
            .filter(|p| p.identity != me)
            .cloned()
            .collect();
        set_hidden(&self.roster, people.is_empty());
        append(&self.roster, &el("h2", "", Some(t.roster_title)));
        let list = el("ul", "", None);
        for p in people {
            let item = el("li", "", Some(&p.name));
            set_data(&item, "identity", &p.identity);
            if p.role == Role::Student {
                let on = self.stage_list.borrow().contains(&p.identity);
                let ws = self.ws.clone();
                let who = p.identity.clone();
                let label = if on {
                    t.take_off_stage
                } else {
                    t.invite_on_stage
                };
                let stage = button(label, "", "stage", move || {
                    let msg = ClientMessage::SetStage {
                        identity: who.clone(),
                        on: !on,
                    };
                    let _ = ws.send_with_str(&msg.to_json());
                });
                let _ = stage.set_attribute("aria-pressed", bool_attr(on));
                append(&item, &stage);
            }
            if p.role != Role::Teacher {
                let muted = self.muted.borrow().contains(&p.identity);
                let ws = self.ws.clone();
                let who = p.identity.clone();
                let mute = button(
                    if muted { t.unmute } else { t.mute },
                    "",
                    "mute",
                    move || {
                        let msg = ClientMessage::Mute {
                            identity: who.clone(),
                            muted: !muted,
                        };
                        let _ = ws.send_with_str(&msg.to_json());
                    },
                );
                let _ = mute.set_attribute("aria-pressed", bool_attr(muted));
                append(&item, &mute);
                let ws = self.ws.clone();
                let who = p.identity.clone();
                let question = t.confirm_remove;
                append(
                    &item,
                    &button(t.remove, "danger", "remove", move || {
                        if confirm(question) {
                            let msg = ClientMessage::Remove {
                                identity: who.clone(),
                            };
                            let _ = ws.send_with_str(&msg.to_json());
                        }
                    }),
                );
            }
            append(&list, &item);
        }
        append(&self.roster, &list);
    }

    /// Follows a moderator's mute: for oneself, the microphone goes off and its button is
    /// disabled until unmuted (turning it back on stays the participant's choice).
    pub(super) fn set_muted(&self, identity: &str, muted: bool) {
        {
            let mut list = self.muted.borrow_mut();
            list.retain(|m| m != identity);
            if muted {
                list.push(identity.to_owned());
            }
        }
        if *self.me.borrow() == identity {
            let mic = crate::dom::document()
                .query_selector("[data-testid=toggle-mic]")
                .ok()
                .flatten();
            if muted {
                self.set_local_audio(false);
                if let Some(b) = &mic {
                    let _ = b.set_attribute("aria-pressed", "false");
                    let _ = b.set_attribute("disabled", "");
                }
                self.notice("muted", self.t.muted_by_teacher);
            } else {
                if let Some(b) = &mic {
                    let _ = b.remove_attribute("disabled");
                }
                self.notice("unmuted", self.t.unmuted_by_teacher);
            }
        }
        self.show_roster();
    }

    /// Turns the local microphone on or off.
    pub(super) fn set_local_audio(&self, on: bool) {
        if let Some(stream) = self.local.borrow().as_ref() {
            for track in stream.get_audio_tracks().iter() {
                track.unchecked_into::<MediaStreamTrack>().set_enabled(on);
            }
        }
    }

    /// The lesson started: the lobby is over (and the start button goes).
    pub(super) fn started(&self) {
        self.live.set(true);
        if let Ok(Some(b)) = crate::dom::document().query_selector("[data-testid=start-lesson]") {
            b.remove();
        }
        if self.role == Role::Student || self.role == Role::Observer {
            self.waiting.set_text_content(Some(self.t.waiting_teacher));
            set_data(&self.waiting, "testid", "");
        }
        self.notice("lesson_started", self.t.lesson_started);
    }

    /// Follows the lesson's lock: a notice for everyone, the button's state for moderators.
    pub(super) fn set_locked(&self, locked: bool) {
        self.locked.set(locked);
        let t = self.t;
        if let Ok(Some(b)) = crate::dom::document().query_selector("[data-testid=lock]") {
            b.set_text_content(Some(if locked { t.unlock } else { t.lock }));
            let _ = b.set_attribute("aria-pressed", bool_attr(locked));
        }
        if locked {
            self.notice("locked", t.lesson_now_locked);
        } else {
            self.notice("unlocked", t.lesson_now_unlocked);
        }
    }
}

fn bool_attr(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Asks the user to confirm (the browser's own dialog: large, familiar, keyboard-friendly).
fn confirm(question: &str) -> bool {
    web_sys::window()
        .and_then(|w| w.confirm_with_message(question).ok())
        .unwrap_or(false)
}
