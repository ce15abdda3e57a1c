//! How much video one subscriber's link carries, judged from the loss its receiver reports.
//!
//! A village hall's uplink may carry far less than a teacher's video. When a subscriber keeps
//! losing packets the server steps it down a simulcast layer at a time (at once, and two layers
//! when it loses more than half), and below the lowest layer to audio only (a lesson must stay
//! audible); when the link stays clean it tries one step up again, waiting twice as long after
//! each step up that failed. Loss from the RTCP
//! receiver reports is used rather than str0m's bandwidth estimator: that one paces every
//! packet of every subscriber and cost 30-45% more CPU per forwarded packet (BENCHMARKS.md).
//! Sans-IO: time is passed in.

use std::time::{Duration, Instant};

/// Loss above this, in a report, counts against the link.
const BAD_LOSS: f32 = 0.10;
/// Loss below this counts for it.
const GOOD_LOSS: f32 = 0.02;
/// Bad reports in a row before a step down (about one a second each).
const BAD_REPORTS: u32 = 2;
/// Loss above this acts on the first report: the link is far too thin, every second counts.
const HEAVY_LOSS: f32 = 0.25;
/// Loss above this (more than half of what was sent) steps down two layers at once.
const SEVERE_LOSS: f32 = 0.5;
/// Clean time before the first try of a step up; doubled after each failed try, up to the max.
/// Browsers report on audio only about every 5 s, so while audio only this is two clean
/// reports (a wait of exactly 5 s would miss a report that came a little early).
const FIRST_TRY: Duration = Duration::from_secs(4);
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// The most a subscriber's link carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Allowance {
    /// Audio (and shared screens) only.
    AudioOnly,
    /// Camera video up to this many layers from the smallest (0: the smallest only).
    UpToLayer(u8),
    /// Whatever the subscriber's view asks for.
    Any,
}

/// Steps one subscriber's allowance down on loss and back up when the link is clean.
#[derive(Debug)]
pub(crate) struct LinkController {
    allowance: Allowance,
    /// Layers the subscriber's video has (1 without simulcast).
    layers: u8,
    bad: u32,
    /// Since when reports have been clean.
    clean_since: Option<Instant>,
    /// How long the link must stay clean before the next step up.
    wait: Duration,
    /// Whether the last change was a step up (a step down right after it means it failed).
    stepped_up: bool,
}

impl Default for LinkController {
    fn default() -> LinkController {
        LinkController {
            allowance: Allowance::Any,
            layers: 1,
            bad: 0,
            clean_since: None,
            wait: FIRST_TRY,
            stepped_up: false,
        }
    }
}

impl LinkController {
    /// The current allowance.
    pub fn allowance(&self) -> Allowance {
        self.allowance
    }

    /// How many layers the subscriber's camera video has (at least 1).
    pub fn set_layers(&mut self, layers: u8) {
        self.layers = layers.max(1);
    }

    /// A receiver report said `loss` (fraction lost) at `now`. Returns the new allowance when
    /// it changed.
    pub fn report(&mut self, loss: f32, now: Instant) -> Option<Allowance> {
        if loss > BAD_LOSS {
            self.clean_since = None;
            self.bad += 1;
            if self.bad < BAD_REPORTS && loss <= HEAVY_LOSS {
                return None;
            }
            self.bad = 0;
            if self.stepped_up {
                self.wait = (self.wait * 2).min(LONGEST_WAIT);
            }
            self.stepped_up = false;
            let mut down = self.step_down(self.allowance);
            if loss > SEVERE_LOSS {
                down = self.step_down(down);
            }
            return self.set(down);
        }
        self.bad = 0;
        if loss >= GOOD_LOSS {
            return None;
        }
        let since = *self.clean_since.get_or_insert(now);
        if self.allowance == Allowance::Any || now.saturating_duration_since(since) < self.wait {
            return None;
        }
        self.clean_since = Some(now);
        self.stepped_up = true;
        let up = self.step_up();
        self.set(up)
    }

