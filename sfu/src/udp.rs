//! The UDP calls the shard needs beyond `std`: batched receiving (`recvmmsg`) and batched
//! sending. The kernel's per-datagram work dominates sending (BENCHMARKS.md: `sendto`
//! ~3 us, `sendmmsg` ~2.4 us, UDP GSO ~0.55 us per 1200-byte packet), so the shard queues what a
//! poll round produces and sends it at once with `sendmmsg`: each run of datagrams to one
//! destination (a video frame's packets to one subscriber) is one GSO message of the batch.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

/// Most segments in one GSO send (the kernel allows 64; keep the super-packet under 64 KiB).
const MAX_SEGMENTS: usize = 40;
/// Most datagrams in one `sendmmsg`.
const MMSG_BATCH: usize = 64;

/// Asks for `bytes` of kernel buffer in `direction` (`SO_RCVBUF` or `SO_SNDBUF`); with privileges
/// past `net.core.rmem_max`/`wmem_max` (the `FORCE` variants), else up to them. Returns the size
/// the kernel granted.
pub fn grow_buffer(socket: &UdpSocket, receive: bool, bytes: usize) -> usize {
    let (force, plain) = if receive {
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)
    } else {
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)
    };
    let value = bytes as libc::c_int;
    for opt in [force, plain] {
        // SAFETY: setsockopt with a valid int option on our own fd.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
    }
    let mut granted: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a valid int on our own fd.
    unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            plain,
            (&mut granted as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    granted.max(0) as usize
}

/// Largest datagram received (anything larger is not WebRTC traffic anyone here produces).
pub const MAX_DATAGRAM: usize = 2048;

/// Largest buffer a GRO receive fills (the kernel coalesces up to 64 KiB).
const MAX_GRO: usize = 65536;
/// Room per received message for one `UDP_GRO` control message (an int, 24 bytes with its
/// header) and one `SO_TIMESTAMPNS` message (a timespec, 32 bytes).
const CONTROL: usize = 64;

/// Receives every datagram queued on a socket, up to a batch, with one `recvmmsg` call and
/// without blocking: the shard (and the load generator's clients) take a video frame's packets
/// in one system call instead of one each plus a last one that finds the queue empty.
///
/// With [`RecvBatch::with_gro`], on a socket where [`enable_gro`] succeeded, the kernel may
/// deliver several datagrams from one sender as one buffer (as it received them: one GSO send)
/// and [`RecvBatch::get`] splits them again; on a socket where [`enable_rx_timestamps`]
/// succeeded, [`RecvBatch::queued_at`] says when the kernel took each message in.
pub struct RecvBatch {
    /// `capacity` buffers of `slot` bytes, back to back.
    data: Box<[u8]>,
    slot: usize,
    addrs: Box<[libc::sockaddr_storage]>,
    lens: Box<[usize]>,
    /// Per message: control buffer space (GRO batches only), the segment size it reported, and
    /// the kernel's receive timestamp.
    control: Box<[u8]>,
    segments: Box<[usize]>,
    stamps: Box<[Option<SystemTime>]>,
    /// The call's headers, kept between calls to save allocating them; their pointers are
    /// written afresh before each call.
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    filled: usize,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point only into the batch's own buffers and are
// rewritten before every use; nothing else shares them.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Room for `capacity` datagrams (at least one).
    pub fn new(capacity: usize) -> RecvBatch {
        Self::with_slot(capacity, MAX_DATAGRAM, false)
    }

    /// Room for `capacity` messages of up to 64 KiB each, with their GRO segment sizes and
    /// receive timestamps.
    pub fn with_gro(capacity: usize) -> RecvBatch {
        Self::with_slot(capacity, MAX_GRO, true)
    }

    fn with_slot(capacity: usize, slot: usize, gro: bool) -> RecvBatch {
        let capacity = capacity.max(1);
        RecvBatch {
            data: vec![0; capacity * slot].into_boxed_slice(),
            slot,
            // SAFETY: sockaddr_storage is plain data; zero is a valid value.
            addrs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            lens: vec![0; capacity].into_boxed_slice(),
            control: vec![0; if gro { capacity * CONTROL } else { 0 }].into_boxed_slice(),
            segments: vec![0; capacity].into_boxed_slice(),
            stamps: vec![None; capacity].into_boxed_slice(),
            iovs: Vec::with_capacity(capacity),
            hdrs: Vec::with_capacity(capacity),
            filled: 0,
        }
    }

