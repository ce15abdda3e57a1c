//! Routes: one per published track, listing the subscribers it is forwarded to and the
//! per-subscriber rewrite state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use jinke_signaling::TrackInfo;
use str0m::format::{Codec, CodecConfig, PayloadParams};
use str0m::media::Rid;
use str0m::media::{ExtensionValues, Mid, Pt};
use str0m::rtp::{RtpPacket, RtpWrite, SeqNo, VideoOrientation};

use crate::PeerId;
use crate::h264::H264Info;
use crate::keyframe::KeyframeCoalescer;
use crate::peer::TrackKey;
use crate::prefetch::SendLines;
use crate::repair::{PacketCache, Sent, SentLog, layer_index};
use crate::rewrite::SeqRewriter;
use crate::simulcast::{LayerFollower, Step, Vp8Info, choose_layer};
use crate::speaker::SpeakerDetector;

/// Most simulcast layers of one track (browsers send up to three); further rids are dropped.
pub(crate) const MAX_LAYERS: usize = 4;

/// A layer that sent nothing for this long is taken as stopped (the publisher's own bandwidth
/// estimate dropped it): subscribers move to another.
const LAYER_STALE: std::time::Duration = std::time::Duration::from_secs(2);

/// One of a track's RTP streams: the only one, or one simulcast layer.
pub(crate) struct Layer {
    /// Its `rid` (`None` for a track without simulcast).
    pub rid: Option<Rid>,
    /// Coalesces the subscribers' keyframe requests for this layer.
    pub keyframes: KeyframeCoalescer,
    /// Its frame size, from its last keyframe.
    pub size: Option<(u16, u16)>,
    /// When its last packet came.
    pub last_seen: Option<Instant>,
}

impl Layer {
    fn new(rid: Option<Rid>) -> Layer {
        Layer {
            rid,
            keyframes: KeyframeCoalescer::default(),
            size: None,
            last_seen: None,
        }
    }
}

