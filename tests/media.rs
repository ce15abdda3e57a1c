//! Media through the real server on loopback, with webrtc-rs clients: byte-exact, in-order
//! forwarding, both directions, publish permissions, cleanup, and broken datagrams (from anyone,
//! and forged as coming from a student: raw sockets, so root) that disturb nobody.

mod common;

use std::time::Duration;

use common::numbered::*;
use common::*;
use jinke_signaling::{ByeReason, ErrorCode, MediaKind, ServerMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lecture_reaches_three_students_byte_exact_and_in_order() {
    let server = TestServer::start().await;
    let lecture = Lecture::start(&server, 3).await;
    lecture.assert_delivery(100).await;
    for s in &lecture.students {
        assert_eq!(s.receiving().len(), 2, "students receive only the teacher");
    }
    assert!(
        lecture.teacher.receiving().is_empty(),
        "nothing is sent back"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_at_the_media_port_disturbs_nobody() {
    let server = TestServer::start().await;
    let lecture = Lecture::start(&server, 1).await;

    // Datagrams that look like STUN, DTLS, RTP and RTCP but are broken, and plain noise.
    let media = server.server().media_addrs().to_vec();
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42], // truncated STUN binding request
        vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff], // DTLS record, bad length
        vec![0x80, 0x60, 0x00, 0x01],                         // RTP header cut short
        vec![0x81, 0xc8, 0x00, 0x40, 1, 2, 3, 4],             // RTCP SR claiming 260 bytes
        vec![0x90; 1500],
    ];
    for i in 0..200u32 {
        junk.push(payload(0x5A, i, 20 + (i as usize * 7) % 1400));
    }
    // A well-formed ICE check, for a username fragment no session has.
    junk.push(stun_binding_request("nobodys:ufrag"));
    let before = server.stats().await.strays;
    for d in &junk {
        for &shard in &media {
            let _ = attacker.send_to(d, shard);
        }
    }
    lecture.assert_delivery(50).await;
    let stats = server.stats().await;
    assert_eq!(stats.peers, 2);
    // The empty datagram is not even read as one.
    let counted = (junk.iter().filter(|d| !d.is_empty()).count() * media.len()) as u64;
    assert!(
        stats.strays - before >= counted,
        "each junk datagram is counted as no peer's: {} of {counted}",
        stats.strays - before,
    );
    server.stop().await;
}

/// An ICE check as a client sends one (str0m's STUN encoder): USERNAME, PRIORITY and a
/// MESSAGE-INTEGRITY that no session's key signed.
fn stun_binding_request(username: &str) -> Vec<u8> {
    use str0m::ice::{StunMessage, TransId};
    let check = StunMessage::binding_request(username, TransId::new(), true, 1, 1, false);
    let mut buf = vec![0; 1500];
    let len = check
        .to_bytes(Some(b"not-a-session-key"), &mut buf, |_, _| [0x55; 20])
        .expect("a STUN message fits in 1500 bytes");
    buf.truncate(len);
    buf
}

/// The UDP port of the first loopback host candidate in a session description.
fn candidate_port(sdp: &str) -> u16 {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .map(|c| c.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 7 && f[2].eq_ignore_ascii_case("udp") && f[4] == "127.0.0.1")
        .and_then(|f| f[5].parse().ok())
        .expect("a loopback UDP candidate")
}

