//! The lesson page: checks the link, joins over signaling, publishes camera and microphone when
//! allowed, shows the teacher large and everyone else small.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures_channel::mpsc::{UnboundedSender, unbounded};
use futures_util::StreamExt;
use jinke_signaling::{
    ByeReason, ClientMessage, ErrorCode, IceCandidate, MediaKind, PROTOCOL_VERSION, Participant,
    Role, ServerMessage, TrackMapping,
};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{
    Element, HtmlVideoElement, MediaStream, MediaStreamConstraints, MediaStreamTrack, MessageEvent,
    RtcConfiguration, RtcPeerConnection, RtcPeerConnectionIceEvent, RtcPeerConnectionState,
    RtcRtpEncodingParameters, RtcRtpTransceiverDirection, RtcRtpTransceiverInit, RtcSdpType,
    RtcSessionDescriptionInit, RtcTrackEvent, WebSocket,
};

mod controls;
mod screen;
mod stage;
mod video_size;

use crate::dom::{append, button, el, error_box, set_data, set_hidden, show, status, video};
use crate::i18n::{Lang, Text};
use crate::token::{self, TokenInfo};

/// What the page was opened with.
struct Link {
    lang: Lang,
    token: String,
    lesson: Option<String>,
    autojoin: bool,
}

/// One participant's tile: their video (which also plays their audio) and its stream.
struct Tile {
    element: Element,
    video: HtmlVideoElement,
    stream: MediaStream,
}

/// The joined lesson's page state.
struct Room {
    t: &'static Text,
    /// This participant's role (from the token; the server enforces what it allows).
    role: Role,
    ws: WebSocket,
    pc: RefCell<Option<RtcPeerConnection>>,
    local: RefCell<Option<MediaStream>>,
    /// Forwarded tracks by the mid they arrive on.
    mids: RefCell<HashMap<String, TrackMapping>>,
    participants: RefCell<Vec<Participant>>,
    tiles: RefCell<HashMap<String, Tile>>,
    /// This participant's identity (from `joined`).
    me: RefCell<String>,
    /// Raised hands, first raised first.
    hands: RefCell<Vec<String>>,
    /// The student's raise/lower hand button, or the teacher's list of raised hands.
    hand_control: Element,
    /// Chat: the panel, its message list, and whether students may chat.
    chat_panel: Element,
    chat_log: Element,
    chat_enabled: Cell<bool>,
    /// Identities a moderator muted.
    muted: RefCell<Vec<String>>,
    /// Whether the lesson is locked.
    locked: Cell<bool>,
    /// Whether the lesson has started (before, students wait in the lobby).
    live: Cell<bool>,
    /// Teachers and assistants: everyone present, with mute and remove buttons.
    roster: Element,
    /// Students on stage.
    stage_list: RefCell<Vec<String>>,
    /// A student on stage whose first connection only receives: its publish-only connection.
    publish_pc: RefCell<Option<RtcPeerConnection>>,
    /// Whether the first connection carries this participant's camera and microphone.
    main_publishes: Cell<bool>,
    /// The microphone and camera switches, present while this participant publishes.
    media_toggles: Element,
    /// The invitation to come on stage, while it is open.
    stage_prompt: Element,
    /// Teachers and assistants: the shared screen's connection, while sharing.
    screen_pc: RefCell<Option<RtcPeerConnection>>,
    stage: Element,
    others: Element,
    notices: Element,
    waiting: Element,
    /// Set once the session ended on purpose; later socket closes are not "connection lost".
    ended: Cell<bool>,
    /// Reports the size received videos are shown at (`None` where the browser cannot).
    view_sizes: Option<video_size::ViewSizes>,
}

/// Entry point: reads the link and shows the first screen.
pub fn start() {
    let location = web_sys::window().expect("window").location();
    let params = web_sys::UrlSearchParams::new_with_str(&location.search().unwrap_or_default())
        .expect("URLSearchParams");
    let lang = Lang::from_param(params.get("lang").as_deref());
    let _ = crate::dom::document()
        .document_element()
        .map(|e| e.set_attribute("lang", lang.html_lang()));
    let t = lang.text();
    let Some(token) = params.get("token").filter(|t| !t.is_empty()) else {
        return show(&[error_box("missing_token", t.missing_token)]);
    };
    let lesson = location
        .pathname()
        .ok()
        .and_then(|p| {
            p.strip_prefix("/join/")
                .or_else(|| p.strip_prefix("/embed/"))
                .map(str::to_owned)
        })
        .filter(|l| !l.is_empty());
    let link = Link {
        lang,
        token,
        lesson,
        autojoin: params.get("autojoin").as_deref() == Some("1"),
    };
    if !supports_webrtc() {
        return show(&[error_box("unsupported_browser", t.unsupported)]);
    }
    spawn_local(async move { check_and_greet(link).await });
}

fn supports_webrtc() -> bool {
    let window: JsValue = web_sys::window().expect("window").into();
    js_sys::Reflect::has(&window, &"RTCPeerConnection".into()).unwrap_or(false)
}

