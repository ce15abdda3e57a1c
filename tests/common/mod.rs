//! Test harness: a real Jinke server on loopback and webrtc-rs (an independent WebRTC stack) as
//! the clients, going through the REST API and signaling exactly as a real client does.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use jinke::config::ServeConfig;
use jinke::server::Server;
use jinke_signaling::{ClientMessage, PROTOCOL_VERSION, ServerMessage};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_simulcast_extension_headers, register_default_interceptors,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

pub mod h264;
pub mod netns;
pub mod numbered;
pub mod vp8;
pub mod ws;

/// The API key test servers use.
pub const API_KEY: &str = "test-api-key-0123456789";

pub const OPUS_PT: u8 = 111;
pub const VP8_PT: u8 = 96;
pub const H264_PT: u8 = 102;

/// Generous bound for anything a test waits for.
/// Where test clients' media sockets bind unless a test says otherwise.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub const WAIT: Duration = Duration::from_secs(15);

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A new, empty data folder for a test server.
pub fn fresh_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "jinke-test-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A Jinke server running in this process on loopback, with its own data folder.
pub struct TestServer {
    pub server: Option<Server>,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    http_client: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_in(fresh_dir()).await
    }

    pub async fn start_in(data_dir: PathBuf) -> TestServer {
        Self::start_with(data_dir, |_| {}).await
    }

    /// Starts a server whose configuration `adjust` changes first.
    pub async fn start_with(
        data_dir: PathBuf,
        adjust: impl FnOnce(&mut ServeConfig),
    ) -> TestServer {
        // The test HTTP client speaks TLS too and needs rustls's provider chosen.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut config = ServeConfig::loopback(data_dir.clone());
        config.api_key = Some(API_KEY.into());
        adjust(&mut config);
        let server = Server::start(config).await.expect("server starts");
        TestServer {
            http: server.http_addr(),
            server: Some(server),
            data_dir,
            http_client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    /// `POST` JSON with the API key; returns status and body.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = self
            .http_client
            .post(self.url(path))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn create_lesson(&self, mode: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/lessons",
                serde_json::json!({"title": "测试课", "mode": mode}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("lesson id").to_owned()
    }

    pub async fn token(&self, lesson: &str, identity: &str, role: &str) -> String {
        let (status, body) = self
            .post(
                &format!("/api/v1/lessons/{lesson}/tokens"),
                serde_json::json!({"identity": identity, "name": identity, "role": role}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// `identity` joins `lesson` as `role`, publishing `publish`; returns once its media
    /// connection is up.
    pub async fn connect(
        &self,
        lesson: &str,
        identity: &str,
        role: &str,
        publish: Publish,
    ) -> TestClient {
        let token = self.token(lesson, identity, role).await;
        let mut client = TestClient::join(self, &token, identity, publish).await;
        client.wait_connected().await;
        client
    }

    /// A `mode` lesson where `teacher` and `student` both send camera and microphone; returns
    /// them once each is subscribed to the other's two tracks.
    pub async fn teacher_and_student(
        &self,
        mode: &str,
        teacher: &str,
        student: &str,
    ) -> (TestClient, TestClient) {
        let lesson = self.create_lesson(mode).await;
        let t = self
            .connect(&lesson, teacher, "teacher", Publish::AudioVideo)
            .await;
        let s = self
            .connect(&lesson, student, "student", Publish::AudioVideo)
            .await;
        self.wait_stats("both publishing, both subscribed", |s| {
            s.routes == 4 && s.subscriptions == 4
        })
        .await;
        (t, s)
    }

    pub async fn stats(&self) -> jinke_sfu::SfuStats {
        self.server().state.sfu.stats().await.expect("sfu stats")
    }

    /// Waits until `check` holds for the SFU's stats.
    pub async fn wait_stats(&self, what: &str, check: impl Fn(&jinke_sfu::SfuStats) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.stats().await;
            if check(&s) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; stats: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// What a test client publishes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    Nothing,
    AudioVideo,
    /// Audio, and video in three simulcast layers (rids `l`, `m`, `h`), as browsers send it.
    Simulcast,
    /// As `Simulcast`, the video in H.264.
    SimulcastH264,
}

impl Publish {
    /// Whether the video goes in simulcast layers.
    fn simulcast(self) -> bool {
        matches!(self, Publish::Simulcast | Publish::SimulcastH264)
    }
}

/// The rids of a simulcast publisher's layers, lowest first.
pub const SIMULCAST_RIDS: [&str; 3] = ["l", "m", "h"];

/// A header extension value carried as plain bytes (a mid or a rid).
struct SdesValue(String);

impl rtc::shared::marshal::MarshalSize for SdesValue {
    fn marshal_size(&self) -> usize {
        self.0.len()
    }
}

impl rtc::shared::marshal::Marshal for SdesValue {
    fn marshal_to(&self, buf: &mut [u8]) -> rtc::shared::error::Result<usize> {
        buf[..self.0.len()].copy_from_slice(self.0.as_bytes());
        Ok(self.0.len())
    }
}

/// A received RTP packet, as the test sees it.
#[derive(Debug, Clone)]
pub struct Received {
    pub seq: u16,
    pub ssrc: u32,
    pub timestamp: u32,
    pub payload: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

/// Media a client received, by the server's track id.
type Inbox = Arc<Mutex<HashMap<String, Vec<Received>>>>;

struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    inbox: Inbox,
    remote_tracks: Arc<Mutex<Vec<Arc<dyn TrackRemote>>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        self.remote_tracks.lock().unwrap().push(track.clone());
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            let track_id = track.track_id().await.to_string();
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = event {
                    inbox
                        .lock()
                        .unwrap()
                        .entry(track_id.clone())
                        .or_default()
                        .push(Received {
                            seq: p.header.sequence_number,
                            ssrc: p.header.ssrc,
                            timestamp: p.header.timestamp,
                            payload: p.payload.to_vec(),
                            at: Instant::now(),
                        });
                }
            }
        });
    }
}

/// A local track a test client sends known packets on (for a simulcast video, one layer).
pub struct LocalTrack {
    pub track: Arc<TrackLocalStaticRTP>,
    pub ssrc: u32,
    pub pt: u8,
    seq: Mutex<u16>,
    /// A simulcast layer's rid, sent in each packet with the m-line's mid (set once the offer
    /// is made).
    pub rid: Option<&'static str>,
    mid: Mutex<Option<String>>,
}

impl LocalTrack {
    /// Skips `n` sequence numbers, as packets lost on the way to the server would.
    pub fn skip(&self, n: u16) {
        let mut s = self.seq.lock().unwrap();
        *s = s.wrapping_add(n);
    }

    /// Sends one RTP packet with this payload, the marker bit set (a frame of one packet).
    pub async fn send(&self, payload: Vec<u8>) {
        self.send_marked(payload, true).await;
    }

    /// Sends one RTP packet with this payload and marker bit (set on a frame's last packet),
    /// its timestamp advanced by a frame's worth from the previous packet's.
    pub async fn send_marked(&self, payload: Vec<u8>, marker: bool) {
        self.send_rtp(payload, marker, None).await;
    }

    /// Sends one RTP packet; `timestamp` for packets of one frame (else one per packet).
    pub async fn send_rtp(&self, payload: Vec<u8>, marker: bool, timestamp: Option<u32>) {
        let seq = {
            let mut s = self.seq.lock().unwrap();
            *s = s.wrapping_add(1);
            *s
        };
        let per_packet = if self.rid.is_some() { 3000 } else { 960 };
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker,
                payload_type: self.pt,
                sequence_number: seq,
                timestamp: timestamp.unwrap_or(u32::from(seq).wrapping_mul(per_packet)),
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: payload.into(),
        };
        if let Some(rid) = self.rid {
            let mid = self
                .mid
                .lock()
                .unwrap()
                .clone()
                .expect("offered before sending");
            let sdes = |uri: &str, value: &str| rtc::rtp::extension::HeaderExtension::Custom {
                uri: uri.to_owned().into(),
                extension: Box::new(SdesValue(value.to_owned())),
            };
            self.track
                .write_rtp_with_extensions(
                    packet,
                    &[
                        sdes("urn:ietf:params:rtp-hdrext:sdes:mid", &mid),
                        sdes("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", rid),
                    ],
                )
                .await
                .expect("write_rtp");
            return;
        }
        self.track.write_rtp(packet).await.expect("write_rtp");
    }
}

/// Something with an audio and a video track to send on: a client, or one of its side
/// connections.
pub trait Publishes {
    /// The audio and video tracks.
    fn tracks(&self) -> (&LocalTrack, &LocalTrack);
}

impl Publishes for Peer {
    fn tracks(&self) -> (&LocalTrack, &LocalTrack) {
        (
            self.audio.as_ref().expect("publishes audio"),
            self.video.as_ref().expect("publishes video"),
        )
    }
}

impl Publishes for TestClient {
    fn tracks(&self) -> (&LocalTrack, &LocalTrack) {
        (
            self.audio.as_ref().expect("publishes audio"),
            self.video.as_ref().expect("publishes video"),
        )
    }
}

/// A webrtc-rs peer connection of a test client, with its local tracks (when publishing) and
/// what it receives.
pub struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    pub audio: Option<LocalTrack>,
    pub video: Option<LocalTrack>,
    /// A simulcast publisher's lower video layers (`video` is the highest).
    pub layers: Vec<LocalTrack>,
    pub inbox: Inbox,
    pub remote_tracks: Arc<Mutex<Vec<Arc<dyn TrackRemote>>>>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    gathered: watch::Receiver<bool>,
}

