//! `jinke-ceiling`: what one core of this machine can do at best per forwarded packet — AES-128-GCM
//! encryption of a 1200-byte packet (SRTP's AEAD profile) and sending it over loopback UDP, plain,
//! batched with `sendmmsg`, and with UDP GSO. The SFU's figures are compared against this; and
//! against the same sends in a lecture's shape (`lecture_shape`: each student its own datagrams),
//! the most a fan-out can get from this kernel.
//!
//! Pin it to a core (`taskset -c 0 jinke-ceiling`). Packets go to a socket on 127.0.0.1 that
//! nobody reads: the kernel's full delivery path runs, and the queue overflow drops them.

use std::mem::{size_of, zeroed};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use jinke_sfu::udp::{SegmentControl, set_segment_size};
use serde::Serialize;

const PACKET: usize = 1200;
const BATCH: usize = 16;
const RUN: Duration = Duration::from_millis(1500);

#[derive(Serialize)]
struct Row {
    what: &'static str,
    ns_per_packet: f64,
    packets_per_second: f64,
}

fn measure(what: &'static str, per_call: usize, mut f: impl FnMut()) -> Row {
    // Warm up, then count calls in a fixed time.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        f();
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..64 {
            f();
        }
        calls += 64;
    }
    let packets = calls as f64 * per_call as f64;
    let secs = start.elapsed().as_secs_f64();
    Row {
        what,
        ns_per_packet: secs * 1e9 / packets,
        packets_per_second: packets / secs,
    }
}

fn sockaddr(addr: std::net::SocketAddr) -> libc::sockaddr_in {
    let std::net::SocketAddr::V4(v4) = addr else {
        panic!("IPv4 loopback expected");
    };
    // SAFETY: sockaddr_in is plain data; zero is a valid starting value.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = v4.port().to_be();
    sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
    sa
}

/// SRTP-GCM nonces for the rows that seal: each seal its own, from a counter as SRTP's
/// packet index would give.
#[derive(Default)]
struct Nonces(u32);

impl Nonces {
    fn next(&mut self) -> Nonce {
        self.0 = self.0.wrapping_add(1);
        let mut iv = [0u8; 12];
        iv[8..].copy_from_slice(&self.0.to_be_bytes());
        Nonce::assume_unique_for_key(iv)
    }
}

/// Students in [`lecture_shape`], each a socket nobody reads.
const STUDENTS: usize = 64;
/// A video packet's and an audio packet's size in [`lecture_shape`] (the bench's clip sends
/// ~880-byte video packets and ~80-byte Opus ones).
const VIDEO: usize = 900;
const AUDIO: usize = 100;
/// A video frame's packets, and the frames and audio packets in a round (30 and 50 a second).
const FRAME: usize = 3;
const FRAMES: usize = 3;
const AUDIOS: usize = 5;

