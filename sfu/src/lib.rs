//! Jinke's media core: a selective forwarding unit built on str0m in RTP mode.
//!
//! Media is forwarded without depacketizing or decoding. All peers share one UDP socket per shard
//! (ICE-lite, DTLS-SRTP with AES-GCM profiles preferred). The control plane talks to the shards
//! only through [`Sfu`]'s methods (commands over channels); each peer reports back through its own
//! [`PeerEvent`] channel. See `../shared/DESIGN.md` §3 for the shape of the media path.

mod keyframe;
mod offer;
mod peer;
mod rewrite;
mod route;
mod shard;
mod speaker;
pub mod udp;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

use jinke_signaling::{TrackInfo, TrackMapping};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

pub use keyframe::KEYFRAME_REQUEST_INTERVAL;
pub use offer::offer_publishes;

/// Where the SFU listens and what address it tells clients to send media to.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// UDP address the media socket binds (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Address put in ICE candidates; defaults to the bound address.
    pub announce_ip: Option<IpAddr>,
    /// How long a new peer has to complete ICE and DTLS before it is closed. (str0m's ICE-lite
    /// agent never gives up on a peer that sends no connectivity check at all.)
    pub connect_timeout: std::time::Duration,
}

/// Identifies a peer (one participant's connection) inside the SFU; chosen by the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

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
}

/// Handle to the running SFU. Cheap to share behind an `Arc`; dropping it does not stop the
/// shard: call [`Sfu::shutdown`].
pub struct Sfu {
    commands: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sfu {
    /// Binds the media socket and starts the shard thread.
    pub fn start(config: SfuConfig) -> Result<Sfu, SfuError> {
        install_crypto();
        let socket_err = |source| SfuError::Socket {
            addr: config.bind,
            source,
        };
        let socket = UdpSocket::bind(config.bind).map_err(socket_err)?;
        let local_addr = socket.local_addr().map_err(socket_err)?;
        // While a shard sends a frame to a big audience, arriving packets wait in the kernel:
        // the default ~200 KiB holds only ~100 of them.
        let rcv = udp::grow_buffer(&socket, true, SOCKET_BUFFER);
        let snd = udp::grow_buffer(&socket, false, SOCKET_BUFFER);
        if rcv < SOCKET_BUFFER / 2 {
            tracing::warn!(
                granted = rcv,
                wanted = SOCKET_BUFFER,
                "small UDP receive buffer: raise net.core.rmem_max for large lectures"
            );
        }
        tracing::debug!(rcv, snd, "media socket buffers");
        let announce = SocketAddr::new(
            config.announce_ip.unwrap_or(local_addr.ip()),
            local_addr.port(),
        );
        let (commands, rx) = mpsc::channel();
        let shard =
            shard::Shard::new(socket, announce, config.connect_timeout, rx).map_err(socket_err)?;
        let thread = std::thread::Builder::new()
            .name("jinke-shard-0".into())
            .spawn(move || shard.run())
            .map_err(socket_err)?;
        tracing::info!(%local_addr, %announce, "media shard started");
        Ok(Sfu {
            commands,
            local_addr,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The address the media socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds a peer from its SDP offer and returns the SDP answer. An offer that sends media from a
    /// peer that may not publish is refused with [`SfuError::PublishNotAllowed`].
    pub async fn add_peer(&self, spec: PeerSpec, offer: String) -> Result<String, SfuError> {
        if !spec.may_publish && offer_publishes(&offer) {
            return Err(SfuError::PublishNotAllowed);
        }
        let (reply, rx) = oneshot::channel();
        self.send(Command::AddPeer {
            spec,
            offer: Some(offer),
            reply,
        })?;
        let answer = rx.await.map_err(|_| SfuError::Stopped)??;
        Ok(answer.expect("an offer gets an answer"))
    }

    /// Adds a receive-only peer without an offer: the SFU offers (in a [`PeerEvent::Offer`]) as
    /// soon as there is a track to forward to it. Its connect timeout starts with that offer.
    pub async fn add_receiver(&self, spec: PeerSpec) -> Result<(), SfuError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::AddPeer {
            spec,
            offer: None,
            reply,
        })?;
        rx.await.map_err(|_| SfuError::Stopped)?.map(|_| ())
    }

    /// Applies a peer's SDP answer to the SFU's last [`PeerEvent::Offer`].
    pub async fn accept_answer(&self, peer: PeerId, answer: String) -> Result<(), SfuError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::AcceptAnswer {
            peer,
            answer,
            reply,
        })?;
        rx.await.map_err(|_| SfuError::Stopped)?
    }

    /// Adds a trickled ICE candidate of a peer (a malformed one is logged and ignored).
    pub fn add_remote_candidate(&self, peer: PeerId, candidate: String) {
        let _ = self.send(Command::RemoteCandidate { peer, candidate });
    }

    /// Removes a peer and frees everything it held; its tracks disappear for everyone.
    pub fn remove_peer(&self, peer: PeerId) {
        let _ = self.send(Command::RemovePeer { peer });
    }

    /// Stops (or resumes) forwarding the audio a peer publishes: a moderator muted it. Its
    /// subscribers keep their m-lines and simply receive nothing until it is unmuted.
    pub fn set_audio_muted(&self, peer: PeerId, muted: bool) {
        let _ = self.send(Command::SetAudioMuted { peer, muted });
    }

    /// Takes away a peer's right to publish: its tracks end for everyone (their subscribers
    /// renegotiate them away) and new ones are refused. The peer itself stays connected.
    pub fn revoke_publish(&self, peer: PeerId) {
        let _ = self.send(Command::RevokePublish { peer });
    }

    /// Holds a room (a lesson's lobby): nothing is forwarded to its non-moderator peers until
    /// it is released, when they get everything published in it.
    pub fn hold_room(&self, room: &str, held: bool) {
        let _ = self.send(Command::HoldRoom {
            room: room.to_owned(),
            held,
        });
    }

    /// Turns the camera videos forwarded to a peer off or on (a weak link: audio and shared
    /// screens only). Turning them on again asks the publishers for keyframes.
    pub fn set_receive_video(&self, peer: PeerId, enabled: bool) {
        let _ = self.send(Command::ReceiveVideo { peer, enabled });
    }

    /// What the SFU currently holds.
    pub async fn stats(&self) -> Result<SfuStats, SfuError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Stats { reply })?;
        rx.await.map_err(|_| SfuError::Stopped)
    }

    /// Closes every peer and stops the shard; returns when the shard thread has ended.
    pub fn shutdown(&self) {
        let _ = self.send(Command::Shutdown);
        let thread = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("media shard thread panicked");
        }
    }

    fn send(&self, command: Command) -> Result<(), SfuError> {
        self.commands.send(command).map_err(|_| SfuError::Stopped)
    }
}