impl Peer {
    /// A peer connection on loopback: audio and video tracks to publish, or a data channel.
    pub async fn new(identity: &str, publish: Publish) -> Peer {
        Self::new_at(identity, publish, LOOPBACK).await
    }

    /// A peer connection whose candidates are on `ip`.
    pub async fn new_at(identity: &str, publish: Publish, ip: IpAddr) -> Peer {
        let mut media = MediaEngine::default();
        media
            .register_codec(codec(Codec::Opus), RtpCodecKind::Audio)
            .unwrap();
        // Every client can receive VP8 and H.264; a publisher sends the one its video is in.
        for video in [Codec::Vp8, Codec::H264] {
            media
                .register_codec(codec(video), RtpCodecKind::Video)
                .unwrap();
        }
        let registry = register_default_interceptors(Default::default(), &mut media).unwrap();
        if publish.simulcast() {
            configure_simulcast_extension_headers(&mut media).unwrap();
        }
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_ice_connection_attempts(Some(Duration::from_millis(20)), None)
            .with_include_loopback_candidate(true)
            .build();
        let (gathered_tx, gathered) = watch::channel(false);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let inbox: Inbox = Default::default();
        let remote_tracks: Arc<Mutex<Vec<Arc<dyn TrackRemote>>>> = Default::default();
        let handler = Arc::new(Handler {
            gathered: gathered_tx,
            state: state_tx,
            inbox: inbox.clone(),
            remote_tracks: remote_tracks.clone(),
        });
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(media)
                .with_interceptor_registry(registry)
                .with_setting_engine(settings)
                .with_handler(handler)
                .with_udp_addrs(vec![SocketAddr::new(ip, 0).to_string()])
                .build()
                .await
                .expect("peer connection"),
        );
        let (audio, video, layers) = if publish == Publish::Nothing {
            pc.create_data_channel("jinke", None)
                .await
                .expect("data channel");
            (None, None, Vec::new())
        } else {
            let mut out = Vec::new();
            let video = if publish == Publish::SimulcastH264 {
                Codec::H264
            } else {
                Codec::Vp8
            };
            for (kind, c) in [
                (RtpCodecKind::Audio, Codec::Opus),
                (RtpCodecKind::Video, video),
            ] {
                let c = codec(c);
                let rids: &[Option<&'static str>] =
                    if kind == RtpCodecKind::Video && publish.simulcast() {
                        &[Some("l"), Some("m"), Some("h")]
                    } else {
                        &[None]
                    };
                let ssrcs: Vec<u32> = rids.iter().map(|_| rand::random::<u32>()).collect();
                let encodings = rids
                    .iter()
                    .zip(&ssrcs)
                    .map(|(rid, ssrc)| RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(*ssrc),
                            rid: rid.unwrap_or_default().to_owned(),
                            ..Default::default()
                        },
                        codec: c.rtp_codec.clone(),
                        ..Default::default()
                    })
                    .collect();
                let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                    format!("{identity}-stream"),
                    format!("{identity}-{kind}"),
                    format!("{identity}-{kind}"),
                    kind,
                    encodings,
                )));
                pc.add_track(track.clone() as Arc<dyn TrackLocal>)
                    .await
                    .expect("add track");
                for (rid, ssrc) in rids.iter().zip(ssrcs) {
                    out.push(LocalTrack {
                        track: track.clone(),
                        ssrc,
                        pt: c.payload_type,
                        seq: Mutex::new(rand::random::<u16>() / 2),
                        rid: *rid,
                        mid: Mutex::new(None),
                    });
                }
            }
            let audio = out.remove(0);
            // The highest layer doubles as "the" video track.
            let video = out.pop();
            (Some(audio), video, out)
        };
        Peer {
            pc,
            audio,
            video,
            layers,
            inbox,
            remote_tracks,
            state,
            gathered,
        }
    }

    /// Waits until ICE and DTLS are up.
    pub async fn wait_connected(&mut self, who: &str) {
        wait_connected(&mut self.state, who).await;
    }
}

