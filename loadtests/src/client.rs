//! One simulated participant: Jinke signaling over a WebSocket, WebRTC through str0m (sans-IO,
//! no decoding) on its own UDP socket. Publishers send the clip and the Opus frames; everyone
//! records what they receive.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use jinke_sfu::udp::{RecvBatch, enable_gro, enable_rx_timestamps, grow_buffer};
use jinke_signaling::{ClientMessage, PROTOCOL_VERSION, ServerMessage};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, ExtensionValues, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::media::{
    AUDIO_FRAME, AUDIO_TS_STEP, Frame, SIMULCAST_RIDS, VIDEO_CLOCK, VIDEO_FPS, with_picture_id,
};
use crate::metrics::{Arrival, ReceiverStats, SentLog, checked_part};

/// Most messages a client takes from its socket at once (a video frame's packets, or with GRO
/// several frames).
const RECV_BATCH: usize = 16;

thread_local! {
    /// Receive buffers, shared by every client of the thread (one runs at a time): with GRO a
    /// batch takes 1 MiB, too much to give each of a thousand clients.
    static BATCH: RefCell<RecvBatch> = RefCell::new(RecvBatch::with_gro(RECV_BATCH));
}

/// Everything the clients of one run share, across the generator's threads.
pub struct Shared {
    /// Every packet sent, for integrity and latency: written by the publishers, read for every
    /// packet received.
    pub sent: RwLock<SentLog>,
    /// The measurement window, once it is set.
    pub window: OnceLock<(Instant, Instant)>,
    /// The VP8 clip, packetized.
    pub video: Vec<Frame>,
    /// Opus frames with their levels, looped.
    pub audio: Vec<crate::media::AudioFrame>,
    /// Becomes true when clients must leave.
    pub stop: watch::Receiver<bool>,
    /// Set when the window has ended: publishers send nothing more, while receivers go on
    /// listening for [`crate::LoadConfig::settle`], so that a packet lost just before the end
    /// has its round trip to be repaired and the loss counted is what stayed lost.
    pub quiet: AtomicBool,
    /// Publishers started so far (each starts at its own point of the loops).
    pub publishers: AtomicUsize,
    /// Clients that received their first media packet.
    pub joined: AtomicUsize,
    /// Whether client sockets use UDP GRO (see `LoadConfig::udp_gro`).
    pub udp_gro: bool,
    /// Whether publishers send their video in simulcast layers (see `LoadConfig::simulcast`).
    pub simulcast: bool,
}

/// What the server's side of signaling tells a media session.
#[derive(Debug)]
pub enum FromServer {
    /// The answer to our offer.
    Answer(String),
    /// An offer to answer.
    Offer(String),
}

/// What a media session asks its signaling to send.
#[derive(Debug)]
pub enum ToServer {
    /// Our offer.
    Offer(String),
    /// Our answer to the server's offer.
    Answer(String),
}

/// The signaling side of a media session.
pub struct Link {
    /// Server SDP, in order.
    pub from_server: mpsc::UnboundedReceiver<FromServer>,
    /// Our SDP, in order.
    pub to_server: mpsc::UnboundedSender<ToServer>,
}

impl Link {
    /// A link for a media session, with the signaling side's ends: where to put the server's
    /// SDP, and where the session's own SDP comes out.
    pub fn pair() -> (
        Link,
        mpsc::UnboundedSender<FromServer>,
        mpsc::UnboundedReceiver<ToServer>,
    ) {
        let (from_tx, from_server) = mpsc::unbounded_channel();
        let (to_server, to_rx) = mpsc::unbounded_channel();
        (
            Link {
                from_server,
                to_server,
            },
            from_tx,
            to_rx,
        )
    }
}

/// How a media session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// We offer the clip and audio, send-only.
    OfferPublishing,
    /// The server offers; we answer (Jinke after `receive`, Janus subscribers).
    AwaitOffer,
}