/// Sends `payload` to `to` as if from `from`: a raw IPv4/UDP datagram with a forged source
/// (root only; what an off-path attacker who knows a student's address can do, or what a
/// corrupted datagram looks like when it arrives).
fn send_spoofed(from: std::net::SocketAddrV4, to: std::net::SocketAddrV4, payload: &[u8]) {
    let udp_len = 8 + payload.len();
    let mut packet = Vec::with_capacity(20 + udp_len);
    // IPv4 header; the kernel fills in the total length, id and checksum of a raw send.
    packet.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0]);
    packet.extend_from_slice(&from.ip().octets());
    packet.extend_from_slice(&to.ip().octets());
    packet.extend_from_slice(&from.port().to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]); // no UDP checksum
    packet.extend_from_slice(payload);
    // SAFETY: plain socket calls on a socket this function owns; `addr` and `packet` outlive
    // the send.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
        assert!(
            fd >= 0,
            "raw socket (needs root): {}",
            std::io::Error::last_os_error()
        );
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as _;
        addr.sin_port = to.port().to_be();
        addr.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        let sent = libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as _,
        );
        assert_eq!(
            sent,
            packet.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
        libc::close(fd);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_datagrams_from_a_students_own_address_do_not_end_its_session() {
    let server = TestServer::start().await;
    let lecture = Lecture::start(&server, 1).await;
    let student = &lecture.students[0];
    let sdp = student
        .pc
        .local_description()
        .await
        .expect("local description")
        .sdp;
    let from = std::net::SocketAddrV4::new([127, 0, 0, 1].into(), candidate_port(&sdp));
    let std::net::SocketAddr::V4(to) = server.server().media_addrs()[0] else {
        panic!("the test server's media port is IPv4");
    };
    let junk: Vec<Vec<u8>> = vec![
        vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0xff, 0xff], // DTLS record, bad length
        vec![0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 7, 0, 4, 1, 2, 3, 4], // app data, bad epoch
        vec![0x15, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 8, 0, 2, 2, 40],   // "alert", unencrypted
        vec![0x14, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 10, 0, 1, 1],      // change cipher spec
        vec![0x80, 0x60, 0x00, 0x01, 0, 0, 0, 1, 0, 0, 0, 1, 0xde, 0xad], // RTP, bad SRTP tag
        vec![0x81, 0xc9, 0x00, 0x07, 0, 0, 0, 1, 9, 9, 9, 9],          // RTCP RR, bad SRTCP
        vec![
            0x00, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
            0, 6, 0, 9,
        ],
    ];
    for d in &junk {
        for _ in 0..3 {
            send_spoofed(from, to, d);
        }
    }
    lecture.assert_delivery(50).await;
    assert_eq!(server.stats().await.peers, 2, "both sessions go on");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_tutoring_works_both_ways() {
    let server = TestServer::start().await;
    let (mut tutor, mut pupil) = server
        .teacher_and_student("one_to_one", "tutor", "pupil")
        .await;

    let from_tutor = pupil.tracks_from("tutor", 2).await;
    let t_audio = track_id(&from_tutor, "tutor", MediaKind::Audio);
    let t_video = track_id(&from_tutor, "tutor", MediaKind::Video);
    // The tutor learns the pupil's tracks from track_published events.
    let from_pupil = tutor.published_tracks("the pupil's tracks", 2).await;
    let p_audio = track_id(&from_pupil, "pupil", MediaKind::Audio);
    let p_video = track_id(&from_pupil, "pupil", MediaKind::Video);

    warm_up(&tutor, &[&pupil], &t_audio, &t_video).await;
    warm_up(&pupil, &[&tutor], &p_audio, &p_video).await;
    tokio::join!(send_numbered(&tutor, 60), send_numbered(&pupil, 60));
    assert_numbered(&pupil, &t_audio, AUDIO_TAG, AUDIO_LEN, 60).await;
    assert_numbered(&pupil, &t_video, VIDEO_TAG, VIDEO_LEN, 60).await;
    assert_numbered(&tutor, &p_audio, AUDIO_TAG, AUDIO_LEN, 60).await;
    assert_numbered(&tutor, &p_video, VIDEO_TAG, VIDEO_LEN, 60).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lecture_student_cannot_publish_and_nothing_of_it_is_forwarded() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let _teacher = server
        .connect(&lesson, "teacher", "teacher", Publish::AudioVideo)
        .await;

    let s = server.token(&lesson, "bold", "student").await;
    let mut bold = TestClient::join_signaling(&server, &s, "bold", Publish::AudioVideo).await;
    assert!(
        matches!(
            bold.joined,
            ServerMessage::Joined {
                may_publish: false,
                ..
            }
        ),
        "a lecture student is told it may not publish"
    );
    match bold.offer().await {
        Err(ServerMessage::Error {
            code: ErrorCode::PublishNotAllowed,
            fatal: false,
            ..
        }) => {}
        other => panic!("publishing offer was not refused: {other:?}"),
    }
    assert_eq!(server.stats().await.peers, 1, "no peer for a refused offer");

    // Another student joins and receives exactly the teacher's two tracks.
    let mut other = server
        .connect(&lesson, "other", "student", Publish::Nothing)
        .await;
    let offer = other
        .expect_event("the teacher's tracks", |m| {
            matches!(m, ServerMessage::Offer { .. })
        })
        .await;
    let ServerMessage::Offer { added, .. } = offer else {
        unreachable!()
    };
    assert_eq!(added.len(), 2);
    assert!(added.iter().all(|m| m.track.identity == "teacher"));
    // The refused student may still watch, with a receive-only session.
    let mut watcher = TestClient::join(&server, &s, "bold", Publish::Nothing).await;
    watcher.wait_connected().await;
    server
        .wait_stats("two watchers of two tracks", |s| {
            s.routes == 2 && s.subscriptions == 4
        })
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_who_vanishes_is_cleaned_up_for_everyone() {
    let server = TestServer::start().await;
    let (mut teacher, leaver) = server
        .teacher_and_student("small_class", "teacher", "leaver")
        .await;

    leaver.vanish();
    teacher
        .expect_event(
            "the leaver's departure",
            |m| matches!(m, ServerMessage::ParticipantLeft { identity } if identity == "leaver"),
        )
        .await;
    server
        .wait_stats("only the teacher left", |s| {
            s.peers == 1 && s.routes == 2 && s.subscriptions == 0
        })
        .await;
    assert_eq!(server.server().state.rooms.session_count(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_media_connection_ends_the_session() {
    let server = TestServer::start().await;
    let (mut teacher, mut flaky) = server
        .teacher_and_student("small_class", "teacher", "flaky")
        .await;

    // Media dies while signaling stays up: the SFU notices and the session ends.
    flaky.close_media().await;
    flaky
        .expect_event("goodbye", |m| {
            matches!(
                m,
                ServerMessage::Bye {
                    reason: ByeReason::ConnectionLost
                }
            )
        })
        .await;
    teacher
        .expect_event(
            "flaky's departure",
            |m| matches!(m, ServerMessage::ParticipantLeft { identity } if identity == "flaky"),
        )
        .await;
    server
        .wait_stats("flaky's resources freed", |s| {
            s.peers == 1 && s.routes == 2 && s.subscriptions == 0
        })
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_connects_is_dropped() {
    let server = TestServer::start_with(fresh_dir(), |c| c.connect_timeout = 1).await;
    let lesson = server.create_lesson("small_class").await;
    let mut teacher = server
        .connect(&lesson, "teacher", "teacher", Publish::AudioVideo)
        .await;
    let s = server.token(&lesson, "ghost", "student").await;
    let mut ghost = TestClient::join_signaling(&server, &s, "ghost", Publish::Nothing).await;
    ghost.offer_and_never_connect().await;
    assert_eq!(server.stats().await.peers, 2);
    ghost
        .expect_event("goodbye", |m| {
            matches!(
                m,
                ServerMessage::Bye {
                    reason: ByeReason::ConnectionLost
                }
            )
        })
        .await;
    teacher
        .expect_event(
            "the ghost's departure",
            |m| matches!(m, ServerMessage::ParticipantLeft { identity } if identity == "ghost"),
        )
        .await;
    server
        .wait_stats("the ghost's peer freed", |s| s.peers == 1)
        .await;
    // The teacher, who did connect, stays.
    assert_eq!(server.server().state.rooms.session_count(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_student_waits_for_the_teacher_without_a_data_channel() {
    // A 1 s connect timeout: the student waits 2 s for the teacher and must not be dropped,
    // because the clock starts only with the server's first offer.
    let server = TestServer::start_with(fresh_dir(), |c| c.connect_timeout = 1).await;
    let lesson = server.create_lesson("lecture").await;
    let s = server.token(&lesson, "early", "student").await;
    let mut early = TestClient::join(&server, &s, "early", Publish::Nothing).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.stats().await.peers, 1, "the waiting student is kept");

    let teacher = server
        .connect(&lesson, "teacher", "teacher", Publish::AudioVideo)
        .await;
    // The teacher's two tracks come in one offer, or two when its shard announced them apart.
    let mut added = Vec::new();
    while added.len() < 2 {
        let offer = early
            .expect_event("the server's offers", |m| {
                matches!(m, ServerMessage::Offer { .. })
            })
            .await;
        let ServerMessage::Offer {
            sdp, added: more, ..
        } = offer
        else {
            unreachable!()
        };
        assert!(
            !sdp.contains("m=application"),
            "no data channel for a receiver"
        );
        added.extend(more);
    }
    assert_eq!(added.len(), 2);
    early.wait_connected().await;
    let audio = added
        .iter()
        .find(|m| m.track.kind == MediaKind::Audio)
        .unwrap()
        .track
        .track_id
        .clone();
    let video = added
        .iter()
        .find(|m| m.track.kind == MediaKind::Video)
        .unwrap()
        .track
        .track_id
        .clone();
    warm_up(&teacher, &[&early], &audio, &video).await;
    send_numbered(&teacher, 30).await;
    assert_numbered(&early, &video, VIDEO_TAG, VIDEO_LEN, 30).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_from_many_students_are_coalesced() {
    let server = TestServer::start().await;
    let lecture = Lecture::start(&server, 3).await;
    assert_keyframe_requests_coalesced(&server, &lecture.students).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_participants_audio_is_not_forwarded_until_unmuted() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("one_to_one").await;
    let mut tutor = server
        .connect(&lesson, "tutor", "teacher", Publish::AudioVideo)
        .await;
    let mut pupil = server
        .connect(&lesson, "pupil", "student", Publish::AudioVideo)
        .await;
    let from_pupil = tutor.published_tracks("the pupil's tracks", 2).await;
    let audio = track_id(&from_pupil, "pupil", MediaKind::Audio);
    let video = track_id(&from_pupil, "pupil", MediaKind::Video);
    warm_up(&pupil, &[&tutor], &audio, &video).await;

    let set_muted = |muted| jinke_signaling::ClientMessage::Mute {
        identity: "pupil".into(),
        muted,
    };
    tutor.send(set_muted(true));
    pupil
        .expect_event("being muted", |m| {
            matches!(m, ServerMessage::Muted { muted: true, .. })
        })
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await; // The SFU applies it after the room.
    send_numbered(&pupil, 30).await;
    assert_numbered(&tutor, &video, VIDEO_TAG, VIDEO_LEN, 30).await;
    let leaked = received_tagged(&tutor, &audio, AUDIO_TAG).len();
    assert_eq!(leaked, 0, "muted audio was forwarded");

    tutor.send(set_muted(false));
    pupil
        .expect_event("being unmuted", |m| {
            matches!(m, ServerMessage::Muted { muted: false, .. })
        })
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    const AFTER: u8 = 0xA7;
    for i in 0..30 {
        pupil
            .audio
            .as_ref()
            .unwrap()
            .send(payload(AFTER, i, AUDIO_LEN))
            .await;
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    assert_numbered(&tutor, &audio, AFTER, AUDIO_LEN, 30).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lecture_student_invited_on_stage_is_seen_and_heard_until_taken_off() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let teacher = server
        .connect(&lesson, "teacher", "teacher", Publish::AudioVideo)
        .await;
    let s = server.token(&lesson, "s1", "student").await;
    let mut s1 = TestClient::join(&server, &s, "s1", Publish::Nothing).await;
    let o = server.token(&lesson, "s2", "student").await;
    let mut s2 = TestClient::join(&server, &o, "s2", Publish::Nothing).await;
    server
        .wait_stats("the teacher's tracks to both students", |s| {
            s.subscriptions == 4
        })
        .await;

    // Not on stage: the publish connection is refused.
    assert_refused(s1.publish_on_stage().await.err(), ErrorCode::NotAllowed);

    teacher.send(jinke_signaling::ClientMessage::SetStage {
        identity: "s1".into(),
        on: true,
    });
    s1.expect_event("the invitation", |m| {
        matches!(m, ServerMessage::StageInvite { .. })
    })
    .await;
    s1.send(jinke_signaling::ClientMessage::StageReply { accept: true });
    s1.expect_event(
        "the stage",
        |m| matches!(m, ServerMessage::Stage { identities } if identities == &["s1".to_owned()]),
    )
    .await;
    let mut stage = s1
        .publish_on_stage()
        .await
        .expect("on stage, s1 may publish");
    stage.wait_connected("s1 on stage").await;

    // The teacher and the other student receive s1; s1 does not get its own tracks back.
    let tracks = s2.tracks_from("s1", 2).await;
    let audio = track_id(&tracks, "s1", MediaKind::Audio);
    let video = track_id(&tracks, "s1", MediaKind::Video);
    server
        .wait_stats("s1's tracks to the teacher and s2", |s| {
            s.routes == 4 && s.subscriptions == 8
        })
        .await;
    warm_up(&stage, &[&teacher, &s2], &audio, &video).await;
    send_tags(&stage, VIDEO_TAG, VIDEO_TAG, 40).await;
    assert_numbered(&s2, &video, VIDEO_TAG, VIDEO_LEN, 40).await;
    assert_numbered(&teacher, &audio, VIDEO_TAG, AUDIO_LEN, 40).await;
    assert!(s1.received(&audio).is_empty() && s1.received(&video).is_empty());

    // Taken off stage: its tracks end for everyone and its publish connection is closed.
    teacher.send(jinke_signaling::ClientMessage::SetStage {
        identity: "s1".into(),
        on: false,
    });
    s2.expect_event(
        "s1's tracks ending",
        |m| matches!(m, ServerMessage::TrackUnpublished { track_id } if *track_id == video),
    )
    .await;
    server
        .wait_stats("only the teacher's routes", |s| {
            s.peers == 3 && s.routes == 2 && s.subscriptions == 4
        })
        .await;
    assert!(
        s1.publish_on_stage().await.is_err(),
        "off stage, no publishing"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_shares_a_screen_that_everyone_receives_until_it_stops() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let mut teacher = server
        .connect(&lesson, "teacher", "teacher", Publish::AudioVideo)
        .await;
    let s = server.token(&lesson, "s1", "student").await;
    let mut student = TestClient::join(&server, &s, "s1", Publish::Nothing).await;
    server
        .wait_stats("the teacher's tracks to the student", |s| {
            s.subscriptions == 2
        })
        .await;

    // Students do not share screens.
    assert_refused(student.share_screen().await.err(), ErrorCode::NotAllowed);

    // The camera's tracks, whether listed on joining or announced after: what is announced next
    // is the screen's.
    student.tracks_from("teacher", 2).await;
    let mut screen = teacher.share_screen().await.expect("a teacher shares");
    screen.wait_connected("the teacher's screen").await;
    let shared = student.published_tracks("the screen's tracks", 2).await;
    assert!(
        shared.iter().all(|t| t.screen && t.identity == "teacher"),
        "{shared:?}"
    );
    let audio = track_id(&shared, "teacher", MediaKind::Audio);
    let video = track_id(&shared, "teacher", MediaKind::Video);
    warm_up(&screen, &[&student], &audio, &video).await;
    send_tags(&screen, VIDEO_TAG, VIDEO_TAG, 30).await;
    assert_numbered(&student, &video, VIDEO_TAG, VIDEO_LEN, 30).await;
    assert!(
        teacher.received(&video).is_empty(),
        "not sent back to the teacher"
    );

    teacher.send(jinke_signaling::ClientMessage::StopScreen);
    student
        .expect_event(
            "the screen ending",
            |m| matches!(m, ServerMessage::TrackUnpublished { track_id } if *track_id == video),
        )
        .await;
    server
        .wait_stats("only the camera and microphone again", |s| {
            s.peers == 2 && s.routes == 2 && s.subscriptions == 2
        })
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_lessons_lobby_receives_nothing_until_the_teacher_starts() {
    let server = TestServer::start().await;
    let starts = jinke::schedule::rfc3339_seconds(jinke::unix_now() + 600);
    let (status, lesson) = server
        .post(
            "/api/v1/lessons",
            serde_json::json!({"title": "讲座", "mode": "lecture", "starts_at": starts}),
        )
        .await;
    assert_eq!(status, 201, "{lesson}");
    let lesson = lesson["id"].as_str().unwrap().to_owned();
    let s = server.token(&lesson, "s1", "student").await;
    let mut student = TestClient::join(&server, &s, "s1", Publish::Nothing).await;
    assert!(
        matches!(&student.joined, ServerMessage::Joined { lesson, .. } if !lesson.live),
        "{:?}",
        student.joined
    );
    let teacher = server
        .connect(&lesson, "teacher", "teacher", Publish::AudioVideo)
        .await;
    let tracks = tracks_of(&teacher.joined);
    assert!(tracks.is_empty());
    server
        .wait_stats("the teacher's two routes", |s| s.routes == 2)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.stats().await.subscriptions,
        0,
        "the lobby receives nothing"
    );

    teacher.send(jinke_signaling::ClientMessage::StartLesson);
    // The lobby hears of the tracks (they are announced) but gets their media only now.
    let mut published = Vec::new();
    while let ServerMessage::TrackPublished(t) = student
        .expect_event("the start", |m| {
            matches!(
                m,
                ServerMessage::LessonStarted | ServerMessage::TrackPublished(_)
            )
        })
        .await
    {
        published.push(t);
    }
    server
        .wait_stats("the teacher's tracks to the student", |s| {
            s.subscriptions == 2
        })
        .await;
    let audio = track_id(&published, "teacher", MediaKind::Audio);
    let video = track_id(&published, "teacher", MediaKind::Video);
    warm_up(&teacher, &[&student], &audio, &video).await;
    send_numbered(&teacher, 20).await;
    assert_numbered(&student, &video, VIDEO_TAG, VIDEO_LEN, 20).await;
    let (_, l) = server
        .post(
            &format!("/api/v1/lessons/{lesson}/start"),
            serde_json::json!(null),
        )
        .await;
    assert!(
        l["started_at"].as_i64().is_some(),
        "starting again is harmless: {l}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_on_a_weak_link_turns_camera_video_off_and_back_on() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let teacher = server
        .connect(&lesson, "teacher", "teacher", Publish::AudioVideo)
        .await;
    let s = server.token(&lesson, "s1", "student").await;
    let mut student = TestClient::join(&server, &s, "s1", Publish::Nothing).await;
    server
        .wait_stats("the teacher's tracks to the student", |s| {
            s.subscriptions == 2
        })
        .await;
    let tracks = student.tracks_from("teacher", 2).await;
    let audio = track_id(&tracks, "teacher", MediaKind::Audio);
    let video = track_id(&tracks, "teacher", MediaKind::Video);
    warm_up(&teacher, &[&student], &audio, &video).await;
    let requests = server.stats().await.keyframe_requests;

    student.send(jinke_signaling::ClientMessage::ReceiveVideo { enabled: false });
    tokio::time::sleep(Duration::from_millis(100)).await;
    send_numbered(&teacher, 30).await;
    assert_numbered(&student, &audio, AUDIO_TAG, AUDIO_LEN, 30).await;
    let leaked = received_tagged(&student, &video, VIDEO_TAG).len();
    assert_eq!(leaked, 0, "no camera video while it is off");

    student.send(jinke_signaling::ClientMessage::ReceiveVideo { enabled: true });
    tokio::time::sleep(Duration::from_millis(100)).await;
    const AGAIN: u8 = 0xB7;
    for i in 0..30 {
        let video_track = teacher.video.as_ref().unwrap();
        video_track.send(payload(AGAIN, i, VIDEO_LEN)).await;
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    // Back on: consecutive with what came before the pause (no gap to NACK), with a keyframe
    // asked for.
    assert_numbered(&student, &video, AGAIN, VIDEO_LEN, 30).await;
    let got = student.received(&video);
    let before = got
        .iter()
        .rev()
        .find(|r| r.payload.get(1) == Some(&WARMUP_TAG))
        .expect("video before the pause");
    let after = got
        .iter()
        .find(|r| r.payload.get(1) == Some(&AGAIN))
        .unwrap();
    assert_eq!(
        after.seq,
        before.seq.wrapping_add(1),
        "the pause is not a gap"
    );
    server
        .wait_stats("a keyframe asked for the resumed video", |s| {
            s.keyframe_requests > requests
        })
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_whose_frame_end_never_comes_is_still_forwarded() {
    let server = TestServer::start().await;
    let lecture = Lecture::start(&server, 1).await;

    // The SFU holds a frame's packets until its last one (marker bit) arrives; here it never
    // does (lost on the teacher's uplink, say): the packets must go out anyway.
    let (_, v) = lecture.teacher.tracks();
    for i in 0..20 {
        v.send_marked(payload(VIDEO_TAG, i, VIDEO_LEN), false).await;
    }
    let before = server.stats().await.incomplete_frames;
    let student = &lecture.students[0];
    assert_numbered(student, &lecture.video, VIDEO_TAG, VIDEO_LEN, 20).await;
    assert!(
        server.stats().await.incomplete_frames > before,
        "sent when the wait for the frame's end ran out"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_publishers_negotiate_transport_wide_sequence_numbers() {
    const TWCC: &str = "transport-wide-cc-extensions";
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let t = server.token(&lesson, "teacher", "teacher").await;
    let teacher = TestClient::join(&server, &t, "teacher", Publish::AudioVideo).await;
    let answer = teacher.pc.remote_description().await.expect("answer");
    assert!(
        answer.sdp.contains(TWCC),
        "a publisher's browser estimates its uplink from our feedback"
    );
    let s = server.token(&lesson, "student", "student").await;
    let mut student = TestClient::join(&server, &s, "student", Publish::Nothing).await;
    let offer = student
        .expect_event("the server's offer", |m| {
            matches!(m, ServerMessage::Offer { .. })
        })
        .await;
    let ServerMessage::Offer { sdp, .. } = offer else {
        unreachable!()
    };
    assert!(sdp.contains("a=extmap:"), "other extensions stay: {sdp}");
    assert!(
        !sdp.contains(TWCC),
        "a student who only receives needs none: {sdp}"
    );
    server.stop().await;
}

/// Opus in-band FEC and DTX: publishers are asked for both (a browser's encoder uses them only
/// when the other side's SDP asks), and a DTX stream (a packet per 400 ms of silence, its
/// timestamp jumping over the silence) reaches students untouched: the same payloads in the
/// same order, the same timestamp gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_fec_and_dtx_are_asked_for_and_pass_through_untouched() {
    let server = TestServer::start().await;
    let lecture = Lecture::start(&server, 1).await;
    let answer = lecture
        .teacher
        .pc
        .remote_description()
        .await
        .expect("answer");
    let opus = answer
        .sdp
        .lines()
        .find(|l| l.starts_with("a=fmtp:111 "))
        .expect("Opus parameters in the answer");
    assert!(
        opus.contains("useinbandfec=1") && opus.contains("usedtx=1"),
        "{opus}"
    );

    let (audio, _) = lecture.teacher.tracks();
    // Speech (a packet per 20 ms), silence (DTX), speech again (its first packet marked).
    const PACKETS: u32 = 30;
    let silent = 10..20;
    let mut timestamp = 1_000_000u32;
    let mut sent = Vec::new();
    for i in 0..PACKETS {
        let (step, pause) = if silent.contains(&i) {
            (19_200, 400)
        } else {
            (960, 20)
        };
        timestamp = timestamp.wrapping_add(step);
        let payload = payload(AUDIO_TAG, i, AUDIO_LEN);
        audio
            .send_rtp(payload, i == silent.end, Some(timestamp))
            .await;
        sent.push(timestamp);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let student = &lecture.students[0];
    assert_numbered(student, &lecture.audio, AUDIO_TAG, AUDIO_LEN, PACKETS).await;
    let got: Vec<u32> = received_tagged(student, &lecture.audio, AUDIO_TAG)
        .iter()
        .map(|r| r.timestamp)
        .collect();
    let gaps =
        |ts: &[u32]| -> Vec<u32> { ts.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect() };
    assert_eq!(gaps(&got), gaps(&sent), "timestamp gaps as sent");
    server.stop().await;
}

/// Sends the teacher's audio (every 20 ms) and video (every 40 ms) live for `ticks` × 20 ms,
/// video payloads tagged `video_tag`. Every `lost_every`-th packet of each is lost before the
/// server: its sequence number is skipped, never sent (so no NACK can bring it back).
async fn send_live(lecture: &Lecture, video_tag: u8, ticks: u32, lost_every: Option<u32>) {
    let (audio, video) = lecture.teacher.tracks();
    let lost = |n: u32| lost_every.is_some_and(|every| n % every == every - 1);
    for i in 0..ticks {
        if lost(i) {
            audio.skip(1);
        } else {
            audio.send(payload(AUDIO_TAG, i, AUDIO_LEN)).await;
        }
        if i % 2 == 0 {
            if lost(i / 2) {
                video.skip(1);
            } else {
                video.send(payload(video_tag, i / 2, VIDEO_LEN)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `WeakLink` notices a client was sent so far (`audio_only` of each).
fn weak_link_notices(client: &mut TestClient) -> Vec<bool> {
    let mut told = Vec::new();
    while let Ok(m) = client.events.try_recv() {
        if let ServerMessage::WeakLink { audio_only } = m {
            told.push(audio_only);
        }
    }
    told
}

/// The teacher's link dies for 4 s: the packets it sent meanwhile never reach the server, so
/// the students' streams go on after a gap of ~200 numbers, and their first receiver reports
/// after it say nearly everything was lost. That is the teacher's outage, not the students'
/// links: none may be sent to sound only for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teachers_outage_is_not_taken_for_the_students_weak_links() {
    let server = TestServer::start().await;
    let mut lecture = Lecture::start(&server, 1).await;
    // 5 s of media first: the student's receiver reports have found its link clean for long
    // enough that later loss counts as the link's.
    const BEFORE: u8 = 0xB1;
    const AFTER: u8 = 0xB2;
    send_live(&lecture, BEFORE, 250, None).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (audio, video) = lecture.teacher.tracks();
    audio.skip(200);
    video.skip(100);
    send_live(&lecture, AFTER, 200, None).await;
    let student = &mut lecture.students[0];
    let got = received_tagged(student, &lecture.video, AFTER).len();
    assert!(got >= 90, "video goes on after the outage: {got} of 100");
    let told = weak_link_notices(student);
    assert!(told.is_empty(), "weak_link notices: {told:?}");
    server.stop().await;
}

/// The teacher's uplink loses a fifth of its packets, and the server's NACKs get none of them
/// back. The students' streams keep the gaps (so that they could be NACKed), and their receiver
/// reports count a fifth lost; but their own links lost nothing, and none may be sent to sound
/// only for the teacher's loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teachers_lossy_uplink_is_not_taken_for_the_students_weak_links() {
    let server = TestServer::start().await;
    let mut lecture = Lecture::start(&server, 2).await;
    const LOSSY: u8 = 0xB3;
    // 8 s: reports come about every second; two lossy ones in a row would step a student down.
    send_live(&lecture, LOSSY, 400, Some(5)).await;
    for student in &mut lecture.students {
        let got = received_tagged(student, &lecture.video, LOSSY).len();
        assert!(got >= 150, "what the server got is forwarded: {got} of 160");
        let told = weak_link_notices(student);
        assert!(told.is_empty(), "weak_link notices: {told:?}");
    }
    server.stop().await;
}
