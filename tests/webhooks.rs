//! Webhooks to a school's receiver: signed, retried with backoff, and kept in the database outbox
//! across a `kill -9` of the server.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::ws::*;
use common::*;
use jinke_signaling::ClientMessage;

const SECRET: &str = "whsec-test-0123456789";

/// A school's webhook endpoint: records what arrives and fails the first `fail_first` requests.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(addr: &str, fail_first: usize) -> Receiver {
        let got: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Default::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let record = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let record = record.clone();
                let seen = seen.clone();
                async move {
                    if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let sig = headers
                        .get("jinke-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    assert_eq!(verify(&sig, &body), Ok(()), "bad signature on {body}");
                    let json = serde_json::from_str(&body).expect("JSON body");
                    record.lock().unwrap().push((sig, json));
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, got, task }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Event types received so far, in arrival order (duplicates by id removed). Retried events
    /// arrive later than the ones after them: delivery is at least once, not in order.
    fn types(&self) -> Vec<String> {
        let mut ids = Vec::new();
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| {
                let id = e["id"].as_str().unwrap().to_owned();
                let new = !ids.contains(&id);
                ids.push(id);
                new
            })
            .map(|(_, e)| e["type"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn wait_for(&self, what: &str, n: usize) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let events: Vec<serde_json::Value> = self
                .got
                .lock()
                .unwrap()
                .iter()
                .map(|(_, e)| e.clone())
                .collect();
            if events.len() >= n {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited for {what}: got {:?}",
                self.types()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Checks `t=<t>,v1=<hex>` against HMAC-SHA256(SECRET, "<t>.<body>") computed here. (The
/// server's signing code is checked against a Python-computed vector in its unit tests.)
fn verify(header: &str, body: &str) -> Result<(), String> {
    let (t, v1) = header
        .split_once(",v1=")
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v)))
        .ok_or_else(|| format!("malformed header {header:?}"))?;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    let expected = aws_lc_rs::hmac::sign(&key, format!("{t}.{body}").as_bytes());
    let expected: String = expected
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if expected == v1 {
        Ok(())
    } else {
        Err("signature mismatch".into())
    }
}

#[tokio::test]
async fn lesson_events_arrive_signed_and_failures_are_retried() {
    let receiver = Receiver::start("127.0.0.1:0", 2).await;
    let url = receiver.url();
    let server = TestServer::start_with(fresh_dir(), |c| {
        c.webhook_url = Some(url);
        c.webhook_secret = Some(SECRET.into());
    })
    .await;
    let lesson = server.create_lesson("lecture").await;
    let (mut teacher, _) = join(&server, &lesson, "t", "teacher").await;
    let (mut student, _) = join(&server, &lesson, "s1", "student").await;
    send(&mut student, ClientMessage::RaiseHand.to_json()).await;
    send(
        &mut teacher,
        ClientMessage::SetStage {
            identity: "s1".into(),
            on: true,
        }
        .to_json(),
    )
    .await;
    until(&mut student, "the invitation", |m| {
        matches!(m, jinke_signaling::ServerMessage::StageInvite { .. })
    })
    .await;
    send(
        &mut student,
        ClientMessage::StageReply { accept: true }.to_json(),
    )
    .await;
    until(&mut teacher, "the stage", |m| {
        matches!(m, jinke_signaling::ServerMessage::Stage { .. })
    })
    .await;
    send(&mut teacher, ClientMessage::EndLesson.to_json()).await;

    let events = receiver.wait_for("nine events", 9).await;
    let mut types = receiver.types();
    types.sort();
    let mut expected = vec![
        "lesson.opened",
        "participant.joined",
        "lesson.started",
        "participant.joined",
        "hand.raised",
        "stage.changed",
        "participant.left",
        "participant.left",
        "lesson.ended",
    ];
    expected.sort();
    assert_eq!(types, expected);
    assert_eq!(events.len(), 9, "each event delivered once here");
    let of = |kind: &str| {
        events
            .iter()
            .filter(|e| e["type"] == kind)
            .collect::<Vec<_>>()
    };
    let teacher_joined = of("participant.joined")
        .into_iter()
        .find(|e| e["data"]["identity"] == "t")
        .expect("the teacher's join");
    assert_eq!(teacher_joined["lesson"], lesson.as_str());
    assert_eq!(teacher_joined["data"]["role"], "teacher");
    assert!(teacher_joined["id"].as_str().unwrap().starts_with("evt_"));
    assert!(teacher_joined["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        of("stage.changed")[0]["data"]["identities"],
        serde_json::json!(["s1"])
    );
    assert_eq!(of("hand.raised")[0]["data"]["identity"], "s1");
    // The final attendance travels with the lesson's end.
    let attendance = &of("lesson.ended")[0]["data"]["attendance"];
    assert_eq!(attendance.as_array().map(Vec::len), Some(2), "{attendance}");
    assert_eq!(attendance[1]["identity"], "s1");
    assert_eq!(attendance[1]["hands_raised"], 1);
    assert!(!attendance[1]["intervals"][0]["left_at"].is_null());
    // The first two attempts were refused (503) and retried: the first two events came last.
    let arrival: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(arrival[7..].contains(&"lesson.opened"), "{arrival:?}");
    server.stop().await;
    receiver.task.abort();
}

/// A `jinke serve` child process, killed with SIGKILL when dropped (also when a test fails).
struct Serve(std::process::Child);

impl Serve {
    /// Runs `jinke serve` on fixed loopback ports.
    fn start(data_dir: &std::path::Path, http: &str, hook: &str) -> Serve {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_jinke"))
            .args([
                "serve",
                "--http",
                http,
                "--udp",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(["--api-key", API_KEY, "--webhook-url", hook])
            .args(["--webhook-secret", SECRET])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start jinke serve");
        Serve(child)
    }

    /// SIGKILL: no shutdown, no flushing.
    fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill_9();
    }
}

async fn wait_http(http: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(http).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn undelivered_webhooks_survive_kill_9_and_arrive_after_restart() {
    // The receiver is down at first: its port is reserved and closed.
    let hook_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let hook = format!("http://{hook_addr}/hook");
    let http = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let dir = fresh_dir();
    let mut child = Serve::start(&dir, &http, &hook);
    wait_http(&http).await;
    let api = reqwest::Client::new();
    let lesson: serde_json::Value = api
        .post(format!("http://{http}/api/v1/lessons"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"title": "断电也不丢", "mode": "lecture"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lesson = lesson["id"].as_str().unwrap().to_owned();
    let token: serde_json::Value = api
        .post(format!("http://{http}/api/v1/lessons/{lesson}/tokens"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"identity": "t", "name": "t", "role": "teacher"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap();
    let mut ws = open_ws(http.parse().unwrap(), &format!("token={token}"))
        .await
        .unwrap();
    send(
        &mut ws,
        ClientMessage::Join {
            protocol: jinke_signaling::PROTOCOL_VERSION,
        }
        .to_json(),
    )
    .await;
    next_message(&mut ws).await.expect("joined");
    // Let the events reach the outbox and fail their first attempt, then kill -9.
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill_9();
    drop(ws);

    let receiver = Receiver::start(&hook_addr.to_string(), 0).await;
    let restarted = std::time::Instant::now();
    let _restarted = Serve::start(&dir, &http, &hook);
    let events = receiver
        .wait_for("the events from before the kill", 3)
        .await;
    println!(
        "webhooks recorded before kill -9 delivered {} ms after the restart (process start included)",
        restarted.elapsed().as_millis()
    );
    let types = receiver.types();
    assert_eq!(
        &types[..3],
        ["lesson.opened", "participant.joined", "lesson.started"],
        "{events:?}"
    );
    assert_eq!(events[0]["lesson"], lesson.as_str());
    receiver.task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
