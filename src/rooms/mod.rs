//! Who is in which live lesson, and the fan-out of room events to their signaling sessions.
//!
//! Control plane only: a short `std` mutex guards plain maps and is never held across an await;
//! the media path never touches it. Messages to sessions go through unbounded channels, so one slow
//! client never blocks the room.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use jinke_signaling::{
    ByeReason, ChatMessage, LessonMode, MAX_CHAT_CHARS, Participant, ServerMessage, TrackInfo,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::events::{EventKind, EventSink};

mod moderation;
mod stage;

pub use moderation::{Actor, PresentParticipant};

/// Chat messages kept for late joiners.
const CHAT_HISTORY: usize = 200;
/// Chat rate limit: a burst of this many messages…
const CHAT_BURST: f64 = 5.0;
/// …then this many per second.
const CHAT_PER_SECOND: f64 = 1.0;

/// One signaling session's place in a room.
struct Member {
    participant: Participant,
    session: u64,
    tx: UnboundedSender<ServerMessage>,
    chat: ChatBucket,
}

/// A token bucket limiting one member's chat messages.
struct ChatBucket {
    tokens: f64,
    at: Instant,
}

impl ChatBucket {
    fn new(now: Instant) -> ChatBucket {
        ChatBucket {
            tokens: CHAT_BURST,
            at: now,
        }
    }

    /// Takes a token if one is left at `now`.
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * CHAT_PER_SECOND).min(CHAT_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a room needs to know about its lesson.
#[derive(Debug, Clone, Copy)]
pub struct RoomShape {
    /// Most participants at once, teacher included.
    pub capacity: u32,
    /// Decides the stage: its size, and whether students go on it as they arrive.
    pub mode: LessonMode,
}

/// What the rooms' unit tests share.
#[cfg(test)]
mod test_util {
    use jinke_signaling::{LessonMode, Participant, Role, ServerMessage};
    use tokio::sync::mpsc::UnboundedReceiver;

    use super::RoomShape;

    /// A lecture of `capacity`.
    pub fn lecture(capacity: u32) -> RoomShape {
        RoomShape {
            capacity,
            mode: LessonMode::Lecture,
        }
    }

    /// A participant whose identity is also its name.
    pub fn person(id: &str, role: Role) -> Participant {
        Participant {
            identity: id.into(),
            name: id.into(),
            role,
        }
    }

    /// Everything a session was sent so far.
    pub fn drain(rx: &mut UnboundedReceiver<ServerMessage>) -> Vec<ServerMessage> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }
}

struct Room {
    mode: LessonMode,
    members: Vec<Member>,
    tracks: Vec<TrackInfo>,
    /// Raised hands, first raised first.
    hands: Vec<String>,
    /// The latest chat messages, oldest first.
    chat: VecDeque<ChatMessage>,
    /// Whether students may chat.
    chat_enabled: bool,
    /// Identities whose audio a moderator muted (kept while the room lives, so a reconnect stays
    /// muted).
    muted: Vec<String>,
    /// Whether only moderators (and members reconnecting) may join.
    locked: bool,
    /// Students on stage (they may publish), first on first.
    stage: Vec<String>,
    /// Students invited on stage who have not answered yet.
    invited: Vec<String>,
    /// Who speaks now, and who started speaking last.
    speaking: Vec<String>,
    active_speaker: Option<String>,
}

impl Room {
    fn new(mode: LessonMode) -> Room {
        Room {
            mode,
            members: Vec::new(),
            tracks: Vec::new(),
            hands: Vec::new(),
            chat: VecDeque::new(),
            chat_enabled: true,
            muted: Vec::new(),
            locked: false,
            stage: Vec::new(),
            invited: Vec::new(),
            speaking: Vec::new(),
            active_speaker: None,
        }
    }
}