/// A published track: where it comes from and where it goes. Every shard holds a route for every
/// track published on any shard, with its own subscribers in it.
pub(crate) struct Route {
    /// The track as announced to clients.
    pub track: TrackInfo,
    /// The room (lesson) it is published in.
    pub room: String,
    /// Whether its publisher lives on this shard (else its packets come from the publisher's).
    pub local: bool,
    /// Its RTP streams, in the order they first came (at least one).
    pub layers: Vec<Layer>,
    /// Everyone this track is forwarded to, one subscription each (added and removed through
    /// `subscribe` and `unsubscribe`, which keep `positions` right).
    subscribers: Vec<Subscription>,
    /// Where each subscriber's subscription is in `subscribers`: a receiver report or a
    /// keyframe request from one student of a lecture finds its own without a pass over all.
    positions: HashMap<PeerId, usize>,
    /// Of a local track: the other shards with subscribers of it, which get its packets.
    pub shards: Vec<usize>,
    /// For a local audio track: whether it carries speech.
    pub speaker: Option<SpeakerDetector>,
    /// A video frame's packets so far, held until its last arrives: then each subscriber gets
    /// the whole frame at once (one GSO send). Emptied, not freed, each frame.
    pub frame: Vec<MediaPacket>,
    /// A video track's recent packets, for its subscribers' NACKs.
    pub cache: PacketCache,
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
            layers: vec![Layer::new(None)],
            subscribers: Vec::new(),
            positions: HashMap::new(),
            shards: Vec::new(),
            speaker,
            frame: Vec::new(),
            cache: PacketCache::default(),
            frame_deadline: None,
        }
    }

    /// The subscriptions, in no particular order.
    pub fn subscribers(&self) -> &[Subscription] {
        &self.subscribers
    }

    /// The subscriptions, to change (not to add or remove).
    pub fn subscribers_mut(&mut self) -> &mut [Subscription] {
        &mut self.subscribers
    }

    /// The subscription of `peer`, if it has one.
    pub fn subscription(&mut self, peer: PeerId) -> Option<&mut Subscription> {
        let &i = self.positions.get(&peer)?;
        self.subscribers.get_mut(i)
    }

    /// The subscription of `peer`, to read.
    fn subscription_of(&self, peer: PeerId) -> Option<&Subscription> {
        self.positions.get(&peer).map(|&i| &self.subscribers[i])
    }

    /// The packet `peer` numbers `seq`, as it was sent to it, to send again (its NACK's
    /// answer), if this track still has it.
    pub fn resend(&self, peer: PeerId, seq: u64, now: Instant) -> Option<RtpWrite> {
        self.subscription_of(peer)?.resend(seq, &self.cache, now)
    }

    /// Adds a subscription, in place of the subscriber's earlier one if it had one.
    pub fn subscribe(&mut self, sub: Subscription) {
        match self.positions.get(&sub.peer) {
            Some(&i) => self.subscribers[i] = sub,
            None => {
                self.positions.insert(sub.peer, self.subscribers.len());
                self.subscribers.push(sub);
            }
        }
    }

    /// Removes `peer`'s subscription, if it has one.
    pub fn unsubscribe(&mut self, peer: PeerId) {
        let Some(i) = self.positions.remove(&peer) else {
            return;
        };
        self.subscribers.swap_remove(i);
        if let Some(moved) = self.subscribers.get(i) {
            self.positions.insert(moved.peer, i);
        }
    }

    /// The index of the layer with this `rid`, added if new (`None` past [`MAX_LAYERS`]).
    pub fn layer_of(&mut self, rid: Option<Rid>) -> Option<u8> {
        if let Some(i) = self.layers.iter().position(|l| l.rid == rid) {
            return Some(i as u8);
        }
        // The placeholder of a track that turns out to be simulcast takes the first rid.
        if let [only] = &mut self.layers[..]
            && only.last_seen.is_none()
        {
            only.rid = rid;
            return Some(0);
        }
        if self.layers.len() >= MAX_LAYERS {
            return None;
        }
        self.layers.push(Layer::new(rid));
        Some((self.layers.len() - 1) as u8)
    }

    /// Notes a packet of a simulcast layer (at `index`, with `rid`, as its publisher's shard
    /// numbered it). Returns true when a keyframe told a new size, so subscribers' targets
    /// must be chosen again.
    pub fn note_layer(
        &mut self,
        index: u8,
        rid: Option<Rid>,
        size: Option<(u16, u16)>,
        now: Instant,
    ) -> bool {
        let index = usize::from(index);
        while self.layers.len() <= index {
            self.layers.push(Layer::new(None));
        }
        let layer = &mut self.layers[index];
        layer.rid = rid;
        layer.last_seen = Some(now);
        if size.is_some() && size != layer.size {
            layer.size = size;
            return true;
        }
        false
    }

    /// Forgets the size of layers that stopped. Returns true if any did.
    pub fn expire_layers(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for layer in &mut self.layers {
            let stale = layer
                .last_seen
                .is_some_and(|t| now.saturating_duration_since(t) > LAYER_STALE);
            if stale && layer.size.take().is_some() {
                changed = true;
            }
        }
        changed
    }

    /// Chooses each subscriber's layer again. Returns the layers a subscriber now waits for a
    /// keyframe of.
    pub fn retarget(&mut self) -> Vec<u8> {
        let mut sizes = [None; MAX_LAYERS];
        for (size, layer) in sizes.iter_mut().zip(&self.layers) {
            *size = layer.size;
        }
        let sizes = &sizes[..self.layers.len()];
        let mut wanted = Vec::new();
        for sub in &mut self.subscribers {
            sub.layers
                .set_target(choose_layer(sizes, sub.view, sub.layer_cap));
            if let Some(layer) = sub.layers.awaiting()
                && !wanted.contains(&layer)
            {
                wanted.push(layer);
            }
        }
        wanted
    }

    /// A subscriber asks for a keyframe of `layer` at `now`: true when the request must go to
    /// the publisher now (else it is deferred, see [`KeyframeCoalescer`]).
    pub fn ask_keyframe(&mut self, layer: u8, now: Instant) -> bool {
        self.layers
            .get_mut(usize::from(layer))
            .is_some_and(|l| l.keyframes.request(now))
    }

    /// The layer a subscriber's keyframe request is for: the one it waits for, else the one it
    /// gets.
    pub fn layer_for(&self, peer: PeerId) -> u8 {
        self.subscription_of(peer)
            .and_then(|s| s.layers.awaiting().or(s.layers.current()))
            .unwrap_or(0)
    }
}

