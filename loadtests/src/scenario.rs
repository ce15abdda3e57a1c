//! Scenarios: who joins which lessons, in what role; running them and reporting.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::client::{self, ClientSpec, Shared};
use crate::janus;
use crate::media;
use crate::metrics::{Millis, ReceiverStats, sample_process};

/// The shape of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// One teacher publishing to N receive-only students.
    Lecture,
    /// N participants, all publishing and all receiving everyone.
    SmallClass,
    /// N one-to-one pairs, both publishing.
    Tutoring,
}

/// Which server is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Jinke: REST API, WebSocket signaling.
    Jinke,
    /// Janus's VideoRoom plugin over its HTTP API (`--url http://host:port/janus`).
    Janus,
}

/// A run's parameters.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Which server.
    pub target: Target,
    /// Server base URL (`http://127.0.0.1:8080`, or Janus's `http://host:port/janus`).
    pub url: String,
    /// The school's API key.
    pub api_key: String,
    /// What to simulate.
    pub scenario: Scenario,
    /// Students (lecture), participants (small class) or pairs (tutoring).
    pub size: usize,
    /// Time after everyone joined before measuring.
    pub warmup: Duration,
    /// Length of the measurement window.
    pub duration: Duration,
    /// After the window, how long receivers go on listening once publishers have stopped: a
    /// packet lost in the last round trip is repaired in this time, or counts as lost.
    pub settle: Duration,
    /// The server's process id, to measure its CPU and memory.
    pub server_pid: Option<u32>,
    /// Local address for the clients' media sockets.
    pub bind_ip: IpAddr,
    /// Local address for receive-only clients' media sockets, when it differs from `bind_ip`
    /// (a test impairs the students' links and not the teacher's by telling them apart by it).
    pub receiver_bind_ip: Option<IpAddr>,
    /// How many clients join at once.
    pub join_concurrency: usize,
    /// Give up on joins that take longer than this.
    pub join_timeout: Duration,
    /// Whether the clients' sockets take a server's GSO sends whole (UDP GRO). On loopback the
    /// receivers' kernel work runs on the sender's core: without GRO, a server that sends a
    /// frame as one GSO send pays for splitting it and delivering each packet, which a network
    /// card would do for it in a real deployment.
    pub udp_gro: bool,
    /// Whether publishers send their video as three simulcast layers, with the VP8 PictureIDs
    /// a browser's encoder writes, as browsers publish cameras in lessons: the server then
    /// rewrites each video packet's descriptor for each subscriber. Jinke only.
    pub simulcast: bool,
    /// Threads the clients are dealt out to, each with a runtime of its own: one core of
    /// clients saturates at about a thousand students, so a bigger lecture needs more (Jinke
    /// only; the Janus adapter shares one session between its clients).
    pub threads: usize,
}

