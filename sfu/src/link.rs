//! How much video one subscriber's link carries, judged from the loss its receiver reports.
//!
//! A village hall's uplink may carry far less than a teacher's video. A new subscriber starts
//! on the smallest simulcast layer and climbs a layer at a time while its reports stay clean
//! (a picture at once, sharp after a few seconds, and nothing frozen on a thin link). When it
//! keeps losing packets the server steps it down a layer at a time (at once, and two layers
//! when it loses more than half), and below the lowest layer to audio only (a lesson must stay
//! audible). A step up that brings loss is undone at the first lossy report, and the next try
//! waits twice as long. Reports that arrive just after a step down still speak of the layer
//! before it and are not held against the new one, unless they show the link far worse.
//! Lossy reports just after a link that was dead both ways is back do not count either: they
//! count everything sent into the dead link. The loss judged is the subscriber's link's own:
//! the gaps a publisher's loss left in the stream are taken out first (`route.rs`). Loss from
//! the RTCP receiver reports is the signal for everyone. A subscriber of a one-to-one lesson
//! or a small class also has str0m's bandwidth estimator (transport-wide feedback, unpaced):
//! when it finds the link congested (its estimate falls well below what is being sent) the
//! video steps down before a deep queue on the way (a router's buffer: seconds of delay, no
//! loss yet) fills and loses. Lectures go without it: it costs ~50% more CPU per forwarded
//! packet (BENCHMARKS.md), and one core must carry a lecture to many. Sans-IO: time is passed
//! in.

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
/// For this long after a step, reports may still describe the time before it took effect (the
/// switch waits for a keyframe; a report covers the second before it was sent): bad ones after
/// a step down and clean ones after a step up do not count. A bad one that shows the link
/// carrying less than half of what got through when the step was taken does count: that is
/// the link getting worse, not the layer before (a link that narrows to 60 kbps must not wait
/// out the settling on the layer it cannot carry either).
const SETTLE: Duration = Duration::from_secs(2);
/// As [`SETTLE`], after video resumes: the first report on it may come a report interval after
/// the keyframe it waits for.
const RESUME_SETTLE: Duration = Duration::from_secs(3);
/// Clean time before the first try of a step up after the link lost packets; doubled after
/// each failed try, up to the max. Browsers report on audio only about every 5 s, so while
/// audio only this is two clean reports (a wait of exactly 5 s would miss a report that came
/// a little early).
const FIRST_TRY: Duration = Duration::from_secs(4);
const LONGEST_WAIT: Duration = Duration::from_secs(60);
/// Clean time after a step up that proves it: a later loss is the link changing, not the step.
const PROVEN: Duration = Duration::from_secs(3);
/// Nothing heard from a subscriber for longer than this (browsers send receiver reports about
/// every second and ICE checks every few) means its link was dead both ways. The first reports
/// after it count everything sent into the dead link: they say nothing of what the link carries
/// now, so for [`SETTLE`] after it lossy reports do not count. (A publisher's outage needs no
/// such rule: the gap it leaves is taken out of the reports, see `Subscription::downlink_loss`.)
const OUTAGE: Duration = Duration::from_secs(3);
/// An estimate that falls below this share of what is being sent means the link is congested:
/// on a link that carries everything the estimator's decrease lands near 0.85 of what it
/// carries, so this leaves room for the sending rate's burstiness (keyframes).
const CONGESTED: f64 = 0.7;
/// What is being sent is measured over this long (many frames: a keyframe is a burst).
const SENT_WINDOW: Duration = Duration::from_secs(1);

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
    /// Layers the subscriber's camera video has (1 without simulcast); `None` until it was
    /// reported on ([`LinkController::set_layers`]): before, it gets none, and an estimate has
    /// nothing to step down.
    layers: Option<u8>,
    bad: u32,
    /// Since when reports have been clean.
    clean_since: Option<Instant>,
    /// How long the link must stay clean before the next step up.
    wait: Duration,
    /// Still on the first climb: no loss seen yet.
    climbing: bool,
    /// The allowance before a step up not yet proven, and when that step was taken.
    tried_from: Option<(Allowance, Instant)>,
    /// The last step (or outage), and until when reports may speak of the time before it.
    settling: Option<(Step, Instant)>,
    /// When the last datagram came from the subscriber.
    heard: Option<Instant>,
    /// The estimator's last estimate (bits per second), for subscribers that have one.
    estimate: Option<u64>,
    /// Media bytes sent to the subscriber in all, and when: the start of the current window.
    sent_mark: Option<(u64, Instant)>,
    /// What was sent in the last whole [`SENT_WINDOW`], in bits per second.
    sending: u64,
}

