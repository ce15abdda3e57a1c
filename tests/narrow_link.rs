//! A student behind a thin link (a village hall's uplink shared by everyone in it) while the
//! teacher sends its camera in three layers of ~120 kbps, ~500 kbps and ~1.2 Mbps. At 300 kbps
//! the student must end up on the low layer, and the video it can decode must never stop for
//! more than 2 s, including the moments the server tries a higher layer again. A link that
//! narrows to 60 kbps must carry the teacher's voice alone (the student told so), and video
//! must come back when it widens.
//!
//! The link is real: the server and teacher are in one network namespace, the student in
//! another, joined by a veth whose server end has a token bucket (`tc ... tbf rate 300kbit
//! burst 16kb latency 50ms`): packets over the rate queue for at most 50 ms and are then
//! dropped, as a narrow link's router does. The student is webrtc-rs, sending its receiver
//! reports and NACKs as browsers do.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::netns::{A_IP, B_IP, run_linked, sh};
use common::numbered::track_id;
use common::vp8::{Vp8Part, vp8_start};
use common::*;
use jinke_signaling::{MediaKind, ServerMessage};

/// Frame sizes the layers announce in their keyframes, lowest first.
const SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];
/// Packets per frame and payload bytes per packet of each layer: at 25 frames a second,
/// ~120 kbps, ~500 kbps and ~1.2 Mbps.
const PACKETS: [(u8, usize); 3] = [(1, 600), (2, 1250), (5, 1200)];
/// A frame every 40 ms, an Opus packet every 20 ms.
const TICK: Duration = Duration::from_millis(20);
/// Every layer sends a keyframe this often (in frames), about twice a second: a browser would
/// answer the server's keyframe requests within a few frames; this publisher ignores them.
const KEYFRAME_EVERY: u32 = 12;
/// How long the teacher sends once the student is connected (each test, in parallel).
const RUN: Duration = Duration::from_secs(20);
/// The server's end of the veth, which the shaping acts on.
const LINK: &str = "jk-a";
/// The longest the student's decodable video may stop.
const MAX_STALL: Duration = Duration::from_secs(2);

/// Packet `idx` of frame `n` of `layer`: a VP8 descriptor (15-bit PictureID, TL0PICIDX), on
/// the first packet a keyframe header with the layer's size or a delta frame's tag, then the
/// layer, frame number, packet index and packet count, then filler.
fn packet(layer: usize, n: u32, idx: u8) -> Vec<u8> {
    let (count, len) = PACKETS[layer];
    let pid = (1000 * layer as u32 + n) as u16;
    let part = match idx {
        0 if n.is_multiple_of(KEYFRAME_EVERY) => Vp8Part::Keyframe(SIZES[layer].0, SIZES[layer].1),
        0 => Vp8Part::Delta,
        _ => Vp8Part::Continuation,
    };
    let mut p = vp8_start(pid, n as u8, part);
    p.push(layer as u8);
    p.extend(n.to_be_bytes());
    p.extend([idx, count]);
    p.resize(len, 0x55);
    p
}

/// What a received packet says of its frame: layer, frame number, keyframe, index, count.
fn parse(payload: &[u8]) -> (usize, u32, bool, u8, u8) {
    let first = payload[0] & 0x10 != 0;
    let key = first && payload[6] & 0x01 == 0;
    let at = match (first, key) {
        (false, _) => 6,
        (true, true) => 16,
        (true, false) => 9,
    };
    let n = u32::from_be_bytes(payload[at + 1..at + 5].try_into().unwrap());
    (
        payload[at] as usize,
        n,
        key,
        payload[at + 5],
        payload[at + 6],
    )
}

