//! When each peer of a shard next needs its clock moved or its deadline judged: a heap of
//! (time, peer). A shard wakes hundreds of times a second; with this, each wake finds the peers
//! that are due, and the time of the next, without a pass over all its peers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::PeerId;

/// A shard's timers. A peer may have several entries: one for each time it was given, the
/// earlier ones stale once a later time replaced them. A stale entry that comes due finds
/// nothing to do on its peer (the caller checks), so stale entries cost a wake-up at most.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, PeerId)>>,
}

impl Timers {
    /// Peer `id` needs looking at, at `at`.
    pub fn at(&mut self, at: Instant, id: PeerId) {
        self.heap.push(Reverse((at, id)));
    }

    /// The earliest time a peer needs looking at.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes out the next peer due by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<PeerId> {
        let &Reverse((at, id)) = self.heap.peek()?;
        (at <= now).then(|| {
            self.heap.pop();
            id
        })
    }

    /// Drops the stale entries once they outnumber the live ones (`live`: each peer's times
    /// now, `peers` of them) several times over: a peer whose time keeps moving later leaves
    /// entries that would otherwise wait for their time, which may be far off.
    pub fn compact(&mut self, peers: usize, live: impl Iterator<Item = (Instant, PeerId)>) {
        if self.heap.len() > 4 * peers + 64 {
            self.heap = live.map(Reverse).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn peers_come_due_in_time_order_and_not_before_their_time() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::default();
        timers.at(ms(30), PeerId(3));
        timers.at(ms(10), PeerId(1));
        timers.at(ms(20), PeerId(2));
        assert_eq!(timers.next(), Some(ms(10)));
        assert_eq!(timers.pop_due(ms(5)), None);
        assert_eq!(timers.pop_due(ms(25)), Some(PeerId(1)));
        assert_eq!(timers.pop_due(ms(25)), Some(PeerId(2)));
        assert_eq!(timers.pop_due(ms(25)), None);
        assert_eq!(timers.next(), Some(ms(30)));
    }

    #[test]
    fn stale_entries_are_dropped_once_they_outnumber_the_live_ones() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        // One peer whose time moved later 60 times: 60 entries, one of them live.
        for n in 0..60 {
            timers.at(t0 + Duration::from_secs(n), PeerId(7));
        }
        let live = t0 + Duration::from_secs(59);
        timers.compact(1, [(live, PeerId(7))].into_iter());
        assert_eq!(timers.heap.len(), 60, "up to 4 a peer and 64 more: kept");
        for n in 60..100 {
            timers.at(t0 + Duration::from_secs(n), PeerId(7));
        }
        let live = t0 + Duration::from_secs(99);
        timers.compact(1, [(live, PeerId(7))].into_iter());
        assert_eq!(timers.next(), Some(live));
        assert_eq!(timers.heap.len(), 1);
    }
}