impl Room {
    /// Everyone the others may see, in order of arrival.
    fn listed(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|m| m.participant.role.is_listed())
    }

    fn broadcast(&self, except_session: u64, msg: &ServerMessage) {
        for m in self.members.iter().filter(|m| m.session != except_session) {
            let _ = m.tx.send(msg.clone());
        }
    }

    fn broadcast_hands(&self) {
        self.broadcast(
            u64::MAX,
            &ServerMessage::HandQueue {
                identities: self.hands.clone(),
            },
        );
    }

    /// Keeps a chat message for late joiners and sends it to everyone.
    fn post_chat(&mut self, message: ChatMessage) {
        if self.chat.len() == CHAT_HISTORY {
            self.chat.pop_front();
        }
        self.chat.push_back(message.clone());
        self.broadcast(u64::MAX, &ServerMessage::Chat(message));
    }

    /// Where the member with this session is, for a control it asked for.
    fn member_index(&self, session: u64) -> Result<usize, ControlError> {
        self.members
            .iter()
            .position(|m| m.session == session)
            .ok_or(ControlError::NotInRoom)
    }

    /// Forgets the tracks of `identity` and tells everyone but `except_session` they ended.
    fn end_tracks_of(&mut self, identity: &str, except_session: u64) {
        let mut ended = Vec::new();
        self.tracks.retain(|t| {
            let keep = t.identity != identity;
            if !keep {
                ended.push(t.track_id.clone());
            }
            keep
        });
        for track_id in ended {
            self.broadcast(
                except_session,
                &ServerMessage::TrackUnpublished { track_id },
            );
        }
    }

    /// Removes the member at `index` and tells the others that it and its tracks are gone. Its
    /// place on stage is the caller's business (a reconnect keeps it).
    fn remove_member(&mut self, index: usize) -> Member {
        let gone = self.members.remove(index);
        let identity = &gone.participant.identity;
        self.end_tracks_of(identity, gone.session);
        if self.hands.contains(identity) {
            self.hands.retain(|h| h != identity);
            self.broadcast_hands();
        }
        if gone.participant.role.is_listed() {
            self.broadcast(
                gone.session,
                &ServerMessage::ParticipantLeft {
                    identity: identity.clone(),
                },
            );
        }
        gone
    }
}

/// What a newly admitted participant learns about the room.
#[derive(Debug)]
pub struct Admission {
    /// This session's id in the room (used to leave it).
    pub session: u64,
    /// Everyone else present, in order of arrival.
    pub others: Vec<Participant>,
    /// Tracks already published.
    pub tracks: Vec<TrackInfo>,
    /// Raised hands, first raised first.
    pub hands: Vec<String>,
    /// The latest chat messages, oldest first.
    pub chat: Vec<ChatMessage>,
    /// Whether students may chat.
    pub chat_enabled: bool,
    /// Identities whose audio is muted (this participant's own included, if so).
    pub muted: Vec<String>,
    /// Whether the lesson is locked.
    pub locked: bool,
    /// Students on stage, first on first (this participant included if it went on stage).
    pub stage: Vec<String>,
    /// Whether this participant went on stage as it arrived (a small-class student while there
    /// is room, or one reconnecting from the stage).
    pub on_stage: bool,
}

/// Why a classroom control was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The participant's role may not do this.
    #[error("your role may not do this")]
    NotAllowed,
    /// The session is no longer in the room.
    #[error("not in the lesson")]
    NotInRoom,
    /// Too many messages too fast.
    #[error("too many messages; wait a moment")]
    RateLimited,
    /// A field is out of bounds.
    #[error("{0}")]
    BadRequest(&'static str),
    /// The participant named is not in the lesson.
    #[error("that participant is not in the lesson")]
    NotPresent,
    /// The stage has no room left.
    #[error("the stage is full")]
    StageFull,
}

/// Why a participant was not admitted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// The lesson is at capacity.
    #[error("the lesson is full ({0} participants)")]
    Full(u32),
    /// A moderator locked the lesson.
    #[error("the lesson is locked: nobody new may join")]
    Locked,
}

/// All live rooms of this server.
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Room>>,
    next_session: AtomicU64,
    events: EventSink,
}

