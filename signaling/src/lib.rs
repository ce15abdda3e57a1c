//! Jinke's signaling protocol: the typed messages a client and the server exchange over the
//! WebSocket at `/ws?token=…`.
//!
//! The same types compile for the server and for the wasm32 web client, so the two cannot drift
//! apart. Every message is one JSON text frame, tagged by `"type"`. The full protocol, message by
//! message with an example exchange, is documented in `signaling/PROTOCOL.md`.

use serde::{Deserialize, Serialize};

/// Version of this protocol. A client states the version it speaks in [`ClientMessage::Join`];
/// the server refuses a version it does not speak with [`ErrorCode::ProtocolVersion`].
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest text frame the server accepts from a client, in bytes (an SDP offer with many
/// m-lines and candidates stays far below this).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What a participant is in a lesson; carried in the signed join token, never trusted from the
/// client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the lesson and always publishes camera and microphone.
    Teacher,
    /// Helps the teacher; may publish in every kind of lesson.
    Assistant,
    /// Takes part; publishes in `one_to_one` lessons, and in `small_class` and `lecture` lessons
    /// while on stage.
    Student,
    /// Watches without being seen: receive-only and never listed to the others (an inspector, or
    /// a learning centre's big screen).
    Observer,
}

impl Role {
    /// Whether the others see this participant in lists and presence events.
    pub fn is_listed(self) -> bool {
        self != Role::Observer
    }

    /// Whether this role runs the room: lowers others' hands, mutes and removes participants,
    /// locks and ends the lesson, turns the chat off.
    pub fn moderates(self) -> bool {
        matches!(self, Role::Teacher | Role::Assistant)
    }
}

/// How a lesson is shaped; decides who may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LessonMode {
    /// A tutor and one student, both publishing.
    OneToOne,
    /// A small class in which everyone publishes and everyone receives.
    SmallClass,
    /// One teacher broadcasting to many receive-only students.
    Lecture,
}

impl LessonMode {
    /// Whether a participant with `role` may publish media in a lesson of this mode whatever the
    /// stage: teachers and assistants always, students in one-to-one lessons.
    pub fn may_publish(self, role: Role) -> bool {
        match (self, role) {
            (_, Role::Teacher | Role::Assistant) => true,
            (LessonMode::OneToOne, Role::Student) => true,
            (LessonMode::SmallClass | LessonMode::Lecture, Role::Student) => false,
            (_, Role::Observer) => false,
        }
    }

    /// How many students may be on stage (publishing) at once; `None` where the stage does not
    /// apply (one-to-one). In a small class, students arriving while there is room go on stage
    /// at once; in a lecture, only by a moderator's invitation.
    pub fn stage_limit(self) -> Option<usize> {
        match self {
            LessonMode::OneToOne => None,
            LessonMode::SmallClass => Some(16),
            LessonMode::Lecture => Some(6),
        }
    }

    /// The default number of participants (teacher included) for a lesson of this mode.
    pub fn default_capacity(self) -> u32 {
        match self {
            LessonMode::OneToOne => 2,
            LessonMode::SmallClass => 17,
            LessonMode::Lecture => 1000,
        }
    }
}

/// Longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 2000;

/// One chat message as everyone sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Author's identity.
    pub identity: String,
    /// Author's display name.
    pub name: String,
    /// The text.
    pub text: String,
    /// When the server received it, Unix milliseconds.
    pub at_ms: i64,
    /// An announcement from the school (through the REST API), not from a participant; then
    /// `identity` and `name` are empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub announcement: bool,
}

/// Kind of a media track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// Opus audio.
    Audio,
    /// VP8 or H264 video.
    Video,
}

/// A participant as the other members of the lesson see it (observers are never shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// The school's identifier for this person, unique within the lesson.
    pub identity: String,
    /// The name shown on screen.
    pub name: String,
    /// The role from the join token.
    pub role: Role,
}

/// A published track, as announced to the members of a lesson.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Server-chosen identifier, stable for the life of the track.
    pub track_id: String,
    /// Identity of the publishing participant.
    pub identity: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// A shared screen (shown large to everyone) rather than a camera or microphone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub screen: bool,
}

