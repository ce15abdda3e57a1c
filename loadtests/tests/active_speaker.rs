//! Active speaker from audio levels: the load generator's teacher sends Opus with the RFC 6464
//! level of each frame (a synthesized voice: 2.2 s phrases, 0.8 s pauses), as a browser does. An
//! observer in the lesson must be told when the teacher starts and stops speaking.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use jinke::config::ServeConfig;
use jinke::server::Server;
use jinke_load::{LoadConfig, Scenario};
use jinke_signaling::{ClientMessage, PROTOCOL_VERSION, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "active-speaker-key-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_teachers_speech_and_pauses_are_announced() {
    let dir = std::env::temp_dir().join(format!("jinke-speaker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = ServeConfig::loopback(dir.clone());
    config.api_key = Some(KEY.into());
    let server = Server::start(config).await.unwrap();
    let base = format!("http://{}", server.http_addr());
    let load = LoadConfig {
        duration: Duration::from_secs(6),
        join_concurrency: 2,
        ..LoadConfig::local(base.clone(), KEY, Scenario::Lecture, 1)
    };
    let generator = std::thread::spawn(move || jinke_load::run_blocking(load));

    // Join the generator's lesson as an observer (unseen, receives every room event).
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let lesson = loop {
        let list: serde_json::Value = http
            .get(format!("{base}/api/v1/lessons"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(id) = list["lessons"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "the generator made no lesson");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Make room for the observer (the generator sized the lesson for its own clients).
    let resized = http
        .patch(format!("{base}/api/v1/lessons/{lesson}"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"capacity": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(resized.status(), 200);
    let token: serde_json::Value = http
        .post(format!("{base}/api/v1/lessons/{lesson}/tokens"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"identity": "inspector", "name": "督导", "role": "observer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!(
        "{}/ws?token={}",
        base.replacen("http", "ws", 1),
        token["token"].as_str().unwrap()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let join = ClientMessage::Join {
        protocol: PROTOCOL_VERSION,
    };
    ws.send(Message::Text(join.to_json().into())).await.unwrap();

    let mut changes = Vec::new();
    let mut active = None;
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until && changes.len() < 4 {
        let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(500), ws.next()).await
        else {
            continue;
        };
        match ServerMessage::from_json(&t).unwrap() {
            ServerMessage::Speaking { identity, speaking } => {
                changes.push((identity, speaking, Instant::now()));
            }
            ServerMessage::ActiveSpeaker { identity } => active = Some(identity),
            _ => {}
        }
    }
    let report = generator.join().unwrap().unwrap();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(report.failed, 0, "{:?}", report.first_error);
    println!(
        "speaking changes: {:?}",
        changes.iter().map(|(i, s, _)| (i, s)).collect::<Vec<_>>()
    );
    assert!(changes.len() >= 3, "speech and pauses seen: {changes:?}");
    assert!(changes.iter().all(|(who, _, _)| who == "teacher"));
    // It alternates: on, off, on, ...
    assert!(changes.windows(2).all(|w| w[0].1 != w[1].1), "{changes:?}");
    // A phrase lasts ~2.2 s: a "speaking" spell is about that long, not a flicker.
    let spell = changes
        .windows(2)
        .find(|w| w[0].1 && !w[1].1)
        .map(|w| w[1].2 - w[0].2)
        .expect("a whole spell of speech");
    assert!(
        spell > Duration::from_millis(1500) && spell < Duration::from_millis(3200),
        "spell of {spell:?}"
    );
    assert_eq!(active.as_deref(), Some("teacher"));
}