/// The server's resource use over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ServerUsage {
    /// user+sys CPU as a percentage of one core.
    pub cpu_percent: f64,
    /// CPU milliseconds per thousand forwarded packets.
    pub cpu_ms_per_1000_packets: f64,
    /// CPU microseconds per forwarded packet.
    pub cpu_us_per_packet: f64,
    /// Resident memory at the end of the window, MiB.
    pub rss_mib: f64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The server measured.
    pub target: Target,
    /// The scenario.
    pub scenario: Scenario,
    /// Its size parameter.
    pub size: usize,
    /// Clients started.
    pub clients: usize,
    /// Of which publishers.
    pub publishers: usize,
    /// Clients that received media.
    pub joined: usize,
    /// Clients that failed, with the first error.
    pub failed: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Token to first media packet.
    pub join_ms: Millis,
    /// From the first client starting to every receiver having media (or the join timeout):
    /// how long the class took to fill.
    pub filling_s: f64,
    /// Measurement window, seconds.
    pub window_s: f64,
    /// Packets received by all clients in the window (= forwarded by the server).
    pub packets_in_window: u64,
    /// Forwarded packets per second in the window.
    pub packets_per_second: f64,
    /// Their mean RTP payload size in bytes: what the per-packet figures are per (encryption
    /// and copies grow with it; a workload with more keyframes has larger packets).
    pub payload_bytes_per_packet: f64,
    /// Unique packets received over the whole run.
    pub received: u64,
    /// Packets missing from the sequence numbers.
    pub lost: u64,
    /// Loss as a percentage of expected packets.
    pub loss_percent: f64,
    /// Unique video packets received over the whole run.
    pub video_received: u64,
    /// Video packets missing from the sequence numbers (audio is not retransmitted; this is
    /// what loss repair is judged by).
    pub video_lost: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Packets whose content no publisher sent.
    pub corrupt: u64,
    /// Send-to-receive latency in the window (same clock): from the publisher handing a packet
    /// to its WebRTC stack to the kernel taking it into the receiver's socket, so the time the
    /// generator's threads are busy with other clients is not in it.
    pub latency_ms: Millis,
    /// The same, of audio packets only.
    pub audio_latency_ms: Millis,
    /// From the same send to the receiving client reading the packet: the generator's own
    /// queueing included.
    pub handled_latency_ms: Millis,
    /// The server's resource use, when its pid was given.
    pub server: Option<ServerUsage>,
    /// The generator's own CPU over the window, all its threads, % of one core.
    pub generator_cpu_percent: f64,
    /// Clients the server told their link carries audio only, at least once.
    pub told_audio_only: u64,
    /// Clients it then told video is back.
    pub told_video_back: u64,
    /// Video packets clients received while told audio only.
    pub video_while_audio_only: u64,
    /// Video packets clients received after being told video is back.
    pub video_since_restored: u64,
}

struct Participant {
    join: Join,
    publish: bool,
    receives: bool,
}

enum Join {
    Jinke { token: String },
    Janus(janus::JanusSpec),
}

impl LoadConfig {
    /// A short run against a Jinke server on loopback, as the tests make: 1 s of warm-up, 2 s
    /// measured, clients on 127.0.0.1, 8 joining at once.
    pub fn local(url: String, api_key: &str, scenario: Scenario, size: usize) -> LoadConfig {
        LoadConfig {
            target: Target::Jinke,
            url,
            api_key: api_key.to_owned(),
            scenario,
            size,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(2),
            settle: Duration::from_millis(500),
            server_pid: None,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            receiver_bind_ip: None,
            join_concurrency: 8,
            join_timeout: Duration::from_secs(20),
            udp_gro: true,
            simulcast: false,
            threads: 1,
        }
    }
}

/// Runs a scenario to completion on a runtime of its own, on the calling thread, plus one more
/// thread per further `LoadConfig::threads`.
pub fn run_blocking(config: LoadConfig) -> anyhow::Result<Report> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(config))
}

/// Runs a scenario to completion.
pub async fn run(config: LoadConfig) -> anyhow::Result<Report> {
    let local = tokio::task::LocalSet::new();
    local.run_until(run_local(config)).await
}

