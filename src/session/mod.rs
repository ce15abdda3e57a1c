//! The server side of one signaling session: `/ws?token=…`, from the token check before the
//! upgrade to leaving the room. Wires the client to its room and to its SFU peer.

mod media;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jinke_sfu::{CloseReason, PeerEvent, SfuError};
use jinke_signaling::{
    ByeReason, ClientMessage, ErrorCode, LessonInfo, MAX_MESSAGE_BYTES, PROTOCOL_VERSION,
    Participant, Role, ServerMessage,
};
use serde::Deserialize;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::controls::{self, ControlFailure};
use crate::rooms::{Actor, AdmissionError, ControlError, RoomShape};
use crate::schedule::LessonState;
use crate::server::AppState;
use crate::store::Lesson;
use crate::tokens::{JoinClaims, TokenError};
use media::{Media, MediaError};

/// How long a client has to send [`ClientMessage::Join`] after the upgrade.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub struct WsQuery {
    token: Option<String>,
    /// When given, the token must be for this lesson.
    lesson: Option<String>,
}

/// `GET /ws?token=…[&lesson=…]`: refuses a bad, expired or other-lesson token with 401 before
/// upgrading, an ended or cancelled lesson with 410, a lesson whose lobby is not open yet and a
/// participant removed from the lesson with 403; refuses
/// new joins with 503 while shutting down. A plain GET (no upgrade) with a good
/// token answers 426, which lets the web client check its link before connecting.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    Query(q): Query<WsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let refuse = |status: StatusCode, code: &str, message: String| {
        let body = serde_json::json!({"error": {"code": code, "message": message}});
        (status, axum::Json(body)).into_response()
    };
    if state.is_shutting_down() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down".into(),
        );
    }
    let Some(token) = q.token else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "a join token is required".into(),
        );
    };
    let claims = match state.signer.verify(&token) {
        Ok(c) => c,
        Err(e) => {
            let code = match e {
                TokenError::Expired => "token_expired",
                TokenError::Invalid(_) => "invalid_token",
            };
            return refuse(StatusCode::UNAUTHORIZED, code, e.to_string());
        }
    };
    if q.lesson.as_ref().is_some_and(|l| *l != claims.lesson) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the token is for another lesson".into(),
        );
    }
    let lesson = match state.store.lesson(&claims.lesson) {
        Ok(Some(l)) => l,
        Ok(None) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the token's lesson does not exist".into(),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "lesson lookup failed");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".into(),
            );
        }
    };
    match lesson.state(crate::unix_now()) {
        LessonState::Ended => {
            return refuse(
                StatusCode::GONE,
                "lesson_ended",
                "the lesson has ended".into(),
            );
        }
        LessonState::Cancelled => {
            return refuse(
                StatusCode::GONE,
                "lesson_cancelled",
                "the lesson was cancelled".into(),
            );
        }
        LessonState::Scheduled => {
            let opens = lesson.timing().opens_at().unwrap_or_default();
            return refuse(
                StatusCode::FORBIDDEN,
                "not_open",
                format!(
                    "the lesson opens at {}",
                    crate::schedule::rfc3339_seconds(opens)
                ),
            );
        }
        LessonState::Open | LessonState::Live => {}
    }
    match state.store.is_removed(&lesson.id, &claims.sub) {
        Ok(false) => {}
        Ok(true) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "removed",
                "you were removed from this lesson".into(),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "removal lookup failed");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".into(),
            );
        }
    }
    let Ok(ws) = ws else {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "the token is valid; connect with a WebSocket".into(),
        );
    };
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            let mut session = Session {
                state,
                socket,
                lesson,
                claims,
            };
            session.run().await;
        })
}

/// The WebSocket read buffer. tungstenite's default, 128 KiB, is zeroed before every read
/// and so resident for every connection: 60 MiB of a 500-student lecture's 168 (measured,
/// BENCHMARKS.md), and a 128 KiB `memset` per control message, for messages that are mostly
/// under 1 KiB. Larger ones (SDP, up to [`MAX_MESSAGE_BYTES`]) take a few reads.
const READ_BUFFER_BYTES: usize = 4096;

