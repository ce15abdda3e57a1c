//! The media a simulated publisher sends: a real VP8 clip, packetized and looped with rewritten
//! timestamps, and Opus audio encoded at start-up from a synthesized voice-like signal.

use std::f32::consts::TAU;
use std::sync::Arc;
use std::time::Duration;

/// The committed clip (see `media/README.md` for the command that made it).
const CLIP: &[u8] = include_bytes!("../media/clip-640x480.ivf");

/// Largest RTP payload we produce (leaves room for headers and SRTP within a 1200-byte MTU).
const MAX_PAYLOAD: usize = 1100;

/// Video frame rate of the clip.
pub const VIDEO_FPS: u32 = 30;
/// RTP clock of VP8.
pub const VIDEO_CLOCK: u32 = 90_000;
/// Opus frame length.
pub const AUDIO_FRAME: Duration = Duration::from_millis(20);
/// RTP timestamp step per Opus frame (48 kHz clock).
pub const AUDIO_TS_STEP: u32 = 960;

/// One encoded frame, already split into RTP payloads.
#[derive(Debug, Clone)]
pub struct Frame {
    /// RTP payloads; the last one carries the marker bit.
    pub packets: Vec<Arc<[u8]>>,
    /// Whether this is a VP8 keyframe.
    pub keyframe: bool,
}

/// Errors reading the clip.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The IVF container is not what we expect.
    #[error("bad IVF clip: {0}")]
    BadIvf(&'static str),
    /// Opus failed.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
}

/// Reads the VP8 frames of the embedded IVF clip and packetizes them (RFC 7741: a one-byte
/// payload descriptor with the start bit on each frame's first packet).
pub fn video_frames() -> Result<Vec<Frame>, MediaError> {
    let data = CLIP;
    if data.len() < 32 || &data[0..4] != b"DKIF" || &data[8..12] != b"VP80" {
        return Err(MediaError::BadIvf("not a VP8 IVF file"));
    }
    let header_len = u16::from_le_bytes([data[6], data[7]]) as usize;
    let mut at = header_len;
    let mut frames = Vec::new();
    while at + 12 <= data.len() {
        let size = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 12;
        let frame = data
            .get(at..at + size)
            .ok_or(MediaError::BadIvf("truncated frame"))?;
        at += size;
        // VP8 frame tag: bit 0 clear means a keyframe (RFC 6386 §9.1).
        let keyframe = frame.first().is_some_and(|b| b & 1 == 0);
        let packets = frame
            .chunks(MAX_PAYLOAD - 1)
            .enumerate()
            .map(|(i, chunk)| {
                let mut p = Vec::with_capacity(chunk.len() + 1);
                p.push(if i == 0 { 0x10 } else { 0x00 });
                p.extend_from_slice(chunk);
                Arc::from(p)
            })
            .collect();
        frames.push(Frame { packets, keyframe });
    }
    if frames.is_empty() {
        return Err(MediaError::BadIvf("no frames"));
    }
    Ok(frames)
}

/// The simulcast layers a publisher sends with `--simulcast` (Jinke only), named as Chromium
/// names them: the same clip on each (the SFUs forward without decoding; what differs between
/// a browser's layers, their size and rate, does not change the per-packet work measured).
pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

/// `packet` (one of [`video_frames`]'s, whose payload descriptor is one byte) with the
/// descriptor a browser's simulcast encoder writes (RFC 7741 §4.2): a 15-bit PictureID, a
/// TL0PICIDX and a temporal layer index, of which the first two an SFU rewrites for each subscriber so that they stay continuous across
/// its layer switches.
pub fn with_picture_id(packet: &[u8], picture_id: u16, tl0_pic_idx: u8) -> Vec<u8> {
    let start = packet.first().copied().unwrap_or(0) & 0x10;
    let mut p = Vec::with_capacity(packet.len() + 4);
    // X; I (a PictureID follows, M set: 15 bits), L (a TL0PICIDX) and T (a TID byte: the
    // base temporal layer; RFC 7741 asks for T with L).
    p.extend([0x80 | start, 0xe0]);
    p.extend((0x8000 | (picture_id & 0x7fff)).to_be_bytes());
    p.extend([tl0_pic_idx, 0x00]);
    p.extend_from_slice(packet.get(1..).unwrap_or_default());
    p
}

/// What follows a VP8 payload's descriptor (RFC 7741 §4.2): the part an SFU forwards as it
/// came. Received packets are checked against what was sent by it.
pub fn vp8_body(payload: &[u8]) -> &[u8] {
    let byte = |i: usize| payload.get(i).copied().unwrap_or(0);
    let mut at = 1;
    if byte(0) & 0x80 != 0 {
        let extensions = byte(1);
        at = 2;
        if extensions & 0x80 != 0 {
            at += if byte(at) & 0x80 != 0 { 2 } else { 1 };
        }
        if extensions & 0x40 != 0 {
            at += 1;
        }
        if extensions & 0x30 != 0 {
            at += 1;
        }
    }
    payload.get(at..).unwrap_or_default()
}

/// One encoded Opus frame and its audio level, as a browser reports it in the RFC 6464 header
/// extension (`-dBov`, -127..=0).
pub struct AudioFrame {
    /// The Opus payload.
    pub payload: Arc<[u8]>,
    /// The frame's level.
    pub level: i8,
}

