//! The start of synthetic H.264 payloads (RFC 6184), as the server reads a simulcast
//! publisher's video: a keyframe's SPS (for the layer's size) and PPS aggregated in front of
//! its IDR slice, a delta frame's non-IDR slice. What follows the slice header is each test's.

/// SPSs from real streams, by the size they state: High 320x192 cropped to 320x180 and High
/// 1280x720 (Eyevinn/mp4ff's tests), Constrained Baseline 720x404 (videojs/mux.js's tests).
pub const SPS: [((u16, u16), &str); 3] = [
    (
        (320, 180),
        "6764000dacd941419f9e10000003001000000303c0f1429960",
    ),
    (
        (720, 404),
        "6742c01ed900b435f9e10000030001000003003c0f162e48",
    ),
    (
        (1280, 720),
        "67640020accac05005bb0169e0000003002000000c9c4c000432380008647c12401cb1c31380",
    ),
];

/// A one-packet H.264 frame whose slice carries `body`: a keyframe of `size` (one of
/// [`SPS`]'s) is a STAP-A packet of SPS, PPS and IDR slice; a delta frame, a single non-IDR
/// slice.
pub fn h264_frame(keyframe: Option<(u16, u16)>, body: &[u8]) -> Vec<u8> {
    let Some(size) = keyframe else {
        return [&[0x41, 0x9a][..], body].concat();
    };
    let (_, hex) = SPS.iter().find(|(s, _)| *s == size).expect("a known size");
    let sps: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let pps = vec![0x68, 0xce, 0x38, 0x80];
    let idr = [&[0x65, 0x88][..], body].concat();
    let mut p = vec![0x78];
    for nal in [sps, pps, idr] {
        p.extend((nal.len() as u16).to_be_bytes());
        p.extend(nal);
    }
    p
}
