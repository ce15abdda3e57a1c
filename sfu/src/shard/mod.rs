//! A shard: one OS thread owning a UDP socket, its peers, their timers and the routes between
//! them. Peers never move between shards. Here: the loop, commands, datagrams in, timers,
//! polling, negotiation events and peers' removal; media out is in `fanout`, what each
//! subscriber's link lets through in `links`.

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

use jinke_signaling::{MediaKind, TrackInfo};
use str0m::bwe::Bitrate;
use str0m::change::SdpOffer;
use str0m::format::{Codec, CodecConfig, FormatParams};
use str0m::media::{Direction, Frequency, KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use crate::lookup::PeerLookup;
use crate::mailbox::{Inbox, Mailbox};
use crate::peer::{Peer, TrackKey};
use crate::route::{Route, Subscription};
use crate::timers::Timers;
use crate::udp::{Outbox, RecvBatch, wait_readable};
use crate::{CloseReason, Command, PeerEvent, PeerId, PeerSpec, SfuError, SfuStats};

mod fanout;
mod links;

/// The longest the shard blocks on its socket, bounding how late a control command is seen.
const MAX_WAIT: Duration = Duration::from_millis(10);
/// Where a subscriber's bandwidth estimate starts (see `PeerSpec::estimates_bandwidth`): only
/// its falls are acted on (`link.rs`), so this need not be right, only not zero.
const ESTIMATE_START: Bitrate = Bitrate::kbps(300);

/// How long a connected peer whose ICE went disconnected may take to come back before it is
/// closed (its client is told the connection was lost).
const ICE_RECONNECT_GRACE: Duration = Duration::from_secs(5);

/// Most datagrams taken from the socket before the peers they touched are polled.
const RECV_BATCH: usize = 64;
/// While sending a frame to many subscribers (a lecture's fan-out) or polling many peers, what
/// is queued is sent after every this many: the first students of a large lecture need not
/// wait for the last ones. As many as one `sendmmsg` takes, so the number of system calls
/// stays the same.
const FLUSH_EVERY: usize = 64;

pub(crate) struct Shard {
    socket: UdpSocket,
    /// The host candidate every peer is given. Datagrams are handed to str0m as sent to it, not
    /// to the bound address: behind a 1:1 NAT (or a relay) the two differ, and str0m's ICE
    /// agent discards checks that did not arrive "on" one of its candidates.
    announce: SocketAddr,
    connect_timeout: Duration,
    inbox: Inbox,
    /// This shard's place among `shards`.
    index: usize,
    /// Every shard's mailbox, this one's included (at `index`).
    shards: Arc<[Mailbox]>,
    peers: HashMap<PeerId, Peer>,
    /// Which peer a datagram is for: by its source address, or the ICE fragment it names.
    lookup: PeerLookup,
    /// Every published track, on this shard or another.
    routes: HashMap<TrackKey, Route>,
    /// Rooms whose non-moderator peers receive nothing yet (lessons in their lobby).
    held: HashSet<String>,
    /// Peers queued for polling.
    dirty: Vec<PeerId>,
    /// When each peer's `next_timeout` or `give_up_at` comes.
    timers: Timers,
    /// Datagrams produced by the current poll round, sent together at its end.
    outbox: Outbox,
    /// Scratch for `send_to_subscribers`: the positions, in the route's list, of the
    /// subscribers a batch of packets may go to (kept to reuse its memory).
    takers: Vec<usize>,
    /// Scratch for `send_to_subscribers`: the batch's packets as written, renumbered for each
    /// subscriber in turn.
    writes: Vec<RtpWrite>,
    /// Peers whose session died, to be removed after the current poll round.
    dead: Vec<PeerId>,
    /// Scratch for `drive_time`: the peers due.
    peers_due: Vec<PeerId>,
    next_track: u64,
    keyframe_requests: u64,
    incomplete_frames: u64,
    /// Packets handed to other shards (see [`SfuStats::handoffs`]).
    handoffs: u64,
    /// Datagrams no peer takes (see [`SfuStats::strays`]).
    strays: u64,
}

impl Shard {
    pub fn new(
        socket: UdpSocket,
        announce: SocketAddr,
        connect_timeout: Duration,
        inbox: Inbox,
        index: usize,
        shards: Arc<[Mailbox]>,
    ) -> Shard {
        Shard {
            socket,
            announce,
            connect_timeout,
            inbox,
            index,
            shards,
            peers: HashMap::new(),
            lookup: PeerLookup::default(),
            routes: HashMap::new(),
            held: HashSet::new(),
            dirty: Vec::new(),
            timers: Timers::default(),
            outbox: Outbox::default(),
            takers: Vec::new(),
            writes: Vec::new(),
            dead: Vec::new(),
            peers_due: Vec::new(),
            next_track: 1,
            keyframe_requests: 0,
            incomplete_frames: 0,
            handoffs: 0,
            strays: 0,
        }
    }

    pub fn run(mut self) {
        // Take everything queued before polling anyone, so that each peer is polled once per
        // batch (a video frame's packets), not once per packet.
        let mut batch = RecvBatch::new(RECV_BATCH);
        loop {
            if !self.handle_inbox() {
                return;
            }
            let now = Instant::now();
            self.drive_time(now);
            self.poll_dirty();
            let wait = self
                .next_deadline()
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(MAX_WAIT)
                .clamp(Duration::from_millis(1), MAX_WAIT);
            // Anything sent from now on wakes us; look at the inbox once more before sleeping.
            self.inbox.wake.sleep();
            if !self.handle_inbox() {
                return;
            }
            let readable = wait_readable(&self.socket, &*self.inbox.wake, wait);
            self.inbox.wake.awake();
            if !readable {
                continue;
            }
            // A full batch means more may be waiting: take it before looking at the clock.
            loop {
                let n = match batch.recv(&self.socket) {
                    Ok(n) => n,
                    Err(e) => {
                        if e.kind() != ErrorKind::WouldBlock {
                            tracing::debug!(error = %e, "media socket receive failed");
                        }
                        break;
                    }
                };
                for i in 0..n {
                    if let Some((datagrams, source)) = batch.get(i) {
                        for data in datagrams {
                            self.handle_datagram(data, source);
                        }
                    }
                }
                self.poll_dirty();
                if n < batch.capacity() {
                    break;
                }
            }
        }
    }

    /// Handles every queued command and hand-off. Returns false once the shard must stop.
    fn handle_inbox(&mut self) -> bool {
        loop {
            match self.inbox.messages.try_recv() {
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => {
                    self.close_all();
                    return false;
                }
                Ok(command) => self.handle_command(command),
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::AddPeer { spec, offer, reply } => {
                let _ = reply.send(self.add_peer(spec, offer.as_deref()));
            }
            Command::AcceptAnswer {
                peer,
                answer,
                reply,
            } => {
                let _ = reply.send(self.accept_answer(peer, &answer));
            }
            Command::RemoteCandidate { peer, candidate } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                let line = candidate.strip_prefix("a=").unwrap_or(&candidate);
                match Candidate::from_sdp_string(line) {
                    Ok(c) => {
                        p.rtc.add_remote_candidate(c);
                        self.mark_dirty(peer);
                    }
                    Err(e) => tracing::debug!(?peer, error = %e, "ignoring a malformed candidate"),
                }
            }
            Command::RemovePeer { peer } => self.remove_peer(peer, None),
            Command::ReceiveVideo { peer, enabled } => self.receive_video(peer, enabled),
            Command::HoldRoom { room, held } => {
                if held {
                    self.held.insert(room);
                } else if self.held.remove(&room) {
                    self.release(&room);
                }
            }
            Command::RevokePublish { peer } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.may_publish = false;
                    self.end_routes_of(peer);
                }
            }
            Command::SetAudioMuted { peer, muted } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                p.audio_muted = muted;
                // A muted peer is not speaking, whatever it was saying.
                let stopped = muted
                    && self
                        .routes
                        .iter_mut()
                        .filter(|((publisher, _), _)| *publisher == peer)
                        .filter_map(|(_, r)| r.speaker.as_mut()?.reset())
                        .count()
                        > 0;
                if stopped {
                    p.report(PeerEvent::Speaking { speaking: false });
                }
            }
            Command::TrackAdded { key, track, room } => {
                self.offer_to_room(key, &track, &room);
                self.routes.insert(key, Route::new(track, room, false));
            }
            Command::TracksEnded { publisher } => self.drop_routes_of(publisher),
            Command::Media(packet) => {
                self.fan_out(&packet, Instant::now());
                self.poll_dirty();
            }
            Command::ShardSubscribes {
                key,
                shard,
                subscribes,
            } => {
                if let Some(route) = self.routes.get_mut(&key) {
                    route.shards.retain(|&s| s != shard);
                    if subscribes {
                        route.shards.push(shard);
                    }
                }
            }
            Command::KeyframeRequest { key, layer, kind } => {
                if self
                    .routes
                    .get_mut(&key)
                    .is_some_and(|r| r.ask_keyframe(layer, Instant::now()))
                {
                    self.request_keyframe(key, layer, kind);
                }
            }
            Command::SetVideoView {
                peer,
                track_id,
                view,
            } => self.set_video_view(peer, &track_id, view),
            Command::Stats { reply } => {
                let _ = reply.send(SfuStats {
                    peers: self.peers.len(),
                    // Each track counted once, on its publisher's shard.
                    routes: self.routes.values().filter(|r| r.local).count(),
                    subscriptions: self.routes.values().map(|r| r.subscribers().len()).sum(),
                    keyframe_requests: self.keyframe_requests,
                    shards_in_use: usize::from(!self.peers.is_empty()),
                    incomplete_frames: self.incomplete_frames,
                    handoffs: self.handoffs,
                    strays: self.strays,
                });
            }
            Command::Shutdown => unreachable!("handled by the run loop"),
        }
    }

    fn add_peer(
        &mut self,
        spec: PeerSpec,
        offer: Option<&str>,
    ) -> Result<Option<String>, SfuError> {
        if self.peers.contains_key(&spec.id) {
            return Err(SfuError::DuplicatePeer);
        }
        let offer = offer
            .map(SdpOffer::from_sdp_string)
            .transpose()
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let now = Instant::now();
        let estimated = spec.receives && spec.estimates_bandwidth;
        let mut config = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .clear_codecs();
        add_opus(config.codec_config());
        let mut rtc = config
            .enable_vp8(true)
            .enable_h264(true)
            // Receiver reports judge a receiver's link (see `link.rs`). They come about once a
            // second; stats this often carry each one's loss soon after it arrives (and none
            // when no report came), so a step up that does not fit is undone quickly.
            .set_stats_interval(spec.receives.then_some(Duration::from_millis(200)))
            .set_extension_map(extensions(spec.may_publish, estimated))
            // Its estimates come with the stats (`judge_estimate`); sends stay direct.
            .enable_bwe(estimated.then_some(ESTIMATE_START))
            .set_bwe_unpaced()
            .set_crypto_provider(crate::srtp_gcm::provider())
            .build(now);
        let candidate = Candidate::host(self.announce, "udp")
            .map_err(|e| SfuError::BadSdp(format!("announce address: {e}")))?;
        rtc.add_local_candidate(candidate);
        let answer = offer
            .map(|o| rtc.sdp_api().accept_offer(o))
            .transpose()
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let id = spec.id;
        // Without a client offer, the clock starts with the SFU's first offer.
        let deadline = answer.as_ref().map(|_| now + self.connect_timeout);
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let mut peer = Peer::new(spec, rtc, now, deadline);
        // Everything already published in the room is forwarded to the newcomer (unless it only
        // publishes, or waits in a held room), except its own identity's tracks.
        for (key, route) in &self.routes {
            if self.receives_now(&peer)
                && route.room == peer.room
                && route.track.identity != peer.identity
            {
                peer.open_track(*key, route.track.clone());
            }
        }
        tracing::debug!(?id, identity = %peer.identity, room = %peer.room, "peer added");
        self.peers.insert(id, peer);
        self.lookup.add(id, ufrag);
        self.timers.at(now, id);
        if let Some(deadline) = deadline {
            self.timers.at(deadline, id);
        }
        self.mark_dirty(id);
        Ok(answer.map(|a| a.to_sdp_string()))
    }

    fn accept_answer(&mut self, id: PeerId, answer: &str) -> Result<(), SfuError> {
        let peer = self.peers.get_mut(&id).ok_or(SfuError::UnknownPeer)?;
        let opened = peer.accept_answer(answer)?;
        let connected = peer.connected;
        let now = Instant::now();
        for (source, mid) in opened {
            let Some(route) = self.routes.get_mut(&source) else {
                // The publisher left while this was negotiated.
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.unsubscribe(source);
                }
                continue;
            };
            let mut subscription = Subscription::new(id, mid);
            let camera = route.track.kind == MediaKind::Video && !route.track.screen;
            if let Some(peer) = self.peers.get_mut(&id) {
                if camera {
                    subscription.set_paused(peer.camera_paused());
                    subscription.layer_cap = peer.layer_cap();
                }
                if let Some(i) = peer
                    .views
                    .iter()
                    .position(|(t, _)| *t == route.track.track_id)
                {
                    subscription.view = peer.views.swap_remove(i).1;
                }
            }
            route.subscribe(subscription);
            if route.subscribers().len() == 1 && !route.local {
                // Before any keyframe request, so the publisher's shard sends what it asks for.
                self.tell_publisher_shard(source, true);
            }
            if connected {
                // A renegotiation: the session is up and takes the track from now on.
                self.ask_keyframe_to_start(id, source, now);
            }
        }
        self.mark_dirty(id);
        Ok(())
    }

    fn handle_datagram(&mut self, data: &[u8], source: SocketAddr) {
        let Ok(contents) = data.try_into() else {
            self.strays += 1; // Neither STUN, DTLS, RTP nor RTCP.
            return;
        };
        let now = Instant::now();
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.announce,
                contents,
            },
        );
        // A client's first datagram from any of its addresses is an ICE check (a STUN binding
        // request) addressed to its session's username fragment: that finds the peer, and the
        // address is noted for what follows. Anything else from an address no peer uses is
        // dropped without asking every peer, so that junk sprayed at the port costs two
        // lookups a datagram, not a pass over all the shard's sessions.
        let known = self.lookup.by_addr(&source);
        let takes = |id: &PeerId| self.peers.get(id).is_some_and(|p| p.rtc.accepts(&input));
        let Some(id) = known.filter(takes).or_else(|| {
            let ufrag = contents_ufrag(&input)?;
            self.lookup.by_ufrag(ufrag).filter(takes)
        }) else {
            self.strays += 1;
            return;
        };
        if known != Some(id) {
            self.lookup.heard(source, id);
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.link.heard(now);
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(?id, error = %e, "peer input failed; closing it");
            peer.rtc.disconnect();
        }
        // str0m holds a received packet only until the next poll: take it out (and forward it)
        // now. The subscribers it was written to are polled once the whole batch is in.
        self.poll_peer(id);
    }

    /// Feeds timeouts to peers whose timers expired, closes peers that never connected, and
    /// releases deferred keyframe requests. The peers come from `timers`: a pass over all of
    /// them at every wake-up cost more the bigger the lesson.
    fn drive_time(&mut self, now: Instant) {
        let mut peers_due = std::mem::take(&mut self.peers_due);
        while let Some(id) = self.timers.pop_due(now) {
            peers_due.push(id);
        }
        // A peer's stale entries may come due with its live one.
        peers_due.sort_unstable();
        peers_due.dedup();
        for id in peers_due.drain(..) {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue; // Removed since.
            };
            if peer.give_up_at.is_some_and(|d| d <= now) {
                tracing::debug!(?id, "peer did not (re)connect in time; closing it");
                peer.rtc.disconnect();
            } else if peer.next_timeout <= now {
                peer.advance(now);
            } else {
                continue; // A stale entry.
            }
            self.mark_dirty(id);
        }
        self.peers_due = peers_due;
        self.timers.compact(
            self.peers.len(),
            self.peers.values().flat_map(|p| {
                let timeout = Some((p.next_timeout, p.id));
                timeout.into_iter().chain(p.give_up_at.map(|d| (d, p.id)))
            }),
        );
        let mut due = Vec::new();
        let mut quiet = Vec::new();
        let mut frames = Vec::new();
        let mut wanted = Vec::new();
        for (key, route) in &mut self.routes {
            for (i, layer) in route.layers.iter_mut().enumerate() {
                if layer.keyframes.poll(now) {
                    due.push((*key, i as u8));
                }
            }
            if route.expire_layers(now) {
                wanted.push((*key, route.retarget()));
            }
            if route.frame_deadline.is_some_and(|d| d <= now) {
                // Counted once, by the publisher's shard.
                self.incomplete_frames += u64::from(route.local);
                frames.push(*key);
            }
            if route.speaker.as_mut().and_then(|s| s.idle(now)).is_some() {
                quiet.push(key.0);
            }
        }
        for publisher in quiet {
            if let Some(p) = self.peers.get(&publisher) {
                p.report(PeerEvent::Speaking { speaking: false });
            }
        }
        for (key, layer) in due {
            self.request_keyframe(key, layer, KeyframeRequestKind::Pli);
        }
        for (key, layers) in wanted {
            self.ask_keyframes(key, &layers, now);
        }
        for key in frames {
            self.release_frame(key, now);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let peers = self.timers.next();
        let routes = self.routes.values().flat_map(|r| {
            r.layers
                .iter()
                .map(|l| l.keyframes.deadline())
                .chain([r.frame_deadline])
                .flatten()
        });
        peers.into_iter().chain(routes).min()
    }

    fn mark_dirty(&mut self, id: PeerId) {
        if self.peers.get_mut(&id).is_some_and(Peer::queue) {
            self.dirty.push(id);
        }
    }

    /// Polls every queued peer until str0m has nothing more to say, forwarding media as it comes.
    fn poll_dirty(&mut self) {
        let mut polled = 0;
        while let Some(id) = self.dirty.pop() {
            self.poll_peer(id);
            polled += 1;
            if polled % FLUSH_EVERY == 0 {
                self.outbox.flush(&self.socket);
            }
        }
        while let Some(id) = self.dead.pop() {
            self.remove_peer(id, Some(CloseReason::ConnectionLost));
        }
        self.outbox.flush(&self.socket);
    }

    /// Polls one peer until it has nothing more to say. Its received media is forwarded (which
    /// queues its subscribers for polling); its datagrams are sent.
    fn poll_peer(&mut self, id: PeerId) {
        // Its forwarded tracks change only outside its own poll (commands, other peers' events).
        if let Some(peer) = self.peers.get_mut(&id)
            && peer.rtc.is_alive()
            && peer.negotiate_if_needed()
            && !peer.connected
            && peer.give_up_at.is_none()
        {
            let deadline = Instant::now() + self.connect_timeout;
            peer.give_up_at = Some(deadline);
            self.timers.at(deadline, id);
        }
        if let Some(peer) = self.peers.get_mut(&id)
            && std::mem::take(&mut peer.written)
        {
            peer.advance(Instant::now());
        }
        while let Some(peer) = self.peers.get_mut(&id) {
            if !peer.rtc.is_alive() {
                peer.dirty = false;
                if !self.dead.contains(&id) {
                    self.dead.push(id);
                }
                break;
            }
            match peer.rtc.poll_output() {
                Ok(Output::Transmit(t)) => self.outbox.push(t.destination, &t.contents),
                Ok(Output::Timeout(t)) => {
                    // Armed at every poll: the entry that brought a due peer here is spent,
                    // even when str0m names the same time again.
                    peer.next_timeout = t;
                    self.timers.at(t, id);
                    peer.dirty = false;
                    break;
                }
                Ok(Output::Event(event)) => self.handle_event(id, event),
                Err(e) => {
                    tracing::debug!(?id, error = %e, "peer output failed; closing it");
                    peer.rtc.disconnect();
                }
            }
        }
    }

    fn handle_event(&mut self, id: PeerId, event: Event) {
        match event {
            Event::Connected => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    tracing::debug!(?id, "peer connected");
                    peer.give_up_at = None;
                    peer.connected = true;
                    peer.report(PeerEvent::Connected);
                    // Its subscriptions were taking nothing until now (see
                    // `send_to_subscribers`): their videos start at a keyframe.
                    let now = Instant::now();
                    for source in peer.open_sources().collect::<Vec<_>>() {
                        self.ask_keyframe_to_start(id, source, now);
                    }
                }
            }
            Event::Closed => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.rtc.disconnect();
                }
            }
            // ICE may come back from disconnected (a late check, a new nomination): a slow
            // phone's first checks can come after str0m gave up on its candidates. A peer that
            // has not connected yet has its connect deadline already; one that was connected
            // gets a grace period to come back.
            Event::IceConnectionStateChange(state) => {
                if let Some(peer) = self.peers.get_mut(&id)
                    && peer.connected
                {
                    match state {
                        IceConnectionState::Disconnected if peer.give_up_at.is_none() => {
                            let deadline = Instant::now() + ICE_RECONNECT_GRACE;
                            peer.give_up_at = Some(deadline);
                            self.timers.at(deadline, id);
                        }
                        IceConnectionState::Connected | IceConnectionState::Completed => {
                            peer.give_up_at = None;
                        }
                        _ => {}
                    }
                }
            }
            Event::MediaAdded(m)
                if matches!(m.direction, Direction::RecvOnly | Direction::SendRecv) =>
            {
                let kind = match m.kind {
                    str0m::media::MediaKind::Audio => MediaKind::Audio,
                    str0m::media::MediaKind::Video => MediaKind::Video,
                };
                self.publish(id, m.mid, kind);
            }
            Event::RtpPacket(packet) => self.forward(id, packet),
            Event::MediaEgressStats(stats) => self.judge_link(id, &stats),
            Event::PeerStats(stats) => {
                if let Some(estimate) = stats.bwe_tx {
                    self.judge_estimate(id, estimate.as_u64(), stats.bytes_tx);
                }
            }
            Event::KeyframeRequest(req) => {
                let Some(source) = self.peers.get(&id).and_then(|p| p.source_of(req.mid)) else {
                    return;
                };
                let Some(route) = self.routes.get_mut(&source) else {
                    return;
                };
                let layer = route.layer_for(id);
                if route.ask_keyframe(layer, Instant::now()) {
                    self.request_keyframe(source, layer, req.kind);
                }
            }
            Event::NackRequest(req) => self.resend(id, req),
            _ => {}
        }
    }

    /// A peer's m-line started receiving: it becomes a route, offered to everyone in the room
    /// on every shard.
    fn publish(&mut self, id: PeerId, mid: Mid, kind: MediaKind) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        if !peer.may_publish {
            tracing::warn!(?id, "refusing media from a peer that may not publish");
            return;
        }
        let track = TrackInfo {
            track_id: format!("t{}.{}", self.index, self.next_track),
            identity: peer.identity.clone(),
            kind,
            screen: peer.screen,
        };
        self.next_track += 1;
        peer.report(PeerEvent::TrackPublished(track.clone()));
        let room = peer.room.clone();
        let key = (id, mid);
        self.broadcast(|| Command::TrackAdded {
            key,
            track: track.clone(),
            room: room.clone(),
        });
        self.offer_to_room(key, &track, &room);
        self.routes.insert(key, Route::new(track, room, true));
    }

    /// Offers a newly published track to this shard's peers in its room that receive now.
    fn offer_to_room(&mut self, source: TrackKey, track: &TrackInfo, room: &str) {
        let held = self.held.contains(room);
        let subscribers: Vec<PeerId> = self
            .peers
            .values_mut()
            .filter(|p| {
                p.receives
                    && (!held || p.moderator)
                    && p.room == room
                    && p.identity != track.identity
            })
            .map(|p| {
                p.open_track(source, track.clone());
                p.id
            })
            .collect();
        for s in subscribers {
            self.mark_dirty(s);
        }
    }

    /// Sends a command to every other shard.
    fn broadcast(&self, command: impl Fn() -> Command) {
        for (i, shard) in self.shards.iter().enumerate() {
            if i != self.index {
                // A shard that stopped (shutting down) needs nothing more.
                let _ = shard.send(command());
            }
        }
    }

    /// Removes a peer, its routes and its subscriptions. `reason` is reported to the peer's
    /// session when the SFU itself ends it.
    fn remove_peer(&mut self, id: PeerId, reason: Option<CloseReason>) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        peer.rtc.disconnect();
        self.lookup.remove(id);
        if let Some(reason) = reason {
            peer.report(PeerEvent::Closed { reason });
        }
        let mut deserted = Vec::new();
        for (key, route) in &mut self.routes {
            let had = !route.subscribers().is_empty();
            route.unsubscribe(id);
            if had && route.subscribers().is_empty() && !route.local {
                deserted.push(*key);
            }
        }
        for key in deserted {
            self.tell_publisher_shard(key, false);
        }
        self.end_routes_of(id);
        tracing::debug!(?id, identity = %peer.identity, "peer removed");
    }

    /// Whether `peer` gets the room's tracks now.
    fn receives_now(&self, peer: &Peer) -> bool {
        peer.receives && (peer.moderator || !self.held.contains(&peer.room))
    }

    /// A held room was released: its waiting peers get everything published in it.
    fn release(&mut self, room: &str) {
        let routes: Vec<(TrackKey, TrackInfo)> = self
            .routes
            .iter()
            .filter(|(_, route)| route.room == room)
            .map(|(key, route)| (*key, route.track.clone()))
            .collect();
        let mut waiting = Vec::new();
        for peer in self.peers.values_mut() {
            if peer.room != room || !peer.receives || peer.moderator {
                continue;
            }
            for (key, track) in &routes {
                let own = track.identity == peer.identity;
                if !own && !peer.out.iter().any(|t| t.source == *key) {
                    peer.open_track(*key, track.clone());
                }
            }
            waiting.push(peer.id);
        }
        for id in waiting {
            self.mark_dirty(id);
        }
    }

    /// Ends every route a peer of this shard publishes, here and on the other shards.
    fn end_routes_of(&mut self, id: PeerId) {
        if self.routes.keys().any(|(publisher, _)| *publisher == id) {
            self.broadcast(|| Command::TracksEnded { publisher: id });
        }
        self.drop_routes_of(id);
    }

    /// Drops every route of a publisher: this shard's subscribers renegotiate the tracks away.
    fn drop_routes_of(&mut self, id: PeerId) {
        self.routes.retain(|(publisher, _), _| *publisher != id);
        let mut affected = Vec::new();
        for other in self.peers.values_mut() {
            let sources: Vec<TrackKey> = other
                .out
                .iter()
                .filter(|t| t.source.0 == id)
                .map(|t| t.source)
                .collect();
            if !sources.is_empty() {
                for s in sources {
                    other.unsubscribe(s);
                }
                affected.push(other.id);
            }
        }
        for a in affected {
            self.mark_dirty(a);
        }
    }

    fn close_all(&mut self) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.remove_peer(id, Some(CloseReason::Shutdown));
        }
    }
}

