//! The `jinke-load` command line.

use std::net::IpAddr;
use std::time::Duration;

use clap::Parser;
use jinke_load::{LoadConfig, Scenario, Target};
use tracing_subscriber::EnvFilter;

/// Simulates classes against a running Jinke server and reports what it measured.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Which server to measure.
    #[arg(long, value_enum, default_value = "jinke")]
    target: Target,
    /// Server base URL (for Janus, its HTTP API: http://host:port/janus).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The school's API key (Jinke).
    #[arg(
        long,
        env = "JINKE_API_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    api_key: String,
    /// What to simulate.
    #[arg(long, value_enum, default_value = "lecture")]
    scenario: Scenario,
    /// Students (lecture), participants (small-class) or pairs (tutoring).
    #[arg(short = 'n', long, default_value_t = 50)]
    size: usize,
    /// Seconds to wait after everyone joined before measuring.
    #[arg(long, default_value = "2.0", value_parser = seconds)]
    warmup: Duration,
    /// Seconds to measure.
    #[arg(long, default_value = "10.0", value_parser = seconds)]
    duration: Duration,
    /// Seconds receivers go on listening after the publishers stop, for losses at the very end
    /// to be repaired before loss is counted.
    #[arg(long, default_value = "0.5", value_parser = seconds)]
    settle: Duration,
    /// The server's process id, to measure its CPU and memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Local address for the clients' media sockets.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Local address for receive-only clients' media sockets (default: --bind-ip).
    #[arg(long)]
    receiver_bind_ip: Option<IpAddr>,
    /// Clients joining at once.
    #[arg(long, default_value_t = 32)]
    join_concurrency: usize,
    /// Seconds a client may take to receive media before it counts as failed.
    #[arg(long, default_value = "60.0", value_parser = seconds)]
    join_timeout: Duration,
    /// Clients' sockets take each datagram alone, without UDP GRO.
    #[arg(long)]
    no_udp_gro: bool,
    /// Publishers send their video as three simulcast layers (Jinke only; see
    /// `LoadConfig::simulcast`).
    #[arg(long)]
    simulcast: bool,
    /// Threads to run the clients on (Jinke only): one saturates at about a thousand students.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A duration given in seconds (fractions allowed), refused with a reason when it is negative
/// or not a number.
fn seconds(arg: &str) -> Result<Duration, String> {
    let secs: f64 = arg
        .parse()
        .map_err(|e| format!("{arg:?} is not seconds: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{arg:?} seconds: {e}"))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = LoadConfig {
        target: args.target,
        url: args.url.trim_end_matches('/').to_owned(),
        api_key: args.api_key,
        scenario: args.scenario,
        size: args.size,
        warmup: args.warmup,
        duration: args.duration,
        settle: args.settle,
        server_pid: args.server_pid,
        bind_ip: args.bind_ip,
        receiver_bind_ip: args.receiver_bind_ip,
        join_concurrency: args.join_concurrency,
        join_timeout: args.join_timeout,
        udp_gro: !args.no_udp_gro,
        simulcast: args.simulcast,
        threads: args.threads,
    };
    let report = jinke_load::run_blocking(config)?;
    let text = if args.json {
        serde_json::to_string_pretty(&report)?
    } else {
        report.table()
    };
    println!("{text}");
    Ok(())
}
