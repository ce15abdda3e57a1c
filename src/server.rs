//! Starting and stopping a Jinke server: HTTP(S) for the API, the web client and signaling, plus
//! the SFU's media socket.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use jinke_sfu::{Sfu, SfuConfig};
use jinke_signaling::{ByeReason, ServerMessage};
use tokio::sync::watch;

use crate::config::ServeConfig;
use crate::events::EventSink;
use crate::rooms::Rooms;
use crate::store::Store;
use crate::tokens::TokenSigner;
use crate::{api, session, web};

/// How long shutdown waits for clients to receive their goodbye and close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything request handlers share.
pub struct AppState {
    /// Lessons.
    pub store: Store,
    /// Signs and checks join tokens.
    pub signer: TokenSigner,
    /// The bootstrap school's API key (from the configuration; `--dev` prints it).
    pub api_key: String,
    /// Base URL for join links, without a trailing slash.
    pub public_url: String,
    /// Live rooms.
    pub rooms: Rooms,
    /// The media core.
    pub sfu: Sfu,
    /// Becomes true when the server starts shutting down.
    pub shutdown: watch::Sender<bool>,
    /// Lesson events that do not come from a room (the scheduler's).
    pub events: EventSink,
    /// Wakes the scheduler when lesson times change.
    pub scheduler: tokio::sync::Notify,
    /// How long a lesson goes on past its planned end before it ends itself.
    pub end_grace: Duration,
}

impl AppState {
    /// Whether the server has begun shutting down (no new joins).
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Tells the scheduler that lesson times changed.
    pub fn wake_scheduler(&self) {
        self.scheduler.notify_one();
    }
}

/// A running server.
pub struct Server {
    /// Shared state (also what tests use to reach the store and rooms).
    pub state: Arc<AppState>,
    http_addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Opens the data folder, binds HTTP and UDP, and starts serving.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data folder {}", config.data_dir.display()))?;
        let store = Store::open(&config.data_dir.join("jinke.sqlite3"))
            .context("opening the lesson database")?;
        let secret = load_or_create_secret(&config.data_dir.join("token-secret"), 32)
            .context("loading the token signing secret")?;
        let api_key = match &config.api_key {
            Some(k) if k.trim().len() >= 16 => k.trim().to_owned(),
            Some(_) => anyhow::bail!("--api-key must be at least 16 characters"),
            None => {
                let key = load_or_create_secret(&config.data_dir.join("api-key"), 24)
                    .context("loading the API key")?;
                crate::hex(&key)
            }
        };
        store
            .configure_bootstrap(
                &api_key,
                config.webhook_url.as_deref(),
                config.webhook_secret.as_deref(),
                &crate::random_secret(),
                crate::unix_now(),
            )
            .context("configuring the bootstrap school")?;
        // Nobody is connected to a server that is just starting: stays left open by a crash end
        // now.
        store
            .attendance_close_all(crate::unix_now_ms())
            .context("closing the attendance of the previous run")?;
        let sfu = Sfu::start(SfuConfig {
            bind: config.udp,
            shards: config.media_threads,
            announce_ip: config.announce_ip,
            connect_timeout: Duration::from_secs(config.connect_timeout.max(1)),
        })
        .context("starting the media server")?;

        let listener = TcpListener::bind(config.http)
            .with_context(|| format!("binding HTTP on {}", config.http))?;
        listener.set_nonblocking(true)?;
        let http_addr = listener.local_addr()?;
        let tls = config.tls_cert.as_ref().zip(config.tls_key.as_ref());
        let public_url = match &config.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!(
                "{}://{http_addr}",
                if tls.is_some() { "https" } else { "http" }
            ),
        };
        let (shutdown, _) = watch::channel(false);
        let (events, lesson_events) = EventSink::channel();
        let state = Arc::new(AppState {
            store,
            signer: TokenSigner::new(&secret).context("creating the token signer")?,
            api_key,
            public_url,
            rooms: Rooms::new(events.clone()),
            events,
            scheduler: tokio::sync::Notify::new(),
            end_grace: Duration::from_secs(config.end_grace_secs),
            sfu,
            shutdown,
        });
        // One crypto provider for rustls (TLS serving, webhook delivery), whatever else the
        // process links.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        crate::recorder::start(state.clone(), lesson_events);
        crate::scheduler::start(state.clone());
        let app = Router::new()
            .route("/ws", get(session::upgrade))
            .merge(api::routes())
            .merge(web::routes())
            .with_state(state.clone());
        let handle = axum_server::Handle::new();
        let service = app.into_make_service();
        let task = match tls {
            Some((cert, key)) => {
                let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .context("loading the TLS certificate and key")?;
                let server = axum_server::from_tcp_rustls(listener, tls)?.handle(handle.clone());
                tokio::spawn(server.serve(service))
            }
            None => {
                let server = axum_server::from_tcp(listener)?.handle(handle.clone());
                tokio::spawn(server.serve(service))
            }
        };
        tracing::info!(%http_addr, media = ?state.sfu.local_addrs(), url = %state.public_url, "Jinke is serving");
        Ok(Server {
            state,
            http_addr,
            handle,
            task,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound media (UDP) addresses, one per media thread.
    pub fn media_addrs(&self) -> &[SocketAddr] {
        self.state.sfu.local_addrs()
    }

    /// Stops taking joins, tells every client goodbye, waits briefly for them to close, then stops
    /// HTTP and the media core.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: no new joins");
        self.state.shutdown.send_replace(true);
        self.state.rooms.broadcast_all(&ServerMessage::Bye {
            reason: ByeReason::ServerShutdown,
        });
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while self.state.rooms.session_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
        if let Ok(Err(e)) = self.task.await {
            tracing::warn!(error = %e, "HTTP server ended with an error");
        }
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.sfu.shutdown()).await;
        tracing::info!("stopped");
    }
}

/// Reads a secret from `path`, creating it with `len` random bytes (owner-only) if missing.
fn load_or_create_secret(path: &Path, len: usize) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() >= 16 => Ok(bytes),
        Ok(_) => Err(std::io::Error::other(format!(
            "{} is too short to be a secret; delete it to make a new one",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = vec![0u8; len];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            write_private(path, &bytes)?;
            Ok(bytes)
        }
        Err(e) => Err(e),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}