/// Which way the allowance last moved.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// Down, on a report of this much loss.
    Down(f32),
    Up,
    /// Up from audio only: the video's first reports also count the packets lost before it
    /// was held back, so neither bad nor clean ones tell anything yet.
    Resume,
    /// Not a step: an [`OUTAGE`] just ended. Lossy reports tell nothing yet.
    Outage,
}

impl Default for LinkController {
    fn default() -> LinkController {
        LinkController {
            allowance: Allowance::UpToLayer(0),
            layers: None,
            bad: 0,
            clean_since: None,
            wait: FIRST_TRY,
            climbing: true,
            tried_from: None,
            settling: None,
            heard: None,
            estimate: None,
            sent_mark: None,
            sending: 0,
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
        self.layers = Some(layers.max(1));
    }

    /// A datagram came from the subscriber at `now` (called for each: one compare and store).
    pub fn heard(&mut self, now: Instant) {
        if self
            .heard
            .is_some_and(|last| now.saturating_duration_since(last) > OUTAGE)
        {
            // The link is back from an outage: lossy reports in the next [`SETTLE`] count what
            // was lost in it.
            self.bad = 0;
            self.settling = Some((Step::Outage, now + SETTLE));
        }
        self.heard = Some(now);
    }

    /// A receiver report said `loss` (fraction lost) at `now`. Returns the new allowance when
    /// it changed.
    pub fn report(&mut self, loss: f32, now: Instant) -> Option<Allowance> {
        if let Some((_, at)) = self.tried_from
            && now.saturating_duration_since(at) >= PROVEN
            && loss <= BAD_LOSS
        {
            self.tried_from = None;
        }
        if loss > BAD_LOSS {
            self.clean_since = None;
            match self.settling(now) {
                Some(Step::Resume | Step::Outage) => return None,
                Some(Step::Down(before)) if 1.0 - loss >= (1.0 - before) / 2.0 => return None,
                _ => {}
            }
            self.bad += 1;
            if self.tried_from.is_none() && self.bad < BAD_REPORTS && loss <= HEAVY_LOSS {
                return None;
            }
            return self.back_off(loss, now);
        }
        self.bad = 0;
        if loss >= GOOD_LOSS || matches!(self.settling(now), Some(Step::Up | Step::Resume)) {
            return None;
        }
        let since = *self.clean_since.get_or_insert(now);
        // The first climb takes a step at each clean report that speaks of the layer reached.
        let wait = if self.climbing {
            Duration::ZERO
        } else {
            self.wait
        };
        if self.allowance == Allowance::Any || now.saturating_duration_since(since) < wait {
            return None;
        }
        self.clean_since = Some(now);
        self.tried_from = Some((self.allowance, now));
        let up = self.step_up();
        let step = if self.allowance == Allowance::AudioOnly {
            Step::Resume
        } else {
            Step::Up
        };
        self.set(up, step, now)
    }

    /// The estimator said the link carries `estimate` bits per second at `now`, when `sent`
    /// media bytes had gone to the subscriber in all. Returns the new allowance when it
    /// changed: one step down (or back from an unproven step up) when the estimate just fell
    /// below [`CONGESTED`] of what is being sent, once the subscriber gets camera video (one
    /// that gets sound alone is not told its link is weak). Only a fall counts: without probes the
    /// estimate trails what is sent after each step up, and rises to it when the link is
    /// clean. Just after a step down, or while video resumes, the queue the step left still
    /// drains: nothing counts then.
    pub fn estimate(&mut self, estimate: u64, sent: u64, now: Instant) -> Option<Allowance> {
        match self.sent_mark {
            None => self.sent_mark = Some((sent, now)),
            Some((bytes, at)) => {
                let span = now.saturating_duration_since(at);
                if span >= SENT_WINDOW {
                    let bits = sent.saturating_sub(bytes) as f64 * 8.0;
                    self.sending = (bits / span.as_secs_f64()) as u64;
                    self.sent_mark = Some((sent, now));
                }
            }
        }
        let fell = self
            .estimate
            .replace(estimate)
            .is_some_and(|e| estimate < e);
        let congested = (estimate as f64) < CONGESTED * self.sending as f64;
        if !fell || !congested || self.layers.is_none() {
            return None;
        }
        if self.settling(now).is_some_and(|step| step != Step::Up) {
            return None;
        }
        tracing::debug!(
            estimate,
            sending = self.sending,
            "the estimator finds the link congested"
        );
        self.back_off(0.0, now)
    }

    /// The link did not carry what was sent (`loss` lost, 0 when the estimator said so): back
    /// to where it was clean if a step up was not proven (the next try waits twice as long as
    /// the last, unless this was the first climb), else a step down (two on severe loss).
    fn back_off(&mut self, loss: f32, now: Instant) -> Option<Allowance> {
        self.clean_since = None;
        self.bad = 0;
        let down = if let Some((before, _)) = self.tried_from.take() {
            if !std::mem::take(&mut self.climbing) {
                self.wait = (self.wait * 2).min(LONGEST_WAIT);
            }
            before
        } else {
            self.climbing = false;
            let down = self.step_down(self.allowance);
            if loss > SEVERE_LOSS {
                self.step_down(down)
            } else {
                down
            }
        };
        self.set(down, Step::Down(loss), now)
    }

    /// The last step, if reports at `now` may still describe the time before it.
    fn settling(&self, now: Instant) -> Option<Step> {
        self.settling
            .and_then(|(step, until)| (now < until).then_some(step))
    }

    /// The subscriber's top layer (0 without simulcast, or before its camera was reported on).
    fn top(&self) -> u8 {
        self.layers.unwrap_or(1) - 1
    }

    fn step_down(&self, from: Allowance) -> Allowance {
        let top = self.top();
        match from {
            Allowance::Any if top > 0 => Allowance::UpToLayer(top - 1),
            Allowance::UpToLayer(n) if n > 0 => Allowance::UpToLayer(n.min(top) - 1),
            _ => Allowance::AudioOnly,
        }
    }

    fn step_up(&self) -> Allowance {
        let top = self.top();
        match self.allowance {
            Allowance::AudioOnly if top > 0 => Allowance::UpToLayer(0),
            Allowance::UpToLayer(n) if n + 1 < top => Allowance::UpToLayer(n + 1),
            _ => Allowance::Any,
        }
    }

    fn set(&mut self, allowance: Allowance, step: Step, now: Instant) -> Option<Allowance> {
        (allowance != self.allowance).then(|| {
            self.allowance = allowance;
            let settle = if step == Step::Resume {
                RESUME_SETTLE
            } else {
                SETTLE
            };
            self.settling = Some((step, now + settle));
            allowance
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ms` milliseconds after `t0`.
    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// A three-layer subscriber that climbed to the top on clean reports, and stayed clean
    /// there long enough for later loss to be the link's, not the last step's (`t0 + 7 s`).
    fn at_the_top(t0: Instant) -> LinkController {
        let mut c = LinkController::default();
        c.set_layers(3);
        c.report(0.0, at(t0, 1000));
        c.report(0.0, at(t0, 3000));
        assert_eq!(c.allowance(), Allowance::Any);
        c.report(0.0, at(t0, 7000));
        c
    }

    /// Drives [`LinkController::estimate`] as str0m's stats do: every 200 ms, with the media
    /// bytes sent so far.
    struct Estimates {
        sent: u64,
    }

    impl Estimates {
        /// From `from_ms` to `to_ms` (exclusive), sending `kbps`, with the estimate (kbps) that
        /// `estimate` gives for each moment; returns the allowances that changed, with when.
        fn feed(
            &mut self,
            c: &mut LinkController,
            t0: Instant,
            (from_ms, to_ms): (u64, u64),
            kbps: u64,
            estimate: impl Fn(u64) -> u64,
        ) -> Vec<(u64, Allowance)> {
            let mut changes = Vec::new();
            for ms in (from_ms..to_ms).step_by(200) {
                self.sent += kbps * 1000 / 8 / 5;
                if let Some(a) = c.estimate(estimate(ms) * 1000, self.sent, at(t0, ms)) {
                    changes.push((ms, a));
                }
            }
            changes
        }
    }

    #[test]
    fn a_falling_estimate_below_what_is_sent_steps_down_before_any_loss() {
        let t0 = Instant::now();
        let mut c = at_the_top(t0);
        let mut e = Estimates { sent: 0 };
        // The top layer (1.2 Mbps) on a link that carries it: the estimate rises past it.
        let rising = e.feed(&mut c, t0, (8000, 10_000), 1200, |ms| 900 + (ms - 8000) / 4);
        assert_eq!(rising, []);
        // Congested: the estimate falls, first to above 70% of what is sent (a dip), then below.
        assert_eq!(e.feed(&mut c, t0, (10_000, 10_200), 1200, |_| 900), []);
        assert_eq!(
            e.feed(&mut c, t0, (10_200, 10_400), 1200, |_| 800),
            [(10_200, Allowance::UpToLayer(1))],
        );
        // The queue the step left drains: its falling estimates do not count...
        let draining = e.feed(&mut c, t0, (10_400, 12_400), 500, |ms| {
            700 - (ms - 10_400) / 10
        });
        assert_eq!(draining, []);
        // ...and after that a fall below the new layer's rate steps down again.
        assert_eq!(
            e.feed(&mut c, t0, (12_400, 12_600), 500, |_| 300),
            [(12_400, Allowance::UpToLayer(0))],
        );
    }

    #[test]
    fn an_estimate_counts_only_once_camera_video_flows() {
        let t0 = Instant::now();
        let mut c = LinkController::default();
        let mut e = Estimates { sent: 0 };
        // Sound alone (~40 kbps), on a link that falls: no camera to step down, no notice.
        let falling = e.feed(&mut c, t0, (0, 3000), 40, |ms| 40 - ms / 100);
        assert_eq!(falling, []);
        assert_eq!(c.allowance(), Allowance::UpToLayer(0));
        c.set_layers(3);
        assert_eq!(
            e.feed(&mut c, t0, (3000, 3200), 40, |_| 5),
            [(3000, Allowance::AudioOnly)],
            "once it has camera video, the smallest layer's fall is to sound alone"
        );
    }

    #[test]
    fn an_estimate_that_trails_a_step_up_is_no_congestion_until_it_falls() {
        let t0 = Instant::now();
        let mut c = LinkController::default();
        c.set_layers(3);
        let mut e = Estimates { sent: 0 };
        // The smallest layer, ~150 kbps; str0m starts at 300 kbps.
        assert_eq!(e.feed(&mut c, t0, (0, 1000), 150, |_| 300), []);
        assert_eq!(c.report(0.0, at(t0, 1000)), Some(Allowance::UpToLayer(1)));
        // ~500 kbps now; without probes the estimate climbs behind it, far below for seconds.
        let trailing = e.feed(&mut c, t0, (1000, 4000), 500, |ms| 300 + (ms - 1000) / 100);
        assert_eq!(trailing, []);
        // It falls: the step up did not fit, back to where the link was clean.
        assert_eq!(
            e.feed(&mut c, t0, (4000, 4200), 500, |_| 300),
            [(4000, Allowance::UpToLayer(0))],
        );
    }

    #[test]
    fn a_new_subscriber_climbs_from_the_smallest_layer_while_reports_stay_clean() {
        let t0 = Instant::now();
        let mut c = LinkController::default();
        c.set_layers(3);
        assert_eq!(c.allowance(), Allowance::UpToLayer(0), "starts small");
        assert_eq!(c.report(0.0, at(t0, 1000)), Some(Allowance::UpToLayer(1)));
        assert_eq!(
            c.report(0.0, at(t0, 2000)),
            None,
            "a report right after the step may speak of the layer before"
        );
        assert_eq!(c.report(0.0, at(t0, 3000)), Some(Allowance::Any));
        assert_eq!(c.report(0.0, at(t0, 60_000)), None);
    }

    #[test]
    fn a_step_up_that_brings_loss_is_undone_at_once_and_tried_later() {
        let t0 = Instant::now();
        let mut c = LinkController::default();
        c.set_layers(3);
        assert_eq!(c.report(0.0, at(t0, 1000)), Some(Allowance::UpToLayer(1)));
        assert_eq!(
            c.report(0.15, at(t0, 2000)),
            Some(Allowance::UpToLayer(0)),
            "one lossy report undoes the step"
        );
        // The next try after 4 s clean...
        c.report(0.0, at(t0, 3000));
        assert_eq!(c.report(0.0, at(t0, 6000)), None);
        assert_eq!(c.report(0.0, at(t0, 7000)), Some(Allowance::UpToLayer(1)));
        assert_eq!(c.report(0.3, at(t0, 8000)), Some(Allowance::UpToLayer(0)));
        // ...and after it failed too, 8 s.
        c.report(0.0, at(t0, 9000));
        assert_eq!(c.report(0.0, at(t0, 16_000)), None);
        assert_eq!(c.report(0.0, at(t0, 17_000)), Some(Allowance::UpToLayer(1)));
    }

    #[test]
    fn loss_steps_down_to_audio_and_clean_time_brings_video_back() {
        let t0 = Instant::now();
        let mut c = at_the_top(t0);
        assert_eq!(
            c.report(0.2, at(t0, 10_000)),
            None,
            "one bad report is not enough"
        );
        assert_eq!(c.report(0.2, at(t0, 11_000)), Some(Allowance::UpToLayer(1)));
        c.report(0.2, at(t0, 13_100));
        assert_eq!(c.report(0.2, at(t0, 14_000)), Some(Allowance::UpToLayer(0)));
        c.report(0.2, at(t0, 16_100));
        assert_eq!(c.report(0.2, at(t0, 17_000)), Some(Allowance::AudioOnly));
        assert_eq!(
            c.report(0.2, at(t0, 20_000)),
            None,
            "nothing lower than audio"
        );
        assert_eq!(c.report(0.2, at(t0, 21_000)), None);
        // Clean for 4 s: video again, one layer at a time.
        assert_eq!(c.report(0.0, at(t0, 22_000)), None);
        assert_eq!(
            c.report(0.01, at(t0, 26_000)),
            Some(Allowance::UpToLayer(0))
        );
        assert_eq!(c.report(0.0, at(t0, 30_000)), Some(Allowance::UpToLayer(1)));
    }

    #[test]
    fn reports_just_after_a_step_down_do_not_count_against_the_new_layer() {
        let t0 = Instant::now();
        let mut c = at_the_top(t0);
        // A 300 kbps link under a 1.2 Mbps top layer loses three quarters of it: two layers
        // down at once.
        assert_eq!(
            c.report(0.75, at(t0, 10_000)),
            Some(Allowance::UpToLayer(0))
        );
        assert_eq!(
            c.report(0.8, at(t0, 11_000)),
            None,
            "still the top layer's loss"
        );
        assert_eq!(c.report(0.0, at(t0, 12_500)), None);
        // Still losing once settled: audio only.
        assert_eq!(c.report(0.3, at(t0, 13_000)), Some(Allowance::AudioOnly));
    }

    #[test]
    fn a_link_that_gets_worse_while_settling_is_stepped_down_at_once() {
        let t0 = Instant::now();
        let mut c = at_the_top(t0);
        assert_eq!(c.report(0.4, at(t0, 10_000)), Some(Allowance::UpToLayer(1)));
        assert_eq!(
            c.report(0.6, at(t0, 11_000)),
            None,
            "a little worse: may still be the top layer's time"
        );
        // 60 % got through when it stepped down; now 3 %: the link narrowed under it.
        assert_eq!(c.report(0.97, at(t0, 11_500)), Some(Allowance::AudioOnly));
    }

    #[test]
    fn lossy_reports_just_after_an_outage_do_not_count() {
        let t0 = Instant::now();
        let mut c = LinkController::default();
        c.set_layers(3);
        c.heard(at(t0, 500));
        assert_eq!(c.report(0.0, at(t0, 1000)), Some(Allowance::UpToLayer(1)));
        c.heard(at(t0, 1000));
        c.heard(at(t0, 2500));
        // Dead both ways for 10 s: the first report after it counts all that was sent into it.
        c.heard(at(t0, 12_500));
        assert_eq!(
            c.report(0.99, at(t0, 12_500)),
            None,
            "the outage, not the link"
        );
        assert_eq!(c.report(0.99, at(t0, 14_000)), None);
        assert_eq!(c.report(0.0, at(t0, 15_000)), Some(Allowance::Any));
        // Heard all along: a silence of 3 s is no outage.
        c.heard(at(t0, 18_000));
        c.heard(at(t0, 21_000));
        assert_eq!(c.report(0.6, at(t0, 21_000)), Some(Allowance::UpToLayer(1)));
    }

    #[test]
    fn the_first_reports_after_video_resumes_count_neither_way() {
        let t0 = Instant::now();
        let mut c = LinkController::default();
        c.set_layers(3);
        assert_eq!(c.report(0.6, at(t0, 1000)), Some(Allowance::AudioOnly));
        c.report(0.0, at(t0, 4000));
        assert_eq!(c.report(0.0, at(t0, 8000)), Some(Allowance::UpToLayer(0)));
        assert_eq!(
            c.report(0.3, at(t0, 9000)),
            None,
            "this report also counts what was lost before the video was held back"
        );
        assert_eq!(c.report(0.0, at(t0, 9500)), None, "and so may a clean one");
        assert_eq!(c.report(0.3, at(t0, 10_500)), None);
        assert_eq!(
            c.report(0.3, at(t0, 11_500)),
            Some(Allowance::AudioOnly),
            "once settled, loss undoes the step"
        );
    }

    #[test]
    fn heavy_loss_acts_at_once_and_severe_loss_skips_a_layer() {
        let t0 = Instant::now();
        let mut c = at_the_top(t0);
        assert_eq!(c.report(0.4, at(t0, 10_000)), Some(Allowance::UpToLayer(1)));
        assert_eq!(c.report(0.6, at(t0, 12_000)), Some(Allowance::AudioOnly));
    }

    #[test]
    fn middling_loss_holds_still() {
        let t0 = Instant::now();
        let mut c = at_the_top(t0);
        for s in 10..40 {
            assert_eq!(c.report(0.05, at(t0, s * 1000)), None);
        }
        assert_eq!(c.allowance(), Allowance::Any);
    }

    #[test]
    fn one_layer_goes_straight_between_video_and_audio_only() {
        let t0 = Instant::now();
        let mut c = LinkController::default();
        assert_eq!(c.report(0.0, at(t0, 1000)), Some(Allowance::Any));
        c.report(0.0, at(t0, 5000));
        assert_eq!(c.report(0.3, at(t0, 6000)), Some(Allowance::AudioOnly));
    }
}
