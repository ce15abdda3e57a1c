//! Simulcast: a publisher sends the same video in several layers (sizes), each its own RTP stream
//! with a `rid`; each subscriber receives one layer at a time, as one continuous stream.
//!
//! A subscriber can only start decoding a layer at a keyframe, so it switches to its target layer
//! when a keyframe of that layer arrives, not before (VP8: the payload descriptor and frame header
//! read here; H.264: the SPS and IDR slice, `h264.rs`). Its sequence numbers, timestamps and VP8
//! picture ids then continue from the last packet it got, as if nothing had switched. Everything
//! here is sans-IO (time is passed in), so the switching is tested with simulated time.

use std::time::Instant;

use str0m::rtp::Vp8Descriptor;

/// The video clock rate (VP8 and H.264).
const VIDEO_CLOCK_HZ: u64 = 90_000;

/// What the SFU reads from a VP8 packet's payload descriptor (RFC 7741 §4.2) and, on a
/// keyframe's first packet, the frame header: enough to switch layers and keep ids continuous.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vp8Info {
    /// str0m's view of the descriptor, to rewrite it on the way out without copying.
    pub descriptor: Vp8Descriptor,
    /// PictureID, if present, and whether it is the 15-bit form.
    pub picture_id: Option<(u16, bool)>,
    /// TL0PICIDX, if present.
    pub tl0_pic_idx: Option<u8>,
    /// Whether this packet starts a keyframe.
    pub keyframe: bool,
    /// A keyframe's width and height (from its frame header).
    pub size: Option<(u16, u16)>,
}

impl Vp8Info {
    /// Reads a VP8 payload; `None` if the descriptor is malformed (such a packet is still
    /// forwarded as it came, it just cannot start or carry a switch).
    pub fn parse(payload: &[u8]) -> Option<Vp8Info> {
        let descriptor = Vp8Descriptor::parse(payload).ok()?;
        let first = *payload.first()?;
        let mut at = 1;
        let mut picture_id = None;
        let mut tl0_pic_idx = None;
        if first & 0x80 != 0 {
            let ext = *payload.get(at)?;
            at += 1;
            if ext & 0x80 != 0 {
                let b = *payload.get(at)?;
                if b & 0x80 != 0 {
                    let lo = *payload.get(at + 1)?;
                    picture_id = Some(((u16::from(b & 0x7f) << 8) | u16::from(lo), true));
                    at += 2;
                } else {
                    picture_id = Some((u16::from(b), false));
                    at += 1;
                }
            }
            if ext & 0x40 != 0 {
                tl0_pic_idx = Some(*payload.get(at)?);
                at += 1;
            }
            if ext & 0x30 != 0 {
                at += 1; // TID/Y/KEYIDX
            }
        }
        let keyframe = descriptor.starts_keyframe(payload);
        // A keyframe's header: 3-byte frame tag, start code 9d 01 2a, 14-bit width and height.
        let size = keyframe
            .then(|| payload.get(at..at + 10))
            .flatten()
            .filter(|h| h[3..6] == [0x9d, 0x01, 0x2a])
            .map(|h| {
                (
                    u16::from_le_bytes([h[6], h[7]]) & 0x3fff,
                    u16::from_le_bytes([h[8], h[9]]) & 0x3fff,
                )
            })
            .filter(|&(w, h)| w > 0 && h > 0);
        Some(Vp8Info {
            descriptor,
            picture_id,
            tl0_pic_idx,
            keyframe,
            size,
        })
    }
}

/// What to do with one packet of a simulcast track for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Not for this subscriber (another layer, or the target layer before its keyframe).
    Drop,
    /// Forward it with this timestamp; `switched` on the first packet of a newly taken layer
    /// (the sequence numbers must continue without a gap).
    Forward { timestamp: u32, switched: bool },
}

/// Follows one subscriber's layer of one simulcast track: switches to the target layer on its
/// keyframe and keeps timestamps and VP8 picture ids continuous across switches.
#[derive(Debug, Default)]
pub(crate) struct LayerFollower {
    /// The layer being forwarded, once one started.
    current: Option<u8>,
    /// The layer wanted; `None` until one is known.
    target: Option<u8>,
    /// Added to the publisher's timestamps of the current layer.
    ts_offset: u32,
    /// The last timestamp forwarded and when.
    last_ts: Option<(u32, Instant)>,
    /// Added to the current layer's PictureID (mod 2^15) and TL0PICIDX (mod 2^8).
    pid_offset: u16,
    tl0_offset: u8,
    /// The last PictureID and TL0PICIDX forwarded.
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
}

impl LayerFollower {
    /// The layer this subscriber should get from now on.
    pub fn set_target(&mut self, layer: Option<u8>) {
        self.target = layer;
    }

    /// The layer being forwarded.
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// A layer whose keyframe this subscriber waits for (to start, or to switch to it).
    pub fn awaiting(&self) -> Option<u8> {
        self.target.filter(|t| self.current != Some(*t))
    }