async fn run_local(config: LoadConfig) -> anyhow::Result<Report> {
    raise_fd_limit();
    let threads = config.threads.max(1);
    if threads > 1 && config.target == Target::Janus {
        bail!("the Janus adapter runs on one thread (its session is shared by every client)");
    }
    // If anything in the build turned on reqwest's TLS, it needs rustls's provider chosen.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let http = reqwest::Client::new();
    let janus = match config.target {
        Target::Jinke => None,
        Target::Janus if config.simulcast => bail!("simulcast publishers are for Jinke only"),
        Target::Janus => Some(janus::JanusSession::create(http.clone(), &config.url).await?),
    };
    let participants = match &janus {
        None => plan(&http, &config).await?,
        Some(session) => plan_janus(session, &config).await?,
    };
    let clients = participants.len();
    let publishers = participants.iter().filter(|p| p.publish).count();
    let receivers = participants.iter().filter(|p| p.receives).count();
    let (stop_tx, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        sent: RwLock::default(),
        window: OnceLock::new(),
        video: media::video_frames()?,
        audio: media::audio_frames(Duration::from_secs(6))?,
        stop,
        quiet: AtomicBool::new(false),
        publishers: AtomicUsize::new(0),
        joined: AtomicUsize::new(0),
        udp_gro: config.udp_gro,
        simulcast: config.simulcast,
    });
    let crew = Crew {
        shared: shared.clone(),
        gate: Arc::new(JoinGate::new(config.join_concurrency, publishers)),
        join_timeout: config.join_timeout,
        url: config.url.clone(),
        ended: Arc::new(AtomicUsize::new(0)),
    };
    // Publishers first, so receivers find their tracks published; then dealt out to the threads
    // in turn.
    let (mut ordered, rest): (Vec<_>, Vec<_>) = participants.into_iter().partition(|p| p.publish);
    ordered.extend(rest);
    let mut groups: Vec<Vec<(Participant, IpAddr)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, p) in ordered.into_iter().enumerate() {
        let bind_ip = match config.receiver_bind_ip {
            Some(ip) if !p.publish => ip,
            _ => config.bind_ip,
        };
        groups[i % threads].push((p, bind_ip));
    }
    let mine = groups.remove(0);
    let mut workers = Vec::new();
    for (i, group) in groups.into_iter().enumerate() {
        let crew = crew.clone();
        let worker = std::thread::Builder::new()
            .name(format!("clients-{}", i + 1))
            .spawn(move || -> anyhow::Result<Vec<Outcome>> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("a client thread's runtime")?;
                let local = tokio::task::LocalSet::new();
                Ok(runtime.block_on(local.run_until(crew.run(group, None))))
            })
            .context("starting a client thread")?;
        workers.push(worker);
    }
    let via_janus = janus
        .clone()
        .map(|session| (session, Rc::new(watch::channel(HashMap::new()).0)));
    let ended = crew.ended.clone();
    let here = tokio::task::spawn_local(crew.run(mine, via_janus));

    // Wait until every receiver has media, or the join timeout.
    let filling = Instant::now();
    let deadline = filling + config.join_timeout;
    while Instant::now() < deadline
        && shared.joined.load(Ordering::Relaxed) < receivers
        && ended.load(Ordering::Relaxed) < clients
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let filling = filling.elapsed();
    tokio::time::sleep(config.warmup).await;

    let start = Instant::now();
    shared
        .window
        .set((start, start + config.duration))
        .expect("the window is set once");
    let server_before = config.server_pid.map(sample_process).transpose()?;
    let self_before = sample_process(std::process::id())?;
    tokio::time::sleep(config.duration).await;
    let server_after = config.server_pid.map(sample_process).transpose()?;
    let self_after = sample_process(std::process::id())?;
    let window = start.elapsed();

    shared.quiet.store(true, Ordering::Relaxed);
    tokio::time::sleep(config.settle).await;
    stop_tx.send_replace(true);
    let mut outcomes = here.await.context("the clients of the main thread")?;
    for worker in workers {
        // Its clients stop on the same signal; this thread has nothing else to run meanwhile.
        match worker.join() {
            Ok(done) => outcomes.extend(done?),
            Err(_) => bail!("a client thread panicked"),
        }
    }
    if let Some(session) = &janus {
        session.destroy().await;
    }
    Ok(report(
        &config,
        (clients, publishers),
        &outcomes,
        filling,
        window,
        server_before.zip(server_after),
        (self_before, self_after),
    ))
}

/// What a client left when the run ended.
struct Outcome {
    stats: ReceiverStats,
    receives: bool,
    /// Why it failed, if it did.
    error: Option<String>,
}

/// Join slots, shared by every client thread (`LoadConfig::join_concurrency`). A client that
/// only receives holds its slot until media comes, so it asks for one only once every publisher
/// has one: else students' slots could keep the teacher out until they give up.
struct JoinGate {
    slots: Arc<Semaphore>,
    publishers: usize,
    /// Publishers that hold a slot so far.
    admitted: watch::Sender<usize>,
}

