//! Numbered media: a publisher sends tagged, numbered packets; receivers check each arrived
//! byte-exact, in order, with consecutive sequence numbers.

use std::time::Duration;

use jinke_signaling::{MediaKind, ServerMessage, TrackInfo};

use super::*;

pub const AUDIO_TAG: u8 = 0xA0;
pub const VIDEO_TAG: u8 = 0xB0;
pub const WARMUP_TAG: u8 = 0xFF;
pub const AUDIO_LEN: usize = 160;
pub const VIDEO_LEN: usize = 1100;

/// The tracks a `joined` message lists.
pub fn tracks_of(joined: &ServerMessage) -> Vec<TrackInfo> {
    match joined {
        ServerMessage::Joined { tracks, .. } => tracks.clone(),
        other => panic!("expected joined, got {other:?}"),
    }
}

/// The id of `identity`'s track of `kind`.
pub fn track_id(tracks: &[TrackInfo], identity: &str, kind: MediaKind) -> String {
    tracks
        .iter()
        .find(|t| t.identity == identity && t.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} track of {identity} in {tracks:?}"))
        .track_id
        .clone()
}

/// Sends warm-up packets from `publisher` until every receiver gets both of its tracks, so that
/// the numbered run that follows is measured on fully set-up paths.
pub async fn warm_up(
    publisher: &impl Publishes,
    receivers: &[&TestClient],
    audio: &str,
    video: &str,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let (a, v) = publisher.tracks();
    for i in 0.. {
        let ready = receivers
            .iter()
            .all(|r| !r.received(audio).is_empty() && !r.received(video).is_empty());
        if ready {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "media never reached every receiver"
        );
        a.send(payload(WARMUP_TAG, i, AUDIO_LEN)).await;
        v.send(payload(WARMUP_TAG, i, VIDEO_LEN)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `n` numbered packets on each of the publisher's tracks, tagged `audio_tag` and
/// `video_tag`.
pub async fn send_tags(publisher: &impl Publishes, audio_tag: u8, video_tag: u8, n: u32) {
    let (a, v) = publisher.tracks();
    for i in 0..n {
        a.send(payload(audio_tag, i, AUDIO_LEN)).await;
        v.send(payload(video_tag, i, VIDEO_LEN)).await;
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
}

/// Sends `n` numbered packets on each of the publisher's tracks.
pub async fn send_numbered(publisher: &impl Publishes, n: u32) {
    send_tags(publisher, AUDIO_TAG, VIDEO_TAG, n).await;
}

/// What `receiver` got so far on `track` that carries `tag` (a payload's second byte).
pub fn received_tagged(receiver: &TestClient, track: &str, tag: u8) -> Vec<Received> {
    receiver
        .received(track)
        .into_iter()
        .filter(|r| r.payload.get(1) == Some(&tag))
        .collect()
}

/// Waits for the numbered packets and checks every one arrived byte-exact, in order, with
/// consecutive sequence numbers and one SSRC.
pub async fn assert_numbered(receiver: &TestClient, track: &str, tag: u8, len: usize, n: u32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let numbered = loop {
        let got = received_tagged(receiver, track, tag);
        if got.len() >= n as usize || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        numbered.len(),
        n as usize,
        "{} received {} of {n} packets on {track}",
        receiver.identity,
        numbered.len()
    );
    for (i, r) in numbered.iter().enumerate() {
        assert_eq!(
            r.payload,
            payload(tag, i as u32, len),
            "{}: packet {i} on {track} differs",
            receiver.identity
        );
    }
    assert!(
        numbered
            .windows(2)
            .all(|w| w[1].seq == w[0].seq.wrapping_add(1) && w[1].ssrc == w[0].ssrc),
        "{}: sequence numbers on {track} are not consecutive",
        receiver.identity
    );
}

/// Every receiver asks for keyframes of the video it gets, every 20 ms for 1 s (150 requests
/// from three receivers): at most one per 500 ms window may reach the publisher, at least one.
pub async fn assert_keyframe_requests_coalesced(server: &TestServer, receivers: &[TestClient]) {
    // Joining subscribers asked for keyframes too; measure from after their window.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = server.stats().await.keyframe_requests;
    ask_for_keyframes(receivers, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let sent = server.stats().await.keyframe_requests - before;
    assert!(
        (1..=4).contains(&sent),
        "{sent} keyframe requests reached the publisher"
    );
}

/// Every receiver sends a picture loss indication for each video track it receives, every
/// 20 ms, for `span`.
pub async fn ask_for_keyframes(receivers: &[TestClient], span: Duration) {
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;

    let start = tokio::time::Instant::now();
    while start.elapsed() < span {
        for r in receivers {
            let tracks = r.remote_tracks.lock().unwrap().clone();
            for track in tracks {
                let ssrcs = track.ssrcs().await;
                if track.kind().await == rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video {
                    let pli = PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc: ssrcs[0],
                    };
                    let _ = track.write_rtcp(vec![Box::new(pli)]).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A lecture under way: a teacher publishing audio and video, students receiving, media
/// flowing to every one of them.
pub struct Lecture {
    pub teacher: TestClient,
    pub students: Vec<TestClient>,
    /// The teacher's track ids.
    pub audio: String,
    pub video: String,
}

impl Lecture {
    /// Creates a lecture on `server`: the teacher joins and publishes, then `students`
    /// students (`student-0`, ...) join and receive; returns once media reaches them all.
    pub async fn start(server: &TestServer, students: usize) -> Lecture {
        let lesson = server.create_lesson("lecture").await;
        let teacher = server
            .connect(&lesson, "teacher", "teacher", Publish::AudioVideo)
            .await;
        server
            .wait_stats("the teacher's two tracks", |s| s.routes == 2)
            .await;
        let mut joined = Vec::new();
        for i in 0..students {
            let id = format!("student-{i}");
            joined.push(
                server
                    .connect(&lesson, &id, "student", Publish::Nothing)
                    .await,
            );
        }
        server
            .wait_stats("every student on both tracks", |s| {
                s.subscriptions == 2 * students
            })
            .await;
        let tracks = joined[0].tracks_from("teacher", 2).await;
        let audio = track_id(&tracks, "teacher", MediaKind::Audio);
        let video = track_id(&tracks, "teacher", MediaKind::Video);
        let receivers: Vec<&TestClient> = joined.iter().collect();
        warm_up(&teacher, &receivers, &audio, &video).await;
        Lecture {
            teacher,
            students: joined,
            audio,
            video,
        }
    }

    /// Sends `n` numbered packets on each of the teacher's tracks and checks that every
    /// student gets them all, byte-exact and in order.
    pub async fn assert_delivery(&self, n: u32) {
        send_numbered(&self.teacher, n).await;
        for s in &self.students {
            assert_numbered(s, &self.audio, AUDIO_TAG, AUDIO_LEN, n).await;
            assert_numbered(s, &self.video, VIDEO_TAG, VIDEO_LEN, n).await;
        }
    }
}
