//! A student whose link dies without a word (a phone that loses its signal: no DTLS close, its
//! signaling still up): nothing comes from it any more, so only the server's own timers can
//! notice. Its ICE times out, the grace for coming back passes, and the server tells it the
//! connection was lost and lets its session go, while the lesson goes on.

mod relay;

use std::time::Duration;

use jinke_load::LoadConfig;
use relay::{Impairment, RelayedServer, VP8_PT};

/// The student's media socket binds here; the relay cuts its link only.
const STUDENT_IP: &str = "127.0.0.8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_whose_link_dies_silently_is_told_the_connection_was_lost() {
    let relayed = RelayedServer::start(
        "silent-link",
        STUDENT_IP.parse().unwrap(),
        Impairment::default(),
    )
    .await;
    // ICE gives up after ~21.5 s without a check from the student (str0m's STUN timing), then
    // the server waits 5 s for it to come back.
    let load = LoadConfig {
        duration: Duration::from_secs(34),
        ..relayed.lecture(1)
    };
    let run = RelayedServer::run(load);
    let video = || relayed.total(|c| c.sent(VP8_PT));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while video() < 100 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        video() >= 100,
        "the student got the lesson before its link died"
    );
    for r in &relayed.relays {
        r.set_cut(true);
    }
    let report = RelayedServer::finished(run).await;
    relayed.stop().await;
    assert_eq!(report.joined, 1);
    assert_eq!(report.failed, 1, "the student's session ended");
    let error = report.first_error.unwrap_or_default();
    assert!(
        error.contains("ConnectionLost"),
        "the server said why: {error}"
    );
}