/// Checks the token with the server (a plain GET of the signaling URL answers 426 for a good
/// token; 401, 403 or 410 with a reason when it cannot join), then offers the join button.
async fn check_and_greet(link: Link) {
    let t = link.lang.text();
    show(&[status(t.checking)]);
    let info = token::read(&link.token);
    let now = js_sys::Date::now() / 1000.0;
    match &info {
        None => return show(&[error_box("invalid_token", t.invalid_token)]),
        Some(i) if (i.exp as f64) < now => {
            return show(&[error_box("token_expired", t.token_expired)]);
        }
        Some(_) => {}
    }
    if let Some(code) = server_token_problem(&link).await {
        let text = match code.as_str() {
            "token_expired" => t.token_expired,
            "removed" => t.removed,
            "lesson_ended" => t.lesson_ended,
            "not_open" => t.not_open,
            "lesson_cancelled" => t.lesson_cancelled,
            _ => t.invalid_token,
        };
        return show(&[error_box(&code, text)]);
    }
    let info = info.expect("checked above");
    if link.autojoin {
        return join(Rc::new(link), info);
    }
    let link = Rc::new(link);
    let greeting = el("h1", "", Some(&format!("{}{}", t.hello, info.name)));
    let go = {
        let link = link.clone();
        let info = info.clone();
        button(t.join, "primary", "join", move || {
            join(link.clone(), info.clone())
        })
    };
    let screen = el("section", "center", None);
    append(&screen, &greeting);
    append(&screen, &go);
    show(&[screen]);
}

/// Asks the server whether the token is acceptable; returns its error code if not.
async fn server_token_problem(link: &Link) -> Option<String> {
    let window = web_sys::window()?;
    let resp = JsFuture::from(window.fetch_with_str(&signaling_path(link, false)))
        .await
        .ok()?;
    let resp: web_sys::Response = resp.dyn_into().ok()?;
    if !matches!(resp.status(), 401 | 403 | 410) {
        return None;
    }
    let body = JsFuture::from(resp.json().ok()?).await.ok()?;
    let error = js_sys::Reflect::get(&body, &"error".into()).ok()?;
    js_sys::Reflect::get(&error, &"code".into())
        .ok()?
        .as_string()
        .or_else(|| Some("invalid_token".into()))
}

/// `/ws?token=…&lesson=…`, absolute with the ws(s) scheme when `websocket`.
fn signaling_path(link: &Link, websocket: bool) -> String {
    let mut path = format!("/ws?token={}", encode(&link.token));
    if let Some(l) = &link.lesson {
        path.push_str(&format!("&lesson={}", encode(l)));
    }
    if !websocket {
        return path;
    }
    let location = web_sys::window().expect("window").location();
    let scheme = if location.protocol().unwrap_or_default() == "https:" {
        "wss"
    } else {
        "ws"
    };
    format!("{scheme}://{}{path}", location.host().unwrap_or_default())
}

fn encode(s: &str) -> String {
    String::from(js_sys::encode_uri_component(s))
}

/// Opens signaling and builds the lesson screen.
fn join(link: Rc<Link>, info: TokenInfo) {
    let t = link.lang.text();
    show(&[status(t.joining)]);
    let ws = match WebSocket::new(&signaling_path(&link, true)) {
        Ok(ws) => ws,
        Err(_) => return show(&[error_box("connection_lost", t.connection_lost)]),
    };
    let stage = el("section", "stage", None);
    let others = el("section", "others", None);
    let notices = el("div", "", None);
    let waiting = status(if info.role == Role::Teacher {
        t.connecting
    } else {
        t.waiting_teacher
    });
    let room = Rc::new(Room {
        t,
        role: info.role,
        ws: ws.clone(),
        pc: RefCell::new(None),
        local: RefCell::new(None),
        mids: RefCell::new(HashMap::new()),
        participants: RefCell::new(Vec::new()),
        tiles: RefCell::new(HashMap::new()),
        me: RefCell::new(String::new()),
        hands: RefCell::new(Vec::new()),
        hand_control: el("div", "hands", None),
        chat_panel: el("section", "chat", None),
        chat_log: el("ol", "chat-log", None),
        chat_enabled: Cell::new(true),
        muted: RefCell::new(Vec::new()),
        locked: Cell::new(false),
        live: Cell::new(true),
        roster: el("section", "roster", None),
        stage_list: RefCell::new(Vec::new()),
        publish_pc: RefCell::new(None),
        main_publishes: Cell::new(false),
        media_toggles: el("span", "", None),
        stage_prompt: el("div", "stage-prompt", None),
        screen_pc: RefCell::new(None),
        stage,
        others,
        notices,
        waiting,
        ended: Cell::new(false),
        view_sizes: video_size::ViewSizes::new(ws.clone()),
    });
    // Messages are handled strictly in order by one task: SDP steps must not interleave.
    let (tx, mut rx) = unbounded::<String>();
    install_socket_handlers(&ws, tx);
    let r = room.clone();
    spawn_local(async move {
        while let Some(text) = rx.next().await {
            if text.is_empty() {
                // The socket closed (queued behind any final error message it delivered).
                if !r.ended.get() {
                    r.end("connection_lost", r.t.connection_lost);
                }
                continue;
            }
            match ServerMessage::from_json(&text) {
                Ok(msg) => r.handle(msg).await,
                Err(e) => web_sys::console::warn_1(&e.to_string().into()),
            }
        }
    });
}

fn install_socket_handlers(ws: &WebSocket, tx: UnboundedSender<String>) {
    let onopen = {
        let ws = ws.clone();
        Closure::<dyn FnMut()>::new(move || {
            let join = ClientMessage::Join {
                protocol: PROTOCOL_VERSION,
            };
            let _ = ws.send_with_str(&join.to_json());
        })
    };
    ws.set_onopen(Some(onopen.as_ref().unchecked_ref()));
    onopen.forget();
    let onmessage = {
        let tx = tx.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(text) = e.data().as_string().filter(|t| !t.is_empty()) {
                let _ = tx.unbounded_send(text);
            }
        })
    };
    ws.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    // An empty string in the queue stands for "the socket closed".
    let onclose = Closure::<dyn FnMut()>::new(move || {
        let _ = tx.unbounded_send(String::new());
    });
    ws.set_onclose(Some(onclose.as_ref().unchecked_ref()));
    onclose.forget();
}