    /// The layers [`Self::step`] may forward a packet of, a bit each: the current one and the
    /// target (on its keyframe).
    pub fn taken(&self) -> u8 {
        [self.current, self.target]
            .into_iter()
            .flatten()
            .fold(0, |mask, layer| mask | 1 << layer)
    }

    /// Starts over at the next keyframe (after a pause, the current layer's stream is stale).
    pub fn restart(&mut self) {
        self.current = None;
    }

    /// Decides for a packet of `layer` with RTP timestamp `ts`, arriving at `now`.
    pub fn step(&mut self, layer: u8, keyframe: bool, ts: u32, now: Instant) -> Step {
        let switched = if self.current == Some(layer) {
            false
        } else if keyframe && self.target == Some(layer) {
            self.current = Some(layer);
            // Continue from the last timestamp sent, advanced by the wall-clock time since.
            self.ts_offset = match self.last_ts {
                Some((last, at)) => {
                    let elapsed = now.saturating_duration_since(at).as_micros() as u64;
                    let advance = (elapsed * VIDEO_CLOCK_HZ / 1_000_000).max(1) as u32;
                    last.wrapping_add(advance).wrapping_sub(ts)
                }
                None => 0,
            };
            true
        } else {
            return Step::Drop;
        };
        let timestamp = ts.wrapping_add(self.ts_offset);
        self.last_ts = Some((timestamp, now));
        Step::Forward {
            timestamp,
            switched,
        }
    }

    /// The PictureID and TL0PICIDX to send for a forwarded packet that carried `picture_id`
    /// and `tl0_pic_idx`; `switched` as [`Step::Forward`] said.
    pub fn vp8_ids(
        &mut self,
        picture_id: Option<(u16, bool)>,
        tl0_pic_idx: Option<u8>,
        switched: bool,
    ) -> (Option<u16>, Option<u8>) {
        let pid = picture_id.map(|(pid, long)| {
            let modulus: u16 = if long { 0x8000 } else { 0x80 };
            if switched && let Some(last) = self.last_pid {
                self.pid_offset = last.wrapping_add(1).wrapping_sub(pid) % modulus;
            }
            let out = pid.wrapping_add(self.pid_offset) % modulus;
            self.last_pid = Some(out);
            out
        });
        let tl0 = tl0_pic_idx.map(|tl0| {
            if switched && let Some(last) = self.last_tl0 {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(tl0);
            }
            let out = tl0.wrapping_add(self.tl0_offset);
            self.last_tl0 = Some(out);
            out
        });
        (pid, tl0)
    }
}