    fn step_down(&self, from: Allowance) -> Allowance {
        let top = self.layers - 1;
        match from {
            Allowance::Any if top > 0 => Allowance::UpToLayer(top - 1),
            Allowance::UpToLayer(n) if n > 0 => Allowance::UpToLayer(n.min(top) - 1),
            _ => Allowance::AudioOnly,
        }
    }

    fn step_up(&self) -> Allowance {
        let top = self.layers - 1;
        match self.allowance {
            Allowance::AudioOnly if top > 0 => Allowance::UpToLayer(0),
            Allowance::UpToLayer(n) if n + 1 < top => Allowance::UpToLayer(n + 1),
            _ => Allowance::Any,
        }
    }

    fn set(&mut self, allowance: Allowance) -> Option<Allowance> {
        (allowance != self.allowance).then(|| {
            self.allowance = allowance;
            allowance
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn loss_steps_a_simulcast_subscriber_down_to_audio_and_clean_time_back_up() {
        let t0 = Instant::now();
        let mut c = LinkController::default();
        c.set_layers(3);
        assert_eq!(
            c.report(0.2, at(t0, 1)),
            None,
            "one bad report is not enough"
        );
        assert_eq!(c.report(0.2, at(t0, 2)), Some(Allowance::UpToLayer(1)));
        assert_eq!(c.report(0.2, at(t0, 3)), None);
        assert_eq!(c.report(0.2, at(t0, 4)), Some(Allowance::UpToLayer(0)));
        c.report(0.2, at(t0, 5));
        assert_eq!(c.report(0.2, at(t0, 6)), Some(Allowance::AudioOnly));
        assert_eq!(c.report(0.2, at(t0, 8)), None, "nothing lower than audio");
        // Clean for a while: one step up at a time.
        assert_eq!(c.report(0.0, at(t0, 9)), None);
        assert_eq!(c.report(0.0, at(t0, 12)), None);
        assert_eq!(c.report(0.0, at(t0, 13)), Some(Allowance::UpToLayer(0)));
        assert_eq!(c.report(0.01, at(t0, 17)), Some(Allowance::UpToLayer(1)));
        assert_eq!(c.report(0.0, at(t0, 21)), Some(Allowance::Any));
        assert_eq!(c.report(0.0, at(t0, 60)), None);
    }

    #[test]
    fn a_failed_step_up_waits_twice_as_long_before_the_next() {
        let t0 = Instant::now();
        let mut c = LinkController::default();
        c.report(0.2, at(t0, 0));
        assert_eq!(c.report(0.2, at(t0, 1)), Some(Allowance::AudioOnly));
        c.report(0.0, at(t0, 2));
        assert_eq!(
            c.report(0.0, at(t0, 7)),
            Some(Allowance::Any),
            "video again"
        );
        c.report(0.2, at(t0, 8));
        assert_eq!(c.report(0.2, at(t0, 9)), Some(Allowance::AudioOnly));
        c.report(0.0, at(t0, 10));
        assert_eq!(c.report(0.0, at(t0, 14)), None, "4 s no longer do");
        assert_eq!(c.report(0.0, at(t0, 18)), Some(Allowance::Any));
    }

    #[test]
    fn heavy_loss_acts_at_once_and_severe_loss_skips_a_layer() {
        let t0 = Instant::now();
        let mut c = LinkController::default();
        c.set_layers(3);
        // A 300 kbps link under a 1.2 Mbps top layer loses three quarters of it.
        assert_eq!(c.report(0.75, at(t0, 1)), Some(Allowance::UpToLayer(0)));
        let mut c = LinkController::default();
        c.set_layers(3);
        assert_eq!(c.report(0.4, at(t0, 1)), Some(Allowance::UpToLayer(1)));
        assert_eq!(c.report(0.6, at(t0, 2)), Some(Allowance::AudioOnly));
    }

    #[test]
    fn middling_loss_holds_still() {
        let t0 = Instant::now();
        let mut c = LinkController::default();
        c.set_layers(2);
        for s in 0..30 {
            assert_eq!(c.report(0.05, at(t0, s)), None);
        }
        assert_eq!(c.allowance(), Allowance::Any);
    }
}