impl Rooms {
    /// Rooms that report what happens in them to `events`.
    pub fn new(events: EventSink) -> Rooms {
        Rooms {
            events,
            ..Rooms::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a participant to a lesson's room. A second connection of the same identity replaces
    /// the first (which is sent [`ByeReason::Replaced`]) and does not count twice.
    pub fn join(
        &self,
        lesson: &str,
        shape: RoomShape,
        participant: Participant,
        tx: UnboundedSender<ServerMessage>,
    ) -> Result<Admission, AdmissionError> {
        let capacity = shape.capacity;
        let mut rooms = self.lock();
        let room = rooms
            .entry(lesson.to_owned())
            .or_insert_with(|| Room::new(shape.mode));
        let mut was_on_stage = false;
        if let Some(i) = room
            .members
            .iter()
            .position(|m| m.participant.identity == participant.identity)
        {
            // A reconnect keeps its place on stage.
            was_on_stage = room.stage.contains(&participant.identity);
            let old = room.remove_member(i);
            self.events.emit(
                lesson,
                EventKind::Left {
                    identity: old.participant.identity.clone(),
                },
            );
            let _ = old.tx.send(ServerMessage::Bye {
                reason: ByeReason::Replaced,
            });
        } else if room.locked && !participant.role.moderates() {
            return Err(AdmissionError::Locked);
        }
        if room.members.len() >= capacity as usize {
            if room.members.is_empty() {
                rooms.remove(lesson);
            }
            return Err(AdmissionError::Full(capacity));
        }
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let seated = !was_on_stage && room.seat_arriving_student(&participant);
        let admission = Admission {
            session,
            others: room.listed().map(|m| m.participant.clone()).collect(),
            tracks: room.tracks.clone(),
            hands: room.hands.clone(),
            chat: room.chat.iter().cloned().collect(),
            chat_enabled: room.chat_enabled,
            muted: room.muted.clone(),
            locked: room.locked,
            stage: room.stage.clone(),
            on_stage: was_on_stage || seated,
        };
        if participant.role.is_listed() {
            room.broadcast(
                session,
                &ServerMessage::ParticipantJoined(participant.clone()),
            );
        }
        self.events.emit(
            lesson,
            EventKind::Joined {
                identity: participant.identity.clone(),
                name: participant.name.clone(),
                role: participant.role,
            },
        );
        room.members.push(Member {
            participant,
            session,
            tx,
            chat: ChatBucket::new(Instant::now()),
        });
        if seated {
            room.announce_stage(session);
            self.stage_changed(lesson, room);
        }
        Ok(admission)
    }

    /// Removes a session from its room (no-op if it was already replaced or removed).
    pub fn leave(&self, lesson: &str, session: u64) {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(lesson) else {
            return;
        };
        if let Some(i) = room.members.iter().position(|m| m.session == session) {
            let gone = room.remove_member(i);
            self.left(lesson, room, &gone.participant.identity);
        }
        if room.members.is_empty() {
            rooms.remove(lesson);
        }
    }

    /// Announces a track a session started publishing to everyone else in the room.
    pub fn track_published(&self, lesson: &str, session: u64, track: TrackInfo) {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(lesson) else {
            return;
        };
        if !room.members.iter().any(|m| m.session == session) {
            return; // Replaced or gone meanwhile.
        }
        room.broadcast(session, &ServerMessage::TrackPublished(track.clone()));
        room.tracks.push(track);
    }

    /// Raises the hand of the session's participant (observers may not: they are not shown).
    pub fn raise_hand(&self, lesson: &str, session: u64) -> Result<(), ControlError> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(lesson).ok_or(ControlError::NotInRoom)?;
        let i = room.member_index(session)?;
        let me = &room.members[i];
        if !me.participant.role.is_listed() {
            return Err(ControlError::NotAllowed);
        }
        if !room.hands.contains(&me.participant.identity) {
            let identity = me.participant.identity.clone();
            room.hands.push(identity.clone());
            room.broadcast_hands();
            self.events.emit(lesson, EventKind::HandRaised { identity });
        }
        Ok(())
    }

    /// Lowers a hand: the session's own (`whose` absent or its own identity), or anyone's when
    /// the session's participant moderates.
    pub fn lower_hand(
        &self,
        lesson: &str,
        session: u64,
        whose: Option<&str>,
    ) -> Result<(), ControlError> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(lesson).ok_or(ControlError::NotInRoom)?;
        let i = room.member_index(session)?;
        let me = &room.members[i];
        let target = whose.unwrap_or(&me.participant.identity).to_owned();
        if target != me.participant.identity && !me.participant.role.moderates() {
            return Err(ControlError::NotAllowed);
        }
        if room.hands.contains(&target) {
            room.hands.retain(|h| *h != target);
            room.broadcast_hands();
        }
        Ok(())
    }

