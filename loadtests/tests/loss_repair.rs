//! Loss repair on a weak link: students behind a relay that drops 5% of datagrams each way and
//! adds 50 ms each way, the teacher on a clean link. The SFU answers the students' NACKs with RTX
//! from its packet cache; the video they end up with must be whole.

mod relay;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use jinke::config::ServeConfig;
use jinke::server::Server;
use jinke_load::{LoadConfig, Scenario};
use relay::{Impairment, Relay};

const KEY: &str = "loss-repair-key-0123456789";
/// The address the server announces, where the relay listens.
const RELAY_IP: &str = "127.0.0.9";
/// The students' media sockets bind here; the relay impairs their flows only.
const STUDENT_IP: &str = "127.0.0.5";
/// str0m's default payload types for VP8 and its RTX, as the SFU offers them to students.
const VP8_PT: u8 = 96;
const VP8_RTX_PT: u8 = 97;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_and_rtx_repair_a_lossy_delayed_student_link() {
    let dir = std::env::temp_dir().join(format!("jinke-loss-repair-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = ServeConfig::loopback(dir.clone());
    config.api_key = Some(KEY.into());
    config.announce_ip = Some(RELAY_IP.parse().unwrap());
    let server = Server::start(config).await.unwrap();
    // One relay in front of each media thread's socket.
    let mut relays = Vec::new();
    for (i, &media) in server.media_addrs().iter().enumerate() {
        let relay = Relay::start(
            SocketAddr::new(RELAY_IP.parse().unwrap(), media.port()),
            media,
            STUDENT_IP.parse().unwrap(),
            Impairment {
                loss_per_mille: 50,
                delay: Duration::from_millis(50),
            },
            0x5eed + i as u64,
        )
        .await;
        relays.push(relay);
    }
    let load = LoadConfig {
        duration: Duration::from_secs(8),
        receiver_bind_ip: Some(STUDENT_IP.parse::<IpAddr>().unwrap()),
        join_concurrency: 4,
        ..LoadConfig::local(
            format!("http://{}", server.http_addr()),
            KEY,
            Scenario::Lecture,
            3,
        )
    };
    let report = std::thread::spawn(move || jinke_load::run_blocking(load))
        .join()
        .unwrap()
        .unwrap();
    let total = |count: &dyn Fn(&Relay) -> u64| relays.iter().map(count).sum::<u64>();
    let (sent, dropped, rtx) = (
        total(&|r| r.counts().sent(VP8_PT)),
        total(&|r| r.counts().dropped(VP8_PT)),
        total(&|r| r.counts().sent(VP8_RTX_PT)),
    );
    drop(relays);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", report.table());
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
    // Only packets lost in the last round trip before the run stopped may stay missing.
    assert!(
        report.video_lost * 20 <= dropped,
        "at least 95% of the lost video was repaired: {} of {dropped} still missing",
        report.video_lost
    );
}