impl Room {
    fn send(&self, msg: &ClientMessage) {
        let _ = self.ws.send_with_str(&msg.to_json());
    }

    async fn handle(self: &Rc<Self>, msg: ServerMessage) {
        match msg {
            ServerMessage::Joined {
                you,
                lesson,
                may_publish,
                participants,
                hands,
                chat,
                chat_enabled,
                muted,
                locked,
                stage,
                ..
            } => {
                *self.me.borrow_mut() = you.identity.clone();
                crate::embed::post(
                    "joined",
                    &[
                        ("lesson", lesson.id.as_str()),
                        ("identity", you.identity.as_str()),
                    ],
                );
                self.locked.set(locked);
                *self.stage_list.borrow_mut() = stage;
                // Only a scheduled lesson has a lobby (and a start button).
                self.live.set(lesson.live || lesson.starts_at_ms.is_none());
                if let Some(at_ms) = lesson.starts_at_ms
                    && you.role != Role::Teacher
                    && !lesson.live
                {
                    self.count_down(at_ms);
                }
                self.render(&lesson.title, &you, may_publish);
                for p in participants {
                    self.add_participant(p);
                }
                for identity in muted {
                    self.set_muted(&identity, true);
                }
                self.show_hands(hands);
                for m in &chat {
                    self.show_chat(m);
                }
                self.set_chat_enabled(chat_enabled);
                if may_publish {
                    self.capture().await;
                    self.main_publishes.set(self.local.borrow().is_some());
                }
                if let Err(e) = self.connect().await {
                    self.fail_with(&e);
                }
            }
            ServerMessage::Answer { sdp } => {
                if let Some(pc) = self.pc() {
                    let desc = description(RtcSdpType::Answer, &sdp);
                    if let Err(e) = JsFuture::from(pc.set_remote_description(&desc)).await {
                        self.fail_with(&e);
                    }
                }
            }
            ServerMessage::Offer {
                sdp,
                added,
                removed,
            } => {
                for m in added {
                    self.mids.borrow_mut().insert(m.mid.clone(), m);
                }
                for mid in &removed {
                    self.drop_mid(mid);
                }
                if let Err(e) = self.answer(&sdp).await {
                    self.fail_with(&e);
                }
            }
            ServerMessage::ParticipantJoined(p) => self.add_participant(p),
            ServerMessage::ParticipantLeft { identity } => self.remove_participant(&identity),
            ServerMessage::HandQueue { identities } => self.show_hands(identities),
            ServerMessage::Chat(m) => self.show_chat(&m),
            ServerMessage::ChatEnabled { enabled } => self.set_chat_enabled(enabled),
            ServerMessage::Muted { identity, muted } => self.set_muted(&identity, muted),
            ServerMessage::Locked { locked } => self.set_locked(locked),
            ServerMessage::LessonStarted => self.started(),
            ServerMessage::Speaking { identity, speaking } => {
                self.show_speaking(&identity, speaking)
            }
            ServerMessage::ActiveSpeaker { identity } => self.show_active_speaker(&identity),
            ServerMessage::WeakLink { audio_only } => {
                if audio_only {
                    self.notice("weak_link", self.t.weak_link);
                } else if let Ok(Some(n)) = self.notices.query_selector("[data-code=weak_link]") {
                    n.remove();
                }
            }
            ServerMessage::EndingSoon { at_ms } => {
                let text = format!(
                    "{}{}{}",
                    self.t.ending_soon,
                    clock(at_ms),
                    self.t.ending_soon_tail
                );
                self.notice("ending_soon", &text);
            }
            ServerMessage::StageInvite { by } => self.show_stage_invite(&by),
            ServerMessage::Stage { identities } => self.follow_stage(identities).await,
            ServerMessage::StageDeclined { identity } => {
                let name = self.name_of(&identity).unwrap_or(identity);
                self.notice(
                    "stage_declined",
                    &format!("{name}{}", self.t.stage_declined),
                );
            }
            ServerMessage::ScreenAnswer { sdp } => {
                if let Err(e) = self.screen_answered(&sdp).await {
                    self.fail_with(&e);
                }
            }
            ServerMessage::PublishAnswer { sdp } => {
                if let Err(e) = self.publish_answered(&sdp).await {
                    self.fail_with(&e);
                }
            }
            ServerMessage::TrackPublished(_) | ServerMessage::TrackUnpublished { .. } => {}
            ServerMessage::Error { code, message, .. } => self.on_error(code, &message).await,
            ServerMessage::Bye { reason } => {
                let (code, text) = match reason {
                    ByeReason::ServerShutdown => ("server_shutdown", self.t.server_shutdown),
                    ByeReason::Replaced => ("replaced", self.t.replaced),
                    ByeReason::ConnectionLost => ("connection_lost", self.t.connection_lost),
                    ByeReason::Removed => ("removed", self.t.removed),
                    ByeReason::LessonEnded => ("lesson_ended", self.t.lesson_ended),
                };
                self.end(code, text);
            }
            ServerMessage::Pong => {}
        }
    }

    /// Outlines a speaker's tile while they speak.
    fn show_speaking(&self, identity: &str, speaking: bool) {
        if let Some(tile) = self.tiles.borrow().get(identity) {
            let _ = tile
                .element
                .class_list()
                .toggle_with_force("speaking", speaking);
        }
    }

    /// Marks the active speaker's tile (only one at a time).
    fn show_active_speaker(&self, identity: &str) {
        for (key, tile) in self.tiles.borrow().iter() {
            let _ = tile
                .element
                .class_list()
                .toggle_with_force("active-speaker", key == identity);
        }
    }