    /// Posts a chat message from the session's participant to everyone (itself included).
    /// Observers may not chat; students only while the chat is on.
    pub fn chat(
        &self,
        lesson: &str,
        session: u64,
        text: &str,
        now: Instant,
        at_ms: i64,
    ) -> Result<(), ControlError> {
        let text = chat_text(text)?;
        let mut rooms = self.lock();
        let room = rooms.get_mut(lesson).ok_or(ControlError::NotInRoom)?;
        let enabled = room.chat_enabled;
        let i = room.member_index(session)?;
        let me = &mut room.members[i];
        let role = me.participant.role;
        if !role.is_listed() || (!enabled && !role.moderates()) {
            return Err(ControlError::NotAllowed);
        }
        if !me.chat.take(now) {
            return Err(ControlError::RateLimited);
        }
        let message = ChatMessage {
            identity: me.participant.identity.clone(),
            name: me.participant.name.clone(),
            text: text.to_owned(),
            at_ms,
            announcement: false,
        };
        self.events.emit(
            lesson,
            EventKind::Chatted {
                identity: message.identity.clone(),
            },
        );
        room.post_chat(message);
        Ok(())
    }

    /// Turns the lesson's chat on or off (teachers and assistants only).
    pub fn set_chat(&self, lesson: &str, session: u64, enabled: bool) -> Result<(), ControlError> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(lesson).ok_or(ControlError::NotInRoom)?;
        let i = room.member_index(session)?;
        let me = &room.members[i];
        if !me.participant.role.moderates() {
            return Err(ControlError::NotAllowed);
        }
        if room.chat_enabled != enabled {
            room.chat_enabled = enabled;
            room.broadcast(u64::MAX, &ServerMessage::ChatEnabled { enabled });
        }
        Ok(())
    }

    /// A session's audio started or stopped carrying speech: everyone is told, and who started
    /// last becomes the active speaker.
    pub fn set_speaking(&self, lesson: &str, session: u64, speaking: bool) {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(lesson) else {
            return;
        };
        let Ok(i) = room.member_index(session) else {
            return;
        };
        let identity = room.members[i].participant.identity.clone();
        if room.speaking.contains(&identity) == speaking {
            return;
        }
        if speaking {
            room.speaking.push(identity.clone());
        } else {
            room.speaking.retain(|s| *s != identity);
        }
        room.broadcast(
            u64::MAX,
            &ServerMessage::Speaking {
                identity: identity.clone(),
                speaking,
            },
        );
        if speaking && room.active_speaker.as_ref() != Some(&identity) {
            room.active_speaker = Some(identity.clone());
            room.broadcast(u64::MAX, &ServerMessage::ActiveSpeaker { identity });
        }
    }

    /// Reports a member's departure, and takes it off the stage (reporting that too).
    fn left(&self, lesson: &str, room: &mut Room, identity: &str) {
        self.events.emit(
            lesson,
            EventKind::Left {
                identity: identity.to_owned(),
            },
        );
        if room.step_off_stage(identity) {
            self.stage_changed(lesson, room);
        }
    }

    /// Reports the stage as it now is.
    fn stage_changed(&self, lesson: &str, room: &Room) {
        self.events.emit(
            lesson,
            EventKind::StageChanged {
                identities: room.stage.clone(),
            },
        );
    }

    /// Sends a message to every session in a lesson's room.
    pub fn broadcast(&self, lesson: &str, msg: &ServerMessage) {
        if let Some(room) = self.lock().get(lesson) {
            room.broadcast(u64::MAX, msg);
        }
    }

    /// Sends a message to every session of every room (used at shutdown).
    pub fn broadcast_all(&self, msg: &ServerMessage) {
        for room in self.lock().values() {
            room.broadcast(u64::MAX, msg);
        }
    }

    /// Number of sessions in all rooms.
    pub fn session_count(&self) -> usize {
        self.lock().values().map(|r| r.members.len()).sum()
    }
}

