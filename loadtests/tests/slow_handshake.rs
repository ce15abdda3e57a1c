//! Students whose DTLS handshake is held up for seconds after their signaling is through (as a
//! lost handshake flight holds it up until its retransmission). The server has their
//! subscriptions from the moment it accepted their answers, but nothing can reach them before
//! their session is up: what they get must start there, fresh and without holes, not with
//! what piled up in their sessions while they were connecting.

mod relay;

use std::time::Duration;

use jinke_load::LoadConfig;
use relay::{Impairment, RelayedServer};

/// The students' media sockets bind here; the relay holds up their handshakes only.
const STUDENT_IP: &str = "127.0.0.7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_whose_handshake_was_slow_gets_media_from_then_on_without_holes() {
    let relayed = RelayedServer::start(
        "slow-handshake",
        STUDENT_IP.parse().unwrap(),
        Impairment {
            hold_dtls: Duration::from_millis(2500),
            ..Impairment::default()
        },
    )
    .await;
    let load = LoadConfig {
        duration: Duration::from_secs(3),
        ..relayed.lecture(2)
    };
    let report = RelayedServer::finished(RelayedServer::run(load)).await;
    relayed.stop().await;
    assert_eq!(report.failed, 0, "{:?}", report.first_error);
    assert_eq!(report.joined, 2);
    let joined_after = report.join_ms.p50.unwrap_or(0.0);
    assert!(
        joined_after >= 2000.0,
        "the handshakes were held up: joined after {joined_after} ms"
    );
    assert!(
        report.packets_in_window > 300,
        "the students got the lesson"
    );
    assert_eq!(
        report.lost, 0,
        "no holes: nothing was sent to the students before they could take it"
    );
}
