//! The stage: the students who may publish camera and microphone. A moderator invites a student,
//! the student accepts (or declines), and the moderator or the student ends it. In a small class
//! students arriving while there is room go on stage at once. Every change is sent to everyone as
//! [`ServerMessage::Stage`]; each session follows its own place in it (see `session.rs`).

use jinke_signaling::{LessonMode, Participant, Role, ServerMessage};

use super::{Actor, ControlError, Room, Rooms};

impl Room {
    /// Puts an arriving small-class student on stage while there is room. Returns whether it
    /// went on; the caller tells the others once they know the student arrived.
    pub(super) fn seat_arriving_student(&mut self, who: &Participant) -> bool {
        let room_left = self
            .mode
            .stage_limit()
            .is_some_and(|limit| self.stage.len() < limit);
        if self.mode != LessonMode::SmallClass || who.role != Role::Student || !room_left {
            return false;
        }
        self.stage.push(who.identity.clone());
        true
    }

    /// Tells everyone but `except_session` who is on stage.
    pub(super) fn announce_stage(&self, except_session: u64) {
        self.broadcast(
            except_session,
            &ServerMessage::Stage {
                identities: self.stage.clone(),
            },
        );
    }

    /// Takes `identity` off the stage (and forgets an unanswered invitation), telling everyone
    /// if the stage changed. Returns whether it did.
    pub(super) fn step_off_stage(&mut self, identity: &str) -> bool {
        self.invited.retain(|i| i != identity);
        if !self.stage.iter().any(|s| s == identity) {
            return false;
        }
        self.stage.retain(|s| s != identity);
        self.announce_stage(u64::MAX);
        true
    }

    fn stage_full(&self) -> bool {
        self.mode
            .stage_limit()
            .is_none_or(|limit| self.stage.len() >= limit)
    }
}