/// A chat message's text, trimmed, if it is neither empty nor too long.
fn chat_text(text: &str) -> Result<&str, ControlError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ControlError::BadRequest("an empty chat message"));
    }
    if text.chars().count() > MAX_CHAT_CHARS {
        return Err(ControlError::BadRequest(
            "chat messages are at most 2000 characters",
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jinke_signaling::{MediaKind, Role};
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    use super::test_util::{drain, lecture};

    fn person(id: &str) -> Participant {
        super::test_util::person(id, Role::Student)
    }

    #[test]
    fn joins_leaves_and_tracks_reach_the_others() {
        let rooms = Rooms::default();
        let (ta, mut ra) = unbounded_channel();
        let (tb, mut rb) = unbounded_channel();
        let a = rooms.join("l", lecture(5), person("a"), ta).unwrap();
        let track = TrackInfo {
            track_id: "t1".into(),
            identity: "a".into(),
            kind: MediaKind::Video,
            screen: false,
        };
        rooms.track_published("l", a.session, track.clone());
        let b = rooms.join("l", lecture(5), person("b"), tb).unwrap();
        assert_eq!(b.others, vec![person("a")]);
        assert_eq!(b.tracks, vec![track]);
        assert_eq!(
            drain(&mut ra),
            vec![ServerMessage::ParticipantJoined(person("b"))]
        );
        rooms.leave("l", a.session);
        assert_eq!(
            drain(&mut rb),
            vec![
                ServerMessage::TrackUnpublished {
                    track_id: "t1".into()
                },
                ServerMessage::ParticipantLeft {
                    identity: "a".into()
                }
            ]
        );
        rooms.leave("l", b.session);
        assert_eq!(rooms.session_count(), 0);
    }

    #[test]
    fn observers_are_never_listed_but_see_everyone() {
        let rooms = Rooms::default();
        let (ta, mut ra) = unbounded_channel();
        let (to, mut ro) = unbounded_channel();
        rooms.join("l", lecture(5), person("a"), ta).unwrap();
        let inspector = Participant {
            identity: "inspector".into(),
            name: "督导".into(),
            role: Role::Observer,
        };
        let o = rooms.join("l", lecture(5), inspector, to).unwrap();
        assert_eq!(o.others, vec![person("a")], "the observer sees the others");
        let (tb, _rb) = unbounded_channel();
        let b = rooms.join("l", lecture(5), person("b"), tb).unwrap();
        assert_eq!(b.others, vec![person("a")], "nobody sees the observer");
        assert_eq!(
            drain(&mut ro),
            vec![ServerMessage::ParticipantJoined(person("b"))]
        );
        rooms.leave("l", o.session);
        assert_eq!(
            drain(&mut ra),
            vec![ServerMessage::ParticipantJoined(person("b"))],
            "neither the observer's arrival nor its departure is announced"
        );
    }

    fn hands(rx: &mut UnboundedReceiver<ServerMessage>) -> Option<Vec<String>> {
        drain(rx).into_iter().rev().find_map(|m| match m {
            ServerMessage::HandQueue { identities } => Some(identities),
            _ => None,
        })
    }

    #[test]
    fn hands_queue_in_order_and_only_moderators_lower_others() {
        let rooms = Rooms::default();
        let teacher = super::test_util::person("t", Role::Teacher);
        let (tt, mut rt) = unbounded_channel();
        let (ta, _ra) = unbounded_channel();
        let (tb, _rb) = unbounded_channel();
        let t = rooms.join("l", lecture(9), teacher, tt).unwrap();
        let a = rooms.join("l", lecture(9), person("a"), ta).unwrap();
        let b = rooms
            .join("l", lecture(9), person("b"), tb.clone())
            .unwrap();
        rooms.raise_hand("l", b.session).unwrap();
        rooms.raise_hand("l", a.session).unwrap();
        rooms.raise_hand("l", b.session).unwrap(); // Already raised: stays first.
        assert_eq!(hands(&mut rt), Some(vec!["b".to_owned(), "a".to_owned()]));
        assert_eq!(
            rooms.lower_hand("l", a.session, Some("b")),
            Err(ControlError::NotAllowed)
        );
        rooms.lower_hand("l", a.session, None).unwrap();
        assert_eq!(hands(&mut rt), Some(vec!["b".to_owned()]));
        rooms.lower_hand("l", t.session, Some("b")).unwrap();
        assert_eq!(hands(&mut rt), Some(vec![]));
        // A late joiner learns the queue; a leaver's hand goes down.
        rooms.raise_hand("l", a.session).unwrap();
        let (tc, _rc) = unbounded_channel();
        let c = rooms.join("l", lecture(9), person("c"), tc).unwrap();
        assert_eq!(c.hands, vec!["a".to_owned()]);
        rooms.leave("l", a.session);
        assert_eq!(hands(&mut rt), Some(vec![]));
    }

    #[test]
    fn chat_is_bounded_rate_limited_switchable_and_replayed() {
        let rooms = Rooms::default();
        let teacher = super::test_util::person("t", Role::Teacher);
        let (tt, mut rt) = unbounded_channel();
        let (ta, _ra) = unbounded_channel();
        let t = rooms.join("l", lecture(9), teacher, tt).unwrap();
        let a = rooms.join("l", lecture(9), person("a"), ta).unwrap();
        let t0 = Instant::now();
        let at = |s: u64| t0 + std::time::Duration::from_secs(s);
        assert_eq!(
            rooms.chat("l", a.session, "  ", at(0), 0),
            Err(ControlError::BadRequest("an empty chat message"))
        );
        let long = "字".repeat(MAX_CHAT_CHARS + 1);
        assert!(matches!(
            rooms.chat("l", a.session, &long, at(0), 0),
            Err(ControlError::BadRequest(_))
        ));
        for i in 0..5 {
            rooms
                .chat("l", a.session, &format!("m{i}"), at(0), 0)
                .unwrap();
        }
        assert_eq!(
            rooms.chat("l", a.session, "m5", at(0), 0),
            Err(ControlError::RateLimited)
        );
        rooms.chat("l", a.session, "m5", at(1), 0).unwrap(); // One more a second later.
        let got: Vec<String> = drain(&mut rt)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Chat(c) => Some(c.text),
                _ => None,
            })
            .collect();
        assert_eq!(got, ["m0", "m1", "m2", "m3", "m4", "m5"]);
        // Only moderators switch it; while off, students are refused and the teacher is not.
        assert_eq!(
            rooms.set_chat("l", a.session, false),
            Err(ControlError::NotAllowed)
        );
        rooms.set_chat("l", t.session, false).unwrap();
        assert_eq!(
            rooms.chat("l", a.session, "hi", at(9), 0),
            Err(ControlError::NotAllowed)
        );
        rooms.chat("l", t.session, "安静", at(9), 0).unwrap();
        let (tc, _rc) = unbounded_channel();
        let c = rooms.join("l", lecture(9), person("c"), tc).unwrap();
        assert!(!c.chat_enabled);
        assert_eq!(c.chat.len(), 7);
        assert_eq!(c.chat.last().unwrap().text, "安静");
    }

    #[test]
    fn capacity_is_enforced_and_a_rejoin_replaces() {
        let rooms = Rooms::default();
        let (t1, mut r1) = unbounded_channel();
        let (t2, _r2) = unbounded_channel();
        let (t3, _r3) = unbounded_channel();
        let first = rooms.join("l", lecture(2), person("a"), t1).unwrap();
        rooms
            .join("l", lecture(2), person("b"), t2.clone())
            .unwrap();
        assert_eq!(
            rooms.join("l", lecture(2), person("c"), t3).unwrap_err(),
            AdmissionError::Full(2)
        );
        // "a" again from a new connection: replaces, does not count twice.
        let (t4, _r4) = unbounded_channel();
        let again = rooms.join("l", lecture(2), person("a"), t4).unwrap();
        assert_eq!(
            drain(&mut r1).last(),
            Some(&ServerMessage::Bye {
                reason: ByeReason::Replaced
            })
        );
        rooms.leave("l", first.session); // The replaced session ending changes nothing.
        assert_eq!(rooms.session_count(), 2);
        rooms.leave("l", again.session);
        assert_eq!(rooms.session_count(), 1);
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use crate::events::LessonEvent;
    use jinke_signaling::Role;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    fn kinds(rx: &mut UnboundedReceiver<LessonEvent>) -> Vec<EventKind> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| {
                assert_eq!(e.lesson, "l");
                e.kind
            })
            .collect()
    }

    #[test]
    fn a_lessons_life_is_reported_as_events() {
        let (sink, mut events) = EventSink::channel();
        let rooms = Rooms::new(sink);
        let shape = RoomShape {
            capacity: 10,
            mode: LessonMode::SmallClass,
        };
        let person = super::test_util::person;
        let (tx, _rx) = unbounded_channel();
        let s = rooms
            .join("l", shape, person("s", Role::Student), tx.clone())
            .unwrap();
        rooms
            .join("l", shape, person("t", Role::Teacher), tx.clone())
            .unwrap();
        rooms.raise_hand("l", s.session).unwrap();
        rooms
            .chat("l", s.session, "你好", Instant::now(), 0)
            .unwrap();
        rooms.leave("l", s.session);
        rooms.end("l");
        let joined = |id: &str, role| EventKind::Joined {
            identity: id.into(),
            name: id.into(),
            role,
        };
        assert_eq!(
            kinds(&mut events),
            vec![
                joined("s", Role::Student),
                EventKind::StageChanged {
                    identities: vec!["s".into()]
                },
                joined("t", Role::Teacher),
                EventKind::HandRaised {
                    identity: "s".into()
                },
                EventKind::Chatted {
                    identity: "s".into()
                },
                EventKind::Left {
                    identity: "s".into()
                },
                EventKind::StageChanged { identities: vec![] },
                EventKind::Left {
                    identity: "t".into()
                },
                EventKind::Ended,
            ]
        );
    }
}