/// A publisher's RTP packet as it is forwarded: decrypted once by the publisher's shard, then
/// shared (behind an `Arc`) with each other shard, which fans it out to its own subscribers.
/// A clone (a video frame's packets are held until the frame is whole) shares the payload.
#[derive(Clone)]
pub(crate) struct MediaPacket {
    /// The track it belongs to.
    pub source: TrackKey,
    /// The publisher's codec parameters for its payload type.
    pub params: PayloadParams,
    /// The publisher's payload type.
    pub pt: Pt,
    /// The layer (index in the route's layers) and its rid; `None` without simulcast.
    pub layer: Option<(u8, Rid)>,
    /// For a simulcast VP8 packet: its descriptor (to rewrite its ids).
    pub vp8: Option<Vp8Info>,
    /// For a simulcast packet: whether a subscriber may switch to its layer here (it starts a
    /// keyframe; any packet of a codec the SFU does not read).
    pub keyframe: bool,
    /// For a simulcast keyframe: the frame size it states, when the SFU can read it.
    pub size: Option<(u16, u16)>,
    /// Extended sequence number.
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    /// The header extensions passed on.
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub video_orientation: Option<VideoOrientation>,
    /// Shared by every subscriber's write and the track's resend cache (str0m encrypts it
    /// into the outbox for each subscriber).
    pub payload: Arc<[u8]>,
}

impl MediaPacket {
    /// For tests: the parameters of `codec` in str0m's default codec config.
    #[cfg(test)]
    pub fn params_of(codec: str0m::format::Codec) -> PayloadParams {
        *str0m::format::CodecConfig::new_with_defaults()
            .iter()
            .find(|p| p.spec().codec == codec)
            .expect("a default codec")
    }

    /// For tests: a packet of the track `(PeerId(9), "v")` in `params`'s codec, numbered `seq`
    /// (its payload, 50 bytes of `seq`, and timestamp follow from it).
    #[cfg(test)]
    pub fn for_test(params: PayloadParams, layer: Option<(u8, Rid)>, seq: u64) -> MediaPacket {
        MediaPacket {
            source: (PeerId(9), Mid::from("v")),
            params,
            pt: params.pt(),
            layer,
            vp8: None,
            keyframe: true,
            size: None,
            seq,
            timestamp: 3000 * seq as u32,
            marker: true,
            audio_level: None,
            voice_activity: None,
            video_orientation: None,
            payload: vec![seq as u8; 50].into(),
        }
    }

