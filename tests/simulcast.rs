//! Simulcast through the real server: a teacher sends its video in three layers (rids l, m, h),
//! in VP8 or H.264; a student gets one layer, chosen by the size it shows the video at
//! (starting from the smallest and climbing while its receiver reports stay clean), switching
//! only at a keyframe of the new layer, with sequence numbers, timestamps and VP8 picture ids
//! continuous.

mod common;

use std::time::Duration;

use common::h264::{REAL_SPS, h264_frame};
use common::numbered::*;
use common::vp8::{Vp8Part, vp8_start};
use common::*;
use jinke_signaling::{ClientMessage, MediaKind};

/// Every layer sends a keyframe this often (in frames).
const KEYFRAME_EVERY: u32 = 8;

/// A one-packet frame of `layer` as `publish` sends it, which ends with the layer and frame
/// number so the test can tell what arrived. VP8: a descriptor with a 15-bit PictureID and
/// TL0PICIDX and a keyframe header with the layer's size (or a delta frame's tag). H.264: SPS
/// (with the layer's size), PPS and IDR slice, or a non-IDR slice. The sizes are the H.264
/// test SPSs' (320x180, 720x404, 1280x720).
fn frame(publish: Publish, layer: usize, n: u32, keyframe: bool) -> Vec<u8> {
    let size = keyframe.then_some(REAL_SPS[layer].0);
    let mut body = vec![0x55; 200];
    body.push(0xC0 | layer as u8);
    body.extend(n.to_be_bytes());
    if publish == Publish::SimulcastH264 {
        return h264_frame(size, &body);
    }
    // Each layer numbers its pictures from its own starting point, as encoders do.
    let pid = (1000 * layer as u32 + n) as u16;
    let part = match size {
        Some((w, h)) => Vp8Part::Keyframe(w, h),
        None => Vp8Part::Delta,
    };
    [vp8_start(pid, n as u8, part), body].concat()
}

/// Which layer a received payload came from, and its frame number.
fn origin(payload: &[u8]) -> (usize, u32) {
    let tail = &payload[payload.len() - 5..];
    let n = u32::from_be_bytes(tail[1..].try_into().unwrap());
    ((tail[0] & 0x0f) as usize, n)
}

/// Whether a received payload starts a keyframe.
fn keyframe(publish: Publish, payload: &[u8]) -> bool {
    if publish == Publish::SimulcastH264 {
        payload[0] & 0x1f == 24
    } else {
        payload[6] & 0x01 == 0
    }
}

/// The PictureID a received payload carries.
fn picture_id(payload: &[u8]) -> u16 {
    (u16::from(payload[2] & 0x7f) << 8) | u16::from(payload[3])
}

/// Sends frames `from..to` on every layer, a frame every 5 ms.
async fn send_frames(teacher: &TestClient, publish: Publish, from: u32, to: u32) {
    let layers: Vec<&LocalTrack> = teacher.layers.iter().chain(&teacher.video).collect();
    for n in from..to {
        for (i, layer) in layers.iter().enumerate() {
            layer
                .send_marked(frame(publish, i, n, n % KEYFRAME_EVERY == 0), true)
                .await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends frames until the student has received `count` packets of `layer` after the first
/// `skip` packets. Returns the next frame number.
async fn send_until(
    teacher: &TestClient,
    publish: Publish,
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
        send_frames(teacher, publish, n, n + 4).await;
        n += 4;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_gets_the_vp8_layer_that_fits_its_view_and_switches_seamlessly() {
    the_layer_that_fits_and_seamless_switches(Publish::Simulcast).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_gets_the_h264_layer_that_fits_its_view_and_switches_seamlessly() {
    the_layer_that_fits_and_seamless_switches(Publish::SimulcastH264).await;
}

async fn the_layer_that_fits_and_seamless_switches(publish: Publish) {
    let server = TestServer::start().await;
    let lesson = server.create_lesson("lecture").await;
    let teacher = server.connect(&lesson, "teacher", "teacher", publish).await;
    server
        .wait_stats("the teacher's tracks", |s| s.routes == 2)
        .await;
    // The teacher has been sending a while (every layer a keyframe) when the student comes.
    send_frames(&teacher, publish, 0, KEYFRAME_EVERY).await;
    let mut student = server
        .connect(&lesson, "student", "student", Publish::Nothing)
        .await;
    let video = track_id(
        &student.tracks_from("teacher", 2).await,
        "teacher",
        MediaKind::Video,
    );

    // Nothing said about its view: the student starts on the smallest layer and climbs to the
    // largest as its clean receiver reports come in.
    let mut n = send_until(&teacher, publish, &student, &video, KEYFRAME_EVERY, 2, 0).await;
    let climb = student.received(&video);
    assert_eq!(origin(&climb[0].payload).0, 0, "the stream starts small");
    assert!(
        keyframe(publish, &climb[0].payload),
        "the stream starts at a keyframe"
    );

    // A small view: the low layer, from its next keyframe on.
    student.send(ClientMessage::VideoSize {
        track_id: video.clone(),
        width: 300,
        height: 170,
    });
    n = send_until(&teacher, publish, &student, &video, n, 0, climb.len()).await;
    // And back up to a big view.
    let before_up = student.received(&video).len();
    student.send(ClientMessage::VideoSize {
        track_id: video.clone(),
        width: 1280,
        height: 720,
    });
    n = send_until(&teacher, publish, &student, &video, n, 2, before_up).await;

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
    send_until(&teacher, publish, &phone, &video, n, 0, 0).await;
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
        assert!(
            keyframe(publish, &got[i].payload),
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
        if publish == Publish::Simulcast {
            assert_eq!(
                picture_id(&w[1].payload),
                (picture_id(&w[0].payload) + 1) & 0x7fff,
                "picture ids run on across switches"
            );
        }
    }
    server.stop().await;
}
