//! The start of synthetic H.264 payloads (RFC 6184), as the server reads a simulcast
//! publisher's video: a keyframe's SPS (for the layer's size) and PPS aggregated in front of
//! its IDR slice, a delta frame's non-IDR slice. What follows the slice header is each test's.

include!("../../sfu/testdata/real_sps.rs");

/// A one-packet H.264 frame whose slice carries `body`: a keyframe of `size` (one of
/// [`REAL_SPS`]'s) is a STAP-A packet of SPS, PPS and IDR slice; a delta frame, a single non-IDR
/// slice.
pub fn h264_frame(keyframe: Option<(u16, u16)>, body: &[u8]) -> Vec<u8> {
    let Some(size) = keyframe else {
        return [&[0x41, 0x9a][..], body].concat();
    };
    let (_, sps) = REAL_SPS
        .iter()
        .find(|(s, _)| *s == size)
        .expect("a known size");
    let pps = vec![0x68, 0xce, 0x38, 0x80];
    let idr = [&[0x65, 0x88][..], body].concat();
    let mut p = vec![0x78];
    for nal in [sps.to_vec(), pps, idr] {
        p.extend((nal.len() as u16).to_be_bytes());
        p.extend(nal);
    }
    p
}