impl JoinGate {
    fn new(slots: usize, publishers: usize) -> JoinGate {
        JoinGate {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            publishers,
            admitted: watch::channel(0).0,
        }
    }

    /// Waits for a slot, held until the permit is dropped.
    async fn enter(&self, publish: bool) -> OwnedSemaphorePermit {
        if !publish {
            let mut admitted = self.admitted.subscribe();
            let _ = admitted.wait_for(|&n| n >= self.publishers).await;
        }
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the join slots are never closed");
        if publish {
            self.admitted.send_modify(|n| *n += 1);
        }
        permit
    }
}

/// What every client thread needs to run its share of the clients.
#[derive(Clone)]
struct Crew {
    shared: Arc<Shared>,
    gate: Arc<JoinGate>,
    join_timeout: Duration,
    url: String,
    /// Clients whose session ended, across all threads.
    ended: Arc<AtomicUsize>,
}

impl Crew {
    /// Runs these clients on the current thread until the run stops, and says how each did.
    /// Janus clients need the run's Janus session and its published feeds, which live on one
    /// thread.
    async fn run(
        self,
        clients: Vec<(Participant, IpAddr)>,
        janus: Option<(Rc<janus::JanusSession>, Rc<janus::Feeds>)>,
    ) -> Vec<Outcome> {
        let mut tasks = Vec::new();
        for (p, bind_ip) in clients {
            let st = Rc::new(RefCell::new(ReceiverStats::default()));
            let session = match p.join {
                Join::Jinke { token } => Session::Jinke(ClientSpec {
                    base: self.url.clone(),
                    token,
                    publish: p.publish,
                    bind_ip,
                }),
                Join::Janus(spec) => {
                    // `run_local` refuses Janus on more than one thread.
                    let (session, feeds) = janus.as_ref().expect("Janus clients run on its thread");
                    Session::Janus(
                        session.clone(),
                        janus::JanusSpec { bind_ip, ..spec },
                        feeds.clone(),
                    )
                }
            };
            let task = tokio::task::spawn_local(self.clone().client(
                session,
                (p.publish, p.receives),
                st.clone(),
            ));
            tasks.push((task, st, p.receives));
        }
        let mut stop = self.shared.stop.clone();
        let _ = stop.wait_for(|s| *s).await;
        let mut outcomes = Vec::new();
        for (task, st, receives) in tasks {
            let error = match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(e))) => Some(format!("{e:#}")),
                Ok(Err(e)) => Some(format!("client task: {e}")),
                Err(_) => Some("client did not stop".into()),
            };
            outcomes.push(Outcome {
                stats: std::mem::take(&mut *st.borrow_mut()),
                receives,
                error,
            });
        }
        outcomes
    }

    /// One client, holding a join slot until it is in (or gives up): until media comes, or for
    /// a client that only publishes, until its connection is up.
    async fn client(
        self,
        session: Session,
        (publish, receives): (bool, bool),
        st: Rc<RefCell<ReceiverStats>>,
    ) -> anyhow::Result<()> {
        let permit = self.gate.enter(publish).await;
        let joined = st.clone();
        let join_timeout = self.join_timeout;
        let release = async move {
            let deadline = Instant::now() + join_timeout;
            let is_in = |s: &ReceiverStats| {
                if receives {
                    s.join_time.is_some()
                } else {
                    s.connected
                }
            };
            while !is_in(&joined.borrow()) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(permit);
            std::future::pending::<()>().await
        };
        let shared = self.shared.clone();
        let participant = async move {
            match session {
                Session::Jinke(spec) => client::jinke_participant(spec, shared, st).await,
                Session::Janus(session, spec, feeds) => {
                    janus::participant(session, spec, feeds, shared, st).await
                }
            }
        };
        let r = tokio::select! {
            r = participant => r,
            () = release => unreachable!("release never completes"),
        };
        self.ended.fetch_add(1, Ordering::Relaxed);
        r
    }
}

