//! One participant's WebRTC session inside a shard, and the SDP negotiation of the tracks
//! forwarded to it.

use std::time::Instant;

use jinke_signaling::{MediaKind, TrackInfo, TrackMapping};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, Mid, Rid};
use str0m::rtp::Ssrc;
use str0m::{Input, Rtc};
use tokio::sync::mpsc::UnboundedSender;

use crate::link::Allowance;
use crate::{PeerEvent, PeerId, PeerSpec, SfuError};

/// Identifies a route: the publishing peer and the mid its track arrives on.
pub(crate) type TrackKey = (PeerId, Mid);

/// A forwarded track's m-line in this peer's session, through its negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutState {
    /// Waiting for the next offer.
    ToOpen,
    /// Offered, waiting for the answer.
    Negotiating(Mid),
    /// Negotiated: media flows.
    Open(Mid),
    /// The track ended; the m-line must be stopped in the next offer.
    ToStop(Mid),
    /// Stop offered, waiting for the answer.
    Stopping(Mid),
}

/// A track forwarded to this peer.
pub(crate) struct OutTrack {
    pub source: TrackKey,
    pub track: TrackInfo,
    pub state: OutState,
}

pub(crate) struct Peer {
    pub id: PeerId,
    pub room: String,
    pub identity: String,
    pub may_publish: bool,
    /// Whether the room's tracks are forwarded to this peer.
    pub receives: bool,
    /// Whether its tracks are a shared screen.
    pub screen: bool,
    /// Whether it receives in a held room.
    pub moderator: bool,
    /// Whether it asked for no camera video (audio and screens only).
    pub video_off: bool,
    /// Judges its link from the loss it reports (and, in small lessons, from its bandwidth
    /// estimate); below the smallest layer, audio only.
    pub link: crate::link::LinkController,
    /// Sizes it shows tracks at that it said before their subscriptions started.
    pub views: Vec<(String, Option<(u16, u16)>)>,
    /// A moderator muted this peer: its audio is not forwarded.
    pub audio_muted: bool,
    pub rtc: Rtc,
    pub events: UnboundedSender<PeerEvent>,
    /// When str0m next needs a timeout input.
    pub next_timeout: Instant,
    /// When the peer is given up on: from the start of negotiation until it connects, and
    /// while its ICE is disconnected after that.
    pub give_up_at: Option<Instant>,
    /// Whether ICE and DTLS have come up.
    pub connected: bool,
    /// Whether this peer is queued for polling.
    pub dirty: bool,
    /// Whether media was written to it since its last poll. str0m sends a written packet only
    /// after a timeout input has stamped it, so such a peer gets one before its poll.
    pub written: bool,
    /// Tracks forwarded to this peer.
    pub out: Vec<OutTrack>,
    /// Whether `out` has tracks to open or stop in the next offer. A flag rather than a scan
    /// of `out`: checked at every poll, and `out`'s entries are a cache miss away.
    to_negotiate: bool,
    /// The offer this peer has not answered yet.
    pending: Option<SdpPendingOffer>,
    /// Incoming SSRC to mid and rid, learned on the first packet of each stream.
    ssrc_mids: Vec<(Ssrc, Mid, Option<Rid>)>,
}

impl Peer {
    /// A peer for `spec`, around its negotiated `rtc`.
    pub fn new(spec: PeerSpec, rtc: Rtc, now: Instant, give_up_at: Option<Instant>) -> Peer {
        Peer {
            id: spec.id,
            room: spec.room,
            identity: spec.identity,
            may_publish: spec.may_publish,
            receives: spec.receives,
            screen: spec.screen,
            moderator: spec.moderator,
            video_off: false,
            link: Default::default(),
            views: Vec::new(),
            audio_muted: false,
            rtc,
            events: spec.events,
            next_timeout: now,
            give_up_at,
            connected: false,
            dirty: false,
            written: false,
            out: Vec::new(),
            to_negotiate: false,
            pending: None,
            ssrc_mids: Vec::new(),
        }
    }

    /// Marks the peer for polling. Returns whether it must be put in the shard's queue (it was
    /// not there yet).
    pub fn queue(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }

    /// The cache lines a send to this peer reads (see `prefetch`): the peer's own (its start
    /// and its `connected` flag) and its session's.
    pub fn send_lines(&self, line: &mut dyn FnMut(*const u8)) {
        line((self as *const Self).cast());
        // The fan-out reads it before each send (only a connected session is sent to).
        line((&self.connected as *const bool).cast());
        self.rtc.send_lines(&mut |p| line(p));
    }

    /// Media was written to this peer: it gets a timeout input before its next poll. Returns
    /// whether it must be put in the shard's queue, as [`Peer::queue`].
    pub fn written_to(&mut self) -> bool {
        self.written = true;
        self.queue()
    }

