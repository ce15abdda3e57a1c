//! What the load generator measures: what was sent, what each receiver got, and the server's
//! CPU and memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A cheap 64-bit hash of a payload (integrity check and send-time lookup; not cryptographic).
pub fn payload_hash(timestamp: u32, payload: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (timestamp as u64 ^ payload.len() as u64).wrapping_mul(K);
    let mut chunks = payload.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ v).wrapping_mul(K).rotate_left(29);
    }
    for &b in chunks.remainder() {
        h = (h ^ b as u64).wrapping_mul(K);
    }
    h ^ (h >> 32)
}

/// The part of a packet that a server must forward exactly as it was sent, which receivers
/// check: all of an audio payload; a video payload after its VP8 descriptor, whose PictureID
/// and TL0PICIDX a simulcast SFU rewrites per subscriber.
pub fn checked_part(payload: &[u8], video: bool) -> &[u8] {
    if video {
        crate::media::vp8_body(payload)
    } else {
        payload
    }
}

/// Every packet the publishers sent (its [`checked_part`]), with when it was sent.
///
/// Servers may rewrite RTP timestamps (Janus does; Jinke does not), so a receiver first matches
/// its stream's first packet by content alone to learn the timestamp offset, then looks packets up
/// exactly by (timestamp, content).
#[derive(Default)]
pub struct SentLog {
    exact: HashMap<u64, Instant>,
    /// Content hash to the latest (timestamp, send time) with that content.
    by_content: HashMap<u64, (u32, Instant)>,
}

impl SentLog {
    /// Records a packet handed to the publisher's WebRTC stack at `at`.
    pub fn record(&mut self, timestamp: u32, payload: &[u8], at: Instant) {
        self.exact
            .entry(payload_hash(timestamp, payload))
            .or_insert(at);
        self.by_content
            .insert(payload_hash(0, payload), (timestamp, at));
    }

    /// When a packet with this timestamp and content was sent, if it was.
    pub fn sent_at(&self, timestamp: u32, payload: &[u8]) -> Option<Instant> {
        self.exact.get(&payload_hash(timestamp, payload)).copied()
    }

    /// The original timestamp of the latest packet sent with this content.
    pub fn timestamp_of(&self, payload: &[u8]) -> Option<u32> {
        self.by_content
            .get(&payload_hash(0, payload))
            .map(|(ts, _)| *ts)
    }
}

/// When a received packet got to a client.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When the kernel took it into the client's socket (its receive timestamp; on loopback,
    /// when the server's send call handed it over). What the server's latency is measured by.
    pub queued: Instant,
    /// When the client's thread read it: later by however long that thread was busy with its
    /// other clients.
    pub handled: Instant,
}

/// Sequence bookkeeping for one received track.
#[derive(Default)]
struct SeqTrack {
    /// Whether the stream is video (only video is repaired by retransmission).
    video: bool,
    first: Option<u64>,
    /// One bit per sequence number since `first`.
    seen: Vec<u64>,
    max: u64,
    unique: u64,
    duplicates: u64,
}

impl SeqTrack {
    fn record(&mut self, seq: u64) {
        let first = *self.first.get_or_insert(seq);
        let Some(offset) = seq.checked_sub(first) else {
            return; // Older than the first seen: cannot tell, ignore.
        };
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
        } else {
            self.seen[word] |= 1 << bit;
            self.unique += 1;
        }
        self.max = self.max.max(offset);
    }

    fn lost(&self) -> u64 {
        if self.first.is_none() {
            return 0;
        }
        (self.max + 1).saturating_sub(self.unique)
    }
}