impl Rooms {
    /// Invites a present student on stage: it gets [`ServerMessage::StageInvite`] and answers
    /// with [`Rooms::answer_invitation`]. Only students can be invited, only where there is a
    /// stage, and only while it has room.
    pub fn invite_on_stage(
        &self,
        lesson: &str,
        by: Actor,
        identity: &str,
    ) -> Result<(), ControlError> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(lesson).ok_or(ControlError::NotPresent)?;
        let by_name = match by {
            Actor::School => String::new(),
            Actor::Session(s) => room.members[room.member_index(s)?].participant.name.clone(),
        };
        let i = room.check_target(by, identity)?;
        if room.members[i].participant.role != Role::Student || room.mode.stage_limit().is_none() {
            return Err(ControlError::NotAllowed);
        }
        if room.stage.iter().any(|s| s == identity) {
            return Ok(());
        }
        if room.stage_full() {
            return Err(ControlError::StageFull);
        }
        if !room.invited.iter().any(|s| s == identity) {
            room.invited.push(identity.to_owned());
        }
        let _ = room.members[i]
            .tx
            .send(ServerMessage::StageInvite { by: by_name });
        Ok(())
    }

    /// The invited student's answer: on accepting it goes on stage (if there is still room);
    /// on declining the moderators are told.
    pub fn answer_invitation(
        &self,
        lesson: &str,
        session: u64,
        accept: bool,
    ) -> Result<(), ControlError> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(lesson).ok_or(ControlError::NotInRoom)?;
        let identity = room.members[room.member_index(session)?]
            .participant
            .identity
            .clone();
        if !room.invited.contains(&identity) {
            return Err(ControlError::NotAllowed);
        }
        room.invited.retain(|i| *i != identity);
        if !accept {
            let declined = ServerMessage::StageDeclined { identity };
            for m in room
                .members
                .iter()
                .filter(|m| m.participant.role.moderates())
            {
                let _ = m.tx.send(declined.clone());
            }
            return Ok(());
        }
        if room.stage_full() {
            return Err(ControlError::StageFull);
        }
        room.stage.push(identity);
        room.announce_stage(u64::MAX);
        self.stage_changed(lesson, room);
        Ok(())
    }

    /// Takes a student off stage: by a moderator, the school, or the student itself.
    pub fn take_off_stage(
        &self,
        lesson: &str,
        by: Actor,
        identity: &str,
    ) -> Result<(), ControlError> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(lesson).ok_or(ControlError::NotPresent)?;
        let oneself = match by {
            Actor::Session(s) => {
                room.members[room.member_index(s)?].participant.identity == identity
            }
            Actor::School => false,
        };
        if !oneself {
            room.moderator(by)?;
        }
        if room.step_off_stage(identity) {
            self.stage_changed(lesson, room);
        }
        Ok(())
    }

    /// Announces that some tracks ended (a shared screen stopped, a side connection closed)
    /// without their publisher leaving.
    pub fn end_tracks(&self, lesson: &str, track_ids: &[String]) {
        if track_ids.is_empty() {
            return;
        }
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(lesson) else {
            return;
        };
        room.tracks.retain(|t| !track_ids.contains(&t.track_id));
        for track_id in track_ids {
            room.broadcast(
                u64::MAX,
                &ServerMessage::TrackUnpublished {
                    track_id: track_id.clone(),
                },
            );
        }
    }

    /// Announces that a session's tracks ended (it left the stage, or its publishing connection
    /// closed) without it leaving the lesson.
    pub fn tracks_ended(&self, lesson: &str, session: u64) {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(lesson) else {
            return;
        };
        if let Ok(i) = room.member_index(session) {
            let identity = room.members[i].participant.identity.clone();
            room.end_tracks_of(&identity, u64::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::RoomShape;
    use super::super::test_util::{drain, person};
    use super::*;
    use jinke_signaling::{MediaKind, TrackInfo};
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    fn stage(ids: &[&str]) -> ServerMessage {
        ServerMessage::Stage {
            identities: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn join(
        rooms: &Rooms,
        mode: LessonMode,
        id: &str,
        role: Role,
    ) -> (super::super::Admission, UnboundedReceiver<ServerMessage>) {
        let (tx, rx) = unbounded_channel();
        let shape = RoomShape {
            capacity: 100,
            mode,
        };
        (rooms.join("l", shape, person(id, role), tx).unwrap(), rx)
    }

    #[test]
    fn a_lecture_student_goes_on_stage_by_invitation_only() {
        let rooms = Rooms::default();
        let (t, mut rt) = join(&rooms, LessonMode::Lecture, "t", Role::Teacher);
        let (s1, mut r1) = join(&rooms, LessonMode::Lecture, "s1", Role::Student);
        let (s2, mut r2) = join(&rooms, LessonMode::Lecture, "s2", Role::Student);
        assert!(!s1.on_stage && s1.stage.is_empty());
        drain(&mut rt);
        drain(&mut r1);

        // Students cannot invite, nor accept an invitation nobody made.
        assert_eq!(
            rooms.invite_on_stage("l", Actor::Session(s2.session), "s1"),
            Err(ControlError::NotAllowed)
        );
        assert_eq!(
            rooms.answer_invitation("l", s1.session, true),
            Err(ControlError::NotAllowed)
        );
        assert_eq!(
            rooms.invite_on_stage("l", Actor::Session(t.session), "t"),
            Err(ControlError::NotAllowed),
            "not a teacher"
        );

        rooms
            .invite_on_stage("l", Actor::Session(t.session), "s1")
            .unwrap();
        assert_eq!(
            drain(&mut r1),
            vec![ServerMessage::StageInvite { by: "t".into() }]
        );
        rooms.answer_invitation("l", s1.session, true).unwrap();
        assert_eq!(drain(&mut r1), vec![stage(&["s1"])]);
        assert_eq!(drain(&mut r2), vec![stage(&["s1"])]);

        // s2 declines: the teacher hears of it, the stage does not change.
        rooms.invite_on_stage("l", Actor::School, "s2").unwrap();
        assert_eq!(
            drain(&mut r2),
            vec![ServerMessage::StageInvite { by: String::new() }]
        );
        rooms.answer_invitation("l", s2.session, false).unwrap();
        assert_eq!(
            drain(&mut rt),
            vec![
                stage(&["s1"]),
                ServerMessage::StageDeclined {
                    identity: "s2".into()
                }
            ]
        );

        // A student steps down itself; another student cannot take it down.
        assert_eq!(
            rooms.take_off_stage("l", Actor::Session(s2.session), "s1"),
            Err(ControlError::NotAllowed)
        );
        rooms
            .take_off_stage("l", Actor::Session(s1.session), "s1")
            .unwrap();
        assert_eq!(drain(&mut r2), vec![stage(&[])]);
    }

    #[test]
    fn the_lecture_stage_holds_six() {
        let rooms = Rooms::default();
        let (t, _rt) = join(&rooms, LessonMode::Lecture, "t", Role::Teacher);
        let mut students = Vec::new();
        for i in 0..7 {
            let (s, rx) = join(&rooms, LessonMode::Lecture, &format!("s{i}"), Role::Student);
            students.push((s, rx));
        }
        for (i, (s, _)) in students.iter().enumerate().take(6) {
            rooms
                .invite_on_stage("l", Actor::Session(t.session), &format!("s{i}"))
                .unwrap();
            rooms.answer_invitation("l", s.session, true).unwrap();
        }
        assert_eq!(
            rooms.invite_on_stage("l", Actor::Session(t.session), "s6"),
            Err(ControlError::StageFull)
        );
        rooms.take_off_stage("l", Actor::School, "s0").unwrap();
        rooms
            .invite_on_stage("l", Actor::Session(t.session), "s6")
            .unwrap();
        // An assistant is never invited: it publishes anyway.
        let (_a, _ra) = join(&rooms, LessonMode::Lecture, "a", Role::Assistant);
        assert_eq!(
            rooms.invite_on_stage("l", Actor::Session(t.session), "a"),
            Err(ControlError::NotAllowed)
        );
    }

    #[test]
    fn small_class_students_take_the_stage_as_they_arrive_up_to_sixteen() {
        let rooms = Rooms::default();
        let (_t, _rt) = join(&rooms, LessonMode::SmallClass, "t", Role::Teacher);
        let mut first = None;
        for i in 0..16 {
            let (s, rx) = join(
                &rooms,
                LessonMode::SmallClass,
                &format!("s{i}"),
                Role::Student,
            );
            assert!(s.on_stage, "student {i}");
            first.get_or_insert((s, rx));
        }
        let (late, _rl) = join(&rooms, LessonMode::SmallClass, "late", Role::Student);
        assert!(!late.on_stage);
        assert_eq!(late.stage.len(), 16);
        let (s0, mut r0) = first.unwrap();
        let stages: Vec<_> = drain(&mut r0)
            .into_iter()
            .filter(|m| matches!(m, ServerMessage::Stage { .. }))
            .collect();
        assert_eq!(stages.len(), 15, "s0 heard each later arrival take a seat");
        assert_eq!(
            stages.last(),
            Some(&ServerMessage::Stage {
                identities: late.stage.clone()
            })
        );

        // Leaving frees a seat; a reconnect keeps its seat.
        let (again, _ra) = join(&rooms, LessonMode::SmallClass, "s1", Role::Student);
        assert!(again.on_stage);
        assert!(
            !drain(&mut r0)
                .iter()
                .any(|m| matches!(m, ServerMessage::Stage { .. })),
            "a reconnect does not change the stage"
        );
        rooms.leave("l", s0.session);
        assert!(rooms.present("l").iter().all(|p| p.identity != "s0"));
        let p = rooms.present("l");
        assert_eq!(p.iter().filter(|p| p.on_stage).count(), 15);
    }

    #[test]
    fn tracks_end_without_leaving() {
        let rooms = Rooms::default();
        let (s, _rs) = join(&rooms, LessonMode::SmallClass, "s", Role::Student);
        let (_o, mut ro) = join(&rooms, LessonMode::SmallClass, "o", Role::Student);
        rooms.track_published(
            "l",
            s.session,
            TrackInfo {
                track_id: "t9".into(),
                identity: "s".into(),
                kind: MediaKind::Audio,
                screen: false,
            },
        );
        drain(&mut ro);
        rooms.tracks_ended("l", s.session);
        assert_eq!(
            drain(&mut ro),
            vec![ServerMessage::TrackUnpublished {
                track_id: "t9".into()
            }]
        );
        assert_eq!(rooms.present("l").len(), 2);
    }
}