    /// The lobby: until the planned start, the waiting line counts down the minutes (then it
    /// says the class waits for the teacher).
    fn count_down(self: &Rc<Self>, starts_at_ms: i64) {
        let room = self.clone();
        let update = move || {
            if room.live.get() {
                return;
            }
            let left_ms = starts_at_ms as f64 - js_sys::Date::now();
            let text = if left_ms > 0.0 {
                let minutes = (left_ms / 60_000.0).ceil();
                format!(
                    "{}{minutes}{}{}{}",
                    room.t.lesson_starts_in,
                    room.t.minutes,
                    room.t.starts_at_label,
                    clock(starts_at_ms)
                )
            } else {
                room.t.lobby_waiting.to_owned()
            };
            room.waiting.set_text_content(Some(&text));
            set_data(&room.waiting, "testid", "countdown");
        };
        update();
        let tick = Closure::<dyn FnMut()>::new(update);
        if let Some(w) = web_sys::window() {
            let _ = w.set_interval_with_callback_and_timeout_and_arguments_0(
                tick.as_ref().unchecked_ref(),
                15_000,
            );
        }
        tick.forget();
    }

    fn pc(&self) -> Option<RtcPeerConnection> {
        self.pc.borrow().clone()
    }

    /// Draws the lesson screen.
    fn render(self: &Rc<Self>, title: &str, you: &Participant, may_publish: bool) {
        let t = self.t;
        let header = el("h1", "", Some(title));
        let controls = el("div", "controls", None);
        let preview = el("div", "tile preview", None);
        set_data(&preview, "testid", "preview");
        set_hidden(&preview, true);
        append(&controls, &self.media_toggles);
        if may_publish {
            self.show_media_toggles(true);
        }
        if you.role == Role::Student {
            let room = self.clone();
            let b = button(t.raise_hand, "", "raise-hand", move || {
                let raised = room.hands.borrow().contains(&room.me.borrow());
                room.send(&if raised {
                    ClientMessage::LowerHand { identity: None }
                } else {
                    ClientMessage::RaiseHand
                });
            });
            let _ = b.set_attribute("aria-pressed", "false");
            append(&self.hand_control, &b);
            append(&controls, &self.hand_control);
        }
        if you.role.moderates() {
            self.add_moderator_controls(&controls);
        }
        self.add_audio_only_button(&controls);
        let room = self.clone();
        append(
            &controls,
            &button(t.leave, "leave", "leave", move || room.leave()),
        );
        let name = el("span", "name", Some(&format!("{} ({})", you.name, t.me)));
        append(&preview, &name);
        if you.role.moderates() {
            set_data(&self.hand_control, "testid", "hand-queue");
            set_hidden(&self.hand_control, true);
        }
        let hand_list = if you.role.moderates() {
            self.hand_control.clone()
        } else {
            el("div", "", None)
        };
        self.build_chat(you);
        set_hidden(&self.stage_prompt, true);
        show(&[
            header,
            self.stage_prompt.clone(),
            hand_list,
            self.roster.clone(),
            self.notices.clone(),
            self.waiting.clone(),
            self.stage.clone(),
            self.others.clone(),
            preview,
            controls,
            self.chat_panel.clone(),
        ]);
    }

    /// Builds the chat panel: the log, and for everyone but observers an input and a send
    /// button (Enter sends too); teachers also get the on/off switch.
    fn build_chat(self: &Rc<Self>, you: &Participant) {
        let t = self.t;
        append(&self.chat_panel, &el("h2", "", Some(t.chat_title)));
        set_data(&self.chat_log, "testid", "chat-log");
        append(&self.chat_panel, &self.chat_log);
        if !you.role.is_listed() {
            return;
        }
        let input: web_sys::HtmlInputElement = el("input", "", None).unchecked_into();
        set_data(&input, "testid", "chat-input");
        input.set_placeholder(t.chat_placeholder);
        input.set_max_length(jinke_signaling::MAX_CHAT_CHARS as i32);
        let send = {
            let room = self.clone();
            let input = input.clone();
            move || {
                let text = input.value();
                if !text.trim().is_empty() {
                    room.send(&ClientMessage::Chat { text });
                    input.set_value("");
                }
            }
        };
        let on_enter = {
            let send = send.clone();
            Closure::<dyn FnMut(web_sys::KeyboardEvent)>::new(move |e: web_sys::KeyboardEvent| {
                if e.key() == "Enter" {
                    send();
                }
            })
        };
        let _ =
            input.add_event_listener_with_callback("keydown", on_enter.as_ref().unchecked_ref());
        on_enter.forget();
        let row = el("div", "chat-row", None);
        append(&row, &input);
        append(&row, &button(t.chat_send, "", "chat-send", send));
        append(&self.chat_panel, &row);
        if you.role.moderates() {
            let room = self.clone();
            append(
                &self.chat_panel,
                &button(t.chat_turn_off, "", "chat-toggle", move || {
                    room.send(&ClientMessage::SetChat {
                        enabled: !room.chat_enabled.get(),
                    });
                }),
            );
        }
    }

    fn show_chat(&self, m: &jinke_signaling::ChatMessage) {
        let item = el("li", if m.announcement { "announcement" } else { "" }, None);
        set_data(&item, "identity", &m.identity);
        let author = if m.announcement {
            self.t.announcement
        } else {
            &m.name
        };
        append(&item, &el("b", "", Some(&format!("{author}："))));
        append(&item, &el("span", "", Some(&m.text)));
        append(&self.chat_log, &item);
        item.scroll_into_view();
    }

