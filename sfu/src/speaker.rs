//! Who is speaking, from the RFC 6464 audio levels the publishers' browsers put in each audio
//! packet's header extension: no decoding, one comparison and one multiply-add per packet.

use std::time::{Duration, Instant};

/// A packet at least this loud (dBov, 0 is the loudest) counts as speech.
const SPEECH_DBOV: i8 = -45;
/// Smoothing per 20 ms packet: about 170 ms of speech to start, 450 ms of quiet to stop.
const KEEP: f32 = 0.92;
/// Starts speaking above this share of loud packets…
const START: f32 = 0.5;
/// …and stops below this one.
const STOP: f32 = 0.15;
/// Without audio for this long (muted, or the publisher stopped), speech has stopped.
const SILENCE: Duration = Duration::from_secs(1);

/// Speaking state of one audio track, with hysteresis so it does not flicker between words.
#[derive(Debug, Default)]
pub(crate) struct SpeakerDetector {
    /// Smoothed share of loud packets.
    loudness: f32,
    speaking: bool,
    last_packet: Option<Instant>,
}

impl SpeakerDetector {
    /// Takes one packet's level (`-dBov`, -127..=0); returns the new state when it changed.
    pub fn packet(&mut self, level: i8, now: Instant) -> Option<bool> {
        self.last_packet = Some(now);
        let loud = if level >= SPEECH_DBOV { 1.0 } else { 0.0 };
        self.loudness = KEEP * self.loudness + (1.0 - KEEP) * loud;
        let speaking = if self.speaking {
            self.loudness >= STOP
        } else {
            self.loudness > START
        };
        self.change(speaking)
    }

    /// Ends speech after a silence without packets; returns `Some(false)` when it did.
    pub fn idle(&mut self, now: Instant) -> Option<bool> {
        let silent = self
            .last_packet
            .is_none_or(|t| now.saturating_duration_since(t) >= SILENCE);
        if self.speaking && silent {
            self.loudness = 0.0;
            return self.change(false);
        }
        None
    }

    /// Forgets the speech (the track was muted); returns `Some(false)` if it was speaking.
    pub fn reset(&mut self) -> Option<bool> {
        self.loudness = 0.0;
        self.change(false)
    }

    fn change(&mut self, speaking: bool) -> Option<bool> {
        (speaking != self.speaking).then(|| {
            self.speaking = speaking;
            speaking
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKET: Duration = Duration::from_millis(20);

    /// Feeds `n` packets of `level`; returns the changes with the packet index they came at.
    fn feed(d: &mut SpeakerDetector, t: &mut Instant, level: i8, n: usize) -> Vec<(usize, bool)> {
        (0..n)
            .filter_map(|i| {
                *t += PACKET;
                d.packet(level, *t).map(|s| (i, s))
            })
            .collect()
    }

    #[test]
    fn speech_starts_after_a_moment_and_stops_after_a_pause_not_between_words() {
        let mut d = SpeakerDetector::default();
        let mut t = Instant::now();
        assert_eq!(
            feed(&mut d, &mut t, -80, 50),
            vec![],
            "silence stays silent"
        );
        let started = feed(&mut d, &mut t, -20, 50);
        assert_eq!(started.len(), 1);
        assert!(
            started[0].1 && (6..=12).contains(&started[0].0),
            "{started:?}"
        );
        // A 100 ms gap between words does not stop it.
        assert_eq!(feed(&mut d, &mut t, -90, 5), vec![]);
        assert_eq!(feed(&mut d, &mut t, -25, 10), vec![]);
        let stopped = feed(&mut d, &mut t, -90, 50);
        assert_eq!(stopped.len(), 1);
        assert!(
            !stopped[0].1 && (15..=30).contains(&stopped[0].0),
            "{stopped:?}"
        );
    }

    #[test]
    fn packets_stopping_or_a_mute_end_speech() {
        let mut d = SpeakerDetector::default();
        let mut t = Instant::now();
        feed(&mut d, &mut t, -10, 30);
        assert_eq!(d.idle(t + Duration::from_millis(500)), None);
        assert_eq!(d.idle(t + SILENCE), Some(false));
        assert_eq!(d.idle(t + 2 * SILENCE), None, "reported once");
        feed(&mut d, &mut t, -10, 30);
        assert_eq!(d.reset(), Some(false));
        assert_eq!(d.reset(), None);
    }
}