/// Waits until a peer connection's ICE and DTLS are up.
async fn wait_connected(state: &mut watch::Receiver<RTCPeerConnectionState>, who: &str) {
    let connected = tokio::time::timeout(
        WAIT,
        state.wait_for(|s| *s == RTCPeerConnectionState::Connected),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let now = *state.borrow();
    assert!(connected, "{who}: not connected; state {now:?}");
}

/// Creates an offer and waits for ICE gathering, so that it carries the candidates (no trickle
/// needed).
async fn offer_sdp(pc: &Arc<dyn PeerConnection>, gathered: &mut watch::Receiver<bool>) -> String {
    let offer = pc.create_offer(None).await.expect("create offer");
    pc.set_local_description(offer)
        .await
        .expect("set local offer");
    let _ = tokio::time::timeout(WAIT, gathered.wait_for(|g| *g)).await;
    pc.local_description().await.expect("local offer").sdp
}

/// A participant: signaling over WebSocket and media through a webrtc-rs peer connection. Server
/// offers (renegotiation) are answered in the background.
pub struct TestClient {
    pub identity: String,
    pub joined: ServerMessage,
    pub pc: Arc<dyn PeerConnection>,
    pub audio: Option<LocalTrack>,
    pub video: Option<LocalTrack>,
    /// A simulcast publisher's lower video layers (`video` is the highest).
    pub layers: Vec<LocalTrack>,
    pub inbox: Inbox,
    pub remote_tracks: Arc<Mutex<Vec<Arc<dyn TrackRemote>>>>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    gathered: watch::Receiver<bool>,
    /// Every server message except answers, in order.
    pub events: mpsc::UnboundedReceiver<ServerMessage>,
    outgoing: mpsc::UnboundedSender<ClientMessage>,
    answers: mpsc::UnboundedReceiver<Result<String, ServerMessage>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The codecs test clients use.
#[derive(Clone, Copy)]
pub enum Codec {
    Opus,
    Vp8,
    H264,
}

fn codec(codec: Codec) -> RTCRtpCodecParameters {
    let (mime, clock_rate, channels, pt, fmtp) = match codec {
        Codec::Opus => (
            MIME_TYPE_OPUS,
            48000,
            2,
            OPUS_PT,
            "minptime=10;useinbandfec=1",
        ),
        Codec::Vp8 => (MIME_TYPE_VP8, 90000, 0, VP8_PT, ""),
        // Constrained Baseline, as browsers offer it first.
        Codec::H264 => (
            MIME_TYPE_H264,
            90000,
            0,
            H264_PT,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        ),
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

/// Asserts that the server refused something with an error of `code`.
pub fn assert_refused(got: Option<ServerMessage>, code: jinke_signaling::ErrorCode) {
    assert!(
        matches!(&got, Some(ServerMessage::Error { code: c, .. }) if *c == code),
        "expected a {code:?} error, got {got:?}"
    );
}

/// Opens the signaling socket; `Err` carries the HTTP status of a refused upgrade.
pub async fn open_ws(
    http: SocketAddr,
    query: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    match tokio_tungstenite::connect_async(format!("ws://{http}/ws?{query}")).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

impl TestClient {
    /// Joins with `token` and sends an offer that publishes `publish`; waits for the answer.
    /// Joins with `token`: a publisher offers its tracks and waits for the answer; a receiver
    /// asks the server to offer (`receive`).
    pub async fn join(server: &TestServer, token: &str, identity: &str, publish: Publish) -> Self {
        Self::join_at(server.http, token, identity, publish, LOOPBACK).await
    }

    /// As [`TestClient::join`], to the server at `http`, with media candidates on `ip`.
    pub async fn join_at(
        http: SocketAddr,
        token: &str,
        identity: &str,
        publish: Publish,
        ip: IpAddr,
    ) -> Self {
        let mut client = Self::join_signaling_at(http, token, identity, publish, ip).await;
        match publish {
            Publish::AudioVideo | Publish::Simulcast | Publish::SimulcastH264 => client
                .offer()
                .await
                .unwrap_or_else(|e| panic!("{identity}: offer refused: {e:?}")),
            Publish::Nothing => client.send(ClientMessage::Receive),
        }
        client
    }

    /// Joins signaling and builds the peer connection, without offering yet.
    pub async fn join_signaling(
        server: &TestServer,
        token: &str,
        identity: &str,
        publish: Publish,
    ) -> Self {
        Self::join_signaling_at(server.http, token, identity, publish, LOOPBACK).await
    }

    /// As [`TestClient::join_signaling`], to the server at `http`, with media candidates on `ip`.
    async fn join_signaling_at(
        http: SocketAddr,
        token: &str,
        identity: &str,
        publish: Publish,
        ip: IpAddr,
    ) -> Self {
        let ws = open_ws(http, &format!("token={token}"))
            .await
            .expect("upgrade accepted");
        let (mut sink, mut stream) = ws.split();
        sink.send(Message::Text(
            ClientMessage::Join {
                protocol: PROTOCOL_VERSION,
            }
            .to_json()
            .into(),
        ))
        .await
        .expect("send join");
        let joined = loop {
            let msg = tokio::time::timeout(WAIT, stream.next())
                .await
                .expect("joined in time")
                .expect("socket open")
                .expect("frame");
            if let Message::Text(t) = msg {
                break ServerMessage::from_json(&t).expect("server message");
            }
        };

        let Peer {
            pc,
            audio,
            video,
            layers,
            inbox,
            remote_tracks,
            state,
            gathered,
        } = Peer::new_at(identity, publish, ip).await;

        let (outgoing, mut out_rx) = mpsc::unbounded_channel::<ClientMessage>();
        let writer = tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if sink
                    .send(Message::Text(msg.to_json().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let (events_tx, events) = mpsc::unbounded_channel();
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let reader = {
            let pc = pc.clone();
            let outgoing = outgoing.clone();
            tokio::spawn(async move {
                while let Some(Ok(frame)) = stream.next().await {
                    let Message::Text(text) = frame else { continue };
                    let msg = ServerMessage::from_json(&text).expect("valid server message");
                    match &msg {
                        ServerMessage::Answer { sdp }
                        | ServerMessage::PublishAnswer { sdp }
                        | ServerMessage::ScreenAnswer { sdp } => {
                            let _ = answers_tx.send(Ok(sdp.clone()));
                            continue;
                        }
                        ServerMessage::Error { .. } => {
                            let _ = answers_tx.send(Err(msg.clone()));
                        }
                        ServerMessage::Offer { sdp, .. } => {
                            let offer = RTCSessionDescription::offer(sdp.clone()).unwrap();
                            pc.set_remote_description(offer)
                                .await
                                .expect("server offer");
                            let answer = pc.create_answer(None).await.expect("answer");
                            pc.set_local_description(answer.clone())
                                .await
                                .expect("local answer");
                            let _ = outgoing.send(ClientMessage::Answer { sdp: answer.sdp });
                        }
                        _ => {}
                    }
                    let _ = events_tx.send(msg);
                }
            })
        };
        TestClient {
            identity: identity.to_owned(),
            joined,
            pc,
            audio,
            video,
            layers,
            inbox,
            remote_tracks,
            state,
            gathered,
            events,
            outgoing,
            answers,
            tasks: vec![writer, reader],
        }
    }

    /// Sends the offer and applies the answer; `Err` is the server's error message.
    pub async fn offer(&mut self) -> Result<(), ServerMessage> {
        let sdp = offer_sdp(&self.pc, &mut self.gathered).await;
        // Simulcast layers name their m-line in every packet: the video's, the last.
        let video_mid = sdp
            .lines()
            .filter_map(|l| l.strip_prefix("a=mid:"))
            .next_back()
            .map(str::to_owned);
        for layer in self.layers.iter().chain(&self.video) {
            *layer.mid.lock().unwrap() = video_mid.clone();
        }
        self.send(ClientMessage::Offer { sdp });
        let answer = tokio::time::timeout(WAIT, self.answers.recv())
            .await
            .expect("answer in time")
            .expect("socket open")?;
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .expect("server answer applies");
        Ok(())
    }

    /// Opens the publish-only connection of a student on stage: offers it with `publish_offer`
    /// and applies the server's answer. `Err` is the server's refusal.
    pub async fn publish_on_stage(&mut self) -> Result<Peer, ServerMessage> {
        self.side_connection("stage", |sdp| ClientMessage::PublishOffer { sdp })
            .await
    }

    /// Shares a "screen": a publish-only connection offered with `share_screen`.
    pub async fn share_screen(&mut self) -> Result<Peer, ServerMessage> {
        self.side_connection("screen", |sdp| ClientMessage::ShareScreen { sdp })
            .await
    }

    /// A publish-only connection with audio and video, offered by `offer`.
    async fn side_connection(
        &mut self,
        what: &str,
        offer: impl FnOnce(String) -> ClientMessage,
    ) -> Result<Peer, ServerMessage> {
        let mut peer = Peer::new(&format!("{}-{what}", self.identity), Publish::AudioVideo).await;
        let sdp = offer_sdp(&peer.pc, &mut peer.gathered).await;
        self.send(offer(sdp));
        let answer = tokio::time::timeout(WAIT, self.answers.recv())
            .await
            .expect("answer in time")
            .expect("socket open")?;
        peer.pc
            .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .expect("server answer applies");
        Ok(peer)
    }

    /// Sends an offer and takes the answer without applying it: the client never starts ICE.
    pub async fn offer_and_never_connect(&mut self) {
        let offer = self.pc.create_offer(None).await.expect("create offer");
        self.send(ClientMessage::Offer { sdp: offer.sdp });
        let answer = tokio::time::timeout(WAIT, self.answers.recv()).await;
        assert!(matches!(answer, Ok(Some(Ok(_)))), "{answer:?}");
    }

    pub fn send(&self, msg: ClientMessage) {
        let _ = self.outgoing.send(msg);
    }

    pub async fn wait_connected(&mut self) {
        wait_connected(&mut self.state, &self.identity).await;
    }

    /// Waits for the next server event matching `pred`, skipping others.
    pub async fn expect_event(
        &mut self,
        what: &str,
        pred: impl Fn(&ServerMessage) -> bool,
    ) -> ServerMessage {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(m)) if pred(&m) => return m,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{}: socket closed waiting for {what}", self.identity),
                Err(_) => panic!("{}: timed out waiting for {what}", self.identity),
            }
        }
    }

    /// Waits for `n` tracks to be announced (`track_published`), skipping other events.
    pub async fn published_tracks(
        &mut self,
        what: &str,
        n: usize,
    ) -> Vec<jinke_signaling::TrackInfo> {
        self.announced(what, n, |_| true).await
    }

    /// `identity`'s `n` tracks as this client learns them: those its `joined` message lists, then
    /// those announced after it. The shard routes a track before the room lists it (the
    /// publisher's session announces it when its peer reports it), so a client may join in
    /// between and learn of it only from a `track_published` message.
    pub async fn tracks_from(
        &mut self,
        identity: &str,
        n: usize,
    ) -> Vec<jinke_signaling::TrackInfo> {
        let mut tracks = numbered::tracks_of(&self.joined);
        tracks.retain(|t| t.identity == identity);
        let more = n.saturating_sub(tracks.len());
        let what = format!("{identity}'s tracks");
        tracks.extend(
            self.announced(&what, more, |t| t.identity == identity)
                .await,
        );
        tracks
    }

    /// The next `n` tracks announced that `wanted` takes, skipping other events.
    async fn announced(
        &mut self,
        what: &str,
        n: usize,
        wanted: impl Fn(&jinke_signaling::TrackInfo) -> bool,
    ) -> Vec<jinke_signaling::TrackInfo> {
        let mut tracks = Vec::new();
        while tracks.len() < n {
            if let ServerMessage::TrackPublished(t) = self
                .expect_event(
                    what,
                    |m| matches!(m, ServerMessage::TrackPublished(t) if wanted(t)),
                )
                .await
            {
                tracks.push(t);
            }
        }
        tracks
    }

    /// Packets received on the track with this server track id.
    pub fn received(&self, track_id: &str) -> Vec<Received> {
        self.inbox
            .lock()
            .unwrap()
            .get(track_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Track ids this client receives media on.
    pub fn receiving(&self) -> Vec<String> {
        self.inbox.lock().unwrap().keys().cloned().collect()
    }

    /// Ends the client without a goodbye: no `leave`, no DTLS close; the socket just drops.
    pub fn vanish(self) {
        for t in &self.tasks {
            t.abort();
        }
        drop(self);
    }

    /// Closes the peer connection (DTLS close) but keeps signaling open.
    pub async fn close_media(&self) {
        let _ = self.pc.close().await;
    }
}

/// Payload `i` of a test stream: distinctive bytes that show corruption or reordering.
pub fn payload(tag: u8, i: u32, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len);
    // A VP8 payload descriptor start (S bit) so nothing mistakes it for anything stranger.
    p.push(0x10);
    p.push(tag);
    p.extend_from_slice(&i.to_be_bytes());
    while p.len() < len {
        p.push((p.len() as u32 ^ i.wrapping_mul(31)) as u8);
    }
    p
}
