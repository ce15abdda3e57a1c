//! Fetching a subscriber's session into the cache before sending to it.
//!
//! A lecture's packet goes to every subscriber in turn; by the time the next packet comes,
//! each subscriber's session (str0m's, ~10 KB with its streams and keys) has left the cache,
//! and a send follows pointers through it, one cold line after another (profiled: most of
//! str0m's own time per send was those misses). The lines a send read are noted after it;
//! before sending to a subscriber, the lines of the one two places on are prefetched, so
//! they arrive while this one is sent to.

/// How many lines are noted. A send to a lecture student (two media lines, two streams) reads
/// 51-53 (counted on the server in a 50-student lecture, session 13: BENCHMARKS.md says how):
/// the peer's, three of its `Rtc`'s, str0m's session with its streams' fields one by one
/// (str0m patch 10), and 10 for the cipher `srtp_gcm` makes (584 bytes). str0m's part grows
/// with the media lines and streams, and comes last, so a bigger session loses only its
/// streams' tail (a screen share's third media line and stream would add ~12, estimated from
/// two per media line and ~10 per stream, not counted).
const LINES: usize = 56;
/// A cache line's size on the machines Jinke runs on.
const LINE: usize = 64;

/// Sends between two notes: the lines rarely move (a stream added, keys renewed), so noting
/// them after every send would be work for nothing. 16 was not tuned.
const NOTE_EVERY: u8 = 16;

/// The cache lines one send to a subscriber read. Only addresses: a line noted before the
/// session changed is fetched in vain, never read.
#[derive(Debug)]
pub(crate) struct SendLines {
    lines: [usize; LINES],
    len: usize,
    /// Sends until the next note.
    until_note: u8,
}

impl Default for SendLines {
    fn default() -> Self {
        SendLines {
            lines: [0; LINES],
            len: 0,
            until_note: 0,
        }
    }
}

impl SendLines {
    /// After a send, while its lines are at hand: notes them (what `lines` hands on), every
    /// [`NOTE_EVERY`]th send.
    pub fn sent(&mut self, lines: impl FnOnce(&mut dyn FnMut(*const u8))) {
        match self.until_note.checked_sub(1) {
            Some(left) => self.until_note = left,
            None => {
                self.len = 0;
                lines(&mut |p| self.push(p as usize));
                self.until_note = NOTE_EVERY - 1;
            }
        }
    }

    fn push(&mut self, addr: usize) {
        let line = addr & !(LINE - 1);
        if self.len < LINES && !self.lines[..self.len].contains(&line) {
            self.lines[self.len] = line;
            self.len += 1;
        }
    }

    /// The lines noted, in the order noted.
    #[cfg(test)]
    pub fn lines(&self) -> &[usize] {
        &self.lines[..self.len]
    }

    /// Asks the CPU to bring these notes themselves into its cache (before [`Self::fetch`]).
    pub fn fetch_notes(&self) {
        let notes = (self as *const Self).cast::<u8>() as usize;
        for line in (notes & !(LINE - 1)..notes + size_of::<Self>()).step_by(LINE) {
            prefetch(line);
        }
    }

    /// Asks the CPU to bring the noted lines into its cache.
    pub fn fetch(&self) {
        for &line in &self.lines[..self.len] {
            prefetch(line);
        }
    }
}

/// A prefetch of the line at `addr`: a hint, whatever is or is not there.
#[inline]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and its result is never read, so any address will do.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(lines: &mut SendLines, addrs: &[usize]) {
        lines.sent(|line| {
            for &a in addrs {
                line(a as *const u8);
            }
        });
    }

    #[test]
    fn each_line_is_noted_once_in_order_up_to_the_limit() {
        let mut lines = SendLines::default();
        note(&mut lines, &[0x1008, 0x1000, 0x2040, 0x103f, 0x7f]);
        assert_eq!(lines.lines(), &[0x1000, 0x2040, 0x40]);

        let mut lines = SendLines::default();
        let many: Vec<usize> = (0..2 * LINES).map(|i| 0x10_000 + i * LINE).collect();
        note(&mut lines, &many);
        assert_eq!(lines.lines(), &many[..LINES]);
    }

    #[test]
    fn the_lines_are_noted_again_every_so_many_sends() {
        let mut lines = SendLines::default();
        note(&mut lines, &[0x1000]);
        for _ in 1..NOTE_EVERY {
            note(&mut lines, &[0x2000]);
            assert_eq!(lines.lines(), &[0x1000], "kept between notes");
        }
        note(&mut lines, &[0x2000]);
        assert_eq!(lines.lines(), &[0x2000], "noted afresh");
    }

    #[test]
    fn fetching_lines_that_are_gone_reads_nothing() {
        let gone = Box::new([0u8; 256]);
        let at = gone.as_ptr() as usize;
        drop(gone);
        let mut lines = SendLines::default();
        note(&mut lines, &[0, at, usize::MAX, 0xdead_0000]);
        lines.fetch_notes();
        lines.fetch();
        assert_eq!(lines.lines().len(), 4);
    }
}
