//! Lessons by the clock through the real server: a scheduled lesson refuses joins before its
//! lobby opens, goes live with the teacher, warns everyone at its end and ends itself after the
//! grace period; series, lists, updates, cancelling, deleting and the iCalendar feed.

mod common;

use std::time::Duration;

use common::ws::*;
use common::*;
use jinke_signaling::{ByeReason, ServerMessage};
use serde_json::{Value, json};

fn at(secs_from_now: i64) -> String {
    jinke::schedule::rfc3339_seconds(jinke::unix_now() + secs_from_now)
}

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

async fn wait_state(server: &TestServer, lesson: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, l) = get(server, &format!("/api/v1/lessons/{lesson}")).await;
        if l["state"] == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lesson never became {want}: {l}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_scheduled_lesson_opens_goes_live_warns_and_ends_itself() {
    let server = TestServer::start_with(fresh_dir(), |c| c.end_grace_secs = 2).await;
    let (status, lesson) = server
        .post(
            "/api/v1/lessons",
            json!({"title": "太极拳", "mode": "lecture", "teacher": "t",
                   "starts_at": at(2), "ends_at": at(5), "lobby_minutes": 0}),
        )
        .await;
    assert_eq!(status, 201, "{lesson}");
    assert_eq!(lesson["state"], "scheduled");
    assert_eq!(lesson["teacher"], "t");
    let id = lesson["id"].as_str().unwrap().to_owned();

    // Before the lobby opens: refused before the upgrade, with when it opens.
    let token = server.token(&id, "s1", "student").await;
    assert_eq!(
        open_ws(server.http, &format!("token={token}")).await.err(),
        Some(403)
    );

    wait_state(&server, &id, "open").await;
    let opens_at = jinke::schedule::parse_rfc3339(lesson["starts_at"].as_str().unwrap()).unwrap();
    println!(
        "lobby opened {} ms after its planned time (seen through the API, polled every 100 ms)",
        jinke::unix_now_ms() - opens_at * 1000
    );
    let (mut student, joined) = join(&server, &id, "s1", "student").await;
    let starts_at_ms = match joined {
        Some(ServerMessage::Joined { lesson, .. }) => lesson.starts_at_ms,
        other => panic!("{other:?}"),
    };
    assert!(
        starts_at_ms.is_some(),
        "the lobby gets the start for its countdown"
    );
    let (mut teacher, _) = join(&server, &id, "t", "teacher").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, l) = get(&server, &format!("/api/v1/lessons/{id}")).await;
    assert_eq!(
        l["state"], "open",
        "the teacher entering does not start a scheduled lesson"
    );
    let started = std::time::Instant::now();
    send(
        &mut teacher,
        jinke_signaling::ClientMessage::StartLesson.to_json(),
    )
    .await;
    until(&mut student, "the start", |m| {
        matches!(m, ServerMessage::LessonStarted)
    })
    .await;
    println!(
        "lobby to live: {} ms from the teacher's start to the students being told",
        started.elapsed().as_millis()
    );
    wait_state(&server, &id, "live").await;

    // At the planned end everyone is told when the lesson ends; then it ends itself.
    let warned = until(&mut student, "the warning", |m| {
        matches!(m, ServerMessage::EndingSoon { .. })
    })
    .await;
    let ServerMessage::EndingSoon { at_ms } = warned else {
        unreachable!()
    };
    let (_, l) = get(&server, &format!("/api/v1/lessons/{id}")).await;
    let planned_end = jinke::schedule::parse_rfc3339(l["ends_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        at_ms,
        (planned_end + 2) * 1000,
        "the end plus the grace period"
    );
    for ws in [&mut teacher, &mut student] {
        assert_eq!(
            until(ws, "the end", |m| matches!(m, ServerMessage::Bye { .. })).await,
            ServerMessage::Bye {
                reason: ByeReason::LessonEnded
            }
        );
    }
    wait_state(&server, &id, "ended").await;
    server.stop().await;
}

