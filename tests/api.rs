//! The school REST API over real HTTP: auth, validation, persistence, join links.

mod common;

use common::ws::*;
use common::*;
use jinke_signaling::{ByeReason, ServerMessage};

#[tokio::test]
async fn lessons_and_tokens_need_the_right_api_key() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let body = serde_json::json!({"title": "x", "mode": "lecture"});
    for auth in [None, Some("Bearer wrong-key-0123456789"), Some("Basic abc")] {
        let mut req = client.post(server.url("/api/v1/lessons")).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "auth {auth:?}");
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(json["error"]["code"], "unauthorized");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("API key")
        );
    }
    let resp = client
        .get(server.url("/api/v1/lessons/whatever"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn bad_json_and_bad_fields_are_400_with_a_message() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let resp = client
        .post(server.url("/api/v1/lessons"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["error"]["code"], "bad_request");

    for bad in [
        serde_json::json!({"title": "", "mode": "lecture"}),
        serde_json::json!({"title": "x", "mode": "seminar"}),
        serde_json::json!({"title": "x", "mode": "one_to_one", "capacity": 3}),
        serde_json::json!({"title": "x", "mode": "lecture", "capacity": 0}),
        serde_json::json!({"mode": "lecture"}),
        serde_json::json!({"title": "x", "mode": "lecture", "extra": 1}),
    ] {
        let (status, body) = server.post("/api/v1/lessons", bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let lesson = server.create_lesson("small_class").await;
    for bad in [
        serde_json::json!({"identity": "", "name": "n", "role": "student"}),
        serde_json::json!({"identity": "i", "name": "n", "role": "principal"}),
        serde_json::json!({"identity": "i", "name": "n", "role": "student", "ttl_secs": 0}),
        serde_json::json!({"identity": "i", "name": "n", "role": "student", "ttl_secs": 99999999}),
    ] {
        let (status, body) = server
            .post(&format!("/api/v1/lessons/{lesson}/tokens"), bad.clone())
            .await;
        assert_eq!(status, 400, "{bad} -> {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_lessons_are_404() {
    let server = TestServer::start().await;
    let resp = reqwest::Client::new()
        .get(server.url("/api/v1/lessons/nope"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let (status, body) = server
        .post(
            "/api/v1/lessons/nope/tokens",
            serde_json::json!({"identity": "i", "name": "n", "role": "student"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    server.stop().await;
}

#[tokio::test]
async fn lessons_survive_a_restart() {
    let server = TestServer::start().await;
    let (status, created) = server
        .post(
            "/api/v1/lessons",
            serde_json::json!({"title": "老年书法课", "mode": "lecture", "capacity": 300}),
        )
        .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_owned();
    let dir = server.data_dir.clone();
    let mut server = server;
    server.server.take().unwrap().shutdown().await;

    let again = TestServer::start_in(dir).await;
    let resp = reqwest::Client::new()
        .get(again.url(&format!("/api/v1/lessons/{id}")))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(got, created);
    assert_eq!(got["capacity"], 300);
    again.stop().await;
}

#[tokio::test]
async fn a_join_url_opens_the_web_client() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let (status, body) = server
        .post(
            &format!("/api/v1/lessons/{lesson}/tokens"),
            serde_json::json!({"identity": "s1", "name": "王芳", "role": "student", "ttl_secs": 600}),
        )
        .await;
    assert_eq!(status, 201);
    let token = body["token"].as_str().unwrap();
    let url = body["join_url"].as_str().unwrap();
    assert_eq!(
        url,
        format!("http://{}/join/{lesson}?token={token}", server.http)
    );
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{url}&autojoin=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("jinke_web_client.js"));
    for (path, kind) in [
        ("/assets/jinke_web_client.js", "text/javascript"),
        ("/assets/jinke_web_client_bg.wasm", "application/wasm"),
        ("/assets/style.css", "text/css"),
    ] {
        let resp = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        assert!(!resp.bytes().await.unwrap().is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn tls_serves_https_and_https_join_links() {
    let dir = fresh_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let server = TestServer::start_with(dir, |c| {
        c.tls_cert = Some(cert_path.clone());
        c.tls_key = Some(key_path.clone());
    })
    .await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let https = format!("https://{}", server.http);
    let resp = client
        .post(format!("{https}/api/v1/lessons"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"title": "安全课", "mode": "small_class"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let lesson: serde_json::Value = resp.json().await.unwrap();
    let resp = client
        .post(format!(
            "{https}/api/v1/lessons/{}/tokens",
            lesson["id"].as_str().unwrap()
        ))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"identity": "a", "name": "a", "role": "student"}))
        .send()
        .await
        .unwrap();
    let issued: serde_json::Value = resp.json().await.unwrap();
    let join_url = issued["join_url"].as_str().unwrap();
    assert!(
        join_url.starts_with(&format!("{https}/join/")),
        "{join_url}"
    );
    let page = client.get(join_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // Signaling is served over TLS too (426: a good token, but not a WebSocket request).
    let token = issued["token"].as_str().unwrap();
    let ws = client
        .get(format!("{https}/ws?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ws.status(), 426);
    // Plain HTTP is not served on a TLS port.
    let plain = reqwest::get(server.url("/")).await;
    assert!(plain.map_or(true, |r| !r.status().is_success()));
    server.stop().await;
}

#[tokio::test]
async fn a_school_runs_a_live_lesson_through_rest() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let lesson = server.create_lesson("lecture").await;
    let base = format!("/api/v1/lessons/{lesson}");
    let get = |path: String| client.get(server.url(&path)).bearer_auth(API_KEY).send();

    // Nobody there yet: an empty list, no lock, an announcement reaching nobody.
    let list: serde_json::Value = get(format!("{base}/participants"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["participants"], serde_json::json!([]));
    let (status, body) = server
        .post(&format!("{base}/lock"), serde_json::json!({"locked": true}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_live"))
    );

    let (mut teacher, _) = join(&server, &lesson, "t", "teacher").await;
    let (mut student, _) = join(&server, &lesson, "s1", "student").await;
    let (_observer, _) = join(&server, &lesson, "hall", "observer").await;
    let list: serde_json::Value = get(format!("{base}/participants"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["identity"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["t", "s1", "hall"],
        "observers are listed to the school"
    );
    assert_eq!(list["participants"][1]["role"], "student");
    assert_eq!(list["participants"][1]["muted"], false);

    // Mute (default true), on someone present only.
    let (status, _) = server
        .post(
            &format!("{base}/participants/s1/mute"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        until(&mut student, "muted", |m| matches!(
            m,
            ServerMessage::Muted { .. }
        ))
        .await,
        ServerMessage::Muted {
            identity: "s1".into(),
            muted: true
        }
    );
    let (status, body) = server
        .post(
            &format!("{base}/participants/ghost/mute"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_present"))
    );
    let (status, _) = server
        .post(
            &format!("{base}/participants/s1/mute"),
            serde_json::json!({"muted": "yes"}),
        )
        .await;
    assert_eq!(status, 400);

    // An announcement shows in everyone's chat as the school's.
    let (status, body) = server
        .post(
            &format!("{base}/messages"),
            serde_json::json!({"text": "五分钟后下课"}),
        )
        .await;
    assert_eq!((status, body["delivered_to"].as_u64()), (201, Some(3)));
    let chat = until(&mut teacher, "the announcement", |m| {
        matches!(m, ServerMessage::Chat(_))
    })
    .await;
    assert!(matches!(chat, ServerMessage::Chat(m) if m.announcement && m.text == "五分钟后下课"));
    let (status, _) = server
        .post(&format!("{base}/messages"), serde_json::json!({"text": ""}))
        .await;
    assert_eq!(status, 400);

    // The stage: an invitation the student is asked about (202), taking off (204).
    let stage = |who: &str, on: bool| {
        let path = format!("{base}/participants/{who}/stage");
        let server = &server;
        async move { server.post(&path, serde_json::json!({ "on": on })).await }
    };
    assert_eq!(stage("s1", true).await.0, 202);
    assert_eq!(
        until(&mut student, "the invitation", |m| matches!(
            m,
            ServerMessage::StageInvite { .. }
        ))
        .await,
        ServerMessage::StageInvite { by: String::new() }
    );
    assert_eq!(stage("t", true).await.0, 400, "teachers are not invited");
    assert_eq!(stage("ghost", true).await.0, 404);
    assert_eq!(stage("s1", false).await.0, 204);

    // Remove: sent away, and its tokens refused from now on.
    let resp = client
        .delete(server.url(&format!("{base}/participants/s1")))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        until(&mut student, "bye", |m| matches!(
            m,
            ServerMessage::Bye { .. }
        ))
        .await,
        ServerMessage::Bye {
            reason: ByeReason::Removed
        }
    );
    let token = server.token(&lesson, "s1", "student").await;
    assert_eq!(
        open_ws(server.http, &format!("token={token}")).await.err(),
        Some(403)
    );

    // End: everyone leaves, the lesson says when it ended, nobody joins again.
    let (status, body) = server
        .post(&format!("{base}/end"), serde_json::json!(null))
        .await;
    assert_eq!(status, 200, "{body}");
    let ended_at = body["ended_at"].as_i64().expect("ended_at");
    assert_eq!(
        until(&mut teacher, "bye", |m| matches!(
            m,
            ServerMessage::Bye { .. }
        ))
        .await,
        ServerMessage::Bye {
            reason: ByeReason::LessonEnded
        }
    );
    let lesson_json: serde_json::Value = get(base.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(lesson_json["ended_at"].as_i64(), Some(ended_at));
    let (status, body) = server
        .post(
            &format!("{base}/messages"),
            serde_json::json!({"text": "还在吗"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("lesson_ended"))
    );
    let token = server.token(&lesson, "t", "teacher").await;
    assert_eq!(
        open_ws(server.http, &format!("token={token}")).await.err(),
        Some(410)
    );
    // Without the API key, no control.
    let resp = client
        .post(server.url(&format!("{base}/end")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    server.stop().await;
}

/// `jinke tenant add NAME --json` against a data folder; returns (school id, API key).
fn add_school(data_dir: &std::path::Path, name: &str) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jinke"))
        .args(["tenant", "add", name, "--json", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run jinke tenant add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(json["webhook_secret"].as_str().map(str::len), Some(64));
    (
        json["id"].as_str().unwrap().to_owned(),
        json["api_key"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn each_school_sees_only_its_own_lessons() {
    let server = TestServer::start().await;
    // Added while the server runs, through the same database.
    let (_, second) = add_school(&server.data_dir, "第二中学");
    let (_, third) = add_school(&server.data_dir, "社区学院");
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, key: &str, body: Option<serde_json::Value>| {
        let mut req = client.request(method, server.url(path)).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    use reqwest::Method;
    let (status, lesson) = call(
        Method::POST,
        "/api/v1/lessons",
        &second,
        Some(serde_json::json!({"title": "二中的课", "mode": "lecture"})),
    )
    .await;
    assert_eq!(status, 201);
    let id = lesson["id"].as_str().unwrap();
    let token_body = serde_json::json!({"identity": "t", "name": "t", "role": "teacher"});
    for (key, expected) in [
        (second.as_str(), 200),
        (third.as_str(), 404),
        (API_KEY, 404),
    ] {
        let (status, body) = call(Method::GET, &format!("/api/v1/lessons/{id}"), key, None).await;
        assert_eq!(status, expected, "{body}");
        let (status, _) = call(
            Method::POST,
            &format!("/api/v1/lessons/{id}/tokens"),
            key,
            Some(token_body.clone()),
        )
        .await;
        assert_eq!(status, if expected == 200 { 201 } else { 404 });
        let (status, _) = call(
            Method::POST,
            &format!("/api/v1/lessons/{id}/end"),
            key,
            None,
        )
        .await;
        if expected == 404 {
            assert_eq!(status, 404, "another school cannot end it");
        }
    }

    // Settings: each school its own; the secret is never shown.
    let (status, me) = call(Method::GET, "/api/v1/settings", &third, None).await;
    assert_eq!((status, me["name"].as_str()), (200, Some("社区学院")));
    assert!(me.get("webhook_secret").is_none());
    let (status, me) = call(
        Method::PUT,
        "/api/v1/settings",
        &third,
        Some(serde_json::json!({"webhook_url": "https://lms.example/hooks", "embed_origins": ["https://college.example"]})),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["webhook_url"], "https://lms.example/hooks");
    assert_eq!(
        me["embed_origins"],
        serde_json::json!(["https://college.example"])
    );
    let (status, _) = call(
        Method::PUT,
        "/api/v1/settings",
        &third,
        Some(serde_json::json!({"webhook_url": "ftp://x", "embed_origins": []})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        Method::PUT,
        "/api/v1/settings",
        &third,
        Some(serde_json::json!({"webhook_url": null, "embed_origins": ["https://a.example/path"]})),
    )
    .await;
    assert_eq!(status, 400, "an origin has no path");
    let (_, boot) = call(Method::GET, "/api/v1/settings", API_KEY, None).await;
    assert_eq!(boot["id"], "bootstrap");
    assert_eq!(boot["webhook_url"], serde_json::Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn attendance_is_kept_and_reported_as_json_csv_and_xapi() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("small_class").await;
    let (mut teacher, _) = join(&server, &lesson, "t", "teacher").await;
    let (mut student, _) = join(&server, &lesson, "s1", "student").await;
    send(
        &mut student,
        jinke_signaling::ClientMessage::RaiseHand.to_json(),
    )
    .await;
    for text in ["老师好", "听得见"] {
        send(
            &mut student,
            jinke_signaling::ClientMessage::Chat { text: text.into() }.to_json(),
        )
        .await;
    }
    until(
        &mut teacher,
        "the chat",
        |m| matches!(m, ServerMessage::Chat(c) if c.text == "听得见"),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    send(
        &mut student,
        jinke_signaling::ClientMessage::Leave.to_json(),
    )
    .await;
    until(&mut teacher, "the student leaving", |m| {
        matches!(m, ServerMessage::ParticipantLeft { .. })
    })
    .await;

    let client = reqwest::Client::new();
    let get = |format: &str| {
        client
            .get(server.url(&format!(
                "/api/v1/lessons/{lesson}/attendance?format={format}"
            )))
            .bearer_auth(API_KEY)
            .send()
    };
    // The recorder writes events as they come: wait for the student's stay to close.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let report = loop {
        let report: serde_json::Value = get("json").await.unwrap().json().await.unwrap();
        let closed = report["participants"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["identity"] == "s1"))
            .is_some_and(|s| !s["intervals"][0]["left_at"].is_null());
        if closed {
            break report;
        }
        assert!(tokio::time::Instant::now() < deadline, "{report}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let people = report["participants"].as_array().unwrap();
    assert_eq!(people[0]["identity"], "t");
    assert!(
        people[0]["intervals"][0]["left_at"].is_null(),
        "the teacher is still there"
    );
    let s1 = &people[1];
    assert_eq!(s1["role"], "student");
    assert_eq!(s1["hands_raised"], 1);
    assert_eq!(s1["chat_messages"], 2);
    assert!(s1["seconds_present"].as_u64().unwrap() >= 1);
    assert!(
        s1["seconds_on_stage"].as_u64().unwrap() >= 1,
        "a small-class student sits on stage"
    );

    let csv = get("csv").await.unwrap();
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("identity,name,role,"), "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.starts_with("s1,s1,student,") && l.ends_with(",1,2")),
        "{csv}"
    );

    let statements: serde_json::Value = get("xapi").await.unwrap().json().await.unwrap();
    assert_eq!(statements.as_array().unwrap().len(), 2);
    assert_eq!(
        statements[1]["verb"]["id"],
        "http://adlnet.gov/expapi/verbs/attended"
    );
    assert!(
        statements[1]["result"]["duration"]
            .as_str()
            .unwrap()
            .starts_with("PT")
    );
    assert_eq!(get("pdf").await.unwrap().status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn only_the_schools_own_origins_may_frame_its_lessons() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let token = server.token(&lesson, "s", "student").await;
    let client = reqwest::Client::new();
    let resp = client
        .put(server.url("/api/v1/settings"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"webhook_url": null, "embed_origins": ["https://school.example", "http://127.0.0.1:8000"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let csp = |path: String| {
        let client = client.clone();
        let url = server.url(&path);
        async move {
            let resp = client.get(url).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(
        csp(format!("/embed/{lesson}?token={token}")).await,
        "frame-ancestors 'self' https://school.example http://127.0.0.1:8000"
    );
    assert_eq!(
        csp(format!("/join/{lesson}?token={token}")).await,
        "frame-ancestors 'self'",
        "join links are not for framing"
    );
    assert_eq!(
        csp(format!("/embed/{lesson}?token=forged")).await,
        "frame-ancestors 'self'"
    );
    assert_eq!(
        csp(format!("/embed/other-lesson?token={token}")).await,
        "frame-ancestors 'self'",
        "the token must be for the framed lesson"
    );
    server.stop().await;
}

#[tokio::test]
async fn openapi_lists_every_route_and_only_the_schools_key_opens_them() {
    use std::collections::BTreeSet;
    let server = TestServer::start().await;
    let (_, other_school) = add_school(&server.data_dir, "别的学校");
    let client = reqwest::Client::new();
    let doc: serde_json::Value = client
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["apiKey"]["scheme"],
        "bearer"
    );
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("post", "/api/v1/lessons"),
        ("get", "/api/v1/lessons"),
        ("get", "/api/v1/lessons/{id}"),
        ("patch", "/api/v1/lessons/{id}"),
        ("delete", "/api/v1/lessons/{id}"),
        ("post", "/api/v1/lessons/{id}/cancel"),
        ("post", "/api/v1/lessons/{id}/tokens"),
        ("get", "/api/v1/lessons/{id}/participants"),
        ("delete", "/api/v1/lessons/{id}/participants/{identity}"),
        ("post", "/api/v1/lessons/{id}/participants/{identity}/mute"),
        ("post", "/api/v1/lessons/{id}/participants/{identity}/stage"),
        ("post", "/api/v1/lessons/{id}/lock"),
        ("post", "/api/v1/lessons/{id}/start"),
        ("post", "/api/v1/lessons/{id}/end"),
        ("post", "/api/v1/lessons/{id}/messages"),
        ("get", "/api/v1/lessons/{id}/attendance"),
        ("get", "/api/v1/calendar.ics"),
        ("get", "/api/v1/settings"),
        ("put", "/api/v1/settings"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(documented, expected);

    // The authorization matrix over every documented route.
    for (method, path) in &documented {
        let lesson = server.create_lesson("lecture").await;
        let student_token = server.token(&lesson, "s", "student").await;
        let url = server.url(&path.replace("{id}", &lesson).replace("{identity}", "s"));
        let call = |key: Option<&str>| {
            let mut req = client
                .request(method.to_uppercase().parse().unwrap(), &url)
                .json(&serde_json::json!({}));
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            async move {
                let resp = req.send().await.unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            }
        };
        let route = format!("{} {path}", method.to_uppercase());
        assert_eq!(call(None).await.0, 401, "{route} without a key");
        assert_eq!(
            call(Some(&student_token)).await.0,
            401,
            "{route} with a student's join token"
        );
        let (status, body) = call(Some(&other_school)).await;
        if path.contains("{id}") {
            assert_eq!(status, 404, "{route} with another school's key: {body}");
            assert!(body.contains("not_found"), "{route}: {body}");
        } else {
            assert!(
                status <= 400,
                "{route} acts on its own school: {status} {body}"
            );
        }
        let (status, body) = call(Some(API_KEY)).await;
        assert!(
            status != 401 && status != 405 && !(status == 404 && body.is_empty()),
            "{route} with the right key reaches its handler: {status} {body}"
        );
    }
    server.stop().await;
}
