//! A lossy, delaying UDP relay for tests: clients send to the relay (the address the server
//! announces), the relay forwards to the server from one socket per client and back. Flows from
//! one chosen client address are impaired in both directions: random loss and a fixed delay;
//! towards those clients the link can also be capped (a bottleneck with a 100 ms queue, as
//! `tc tbf` makes one), and their links can be cut both ways. (This kernel has no `netem`; see
//! shared/notes/network-impairment.md.)

#![allow(dead_code)] // Each test binary uses a different part of the relay.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jinke_load::{LoadConfig, Report, Scenario};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// What happens to an impaired flow's datagrams, in each direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// Datagrams dropped, per thousand.
    pub loss_per_mille: u32,
    /// Added one-way delay.
    pub delay: Duration,
    /// For this long after a flow's first datagram, DTLS towards the client is dropped: its
    /// handshake is held up (as lost handshake flights hold it up until their retransmission)
    /// while ICE, and its signaling, are already through.
    pub hold_dtls: Duration,
}

/// RTP packets seen towards impaired clients, by payload type (the RTP header is not encrypted).
pub struct Counts {
    sent: [AtomicU64; 128],
    dropped: [AtomicU64; 128],
}

impl Counts {
    /// RTP packets of payload type `pt` delivered towards impaired clients.
    pub fn sent(&self, pt: u8) -> u64 {
        self.sent[pt as usize & 0x7f].load(Ordering::Relaxed)
    }

    /// RTP packets of payload type `pt` dropped on the way to impaired clients.
    pub fn dropped(&self, pt: u8) -> u64 {
        self.dropped[pt as usize & 0x7f].load(Ordering::Relaxed)
    }
}

/// str0m's default payload type for VP8, as the SFU offers it to students.
pub const VP8_PT: u8 = 96;

/// The address a [`RelayedServer`] announces, where its relays listen.
pub const RELAY_IP: &str = "127.0.0.9";

/// A Jinke server whose media goes through relays, one in front of each media thread's socket
/// (the server announces the relays' address): the flows of clients bound to one address are
/// impaired.
pub struct RelayedServer {
    pub server: jinke::server::Server,
    pub relays: Vec<Relay>,
    key: String,
    impaired: IpAddr,
    dir: std::path::PathBuf,
}