fn report(
    config: &LoadConfig,
    (clients, publishers): (usize, usize),
    outcomes: &[Outcome],
    filling: Duration,
    window: Duration,
    server: Option<(crate::metrics::ProcSample, crate::metrics::ProcSample)>,
    generator: (crate::metrics::ProcSample, crate::metrics::ProcSample),
) -> Report {
    let mut joins = Vec::new();
    let mut latencies = Vec::new();
    let mut audio_latencies = Vec::new();
    let mut handled_latencies = Vec::new();
    let (mut received, mut lost, mut dups, mut corrupt, mut in_window) = (0, 0, 0, 0, 0);
    let mut bytes_in_window = 0;
    let (mut video_received, mut video_lost) = (0, 0);
    let mut weak = crate::metrics::WeakLinkLog::default();
    let (mut told_audio_only, mut told_video_back) = (0, 0);
    for Outcome {
        stats: s, receives, ..
    } in outcomes
    {
        let log = s.weak_link_log();
        told_audio_only += u64::from(log.audio_only > 0);
        told_video_back += u64::from(log.restored > 0);
        weak.video_while_audio_only += log.video_while_audio_only;
        weak.video_since_restored += log.video_since_restored;
        if *receives && let Some(j) = s.join_time {
            joins.push(j.as_micros().min(u32::MAX as u128) as u32);
        }
        let (u, l, d) = s.counts();
        received += u;
        lost += l;
        dups += d;
        let (vu, vl) = s.video_counts();
        video_received += vu;
        video_lost += vl;
        corrupt += s.corrupt;
        in_window += s.in_window;
        bytes_in_window += s.bytes_in_window;
        latencies.extend_from_slice(&s.latencies_us);
        audio_latencies.extend_from_slice(&s.audio_latencies_us);
        handled_latencies.extend_from_slice(&s.handled_latencies_us);
    }
    let secs = window.as_secs_f64();
    let server = server.map(|(before, after)| {
        let cpu = (after.cpu - before.cpu).as_secs_f64();
        ServerUsage {
            cpu_percent: 100.0 * cpu / secs,
            cpu_ms_per_1000_packets: if in_window > 0 {
                cpu * 1000.0 * 1000.0 / in_window as f64
            } else {
                0.0
            },
            cpu_us_per_packet: if in_window > 0 {
                cpu * 1e6 / in_window as f64
            } else {
                0.0
            },
            rss_mib: after.rss as f64 / (1 << 20) as f64,
        }
    });
    Report {
        target: config.target,
        scenario: config.scenario,
        size: config.size,
        clients,
        publishers,
        joined: joins.len(),
        failed: outcomes.iter().filter(|o| o.error.is_some()).count(),
        first_error: outcomes.iter().find_map(|o| o.error.clone()),
        join_ms: Millis::of_micros(&mut joins),
        filling_s: filling.as_secs_f64(),
        window_s: secs,
        packets_in_window: in_window,
        packets_per_second: in_window as f64 / secs,
        payload_bytes_per_packet: bytes_in_window as f64 / in_window.max(1) as f64,
        received,
        lost,
        loss_percent: if received + lost > 0 {
            100.0 * lost as f64 / (received + lost) as f64
        } else {
            0.0
        },
        video_received,
        video_lost,
        duplicates: dups,
        corrupt,
        latency_ms: Millis::of_micros(&mut latencies),
        audio_latency_ms: Millis::of_micros(&mut audio_latencies),
        handled_latency_ms: Millis::of_micros(&mut handled_latencies),
        server,
        generator_cpu_percent: 100.0 * (generator.1.cpu - generator.0.cpu).as_secs_f64() / secs,
        told_audio_only,
        told_video_back,
        video_while_audio_only: weak.video_while_audio_only,
        video_since_restored: weak.video_since_restored,
    }
}

