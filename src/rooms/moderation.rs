//! Classroom controls that act on others: mute, remove, lock, end, announcements, and the list of
//! who is present. Asked for by a teacher or assistant over signaling, or by the school over REST.

use jinke_signaling::{ByeReason, ChatMessage, Role, ServerMessage};
use serde::Serialize;

use super::{ControlError, Room, Rooms, chat_text};
use crate::events::EventKind;

/// Who asks for a control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A joined participant, by its signaling session; its role decides.
    Session(u64),
    /// The school, through its REST API key: may do everything.
    School,
}

/// A participant present in a lesson, as the school's REST API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresentParticipant {
    /// The school's identifier.
    pub identity: String,
    /// Display name.
    pub name: String,
    /// Role from the join token.
    pub role: Role,
    /// Whether a moderator muted its audio.
    pub muted: bool,
    /// Whether its hand is raised.
    pub hand_raised: bool,
    /// Whether it is a student on stage.
    pub on_stage: bool,
}

impl Room {
    /// The acting participant's identity (`None` for the school), if it may moderate.
    pub(super) fn moderator(&self, by: Actor) -> Result<Option<&str>, ControlError> {
        match by {
            Actor::School => Ok(None),
            Actor::Session(session) => {
                let me = &self.members[self.member_index(session)?].participant;
                if me.role.moderates() {
                    Ok(Some(&me.identity))
                } else {
                    Err(ControlError::NotAllowed)
                }
            }
        }
    }

    /// May `by` act on `target` (present in the room)? A participant never acts on itself this
    /// way, nor on a teacher; the school may act on anyone.
    pub(super) fn check_target(&self, by: Actor, target: &str) -> Result<usize, ControlError> {
        let actor = self.moderator(by)?;
        let i = self
            .members
            .iter()
            .position(|m| m.participant.identity == target)
            .ok_or(ControlError::NotPresent)?;
        let role = self.members[i].participant.role;
        if actor.is_some_and(|me| me == target || role == Role::Teacher) {
            return Err(ControlError::NotAllowed);
        }
        Ok(i)
    }
}

