//! Jinke's media core: a selective forwarding unit built on str0m in RTP mode.
//!
//! Media is forwarded without depacketizing or decoding. A shard is one OS thread with its own
//! UDP socket (its own port), the peers placed on it and their timers; all its peers share the
//! socket (ICE-lite, DTLS-SRTP with AES-GCM profiles preferred). A publisher's packet is decrypted
//! once by its shard, which fans it out to its own subscribers and hands it, shared, once to each
//! other shard, which fans it out to theirs. The control plane talks to the shards only through
//! [`Sfu`]'s methods (commands over channels); each peer reports back through its own
//! [`PeerEvent`] channel. See `../shared/DESIGN.md` §3 for the shape of the media path.

mod h264;
mod keyframe;
mod link;
mod lookup;
mod mailbox;
mod offer;
mod peer;
mod prefetch;
mod repair;
mod rewrite;
mod route;
mod shard;
mod simulcast;
mod speaker;
mod srtp_gcm;
mod timers;
pub mod udp;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use jinke_signaling::{TrackInfo, TrackMapping};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

pub use keyframe::KEYFRAME_REQUEST_INTERVAL;
pub use offer::offer_publishes;

/// Where the SFU listens and what address it tells clients to send media to.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// UDP address the first shard's socket binds; shard `i` binds its port plus `i` (port 0:
    /// each shard picks a free port).
    pub bind: SocketAddr,
    /// Media threads (shards), each with its own socket; 0 means one per available core.
    pub shards: usize,
    /// Address put in ICE candidates; defaults to the bound address.
    pub announce_ip: Option<IpAddr>,
    /// How long a new peer has to complete ICE and DTLS before it is closed. (str0m's ICE-lite
    /// agent never gives up on a peer that sends no connectivity check at all.)
    pub connect_timeout: std::time::Duration,
}

/// Identifies a peer (one participant's connection) inside the SFU; chosen by the control plane.
/// It also places the peer: peer `n` lives on shard `n mod shards`, so ids handed out in turn
/// spread peers evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl PeerId {
    /// The index of the shard this peer lives on, among `shards`.
    fn shard(self, shards: usize) -> usize {
        (self.0 % shards as u64) as usize
    }
}

/// What the control plane tells the SFU about a new peer.
#[derive(Debug)]
pub struct PeerSpec {
    /// Unique id of this peer.
    pub id: PeerId,
    /// Peers forward media only to peers of the same room (a lesson id).
    pub room: String,
    /// The participant's identity, announced with its tracks.
    pub identity: String,
    /// Whether this peer may publish media. A peer that may not never has anything forwarded.
    pub may_publish: bool,
    /// Whether the room's tracks are forwarded to this peer. A participant's second,
    /// publish-only connection (a student on stage) receives nothing. A peer never receives the
    /// tracks of its own identity.
    pub receives: bool,
    /// Whether this peer carries a shared screen: its tracks are announced as such.
    pub screen: bool,
    /// Whether it receives while its room is held (a lesson's lobby): teachers and assistants.
    pub moderator: bool,
    /// Whether the SFU estimates what this receiver's link carries from transport-wide
    /// feedback (str0m's estimator, unpaced), stepping its video down when the link congests
    /// before a deep queue on the way loses anything. Costs ~50% more CPU per packet forwarded
    /// to it (BENCHMARKS.md): for one-to-one lessons and small classes, not lectures. Without
    /// it, receiver reports' loss alone judges the link (`link.rs`).
    pub estimates_bandwidth: bool,
    /// Where the SFU reports what happens to this peer.
    pub events: UnboundedSender<PeerEvent>,
}

/// Something that happened to one peer, reported on its [`PeerSpec::events`] channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// ICE and DTLS are up: media can flow.
    Connected,
    /// The SFU renegotiates: forwarded tracks were added or removed. The offer must be answered
    /// with [`Sfu::accept_answer`].
    Offer {
        /// SDP offer.
        sdp: String,
        /// M-lines that start carrying a track.
        added: Vec<TrackMapping>,
        /// Mids of m-lines whose track ended.
        removed: Vec<String>,
    },
    /// This peer started publishing a track.
    TrackPublished(TrackInfo),
    /// This peer's audio started or stopped carrying speech (from its RFC 6464 audio levels).
    Speaking {
        /// Whether it speaks now.
        speaking: bool,
    },
    /// This peer's link lost so much that the SFU stopped (or, the link clean again,
    /// resumed) forwarding camera videos to it: audio and shared screens go on.
    AudioOnly {
        /// Whether camera videos are held back now.
        active: bool,
    },
    /// The peer is gone from the SFU (its connection died); all its resources are freed.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why a peer was closed by the SFU itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// ICE or DTLS timed out, the peer never connected, or it closed its DTLS session.
    ConnectionLost,
    /// The SFU is shutting down.
    Shutdown,
}