/// When each frame the student could decode was ready, with its layer: a frame decodes when
/// all its packets arrived and it is a keyframe or follows a decoded frame of its layer.
fn decoded(received: &[Received]) -> Vec<(Instant, usize)> {
    struct Frame {
        layer: usize,
        n: u32,
        key: bool,
        count: u8,
        got: HashSet<u8>,
        done_at: Instant,
    }
    // Frames in the order the server sent them: by sequence number, unwrapped.
    let mut frames: BTreeMap<i64, Frame> = BTreeMap::new();
    let mut first_seq_of: BTreeMap<(usize, u32), i64> = BTreeMap::new();
    let mut last: Option<i64> = None;
    for r in received {
        let ext = match last {
            None => i64::from(r.seq),
            Some(l) => l + i64::from(r.seq.wrapping_sub(l as u16) as i16),
        };
        last = Some(last.map_or(ext, |l| l.max(ext)));
        let (layer, n, key, idx, count) = parse(&r.payload);
        let at = *first_seq_of
            .entry((layer, n))
            .and_modify(|s| *s = (*s).min(ext))
            .or_insert(ext);
        let f = frames.entry(at).or_insert(Frame {
            layer,
            n,
            key: false,
            count,
            got: HashSet::new(),
            done_at: r.at,
        });
        f.key |= key;
        f.got.insert(idx);
        f.done_at = f.done_at.max(r.at);
    }
    // A frame first seen through a retransmission may sit under two keys: keep the earliest.
    let mut seen = HashSet::new();
    let mut out: Vec<(Instant, usize)> = Vec::new();
    let mut prev: Option<(usize, u32, bool)> = None;
    for f in frames.values() {
        if !seen.insert((f.layer, f.n)) {
            continue;
        }
        let follows = prev == Some((f.layer, f.n.wrapping_sub(1), true));
        let ok = f.got.len() == usize::from(f.count) && (f.key || follows);
        if ok {
            let ready = out.last().map_or(f.done_at, |&(t, _)| t.max(f.done_at));
            out.push((ready, f.layer));
        }
        prev = Some((f.layer, f.n, ok));
    }
    out
}

/// The longest gap between decodable frames (as [`decoded`] gives them), and when it began
/// (zero at the first frame when there are fewer than two).
fn longest_stall(frames: &[(Instant, usize)]) -> (Duration, Instant) {
    let start = frames.first().map_or_else(Instant::now, |f| f.0);
    frames
        .windows(2)
        .map(|w| (w[1].0 - w[0].0, w[0].0))
        .fold(
            (Duration::ZERO, start),
            |a, b| if b.0 > a.0 { b } else { a },
        )
}

/// What the student's side reports: the teacher's media as received, the weak-link notices
/// it was sent, when it connected and when the teacher stopped.
struct StudentRun {
    video: Vec<Received>,
    audio: Vec<Received>,
    /// `audio_only` of each `weak_link` message, with when it came.
    weak_link: Vec<(Instant, bool)>,
    connected_at: Instant,
    stopped_at: Instant,
}

impl StudentRun {
    /// How long after the student connected each `weak_link` notice came, with `audio_only`.
    fn notices(&self) -> Vec<(Duration, bool)> {
        self.weak_link
            .iter()
            .map(|&(t, a)| (t.saturating_duration_since(self.connected_at), a))
            .collect()
    }