/// The username fragment a received STUN binding request is addressed to.
fn contents_ufrag<'a>(input: &'a Input) -> Option<&'a str> {
    match input {
        Input::Receive(_, receive) => receive.contents.stun_request_ufrag(),
        Input::Timeout(_) => None,
    }
}

/// The RTP header extensions a peer's session negotiates: str0m's standard set, without
/// transport-wide sequence numbers and absolute send times for a peer that only receives.
/// Those feed bandwidth estimators (ours from transport-wide feedback, the browser's own from
/// send times), and they cost per packet per subscriber: a feedback report to parse and a send
/// record, a clock conversion and 4 bytes (4% of an audio packet). A publisher keeps them: its
/// browser estimates its uplink from our feedback. A receiver whose link we `estimate` keeps
/// transport-wide numbers (our estimator's input); most subscribers (a lecture's) have their
/// links judged from loss alone (`link.rs`).
fn extensions(may_publish: bool, estimate: bool) -> ExtensionMap {
    let mut exts = ExtensionMap::empty();
    for (id, ext) in ExtensionMap::standard().iter() {
        let keep = match ext {
            Extension::TransportSequenceNumber => may_publish || estimate,
            Extension::AbsoluteSendTime => may_publish,
            _ => true,
        };
        if keep {
            exts.set(id, ext.clone());
        }
    }
    exts
}