/// One WebRTC session through str0m on its own UDP socket: negotiates through `link`, sends the
/// clip and audio when publishing, records what it receives. Runs until the connection fails or
/// the future is dropped.
pub async fn media_session(
    opening: Opening,
    bind_ip: IpAddr,
    started: Instant,
    shared: Arc<Shared>,
    stats: Rc<RefCell<ReceiverStats>>,
    mut link: Link,
) -> anyhow::Result<()> {
    let socket = std::net::UdpSocket::bind(SocketAddr::new(bind_ip, 0))?;
    socket.set_nonblocking(true)?;
    // Thousands of clients in one thread fall behind in bursts: 1 MiB of kernel buffer each
    // (past `net.core.rmem_max` when privileged) lets a burst wait instead of being dropped.
    grow_buffer(&socket, true, 1 << 20);
    if shared.udp_gro && !enable_gro(&socket) {
        tracing::debug!("UDP GRO unavailable; receiving datagrams one by one");
    }
    if !enable_rx_timestamps(&socket) {
        tracing::debug!("no receive timestamps; latency runs to when this client reads");
    }
    let local = socket.local_addr()?;
    // SAFETY: the socket owns a valid fd, which nothing replaces or closes while it is registered.
    let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE)? };
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let mut pending = None;
    let mut publisher = None;
    if opening != Opening::AwaitOffer {
        let mut change = rtc.sdp_api();
        let a = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let simulcast = shared.simulcast.then(|| {
            let mut s = Simulcast::new();
            for rid in SIMULCAST_RIDS {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        let v = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast);
        let k = shared.publishers.fetch_add(1, Ordering::Relaxed);
        publisher = Some(Publisher::new(a, v, k, shared.simulcast));
        let (offer, p) = change.apply().context("an offer with media")?;
        pending = Some(p);
        link.to_server
            .send(ToServer::Offer(offer.to_sdp_string()))
            .context("signaling gone")?;
    }

    let mut media_tick = tokio::time::interval(Duration::from_millis(5));
    media_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_receive = Instant::now();
    let mut heard = Heard::default();
    // One timer, reset when str0m's deadline moves (a new timer per packet costs a timer-wheel
    // insert and removal each time).
    let timer = tokio::time::sleep_until(Instant::now().into());
    tokio::pin!(timer);
    loop {
        // Let str0m say everything it has to say.
        let timeout = drain_events(
            &mut rtc,
            socket.get_ref(),
            &mut heard,
            &shared,
            &stats,
            started,
            Arrival {
                queued: last_receive,
                handled: last_receive,
            },
        )?;
        if !rtc.is_alive() {
            bail!("media connection closed");
        }
        if timer.deadline() != timeout.into() {
            timer.as_mut().reset(timeout.into());
        }
        tokio::select! {
            // A packet wakes only this branch: the others are not polled for it.
            biased;
            r = socket.readable() => {
                let mut ready = r?;
                last_receive = Instant::now();
                let wall = SystemTime::now();
                let drained = BATCH.with_borrow_mut(|batch| -> anyhow::Result<bool> {
                    let n = match batch.recv(ready.get_inner()) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(true),
                        Err(e) => return Err(e.into()),
                    };
                    for i in 0..n {
                        let Some((datagrams, source)) = batch.get(i) else { continue };
                        // The kernel's stamp, taken to the monotonic clock the sent log uses.
                        let queued = batch
                            .queued_at(i)
                            .and_then(|t| wall.duration_since(t).ok())
                            .and_then(|ago| last_receive.checked_sub(ago))
                            .unwrap_or(last_receive);
                        let arrival = Arrival { queued, handled: last_receive };
                        for data in datagrams {
                            let Ok(contents) = data.try_into() else { continue };
                            rtc.handle_input(Input::Receive(last_receive, Receive {
                                proto: Protocol::Udp,
                                source,
                                destination: local,
                                contents,
                            }))?;
                            // str0m keeps a received packet only until the next poll: record
                            // each before taking the next.
                            drain_events(&mut rtc, ready.get_inner(), &mut heard, &shared, &stats, started, arrival)?;
                        }
                    }
                    Ok(n < batch.capacity())
                })?;
                if drained {
                    // Nothing left (a datagram arriving meanwhile sets readiness again).
                    ready.clear_ready();
                }
            }
            msg = link.from_server.recv() => match msg {
                // Signaling ended: so does the session (signaling reports why, if it failed).
                None => return Ok(()),
                Some(msg) => match msg {
                FromServer::Answer(sdp) => {
                    let pending = pending.take().context("an answer without an offer")?;
                    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&sdp)?)?;
                }
                FromServer::Offer(sdp) => {
                    let answer = rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(&sdp)?)?;
                    link.to_server
                        .send(ToServer::Answer(answer.to_sdp_string()))
                        .context("signaling gone")?;
                }
            }},
            () = &mut timer => {
                rtc.handle_input(Input::Timeout(Instant::now()))?;
            }
            _ = media_tick.tick(), if heard.connected && publisher.is_some()
                && !shared.quiet.load(Ordering::Relaxed) => {
                if let Some(p) = &mut publisher {
                    if std::mem::take(&mut heard.keyframe_wanted) && shared.simulcast {
                        p.skip_to_keyframe(&shared);
                    }
                    p.send_due(&mut rtc, &shared, Instant::now());
                }
            }
        }
    }
}