/// What a lecture's fan-out can do at best with this kernel: the ceiling's GCM and GSO, in the
/// shape a lecture has. Each student gets its own datagrams: a video frame as one GSO send of
/// its packets, each audio packet alone, sealed one by one, 64 messages to a `sendmmsg` (as
/// the SFU batches them). The ceiling's 16 segments to one destination is a shape no fan-out
/// has: this row is the bound for the SFU's figures.
fn lecture_shape(key: &LessSafeKey, header: &[u8]) -> anyhow::Result<Row> {
    let per_student = FRAMES * FRAME * VIDEO + AUDIOS * AUDIO;
    let mut data = vec![0x5au8; STUDENTS * per_student];
    let sinks = (0..STUDENTS)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let addrs = sinks
        .iter()
        .map(|s| s.local_addr().map(sockaddr))
        .collect::<Result<Vec<_>, _>>()?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    // Each message: its student, its bytes and, for a frame, its segment size.
    let mut plan: Vec<(usize, std::ops::Range<usize>, Option<u16>)> = Vec::new();
    let mut at = 0;
    for student in 0..STUDENTS {
        for _ in 0..FRAMES {
            plan.push((student, at..at + FRAME * VIDEO, Some(VIDEO as u16)));
            at += FRAME * VIDEO;
        }
        for _ in 0..AUDIOS {
            plan.push((student, at..at + AUDIO, None));
            at += AUDIO;
        }
    }
    let mut controls: Vec<SegmentControl> = vec![[0; 4]; plan.len()];
    let mut iovs: Vec<libc::iovec> = plan
        .iter()
        .map(|(_, bytes, _)| libc::iovec {
            iov_base: data[bytes.clone()].as_mut_ptr().cast(),
            iov_len: bytes.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(plan.len());
    for (((student, _, segment), iov), control) in plan.iter().zip(&mut iovs).zip(&mut controls) {
        // SAFETY: mmsghdr is plain data; its pointers refer to `addrs`, `iovs`, `controls` and
        // `data`, which are neither moved nor resized while it is used.
        let mut m: libc::mmsghdr = unsafe { zeroed() };
        m.msg_hdr.msg_name = (&addrs[*student] as *const libc::sockaddr_in) as *mut _;
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        if let Some(segment) = segment {
            set_segment_size(&mut m.msg_hdr, control, *segment);
        }
        msgs.push(m);
    }
    let datagrams = STUDENTS * (FRAMES * FRAME + AUDIOS);
    let fd = sender.as_raw_fd();
    let mut nonces = Nonces::default();
    let row = measure("GCM + a lecture's sends", datagrams, || {
        for (_, bytes, segment) in &plan {
            let step = segment.map_or(AUDIO, usize::from);
            for packet in data[bytes.clone()].chunks_mut(step) {
                let (plain, tag) = packet.split_at_mut(step - 16);
                let sealed = key
                    .seal_in_place_separate_tag(nonces.next(), Aad::from(header), plain)
                    .expect("seal");
                tag.copy_from_slice(sealed.as_ref());
            }
        }
        for chunk in msgs.chunks_mut(64) {
            // SAFETY: each header points at live buffers (above); the fd is ours.
            unsafe { libc::sendmmsg(fd, chunk.as_mut_ptr(), chunk.len() as u32, 0) };
        }
    });
    drop(sinks);
    Ok(row)
}

fn main() -> anyhow::Result<()> {
    let json = std::env::args().any(|a| a == "--json");
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7u8; 16]).expect("key"));
    let mut packet = vec![0x5au8; PACKET];
    let header = [0x80u8, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
    let mut nonces = Nonces::default();
    let mut seal = |buf: &mut Vec<u8>| {
        buf.truncate(PACKET - 16);
        key.seal_in_place_append_tag(nonces.next(), Aad::from(&header), buf)
            .expect("seal");
    };

    let sink = UdpSocket::bind("127.0.0.1:0")?;
    let dest = sink.local_addr()?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let fd = sender.as_raw_fd();
    let sa = sockaddr(dest);

    let mut rows = vec![measure("AES-128-GCM seal, 1200 B", 1, || seal(&mut packet))];
    rows.push(measure("sendto, 1200 B", 1, || {
        let _ = sender.send_to(&packet, dest);
    }));

    // sendmmsg: BATCH datagrams per system call.
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: packet.as_ptr() as *mut _,
            iov_len: PACKET,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: mmsghdr is plain data; the pointers set below outlive the calls.
            let mut m: libc::mmsghdr = unsafe { zeroed() };
            m.msg_hdr.msg_name = &sa as *const _ as *mut _;
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    rows.push(measure("sendmmsg x16, 1200 B", BATCH, || {
        // SAFETY: msgs points at BATCH valid headers with valid iovecs and address.
        unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0) };
    }));

    // UDP GSO: one send of BATCH segments of PACKET bytes to one destination.
    let mut super_buf = vec![0x5au8; PACKET * BATCH];
    let gso = |buf: &[u8]| {
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut _,
            iov_len: buf.len(),
        };
        let mut control: SegmentControl = [0; 4];
        // SAFETY: msghdr is plain data; every pointer in it refers to a live local.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = &sa as *const _ as *mut _;
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        set_segment_size(&mut msg, &mut control, PACKET as u16);
        // SAFETY: msg points at live locals (above); the fd is ours.
        unsafe { libc::sendmsg(fd, &msg, 0) }
    };
    if gso(&super_buf) < 0 {
        eprintln!("UDP GSO unavailable: {}", std::io::Error::last_os_error());
    } else {
        rows.push(measure("UDP GSO x16, 1200 B", BATCH, || {
            gso(&super_buf);
        }));
        let mut scratch = Vec::with_capacity(PACKET);
        rows.push(measure("GCM seal + GSO x16 (ceiling)", BATCH, || {
            for seg in super_buf.chunks_mut(PACKET) {
                scratch.clear();
                scratch.extend_from_slice(&seg[..PACKET - 16]);
                seal(&mut scratch);
                seg.copy_from_slice(&scratch);
            }
            gso(&super_buf);
        }));
        rows.push(lecture_shape(&key, &header)?);
    }
    let mut scratch = Vec::with_capacity(PACKET);
    rows.push(measure("GCM seal + sendmmsg x16", BATCH, || {
        for _ in 0..BATCH {
            scratch.clear();
            scratch.extend_from_slice(&packet[..PACKET - 16]);
            seal(&mut scratch);
        }
        // SAFETY: as for sendmmsg above.
        unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0) };
    }));

    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<32}{:>12}{:>16}",
            "per packet, one core", "ns/packet", "packets/s"
        );
        for r in &rows {
            println!(
                "{:<32}{:>12.0}{:>16.0}",
                r.what, r.ns_per_packet, r.packets_per_second
            );
        }
    }
    drop(sink);
    Ok(())
}
