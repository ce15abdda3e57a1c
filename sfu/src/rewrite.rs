//! Per-subscriber rewriting of forwarded RTP sequence numbers.
//!
//! A subscriber's stream must start at a small sequence number (its SRTP rollover counter starts at
//! zero), however long the publisher has been sending. The offset is fixed when the subscription
//! starts, so gaps (losses) in the publisher's stream stay visible as gaps and can be NACKed.

/// Maps a publisher's extended sequence numbers onto one subscriber's.
#[derive(Debug, Default)]
pub struct SeqRewriter {
    /// First publisher sequence number forwarded to this subscriber.
    first_in: Option<u64>,
}

/// The first sequence number a subscriber sees.
const FIRST_OUT: u64 = 1;

impl SeqRewriter {
    /// The subscriber's sequence number for the publisher's `seq_in`, or `None` for a packet
    /// older than the subscription (a late reordered packet that the subscriber cannot use).
    pub fn rewrite(&mut self, seq_in: u64) -> Option<u64> {
        let first = *self.first_in.get_or_insert(seq_in);
        seq_in.checked_sub(first).map(|d| d + FIRST_OUT)
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
}
