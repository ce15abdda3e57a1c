//! `jinke serve` configuration: every flag is also an environment variable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Flags of `jinke serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// HTTP(S) address for the REST API, the web client and signaling.
    #[arg(long = "http", env = "JINKE_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// UDP address for media. Each media thread has its own socket, on this port plus its
    /// index: open UDP ports PORT..PORT+THREADS-1 in the firewall.
    #[arg(long = "udp", env = "JINKE_UDP", default_value = "127.0.0.1:50000")]
    pub udp: SocketAddr,
    /// Media threads (shards), each carrying its share of the participants on its own core;
    /// 0: one per core.
    #[arg(long, env = "JINKE_MEDIA_THREADS", default_value_t = 0)]
    pub media_threads: usize,
    /// Address put in ICE candidates (the one clients can reach); default: the UDP bind address.
    #[arg(long, env = "JINKE_ANNOUNCE_IP")]
    pub announce_ip: Option<IpAddr>,
    /// Folder for the database and the server's secrets.
    #[arg(long, env = "JINKE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// API key of the bootstrap school, presented as `Authorization: Bearer <key>`; generated
    /// and stored in the data folder when not given. (More schools: `jinke tenant add`.)
    #[arg(long, env = "JINKE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Where the bootstrap school's webhooks go (it can also set this with PUT /api/v1/settings).
    #[arg(long, env = "JINKE_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// The bootstrap school's webhook signing secret (default: generated once and kept).
    #[arg(long, env = "JINKE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Base URL of this server as browsers reach it, used in join links (default: from --http and
    /// whether TLS is on). Set it behind a reverse proxy.
    #[arg(long, env = "JINKE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds a lesson goes on past its planned end (everyone is warned at the end) before it
    /// ends itself.
    #[arg(long, env = "JINKE_END_GRACE_SECS", default_value_t = 600)]
    pub end_grace_secs: u64,
    /// Seconds a participant's media connection has to come up before it is dropped.
    #[arg(long, env = "JINKE_CONNECT_TIMEOUT", default_value_t = 20)]
    pub connect_timeout: u64,
    /// Create a demo lesson and print the API key and ready-to-open join links.
    #[arg(long, env = "JINKE_DEV")]
    pub dev: bool,
    /// PEM certificate chain: serve HTTPS and WSS directly (browsers allow the camera only on
    /// https or localhost).
    #[arg(long, env = "JINKE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "JINKE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ServeConfig {
    /// A configuration for tests and embedding: loopback, free ports, the given data folder.
    pub fn loopback(data_dir: PathBuf) -> ServeConfig {
        ServeConfig {
            http: "127.0.0.1:0".parse().expect("literal address"),
            udp: "127.0.0.1:0".parse().expect("literal address"),
            // Two, whatever the machine: tests then cross shards as big servers do.
            media_threads: 2,
            announce_ip: None,
            data_dir,
            api_key: None,
            webhook_url: None,
            webhook_secret: None,
            public_url: None,
            connect_timeout: 20,
            end_grace_secs: 600,
            dev: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}