/// Failures of SFU operations.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// Binding or configuring the media socket failed.
    #[error("cannot set up the media socket on {addr}: {source}")]
    Socket {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A media thread, or what wakes it, could not be created.
    #[error("cannot start the media threads: {0}")]
    Threads(std::io::Error),
    /// The SDP could not be parsed or negotiated.
    #[error("unusable SDP: {0}")]
    BadSdp(String),
    /// The peer offered to send media but may not publish.
    #[error("this participant may not publish media in this lesson")]
    PublishNotAllowed,
    /// An answer arrived with no offer outstanding.
    #[error("no offer is waiting for an answer")]
    NoPendingOffer,
    /// The peer is not (or no longer) known.
    #[error("unknown peer")]
    UnknownPeer,
    /// The peer id is already in use.
    #[error("peer id already in use")]
    DuplicatePeer,
    /// The SFU has stopped.
    #[error("the media server has stopped")]
    Stopped,
}

/// Kernel buffer the media socket asks for in each direction.
const SOCKET_BUFFER: usize = 8 << 20;

/// Installs str0m's process-wide crypto provider (aws-lc-rs) once.
fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}

/// Commands from the control plane to a shard.
enum Command {
    AddPeer {
        spec: PeerSpec,
        /// The client's offer, or `None` when the SFU makes the first offer.
        offer: Option<String>,
        reply: oneshot::Sender<Result<Option<String>, SfuError>>,
    },
    AcceptAnswer {
        peer: PeerId,
        answer: String,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    RemoteCandidate {
        peer: PeerId,
        candidate: String,
    },
    RemovePeer {
        peer: PeerId,
    },
    SetAudioMuted {
        peer: PeerId,
        muted: bool,
    },
    RevokePublish {
        peer: PeerId,
    },
    HoldRoom {
        room: String,
        held: bool,
    },
    ReceiveVideo {
        peer: PeerId,
        enabled: bool,
    },
    Stats {
        reply: oneshot::Sender<SfuStats>,
    },
    Shutdown,
    /// From another shard: a track was published there.
    TrackAdded {
        key: peer::TrackKey,
        track: TrackInfo,
        room: String,
    },
    /// From another shard: every track of this publisher ended.
    TracksEnded {
        publisher: PeerId,
    },
    /// From another shard: a packet of a track published there, for this shard's subscribers.
    Media(Arc<route::MediaPacket>),
    /// From another shard: it has subscribers of this track (published here) now, or no more.
    ShardSubscribes {
        key: peer::TrackKey,
        shard: usize,
        subscribes: bool,
    },
    /// From another shard: its subscribers of this track (published here) need a keyframe.
    KeyframeRequest {
        key: peer::TrackKey,
        layer: u8,
        kind: str0m::media::KeyframeRequestKind,
    },
    SetVideoView {
        peer: PeerId,
        track_id: String,
        view: Option<(u16, u16)>,
    },
}

/// Counts that show what the SFU holds, for monitoring and for tests that check cleanup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuStats {
    /// Peers (participants' connections).
    pub peers: usize,
    /// Published tracks being routed.
    pub routes: usize,
    /// Track-to-subscriber forwardings.
    pub subscriptions: usize,
    /// Keyframe requests sent to publishers since start (after coalescing).
    pub keyframe_requests: u64,
    /// Shards (media threads) holding at least one peer.
    pub shards_in_use: usize,
    /// Video frames sent on without their last packet, which never came (loss on the
    /// publisher's uplink).
    pub incomplete_frames: u64,
    /// Packets handed to another shard since start, counted once per shard they went to (only
    /// shards with subscribers of the track get them).
    pub handoffs: u64,
    /// Datagrams dropped since start as no peer's: neither STUN, DTLS, RTP nor RTCP, or from
    /// an address no peer uses and no ICE check addressed to a peer (junk, a port scan, late
    /// packets of a closed session).
    pub strays: u64,
}

