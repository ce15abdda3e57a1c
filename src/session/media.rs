//! One session's connections in the SFU and what they may publish. The first connection
//! receives the room's tracks (and publishes, if allowed when it is set up); a student invited on
//! stage after that publishes through a second, publish-only connection. Leaving the stage
//! closes the second connection or revokes the first one's right to publish.

use std::sync::atomic::{AtomicU64, Ordering};

use jinke_sfu::{PeerEvent, PeerId, PeerSpec, Sfu, SfuError};
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
    /// The publish-only connection of a student on stage.
    publish: Option<PeerId>,
    /// Its events.
    pub publish_events: Option<UnboundedReceiver<PeerEvent>>,
    /// May publish whatever the stage (teachers, assistants, one-to-one students).
    always: bool,
    on_stage: bool,
    muted: bool,
}

impl Media {
    /// The media of a new session, with the receiver of its first connection's events.
    pub fn new(
        room: &str,
        identity: &str,
        always: bool,
        on_stage: bool,
        muted: bool,
    ) -> (Media, UnboundedReceiver<PeerEvent>) {
        let (tx, rx) = unbounded_channel();
        let media = Media {
            room: room.to_owned(),
            identity: identity.to_owned(),
            main: next_peer(),
            main_events: Some(tx),
            main_publishes: false,
            publish: None,
            publish_events: None,
            always,
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
        may_publish: bool,
        receives: bool,
        events: UnboundedSender<PeerEvent>,
    ) -> PeerSpec {
        PeerSpec {
            id,
            room: self.room.clone(),
            identity: self.identity.clone(),
            may_publish,
            receives,
            events,
        }
    }

    /// Sets up the first connection from the client's offer; returns the answer.
    pub async fn offer(&mut self, sfu: &Sfu, sdp: String) -> Result<String, MediaError> {
        let events = self
            .main_events
            .take()
            .ok_or(MediaError::Unexpected("an offer was already accepted"))?;
        let may_publish = self.may_publish();
        let spec = self.spec(self.main, may_publish, true, events.clone());
        match sfu.add_peer(spec, sdp).await {
            Ok(answer) => {
                self.main_publishes = may_publish;
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
        let spec = self.spec(self.main, false, true, events);
        sfu.add_receiver(spec).await?;
        Ok(())
    }

    /// Sets up the publish-only connection of a student on stage; returns the answer.
    pub async fn publish_offer(&mut self, sfu: &Sfu, sdp: String) -> Result<String, MediaError> {
        if !self.on_stage {
            return Err(MediaError::NotOnStage);
        }
        if self.main_publishes || self.publish.is_some() {
            return Err(MediaError::Unexpected("already publishing"));
        }
        let id = next_peer();
        let (tx, rx) = unbounded_channel();
        let answer = sfu.add_peer(self.spec(id, true, false, tx), sdp).await?;
        if self.muted {
            sfu.set_audio_muted(id, true);
        }
        self.publish = Some(id);
        self.publish_events = Some(rx);
        Ok(answer)
    }

    /// The publish-only connection died; the client may open another while on stage.
    pub fn publish_closed(&mut self) {
        self.publish = None;
        self.publish_events = None;
    }

    /// Follows a moderator's mute on every connection.
    pub fn set_muted(&mut self, sfu: &Sfu, muted: bool) {
        self.muted = muted;
        for peer in std::iter::once(self.main).chain(self.publish) {
            sfu.set_audio_muted(peer, muted);
        }
    }

    /// Follows this participant's place on stage. Returns true when it just lost the right to
    /// publish (its tracks are ending).
    pub fn set_on_stage(&mut self, sfu: &Sfu, on: bool) -> bool {
        let could = self.may_publish();
        self.on_stage = on;
        if !could || self.may_publish() {
            return false;
        }
        if let Some(p) = self.publish.take() {
            sfu.remove_peer(p);
            self.publish_events = None;
        }
        if self.main_publishes {
            sfu.revoke_publish(self.main);
            self.main_publishes = false;
        }
        true
    }

    /// Frees every connection.
    pub fn close(&mut self, sfu: &Sfu) {
        sfu.remove_peer(self.main);
        if let Some(p) = self.publish.take() {
            sfu.remove_peer(p);
        }
    }
}