/// How a planned participant connects.
enum Session {
    Jinke(ClientSpec),
    Janus(Rc<janus::JanusSession>, janus::JanusSpec, Rc<janus::Feeds>),
}

/// Creates the VideoRooms for a scenario on Janus; participants are named `room:name`.
async fn plan_janus(
    session: &Rc<janus::JanusSession>,
    config: &LoadConfig,
) -> anyhow::Result<Vec<Participant>> {
    let n = config.size;
    if n == 0 {
        bail!("the scenario size must be at least 1");
    }
    let base_room = 1_000_000 + u64::from(std::process::id()) * 10_000;
    let person = |room: u64, name: &str, publish: bool, subscribe_to: Vec<String>| Participant {
        publish,
        receives: !subscribe_to.is_empty(),
        join: Join::Janus(janus::JanusSpec {
            room,
            identity: format!("{room}:{name}"),
            publish,
            subscribe_to,
            bind_ip: config.bind_ip,
        }),
    };
    let mut out = Vec::new();
    match config.scenario {
        Scenario::Lecture => {
            let room = base_room;
            janus::create_room(session, room, 1).await?;
            out.push(person(room, "teacher", true, vec![]));
            for i in 0..n {
                let teacher = vec![format!("{room}:teacher")];
                out.push(person(room, &format!("student-{i}"), false, teacher));
            }
        }
        Scenario::SmallClass => {
            let room = base_room;
            janus::create_room(session, room, n).await?;
            for i in 0..n {
                let others = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| format!("{room}:p{j}"))
                    .collect();
                out.push(person(room, &format!("p{i}"), true, others));
            }
        }
        Scenario::Tutoring => {
            for pair in 0..n as u64 {
                let room = base_room + pair;
                janus::create_room(session, room, 2).await?;
                out.push(person(room, "tutor", true, vec![format!("{room}:pupil")]));
                out.push(person(room, "pupil", true, vec![format!("{room}:tutor")]));
            }
        }
    }
    Ok(out)
}

/// Creates the lessons and tokens for a scenario, through the public REST API.
async fn plan(http: &reqwest::Client, config: &LoadConfig) -> anyhow::Result<Vec<Participant>> {
    let n = config.size;
    if n == 0 {
        bail!("the scenario size must be at least 1");
    }
    let mut out = Vec::new();
    match config.scenario {
        Scenario::Lecture => {
            let lesson = create_lesson(http, config, "lecture", n + 1).await?;
            out.push(participant(http, config, &lesson, "teacher", "teacher", true, false).await?);
            for i in 0..n {
                let id = format!("student-{i}");
                out.push(participant(http, config, &lesson, &id, "student", false, true).await?);
            }
        }
        Scenario::SmallClass => {
            let lesson = create_lesson(http, config, "small_class", n.max(2)).await?;
            for i in 0..n {
                let (id, role) = if i == 0 {
                    ("teacher".to_owned(), "teacher")
                } else {
                    (format!("student-{i}"), "student")
                };
                out.push(participant(http, config, &lesson, &id, role, true, n > 1).await?);
            }
        }
        Scenario::Tutoring => {
            for _ in 0..n {
                let lesson = create_lesson(http, config, "one_to_one", 2).await?;
                out.push(participant(http, config, &lesson, "tutor", "teacher", true, true).await?);
                out.push(participant(http, config, &lesson, "pupil", "student", true, true).await?);
            }
        }
    }
    Ok(out)
}

async fn create_lesson(
    http: &reqwest::Client,
    config: &LoadConfig,
    mode: &str,
    capacity: usize,
) -> anyhow::Result<String> {
    let body = serde_json::json!({"title": "load test", "mode": mode, "capacity": capacity.max(2)});
    let resp: serde_json::Value = http
        .post(format!("{}/api/v1/lessons", config.url))
        .bearer_auth(&config.api_key)
        .json(&body)
        .send()
        .await
        .context("creating a lesson")?
        .error_for_status()
        .context("creating a lesson")?
        .json()
        .await?;
    resp["id"]
        .as_str()
        .map(str::to_owned)
        .context("lesson id in the response")
}