/// Where a forwarded track arrives in the client's peer connection: the `mid` of the m-line in
/// a server offer that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackMapping {
    /// The m-line's media id in the offer.
    pub mid: String,
    /// The track it carries.
    pub track: TrackInfo,
}

/// The lesson as a joining client needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LessonInfo {
    /// Lesson identifier.
    pub id: String,
    /// Title shown in the client.
    pub title: String,
    /// Shape of the lesson.
    pub mode: LessonMode,
    /// Planned start, Unix milliseconds (for the lobby's countdown); absent without a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at_ms: Option<i64>,
    /// Whether it has started. Before, students wait in the lobby and receive nothing.
    #[serde(default)]
    pub live: bool,
}

/// An ICE candidate as the browser's `RTCIceCandidate` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    /// The `candidate:` attribute line (without `a=`).
    pub candidate: String,
    /// The m-line the candidate belongs to, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// Index of that m-line, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
}

/// Messages a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First message on a new socket: the protocol version the client speaks. Answered by
    /// [`ServerMessage::Joined`], which says whether this participant may publish.
    Join {
        /// Must equal [`PROTOCOL_VERSION`].
        protocol: u32,
    },
    /// The client's SDP offer, sent once after [`ServerMessage::Joined`]: what it publishes (when
    /// it publishes nothing, the offer carries a data channel only). Answered by
    /// [`ServerMessage::Answer`], or refused with [`ErrorCode::PublishNotAllowed`] if it sends
    /// media that the participant may not publish (the client may then offer again).
    Offer {
        /// The SDP offer.
        sdp: String,
    },
    /// Instead of [`ClientMessage::Offer`], for a client that publishes nothing: the server makes
    /// the first offer, once there is something to receive (no data channel needed).
    Receive,
    /// The client's SDP answer to a server [`ServerMessage::Offer`].
    Answer {
        /// The SDP answer.
        sdp: String,
    },
    /// A trickled ICE candidate of the client (optional: the server is ICE-lite and learns the
    /// client's address from its connectivity checks).
    Candidate(IceCandidate),
    /// Raise this participant's hand (joins the end of the hand queue; no-op if already raised).
    RaiseHand,
    /// Lower a hand: one's own (`identity` absent), or anyone's for a teacher or assistant.
    LowerHand {
        /// Whose hand; absent for one's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<String>,
    },
    /// A chat message to everyone (at most [`MAX_CHAT_CHARS`] characters).
    Chat {
        /// The text.
        text: String,
    },
    /// Turn the lesson's chat on or off (teachers and assistants).
    SetChat {
        /// Whether students may chat.
        enabled: bool,
    },
    /// Invite a student on stage (`on`: the student gets [`ServerMessage::StageInvite`]), or take
    /// one off it (teachers and assistants; a student may take itself off).
    SetStage {
        /// Who.
        identity: String,
        /// Invite on, or take off.
        on: bool,
    },
    /// The invited student's answer to [`ServerMessage::StageInvite`].
    StageReply {
        /// Whether the student goes on stage.
        accept: bool,
    },
    /// The SDP offer of a second, publish-only connection, from a student on stage whose first
    /// connection only receives. Answered by [`ServerMessage::PublishAnswer`]; closed by the
    /// server when the student leaves the stage.
    PublishOffer {
        /// The SDP offer (send-only camera and microphone).
        sdp: String,
    },
    /// Teachers and assistants: the SDP offer of a publish-only connection carrying a shared
    /// screen (`getDisplayMedia`). Its tracks are announced with `screen: true`. Answered by
    /// [`ServerMessage::ScreenAnswer`].
    ShareScreen {
        /// The SDP offer (send-only).
        sdp: String,
    },
    /// Stop sharing the screen: its connection closes and its tracks end.
    StopScreen,
    /// Start the lesson (teachers and assistants): students waiting in the lobby of a scheduled
    /// lesson start receiving. An unscheduled lesson starts when a teacher arrives.
    StartLesson,
    /// Turn the camera videos this client receives off or on: on a weak link, audio and shared
    /// screens only. Turning them on again starts each with a keyframe.
    ReceiveVideo {
        /// Whether camera videos are forwarded.
        enabled: bool,
    },
    /// The size this client shows a video track at, in CSS pixels (0×0: not shown). Of a track the publisher sends in several sizes (simulcast), the
    /// server then forwards the smallest that still looks sharp at that size.
    VideoSize {
        /// The track.
        track_id: String,
        /// Width shown, in CSS pixels.
        width: u16,
        /// Height shown, in CSS pixels.
        height: u16,
    },
    /// Stop (or resume) forwarding a participant's audio (teachers and assistants; a teacher
    /// cannot be muted). Everyone is told with [`ServerMessage::Muted`].
    Mute {
        /// Whose audio.
        identity: String,
        /// Muted or not.
        muted: bool,
    },
    /// Remove a participant from the lesson (teachers and assistants; not a teacher). Its join
    /// token no longer admits it.
    Remove {
        /// Who.
        identity: String,
    },
    /// Lock or unlock the lesson: while locked, nobody new may join except teachers and
    /// assistants (teachers and assistants).
    Lock {
        /// Locked or not.
        locked: bool,
    },
    /// End the lesson for everyone; nobody may join it afterwards (teachers and assistants).
    EndLesson,
    /// The participant leaves the lesson.
    Leave,
    /// Keep-alive; answered by [`ServerMessage::Pong`].
    Ping,
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Answer to [`ClientMessage::Join`]: who you are, the lesson, who is already there and what
    /// they publish.
    Joined {
        /// The protocol version the server speaks.
        protocol: u32,
        /// This participant.
        you: Participant,
        /// The lesson joined.
        lesson: LessonInfo,
        /// Whether this participant may publish camera and microphone.
        may_publish: bool,
        /// Everyone else present, in order of arrival.
        participants: Vec<Participant>,
        /// Tracks already published by others.
        tracks: Vec<TrackInfo>,
        /// Raised hands, in the order they were raised.
        hands: Vec<String>,
        /// The latest chat messages, oldest first.
        chat: Vec<ChatMessage>,
        /// Whether students may chat.
        chat_enabled: bool,
        /// Participants whose audio a teacher or assistant muted.
        #[serde(default)]
        muted: Vec<String>,
        /// Whether the lesson is locked.
        #[serde(default)]
        locked: bool,
        /// Students on stage, in the order they went on (this participant included, when it
        /// went on stage at once).
        #[serde(default)]
        stage: Vec<String>,
    },
    /// The server's SDP answer to the client's [`ClientMessage::Offer`].
    Answer {
        /// The SDP answer.
        sdp: String,
    },
    /// A server-initiated renegotiation: forwarded tracks added to or removed from the client's
    /// peer connection. The client answers with [`ClientMessage::Answer`].
    Offer {
        /// The SDP offer.
        sdp: String,
        /// The m-lines that start carrying a track with this offer.
        added: Vec<TrackMapping>,
        /// The mids of m-lines whose track ended.
        removed: Vec<String>,
    },
    /// Someone joined the lesson.
    ParticipantJoined(Participant),
    /// Someone left the lesson (or their connection died).
    ParticipantLeft {
        /// Who left.
        identity: String,
    },
    /// A chat message (also sent back to its author).
    Chat(ChatMessage),
    /// The teacher turned the chat on or off.
    ChatEnabled {
        /// Whether students may chat.
        enabled: bool,
    },
    /// The raised hands changed; the identities in the order the hands were raised.
    HandQueue {
        /// Identities with a raised hand, first raised first.
        identities: Vec<String>,
    },
    /// The server's answer to [`ClientMessage::PublishOffer`].
    PublishAnswer {
        /// The SDP answer.
        sdp: String,
    },
    /// The server's answer to [`ClientMessage::ShareScreen`].
    ScreenAnswer {
        /// The SDP answer.
        sdp: String,
    },
    /// A teacher or assistant invites this student on stage; answer with
    /// [`ClientMessage::StageReply`].
    StageInvite {
        /// Display name of who invites.
        by: String,
    },
    /// The students on stage changed (sent to everyone). A student that appears in it may
    /// publish (a receive-only client opens its publish connection with
    /// [`ClientMessage::PublishOffer`]); one that disappears from it no longer may, and its
    /// tracks end.
    Stage {
        /// Students on stage, first on first.
        identities: Vec<String>,
    },
    /// An invited student declined (sent to teachers and assistants).
    StageDeclined {
        /// Who declined.
        identity: String,
    },
    /// A teacher or assistant muted or unmuted a participant's audio. The server stops
    /// forwarding a muted participant's audio; that participant's client should turn its
    /// microphone off and say why.
    Muted {
        /// Whose audio.
        identity: String,
        /// Muted or not.
        muted: bool,
    },
    /// The lesson started: the lobby is over.
    LessonStarted,
    /// Someone started or stopped speaking (from the audio levels their browser sends).
    Speaking {
        /// Who.
        identity: String,
        /// Whether they speak now.
        speaking: bool,
    },
    /// The server judged this client's link too weak for video (it kept losing packets) and
    /// stopped forwarding camera videos to it: audio and shared screens go on. Sent again with
    /// `audio_only: false` when the link is clean again and video resumes.
    WeakLink {
        /// Whether camera videos are held back now.
        audio_only: bool,
    },
    /// The active speaker changed: the participant who most recently started speaking.
    ActiveSpeaker {
        /// Who.
        identity: String,
    },
    /// The lesson passed its planned end: it ends for everyone at `at_ms`.
    EndingSoon {
        /// When it ends, Unix milliseconds.
        at_ms: i64,
    },
    /// The lesson was locked or unlocked.
    Locked {
        /// Locked or not.
        locked: bool,
    },
    /// A participant started publishing a track.
    TrackPublished(TrackInfo),
    /// A track stopped.
    TrackUnpublished {
        /// The track that stopped.
        track_id: String,
    },
    /// Something the client asked for was refused or went wrong. `fatal` errors close the socket.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// A human-readable explanation (English; clients show their own localized text by code).
        message: String,
        /// Whether the server closes the connection after this message.
        fatal: bool,
    },
    /// The server is ending this participant's session (shutdown, lesson ended, replaced by a
    /// newer connection of the same identity). The socket closes after it.
    Bye {
        /// Why.
        reason: ByeReason,
    },
    /// Answer to [`ClientMessage::Ping`].
    Pong,
}

