//! Routes: one per published track, listing the subscribers it is forwarded to and the
//! per-subscriber rewrite state.

use std::time::Instant;

use jinke_signaling::TrackInfo;
use str0m::Rtc;
use str0m::format::PayloadParams;
use str0m::media::{ExtensionValues, Mid, Pt};
use str0m::rtp::{RtpPacket, RtpWrite, SeqNo};

use crate::PeerId;
use crate::keyframe::KeyframeCoalescer;
use crate::rewrite::SeqRewriter;
use crate::speaker::SpeakerDetector;

/// A published track: where it comes from and where it goes.
pub(crate) struct Route {
    /// The track as announced to clients.
    pub track: TrackInfo,
    /// Coalesces the subscribers' keyframe requests for this track.
    pub keyframes: KeyframeCoalescer,
    /// Everyone this track is forwarded to.
    pub subscribers: Vec<Subscription>,
    /// For an audio track: whether it carries speech.
    pub speaker: Option<SpeakerDetector>,
}

impl Route {
    pub fn new(track: TrackInfo) -> Route {
        let speaker =
            (track.kind == jinke_signaling::MediaKind::Audio).then(SpeakerDetector::default);
        Route {
            track,
            keyframes: KeyframeCoalescer::default(),
            subscribers: Vec::new(),
            speaker,
        }
    }
}

/// Forwarding state of one track towards one subscriber.
pub(crate) struct Subscription {
    /// The subscribing peer.
    pub peer: PeerId,
    /// The m-line in the subscriber's session that carries the track.
    pub mid: Mid,
    seq: SeqRewriter,
    /// The subscriber's payload type for each of the publisher's (learned on first use).
    pt_map: [Option<Pt>; 128],
    /// Not forwarded for now (a camera video the subscriber turned off).
    pub paused: bool,
}

impl Subscription {
    pub fn new(peer: PeerId, mid: Mid) -> Subscription {
        Subscription {
            peer,
            mid,
            seq: SeqRewriter::default(),
            pt_map: [None; 128],
            paused: false,
        }
    }

    /// Pauses or resumes forwarding; a resumed stream continues without a sequence gap.
    pub fn set_paused(&mut self, paused: bool) {
        if self.paused && !paused {
            self.seq.resume();
        }
        self.paused = paused;
    }

    /// Writes one of the publisher's packets into the subscriber's session. `params` are the
    /// publisher's codec parameters for the packet's payload type. Returns false if the packet was
    /// not forwarded (no matching codec, no send stream yet, or older than the subscription).
    pub fn forward(
        &mut self,
        rtc: &mut Rtc,
        packet: &RtpPacket,
        params: &PayloadParams,
        now: Instant,
    ) -> bool {
        if self.paused {
            return false;
        }
        let pt_in = *packet.header.payload_type as usize & 0x7f;
        let pt = match self.pt_map[pt_in] {
            Some(pt) => pt,
            None => match rtc.codec_config().match_params(*params) {
                Some(p) => *self.pt_map[pt_in].insert(p.pt()),
                None => return false,
            },
        };
        let Some(seq) = self.seq.rewrite(*packet.seq_no) else {
            return false;
        };
        let mut api = rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(self.mid, None) else {
            return false;
        };
        let ext = &packet.header.ext_vals;
        let ext_vals = ExtensionValues {
            audio_level: ext.audio_level,
            voice_activity: ext.voice_activity,
            video_orientation: ext.video_orientation,
            ..Default::default()
        };
        stream.write_rtp(
            RtpWrite::new(
                pt,
                SeqNo::from(seq),
                packet.header.timestamp,
                now,
                packet.payload.clone(),
            )
            .marker(packet.header.marker)
            .ext_vals(ext_vals)
            .nackable(true),
        );
        true
    }
}
