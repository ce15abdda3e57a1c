//! Media out of a shard: a publisher's packet forwarded to the other shards and to this one's
//! subscribers (a video frame held until its last packet, then one send per subscriber), NACKs
//! answered from the track's cache, and keyframe requests coalesced per publisher track.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jinke_signaling::MediaKind;
use str0m::media::{KeyframeRequestKind, NackRequest};

use super::{FLUSH_EVERY, Shard};
use crate::peer::TrackKey;
use crate::route::{MediaPacket, write_for};
use crate::{Command, PeerEvent, PeerId};

/// The longest a video frame's packets wait for its last packet before they are sent anyway.
const FRAME_HOLD: Duration = Duration::from_millis(5);

impl Shard {
    /// Forwards one received packet to every subscriber of its track: first to the other
    /// shards that have some (once each, shared), then to this shard's. In that order the other
    /// shards fan out while this one does: handed over after this shard's own fan-out, a frame
    /// reached their subscribers only after a whole fan-out here (an estimate: 125 subscribers
    /// × ~3 packets × ~4.5 us a send, the 16-core machine's cost, is ~1.7 ms; BENCHMARKS.md has
    /// what two shards measured).
    pub(super) fn forward(&mut self, id: PeerId, packet: str0m::rtp::RtpPacket) {
        let Some(publisher) = self.peers.get_mut(&id) else {
            return;
        };
        let Some((mid, rid)) = publisher.mid_of(packet.header.ssrc) else {
            return;
        };
        let Some(route) = self.routes.get_mut(&(id, mid)) else {
            return; // Not a published track (or its publisher may not publish).
        };
        let layer = match rid {
            Some(rid) => match route.layer_of(Some(rid)) {
                Some(index) => Some((index, rid)),
                None => return, // More layers than anyone needs.
            },
            None => None,
        };
        if publisher.audio_muted && route.track.kind == MediaKind::Audio {
            return;
        }
        let now = Instant::now();
        if let (Some(detector), Some(level)) =
            (&mut route.speaker, packet.header.ext_vals.audio_level)
            && let Some(speaking) = detector.packet(level, now)
        {
            publisher.report(PeerEvent::Speaking { speaking });
        }
        let pt = packet.header.payload_type;
        let Some(params) = publisher.rtc.codec_config().find(|p| p.pt() == pt).copied() else {
            return;
        };
        let packet = MediaPacket::new((id, mid), params, layer, packet);
        if route.shards.is_empty() {
            self.fan_out(&packet, now);
            return;
        }
        let packet = Arc::new(packet);
        for &shard in &route.shards {
            // A shard that stopped (shutting down) needs nothing more.
            let _ = self.shards[shard].send(Command::Media(packet.clone()));
        }
        self.handoffs += route.shards.len() as u64;
        self.fan_out(&packet, now);
    }

