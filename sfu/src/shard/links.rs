//! What each subscriber's link and choices let through: camera video turned off or on (asked
//! for, or judged from its receiver reports and bandwidth estimate: low-bandwidth mode), and
//! the simulcast layer the size it shows a video at calls for.

use std::time::Instant;

use jinke_signaling::MediaKind;

use super::Shard;
use crate::{PeerEvent, PeerId};

/// Most video sizes kept for tracks whose subscription has not started (a client cannot grow
/// the list by naming tracks that do not exist).
const MAX_EARLY_VIEWS: usize = 16;

impl Shard {
    /// Turns the camera videos forwarded to `peer` off or on, as it asked.
    pub(super) fn receive_video(&mut self, peer: PeerId, enabled: bool) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.video_off = !enabled;
        self.refresh_cameras(peer);
    }

    /// Applies a subscriber's state (its own choice, what its link carries) to the camera
    /// videos forwarded to it; those that go on, or change layer, wait for a keyframe.
    pub(super) fn refresh_cameras(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let (paused, cap) = (peer.camera_paused(), peer.layer_cap());
        let mut wanted = Vec::new();
        for (key, route) in &mut self.routes {
            if route.track.kind != MediaKind::Video || route.track.screen {
                continue;
            }
            if let Some(sub) = route.subscription(id) {
                sub.layer_cap = cap;
                sub.set_paused(paused);
                let mut layers = route.retarget();
                if !paused {
                    layers.push(route.layer_for(id));
                }
                wanted.push((*key, layers));
            }
        }
        let now = Instant::now();
        for (key, layers) in wanted {
            self.ask_keyframes(key, &layers, now);
        }
    }

    /// A receiver report of one of a subscriber's streams: its link may carry more or less.
    /// Judged by the camera video while it flows, by the audio while it does not.
    pub(super) fn judge_link(&mut self, id: PeerId, stats: &str0m::stats::MediaEgressStats) {
        // str0m gives a loss only when a report came since its last stats.
        let (Some(_), Some(report)) = (stats.loss, &stats.remote) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(route) = peer
            .source_of(stats.mid)
            .and_then(|s| self.routes.get_mut(&s))
        else {
            return;
        };
        let Some(loss) = route
            .subscription(id)
            .filter(|s| s.mid == stats.mid)
            .and_then(|s| s.downlink_loss(*report.maximum_sequence_number, report.packets_lost))
        else {
            return;
        };
        tracing::trace!(
            ?id,
            mid = ?stats.mid,
            max_seq = *report.maximum_sequence_number,
            lost = report.packets_lost,
            reported = ?stats.loss,
            loss,
            "a receiver report, less the publisher's gaps"
        );
        let camera = route.track.kind == MediaKind::Video && !route.track.screen;
        let was_audio_only = peer.audio_only();
        let counts = if was_audio_only {
            route.track.kind == MediaKind::Audio
        } else {
            camera
        };
        if !counts || peer.video_off {
            return;
        }
        if camera {
            peer.link.set_layers(route.layers.len() as u8);
        }
        if let Some(allowance) = peer.link.report(loss, Instant::now()) {
            tracing::debug!(
                ?id,
                ?allowance,
                loss,
                "a subscriber's link allowance changed"
            );
            self.apply_allowance(id, was_audio_only);
        }
    }

    /// A subscriber's bandwidth estimate (`estimate` bits per second, when `sent` media bytes
    /// had gone to it in all): a congested link steps its camera video down.
    pub(super) fn judge_estimate(&mut self, id: PeerId, estimate: u64, sent: u64) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let was_audio_only = peer.audio_only();
        if peer.video_off {
            return;
        }
        if let Some(allowance) = peer.link.estimate(estimate, sent, Instant::now()) {
            tracing::debug!(
                ?id,
                ?allowance,
                estimate,
                "a subscriber's link allowance changed"
            );
            self.apply_allowance(id, was_audio_only);
        }
    }

    /// Holds back or lets through a subscriber's camera videos, and caps their layers, as its
    /// link allows; tells it when audio-only starts and ends.
    pub(super) fn apply_allowance(&mut self, id: PeerId, was_audio_only: bool) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let audio_only = peer.audio_only();
        if audio_only != was_audio_only {
            peer.report(PeerEvent::AudioOnly { active: audio_only });
            tracing::debug!(
                ?id,
                audio_only,
                "a subscriber's link changed what it carries"
            );
        }
        self.refresh_cameras(id);
    }

    /// A subscriber shows a video at a new size: it may need another simulcast layer.
    pub(super) fn set_video_view(
        &mut self,
        peer: PeerId,
        track_id: &str,
        view: Option<(u16, u16)>,
    ) {
        let Some((key, route)) = self
            .routes
            .iter_mut()
            .find(|(_, r)| r.track.track_id == track_id)
        else {
            return;
        };
        let Some(sub) = route.subscription(peer) else {
            // Said while the track was still being negotiated (a browser lays the video out
            // before its answer arrives): kept for when the subscription starts.
            if let Some(p) = self.peers.get_mut(&peer) {
                p.views.retain(|(t, _)| t != track_id);
                if p.views.len() >= MAX_EARLY_VIEWS {
                    p.views.remove(0);
                }
                p.views.push((track_id.to_owned(), view));
            }
            return;
        };
        sub.view = view;
        let key = *key;
        let wanted = route.retarget();
        self.ask_keyframes(key, &wanted, Instant::now());
    }
}
