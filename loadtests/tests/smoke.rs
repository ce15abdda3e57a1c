//! A short run of every scenario against an in-process server, so the load generator cannot rot.
//! (The full benchmark is loadtests/bench.sh; this only checks that the tool works and that a
//! tiny load is delivered whole.)

use std::time::Duration;

use jinke::config::ServeConfig;
use jinke::server::Server;
use jinke_load::{LoadConfig, Scenario};

const KEY: &str = "load-smoke-key-0123456789";

/// Each run's data folder has its own number (tests run in parallel).
static NEXT_DIR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn smoke(
    scenario: Scenario,
    size: usize,
    simulcast: bool,
    threads: usize,
) -> jinke_load::Report {
    smoke_with(scenario, size, move |load| LoadConfig {
        simulcast,
        threads,
        ..load
    })
    .await
}

/// A run of `scenario` with the generator's configuration changed by `tune`.
async fn smoke_with(
    scenario: Scenario,
    size: usize,
    tune: impl FnOnce(LoadConfig) -> LoadConfig,
) -> jinke_load::Report {
    let dir = std::env::temp_dir().join(format!(
        "jinke-load-smoke-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = ServeConfig::loopback(dir.clone());
    config.api_key = Some(KEY.into());
    let server = Server::start(config).await.unwrap();
    let load = tune(LoadConfig {
        warmup: Duration::from_millis(500),
        server_pid: Some(std::process::id()),
        ..LoadConfig::local(
            format!("http://{}", server.http_addr()),
            KEY,
            scenario,
            size,
        )
    });
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

/// A lecture to five students delivered whole, at the clip's rate: ~30 fps video in ~2-3
/// packets per frame plus 50 audio packets per second, to each student.
async fn lecture_whole(threads: usize) {
    let r = smoke(Scenario::Lecture, 5, false, threads).await;
    assert_whole(&r, 5);
    assert!(
        r.packets_per_second > 5.0 * 100.0,
        "{}",
        r.packets_per_second
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lecture_smoke() {
    lecture_whole(1).await;
}

/// The clients dealt out to three threads, as the bench runs lectures bigger than one core of
/// clients can simulate: students on every thread get the teacher's media whole, checked against
/// what the teacher's thread sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lecture_on_three_client_threads_smoke() {
    lecture_whole(3).await;
}

/// One join at a time on three threads: the teacher joins first and gives its slot back once
/// its connection is up (it never receives media, which is when a student gives its slot back),
/// and the class fills at once, not after the join timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lecture_joined_one_at_a_time_on_three_threads_fills_at_once() {
    let join_timeout = Duration::from_secs(8);
    let r = smoke_with(Scenario::Lecture, 4, move |load| LoadConfig {
        threads: 3,
        join_concurrency: 1,
        join_timeout,
        ..load
    })
    .await;
    assert_whole(&r, 4);
    assert!(
        r.filling_s < join_timeout.as_secs_f64() / 2.0,
        "the class took {} s to fill: a join slot was held until the join timeout",
        r.filling_s
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