/// Handle to the running SFU. Cheap to share behind an `Arc`. [`Sfu::shutdown`] closes every
/// peer and waits for the shards; dropping the handle only tells them to stop.
pub struct Sfu {
    shards: Vec<mailbox::Mailbox>,
    local_addrs: Vec<SocketAddr>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Sfu {
    /// Binds one media socket per shard and starts the shard threads.
    pub fn start(config: SfuConfig) -> Result<Sfu, SfuError> {
        install_crypto();
        let count = match config.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut sockets = Vec::with_capacity(count);
        for i in 0..count {
            let mut addr = config.bind;
            if addr.port() != 0 {
                let port =
                    u16::try_from(addr.port() as usize + i).map_err(|_| SfuError::Socket {
                        addr,
                        source: std::io::Error::other("shard ports run past 65535"),
                    })?;
                addr.set_port(port);
            }
            sockets.push(bind_media_socket(addr)?);
        }
        let local_addrs: Vec<SocketAddr> = sockets.iter().map(|(_, a)| *a).collect();
        let mut mailboxes = Vec::with_capacity(count);
        let mut inboxes = Vec::with_capacity(count);
        for _ in 0..count {
            let (mailbox, inbox) = mailbox::channel().map_err(SfuError::Threads)?;
            mailboxes.push(mailbox);
            inboxes.push(inbox);
        }
        let peers: Arc<[mailbox::Mailbox]> = mailboxes.clone().into();
        // Built first, so that a thread that fails to start stops those already running (the
        // handle's drop tells them to).
        let sfu = Sfu {
            shards: mailboxes,
            local_addrs,
            threads: Mutex::new(Vec::with_capacity(count)),
        };
        for (index, ((socket, local_addr), inbox)) in sockets.into_iter().zip(inboxes).enumerate() {
            let announce = SocketAddr::new(
                config.announce_ip.unwrap_or(local_addr.ip()),
                local_addr.port(),
            );
            let shard = shard::Shard::new(
                socket,
                announce,
                config.connect_timeout,
                inbox,
                index,
                peers.clone(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("jinke-shard-{index}"))
                .spawn(move || shard.run())
                .map_err(SfuError::Threads)?;
            if let Ok(mut threads) = sfu.threads.lock() {
                threads.push(thread);
            }
            tracing::info!(%local_addr, %announce, index, "media shard started");
        }
        Ok(sfu)
    }

    /// The addresses of every shard's socket, in shard order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Adds a peer from its SDP offer and returns the SDP answer. An offer that sends media from a
    /// peer that may not publish is refused with [`SfuError::PublishNotAllowed`].
    pub async fn add_peer(&self, spec: PeerSpec, offer: String) -> Result<String, SfuError> {
        if !spec.may_publish && offer_publishes(&offer) {
            return Err(SfuError::PublishNotAllowed);
        }
        let (reply, rx) = oneshot::channel();
        self.send(
            spec.id,
            Command::AddPeer {
                spec,
                offer: Some(offer),
                reply,
            },
        )?;
        let answer = rx.await.map_err(|_| SfuError::Stopped)??;
        Ok(answer.expect("an offer gets an answer"))
    }

    /// Adds a receive-only peer without an offer: the SFU offers (in a [`PeerEvent::Offer`]) as
    /// soon as there is a track to forward to it. Its connect timeout starts with that offer.
    pub async fn add_receiver(&self, spec: PeerSpec) -> Result<(), SfuError> {
        let (reply, rx) = oneshot::channel();
        self.send(
            spec.id,
            Command::AddPeer {
                spec,
                offer: None,
                reply,
            },
        )?;
        rx.await.map_err(|_| SfuError::Stopped)?.map(|_| ())
    }

    /// Applies a peer's SDP answer to the SFU's last [`PeerEvent::Offer`].
    pub async fn accept_answer(&self, peer: PeerId, answer: String) -> Result<(), SfuError> {
        let (reply, rx) = oneshot::channel();
        self.send(
            peer,
            Command::AcceptAnswer {
                peer,
                answer,
                reply,
            },
        )?;
        rx.await.map_err(|_| SfuError::Stopped)?
    }

    /// Adds a trickled ICE candidate of a peer (a malformed one is logged and ignored).
    pub fn add_remote_candidate(&self, peer: PeerId, candidate: String) {
        let _ = self.send(peer, Command::RemoteCandidate { peer, candidate });
    }

    /// Removes a peer and frees everything it held; its tracks disappear for everyone.
    pub fn remove_peer(&self, peer: PeerId) {
        let _ = self.send(peer, Command::RemovePeer { peer });
    }

    /// Stops (or resumes) forwarding the audio a peer publishes: a moderator muted it. Its
    /// subscribers keep their m-lines and simply receive nothing until it is unmuted.
    pub fn set_audio_muted(&self, peer: PeerId, muted: bool) {
        let _ = self.send(peer, Command::SetAudioMuted { peer, muted });
    }

    /// Takes away a peer's right to publish: its tracks end for everyone (their subscribers
    /// renegotiate them away) and new ones are refused. The peer itself stays connected.
    pub fn revoke_publish(&self, peer: PeerId) {
        let _ = self.send(peer, Command::RevokePublish { peer });
    }

    /// Holds a room (a lesson's lobby): nothing is forwarded to its non-moderator peers until
    /// it is released, when they get everything published in it.
    pub fn hold_room(&self, room: &str, held: bool) {
        for shard in &self.shards {
            let _ = shard.send(Command::HoldRoom {
                room: room.to_owned(),
                held,
            });
        }
    }

    /// Turns the camera videos forwarded to a peer off or on (a weak link: audio and shared
    /// screens only). Turning them on again asks the publishers for keyframes.
    pub fn set_receive_video(&self, peer: PeerId, enabled: bool) {
        let _ = self.send(peer, Command::ReceiveVideo { peer, enabled });
    }

    /// Tells the SFU the size a peer shows a video track at (`None`: it does not say), so that
    /// of a simulcast track it gets the smallest layer that still looks sharp at that size.
    pub fn set_video_view(&self, peer: PeerId, track_id: String, view: Option<(u16, u16)>) {
        let _ = self.send(
            peer,
            Command::SetVideoView {
                peer,
                track_id,
                view,
            },
        );
    }

    /// What the SFU currently holds, summed over its shards.
    pub async fn stats(&self) -> Result<SfuStats, SfuError> {
        let mut total = SfuStats::default();
        for shard in &self.shards {
            let (reply, rx) = oneshot::channel();
            shard
                .send(Command::Stats { reply })
                .map_err(|_| SfuError::Stopped)?;
            let s = rx.await.map_err(|_| SfuError::Stopped)?;
            total.peers += s.peers;
            total.routes += s.routes;
            total.subscriptions += s.subscriptions;
            total.keyframe_requests += s.keyframe_requests;
            total.shards_in_use += s.shards_in_use;
            total.incomplete_frames += s.incomplete_frames;
            total.handoffs += s.handoffs;
            total.strays += s.strays;
        }
        Ok(total)
    }

    /// Closes every peer and stops the shards; returns when every shard thread has ended.
    pub fn shutdown(&self) {
        for shard in &self.shards {
            let _ = shard.send(Command::Shutdown);
        }
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a media shard thread panicked");
            }
        }
    }

