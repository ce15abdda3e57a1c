//! A lecture spread over several media threads (shards): the teacher's packets are decrypted
//! once on its shard and fanned out by every shard to its own students. Alone in its test binary,
//! so that the peers' ids (which place them) are handed out in turn to this test only.

mod common;

use std::time::Duration;

use common::numbered::*;
use common::*;
use jinke_signaling::MediaKind;

const SHARDS: usize = 3;
const STUDENTS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lecture_crosses_shards_byte_exact_with_keyframes_coalesced_and_cleaned_up() {
    let server = TestServer::start_with(fresh_dir(), |c| c.media_threads = SHARDS).await;
    assert_eq!(server.server().media_addrs().len(), SHARDS);
    let lesson = server.create_lesson("lecture").await;
    let t = server.token(&lesson, "teacher", "teacher").await;
    let mut teacher = TestClient::join(&server, &t, "teacher", Publish::AudioVideo).await;
    teacher.wait_connected().await;
    server
        .wait_stats("the teacher's two tracks", |s| s.routes == 2)
        .await;
    let mut students = Vec::new();
    for i in 0..STUDENTS {
        let id = format!("student-{i}");
        let token = server.token(&lesson, &id, "student").await;
        let mut s = TestClient::join(&server, &token, &id, Publish::Nothing).await;
        s.wait_connected().await;
        students.push(s);
    }
    server
        .wait_stats("every student on both tracks", |s| {
            s.subscriptions == 2 * STUDENTS
        })
        .await;
    assert_eq!(
        server.stats().await.shards_in_use,
        SHARDS,
        "peers are spread over every shard"
    );

    let tracks = tracks_of(&students[0].joined);
    let audio = track_id(&tracks, "teacher", MediaKind::Audio);
    let video = track_id(&tracks, "teacher", MediaKind::Video);
    let receivers: Vec<&TestClient> = students.iter().collect();
    warm_up(&teacher, &receivers, &audio, &video).await;
    send_numbered(&teacher, 100).await;
    for s in &students {
        assert_numbered(s, &audio, AUDIO_TAG, AUDIO_LEN, 100).await;
        assert_numbered(s, &video, VIDEO_TAG, VIDEO_LEN, 100).await;
    }

    // Students on every shard ask for keyframes for 1 s: the teacher gets one per 500 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = server.stats().await.keyframe_requests;
    ask_for_keyframes(&students, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let sent = server.stats().await.keyframe_requests - before;
    assert!(
        (1..=4).contains(&sent),
        "{sent} keyframe requests reached the teacher"
    );

    // The teacher's tracks end on every shard.
    teacher.vanish();
    server
        .wait_stats("the teacher's tracks gone everywhere", |s| {
            s.peers == STUDENTS && s.routes == 0 && s.subscriptions == 0
        })
        .await;
    server.stop().await;
}
