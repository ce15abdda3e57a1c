//! Signaling over a real WebSocket: token checks before the upgrade, protocol errors, capacity,
//! shutdown.

mod common;

use std::time::Duration;

use common::ws::*;
use common::*;
use jinke::tokens::JoinClaims;
use jinke_signaling::{
    ByeReason, ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, Role, ServerMessage,
};

fn signed(server: &TestServer, lesson: &str, exp_offset: i64) -> String {
    let now = jinke::unix_now();
    server.server().state.signer.sign(&JoinClaims {
        lesson: lesson.into(),
        sub: "s1".into(),
        name: "s1".into(),
        role: Role::Student,
        iat: now,
        exp: now + exp_offset,
    })
}

#[tokio::test]
async fn bad_expired_and_other_lesson_tokens_are_refused_before_the_upgrade() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let other = server.create_lesson("lecture").await;
    let good = server.token(&lesson, "s1", "student").await;
    let forged = jinke::tokens::TokenSigner::new(&[1; 32])
        .unwrap()
        .sign(&JoinClaims {
            lesson: lesson.clone(),
            sub: "x".into(),
            name: "x".into(),
            role: Role::Teacher,
            iat: 0,
            exp: jinke::unix_now() + 600,
        });
    let expired = signed(&server, &lesson, -5);
    let ghost = signed(&server, "no-such-lesson", 600);
    for (what, query) in [
        ("no token", String::new()),
        ("garbage", "token=abc".to_owned()),
        ("forged", format!("token={forged}")),
        ("expired", format!("token={expired}")),
        ("other lesson", format!("token={good}&lesson={other}")),
        ("deleted lesson", format!("token={ghost}")),
    ] {
        assert_eq!(
            open_ws(server.http, &query).await.err(),
            Some(401),
            "{what} was not refused"
        );
    }
    // The refusal says why, for the web client's message.
    let resp = reqwest::get(server.url(&format!("/ws?token={expired}")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "token_expired");
    // A good token without an upgrade: 426, so a page can check its link first.
    let resp = reqwest::get(server.url(&format!("/ws?token={good}&lesson={lesson}")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 426);
    assert!(
        open_ws(server.http, &format!("token={good}&lesson={lesson}"))
            .await
            .is_ok()
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_messages_get_an_error_and_the_session_goes_on() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("small_class").await;
    let (mut ws, reply) = join(&server, &lesson, "s1", "student").await;
    assert!(matches!(reply, Some(ServerMessage::Joined { .. })));
    for bad in ["{", "[1,2]", r#"{"type":"fly"}"#, "\u{0}\u{1}"] {
        send(&mut ws, bad.into()).await;
        match next_message(&mut ws).await {
            Some(ServerMessage::Error {
                code: ErrorCode::BadMessage,
                fatal: false,
                ..
            }) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // Garbage SDP is refused cleanly too.
    send(
        &mut ws,
        ClientMessage::Offer {
            sdp: "v=0 nonsense".into(),
        }
        .to_json(),
    )
    .await;
    assert!(matches!(
        next_message(&mut ws).await,
        Some(ServerMessage::Error {
            code: ErrorCode::BadSdp,
            ..
        })
    ));
    send(
        &mut ws,
        ClientMessage::Answer { sdp: "v=0".into() }.to_json(),
    )
    .await;
    assert!(matches!(
        next_message(&mut ws).await,
        Some(ServerMessage::Error { .. })
    ));
    send(&mut ws, ClientMessage::Ping.to_json()).await;
    assert_eq!(next_message(&mut ws).await, Some(ServerMessage::Pong));
    server.stop().await;
}

#[tokio::test]
async fn a_message_up_to_the_limit_is_read_whole_and_a_larger_one_ends_the_session() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("small_class").await;
    let (mut ws, reply) = join(&server, &lesson, "s1", "student").await;
    assert!(matches!(reply, Some(ServerMessage::Joined { .. })));
    // Many times the server's read buffer: still one message, answered once.
    let sdp = format!("v=0 {}", "x".repeat(MAX_MESSAGE_BYTES - 100));
    let near = ClientMessage::Offer { sdp }.to_json();
    assert!(near.len() <= MAX_MESSAGE_BYTES);
    send(&mut ws, near).await;
    assert!(matches!(
        next_message(&mut ws).await,
        Some(ServerMessage::Error {
            code: ErrorCode::BadSdp,
            ..
        })
    ));
    send(&mut ws, ClientMessage::Ping.to_json()).await;
    assert_eq!(next_message(&mut ws).await, Some(ServerMessage::Pong));
    send(&mut ws, "x".repeat(MAX_MESSAGE_BYTES + 1)).await;
    assert_eq!(next_message(&mut ws).await, None, "over the limit");
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_protocol_version_or_first_message_is_refused() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("small_class").await;
    let token = server.token(&lesson, "s1", "student").await;
    let mut ws = open_ws(server.http, &format!("token={token}"))
        .await
        .unwrap();
    send(&mut ws, ClientMessage::Join { protocol: 999 }.to_json()).await;
    assert!(matches!(
        next_message(&mut ws).await,
        Some(ServerMessage::Error {
            code: ErrorCode::ProtocolVersion,
            fatal: true,
            ..
        })
    ));
    assert_eq!(next_message(&mut ws).await, None, "the socket closes");

    let mut ws = open_ws(server.http, &format!("token={token}"))
        .await
        .unwrap();
    send(&mut ws, ClientMessage::Ping.to_json()).await;
    assert!(matches!(
        next_message(&mut ws).await,
        Some(ServerMessage::Error {
            code: ErrorCode::UnexpectedMessage,
            fatal: true,
            ..
        })
    ));
    server.stop().await;
}

#[tokio::test]
async fn a_full_lesson_says_so() {
    let server = TestServer::start().await;
    let (status, body) = server
        .post(
            "/api/v1/lessons",
            serde_json::json!({"title": "一对一", "mode": "one_to_one"}),
        )
        .await;
    assert_eq!(status, 201);
    let lesson = body["id"].as_str().unwrap().to_owned();
    let mut sockets = Vec::new();
    for who in ["a", "b", "c"] {
        let (ws, reply) = join(&server, &lesson, who, "student").await;
        if who == "c" {
            assert!(
                matches!(
                    reply,
                    Some(ServerMessage::Error {
                        code: ErrorCode::LessonFull,
                        fatal: true,
                        ..
                    })
                ),
                "{reply:?}"
            );
        } else {
            assert!(
                matches!(reply, Some(ServerMessage::Joined { .. })),
                "{reply:?}"
            );
        }
        sockets.push(ws);
    }
    server.stop().await;
}

#[tokio::test]
async fn participants_see_each_other_come_and_go() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("small_class").await;
    let ta = server.token(&lesson, "a", "teacher").await;
    let tb = server.token(&lesson, "b", "student").await;
    let mut a = open_ws(server.http, &format!("token={ta}")).await.unwrap();
    send(
        &mut a,
        ClientMessage::Join {
            protocol: PROTOCOL_VERSION,
        }
        .to_json(),
    )
    .await;
    assert!(matches!(
        next_message(&mut a).await,
        Some(ServerMessage::Joined { .. })
    ));
    let mut b = open_ws(server.http, &format!("token={tb}")).await.unwrap();
    send(
        &mut b,
        ClientMessage::Join {
            protocol: PROTOCOL_VERSION,
        }
        .to_json(),
    )
    .await;
    match next_message(&mut b).await {
        Some(ServerMessage::Joined {
            participants,
            you,
            may_publish,
            ..
        }) => {
            assert_eq!(you.identity, "b");
            assert!(may_publish, "small-class students publish");
            assert_eq!(participants.len(), 1);
            assert_eq!(participants[0].identity, "a");
            assert_eq!(participants[0].role, Role::Teacher);
        }
        other => panic!("{other:?}"),
    }
    match next_message(&mut a).await {
        Some(ServerMessage::ParticipantJoined(p)) => assert_eq!(p.identity, "b"),
        other => panic!("{other:?}"),
    }
    // A small-class student takes a seat on stage as it arrives.
    assert_eq!(
        next_message(&mut a).await,
        Some(ServerMessage::Stage {
            identities: vec!["b".into()]
        })
    );
    send(&mut b, ClientMessage::Leave.to_json()).await;
    match next_message(&mut a).await {
        Some(ServerMessage::ParticipantLeft { identity }) => assert_eq!(identity, "b"),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_says_goodbye_and_refuses_new_joins() {
    let mut server = TestServer::start().await;
    let lesson = server.create_lesson("small_class").await;
    let (mut ws, reply) = join(&server, &lesson, "a", "student").await;
    assert!(matches!(reply, Some(ServerMessage::Joined { .. })));

    let state = server.server().state.clone();
    let running = server.server.take().unwrap();
    let stopping = tokio::spawn(running.shutdown());
    assert_eq!(
        next_message(&mut ws).await,
        Some(ServerMessage::Bye {
            reason: ByeReason::ServerShutdown
        })
    );
    assert!(state.is_shutting_down());
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown completes")
        .unwrap();
    assert_eq!(state.rooms.session_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn assistants_may_publish_and_observers_watch_unseen() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let mut joined = Vec::new();
    let mut sockets = Vec::new();
    for (who, role) in [
        ("t", "teacher"),
        ("helper", "assistant"),
        ("inspector", "observer"),
        ("s", "student"),
    ] {
        let (ws, reply) = join(&server, &lesson, who, role).await;
        match reply {
            Some(ServerMessage::Joined {
                may_publish,
                participants,
                ..
            }) => {
                joined.push((who, may_publish, participants));
            }
            other => panic!("{who}: {other:?}"),
        }
        // Every participant stays for the rest of the test.
        sockets.push(ws);
    }
    let publish: Vec<bool> = joined.iter().map(|(_, p, _)| *p).collect();
    assert_eq!(
        publish,
        vec![true, true, false, false],
        "teacher, assistant, observer, student"
    );
    let seen_by_student: Vec<&str> = joined[3].2.iter().map(|p| p.identity.as_str()).collect();
    assert_eq!(
        seen_by_student,
        vec!["t", "helper"],
        "the observer is not listed"
    );
    assert_eq!(joined[1].2[0].role, Role::Teacher);

    // An observer's publishing offer is refused like a lecture student's.
    let (mut ws, reply) = join(&server, &lesson, "peeker", "observer").await;
    assert!(matches!(reply, Some(ServerMessage::Joined { .. })));
    let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n";
    send(
        &mut ws,
        ClientMessage::Offer { sdp: offer.into() }.to_json(),
    )
    .await;
    assert!(matches!(
        next_message(&mut ws).await,
        Some(ServerMessage::Error {
            code: ErrorCode::PublishNotAllowed,
            ..
        })
    ));
    server.stop().await;
}

#[tokio::test]
async fn hands_are_raised_in_order_and_lowered_by_their_owner_or_the_teacher() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let mut ws = Vec::new();
    for (who, role) in [
        ("t", "teacher"),
        ("a", "student"),
        ("b", "student"),
        ("o", "observer"),
    ] {
        let (s, reply) = join(&server, &lesson, who, role).await;
        assert!(matches!(reply, Some(ServerMessage::Joined { .. })));
        ws.push(s);
    }
    let queue = |m: Option<ServerMessage>| match m {
        Some(ServerMessage::HandQueue { identities }) => identities,
        other => panic!("expected the hand queue, got {other:?}"),
    };
    // Skip the teacher's presence events (a, b joined).
    for _ in 0..2 {
        assert!(matches!(
            next_message(&mut ws[0]).await,
            Some(ServerMessage::ParticipantJoined(_))
        ));
    }
    send(&mut ws[2], ClientMessage::RaiseHand.to_json()).await;
    assert_eq!(queue(next_message(&mut ws[0]).await), vec!["b"]);
    send(&mut ws[1], ClientMessage::RaiseHand.to_json()).await;
    assert_eq!(queue(next_message(&mut ws[0]).await), vec!["b", "a"]);
    // A student may not lower another's hand; an observer may not raise one.
    send(
        &mut ws[1],
        ClientMessage::LowerHand {
            identity: Some("b".into()),
        }
        .to_json(),
    )
    .await;
    let refused = loop {
        match next_message(&mut ws[1]).await {
            Some(ServerMessage::HandQueue { .. } | ServerMessage::ParticipantJoined(_)) => continue,
            other => break other,
        }
    };
    assert!(matches!(
        refused,
        Some(ServerMessage::Error {
            code: ErrorCode::NotAllowed,
            ..
        })
    ));
    send(&mut ws[3], ClientMessage::RaiseHand.to_json()).await;
    let refused = loop {
        match next_message(&mut ws[3]).await {
            Some(ServerMessage::HandQueue { .. } | ServerMessage::ParticipantJoined(_)) => continue,
            other => break other,
        }
    };
    assert!(matches!(
        refused,
        Some(ServerMessage::Error {
            code: ErrorCode::NotAllowed,
            ..
        })
    ));
    // The teacher lowers b's hand; a lowers its own; a late joiner sees the queue.
    send(
        &mut ws[0],
        ClientMessage::LowerHand {
            identity: Some("b".into()),
        }
        .to_json(),
    )
    .await;
    assert_eq!(queue(next_message(&mut ws[0]).await), vec!["a"]);
    let (_l, reply) = join(&server, &lesson, "late", "student").await;
    match reply {
        Some(ServerMessage::Joined { hands, .. }) => assert_eq!(hands, vec!["a"]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        next_message(&mut ws[0]).await,
        Some(ServerMessage::ParticipantJoined(_))
    ));
    send(
        &mut ws[1],
        ClientMessage::LowerHand { identity: None }.to_json(),
    )
    .await;
    assert_eq!(queue(next_message(&mut ws[0]).await), Vec::<String>::new());
    server.stop().await;
}

#[tokio::test]
async fn chat_reaches_everyone_is_replayed_and_can_be_turned_off() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("small_class").await;
    let mut ws = Vec::new();
    for (who, role) in [("t", "teacher"), ("s", "student"), ("o", "observer")] {
        let (s, reply) = join(&server, &lesson, who, role).await;
        assert!(matches!(reply, Some(ServerMessage::Joined { .. })));
        ws.push(s);
    }
    // The next message that is not a presence event.
    async fn next_relevant(ws: &mut Ws) -> Option<ServerMessage> {
        loop {
            match next_message(ws).await {
                Some(ServerMessage::ParticipantJoined(_) | ServerMessage::Stage { .. }) => continue,
                other => return other,
            }
        }
    }
    send(
        &mut ws[1],
        ClientMessage::Chat {
            text: " 老师好 ".into(),
        }
        .to_json(),
    )
    .await;
    for s in ws.iter_mut() {
        match next_relevant(s).await {
            Some(ServerMessage::Chat(m)) => {
                assert_eq!((m.identity.as_str(), m.text.as_str()), ("s", "老师好"));
            }
            other => panic!("{other:?}"),
        }
    }
    let long = "a".repeat(jinke_signaling::MAX_CHAT_CHARS + 1);
    send(&mut ws[1], ClientMessage::Chat { text: long }.to_json()).await;
    assert!(matches!(
        next_relevant(&mut ws[1]).await,
        Some(ServerMessage::Error {
            code: ErrorCode::BadRequest,
            ..
        })
    ));
    send(
        &mut ws[2],
        ClientMessage::Chat {
            text: "unseen".into(),
        }
        .to_json(),
    )
    .await;
    assert!(matches!(
        next_relevant(&mut ws[2]).await,
        Some(ServerMessage::Error {
            code: ErrorCode::NotAllowed,
            ..
        })
    ));
    // The teacher turns it off: everyone is told, students are refused.
    send(
        &mut ws[0],
        ClientMessage::SetChat { enabled: false }.to_json(),
    )
    .await;
    for s in ws.iter_mut() {
        assert_eq!(
            next_relevant(s).await,
            Some(ServerMessage::ChatEnabled { enabled: false })
        );
    }
    send(
        &mut ws[1],
        ClientMessage::Chat {
            text: "还在吗".into(),
        }
        .to_json(),
    )
    .await;
    assert!(matches!(
        next_relevant(&mut ws[1]).await,
        Some(ServerMessage::Error {
            code: ErrorCode::NotAllowed,
            ..
        })
    ));
    // A late joiner gets the history and the switch's state.
    let (_l, reply) = join(&server, &lesson, "late", "student").await;
    match reply {
        Some(ServerMessage::Joined {
            chat, chat_enabled, ..
        }) => {
            assert!(!chat_enabled);
            assert_eq!(chat.len(), 1);
            assert_eq!(chat[0].text, "老师好");
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn moderators_mute_and_students_may_not() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("small_class").await;
    let (mut teacher, _) = join(&server, &lesson, "t", "teacher").await;
    let (mut s1, _) = join(&server, &lesson, "s1", "student").await;
    let (mut s2, _) = join(&server, &lesson, "s2", "student").await;

    let mute = |identity: &str, muted| {
        ClientMessage::Mute {
            identity: identity.into(),
            muted,
        }
        .to_json()
    };
    send(&mut s1, mute("s2", true)).await;
    let refused = until(&mut s1, "an error", |m| {
        matches!(m, ServerMessage::Error { .. })
    })
    .await;
    assert!(matches!(
        refused,
        ServerMessage::Error {
            code: ErrorCode::NotAllowed,
            fatal: false,
            ..
        }
    ));
    send(&mut teacher, mute("nobody", true)).await;
    let absent = until(&mut teacher, "an error", |m| {
        matches!(m, ServerMessage::Error { .. })
    })
    .await;
    assert!(matches!(
        absent,
        ServerMessage::Error {
            code: ErrorCode::NotPresent,
            ..
        }
    ));

    send(&mut teacher, mute("s2", true)).await;
    let muted = ServerMessage::Muted {
        identity: "s2".into(),
        muted: true,
    };
    for ws in [&mut teacher, &mut s1, &mut s2] {
        assert_eq!(
            until(ws, "muted", |m| matches!(m, ServerMessage::Muted { .. })).await,
            muted
        );
    }
    // A reconnect stays muted.
    drop(s2);
    let (_s2, reply) = join(&server, &lesson, "s2", "student").await;
    assert!(
        matches!(&reply, Some(ServerMessage::Joined { muted, .. }) if muted == &["s2".to_owned()]),
        "{reply:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_removed_student_is_sent_away_and_cannot_come_back() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let (mut teacher, _) = join(&server, &lesson, "t", "teacher").await;
    let (mut student, _) = join(&server, &lesson, "s1", "student").await;
    let (mut other, _) = join(&server, &lesson, "s2", "student").await;

    send(
        &mut other,
        ClientMessage::Remove {
            identity: "s1".into(),
        }
        .to_json(),
    )
    .await;
    assert!(matches!(
        until(&mut other, "an error", |m| matches!(
            m,
            ServerMessage::Error { .. }
        ))
        .await,
        ServerMessage::Error {
            code: ErrorCode::NotAllowed,
            ..
        }
    ));
    send(
        &mut teacher,
        ClientMessage::Remove {
            identity: "s1".into(),
        }
        .to_json(),
    )
    .await;
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
    assert_eq!(next_message(&mut student).await, None, "the socket closes");
    assert_eq!(
        until(&mut other, "s1 leaving", |m| matches!(
            m,
            ServerMessage::ParticipantLeft { .. }
        ))
        .await,
        ServerMessage::ParticipantLeft {
            identity: "s1".into()
        }
    );
    // Even a brand-new token for the same identity is refused before the upgrade.
    let token = server.token(&lesson, "s1", "student").await;
    assert_eq!(
        open_ws(server.http, &format!("token={token}")).await.err(),
        Some(403)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_locked_lesson_refuses_newcomers_until_unlocked() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let (mut teacher, _) = join(&server, &lesson, "t", "teacher").await;
    let (mut student, _) = join(&server, &lesson, "s1", "student").await;
    send(&mut teacher, ClientMessage::Lock { locked: true }.to_json()).await;
    assert_eq!(
        until(&mut student, "locked", |m| matches!(
            m,
            ServerMessage::Locked { .. }
        ))
        .await,
        ServerMessage::Locked { locked: true }
    );

    let (mut late, reply) = join(&server, &lesson, "late", "student").await;
    assert!(
        matches!(
            reply,
            Some(ServerMessage::Error {
                code: ErrorCode::LessonLocked,
                fatal: true,
                ..
            })
        ),
        "{reply:?}"
    );
    assert_eq!(next_message(&mut late).await, None);
    // An assistant still gets in, and sees the lock.
    let (_assistant, reply) = join(&server, &lesson, "a", "assistant").await;
    assert!(
        matches!(reply, Some(ServerMessage::Joined { locked: true, .. })),
        "{reply:?}"
    );

    send(
        &mut teacher,
        ClientMessage::Lock { locked: false }.to_json(),
    )
    .await;
    until(&mut student, "unlocked", |m| {
        *m == ServerMessage::Locked { locked: false }
    })
    .await;
    let (_late, reply) = join(&server, &lesson, "late", "student").await;
    assert!(matches!(
        reply,
        Some(ServerMessage::Joined { locked: false, .. })
    ));
    server.stop().await;
}

#[tokio::test]
async fn ending_the_lesson_sends_everyone_away_for_good() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("small_class").await;
    let (mut teacher, _) = join(&server, &lesson, "t", "teacher").await;
    let (mut student, _) = join(&server, &lesson, "s1", "student").await;
    send(&mut student, ClientMessage::EndLesson.to_json()).await;
    assert!(matches!(
        until(&mut student, "an error", |m| matches!(
            m,
            ServerMessage::Error { .. }
        ))
        .await,
        ServerMessage::Error {
            code: ErrorCode::NotAllowed,
            ..
        }
    ));

    send(&mut teacher, ClientMessage::EndLesson.to_json()).await;
    let bye = ServerMessage::Bye {
        reason: ByeReason::LessonEnded,
    };
    for ws in [&mut teacher, &mut student] {
        assert_eq!(
            until(ws, "bye", |m| matches!(m, ServerMessage::Bye { .. })).await,
            bye
        );
        assert_eq!(next_message(ws).await, None);
    }
    let token = server.token(&lesson, "t", "teacher").await;
    assert_eq!(
        open_ws(server.http, &format!("token={token}")).await.err(),
        Some(410)
    );
    assert_eq!(server.server().state.rooms.session_count(), 0);
    server.stop().await;
}