/// Machine-readable error reasons in [`ServerMessage::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The client speaks another protocol version.
    ProtocolVersion,
    /// The message was not valid JSON or not a known message.
    BadMessage,
    /// A message came at the wrong time (for example an answer with no offer outstanding).
    UnexpectedMessage,
    /// The SDP could not be used.
    BadSdp,
    /// The participant's role may not publish in this lesson.
    PublishNotAllowed,
    /// The participant's role may not do this (for example lower another's hand).
    NotAllowed,
    /// Too many messages too fast.
    RateLimited,
    /// A field is out of bounds (for example an empty or too long chat message).
    BadRequest,
    /// The lesson has reached its capacity.
    LessonFull,
    /// The lesson is locked: no new participants.
    LessonLocked,
    /// The named participant is not in the lesson.
    NotPresent,
    /// The stage is full.
    StageFull,
    /// The server is shutting down and takes no new joins.
    ShuttingDown,
    /// Anything else on the server's side.
    Internal,
}

/// Why the server ended a session, in [`ServerMessage::Bye`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByeReason {
    /// The server is shutting down.
    ServerShutdown,
    /// The same identity joined again from another connection.
    Replaced,
    /// The media connection was lost (ICE or DTLS timed out).
    ConnectionLost,
    /// A teacher or assistant (or the school) removed this participant from the lesson.
    Removed,
    /// The lesson was ended for everyone.
    LessonEnded,
}

