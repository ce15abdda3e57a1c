//! Loss repair on a weak link: students behind a relay that drops 5% of datagrams each way and
//! adds 50 ms each way, the teacher on a clean link. The SFU answers the students' NACKs with RTX
//! from its packet cache; the video they end up with must be whole.

mod relay;

use std::time::Duration;

use jinke_load::LoadConfig;
use relay::{Impairment, RelayedServer, VP8_PT};

/// The students' media sockets bind here; the relay impairs their flows only.
const STUDENT_IP: &str = "127.0.0.5";
/// str0m's default payload type for VP8's RTX, as the SFU offers it to students.
const VP8_RTX_PT: u8 = 97;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_and_rtx_repair_a_lossy_delayed_student_link() {
    let relayed = RelayedServer::start(
        "loss-repair",
        STUDENT_IP.parse().unwrap(),
        Impairment {
            loss_per_mille: 50,
            delay: Duration::from_millis(50),
            ..Impairment::default()
        },
    )
    .await;
    let load = LoadConfig {
        duration: Duration::from_secs(8),
        join_concurrency: 4,
        ..relayed.lecture(3)
    };
    let report = RelayedServer::finished(RelayedServer::run(load)).await;
    let (sent, dropped, rtx) = (
        relayed.total(|c| c.sent(VP8_PT)),
        relayed.total(|c| c.dropped(VP8_PT)),
        relayed.total(|c| c.sent(VP8_RTX_PT)),
    );
    relayed.stop().await;
    println!(
        "video towards the students: {sent} delivered, {dropped} dropped by the link, \
         {rtx} retransmissions delivered; {} still missing at the students ({} of {} repaired)",
        report.video_lost,
        dropped.saturating_sub(report.video_lost),
        dropped,
    );
    assert_eq!(report.failed, 0, "{:?}", report.first_error);
    assert_eq!(report.joined, 3);
    assert_eq!(report.corrupt, 0, "every payload is one that was sent");
    assert!(sent > 1000, "the students got video through the relay");
    assert!(dropped >= 30, "the link lost video: {dropped}");
    assert!(rtx >= dropped / 2, "lost packets were retransmitted: {rtx}");
    // Packets lost in the last round trips are repaired while the run settles (publishers
    // quiet, students listening); what may stay missing is a packet whose every NACK or
    // retransmission the link lost.
    assert!(
        report.video_lost * 100 <= dropped,
        "at least 99% of the lost video was repaired: {} of {dropped} still missing",
        report.video_lost
    );
}