    /// Takes what forwarding needs out of a packet str0m received (the payload is moved).
    /// `layer` is its simulcast layer; only then is the payload read (a VP8 descriptor, H.264
    /// NAL unit types and SPS).
    pub fn new(
        source: TrackKey,
        params: PayloadParams,
        layer: Option<(u8, Rid)>,
        packet: RtpPacket,
    ) -> MediaPacket {
        let ext = &packet.header.ext_vals;
        let (vp8, keyframe, size) = match (layer, params.spec().codec) {
            (Some(_), Codec::Vp8) => {
                let vp8 = Vp8Info::parse(&packet.payload);
                (
                    vp8,
                    vp8.is_none_or(|v| v.keyframe),
                    vp8.and_then(|v| v.size),
                )
            }
            (Some(_), Codec::H264) => {
                let h264 = H264Info::parse(&packet.payload);
                (None, h264.keyframe, h264.size)
            }
            _ => (None, true, None),
        };
        MediaPacket {
            source,
            params,
            pt: packet.header.payload_type,
            layer,
            vp8,
            keyframe,
            size,
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

/// A receiver report's cumulative loss, a signed 24-bit field, as a number.
fn sign_extend_24(field: u64) -> i64 {
    let field = (field & 0xff_ffff) as i64;
    if field >= 0x80_0000 {
        field - 0x100_0000
    } else {
        field
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
    /// Of a simulcast track: which layer it gets.
    pub layers: LayerFollower,
    /// The size the subscriber shows the video at, if it said.
    pub view: Option<(u16, u16)>,
    /// The most its link carries: up to this many layers from the smallest.
    pub layer_cap: Option<u8>,
    /// Where the subscriber's last receiver report of this stream stood.
    reported: ReportMark,
    /// What it was sent lately (video), to answer its NACKs.
    sent: SentLog,
    /// The subscriber's session in the cache, as the last send found it.
    pub lines: SendLines,
}

/// A receiver report's cumulative figures (RFC 3550 6.4.1), with the server's own count of
/// holes to match: the next report's loss is judged against them.
#[derive(Debug, Default)]
struct ReportMark {
    /// The highest sequence number received.
    max_seq: u64,
    /// Packets lost so far (may fall: late packets count as received).
    lost: i64,
    /// Sequence numbers up to `max_seq` the server left as gaps (lost before it).
    holes: u64,
}

impl Subscription {
    pub fn new(peer: PeerId, mid: Mid) -> Subscription {
        Subscription {
            peer,
            mid,
            seq: SeqRewriter::default(),
            pt_map: [None; 128],
            paused: false,
            layers: LayerFollower::default(),
            view: None,
            layer_cap: None,
            reported: ReportMark::default(),
            sent: SentLog::default(),
            lines: SendLines::default(),
        }
    }

    /// The share of what the server sent that the subscriber's link lost, between its last
    /// receiver report and this one (highest number received `max_seq`, cumulative loss
    /// `lost`, a signed 24-bit field). The gaps the publisher's own loss left in the stream
    /// count as lost in the reports but are taken out here: a teacher's lossy or dead uplink
    /// is not the students' weak links. A single packet lost counts as none: in a report that
    /// covers few packets (the first after an outage, a thin moment) it is no sign of a weak
    /// link. `None` when the report covers nothing sent.
    pub fn downlink_loss(&mut self, max_seq: u64, lost: u64) -> Option<f32> {
        if max_seq <= self.reported.max_seq {
            return None;
        }
        let lost = sign_extend_24(lost);
        let holes = self.seq.holes_through(max_seq);
        let new_holes = (holes - self.reported.holes) as i64;
        let sent = (max_seq - self.reported.max_seq) as i64 - new_holes;
        let lost_here = lost - self.reported.lost - new_holes;
        self.reported = ReportMark {
            max_seq,
            lost,
            holes,
        };
        let lost_here = if lost_here > 1 { lost_here } else { 0 };
        (sent > 0).then(|| (lost_here as f32 / sent as f32).min(1.0))
    }

    /// Pauses or resumes forwarding; a resumed stream continues without a sequence gap.
    pub fn set_paused(&mut self, paused: bool) {
        if self.paused && !paused {
            self.seq.resume();
            self.layers.restart();
        }
        self.paused = paused;
    }

    /// Whether a batch of packets may have something for this subscriber: `layers` has a bit
    /// per simulcast layer among them, `None` if any is not simulcast. False only where
    /// [`Self::rewrite`] returns nothing for each: paused, or layers it neither gets nor
    /// waits to switch to. A cheap test, before the subscriber's session is looked up.
    pub fn may_take(&self, layers: Option<u8>) -> bool {
        !self.paused && layers.is_none_or(|mask| self.layers.taken() & mask != 0)
    }

    /// The numbers this subscriber gets one of the publisher's packets under (its payload
    /// type, sequence number, timestamp and VP8 ids: [`Sent::number`] gives them to the
    /// packet's write), noted for resends; `None` if it gets none (paused, no matching codec
    /// in `codecs`, another layer, or older than the subscription).
    pub fn rewrite(
        &mut self,
        codecs: &CodecConfig,
        packet: &MediaPacket,
        now: Instant,
    ) -> Option<Sent> {
        if self.paused {
            return None;
        }
        let pt_in = *packet.pt as usize & 0x7f;
        let pt = match self.pt_map[pt_in] {
            Some(pt) => pt,
            None => *self.pt_map[pt_in].insert(codecs.match_params(packet.params)?.pt()),
        };
        let mut timestamp = packet.timestamp;
        let mut switched = false;
        if let Some((layer, _)) = packet.layer {
            match self
                .layers
                .step(layer, packet.keyframe, packet.timestamp, now)
            {
                Step::Drop => return None,
                Step::Forward {
                    timestamp: ts,
                    switched: s,
                } => (timestamp, switched) = (ts, s),
            }
            if switched {
                self.seq.resume();
            }
        }
        let seq = self.seq.rewrite(packet.seq)?;
        // Picture ids advance only for packets that go out.
        let (picture_id, tl0_pic_idx) = match (packet.layer, &packet.vp8) {
            (Some(_), Some(vp8)) => self
                .layers
                .vp8_ids(vp8.picture_id, vp8.tl0_pic_idx, switched),
            _ => (None, None),
        };
        let sent = Sent {
            seq,
            layer: layer_index(packet) as u8,
            source_seq: packet.seq,
            pt,
            timestamp,
            picture_id,
            tl0_pic_idx,
        };
        if packet.params.spec().codec.is_video() {
            self.sent.note(sent);
        }
        Some(sent)
    }

    /// The packet this subscriber numbers `seq` as it was sent, to send again (a NACK's answer),
    /// if it was noted and `cache` still has it.
    fn resend(&self, seq: u64, cache: &PacketCache, now: Instant) -> Option<RtpWrite> {
        let sent = self.sent.get(seq)?;
        let packet = cache.get(sent.layer as usize, sent.source_seq, now)?;
        let mut write = write_for(packet, now);
        sent.number(packet, &mut write);
        Some(write)
    }
}

/// A publisher's packet as every subscriber is sent it, numbered for none yet
/// ([`Sent::number`] numbers it for one): made once per packet and renumbered per subscriber.
/// str0m keeps no copy for resends (the track's [`PacketCache`] does).
pub(crate) fn write_for(packet: &MediaPacket, now: Instant) -> RtpWrite {
    let ext_vals = ExtensionValues {
        audio_level: packet.audio_level,
        voice_activity: packet.voice_activity,
        video_orientation: packet.video_orientation,
        ..Default::default()
    };
    RtpWrite::new(
        packet.pt,
        SeqNo::from(packet.seq),
        packet.timestamp,
        now,
        packet.payload.clone(),
    )
    .marker(packet.marker)
    .ext_vals(ext_vals)
    .nackable(false)
}

impl Sent {
    /// Gives `write` (of `packet`, [`write_for`]) the numbers the subscriber has it under.
    pub(crate) fn number(&self, packet: &MediaPacket, write: &mut RtpWrite) {
        let vp8_patch = packet.layer.and(packet.vp8.as_ref()).and_then(|vp8| {
            let mut patch = vp8.descriptor.patch();
            if let Some(pid) = self.picture_id {
                patch = patch.picture_id(pid);
            }
            if let Some(tl0) = self.tl0_pic_idx {
                patch = patch.tl0_pic_idx(tl0);
            }
            patch.build().ok()
        });
        write.renumber(self.pt, SeqNo::from(self.seq), self.timestamp, vp8_patch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription() -> Subscription {
        Subscription::new(PeerId(1), Mid::from("0"))
    }

    /// Forwards the publisher's numbers `seqs` and returns the subscriber's.
    fn forward(sub: &mut Subscription, seqs: impl IntoIterator<Item = u64>) -> Vec<u64> {
        seqs.into_iter()
            .filter_map(|s| sub.seq.rewrite(s))
            .collect()
    }

    #[test]
    fn the_publishers_loss_is_not_the_subscribers() {
        let mut sub = subscription();
        // Every fifth packet lost before the server: out 1..=100 with 20 holes.
        let sent = forward(&mut sub, (1000..1100).filter(|s| s % 5 != 0));
        assert_eq!(sent.len(), 80);
        let max = *sent.last().unwrap();
        assert_eq!(max, 99);
        // The subscriber got all that was sent: it reports the holes as lost.
        assert_eq!(sub.downlink_loss(max, 19), Some(0.0));
        // Next second: 40 more sent, 10 holes; its link lost 8 of the 40.
        let sent = forward(&mut sub, (1100..1150).filter(|s| s % 5 != 0));
        let max = *sent.last().unwrap();
        assert_eq!(sub.downlink_loss(max, 19 + 10 + 8), Some(8.0 / 40.0));
    }

    #[test]
    fn a_gap_counts_only_once_a_report_reaches_it() {
        let mut sub = subscription();
        forward(&mut sub, 0..50);
        // The teacher's link was dead: 300 numbers never came.
        forward(&mut sub, 350..400);
        // A report written before the first packet after the gap reached the subscriber.
        assert_eq!(sub.downlink_loss(50, 0), Some(0.0));
        // The next one spans the gap.
        assert_eq!(sub.downlink_loss(400, 300), Some(0.0));
        // Had the subscriber lost 25 of those 50 itself:
        let mut sub = subscription();
        forward(&mut sub, (0..50).chain(350..400));
        assert_eq!(sub.downlink_loss(400, 325), Some(0.25));
    }

    #[test]
    fn a_repair_from_the_publisher_leaves_its_hole_discounted() {
        let mut sub = subscription();
        forward(&mut sub, (0..10).chain(11..20));
        assert_eq!(sub.downlink_loss(20, 1), Some(0.0), "the hole at 11");
        // The server's NACK brought it back and it was forwarded late.
        forward(&mut sub, [10]);
        forward(&mut sub, 20..30);
        // Counted received or not, it is not the subscriber's loss.
        assert_eq!(sub.downlink_loss(30, 1), Some(0.0));
        let mut sub = subscription();
        forward(&mut sub, (0..10).chain(11..20));
        sub.downlink_loss(20, 1);
        forward(&mut sub, [10]);
        forward(&mut sub, 20..30);
        assert_eq!(sub.downlink_loss(30, 0), Some(0.0));
        // Loss on the subscriber's link is still seen (the repair counted received hides one).
        forward(&mut sub, 30..40);
        assert_eq!(sub.downlink_loss(40, 5), Some(0.5));
    }

    #[test]
    fn one_packet_lost_is_no_sign_of_a_weak_link() {
        let mut sub = subscription();
        forward(&mut sub, 0..8);
        assert_eq!(sub.downlink_loss(8, 1), Some(0.0), "1 of 8");
        forward(&mut sub, 8..16);
        assert_eq!(sub.downlink_loss(16, 3), Some(0.25), "2 of 8");
    }

    #[test]
    fn reports_that_say_nothing_new_are_not_judged() {
        let mut sub = subscription();
        forward(&mut sub, 0..10);
        assert_eq!(sub.downlink_loss(10, 0), Some(0.0));
        assert_eq!(sub.downlink_loss(10, 0), None, "nothing since");
        assert_eq!(sub.downlink_loss(9, 0), None, "an older report");
    }

    #[test]
    fn a_subscriber_passed_over_would_have_got_nothing() {
        let codecs = CodecConfig::new_with_defaults();
        let vp8 = MediaPacket::params_of(Codec::Vp8);
        let now = Instant::now();
        let rids = [Rid::from("q"), Rid::from("h"), Rid::from("f")];
        let mut seqs = [100_u64, 5000, 9000];
        let mut sub = subscription();
        let mut got = [0; 3];
        // No target yet, then the top layer, a switch down, a pause and a resume.
        for step in 0..60 {
            match step {
                10 => sub.layers.set_target(Some(2)),
                30 => sub.layers.set_target(Some(0)),
                40 => sub.set_paused(true),
                45 => sub.set_paused(false),
                _ => {}
            }
            if step == 20 {
                assert!(!sub.may_take(Some(0b011)), "following the top layer only");
            }
            for layer in 0..3_u8 {
                let i = usize::from(layer);
                let mut packet = MediaPacket::for_test(vp8, Some((layer, rids[i])), seqs[i]);
                packet.keyframe = step % 7 == 0;
                seqs[i] += 1;
                let may = sub.may_take(Some(1 << layer));
                let sent = sub.rewrite(&codecs, &packet, now).is_some();
                assert!(may || !sent, "step {step}: layer {layer} was for it");
                got[i] += usize::from(sent);
            }
        }
        assert!(got[0] > 0 && got[1] == 0 && got[2] > 0, "{got:?}");
        // Without simulcast: whoever is not paused.
        assert!(sub.may_take(None));
        sub.set_paused(true);
        assert!(!sub.may_take(None));
    }

    /// A local route of a camera video.
    fn video_route() -> Route {
        let track = TrackInfo {
            track_id: "t".into(),
            identity: "teacher".into(),
            kind: jinke_signaling::MediaKind::Video,
            screen: false,
        };
        Route::new(track, "room".into(), true)
    }

    #[test]
    fn a_nacked_packet_is_found_as_it_was_sent_until_the_cache_lets_it_go() {
        let mut route = video_route();
        route.subscribe(Subscription::new(PeerId(1), Mid::from("a")));
        let codecs = CodecConfig::new_with_defaults();
        let (vp8, opus) = (
            MediaPacket::params_of(Codec::Vp8),
            MediaPacket::params_of(Codec::Opus),
        );
        let now = Instant::now();
        // The publisher's 500..510, 503 lost before the server: the subscriber's 1..=10.
        for seq in (500..510).filter(|&s| s != 503) {
            let packet = MediaPacket::for_test(vp8, None, seq);
            route.cache.insert(&packet, now);
            let sub = route.subscription(PeerId(1)).unwrap();
            assert!(sub.rewrite(&codecs, &packet, now).is_some());
        }
        let sub = route.subscription(PeerId(1)).unwrap();
        let sent = sub.sent.get(5).expect("noted");
        assert_eq!((sent.source_seq, sent.timestamp), (504, 3000 * 504));
        assert_eq!(sent.pt, vp8.pt());
        for seq in (1..=10).filter(|&s| s != 4) {
            assert!(route.resend(PeerId(1), seq, now).is_some(), "{seq}");
        }
        assert!(
            route.resend(PeerId(1), 4, now).is_none(),
            "the gap: never sent"
        );
        assert!(route.resend(PeerId(1), 11, now).is_none(), "not yet sent");
        assert!(
            route.resend(PeerId(2), 1, now).is_none(),
            "not a subscriber"
        );
        let later = now + crate::repair::KEEP + std::time::Duration::from_millis(1);
        assert!(route.resend(PeerId(1), 1, later).is_none(), "too old");

        // Sound is not noted (no RTX for it).
        let mut sub = Subscription::new(PeerId(2), Mid::from("b"));
        let sound = MediaPacket::for_test(opus, None, 7);
        assert!(sub.rewrite(&codecs, &sound, now).is_some());
        assert!(sub.sent.get(1).is_none());
    }

    #[test]
    fn a_second_of_a_high_rate_layer_stays_repairable() {
        let mut route = video_route();
        route.subscribe(Subscription::new(PeerId(1), Mid::from("a")));
        let codecs = CodecConfig::new_with_defaults();
        let vp8 = MediaPacket::params_of(Codec::Vp8);
        // A 4 Mbps screen share: ~420 packets of 1,200 bytes in the second a packet is kept.
        let start = Instant::now();
        let packets = 420;
        let mut now = start;
        for seq in 0..packets {
            now = start + crate::repair::KEEP * seq as u32 / packets as u32;
            let packet = MediaPacket::for_test(vp8, None, seq);
            route.cache.insert(&packet, now);
            let sub = route.subscription(PeerId(1)).unwrap();
            assert!(sub.rewrite(&codecs, &packet, now).is_some());
        }
        assert!(
            route.resend(PeerId(1), 1, now).is_some(),
            "the oldest packet of the second is still answered"
        );
    }

    #[test]
    fn each_subscriber_finds_its_own_subscription() {
        let mut route = video_route();
        for i in 1..=4 {
            route.subscribe(Subscription::new(PeerId(i), Mid::from("a")));
        }
        route.subscribe(Subscription::new(PeerId(3), Mid::from("b")));
        assert_eq!(
            route.subscribers().len(),
            4,
            "a second subscription replaces the first"
        );
        route.unsubscribe(PeerId(1));
        route.unsubscribe(PeerId(9));
        assert_eq!(route.subscribers().len(), 3);
        for (peer, mid) in [(2, "a"), (3, "b"), (4, "a")] {
            let sub = route.subscription(PeerId(peer)).expect("subscribed");
            assert_eq!((sub.peer, sub.mid), (PeerId(peer), Mid::from(mid)));
        }
        assert!(route.subscription(PeerId(1)).is_none());
        route.unsubscribe(PeerId(4));
        route.unsubscribe(PeerId(2));
        assert_eq!(
            route.subscription(PeerId(3)).map(|s| s.peer),
            Some(PeerId(3))
        );
        route.unsubscribe(PeerId(3));
        assert!(route.subscribers().is_empty());
    }

    #[test]
    fn cumulative_loss_is_a_signed_24_bit_field() {
        assert_eq!(sign_extend_24(5), 5);
        assert_eq!(
            sign_extend_24(0xff_ffff),
            -1,
            "a duplicate more than expected"
        );
        let mut sub = subscription();
        forward(&mut sub, 0..10);
        assert_eq!(sub.downlink_loss(10, 0xff_ffff), Some(0.0));
    }
}
