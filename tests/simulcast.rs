//! Simulcast through the real server: a teacher sends its video in three layers (rids l, m, h);
//! a student gets one layer, chosen by the size it shows the video at (starting from the
//! smallest and climbing while its receiver reports stay clean), switching only at a keyframe
//! of the new layer, with sequence numbers, timestamps and VP8 picture ids continuous.

mod common;

use std::time::Duration;

use common::numbered::*;
use common::vp8::{Vp8Part, vp8_start};
use common::*;
use jinke_signaling::{ClientMessage, MediaKind};

/// Frame sizes the layers announce in their keyframes, lowest first.
const SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];
/// Every layer sends a keyframe this often (in frames).
const KEYFRAME_EVERY: u32 = 8;

/// A one-packet VP8 frame of `layer`: a descriptor with a 15-bit PictureID and TL0PICIDX, a
/// keyframe header with the layer's size (or a delta frame's tag), then the layer and frame
/// number so the test can tell what arrived.
fn frame(layer: usize, n: u32, keyframe: bool) -> Vec<u8> {
    // Each layer numbers its pictures from its own starting point, as encoders do.
    let pid = (1000 * layer as u32 + n) as u16;
    let part = if keyframe {
        Vp8Part::Keyframe(SIZES[layer].0, SIZES[layer].1)
    } else {
        Vp8Part::Delta
    };
    let mut p = vp8_start(pid, n as u8, part);
    p.push(0xC0 | layer as u8);
    p.extend(n.to_be_bytes());
    p.extend([0x55; 200]);
    p
}

/// Which layer a received payload came from, and its frame number.
fn origin(payload: &[u8]) -> (usize, u32) {
    let at = if payload[6] & 0x01 == 0 { 16 } else { 9 };
    let layer = (payload[at] & 0x0f) as usize;
    let n = u32::from_be_bytes(payload[at + 1..at + 5].try_into().unwrap());
    (layer, n)
}

/// The PictureID a received payload carries.
fn picture_id(payload: &[u8]) -> u16 {
    (u16::from(payload[2] & 0x7f) << 8) | u16::from(payload[3])
}

/// Sends frames `from..to` on every layer, a frame every 5 ms.
async fn send_frames(teacher: &TestClient, from: u32, to: u32) {
    let layers: Vec<&LocalTrack> = teacher.layers.iter().chain(&teacher.video).collect();
    for n in from..to {
        for (i, layer) in layers.iter().enumerate() {
            layer
                .send_marked(frame(i, n, n % KEYFRAME_EVERY == 0), true)
                .await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends frames until the student has received `count` packets of `layer` after the first
/// `skip` packets. Returns the next frame number.
async fn send_until(
    teacher: &TestClient,
    student: &TestClient,
    video: &str,
    mut n: u32,
    layer: usize,
    skip: usize,
) -> u32 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = student.received(video);
        let of_layer = got
            .iter()
            .skip(skip)
            .filter(|r| origin(&r.payload).0 == layer)
            .count();
        if of_layer >= 5 {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the student never got 5 packets of layer {layer}"
        );
        send_frames(teacher, n, n + 4).await;
        n += 4;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_gets_the_layer_that_fits_its_view_and_switches_seamlessly() {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let teacher = server
        .connect(&lesson, "teacher", "teacher", Publish::Simulcast)
        .await;
    server
        .wait_stats("the teacher's tracks", |s| s.routes == 2)
        .await;
    // The teacher has been sending a while (every layer a keyframe) when the student comes.
    send_frames(&teacher, 0, KEYFRAME_EVERY).await;
    let student = server
        .connect(&lesson, "student", "student", Publish::Nothing)
        .await;
    let video = track_id(&tracks_of(&student.joined), "teacher", MediaKind::Video);

    // Nothing said about its view: the student starts on the smallest layer and climbs to the
    // largest as its clean receiver reports come in.
    let mut n = send_until(&teacher, &student, &video, KEYFRAME_EVERY, 2, 0).await;
    let climb = student.received(&video);
    assert_eq!(origin(&climb[0].payload).0, 0, "the stream starts small");
    assert_eq!(
        climb[0].payload[6] & 0x01,
        0,
        "the stream starts at a keyframe"
    );

    // A small view: the low layer, from its next keyframe on.
    student.send(ClientMessage::VideoSize {
        track_id: video.clone(),
        width: 300,
        height: 170,
    });
    n = send_until(&teacher, &student, &video, n, 0, climb.len()).await;
    // And back up to a big view.
    let before_up = student.received(&video).len();
    student.send(ClientMessage::VideoSize {
        track_id: video.clone(),
        width: 1280,
        height: 720,
    });
    n = send_until(&teacher, &student, &video, n, 2, before_up).await;

    // A phone says its size at once, before its subscription is even negotiated: it gets the
    // low layer from the start.
    let p = server.token(&lesson, "phone", "student").await;
    let mut phone = TestClient::join(&server, &p, "phone", Publish::Nothing).await;
    phone.send(ClientMessage::VideoSize {
        track_id: video.clone(),
        width: 320,
        height: 180,
    });
    phone.wait_connected().await;
    send_until(&teacher, &phone, &video, n, 0, 0).await;
    let small = phone.received(&video);
    assert!(
        small.iter().all(|r| origin(&r.payload).0 == 0),
        "only the low layer: {:?}",
        small.iter().map(|r| origin(&r.payload)).collect::<Vec<_>>()
    );

    let got = student.received(&video);
    let layers: Vec<usize> = got.iter().map(|r| origin(&r.payload).0).collect();
    let switches: Vec<usize> = (1..got.len())
        .filter(|&i| layers[i] != layers[i - 1])
        .collect();
    let visited: Vec<usize> = std::iter::once(0)
        .chain(switches.iter().map(|&i| layers[i]))
        .collect();
    assert_eq!(
        visited,
        [0, 1, 2, 0, 2],
        "a climb to high, then low, then high again: {layers:?}"
    );
    for &i in &switches {
        assert_eq!(
            got[i].payload[6] & 0x01,
            0,
            "a switch happens at a keyframe of the new layer"
        );
    }
    for w in got.windows(2) {
        assert_eq!(w[1].ssrc, w[0].ssrc, "one stream for the student");
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "sequence numbers run on across switches"
        );
        assert_eq!(
            picture_id(&w[1].payload),
            (picture_id(&w[0].payload) + 1) & 0x7fff,
            "picture ids run on across switches"
        );
    }
    server.stop().await;
}