#[tokio::test]
async fn series_lists_updates_cancellation_deletion_and_the_calendar() {
    let server = TestServer::start().await;
    let day = 86_400;
    let (status, series) = server
        .post(
            "/api/v1/lessons",
            json!({"title": "社区书法班", "mode": "small_class",
                   "starts_at": at(day), "ends_at": at(day + 3600),
                   "rrule": "FREQ=WEEKLY;COUNT=3"}),
        )
        .await;
    assert_eq!(status, 201, "{series}");
    let occurrences = series["occurrences"].as_array().unwrap();
    assert_eq!(occurrences.len(), 3);
    let ids: Vec<String> = occurrences
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids[0], series["id"].as_str().unwrap());
    let start =
        |o: &Value| jinke::schedule::parse_rfc3339(o["starts_at"].as_str().unwrap()).unwrap();
    assert_eq!(start(&occurrences[2]) - start(&occurrences[0]), 14 * day);
    assert_eq!(occurrences[1]["series_id"], series["series_id"]);
    let (_, unscheduled) = server
        .post(
            "/api/v1/lessons",
            json!({"title": "随堂", "mode": "lecture"}),
        )
        .await;
    assert_eq!(unscheduled["state"], "open");

    // Lists: by state, by time, in pages.
    let (_, scheduled) = get(&server, "/api/v1/lessons?state=scheduled").await;
    assert_eq!(scheduled["total"], 3);
    let (_, page) = get(&server, "/api/v1/lessons?per_page=2&page=2").await;
    assert_eq!(
        (
            page["total"].as_u64(),
            page["lessons"].as_array().unwrap().len()
        ),
        (Some(4), 2)
    );
    let window = format!(
        "/api/v1/lessons?from={}&to={}",
        urlencode(&at(day - 60)),
        urlencode(&at(day + 60))
    );
    let (status, first_week) = get(&server, &window).await;
    assert_eq!(status, 200, "{first_week}");
    assert_eq!(first_week["lessons"][0]["id"], ids[0].as_str());
    assert_eq!(first_week["total"], 1);

    // Update, cancel, delete.
    let client = reqwest::Client::new();
    let resp = client
        .patch(server.url(&format!("/api/v1/lessons/{}", ids[1])))
        .bearer_auth(API_KEY)
        .json(&json!({"title": "社区书法班（第二课）", "lobby_minutes": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let updated: Value = resp.json().await.unwrap();
    assert_eq!(
        (updated["title"].as_str(), updated["lobby_minutes"].as_u64()),
        (Some("社区书法班（第二课）"), Some(30))
    );
    let (status, cancelled) = server
        .post(&format!("/api/v1/lessons/{}/cancel", ids[2]), json!(null))
        .await;
    assert_eq!(
        (status, cancelled["state"].as_str()),
        (200, Some("cancelled"))
    );
    let token = server.token(&ids[2], "s", "student").await;
    assert_eq!(
        open_ws(server.http, &format!("token={token}")).await.err(),
        Some(410)
    );
    let resp = client
        .patch(server.url(&format!("/api/v1/lessons/{}", ids[2])))
        .bearer_auth(API_KEY)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409, "a cancelled lesson is not changed");

    let calendar = client
        .get(server.url("/api/v1/calendar.ics"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(calendar.matches("BEGIN:VEVENT").count(), 3, "{calendar}");
    assert_eq!(calendar.matches("STATUS:CANCELLED").count(), 1);
    assert!(calendar.contains(&format!("UID:{}@jinke", ids[0])));

    let resp = client
        .delete(server.url(&format!("/api/v1/lessons/{}", ids[0])))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        get(&server, &format!("/api/v1/lessons/{}", ids[0])).await.0,
        404
    );

    // Bad schedules are 400s with a reason.
    for bad in [
        json!({"title": "x", "mode": "lecture", "starts_at": "tomorrow"}),
        json!({"title": "x", "mode": "lecture", "starts_at": at(100), "ends_at": at(50)}),
        json!({"title": "x", "mode": "lecture", "ends_at": at(50)}),
        json!({"title": "x", "mode": "lecture", "starts_at": at(100), "rrule": "FREQ=YEARLY;COUNT=2"}),
        json!({"title": "x", "mode": "lecture", "rrule": "FREQ=WEEKLY;COUNT=2"}),
    ] {
        let (status, body) = server.post("/api/v1/lessons", bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {body}");
    }
    server.stop().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