    fn set_chat_enabled(&self, enabled: bool) {
        let t = self.t;
        self.chat_enabled.set(enabled);
        if let Ok(Some(b)) = self.chat_panel.query_selector("[data-testid=chat-toggle]") {
            b.set_text_content(Some(if enabled {
                t.chat_turn_off
            } else {
                t.chat_turn_on
            }));
            return; // Teachers keep chatting either way.
        }
        for id in ["chat-input", "chat-send"] {
            if let Ok(Some(e)) = self
                .chat_panel
                .query_selector(&format!("[data-testid={id}]"))
            {
                if enabled {
                    let _ = e.remove_attribute("disabled");
                } else {
                    let _ = e.set_attribute("disabled", "");
                }
            }
        }
        if !enabled {
            self.notice("chat_off", t.chat_off);
        }
    }

    /// Shows the raised hands: the student's own button state, or the teacher's ordered list.
    fn show_hands(self: &Rc<Self>, identities: Vec<String>) {
        let t = self.t;
        let me = self.me.borrow().clone();
        if identities.contains(&me) && !self.hands.borrow().contains(&me) {
            crate::embed::post("hand-raised", &[("identity", me.as_str())]);
        }
        *self.hands.borrow_mut() = identities.clone();
        if self.role.moderates() {
            self.hand_control.set_inner_html("");
            set_hidden(&self.hand_control, identities.is_empty());
            append(&self.hand_control, &el("h2", "", Some(t.hands_title)));
            let list = el("ol", "", None);
            for identity in identities {
                let name = self.name_of(&identity).unwrap_or_else(|| identity.clone());
                let item = el("li", "", Some(&name));
                set_data(&item, "identity", &identity);
                let room = self.clone();
                let who = identity.clone();
                append(
                    &item,
                    &button(t.lower_their_hand, "", "lower-hand", move || {
                        room.send(&ClientMessage::LowerHand {
                            identity: Some(who.clone()),
                        });
                    }),
                );
                append(&list, &item);
            }
            append(&self.hand_control, &list);
        } else if let Ok(Some(b)) = self.hand_control.query_selector("[data-testid=raise-hand]") {
            let raised = identities.contains(&me);
            b.set_text_content(Some(if raised { t.lower_hand } else { t.raise_hand }));
            let _ = b.set_attribute("aria-pressed", if raised { "true" } else { "false" });
        }
    }

    /// Asks for camera and microphone; on refusal, explains and continues receive-only.
    async fn capture(&self) {
        let Some(devices) = web_sys::window().and_then(|w| w.navigator().media_devices().ok())
        else {
            return self.notice("camera_refused", self.t.camera_refused);
        };
        let constraints = MediaStreamConstraints::new();
        constraints.set_audio(&JsValue::TRUE);
        // A teacher's camera in 720p: its simulcast then has a layer for every screen, from a
        // phone (320x180) to a hall's projector (1280x720). Others keep the camera's default.
        let camera = if self.role == Role::Teacher {
            ideal_size(1280, 720)
        } else {
            JsValue::TRUE
        };
        constraints.set_video(&camera);
        let stream = match devices.get_user_media_with_constraints(&constraints) {
            Ok(p) => JsFuture::from(p).await,
            Err(e) => Err(e),
        };
        match stream.and_then(|s| s.dyn_into::<MediaStream>()) {
            Ok(stream) => {
                if let Some(preview) = crate::dom::document()
                    .query_selector("[data-testid=preview]")
                    .ok()
                    .flatten()
                {
                    let v = video(true);
                    v.set_src_object(Some(&stream));
                    let _ = preview.insert_before(&v, preview.first_child().as_ref());
                    set_hidden(&preview, false);
                }
                *self.local.borrow_mut() = Some(stream);
                if self.muted.borrow().contains(&self.me.borrow()) {
                    self.set_local_audio(false);
                }
            }
            Err(_) => self.notice("camera_refused", self.t.camera_refused),
        }
    }

    /// Creates the peer connection. With local tracks it offers them send-only; with nothing to
    /// publish it asks the server to offer what there is to receive.
    async fn connect(self: &Rc<Self>) -> Result<(), JsValue> {
        let config = RtcConfiguration::new();
        let pc = RtcPeerConnection::new_with_configuration(&config)?;
        let local = self.local.borrow().clone();
        if let Some(stream) = &local {
            add_sendonly(&pc, stream, Layers::Simulcast);
        }
        self.install_pc_handlers(&pc);
        // Exposed for tests and for troubleshooting from the console.
        if let Some(w) = web_sys::window() {
            let _ = js_sys::Reflect::set(&w, &"jinkePc".into(), &pc);
        }
        *self.pc.borrow_mut() = Some(pc.clone());
        if local.is_none() {
            self.send(&ClientMessage::Receive);
            return Ok(());
        }
        let sdp = local_offer(&pc).await?;
        self.send(&ClientMessage::Offer { sdp });
        Ok(())
    }

