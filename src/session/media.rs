//! One session's connections in the SFU and what they may publish. The first connection
//! receives the room's tracks (and publishes, if allowed when it is set up). Side connections
//! only publish: a lecture student's camera and microphone while on stage, and a teacher's or
//! assistant's shared screen. Leaving the stage closes the stage connection or revokes the first
//! connection's right to publish.

use std::sync::atomic::{AtomicU64, Ordering};

use jinke_sfu::{PeerEvent, PeerId, PeerSpec, Sfu, SfuError};
use jinke_signaling::{LessonMode, Role};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// SFU peer ids, unique for the life of the process.
static NEXT_PEER: AtomicU64 = AtomicU64::new(1);

fn next_peer() -> PeerId {
    PeerId(NEXT_PEER.fetch_add(1, Ordering::Relaxed))
}

/// Why a media request was refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum MediaError {
    /// The SFU refused or failed.
    #[error(transparent)]
    Sfu(#[from] SfuError),
    /// A request at the wrong time.
    #[error("{0}")]
    Unexpected(&'static str),
    /// Publishing needs the stage.
    #[error("only students on stage may publish")]
    NotOnStage,
    /// Sharing the screen is for teachers and assistants.
    #[error("only teachers and assistants share their screen")]
    MayNotShare,
}

/// What a side connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Stage,
    Screen,
}

/// A publish-only connection and the tracks it published.
struct SideConnection {
    id: PeerId,
    side: Side,
    tracks: Vec<String>,
}

pub(super) struct Media {
    room: String,
    identity: String,
    /// The first connection.
    pub main: PeerId,
    /// Its event channel, until the connection is set up.
    main_events: Option<UnboundedSender<PeerEvent>>,
    /// Whether the first connection was set up allowed to publish.
    main_publishes: bool,
    sides: Vec<SideConnection>,
    side_tx: UnboundedSender<(PeerId, PeerEvent)>,
    /// Events of the side connections, tagged with their peer.
    pub side_events: UnboundedReceiver<(PeerId, PeerEvent)>,
    /// May publish whatever the stage (teachers, assistants, one-to-one students).
    always: bool,
    /// May share a screen (teachers and assistants).
    may_share: bool,
    /// Whether the SFU estimates what this participant's link carries (see
    /// [`PeerSpec::estimates_bandwidth`]): not in lectures, where CPU is what limits.
    estimated: bool,
    on_stage: bool,
    muted: bool,
}

impl Media {
    /// The media of a new session, with the receiver of its first connection's events.
    pub fn new(
        room: &str,
        identity: &str,
        mode: LessonMode,
        role: Role,
        on_stage: bool,
        muted: bool,
    ) -> (Media, UnboundedReceiver<PeerEvent>) {
        let (tx, rx) = unbounded_channel();
        let (side_tx, side_events) = unbounded_channel();
        let media = Media {
            room: room.to_owned(),
            identity: identity.to_owned(),
            main: next_peer(),
            main_events: Some(tx),
            main_publishes: false,
            sides: Vec::new(),
            side_tx,
            side_events,
            always: mode.may_publish(role),
            may_share: role.moderates(),
            estimated: mode != LessonMode::Lecture,
            on_stage,
            muted,
        };
        (media, rx)
    }

    /// Whether this participant may publish now.
    pub fn may_publish(&self) -> bool {
        self.always || self.on_stage
    }

    fn spec(
        &self,
        id: PeerId,
        main: bool,
        screen: bool,
        events: UnboundedSender<PeerEvent>,
    ) -> PeerSpec {
        PeerSpec {
            id,
            room: self.room.clone(),
            identity: self.identity.clone(),
            may_publish: !main || self.may_publish(),
            receives: main,
            screen,
            moderator: self.may_share,
            estimates_bandwidth: main && self.estimated,
            events,
        }
    }

    /// Sets up the first connection from the client's offer; returns the answer.
    pub async fn offer(&mut self, sfu: &Sfu, sdp: String) -> Result<String, MediaError> {
        let events = self
            .main_events
            .take()
            .ok_or(MediaError::Unexpected("an offer was already accepted"))?;
        let spec = self.spec(self.main, true, false, events.clone());
        let publishes = spec.may_publish;
        match sfu.add_peer(spec, sdp).await {
            Ok(answer) => {
                self.main_publishes = publishes;
                if self.muted {
                    sfu.set_audio_muted(self.main, true);
                }
                Ok(answer)
            }
            Err(e) => {
                // Refused: the client may offer again.
                self.main_events = Some(events);
                Err(e.into())
            }
        }
    }

