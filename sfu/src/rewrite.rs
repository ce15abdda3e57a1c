//! Per-subscriber rewriting of forwarded RTP sequence numbers.
//!
//! A subscriber's stream must start at a small sequence number (its SRTP rollover counter starts at
//! zero), however long the publisher has been sending. The offset is fixed when the subscription
//! starts, so gaps (losses) in the publisher's stream stay visible as gaps and can be NACKed. When
//! forwarding pauses on purpose (the subscriber asked for audio only), the offset is moved on
//! resuming, so the pause is not a gap.
//!
//! The gaps are counted too ([`SeqRewriter::holes_through`]): the subscriber's receiver reports
//! count them as lost, and loss that happened before the server is no sign of a weak link. A late
//! packet that fills a gap (the publisher's repair of a loss) does not take its hole off the
//! count: browsers do not always count such packets received (Chromium, after a teacher's
//! outage, in the browser test of it: its cumulative loss fell by fewer than the repairs the
//! server forwarded), so the hole is discounted either way, and a report that does count a
//! repair reads one packet less lost.

use std::collections::VecDeque;

/// Maps a publisher's extended sequence numbers onto one subscriber's.
#[derive(Debug)]
pub struct SeqRewriter {
    /// Publisher sequence number that maps to `base_out`, set by the first packet forwarded
    /// (after the start, or after a pause).
    base_in: Option<u64>,
    base_out: u64,
    /// Highest sequence number given to the subscriber so far.
    last_out: u64,
    /// Gaps not yet passed to `holes_through`: the first sequence number after each, and its
    /// length.
    gaps: VecDeque<(u64, u64)>,
    /// The length of the gaps already passed.
    holes: u64,
}

/// The most gaps kept unread (as many loss events as a second of video may have); beyond it
/// the two oldest are merged, counted from the later one's end.
const GAPS: usize = 32;

/// The first sequence number a subscriber sees.
const FIRST_OUT: u64 = 1;

impl Default for SeqRewriter {
    fn default() -> SeqRewriter {
        SeqRewriter {
            base_in: None,
            base_out: FIRST_OUT,
            last_out: FIRST_OUT - 1,
            gaps: VecDeque::with_capacity(GAPS),
            holes: 0,
        }
    }
}

impl SeqRewriter {
    /// The subscriber's sequence number for the publisher's `seq_in`, or `None` for a packet
    /// older than the subscription (a late reordered packet that the subscriber cannot use).
    pub fn rewrite(&mut self, seq_in: u64) -> Option<u64> {
        let base = *self.base_in.get_or_insert(seq_in);
        let out = seq_in.checked_sub(base).map(|d| d + self.base_out)?;
        if out > self.last_out + 1 {
            self.note_gap(out, out - self.last_out - 1);
        }
        self.last_out = self.last_out.max(out);
        Some(out)
    }

    fn note_gap(&mut self, end: u64, len: u64) {
        if self.gaps.len() == GAPS
            && let Some((_, oldest)) = self.gaps.pop_front()
            && let Some(next) = self.gaps.front_mut()
        {
            next.1 += oldest;
        }
        self.gaps.push_back((end, len));
    }

    /// How many of the subscriber's sequence numbers up to `seq` were gaps when the numbers
    /// after them were sent (lost before the server; a later repair does not count, see the
    /// module doc). Calls must not go back in `seq`.
    pub fn holes_through(&mut self, seq: u64) -> u64 {
        while let Some(&(end, len)) = self.gaps.front()
            && end <= seq
        {
            self.holes += len;
            self.gaps.pop_front();
        }
        self.holes
    }

    /// After a pause: the next packet forwarded follows the last one sent, without a gap.
    pub fn resume(&mut self) {
        self.base_in = None;
        self.base_out = self.last_out + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_small_and_keeps_gaps() {
        let mut r = SeqRewriter::default();
        assert_eq!(r.rewrite(70_000), Some(1));
        assert_eq!(r.rewrite(70_001), Some(2));
        assert_eq!(r.rewrite(70_005), Some(6), "a loss must stay a gap");
        assert_eq!(r.rewrite(70_003), Some(4), "reordering is preserved");
        assert_eq!(r.rewrite(69_999), None, "older than the subscription");
    }

    #[test]
    fn gaps_are_counted_where_a_report_meets_them() {
        let mut r = SeqRewriter::default();
        for seq in [10, 11, 14, 15, 20] {
            r.rewrite(seq);
        }
        // Out: 1, 2, 5, 6, 11: gaps of 2 (from 5) and 4 (from 11).
        assert_eq!(r.holes_through(4), 0, "the first gap ends at 5");
        assert_eq!(r.holes_through(5), 2);
        assert_eq!(r.holes_through(10), 2);
        assert_eq!(r.holes_through(11), 6);
        assert_eq!(r.rewrite(12), Some(3), "a repair");
        assert_eq!(
            r.holes_through(11),
            6,
            "still counted: it may not be counted received"
        );
        r.rewrite(22);
        assert_eq!(r.holes_through(12), 6, "a report reads each gap once");
        assert_eq!(r.holes_through(13), 7);
    }

    #[test]
    fn many_gaps_between_reports_are_all_counted() {
        let mut r = SeqRewriter::default();
        let mut seq = 0;
        for _ in 0..100 {
            r.rewrite(seq);
            seq += 3;
        }
        assert_eq!(r.holes_through(1_000), 2 * 99);
    }

    #[test]
    fn a_pause_is_not_a_gap() {
        let mut r = SeqRewriter::default();
        assert_eq!(r.rewrite(500), Some(1));
        assert_eq!(r.rewrite(501), Some(2));
        r.resume();
        assert_eq!(r.rewrite(900), Some(3), "continues where it stopped");
        assert_eq!(
            r.rewrite(902),
            Some(5),
            "a loss after the pause is still a gap"
        );
        assert_eq!(r.rewrite(899), None, "from before the pause ended");
        assert_eq!(
            r.holes_through(10),
            1,
            "the pause left no hole; the loss one"
        );
    }
}