/// Offers Opus as str0m's `enable_opus` does (payload type 111, as browsers number it), asking
/// also for DTX, which str0m's parameters leave out. A browser's encoder uses in-band FEC (a
/// lost packet rebuilt from the next one's redundancy) and DTX (a silent microphone sends a
/// packet every 400 ms or so instead of every 20 ms: 10 packets in 2 s instead of 100 from a
/// muted Chromium, as the browser test of it measures) only when the other side's SDP asks for
/// them; the SFU forwards the packets as they come either way.
fn add_opus(codecs: &mut CodecConfig) {
    let format = FormatParams {
        min_p_time: Some(10),
        use_inband_fec: Some(true),
        use_dtx: Some(true),
        ..FormatParams::default()
    };
    codecs.add_config(
        111.into(),
        None,
        Codec::Opus,
        Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        format,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_only_receives_negotiates_no_extension_for_estimators_it_lacks() {
        let has = |exts: &ExtensionMap, ext: &Extension| exts.iter().any(|(_, e)| e == ext);
        let (receiver, publisher) = (extensions(false, false), extensions(true, false));
        let estimated = extensions(false, true);
        for ext in [
            Extension::TransportSequenceNumber,
            Extension::AbsoluteSendTime,
        ] {
            assert!(!has(&receiver, &ext), "{ext:?}");
            assert!(has(&publisher, &ext), "{ext:?}");
        }
        // Our estimator's input, and not the browser's.
        assert!(has(&estimated, &Extension::TransportSequenceNumber));
        assert!(!has(&estimated, &Extension::AbsoluteSendTime));
        for ext in [Extension::AudioLevel, Extension::RtpMid] {
            assert!(has(&receiver, &ext), "{ext:?}");
            assert!(has(&estimated, &ext), "{ext:?}");
        }
    }
}