impl RelayedServer {
    /// Starts a server (its API key and its data's temporary folder named after `name`) and
    /// its relays; flows from `impaired` get `impairment`.
    pub async fn start(name: &str, impaired: IpAddr, impairment: Impairment) -> RelayedServer {
        let key = format!("{name}-key-0123456789");
        let dir = std::env::temp_dir().join(format!("jinke-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = jinke::config::ServeConfig::loopback(dir.clone());
        config.api_key = Some(key.clone());
        config.announce_ip = Some(RELAY_IP.parse().unwrap());
        let server = jinke::server::Server::start(config).await.unwrap();
        let mut relays = Vec::new();
        for (i, &media) in server.media_addrs().iter().enumerate() {
            let front = SocketAddr::new(RELAY_IP.parse().unwrap(), media.port());
            let seed = 0x5eed + i as u64;
            relays.push(Relay::start(front, media, impaired, impairment, seed).await);
        }
        RelayedServer {
            server,
            relays,
            key,
            impaired,
            dir,
        }
    }

    /// A short lecture of `students` on this server (as `LoadConfig::local` makes one), the
    /// students bound to the impaired address and the teacher not.
    pub fn lecture(&self, students: usize) -> LoadConfig {
        LoadConfig {
            receiver_bind_ip: Some(self.impaired),
            ..LoadConfig::local(
                format!("http://{}", self.server.http_addr()),
                &self.key,
                Scenario::Lecture,
                students,
            )
        }
    }

    /// Starts `load` on a thread of its own: the run blocks, and the relays go on running on
    /// the test's runtime meanwhile.
    pub fn run(load: LoadConfig) -> std::thread::JoinHandle<Report> {
        std::thread::spawn(move || jinke_load::run_blocking(load).expect("the load run"))
    }

    /// Waits for a run without holding up the relays, and prints its table.
    pub async fn finished(run: std::thread::JoinHandle<Report>) -> Report {
        let report = tokio::task::spawn_blocking(move || run.join().expect("the load thread"))
            .await
            .unwrap();
        println!("{}", report.table());
        report
    }

    /// What all relays together sent (`sent`) or dropped towards impaired clients, by payload
    /// type.
    pub fn total(&self, count: impl Fn(&Counts) -> u64) -> u64 {
        self.relays.iter().map(|r| count(r.counts())).sum()
    }

    /// Stops the relays and the server and removes its data.
    pub async fn stop(self) {
        drop(self.relays);
        self.server.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The most a capped link queues before it drops, as time to send what waits.
const MAX_QUEUE: Duration = Duration::from_millis(100);

/// A running relay; its tasks stop when it is dropped.
pub struct Relay {
    counts: Arc<Counts>,
    /// Bits per second towards impaired clients; 0: no cap.
    rate: Arc<AtomicU64>,
    /// Whether impaired clients' links are cut: nothing passes either way.
    cut: Arc<AtomicBool>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Relay {
    /// Listens on `front` and relays to `server`. Flows from clients bound to `impaired` get
    /// `impairment`; the rest pass untouched. `seed` makes the losses repeatable.
    pub async fn start(
        front: SocketAddr,
        server: SocketAddr,
        impaired: IpAddr,
        impairment: Impairment,
        seed: u64,
    ) -> Relay {
        let front = Arc::new(UdpSocket::bind(front).await.expect("relay front socket"));
        let counts = Arc::new(Counts {
            sent: std::array::from_fn(|_| AtomicU64::new(0)),
            dropped: std::array::from_fn(|_| AtomicU64::new(0)),
        });
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let rate = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let spawn = {
            let tasks = tasks.clone();
            move |f: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
                let handle = tokio::spawn(f);
                tasks.lock().unwrap().push(handle.abort_handle());
            }
        };
        let accept = {
            let counts = counts.clone();
            let rate = rate.clone();
            let cut = cut.clone();
            let spawn = spawn.clone();
            async move {
                let mut flows: HashMap<SocketAddr, Lane> = HashMap::new();
                let mut buf = vec![0u8; 2048];
                loop {
                    let Ok((n, client)) = front.recv_from(&mut buf).await else {
                        return;
                    };
                    let lane = flows.entry(client).or_insert_with(|| {
                        let back = std::net::UdpSocket::bind("127.0.0.1:0").expect("relay socket");
                        back.connect(server).expect("relay connect");
                        back.set_nonblocking(true).expect("nonblocking");
                        let back = Arc::new(UdpSocket::from_std(back).expect("tokio socket"));
                        let impair = (client.ip() == impaired).then_some(impairment);
                        let salt = seed ^ u64::from(client.port());
                        // Downstream: server -> relay -> client.
                        let down = Lane::new(
                            Target::To(front.clone(), client),
                            impair,
                            salt,
                            Some(counts.clone()),
                            Some(rate.clone()),
                            cut.clone(),
                            &spawn,
                        );
                        let reader = back.clone();
                        spawn(Box::pin(async move {
                            let mut buf = vec![0u8; 2048];
                            while let Ok(n) = reader.recv(&mut buf).await {
                                down.push(&buf[..n]);
                            }
                        }));
                        // Upstream: client -> relay -> server.
                        let up = Target::Connected(back);
                        Lane::new(up, impair, !salt, None, None, cut.clone(), &spawn)
                    });
                    lane.push(&buf[..n]);
                }
            }
        };
        spawn(Box::pin(accept));
        Relay {
            counts,
            rate,
            cut,
            tasks,
        }
    }

    /// Caps the link towards impaired clients at `bits_per_second` (`None`: no cap).
    pub fn set_rate(&self, bits_per_second: Option<u64>) {
        self.rate
            .store(bits_per_second.unwrap_or(0), Ordering::Relaxed);
    }

    /// Cuts impaired clients' links (`true`: nothing passes either way, as when a phone loses
    /// its signal) or restores them.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Relaxed);
    }

    /// What was sent and dropped towards impaired clients so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// Where a lane delivers.
enum Target {
    To(Arc<UdpSocket>, SocketAddr),
    Connected(Arc<UdpSocket>),
}

/// One direction of one flow: drops, then delays in order.
struct Lane {
    impair: Option<Impairment>,
    rng: std::cell::Cell<u64>,
    counts: Option<Arc<Counts>>,
    /// The cap, for a lane towards an impaired client, and when its queue empties.
    rate: Option<Arc<AtomicU64>>,
    /// Set while the link is cut (impaired lanes only).
    cut: Option<Arc<AtomicBool>>,
    busy_until: std::cell::Cell<Instant>,
    /// Until when DTLS towards an impaired client is dropped.
    dtls_held_until: Instant,
    delay_line: mpsc::UnboundedSender<(Instant, Vec<u8>)>,
}

impl Lane {
    fn new(
        target: Target,
        impair: Option<Impairment>,
        seed: u64,
        counts: Option<Arc<Counts>>,
        rate: Option<Arc<AtomicU64>>,
        cut: Arc<AtomicBool>,
        spawn: &impl Fn(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
    ) -> Lane {
        let (delay_line, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
        spawn(Box::pin(async move {
            while let Some((at, datagram)) = due.recv().await {
                tokio::time::sleep_until(at).await;
                let _ = match &target {
                    Target::To(socket, to) => socket.send_to(&datagram, to).await,
                    Target::Connected(socket) => socket.send(&datagram).await,
                };
            }
        }));
        Lane {
            impair,
            rng: std::cell::Cell::new(seed | 1),
            counts: counts.filter(|_| impair.is_some()),
            rate: rate.filter(|_| impair.is_some()),
            cut: impair.map(|_| cut),
            busy_until: std::cell::Cell::new(Instant::now()),
            dtls_held_until: Instant::now() + impair.map_or(Duration::ZERO, |i| i.hold_dtls),
            delay_line,
        }
    }

    fn push(&self, datagram: &[u8]) {
        let Some(impair) = self.impair else {
            let _ = self.delay_line.send((Instant::now(), datagram.to_vec()));
            return;
        };
        let now = Instant::now();
        let cut = self.cut.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
        let mut drop = cut
            || self.next_random() % 1000 < u64::from(impair.loss_per_mille)
            || (self.counts.is_some() && is_dtls(datagram) && now < self.dtls_held_until);
        let mut leaves = now;
        let bps = self.rate.as_ref().map_or(0, |r| r.load(Ordering::Relaxed));
        if bps > 0 && !drop {
            // A bottleneck: each datagram takes its time on the wire after those queued.
            let start = self.busy_until.get().max(now);
            if start - now > MAX_QUEUE {
                drop = true;
            } else {
                leaves =
                    start + Duration::from_nanos(datagram.len() as u64 * 8 * 1_000_000_000 / bps);
                self.busy_until.set(leaves);
            }
        }
        if let (Some(counts), Some(pt)) = (&self.counts, rtp_payload_type(datagram)) {
            let tally = if drop { &counts.dropped } else { &counts.sent };
            tally[pt as usize].fetch_add(1, Ordering::Relaxed);
        }
        if !drop {
            let _ = self
                .delay_line
                .send((leaves + impair.delay, datagram.to_vec()));
        }
    }

    /// xorshift64: repeatable, and good enough to pick packets to drop.
    fn next_random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }
}

/// Whether a datagram is DTLS (RFC 7983 demultiplexing: its first byte is 20 to 63).
fn is_dtls(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| (20..=63).contains(b))
}

/// The payload type of an RTP packet (RFC 5761 demultiplexing: not STUN, DTLS or RTCP).
fn rtp_payload_type(datagram: &[u8]) -> Option<u8> {
    let (&b0, &b1) = (datagram.first()?, datagram.get(1)?);
    let is_rtp = b0 >> 6 == 2 && !(192..=223).contains(&b1);
    is_rtp.then_some(b1 & 0x7f)
}