#[cfg(test)]
mod speaker_tests {
    use super::test_util::lecture;
    use super::*;
    use jinke_signaling::Role;
    use tokio::sync::mpsc::unbounded_channel;

    #[test]
    fn speaking_is_told_once_and_the_latest_to_start_is_the_active_speaker() {
        let rooms = Rooms::default();
        let (tx, mut rx) = unbounded_channel();
        let person = |id| super::test_util::person(id, Role::Student);
        let a = rooms
            .join("l", lecture(9), person("a"), tx.clone())
            .unwrap();
        let b = rooms.join("l", lecture(9), person("b"), tx).unwrap();
        while rx.try_recv().is_ok() {}
        rooms.set_speaking("l", a.session, true);
        rooms.set_speaking("l", a.session, true);
        rooms.set_speaking("l", b.session, true);
        rooms.set_speaking("l", a.session, false);
        let got: Vec<ServerMessage> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let speaking = |id: &str, s| ServerMessage::Speaking {
            identity: id.into(),
            speaking: s,
        };
        let active = |id: &str| ServerMessage::ActiveSpeaker {
            identity: id.into(),
        };
        // Each message reaches both sessions (one shared channel here).
        assert_eq!(
            got,
            vec![
                speaking("a", true),
                speaking("a", true),
                active("a"),
                active("a"),
                speaking("b", true),
                speaking("b", true),
                active("b"),
                active("b"),
                speaking("a", false),
                speaking("a", false),
            ]
        );
    }
}
