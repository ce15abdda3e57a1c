use std::ops::{AddAssign, SubAssign};
use std::time::{Duration, Instant};

/// Time buckets a history keeps: its sum covers between `BUCKETS - 1` and `BUCKETS` of them.
const BUCKETS: usize = 10;

/// The sum of values pushed over the last `max_time` (1 s by default), for a rate or a ratio.
///
/// Jinke's patch: the values are summed into `BUCKETS` buckets of `max_time / BUCKETS` each,
/// not kept one by one in a deque. A send stream pushes every packet it sends (for the
/// resend ratio cap): the deque held ~130 entries a second per stream, one more cold cache
/// line per packet for an SFU sending to hundreds of subscribers, and it grew without end
/// unless `purge_old` was called (only a poll did). Now the history is a fixed size, and the
/// sum is exact to a bucket: a value leaves it between `max_time - max_time / BUCKETS` and
/// `max_time` after it was pushed.
#[derive(Debug)]
pub(crate) struct ValueHistory<T> {
    /// The sum of `buckets`.
    value: T,
    buckets: [T; BUCKETS],
    /// The start of the newest bucket and its index in `buckets`; `None` before the first push.
    newest: Option<(Instant, usize)>,
    max_time: Duration,
}

const DEFAULT_VALUE_HISTORY_DURATION: Duration = Duration::from_secs(1);

impl<T: Default + Copy> Default for ValueHistory<T> {
    fn default() -> Self {
        Self {
            value: Default::default(),
            buckets: [T::default(); BUCKETS],
            newest: None,
            max_time: DEFAULT_VALUE_HISTORY_DURATION,
        }
    }
}

impl<T> ValueHistory<T>
where
    T: Copy + Default + AddAssign + SubAssign,
{
    fn bucket_width(&self) -> Duration {
        self.max_time / BUCKETS as u32
    }

    /// Adds a timed value. Time should increase from one push to the next; a value older
    /// than the newest bucket is added to the bucket of its time, or dropped when that has
    /// left the window.
    pub fn push(&mut self, t: Instant, v: T) {
        self.purge_old(t);
        let width = self.bucket_width();
        let (start, index) = *self.newest.get_or_insert((t, 0));
        let back = if t >= start {
            0
        } else {
            (start - t).as_nanos().div_ceil(width.as_nanos().max(1)) as usize
        };
        if back >= BUCKETS {
            return;
        }
        self.buckets[(index + BUCKETS - back) % BUCKETS] += v;
        self.value += v;
    }

    /// Returns the sum of the values in the window, as of the last push or
    /// [`ValueHistory::purge_old`].
    pub fn sum(&self) -> T {
        self.value
    }

    /// Moves the window on to end at `now`, dropping the buckets that left it.
    pub fn purge_old(&mut self, now: Instant) {
        let Some((start, index)) = self.newest else {
            return;
        };
        if now < start {
            return;
        }
        let width = self.bucket_width().max(Duration::from_nanos(1));
        let steps = ((now - start).as_nanos() / width.as_nanos()) as usize;
        if steps == 0 {
            return;
        }
        for i in 1..=steps.min(BUCKETS) {
            let bucket = &mut self.buckets[(index + i) % BUCKETS];
            self.value -= *bucket;
            *bucket = T::default();
        }
        self.newest = Some((start + width * steps as u32, (index + steps) % BUCKETS));
    }
}

#[allow(clippy::unchecked_time_subtraction)]
#[cfg(test)]
mod test {
    use std::time::{Duration, Instant};

    use super::ValueHistory;

    #[test]
    fn a_value_counts_for_the_window_after_its_push() {
        let now = Instant::now();
        let mut h = ValueHistory::default();

        assert_eq!(h.sum(), 0);
        h.push(now - Duration::from_millis(1500), 22);
        assert_eq!(h.sum(), 22);
        h.purge_old(now);
        assert_eq!(h.sum(), 0);
        h.push(now - Duration::from_millis(700), 22);
        h.push(now - Duration::from_millis(500), 33);
        assert_eq!(h.sum(), 22 + 33);
        h.purge_old(now);
        assert_eq!(h.sum(), 22 + 33);

        h.purge_old(now + Duration::from_millis(400));
        assert_eq!(h.sum(), 33);
        h.purge_old(now + Duration::from_millis(600));
        assert_eq!(h.sum(), 0);
    }

    #[test]
    fn values_pushed_for_long_sum_to_one_window_and_late_ones_land_in_their_bucket() {
        let start = Instant::now();
        let mut h = ValueHistory::default();
        // 10 ms apart for 5 s: the window holds 90 to 100 of them.
        for i in 0..500_u64 {
            h.push(start + Duration::from_millis(i * 10), 1_u64);
        }
        assert!((90..=100).contains(&h.sum()), "{}", h.sum());

        // A late value inside the window counts; one older than the window does not.
        let now = start + Duration::from_millis(4990);
        let before = h.sum();
        h.push(now - Duration::from_millis(300), 1000);
        assert_eq!(h.sum(), before + 1000);
        h.push(now - Duration::from_millis(2000), 1000);
        assert_eq!(h.sum(), before + 1000);
        // It leaves with its bucket.
        h.purge_old(now + Duration::from_millis(800));
        assert!(h.sum() < 1000, "{}", h.sum());
    }
}
