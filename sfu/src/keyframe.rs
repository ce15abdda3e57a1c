//! Coalescing of keyframe requests (PLI/FIR) per published track.
//!
//! A lecture with 2,000 students must not make the teacher's browser encode 2,000 keyframes: all
//! requests for one publisher track within [`KEYFRAME_REQUEST_INTERVAL`] become one. A request that
//! arrives inside the window is not dropped but deferred to the window's end, so a student who
//! joins just after another still gets a keyframe sent after they were ready for it.

use std::time::{Duration, Instant};

/// The shortest time between two keyframe requests sent to one publisher track.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// Decides when requests from many subscribers reach the publisher (sans-IO: time is passed in).
#[derive(Debug, Default)]
pub struct KeyframeCoalescer {
    last_sent: Option<Instant>,
    deferred: bool,
}

impl KeyframeCoalescer {
    /// A subscriber asks for a keyframe at `now`. Returns true when the request must be sent to
    /// the publisher now; otherwise it is remembered and [`Self::poll`] releases it later.
    pub fn request(&mut self, now: Instant) -> bool {
        if self.window_open(now) {
            self.last_sent = Some(now);
            self.deferred = false;
            true
        } else {
            self.deferred = true;
            false
        }
    }

    /// Returns true when a deferred request is due at `now` (and counts it as sent).
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.deferred && self.window_open(now) {
            self.last_sent = Some(now);
            self.deferred = false;
            true
        } else {
            false
        }
    }

    /// When [`Self::poll`] next has something to release, if anything is deferred.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.deferred, self.last_sent) {
            (true, Some(t)) => Some(t + KEYFRAME_REQUEST_INTERVAL),
            _ => None,
        }
    }

    fn window_open(&self, now: Instant) -> bool {
        self.last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_requests_sends_one_and_defers_one() {
        let t0 = Instant::now();
        let mut k = KeyframeCoalescer::default();
        assert!(k.request(t0));
        let sent = (1..2000)
            .filter(|i| k.request(t0 + Duration::from_micros(i * 100)))
            .count();
        assert_eq!(sent, 0, "requests inside the window reach the publisher");
        assert_eq!(k.deadline(), Some(t0 + KEYFRAME_REQUEST_INTERVAL));
        assert!(!k.poll(t0 + Duration::from_millis(499)));
        assert!(k.poll(t0 + Duration::from_millis(500)));
        assert!(!k.poll(t0 + Duration::from_millis(1500)), "released twice");
        assert_eq!(k.deadline(), None);
    }

    #[test]
    fn at_most_one_request_per_interval_over_time() {
        let t0 = Instant::now();
        let mut k = KeyframeCoalescer::default();
        let mut sent = Vec::new();
        // One request every 10 ms for 5 s, polling in between as the shard does.
        for ms in (0..5000).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            if k.request(now) || k.poll(now) {
                sent.push(ms);
            }
        }
        assert_eq!(sent.len(), 10);
        assert!(sent.windows(2).all(|w| w[1] - w[0] >= 500));
    }
}
