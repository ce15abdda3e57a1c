//! `jinke`: the command line. `jinke serve` runs the server.

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jinke::config::ServeConfig;
use jinke::server::Server;
use jinke_signaling::Role;
use tracing_subscriber::EnvFilter;

/// Jinke (金课): a real-time streaming classroom server.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: REST API, web client, signaling and media.
    Serve(ServeConfig),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,str0m=warn")),
        )
        .init();
    let Cli {
        command: Command::Serve(config),
    } = Cli::parse();
    let dev = config.dev;
    let server = Server::start(config).await?;
    if dev {
        print_dev_banner(&server).context("preparing the demo lesson")?;
    }
    wait_for_signal().await?;
    server.shutdown().await;
    Ok(())
}

/// `--dev`: makes sure the demo lesson exists and prints the API key and join links.
fn print_dev_banner(server: &Server) -> anyhow::Result<()> {
    let state = &server.state;
    let lesson = jinke::api::demo_lesson(state)?;
    let link = |identity: &str, name: &str, role: Role| {
        let (token, _) = state.issue_token(&lesson, identity, name, role, 12 * 3600);
        state.join_url(&lesson.id, &token)
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nJinke dev mode: demo lesson {:?} ({:?})",
        lesson.title, lesson.mode
    )?;
    writeln!(out, "  API key:   {}", state.api_key)?;
    writeln!(
        out,
        "  API:       {}/api/v1/lessons/{}",
        state.public_url, lesson.id
    )?;
    writeln!(
        out,
        "  Teacher:   {}",
        link("teacher", "李老师", Role::Teacher)
    )?;
    for i in 1..=2 {
        writeln!(
            out,
            "  Student {i}: {}",
            link(&format!("student-{i}"), &format!("学员{i}"), Role::Student)
        )?;
    }
    writeln!(out, "  (links last 12 hours; add &lang=en for English)\n")?;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