/// What one receiving client saw.
#[derive(Default)]
pub struct ReceiverStats {
    /// From holding the token to the first media packet.
    pub join_time: Option<Duration>,
    /// Whether its media connection (ICE and DTLS) came up.
    pub connected: bool,
    tracks: HashMap<u32, SeqTrack>,
    /// Per stream: received timestamp minus sent timestamp.
    ts_offsets: HashMap<u32, u32>,
    /// Packets received in the measurement window.
    pub in_window: u64,
    /// Their RTP payloads' bytes.
    pub bytes_in_window: u64,
    /// Packets whose content no publisher sent.
    pub corrupt: u64,
    /// Send-to-socket latencies in the window ([`Arrival::queued`]), in microseconds.
    pub latencies_us: Vec<u32>,
    /// The same, of audio packets only: the teacher's voice, which a lesson needs most, and
    /// which waits whenever it arrives while a video frame is still being sent to everyone.
    pub audio_latencies_us: Vec<u32>,
    /// Send-to-read latencies in the window ([`Arrival::handled`]), in microseconds.
    pub handled_latencies_us: Vec<u32>,
    /// What the server said of this client's link, in video packets received by then.
    pub weak_link: WeakLinkLog,
}

/// When the server held camera video back from a client on a weak link, and gave it back.
#[derive(Default, Debug, Clone, Copy)]
pub struct WeakLinkLog {
    /// Times it said "audio only".
    pub audio_only: u64,
    /// Times it said "video again".
    pub restored: u64,
    /// Video packets received while audio only (in flight when it was said, or a server
    /// that does not keep its word).
    pub video_while_audio_only: u64,
    /// Video packets received since the last "video again".
    pub video_since_restored: u64,
    audio_only_at: Option<u64>,
    restored_at: Option<u64>,
}

impl ReceiverStats {
    /// Records one received packet on the stream `ssrc`; `is_video` is asked on a stream's first
    /// packet.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        ssrc: u32,
        is_video: impl FnOnce() -> bool,
        seq: u64,
        timestamp: u32,
        payload: &[u8],
        arrival: Arrival,
        sent: &SentLog,
        window: Option<(Instant, Instant)>,
    ) {
        let track = self.tracks.entry(ssrc).or_insert_with(|| SeqTrack {
            video: is_video(),
            ..SeqTrack::default()
        });
        track.record(seq);
        let video = track.video;
        let size = payload.len() as u64;
        let payload = checked_part(payload, video);
        let offset = match self.ts_offsets.get(&ssrc) {
            Some(o) => Some(*o),
            None => sent.timestamp_of(payload).map(|ts| {
                let o = timestamp.wrapping_sub(ts);
                self.ts_offsets.insert(ssrc, o);
                o
            }),
        };
        let mut sent_at = offset.and_then(|o| sent.sent_at(timestamp.wrapping_sub(o), payload));
        if sent_at.is_none()
            && let Some(ts) = sent.timestamp_of(payload)
        {
            // A simulcast SFU re-bases a subscriber's timestamps when it switches its layer:
            // the offset is learned again from the content.
            self.ts_offsets.insert(ssrc, timestamp.wrapping_sub(ts));
            sent_at = sent.sent_at(ts, payload);
        }
        if sent_at.is_none() {
            self.corrupt += 1;
        }
        if let Some((start, end)) = window
            && arrival.handled >= start
            && arrival.handled < end
        {
            self.in_window += 1;
            self.bytes_in_window += size;
            if let Some(at) = sent_at {
                let us = |t: Instant| {
                    t.saturating_duration_since(at)
                        .as_micros()
                        .min(u32::MAX as u128) as u32
                };
                let queued = us(arrival.queued);
                self.latencies_us.push(queued);
                if !video {
                    self.audio_latencies_us.push(queued);
                }
                self.handled_latencies_us.push(us(arrival.handled));
            }
        }
    }

    /// The server said this client's link carries audio only (`true`) or video again.
    pub fn weak_link(&mut self, audio_only: bool) {
        let (video, _) = self.video_counts();
        let log = &mut self.weak_link;
        match (audio_only, log.audio_only_at) {
            (true, None) => {
                log.audio_only += 1;
                log.audio_only_at = Some(video);
            }
            (false, Some(at)) => {
                log.restored += 1;
                log.video_while_audio_only += video - at;
                log.audio_only_at = None;
                log.restored_at = Some(video);
            }
            _ => {}
        }
    }

    /// The weak-link log, brought up to now.
    pub fn weak_link_log(&self) -> WeakLinkLog {
        let (video, _) = self.video_counts();
        let mut log = self.weak_link;
        if let Some(at) = log.audio_only_at {
            log.video_while_audio_only += video - at;
        }
        if let Some(at) = log.restored_at {
            log.video_since_restored = video - at;
        }
        log
    }

    /// (received unique, lost, duplicates) over all tracks.
    pub fn counts(&self) -> (u64, u64, u64) {
        self.tracks.values().fold((0, 0, 0), |(u, l, d), t| {
            (u + t.unique, l + t.lost(), d + t.duplicates)
        })
    }

    /// (received unique, lost) over the video tracks only.
    pub fn video_counts(&self) -> (u64, u64) {
        self.tracks
            .values()
            .filter(|t| t.video)
            .fold((0, 0), |(u, l), t| (u + t.unique, l + t.lost()))
    }

    /// Number of tracks this receiver got media on.
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }
}