/// The RFC 6464 level of a frame of samples: its RMS in dBov, -127..=0.
fn dbov(pcm: &[i16]) -> i8 {
    let power = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len().max(1) as f64;
    let db = 10.0 * (power / f64::from(i16::MAX).powi(2)).log10();
    db.clamp(-127.0, 0.0).round() as i8
}

/// Encodes `duration` of a synthesized voice with Opus (48 kHz mono, 32 kbps, 20 ms frames).
///
/// The signal is a buzz of harmonics whose pitch glides like speech intonation, shaped into
/// syllables at ~4 Hz with pauses between phrases, so the encoder sees speech-like variation
/// (loud, soft, silent) rather than a steady tone.
pub fn audio_frames(duration: Duration) -> Result<Vec<AudioFrame>, MediaError> {
    const RATE: u32 = 48_000;
    let mut encoder = opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip)?;
    encoder.set_bitrate(opus::Bitrate::Bits(32_000))?;
    let samples_per_frame = (RATE as u128 * AUDIO_FRAME.as_millis() / 1000) as usize;
    let frames = (duration.as_millis() / AUDIO_FRAME.as_millis()) as usize;
    let mut phase = 0f32;
    let mut noise = 0x1234_5678u32;
    let mut pcm = vec![0i16; samples_per_frame];
    let mut out = Vec::with_capacity(frames);
    let mut buf = [0u8; 1500];
    for f in 0..frames {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (f * samples_per_frame + i) as f32 / RATE as f32;
            let pitch = 140.0 + 40.0 * (TAU * 0.3 * t).sin() + 15.0 * (TAU * 1.7 * t).sin();
            phase = (phase + TAU * pitch / RATE as f32) % TAU;
            let voiced: f32 = (1..=8).map(|h| (phase * h as f32).sin() / h as f32).sum();
            let syllable = (TAU * 4.0 * t).sin().max(0.0);
            let phrase = if (t % 3.0) < 2.2 { 1.0 } else { 0.0 };
            noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let hiss = (noise >> 16) as f32 / 65_536.0 - 0.5;
            // A faint noise floor keeps every encoded frame distinct, even in pauses.
            let v = phrase * syllable * (0.6 * voiced + 0.1 * hiss) + 0.002 * hiss;
            *s = (v.clamp(-1.0, 1.0) * 12_000.0) as i16;
        }
        let n = encoder.encode(&pcm, &mut buf)?;
        out.push(AudioFrame {
            payload: Arc::from(&buf[..n]),
            level: dbov(&pcm),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulcast_descriptor_carries_the_ids_and_leaves_the_body() {
        let frames = video_frames().unwrap();
        let first = &frames[0].packets[0];
        let p = with_picture_id(first, 0x1234, 7);
        let descriptor = [0x90, 0xe0, 0x92, 0x34, 7, 0];
        assert_eq!(&p[..6], &descriptor, "S kept, 15-bit id, TL0PICIDX, TID 0");
        let parsed = str0m::rtp::Vp8Descriptor::parse(&p).expect("as str0m reads it");
        assert!(
            parsed.starts_keyframe(&p),
            "the keyframe's tag right after it"
        );
        assert_eq!(vp8_body(&p), &first[1..]);
        assert_eq!(vp8_body(first), &first[1..], "a one-byte descriptor");
        let later = with_picture_id(&frames[0].packets[1], 5, 0);
        assert_eq!(later[0], 0x80, "no start bit on a later packet");
        assert_eq!(vp8_body(&[0x80, 0x80, 0x05, 9]), &[9], "a 7-bit PictureID");
        assert_eq!(
            vp8_body(&[0x80]),
            &[] as &[u8],
            "truncated: nothing, no panic"
        );
    }

    #[test]
    fn the_clip_is_vp8_with_periodic_keyframes() {
        let frames = video_frames().unwrap();
        assert_eq!(frames.len(), 180, "6 s at 30 fps");
        assert!(frames[0].keyframe);
        let keyframes: Vec<usize> = (0..frames.len()).filter(|&i| frames[i].keyframe).collect();
        assert_eq!(keyframes, vec![0, 75, 150]);
        for f in &frames {
            assert_eq!(f.packets[0][0], 0x10, "first packet starts the partition");
            assert!(f.packets.iter().all(|p| p.len() <= MAX_PAYLOAD));
            assert!(f.packets[1..].iter().all(|p| p[0] == 0));
        }
        let bytes: usize = frames
            .iter()
            .flat_map(|f| &f.packets)
            .map(|p| p.len())
            .sum();
        let kbps = bytes * 8 / 6 / 1000;
        assert!((450..700).contains(&kbps), "{kbps} kbps");
    }

    #[test]
    fn synthesized_speech_encodes_to_varying_opus_frames() {
        let frames = audio_frames(Duration::from_secs(3)).unwrap();
        assert_eq!(frames.len(), 150);
        let sizes: Vec<usize> = frames.iter().map(|f| f.payload.len()).collect();
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(*max > 60, "speech encodes large: {max}");
        assert!(
            *max > 2 * *min,
            "pauses encode smaller than speech: {min}..{max}"
        );
        let levels: Vec<i8> = frames.iter().map(|f| f.level).collect();
        assert!(
            levels.iter().any(|&l| l > -30),
            "speech is loud: {levels:?}"
        );
        assert!(
            levels.iter().any(|&l| l < -60),
            "pauses are quiet: {levels:?}"
        );
        assert_eq!(dbov(&[i16::MAX; 960]), 0);
        assert_eq!(dbov(&[0; 960]), -127);
    }
}