    fn install_pc_handlers(self: &Rc<Self>, pc: &RtcPeerConnection) {
        let room = self.clone();
        let ontrack = Closure::<dyn FnMut(RtcTrackEvent)>::new(move |e: RtcTrackEvent| {
            room.on_track(&e);
        });
        pc.set_ontrack(Some(ontrack.as_ref().unchecked_ref()));
        ontrack.forget();
        let ws = self.ws.clone();
        let onice = Closure::<dyn FnMut(RtcPeerConnectionIceEvent)>::new(
            move |e: RtcPeerConnectionIceEvent| {
                if let Some(c) = e.candidate() {
                    let msg = ClientMessage::Candidate(IceCandidate {
                        candidate: c.candidate(),
                        sdp_mid: c.sdp_mid(),
                        sdp_m_line_index: c.sdp_m_line_index(),
                    });
                    let _ = ws.send_with_str(&msg.to_json());
                }
            },
        );
        pc.set_onicecandidate(Some(onice.as_ref().unchecked_ref()));
        onice.forget();
        let room = self.clone();
        let pc2 = pc.clone();
        let onstate = Closure::<dyn FnMut()>::new(move || match pc2.connection_state() {
            RtcPeerConnectionState::Failed if !room.ended.get() => {
                room.end("connection_lost", room.t.connection_lost);
            }
            // The teacher's "connecting" line ends here; students wait for the teacher's video.
            RtcPeerConnectionState::Connected if room.role == Role::Teacher => {
                set_hidden(&room.waiting, true);
            }
            _ => {}
        });
        pc.set_onconnectionstatechange(Some(onstate.as_ref().unchecked_ref()));
        onstate.forget();
    }

    /// Answers a server offer (forwarded tracks added or removed).
    async fn answer(&self, sdp: &str) -> Result<(), JsValue> {
        let Some(pc) = self.pc() else {
            return Ok(());
        };
        JsFuture::from(pc.set_remote_description(&description(RtcSdpType::Offer, sdp))).await?;
        let answer = JsFuture::from(pc.create_answer()).await?;
        let sdp = sdp_of(&answer)?;
        JsFuture::from(pc.set_local_description(&description(RtcSdpType::Answer, &sdp))).await?;
        self.send(&ClientMessage::Answer { sdp });
        Ok(())
    }

    /// A forwarded track arrived: put it in its participant's tile.
    fn on_track(&self, e: &RtcTrackEvent) {
        let Some(mid) = e.transceiver().mid() else {
            return;
        };
        let Some(mapping) = self.mids.borrow().get(&mid).cloned() else {
            return;
        };
        let identity = mapping.track.identity;
        let key = tile_key(&identity, mapping.track.screen);
        let role = self
            .participants
            .borrow()
            .iter()
            .find(|p| p.identity == identity)
            .map(|p| p.role)
            .unwrap_or(Role::Student);
        self.ensure_tile(&key, &identity, role);
        let tiles = self.tiles.borrow();
        let Some(tile) = tiles.get(&key) else {
            return;
        };
        tile.stream.add_track(&e.track());
        if mapping.track.kind == MediaKind::Video
            && let Some(sizes) = &self.view_sizes
        {
            sizes.observe(&tile.video, &mapping.track.track_id);
        }
        // Attach once: the element picks up tracks added to its stream later, while setting the
        // source again would abort the pending play().
        if tile.video.src_object().is_none() {
            tile.video.set_src_object(Some(&tile.stream));
            self.play(&tile.video);
        }
        if role == Role::Teacher {
            set_hidden(&self.waiting, true);
        }
    }

    /// Starts playback; where the browser blocks sound without a tap, plays muted and offers a
    /// button that turns the sound on.
    fn play(&self, v: &HtmlVideoElement) {
        let Ok(promise) = v.play() else {
            return;
        };
        let v = v.clone();
        let notices = self.notices.clone();
        let label = self.t.enable_sound;
        spawn_local(async move {
            let refused = match JsFuture::from(promise).await {
                Ok(_) => false,
                Err(e) => js_sys::Reflect::get(&e, &"name".into())
                    .ok()
                    .and_then(|n| n.as_string())
                    .is_some_and(|n| n == "NotAllowedError"),
            };
            if !refused {
                return;
            }
            v.set_muted(true);
            let _ = v.play();
            if notices
                .query_selector("[data-testid=enable-sound]")
                .ok()
                .flatten()
                .is_some()
            {
                return;
            }
            let v2 = v.clone();
            let b = button(label, "primary", "enable-sound", move || {
                v2.set_muted(false);
                let _ = v2.play();
            });
            let b2 = b.clone();
            let cb = Closure::<dyn FnMut()>::new(move || b2.remove());
            let _ = b.add_event_listener_with_callback("click", cb.as_ref().unchecked_ref());
            cb.forget();
            append(&notices, &b);
        });
    }

    fn drop_mid(&self, mid: &str) {
        let Some(mapping) = self.mids.borrow_mut().remove(mid) else {
            return;
        };
        let Some(pc) = self.pc() else {
            return;
        };
        let key = tile_key(&mapping.track.identity, mapping.track.screen);
        if mapping.track.screen {
            // A shared screen's tile goes with its track.
            if let Some(tile) = self.tiles.borrow_mut().remove(&key) {
                tile.element.remove();
            }
            return;
        }
        let tiles = self.tiles.borrow();
        let Some(tile) = tiles.get(&key) else {
            return;
        };
        for tr in pc.get_transceivers().iter() {
            let tr: web_sys::RtcRtpTransceiver = tr.unchecked_into();
            if tr.mid().as_deref() == Some(mid) {
                tile.stream.remove_track(&tr.receiver().track());
            }
        }
    }

    fn add_participant(&self, p: Participant) {
        if p.role == Role::Teacher {
            self.ensure_tile(&p.identity, &p.name, p.role);
        }
        let mut list = self.participants.borrow_mut();
        list.retain(|q| q.identity != p.identity);
        let name = p.name.clone();
        let identity = p.identity.clone();
        list.push(p);
        drop(list);
        self.show_roster();
        if let Some(tile) = self.tiles.borrow().get(&identity) {
            set_label(&tile.element, &name, self.t, self.role_of(&identity));
        }
    }

    /// The display name of a participant present in the lesson.
    fn name_of(&self, identity: &str) -> Option<String> {
        self.participants
            .borrow()
            .iter()
            .find(|p| p.identity == identity)
            .map(|p| p.name.clone())
    }