/// CPU time and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// user + system CPU time.
    pub cpu: Duration,
    /// Resident set size in bytes.
    pub rss: u64,
}

/// Reads `/proc/PID/stat` (utime, stime) and `/proc/PID/statm` (resident pages).
pub fn sample_process(pid: u32) -> std::io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| std::io::Error::other("malformed /proc stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> std::io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| std::io::Error::other("malformed /proc stat"))
    };
    // `after` starts at field 3 (state), so field N is index N - 3.
    let total_ticks = ticks(14 - 3)? + ticks(15 - 3)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    Ok(ProcSample {
        cpu: Duration::from_micros(total_ticks * 1_000_000 / hz),
        rss: resident * page,
    })
}

/// The p-th percentile (0..=100) of sorted values.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)])
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Millis {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl Millis {
    /// Percentiles of microsecond values.
    pub fn of_micros(values: &mut [u32]) -> Millis {
        values.sort_unstable();
        let ms = |p| percentile(values, p).map(|v| v as f64 / 1000.0);
        Millis {
            p50: ms(50.0),
            p95: ms(95.0),
            p99: ms(99.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet read the moment it arrived.
    fn together(t: Instant) -> Arrival {
        Arrival {
            queued: t,
            handled: t,
        }
    }

    #[test]
    fn loss_and_duplicates_come_from_sequence_numbers() {
        let mut t = SeqTrack::default();
        for s in [10, 11, 13, 13, 14, 17] {
            t.record(s);
        }
        assert_eq!(t.unique, 5);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.lost(), 3, "12, 15 and 16");
    }

    #[test]
    fn content_is_recognized_only_if_sent() {
        let mut log = SentLog::default();
        let t0 = Instant::now();
        log.record(960, b"opus frame", t0);
        assert_eq!(log.sent_at(960, b"opus frame"), Some(t0));
        assert_eq!(log.sent_at(960, b"opus framf"), None);
        assert_eq!(log.sent_at(961, b"opus frame"), None);
    }

    #[test]
    fn a_rewritten_timestamp_is_learned_from_the_first_packet() {
        let mut log = SentLog::default();
        let t0 = Instant::now();
        log.record(1000, b"first", t0);
        log.record(1960, b"second", t0);
        let mut r = ReceiverStats::default();
        // The server shifted timestamps by 5000.
        r.record(7, || false, 1, 6000, b"first", together(t0), &log, None);
        r.record(7, || false, 2, 6960, b"second", together(t0), &log, None);
        r.record(7, || false, 3, 7920, b"forged", together(t0), &log, None);
        assert_eq!(r.corrupt, 1);
        assert_eq!(r.counts(), (3, 0, 0));
        // Re-based (a layer switch): learned again from the content, not taken as corrupt.
        log.record(2920, b"third", t0);
        r.record(7, || false, 4, 9920, b"third", together(t0), &log, None);
        assert_eq!(r.corrupt, 1);
    }

    #[test]
    fn a_video_packet_with_a_rewritten_descriptor_is_as_sent_and_its_body_is_checked() {
        let mut log = SentLog::default();
        let t0 = Instant::now();
        let sent = crate::media::with_picture_id(&[0x10, 1, 2, 3], 100, 4);
        log.record(1000, checked_part(&sent, true), t0);
        let mut r = ReceiverStats::default();
        // The SFU renumbered the PictureID and TL0PICIDX for this subscriber.
        let forwarded = crate::media::with_picture_id(&[0x10, 1, 2, 3], 7, 9);
        r.record(7, || true, 1, 1000, &forwarded, together(t0), &log, None);
        assert_eq!(r.corrupt, 0);
        let damaged = crate::media::with_picture_id(&[0x10, 1, 2, 4], 7, 9);
        r.record(7, || true, 2, 1000, &damaged, together(t0), &log, None);
        assert_eq!(r.corrupt, 1);
    }

    #[test]
    fn video_loss_is_counted_apart_from_audio() {
        let log = SentLog::default();
        let t0 = Instant::now();
        let mut r = ReceiverStats::default();
        for seq in [1, 2, 4] {
            r.record(1, || true, seq, 0, b"v", together(t0), &log, None);
        }
        for seq in [1, 3, 4, 6] {
            r.record(2, || false, seq, 0, b"a", together(t0), &log, None);
        }
        assert_eq!(r.video_counts(), (3, 1));
        assert_eq!(r.counts(), (7, 3, 0));
    }

    #[test]
    fn audio_latency_is_kept_apart_from_video() {
        let mut log = SentLog::default();
        let t0 = Instant::now();
        log.record(0, checked_part(b"vp8", true), t0);
        log.record(0, b"a", t0);
        let window = Some((t0, t0 + Duration::from_secs(1)));
        let mut r = ReceiverStats::default();
        let at = |ms| together(t0 + Duration::from_millis(ms));
        r.record(1, || true, 1, 0, b"vp8", at(9), &log, window);
        r.record(2, || false, 1, 0, b"a", at(2), &log, window);
        r.record(2, || false, 2, 0, b"a", at(2000), &log, window);
        assert_eq!(r.latencies_us, [9000, 2000]);
        assert_eq!(
            r.bytes_in_window,
            3 + 1,
            "whole payloads, in the window only"
        );
        assert_eq!(
            r.audio_latencies_us,
            [2000],
            "audio only, in the window only"
        );
    }

    #[test]
    fn latency_runs_to_the_socket_and_apart_to_the_read() {
        let mut log = SentLog::default();
        let t0 = Instant::now();
        log.record(0, b"a", t0);
        log.record(960, b"b", t0);
        let window = Some((t0, t0 + Duration::from_secs(1)));
        let mut r = ReceiverStats::default();
        let ms = |ms| t0 + Duration::from_millis(ms);
        let queued_then_read = |q, h| Arrival {
            queued: ms(q),
            handled: ms(h),
        };
        r.record(
            2,
            || false,
            1,
            0,
            b"a",
            queued_then_read(1, 5),
            &log,
            window,
        );
        // Read after the window: not counted, although it reached the socket inside it.
        r.record(
            2,
            || false,
            2,
            960,
            b"b",
            queued_then_read(999, 1001),
            &log,
            window,
        );
        assert_eq!(r.latencies_us, [1000]);
        assert_eq!(r.audio_latencies_us, [1000]);
        assert_eq!(r.handled_latencies_us, [5000]);
        assert_eq!(r.in_window, 1);
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        let m = Millis::of_micros(&mut v);
        assert_eq!(m.p50, Some(51.0));
        assert_eq!(m.p99, Some(99.0));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
    }

    #[test]
    fn this_process_has_cpu_and_memory() {
        let s = sample_process(std::process::id()).unwrap();
        assert!(s.rss > 1 << 20);
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {}
        assert!(sample_process(std::process::id()).unwrap().cpu >= s.cpu);
    }
}