impl Rooms {
    /// Mutes or unmutes a present participant's audio and tells everyone. The participant's own
    /// session stops (or resumes) the forwarding when it receives [`ServerMessage::Muted`].
    pub fn mute(
        &self,
        lesson: &str,
        by: Actor,
        identity: &str,
        muted: bool,
    ) -> Result<(), ControlError> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(lesson).ok_or(ControlError::NotPresent)?;
        room.check_target(by, identity)?;
        let was = room.muted.iter().any(|m| m == identity);
        if was != muted {
            if muted {
                room.muted.push(identity.to_owned());
            } else {
                room.muted.retain(|m| m != identity);
            }
            room.broadcast(
                u64::MAX,
                &ServerMessage::Muted {
                    identity: identity.to_owned(),
                    muted,
                },
            );
        }
        Ok(())
    }

    /// Checks that `by` may remove `identity` (present or not) from the lesson. Call before
    /// recording the removal, then [`Rooms::remove`].
    pub fn may_remove(&self, lesson: &str, by: Actor, identity: &str) -> Result<(), ControlError> {
        let rooms = self.lock();
        match (rooms.get(lesson), by) {
            (None, Actor::School) => Ok(()),
            (None, Actor::Session(_)) => Err(ControlError::NotInRoom),
            (Some(room), _) => match room.check_target(by, identity) {
                Err(ControlError::NotPresent) => room.moderator(by).map(|_| ()),
                other => other.map(|_| ()),
            },
        }
    }

    /// Sends a present participant away with [`ByeReason::Removed`]; the others see it leave.
    /// Returns whether it was present.
    pub fn remove(&self, lesson: &str, identity: &str) -> bool {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(lesson) else {
            return false;
        };
        let Some(i) = room
            .members
            .iter()
            .position(|m| m.participant.identity == identity)
        else {
            return false;
        };
        let gone = room.remove_member(i);
        self.left(lesson, room, identity);
        let _ = gone.tx.send(ServerMessage::Bye {
            reason: ByeReason::Removed,
        });
        if room.members.is_empty() {
            rooms.remove(lesson);
        }
        true
    }

    /// Locks or unlocks a live lesson and tells everyone.
    pub fn set_locked(&self, lesson: &str, by: Actor, locked: bool) -> Result<(), ControlError> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(lesson).ok_or(ControlError::NotPresent)?;
        room.moderator(by)?;
        if room.locked != locked {
            room.locked = locked;
            room.broadcast(u64::MAX, &ServerMessage::Locked { locked });
        }
        Ok(())
    }

    /// Checks that `by` may run the lesson (start or end it). Call before recording it.
    pub fn may_moderate(&self, lesson: &str, by: Actor) -> Result<(), ControlError> {
        match (self.lock().get(lesson), by) {
            (_, Actor::School) => Ok(()),
            (None, Actor::Session(_)) => Err(ControlError::NotInRoom),
            (Some(room), _) => room.moderator(by).map(|_| ()),
        }
    }

    /// Ends a live lesson: everyone gets [`ByeReason::LessonEnded`] and the room is closed.
    /// Returns how many sessions were sent away.
    pub fn end(&self, lesson: &str) -> usize {
        let Some(room) = self.lock().remove(lesson) else {
            return 0;
        };
        for m in &room.members {
            self.events.emit(
                lesson,
                EventKind::Left {
                    identity: m.participant.identity.clone(),
                },
            );
        }
        self.events.emit(lesson, EventKind::Ended);
        room.broadcast(
            u64::MAX,
            &ServerMessage::Bye {
                reason: ByeReason::LessonEnded,
            },
        );
        room.members.len()
    }

    /// Posts the school's announcement to the chat of a live lesson (kept for late joiners while
    /// the room lives). Returns how many sessions it reached.
    pub fn announce(&self, lesson: &str, text: &str, at_ms: i64) -> Result<usize, ControlError> {
        let text = chat_text(text)?;
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(lesson) else {
            return Ok(0);
        };
        room.post_chat(ChatMessage {
            identity: String::new(),
            name: String::new(),
            text: text.to_owned(),
            at_ms,
            announcement: true,
        });
        Ok(room.members.len())
    }

    /// Everyone present in a lesson (observers included), in order of arrival.
    pub fn present(&self, lesson: &str) -> Vec<PresentParticipant> {
        let rooms = self.lock();
        let Some(room) = rooms.get(lesson) else {
            return Vec::new();
        };
        room.members
            .iter()
            .map(|m| {
                let p = &m.participant;
                PresentParticipant {
                    identity: p.identity.clone(),
                    name: p.name.clone(),
                    role: p.role,
                    muted: room.muted.contains(&p.identity),
                    hand_raised: room.hands.contains(&p.identity),
                    on_stage: room.stage.contains(&p.identity),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::AdmissionError;
    use super::super::test_util::{drain, lecture, person};
    use super::*;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    /// A room with a teacher, an assistant and two students; their sessions and receivers.
    fn class(rooms: &Rooms) -> Vec<(u64, UnboundedReceiver<ServerMessage>)> {
        [
            ("t", Role::Teacher),
            ("a", Role::Assistant),
            ("s1", Role::Student),
            ("s2", Role::Student),
        ]
        .into_iter()
        .map(|(id, role)| {
            let (tx, rx) = unbounded_channel();
            let adm = rooms.join("l", lecture(10), person(id, role), tx).unwrap();
            (adm.session, rx)
        })
        .collect()
    }

    #[test]
    fn moderators_mute_others_but_not_a_teacher_and_students_mute_nobody() {
        let rooms = Rooms::default();
        let mut c = class(&rooms);
        let (t, a, s1) = (c[0].0, c[1].0, c[2].0);
        assert_eq!(
            rooms.mute("l", Actor::Session(s1), "s2", true),
            Err(ControlError::NotAllowed)
        );
        assert_eq!(
            rooms.mute("l", Actor::Session(a), "t", true),
            Err(ControlError::NotAllowed)
        );
        assert_eq!(
            rooms.mute("l", Actor::Session(t), "nobody", true),
            Err(ControlError::NotPresent)
        );
        for (_, rx) in &mut c {
            drain(rx);
        }
        rooms.mute("l", Actor::Session(a), "s1", true).unwrap();
        rooms.mute("l", Actor::Session(t), "s1", true).unwrap(); // Already: no second event.
        for (_, rx) in &mut c {
            assert_eq!(
                drain(rx),
                vec![ServerMessage::Muted {
                    identity: "s1".into(),
                    muted: true
                }]
            );
        }
        assert!(
            rooms
                .present("l")
                .iter()
                .any(|p| p.identity == "s1" && p.muted)
        );
        // A reconnect stays muted: the admission says so.
        let (tx, _rx) = unbounded_channel();
        let again = rooms
            .join("l", lecture(10), person("s1", Role::Student), tx)
            .unwrap();
        assert_eq!(again.muted, vec!["s1".to_owned()]);
        rooms.mute("l", Actor::School, "s1", false).unwrap();
        assert!(rooms.present("l").iter().all(|p| !p.muted));
    }

    #[test]
    fn removal_sends_the_participant_away_and_the_others_see_it_leave() {
        let rooms = Rooms::default();
        let mut c = class(&rooms);
        let (t, s1) = (c[0].0, c[2].0);
        assert_eq!(
            rooms.may_remove("l", Actor::Session(s1), "s2"),
            Err(ControlError::NotAllowed)
        );
        assert_eq!(
            rooms.may_remove("l", Actor::Session(t), "t"),
            Err(ControlError::NotAllowed),
            "not oneself"
        );
        assert_eq!(rooms.may_remove("l", Actor::Session(t), "absent"), Ok(()));
        assert_eq!(
            rooms.may_remove("l", Actor::Session(s1), "absent"),
            Err(ControlError::NotAllowed)
        );
        for (_, rx) in &mut c {
            drain(rx);
        }
        assert!(rooms.remove("l", "s2"));
        assert!(!rooms.remove("l", "s2"));
        assert_eq!(
            drain(&mut c[3].1),
            vec![ServerMessage::Bye {
                reason: ByeReason::Removed
            }]
        );
        assert_eq!(
            drain(&mut c[0].1),
            vec![ServerMessage::ParticipantLeft {
                identity: "s2".into()
            }]
        );
        assert_eq!(rooms.present("l").len(), 3);
    }

    #[test]
    fn a_locked_lesson_admits_moderators_and_reconnects_only() {
        let rooms = Rooms::default();
        let mut c = class(&rooms);
        let (a, s1) = (c[1].0, c[2].0);
        assert_eq!(
            rooms.set_locked("l", Actor::Session(s1), true),
            Err(ControlError::NotAllowed)
        );
        rooms.set_locked("l", Actor::Session(a), true).unwrap();
        assert_eq!(
            drain(&mut c[2].1).last(),
            Some(&ServerMessage::Locked { locked: true })
        );
        let (tx, _r1) = unbounded_channel();
        assert_eq!(
            rooms
                .join("l", lecture(10), person("new", Role::Student), tx.clone())
                .unwrap_err(),
            AdmissionError::Locked
        );
        assert!(
            rooms
                .join("l", lecture(10), person("s2", Role::Student), tx.clone())
                .is_ok()
        );
        assert!(
            rooms
                .join("l", lecture(10), person("a2", Role::Assistant), tx.clone())
                .is_ok()
        );
        rooms.set_locked("l", Actor::School, false).unwrap();
        assert!(
            rooms
                .join("l", lecture(10), person("new", Role::Student), tx)
                .is_ok()
        );
    }

    #[test]
    fn ending_sends_everyone_away_and_announcements_reach_the_chat() {
        let rooms = Rooms::default();
        let mut c = class(&rooms);
        let (t, s1) = (c[0].0, c[2].0);
        for (_, rx) in &mut c {
            drain(rx);
        }
        assert_eq!(
            rooms.announce("l", "  ", 1),
            Err(ControlError::BadRequest("an empty chat message"))
        );
        assert_eq!(rooms.announce("l", "十分钟后下课", 1), Ok(4));
        assert_eq!(rooms.announce("other", "nobody there", 1), Ok(0));
        for (_, rx) in &mut c {
            let got = drain(rx);
            assert!(
                matches!(&got[..], [ServerMessage::Chat(m)] if m.announcement && m.text == "十分钟后下课"),
                "{got:?}"
            );
        }
        assert_eq!(
            rooms.may_moderate("l", Actor::Session(s1)),
            Err(ControlError::NotAllowed)
        );
        assert_eq!(rooms.may_moderate("l", Actor::Session(t)), Ok(()));
        assert_eq!(rooms.end("l"), 4);
        for (_, rx) in &mut c {
            assert_eq!(
                drain(rx),
                vec![ServerMessage::Bye {
                    reason: ByeReason::LessonEnded
                }]
            );
        }
        assert!(rooms.present("l").is_empty());
        assert_eq!(rooms.end("l"), 0);
    }
}
