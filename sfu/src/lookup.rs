//! Which of a shard's peers a datagram is for: the peer heard from its source address before,
//! or, for a client's first datagram from an address (an ICE check), the peer whose username
//! fragment it names.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::PeerId;

/// A shard's two lookups, and each peer's keys in them: a peer leaves them by its own keys, not
/// by a pass over every entry (a 2,000-student lecture ending is 2,000 removals, and each pass
/// was over 4,000 entries).
#[derive(Default)]
pub(crate) struct PeerLookup {
    by_addr: HashMap<SocketAddr, PeerId>,
    /// A session's fragment is made with it and kept (the SFU restarts no ICE), so it is noted
    /// once, when the peer is added.
    by_ufrag: HashMap<String, PeerId>,
    keys: HashMap<PeerId, Keys>,
}

/// What one peer holds in the lookups: each address at most once, and only while the address
/// is still its own.
#[derive(Default)]
struct Keys {
    ufrag: String,
    addrs: Vec<SocketAddr>,
}

impl PeerLookup {
    /// Notes a new peer's ICE username fragment.
    pub fn add(&mut self, id: PeerId, ufrag: String) {
        self.by_ufrag.insert(ufrag.clone(), id);
        self.keys.entry(id).or_default().ufrag = ufrag;
    }

    /// The peer last heard from `addr`.
    pub fn by_addr(&self, addr: &SocketAddr) -> Option<PeerId> {
        self.by_addr.get(addr).copied()
    }

    /// The peer whose ICE username fragment is `ufrag`.
    pub fn by_ufrag(&self, ufrag: &str) -> Option<PeerId> {
        self.by_ufrag.get(ufrag).copied()
    }

    /// `id` was heard from `addr`: what comes from there is its own from now on. An address
    /// another peer had (a NAT gave it to a new client) is no longer that one's.
    pub fn heard(&mut self, addr: SocketAddr, id: PeerId) {
        let before = self.by_addr.insert(addr, id);
        if before == Some(id) {
            return;
        }
        if let Some(old) = before.and_then(|old| self.keys.get_mut(&old)) {
            old.addrs.retain(|a| *a != addr);
        }
        self.keys.entry(id).or_default().addrs.push(addr);
    }

    /// Takes a peer out of both lookups.
    pub fn remove(&mut self, id: PeerId) {
        let Some(keys) = self.keys.remove(&id) else {
            return;
        };
        for addr in &keys.addrs {
            self.by_addr.remove(addr);
        }
        if self.by_ufrag.get(&keys.ufrag) == Some(&id) {
            self.by_ufrag.remove(&keys.ufrag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn lookup_of(peers: u64) -> PeerLookup {
        let mut lookup = PeerLookup::default();
        for n in 0..peers {
            lookup.add(PeerId(n), format!("frag{n}"));
            lookup.heard(addr(1000 + n as u16), PeerId(n));
            lookup.heard(addr(2000 + n as u16), PeerId(n));
        }
        lookup
    }

    #[test]
    fn a_removed_peer_leaves_no_key_and_takes_no_one_elses() {
        let mut lookup = lookup_of(3);
        lookup.remove(PeerId(1));
        assert_eq!(lookup.by_addr(&addr(1001)), None);
        assert_eq!(lookup.by_addr(&addr(2001)), None);
        assert_eq!(lookup.by_ufrag("frag1"), None);
        for n in [0, 2] {
            assert_eq!(lookup.by_addr(&addr(1000 + n as u16)), Some(PeerId(n)));
            assert_eq!(lookup.by_addr(&addr(2000 + n as u16)), Some(PeerId(n)));
            assert_eq!(lookup.by_ufrag(&format!("frag{n}")), Some(PeerId(n)));
        }
        assert_eq!((lookup.by_addr.len(), lookup.by_ufrag.len()), (4, 2));
        lookup.remove(PeerId(1)); // Twice: nothing more happens.
        assert_eq!((lookup.by_addr.len(), lookup.keys.len()), (4, 2));
    }

    #[test]
    fn an_address_taken_over_stays_with_its_new_peer() {
        let mut lookup = lookup_of(2);
        lookup.heard(addr(1000), PeerId(1));
        lookup.remove(PeerId(0));
        assert_eq!(lookup.by_addr(&addr(1000)), Some(PeerId(1)));
        lookup.remove(PeerId(1));
        assert!(lookup.by_addr.is_empty() && lookup.by_ufrag.is_empty());
    }

    #[test]
    fn a_fragment_noted_again_for_a_newer_peer_stays_with_it() {
        let mut lookup = PeerLookup::default();
        lookup.add(PeerId(0), "same".into());
        lookup.add(PeerId(1), "same".into());
        lookup.remove(PeerId(0));
        assert_eq!(lookup.by_ufrag("same"), Some(PeerId(1)));
    }

    #[test]
    fn a_peer_heard_again_from_its_address_keeps_it_once() {
        let mut lookup = lookup_of(1);
        for _ in 0..3 {
            lookup.heard(addr(1000), PeerId(0));
        }
        assert_eq!(lookup.keys[&PeerId(0)].addrs, [addr(1000), addr(2000)]);
    }
}