/// What a media session's events told it, besides the media.
#[derive(Default)]
struct Heard {
    /// This session's ICE and DTLS are up (a Janus participant has two sessions, which
    /// share its statistics' `connected`).
    connected: bool,
    /// The server asked the publisher for a keyframe.
    keyframe_wanted: bool,
}

/// Polls str0m until it wants time to pass: sends its datagrams, records received media. Returns
/// when it next needs a timeout.
fn drain_events(
    rtc: &mut Rtc,
    socket: &std::net::UdpSocket,
    heard: &mut Heard,
    shared: &Shared,
    stats: &RefCell<ReceiverStats>,
    started: Instant,
    arrival: Arrival,
) -> anyhow::Result<Instant> {
    loop {
        match rtc.poll_output()? {
            Output::Timeout(t) => return Ok(t),
            Output::Transmit(t) => {
                let _ = socket.send_to(&t.contents, t.destination);
            }
            Output::Event(Event::Connected) => {
                heard.connected = true;
                stats.borrow_mut().connected = true;
            }
            Output::Event(Event::KeyframeRequest(_)) => heard.keyframe_wanted = true,
            Output::Event(Event::RtpPacket(p)) => {
                let mut st = stats.borrow_mut();
                if st.join_time.is_none() {
                    st.join_time = Some(arrival.handled - started);
                    shared.joined.fetch_add(1, Ordering::Relaxed);
                }
                let pt = p.header.payload_type;
                let is_video = || {
                    rtc.codec_config()
                        .find(|c| c.pt() == pt)
                        .is_some_and(|c| c.spec().codec.is_video())
                };
                st.record(
                    *p.header.ssrc,
                    is_video,
                    *p.seq_no,
                    p.header.timestamp,
                    &p.payload,
                    arrival,
                    &shared.sent.read().unwrap_or_else(PoisonError::into_inner),
                    shared.window.get().copied(),
                );
            }
            Output::Event(_) => {}
        }
    }
}

