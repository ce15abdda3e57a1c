//! The start of synthetic VP8 payloads, as the server reads a publisher's video: the payload
//! descriptor (for simulcast's continuous picture ids) and the keyframe header (for layer
//! sizes). What follows it is each test's own.

/// Where a packet stands in its frame.
pub enum Vp8Part {
    /// The frame's first packet, of a keyframe of this size (width, height).
    Keyframe(u16, u16),
    /// The first packet of a delta frame.
    Delta,
    /// A later packet of a frame.
    Continuation,
}

/// A VP8 payload descriptor with a 15-bit PictureID and TL0PICIDX, the start bit on a frame's
/// first packet, followed there by a keyframe header or a delta frame's tag.
pub fn vp8_start(picture_id: u16, tl0_pic_idx: u8, part: Vp8Part) -> Vec<u8> {
    let start = if matches!(part, Vp8Part::Continuation) {
        0x00
    } else {
        0x10
    };
    let pid = picture_id & 0x7fff;
    let mut p = vec![
        0x80 | start,
        0xe0,
        0x80 | (pid >> 8) as u8,
        pid as u8,
        tl0_pic_idx,
        0x00,
    ];
    match part {
        Vp8Part::Keyframe(w, h) => {
            p.extend([0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
            p.extend(w.to_le_bytes());
            p.extend(h.to_le_bytes());
        }
        Vp8Part::Delta => p.extend([0x01, 0x00, 0x00]),
        Vp8Part::Continuation => {}
    }
    p
}