/// Chooses the layer for a subscriber that renders the video at `view` (width, height; `None`
/// when it did not say): the smallest layer at least as large in both dimensions, else the
/// largest. `layers` gives each layer's size, `None` while it is unknown or the layer is not
/// being sent; such layers are never chosen. With `cap`, only the `cap + 1` smallest count
/// (the subscriber's link carries no more).
pub(crate) fn choose_layer(
    layers: &[Option<(u16, u16)>],
    view: Option<(u16, u16)>,
    cap: Option<u8>,
) -> Option<u8> {
    let mut sized: Vec<(u8, u32, u16, u16)> = layers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|(w, h)| (i as u8, u32::from(w) * u32::from(h), w, h)))
        .collect();
    sized.sort_by_key(|&(_, area, _, _)| area);
    if let Some(cap) = cap {
        sized.truncate(usize::from(cap) + 1);
    }
    let known = sized.into_iter();
    let largest = known
        .clone()
        .max_by_key(|&(_, area, _, _)| area)
        .map(|l| l.0);
    let Some((vw, vh)) = view else {
        return largest;
    };
    known
        .filter(|&(_, _, w, h)| w >= vw && h >= vh)
        .min_by_key(|&(_, area, _, _)| area)
        .map(|l| l.0)
        .or(largest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A VP8 payload as Chrome sends it: descriptor with a 15-bit PictureID, TL0PICIDX and
    /// TID, then (on a keyframe) a frame header of `size`.
    fn vp8(pid: u16, tl0: u8, keyframe: Option<(u16, u16)>) -> Vec<u8> {
        let mut p = vec![0x90, 0xe0, 0x80 | (pid >> 8) as u8, pid as u8, tl0, 0x00];
        match keyframe {
            Some((w, h)) => {
                p.extend([0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
                p.extend(w.to_le_bytes());
                p.extend(h.to_le_bytes());
            }
            None => p.extend([0x01, 0x00, 0x00]),
        }
        p.extend([0xee; 20]);
        p
    }

    #[test]
    fn reads_ids_keyframes_and_their_size() {
        let key = Vp8Info::parse(&vp8(0x1234, 7, Some((640, 360)))).unwrap();
        assert_eq!(key.picture_id, Some((0x1234, true)));
        assert_eq!(key.tl0_pic_idx, Some(7));
        assert!(key.keyframe);
        assert_eq!(key.size, Some((640, 360)));
        let empty = Vp8Info::parse(&vp8(0x1234, 7, Some((0, 360)))).unwrap();
        assert!(empty.keyframe);
        assert_eq!(empty.size, None, "a picture of no width is no size");
        let delta = Vp8Info::parse(&vp8(0x1235, 7, None)).unwrap();
        assert!(!delta.keyframe);
        assert_eq!(delta.size, None);
        // The short form, no extensions: a bare descriptor byte with S set.
        let bare = Vp8Info::parse(&[
            0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
        ])
        .unwrap();
        assert!(bare.keyframe);
        assert_eq!(bare.size, Some((320, 240)));
        assert_eq!(bare.picture_id, None);
        assert!(Vp8Info::parse(&[]).is_none());
        assert!(Vp8Info::parse(&[0x90]).is_none(), "truncated descriptor");
    }

    #[test]
    fn switches_only_on_a_keyframe_of_the_target_layer() {
        let t0 = Instant::now();
        let mut f = LayerFollower::default();
        f.set_target(Some(2));
        assert_eq!(
            f.step(2, false, 1000, t0),
            Step::Drop,
            "waits for a keyframe"
        );
        assert_eq!(
            f.step(0, true, 1000, t0),
            Step::Drop,
            "not the target layer"
        );
        assert_eq!(
            f.step(2, true, 1000, t0),
            Step::Forward {
                timestamp: 1000,
                switched: true
            }
        );
        assert_eq!(f.awaiting(), None);
        f.set_target(Some(0));
        assert_eq!(f.awaiting(), Some(0));
        let t1 = t0 + Duration::from_millis(33);
        assert_eq!(
            f.step(2, false, 3970, t1),
            Step::Forward {
                timestamp: 3970,
                switched: false
            },
            "the current layer goes on until the target's keyframe"
        );
        assert_eq!(f.step(0, false, 90_000, t1), Step::Drop);
        let t2 = t1 + Duration::from_millis(33);
        // Layer 0 has its own timestamp base: the subscriber's timeline continues 33 ms on.
        assert_eq!(
            f.step(0, true, 90_000, t2),
            Step::Forward {
                timestamp: 3970 + 2970,
                switched: true
            }
        );
        assert_eq!(
            f.step(0, false, 93_000, t2 + Duration::from_millis(33)),
            Step::Forward {
                timestamp: 3970 + 2970 + 3000,
                switched: false
            }
        );
        assert_eq!(f.step(2, true, 10_000, t2), Step::Drop, "left behind");
    }

    #[test]
    fn picture_ids_continue_across_a_switch_and_wrap() {
        let mut f = LayerFollower::default();
        assert_eq!(
            f.vp8_ids(Some((0x7ffe, true)), Some(250), true),
            (Some(0x7ffe), Some(250)),
            "the first layer keeps its ids"
        );
        assert_eq!(
            f.vp8_ids(Some((0x7fff, true)), Some(251), false),
            (Some(0x7fff), Some(251))
        );
        // Switch to a layer whose ids are elsewhere: they continue from the last sent.
        assert_eq!(
            f.vp8_ids(Some((100, true)), Some(9), true),
            (Some(0), Some(252))
        );
        assert_eq!(
            f.vp8_ids(Some((101, true)), Some(10), false),
            (Some(1), Some(253))
        );
        assert_eq!(f.vp8_ids(None, None, false), (None, None));
    }

    #[test]
    fn a_pause_restarts_at_the_next_keyframe() {
        let t0 = Instant::now();
        let mut f = LayerFollower::default();
        f.set_target(Some(1));
        assert!(matches!(f.step(1, true, 0, t0), Step::Forward { .. }));
        f.restart();
        assert_eq!(f.awaiting(), Some(1));
        assert_eq!(f.step(1, false, 3000, t0), Step::Drop);
        assert!(matches!(
            f.step(1, true, 6000, t0 + Duration::from_millis(66)),
            Step::Forward { switched: true, .. }
        ));
    }

    #[test]
    fn the_layer_fits_the_view() {
        let layers = [Some((320, 180)), Some((640, 360)), Some((1280, 720))];
        assert_eq!(
            choose_layer(&layers, None, None),
            Some(2),
            "no size said: the best"
        );
        assert_eq!(choose_layer(&layers, Some((300, 170)), None), Some(0));
        assert_eq!(choose_layer(&layers, Some((321, 180)), None), Some(1));
        assert_eq!(choose_layer(&layers, Some((1920, 1080)), None), Some(2));
        let partial = [Some((320, 180)), None, None];
        assert_eq!(
            choose_layer(&partial, Some((1280, 720)), None),
            Some(0),
            "only layers being sent count"
        );
        assert_eq!(choose_layer(&[None, None], None, None), None);
        // A weak link: no more than the two smallest, whatever the view.
        let shuffled = [Some((1280, 720)), Some((320, 180)), Some((640, 360))];
        assert_eq!(choose_layer(&shuffled, Some((1280, 720)), Some(1)), Some(2));
        assert_eq!(choose_layer(&shuffled, Some((300, 170)), Some(1)), Some(1));
        assert_eq!(choose_layer(&shuffled, None, Some(0)), Some(1));
    }
}