/// A participant of a Jinke lesson: signaling over the WebSocket, one media session.
pub async fn jinke_participant(
    spec: ClientSpec,
    shared: Arc<Shared>,
    stats: Rc<RefCell<ReceiverStats>>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let ws_url = format!(
        "{}/ws?token={}",
        spec.base.replacen("http", "ws", 1),
        spec.token
    );
    // Signaling messages are small; tungstenite's default 128 KiB read buffer per client adds up.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(&ws_url, Some(config), false)
        .await
        .context("signaling connect")?;
    let (mut sink, mut stream) = ws.split();
    send(
        &mut sink,
        ClientMessage::Join {
            protocol: PROTOCOL_VERSION,
        },
    )
    .await?;
    match next_message(&mut stream).await? {
        ServerMessage::Joined { .. } => {}
        other => bail!("expected joined, got {other:?}"),
    }
    let (link, from_tx, mut to_rx) = Link::pair();
    let opening = if spec.publish {
        Opening::OfferPublishing
    } else {
        // Receive-only: the server offers, no data channel.
        send(&mut sink, ClientMessage::Receive).await?;
        Opening::AwaitOffer
    };
    let told = stats.clone();
    let media = media_session(opening, spec.bind_ip, started, shared.clone(), stats, link);
    let mut stop = shared.stop.clone();
    let signaling = async move {
        loop {
            tokio::select! {
                msg = next_message(&mut stream) => match msg? {
                    ServerMessage::Answer { sdp } => { let _ = from_tx.send(FromServer::Answer(sdp)); }
                    ServerMessage::Offer { sdp, .. } => { let _ = from_tx.send(FromServer::Offer(sdp)); }
                    ServerMessage::WeakLink { audio_only } => told.borrow_mut().weak_link(audio_only),
                    ServerMessage::Bye { reason } => bail!("server said bye: {reason:?}"),
                    ServerMessage::Error { code, message, .. } => bail!("server error {code:?}: {message}"),
                    _ => {}
                },
                Some(out) = to_rx.recv() => {
                    let msg = match out {
                        ToServer::Offer(sdp) => ClientMessage::Offer { sdp },
                        ToServer::Answer(sdp) => ClientMessage::Answer { sdp },
                    };
                    send(&mut sink, msg).await?;
                }
                _ = stop.wait_for(|s| *s) => {
                    let _ = send(&mut sink, ClientMessage::Leave).await;
                    return Ok(());
                }
            }
        }
    };
    // Signaling runs as its own task: polled with the media session, the WebSocket would be read
    // (and its buffer zeroed by tungstenite) on every media packet.
    let signaling = tokio::task::spawn_local(signaling);
    let abort = signaling.abort_handle();
    let result = tokio::select! {
        biased;
        r = signaling => r.unwrap_or_else(|e| Err(e.into())),
        r = media => r,
    };
    abort.abort();
    result
}