    /// How many datagrams one call can take.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Takes what is queued on `socket` (at most [`capacity`](Self::capacity) datagrams)
    /// without blocking. Returns how many were taken; `Err` with `WouldBlock` when none was
    /// queued.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        let capacity = self.capacity();
        self.filled = 0;
        self.iovs.clear();
        let slot = self.slot;
        self.iovs
            .extend(self.data.chunks_exact_mut(slot).map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            }));
        self.hdrs.clear();
        let control = self.control.as_mut_ptr();
        let gro = !self.control.is_empty();
        self.hdrs.extend(
            self.iovs
                .iter_mut()
                .zip(self.addrs.iter_mut())
                .enumerate()
                .map(|(i, (iov, addr))| {
                    // SAFETY: mmsghdr is plain data; the pointers refer to the batch's own
                    // buffers, which outlive the call below.
                    let mut h: libc::mmsghdr = unsafe { zeroed() };
                    h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
                    h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                    h.msg_hdr.msg_iov = iov;
                    h.msg_hdr.msg_iovlen = 1;
                    if gro {
                        // SAFETY: slot i of the control space lies inside it.
                        h.msg_hdr.msg_control = unsafe { control.add(i * CONTROL) }.cast();
                        h.msg_hdr.msg_controllen = CONTROL as _;
                    }
                    h
                }),
        );
        // SAFETY: every header points at a live buffer and address of the right size; the fd is
        // the caller's socket.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                capacity as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.filled = n as usize;
        for (i, h) in self.hdrs[..self.filled].iter().enumerate() {
            self.lens[i] = h.msg_len as usize;
            let (segment, stamp) = read_control(&h.msg_hdr);
            self.segments[i] = segment.unwrap_or(self.lens[i]).max(1);
            self.stamps[i] = stamp;
        }
        Ok(self.filled)
    }

    /// When the kernel took in the `i`th message of the last [`recv`](Self::recv) (on
    /// loopback: when its sender's send call handed it over), if the batch has room for control
    /// messages ([`RecvBatch::with_gro`]) and the socket asked for timestamps
    /// ([`enable_rx_timestamps`]). The load generator measures the server's latency by it, not
    /// by when its own busy thread got round to the socket.
    pub fn queued_at(&self, i: usize) -> Option<SystemTime> {
        self.stamps[..self.filled].get(i).copied().flatten()
    }

    /// The `i`th message of the last [`recv`](Self::recv) as the datagrams it holds (one,
    /// unless the kernel coalesced several), and who sent it (`None` past the end, or for a
    /// sender that is neither IPv4 nor IPv6).
    pub fn get(&self, i: usize) -> Option<(std::slice::Chunks<'_, u8>, SocketAddr)> {
        if i >= self.filled {
            return None;
        }
        let source = from_sockaddr(&self.addrs[i])?;
        let start = i * self.slot;
        let data = &self.data[start..start + self.lens[i]];
        Some((data.chunks(self.segments[i]), source))
    }
}

/// The segment size a `UDP_GRO` control message reports and the time an `SO_TIMESTAMPNS` one
/// gives, where the message carries them.
fn read_control(msg: &libc::msghdr) -> (Option<usize>, Option<SystemTime>) {
    let (mut segment, mut stamp) = (None, None);
    if msg.msg_controllen == 0 {
        return (segment, stamp);
    }
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of cmsgs; the CMSG macros
    // walk within them, and each payload read is of the type its level and type say it holds.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_UDP, libc::UDP_GRO) => {
                    let size =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                    segment = usize::try_from(size).ok();
                }
                (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                    let t =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                    stamp = u64::try_from(t.tv_sec)
                        .ok()
                        .map(|secs| SystemTime::UNIX_EPOCH + Duration::new(secs, t.tv_nsec as u32));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    (segment, stamp)
}

/// Asks the kernel to stamp each datagram `socket` receives with when it took it in
/// (`SO_TIMESTAMPNS`), for [`RecvBatch::queued_at`]. Returns whether it agreed.
pub fn enable_rx_timestamps(socket: &impl AsRawFd) -> bool {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS)
}