/// A malformed message from the other side.
#[derive(Debug)]
pub struct DecodeError(serde_json::Error);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed signaling message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

macro_rules! json_codec {
    ($t:ty) => {
        impl $t {
            /// Encodes this message as one JSON text frame.
            pub fn to_json(&self) -> String {
                serde_json::to_string(self).expect("signaling messages always serialize")
            }

            /// Decodes one JSON text frame.
            pub fn from_json(text: &str) -> Result<Self, DecodeError> {
                serde_json::from_str(text).map_err(DecodeError)
            }
        }
    };
}

json_codec!(ClientMessage);
json_codec!(ServerMessage);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_use_the_documented_wire_format() {
        let join = ClientMessage::Join { protocol: 1 };
        assert_eq!(join.to_json(), r#"{"type":"join","protocol":1}"#);
        let offer = ClientMessage::Offer { sdp: "v=0".into() };
        assert_eq!(offer.to_json(), r#"{"type":"offer","sdp":"v=0"}"#);
        assert_eq!(ClientMessage::Leave.to_json(), r#"{"type":"leave"}"#);
        assert_eq!(ClientMessage::Receive.to_json(), r#"{"type":"receive"}"#);
        assert_eq!(
            ClientMessage::from_json(r#"{"type":"mute","identity":"s1","muted":true}"#).unwrap(),
            ClientMessage::Mute {
                identity: "s1".into(),
                muted: true
            }
        );
        assert_eq!(
            ClientMessage::EndLesson.to_json(),
            r#"{"type":"end_lesson"}"#
        );
        assert_eq!(
            ClientMessage::from_json(r#"{"type":"lower_hand"}"#).unwrap(),
            ClientMessage::LowerHand { identity: None }
        );
        let cand = ClientMessage::from_json(
            r#"{"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdp_mid":"0"}"#,
        )
        .unwrap();
        assert_eq!(
            cand,
            ClientMessage::Candidate(IceCandidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: None,
            })
        );
    }

    #[test]
    fn server_messages_round_trip() {
        let msgs = vec![
            ServerMessage::Offer {
                sdp: "v=0".into(),
                added: vec![TrackMapping {
                    mid: "2".into(),
                    track: TrackInfo {
                        track_id: "t1".into(),
                        identity: "teacher".into(),
                        kind: MediaKind::Video,
                        screen: false,
                    },
                }],
                removed: vec!["1".into()],
            },
            ServerMessage::Error {
                code: ErrorCode::LessonFull,
                message: "full".into(),
                fatal: true,
            },
            ServerMessage::ParticipantLeft {
                identity: "s1".into(),
            },
            ServerMessage::Bye {
                reason: ByeReason::ServerShutdown,
            },
            ServerMessage::Muted {
                identity: "s1".into(),
                muted: true,
            },
            ServerMessage::Bye {
                reason: ByeReason::LessonEnded,
            },
        ];
        for m in msgs {
            assert_eq!(ServerMessage::from_json(&m.to_json()).unwrap(), m);
        }
        assert!(
            ServerMessage::Error {
                code: ErrorCode::PublishNotAllowed,
                message: String::new(),
                fatal: false
            }
            .to_json()
            .contains(r#""code":"publish_not_allowed""#)
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"type":"nope"}"#,
            r#"{"type":"join"}"#,
            "\u{0}",
        ] {
            assert!(ClientMessage::from_json(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn students_publish_from_the_stage_except_one_to_one() {
        assert!(LessonMode::Lecture.may_publish(Role::Teacher));
        assert!(!LessonMode::Lecture.may_publish(Role::Student));
        assert!(!LessonMode::SmallClass.may_publish(Role::Student));
        assert!(LessonMode::OneToOne.may_publish(Role::Student));
        assert_eq!(LessonMode::SmallClass.stage_limit(), Some(16));
        assert_eq!(LessonMode::Lecture.stage_limit(), Some(6));
        assert_eq!(LessonMode::OneToOne.stage_limit(), None);
    }

    #[test]
    fn assistants_publish_and_observers_never_do_nor_show() {
        for mode in [
            LessonMode::OneToOne,
            LessonMode::SmallClass,
            LessonMode::Lecture,
        ] {
            assert!(mode.may_publish(Role::Assistant), "{mode:?}");
            assert!(!mode.may_publish(Role::Observer), "{mode:?}");
        }
        assert!(!Role::Observer.is_listed());
        assert!(Role::Assistant.is_listed() && Role::Student.is_listed());
    }
}