/// How to join a Jinke lesson.
pub struct ClientSpec {
    /// Server base URL, `http://host:port`.
    pub base: String,
    /// Join token.
    pub token: String,
    /// Whether this client publishes the clip and audio.
    pub publish: bool,
    /// Local address to bind the media socket to.
    pub bind_ip: IpAddr,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(
    sink: &mut futures_util::stream::SplitSink<Ws, Message>,
    msg: ClientMessage,
) -> anyhow::Result<()> {
    sink.send(Message::Text(msg.to_json().into()))
        .await
        .context("signaling send")
}

async fn next_message(
    stream: &mut futures_util::stream::SplitStream<Ws>,
) -> anyhow::Result<ServerMessage> {
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => return Ok(ServerMessage::from_json(&t)?),
            Some(Ok(Message::Close(_))) | None => bail!("signaling closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// The sending side of a publisher: paces the clip and the audio in real time, looping both
/// with continuous timestamps.
struct Publisher {
    /// XORed into the last byte of every payload, so that no two publishers ever send the same
    /// content and receivers can tell whose packet they got (the SFUs forward payloads without
    /// decoding them; nothing here is decoded either).
    tag: u8,
    /// Where in the loops this publisher starts.
    audio_start: usize,
    video_start: usize,
    audio_mid: Mid,
    video_mid: Mid,
    pts: Option<(Pt, Pt)>,
    started: Option<Instant>,
    audio_sent: u64,
    video_sent: u64,
    audio_seq: u64,
    /// The video's streams: one, or a simulcast layer each, with its next sequence number.
    video_streams: Vec<(Option<Rid>, u64)>,
    audio_ts0: u32,
    video_ts0: u32,
}

impl Publisher {
    fn new(audio_mid: Mid, video_mid: Mid, index: usize, simulcast: bool) -> Publisher {
        let video_streams = if simulcast {
            SIMULCAST_RIDS.map(|rid| (Some(Rid::from(rid)), 1)).to_vec()
        } else {
            vec![(None, 1)]
        };
        Publisher {
            tag: (index % 255) as u8 + 1,
            audio_start: index * 11,
            video_start: index * 7,
            audio_mid,
            video_mid,
            pts: None,
            started: None,
            audio_sent: 0,
            video_sent: 0,
            audio_seq: 1,
            video_streams,
            audio_ts0: rand_u32(),
            video_ts0: rand_u32(),
        }
    }

    fn payload_types(rtc: &Rtc) -> Option<(Pt, Pt)> {
        let pt = |codec| {
            rtc.codec_config()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
        };
        Some((pt(Codec::Opus)?, pt(Codec::Vp8)?))
    }

    /// Makes the next video frame the clip's next keyframe: a browser's encoder answers a
    /// keyframe request with its next frame, and a simulcast subscriber switching layers waits
    /// for it. (Without simulcast the clip's own keyframes, every 2.5 s, are what the
    /// benchmark's figures were measured with: requests are not answered then.)
    fn skip_to_keyframe(&mut self, shared: &Shared) {
        let len = shared.video.len();
        let next = (self.video_start + self.video_sent as usize) % len;
        if let Some(k) = (0..len)
            .map(|i| (next + i) % len)
            .find(|&i| shared.video[i].keyframe)
        {
            self.video_start = (k + len - self.video_sent as usize % len) % len;
        }
    }

    /// Sends every audio and video frame that is due by `now`.
    fn send_due(&mut self, rtc: &mut Rtc, shared: &Shared, now: Instant) {
        let Some((opus, vp8)) = self.pts.or_else(|| Self::payload_types(rtc)) else {
            return;
        };
        self.pts = Some((opus, vp8));
        let started = *self.started.get_or_insert(now);
        let elapsed = now - started;
        let audio_due = (elapsed.as_micros() / AUDIO_FRAME.as_micros()) as u64 + 1;
        while self.audio_sent < audio_due {
            let frame =
                &shared.audio[(self.audio_start + self.audio_sent as usize) % shared.audio.len()];
            let ts = self
                .audio_ts0
                .wrapping_add((self.audio_sent as u32).wrapping_mul(AUDIO_TS_STEP));
            self.write(
                rtc,
                shared,
                (self.audio_mid, None),
                opus,
                self.audio_seq,
                ts,
                &frame.payload,
                true,
                Some(frame.level),
                now,
            );
            self.audio_seq += 1;
            self.audio_sent += 1;
        }
        let video_due = (elapsed.as_micros() * VIDEO_FPS as u128 / 1_000_000) as u64 + 1;
        while self.video_sent < video_due {
            let frame =
                &shared.video[(self.video_start + self.video_sent as usize) % shared.video.len()];
            let ts = self
                .video_ts0
                .wrapping_add((self.video_sent as u32).wrapping_mul(VIDEO_CLOCK / VIDEO_FPS));
            let last = frame.packets.len() - 1;
            let simulcast = self.video_streams[0].0.is_some();
            // As a browser numbers them: a PictureID per frame, every frame in the base
            // temporal layer.
            let (picture_id, tl0) = (self.video_sent as u16, self.video_sent as u8);
            for i in 0..self.video_streams.len() {
                let (rid, seq) = self.video_streams[i];
                for (k, packet) in frame.packets.iter().enumerate() {
                    let patched;
                    let payload: &[u8] = if simulcast {
                        patched = with_picture_id(packet, picture_id, tl0);
                        &patched
                    } else {
                        packet
                    };
                    let marker = k == last;
                    let at = (self.video_mid, rid);
                    self.write(
                        rtc,
                        shared,
                        at,
                        vp8,
                        seq + k as u64,
                        ts,
                        payload,
                        marker,
                        None,
                        now,
                    );
                }
                self.video_streams[i].1 += frame.packets.len() as u64;
            }
            self.video_sent += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        rtc: &mut Rtc,
        shared: &Shared,
        (mid, rid): (Mid, Option<Rid>),
        pt: Pt,
        seq: u64,
        ts: u32,
        payload: &[u8],
        marker: bool,
        audio_level: Option<i8>,
        now: Instant,
    ) {
        let mut api = rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, rid) else {
            return;
        };
        let mut tagged = payload.to_vec();
        if let Some(last) = tagged.last_mut() {
            *last ^= self.tag;
        }
        let video = mid == self.video_mid;
        shared
            .sent
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .record(ts, checked_part(&tagged, video), now);
        stream.write_rtp(
            RtpWrite::new(pt, SeqNo::from(seq), ts, now, tagged)
                .marker(marker)
                .ext_vals(ExtensionValues {
                    audio_level,
                    voice_activity: audio_level.map(|l| l > -50),
                    ..Default::default()
                })
                .nackable(true),
        );
    }
}

fn rand_u32() -> u32 {
    // Good enough to keep publishers' timestamps apart; not security relevant.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(16)).wrapping_mul(2_654_435_761)
}
