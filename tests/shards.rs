//! A lecture spread over several media threads (shards): the teacher's packets are decrypted
//! once on its shard and fanned out by every shard to its own students; shards without
//! subscribers of a track never get its packets. Alone in its test binary,
//! so that the peers' ids (which place them) are handed out in turn to this test only.

mod common;

use common::numbered::*;
use common::*;

const SHARDS: usize = 3;
const STUDENTS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lecture_crosses_shards_byte_exact_with_keyframes_coalesced_and_cleaned_up() {
    let server = TestServer::start_with(fresh_dir(), |c| c.media_threads = SHARDS).await;
    assert_eq!(server.server().media_addrs().len(), SHARDS);
    let lecture = Lecture::start(&server, STUDENTS).await;
    assert_eq!(
        server.stats().await.shards_in_use,
        SHARDS,
        "peers are spread over every shard"
    );
    lecture.assert_delivery(100).await;

    // Students on every shard ask for keyframes for 1 s: the teacher gets one per 500 ms.
    assert_keyframe_requests_coalesced(&server, &lecture.students).await;

    // The teacher's tracks end on every shard.
    lecture.teacher.vanish();
    server
        .wait_stats("the teacher's tracks gone everywhere", |s| {
            s.peers == STUDENTS && s.routes == 0 && s.subscriptions == 0
        })
        .await;

    // A pair in another lesson: the tutor's and the pupil's ids follow each other, so they are
    // on two different shards, and the third holds only students of the ended lecture. The
    // tutor's packets are handed to the pupil's shard only, once each.
    let pair = Lecture::start(&server, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = server.stats().await.handoffs;
    pair.assert_delivery(100).await;
    assert_eq!(
        server.stats().await.handoffs - before,
        200,
        "each of the tutor's 200 packets goes to one other shard"
    );
    server.stop().await;
}