    /// Answers a subscriber's NACK from its track's cache: each packet still there is sent
    /// again, on the subscriber's RTX stream, as it was sent the first time.
    pub(super) fn resend(&mut self, id: PeerId, req: NackRequest) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(route) = peer.source_of(req.mid).and_then(|s| self.routes.get(&s)) else {
            return;
        };
        let now = Instant::now();
        let mut api = peer.rtc.direct_api();
        let mut resent = 0;
        for seq in &req.seq_nos {
            if let Some(write) = route.resend(id, **seq, now)
                && self.outbox.write_with(|out| {
                    api.resend_rtp_now(req.mid, req.rid, &write, now, out)
                        .map(|s| s.destination)
                })
            {
                resent += 1;
            }
        }
        tracing::debug!(?id, asked = req.seq_nos.len(), resent, "NACK answered");
    }

    /// Tells the shard of a track's publisher that this shard has subscribers of it now (its
    /// packets should come here), or no more.
    pub(super) fn tell_publisher_shard(&self, key: TrackKey, subscribes: bool) {
        let shard = key.0.shard(self.shards.len());
        let _ = self.shards[shard].send(Command::ShardSubscribes {
            key,
            shard: self.index,
            subscribes,
        });
    }

    /// Sends a packet to each of this shard's subscribers of its track.
    ///
    /// A video frame is of no use to a subscriber before its last packet (the one with the
    /// marker bit) arrives, so a frame's packets are held until then and each subscriber gets
    /// the whole frame at once: one GSO send per subscriber instead of one send per packet.
    /// A frame whose last packet is lost is sent [`FRAME_HOLD`] after its first.
    pub(super) fn fan_out(&mut self, packet: &MediaPacket, now: Instant) {
        let Some(route) = self.routes.get_mut(&packet.source) else {
            return;
        };
        if let Some((layer, rid)) = packet.layer
            && route.note_layer(layer, Some(rid), packet.size, now)
        {
            let wanted = route.retarget();
            self.ask_keyframes(packet.source, &wanted, now);
        }
        let Some(route) = self.routes.get_mut(&packet.source) else {
            return;
        };
        if route.track.kind == MediaKind::Video {
            route.cache.insert(packet, now);
            route.frame.push(packet.clone());
            if packet.marker {
                self.release_frame(packet.source, now);
            } else {
                route.frame_deadline.get_or_insert(now + FRAME_HOLD);
            }
        } else {
            self.send_to_subscribers(packet.source, std::slice::from_ref(packet), now);
        }
    }

    /// Sends a route's held frame to all its subscribers.
    pub(super) fn release_frame(&mut self, key: TrackKey, now: Instant) {
        let Some(route) = self.routes.get_mut(&key) else {
            return;
        };
        route.frame_deadline = None;
        let mut frame = std::mem::take(&mut route.frame);
        self.send_to_subscribers(key, &frame, now);
        frame.clear();
        if let Some(route) = self.routes.get_mut(&key) {
            route.frame = frame;
        }
    }

    /// Sends `packets` of a track, in order, to each of this shard's subscribers of it: each
    /// rewritten for the subscriber and encrypted by its session straight into the outbox
    /// (str0m's `send_rtp_now`, our patch: no poll of the session per frame). A packet the
    /// session could not send at once is queued in it, and the session polled.
    pub(super) fn send_to_subscribers(
        &mut self,
        key: TrackKey,
        packets: &[MediaPacket],
        now: Instant,
    ) {
        let Some(route) = self.routes.get_mut(&key) else {
            return;
        };
        let subs = route.subscribers_mut();
        // With simulcast, only the subscribers on (or switching to) the batch's layers: a
        // frame of one layer is not walked, looked up and prefetched for everyone.
        let layers = packets
            .iter()
            .try_fold(0, |mask, p| p.layer.map(|(layer, _)| mask | 1 << layer));
        self.takers.clear();
        self.takers
            .extend((0..subs.len()).filter(|&i| subs[i].may_take(layers)));
        // Each packet is written once, and renumbered per subscriber: not built for each.
        self.writes
            .extend(packets.iter().map(|packet| write_for(packet, now)));
        for (n, &i) in self.takers.iter().enumerate() {
            // The sessions of the subscribers two takers on are fetched into the cache while
            // this one is sent to (`prefetch`): without, each send waited on its misses.
            if let Some(&ahead) = self.takers.get(n + 3) {
                subs[ahead].lines.fetch_notes();
            }
            if let Some(&ahead) = self.takers.get(n + 2) {
                subs[ahead].lines.fetch();
            }
            let sub = &mut subs[i];
            // A session whose handshake is not through cannot send: what it was given would
            // wait in it, and reach the subscriber late (seconds, after a lost handshake
            // flight), in a burst, and with holes where it ran over. It gets the track from
            // when it connects, starting at a keyframe.
            let Some(peer) = self.peers.get_mut(&sub.peer).filter(|p| p.connected) else {
                continue;
            };
            for (packet, write) in packets.iter().zip(&mut self.writes) {
                let Some(numbers) = sub.rewrite(peer.rtc.codec_config(), packet, now) else {
                    continue;
                };
                numbers.number(packet, write);
                let mut api = peer.rtc.direct_api();
                let sent = self.outbox.write_with(|out| {
                    api.send_rtp_now(sub.mid, None, write, now, out)
                        .map(|s| s.destination)
                });
                if !sent && peer.written_to() {
                    self.dirty.push(sub.peer);
                }
            }
            sub.lines.sent(|line| peer.send_lines(line));
            if (n + 1) % FLUSH_EVERY == 0 {
                self.outbox.flush(&self.socket);
            }
        }
        self.writes.clear();
    }

    /// A subscriber starts taking a track: a video needs a keyframe (of its layer) before it
    /// can be decoded.
    pub(super) fn ask_keyframe_to_start(&mut self, id: PeerId, source: TrackKey, now: Instant) {
        let Some(route) = self.routes.get_mut(&source) else {
            return;
        };
        if route.track.kind == MediaKind::Video {
            let mut wanted = route.retarget();
            wanted.push(route.layer_for(id));
            self.ask_keyframes(source, &wanted, now);
        }
    }

    /// Subscribers of a track wait for keyframes of `layers`: asks for them, coalesced.
    pub(super) fn ask_keyframes(&mut self, key: TrackKey, layers: &[u8], now: Instant) {
        for &layer in layers {
            if self
                .routes
                .get_mut(&key)
                .is_some_and(|r| r.ask_keyframe(layer, now))
            {
                self.request_keyframe(key, layer, KeyframeRequestKind::Pli);
            }
        }
    }

    /// Asks a track's publisher for a keyframe of one layer: directly if it lives here, else
    /// through its shard (which coalesces again, over all shards' requests).
    pub(super) fn request_keyframe(
        &mut self,
        (publisher, mid): TrackKey,
        layer: u8,
        kind: KeyframeRequestKind,
    ) {
        let Some(peer) = self.peers.get_mut(&publisher) else {
            let shard = publisher.shard(self.shards.len());
            if shard != self.index {
                let key = (publisher, mid);
                let _ = self.shards[shard].send(Command::KeyframeRequest { key, layer, kind });
            }
            return;
        };
        let rid = self
            .routes
            .get(&(publisher, mid))
            .and_then(|r| r.layers.get(usize::from(layer)))
            .and_then(|l| l.rid);
        let mut api = peer.rtc.direct_api();
        if let Some(stream) = api.stream_rx_by_mid(mid, rid) {
            stream.request_keyframe(kind);
            self.keyframe_requests += 1;
            self.mark_dirty(publisher);
        }
    }
}