struct Session {
    state: Arc<AppState>,
    socket: WebSocket,
    lesson: Lesson,
    claims: JoinClaims,
}

/// How a session ended, decided inside the loop.
enum End {
    /// The client left or its socket closed.
    ClientGone,
    /// The server ends it with a message to the client.
    Tell(Box<ServerMessage>),
}

impl Session {
    async fn send(&mut self, msg: &ServerMessage) -> bool {
        self.socket
            .send(Message::Text(msg.to_json().into()))
            .await
            .is_ok()
    }

    async fn fail(&mut self, code: ErrorCode, message: impl Into<String>) {
        let msg = ServerMessage::Error {
            code,
            message: message.into(),
            fatal: true,
        };
        self.send(&msg).await;
        let _ = self.socket.send(Message::Close(None)).await;
    }

    /// Next client message; `None` when the socket closed. Malformed messages are answered with
    /// an error and skipped.
    async fn recv(&mut self) -> Option<ClientMessage> {
        loop {
            let text = match self.socket.recv().await? {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            };
            match ClientMessage::from_json(&text) {
                Ok(m) => return Some(m),
                Err(e) => {
                    let msg = ServerMessage::Error {
                        code: ErrorCode::BadMessage,
                        message: e.to_string(),
                        fatal: false,
                    };
                    if !self.send(&msg).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn run(&mut self) {
        let first = tokio::time::timeout(JOIN_TIMEOUT, self.recv()).await;
        match first {
            Ok(Some(ClientMessage::Join { protocol })) if protocol == PROTOCOL_VERSION => {}
            Ok(Some(ClientMessage::Join { protocol })) => {
                return self
                    .fail(
                        ErrorCode::ProtocolVersion,
                        format!("server speaks protocol {PROTOCOL_VERSION}, client {protocol}"),
                    )
                    .await;
            }
            Ok(Some(_)) => {
                return self
                    .fail(
                        ErrorCode::UnexpectedMessage,
                        "the first message must be join",
                    )
                    .await;
            }
            Ok(None) | Err(_) => return,
        }
        let you = Participant {
            identity: self.claims.sub.clone(),
            name: self.claims.name.clone(),
            role: self.claims.role,
        };
        let (room_tx, room_rx) = unbounded_channel();
        let shape = RoomShape {
            capacity: self.lesson.capacity,
            mode: self.lesson.mode,
        };
        let admission = match self
            .state
            .rooms
            .join(&self.lesson.id, shape, you.clone(), room_tx)
        {
            Ok(a) => a,
            Err(e @ AdmissionError::Full(_)) => {
                return self.fail(ErrorCode::LessonFull, e.to_string()).await;
            }
            Err(e @ AdmissionError::Locked) => {
                return self.fail(ErrorCode::LessonLocked, e.to_string()).await;
            }
        };
        let live = self.follow_lobby(admission.session, you.role);
        let (mut media, peer_rx) = Media::new(
            &self.lesson.id,
            &you.identity,
            self.lesson.mode,
            you.role,
            admission.on_stage,
            admission.muted.contains(&you.identity),
        );
        tracing::info!(lesson = %self.lesson.id, identity = %you.identity, role = ?you.role, "joined");
        let joined = ServerMessage::Joined {
            protocol: PROTOCOL_VERSION,
            you,
            lesson: LessonInfo {
                id: self.lesson.id.clone(),
                title: self.lesson.title.clone(),
                mode: self.lesson.mode,
                starts_at_ms: self.lesson.starts_at.map(|s| s * 1000),
                live,
            },
            may_publish: media.may_publish(),
            participants: admission.others,
            tracks: admission.tracks,
            hands: admission.hands,
            chat: admission.chat,
            chat_enabled: admission.chat_enabled,
            muted: admission.muted,
            locked: admission.locked,
            stage: admission.stage,
        };
        let end = if self.send(&joined).await {
            self.serve(admission.session, &mut media, peer_rx, room_rx)
                .await
        } else {
            End::ClientGone
        };
        self.state.rooms.leave(&self.lesson.id, admission.session);
        media.close(&self.state.sfu);
        if let End::Tell(msg) = end {
            self.send(&msg).await;
            let _ = self.socket.send(Message::Close(None)).await;
        }
        tracing::info!(lesson = %self.lesson.id, identity = %self.claims.sub, "left");
    }

    /// A scheduled lesson's lobby holds students' media until a teacher starts it; an
    /// unscheduled lesson starts when a teacher arrives. Returns whether the lesson is live.
    fn follow_lobby(&self, session: u64, role: Role) -> bool {
        let id = &self.lesson.id;
        let started = || {
            self.state
                .store
                .lesson(id)
                .ok()
                .flatten()
                .is_some_and(|l| l.started_at.is_some())
        };
        if started() {
            return true;
        }
        if self.lesson.starts_at.is_none() {
            if role == Role::Teacher
                && let Err(e) = controls::start_lesson(&self.state, id, Actor::Session(session))
            {
                tracing::error!(error = %e, lesson = %id, "starting the lesson failed");
            }
            return started();
        }
        // Hold first, then look again: a start in between releases the room after this hold
        // (commands reach the SFU in order), or is seen here.
        self.state.sfu.hold_room(id, true);
        if started() {
            self.state.sfu.hold_room(id, false);
            return true;
        }
        false
    }

    /// The joined session's loop: client messages, room events and SFU events.
    async fn serve(
        &mut self,
        session: u64,
        media: &mut Media,
        mut peer_rx: UnboundedReceiver<PeerEvent>,
        mut room_rx: UnboundedReceiver<ServerMessage>,
    ) -> End {
        let state = self.state.clone();
        let sfu = &state.sfu;
        let shutdown = shutting_down(self.state.shutdown.subscribe());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                msg = self.recv() => {
                    let Some(msg) = msg else { return End::ClientGone };
                    let reply = match msg {
                        ClientMessage::Offer { sdp } => match media.offer(sfu, sdp).await {
                            Ok(sdp) => ServerMessage::Answer { sdp },
                            Err(e) => media_error(e),
                        },
                        ClientMessage::Receive => match media.receive(sfu).await {
                            Ok(()) => continue,
                            Err(e) => media_error(e),
                        },
                        ClientMessage::PublishOffer { sdp } => match media.publish_offer(sfu, sdp).await {
                            Ok(sdp) => ServerMessage::PublishAnswer { sdp },
                            Err(e) => media_error(e),
                        },
                        ClientMessage::ShareScreen { sdp } => match media.share_screen(sfu, sdp).await {
                            Ok(sdp) => ServerMessage::ScreenAnswer { sdp },
                            Err(e) => media_error(e),
                        },
                        ClientMessage::ReceiveVideo { enabled } => {
                            sfu.set_receive_video(media.main, enabled);
                            continue;
                        }
                        ClientMessage::VideoSize { track_id, width, height } => {
                            sfu.set_video_view(media.main, track_id, Some((width, height)));
                            continue;
                        }
                        ClientMessage::StartLesson => {
                            match controls::start_lesson(&self.state, &self.lesson.id, Actor::Session(session)) {
                                Ok(()) => continue,
                                Err(e) => failure(e),
                            }
                        }
                        ClientMessage::StopScreen => {
                            let ended = media.stop_screen(sfu);
                            self.state.rooms.end_tracks(&self.lesson.id, &ended);
                            continue;
                        }
                        ClientMessage::Answer { sdp } => {
                            match sfu.accept_answer(media.main, sdp).await {
                                Ok(()) => continue,
                                Err(e) => sfu_error(e),
                            }
                        }
                        ClientMessage::Candidate(c) => {
                            sfu.add_remote_candidate(media.main, c.candidate);
                            continue;
                        }
                        ClientMessage::SetStage { identity, on } => {
                            let by = Actor::Session(session);
                            let done = if on {
                                self.state.rooms.invite_on_stage(&self.lesson.id, by, &identity)
                            } else {
                                self.state.rooms.take_off_stage(&self.lesson.id, by, &identity)
                            };
                            match done {
                                Ok(()) => continue,
                                Err(e) => control_error(e),
                            }
                        }
                        ClientMessage::StageReply { accept } => {
                            match self.state.rooms.answer_invitation(&self.lesson.id, session, accept) {
                                Ok(()) => continue,
                                Err(e) => control_error(e),
                            }
                        }
                        ClientMessage::RaiseHand => {
                            match self.state.rooms.raise_hand(&self.lesson.id, session) {
                                Ok(()) => continue,
                                Err(e) => control_error(e),
                            }
                        }
                        ClientMessage::LowerHand { identity } => {
                            match self.state.rooms.lower_hand(&self.lesson.id, session, identity.as_deref()) {
                                Ok(()) => continue,
                                Err(e) => control_error(e),
                            }
                        }
                        ClientMessage::Chat { text } => {
                            let now = std::time::Instant::now();
                            let at_ms = crate::unix_now_ms();
                            match self.state.rooms.chat(&self.lesson.id, session, &text, now, at_ms) {
                                Ok(()) => continue,
                                Err(e) => control_error(e),
                            }
                        }
                        ClientMessage::SetChat { enabled } => {
                            match self.state.rooms.set_chat(&self.lesson.id, session, enabled) {
                                Ok(()) => continue,
                                Err(e) => control_error(e),
                            }
                        }
                        ClientMessage::Mute { identity, muted } => {
                            match self.state.rooms.mute(&self.lesson.id, Actor::Session(session), &identity, muted) {
                                Ok(()) => continue,
                                Err(e) => control_error(e),
                            }
                        }
                        ClientMessage::Remove { identity } => {
                            match controls::remove_participant(&self.state, &self.lesson.id, Actor::Session(session), &identity) {
                                Ok(()) => continue,
                                Err(e) => failure(e),
                            }
                        }
                        ClientMessage::Lock { locked } => {
                            match self.state.rooms.set_locked(&self.lesson.id, Actor::Session(session), locked) {
                                Ok(()) => continue,
                                Err(e) => control_error(e),
                            }
                        }
                        ClientMessage::EndLesson => {
                            match controls::end_lesson(&self.state, &self.lesson.id, Actor::Session(session)) {
                                Ok(()) => continue,
                                Err(e) => failure(e),
                            }
                        }
                        ClientMessage::Ping => ServerMessage::Pong,
                        ClientMessage::Leave => return End::ClientGone,
                        ClientMessage::Join { .. } => unexpected("already joined"),
                    };
                    if !self.send(&reply).await {
                        return End::ClientGone;
                    }
                }
                Some(msg) = room_rx.recv() => {
                    match &msg {
                        ServerMessage::Bye { .. } => return End::Tell(Box::new(msg)),
                        ServerMessage::Muted { identity, muted } if *identity == self.claims.sub => {
                            media.set_muted(sfu, *muted);
                        }
                        ServerMessage::Stage { identities } => {
                            let on = identities.contains(&self.claims.sub);
                            if media.set_on_stage(sfu, on) {
                                self.state.rooms.tracks_ended(&self.lesson.id, session);
                            }
                        }
                        _ => {}
                    }
                    if !self.send(&msg).await {
                        return End::ClientGone;
                    }
                }
                Some(event) = peer_rx.recv() => {
                    let msg = match event {
                        PeerEvent::Connected => {
                            tracing::debug!(identity = %self.claims.sub, "media connected");
                            continue;
                        }
                        PeerEvent::Offer { sdp, added, removed } => {
                            ServerMessage::Offer { sdp, added, removed }
                        }
                        PeerEvent::TrackPublished(track) => {
                            self.state.rooms.track_published(&self.lesson.id, session, track);
                            continue;
                        }
                        PeerEvent::Speaking { speaking } => {
                            self.state.rooms.set_speaking(&self.lesson.id, session, speaking);
                            continue;
                        }
                        PeerEvent::AudioOnly { active } => ServerMessage::WeakLink { audio_only: active },
                        PeerEvent::Closed { reason } => {
                            let reason = match reason {
                                CloseReason::ConnectionLost => ByeReason::ConnectionLost,
                                CloseReason::Shutdown => ByeReason::ServerShutdown,
                            };
                            return End::Tell(Box::new(ServerMessage::Bye { reason }));
                        }
                    };
                    if !self.send(&msg).await {
                        return End::ClientGone;
                    }
                }
                Some((peer, event)) = media.side_events.recv() => match event {
                    // A publish-only connection: its tracks, or its end (a stage student may open
                    // another while on stage; a screen is shared again on request).
                    PeerEvent::TrackPublished(track) => {
                        media.side_track(peer, &track.track_id);
                        self.state.rooms.track_published(&self.lesson.id, session, track);
                    }
                    PeerEvent::Closed { .. } => {
                        let ended = media.side_closed(peer);
                        self.state.rooms.end_tracks(&self.lesson.id, &ended);
                    }
                    PeerEvent::Speaking { speaking } => {
                        self.state.rooms.set_speaking(&self.lesson.id, session, speaking);
                    }
                    // A publish-only connection receives nothing to hold back.
                    PeerEvent::Connected | PeerEvent::Offer { .. } | PeerEvent::AudioOnly { .. } => {}
                },
                () = &mut shutdown => {
                    return End::Tell(Box::new(ServerMessage::Bye { reason: ByeReason::ServerShutdown }));
                }
            }
        }
    }
}

/// Resolves when the server starts shutting down.
async fn shutting_down(mut rx: tokio::sync::watch::Receiver<bool>) {
    // An error means the sender is gone, which also means the server is going away.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

fn media_error(e: MediaError) -> ServerMessage {
    match e {
        MediaError::Sfu(e) => sfu_error(e),
        MediaError::Unexpected(m) => unexpected(m),
        MediaError::NotOnStage | MediaError::MayNotShare => ServerMessage::Error {
            code: ErrorCode::NotAllowed,
            message: e.to_string(),
            fatal: false,
        },
    }
}

fn unexpected(message: &str) -> ServerMessage {
    ServerMessage::Error {
        code: ErrorCode::UnexpectedMessage,
        message: message.into(),
        fatal: false,
    }
}

fn failure(e: ControlFailure) -> ServerMessage {
    match e {
        ControlFailure::Refused(e) => control_error(e),
        ControlFailure::Store(e) => {
            tracing::error!(error = %e, "database failed");
            ServerMessage::Error {
                code: ErrorCode::Internal,
                message: "internal error".into(),
                fatal: false,
            }
        }
    }
}

fn control_error(e: ControlError) -> ServerMessage {
    let code = match e {
        ControlError::NotAllowed | ControlError::NotInRoom => ErrorCode::NotAllowed,
        ControlError::RateLimited => ErrorCode::RateLimited,
        ControlError::BadRequest(_) => ErrorCode::BadRequest,
        ControlError::NotPresent => ErrorCode::NotPresent,
        ControlError::StageFull => ErrorCode::StageFull,
    };
    ServerMessage::Error {
        code,
        message: e.to_string(),
        fatal: false,
    }
}

fn sfu_error(e: SfuError) -> ServerMessage {
    let code = match e {
        SfuError::PublishNotAllowed => ErrorCode::PublishNotAllowed,
        SfuError::BadSdp(_) => ErrorCode::BadSdp,
        SfuError::NoPendingOffer => ErrorCode::UnexpectedMessage,
        SfuError::Stopped => ErrorCode::ShuttingDown,
        SfuError::Socket { .. }
        | SfuError::Threads(_)
        | SfuError::UnknownPeer
        | SfuError::DuplicatePeer => ErrorCode::Internal,
    };
    ServerMessage::Error {
        code,
        message: e.to_string(),
        fatal: false,
    }
}