    /// Sets up the first connection receive-only: the SFU offers.
    pub async fn receive(&mut self, sfu: &Sfu) -> Result<(), MediaError> {
        let events = self
            .main_events
            .take()
            .ok_or(MediaError::Unexpected("media was already set up"))?;
        let mut spec = self.spec(self.main, true, false, events);
        spec.may_publish = false;
        sfu.add_receiver(spec).await?;
        Ok(())
    }

    /// Sets up the publish-only connection of a student on stage; returns the answer.
    pub async fn publish_offer(&mut self, sfu: &Sfu, sdp: String) -> Result<String, MediaError> {
        if !self.on_stage {
            return Err(MediaError::NotOnStage);
        }
        if self.main_publishes || self.has(Side::Stage) {
            return Err(MediaError::Unexpected("already publishing"));
        }
        self.open_side(sfu, Side::Stage, sdp).await
    }

    /// Sets up a shared screen's connection; returns the answer.
    pub async fn share_screen(&mut self, sfu: &Sfu, sdp: String) -> Result<String, MediaError> {
        if !self.may_share {
            return Err(MediaError::MayNotShare);
        }
        if self.has(Side::Screen) {
            return Err(MediaError::Unexpected("already sharing a screen"));
        }
        self.open_side(sfu, Side::Screen, sdp).await
    }

    fn has(&self, side: Side) -> bool {
        self.sides.iter().any(|s| s.side == side)
    }

    async fn open_side(
        &mut self,
        sfu: &Sfu,
        side: Side,
        sdp: String,
    ) -> Result<String, MediaError> {
        let id = next_peer();
        let (tx, mut rx) = unbounded_channel();
        let answer = sfu
            .add_peer(self.spec(id, false, side == Side::Screen, tx), sdp)
            .await?;
        // Tag the connection's events with its id; ends when the SFU drops the peer.
        let tagged = self.side_tx.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if tagged.send((id, event)).is_err() {
                    return;
                }
            }
        });
        if self.muted {
            sfu.set_audio_muted(id, true);
        }
        self.sides.push(SideConnection {
            id,
            side,
            tracks: Vec::new(),
        });
        Ok(answer)
    }

    /// A side connection published a track.
    pub fn side_track(&mut self, id: PeerId, track_id: &str) {
        if let Some(s) = self.sides.iter_mut().find(|s| s.id == id) {
            s.tracks.push(track_id.to_owned());
        }
    }

    /// A side connection died; returns the tracks that ended with it.
    pub fn side_closed(&mut self, id: PeerId) -> Vec<String> {
        match self.sides.iter().position(|s| s.id == id) {
            Some(i) => self.sides.remove(i).tracks,
            None => Vec::new(),
        }
    }

    /// Stops sharing the screen; returns the tracks that ended.
    pub fn stop_screen(&mut self, sfu: &Sfu) -> Vec<String> {
        self.close_side(sfu, Side::Screen)
    }

    fn close_side(&mut self, sfu: &Sfu, side: Side) -> Vec<String> {
        match self.sides.iter().position(|s| s.side == side) {
            Some(i) => {
                let gone = self.sides.remove(i);
                sfu.remove_peer(gone.id);
                gone.tracks
            }
            None => Vec::new(),
        }
    }

    /// Follows a moderator's mute on every connection.
    pub fn set_muted(&mut self, sfu: &Sfu, muted: bool) {
        self.muted = muted;
        for peer in std::iter::once(self.main).chain(self.sides.iter().map(|s| s.id)) {
            sfu.set_audio_muted(peer, muted);
        }
    }

    /// Follows this participant's place on stage. Returns true when it just lost the right to
    /// publish (all its tracks are ending).
    pub fn set_on_stage(&mut self, sfu: &Sfu, on: bool) -> bool {
        let could = self.may_publish();
        self.on_stage = on;
        if !could || self.may_publish() {
            return false;
        }
        self.close_side(sfu, Side::Stage);
        if self.main_publishes {
            sfu.revoke_publish(self.main);
            self.main_publishes = false;
        }
        true
    }

    /// Frees every connection.
    pub fn close(&mut self, sfu: &Sfu) {
        sfu.remove_peer(self.main);
        for s in self.sides.drain(..) {
            sfu.remove_peer(s.id);
        }
    }
}