    fn role_of(&self, identity: &str) -> Role {
        self.participants
            .borrow()
            .iter()
            .find(|p| p.identity == identity)
            .map(|p| p.role)
            .unwrap_or(Role::Student)
    }

    fn remove_participant(&self, identity: &str) {
        self.participants
            .borrow_mut()
            .retain(|p| p.identity != identity);
        self.show_roster();
        if let Some(tile) = self.tiles.borrow_mut().remove(identity) {
            tile.element.remove();
        }
        if self.role_of(identity) == Role::Teacher || !self.tiles.borrow().values().any(|_| true) {
            set_hidden(&self.waiting, false);
        }
    }

    /// The tile of a participant, created on first use: the teacher's on the stage, others below.
    /// The tile of a participant (or of its shared screen, keyed `identity#screen`), created on
    /// first use: a screen first and large on the stage, the teacher's on the stage, others below.
    fn ensure_tile(&self, key: &str, fallback_name: &str, role: Role) {
        if self.tiles.borrow().contains_key(key) {
            return;
        }
        let (identity, screen) = match key.strip_suffix("#screen") {
            Some(identity) => (identity, true),
            None => (key, false),
        };
        let name = self
            .name_of(identity)
            .unwrap_or_else(|| fallback_name.to_owned());
        let element = el("div", "tile", None);
        set_data(&element, "identity", identity);
        let v = video(false);
        append(&element, &v);
        append(&element, &el("span", "name", None));
        set_label(&element, &name, self.t, role);
        if screen {
            element.set_class_name("tile main screen");
            set_data(&element, "testid", "screen");
            if let Ok(Some(label)) = element.query_selector(".name") {
                label.set_text_content(Some(&format!("{name}{}", self.t.screen_of)));
            }
            let _ = self
                .stage
                .insert_before(&element, self.stage.first_child().as_ref());
        } else if role == Role::Teacher {
            element.set_class_name("tile main");
            append(&self.stage, &element);
        } else {
            append(&self.others, &element);
        }
        let stream = MediaStream::new().expect("MediaStream");
        self.tiles.borrow_mut().insert(
            key.to_owned(),
            Tile {
                element,
                video: v,
                stream,
            },
        );
    }

    /// Turns the local microphone or camera on or off; returns whether it is now on.
    fn toggle(&self, kind: &str) -> bool {
        let Some(stream) = self.local.borrow().clone() else {
            return false;
        };
        let mut on = false;
        for track in stream.get_tracks().iter() {
            let track: MediaStreamTrack = track.unchecked_into();
            if track.kind() == kind {
                on = !track.enabled();
                track.set_enabled(on);
            }
        }
        on
    }

    fn notice(&self, code: &str, text: &str) {
        let p = el("p", "notice", Some(text));
        set_data(&p, "testid", "notice");
        set_data(&p, "code", code);
        append(&self.notices, &p);
    }

    async fn on_error(self: &Rc<Self>, code: ErrorCode, message: &str) {
        match code {
            ErrorCode::PublishNotAllowed => {
                // Watch and listen instead: drop local media and offer again, receive-only.
                self.notice("publish_not_allowed", self.t.publish_not_allowed);
                self.stop_local();
                if let Some(pc) = self.pc.borrow_mut().take() {
                    pc.close();
                }
                if let Err(e) = self.connect().await {
                    self.fail_with(&e);
                }
            }
            ErrorCode::LessonFull => self.end("lesson_full", self.t.lesson_full),
            ErrorCode::LessonLocked => self.end("lesson_locked", self.t.lesson_locked),
            ErrorCode::StageFull => self.notice("stage_full", self.t.stage_full),
            ErrorCode::RateLimited => self.notice("rate_limited", self.t.chat_too_fast),
            _ => {
                let text = format!("{}{message}", self.t.generic_error);
                self.notice(error_code_name(code), &text);
            }
        }
    }

    fn fail_with(&self, e: &JsValue) {
        web_sys::console::error_1(e);
        let text = format!("{}{}", self.t.generic_error, js_error_text(e));
        self.notice("internal", &text);
    }

    fn stop_local(&self) {
        if let Some(stream) = self.local.borrow_mut().take() {
            for track in stream.get_tracks().iter() {
                track.unchecked_into::<MediaStreamTrack>().stop();
            }
        }
        if let Ok(Some(preview)) = crate::dom::document().query_selector("[data-testid=preview]") {
            if let Ok(Some(v)) = preview.query_selector("video") {
                v.remove();
            }
            set_hidden(&preview, true);
        }
    }

    fn close(&self) {
        self.ended.set(true);
        self.stop_local();
        if let Some(pc) = self.publish_pc.borrow_mut().take() {
            pc.close();
        }
        if let Some(pc) = self.pc.borrow_mut().take() {
            pc.close();
        }
        let _ = self.ws.close();
    }

    fn leave(&self) {
        crate::embed::post("left", &[("reason", "left")]);
        self.send(&ClientMessage::Leave);
        self.close();
        self.show_ended(None, self.t.left);
    }

    /// Ends the session with an explanation and a way back in.
    fn end(&self, code: &str, text: &str) {
        if self.ended.get() {
            return;
        }
        crate::embed::post("left", &[("reason", code)]);
        self.close();
        self.show_ended(Some(code), text);
    }

    fn show_ended(&self, code: Option<&str>, text: &str) {
        let screen = el("section", "center", None);
        match code {
            Some(code) => append(&screen, &error_box(code, text)),
            None => append(&screen, &status(text)),
        }
        if matches!(code, Some("removed" | "lesson_ended")) {
            // The server would refuse this link again.
            return show(&[screen]);
        }
        append(
            &screen,
            &button(self.t.rejoin, "primary", "rejoin", || {
                if let Some(w) = web_sys::window() {
                    let _ = w.location().reload();
                }
            }),
        );
        show(&[screen]);
    }
}

