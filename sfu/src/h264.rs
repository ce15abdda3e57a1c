//! What the SFU reads of a simulcast H.264 RTP payload (RFC 6184) to switch layers, as it reads
//! a VP8 descriptor: whether the packet starts a keyframe (a subscriber may switch to the layer
//! there) and the picture size that keyframe's sequence parameter set (SPS) states (so each
//! subscriber gets the layer that fits its view). Browsers send an SPS (with the PPS) in front
//! of every IDR picture, in one STAP-A packet or as single NAL unit packets.
//!
//! Only packets that carry an SPS are parsed beyond their first bytes; anything malformed reads
//! as "not a keyframe, size unknown".

/// NAL unit types (H.264 table 7-1, RFC 6184 table 1).
const IDR: u8 = 5;
const SPS: u8 = 7;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// What one H.264 packet says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct H264Info {
    /// It carries an SPS or an IDR slice (for a fragmented slice, its first fragment).
    pub keyframe: bool,
    /// Width and height (after cropping) from an SPS it carries.
    pub size: Option<(u16, u16)>,
}

impl H264Info {
    /// Reads a packet's payload.
    pub fn parse(payload: &[u8]) -> H264Info {
        let mut info = H264Info::default();
        let mut note = |nal: &[u8]| match nal.first().map(|b| b & 0x1f) {
            Some(SPS) => {
                info.keyframe = true;
                info.size = info.size.or_else(|| sps_size(nal));
            }
            Some(IDR) => info.keyframe = true,
            _ => {}
        };
        match payload.first().map(|b| b & 0x1f) {
            Some(1..=23) => note(payload),
            Some(STAP_A) => {
                let mut rest = &payload[1..];
                while let [hi, lo, tail @ ..] = rest {
                    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                    let Some((nal, next)) = tail.split_at_checked(len) else {
                        break;
                    };
                    note(nal);
                    rest = next;
                }
            }
            // A fragment's own type is in the FU header; only the first fragment (S bit) starts
            // the NAL unit. No SPS is parsed from a fragment (SPSs are a few dozen bytes).
            Some(FU_A) => {
                if let Some(&fu) = payload.get(1)
                    && fu & 0x80 != 0
                    && fu & 0x1f == IDR
                {
                    info.keyframe = true;
                }
            }
            _ => {}
        }
        info
    }
}

/// The picture size an SPS NAL unit (with its one-byte header) states, after cropping.
fn sps_size(nal: &[u8]) -> Option<(u16, u16)> {
    // Emulation prevention: 00 00 03 stands for 00 00 in the raw bytes.
    let mut rbsp = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits { data: &rbsp, at: 0 };
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.flag()?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.flag()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            for _ in 0..r.ue()? {
                r.se()?; // offset_for_ref_frame
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_in_mbs = r.ue()? + 1;
    let height_in_map_units = r.ue()? + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.flag()?; // mb_adaptive_frame_field_flag
    }
    r.flag()?; // direct_8x8_inference_flag
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let mut width = width_in_mbs * 16;
    let mut height = height_in_map_units * 16 * field_factor;
    if r.flag()? {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (unit_x, unit_y) = match chroma_array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        width = width.checked_sub(unit_x * (left + right))?;
        height = height.checked_sub(unit_y * field_factor * (top + bottom))?;
    }
    let size = (u16::try_from(width).ok()?, u16::try_from(height).ok()?);
    (size.0 > 0 && size.1 > 0).then_some(size)
}

/// Reads past a scaling list of `size` entries (H.264 7.3.2.1.1.1).
fn skip_scaling_list(r: &mut Bits, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// A big-endian bit reader over raw SPS bytes. Values are u64 so that sizes from garbage
/// cannot overflow before they are checked.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u64> {
        let byte = self.data.get(self.at / 8)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u64::from(bit))
    }

    fn flag(&mut self) -> Option<bool> {
        Some(self.bit()? == 1)
    }

    fn bits(&mut self, n: u32) -> Option<u64> {
        (0..n).try_fold(0, |v, _| Some(v << 1 | self.bit()?))
    }

    /// Unsigned Exp-Golomb (ue(v)).
    fn ue(&mut self) -> Option<u64> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1 << zeros) - 1 + self.bits(zeros)?)
    }

    /// Signed Exp-Golomb (se(v)).
    fn se(&mut self) -> Option<i64> {
        let k = self.ue()? as i64;
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    include!("../testdata/real_sps.rs");

    /// The SPS of [`REAL_SPS`] that states `size`.
    fn real_sps(size: (u16, u16)) -> &'static [u8] {
        REAL_SPS.iter().find(|(s, _)| *s == size).unwrap().1
    }

    #[test]
    fn reads_the_size_an_sps_states() {
        for (size, sps) in REAL_SPS {
            assert_eq!(sps_size(sps), Some(size));
        }
    }

    #[test]
    fn an_sps_and_pps_aggregated_start_a_keyframe() {
        let sps = real_sps((720, 404));
        let pps = [0x68, 0xce, 0x38, 0x80];
        let mut stap = vec![0x78];
        for nal in [sps, &pps[..]] {
            stap.extend((nal.len() as u16).to_be_bytes());
            stap.extend(nal);
        }
        assert_eq!(
            H264Info::parse(&stap),
            H264Info {
                keyframe: true,
                size: Some((720, 404))
            }
        );
        // Single NAL unit packets: the SPS, then the IDR slice.
        assert_eq!(H264Info::parse(sps).size, Some((720, 404)));
        assert!(H264Info::parse(&[0x65, 0x88, 0x84]).keyframe);
    }

    #[test]
    fn only_the_first_fragment_of_an_idr_slice_starts_a_keyframe() {
        let first = [0x7c, 0x85, 0x88, 0x84];
        let middle = [0x7c, 0x05, 0x11, 0x22];
        let delta = [0x7c, 0x81, 0x9a, 0x00];
        assert!(H264Info::parse(&first).keyframe);
        assert!(!H264Info::parse(&middle).keyframe);
        assert!(!H264Info::parse(&delta).keyframe);
        assert!(!H264Info::parse(&[0x41, 0x9a, 0x00]).keyframe, "a P slice");
    }

    #[test]
    fn broken_packets_read_as_nothing() {
        let sps = real_sps((1280, 720));
        for cut in 0..sps.len() {
            let info = H264Info::parse(&sps[..cut]);
            assert!(
                matches!(info.size, None | Some((1280, 720))),
                "cut at {cut}: {info:?}"
            );
        }
        // A STAP-A whose length runs past the end, an SPS whose first Exp-Golomb number never
        // ends, an empty payload.
        assert_eq!(
            H264Info::parse(&[0x78, 0x00, 0x30, 0x67, 0x42]),
            H264Info::default()
        );
        let endless = [0x67, 0x42, 0x00, 0x1e, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(H264Info::parse(&endless).size, None);
        assert_eq!(H264Info::parse(&[]), H264Info::default());
    }

    #[test]
    fn random_bytes_never_panic_nor_state_an_empty_picture() {
        // A fixed xorshift sequence: SPS, STAP-A and FU-A headers with random bodies.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for i in 0..20_000 {
            let len = usize::from(next()) % 64;
            let mut p: Vec<u8> = (0..len).map(|_| next()).collect();
            if let Some(first) = p.first_mut() {
                *first = [0x67, 0x78, 0x7c, *first][i % 4];
            }
            let info = H264Info::parse(&p);
            assert!(info.size.is_none_or(|(w, h)| w > 0 && h > 0), "{p:02x?}");
        }
    }
}