async fn participant(
    http: &reqwest::Client,
    config: &LoadConfig,
    lesson: &str,
    identity: &str,
    role: &str,
    publish: bool,
    receives: bool,
) -> anyhow::Result<Participant> {
    let body = serde_json::json!({"identity": identity, "name": identity, "role": role});
    let resp: serde_json::Value = http
        .post(format!("{}/api/v1/lessons/{lesson}/tokens", config.url))
        .bearer_auth(&config.api_key)
        .json(&body)
        .send()
        .await
        .context("creating a token")?
        .error_for_status()
        .context("creating a token")?
        .json()
        .await?;
    Ok(Participant {
        join: Join::Jinke {
            token: resp["token"]
                .as_str()
                .context("token in the response")?
                .to_owned(),
        },
        publish,
        receives,
    })
}

/// Thousands of clients need thousands of sockets: lift the soft descriptor limit to the hard one.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

impl Report {
    /// A human-readable table.
    pub fn table(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<28}{v}\n"));
        line(
            "scenario",
            format!(
                "{:?} size {} on {:?} ({} clients, {} publishing)",
                self.scenario, self.size, self.target, self.clients, self.publishers
            ),
        );
        line(
            "joined / failed",
            format!("{} / {}", self.joined, self.failed),
        );
        if let Some(e) = &self.first_error {
            line("first error", e.clone());
        }
        line(
            "join ms p50 / p95 / p99",
            format!(
                "{} / {} / {}",
                ms(self.join_ms.p50),
                ms(self.join_ms.p95),
                ms(self.join_ms.p99)
            ),
        );
        line("class filled in", format!("{:.1} s", self.filling_s));
        line(
            "forwarded in window",
            format!(
                "{} packets in {:.1} s ({:.0}/s, {:.0} payload bytes each)",
                self.packets_in_window,
                self.window_s,
                self.packets_per_second,
                self.payload_bytes_per_packet
            ),
        );
        line(
            "loss / dup / corrupt",
            format!(
                "{:.3}% ({} of {}) / {} / {}",
                self.loss_percent,
                self.lost,
                self.received + self.lost,
                self.duplicates,
                self.corrupt
            ),
        );
        let p50_p99 = |m: &Millis| format!("{} / {}", ms(m.p50), ms(m.p99));
        line("added latency ms p50 / p99", p50_p99(&self.latency_ms));
        line(
            "audio latency ms p50 / p99",
            p50_p99(&self.audio_latency_ms),
        );
        line(
            "read latency ms p50 / p99",
            p50_p99(&self.handled_latency_ms),
        );
        match &self.server {
            Some(s) => {
                line("server CPU", format!("{:.1}% of a core", s.cpu_percent));
                line(
                    "server CPU per packet",
                    format!(
                        "{:.2} us ({:.2} ms per 1000 forwarded)",
                        s.cpu_us_per_packet, s.cpu_ms_per_1000_packets
                    ),
                );
                line("server RSS", format!("{:.1} MiB", s.rss_mib));
            }
            None => line("server CPU", "not measured (no --server-pid)".into()),
        }
        line(
            "generator CPU",
            format!("{:.1}% of a core", self.generator_cpu_percent),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_student_first_at_the_gate_waits_until_the_teacher_has_a_slot() {
        let gate = Arc::new(JoinGate::new(1, 1));
        let student = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter(false).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!student.is_finished(), "no slot before the teacher has one");
        let teacher = tokio::time::timeout(Duration::from_secs(1), gate.enter(true))
            .await
            .expect("the teacher is let in at once");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!student.is_finished(), "one slot, the teacher's");
        drop(teacher);
        let _slot = student
            .await
            .expect("the student is let in once the slot is free");
    }
}