    /// Sends a command to the shard `peer` lives on.
    fn send(&self, peer: PeerId, command: Command) -> Result<(), SfuError> {
        self.shards[peer.shard(self.shards.len())]
            .send(command)
            .map_err(|_| SfuError::Stopped)
    }
}

impl Drop for Sfu {
    fn drop(&mut self) {
        // The shards hold mailboxes to each other, so they would not notice on their own.
        for shard in &self.shards {
            let _ = shard.send(Command::Shutdown);
        }
    }
}

/// Binds one shard's socket with big kernel buffers: while a shard sends a frame to a big
/// audience, arriving packets wait in the kernel, and the default ~200 KiB holds only ~100.
fn bind_media_socket(addr: SocketAddr) -> Result<(UdpSocket, SocketAddr), SfuError> {
    let socket_err = |source| SfuError::Socket { addr, source };
    let socket = UdpSocket::bind(addr).map_err(socket_err)?;
    let local_addr = socket.local_addr().map_err(socket_err)?;
    let rcv = udp::grow_buffer(&socket, true, SOCKET_BUFFER);
    let snd = udp::grow_buffer(&socket, false, SOCKET_BUFFER);
    if rcv < SOCKET_BUFFER / 2 {
        tracing::warn!(
            granted = rcv,
            wanted = SOCKET_BUFFER,
            "small UDP receive buffer: raise net.core.rmem_max for large lectures"
        );
    }
    tracing::debug!(rcv, snd, %local_addr, "media socket buffers");
    Ok((socket, local_addr))
}
