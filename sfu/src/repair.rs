//! What answering a subscriber's NACK needs: the track's recent packets, kept once per track
//! ([`PacketCache`]), and what each subscriber was sent under which of its own sequence numbers
//! ([`SentLog`]). str0m would keep a copy of every packet (an `RtpPacket`: 408 bytes,
//! `size_of::<str0m::rtp::RtpPacket>()` on x86-64) in each subscriber's send stream, moved
//! there per packet per subscriber; our patched str0m hands the
//! NACKs to us instead (`Event::NackRequest`), and a resend is rebuilt from these two.

use std::time::{Duration, Instant};

use str0m::media::Pt;

use crate::route::MediaPacket;

/// How long a track's packets are kept for resends. A packet repaired later than a second is of
/// no use to a live picture (the receiver has asked for a keyframe by then). (Janus keeps at
/// least 500 ms, longer on long round trips: `min_nack_queue`.)
pub(crate) const KEEP: Duration = Duration::from_secs(1);

/// Packets kept per layer, and noted per subscription: a power of two, over a second of a
/// 4 Mbps layer (~420 packets of 1,200 bytes). One number for both: a subscriber gets one layer
/// at a time under continuous numbers, so its second is at most a second of the highest layer,
/// and a log shorter than the cache would let a resend go before [`KEEP`] has passed.
const SLOTS: usize = 512;

/// The recent packets of one forwarded video track, by layer and the publisher's sequence
/// number. The payloads are the ones forwarded (shared, not copied).
#[derive(Default)]
pub(crate) struct PacketCache {
    /// Per layer (index 0 without simulcast), `SLOTS` slots by sequence number; a
    /// layer's slots are allocated when its first packet comes.
    layers: Vec<Vec<Option<(Instant, MediaPacket)>>>,
}

impl PacketCache {
    /// Keeps a packet (replacing the one `SLOTS` numbers before it).
    pub fn insert(&mut self, packet: &MediaPacket, now: Instant) {
        let layer = layer_index(packet);
        if self.layers.len() <= layer {
            self.layers.resize_with(layer + 1, Vec::new);
        }
        let slots = &mut self.layers[layer];
        if slots.is_empty() {
            slots.resize_with(SLOTS, || None);
        }
        slots[packet.seq as usize % SLOTS] = Some((now, packet.clone()));
    }

    /// The packet of `layer` numbered `seq` by its publisher, if it is still kept.
    pub fn get(&self, layer: usize, seq: u64, now: Instant) -> Option<&MediaPacket> {
        let (at, packet) = self
            .layers
            .get(layer)?
            .get(seq as usize % SLOTS)?
            .as_ref()?;
        (packet.seq == seq && now.saturating_duration_since(*at) <= KEEP).then_some(packet)
    }
}

/// The cache's layer index of a packet.
pub(crate) fn layer_index(packet: &MediaPacket) -> usize {
    packet.layer.map_or(0, |(layer, _)| layer as usize)
}

/// How one packet went to a subscriber: enough to send it again exactly so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// The subscriber's sequence number for it.
    pub seq: u64,
    /// The publisher's layer index and sequence number (where [`PacketCache`] has it).
    pub layer: u8,
    pub source_seq: u64,
    /// Its payload type, timestamp and VP8 ids as the subscriber got them.
    pub pt: Pt,
    pub timestamp: u32,
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
}

/// What one subscription was sent lately, by the subscriber's sequence number. Allocated once,
/// when the first packet is noted (video subscriptions only note theirs).
#[derive(Default)]
pub(crate) struct SentLog {
    slots: Vec<Option<Sent>>,
}

impl SentLog {
    /// Notes a packet sent.
    pub fn note(&mut self, sent: Sent) {
        if self.slots.is_empty() {
            self.slots = vec![None; SLOTS];
        }
        self.slots[sent.seq as usize % SLOTS] = Some(sent);
    }

    /// How the packet the subscriber numbers `seq` went, if it is still noted.
    pub fn get(&self, seq: u64) -> Option<Sent> {
        self.slots
            .get(seq as usize % SLOTS)
            .copied()
            .flatten()
            .filter(|s| s.seq == seq)
    }
}

#[cfg(test)]
mod tests {
    use str0m::format::Codec;
    use str0m::media::Rid;

    use super::*;

    fn packet(layer: Option<u8>, seq: u64) -> MediaPacket {
        let vp8 = MediaPacket::params_of(Codec::Vp8);
        MediaPacket::for_test(vp8, layer.map(|l| (l, Rid::from("q"))), seq)
    }

    #[test]
    fn the_cache_finds_a_packet_by_layer_and_number_while_it_is_kept() {
        let now = Instant::now();
        let mut cache = PacketCache::default();
        cache.insert(&packet(None, 7), now);
        cache.insert(&packet(Some(2), 7), now);
        assert_eq!(cache.get(0, 7, now).map(|p| p.layer), Some(None));
        assert_eq!(
            cache.get(2, 7, now).map(|p| p.layer.map(|l| l.0)),
            Some(Some(2))
        );
        assert!(cache.get(1, 7, now).is_none(), "no packet of layer 1");
        assert!(cache.get(0, 8, now).is_none(), "never came");
        // The slot's next occupant takes its place.
        cache.insert(&packet(None, 7 + SLOTS as u64), now);
        assert!(cache.get(0, 7, now).is_none());
        assert!(cache.get(0, 7 + SLOTS as u64, now).is_some());
        assert!(cache.get(2, 7, now + KEEP).is_some(), "kept a second");
        let later = now + KEEP + Duration::from_millis(1);
        assert!(cache.get(2, 7, later).is_none(), "then let go");
    }

    #[test]
    fn the_log_finds_what_went_under_a_number_until_it_is_overwritten() {
        let sent = |seq| Sent {
            seq,
            layer: 1,
            source_seq: seq + 1000,
            pt: 96.into(),
            timestamp: 90,
            picture_id: Some(5),
            tl0_pic_idx: None,
        };
        let mut log = SentLog::default();
        assert!(log.get(0).is_none(), "empty");
        log.note(sent(3));
        assert_eq!(log.get(3), Some(sent(3)));
        assert!(log.get(4).is_none());
        log.note(sent(3 + SLOTS as u64));
        assert!(log.get(3).is_none(), "overwritten");
        assert_eq!(log.get(3 + SLOTS as u64), Some(sent(3 + SLOTS as u64)));
    }
}