    /// Packets of `track` that arrived between `from` and `to` after the student connected.
    fn between(&self, track: &[Received], from: Duration, to: Duration) -> usize {
        let (from, to) = (self.connected_at + from, self.connected_at + to);
        track.iter().filter(|r| r.at >= from && r.at < to).count()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The shape of the link to the student: a `tbf` rate, burst and queue (as `tc` spells them).
type Shape = (&'static str, &'static str, &'static str);

/// A change to the link to the student.
#[derive(Clone, Copy)]
enum Change {
    /// Shaped anew.
    Shape(Shape),
    /// Dead both ways (the server's end of the veth down: a cable pulled, a radio link lost).
    Cut,
    /// Back, shaped as before.
    Mend,
}

/// Runs a lesson of `mode` (as the REST API spells it) for [`RUN`] with the student behind a
/// link of shape `start`, which changes by each of `changes` when that long has passed since
/// the student connected.
fn lesson_over(
    mode: &'static str,
    start: Shape,
    changes: &'static [(Duration, Change)],
) -> StudentRun {
    let tbf = |verb: &str, (rate, burst, latency): Shape| {
        sh(&[
            "tc", "qdisc", verb, "dev", LINK, "root", "tbf", "rate", rate, "burst", burst,
            "latency", latency,
        ])
    };
    let (join_tx, join_rx) = mpsc::channel::<(SocketAddr, String)>();
    let (connected_tx, connected_rx) = mpsc::channel::<Instant>();
    let (stop_tx, stop_rx) = mpsc::channel::<Instant>();
    let shape = move |dev: &str| {
        assert_eq!(dev, LINK);
        tbf("add", start);
    };
    let server_side = move || {
        runtime().block_on(async move {
            let server = TestServer::start_with(fresh_dir(), |c| {
                c.http = SocketAddr::new(A_IP, 0);
                c.udp = SocketAddr::new(A_IP, 0);
            })
            .await;
            let lesson = server.create_lesson(mode).await;
            let t = server.token(&lesson, "teacher", "teacher").await;
            let mut teacher =
                TestClient::join_at(server.http, &t, "teacher", Publish::Simulcast, A_IP).await;
            teacher.wait_connected().await;
            server
                .wait_stats("the teacher's tracks", |s| s.routes == 2)
                .await;
            let s = server.token(&lesson, "student", "student").await;
            join_tx.send((server.http, s)).unwrap();

            let audio = teacher.audio.as_ref().expect("teacher audio");
            let layers: Vec<&LocalTrack> = teacher.layers.iter().chain(&teacher.video).collect();
            let mut tick = tokio::time::interval(TICK);
            let mut connected_at: Option<Instant> = None;
            let mut changes = changes.iter().peekable();
            for k in 0u32.. {
                tick.tick().await;
                if connected_at.is_none() {
                    connected_at = connected_rx.try_recv().ok();
                }
                if let Some(at) = connected_at {
                    if at.elapsed() >= RUN {
                        break;
                    }
                    if let Some((_, change)) = changes.next_if(|(after, _)| at.elapsed() >= *after)
                    {
                        match *change {
                            Change::Shape(shape) => tbf("change", shape),
                            Change::Cut => sh(&["ip", "link", "set", LINK, "down"]),
                            Change::Mend => sh(&["ip", "link", "set", LINK, "up"]),
                        }
                    }
                }
                assert!(k < 5_000, "the student never connected");
                audio.send(payload(0xA0, k, 60)).await;
                if k % 2 == 1 {
                    continue;
                }
                let n = k / 2;
                for (layer, track) in layers.iter().enumerate() {
                    let count = PACKETS[layer].0;
                    for idx in 0..count {
                        track
                            .send_rtp(packet(layer, n, idx), idx + 1 == count, Some(n * 3600))
                            .await;
                    }
                }
            }
            stop_tx.send(Instant::now()).unwrap();
            server.stop().await;
        })
    };
    let student_side = move || {
        let (http, token) = join_rx.recv().expect("the server side got going");
        runtime().block_on(async move {
            let mut student =
                TestClient::join_at(http, &token, "student", Publish::Nothing, B_IP).await;
            student.wait_connected().await;
            let connected_at = Instant::now();
            connected_tx.send(connected_at).unwrap();
            let tracks = student.tracks_from("teacher", 2).await;
            let video = track_id(&tracks, "teacher", MediaKind::Video);
            let audio = track_id(&tracks, "teacher", MediaKind::Audio);
            let mut stop = tokio::task::spawn_blocking(move || stop_rx.recv());
            let mut weak_link = Vec::new();
            let stopped_at = loop {
                tokio::select! {
                    stopped = &mut stop => break stopped.unwrap().expect("the teacher finished"),
                    Some(msg) = student.events.recv() => {
                        if let ServerMessage::WeakLink { audio_only } = msg {
                            weak_link.push((Instant::now(), audio_only));
                        }
                    }
                }
            };
            // Whatever was still queued on the link.
            tokio::time::sleep(Duration::from_millis(300)).await;
            StudentRun {
                video: student.received(&video),
                audio: student.received(&audio),
                weak_link,
                connected_at,
                stopped_at,
            }
        })
    };
    run_linked(shape, server_side, student_side).1
}

/// Packets per second of each layer, by second since the student connected: what a failure
/// message shows.
fn timeline(run: &StudentRun) -> BTreeMap<u64, [usize; 3]> {
    let mut timeline = BTreeMap::<u64, [usize; 3]>::new();
    for r in &run.video {
        let second = r.at.saturating_duration_since(run.connected_at).as_secs();
        timeline.entry(second).or_default()[parse(&r.payload).0] += 1;
    }
    timeline
}

#[test]
fn at_300_kbps_a_student_gets_the_low_layer_and_its_video_never_stalls() {
    let run = lesson_over("lecture", ("300kbit", "16kb", "50ms"), &[]);

    let frames = decoded(&run.video);
    eprintln!("packets per second per layer: {:?}", timeline(&run));
    let mut per_layer = [0usize; 3];
    let settled = run.connected_at + Duration::from_secs(5);
    for &(t, layer) in &frames {
        if t >= settled {
            per_layer[layer] += 1;
        }
    }
    let first = frames.first().expect("the student decoded some video").0;
    let stall = longest_stall(&frames);
    let tail = run
        .stopped_at
        .saturating_duration_since(frames.last().unwrap().0);
    eprintln!(
        "narrow link: {} packets, {} frames decoded; first after {:?}; longest stall {:?} \
         from {:?} in; at the end {:?} since the last; after 5 s, frames per layer {per_layer:?}",
        run.video.len(),
        frames.len(),
        first - run.connected_at,
        stall.0,
        stall.1 - run.connected_at,
        tail,
    );
    assert!(
        first - run.connected_at < Duration::from_secs(5),
        "the first decodable frame took too long"
    );
    assert!(
        stall.0 <= MAX_STALL && tail <= MAX_STALL,
        "the video stalled for longer than {MAX_STALL:?}"
    );
    let total: usize = per_layer.iter().sum();
    assert!(
        per_layer[0] * 4 >= total * 3,
        "mostly the low layer once settled: {per_layer:?}"
    );
    assert!(
        per_layer[2] * 20 <= total,
        "next to nothing of the high layer: {per_layer:?}"
    );
}

#[test]
fn a_link_that_narrows_to_60_kbps_carries_sound_only_and_video_returns_when_it_widens() {
    const WIDE: Shape = ("10mbit", "64kb", "50ms");
    const NARROW: Shape = ("60kbit", "4kb", "50ms");
    const NARROWS: Duration = Duration::from_secs(4);
    const WIDENS: Duration = Duration::from_secs(11);
    let run = lesson_over(
        "lecture",
        WIDE,
        &[
            (NARROWS, Change::Shape(NARROW)),
            (WIDENS, Change::Shape(WIDE)),
        ],
    );
    let since = |t: Instant| t.saturating_duration_since(run.connected_at);
    let notices = run.notices();
    eprintln!(
        "narrowing link: weak_link notices {notices:?}; packets per second per layer: {:?}",
        timeline(&run)
    );
    let told_audio_only = notices
        .iter()
        .find(|(_, audio_only)| *audio_only)
        .expect("the student was told it gets sound only")
        .0;
    assert!(
        told_audio_only > NARROWS && told_audio_only < NARROWS + Duration::from_secs(5),
        "told soon after the link narrowed: {told_audio_only:?}"
    );
    assert_eq!(
        notices.last().map(|n| n.1),
        Some(false),
        "and told when video is back: {notices:?}"
    );
    // 60 kbps carries the teacher's voice (~45 kbps with headers): most of its 50 packets a
    // second arrive while the video is held back.
    let quiet = (told_audio_only + Duration::from_secs(1), WIDENS);
    let audio = run.between(&run.audio, quiet.0, quiet.1);
    let expected = (quiet.1 - quiet.0).as_millis() as usize / 20;
    assert!(
        audio * 10 >= expected * 8,
        "audio goes on: {audio} of {expected} packets"
    );
    assert!(
        run.between(&run.video, quiet.0 + Duration::from_secs(1), quiet.1) <= 5,
        "no video over the narrow link"
    );
    // Wide again: video decodes again within 5 s, every frame from then on.
    let back = decoded(&run.video)
        .into_iter()
        .filter(|&(t, _)| since(t) > WIDENS)
        .count();
    let possible = (RUN - WIDENS - Duration::from_secs(5)).as_millis() as usize / 40;
    assert!(
        back >= possible,
        "video decodes again after the link widens: {back} frames"
    );
}

/// A link that dies before the student's first receiver report: the first report after it
/// comes back says nearly everything sent was lost (everything sent into the dead link). That
/// is the outage, not the link: video must go on at once, not go to sound only.
#[test]
fn a_link_dead_both_ways_for_a_few_seconds_gets_its_video_back_at_once() {
    // After the first keyframe reached the student (one comes every 480 ms), before its first
    // receiver report (about a second in).
    const CUT: Duration = Duration::from_millis(700);
    const MENDED: Duration = Duration::from_secs(8);
    let run = lesson_over(
        "lecture",
        ("10mbit", "64kb", "50ms"),
        &[(CUT, Change::Cut), (MENDED, Change::Mend)],
    );
    let since = |t: Instant| t.saturating_duration_since(run.connected_at);
    let frames: Vec<Duration> = decoded(&run.video)
        .into_iter()
        .map(|(t, _)| since(t))
        .collect();
    let first_back = frames.iter().find(|&&t| t > MENDED);
    eprintln!(
        "dead link: weak_link notices {:?}; first frame after it {first_back:?}; packets per \
         second per layer: {:?}",
        run.notices(),
        timeline(&run)
    );
    assert!(
        run.between(&run.video, CUT + Duration::from_millis(200), MENDED) == 0,
        "the link was dead"
    );
    assert!(
        run.weak_link.is_empty(),
        "the student was never sent to sound only"
    );
    // From 2 s after it came back, every frame.
    let back = frames
        .iter()
        .filter(|&&t| t > MENDED + Duration::from_secs(2))
        .count();
    let possible = (RUN - MENDED - Duration::from_secs(3)).as_millis() as usize / 40;
    assert!(
        back >= possible,
        "video decodes again soon after the link comes back: {back} of {possible} frames"
    );
}

/// How long each of the teacher's sound packets waited on the way, beyond the least any did
/// (the link's queue): by when it was sent, since the student connected. The teacher sends
/// packet `k` [`TICK`] after packet `k - 1`.
fn audio_queueing(run: &StudentRun) -> Vec<(Duration, Duration)> {
    let sent_and_came: Vec<(Duration, Instant)> = run
        .audio
        .iter()
        .map(|r| {
            let k = u32::from_be_bytes(r.payload[2..6].try_into().unwrap());
            (TICK * k, r.at)
        })
        .collect();
    let Some(base) = sent_and_came.iter().map(|&(sent, at)| at - sent).min() else {
        return Vec::new();
    };
    let first_sent = base.saturating_duration_since(run.connected_at);
    sent_and_came
        .into_iter()
        .map(|(sent, at)| (first_sent + sent, at - sent - base))
        .collect()
}

/// A thin link that queues a whole second before it drops (a cheap router's deep buffer, common
/// on rural uplinks): loss comes only when the queue is full, after sound and picture are a
/// second late, and a controller that waits for loss climbs to a layer the link cannot carry
/// (clean reports while the queue fills). In a one-to-one lesson the server also estimates the
/// student's link from transport-wide feedback: the estimate falls as the queue grows, and the
/// video steps down before the loss. Measured when written (one-to-one / the same link in a
/// lecture, loss alone): the longest stretch with sound over 500 ms late 1.8 s / 4.9 s, the
/// longest video stall 0.08 s / 5-6 s (BENCHMARKS.md).
#[test]
fn behind_a_deep_queue_a_tutored_student_is_stepped_down_before_it_overflows() {
    const DEEP: Shape = ("300kbit", "16kb", "1000ms");
    const LATE: Duration = Duration::from_millis(500);
    const LONGEST_LATE: Duration = Duration::from_secs(3);
    let run = lesson_over("one_to_one", DEEP, &[]);
    let mut late = (Duration::ZERO, None::<Duration>);
    for (sent, waited) in audio_queueing(&run) {
        if waited > LATE {
            let since = *late.1.get_or_insert(sent);
            late.0 = late.0.max(sent - since);
        } else {
            late.1 = None;
        }
    }
    let frames = decoded(&run.video);
    let stall = longest_stall(&frames).0;
    let mut per_layer = [0usize; 3];
    for &(_, layer) in &frames {
        per_layer[layer] += 1;
    }
    eprintln!(
        "deep queue: longest stretch of sound over {LATE:?} late {:?}; longest video stall \
         {stall:?}; frames per layer {per_layer:?}; packets per second per layer {:?}",
        late.0,
        timeline(&run),
    );
    assert!(
        !frames.is_empty() && stall <= MAX_STALL,
        "the video stalled for longer than {MAX_STALL:?}"
    );
    assert!(
        late.0 <= LONGEST_LATE,
        "sound was over {LATE:?} late for {:?}: the queue was let fill",
        late.0
    );
    let total: usize = per_layer.iter().sum();
    assert!(
        per_layer[2] * 20 <= total,
        "next to nothing of the high layer: {per_layer:?}"
    );
}
