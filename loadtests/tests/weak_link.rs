//! A student on a link far too thin for the teacher's video: a relay caps what reaches it at
//! 200 kbps (with a 100 ms queue, as a bottleneck router does). The server sees the loss in the
//! student's receiver reports, holds camera video back and says so (`weak_link`), keeps the
//! audio going, and gives the video back (saying so) once the link is clean again.

mod relay;

use std::time::Duration;

use jinke_load::LoadConfig;
use relay::{Impairment, RelayedServer, VP8_PT};

/// The student's media socket binds here; the relay caps its flows only.
const STUDENT_IP: &str = "127.0.0.6";
/// The lesson's video is ~570 kbps and its audio ~32 kbps.
const CAP_BPS: u64 = 200_000;
/// The link gets its bandwidth back once no video has come towards the student for this long
/// (the server held it back).
const QUIET: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_student_drops_to_audio_and_gets_video_back_when_the_link_recovers() {
    let relayed = RelayedServer::start(
        "weak-link",
        STUDENT_IP.parse().unwrap(),
        Impairment {
            loss_per_mille: 0,
            delay: Duration::from_millis(20),
            ..Impairment::default()
        },
    )
    .await;
    for r in &relayed.relays {
        r.set_rate(Some(CAP_BPS));
    }
    let load = LoadConfig {
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(22),
        ..relayed.lecture(1)
    };
    let run = RelayedServer::run(load);
    // Lift the cap once the server stopped sending video: from then on the link is clean, and
    // the server must notice and give the video back.
    let video = || relayed.total(|c| c.sent(VP8_PT) + c.dropped(VP8_PT));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (mut last, mut since) = (0, tokio::time::Instant::now());
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = video();
        if now != last {
            (last, since) = (now, tokio::time::Instant::now());
        } else if last > 0 && since.elapsed() >= QUIET {
            break;
        }
    }
    for r in &relayed.relays {
        r.set_rate(None);
    }
    let report = RelayedServer::finished(run).await;
    relayed.stop().await;
    println!(
        "told audio only: {}, told video back: {}; video packets while audio only: {}, \
         after video came back: {}",
        report.told_audio_only,
        report.told_video_back,
        report.video_while_audio_only,
        report.video_since_restored
    );
    assert_eq!(report.failed, 0, "{:?}", report.first_error);
    assert_eq!(report.joined, 1);
    assert_eq!(report.corrupt, 0);
    assert_eq!(
        report.told_audio_only, 1,
        "the student was told: audio only"
    );
    assert_eq!(report.told_video_back, 1, "and then: video again");
    assert!(
        report.video_while_audio_only <= 40,
        "no video while audio only, beyond what was on the way: {}",
        report.video_while_audio_only
    );
    let audio = report.received - report.video_received;
    assert!(
        audio >= 600,
        "the audio went on throughout: {audio} packets"
    );
    assert!(
        report.video_since_restored >= 200,
        "video flows again: {} packets",
        report.video_since_restored
    );
}
