//! Per-subscriber rewriting of forwarded RTP sequence numbers.
//!
//! A subscriber's stream must start at a small sequence number (its SRTP rollover counter starts at
//! zero), however long the publisher has been sending. The offset is fixed when the subscription
//! starts, so gaps (losses) in the publisher's stream stay visible as gaps and can be NACKed. When
//! forwarding pauses on purpose (the subscriber asked for audio only), the offset is moved on
//! resuming, so the pause is not a gap.

/// Maps a publisher's extended sequence numbers onto one subscriber's.
#[derive(Debug)]
pub struct SeqRewriter {
    /// Publisher sequence number that maps to `base_out`, set by the first packet forwarded
    /// (after the start, or after a pause).
    base_in: Option<u64>,
    base_out: u64,
    /// Highest sequence number given to the subscriber so far.
    last_out: u64,
}

/// The first sequence number a subscriber sees.
const FIRST_OUT: u64 = 1;

impl Default for SeqRewriter {
    fn default() -> SeqRewriter {
        SeqRewriter {
            base_in: None,
            base_out: FIRST_OUT,
            last_out: FIRST_OUT - 1,
        }
    }
}

impl SeqRewriter {
    /// The subscriber's sequence number for the publisher's `seq_in`, or `None` for a packet
    /// older than the subscription (a late reordered packet that the subscriber cannot use).
    pub fn rewrite(&mut self, seq_in: u64) -> Option<u64> {
        let base = *self.base_in.get_or_insert(seq_in);
        let out = seq_in.checked_sub(base).map(|d| d + self.base_out)?;
        self.last_out = self.last_out.max(out);
        Some(out)
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
    }
}