    /// Moves str0m's clock to `now` (sends what is due, stamps written packets); a session
    /// that fails on it is closed.
    pub fn advance(&mut self, now: Instant) {
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(id = ?self.id, error = %e, "peer timeout failed; closing it");
            self.rtc.disconnect();
        }
    }

    /// Reports an event to the control plane. A closed channel means the session is already gone
    /// and will remove this peer; nothing to do here.
    pub fn report(&self, event: PeerEvent) {
        let _ = self.events.send(event);
    }

    /// Whether its link carries audio only for now (the SFU decided, from its loss).
    pub fn audio_only(&self) -> bool {
        self.link.allowance() == Allowance::AudioOnly
    }

    /// Whether the camera videos forwarded to it are held back: it asked, or its link is too
    /// weak.
    pub fn camera_paused(&self) -> bool {
        self.video_off || self.audio_only()
    }

    /// The most simulcast layers (from the smallest) its link carries, if it is limited.
    pub fn layer_cap(&self) -> Option<u8> {
        match self.link.allowance() {
            Allowance::UpToLayer(n) => Some(n),
            _ => None,
        }
    }

    /// The mid (and simulcast rid, if any) an incoming SSRC belongs to.
    pub fn mid_of(&mut self, ssrc: Ssrc) -> Option<(Mid, Option<Rid>)> {
        if let Some((_, mid, rid)) = self.ssrc_mids.iter().find(|(s, _, _)| *s == ssrc) {
            return Some((*mid, *rid));
        }
        let mut api = self.rtc.direct_api();
        let stream = api.stream_rx(&ssrc)?;
        let (mid, rid) = (stream.mid(), stream.rid());
        self.ssrc_mids.push((ssrc, mid, rid));
        Some((mid, rid))
    }

    /// The route feeding the forwarded track on `mid`, if it is open.
    pub fn source_of(&self, mid: Mid) -> Option<TrackKey> {
        self.out
            .iter()
            .find(|t| t.state == OutState::Open(mid))
            .map(|t| t.source)
    }

    /// The tracks forwarded to this peer whose negotiation is through.
    pub fn open_sources(&self) -> impl Iterator<Item = TrackKey> + '_ {
        self.out
            .iter()
            .filter(|t| matches!(t.state, OutState::Open(_)))
            .map(|t| t.source)
    }

    /// If forwarded tracks were added or ended and no offer is outstanding, makes the next offer
    /// and reports it. Returns whether it made one.
    pub fn negotiate_if_needed(&mut self) -> bool {
        if self.pending.is_some() || !self.to_negotiate {
            return false;
        }
        self.to_negotiate = false;
        let mut change = self.rtc.sdp_api();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for t in &mut self.out {
            match t.state {
                OutState::ToOpen => {
                    let kind = match t.track.kind {
                        MediaKind::Audio => str0m::media::MediaKind::Audio,
                        MediaKind::Video => str0m::media::MediaKind::Video,
                    };
                    let mid = change.add_media(
                        kind,
                        Direction::SendOnly,
                        Some(t.track.identity.clone()),
                        Some(t.track.track_id.clone()),
                        None,
                    );
                    t.state = OutState::Negotiating(mid);
                    added.push(TrackMapping {
                        mid: mid.to_string(),
                        track: t.track.clone(),
                    });
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    t.state = OutState::Stopping(mid);
                    removed.push(mid.to_string());
                }
                _ => {}
            }
        }
        let Some((offer, pending)) = change.apply() else {
            return false;
        };
        self.pending = Some(pending);
        self.report(PeerEvent::Offer {
            sdp: offer.to_sdp_string(),
            added,
            removed,
        });
        true
    }

    /// Applies the answer to the outstanding offer. Returns the keys of the tracks that are now
    /// open, with their mids, so that the shard adds them to their routes.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<Vec<(TrackKey, Mid)>, SfuError> {
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let pending = self.pending.take().ok_or(SfuError::NoPendingOffer)?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let mut opened = Vec::new();
        let mut api = self.rtc.direct_api();
        for t in &mut self.out {
            if let OutState::Negotiating(mid) = t.state {
                t.state = OutState::Open(mid);
                opened.push((t.source, mid));
                if let Some(stream) = api.stream_tx_by_mid(mid, None) {
                    // The route's cache answers them (see repair.rs).
                    stream.set_nacks_to_app(true);
                }
            }
        }
        self.out
            .retain(|t| !matches!(t.state, OutState::Stopping(_)));
        Ok(opened)
    }

    /// Starts forwarding a track to this peer: its m-line is added in the next offer.
    pub fn open_track(&mut self, source: TrackKey, track: TrackInfo) {
        self.out.push(OutTrack {
            source,
            track,
            state: OutState::ToOpen,
        });
        self.to_negotiate = true;
    }

    /// The track fed by `source` ended: its m-line is stopped in the next offer.
    pub fn unsubscribe(&mut self, source: TrackKey) {
        let to_negotiate = &mut self.to_negotiate;
        self.out.retain_mut(|t| {
            if t.source != source {
                return true;
            }
            match t.state {
                OutState::ToOpen => false,
                OutState::Negotiating(mid) | OutState::Open(mid) => {
                    t.state = OutState::ToStop(mid);
                    *to_negotiate = true;
                    true
                }
                OutState::ToStop(_) | OutState::Stopping(_) => true,
            }
        });
    }
}
