//! Routes: one per published track, listing the subscribers it is forwarded to and the
//! per-subscriber rewrite state.

use std::sync::Arc;
use std::time::Instant;

use jinke_signaling::TrackInfo;
use str0m::Rtc;
use str0m::format::PayloadParams;
use str0m::media::{ExtensionValues, Mid, Pt};
use str0m::rtp::{RtpPacket, RtpWrite, SeqNo, VideoOrientation};

use crate::PeerId;
use crate::keyframe::KeyframeCoalescer;
use crate::peer::TrackKey;
use crate::rewrite::SeqRewriter;
use crate::speaker::SpeakerDetector;

/// A published track: where it comes from and where it goes. Every shard holds a route for every
/// track published on any shard, with its own subscribers in it.
pub(crate) struct Route {
    /// The track as announced to clients.
    pub track: TrackInfo,
    /// The room (lesson) it is published in.
    pub room: String,
    /// Whether its publisher lives on this shard (else its packets come from the publisher's).
    pub local: bool,
    /// Coalesces the subscribers' keyframe requests for this track.
    pub keyframes: KeyframeCoalescer,
    /// Everyone this track is forwarded to.
    pub subscribers: Vec<Subscription>,
    /// For a local audio track: whether it carries speech.
    pub speaker: Option<SpeakerDetector>,
    /// While a video frame's first packets wait for its last: when they are sent anyway.
    pub frame_deadline: Option<Instant>,
}

impl Route {
    pub fn new(track: TrackInfo, room: String, local: bool) -> Route {
        let speaker = (local && track.kind == jinke_signaling::MediaKind::Audio)
            .then(SpeakerDetector::default);
        Route {
            track,
            room,
            local,
            keyframes: KeyframeCoalescer::default(),
            subscribers: Vec::new(),
            speaker,
            frame_deadline: None,
        }
    }
}

/// A publisher's RTP packet as it is forwarded: decrypted once by the publisher's shard, then
/// shared (behind an `Arc`) with each other shard, which fans it out to its own subscribers.
pub(crate) struct MediaPacket {
    /// The track it belongs to.
    pub source: TrackKey,
    /// The publisher's codec parameters for its payload type.
    pub params: PayloadParams,
    /// The publisher's payload type.
    pub pt: Pt,
    /// Extended sequence number.
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    /// The header extensions passed on.
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub video_orientation: Option<VideoOrientation>,
    /// Shared by every subscriber's send stream (str0m encrypts into its own buffer).
    pub payload: Arc<[u8]>,
}

impl MediaPacket {
    /// Takes what forwarding needs out of a packet str0m received (the payload is moved).
    pub fn new(source: TrackKey, params: PayloadParams, packet: RtpPacket) -> MediaPacket {
        let ext = &packet.header.ext_vals;
        MediaPacket {
            source,
            params,
            pt: packet.header.payload_type,
            seq: *packet.seq_no,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            audio_level: ext.audio_level,
            voice_activity: ext.voice_activity,
            video_orientation: ext.video_orientation,
            payload: packet.payload,
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

    /// Writes one of the publisher's packets into the subscriber's session. Returns false if
    /// the packet was not forwarded (no matching codec, no send stream yet, or older than the
    /// subscription).
    pub fn forward(&mut self, rtc: &mut Rtc, packet: &MediaPacket, now: Instant) -> bool {
        if self.paused {
            return false;
        }
        let pt_in = *packet.pt as usize & 0x7f;
        let pt = match self.pt_map[pt_in] {
            Some(pt) => pt,
            None => match rtc.codec_config().match_params(packet.params) {
                Some(p) => *self.pt_map[pt_in].insert(p.pt()),
                None => return false,
            },
        };
        let Some(seq) = self.seq.rewrite(packet.seq) else {
            return false;
        };
        let mut api = rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(self.mid, None) else {
            return false;
        };
        let ext_vals = ExtensionValues {
            audio_level: packet.audio_level,
            voice_activity: packet.voice_activity,
            video_orientation: packet.video_orientation,
            ..Default::default()
        };
        stream.write_rtp(
            RtpWrite::new(
                pt,
                SeqNo::from(seq),
                packet.timestamp,
                now,
                packet.payload.clone(),
            )
            .marker(packet.marker)
            .ext_vals(ext_vals)
            .nackable(true),
        );
        true
    }
}