fn set_label(tile: &Element, name: &str, t: &Text, role: Role) {
    if let Ok(Some(label)) = tile.query_selector(".name") {
        let text = match role {
            Role::Teacher => format!("{name} · {}", t.teacher),
            Role::Assistant => format!("{name} · {}", t.assistant),
            Role::Student | Role::Observer => name.to_owned(),
        };
        label.set_text_content(Some(&text));
    }
}

/// The key of a participant's tile, or of its shared screen's.
fn tile_key(identity: &str, screen: bool) -> String {
    if screen {
        format!("{identity}#screen")
    } else {
        identity.to_owned()
    }
}

/// `HH:MM` in the browser's time zone.
fn clock(at_ms: i64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(at_ms as f64));
    format!("{:02}:{:02}", d.get_hours(), d.get_minutes())
}

/// A publish-only connection carrying `stream`, exposed as `window[name]` for tests and for
/// troubleshooting from the console.
fn sendonly_connection(
    stream: &MediaStream,
    name: &str,
    layers: Layers,
) -> Result<RtcPeerConnection, JsValue> {
    let pc = RtcPeerConnection::new_with_configuration(&RtcConfiguration::new())?;
    add_sendonly(&pc, stream, layers);
    if let Some(w) = web_sys::window() {
        let _ = js_sys::Reflect::set(&w, &name.into(), &pc);
    }
    Ok(pc)
}

/// Creates the connection's offer, applies it locally and returns its SDP.
async fn local_offer(pc: &RtcPeerConnection) -> Result<String, JsValue> {
    let offer = JsFuture::from(pc.create_offer()).await?;
    let sdp = sdp_of(&offer)?;
    JsFuture::from(pc.set_local_description(&description(RtcSdpType::Offer, &sdp))).await?;
    Ok(sdp)
}

/// Applies the server's answer to a connection, if it still exists.
async fn apply_answer(pc: Option<RtcPeerConnection>, sdp: &str) -> Result<(), JsValue> {
    if let Some(pc) = pc {
        JsFuture::from(pc.set_remote_description(&description(RtcSdpType::Answer, sdp))).await?;
    }
    Ok(())
}

/// Video constraints asking for `width` x `height` if the camera can.
fn ideal_size(width: u32, height: u32) -> JsValue {
    let ideal = |v: u32| {
        let o = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&o, &"ideal".into(), &v.into());
        o
    };
    let video = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&video, &"width".into(), &ideal(width));
    let _ = js_sys::Reflect::set(&video, &"height".into(), &ideal(height));
    video.into()
}

/// How a video is sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layers {
    /// A camera: three sizes (simulcast), so that each viewer gets the one that fits its
    /// screen and link.
    Simulcast,
    /// A shared screen: one stream at full size (its text must stay readable).
    Single,
}

/// Simulcast layers of a camera: rid, how much smaller than the capture, most bits/s.
const CAMERA_LAYERS: [(&str, f32, u32); 3] = [
    ("l", 4.0, 150_000),
    ("m", 2.0, 500_000),
    ("h", 1.0, 1_200_000),
];

/// Adds every track of `stream` to `pc` as a send-only transceiver.
fn add_sendonly(pc: &RtcPeerConnection, stream: &MediaStream, layers: Layers) {
    for track in stream.get_tracks().iter() {
        let track: MediaStreamTrack = track.unchecked_into();
        let init = RtcRtpTransceiverInit::new();
        init.set_direction(RtcRtpTransceiverDirection::Sendonly);
        init.set_streams(&js_sys::Array::of1(stream));
        if layers == Layers::Simulcast && track.kind() == "video" {
            let encodings = js_sys::Array::new();
            for (rid, scale, bitrate) in CAMERA_LAYERS {
                let e = RtcRtpEncodingParameters::new();
                e.set_rid(rid);
                e.set_scale_resolution_down_by(scale);
                e.set_max_bitrate(bitrate);
                encodings.push(&e);
            }
            init.set_send_encodings(&encodings);
        }
        pc.add_transceiver_with_media_stream_track_and_init(&track, &init);
    }
}

fn description(kind: RtcSdpType, sdp: &str) -> RtcSessionDescriptionInit {
    let d = RtcSessionDescriptionInit::new(kind);
    d.set_sdp(sdp);
    d
}

fn sdp_of(desc: &JsValue) -> Result<String, JsValue> {
    js_sys::Reflect::get(desc, &"sdp".into())?
        .as_string()
        .ok_or_else(|| "description without sdp".into())
}

fn js_error_text(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| {
            js_sys::Reflect::get(e, &"message".into())
                .ok()
                .and_then(|m| m.as_string())
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

fn error_code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::ProtocolVersion => "protocol_version",
        ErrorCode::BadMessage => "bad_message",
        ErrorCode::UnexpectedMessage => "unexpected_message",
        ErrorCode::BadSdp => "bad_sdp",
        ErrorCode::PublishNotAllowed => "publish_not_allowed",
        ErrorCode::NotAllowed => "not_allowed",
        ErrorCode::RateLimited => "rate_limited",
        ErrorCode::BadRequest => "bad_request",
        ErrorCode::LessonFull => "lesson_full",
        ErrorCode::LessonLocked => "lesson_locked",
        ErrorCode::NotPresent => "not_present",
        ErrorCode::StageFull => "stage_full",
        ErrorCode::ShuttingDown => "shutting_down",
        ErrorCode::Internal => "internal",
    }
}
