//! A short run of every scenario against an in-process server, so the load generator cannot rot.
//! (The full benchmark is loadtests/bench.sh; this only checks that the tool works and that a
//! tiny load is delivered whole.)

use std::time::Duration;

use jinke::config::ServeConfig;
use jinke::server::Server;
use jinke_load::{LoadConfig, Scenario};

const KEY: &str = "load-smoke-key-0123456789";

async fn smoke(
    scenario: Scenario,
    size: usize,
    simulcast: bool,
    threads: usize,
) -> jinke_load::Report {
    let dir = std::env::temp_dir().join(format!(
        "jinke-load-smoke-{}-{scenario:?}-{simulcast}-{threads}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = ServeConfig::loopback(dir.clone());
    config.api_key = Some(KEY.into());
    let server = Server::start(config).await.unwrap();
    let load = LoadConfig {
        warmup: Duration::from_millis(500),
        server_pid: Some(std::process::id()),
        simulcast,
        threads,
        ..LoadConfig::local(
            format!("http://{}", server.http_addr()),
            KEY,
            scenario,
            size,
        )
    };
    // The generator runs on its own thread, as it would in its own process.
    let report = std::thread::spawn(move || jinke_load::run_blocking(load))
        .join()
        .unwrap()
        .unwrap();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", report.table());
    report
}

fn assert_whole(r: &jinke_load::Report, receivers: usize) {
    assert_eq!(r.failed, 0, "{:?}", r.first_error);
    assert_eq!(r.joined, receivers);
    assert_eq!(r.corrupt, 0, "every payload is one that was sent");
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.lost, 0, "a tiny load on loopback loses nothing");
    assert!(r.packets_in_window > 0);
    assert!(r.latency_ms.p50.is_some());
    let server = r.server.as_ref().expect("cpu measured");
    assert!(server.cpu_percent > 0.0 && server.rss_mib > 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lecture_smoke() {
    let r = smoke(Scenario::Lecture, 5, false, 1).await;
    assert_whole(&r, 5);
    // ~30 fps video in ~2-3 packets per frame plus 50 audio packets per second, to 5 students.
    assert!(
        r.packets_per_second > 5.0 * 100.0,
        "{}",
        r.packets_per_second
    );
}

/// The clients dealt out to three threads, as the bench runs lectures bigger than one core of
/// clients can simulate: students on every thread get the teacher's media whole, checked against
/// what the teacher's thread sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lecture_on_three_client_threads_smoke() {
    let r = smoke(Scenario::Lecture, 5, false, 3).await;
    assert_whole(&r, 5);
    assert!(
        r.packets_per_second > 5.0 * 100.0,
        "{}",
        r.packets_per_second
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_class_smoke() {
    let r = smoke(Scenario::SmallClass, 3, false, 1).await;
    assert_whole(&r, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutoring_smoke() {
    let r = smoke(Scenario::Tutoring, 2, false, 1).await;
    assert_whole(&r, 4);
}

/// The teacher's camera in three simulcast layers with browser-like VP8 PictureIDs: students
/// climb the layers as their links prove clean, and get each packet with its descriptor
/// renumbered for them and the rest as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_lecture_smoke() {
    let r = smoke(Scenario::Lecture, 3, true, 1).await;
    assert_whole(&r, 3);
    assert!(
        r.packets_per_second > 3.0 * 100.0,
        "{}",
        r.packets_per_second
    );
}