/// Sets an int socket option to 1; returns whether the kernel agreed.
fn set_int_option(socket: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option on the caller's socket.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Asks the kernel to coalesce datagrams arriving on `socket` (UDP GRO), for a
/// [`RecvBatch::with_gro`]. Returns whether it agreed.
pub fn enable_gro(socket: &impl AsRawFd) -> bool {
    set_int_option(socket, libc::SOL_UDP, libc::UDP_GRO)
}

/// Waits until `socket` has something to read, `wake` is written to, or `timeout` passed.
/// Returns whether the socket has something to read.
pub(crate) fn wait_readable(
    socket: &impl AsRawFd,
    wake: &impl AsRawFd,
    timeout: std::time::Duration,
) -> bool {
    let mut fds = [socket.as_raw_fd(), wake.as_raw_fd()].map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = timeout.as_millis().clamp(0, libc::c_int::MAX as u128) as libc::c_int;
    // SAFETY: two valid pollfds for the call's duration.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    n > 0 && fds[0].revents != 0
}

fn from_sockaddr(addr: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough for and aligned like sockaddr_in.
            let a = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_port = v4.port().to_be();
            a.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large enough for and aligned like sockaddr_in6.
            let a = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            a.sin6_port = v6.port().to_be();
            a.sin6_addr.s6_addr = v6.ip().octets();
            a.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Splits queued datagrams into runs one GSO send can carry: consecutive datagrams to one
/// destination, all as long as the first except a last one that may be shorter, at most
/// `MAX_SEGMENTS`. Order is kept.
fn plan_runs(queue: &[(SocketAddr, Range<usize>)]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < queue.len() {
        let (dest, first) = (&queue[start].0, queue[start].1.len());
        let mut end = start + 1;
        while end < queue.len() && end - start < MAX_SEGMENTS {
            let (d, len) = (&queue[end].0, queue[end].1.len());
            if d != dest || len > first {
                break;
            }
            end += 1;
            if len < first {
                break; // A shorter segment can only be the last.
            }
        }
        runs.push(start..end);
        start = end;
    }
    runs
}

/// Datagrams waiting to be sent, in order, written one after another into one buffer that
/// is kept from round to round (no allocation per datagram).
#[derive(Default)]
pub(crate) struct Outbox {
    data: Vec<u8>,
    /// Each datagram's destination and place in `data`.
    queue: Vec<(SocketAddr, Range<usize>)>,
    /// Whether UDP GSO works here; turned off on the first failure.
    gso_broken: bool,
}

impl Outbox {
    /// Queues a copy of a datagram.
    pub fn push(&mut self, dest: SocketAddr, datagram: &[u8]) {
        self.write_with(|data| {
            data.extend_from_slice(datagram);
            Some(dest)
        });
    }

    /// Queues the datagram `write` appends to the buffer it is given, to the destination it
    /// returns. Whatever it appended is taken back when it returns `None` or appends nothing.
    /// Returns whether a datagram was queued.
    pub fn write_with(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Option<SocketAddr>) -> bool {
        let start = self.data.len();
        match write(&mut self.data) {
            Some(dest) if self.data.len() > start => {
                self.queue.push((dest, start..self.data.len()));
                true
            }
            _ => {
                self.data.truncate(start);
                false
            }
        }
    }

    /// Sends everything queued, with as few `sendmmsg` calls as possible: each run of
    /// datagrams one GSO send can carry is one message of the batch. Send failures are logged
    /// and the datagrams dropped, as a network would drop them.
    pub fn flush(&mut self, socket: &UdpSocket) {
        let mut from = 0;
        while from < self.queue.len() {
            match send_runs(socket, &self.data, &self.queue[from..], !self.gso_broken) {
                Ok(()) => break,
                Err((at, e)) => {
                    tracing::info!(error = %e, "UDP GSO unavailable; sending datagrams one by one");
                    self.gso_broken = true;
                    from += at;
                }
            }
        }
        // Keep the allocations for the next round.
        self.queue.clear();
        self.data.clear();
    }
}

/// Room for one `UDP_SEGMENT` control message (a u16), aligned as `cmsghdr` needs.
pub type SegmentControl = [u64; 4];

/// Makes `msg` a GSO send of `segment`-byte datagrams (the last may be shorter): one
/// `UDP_SEGMENT` control message, written in `control`, which must outlive the send.
pub fn set_segment_size(msg: &mut libc::msghdr, control: &mut SegmentControl, segment: u16) {
    // SAFETY: CMSG_SPACE and CMSG_LEN are pure size computations; `control` (32 bytes, aligned
    // as cmsghdr) holds one cmsg with a u16 (CMSG_SPACE of 2 bytes is 24), and `msg` points at
    // it before CMSG_FIRSTHDR reads it.
    unsafe {
        let space = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
        debug_assert!(space <= size_of::<SegmentControl>());
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
    }
}

/// Sends `queue` (datagrams in `data`) with `sendmmsg`, one message per run (a GSO send when
/// `gso` and the run has several datagrams, its datagrams as the message's iovecs: no
/// copying). Returns where a GSO send was refused (the kernel or device cannot segment), with
/// the error; nothing from there on was sent.
fn send_runs(
    socket: &UdpSocket,
    data: &[u8],
    queue: &[(SocketAddr, Range<usize>)],
    gso: bool,
) -> Result<(), (usize, io::Error)> {
    let runs: Vec<Range<usize>> = if gso {
        plan_runs(queue)
    } else {
        (0..queue.len()).map(|i| i..i + 1).collect()
    };
    for chunk in runs.chunks(MMSG_BATCH) {
        let addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)> = chunk
            .iter()
            .map(|r| to_sockaddr(queue[r.start].0))
            .collect();
        let mut iovs: Vec<libc::iovec> = chunk
            .iter()
            .flat_map(|r| &queue[r.clone()])
            .map(|(_, r)| libc::iovec {
                iov_base: data[r.clone()].as_ptr() as *mut _,
                iov_len: r.len(),
            })
            .collect();
        let mut controls: Vec<SegmentControl> = vec![[0; 4]; chunk.len()];
        let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(chunk.len());
        let mut iov_at = 0;
        for ((run, (addr, addr_len)), control) in chunk.iter().zip(&addrs).zip(&mut controls) {
            // SAFETY: mmsghdr is plain data; the pointers refer to `addrs`, `iovs` and
            // `controls`, which are not resized and outlive the calls below.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (addr as *const libc::sockaddr_storage) as *mut _;
            h.msg_hdr.msg_namelen = *addr_len;
            h.msg_hdr.msg_iov = iovs[iov_at..].as_mut_ptr();
            h.msg_hdr.msg_iovlen = run.len() as _;
            iov_at += run.len();
            if run.len() >= 2 {
                set_segment_size(&mut h.msg_hdr, control, queue[run.start].1.len() as u16);
            }
            hdrs.push(h);
        }
        let mut sent = 0;
        while sent < hdrs.len() {
            // SAFETY: hdrs[sent..] are valid headers pointing at live buffers; the fd is ours.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    hdrs[sent..].as_mut_ptr(),
                    (hdrs.len() - sent) as u32,
                    0,
                )
            };
            if n > 0 {
                sent += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            // Kernels without GSO (or a device that refuses it) answer EIO/EINVAL/ENOPROTOOPT.
            if chunk[sent].len() >= 2
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT)
                )
            {
                return Err((chunk[sent].start, e));
            }
            // Drop the one that failed (as the network would) and go on with the rest.
            tracing::debug!(error = %e, "media send failed");
            sent += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(items: &[(u16, usize)]) -> Vec<(SocketAddr, Range<usize>)> {
        let mut at = 0;
        items
            .iter()
            .map(|&(port, len)| {
                at += len;
                (SocketAddr::from(([127, 0, 0, 1], port)), at - len..at)
            })
            .collect()
    }

    #[test]
    fn runs_group_one_destination_with_a_shorter_last_segment() {
        let queue = q(&[
            (1, 1100),
            (1, 1100),
            (1, 700), // end of a video frame
            (1, 1100),
            (2, 1100),
            (2, 1100),
            (3, 90), // audio
            (2, 1100),
            (2, 1200), // longer than the run's first: a new run
        ]);
        assert_eq!(plan_runs(&queue), vec![0..3, 3..4, 4..6, 6..7, 7..8, 8..9]);
        assert!(plan_runs(&[]).is_empty());
    }

    #[test]
    fn runs_are_capped() {
        let queue = q(&[(1, 100); 100]);
        let runs = plan_runs(&queue);
        assert!(runs.iter().all(|r| r.len() <= MAX_SEGMENTS));
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 100);
    }

    #[test]
    fn a_datagram_refused_or_empty_is_not_sent() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let to = receiver.local_addr().unwrap();
        let mut outbox = Outbox::default();
        assert!(outbox.write_with(|out| {
            out.extend_from_slice(b"first");
            Some(to)
        }));
        // Half written, then refused: none of it may reach the next datagram.
        assert!(!outbox.write_with(|out| {
            out.extend_from_slice(b"half");
            None
        }));
        assert!(
            !outbox.write_with(|_| Some(to)),
            "nothing written, nothing sent"
        );
        outbox.push(to, b"second");
        outbox.flush(&sender);
        let mut buf = [0u8; 64];
        for want in [&b"first"[..], b"second"] {
            let n = receiver.recv(&mut buf).expect("datagram arrives");
            assert_eq!(&buf[..n], want);
        }
    }

    #[test]
    fn everything_queued_arrives_intact_and_in_order() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
        }
        let mut outbox = Outbox::default();
        let mut expect_a = Vec::new();
        let mut expect_b = Vec::new();
        // Few enough that the receivers' default buffers hold them all.
        for i in 0..48u32 {
            // Frames of 3 full packets and a short one to `a`, audio-sized packets to `b`.
            let len = if i % 4 == 3 { 300 } else { 1100 };
            let data: Vec<u8> = (0..len).map(|j| (i as usize * 7 + j) as u8).collect();
            outbox.push(a.local_addr().unwrap(), &data);
            expect_a.push(data);
            let small = vec![i as u8; 60 + i as usize % 5];
            outbox.push(b.local_addr().unwrap(), &small);
            expect_b.push(small);
        }
        outbox.flush(&sender);
        let mut buf = [0u8; 2048];
        for (sock, expect) in [(&a, &expect_a), (&b, &expect_b)] {
            for want in expect {
                let n = sock.recv(&mut buf).expect("datagram arrives");
                assert_eq!(&buf[..n], &want[..]);
            }
        }
    }

    #[test]
    fn gro_takes_gso_runs_whole_and_gives_back_every_datagram() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable_gro(&receiver), "this kernel has UDP GRO");
        let mut outbox = Outbox::default();
        let mut expect = Vec::new();
        // Four frames of three full packets and a short last one: four GSO sends.
        for i in 0..16u32 {
            let len = if i % 4 == 3 { 300 } else { 1100 };
            let data: Vec<u8> = (0..len).map(|j| (i as usize * 7 + j) as u8).collect();
            outbox.push(receiver.local_addr().unwrap(), &data);
            expect.push(data);
        }
        outbox.flush(&sender);
        let mut batch = RecvBatch::with_gro(8);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut messages = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while got.len() < expect.len() && std::time::Instant::now() < deadline {
            let Ok(n) = batch.recv(&receiver) else {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            };
            for i in 0..n {
                let (datagrams, source) = batch.get(i).unwrap();
                assert_eq!(source, sender.local_addr().unwrap());
                messages += 1;
                got.extend(datagrams.map(<[u8]>::to_vec));
            }
        }
        assert_eq!(got, expect, "every datagram, intact and in order");
        assert!(
            messages < expect.len(),
            "{messages} messages for {} datagrams: the runs arrived coalesced",
            expect.len()
        );
    }

    #[test]
    fn a_stamped_datagram_says_when_the_kernel_took_it_in_not_when_it_was_read() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let mut batch = RecvBatch::with_gro(4);
        // Without asking, no time.
        sender.send_to(b"unstamped", to).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(batch.recv(&receiver).unwrap(), 1);
        assert_eq!(batch.queued_at(0), None);

        assert!(
            enable_rx_timestamps(&receiver),
            "this kernel stamps datagrams"
        );
        // The kernel turns stamping on a moment later (a deferred static key); until then it
        // stamps a datagram when it is read. Wait for a probe stamped before its read.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            sender.send_to(b"probe", to).unwrap();
            let sent = SystemTime::now();
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(batch.recv(&receiver).unwrap(), 1);
            if batch.queued_at(0).expect("a stamped datagram") <= sent {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "stamping never began");
        }
        let before = SystemTime::now();
        sender.send_to(b"one", to).unwrap();
        sender.send_to(b"two", to).unwrap();
        let after = SystemTime::now();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(batch.recv(&receiver).unwrap(), 2);
        for i in 0..2 {
            let at = batch.queued_at(i).expect("a stamped datagram");
            assert!(
                before <= at && at <= after,
                "{at:?} is not between {before:?} and {after:?}"
            );
        }
        assert_eq!(batch.queued_at(2), None, "past the messages taken");
    }
}
